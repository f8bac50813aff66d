"""What every nic type shares: validation, MAC addresses, rate limits, managed
networks' leases, and the hot-plug dance (make the link on the host, move it into
the container's network namespace, bring it up). The types differ in the link
they make: runtime.instances.devices.nic_bridged (veth pairs), nic_macvlan and
nic_physical.
"""
from __future__ import annotations

import logging
import secrets

from runtime import proc
from runtime.errors import BadRequest, CommandFailed
from runtime.instances.devices.base import Device, SetVolatile, only_limits_changed

LOG = logging.getLogger(__name__)
VETH_KINDS = ("bridged", "p2p")
PARENT_KINDS = ("bridged", "macvlan", "physical")
LIMIT_KEYS = ("limits.ingress", "limits.egress", "limits.max")
# nic keys accepted by validation (LXD knows them) that this runtime does not
# implement: refused when set, rather than silently ignored.
UNSUPPORTED_NIC_KEYS = ("security.mac_filtering", "security.ipv4_filtering",
                        "security.ipv6_filtering", "security.port_isolation", "vlan",
                        "vlan.tagged", "ipv4.routes", "ipv6.routes", "ipv4.routes.external",
                        "ipv6.routes.external", "ipv6.address", "limits.priority", "gvrp",
                        "acceleration", "queue.tx.length", "maas.subnet.ipv4",
                        "maas.subnet.ipv6")


def nictype(dev: dict) -> str:
    return dev.get("nictype") or "bridged"


def random_hwaddr() -> str:
    return "00:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def missing_hwaddrs(devices: dict, config: dict) -> dict[str, str]:
    """volatile.<nic>.hwaddr for nics that have no MAC yet (LXD's 00:16:3e prefix)."""
    return {f"volatile.{name}.hwaddr": random_hwaddr() for name, dev in devices.items()
            if dev.get("type") == "nic" and not dev.get("hwaddr")
            and f"volatile.{name}.hwaddr" not in config}


def check_nic(name: str, dev: dict) -> None:
    for key in UNSUPPORTED_NIC_KEYS:
        if dev.get(key) not in (None, "", "false"):
            raise BadRequest(f"nic {name!r}: {key!r} is not supported by this runtime")
    if dev.get("ipv4.address") and not dev.get("network"):
        raise BadRequest(f"nic {name!r}: 'ipv4.address' needs a managed 'network'")
    rates = [k for k in LIMIT_KEYS if dev.get(k)]
    if rates and nictype(dev) not in VETH_KINDS:
        raise BadRequest(f"nic {name!r}: limits.ingress/egress need a veth nic "
                         "(bridged or p2p)")
    from runtime.network import tc
    for key in rates:
        try:
            tc.parse_rate(dev[key])
        except ValueError as exc:
            raise BadRequest(f"nic {name!r}: {key}: {exc}")


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


def host_name(inst, name: str, dev: dict) -> str | None:
    """The host end of a veth nic (fixed by the device or chosen at start)."""
    return dev.get("host_name") or inst.config.get(f"volatile.{name}.host_name")


