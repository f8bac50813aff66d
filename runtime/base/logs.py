"""The daemon's log lines, in oslo.log's shape, each with the id of its request.

A request id (`req-<uuid>`) is set for every API request by the web app's
middleware and kept in a context variable, so the lines of the handler and of the
operation it starts (a task copies the context) all carry it; work of the daemon's
own (reconcile, expiry, autostart) shows `-`. Under systemd the journal stamps
each line itself, so the daemon then writes no timestamp of its own.
"""
from __future__ import annotations

import contextvars
import logging
import os
import sys
import uuid

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# oslo.log's logging_context_format_string, without the parts nova fills in.
FORMAT = "%(process)d %(levelname)s %(name)s [%(request_id)s] %(message)s"
TIMESTAMP = "%(asctime)s.%(msecs)03d "
DATEFMT = "%Y-%m-%d %H:%M:%S"


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def setup(level: int) -> None:
    """stderr logging for the daemon (a supervisor or the journal collects it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    stamp = "" if os.environ.get("JOURNAL_STREAM") else TIMESTAMP
    handler.setFormatter(logging.Formatter(stamp + FORMAT, DATEFMT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
