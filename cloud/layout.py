"""Every name, path and address of the cloud, in one place.

Why fixed names: there is one cloud per machine, and ``down`` (or an ``up``
after a crash) must find everything a previous run made without a record that
may itself have been lost. Every network object carries the ``nlxc`` prefix,
which nothing else on the machine uses; addresses come from 10.231.0.0/24
(management), 10.232.0.0/24 (VXLAN underlay) and 172.24.4.0/24 (the external
network whose floating IPs the machine reaches).
"""
from __future__ import annotations

import dataclasses
import os
import sys

PREFIX = "nlxc"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.environ.get("NLX_CLOUD_DIR", "/var/lib/nova-lxd-cloud")
CACHE = os.path.join(REPO, ".cache", "cloud")
VENV_BIN = os.path.dirname(sys.executable)

# The management network: control services listen on MGMT_IP, which every
# namespace reaches over a veth on MGMT_BRIDGE (and the machine itself).
MGMT_BRIDGE = f"{PREFIX}-mgmt"
MGMT_NET = "10.231.0"
MGMT_IP = f"{MGMT_NET}.1"
# The VXLAN underlay: a second bridge, whose namespace ends are ports of each
# namespace's OVS bridge br-phy (userspace tunnelling needs the tunnel
# endpoint address on an OVS bridge).
TUN_BRIDGE = f"{PREFIX}-tun"
TUN_NET = "10.232.0"
# The external network `public`: a veth from the machine (EXT_IP) to br-ex on
# the network node. No gateway: floating IPs are reachable from the machine,
# nothing is routed beyond it.
EXT_VETH = f"{PREFIX}-ext"
EXT_PEER = f"{PREFIX}-extp"
EXT_NET = "172.24.4"
EXT_IP = f"{EXT_NET}.1"
EXT_CIDR = f"{EXT_NET}.0/24"
EXT_POOL = (f"{EXT_NET}.10", f"{EXT_NET}.250")
PRIVATE_CIDR = "10.0.0.0/24"
PHYSNET = "public"

PORTS = {
    "keystone": 5000, "glance": 9292, "placement": 8778, "nova-api": 8774,
    "nova-metadata": 8775, "neutron-api": 9696, "mysql": 3306, "rabbitmq": 5672,
    "memcached": 11211, "horizon": 8080, "nova-serialproxy": 6083,
}

ADMIN_PASSWORD = "nlxc-admin"
MEMBER_USER = "demo"
MEMBER_PROJECT = "demo"
MEMBER_PASSWORD = "nlxc-demo"
SERVICE_PASSWORD = "nlxc-service"
DB_USER = "nlxc"
DB_PASSWORD = "nlxc-db"
RABBIT_USER = "nlxc"
RABBIT_PASSWORD = "nlxc-rabbit"
METADATA_SECRET = "nlxc-metadata"
REGION = "RegionOne"


@dataclasses.dataclass(frozen=True)
class Node:
    """A network namespace of the cloud: the network node or a compute host."""

    name: str     # namespace name, nova/neutron host name
    index: int    # last octet of its management and underlay addresses

    @property
    def mgmt_ip(self) -> str:
        return f"{MGMT_NET}.{self.index}"

    @property
    def tun_ip(self) -> str:
        return f"{TUN_NET}.{self.index}"

    @property
    def short(self) -> str:
        return self.name.removeprefix(PREFIX + "-")

    @property
    def mgmt_veth(self) -> str:
        """Its veth's end on the management bridge (machine side)."""
        return f"{PREFIX}m-{self.short}"[:15]

    @property
    def tun_veth(self) -> str:
        return f"{PREFIX}t-{self.short}"[:15]

    @property
    def ovs_dir(self) -> str:
        """Its Open vSwitch database, sockets and pid files."""
        return os.path.join(STATE, "ovs", self.name)

    @property
    def is_compute(self) -> bool:
        return self.name != NETWORK_NODE.name


NETWORK_NODE = Node(f"{PREFIX}-net", 2)


# Host N is .(10 + N) on the management and underlay /24s.
MAX_HOSTS = 244


def compute_node(number: int) -> Node:
    """Compute host *number* (1-based)."""
    return Node(f"{PREFIX}-host{number}", 10 + number)


def path(*parts: str) -> str:
    return os.path.join(STATE, *parts)


def etc(service: str, *parts: str) -> str:
    return path("etc", service, *parts)


def log(name: str) -> str:
    return path("logs", f"{name}.log")


def host_dir(node: Node, *parts: str) -> str:
    """A compute host's own state: its runtime's LXD_DIR and nova's state_path."""
    return path("hosts", node.name, *parts)


def runtime_dir(node: Node) -> str:
    return host_dir(node, "lxd")


def runtime_socket(node: Node) -> str:
    return os.path.join(runtime_dir(node), "unix.socket")


def url(service: str, suffix: str = "") -> str:
    return f"http://{MGMT_IP}:{PORTS[service]}{suffix}"


def bin_(name: str) -> str:
    """A console script of the virtualenv the cloud runs from."""
    return os.path.join(VENV_BIN, name)
