"""What the driver supports, read from the driver itself.

Why generated: a hand-written support matrix drifts the day someone adds a
method. Here each feature (named as in nova's own support matrix) lists the
``ComputeDriver`` methods and capability flags it rests on; its status is
computed from ``LXDDriver``: *complete* when every method is overridden and
every flag is true, *missing* when none is, *partial* otherwise or when a
note below says what is left. Features that list ``proven_by`` (the
networking rows, interface hot-plug) are complete only when tests prove
them: the listed test ids, which a unit test resolves in the tree, with no
test listed the feature is at most partial. ``doc/support-matrix.md`` is this module's
output (a unit test keeps it current), and the devstack plugin sets
tempest's ``[compute-feature-enabled]`` flags from the same data.

    python -m nova_lxd_py.support_matrix             # the markdown document
    python -m nova_lxd_py.support_matrix --tempest   # "flag True|False" lines
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

COMPLETE, PARTIAL, MISSING = "complete", "partial", "missing"


@dataclass(frozen=True)
class Feature:
    key: str                     # nova's support-matrix feature name
    title: str
    methods: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    tempest: str | None = None   # [compute-feature-enabled] option it decides
    why_missing: str = ""        # shown when not complete
    partial: str = ""            # what is left even when the code is all there
    notes: str = ""
    # Test ids (path::Class::test) that show the feature working against real
    # components; None: the status rests on the driver's code alone.
    proven_by: tuple[str, ...] | None = None


NOVA_TESTS = "tests/functional/nova/"
OVS_TEST = NOVA_TESTS + "test_lxd_ovs.py::LXDOVSTest::"
TAP_TEST = NOVA_TESTS + "test_lxd_network.py::LXDNetworkTest::"
CONSOLE_TEST = "tests/functional/nova/test_lxd_console.py::LXDSerialConsoleTest::"
CLOUD_TEST = "tests/functional/cloud/test_cloud.py::"
DASHBOARD_TEST = "tests/functional/cloud/test_dashboard.py::"
FAILURES_TEST = "tests/functional/cloud/test_host_failures.py::"
SERVERS_TEST = NOVA_TESTS + "test_lxd_servers.py::LXDServersTest::"
MOVE_TEST = NOVA_TESTS + "test_lxd_migration.py::LXDMigrationTest::"
VOLUME_TEST = NOVA_TESTS + "test_lxd_storage.py::LXDVolumeTest::"
EPHEMERAL_TEST = NOVA_TESTS + "test_lxd_storage.py::LXDEphemeralTest::"
LIFECYCLE_TEST = NOVA_TESTS + "test_lxd_lifecycle.py::LXDLifecycleTest::"

FEATURES: tuple[Feature, ...] = (
    Feature("operation.launch", "Launch instance", ("spawn",),
            notes="Glance disk formats root-tar (unified LXD tarball or a root filesystem "
                  "tarball) and squashfs; raw unified tarballs are accepted but "
                  "COMPUTE_IMAGE_TYPE_RAW is not advertised (a raw VM disk can't boot)"),
    Feature("operation.terminate", "Delete instance", ("destroy", "cleanup")),
    Feature("operation.reboot", "Reboot (soft and hard)", ("reboot",)),
    Feature("operation.power-ops", "Stop and start", ("power_off", "power_on")),
    Feature("operation.pause", "Pause / unpause (cgroup freezer)", ("pause", "unpause"),
            tempest="pause"),
    Feature("operation.suspend", "Suspend / resume", ("suspend", "resume"),
            tempest="suspend",
            partial="suspend freezes the container (no CRIU here): its memory is not "
                    "saved to disk, so a host reboot loses it"),
    Feature("operation.rescue", "Rescue / unrescue", ("rescue", "unrescue"),
            tempest="rescue", notes="a rescue container with the instance's ports gets its "
                                    "root at /mnt/rescue (mounted by the runtime) and the "
                                    "rescue password (chpasswd)",
            proven_by=(SERVERS_TEST + "test_rescue_unrescue",
                       SERVERS_TEST + "test_rescue_of_a_root_the_pool_has_unmounted",
                       TAP_TEST + "test_rescue_keeps_the_ports")),
    Feature("operation.snapshot", "Snapshot to Glance", ("snapshot",), tempest="snapshot",
            notes="taken while quiesced (sync, freeze); uploaded as root-tar (unified LXD "
                  "tarball) with the properties that keep it on container hosts"),
    Feature("operation.shelve", "Shelve / unshelve", ("snapshot", "spawn", "destroy"),
            tempest="shelve", notes="nova's generic path over snapshot and spawn"),
    Feature("console.serial.log", "Console log", ("get_console_output",),
            tempest="console_output",
            notes="the container's /dev/console as liblxc logs it (also while a serial "
                  "console is attached); the last [lxd] console_log_max_bytes; Horizon's "
                  "Log tab shows it",
            proven_by=(CONSOLE_TEST + "test_console_output_is_the_log_capped",
                       CONSOLE_TEST + "test_login_over_the_serial_port_released_on_stop_"
                                      "and_delete",
                       "tests/functional/nova/test_lxd_servers.py::LXDServersTest::"
                       "test_power_actions_and_console",
                       DASHBOARD_TEST + "test_dashboard_launch_console_delete")),
    Feature("operation.get-guest-info", "Guest power state and info",
            ("get_info", "instance_exists", "list_instances", "list_instance_uuids",
             "get_num_instances", "get_instance_driver_metadata"),
            notes="only containers this driver made count (marked with the instance uuid); "
                  "a container that merely has an instance's name is not that instance"),
    Feature("operation.get-host-uptime", "Host uptime", ("get_host_uptime",),
            notes="the runtime's host's, also when the runtime is remote",
            proven_by=(SERVERS_TEST + "test_host_uptime_and_cpu_stats_come_from_the_runtime",)),
    Feature("operation.get-host-cpu-stats", "Host CPU times", ("get_host_cpu_stats",),
            notes="from the bundled runtime's host_stats; an LXD runtime: not available",
            proven_by=(SERVERS_TEST + "test_host_uptime_and_cpu_stats_come_from_the_runtime",)),
    Feature("operation.lifecycle-events", "Power state changes reported as they happen",
            ("init_host", "cleanup_host", "resume_state_on_host_boot"),
            notes="the runtime's /1.0/events become nova lifecycle events within seconds; "
                  "containers never autostart, nova owns power state after a host reboot",
            proven_by=(LIFECYCLE_TEST + "test_container_stopped_behind_nova_is_shutoff_"
                                        "within_seconds",
                       LIFECYCLE_TEST + "test_events_follow_a_runtime_restart",
                       LIFECYCLE_TEST + "test_host_reboot_leaves_power_state_to_nova")),
    Feature("operation.server-diagnostics", "Server diagnostics",
            ("get_diagnostics", "get_instance_diagnostics"),
            notes="CPU time, memory used and limit, per-NIC counters by port MAC, disk usage "
                  "(no per-disk I/O counters)",
            proven_by=(TAP_TEST + "test_diagnostics",)),
    Feature("operation.get-host-ip", "Host IP", ("get_host_ip_addr",)),
    Feature("operation.report-resources", "Inventory in placement",
            ("update_provider_tree", "get_available_resource", "get_available_nodes",
             "get_nodenames_by_uuid", "node_is_available"),
            notes="VCPU, MEMORY_MB, DISK_GB with allocation ratios and reserved amounts"),
    Feature("guest.setup.configdrive", "Config drive", ("spawn",), tempest="config_drive",
            notes="nova's config-drive tree written into /config-drive (0600 files, "
                  "0700 directories); cloud-init NoCloud seed files otherwise",
            proven_by=(SERVERS_TEST + "test_config_drive_and_user_data",
                       MOVE_TEST + "test_config_drive_survives_resize_and_cold_migration",
                       MOVE_TEST + "test_resize_on_the_same_host",
                       NOVA_TESTS + "test_lxd_hostile_images.py::LXDHostileImagesTest::"
                                    "test_config_drive_stays_out_of_images")),
    Feature("networking.ovs.native", "Neutron ports: Open vSwitch, native (ML2/OVS)",
            ("plug_vifs", "unplug_vifs", "attach_interface", "detach_interface"),
            notes="os-vif's ovs plugin: the veth's host end is the port on the binding's "
                  "bridge with iface-id, iface-status, attached-mac, vm-uuid; datapath system "
                  "or netdev (netdev: the container computes its own checksums); OVN binds the "
                  "same way but is not tested here (no Geneve on the reference kernel)",
            proven_by=(OVS_TEST + "test_native_ports_across_hosts",
                       OVS_TEST + "test_delete_without_network_info_still_unplugs_everything",
                       NOVA_TESTS + "test_lxd_ovs.py::LXDVifEventsTest::"
                       "test_starts_only_after_the_event")),
    Feature("networking.ovs.hybrid", "Neutron ports: Open vSwitch, hybrid (iptables firewall)",
            ("plug_vifs", "unplug_vifs"),
            notes="os-vif makes qbr and the qvb/qvo pair; the container's veth joins qbr",
            proven_by=(OVS_TEST + "test_hybrid_port_talks_to_native_port",)),
    Feature("networking.tap", "Neutron ports: tap", ("plug_vifs", "unplug_vifs"),
            notes="a veth whose host end the network backend wires",
            proven_by=(TAP_TEST + "test_ports_wired_with_mac_and_fixed_ip",)),
    Feature("networking.linuxbridge", "Neutron ports: Linux bridge", (),
            why_missing="nova 34 refuses 'bridge' bindings and os-vif no longer has a Linux "
                        "bridge plugin (Neutron removed the mechanism driver); such ports "
                        "fail with a clear VirtualInterfacePlugException",
            proven_by=()),
    Feature("operation.attach-interface", "Attach / detach interface",
            ("attach_interface", "detach_interface"),
            capabilities=("supports_attach_interface",), tempest="interface_attach",
            why_missing="interface hot-plug is a later issue",
            notes="on running containers (the nic appears and goes at once) and stopped ones",
            proven_by=(OVS_TEST + "test_attach_and_detach_on_running_and_stopped_servers",
                       TAP_TEST + "test_attach_and_detach_interface")),
    Feature("operation.attach-volume", "Attach / detach volume",
            ("attach_volume", "detach_volume", "get_volume_connector"),
            notes="os-brick connects the volume on the compute host; the container gets a "
                  "block device at nova's mountpoint, or the volume's filesystem mounted "
                  "(idmapped) where its metadata lxd_mount_path says; hot-plugged",
            proven_by=(VOLUME_TEST + "test_attach_extend_detach",)),
    Feature("operation.extend-volume", "Extend attached volume", ("extend_volume",),
            capabilities=("supports_extend_volume",),
            notes="a mounted ext4/xfs filesystem is grown online",
            proven_by=(VOLUME_TEST + "test_attach_extend_detach",)),
    Feature("operation.swap-volume", "Swap volume", (),
            why_missing="refused (NotImplementedError with the reason): the data would have "
                        "to be copied under a running guest; detach and attach instead"),
    Feature("storage.block", "Block storage and boot from volume",
            ("spawn", "attach_volume", "get_volume_connector"),
            notes="boot from a volume holding a root filesystem; tested with os-brick's "
                  "local connector over loop devices; iSCSI, RBD, FC... need os-brick's "
                  "connector and the kernel's support on the compute host, and the runtime "
                  "on that host",
            proven_by=(VOLUME_TEST + "test_boot_from_volume",
                       VOLUME_TEST + "test_attach_extend_detach")),
    Feature("operation.quiesce", "Quiesce / unquiesce", ("quiesce", "unquiesce"),
            notes="sync in the guest, then the cgroup freezer",
            proven_by=(VOLUME_TEST + "test_snapshot_of_a_volume_backed_server_is_quiesced",)),
    Feature("storage.ephemeral", "Flavor ephemeral disks", ("spawn",),
            notes="custom volumes of the runtime at /mnt (or the image's "
                  "lxd_ephemeral_path), deleted with the server; empty after a move to "
                  "another host",
            proven_by=(EPHEMERAL_TEST + "test_ephemeral_disk_is_a_volume_at_mnt",
                       EPHEMERAL_TEST + "test_image_names_the_mount_point",
                       EPHEMERAL_TEST + "test_resize_moves_to_fresh_ephemeral_and_cleans_"
                                        "the_source")),
    Feature("storage.swap", "Flavor swap", (),
            why_missing="refused at spawn with a clear fault: containers share the host's "
                        "swap"),
    Feature("operation.resize", "Resize", ("migrate_disk_and_power_off", "finish_migration",
                                           "confirm_migration", "finish_revert_migration"),
            tempest="resize", why_missing="resize and cold migration are not implemented",
            notes="on the same host (nova's allow_resize_to_same_host) the new flavor is "
                  "applied in place; to another host the destination runtime pulls the "
                  "stopped container over HTTPS",
            proven_by=(MOVE_TEST + "test_resize_confirm_then_migrate_revert",
                       MOVE_TEST + "test_resize_on_the_same_host")),
    Feature("operation.cold-migrate", "Cold migration",
            ("migrate_disk_and_power_off", "finish_migration", "confirm_migration"),
            tempest="cold_migration",
            why_missing="the runtimes can move containers between hosts, but the "
                        "driver does not drive it yet",
            notes="each runtime needs core.https_address (reachable by its peers); "
                  "revert restarts the kept source container",
            proven_by=(MOVE_TEST + "test_resize_confirm_then_migrate_revert",
                       MOVE_TEST + "test_config_drive_survives_resize_and_cold_migration")),
    Feature("operation.live-migrate", "Live migration",
            ("live_migration", "pre_live_migration", "check_can_live_migrate_destination"),
            tempest="live_migration",
            why_missing="needs CRIU; `criu check` fails on the reference kernel"),
    Feature("operation.evacuate", "Evacuate",
            ("spawn", "destroy", "check_instance_shared_storage_local",
             "check_instance_shared_storage_remote", "check_instance_shared_storage_cleanup"),
            capabilities=("supports_evacuate",),
            why_missing="not advertised (supports_evacuate is false)",
            notes="rebuilt from its image on another host; the failed host's compute "
                  "removes the stale container and volumes when it comes back",
            proven_by=(NOVA_TESTS + "test_lxd_evacuate.py::LXDEvacuateTest::"
                                    "test_evacuate_and_clean_up_the_failed_host",
                       FAILURES_TEST + "test_evacuate_with_ports_and_cleanup_on_return")),
    Feature("operation.host-failure", "Recovery after a compute host failed",
            ("process_instances_at_startup", "resume_state_on_host_boot", "plug_vifs"),
            notes="at nova-compute's start the runtime is made to agree with nova: "
                  "half-made spawns and containers of deleted or moved-away servers go, "
                  "an interrupted finish_migration fails (ERROR) instead of hanging; "
                  "ports whose veth died with a crash are made again",
            proven_by=tuple(FAILURES_TEST + t for t in (
                "test_compute_killed_mid_spawn",
                "test_compute_killed_mid_cold_migration_on_the_source",
                "test_compute_killed_mid_cold_migration_on_the_destination",
                "test_host_reboot_without_resume_stays_shutoff",
                "test_host_reboot_with_resume_comes_back_active",
                "test_evacuate_with_ports_and_cleanup_on_return"))),
    Feature("operation.set-admin-password", "Set admin password", ("set_admin_password",),
            tempest="change_password", why_missing="not implemented",
            notes="chpasswd through the runtime's exec, for images that have it",
            proven_by=(SERVERS_TEST + "test_change_password",)),
    Feature("console.vnc", "VNC console", ("get_vnc_console",), tempest="vnc_console",
            why_missing="containers have no graphical console"),
    Feature("console.spice", "SPICE console", ("get_spice_console",), tempest="spice_console",
            why_missing="containers have no graphical console"),
    Feature("console.serial.interactive", "Interactive serial console",
            ("get_serial_console",), tempest="serial_console",
            notes="a TCP port per running instance on [serial_console] proxyclient_address "
                  "(ports from port_range, released on stop, suspend and delete) bridged to "
                  "the runtime's console websocket; the user reaches the container's "
                  "/dev/console (the rescue container's while rescued), one client at a "
                  "time; tested through a running nova-serialproxy on the real cloud "
                  "(`openstack console url show --serial`) and in Horizon's Console tab "
                  "(Chromium), and through websockify in nova's functional tests",
            proven_by=(CONSOLE_TEST + "test_login_over_the_serial_port_released_on_stop_"
                                      "and_delete",
                       CONSOLE_TEST + "test_one_client_at_a_time_and_reattach",
                       CONSOLE_TEST + "test_websocket_client_through_websockify",
                       CONSOLE_TEST + "test_rescue_console_and_compute_restart",
                       CLOUD_TEST + "test_serial_console_through_nova_serialproxy",
                       DASHBOARD_TEST + "test_dashboard_launch_console_delete")),
    Feature("guest.setup.inject.file", "File injection (personality)", (),
            tempest="personality", why_missing="removed from nova's driver API"),
    Feature("operation.trigger-crash-dump", "Trigger crash dump", ("trigger_crash_dump",),
            why_missing="no NMI for containers"),
)


# -- every ComputeDriver method ----------------------------------------------------
IMPLEMENTED, REFUSED = "implemented", "refused"
NOT_IMPLEMENTED, NOT_APPLICABLE, NOVA_DEFAULT = "not implemented", "not applicable", \
    "nova's default"
LIVE = "live migration needs CRIU, and `criu check` fails on the reference kernel"
NO_GRAPHICS = "containers have no graphical console (the serial console is there)"
HOST_API = "host actions of the deprecated os-hosts API (XenAPI era); operators use " \
           "the compute service API"
# Methods LXDDriver overrides only to refuse them, with the reason the user sees.
REFUSED_METHODS: dict[str, str] = {
    "swap_volume": "the data would have to be copied under a running guest: detach and "
                   "attach instead",
}
# Implemented methods no feature row names.
IMPLEMENTED_NOTES: dict[str, str] = {
    "manage_image_cache": "nova's image cache pass: runtime images of Glance images no "
                          "instance uses any more are deleted after the minimum age",
    "cache_image": "nova's image pre-caching on an aggregate's hosts: the Glance image "
                   "into the runtime before the first boot (the image cache pass may drop "
                   "it again when unused, as nova's other drivers do)",
}
# Methods LXDDriver leaves to nova's base class: (state, why).
INHERITED: dict[str, tuple[str, str]] = {
    "block_stats": (NOT_IMPLEMENTED, "no per-volume I/O counters from the runtime; nova "
                                     "skips volume usage (volume_usage_poll_interval 0)"),
    "get_all_volume_usage": (NOT_IMPLEMENTED, "as block_stats; nova skips the poll"),
    "check_can_live_migrate_destination": (NOT_IMPLEMENTED, LIVE),
    "check_can_live_migrate_source": (NOT_IMPLEMENTED, LIVE),
    "cleanup_live_migration_destination_check": (NOT_IMPLEMENTED, LIVE),
    "live_migration": (NOT_IMPLEMENTED, LIVE),
    "live_migration_abort": (NOT_IMPLEMENTED, LIVE),
    "live_migration_force_complete": (NOT_IMPLEMENTED, LIVE),
    "pre_live_migration": (NOT_IMPLEMENTED, LIVE),
    "post_live_migration": (NOT_APPLICABLE, LIVE),
    "post_live_migration_at_destination": (NOT_IMPLEMENTED, LIVE),
    "post_live_migration_at_source": (NOT_IMPLEMENTED, LIVE),
    "rollback_live_migration_at_destination": (NOT_IMPLEMENTED, LIVE),
    "rollback_live_migration_at_source": (NOT_APPLICABLE, LIVE),
    "check_source_migrate_data_at_dest": (NOT_APPLICABLE, LIVE),
    "post_claim_migrate_data": (NOT_APPLICABLE, LIVE),
    "get_instance_disk_info": (NOT_APPLICABLE, "used by live migration only"),
    "default_device_names_for_instance": (NOVA_DEFAULT, "nova names the devices itself "
                                                        "when the driver does not"),
    "default_root_device_name": (NOVA_DEFAULT, "as default_device_names_for_instance"),
    "get_device_name_for_instance": (NOVA_DEFAULT, "as default_device_names_for_instance; "
                                                   "attach_volume uses nova's name as the "
                                                   "block device's path in the container"),
    "get_mks_console": (NOT_APPLICABLE, NO_GRAPHICS),
    "get_spice_console": (NOT_APPLICABLE, NO_GRAPHICS),
    "get_vnc_console": (NOT_APPLICABLE, NO_GRAPHICS),
    "host_maintenance_mode": (NOT_APPLICABLE, HOST_API),
    "host_power_action": (NOT_APPLICABLE, HOST_API),
    "set_host_enabled": (NOT_APPLICABLE, HOST_API),
    "is_share_mounted": (NOT_IMPLEMENTED, "Manila shares (virtiofs in libvirt) are not "
                                          "mapped to containers yet"),
    "mount_share": (NOT_IMPLEMENTED, "as is_share_mounted"),
    "umount_share": (NOT_IMPLEMENTED, "as is_share_mounted"),
    "poll_rebooting_instances": (NOT_APPLICABLE, "only with reboot_timeout > 0 (a XenAPI "
                                                 "need): reboots here are synchronous"),
    "power_update_event": (NOT_APPLICABLE, "Ironic only"),
    "is_node_deleted": (NOT_APPLICABLE, "Ironic only"),
    "manages_network_binding_host_id": (NOVA_DEFAULT, "False: ports are bound to this host"),
    "network_binding_host_id": (NOVA_DEFAULT, "this host"),
    "rebuild": (NOVA_DEFAULT, "nova's generic rebuild: destroy, then spawn from the new "
                              "image (a fresh root)"),
    "soft_delete": (NOVA_DEFAULT, "nova powers the instance off instead"),
    "restore": (NOVA_DEFAULT, "nova powers the instance on instead"),
    "trigger_crash_dump": (NOT_APPLICABLE, "no NMI for containers"),
    "volume_snapshot_create": (NOT_APPLICABLE, "assisted snapshots of file-based volumes "
                                               "(NFS, GlusterFS) under a qemu guest"),
    "volume_snapshot_delete": (NOT_APPLICABLE, "as volume_snapshot_create"),
    "capabilities_as_traits": (NOVA_DEFAULT, "traits from the capabilities above"),
    "clean_networks_preparation": (NOVA_DEFAULT, "no-op hook (Ironic)"),
    "prepare_networks_before_block_device_mapping": (NOVA_DEFAULT, "no-op hook (Ironic)"),
    "prepare_for_spawn": (NOVA_DEFAULT, "no-op hook (Ironic)"),
    "failed_spawn_cleanup": (NOVA_DEFAULT, "no-op: spawn rolls back what it made itself"),
    "cleanup_lingering_instance_resources": (NOVA_DEFAULT, "nothing lingers: destroy removes "
                                                           "the container and its ports"),
    "delete_instance_files": (NOVA_DEFAULT, "True: no instance files on the host (the root "
                                            "and the config drive are in the runtime)"),
    "instance_on_disk": (NOVA_DEFAULT, "False: no shared storage between hosts, so "
                                       "evacuate rebuilds from the image"),
    "inject_network_info": (NOVA_DEFAULT, "no-op: the seed carries network info at spawn"),
    "is_supported_fs_format": (NOVA_DEFAULT, "False: ephemeral disks are runtime volumes, "
                                             "not formatted by nova"),
    "emit_event": (NOVA_DEFAULT, "nova's dispatch, fed by the runtime's event listener"),
    "register_event_listener": (NOVA_DEFAULT, "nova's"),
}


def compute_driver_methods(base_cls: type | None = None) -> list[str]:
    """Public methods of nova's ComputeDriver (the driver API)."""
    if base_cls is None:
        from nova.virt import driver as nova_driver

        base_cls = nova_driver.ComputeDriver
    return sorted(n for n in dir(base_cls)
                  if not n.startswith("_") and callable(getattr(base_cls, n)))


