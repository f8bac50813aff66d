"""`/` and `/1.0`: API discovery and server configuration."""
import os
import platform

from aiohttp import web

from runtime import arch, auth, controlchars
from runtime.api import daemon, read_json, requested_project, response
from runtime.api.certificates import expiry_seconds
from runtime.auth import ADMIN, UNTRUSTED
from runtime.instances import config as cfg
from runtime.errors import BadRequest

API_EXTENSIONS = [
    "storage", "file_delete", "file_append", "network", "profile_usedby", "container_push",
    "container_exec_recording", "certificate_update", "container_exec_signal_handling",
    "container_image_properties", "migration_progress", "id_map", "storage_api",
    "file_symlinks", "container_push_target", "storage_images_delete",
    "container_edit_metadata", "container_snapshot_stateful_migration", "storage_driver_btrfs",
    "console", "migration_pre_copy", "file_get_symlink", "storage_api_local_volume_handling",
    "operation_description", "event_lifecycle", "container_mount_propagation",
    "container_local_cross_pool_handling", "network_state", "container_protection_delete",
    "unix_priv_drop", "container_full", "storage_api_volume_snapshots", "projects",
    "container_incremental_copy", "snapshot_scheduling", "snapshot_schedule_aliases",
    "container_copy_project", "container_protection_shift", "snapshot_expiry",
    "snapshot_expiry_creation", "container_nic_ipfilter", "container_exec_user_group_cwd",
    "instances", "image_types", "images_expiry", "image_profiles", "instance_nic_network",
    "custom_volume_snapshot_expiry", "volume_snapshot_scheduling", "snapshot_disk_usage",
    "api_os", "network_state_bond_bridge", "usedby_consistency", "container_syscall_filtering",
    "instance_snapshot_never", "certificate_token", "linux_sysctl", "cloud_init",
    "instance_all_projects", "instance_get_full", "event_project",
    "instance_allow_inconsistent_copy", "instance_create_start", "api_filtering",
    "resources", "network_leases", "metrics", "remote_token_expiry",
    # Checked by the stock lxc 5.0 CLI: `file push -p` (directories through the
    # files API) and `copy --instance-only` (migration without snapshots).
    "directory_manipulation", "container_only_migration",
    # Ours: a pool disk with source "container/<name>" mounts that stopped
    # instance's root filesystem (rescue systems).
    "nova_lxd_disk_instance_volume",
    # Ours: /1.0/resources carries host_stats (uptime, load, cpu times) for the driver.
    "nova_lxd_host_stats",
]

SERVER_CONFIG_KEYS = {
    "core.https_address", "core.trust_password", "core.proxy_http", "core.proxy_https",
    "core.proxy_ignore_hosts", "core.https_allowed_origin", "core.https_allowed_methods",
    "core.https_allowed_headers", "core.https_allowed_credentials", "core.trust_ca_certificates",
    "images.auto_update_interval", "images.auto_update_cached", "images.remote_cache_expiry",
    "images.compression_algorithm", "images.default_architecture",
    # this runtime's own: what one image may unpack to (runtime.images.store)
    "images.max_unpacked_size", "images.max_unpacked_files",
    "storage.backups_volume", "storage.images_volume", "core.debug_address",
    "core.bgp_address", "core.metrics_address", "core.shutdown_timeout",
    "core.remote_token_expiry",
}


_VALUE_CHECKS = {"images.max_unpacked_size": cfg.is_size,
                 "images.max_unpacked_files": cfg.is_uint,
                 "core.remote_token_expiry": lambda v: expiry_seconds(str(v))}


async def root(request: web.Request) -> web.Response:
    return response.sync(["/1.0"])


def _kernel() -> dict:
    u = platform.uname()
    return {"kernel": u.system, "kernel_architecture": u.machine, "kernel_version": u.release}


def public_info(d) -> dict:
    return {"api_extensions": API_EXTENSIONS, "api_status": "stable", "api_version": "1.0",
            "auth": "untrusted", "public": False, "auth_methods": ["tls"]}


async def get_server(request: web.Request) -> web.Response:
    """Untrusted callers get the public form; restricted ones (as in LXD) the
    environment but no server config; administrators everything."""
    d = daemon(request)
    requestor = auth.of(request)
    if not requestor.trusted:
        return response.sync(public_info(d))
    info = public_info(d)
    info["auth"] = "trusted"
    info["auth_user_name"] = requestor.fingerprint or ""
    info["auth_user_method"] = requestor.protocol
    info["config"] = {k: ("true" if k == "core.trust_password" else v)
                      for k, v in d.server_config.all().items()} if requestor.admin else None
    info["environment"] = {
        "addresses": d.https_addresses(), "architectures": arch.supported(),
        "certificate": d.server_cert_pem(), "certificate_fingerprint": d.server_cert_fp(),
        "driver": "lxc", "driver_version": d.lxc_version, **_kernel(),
        "lxc_features": {k: str(v).lower() for k, v in {
                         "cgroup2": True, "idmapped_mounts_v2": False,
                         "mount_injection_file": True, "network_gateway_device_route": True,
                         "network_ipvlan": True, "network_l2proxy": True,
                         "network_phys_macvlan_mtu": True, "network_veth_router": True,
                         "pidfd": True, "seccomp_allow_deny_syntax": True,
                         "seccomp_notify": False, "seccomp_proxy_send_notify_fd": False}.items()},
        "os_name": "Debian GNU/Linux", "os_version": "12",
        "project": requested_project(request),
        "server": "nova-lxd-runtime", "server_clustered": False, "server_event_mode":
        "full-mesh", "server_name": platform.node(), "server_pid": os.getpid(),
        "server_version": "5.0.2", "storage": "dir", "storage_version": "1",
        "storage_supported_drivers": [{"Name": n, "Version": "1", "Remote": False}
                                      for n in ("dir", "btrfs")],
        "firewall": "nftables",
    }
    return response.sync(info, etag=None)


async def update_server(request: web.Request) -> web.Response:
    d = daemon(request)
    body = await read_json(request)
    config = body.get("config")
    if not isinstance(config, dict):
        raise BadRequest("Body needs a 'config' object")
    config = controlchars.string_map(config, "server config")
    if request.method == "PATCH":
        config = {**d.server_config.all(), **config}
    clean = {}
    for key, value in config.items():
        if key not in SERVER_CONFIG_KEYS and not key.startswith("user."):
            raise BadRequest(f"Unknown server config key: {key!r}")
        if value is None or value == "":
            continue
        check = _VALUE_CHECKS.get(key)
        if check is not None:
            try:
                check(value)
            except ValueError as exc:
                raise BadRequest(f"Invalid value for server config key {key!r}: {exc}")
        clean[key] = str(value)
    await d.apply_server_config(clean)
    return response.sync({})


ROUTES = [
    ("GET", "/", root, UNTRUSTED),
    ("GET", "/1.0", get_server, UNTRUSTED),
    ("PUT", "/1.0", update_server, ADMIN),
    ("PATCH", "/1.0", update_server, ADMIN),
]
