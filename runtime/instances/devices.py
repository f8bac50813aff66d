"""Devices around an instance's life: sources resolved at start, limits, hotplug.

The lxc config renders devices at start; this module prepares what that needs
(pool volumes, per-instance device nodes, managed bridges), applies what liblxc
cannot express (tc shaping, blkio throttles) once the container runs, and
plugs/unplugs devices of running instances:

- nics: veth (bridged, p2p) and macvlan links are made with pyroute2 and moved
  into the container's network namespace (found through its init pid);
  `physical` moves a host link in and gives it back on unplug.
- disks and unix-char/unix-block: bind mounts are injected into the container's
  mount namespace by a helper (`mountinject`, open_tree + setns + move_mount),
  never through /proc/PID/root; device nodes are made per instance with the
  requested uid/gid/mode, so the host's own nodes are never chowned.
- a disk whose source is a host block device (a Cinder volume, say) is mounted
  on the host by another helper (`blockmount`), idmapped to the container's
  root when `shift` is set, and that mount is bound in; the root disk may be one
  too (boot from volume). The host mounts go when the instance stops or the
  device is unplugged.
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import stat
import sys

from runtime import controlchars, proc, restrictions
from runtime.errors import BadRequest, CommandFailed, NotFound
from runtime.instances import cgroups
from runtime.instances.config import parse_size, truthy
from runtime.storage import volume_name

LOG = logging.getLogger(__name__)
VETH_KINDS = ("bridged", "p2p")


def nictype(dev: dict) -> str:
    return dev.get("nictype") or "bridged"


# nic keys accepted by validation (LXD knows them) that this runtime does not
# implement: refused when set, rather than silently ignored.
UNSUPPORTED_NIC_KEYS = ("security.mac_filtering", "security.ipv4_filtering",
                        "security.ipv6_filtering", "security.port_isolation", "vlan",
                        "vlan.tagged", "ipv4.routes", "ipv6.routes", "ipv4.routes.external",
                        "ipv6.routes.external", "ipv6.address", "limits.priority", "gvrp",
                        "acceleration", "queue.tx.length", "maas.subnet.ipv4",
                        "maas.subnet.ipv6")


def check_nic(name: str, dev: dict) -> None:
    for key in UNSUPPORTED_NIC_KEYS:
        if dev.get(key) not in (None, "", "false"):
            raise BadRequest(f"nic {name!r}: {key!r} is not supported by this runtime")
    if dev.get("ipv4.address") and not dev.get("network"):
        raise BadRequest(f"nic {name!r}: 'ipv4.address' needs a managed 'network'")
    rates = [k for k in ("limits.ingress", "limits.egress", "limits.max") if dev.get(k)]
    if rates and nictype(dev) not in VETH_KINDS:
        raise BadRequest(f"nic {name!r}: limits.ingress/egress need a veth nic "
                         "(bridged or p2p)")
    from runtime.network import tc
    for key in rates:
        try:
            tc.parse_rate(dev[key])
        except ValueError as exc:
            raise BadRequest(f"nic {name!r}: {key}: {exc}")


PARENT_KINDS = ("bridged", "macvlan", "physical")


def check_parent(name: str, dev: dict) -> None:
    """A nic without a managed network needs a host parent that is there when the nic
    is started or plugged: liblxc's own error for a missing one is only "Failed to
    spawn container"."""
    if dev.get("network") or nictype(dev) not in PARENT_KINDS:
        return
    parent = dev.get("parent")
    if not parent:
        raise BadRequest(f"nic {name!r}: needs 'parent' or 'network'")
    from runtime.network import netlink
    if "/" in parent or parent in (".", "..") or len(parent) > 15 or \
            not netlink.exists(parent):
        raise BadRequest(f"nic {name!r}: parent {parent!r} does not exist on this host")


SUPPORTED_TYPES = ("none", "disk", "nic", "unix-char", "unix-block")


def check_supported(name: str, dev: dict) -> None:
    """Device types LXD knows but this runtime does not make are refused, not ignored."""
    if dev.get("type") not in SUPPORTED_TYPES:
        raise BadRequest(f"device {name!r}: type {dev.get('type')!r} is not supported by "
                         f"this runtime ({', '.join(SUPPORTED_TYPES[1:])})")


def check_disk(name: str, dev: dict) -> None:
    for key in ("limits.read", "limits.write", "limits.max"):
        if dev.get(key):
            try:
                _io_limit(dev[key])
            except ValueError:
                raise BadRequest(f"disk {name!r}: {key} must be a rate in bytes/s (10MB) "
                                 "or operations/s (100iops)")


