"""The liblxc instance driver: lxc config generation and process control.

Containers run under liblxc's own small monitor (`lxc-start -d`), not under the
daemon, so the daemon can restart without touching them and each container
costs only that monitor's ~1.6 MB. Commands go through liblxc's tools, which
talk to the monitor over its command socket.
"""
import asyncio
import functools
import hashlib
import os
import signal
from dataclasses import dataclass

from runtime import controlchars, proc
from runtime.errors import CommandFailed
from runtime.instances import cgroups
from runtime.base.idmap import IdMap

# LXD's default seccomp policy: deny module loading, kexec and handle-based open.
SECCOMP_DEFAULT = """2
denylist
reject_force_umount  # comment this to allow umount -f;  not recommended
[all]
kexec_load errno 38
open_by_handle_at errno 38
init_module errno 38
finit_module errno 38
delete_module errno 38
"""
DROP_CAPS = "mac_admin mac_override sys_time sys_module sys_rawio"
OPTIONAL_BINDS = [
    ("/dev/fuse", "dev/fuse", "create=file"),
    ("/dev/net/tun", "dev/net/tun", "create=file"),
    ("/proc/sys/fs/binfmt_misc", "proc/sys/fs/binfmt_misc", "create=dir"),
    ("/sys/fs/fuse/connections", "sys/fs/fuse/connections", "create=dir"),
    ("/sys/kernel/security", "sys/kernel/security", "create=dir"),
]
# The container's own POSIX message queues: a fresh mqueue instance for its IPC
# namespace (a bind of the host's /dev/mqueue would show the host's queues).
MQUEUE_ENTRY = "lxc.mount.entry = mqueue dev/mqueue mqueue rw,relatime,create=dir,optional 0 0"


# Sources of the ERROR lines liblxc logs after any failed start (not the cause).
_LXC_START_CASCADE = ("tools/lxc_start.c", "sync.c:sync_wait", "wait_on_daemonized_start",
                      "start.c:__lxc_start", "lxc_abort")


@dataclass
class Paths:
    """Every per-instance path the driver uses, in one place."""
    lxcpath: str
    name: str         # liblxc name (volume name: project-qualified)
    log_dir: str

    @property
    def config(self) -> str:
        return os.path.join(self.log_dir, "lxc.conf")

    @property
    def lxc_log(self) -> str:
        return os.path.join(self.log_dir, "lxc.log")

    @property
    def console_log(self) -> str:
        return os.path.join(self.log_dir, "console.log")

    @property
    def seccomp(self) -> str:
        return os.path.join(self.log_dir, "seccomp")


@functools.cache
def _daemon_cgroup(lxd_dir: str) -> str:
    """Per-daemon cgroup parent so two daemons on one host never collide."""
    return "nlr-" + hashlib.sha256(os.path.realpath(lxd_dir).encode()).hexdigest()[:8]


def cgroup_dir(lxd_dir: str, name: str) -> str:
    return f"{_daemon_cgroup(lxd_dir)}/{name}"


def monitor_cgroup_dir(cgroup: str) -> str:
    """Where liblxc puts the container's monitor: a sibling tree of the containers'."""
    return cgroup.replace("/", ".monitor/", 1)


def daemon_cgroup_dirs(lxd_dir: str) -> list[str]:
    """The parents under which one daemon's containers and monitors live."""
    parent = _daemon_cgroup(lxd_dir)
    return [parent, parent + ".monitor"]


def render_config(*, name: str, hostname: str, rootfs: str, paths: Paths, idmap: IdMap,
                  config: dict, architecture: str, host_arch: str, cgroup: str,
                  device_lines: list[str] = ()) -> str:
    """The lxc.conf for one start of an instance (pure: tested without containers).

    `device_lines` are the devices' own (runtime.instances.devices.lxc_lines)."""
    privileged = idmap.privileged
    nesting = config.get("security.nesting") == "true"
    lines = [
        f"lxc.uts.name = {hostname}",
        f"lxc.rootfs.path = dir:{rootfs}",
        f"lxc.log.file = {paths.lxc_log}",
        "lxc.log.level = warn",
        f"lxc.console.logfile = {paths.console_log}",
        "lxc.console.size = 1MB",
        "lxc.console.rotate = 1",
        "lxc.autodev = 1",
        "lxc.pty.max = 1024",
        "lxc.tty.max = 0",
        "lxc.signal.halt = SIGPWR",
        "lxc.signal.reboot = SIGINT",
        "lxc.signal.stop = SIGKILL",
        f"lxc.cgroup.dir.container = {cgroup}",
        f"lxc.cgroup.dir.monitor = {monitor_cgroup_dir(cgroup)}",
        # As LXD: a user namespace makes rw safe; privileged ones get the mixed forms.
        # ":force" because liblxc skips cgroup mounts on cgroup-namespace kernels.
        "lxc.mount.auto = " + ("proc:mixed sys:mixed cgroup:mixed:force" if privileged
                               else "proc:rw sys:rw cgroup:rw:force"),
        f"lxc.cap.drop = {DROP_CAPS}",
        f"lxc.seccomp.profile = {paths.seccomp}",
    ]
    lines += _seccomp_notify_lines(paths, config)
    if architecture != host_arch and architecture == "i686":
        lines.append("lxc.arch = linux32")
    lines += idmap.lxc_lines()
    if nesting:
        lines.append("lxc.mount.entry = /sys/kernel/security sys/kernel/security none "
                     "rbind,create=dir,optional 0 0")
    for src, dst, create in OPTIONAL_BINDS:
        lines.append(f"lxc.mount.entry = {src} {dst} none bind,{create},optional 0 0")
    lines.append(MQUEUE_ENTRY)
    for setting, value in cgroups.limits(config).items():
        lines.append(f"{cgroups.lxc_key(setting)} = {value}")
    for key, value in sorted(config.items()):
        if key.startswith("environment."):
            lines.append(f"lxc.environment = {key[12:]}={value}")
        elif key.startswith("linux.sysctl."):
            lines.append(f"lxc.sysctl.{key[13:]} = {value}")
        elif key.startswith("limits.kernel."):
            # LXD's process limits (ulimits) map to liblxc's prlimits: "soft[:hard]".
            lines.append(f"lxc.prlimit.{key[14:]} = {value}")
    lines += device_lines
    controlchars.check_generated(lines, "lxc.conf")
    raw = config.get("raw.lxc")
    if raw:
        lines.append("# raw.lxc")
        lines += [line for line in raw.split("\n") if line.strip()]
    return "\n".join(lines) + "\n"


