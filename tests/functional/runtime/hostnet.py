"""Test hosts, each in its own network namespace, on one bridge.

Why: on a real cloud each runtime listens on its own host's address and a
migration's data crosses the network from one host to the other. Here each
runtime daemon runs in a network namespace of its own (``nsenter --net``: only
the network is separate, mounts and cgroups stay the machine's), with a veth
to a bridge in the machine's namespace, so the destination runtime pulls a
migrating container from the source runtime's address over that bridge.

Names carry a prefix (the runtime's multi-host tests use ``mg``) and a random
tag; the subnet is a /24 of a /16 chosen from the tag. Everything is removed by
``destroy``.
"""
from __future__ import annotations

import secrets
import subprocess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class HostNetwork:
    """A bridge plus one namespace (with a veth on the bridge) per host."""

    def __init__(self, prefix: str = "mg", net: str = "10.218",
                 reach_from_machine: bool = False) -> None:
        """Names start with *prefix*; the subnet is a /24 of *net*.0.0/16. With
        *reach_from_machine* the bridge gets the subnet's .254, so processes in the
        machine's namespace (a test, say) reach the hosts too."""
        self.prefix = prefix
        self.tag = secrets.token_hex(3)
        self.bridge = f"{prefix}br{self.tag}"
        self.subnet = f"{net}.{10 + int(self.tag, 16) % 240}"
        self.reach_from_machine = reach_from_machine
        self.namespaces: list[str] = []
        self._made_bridge = False

    def add_host(self, index: int) -> tuple[str, str]:
        """Create host *index*'s namespace; return (namespace, its address)."""
        if not self._made_bridge:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made_bridge = True
            # By default no address on the bridge: only the hosts talk over it,
            # and the machine's own routing stays untouched (two clouds at once
            # may even draw the same subnet without noticing each other).
            if self.reach_from_machine:
                _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        tag = f"{self.prefix}{self.tag}"
        ns = f"{tag}n{index}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        host_end, ns_end = f"{tag}h{index}", f"{tag}c{index}"
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", ns)
        _ip("link", "set", host_end, "master", self.bridge, "up")
        address = f"{self.subnet}.{index + 1}"
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", ns_end)
        _ip("-n", ns, "link", "set", ns_end, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns, address

    @staticmethod
    def wrap(namespace: str, argv: list[str]) -> list[str]:
        """*argv* run inside *namespace*'s network only."""
        return ["nsenter", f"--net=/run/netns/{namespace}", "--", *argv]

    def names(self) -> list[tuple[str, str]]:
        """(kind, name) of everything made, for the leftovers record."""
        made = [("netns", ns) for ns in self.namespaces]
        return made + ([("bridge", self.bridge)] if self._made_bridge else [])

    def destroy(self) -> None:
        """Remove namespaces (their veth ends go with them) and the bridge."""
        remove(self.names())
        self.namespaces = []
        self._made_bridge = False


def remove(names: list[tuple[str, str]]) -> None:
    for kind, name in names:
        if kind == "netns":
            _ip("netns", "del", name, check=False)
        elif kind == "bridge":
            _ip("link", "del", name, check=False)