INSTANCE_VOLUME_PREFIX = "container/"


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


def _only_limits_changed(old: dict, new: dict, keys: tuple[str, ...]) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in keys}  # noqa: E731
    return strip(old) == strip(new)


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


class Devices:
    def __init__(self, daemon):
        self.d = daemon

    # Helpers -----------------------------------------------------------------
    def _node_dir(self, inst) -> str:
        # Under LXD_DIR (0711), not logs (0700): an unprivileged container's root
        # must be able to reach the bind source while liblxc sets it up.
        return os.path.join(self.d.paths.lxd_dir, "devices",
                            volume_name(inst.project, inst.name))

    def _make_node(self, inst, devname: str, dev: dict) -> str | None:
        """A device node of the instance's own, owned and moded as the device asks."""
        src = dev.get("source") or dev.get("path")
        if dev.get("major") and dev.get("minor"):
            rdev = os.makedev(int(dev["major"]), int(dev["minor"]))
        else:
            try:
                st = os.stat(src)
            except OSError:
                if dev.get("required", "true") == "false":
                    return None
                raise BadRequest(f"device {devname!r}: {src!r} does not exist on the host")
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                raise BadRequest(f"device {devname!r}: {src!r} is not a device node")
            rdev = st.st_rdev
        kind = stat.S_IFCHR if dev["type"] == "unix-char" else stat.S_IFBLK
        mode = int(dev.get("mode") or "0660", 8)
        os.makedirs(self._node_dir(inst), mode=0o711, exist_ok=True)
        node = os.path.join(self._node_dir(inst), "unix." + devname.replace("/", "-"))
        if os.path.lexists(node):
            os.unlink(node)
        os.mknod(node, kind | mode, rdev)
        os.chmod(node, mode)
        idmap = self.d.instances.idmap_of(inst)
        os.chown(node, idmap.to_host(int(dev.get("uid") or 0)),
                 idmap.to_host(int(dev.get("gid") or 0)))
        return node

    def _cgroup_dev(self, dev: dict, node: str) -> str:
        st = os.stat(node)
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        return f"{kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} rwm"

    async def _inject(self, pid: int, source: str, target: str, readonly: bool = False,
                      recursive: bool = False, owner: tuple[int, int] | None = None) -> None:
        argv = [sys.executable, "-m", "runtime.instances.mountinject", "mount", str(pid),
                source, target]
        if readonly:
            argv.append("--ro")
        if recursive:
            argv.append("--rbind")
        if owner:
            argv.append(f"--owner={owner[0]}:{owner[1]}")
        await proc.run(argv, env=self._helper_env())

    async def _eject(self, pid: int, target: str, remove: bool = False) -> None:
        argv = [sys.executable, "-m", "runtime.instances.mountinject", "umount", str(pid),
                target] + (["--remove"] if remove else [])
        await proc.run(argv, check=False, env=self._helper_env())

    def _helper_env(self) -> dict:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": root}

    async def _in_netns(self, pid: int, commands: list[str], check: bool = True) -> None:
        """Run `ip` commands inside the container's network namespace (host root)."""
        controlchars.check_generated(commands, "ip -batch")
        await proc.run(["nsenter", "-t", str(pid), "-n", "ip", "-batch", "-"],
                       input=("\n".join(commands) + "\n").encode(), check=check)

    def _volume_path(self, inst, dev: dict) -> str:
        """A custom volume's directory, in the project that owns the instance's volumes."""
        if instance_volume(dev):
            return self.d.pool(dev["pool"]).rootfs(volume_name(inst.project,
                                                               instance_volume(dev)))
        source = dev.get("source", "")
        if not source or "/" in source or source in (".", ".."):
            # "vol/../../x" would leave the pool (or reach another project's volume).
            raise BadRequest(f"disk source {source!r} is not a custom volume name")
        vproj = self.d._feature(inst.project, "features.storage.volumes")
        # The project's own volume, by its record: a name is not enough, as the
        # default project's volumes are plain `<name>` on disk and "p2_vol" there is
        # project p2's volume "vol".
        if not self.d.db.get("storage_volumes", pool=dev["pool"], project=vproj,
                             type="custom", name=source):
            raise BadRequest(f"disk source {source!r}: volume not found in pool "
                             f"{dev['pool']!r}")
        return self.d.pool(dev["pool"]).custom_path(volume_name(vproj, source))

    def _host_source(self, inst, name: str, dev: dict) -> str:
        """A host-path disk's source, resolved and re-checked against a restricted
        project's restricted.devices.disk.paths at every start and hot-plug."""
        return restrictions.resolve_disk_source(self.d, inst.project, name,
                                                dev.get("source", ""))

    def _block_target(self, inst, name: str) -> str:
        # Not under _node_dir: that is removed with rmtree, which must never
        # descend into a mounted volume.
        return os.path.join(self.d.paths.lxd_dir, "disks",
                            volume_name(inst.project, inst.name), name.replace("/", "-"))

    async def mount_block(self, inst, name: str, dev: dict) -> str:
        """Mount a block-device disk on the host (idempotent); returns the mount."""
        source = block_source(dev)
        if source is None:
            raise BadRequest(f"disk {name!r}: {dev.get('source')!r} is not a block device")
        target = self._block_target(inst, name)
        if os.path.ismount(target):
            return target
        idmap = self.d.instances.idmap_of(inst)
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
            await proc.run(argv, env=self._helper_env())
        except CommandFailed as exc:
            raise BadRequest(f"disk {name!r}: {exc}")
        return target

    async def unmount_blocks(self, inst, only: str | None = None) -> None:
        """Drop the host mounts of the instance's block-device disks."""
        base = os.path.join(self.d.paths.lxd_dir, "disks", volume_name(inst.project, inst.name))
        if not os.path.isdir(base):
            return
        for entry in sorted(os.listdir(base)):
            if only is not None and entry != only.replace("/", "-"):
                continue
            await proc.run([sys.executable, "-m", "runtime.instances.blockmount", "umount",
                            os.path.join(base, entry)], check=False, env=self._helper_env())
        if only is None:
            with contextlib.suppress(OSError):
                os.rmdir(base)

    async def _mount_instance_volume(self, inst, name: str, dev: dict) -> str:
        """The root filesystem of another, stopped instance (``source: container/<name>``).

        For rescue systems: they repair an instance's root through the API, without
        knowing where (or whether) the pool keeps a stopped instance's root mounted."""
        other_name = instance_volume(dev)
        try:
            other = self.d.instances.load(inst.project, other_name)
        except NotFound:
            raise BadRequest(f"disk {name!r}: instance {other_name!r} not found")
        if other.id == inst.id:
            raise BadRequest(f"disk {name!r}: an instance can't mount its own root volume")
        if other.pool != dev["pool"]:
            raise BadRequest(f"disk {name!r}: instance {other_name!r} is not in pool "
                             f"{dev['pool']!r}")
        if self.d.instances.pid(other):
            raise BadRequest(f"disk {name!r}: instance {other_name!r} is running; its root "
                             "volume can only be mounted elsewhere while it is stopped")
        return await self.d.pool(dev["pool"]).mount(volume_name(other.project, other.name))

    # Start ---------------------------------------------------------------------
    async def disk_sources(self, inst) -> dict[str, str]:
        """Host paths for pool-volume disks and the instance's own unix device nodes."""
        out = {}
        for name, dev in inst.expanded_devices.items():
            dtype = dev.get("type")
            if dtype in ("unix-char", "unix-block"):
                node = self._make_node(inst, name, dev)
                if node:
                    out[name] = node
                continue
            if dtype == "disk" and dev.get("path") != "/" and block_source(dev):
                # a restricted project's paths rule; the device checked is the one mounted
                real = self._host_source(inst, name, dev)
                out[name] = await self.mount_block(inst, name, dict(dev, source=real))
                continue
            if dtype != "disk" or dev.get("path") == "/":
                continue
            if not dev.get("pool"):
                if dev.get("source"):
                    out[name] = self._host_source(inst, name, dev)
                continue
            if instance_volume(dev):
                out[name] = await self._mount_instance_volume(inst, name, dev)
                continue
            path = self._volume_path(inst, dev)
            if not os.path.isdir(path):
                raise BadRequest(f"disk {name!r}: volume {dev['source']!r} not found in "
                                 f"pool {dev['pool']!r}")
            out[name] = path
        return out

    async def before_start(self, inst) -> None:
        """Managed bridges must exist before liblxc attaches veths to them."""
        for name, dev in inst.expanded_devices.items():
            check_supported(name, dev)
            if dev.get("type") == "disk":
                check_disk(name, dev)
            if dev.get("type") != "nic":
                continue
            check_nic(name, dev)
            check_parent(name, dev)
            if dev.get("network"):
                nets = self._managed_networks(name, dev)
                row = nets.get(dev["network"])
                from runtime.network import netlink
                if not netlink.exists(dev["network"]):
                    await nets.bring_up(dev["network"], row["config"])
                hwaddr = dev.get("hwaddr") or inst.config.get(f"volatile.{name}.hwaddr")
                if hwaddr:
                    nets.static_lease(dev["network"], inst.name, hwaddr, dev.get("ipv4.address"))

    async def after_start(self, inst, pid: int) -> None:
        """What liblxc's config cannot say: tc shaping and blkio throttles.

        A container whose limits could not be applied is stopped again: it must
        not run unconstrained while the client is told the start failed.
        """
        try:
            for name, dev in inst.expanded_devices.items():
                if dev.get("type") == "nic":
                    await self._nic_limits(inst, name, dev)
                elif dev.get("type") == "disk":
                    await self._disk_limits(inst, name, dev)
        except Exception:
            await self.d.instances.lxc.stop(self.d.instances.paths(inst).name, True, 0)
            raise

    async def _nic_limits(self, inst, name: str, dev: dict, force: bool = False) -> None:
        if not (dev.get("limits.ingress") or dev.get("limits.egress")
                or dev.get("limits.max") or force):
            return
        if nictype(dev) not in VETH_KINDS:
            raise BadRequest(f"nic {name!r}: limits.ingress/egress need a veth nic "
                             "(bridged or p2p)")
        host_if = self.host_name(inst, name, dev)
        if not host_if:
            return
        from runtime.network import tc
        try:
            await tc.apply(host_if, dev.get("limits.ingress") or dev.get("limits.max"),
                           dev.get("limits.egress") or dev.get("limits.max"))
        except ValueError as exc:
            raise BadRequest(f"nic {name!r}: {exc}")

    def host_name(self, inst, name: str, dev: dict) -> str | None:
        return dev.get("host_name") or inst.config.get(f"volatile.{name}.host_name")

    def _disk_source_path(self, inst, name: str, dev: dict) -> str | None:
        if dev.get("path") == "/":
            return self.d.pool(dev.get("pool") or inst.pool).instance_path(
                volume_name(inst.project, inst.name))
        if dev.get("pool"):
            return self._volume_path(inst, dev)
        return dev.get("source")

    async def _disk_limits(self, inst, name: str, dev: dict, force: bool = False) -> None:
        if not any(dev.get(k) for k in ("limits.read", "limits.write", "limits.max")) \
                and not force:
            return
        if cgroups.unified_only():
            raise BadRequest(f"disk {name!r}: disk limits need cgroup v1 blkio on this runtime")
        src = self._disk_source_path(inst, name, dev)
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
                await self.d.instances.lxc.set_cgroup(self.d.instances.paths(inst).name,
                                                      key, value)
        except ValueError as exc:
            raise BadRequest(f"disk {name!r}: {exc}")

    async def after_stop(self, inst) -> None:
        await self.unmount_blocks(inst)
        shutil.rmtree(self._node_dir(inst), ignore_errors=True)
        await self._drop_ifbs(inst)

    async def _drop_ifbs(self, inst) -> None:
        from runtime.network import netlink, tc
        for name, dev in inst.expanded_devices.items():
            host_if = self.host_name(inst, name, dev) if dev.get("type") == "nic" else None
            if host_if and netlink.exists(tc.ifb_name(host_if)):
                await tc.remove(host_if)

    async def before_delete(self, inst) -> None:
        await self.unmount_blocks(inst)
        shutil.rmtree(self._node_dir(inst), ignore_errors=True)
        nets = getattr(self.d, "networks", None)
        for dev in inst.expanded_devices.values():
            if nets and dev.get("type") == "nic" and dev.get("network") and \
                    nets.managed(dev["network"]):
                nets.static_lease(dev["network"], inst.name, None, None)

    # Hotplug -------------------------------------------------------------------
    async def hotplug(self, inst, old_devices: dict) -> None:
        """Bring a running instance's devices in line with its new expanded devices."""
        pid = self.d.instances.pid(inst)
        new_devices = inst.expanded_devices
        names = sorted(set(old_devices) | set(new_devices))
        changed = [n for n in names if old_devices.get(n) != new_devices.get(n)]
        if not changed or pid is None:
            return
        # Removals first (a renamed nic may reuse the same interface name).
        for name in changed:
            old, new = old_devices.get(name), new_devices.get(name)
            if old is None:
                continue
            if new is not None and old.get("type") == new.get("type"):
                if old["type"] == "nic" and _only_limits_changed(
                        old, new, ("limits.ingress", "limits.egress", "limits.max")):
                    continue
                if old["type"] == "disk" and old.get("path") != "/" and _only_limits_changed(
                        old, new, ("limits.read", "limits.write", "limits.max")):
                    continue
            await self._unplug(inst, pid, name, old)
        plugged: list[tuple[str, dict]] = []
        try:
            await self._plug_changed(inst, pid, changed, old_devices, new_devices, plugged)
        except Exception:
            for name, dev in reversed(plugged):  # leave the instance as it was
                try:
                    await self._unplug(inst, pid, name, dev)
                except Exception as exc:  # noqa: BLE001 - keep undoing the rest
                    LOG.warning("instance %s: undoing %s failed: %s", inst.name, name, exc)
            raise

    async def _plug_changed(self, inst, pid: int, changed: list[str], old_devices: dict,
                            new_devices: dict, plugged: list) -> None:
        for name in changed:
            old, new = old_devices.get(name), new_devices.get(name)
            if new is None:
                continue
            if old is not None and old.get("type") == new.get("type") == "nic" and \
                    _only_limits_changed(old, new, ("limits.ingress", "limits.egress",
                                                    "limits.max")):
                check_nic(name, new)
                await self._nic_limits(inst, name, new, force=True)
                continue
            if old is not None and old.get("type") == new.get("type") == "disk" and \
                    _only_limits_changed(old, new, ("limits.read", "limits.write",
                                                    "limits.max")):
                check_disk(name, new)
                await self._disk_limits(inst, name, new, force=True)
                continue
            await self._plug(inst, pid, name, new)
            plugged.append((name, new))

    async def _plug(self, inst, pid: int, name: str, dev: dict) -> None:
        check_supported(name, dev)
        dtype = dev.get("type")
        if dtype == "nic":
            check_nic(name, dev)
            await self._plug_nic(inst, pid, name, dev)
            await self._nic_limits(inst, name, dev)
        elif dtype == "disk":
            check_disk(name, dev)
            if dev.get("path") == "/":
                LOG.info("instance %s: root disk change applies at next start", inst.name)
                return
            await self._plug_disk(inst, pid, name, dev)
            await self._disk_limits(inst, name, dev)
        elif dtype in ("unix-char", "unix-block"):
            await self._plug_unix(inst, pid, name, dev)
        else:
            LOG.info("instance %s: %s device %r applies at next start", inst.name, dtype, name)
        LOG.info("instance %s: device %s (%s) plugged", inst.name, name, dtype)

    async def _unplug(self, inst, pid: int, name: str, dev: dict) -> None:
        dtype = dev.get("type")
        if dtype == "nic":
            await self._unplug_nic(inst, pid, name, dev)
        elif dtype == "disk" and dev.get("path") != "/":
            await self._eject(pid, dev["path"])
            if block_source(dev) or os.path.ismount(self._block_target(inst, name)):
                await self.unmount_blocks(inst, only=name)
        elif dtype in ("unix-char", "unix-block"):
            await self._eject(pid, dev.get("path") or dev.get("source"), remove=True)
            node = os.path.join(self._node_dir(inst), "unix." + name.replace("/", "-"))
            if os.path.exists(node) and not cgroups.unified_only():
                await proc.run(["lxc-cgroup", "-P", self.d.paths.lxcpath, "-n",
                                self.d.instances.paths(inst).name, "devices.deny",
                                self._cgroup_dev(dev, node)], check=False)
            if os.path.lexists(node):
                os.unlink(node)
        else:
            return
        LOG.info("instance %s: device %s (%s) unplugged", inst.name, name, dtype)

    # nics
    async def _plug_nic(self, inst, pid: int, name: str, dev: dict) -> None:
        """Make the link on the host and move it into the container, in one helper run."""
        from runtime.network import netlink
        check_parent(name, dev)
        kind = nictype(dev)
        ifname = dev.get("name", name)
        hwaddr = dev.get("hwaddr") or inst.config.get(f"volatile.{name}.hwaddr")
        mtu = int(dev["mtu"]) if dev.get("mtu") else None
        volatile: dict[str, str] = {}
        if not hwaddr and kind != "physical":
            from runtime.instances.manager import random_hwaddr
            hwaddr = random_hwaddr()
            volatile[f"volatile.{name}.hwaddr"] = hwaddr
        temp = "nlrtmp" + secrets.token_hex(4)
        made: list[str] = []
        if kind in VETH_KINDS:
            bridge = None
            if kind == "bridged":
                if dev.get("network"):
                    self._managed_networks(name, dev)
                bridge = self.d.networks.bridge_for(dev) if hasattr(self.d, "networks") \
                    else dev.get("parent")
            host_if = dev.get("host_name") or "veth" + secrets.token_hex(4)
            calls = [("create_veth", [host_if, temp, bridge, hwaddr, mtu])]
            made = [host_if]
            if not dev.get("host_name"):
                volatile[f"volatile.{name}.host_name"] = host_if
        elif kind == "macvlan":
            calls = [("create_macvlan", [temp, dev["parent"], dev.get("mode", "bridge"),
                                         hwaddr, mtu])]
            made = [temp]
        elif kind == "physical":
            temp = dev["parent"]
            calls = []
            if hwaddr:
                volatile[f"volatile.{name}.last_state.hwaddr"] = netlink.link_info(
                    temp).get("hwaddr", "")
        else:
            raise BadRequest(f"nic {name!r}: nictype {kind!r} can't be hot-plugged")
        try:
            await netlink.call(calls + [("move_to_pid", [temp, pid, ifname])])
            cmds = []
            if hwaddr and kind == "physical":
                cmds.append(f"link set dev {ifname} address {hwaddr}")
            if mtu and kind == "physical":
                cmds.append(f"link set dev {ifname} mtu {mtu}")
            cmds.append(f"link set dev {ifname} up")
            await self._in_netns(pid, cmds)
        except Exception:
            for link in made:  # a veth's peer goes with it, wherever it is
                await proc.run(["ip", "link", "del", link], check=False)
            raise
        if volatile:
            self.d.instances._set_volatile(inst, volatile)

    def _managed_networks(self, name: str, dev: dict):
        """The network manager, when the nic's `network` is one of its bridges."""
        nets = getattr(self.d, "networks", None)
        if nets is None or not nets.managed(dev["network"]):
            raise BadRequest(f"nic {name!r}: network {dev['network']!r} not found")
        return nets

    async def _unplug_nic(self, inst, pid: int, name: str, dev: dict) -> None:
        ifname = dev.get("name", name)
        if nictype(dev) == "physical":
            cmds = [f"link set dev {ifname} down"]
            old_hw = inst.config.get(f"volatile.{name}.last_state.hwaddr")
            if old_hw:
                cmds.append(f"link set dev {ifname} address {old_hw}")
            cmds += [f"link set dev {ifname} name {dev['parent']}",
                     f"link set dev {dev['parent']} netns {os.getpid()}"]
            await self._in_netns(pid, cmds)
        else:
            try:
                await self._in_netns(pid, [f"link del dev {ifname}"])
            except CommandFailed as exc:
                LOG.warning("instance %s: nic %s was already gone: %s", inst.name, name, exc)
        host_if = self.host_name(inst, name, dev)
        if host_if:
            from runtime.network import tc
            await tc.remove(host_if)
        self.d.instances._set_volatile(inst, {f"volatile.{name}.host_name": None,
                                              f"volatile.{name}.last_state.hwaddr": None})

    # disks and device nodes
    async def _plug_disk(self, inst, pid: int, name: str, dev: dict) -> None:
        if block_source(dev):
            real = self._host_source(inst, name, dev)  # a restricted project's paths rule
            source = await self.mount_block(inst, name, dict(dev, source=real))
            try:
                await self._inject(pid, source, dev["path"])
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
        idmap = self.d.instances.idmap_of(inst)
        await self._inject(pid, source, dev["path"], readonly=truthy(dev.get("readonly")),
                           recursive=truthy(dev.get("recursive")),
                           owner=(idmap.to_host(0), idmap.to_host(0)))

    async def _plug_unix(self, inst, pid: int, name: str, dev: dict) -> None:
        node = self._make_node(inst, name, dev)
        if node is None:
            return
        if not cgroups.unified_only():
            await self.d.instances.lxc.set_cgroup(self.d.instances.paths(inst).name,
                                                  "devices.allow", self._cgroup_dev(dev, node))
        idmap = self.d.instances.idmap_of(inst)
        await self._inject(pid, node, dev.get("path") or dev["source"],
                           owner=(idmap.to_host(0), idmap.to_host(0)))