def method_states(driver_cls: type | None = None,
                  base_cls: type | None = None) -> list[tuple[str, str, str]]:
    """(method, state, why or the features it serves) for every ComputeDriver method.

    Overridden: implemented, unless it is in REFUSED_METHODS. Inherited: the state
    INHERITED gives it, or "undecided" (a unit test fails on that)."""
    if driver_cls is None or base_cls is None:
        from nova.virt import driver as nova_driver

        from nova_lxd_py.driver import LXDDriver
        driver_cls, base_cls = LXDDriver, nova_driver.ComputeDriver
    rows = []
    for name in compute_driver_methods(base_cls):
        if _overridden(driver_cls, base_cls, name):
            if name in REFUSED_METHODS:
                rows.append((name, REFUSED, REFUSED_METHODS[name]))
                continue
            features = [f"`{f.key}`" for f in FEATURES if name in f.methods]
            rows.append((name, IMPLEMENTED,
                         ", ".join(features) or IMPLEMENTED_NOTES.get(name, "")))
        else:
            state, why = INHERITED.get(name, ("undecided", ""))
            rows.append((name, state, why))
    return rows


def methods_markdown() -> str:
    rows = method_states()
    counts: dict[str, int] = {}
    for _name, state, _why in rows:
        counts[state] = counts.get(state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items(),
                                                              key=lambda kv: -kv[1]))
    return "\n".join([
        "# Every nova ComputeDriver method",
        "",
        "Generated by `python -m nova_lxd_py.support_matrix --methods` from nova's "
        "`ComputeDriver` and `LXDDriver` (`nova_lxd_py/support_matrix.py`): *implemented* "
        "when `LXDDriver` overrides it, *refused* when it overrides it only to refuse "
        "with a reason, otherwise what nova's base class does for us: *nova's default* "
        "(a default or a fallback nova uses when the driver has none, right for "
        "containers), *not implemented* (nova reports the feature unavailable) or *not "
        "applicable* (for other hypervisors). A unit test fails when this file is stale "
        "or when nova adds a method nobody decided on; regenerate it with",
        "`python -m nova_lxd_py.support_matrix --methods > doc/driver-methods.md`.",
        "Which tests prove the features: `doc/support-matrix.md`.",
        "",
        f"{len(rows)} methods: {summary}.",
        "",
        "| method | state | features (support matrix) / why |",
        "|---|---|---|",
        *(f"| `{name}` | {state} | {why} |" for name, state, why in rows),
        "",
    ])


