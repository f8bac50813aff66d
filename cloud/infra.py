"""MariaDB, RabbitMQ and Open vSwitch: files they need before they start, and
what to make once they answer (databases, bridges)."""
from __future__ import annotations

import os
import shutil
import subprocess

from cloud import config, layout, netns, services
from cloud.layout import Node

MYSQL_DATA = layout.path("mysql")
MYSQL_RUN = layout.path("run", "mysql")
MYSQL_SOCK = os.path.join(MYSQL_RUN, "mysqld.sock")


def prepare_mariadb() -> None:
    """my.cnf and an initialised data directory (small buffers: a test cloud)."""
    os.makedirs(layout.etc("mariadb"), exist_ok=True)
    os.makedirs(layout.path("run"), exist_ok=True)
    with open(layout.etc("mariadb", "my.cnf"), "w") as f:
        f.write(f"""[mariadbd]
user = mysql
datadir = {MYSQL_DATA}
socket = {MYSQL_SOCK}
pid-file = {MYSQL_RUN}/mysqld.pid
bind-address = {layout.MGMT_IP}
port = {layout.PORTS['mysql']}
skip-name-resolve
log-error = {layout.log('mariadb-errors')}
max_connections = 500
performance_schema = off
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 0
sync_binlog = 0
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
""")
    os.makedirs(MYSQL_RUN, exist_ok=True)
    shutil.chown(MYSQL_RUN, "mysql", "mysql")
    if not os.path.isdir(os.path.join(MYSQL_DATA, "mysql")):
        shutil.rmtree(MYSQL_DATA, ignore_errors=True)
        os.makedirs(MYSQL_DATA)
        shutil.chown(MYSQL_DATA, "mysql", "mysql")
        subprocess.run(["/usr/bin/mariadb-install-db", "--user=mysql",
                        f"--datadir={MYSQL_DATA}", "--skip-test-db",
                        "--auth-root-authentication-method=socket"],
                       check=True, capture_output=True)
    # The error log path must be writable by mysql.
    open(layout.log("mariadb-errors"), "a").close()
    shutil.chown(layout.log("mariadb-errors"), "mysql", "mysql")


def sql(statement: str) -> str:
    done = subprocess.run(["/usr/bin/mariadb", f"--socket={MYSQL_SOCK}", "-N", "-B", "-e",
                           statement], capture_output=True, text=True, check=True)
    return done.stdout


def create_databases() -> None:
    stmts = [f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4"
             for db in config.DATABASES]
    stmts += [f"CREATE USER IF NOT EXISTS '{layout.DB_USER}'@'%' IDENTIFIED BY "
              f"'{layout.DB_PASSWORD}'",
              f"GRANT ALL PRIVILEGES ON *.* TO '{layout.DB_USER}'@'%'", "FLUSH PRIVILEGES"]
    sql("; ".join(stmts))


def prepare_rabbitmq() -> None:
    base = layout.path("rabbitmq")
    for d in ("mnesia", "log"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    os.makedirs(layout.etc("rabbitmq"), exist_ok=True)
    with open(layout.etc("rabbitmq", "rabbitmq.conf"), "w") as f:
        f.write(f"""listeners.tcp.1 = {layout.MGMT_IP}:{layout.PORTS['rabbitmq']}
loopback_users = none
default_user = {layout.RABBIT_USER}
default_pass = {layout.RABBIT_PASSWORD}
log.console = true
log.console.level = warning
log.file = false
distribution.listener.interface = 127.0.0.1
vm_memory_high_watermark.absolute = 512MiB
disk_free_limit.absolute = 50MB
""")
    with open(layout.etc("rabbitmq", "enabled_plugins"), "w") as f:
        f.write("[].\n")
    cookie = os.path.join(base, ".erlang.cookie")
    if not os.path.exists(cookie):
        with open(cookie, "w") as f:
            f.write(os.urandom(16).hex())
        os.chmod(cookie, 0o400)


def prepare_ovs(node: Node) -> None:
    """An empty OVS database for *node*'s instance."""
    os.makedirs(node.ovs_dir, exist_ok=True)
    db = os.path.join(node.ovs_dir, "conf.db")
    if not os.path.exists(db):
        subprocess.run(["/usr/bin/ovsdb-tool", "create", db,
                        "/usr/share/openvswitch/vswitch.ovsschema"], check=True)


def vsctl(node: Node, *args: str) -> str:
    done = subprocess.run(["/usr/bin/ovs-vsctl", f"--db=unix:{node.ovs_dir}/db.sock",
                           "--timeout=10", *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **services.ovs_env(node)})
    return done.stdout


def bridges(node: Node) -> None:
    """br-phy holds the tunnel endpoint address (userspace tunnelling) with the
    underlay veth as its port; the network node's br-ex has the external veth."""
    vsctl(node, "--may-exist", "add-br", "br-phy", "--", "set", "bridge", "br-phy",
          "datapath_type=netdev", "--", "--may-exist", "add-port", "br-phy", "tun0")
    ns = node.name
    netns.ip("-n", ns, "link", "set", "br-phy", "up")
    if f"{node.tun_ip}/" not in netns.ip("-n", ns, "-br", "addr", "show", "br-phy").stdout:
        netns.ip("-n", ns, "addr", "add", f"{node.tun_ip}/24", "dev", "br-phy")
    if not node.is_compute:
        vsctl(node, "--may-exist", "add-br", "br-ex", "--", "set", "bridge", "br-ex",
              "datapath_type=netdev", "--", "--may-exist", "add-port", "br-ex",
              layout.EXT_PEER)
        netns.ip("-n", ns, "link", "set", "br-ex", "up")


def configure_runtime(node: Node) -> None:
    """*node*'s runtime listens on its host's address: cold migration and
    resize pull the container from the source runtime to the destination."""
    import pylxd

    client = pylxd.Client(endpoint=layout.runtime_socket(node))
    address = f"{node.mgmt_ip}:8443"
    if client.host_info.get("config", {}).get("core.https_address") != address:
        client.api.patch(json={"config": {"core.https_address": address}})
