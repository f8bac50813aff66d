"""The service table: every process of the cloud, how it starts, when it is up.

One entry per process, in start order. The supervisor configuration
(supervisor.py) and systemd units (systemd.py) are both generated from it,
so a service is defined once. Each entry names the network namespace it
runs in (None: the machine's), its log file and its readiness check.

nova-serialproxy (users' serial consoles) and Horizon (the dashboard) are
control services next to nova-api.
"""
from __future__ import annotations

import dataclasses
import os

from cloud import config, layout, readiness
from cloud.layout import Node
from cloud.readiness import Check

IP = layout.MGMT_IP


@dataclasses.dataclass
class Service:
    name: str
    argv: list[str]
    ready: Check
    group: str                       # infra, control, network, compute
    namespace: str | None = None     # network namespace (cloud/ns-exec)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    user: str | None = None
    timeout: float = 90.0            # seconds to become ready
    # Seconds between SIGTERM and SIGKILL: short, a test cloud loses nothing
    # when a service is killed (MariaDB and RabbitMQ get longer).
    stop_wait: int = 5
    # Files it reads that its command line does not name (Horizon's settings).
    config_files: list[str] = dataclasses.field(default_factory=list)

    @property
    def log(self) -> str:
        return layout.log(self.name)

    def reads(self, path: str) -> bool:
        """Whether *path* is one of its configuration files (named on its
        command line, or in a configuration directory its environment names)."""
        words = [*self.argv, *self.env.values()]
        return (path in words or os.path.dirname(path) in words
                or path in self.config_files)

    @property
    def command(self) -> list[str]:
        """The full command line, entering the namespace first (``ns-exec``:
        the namespace's network and its own /sys, the machine's cgroups)."""
        if not self.namespace:
            return self.argv
        return [NS_EXEC, self.namespace, *self.argv]


NS_EXEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ns-exec")


