"""physical nics: a host link (`parent`) moved into the container, and given back
on unplug under its own name and MAC address (the old one is kept in
`volatile.<nic>.last_state.hwaddr` while the container holds it)."""
from __future__ import annotations

import os

from runtime.instances.devices.nic import Nic


class PhysicalNic(Nic):
    def _link_lines(self, k: str, name: str, dev: dict, volatile: dict) -> list[str]:
        return [f"{k}.type = phys", f"{k}.link = {dev['parent']}"]

    async def _make_link(self, inst, name: str, dev: dict, temp: str, hwaddr: str | None,
                         mtu: int | None, volatile: dict) -> tuple[str, list, list[str]]:
        from runtime.network import netlink
        if hwaddr:
            volatile[f"volatile.{name}.last_state.hwaddr"] = netlink.link_info(
                dev["parent"]).get("hwaddr", "")
        return dev["parent"], [], []

    def _configure(self, ifname: str, hwaddr: str | None, mtu: int | None) -> list[str]:
        cmds = []
        if hwaddr:
            cmds.append(f"link set dev {ifname} address {hwaddr}")
        if mtu:
            cmds.append(f"link set dev {ifname} mtu {mtu}")
        return cmds

    async def _take_out(self, inst, pid: int, name: str, dev: dict) -> None:
        ifname = dev.get("name", name)
        cmds = [f"link set dev {ifname} down"]
        old_hw = inst.config.get(f"volatile.{name}.last_state.hwaddr")
        if old_hw:
            cmds.append(f"link set dev {ifname} address {old_hw}")
        cmds += [f"link set dev {ifname} name {dev['parent']}",
                 f"link set dev {dev['parent']} netns {os.getpid()}"]
        await self.host.in_netns(pid, cmds)