def _overridden(cls: type, base: type, name: str) -> bool:
    mine = getattr(cls, name, None)
    return mine is not None and mine is not getattr(base, name, None)


def status_of(feature: Feature, driver_cls: type | None = None,
              base_cls: type | None = None) -> tuple[str, str]:
    """(status, reason) of one feature as the driver's code stands."""
    if driver_cls is None or base_cls is None:
        from nova.virt import driver as nova_driver

        from nova_lxd_py.driver import LXDDriver
        driver_cls, base_cls = LXDDriver, nova_driver.ComputeDriver
    checks = [_overridden(driver_cls, base_cls, m) for m in feature.methods]
    checks += [bool(driver_cls.capabilities.get(c)) for c in feature.capabilities]
    if not checks or not any(checks):
        return MISSING, feature.why_missing or "not implemented"
    if not all(checks):
        missing = [m for m in feature.methods if not _overridden(driver_cls, base_cls, m)]
        missing += [c for c in feature.capabilities if not driver_cls.capabilities.get(c)]
        return PARTIAL, feature.why_missing or ("missing: " + ", ".join(missing))
    if feature.partial:
        return PARTIAL, feature.partial
    if feature.proven_by is not None and not feature.proven_by:
        return PARTIAL, "no test proves it yet"
    return COMPLETE, feature.notes


