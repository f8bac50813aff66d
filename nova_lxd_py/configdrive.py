"""Instance identity and addresses for the guest: NoCloud seed, config drive.

The NoCloud seed (``/var/lib/cloud/seed/nocloud`` in the container) is
written through the runtime's file API before the first start: cloud-init
images read meta-data/user-data/network-config, and images without
cloud-init (the bundled busybox image) read ``local-hostname`` from meta-data
and ifupdown stanzas from ``network-interfaces``. When the user asks for a
config drive, nova's own config-drive tree is written to a host directory
mounted read-only at /config-drive.
"""
from __future__ import annotations

import base64
import ipaddress
import os
import shutil
from typing import Any

import yaml

SEED_DIR = "/var/lib/cloud/seed/nocloud"
CONFIG_DRIVE_MOUNT = "/config-drive"


def _subnets(vif: Any) -> list[Any]:
    network = vif.get("network") or {}
    return list(network.get("subnets") or [])


def _fixed_ips(subnet: Any) -> list[str]:
    return [ip["address"] for ip in subnet.get("ips") or []
            if ip.get("type", "fixed") == "fixed"]


def ifupdown(network_info: list[Any]) -> str:
    """ifupdown stanzas (busybox ifup dialect) for the port's fixed IPs.

    Interfaces are eth0, eth1, ... in network_info order, the names the nic
    devices get in the container. Subnets without a fixed IP on the port get
    DHCP (IPv4) so the guest still comes up.
    """
    lines = ["auto lo", "iface lo inet loopback", ""]
    for index, vif in enumerate(network_info or []):
        ifname = f"eth{index}"
        stanzas = []
        for subnet in _subnets(vif):
            cidr = ipaddress.ip_network(subnet["cidr"], strict=False)
            family = "inet6" if cidr.version == 6 else "inet"
            addresses = _fixed_ips(subnet)
            if not addresses:
                if cidr.version == 4:
                    stanzas.append([f"iface {ifname} inet dhcp"])
                continue
            gateway = (subnet.get("gateway") or {}).get("address")
            for n, address in enumerate(addresses):
                netmask = str(cidr.netmask) if cidr.version == 4 else str(cidr.prefixlen)
                stanza = [f"iface {ifname} {family} static",
                          f"    address {address}", f"    netmask {netmask}"]
                if gateway and n == 0:
                    stanza.append(f"    gateway {gateway}")
                dns = [d["address"] for d in subnet.get("dns") or []]
                if dns:
                    stanza.append("    dns-nameservers " + " ".join(dns))
                stanzas.append(stanza)
        if stanzas:
            lines.append(f"auto {ifname}")
            for stanza in stanzas:
                lines.extend(stanza)
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def network_config_v1(network_info: list[Any]) -> dict:
    """cloud-init network config version 1 for the same addresses."""
    config: list[dict] = []
    nameservers: list[str] = []
    for index, vif in enumerate(network_info or []):
        subnets = []
        for subnet in _subnets(vif):
            cidr = ipaddress.ip_network(subnet["cidr"], strict=False)
            addresses = _fixed_ips(subnet)
            gateway = (subnet.get("gateway") or {}).get("address")
            for d in subnet.get("dns") or []:
                if d["address"] not in nameservers:
                    nameservers.append(d["address"])
            if not addresses:
                subnets.append({"type": "dhcp" if cidr.version == 4 else "dhcp6"})
            for n, address in enumerate(addresses):
                entry = {"type": "static", "address": f"{address}/{cidr.prefixlen}"}
                if gateway and n == 0:
                    entry["gateway"] = gateway
                subnets.append(entry)
        config.append({"type": "physical", "name": f"eth{index}",
                       "mac_address": vif.get("address"), "subnets": subnets})
    if nameservers:
        config.append({"type": "nameserver", "address": nameservers})
    return {"version": 1, "config": config}


def user_data(instance: Any) -> bytes:
    """The instance's user data (nova stores it base64) or an empty config."""
    data = getattr(instance, "user_data", None)
    if data:
        try:
            return base64.b64decode(data)
        except (ValueError, TypeError):
            return data.encode() if isinstance(data, str) else data
    return b"#cloud-config\n{}\n"


def nocloud_files(instance: Any, hostname: str, network_info: list[Any]) -> dict[str, bytes]:
    """Path in the container -> content, for the NoCloud seed."""
    meta = {"instance-id": instance.uuid, "local-hostname": hostname}
    key = getattr(instance, "key_data", None)
    if key:
        # Where no metadata service answers (and no config drive was asked
        # for), the seed is all cloud-init has: the keypair must be in it.
        meta["public-keys"] = [key.strip()]
    files = {
        f"{SEED_DIR}/meta-data": yaml.safe_dump(meta, sort_keys=False).encode(),
        f"{SEED_DIR}/user-data": user_data(instance),
        f"{SEED_DIR}/vendor-data": b"",
    }
    if network_info:
        files[f"{SEED_DIR}/network-config"] = yaml.safe_dump(
            network_config_v1(network_info), sort_keys=False).encode()
        files[f"{SEED_DIR}/network-interfaces"] = ifupdown(network_info).encode()
    return files


def hostname_for(instance: Any) -> str:
    """nova's sanitised hostname, else the instance name."""
    return getattr(instance, "hostname", None) or instance.name


def write_config_drive(instance: Any, path: str, network_info: Any,
                       injected_files: list | None, admin_password: str | None) -> None:
    """Write nova's config-drive tree (openstack/ and ec2/) under *path*."""
    from nova.api.metadata import base as instance_metadata

    extra_md = {"admin_pass": admin_password} if admin_password else {}
    md = instance_metadata.InstanceMetadata(
        instance, content=injected_files or [], extra_md=extra_md,
        network_info=network_info)
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for relpath, data in md.metadata_for_config_drive():
        target = os.path.join(tmp, relpath)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(tmp, exist_ok=True)
    os.rename(tmp, path)


def config_drive_device(path: str) -> dict[str, str]:
    return {"type": "disk", "source": path, "path": CONFIG_DRIVE_MOUNT, "readonly": "true"}
