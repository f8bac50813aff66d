"""Options of the nova-lxd-py driver, group ``[lxd]`` in nova.conf.

Registered on nova's global CONF when the driver module is imported (nova
loads the driver before reading any of them) and listed by ``list_opts`` for
oslo-config-generator, so the sample config cannot drift from the code.
"""
from __future__ import annotations

from oslo_config import cfg

DEFAULT_RUNTIME_SOCKET = "/var/lib/nova-lxd-runtime/unix.socket"

lxd_group = cfg.OptGroup(
    "lxd",
    title="nova-lxd-py driver options",
    help="How nova-compute reaches the container runtime (the bundled "
         "nova-lxd-runtime or an LXD daemon) and how it uses it.")

lxd_opts = [
    cfg.StrOpt(
        "endpoint",
        default=DEFAULT_RUNTIME_SOCKET,
        help="Where the runtime listens: the path of its unix socket (the "
             "bundled runtime's is $LXD_DIR/unix.socket; Debian's LXD uses "
             "/var/lib/lxd/unix.socket) or an https:// URL."),
    cfg.StrOpt(
        "client_cert",
        help="PEM client certificate presented to an https endpoint. The "
             "runtime must trust it (lxc config trust add)."),
    cfg.StrOpt(
        "client_key",
        help="PEM private key of client_cert."),
    cfg.StrOpt(
        "server_cert",
        help="PEM certificate of an https endpoint. When set, the server is "
             "pinned to exactly this certificate; when unset, the system CA "
             "store verifies it. REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE in the "
             "environment are ignored either way."),
    cfg.StrOpt(
        "pool",
        help="Storage pool for instance root disks. Unset: the pool of the "
             "root disk of the profiles below (usually 'default')."),
    cfg.ListOpt(
        "profiles",
        default=["default"],
        help="Profiles applied to every instance, in order, before the "
             "instance's own config."),
    cfg.IntOpt(
        "timeout",
        default=60, min=1,
        help="Seconds to wait for one API request of the runtime."),
    cfg.FloatOpt(
        "health_check_timeout",
        default=10, min=0.1,
        help="Seconds the runtime has to answer GET /1.0 after a request timed out. "
             "Unanswered, the runtime counts as down (not answering: stopped, "
             "wedged), like a closed libvirt connection: the compute service is "
             "disabled with an 'AUTO:' reason, the driver's calls fail at once "
             "instead of each waiting [lxd] timeout, and periodic tasks skip their "
             "round. Answered, only the one request failed."),
    cfg.FloatOpt(
        "health_check_interval",
        default=2, min=0.1,
        help="While the runtime is down (refused or not answering), seconds between "
             "two GET /1.0 checks; the first answer enables the compute service "
             "again (unless an operator disabled it) and reconnects the event "
             "stream."),
    cfg.StrOpt(
        "unknown_container_action",
        default="log", choices=[
            ("reap", "stop and delete the container, unplug its ports, detach its "
                     "volumes"),
            ("log", "log a warning naming the container"),
            ("noop", "do nothing")],
        help="What nova-compute's start does with a container this driver made "
             "(it carries user.nova_instance_uuid) whose instance nova does not know "
             "at all, not even as deleted: the server was deleted and its row purged "
             "(nova-manage db archive_deleted_rows --purge) while nova-compute was "
             "down. nova's own running_deleted_instance_action never sees such "
             "containers. Containers without the driver's marks (an operator's own) "
             "are never touched."),
    cfg.IntOpt(
        "operation_timeout",
        default=300, min=1,
        help="Seconds to wait for a background operation (create, start, "
             "publish, image upload) to finish."),
    cfg.BoolOpt(
        "allow_live_migration",
        default=False,
        help="Advertise live migration. Needs CRIU on both hosts; keep off "
             "unless `criu check` passes there."),
    cfg.StrOpt(
        "image_cache_dir",
        default="$state_path/lxd-images",
        help="Scratch directory where Glance images are downloaded and "
             "converted before they are imported into the runtime."),
    cfg.StrOpt(
        "config_drive_dir",
        default="$instances_path",
        deprecated_for_removal=True,
        deprecated_reason="The config drive is now written into the container "
                          "(/config-drive, 0600 files in 0700 directories), not on "
                          "the host; this directory is only cleaned of what earlier "
                          "versions left there.",
        help="Directory under which earlier versions wrote per-instance "
             "config-drive directories (removed when their instance is deleted)."),
    cfg.StrOpt(
        "snapshot_disk_format",
        default="root-tar", choices=["root-tar", "raw"],
        help="Glance disk format of snapshots (a unified LXD image tarball either "
             "way). root-tar needs root-tar in Glance's [image_format] disk_formats; "
             "raw images are not scheduled to container hosts when nova's "
             "[scheduler] query_placement_for_image_type_support is on."),
    cfg.IntOpt(
        "console_log_max_bytes",
        default=100 * 1024, min=1024,
        help="get_console_output returns at most this many bytes, the "
             "last ones of the console log."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the [lxd] options (idempotent)."""
    conf.register_group(lxd_group)
    conf.register_opts(lxd_opts, group=lxd_group)


PRIVSEP_GROUP = "nova_lxd_py_privileged"


def _privsep_opts() -> tuple[cfg.OptGroup, list[cfg.Opt]]:
    """oslo.privsep's options as our context registers them (nova_lxd_py.privsep),
    with the context's own capability shown as the default."""
    import copy

    from oslo_privsep import priv_context

    opts = []
    for opt in priv_context.OPTS:
        opt = copy.deepcopy(opt)
        if opt.name == "capabilities":
            opt.sample_default = "CAP_NET_ADMIN"
        opts.append(opt)
    group = cfg.OptGroup(
        PRIVSEP_GROUP, title="nova-lxd-py privileged helper",
        help="The oslo.privsep context of the driver's network helpers (veth pairs, "
             "bridge ports, offloads, rate limits). nova-compute starts it with "
             "privsep-helper; set helper_command when it goes through rootwrap "
             "(etc/nova/rootwrap.d/nova-lxd-py.filters).")
    return group, opts


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """Entry point for oslo-config-generator (namespace nova_lxd_py)."""
    return [(lxd_group, list(lxd_opts)), _privsep_opts()]
