"""A private LXD 5.0 daemon (Debian's `lxd` package) for interoperability tests.

Why private: the test must not depend on, nor disturb, any LXD someone else runs
on the machine. It gets its own LXD_DIR under /var/tmp, is started with proxy
variables pointed at a closed loopback port and `images.auto_update_interval=0`
(so it never reaches out: no image servers, no instance types), listens on
HTTPS on a loopback port, and has one `dir` pool named `default` with a
`default` profile holding only the root disk (no network: nothing to wire).
`stop()` shuts it down, unmounts what it mounted below its directory and
removes the directory; `lxd shutdown` also stops its containers.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

from tools import statedir

DEAD_PROXY = "http://127.0.0.1:9"


def lxd_binary() -> str | None:
    for path in ("/usr/bin/lxd", "/usr/sbin/lxd", "/usr/lib/lxd/lxd"):
        if os.access(path, os.X_OK):
            return path
    return shutil.which("lxd")


class LxdDaemon:
    def __init__(self, port: int, prefix: str = "nlx-lxd-"):
        self.binary = lxd_binary()
        if self.binary is None or shutil.which("lxc") is None:
            raise FileNotFoundError("Debian's lxd package is not installed (bindep: test)")
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")
        os.chmod(self.dir, 0o711)
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(self.dir, "lxd.log")
        proxies = {k: DEAD_PROXY for k in ("http_proxy", "https_proxy", "HTTP_PROXY",
                                           "HTTPS_PROXY")}
        self.env = {**os.environ, **proxies, "no_proxy": "", "NO_PROXY": "",
                    "LXD_DIR": self.dir, "HOME": self.dir,
                    "LXD_CONF": os.path.join(self.dir, "client")}

    @property
    def socket(self) -> str:
        return os.path.join(self.dir, "unix.socket")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def server_crt(self) -> str:
        return os.path.join(self.dir, "server.crt")

    def lxc(self, *args: str, check: bool = True, timeout: float = 120,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        """The lxc CLI on this daemon's unix socket (LXD_DIR set)."""
        p = subprocess.run(["lxc", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, input=stdin)
        if check and p.returncode != 0:
            raise RuntimeError(f"lxc {' '.join(args)}: {p.stdout}{p.stderr}")
        return p

    def start(self, timeout: float = 90) -> "LxdDaemon":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--group", "root", "--logfile", self.log], env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            subprocess.run([self.binary, "waitready", "--timeout", str(int(timeout))],
                           env=self.env, check=True, timeout=timeout + 5,
                           capture_output=True)
            for key, value in (("images.auto_update_interval", "0"),
                               ("core.proxy_http", DEAD_PROXY),
                               ("core.proxy_https", DEAD_PROXY),
                               ("core.https_address", f"127.0.0.1:{self.port}")):
                self.lxc("config", "set", key, value)
            self.lxc("storage", "create", "default", "dir")
            self.lxc("profile", "device", "add", "default", "root", "disk", "path=/",
                     "pool=default")
        except BaseException:
            self.stop()
            raise
        return self

    def trust(self, cert_path: str, name: str = "nlx-test") -> None:
        self.lxc("config", "trust", "add", cert_path, "--name", name)

    def tail(self, n: int = 40) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Shut down (its containers too), unmount below the directory, remove it."""
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run([self.binary, "shutdown", "--timeout", "60"], env=self.env,
                           capture_output=True, timeout=90, check=False)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        # Containers a crashed daemon left running (liblxc's monitors hold them).
        lxcpath = os.path.join(self.dir, "containers")
        if os.path.isdir(lxcpath):
            for name in os.listdir(lxcpath):
                subprocess.run(["lxc-stop", "-P", lxcpath, "-n", name, "-k"],
                               capture_output=True, check=False, timeout=60)
        # Whatever LXD left mounted below its directory (devlxd, shmounts, ...).
        for _ in range(3):
            mounts = statedir.mounts_below(self.dir)
            if not mounts:
                break
            for target in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", target], capture_output=True, check=False)
            time.sleep(0.2)
        subprocess.run(["rm", "-rf", "--one-file-system", self.dir], check=False)
