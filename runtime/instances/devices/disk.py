"""disk devices: what a container sees of a host path, a custom volume, another
stopped instance's root, or a host block device, bound at `path`.

- custom volumes and host paths are bound by lxc.conf at start and injected into
  the container's mount namespace by a helper (`mountinject`: open_tree + setns +
  move_mount) when plugged, never through /proc/PID/root;
- a disk whose source is a host block device (a Cinder volume, say) is mounted on
  the host by another helper (`blockmount`), idmapped to the container's root
  when `shift` is set, and that mount is bound in; the root disk may be one too
  (boot from volume). The host mounts go when the instance stops or the device
  is unplugged;
- `limits.read/write/max` become blkio throttles on the disk holding the source.

The root disk (`path: /`) is the instance's volume: only its limits are applied here.
"""
from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys

from runtime import proc
from runtime.instances import restrictions
from runtime.base.values import parse_size, truthy
from runtime.errors import BadRequest, CommandFailed, NotFound
from runtime.instances import cgroups
from runtime.instances.devices.base import Device, SetVolatile, mount_field, only_limits_changed
from runtime.storage import volume_name

LOG = logging.getLogger(__name__)
LIMIT_KEYS = ("limits.read", "limits.write", "limits.max")
INSTANCE_VOLUME_PREFIX = "container/"


def check_disk(name: str, dev: dict) -> None:
    for key in LIMIT_KEYS:
        if dev.get(key):
            try:
                _io_limit(dev[key])
            except ValueError:
                raise BadRequest(f"disk {name!r}: {key} must be a rate in bytes/s (10MB) "
                                 "or operations/s (100iops)")


def instance_volume(dev: dict) -> str | None:
    """The instance named by a pool disk's ``source: container/<name>``, if any."""
    source = dev.get("source") or ""
    if dev.get("type") == "disk" and dev.get("pool") and \
            source.startswith(INSTANCE_VOLUME_PREFIX):
        name = source[len(INSTANCE_VOLUME_PREFIX):]
        # only a plain instance name: "container/../x" must not leave the pool
        if name and "/" not in name and name not in (".", ".."):
            return name
    return None


def block_source(dev: dict) -> str | None:
    """The host block device a disk (not a pool volume) mounts, if its source is one."""
    source = dev.get("source") or ""
    if dev.get("type") != "disk" or not source.startswith("/") or \
            (dev.get("pool") and dev.get("path") != "/"):
        return None
    try:
        return source if stat.S_ISBLK(os.stat(source).st_mode) else None
    except OSError:
        return None


def block_device_of(path: str) -> str | None:
    """MAJOR:MINOR of the whole disk holding `path` (blkio throttles want the disk)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    sysdir = f"/sys/dev/block/{major}:{minor}"
    if not os.path.exists(sysdir):
        return None  # not a block device (overlay, tmpfs, btrfs subvolume anon dev...)
    if os.path.exists(os.path.join(sysdir, "partition")):
        try:
            with open(os.path.join(os.path.realpath(sysdir), "..", "dev")) as f:
                return f.read().strip()
        except OSError:
            return None
    return f"{major}:{minor}"


def _io_limit(value: str) -> tuple[str, int]:
    """('bps'|'iops', amount) from "10MB" / "100iops"."""
    v = value.strip()
    if v.endswith("iops"):
        return "iops", int(v[:-4])
    return "bps", parse_size(v)


def blkio_settings(dev: dict, devno: str) -> dict[str, str]:
    """v1 blkio throttle files for a disk device's limits.read/write/max."""
    out = {}
    for key, ops in (("limits.max", ("read", "write")), ("limits.read", ("read",)),
                     ("limits.write", ("write",))):
        if dev.get(key):
            kind, amount = _io_limit(dev[key])
            for op in ops:
                out[f"blkio.throttle.{op}_{kind}_device"] = f"{devno} {amount}"
    return out


