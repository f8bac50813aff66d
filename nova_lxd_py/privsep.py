"""Privileged helpers of the driver (oslo.privsep).

nova-compute normally runs unprivileged; creating veth pairs, enslaving
them to bridges and changing their offloads needs CAP_NET_ADMIN. Only the
few netlink and ethtool calls below cross the privilege boundary, with
plain-data arguments. nova-compute starts the helper like nova's own
contexts: ``sudo privsep-helper ... --privsep_context
nova_lxd_py.privsep.net_pctxt``, or through rootwrap with
``etc/nova/rootwrap.d/nova-lxd-py.filters`` (see the README). Open vSwitch
ports also use os-vif's own context, ``vif_plug_ovs.privsep.vif_plug``.
"""
from __future__ import annotations

from oslo_privsep import capabilities, priv_context

net_pctxt = priv_context.PrivContext(
    "nova_lxd_py",
    cfg_section="nova_lxd_py_privileged",
    pypath=__name__ + ".net_pctxt",
    capabilities=[capabilities.CAP_NET_ADMIN],
)


def _ipr():
    from pyroute2 import IPRoute

    return IPRoute()


def _index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


@net_pctxt.entrypoint
def create_veth(host_name: str, peer_name: str, mtu: int | None = None,
                bridge: str | None = None, address: str | None = None,
                tx_checksum: bool = True) -> None:
    """veth pair: host end up (on *bridge* if given), peer for the container.

    Idempotent: nova plugs again at power-on and for every running instance
    when nova-compute starts. An existing host end is kept as it is, its peer
    may be inside the running container. *tx_checksum* False makes the peer
    compute its own checksums (see vif.translate.Plan)."""
    with _ipr() as ipr:
        if _index(ipr, host_name) is None:
            ipr.link("add", ifname=host_name, kind="veth", peer=peer_name)
        host = _index(ipr, host_name)
        peer = _index(ipr, peer_name)
        if mtu:
            ipr.link("set", index=host, mtu=mtu)
            if peer is not None:
                ipr.link("set", index=peer, mtu=mtu)
        if address and peer is not None:
            ipr.link("set", index=peer, address=address)
        if bridge:
            ipr.link("set", index=host, master=_index(ipr, bridge))
        ipr.link("set", index=host, state="up")
    if not tx_checksum and peer is not None:
        _tx_checksum_off(peer_name)


def _tx_checksum_off(name: str) -> None:
    """ethtool -K <name> tx off: every tx-checksum-* feature the device has on.
    The setting stays with the device when the runtime moves it into the
    container."""
    from pyroute2.ethtool import Ethtool

    ethtool = Ethtool()
    try:
        features = ethtool.get_features(name)
        changed = False
        for key, feature in features.features.items():
            if key.startswith("tx-checksum") and feature.enable:
                feature.enable = False
                changed = True
        if changed:
            ethtool.set_features(name, features)
    finally:
        ethtool.close()


@net_pctxt.entrypoint
def delete_link(name: str) -> None:
    """Delete an interface (its veth peer goes with it); absent is fine."""
    with _ipr() as ipr:
        index = _index(ipr, name)
        if index is not None:
            ipr.link("del", index=index)


@net_pctxt.entrypoint
def link_exists(name: str) -> bool:
    with _ipr() as ipr:
        return _index(ipr, name) is not None


@net_pctxt.entrypoint
def shape_egress(name: str, kbit: int) -> None:
    """Token bucket on the host end's egress = the instance's inbound rate."""
    with _ipr() as ipr:
        index = _index(ipr, name)
        if index is None:
            return
        try:
            ipr.tc("del", index=index, handle="1:")
        except Exception:  # noqa: BLE001 - no qdisc of ours yet
            pass
        burst = max(kbit * 1000 // 8 // 10, 16 * 1024)  # 100 ms worth, >= 16 KiB
        ipr.tc("add", "tbf", index=index, handle="1:", rate=f"{kbit}kbit", burst=burst,
               latency="50ms")


# Storage: growing the filesystem of a volume the container has mounted, after
# Cinder extended the volume (the container can't: it has no device access).
storage_pctxt = priv_context.PrivContext(
    "nova_lxd_py",
    cfg_section="nova_lxd_py_storage_privileged",
    pypath=__name__ + ".storage_pctxt",
    # CAP_SYS_RESOURCE: ext4's online resize (EXT4_IOC_RESIZE_FS) asks for it
    capabilities=[capabilities.CAP_SYS_ADMIN, capabilities.CAP_DAC_OVERRIDE,
                  capabilities.CAP_SYS_RESOURCE],
)


@storage_pctxt.entrypoint
def grow_filesystem(device: str) -> None:
    """Grow the (mounted) ext2/3/4 or xfs filesystem on device to the device's size."""
    import subprocess

    if not device.startswith("/dev/"):
        raise ValueError(f"{device!r} is not a device path")
    kind = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", device], check=True,
                          capture_output=True, text=True).stdout.strip()
    if kind in ("ext2", "ext3", "ext4"):
        done = subprocess.run(["resize2fs", device], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"resize2fs {device} failed ({done.returncode}): "
                               f"{(done.stdout + done.stderr).strip()[-500:]}")
    elif kind == "xfs":
        with open("/proc/self/mounts") as mounts:
            mounted = [line.split()[1] for line in mounts if line.split()[0] == device]
        if not mounted:
            raise ValueError(f"xfs on {device} is not mounted: it can only grow mounted")
        subprocess.run(["xfs_growfs", mounted[0]], check=True, capture_output=True)
    else:
        raise ValueError(f"can't grow a {kind or 'unknown'} filesystem on {device}")
