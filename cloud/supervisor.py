"""Run the service table under Debian's supervisor.

Why supervisor: PID 1 here is not systemd, and supervisor needs nothing but
itself; each service is its own program with its own log file. Programs do not
autostart: ``up`` starts them in order and waits for each one's readiness, so
a failure names the service that failed. Once started, a program that dies is
restarted by supervisor (``autorestart=unexpected``).
"""
from __future__ import annotations

import http.client
import os
import shlex
import signal
import socket
import subprocess
import time
import xmlrpc.client

from cloud import layout
from cloud.services import Service

CONF = layout.path("supervisord.conf")
SOCK = layout.path("run", "supervisor.sock")
PIDFILE = layout.path("run", "supervisord.pid")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def render(services: list[Service]) -> str:
    lines = [
        "[unix_http_server]", f"file = {SOCK}", "chmod = 0700", "",
        "[supervisord]", f"logfile = {layout.log('supervisord')}", f"pidfile = {PIDFILE}",
        f"childlogdir = {layout.path('logs')}", "minfds = 16384", "nodaemon = false", "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        "[supervisorctl]", f"serverurl = unix://{SOCK}", "",
    ]
    for service in services:
        env = ",".join(f"{k}={_quote(v)}" for k, v in service.env.items())
        lines += [
            f"[program:{service.name}]",
            "command = " + " ".join(shlex.quote(a).replace("%", "%%") for a in service.command),
            f"stdout_logfile = {service.log}", "stdout_logfile_maxbytes = 50MB",
            "stdout_logfile_backups = 1", "redirect_stderr = true",
            "autostart = false", "autorestart = unexpected", "startsecs = 3",
            "startretries = 2", f"stopwaitsecs = {service.stop_wait}",
            "stopasgroup = true", "killasgroup = true", "stopsignal = TERM",
        ]
        if env:
            lines.append(f"environment = {env}")
        if service.user:
            lines.append(f"user = {service.user}")
        lines.append("")
    return "\n".join(lines)


class _UnixTransport(xmlrpc.client.Transport):
    def make_connection(self, host):
        conn = http.client.HTTPConnection("localhost", timeout=60)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.settimeout(60)
        conn.sock.connect(SOCK)
        return conn


def rpc() -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(),
                                     allow_none=True)


def pid() -> int | None:
    """supervisord's pid, if it is running."""
    try:
        with open(PIDFILE) as f:
            found = int(f.read().strip())
        with open(f"/proc/{found}/cmdline", "rb") as f:
            if b"supervisord" not in f.read():
                return None
        return found
    except (OSError, ValueError):
        return None


def ensure(services: list[Service]) -> None:
    """Write the configuration; start supervisord or make it reread."""
    os.makedirs(os.path.dirname(SOCK), exist_ok=True)
    os.makedirs(layout.path("logs"), exist_ok=True)
    text = render(services)
    changed = True
    try:
        with open(CONF) as f:
            changed = f.read() != text
    except FileNotFoundError:
        pass
    if changed:
        with open(CONF + ".tmp", "w") as f:
            f.write(text)
        os.replace(CONF + ".tmp", CONF)
    if pid() is None:
        subprocess.run(["/usr/bin/supervisord", "-c", CONF], check=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                rpc().supervisor.getState()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"supervisord did not start; see {layout.log('supervisord')}")
    if changed:
        # Add new programs, drop removed ones; running ones keep running.
        added, changed_, removed = rpc().supervisor.reloadConfig()[0]
        for name in removed:
            _stop_quietly(name)
            rpc().supervisor.removeProcessGroup(name)
        for name in added:
            rpc().supervisor.addProcessGroup(name)
        for name in changed_:
            _stop_quietly(name)
            rpc().supervisor.removeProcessGroup(name)
            rpc().supervisor.addProcessGroup(name)


def _stop_quietly(name: str) -> None:
    try:
        rpc().supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault:
        pass


def states() -> dict[str, dict]:
    """Program name -> supervisor's process info (state name, pid, uptime)."""
    if pid() is None:
        return {}
    try:
        return {info["name"]: info for info in rpc().supervisor.getAllProcessInfo()}
    except OSError:
        return {}


def start(name: str) -> None:
    """Ask supervisor to start a program (readiness is checked by the caller)."""
    info = rpc().supervisor.getProcessInfo(name)
    if info["statename"] in ("RUNNING", "STARTING"):
        return
    try:
        rpc().supervisor.startProcess(name, False)
    except xmlrpc.client.Fault as e:
        raise RuntimeError(f"{name} did not start ({e.faultString})") from None


def stop(names: list[str], timeout: float = 90) -> None:
    """Stop programs together (SIGTERM, then supervisor's SIGKILL after each
    one's stop wait) and return once none is running."""
    for name in names:
        try:
            rpc().supervisor.stopProcess(name, False)
        except xmlrpc.client.Fault:
            pass  # not running
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = states()
        if all(current.get(n, {}).get("statename") not in ("RUNNING", "STARTING", "STOPPING",
                                                            "BACKOFF") for n in names):
            return
        time.sleep(0.2)


def shutdown() -> None:
    """Stop every program (in reverse order of start) and supervisord itself."""
    found = pid()
    if found is None:
        return
    try:
        rpc().supervisor.stopAllProcesses(True)
        rpc().supervisor.shutdown()
    except (OSError, xmlrpc.client.Fault):
        os.kill(found, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and os.path.exists(f"/proc/{found}"):
        time.sleep(0.2)
    if os.path.exists(f"/proc/{found}"):
        os.kill(found, signal.SIGKILL)