def _seccomp_notify_lines(paths: Paths, config: dict) -> list[str]:
    """Hand intercepted syscalls to the daemon's seccomp proxy (when it listens)."""
    from runtime.instances import seccomp_notify
    sock = seccomp_notify.socket_path(os.path.dirname(paths.lxcpath))
    if not seccomp_notify.wanted(config) or not os.path.exists(sock):
        return []
    return [f"lxc.seccomp.notify.proxy = unix:{sock}",
            f"lxc.seccomp.notify.cookie = {paths.name}"]


def seccomp_policy(config: dict) -> str:
    """Default deny list plus security.syscalls.deny; an allow list replaces it."""
    raw = config.get("raw.seccomp")
    if raw:  # as in LXD, an administrator's own policy replaces ours whole
        return raw if raw.endswith("\n") else raw + "\n"
    allow = config.get("security.syscalls.allow", "").split()
    if allow:
        return "2\nallowlist\n[all]\n" + "".join(f"{s}\n" for s in allow)
    policy = SECCOMP_DEFAULT if config.get("security.syscalls.deny_default", "true") != \
        "false" else "2\ndenylist\n[all]\n"
    deny = config.get("security.syscalls.deny", "").split()
    from runtime.instances import seccomp_notify
    notify = seccomp_notify.POLICY if seccomp_notify.wanted(config) else ""
    return policy + notify + "".join(f"{s} errno 1\n" for s in deny)


