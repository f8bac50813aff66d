"""Outbound NAT of a managed bridge: one nftables table per network.

LXD masquerades a bridge's subnet when ``ipv4.nat``/``ipv6.nat`` is true, or
rewrites the source to ``ipv4.nat.address``/``ipv6.nat.address`` when set, and
turns on forwarding for that family. We keep each network's rules in a table of
its own in the ``inet`` family, so one atomic ``nft -f`` transaction replaces
them (add, delete, add: the first line makes the delete safe when the table
does not exist yet) and deleting the network is deleting its table.

Unlike LXD, forwarding is only switched on when NAT is: routing a private
subnet out unrewritten leads nowhere, and a host should not start forwarding
because somebody made a bridge.
"""
from __future__ import annotations

import ipaddress
import subprocess

from runtime.errors import BadRequest
from runtime.base import values as cfg

FAMILIES = (("ipv4", "ip", 4), ("ipv6", "ip6", 6))
FORWARDING = {4: "/proc/sys/net/ipv4/ip_forward", 6: "/proc/sys/net/ipv6/conf/all/forwarding"}


def table_name(network: str) -> str:
    return "nlr_" + network.replace("-", "_").replace(".", "_")


def _subnet(address: str | None) -> str | None:
    if not address or address in ("none", "auto"):
        return None
    return str(ipaddress.ip_interface(address).network)


def postrouting_rules(config: dict) -> list[str]:
    """One rule per family with NAT on: only the network's own subnet leaving it."""
    rules = []
    for key, match, _version in FAMILIES:
        subnet = _subnet(config.get(f"{key}.address"))
        if subnet is None or not cfg.truthy(config.get(f"{key}.nat")):
            continue
        source = config.get(f"{key}.nat.address")
        action = f"snat {match} to {source}" if source else "masquerade"
        rules.append(f"{match} saddr {subnet} {match} daddr != {subnet} {action}")
    return rules


def ruleset(network: str, config: dict) -> str:
    """The whole nft script for *network*: replace its table (or just drop it)."""
    table = f"table inet {table_name(network)}"
    lines = [table, f"delete {table}"]
    rules = postrouting_rules(config)
    if rules:
        lines += [f"{table} {{",
                  "  chain postrouting {",
                  "    type nat hook postrouting priority srcnat; policy accept;",
                  *(f"    {rule}" for rule in rules),
                  "  }",
                  "}"]
    return "\n".join(lines) + "\n"


def families_on(config: dict) -> list[int]:
    return [version for key, _match, version in FAMILIES
            if _subnet(config.get(f"{key}.address")) and cfg.truthy(config.get(f"{key}.nat"))
            and cfg.truthy(config.get(f"{key}.routing", "true"))]


def _enable_forwarding(versions: list[int]) -> None:
    for version in versions:
        with open(FORWARDING[version], "w") as f:
            f.write("1\n")


def apply(network: str, config: dict) -> None:
    """Bring the network's NAT table in line with *config* (blocking: call it
    from a worker thread)."""
    run = subprocess.run(["nft", "-f", "-"], input=ruleset(network, config), text=True,
                         capture_output=True)
    if run.returncode != 0:
        raise BadRequest(f"Network {network!r}: NAT rules were refused by nft: "
                         f"{run.stderr.strip()[-500:]}")
    # Tables of earlier versions lived in the ip family.
    subprocess.run(["nft", "delete", "table", "ip", table_name(network)],
                   capture_output=True, check=False)
    _enable_forwarding(families_on(config))


def remove(network: str) -> None:
    for family in ("inet", "ip"):
        subprocess.run(["nft", "delete", "table", family, table_name(network)],
                       capture_output=True, check=False)


def present(network: str) -> bool:
    return subprocess.run(["nft", "list", "table", "inet", table_name(network)],
                          capture_output=True, check=False).returncode == 0
