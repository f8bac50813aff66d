"""The daemon's log lines carry the request id of the request they belong to."""
import asyncio
import io
import logging

from runtime.base import logs


def _capture(journal: bool, monkeypatch) -> tuple[tuple, io.StringIO]:
    if journal:
        monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    logs.setup(logging.INFO)
    out = io.StringIO()
    logging.getLogger().handlers[0].stream = out
    return saved, out


def test_request_id_follows_the_request_into_its_tasks(monkeypatch):
    saved, out = _capture(False, monkeypatch)
    log = logging.getLogger("runtime.test")
    try:
        log.info("daemon work")

        async def request():
            logs.REQUEST_ID.set("req-abc")
            task = asyncio.get_running_loop().create_task(asyncio.sleep(0, "x"))
            await task
            log.info("in the request")
            await asyncio.get_running_loop().create_task(_op(log))
        asyncio.run(request())
    finally:
        _restore(saved)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("INFO runtime.test [-] daemon work")
    assert lines[0][:4].isdigit()     # a timestamp of our own
    assert lines[1].endswith("INFO runtime.test [req-abc] in the request")
    assert lines[2].endswith("[req-abc] in its operation")


def _restore(saved: tuple) -> None:
    logging.getLogger().handlers[:] = saved[0]
    logging.getLogger().setLevel(saved[1])


async def _op(log):
    log.info("in its operation")


def test_no_own_timestamp_under_the_journal(monkeypatch):
    saved, out = _capture(True, monkeypatch)
    try:
        logging.getLogger("runtime.test").warning("hello")
    finally:
        _restore(saved)
    line = out.getvalue().strip()
    assert line.split(" ", 1)[1] == "WARNING runtime.test [-] hello"   # pid first
    assert logs.new_request_id().startswith("req-")