def markdown() -> str:
    rows = []
    for feature in FEATURES:
        status, why = status_of(feature)
        methods = ", ".join(f"`{m}`" for m in feature.methods) or "-"
        if status == COMPLETE and feature.proven_by:
            tests = ", ".join(f"`{t.rsplit('::', 1)[-1]}`" for t in feature.proven_by)
            why = f"{why}; proven by {tests}" if why else f"proven by {tests}"
        rows.append(f"| {feature.title} | `{feature.key}` | {status} | {methods} | {why} |")
    counts = {s: sum(1 for f in FEATURES if status_of(f)[0] == s)
              for s in (COMPLETE, PARTIAL, MISSING)}
    return "\n".join([
        "# nova-lxd-py support matrix",
        "",
        "Generated by `python -m nova_lxd_py.support_matrix` from the driver's code "
        "(`nova_lxd_py/support_matrix.py`): a feature is *complete* when `LXDDriver` "
        "overrides every `ComputeDriver` method it needs and sets its capability flags, "
        "*missing* when it overrides none, *partial* otherwise or when a known limit "
        "is stated; rows that name tests (\"proven by\") are complete only when those "
        "tests prove them. A unit test fails when this file is stale; regenerate it with",
        "`python -m nova_lxd_py.support_matrix > doc/support-matrix.md`.",
        "Feature names follow nova's own support matrix.",
        "",
        f"{counts[COMPLETE]} complete, {counts[PARTIAL]} partial, {counts[MISSING]} missing.",
        "",
        "| feature | nova name | status | driver methods | notes / why |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])


def tempest_flags() -> dict[str, bool]:
    """tempest [compute-feature-enabled] options: true only when complete or
    partial (the partial ones work through the API, with the stated limits)."""
    return {f.tempest: status_of(f)[0] != MISSING for f in FEATURES if f.tempest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nova_lxd_py.support_matrix",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--tempest", action="store_true",
                        help="print tempest [compute-feature-enabled] flags instead")
    parser.add_argument("--methods", action="store_true",
                        help="print every ComputeDriver method with its state instead")
    args = parser.parse_args(argv)
    if args.methods:
        sys.stdout.write(methods_markdown())
    elif args.tempest:
        for name, enabled in sorted(tempest_flags().items()):
            print(f"{name} {enabled}")
    else:
        sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
