"""The process that renders image templates, each request in a fork with hard limits.

An image's templates are tenant code run by the daemon. Jinja's sandbox keeps
them from reaching Python internals, but not from looping for hours or building
a string of many gigabytes. So they never run in the daemon: this small worker
(jinja2 loaded once) forks a child per request; the child sets RLIMIT_AS and
RLIMIT_CPU, renders, and hands back JSON through a pipe; the worker kills a child
that passes the wall-clock deadline or writes too much. The daemon talks to the
worker over stdin/stdout, length-prefixed JSON (runtime.instances.templates).
"""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import struct
import sys
import time

_HEAD = struct.Struct("!I")


def _read_exact(fd: int, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return b""
        data += chunk
    return bytes(data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _render_one(env, source: str, context: dict, max_output: int) -> dict:
    import jinja2
    try:
        template = env.from_string(source)
        out, size = [], 0
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > max_output:
                return {"error": f"output larger than {max_output} bytes"}
            out.append(chunk)
        return {"text": "".join(out)}
    except jinja2.TemplateSyntaxError as exc:
        return {"error": f"line {exc.lineno}: {exc.message}"}
    except MemoryError:
        return {"error": "the template needs more memory than allowed"}
    except RecursionError:
        return {"error": "the template recurses too deeply"}
    except Exception as exc:  # noqa: BLE001 - a template's own error, reported as text
        return {"error": f"{type(exc).__name__}: {exc}"}


def _child(w: int, request: dict) -> None:
    """In the fork: limits, then every template of the request."""
    from jinja2.sandbox import SandboxedEnvironment
    limits = request["limits"]
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    budget = _vm_size() + limits["memory"]
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    cpu = max(1, int(limits["cpu"]))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
    context = request["context"]
    config = context.get("config") or {}
    results = []
    for job in request["templates"]:
        ctx = {"trigger": job["trigger"], "path": job["path"],
               "container": context["instance"], "instance": context["instance"],
               "config": config, "devices": context.get("devices") or {},
               "properties": job.get("properties") or {},
               "config_get": lambda key, default=None: config.get(key, default)}
        results.append(_render_one(env, job["source"], ctx, limits["output"]))
    _write_all(w, json.dumps({"results": results}).encode())


def handle(request: dict) -> bytes:
    """Render one request in a forked child; the reply (JSON bytes) in every case."""
    limits = request["limits"]
    max_reply = limits["output"] * len(request["templates"]) * 6 + 65536  # JSON escapes
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            _child(w, request)
        except BaseException:  # noqa: BLE001 - the parent reports a child that said nothing
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + limits["seconds"]
    data, problem = bytearray(), None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                problem = f"rendering took longer than {limits['seconds']} s"
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            data += chunk
            if len(data) > max_reply:
                problem = "rendering produced too much output"
                break
    finally:
        os.close(r)
        if problem:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if problem is None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        problem = ("rendering used more CPU time than allowed" if sig == signal.SIGXCPU
                   else f"rendering was killed by signal {sig}")
    if problem is None and not data:
        problem = "rendering failed (out of memory or crashed)"
    if problem:
        return json.dumps({"error": problem}).encode()
    return bytes(data)


def main() -> int:
    import jinja2.sandbox  # noqa: F401 - loaded once, shared by every fork
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        head = _read_exact(0, _HEAD.size)
        if not head:
            return 0
        request = json.loads(_read_exact(0, _HEAD.unpack(head)[0]))
        reply = handle(request)
        _write_all(1, _HEAD.pack(len(reply)) + reply)


if __name__ == "__main__":
    sys.exit(main())
