"""The floor column: the same busybox rootfs run by liblxc's own tools, no daemon.

Why: a daemon cannot be faster than lxc-start/lxc-attach/lxc-stop on the same
rootfs, so this column shows how much of each figure is daemon overhead. The
container is configured like the daemons' (unprivileged with root's subordinate
id range, veth on a bridge of its own, liblxc's common and userns configs), the
"create" step is a plain `cp -a` of an id-shifted rootfs, as a dir pool does.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from typing import Any

from targets import NotSupported

BRIDGE = "bench-rawbr0"


def _subid_base(path: str) -> int:
    with open(path) as f:
        for line in f:
            user, start, count = line.strip().split(":")
            if user == "root" and int(count) >= 65536:
                return int(start)
    raise RuntimeError(f"no range of 65536 ids for root in {path}")


class RawLxc:
    key = "raw-lxc"
    title = "raw liblxc"
    prefix = "bench-f"

    def __init__(self, image: str):
        self.image = image
        self.lxcpath = tempfile.mkdtemp(prefix="bench-rawlxc-", dir="/var/tmp")
        os.chmod(self.lxcpath, 0o755)
        self.template = os.path.join(self.lxcpath, ".template")
        self.made_bridge = False
        self.uid = _subid_base("/etc/subuid")
        self.gid = _subid_base("/etc/subgid")

    # -- set-up ----------------------------------------------------------
    def setup(self) -> None:
        os.makedirs(self.template)
        with tarfile.open(self.image) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("rootfs/")]
            for m in members:
                m.name = m.name[len("rootfs/"):]
            tar.extractall(self.template, members=members, numeric_owner=True)
        for root, dirs, files in os.walk(self.template):
            for n in dirs + files + ["."]:
                p = os.path.join(root, n)
                st = os.lstat(p)
                os.lchown(p, st.st_uid + self.uid, st.st_gid + self.gid)
        os.lchown(self.template, self.uid, self.gid)
        if not os.path.exists(f"/sys/class/net/{BRIDGE}"):
            subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
            self.made_bridge = True
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)

    def teardown(self) -> None:
        for name in os.listdir(self.lxcpath):
            if not name.startswith("."):
                self.force_remove(name)
        shutil.rmtree(self.lxcpath, ignore_errors=True)
        if self.made_bridge:
            subprocess.run(["ip", "link", "del", BRIDGE], check=False)

    def _lxc(self, tool: str, name: str, *args: str, capture: bool = True) -> str:
        r = subprocess.run([tool, "-n", name, "-P", self.lxcpath, *args],
                           capture_output=True, timeout=60, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} {name}: {r.stderr.decode(errors='replace')[-300:]}")
        return r.stdout.decode()

    # -- the interface the phases use ------------------------------------
    def server_pid(self) -> int:
        return 0

    def get_fresh(self) -> None:
        raise NotSupported("no daemon")

    def describe_config(self, name: str) -> str:
        return (f"lxc-start -d, unprivileged (ids {self.uid}+65536), veth on {BRIDGE}, "
                "rootfs cp -a of an id-shifted template, lxcfs hooks cleared")

    def create(self, name: str) -> None:
        d = os.path.join(self.lxcpath, name)
        os.makedirs(d)
        subprocess.run(["cp", "-a", self.template, os.path.join(d, "rootfs")], check=True)
        with open(os.path.join(d, "config"), "w") as f:
            f.write(
                "lxc.include = /usr/share/lxc/config/common.conf\n"
                "lxc.include = /usr/share/lxc/config/userns.conf\n"
                f"lxc.arch = {os.uname().machine}\n"
                f"lxc.uts.name = {name}\n"
                f"lxc.rootfs.path = dir:{d}/rootfs\n"
                f"lxc.idmap = u 0 {self.uid} 65536\n"
                f"lxc.idmap = g 0 {self.gid} 65536\n"
                # Debian's lxcfs (a dependency of its lxd package) drops a post-stop
                # hook into common.conf.d that sleeps 0.5 s on every stop, and a
                # mount hook that forks a shell on every start: clear both, the
                # floor is liblxc itself (lxcfs is not running here anyway).
                "lxc.hook.post-stop =\n"
                "lxc.hook.mount =\n"
                "lxc.apparmor.profile = unconfined\n"
                "lxc.net.0.type = veth\n"
                f"lxc.net.0.link = {BRIDGE}\n"
                "lxc.net.0.flags = up\n"
                "lxc.net.0.name = eth0\n"
                f"lxc.log.file = {d}/lxc.log\n"
                "lxc.log.level = WARN\n")

    def start(self, name: str) -> None:
        self._lxc("lxc-start", name, "-d")

    def stop_force(self, name: str) -> None:
        self._lxc("lxc-stop", name, "-k")

    def delete(self, name: str) -> None:
        shutil.rmtree(os.path.join(self.lxcpath, name))

    def init_pid(self, name: str) -> int:
        return int(self._lxc("lxc-info", name, "-p", "-H").strip())

    def force_remove(self, name: str) -> None:
        d = os.path.join(self.lxcpath, name)
        if not os.path.isdir(d):
            return
        subprocess.run(["lxc-stop", "-n", name, "-P", self.lxcpath, "-k"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(d, ignore_errors=True)

    def exec_ws(self, name: str) -> None:
        raise NotSupported("no API (see lxc-attach in the CLI row)")

    def exec_record(self, name: str) -> None:
        raise NotSupported("no API")

    def exec_cli(self, name: str) -> None:
        out = self._lxc("lxc-attach", name, "--", "echo", "hi")
        if out != "hi\n":
            raise RuntimeError(f"lxc-attach gave {out!r}")

    def pylxd_instance(self, name: str) -> Any:
        raise NotSupported("no API")