class Disk(Device):
    def validate(self, name: str, dev: dict) -> None:
        check_disk(name, dev)

    # Sources ----------------------------------------------------------------------
    def _volume_path(self, inst, dev: dict) -> str:
        """A custom volume's directory, in the project that owns the instance's volumes."""
        d = self.host.d
        if instance_volume(dev):
            return d.pools.get(dev["pool"]).rootfs(volume_name(inst.project, instance_volume(dev)))
        source = dev.get("source", "")
        if not source or "/" in source or source in (".", ".."):
            # "vol/../../x" would leave the pool (or reach another project's volume).
            raise BadRequest(f"disk source {source!r} is not a custom volume name")
        vproj = d.volume_project(inst.project)
        # The project's own volume, by its record: a name is not enough, as the
        # default project's volumes are plain `<name>` on disk and "p2_vol" there is
        # project p2's volume "vol".
        if not d.volume_rows.get(dev["pool"], vproj, "custom", source):
            raise BadRequest(f"disk source {source!r}: volume not found in pool "
                             f"{dev['pool']!r}")
        return d.pools.get(dev["pool"]).custom_dir(volume_name(vproj, source))

    def _host_source(self, inst, name: str, dev: dict) -> str:
        """A host-path disk's source, resolved and re-checked against a restricted
        project's restricted.devices.disk.paths at every start and hot-plug."""
        return restrictions.resolve_disk_source(self.host.d, inst.project, name,
                                                dev.get("source", ""))

    def block_target(self, inst, name: str) -> str:
        # Not under the node dir: that is removed with rmtree, which must never
        # descend into a mounted volume.
        return os.path.join(self.host.d.paths.lxd_dir, "disks",
                            volume_name(inst.project, inst.name), name.replace("/", "-"))

    async def mount_block(self, inst, name: str, dev: dict) -> str:
        """Mount a block-device disk on the host (idempotent); returns the mount."""
        source = block_source(dev)
        if source is None:
            raise BadRequest(f"disk {name!r}: {dev.get('source')!r} is not a block device")
        target = self.block_target(inst, name)
        if os.path.ismount(target):
            return target
        idmap = self.host.idmap(inst)
        # The volume's setuid files and device nodes are the tenant's: as with an
        # instance's own directory (LXD's 0100), only the container's root may
        # traverse to its mounts; host users must not reach them.
        disks, own = os.path.dirname(os.path.dirname(target)), os.path.dirname(target)
        os.makedirs(disks, mode=0o711, exist_ok=True)
        os.chmod(disks, 0o711)
        os.makedirs(own, mode=0o100, exist_ok=True)
        os.chown(own, idmap.base, 0)
        os.chmod(own, 0o100)
        argv = [sys.executable, "-m", "runtime.instances.blockmount", "mount", source, target]
        if truthy(dev.get("shift")) and not idmap.privileged:
            argv.append(f"--idmap={idmap.base}:{idmap.size}")
        if truthy(dev.get("readonly")):
            argv.append("--ro")
        try:
            await proc.run(argv, env=self.host.helper_env())
        except CommandFailed as exc:
            raise BadRequest(f"disk {name!r}: {exc}")
        return target

    async def unmount_blocks(self, inst, only: str | None = None) -> None:
        """Drop the host mounts of the instance's block-device disks."""
        base = os.path.join(self.host.d.paths.lxd_dir, "disks",
                            volume_name(inst.project, inst.name))
        if not os.path.isdir(base):
            return
        for entry in sorted(os.listdir(base)):
            if only is not None and entry != only.replace("/", "-"):
                continue
            await proc.run([sys.executable, "-m", "runtime.instances.blockmount", "umount",
                            os.path.join(base, entry)], check=False,
                           env=self.host.helper_env())
        if only is None:
            with contextlib.suppress(OSError):
                os.rmdir(base)

    async def _mount_instance_volume(self, inst, name: str, dev: dict) -> str:
        """The root filesystem of another, stopped instance (``source: container/<name>``).

        For rescue systems: they repair an instance's root through the API, without
        knowing where (or whether) the pool keeps a stopped instance's root mounted."""
        d = self.host.d
        other_name = instance_volume(dev)
        try:
            other = d.instances.load(inst.project, other_name)
        except NotFound:
            raise BadRequest(f"disk {name!r}: instance {other_name!r} not found")
        if other.id == inst.id:
            raise BadRequest(f"disk {name!r}: an instance can't mount its own root volume")
        if other.pool != dev["pool"]:
            raise BadRequest(f"disk {name!r}: instance {other_name!r} is not in pool "
                             f"{dev['pool']!r}")
        if d.instances.pid(other):
            raise BadRequest(f"disk {name!r}: instance {other_name!r} is running; its root "
                             "volume can only be mounted elsewhere while it is stopped")
        return await d.pools.get(dev["pool"]).mount(volume_name(other.project, other.name))

    # Start ------------------------------------------------------------------------
    async def prepare(self, inst, name: str, dev: dict) -> str | None:
        if dev.get("path") == "/":
            return None
        if block_source(dev):
            # a restricted project's paths rule; the device checked is the one mounted
            real = self._host_source(inst, name, dev)
            return await self.mount_block(inst, name, dict(dev, source=real))
        if not dev.get("pool"):
            return self._host_source(inst, name, dev) if dev.get("source") else None
        if instance_volume(dev):
            return await self._mount_instance_volume(inst, name, dev)
        path = self._volume_path(inst, dev)
        if not os.path.isdir(path):
            raise BadRequest(f"disk {name!r}: volume {dev['source']!r} not found in "
                             f"pool {dev['pool']!r}")
        return path

    def lxc_config(self, idx: int, name: str, dev: dict, volatile: dict,
                   source: str | None) -> list[str]:
        if dev.get("path") == "/":
            return []
        path = dev["path"].lstrip("/")
        source = source if source is not None else dev.get("source", "")
        if not os.path.exists(source):
            if dev.get("required", "true") == "false":
                return []
            raise BadRequest(f"disk {name!r}: source {source!r} does not exist")
        create = "dir" if os.path.isdir(source) else "file"
        opts = ["bind", f"create={create}"]
        if dev.get("readonly") in ("true", "1", "yes"):
            opts.append("ro")
        if dev.get("recursive") in ("true", "1", "yes"):
            opts[0] = "rbind"
        return [f"lxc.mount.entry = {mount_field(source)} {mount_field(path)} none "
                f"{','.join(opts)} 0 0"]

    async def started(self, inst, name: str, dev: dict, pid: int) -> None:
        await self._limits(inst, name, dev)

    def _source_path(self, inst, name: str, dev: dict) -> str | None:
        if dev.get("path") == "/":
            return self.host.d.pools.get(dev.get("pool") or inst.pool).volume_dir(
                volume_name(inst.project, inst.name))
        if dev.get("pool"):
            return self._volume_path(inst, dev)
        return dev.get("source")

    async def _limits(self, inst, name: str, dev: dict, force: bool = False) -> None:
        if not any(dev.get(k) for k in LIMIT_KEYS) and not force:
            return
        if cgroups.unified_only():
            raise BadRequest(f"disk {name!r}: disk limits need cgroup v1 blkio on this runtime")
        src = self._source_path(inst, name, dev)
        devno = block_device_of(src) if src else None
        if devno is None:
            LOG.warning("instance %s: disk %s limits not applied: %s is not on a block device",
                        inst.name, name, src)
            return
        settings = blkio_settings(dev, devno)
        if force:
            for op in ("read", "write"):
                for kind in ("bps", "iops"):
                    settings.setdefault(f"blkio.throttle.{op}_{kind}_device", f"{devno} 0")
        try:
            for key, value in settings.items():
                await self.host.set_cgroup(inst, key, value)
        except ValueError as exc:
            raise BadRequest(f"disk {name!r}: {exc}")

    # Hot-plug -----------------------------------------------------------------------
    def updatable(self, old: dict, new: dict) -> bool:
        return old.get("path") != "/" and only_limits_changed(old, new, LIMIT_KEYS)

    async def update(self, inst, pid: int, name: str, old: dict, new: dict) -> bool:
        if not only_limits_changed(old, new, LIMIT_KEYS):
            return False
        check_disk(name, new)
        await self._limits(inst, name, new, force=True)
        return True

    async def plug(self, inst, pid: int, name: str, dev: dict,
                   set_volatile: SetVolatile) -> None:
        if dev.get("path") == "/":
            LOG.info("instance %s: root disk change applies at next start", inst.name)
            return
        await self._plug(inst, pid, name, dev)
        await self._limits(inst, name, dev)

    async def _plug(self, inst, pid: int, name: str, dev: dict) -> None:
        if block_source(dev):
            real = self._host_source(inst, name, dev)  # a restricted project's paths rule
            source = await self.mount_block(inst, name, dict(dev, source=real))
            try:
                await self.host.inject(pid, source, dev["path"])
            except Exception:
                await self.unmount_blocks(inst, only=name)
                raise
            return
        if instance_volume(dev):
            source = await self._mount_instance_volume(inst, name, dev)
        elif dev.get("pool"):
            source = self._volume_path(inst, dev)
        else:
            source = self._host_source(inst, name, dev) if dev.get("source") else None
        if not source or not os.path.exists(source):
            if dev.get("required", "true") == "false":
                return
            raise BadRequest(f"disk {name!r}: source {source!r} does not exist")
        idmap = self.host.idmap(inst)
        await self.host.inject(pid, source, dev["path"], readonly=truthy(dev.get("readonly")),
                               recursive=truthy(dev.get("recursive")),
                               owner=(idmap.to_host(0), idmap.to_host(0)))

    async def unplug(self, inst, pid: int, name: str, dev: dict,
                     set_volatile: SetVolatile) -> bool:
        if dev.get("path") == "/":
            return False
        await self.host.eject(pid, dev["path"])
        if block_source(dev) or os.path.ismount(self.block_target(inst, name)):
            await self.unmount_blocks(inst, only=name)
        return True
