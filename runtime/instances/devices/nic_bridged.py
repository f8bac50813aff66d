"""veth nics: `bridged` (the host end joins a bridge: a managed network or a
`parent`) and `p2p` (the host end stays alone, for a caller to wire, as os-vif and
the driver do). The host end's name is fixed by `host_name` or chosen at start and
kept in `volatile.<nic>.host_name`; rate limits shape it with tc.
"""
from __future__ import annotations

import secrets

from runtime.errors import BadRequest
from runtime.instances.devices.nic import Nic


class P2pNic(Nic):
    bridged = False

    def _link_lines(self, k: str, name: str, dev: dict, volatile: dict) -> list[str]:
        lines = [f"{k}.type = veth"]
        if self.bridged:
            parent = dev.get("parent") or dev.get("network")
            if not parent:
                raise BadRequest(f"nic {name!r}: bridged needs 'parent' or 'network'")
            lines.append(f"{k}.link = {parent}")
        host_name = dev.get("host_name") or volatile.get(f"volatile.{name}.host_name")
        if host_name:
            lines.append(f"{k}.veth.pair = {host_name}")
        return lines

    async def _make_link(self, inst, name: str, dev: dict, temp: str, hwaddr: str | None,
                         mtu: int | None, volatile: dict) -> tuple[str, list, list[str]]:
        bridge = None
        if self.bridged:
            if dev.get("network"):
                self._managed_networks(name, dev)
            bridge = self.host.d.networks.bridge_for(dev)
        host_if = dev.get("host_name") or "veth" + secrets.token_hex(4)
        if not dev.get("host_name"):
            volatile[f"volatile.{name}.host_name"] = host_if
        return temp, [("create_veth", [host_if, temp, bridge, hwaddr, mtu])], [host_if]


class BridgedNic(P2pNic):
    bridged = True
