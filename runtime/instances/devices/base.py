"""What every device type implements (LXD's device_interface.go), and the host
services they share.

A device type is one class per module of this package. The coordinator
(`runtime.instances.devices.Devices`) calls it at each point of an instance's
life: `validate` when it starts or is plugged, `prepare` for the host path the
lxc config binds, `lxc_config` (pure) for its lines of lxc.conf, `start` before
liblxc starts the container, `started` for what lxc.conf cannot say (limits),
`plug`/`update`/`unplug` while it runs (hot-plug), `stop` after it stopped and
`remove` when the instance is deleted. A device never writes the instance's
record itself: it returns its `volatile.*` keys through the callback it is given.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

from runtime import controlchars, proc
from runtime.storage import volume_name

# Writes some of the instance's volatile keys (None removes one).
SetVolatile = Callable[[dict[str, str | None]], None]


def only_limits_changed(old: dict, new: dict, keys: tuple[str, ...]) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in keys}  # noqa: E731
    return strip(old) == strip(new)


def mount_field(path: str) -> str:
    """A path as one fstab field (liblxc reads mount entries with getmntent)."""
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


class Host:
    """The daemon's services a device uses: paths, instances, pools, networks, helpers."""

    def __init__(self, daemon):
        self.d = daemon

    def node_dir(self, inst) -> str:
        # Under LXD_DIR (0711), not logs (0700): an unprivileged container's root
        # must be able to reach the bind source while liblxc sets it up.
        return os.path.join(self.d.paths.lxd_dir, "devices",
                            volume_name(inst.project, inst.name))

    def idmap(self, inst):
        return self.d.instances.idmap_of(inst)

    def lxc_name(self, inst) -> str:
        return self.d.instances.paths(inst).name

    async def set_cgroup(self, inst, key: str, value: str) -> None:
        await self.d.instances.lxc.set_cgroup(self.lxc_name(inst), key, value)

    def helper_env(self) -> dict:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": root}

    async def inject(self, pid: int, source: str, target: str, readonly: bool = False,
                     recursive: bool = False, owner: tuple[int, int] | None = None) -> None:
        """Bind source into the container's mount namespace (never via /proc/PID/root)."""
        argv = [sys.executable, "-m", "runtime.instances.mountinject", "mount", str(pid),
                source, target]
        if readonly:
            argv.append("--ro")
        if recursive:
            argv.append("--rbind")
        if owner:
            argv.append(f"--owner={owner[0]}:{owner[1]}")
        await proc.run(argv, env=self.helper_env())

    async def eject(self, pid: int, target: str, remove: bool = False) -> None:
        argv = [sys.executable, "-m", "runtime.instances.mountinject", "umount", str(pid),
                target] + (["--remove"] if remove else [])
        await proc.run(argv, check=False, env=self.helper_env())

    async def in_netns(self, pid: int, commands: list[str], check: bool = True) -> None:
        """Run `ip` commands inside the container's network namespace (host root)."""
        controlchars.check_generated(commands, "ip -batch")
        await proc.run(["nsenter", "-t", str(pid), "-n", "ip", "-batch", "-"],
                       input=("\n".join(commands) + "\n").encode(), check=check)


class Device:
    """A device type. Every hook has a do-nothing default; types override what they need."""

    def __init__(self, host: Host):
        self.host = host

    def validate(self, name: str, dev: dict) -> None:
        """Refuse what this runtime can't make of the device (BadRequest naming it)."""

    async def prepare(self, inst, name: str, dev: dict) -> str | None:
        """The host path lxc.conf binds for the device, if any (made or mounted now)."""
        return None

    def lxc_config(self, idx: int, name: str, dev: dict, volatile: dict,
                   source: str | None) -> list[str]:
        """Its lines of lxc.conf (pure); idx counts devices of the same lxc kind (nics)."""
        return []

    async def start(self, inst, name: str, dev: dict) -> None:
        """Before liblxc starts the container (a managed bridge must exist first)."""

    async def started(self, inst, name: str, dev: dict, pid: int) -> None:
        """Once the container runs: what lxc.conf can't express (tc, blkio)."""

    async def plug(self, inst, pid: int, name: str, dev: dict,
                   set_volatile: SetVolatile) -> None:
        """Add the device to a running container."""

    async def update(self, inst, pid: int, name: str, old: dict, new: dict) -> bool:
        """Apply a change in place if it is one this type can (limits); False if not."""
        return False

    def updatable(self, old: dict, new: dict) -> bool:
        """Whether `update` handles this change (then it is not unplugged first)."""
        return False

    async def unplug(self, inst, pid: int, name: str, dev: dict,
                     set_volatile: SetVolatile) -> bool:
        """Take the device out of a running container; False if there was nothing to do."""
        return False

    async def stop(self, inst, name: str, dev: dict) -> None:
        """After the container stopped."""

    async def remove(self, inst, name: str, dev: dict) -> None:
        """When the instance is deleted."""