def _path_env() -> dict[str, str]:
    # Services find privsep-helper, neutron's helpers and ovs tools on PATH.
    return {"PATH": f"{layout.VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                    "/sbin:/bin"}


def wsgi(name: str, app: str, port: int, env: dict[str, str], path: str = "/") -> Service:
    """An API served by gunicorn (nova 34, Glance 33 and Neutron 29 ship no API
    server of their own, only WSGI applications). Pure Python, so nothing to
    compile against the virtualenv's interpreter; one worker with a few threads
    keeps memory low; long timeouts for image uploads."""
    conf = os.path.join(os.path.dirname(__file__), "gunicorn_conf.py")
    argv = [layout.bin_("gunicorn"), "--config", conf, "--bind", f"{IP}:{port}", "--workers", "1",
            "--worker-class", "gthread", "--threads", "4", "--timeout", "600",
            "--graceful-timeout", "5", "--name", name, "--no-control-socket",
            # nova asks Neutron for the ports of up to 150 servers in one query
            # string (~7 KB): gunicorn's default 4094-byte request line refused
            # it, and listing 100 servers as admin failed with a 500.
            "--limit-request-line", "8190",
            # one line per request with its time, as devstack's uwsgi logs them:
            # what tells a slow API from a slow caller
            "--access-logfile", "-", "--access-logformat", '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
            app]
    return Service(name, argv, readiness.http(IP, port, path), "control",
                   env={**_path_env(), **env})


def infra() -> list[Service]:
    """MariaDB, RabbitMQ and memcached from Debian's packages."""
    mysql_sock = layout.path("run", "mysql", "mysqld.sock")
    rabbit = layout.path("rabbitmq")
    return [
        Service("mariadb",
                ["/usr/sbin/mariadbd", f"--defaults-file={layout.etc('mariadb', 'my.cnf')}"],
                readiness.command("/usr/bin/mariadb-admin", f"--socket={mysql_sock}", "ping"),
                "infra", stop_wait=30),
        Service("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
                readiness.tcp(IP, layout.PORTS["rabbitmq"]),
                "infra", env={
                    "HOME": rabbit, "RABBITMQ_MNESIA_BASE": os.path.join(rabbit, "mnesia"),
                    "RABBITMQ_LOG_BASE": os.path.join(rabbit, "log"),
                    "RABBITMQ_CONFIG_FILE": layout.etc("rabbitmq", "rabbitmq.conf"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": layout.etc("rabbitmq", "enabled_plugins"),
                    "RABBITMQ_NODENAME": "nlxc@localhost",
                    "RABBITMQ_LOGS": "-", "RABBITMQ_SASL_LOGS": "-",
                    "ERL_EPMD_ADDRESS": "127.0.0.1",
                    "RABBITMQ_PID_FILE": layout.path("run", "rabbitmq.pid")},
                timeout=120, stop_wait=30),
        Service("memcached", ["/usr/bin/memcached", "-u", "memcache", "-l", IP,
                              "-p", str(layout.PORTS["memcached"]), "-m", "64"],
                readiness.tcp(IP, layout.PORTS["memcached"]), "infra"),
    ]


def control() -> list[Service]:
    """The control plane in the machine's namespace, on the management address."""
    # nova's WSGI apps take the first file as their paste pipeline.
    nova_env = {"OS_NOVA_CONFIG_DIR": layout.etc("nova"),
                "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova.conf"}
    neutron_env = {"OS_NEUTRON_CONFIG_DIR": layout.etc("neutron"),
                   "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini"}
    neutron_args = ["--config-file", layout.etc("neutron", "neutron.conf"),
                    "--config-file", layout.etc("neutron", "ml2_conf.ini")]
    nova_args = ["--config-file", layout.etc("nova", "nova.conf")]
    return [
        wsgi("keystone", "keystone.wsgi.api:application", layout.PORTS["keystone"],
              {"OS_KEYSTONE_CONFIG_DIR": layout.etc("keystone")}),
        wsgi("glance-api", "glance.wsgi.api:application", layout.PORTS["glance"],
              {"OS_GLANCE_CONFIG_DIR": layout.etc("glance")}),
        wsgi("placement-api", "placement.wsgi.api:application", layout.PORTS["placement"],
              {"OS_PLACEMENT_CONFIG_DIR": layout.etc("placement")}),
        wsgi("nova-api", "nova.wsgi.osapi_compute:application", layout.PORTS["nova-api"],
              nova_env),
        wsgi("nova-metadata", "nova.wsgi.metadata:application",
              layout.PORTS["nova-metadata"], nova_env),
        Service("nova-conductor", [layout.bin_("nova-conductor"), *nova_args],
                readiness.nova_service("nova-conductor"), "control", env=_path_env()),
        Service("nova-scheduler", [layout.bin_("nova-scheduler"), *nova_args],
                readiness.nova_service("nova-scheduler"), "control", env=_path_env()),
        # Serial consoles: websockets from users (Horizon's terminal, any
        # client of `openstack console url show --serial`) to the computes'
        # console ports, after checking the token.
        Service("nova-serialproxy", [layout.bin_("nova-serialproxy"), *nova_args],
                readiness.tcp(IP, layout.PORTS["nova-serialproxy"]), "control",
                env=_path_env()),
        dashboard(),
        wsgi("neutron-api", "neutron.wsgi.api:application", layout.PORTS["neutron-api"],
              neutron_env),
        Service("neutron-rpc-server", [layout.bin_("neutron-rpc-server"), *neutron_args],
                readiness.running(), "control", env=_path_env()),
        Service("neutron-periodic-workers",
                [layout.bin_("neutron-periodic-workers"), *neutron_args],
                readiness.running(), "control", env=_path_env()),
    ]


def dashboard() -> Service:
    """Horizon under gunicorn (cloud/horizon.py writes its settings)."""
    from cloud import horizon

    service = wsgi("horizon", "cloud.horizon_wsgi:application", layout.PORTS["horizon"],
                   horizon.env(), path="/auth/login/")
    service.config_files.append(horizon.settings_file())
    return service


def ovs_env(node: Node) -> dict[str, str]:
    """Where the OVS tools of *node*'s instance find its sockets."""
    d = node.ovs_dir
    return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d,
            "OVS_PKGDATADIR": "/usr/share/openvswitch"}


def ovs(node: Node) -> list[Service]:
    """One ovsdb-server and one ovs-vswitchd per namespace, own run directory:
    never the machine's (the driver's OVS tests run one there)."""
    d = node.ovs_dir
    env = ovs_env(node)
    db = f"unix:{d}/db.sock"
    return [
        Service(f"ovsdb-server-{node.short}",
                ["/usr/sbin/ovsdb-server", os.path.join(d, "conf.db"),
                 f"--remote=punix:{d}/db.sock", f"--unixctl={d}/ovsdb-server.ctl",
                 f"--pidfile={d}/ovsdb-server.pid", "-vconsole:warn", "-vfile:off"],
                readiness.command("/usr/bin/ovs-vsctl", f"--db={db}", "--timeout=5", "show"),
                "network", namespace=node.name, env=env),
        Service(f"ovs-vswitchd-{node.short}",
                ["/usr/sbin/ovs-vswitchd", db, f"--unixctl={d}/ovs-vswitchd.ctl",
                 f"--pidfile={d}/ovs-vswitchd.pid", "-vconsole:warn", "-vfile:off"],
                readiness.command("/usr/bin/ovs-appctl", "-t", f"{d}/ovs-vswitchd.ctl",
                                  "version"),
                "network", namespace=node.name, env=env),
    ]


def _lean_env() -> dict[str, str]:
    """For the services every host runs (and the privsep helpers they start,
    which inherit their environment): eventlet without its green DNS resolver,
    whose import (dnspython, twice: plain and patched) costs 7-8 MB in every
    Python process; these services only ever name IP addresses and sockets.
    Four privsep helpers, an OVS agent and nova-compute per host: about 45 MB
    less per host."""
    return {"EVENTLET_NO_GREENDNS": "yes"}


def _agent(name: str, binary: str, node: Node, *confs: str) -> Service:
    args = ["--config-file", layout.etc("neutron", "neutron.conf")]
    for conf in confs:
        args += ["--config-file", layout.etc("neutron", conf)]
    return Service(name, [layout.bin_(binary), *args],
                   readiness.neutron_agent(binary, node.name),
                   "network", namespace=node.name,
                   env={**_path_env(), **_lean_env(), **ovs_env(node)})


def network_node() -> list[Service]:
    """The network node: its OVS, OVS agent, and the DHCP, L3 and metadata agents."""
    node = layout.NETWORK_NODE
    return [
        *ovs(node),
        _agent("neutron-ovs-agent-net", "neutron-openvswitch-agent", node,
               f"ovs-agent-{node.name}.ini"),
        _agent("neutron-dhcp-agent", "neutron-dhcp-agent", node, "dhcp_agent.ini"),
        _agent("neutron-l3-agent", "neutron-l3-agent", node, "l3_agent.ini"),
        _agent("neutron-metadata-agent", "neutron-metadata-agent", node,
               "metadata_agent.ini"),
    ]


def compute_host(node: Node) -> list[Service]:
    """A compute host: its OVS and OVS agent, its runtime daemon, nova-compute
    on our driver. nova-compute shares the runtime's namespace: the driver
    makes veths in its own namespace for the runtime to hand to containers."""
    conf = layout.etc("nova", f"nova-compute-{node.name}.conf")
    return [
        *ovs(node),
        _agent(f"neutron-ovs-agent-{node.short}", "neutron-openvswitch-agent", node,
               f"ovs-agent-{node.name}.ini"),
        Service(f"runtime-{node.short}", [layout.bin_("nova-lxd-runtime")],
                readiness.lxd_socket(layout.runtime_socket(node)), "compute",
                namespace=node.name,
                env={"LXD_DIR": layout.runtime_dir(node), **_path_env()}, stop_wait=10),
        Service(f"nova-compute-{node.short}",
                [layout.bin_("nova-compute"), "--config-file", conf,
                 "--config-file", config.compute_local_conf(node)],
                readiness.nova_service("nova-compute", node.name), "compute",
                namespace=node.name,
                env={**_path_env(), **_lean_env(), **ovs_env(node)}, timeout=120),
    ]


def table(computes: list[Node]) -> list[Service]:
    """Every service of a cloud with *computes*, in start order."""
    services = [*infra(), *control(), *network_node()]
    for node in computes:
        services += compute_host(node)
    return services
