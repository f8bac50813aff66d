"""Managed bridge networks: their records, host bridges, addresses, DHCP and NAT.

A managed network's bridge carries the network's name, as in LXD. Bridges and
dnsmasq outlive a daemon restart (running containers stay connected); the
daemon re-creates whatever is missing when it starts.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import re
import shutil

from runtime import controlchars
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.base import values as cfg
from runtime.network import dnsmasq, nat, netlink

LOG = logging.getLogger(__name__)
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-]{0,14}$")


def _cidr_or_special(v: str) -> None:
    if v in ("none", "auto"):
        return
    try:
        iface = ipaddress.ip_interface(v)
    except ValueError:
        raise ValueError("must be an address in CIDR form (10.0.3.1/24), 'auto' or 'none'")
    if "/" not in v or iface.network.prefixlen == iface.max_prefixlen:
        raise ValueError("needs a prefix length (10.0.3.1/24)")


def _ranges(v: str) -> None:
    for part in v.split(","):
        a, _, b = part.partition("-")
        ipaddress.ip_address(a.strip())
        ipaddress.ip_address(b.strip())


def _mtu(v: str) -> None:
    if not v.isdigit() or not 68 <= int(v) <= 65535:
        raise ValueError("must be an integer 68-65535")


def _hwaddr(v: str) -> None:
    if not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", v):
        raise ValueError("must be a MAC address")


def _dns_domain(v: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9\-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9\-]{0,62})*",
                        v):
        raise ValueError("must be a DNS domain name")


def _lease_time(v: str) -> None:
    if not re.fullmatch(r"\d+[smhdw]?|infinite", v):
        raise ValueError("must be a duration such as 1h, 30m or 'infinite'")


def _interfaces(v: str) -> None:
    for name in v.split(","):
        if name.strip() and not cfg.is_interface_name(name.strip()):
            raise ValueError(f"{name.strip()!r} is not an interface name")


def _address(version: int):
    def check(v: str) -> None:
        try:
            ok = ipaddress.ip_address(v).version == version
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"must be an IPv{version} address")
    return check


BRIDGE_KEYS = {
    "bridge.driver": cfg.one_of("native"), "bridge.mtu": _mtu, "bridge.hwaddr": _hwaddr,
    "bridge.external_interfaces": _interfaces,
    "ipv4.address": _cidr_or_special, "ipv4.nat": cfg.is_bool, "ipv4.dhcp": cfg.is_bool,
    "ipv4.dhcp.ranges": _ranges, "ipv4.dhcp.expiry": _lease_time,
    "ipv4.dhcp.gateway": _address(4), "ipv4.routing": cfg.is_bool,
    "ipv4.firewall": cfg.is_bool,
    "ipv4.nat.address": _address(4), "ipv4.nat.order": cfg.one_of("before", "after"),
    "ipv6.address": _cidr_or_special, "ipv6.nat": cfg.is_bool, "ipv6.dhcp": cfg.is_bool,
    "ipv6.nat.address": _address(6), "ipv6.nat.order": cfg.one_of("before", "after"),
    "ipv6.firewall": cfg.is_bool, "ipv6.routing": cfg.is_bool,
    "dns.domain": _dns_domain, "dns.mode": cfg.one_of("none", "managed", "dynamic"),
    "raw.dnsmasq": cfg.any_value,
}


def validate_config(config: object) -> dict[str, str]:
    if not isinstance(config, dict):
        raise BadRequest("Invalid network config: must be an object")
    out = {}
    for key, value in config.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(key, str) or not isinstance(value, str):
            raise BadRequest(f"Invalid network config key {key!r}: values are strings")
        controlchars.check_key(key, "network config")
        controlchars.check_value(key, value, "network config")
        check = BRIDGE_KEYS.get(key)
        if check is None and not key.startswith(("user.", "volatile.")):
            raise BadRequest(f"Unknown network config key: {key!r}")
        if check and value != "":
            try:
                check(value)
            except ValueError as exc:
                raise BadRequest(f"Invalid value for network config key {key!r}: {exc}")
        out[key] = value
    return out


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(f"Invalid network name {name!r}: 1-15 letters, digits, '-', '_' "
                         "or '.', starting with a letter (it is the host interface name)")
    return name


def _used_subnets() -> list:
    nets = []
    for cidr in netlink.all_addresses():
        try:
            nets.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    return nets


def auto_ipv4() -> str:
    """A free 10.x.y.1/24, checked against every address on the host."""
    used = _used_subnets()
    rnd = random.Random()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return f"{next(net.hosts())}/24"
    raise BadRequest("No free IPv4 subnet found for ipv4.address=auto")


class Networks:
    def __init__(self, daemon):
        self.d = daemon
        self.base = os.path.join(daemon.paths.lxd_dir, "networks")
        # Network changes run one at a time: two creations of one name, or an
        # update racing a delete, must not interleave their host-side steps.
        self.lock = asyncio.Lock()

    def rundir(self, name: str) -> str:
        return os.path.join(self.base, name)

    def get(self, name: str) -> dict:
        row = self.d.network_rows.get(name)
        if row is None:
            raise NotFound(f"Network {name!r} not found")
        return row

    def managed(self, name: str) -> dict | None:
        return self.d.network_rows.get(name)

    def used_by(self, name: str) -> list[str]:
        out = []

        def refers(devices: dict) -> bool:
            return any(dev.get("type") == "nic" and (
                dev.get("network") == name or (dev.get("nictype") in ("bridged", "macvlan")
                                               and dev.get("parent") == name))
                for dev in devices.values())
        for row in self.d.profile_rows.list():
            if refers(row["devices"]):
                suffix = "" if row["project"] == "default" else f"?project={row['project']}"
                out.append(f"/1.0/profiles/{row['name']}{suffix}")
        for inst in self.d.instances.list(None):
            if refers(inst.expanded_devices):
                out.append(inst.url)
        return sorted(out)

    # Host side -----------------------------------------------------------------
    def _apply(self, name: str, config: dict) -> None:
        """Bring the host in line with the config: bridge, addresses, dnsmasq, NAT."""
        addrs = [config[k] for k in ("ipv4.address", "ipv6.address")
                 if config.get(k) not in (None, "", "none", "auto")]
        calls = [("ensure_bridge", [name, int(config["bridge.mtu"]) if config.get("bridge.mtu")
                                    else None, config.get("bridge.hwaddr")]),
                 ("set_addresses", [name, addrs])]
        for ext in (config.get("bridge.external_interfaces") or "").split(","):
            if ext.strip():
                calls.append(("set_master", [ext.strip(), name]))
        try:
            netlink.call_sync(calls)
        except RuntimeError as exc:
            raise BadRequest(f"Network {name!r}: {exc}")
        v4 = config.get("ipv4.address")
        if v4 and v4 != "none" and cfg.truthy(config.get("ipv4.dhcp", "true")):
            try:
                dnsmasq.start(name, self.rundir(name), config)
            except (RuntimeError, OSError) as exc:
                raise BadRequest(f"Network {name!r}: DHCP server failed to start: {exc}")
        else:
            dnsmasq.stop(self.rundir(name), name)

    async def bring_up(self, name: str, config: dict) -> None:
        # Blocking work (netlink helper, dnsmasq start) runs off the event loop.
        await asyncio.to_thread(self._apply, name, config)
        await asyncio.to_thread(nat.apply, name, config)

    def restore_all(self) -> None:
        """At daemon start: re-create bridges lost (host reboot) and dead dnsmasqs.

        Called before the daemon serves; the blocking work runs in a worker thread.
        """
        import threading
        rows = self.d.network_rows.list()
        t = threading.Thread(target=self._restore_all, args=(rows,), name="network-restore")
        t.start()
        t.join()

    def _restore_all(self, rows: list[dict]) -> None:
        for row in rows:
            try:
                if not netlink.exists(row["name"]) or (
                        row["config"].get("ipv4.address", "none") != "none"
                        and cfg.truthy(row["config"].get("ipv4.dhcp", "true"))
                        and not dnsmasq.pid_of(self.rundir(row["name"]), row["name"])):
                    self._apply(row["name"], row["config"])
                if nat.postrouting_rules(row["config"]) and not nat.present(row["name"]):
                    nat.apply(row["name"], row["config"])  # rules are lost on reboot
            except Exception as exc:  # noqa: BLE001 - one broken network must not stop the daemon
                LOG.error("network %s could not be restored: %s", row["name"], exc)

    # API-facing --------------------------------------------------------------
    async def create(self, name: object, ntype: str, description: str, config: object) -> None:
        async with self.lock:
            name = validate_name(name)
            if ntype not in ("bridge", ""):
                raise BadRequest(f"Network type {ntype!r} is not supported (only 'bridge')")
            config = validate_config(config or {})
            if self.managed(name):
                raise Conflict(f"Network {name!r} already exists")
            if netlink.exists(name):
                raise Conflict(f"Interface {name!r} already exists on the host")
            config.setdefault("ipv4.address", "auto")
            config.setdefault("ipv6.address", "none")
            if config["ipv4.address"] == "auto":
                config["ipv4.address"] = await asyncio.to_thread(auto_ipv4)
            if config["ipv4.address"] != "none":
                config.setdefault("ipv4.nat", "false")
            try:
                await self.bring_up(name, config)
            except BaseException:
                await asyncio.to_thread(self._teardown, name)
                raise
            self.d.network_rows.create(name, description, config)
            self.d.bus.lifecycle("network-created", f"/1.0/networks/{name}", "default")
            LOG.info("network %s created (%s)", name, config.get("ipv4.address"))

    async def update(self, name: str, config: object, description: str | None,
                     patch: bool) -> None:
        async with self.lock:
            row = self.get(name)
            config = validate_config(config if config is not None else
                                     ({} if not patch else row["config"]))
            if patch:
                config = {**row["config"], **config}
            if config.get("ipv4.address") == "auto":
                config["ipv4.address"] = row["config"].get("ipv4.address") \
                    if row["config"].get("ipv4.address") not in (None, "auto") \
                    else await asyncio.to_thread(auto_ipv4)
            config.setdefault("ipv4.address", "none")
            await self.bring_up(name, config)
            self.d.network_rows.update(name, config=config,
                                       description=row["description"] if description is None
                                       else description)
            self.d.bus.lifecycle("network-updated", f"/1.0/networks/{name}", "default")

    def _teardown(self, name: str) -> None:
        dnsmasq.stop(self.rundir(name), name)
        if netlink.exists(name):
            netlink.call_sync([("delete", [name])])
        shutil.rmtree(self.rundir(name), ignore_errors=True)

    async def delete(self, name: str) -> None:
        async with self.lock:
            self.get(name)
            used = self.used_by(name)
            if used:
                raise BadRequest(f"Network {name!r} is in use by {', '.join(used)}")
            await asyncio.to_thread(nat.remove, name)
            await asyncio.to_thread(self._teardown, name)
            self.d.network_rows.delete(name)
            self.d.bus.lifecycle("network-deleted", f"/1.0/networks/{name}", "default")

    async def rename(self, name: str, new: object) -> None:
        async with self.lock:
            row = self.get(name)
            new = validate_name(new)
            if self.managed(new) or netlink.exists(new):
                raise Conflict(f"Network {new!r} already exists")
            if self.used_by(name):
                raise BadRequest(f"Network {name!r} is in use: it can only be renamed unused")
            dnsmasq.stop(self.rundir(name), name)
            await asyncio.to_thread(nat.remove, name)
            await netlink.call([("rename", [name, new])])
            if os.path.isdir(self.rundir(name)):
                os.rename(self.rundir(name), self.rundir(new))
            self.d.network_rows.rename(name, new)
            await self.bring_up(new, row["config"])
            self.d.bus.lifecycle("network-renamed", f"/1.0/networks/{new}", "default",
                                 {"old_name": name})

    def render(self, name: str) -> dict:
        row = self.managed(name)
        if row is not None:
            return {"name": name, "description": row["description"], "type": row["type"],
                    "managed": True, "status": row["status"], "config": row["config"],
                    "used_by": self.used_by(name), "locations": ["none"]}
        if not netlink.exists(name):
            raise NotFound(f"Network {name!r} not found")
        return {"name": name, "description": "", "type": netlink.kind(name), "managed": False,
                "status": "", "config": {}, "used_by": self.used_by(name), "locations": []}

    def names(self) -> list[str]:
        return sorted(set(netlink.host_links()) | set(self.d.network_rows.names()))

    async def state(self, name: str) -> dict:
        if not netlink.exists(name):
            raise NotFound(f"Network {name!r} not found")
        return await asyncio.to_thread(netlink.link_info, name)

    def leases(self, name: str) -> list[dict]:
        self.get(name)
        return dnsmasq.leases(self.rundir(name))

    def static_lease(self, network: str, instance: str, hwaddr: str | None,
                     address: str | None) -> None:
        """Pin (or forget) an instance's DHCP host entry: its name, and its
        nic's ipv4.address when set, so dnsmasq hands out what the config says."""
        path = os.path.join(self.rundir(network), "dnsmasq.hosts")
        try:
            with open(path) as f:
                lines = [ln for ln in f.read().splitlines()
                         if ln and ln.split(",")[-1] != instance
                         and (not hwaddr or ln.split(",")[0].lower() != hwaddr.lower())]
        except FileNotFoundError:
            lines = []
        if hwaddr:
            lines.append(",".join([hwaddr] + ([address] if address else []) + [instance]))
        os.makedirs(self.rundir(network), exist_ok=True)
        controlchars.check_generated(lines, "dnsmasq hosts")
        with open(path + ".tmp", "w") as f:
            f.write("".join(ln + "\n" for ln in lines))
        os.replace(path + ".tmp", path)
        dnsmasq.reload_hosts(self.rundir(network), network)

    def bridge_for(self, dev: dict) -> str | None:
        """The host bridge a bridged nic joins: its managed network or its parent."""
        if dev.get("network"):
            self.get(dev["network"])
            return dev["network"]
        return dev.get("parent")
