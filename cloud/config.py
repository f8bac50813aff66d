"""Configuration files of every OpenStack service of the cloud.

One function per service returns its ini sections; ``write_all`` writes them
under ``$STATE/etc/<service>/``. What is shared (the database and message bus
URLs, the credentials services use to call each other) is built once here.
"""
from __future__ import annotations

import os
import shutil

from cloud import inifile, layout
from cloud.inifile import Sections
from cloud.layout import Node

VENV_ETC = os.path.join(os.path.dirname(layout.VENV_BIN), "etc")


def db_url(name: str) -> str:
    return (f"mysql+pymysql://{layout.DB_USER}:{layout.DB_PASSWORD}@{layout.MGMT_IP}:"
            f"{layout.PORTS['mysql']}/{name}?charset=utf8")


TRANSPORT = (f"rabbit://{layout.RABBIT_USER}:{layout.RABBIT_PASSWORD}@{layout.MGMT_IP}:"
             f"{layout.PORTS['rabbitmq']}/")
MEMCACHE = f"{layout.MGMT_IP}:{layout.PORTS['memcached']}"
SERIAL_PORTS = "10000:10999"
DATABASES = ("keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "neutron")


def _auth(user: str) -> dict[str, object]:
    """A service user's password credentials (keystoneauth options)."""
    return {
        "auth_type": "password", "auth_url": layout.url("keystone", "/v3"),
        "username": user, "password": layout.SERVICE_PASSWORD,
        "project_name": "service", "user_domain_name": "Default",
        "project_domain_name": "Default", "region_name": layout.REGION,
    }


def _authtoken(user: str) -> dict[str, object]:
    return {**_auth(user), "www_authenticate_uri": layout.url("keystone"),
            "memcached_servers": MEMCACHE, "service_token_roles_required": True}


def _logging(debug: bool = False) -> dict[str, object]:
    # Each service logs to its supervisor log file (stderr); no syslog, no files.
    return {"debug": debug, "use_stderr": True}


def keystone() -> Sections:
    return {
        "DEFAULT": _logging(),
        "database": {"connection": db_url("keystone")},
        "token": {"provider": "fernet"},
        "fernet_tokens": {"key_repository": layout.etc("keystone", "fernet-keys")},
        "fernet_receipts": {"key_repository": layout.etc("keystone", "fernet-keys")},
        "credential": {"key_repository": layout.etc("keystone", "credential-keys")},
        "cache": {"enabled": True, "backend": "dogpile.cache.pymemcache",
                  "memcache_servers": MEMCACHE},
    }


def glance() -> Sections:
    data = layout.path("glance")
    return {
        "DEFAULT": {**_logging(), "enabled_backends": "fs:file",
                    "workers": 1, "bind_host": layout.MGMT_IP},
        "database": {"connection": db_url("glance")},
        "glance_store": {"default_backend": "fs"},
        "fs": {"filesystem_store_datadir": os.path.join(data, "images")},
        "os_glance_staging_store": {
            "filesystem_store_datadir": os.path.join(data, "staging")},
        "os_glance_tasks_store": {"filesystem_store_datadir": os.path.join(data, "tasks")},
        # Container images (README "Against an existing OpenStack").
        "image_format": {"disk_formats": "ami,ari,aki,vhd,vhdx,vmdk,raw,qcow2,vdi,iso,"
                                         "ploop,root-tar,squashfs"},
        "keystone_authtoken": _authtoken("glance"),
        "paste_deploy": {"flavor": "keystone",
                         "config_file": layout.etc("glance", "glance-api-paste.ini")},
        "oslo_policy": {"enforce_new_defaults": True, "enforce_scope": True},
    }


def placement() -> Sections:
    return {
        "DEFAULT": _logging(),
        "placement_database": {"connection": db_url("placement")},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": _authtoken("placement"),
    }


def _nova_common() -> Sections:
    return {
        "DEFAULT": {**_logging(), "transport_url": TRANSPORT, "my_ip": layout.MGMT_IP,
                    "use_neutron": True, "state_path": layout.path("nova")},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": _authtoken("nova"),
        "service_user": {**_auth("nova"), "send_service_user_token": True},
        "placement": _auth("placement"),
        "glance": {"region_name": layout.REGION},
        "neutron": {**_auth("neutron"),
                    "service_metadata_proxy": True,
                    "metadata_proxy_shared_secret": layout.METADATA_SECRET},
        "oslo_concurrency": {"lock_path": layout.path("nova", "locks")},
        "oslo_messaging_notifications": {"driver": "noop"},
        "cache": {"enabled": True, "backend": "dogpile.cache.pymemcache",
                  "memcache_servers": MEMCACHE},
        "scheduler": {"discover_hosts_in_cells_interval": 10},
        "filter_scheduler": {
            # Spread servers over hosts (free RAM first); users may ask for a
            # host other than (or the same as) another server's.
            "host_subset_size": 1, "ram_weight_multiplier": 10.0,
            "enabled_filters": "ComputeFilter,ComputeCapabilitiesFilter,"
                               "ImagePropertiesFilter,ServerGroupAntiAffinityFilter,"
                               "ServerGroupAffinityFilter,DifferentHostFilter,SameHostFilter"},
        "wsgi": {"api_paste_config": layout.etc("nova", "api-paste.ini")},
        "oslo_policy": {"enforce_new_defaults": True, "enforce_scope": True},
        "workarounds": {"disable_rootwrap": True},
        # Users reach a server's console through nova-serialproxy, which
        # connects to proxyclient_address (each compute's own address) on a
        # port from port_range; the computes put base_url in the URLs.
        "serial_console": {
            "enabled": True, "port_range": SERIAL_PORTS,
            "base_url": f"ws://{layout.MGMT_IP}:{layout.PORTS['nova-serialproxy']}/",
            "serialproxy_host": layout.MGMT_IP,
            "serialproxy_port": layout.PORTS["nova-serialproxy"]},
    }


def nova() -> Sections:
    """API, metadata, conductor and scheduler: one cell, one conductor."""
    return inifile.merge(_nova_common(), {
        "DEFAULT": {"osapi_compute_workers": 1, "metadata_workers": 1},
        "api_database": {"connection": db_url("nova_api")},
        "database": {"connection": db_url("nova")},
        "conductor": {"workers": 1},
        "scheduler": {"workers": 1},
    })


def privsep_helper(conf_files: list[str], section: str) -> dict[str, object]:
    """Start a privsep daemon straight from the virtualenv (services run as root
    here: no sudo, no rootwrap)."""
    args = " ".join(f"--config-file {f}" for f in conf_files)
    return {section: {"helper_command": f"{layout.bin_('privsep-helper')} {args}"}}


def nova_compute(node: Node, conf: str) -> Sections:
    state = layout.host_dir(node, "nova")
    sections = inifile.merge(_nova_common(), {
        "DEFAULT": {"host": node.name, "my_ip": node.mgmt_ip, "state_path": state,
                    "instances_path": os.path.join(state, "instances"),
                    "compute_driver": "lxd_py.LXDDriver",
                    # Neutron tells nova when a port is wired.
                    "vif_plugging_is_fatal": True, "vif_plugging_timeout": 120,
                    "heal_instance_info_cache_interval": 60,
                    "resume_guests_state_on_host_boot": False,
                    "reserved_host_memory_mb": 0,
                    # [DEFAULT], where nova reads it: under [compute] it was
                    # ignored and the hosts took nova's initial ratio, 4.0
                    # (8 servers per host of 2 cores; 16 on the 2-host cloud).
                    "cpu_allocation_ratio": 16.0},
        "lxd": {"endpoint": layout.runtime_socket(node)},
        "serial_console": {"proxyclient_address": node.mgmt_ip},
        "oslo_concurrency": {"lock_path": os.path.join(state, "locks")},
        "os_vif_ovs": {"ovsdb_connection": f"unix:{node.ovs_dir}/db.sock",
                       "ovsdb_interface": "native"},
    })
    for section in ("nova_sys_admin", "privsep_osbrick", "vif_plug_ovs_privileged",
                    "vif_plug_linux_bridge_privileged", "nova_lxd_py_privileged"):
        sections.update(privsep_helper([conf], section))
    return sections


def compute_local_conf(node: Node) -> str:
    """Options of one host's nova-compute over the cloud's (read after its
    nova.conf; empty unless a test sets some, cloud/hostctl.py)."""
    return layout.etc("nova", f"nova-compute-{node.name}.local.conf")


def _neutron_common(state: str) -> Sections:
    return {
        "DEFAULT": {**_logging(), "transport_url": TRANSPORT, "state_path": state,
                    "core_plugin": "ml2", "service_plugins": "router",
                    "auth_strategy": "keystone", "allow_overlapping_ips": True,
                    "api_paste_config": os.path.join(VENV_ETC, "neutron", "api-paste.ini")},
        "agent": {"root_helper": "", "root_helper_daemon": ""},
        "oslo_concurrency": {"lock_path": os.path.join(state, "locks")},
        "oslo_messaging_notifications": {"driver": "noop"},
    }


def neutron_server() -> Sections:
    return inifile.merge(_neutron_common(layout.path("neutron")), {
        "DEFAULT": {"api_workers": 1, "rpc_workers": 1, "rpc_state_report_workers": 1,
                    "notify_nova_on_port_status_changes": True,
                    "notify_nova_on_port_data_changes": True,
                    "bind_host": layout.MGMT_IP},
        "database": {"connection": db_url("neutron")},
        "keystone_authtoken": _authtoken("neutron"),
        "nova": _auth("nova"),
        "oslo_policy": {"enforce_new_defaults": True, "enforce_scope": True},
    })


def ml2() -> Sections:
    return {
        "ml2": {"type_drivers": "flat,vxlan", "tenant_network_types": "vxlan",
                "mechanism_drivers": "openvswitch", "extension_drivers": "port_security"},
        "ml2_type_flat": {"flat_networks": layout.PHYSNET},
        "ml2_type_vxlan": {"vni_ranges": "1:1000"},
        "securitygroup": {"firewall_driver": "openvswitch",
                          "enable_security_group": True},
    }


NEUTRON_PRIVSEP = ("privsep", "privsep_dhcp_release", "privsep_ovs_vsctl", "privsep_namespace",
                   "privsep_conntrack", "privsep_link")


def with_privsep(sections: Sections, conf: str) -> Sections:
    """An agent's sections plus its privsep helpers, reading the same files
    the agent reads (neutron.conf, then its own *conf*)."""
    files = [layout.etc("neutron", "neutron.conf"), conf]
    for section in NEUTRON_PRIVSEP:
        sections = inifile.merge(sections, privsep_helper(files, section))
    return sections


def neutron_node_state(node: Node) -> str:
    return layout.host_dir(node, "neutron")


def ovs_agent(node: Node) -> Sections:
    mappings = f"{layout.PHYSNET}:br-ex" if not node.is_compute else ""
    return inifile.merge(_neutron_common(neutron_node_state(node)), ml2(), {
        "DEFAULT": {"host": node.name},
        "ovs": {"local_ip": node.tun_ip, "datapath_type": "netdev",
                "bridge_mappings": mappings, "integration_bridge": "br-int",
                "tunnel_bridge": "br-tun",
                "ovsdb_connection": f"unix:{node.ovs_dir}/db.sock",
                "of_listen_address": "127.0.0.1"},
        "agent": {"tunnel_types": "vxlan", "l2_population": False},
    })


def _l3_dhcp_common(node: Node) -> Sections:
    return inifile.merge(_neutron_common(neutron_node_state(node)), {
        "DEFAULT": {"host": node.name, "interface_driver": "openvswitch"},
        "ovs": {"ovsdb_connection": f"unix:{node.ovs_dir}/db.sock",
                "integration_bridge": "br-int"},
    })


def dhcp_agent(node: Node) -> Sections:
    return inifile.merge(_l3_dhcp_common(node), {
        "DEFAULT": {"enable_isolated_metadata": True, "enable_metadata_network": False,
                    "dnsmasq_dns_servers": ""},
    })


def l3_agent(node: Node) -> Sections:
    return inifile.merge(_l3_dhcp_common(node), {
        "DEFAULT": {"agent_mode": "legacy"},
    })


def metadata_agent(node: Node) -> Sections:
    return inifile.merge(_neutron_common(neutron_node_state(node)), {
        "DEFAULT": {"host": node.name, "nova_metadata_host": layout.MGMT_IP,
                    "nova_metadata_port": layout.PORTS["nova-metadata"],
                    "metadata_proxy_shared_secret": layout.METADATA_SECRET,
                    "metadata_workers": 1},
    })


def write_all(computes: list[Node]) -> None:
    """Write every service's configuration (only files that change)."""
    w = inifile.write
    w(layout.etc("keystone", "keystone.conf"), keystone())
    w(layout.etc("glance", "glance-api.conf"), glance())
    shutil.copyfile(os.path.join(VENV_ETC, "glance", "glance-api-paste.ini"),
                    layout.etc("glance", "glance-api-paste.ini"))
    w(layout.etc("placement", "placement.conf"), placement())
    w(layout.etc("nova", "nova.conf"), nova())
    shutil.copyfile(os.path.join(VENV_ETC, "nova", "api-paste.ini"),
                    layout.etc("nova", "api-paste.ini"))
    for node in computes:
        conf = layout.etc("nova", f"nova-compute-{node.name}.conf")
        w(conf, nova_compute(node, conf))
        if not os.path.exists(compute_local_conf(node)):
            w(compute_local_conf(node), {})
    w(layout.etc("neutron", "neutron.conf"), neutron_server())
    w(layout.etc("neutron", "ml2_conf.ini"), ml2())
    net = layout.NETWORK_NODE
    agents = [(f"ovs-agent-{node.name}.ini", ovs_agent(node)) for node in [net, *computes]]
    agents += [("dhcp_agent.ini", dhcp_agent(net)), ("l3_agent.ini", l3_agent(net)),
               ("metadata_agent.ini", metadata_agent(net))]
    for name, sections in agents:
        conf = layout.etc("neutron", name)
        w(conf, with_privsep(sections, conf))
