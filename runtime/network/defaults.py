"""What networking gives a state directory: seed profiles and the opt-in default bridge.

The default managed bridge is opt-in. LXD makes `lxdbr0` on first start; doing
that unasked on a shared host (or in every test's throwaway state directory)
would leave bridges behind. Set NOVA_LXD_RUNTIME_BRIDGE=<name>[=<ipv4 cidr>]
(for example `lxdbr0=10.0.3.1/24`, or just `lxdbr0` for an automatic subnet):
on a state directory whose default profile has no nic yet, the daemon then
creates that bridge and gives the `default` profile an `eth0` on it, once.
"""
import logging
import os

from runtime.db.profiles import Profiles

LOG = logging.getLogger(__name__)
ENV_BRIDGE = "NOVA_LXD_RUNTIME_BRIDGE"

# LXD's docker profile: nesting plus the syscall interceptions Docker's overlay and
# device handling want; no devices are needed (fuse and tun are bound when present).
DOCKER_PROFILE = {
    "security.nesting": "true",
    "security.syscalls.intercept.mknod": "true",
    "security.syscalls.intercept.setxattr": "true",
}


def seed_profiles(profiles: Profiles) -> None:
    """LXD's `docker` profile, once."""
    if not profiles.exists("default", "docker"):
        profiles.create("default", "docker", "Profile supporting docker in containers",
                        config=DOCKER_PROFILE, devices={})


async def default_network(d) -> None:
    spec = os.environ.get(ENV_BRIDGE, "").strip()
    if not spec:
        return
    name, _, cidr = spec.partition("=")
    profile = d.profile_rows.get("default", "default")
    if profile is None or any(dev.get("type") == "nic" for dev in profile["devices"].values()):
        return
    marker = os.path.join(d.paths.lxd_dir, "networks", ".default-created")
    if os.path.exists(marker):
        return
    if not d.networks.managed(name):
        await d.networks.create(name, "bridge", "Default bridge (NOVA_LXD_RUNTIME_BRIDGE)",
                                {"ipv4.address": cidr or "auto"})
    devices = dict(profile["devices"])
    devices["eth0"] = {"type": "nic", "name": "eth0", "network": name}
    d.profile_rows.set_devices("default", "default", devices)
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    open(marker, "w").close()
    LOG.info("default network %s created; default profile has eth0 on it", name)
