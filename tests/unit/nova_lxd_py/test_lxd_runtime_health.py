"""The health check's decisions: a timed-out request makes the runtime "not
answering" only when GET /1.0 goes unanswered too; while hung, requests fail
without being sent; the prober brings the runtime back by itself."""
import threading
import time
import unittest

import requests

from nova_lxd_py import runtime_health


class _Probe:
    def __init__(self, answers: bool):
        self.answers = answers
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if not self.answers:
            raise requests.exceptions.ReadTimeout("no reply")


class _Session:
    """A requests.Session stand-in whose send raises what the test gives it."""

    def __init__(self, error=None):
        self.error = error
        self.sent = 0

    def send(self, request, **kwargs):
        self.sent += 1
        if self.error is not None:
            raise self.error
        return "response"


class HealthTest(unittest.TestCase):
    def _watch(self, probe, interval=0.01):
        watch = runtime_health.ConnectionWatch(probe, interval=interval, probe_timeout=1)
        self.addCleanup(watch.close)
        return watch

    def test_slow_call_with_a_runtime_that_answers_is_not_an_outage(self):
        watch = self._watch(_Probe(answers=True))
        reason = watch.timed_out()
        self.assertIsNone(watch.down_reason)
        self.assertIn("no reply in time", reason)

    def test_unanswered_health_check_is_down_and_hung(self):
        probe = _Probe(answers=False)
        watch = self._watch(probe, interval=60)
        seen = []
        watch.subscribe(lambda: seen.append(watch.down_reason))
        reason = watch.timed_out()
        self.assertEqual("not answering (no reply to GET /1.0 within 1s)", reason)
        self.assertTrue(watch.hung)
        self.assertEqual(reason, watch.fail_fast_reason())
        self.assertEqual(reason, watch.timed_out())   # once down, no second check
        self.assertEqual(1, probe.calls)
        self.assertEqual([reason], seen)

    def test_refused_is_down_but_requests_still_go_out(self):
        watch = self._watch(_Probe(answers=False), interval=60)
        watch.lost("Connection refused")
        self.assertFalse(watch.hung)
        self.assertIsNone(watch.fail_fast_reason())

    def test_refused_then_hung_fails_fast_without_a_second_notice(self):
        watch = self._watch(_Probe(answers=False), interval=60)
        seen = []
        watch.subscribe(lambda: seen.append(watch.down_reason))
        watch.lost("Connection refused")
        self.assertIn("not answering", watch.timed_out())
        self.assertTrue(watch.hung)
        self.assertIn("not answering", watch.fail_fast_reason())
        self.assertEqual(["Connection refused"], seen)

    def test_prober_brings_the_runtime_back(self):
        probe = _Probe(answers=False)
        watch = self._watch(probe)
        back = threading.Event()
        watch.subscribe(lambda: watch.down_reason is None and back.set())
        watch.timed_out()
        time.sleep(0.05)
        self.assertIsNotNone(watch.down_reason)
        probe.answers = True
        self.assertTrue(back.wait(5))
        self.assertFalse(watch.hung)

    def test_watched_session_fails_fast_while_hung(self):
        watch = self._watch(_Probe(answers=False), interval=60)
        session = _Session(requests.exceptions.ReadTimeout("read timed out"))
        runtime_health.watch_session(session, watch, lambda reason: RuntimeError(reason))
        with self.assertRaisesRegex(RuntimeError, "not answering"):
            session.send(None)
        with self.assertRaisesRegex(RuntimeError, "not answering"):
            session.send(None)
        self.assertEqual(1, session.sent)   # the second was never sent

    def test_watched_session_reports_answers(self):
        watch = self._watch(None)
        watch.lost("Connection refused")
        session = _Session()
        runtime_health.watch_session(session, watch, lambda reason: RuntimeError(reason))
        self.assertEqual("response", session.send(None))
        self.assertIsNone(watch.down_reason)


if __name__ == "__main__":
    unittest.main()