class Nic(Device):
    """A nic; subclasses say which link it is (`_link_lines`, `_make_link`)."""

    def validate(self, name: str, dev: dict) -> None:
        check_nic(name, dev)
        check_parent(name, dev)

    # lxc.conf -------------------------------------------------------------------
    def _link_lines(self, k: str, name: str, dev: dict, volatile: dict) -> list[str]:
        raise BadRequest(f"nic {name!r}: nictype {nictype(dev)!r} is not supported")

    def lxc_config(self, idx: int, name: str, dev: dict, volatile: dict,
                   source: str | None) -> list[str]:
        k = f"lxc.net.{idx}"
        hwaddr = dev.get("hwaddr") or volatile.get(f"volatile.{name}.hwaddr", "")
        lines = self._link_lines(k, name, dev, volatile)
        lines.append(f"{k}.flags = up")
        lines.append(f"{k}.name = {dev.get('name', name)}")
        if hwaddr:
            lines.append(f"{k}.hwaddr = {hwaddr}")
        if dev.get("mtu"):
            lines.append(f"{k}.mtu = {dev['mtu']}")
        return lines

    # Start and stop ---------------------------------------------------------------
    def _managed_networks(self, name: str, dev: dict):
        """The network manager, when the nic's `network` is one of its bridges."""
        nets = self.host.d.networks
        if not nets.managed(dev["network"]):
            raise BadRequest(f"nic {name!r}: network {dev['network']!r} not found")
        return nets

    async def start(self, inst, name: str, dev: dict) -> None:
        """Managed bridges must exist before liblxc attaches veths to them."""
        if not dev.get("network"):
            return
        nets = self._managed_networks(name, dev)
        row = nets.get(dev["network"])
        from runtime.network import netlink
        if not netlink.exists(dev["network"]):
            await nets.bring_up(dev["network"], row["config"])
        hwaddr = dev.get("hwaddr") or inst.config.get(f"volatile.{name}.hwaddr")
        if hwaddr:
            nets.static_lease(dev["network"], inst.name, hwaddr, dev.get("ipv4.address"))

    async def started(self, inst, name: str, dev: dict, pid: int) -> None:
        await self._limits(inst, name, dev)

    async def _limits(self, inst, name: str, dev: dict, force: bool = False) -> None:
        if not (any(dev.get(k) for k in LIMIT_KEYS) or force):
            return
        if nictype(dev) not in VETH_KINDS:
            raise BadRequest(f"nic {name!r}: limits.ingress/egress need a veth nic "
                             "(bridged or p2p)")
        host_if = host_name(inst, name, dev)
        if not host_if:
            return
        from runtime.network import tc
        try:
            await tc.apply(host_if, dev.get("limits.ingress") or dev.get("limits.max"),
                           dev.get("limits.egress") or dev.get("limits.max"))
        except ValueError as exc:
            raise BadRequest(f"nic {name!r}: {exc}")

    async def stop(self, inst, name: str, dev: dict) -> None:
        """The ifb a shaped veth's ingress used goes with the container."""
        from runtime.network import netlink, tc
        host_if = host_name(inst, name, dev)
        if host_if and netlink.exists(tc.ifb_name(host_if)):
            await tc.remove(host_if)

    async def remove(self, inst, name: str, dev: dict) -> None:
        nets = self.host.d.networks
        if dev.get("network") and nets.managed(dev["network"]):
            nets.static_lease(dev["network"], inst.name, None, None)

    # Hot-plug -----------------------------------------------------------------------
    def updatable(self, old: dict, new: dict) -> bool:
        return only_limits_changed(old, new, LIMIT_KEYS)

    async def update(self, inst, pid: int, name: str, old: dict, new: dict) -> bool:
        if not self.updatable(old, new):
            return False
        check_nic(name, new)
        await self._limits(inst, name, new, force=True)
        return True

    async def _make_link(self, inst, name: str, dev: dict, temp: str, hwaddr: str | None,
                         mtu: int | None, volatile: dict) -> tuple[str, list, list[str]]:
        """(the link to move in, netlink calls that make it, links to delete on failure)."""
        raise BadRequest(f"nic {name!r}: nictype {nictype(dev)!r} can't be hot-plugged")

    def _configure(self, ifname: str, hwaddr: str | None, mtu: int | None) -> list[str]:
        """`ip` commands run in the container once the link is in (before `up`)."""
        return []

    async def plug(self, inst, pid: int, name: str, dev: dict,
                   set_volatile: SetVolatile) -> None:
        """Make the link on the host and move it into the container, in one helper run."""
        from runtime.network import netlink
        check_parent(name, dev)
        ifname = dev.get("name", name)
        hwaddr = dev.get("hwaddr") or inst.config.get(f"volatile.{name}.hwaddr")
        mtu = int(dev["mtu"]) if dev.get("mtu") else None
        volatile: dict[str, str] = {}
        if not hwaddr and nictype(dev) != "physical":
            hwaddr = random_hwaddr()
            volatile[f"volatile.{name}.hwaddr"] = hwaddr
        temp = "nlrtmp" + secrets.token_hex(4)
        temp, calls, made = await self._make_link(inst, name, dev, temp, hwaddr, mtu, volatile)
        try:
            await netlink.call(calls + [("move_to_pid", [temp, pid, ifname])])
            cmds = self._configure(ifname, hwaddr, mtu)
            cmds.append(f"link set dev {ifname} up")
            await self.host.in_netns(pid, cmds)
        except Exception:
            for link in made:  # a veth's peer goes with it, wherever it is
                await proc.run(["ip", "link", "del", link], check=False)
            raise
        if volatile:
            set_volatile(volatile)
        await self._limits(inst, name, dev)

    async def _take_out(self, inst, pid: int, name: str, dev: dict) -> None:
        try:
            await self.host.in_netns(pid, [f"link del dev {dev.get('name', name)}"])
        except CommandFailed as exc:
            LOG.warning("instance %s: nic %s was already gone: %s", inst.name, name, exc)

    async def unplug(self, inst, pid: int, name: str, dev: dict,
                     set_volatile: SetVolatile) -> bool:
        await self._take_out(inst, pid, name, dev)
        host_if = host_name(inst, name, dev)
        if host_if:
            from runtime.network import tc
            await tc.remove(host_if)
        set_volatile({f"volatile.{name}.host_name": None,
                      f"volatile.{name}.last_state.hwaddr": None})
        return True


