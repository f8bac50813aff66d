"""Whether the runtime answers, as nova-compute needs to know it.

The libvirt driver learns that its hypervisor went away from the connection
(closed, or keepalives unanswered) and takes the compute service out of
scheduling until it is back. Here every request of the driver's one client
reports to a ``ConnectionWatch``:

- a refused or lost connection (the daemon is not running) is down at once;
- a request that times out may be one slow call, so the watch asks the
  runtime's cheapest question (``GET /1.0``) with ``[lxd] health_check_timeout``:
  unanswered, the runtime is down as "not answering" (stopped with SIGSTOP,
  wedged). Calls then fail at once with that reason instead of each waiting a
  full timeout, and nova's periodic tasks skip their round with one line;
- while down, a thread asks ``GET /1.0`` every ``[lxd] health_check_interval``
  seconds, so the return is noticed by itself (not only by the next call).

Subscribers hear each change once (the driver disables or enables the service,
the event listener drops a stream that went silent and reconnects).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable

import requests
from oslo_log import log as logging

from runtime.client import connection

LOG = logging.getLogger(__name__)

NOT_ANSWERING = "not answering"


def not_answering(timeout: float) -> str:
    """The down reason of a runtime that accepts connections but never replies."""
    return f"{NOT_ANSWERING} (no reply to GET /1.0 within {timeout:g}s)"


def connection_reason(exc: BaseException) -> str:
    """The operating system's words ("Connection refused") out of the layers
    requests and urllib3 wrap around a failed connect."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        cur = todo.pop(0)
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno and cur.strerror:
            return cur.strerror
        todo += [*cur.args, getattr(cur, "reason", None), cur.__cause__, cur.__context__]
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else str(exc)


def http_probe(endpoint: connection.Endpoint, timeout: float) -> Callable[[], None]:
    """``GET /1.0`` on *endpoint* through a session of its own (never a watched
    one: the probe must reach the runtime while calls fail fast); raises on no
    answer."""
    def probe() -> None:
        with connection.session(endpoint) as sess:
            sess.get(endpoint.pylxd_url() + "/1.0", timeout=timeout).raise_for_status()
    return probe


class ConnectionWatch:
    """Whether the runtime answered the last request, and who to tell when that
    changes. *probe* (``GET /1.0``, raising when unanswered) decides whether a
    timed-out request means the runtime is hung, and brings a down runtime back
    every *interval* seconds; without it only requests move the watch."""

    def __init__(self, probe: Callable[[], None] | None = None, interval: float = 2.0,
                 probe_timeout: float = 10.0) -> None:
        self._lock = threading.Lock()
        self.down_reason: str | None = None
        self.hung = False
        self._subscribers: list[Callable[[], None]] = []
        self._probe = probe
        self._interval = interval
        self._probe_timeout = probe_timeout
        self._prober: threading.Thread | None = None
        self._closed = threading.Event()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """callback() runs after each change, in the thread that saw it; it reads
        down_reason itself, so late or out-of-order calls still apply the latest."""
        self._subscribers.append(callback)

    # -- what requests report ----------------------------------------------------
    def lost(self, reason: str, hung: bool = False) -> None:
        with self._lock:
            if self.down_reason is not None:
                if hung and not self.hung:
                    # refused before, hung now (restarted, then stopped): calls fail
                    # fast from here on; subscribers already know it is down
                    self.down_reason, self.hung = reason, True
                return
            self.down_reason = reason
            self.hung = hung
        self._notify()
        self._start_prober()

    def answered(self) -> None:
        if self.down_reason is None:      # the common case: no lock, no work
            return
        with self._lock:
            if self.down_reason is None:
                return
            self.down_reason = None
            self.hung = False
        self._notify()

    def timed_out(self) -> str:
        """A request got no reply in time: the reason it failed. Down as "not
        answering" when the probe gets no reply either; a runtime that answers
        the probe was only slow on that call."""
        if self.hung:
            return self.down_reason or not_answering(self._probe_timeout)
        if self._probe is None or not self._probe_answers():
            self.lost(not_answering(self._probe_timeout), hung=True)
            return self.down_reason or not_answering(self._probe_timeout)
        return "the request got no reply in time (the runtime answers otherwise)"

    def fail_fast_reason(self) -> str | None:
        """Why a request should not even be sent: the runtime is hung, and each
        call would wait a full timeout to learn it again."""
        return self.down_reason if self.hung else None

    def close(self) -> None:
        """Stop probing (the driver's cleanup_host)."""
        self._closed.set()

    # -- internals ---------------------------------------------------------------
    def _probe_answers(self) -> bool:
        try:
            self._probe()
            return True
        except Exception as exc:  # noqa: BLE001 - any failure is "no answer"
            LOG.debug("Runtime health check failed: %s", exc)
            return False

    def _start_prober(self) -> None:
        if self._probe is None or self._closed.is_set():
            return
        with self._lock:
            if self._prober is not None and self._prober.is_alive():
                return
            self._prober = threading.Thread(target=self._probe_until_back,
                                            name="nova-lxd-health", daemon=True)
            self._prober.start()

    def _probe_until_back(self) -> None:
        while self.down_reason is not None and not self._closed.wait(self._interval):
            if self._probe_answers():
                LOG.info("The container runtime answers its health check again")
                self.answered()
                return

    def _notify(self) -> None:
        for callback in self._subscribers:
            callback()


def watch_session(session: requests.Session, watch: ConnectionWatch,
                  unavailable: Callable[[str], Exception]) -> requests.Session:
    """Every request through *session* reports to *watch*: a refused or lost
    connection, or a timeout the probe confirms, becomes ``unavailable(reason)``
    (a nova fault naming the runtime, not a requests traceback); while the
    runtime is hung, requests fail at once."""
    send = session.send

    def send_watched(request, **kwargs):
        reason = watch.fail_fast_reason()
        if reason is not None:
            raise unavailable(reason)
        try:
            response = send(request, **kwargs)
        except requests.exceptions.ConnectTimeout as exc:
            raise unavailable(watch.timed_out()) from exc
        except requests.exceptions.ConnectionError as exc:
            reason = connection_reason(exc)
            watch.lost(reason)
            raise unavailable(reason) from exc
        except requests.exceptions.Timeout as exc:
            raise unavailable(watch.timed_out()) from exc
        watch.answered()
        return response
    session.send = send_watched
    return session
