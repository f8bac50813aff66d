"""macvlan nics: a link of the container's own on a host `parent` (mode `bridge`
unless set), with its own MAC address."""
from __future__ import annotations

from runtime.instances.devices.nic import Nic


class MacvlanNic(Nic):
    def _link_lines(self, k: str, name: str, dev: dict, volatile: dict) -> list[str]:
        return [f"{k}.type = macvlan", f"{k}.macvlan.mode = {dev.get('mode', 'bridge')}",
                f"{k}.link = {dev['parent']}"]

    async def _make_link(self, inst, name: str, dev: dict, temp: str, hwaddr: str | None,
                         mtu: int | None, volatile: dict) -> tuple[str, list, list[str]]:
        return temp, [("create_macvlan", [temp, dev["parent"], dev.get("mode", "bridge"),
                                          hwaddr, mtu])], [temp]