class LxcDriver:
    """Runs and controls containers with liblxc's command-line tools."""

    def __init__(self, lxcpath: str):
        self.lxcpath = lxcpath

    def _args(self, name: str) -> list[str]:
        return ["-P", self.lxcpath, "-n", name]

    async def start(self, paths: Paths) -> int:
        open(paths.console_log, "a").close()
        try:
            offset = os.path.getsize(paths.lxc_log)
        except OSError:
            offset = 0
        try:
            await proc.run(["lxc-start", *self._args(paths.name), "-d", "-f", paths.config,
                            "-o", paths.lxc_log, "-l", "warn"], timeout=60)
        except CommandFailed as exc:
            detail = self._start_errors(paths, offset) or str(exc)
            raise CommandFailed(f"Failed to start the container: {detail}")
        pid = await self.init_pid(paths.name)
        if pid is None:
            raise CommandFailed(f"Container exited at start: "
                                f"{self._start_errors(paths, offset)}")
        return pid

    def _start_errors(self, paths: Paths, offset: int) -> str:
        """The cause of a failed start, from what this start wrote to lxc.log.

        liblxc ends every failure with the same cascade (another process failed,
        state ABORTING, "run the container in foreground mode"...); the cause is
        the first ERROR before it, e.g. `Failed to exec "/sbin/init"`.
        """
        try:
            with open(paths.lxc_log, errors="replace") as f:
                f.seek(offset)
                errs = [line.strip().split(" - ", 1)[-1] for line in f if " ERROR " in line]
        except OSError:
            return ""
        causes = [e for e in errs if not any(g in e for g in _LXC_START_CASCADE)]
        return " | ".join(causes[:2] or errs[-3:])

    async def init_pid(self, name: str) -> int | None:
        rc, out, _ = await proc.run(["lxc-info", *self._args(name), "-pH"], check=False)
        out = out.strip()
        return int(out) if rc == 0 and out.isdigit() else None

    async def state(self, name: str) -> str:
        rc, out, _ = await proc.run(["lxc-info", *self._args(name), "-sH"], check=False)
        return out.strip() if rc == 0 and out.strip() else "STOPPED"

    async def stop(self, name: str, force: bool, timeout: float) -> None:
        if force:
            await proc.run(["lxc-stop", *self._args(name), "-k"], check=False, timeout=60)
        else:
            t = int(timeout) if timeout and timeout > 0 else -1
            rc, _, err = await proc.run(["lxc-stop", *self._args(name), "-t", str(t)],
                                        check=False,
                                        timeout=None if t < 0 else t + 30)
            if rc != 0 and await self.init_pid(name) is not None:
                raise CommandFailed(f"Container did not stop within {t}s: {err.strip()}")

    async def reboot(self, name: str) -> None:
        await proc.run(["lxc-stop", *self._args(name), "-r", "-t", "30"], check=False)

    async def freeze(self, name: str, cgroup: str) -> None:
        await self._freezer(name, cgroup, True)

    async def unfreeze(self, name: str, cgroup: str) -> None:
        await self._freezer(name, cgroup, False)

    async def _freezer(self, name: str, cgroup: str, frozen: bool) -> None:
        """Write the freezer directly (liblxc's tool fails on this hybrid layout)."""
        if cgroups.unified_only():
            path = cgroups.host_path("", cgroup)
            knob, value, want = "cgroup.freeze", "1" if frozen else "0", None
        else:
            path = cgroups.host_path("freezer", cgroup)
            knob, value = "freezer.state", "FROZEN" if frozen else "THAWED"
            want = value
        if path is None:
            tool = "lxc-freeze" if frozen else "lxc-unfreeze"
            await proc.run([tool, *self._args(name)], timeout=60)
            return
        def write(text: str) -> None:
            with open(os.path.join(path, knob), "w") as f:
                f.write(text)
        write(value)
        if want is None:
            return
        # cgroup v1: a freeze that meets a task it can't stop yet stays FREEZING and
        # must be retried by writing FROZEN again (Documentation/cgroup-v1/freezer).
        delay = 0.002
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            if cgroups.read("freezer", cgroup, "freezer.state") == want:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            write(value)
        if frozen:
            write("THAWED")  # never leave it half frozen
        raise CommandFailed(f"Container did not reach {want} within 10s")

    async def set_cgroup(self, name: str, key: str, value: str) -> None:
        await proc.run(["lxc-cgroup", *self._args(name), "--", key, value])

    def console_argv(self, name: str) -> list[str]:
        """lxc-console on the container's /dev/console (tty 0), escape key off.

        lxc-console's `-e` takes a letter and makes it Ctrl-<letter>; "`" maps to
        0, which liblxc reads as "no escape key", so every byte (Ctrl-a too)
        reaches the container and lxc-console prints no banner. LXD passes -1 to
        the same liblxc call for the same reason.
        """
        return ["lxc-console", *self._args(name), "-t", "0", "-e", "`"]

    def attach_argv(self, name: str, command: list[str], env: dict[str, str],
                    cwd: str | None, uid: int, gid: int) -> list[str]:
        argv = ["lxc-attach", *self._args(name), "--clear-env", "-q"]
        for key, value in env.items():
            argv += ["-v", f"{key}={value}"]
        if uid:
            argv += ["-u", str(uid)]
        if gid:
            argv += ["-g", str(gid)]
        argv.append("--")
        if cwd:
            # lxc-attach has no cwd option: a one-line shell changes directory first.
            argv += ["/bin/sh", "-c", 'cd -- "$0" || exit 127; exec "$@"', cwd]
        return argv + command


def monitors() -> list[tuple[int, str, str]]:
    """(pid, lxcpath, name) of every liblxc monitor on the host, from one /proc scan."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                head = f.read(4096)
        except OSError:
            continue
        if not head.startswith(b"[lxc monitor]"):
            continue
        words = head.replace(b"\0", b" ").decode(errors="replace").split()
        if len(words) == 4:
            found.append((int(entry), words[2], words[3]))
    return found


def running_inits(lxcpath: str) -> dict[str, int | None]:
    """{container name: init pid} for the monitored containers of lxcpath, from /proc.

    A daemon restart adopts every running container; one `lxc-info` each costs
    milliseconds (seconds for a thousand). liblxc's monitor is the parent of the
    container's init, so its only child is the pid wanted. A monitor without a
    child (a container starting or stopping right now) maps to None: the caller
    asks liblxc about those.
    """
    path = os.path.realpath(lxcpath)
    out = {}
    for pid, mpath, name in monitors():
        if os.path.realpath(mpath) != path:
            continue
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = f.read().split()
            # The init is the first process of the container's own pid namespace.
            if len(children) == 1 and os.readlink(f"/proc/{children[0]}/ns/pid") == \
                    os.readlink(f"/proc/{pid}/ns/pid"):
                children = []
        except OSError:
            children = []
        out[name] = int(children[0]) if len(children) == 1 else None
    return out


async def wait_exit(pid: int) -> None:
    """Return when process pid (not our child) exits, without polling."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, FileNotFoundError):
        # ESRCH: gone; ENOENT: this kernel's answer for a process that exited
        # while being looked up (seen when force-stopping 1,000 at once)
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
