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
                                    "rescue password (chpasswd)"),
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
    Feature("operation.get-guest-info", "Guest power state and info", ("get_info",)),
    Feature("operation.get-host-uptime", "Host uptime", ("get_host_uptime",),
            notes="the runtime's host's, also when the runtime is remote"),
    Feature("operation.get-host-cpu-stats", "Host CPU times", ("get_host_cpu_stats",),
            notes="from the bundled runtime's host_stats; an LXD runtime: not available"),
    Feature("operation.lifecycle-events", "Power state changes reported as they happen",
            ("init_host", "cleanup_host"),
            notes="the runtime's /1.0/events become nova lifecycle events within seconds; "
                  "containers never autostart, nova owns power state after a host reboot"),
    Feature("operation.server-diagnostics", "Server diagnostics",
            ("get_diagnostics", "get_instance_diagnostics"),
            notes="CPU time, memory used and limit, per-NIC counters by port MAC, disk usage "
                  "(no per-disk I/O counters)"),
    Feature("operation.get-host-ip", "Host IP", ("get_host_ip_addr",)),
    Feature("operation.report-resources", "Inventory in placement",
            ("update_provider_tree", "get_available_resource"),
            notes="VCPU, MEMORY_MB, DISK_GB with allocation ratios and reserved amounts"),
    Feature("guest.setup.configdrive", "Config drive", ("spawn",), tempest="config_drive",
            notes="nova's config-drive tree written into /config-drive (0600 files, "
                  "0700 directories); cloud-init NoCloud seed files otherwise"),
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
                  "(idmapped) where its metadata lxd_mount_path says; hot-plugged"),
    Feature("operation.extend-volume", "Extend attached volume", ("extend_volume",),
            notes="a mounted ext4/xfs filesystem is grown online"),
    Feature("operation.swap-volume", "Swap volume", (),
            why_missing="refused (NotImplementedError with the reason): the data would have "
                        "to be copied under a running guest; detach and attach instead"),
    Feature("storage.block", "Block storage and boot from volume",
            ("spawn", "attach_volume", "get_volume_connector"),
            notes="boot from a volume holding a root filesystem; tested with os-brick's "
                  "local connector over loop devices; iSCSI, RBD, FC... need os-brick's "
                  "connector and the kernel's support on the compute host, and the runtime "
                  "on that host"),
    Feature("operation.quiesce", "Quiesce / unquiesce", ("quiesce", "unquiesce"),
            notes="sync in the guest, then the cgroup freezer"),
    Feature("storage.ephemeral", "Flavor ephemeral disks", ("spawn",),
            notes="custom volumes of the runtime at /mnt (or the image's "
                  "lxd_ephemeral_path), deleted with the server; empty after a move to "
                  "another host"),
    Feature("storage.swap", "Flavor swap", (),
            why_missing="refused at spawn with a clear fault: containers share the host's "
                        "swap"),
    Feature("operation.resize", "Resize", ("migrate_disk_and_power_off", "finish_migration",
                                           "confirm_migration", "finish_revert_migration"),
            tempest="resize", why_missing="resize and cold migration are not implemented",
            notes="on the same host (nova's allow_resize_to_same_host) the new flavor is "
                  "applied in place; to another host the destination runtime pulls the "
                  "stopped container over HTTPS"),
    Feature("operation.cold-migrate", "Cold migration",
            ("migrate_disk_and_power_off", "finish_migration", "confirm_migration"),
            tempest="cold_migration",
            why_missing="the runtimes can move containers between hosts, but the "
                        "driver does not drive it yet",
            notes="each runtime needs core.https_address (reachable by its peers); "
                  "revert restarts the kept source container"),
    Feature("operation.live-migrate", "Live migration",
            ("live_migration", "pre_live_migration", "check_can_live_migrate_destination"),
            tempest="live_migration",
            why_missing="needs CRIU; `criu check` fails on the reference kernel"),
    Feature("operation.evacuate", "Evacuate",
            ("spawn", "destroy", "check_instance_shared_storage_local",
             "check_instance_shared_storage_remote"), capabilities=("supports_evacuate",),
            why_missing="not advertised (supports_evacuate is false)",
            notes="rebuilt from its image on another host; the failed host's compute "
                  "removes the stale container and volumes when it comes back"),
    Feature("operation.set-admin-password", "Set admin password", ("set_admin_password",),
            tempest="change_password", why_missing="not implemented",
            notes="chpasswd through the runtime's exec, for images that have it"),
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
    args = parser.parse_args(argv)
    if args.tempest:
        for name, enabled in sorted(tempest_flags().items()):
            print(f"{name} {enabled}")
    else:
        sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
