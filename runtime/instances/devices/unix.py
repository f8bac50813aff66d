"""unix-char and unix-block devices: a device node of the instance's own, made with
the uid/gid/mode the device asks for, allowed in the devices cgroup and bound in,
so ownership changes never touch the host's own /dev."""
from __future__ import annotations

import os
import stat

from runtime import proc
from runtime.errors import BadRequest
from runtime.instances import cgroups
from runtime.instances.devices.base import Device, SetVolatile, mount_field


def node_path(node_dir: str, name: str) -> str:
    return os.path.join(node_dir, "unix." + name.replace("/", "-"))


def cgroup_rule(node: str) -> str:
    st = os.stat(node)
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    return f"{kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} rwm"


class Unix(Device):
    def _make_node(self, inst, name: str, dev: dict) -> str | None:
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
                raise BadRequest(f"device {name!r}: {src!r} does not exist on the host")
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                raise BadRequest(f"device {name!r}: {src!r} is not a device node")
            rdev = st.st_rdev
        kind = stat.S_IFCHR if dev["type"] == "unix-char" else stat.S_IFBLK
        mode = int(dev.get("mode") or "0660", 8)
        node_dir = self.host.node_dir(inst)
        os.makedirs(node_dir, mode=0o711, exist_ok=True)
        node = node_path(node_dir, name)
        if os.path.lexists(node):
            os.unlink(node)
        os.mknod(node, kind | mode, rdev)
        os.chmod(node, mode)
        idmap = self.host.idmap(inst)
        os.chown(node, idmap.to_host(int(dev.get("uid") or 0)),
                 idmap.to_host(int(dev.get("gid") or 0)))
        return node

    async def prepare(self, inst, name: str, dev: dict) -> str | None:
        return self._make_node(inst, name, dev)

    def lxc_config(self, idx: int, name: str, dev: dict, volatile: dict,
                   source: str | None) -> list[str]:
        """Allow the device in the devices cgroup and bind the instance's own node."""
        if source is None:
            return []  # optional device missing on the host
        path = (dev.get("path") or dev.get("source")).lstrip("/")
        return [("lxc.cgroup2.devices.allow = " if cgroups.unified_only()
                 else "lxc.cgroup.devices.allow = ") + cgroup_rule(source),
                f"lxc.mount.entry = {mount_field(source)} {mount_field(path)} none "
                "bind,create=file 0 0"]

    async def plug(self, inst, pid: int, name: str, dev: dict,
                   set_volatile: SetVolatile) -> None:
        node = self._make_node(inst, name, dev)
        if node is None:
            return
        if not cgroups.unified_only():
            await self.host.set_cgroup(inst, "devices.allow", cgroup_rule(node))
        idmap = self.host.idmap(inst)
        await self.host.inject(pid, node, dev.get("path") or dev["source"],
                               owner=(idmap.to_host(0), idmap.to_host(0)))

    async def unplug(self, inst, pid: int, name: str, dev: dict,
                     set_volatile: SetVolatile) -> bool:
        await self.host.eject(pid, dev.get("path") or dev.get("source"), remove=True)
        node = node_path(self.host.node_dir(inst), name)
        if os.path.exists(node) and not cgroups.unified_only():
            await proc.run(["lxc-cgroup", "-P", self.host.d.paths.lxcpath, "-n",
                            self.host.lxc_name(inst), "devices.deny", cgroup_rule(node)],
                           check=False)
        if os.path.lexists(node):
            os.unlink(node)
        return True
