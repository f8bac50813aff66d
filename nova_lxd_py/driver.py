"""nova-compute virt driver for system containers (nova 34.x).

Thin on purpose: it turns nova's calls into runtime calls and delegates the
mapping work to flavor, image, host, vif and configdrive. It keeps no
per-instance state in memory (the runtime is the source of truth), so it is
safe under nova-compute's native threads; the pylxd client it shares is
built once, lazily.

Loaded by nova as ``compute_driver = lxd_py.LXDDriver`` through the shim
module ``nova.virt.lxd_py``.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from typing import Any, ClassVar

import nova.conf
import nova.virt.node
from nova.compute import power_state, task_states, vm_states
from nova.image import glance
from oslo_log import log as logging
from oslo_utils import excutils
from pylxd import exceptions as lxd_exceptions

from nova import exception as nova_exception
from nova import objects
from nova.virt import driver, hardware
from nova_lxd_py import client as lxd_client
from nova_lxd_py import conf as lxd_conf
from nova_lxd_py import configdrive, diagnostics, ephemeral, exception
from nova_lxd_py import console as serial_console
from nova_lxd_py import events as runtime_events
from nova_lxd_py import guest
from nova_lxd_py import rescue as rescue_mod
from nova_lxd_py import flavor as flavor_mapping
from nova_lxd_py import host as host_info
from nova_lxd_py import image as images
from nova_lxd_py import migration as migrations
from nova_lxd_py import reconcile, runtime_api, runtime_health
from nova_lxd_py import volume
from nova_lxd_py import vif as vifs

CONF = nova.conf.CONF
lxd_conf.register_opts(CONF)
LOG = logging.getLogger(__name__)

# LXD status codes -> nova power states.
STATUS_TO_POWER = {
    101: power_state.RUNNING,    # Started
    102: power_state.SHUTDOWN,   # Stopped
    103: power_state.RUNNING,    # Running
    104: power_state.CRASHED,    # Error
    106: power_state.RUNNING,    # Starting
    107: power_state.RUNNING,    # Stopping
    108: power_state.NOSTATE,    # Aborting
    109: power_state.RUNNING,    # Freezing
    110: power_state.PAUSED,     # Frozen
    111: power_state.RUNNING,    # Thawed
}

UUID_KEY = runtime_api.UUID_KEY
SUSPENDED_KEY = "user.nova_suspended"
AUTOSTART_KEY = "boot.autostart"
REQUIRED_EXTENSIONS = ("instances",)
PRODUCT_NAME = "OpenStack Nova"
POOLS_WITH_QUOTAS = ("btrfs", "zfs", "lvm", "ceph")


class LXDDriver(driver.ComputeDriver):
    """System containers through an LXD-API runtime."""

    capabilities: ClassVar[dict[str, bool]] = dict(driver.ComputeDriver.capabilities)
    capabilities.update({
        "has_imagecache": True,
        "supports_evacuate": True,
        # nova's name for a same-host *cold migration* (same flavor), which would
        # move nothing here; a resize on the same host needs only nova's
        # allow_resize_to_same_host and is done in place (finish_migration).
        "supports_migrate_to_same_host": False,
        "supports_attach_interface": True,
        # nova refuses Cinder's volume-extended event without it
        "supports_extend_volume": True,
        # A raw VM disk can't boot a container: advertise no COMPUTE_IMAGE_TYPE_*,
        # so nova's image-type prefilter keeps VM images away; container images are
        # root-tar or squashfs, which have no such trait (see image.py).
        "supports_image_type_raw": False,
        "supports_pcpus": False,
        "supports_accelerators": False,
        "supports_bfv_rescue": False,
        "supports_multiattach": False,
    })

    def __init__(self, virtapi: Any, read_only: bool = False):
        super().__init__(virtapi)
        # Captured now: several compute services may share one CONF in tests.
        self._endpoint = lxd_client.Endpoint.from_conf(CONF)
        self._clients = lxd_client.ClientFactory(self._endpoint, runtime_health.ConnectionWatch(
            runtime_health.http_probe(self._endpoint, CONF.lxd.health_check_timeout),
            interval=CONF.lxd.health_check_interval,
            probe_timeout=CONF.lxd.health_check_timeout))
        self._nodename = CONF.host
        self._node_uuid: str | None = None
        self._profiles = list(CONF.lxd.profiles)
        self._pool = CONF.lxd.pool
        self._root_quota = False
        self._op_timeout = CONF.lxd.operation_timeout
        self._rt = runtime_api.RuntimeAPI(self._clients, self._op_timeout)
        self._console_max = CONF.lxd.console_log_max_bytes
        self._consoles = serial_console.SerialConsoles(self._endpoint)
        self._config_drive_dir = CONF.lxd.config_drive_dir
        self._images = images.ImageStore(self._clients, glance.API(),
                                         CONF.lxd.image_cache_dir)
        self._events = runtime_events.LifecycleListener(
            self._endpoint, self._power_state_by_name, self.emit_event, self.list_instances,
            watch=self._clients.watch)
        self._service_lock = threading.Lock()
        self._clients.watch.subscribe(self._runtime_reachability_changed)

    # -- connection ------------------------------------------------------------
    def init_host(self, host: str) -> None:
        """Connect, check the runtime speaks what we need, learn the pool."""
        info = self._rt.client.host_info
        missing = [ext for ext in REQUIRED_EXTENSIONS
                   if ext not in (info.get("api_extensions") or [])]
        if missing:
            raise exception.RuntimeIncompatible(endpoint=self._endpoint.describe(),
                                                missing=", ".join(missing))
        self._pool = self._pool or self._profile_pool() or "default"
        try:
            pool = self._rt.pool(self._pool)
        except lxd_exceptions.NotFound:
            raise exception.RuntimeConfigError(
                reason=f"storage pool {self._pool!r} does not exist in the runtime")
        self._root_quota = pool.get("driver") in POOLS_WITH_QUOTAS
        if not self._root_quota:
            LOG.warning("Storage pool %s (driver %s) does not enforce disk quotas: "
                        "flavor root_gb is scheduled but not enforced",
                        self._pool, pool.get("driver"))
        self._node_uuid = nova.virt.node.get_local_node_uuid()
        env = info.get("environment") or {}
        LOG.info("Connected to %s (%s %s) on %s, pool %s", self._endpoint.describe(),
                 env.get("server", "lxd"), env.get("server_version"), host, self._pool)
        self._own_power_state()
        self._listen_consoles()
        self._events.start()
        # Connected: a service this driver disabled while the runtime was away
        # (before a restart of nova-compute, too) goes back into scheduling.
        self._runtime_reachability_changed()

    def _runtime_reachability_changed(self) -> None:
        """The runtime stopped or started answering (any call, or the event stream's
        reconnect): like libvirt's driver on a closed connection, take this host out
        of scheduling with an "AUTO:" reason, and put it back once the runtime answers."""
        with self._service_lock:
            reason = self._clients.watch.down_reason
            if reason is None:
                LOG.info("The container runtime at %s answers", self._endpoint.describe())
                self._events.kick()
            else:
                LOG.error("Cannot reach the container runtime at %s: %s",
                          self._endpoint.describe(), reason)
                if self._clients.watch.hung:
                    self._events.reconnect()  # its stream went silent, not closed
            host_info.set_service_enabled(
                self.virtapi, self._nodename, reason is None,
                f"Cannot reach the container runtime at {self._endpoint.describe()}: {reason}")

    def _listen_consoles(self) -> None:
        """Serial console listeners for the instances already running here (after a
        restart of nova-compute, whose ports died with the old process)."""
        if not CONF.serial_console.enabled:
            return
        try:
            running = self._rt.running_names()
            owned = [i["name"] for i in self._rt.owned()]
        except lxd_exceptions.LXDAPIException as exc:
            LOG.warning("No serial console listeners at start: %s", exc)
            return
        for name in owned:
            for container in (rescue_mod.name_of(name), name):
                if container in running:
                    self._consoles.up(name, container)
                    break

    def _own_power_state(self) -> None:
        """Containers made by older versions kept the runtime's autostart."""
        for data in self._rt.owned():
            if (data.get("config") or {}).get(AUTOSTART_KEY) != "false":
                self._rt.patch_config(data["name"], {AUTOSTART_KEY: "false"})

    def process_instances_at_startup(self, context, instances):
        """Make the runtime agree with nova after nova-compute (re)started
        (see reconcile.py): half-made containers of builds and rebuilds cut
        short go, containers of instances deleted or moved away go, containers
        of instances nova does not know at all are handled per [lxd]
        unknown_container_action; a finish_migration cut short here is failed
        (nova has no start-up path for it); then the image cache drops what only
        the removed ones used."""
        mine = {instance.uuid: instance for instance in instances}
        try:
            owned = self._rt.owned()
        except lxd_exceptions.LXDAPIException as exc:
            LOG.warning("Not reconciling the runtime's containers at start: %s", exc)
            return instances
        for data in owned:
            uuid = data["config"][UUID_KEY]
            instance = mine.get(uuid)
            try:
                if instance is not None:
                    operation = reconcile.cut_short(instance)
                    if operation:
                        LOG.warning("The %s of this instance was cut short: removing its "
                                    "half-made container %s", operation, data["name"],
                                    instance=instance)
                        self.destroy(context, instance, instance.get_network_info())
                    elif instance.task_state == task_states.RESIZE_FINISH:
                        self._fail_interrupted_finish(context, instance)
                    continue
                known = reconcile.lookup(context, uuid)
                if known is None:
                    reconcile.unknown_container(
                        CONF.lxd.unknown_container_action,
                        lambda orphan: self.destroy(context, orphan, []), context, data)
                elif reconcile.stale(known, self._nodename):
                    LOG.warning("Removing container %s: its instance is %s", data["name"],
                                "deleted" if known.deleted else f"on host {known.host}",
                                instance=known)
                    self.destroy(context, known, [])
            except Exception:  # noqa: BLE001 - one instance must not stop the host's start
                LOG.exception("Reconciling container %s failed", data["name"])
        # Images only what left (evacuated, deleted) used: nova's image cache
        # pass, with its options, once now rather than after manager_interval.
        try:
            self.manage_image_cache(context, instances)
        except Exception:  # noqa: BLE001 - the periodic pass tries again
            LOG.exception("Image cache pass at start failed")
        return instances

    @staticmethod
    def _fail_interrupted_finish(context, instance: Any) -> None:
        """nova-compute died in finish_migration here: nova's manager has no
        start-up path for it (the server would stay in RESIZE for ever), so
        it ends as nova ends a finish_migration that raised: instance ERROR,
        migration error. Both containers stay: a hard reboot starts this
        one, a delete removes it."""
        LOG.error("nova-compute stopped while it finished a migration here: the "
                  "migration failed", instance=instance)
        if instance.migration_context is not None:
            migration = objects.Migration.get_by_id_and_instance(
                context, instance.migration_context.migration_id, instance.uuid)
            migration.status = "error"
            migration.save()
        instance.vm_state = vm_states.ERROR
        instance.task_state = None
        instance.save()

    def cleanup_host(self, host: str) -> None:
        self._clients.watch.close()
        self._events.stop()
        self._consoles.shutdown()

    def _profile_pool(self) -> str | None:
        for name in reversed(self._profiles):
            try:
                profile = self._rt.api.profiles[name].get().json()["metadata"]
            except lxd_exceptions.NotFound:
                raise exception.RuntimeConfigError(
                    reason=f"profile {name!r} from [lxd] profiles does not exist")
            for device in (profile.get("devices") or {}).values():
                if device.get("type") == "disk" and device.get("path") == "/":
                    return device.get("pool")
        return None

    def _require(self, instance: Any) -> dict:
        data = self._own(instance)
        if data is None:
            raise nova_exception.InstanceNotFound(instance_id=instance.uuid)
        return data

    def _own(self, instance: Any) -> dict | None:
        """The instance's container; a container that merely has its name is not."""
        data = self._rt.get(instance.name)
        if data is not None and runtime_api.owner_of(data) != instance.uuid:
            LOG.warning("Container %s belongs to %s, not to this instance", instance.name,
                        runtime_api.owner_of(data) or "no nova instance", instance=instance)
            return None
        return data

    # -- inventory -----------------------------------------------------------------
    def list_instances(self) -> list[str]:
        """Names of the containers this driver made (others are left alone)."""
        return [i["name"] for i in self._rt.owned()]

    def list_instance_uuids(self) -> list[str]:
        return [i["config"][UUID_KEY] for i in self._rt.owned()]

    def instance_exists(self, instance: Any) -> bool:
        return self._own(instance) is not None

    def get_info(self, instance: Any, use_cache: bool = True) -> hardware.InstanceInfo:
        data = self._require(instance)
        return hardware.InstanceInfo(state=self._power_state(instance.name, data),
                                     internal_id=instance.name)

    def _power_state(self, name: str, data: dict) -> int:
        state = STATUS_TO_POWER.get(data.get("status_code"), power_state.NOSTATE)
        if state == power_state.PAUSED and (data.get("config") or {}).get(SUSPENDED_KEY):
            state = power_state.SUSPENDED
        if state == power_state.SHUTDOWN and \
                self._rt.status(rescue_mod.name_of(name)) == runtime_api.RUNNING:
            state = power_state.RUNNING  # rescued: nova expects the instance up
        return state

    def _power_state_by_name(self, name: str) -> tuple[str, int] | None:
        """(uuid, power state) of one of our containers, for the event listener."""
        data = self._rt.get(name)
        uuid = ((data or {}).get("config") or {}).get(UUID_KEY)
        return (uuid, self._power_state(name, data)) if uuid else None

    def get_num_instances(self) -> int:
        return len(self._rt.owned())

    # -- spawn -------------------------------------------------------------------
    def spawn(self, context, instance, image_meta, injected_files, admin_password,
              allocations, network_info=None, block_device_info=None, power_on=True,
              accel_info=None):
        """Create the container with its ports plugged, wait for Neutron's
        network-vif-plugged events like libvirt (which holds a paused guest),
        then start it."""
        name = instance.name
        network_info = network_info or []
        flavor_mapping.check_swap(instance.flavor)
        config, devices = self._config(instance, network_info)
        disks = self._ephemeral_disks(instance, block_device_info, devices)
        start = time.monotonic()
        if volume.boots_from_volume(block_device_info, instance):
            self._require_local_runtime(instance)
            source = {"type": "none"}  # the root is the volume
        else:
            source = {"type": "image", "fingerprint": self._images.ensure(context, image_meta)}
        undo: list[Any] = []
        try:
            undo.append(lambda: volume.disconnect_all(block_device_info, instance))
            devices.update(self._volume_devices(context, instance, block_device_info, {}))
            undo.append(lambda: ephemeral.delete(self._rt, self._pool, instance))
            ephemeral.create(self._rt, self._pool, instance, disks)
            drive = self._config_drive(instance, network_info, injected_files, admin_password)
            try:
                with self.virtapi.wait_for_instance_event(
                        instance, self._neutron_events(network_info, power_on),
                        timeout=CONF.vif_plugging_timeout,
                        error_callback=self._neutron_failed_callback):
                    undo.append(lambda: self.unplug_vifs(instance, network_info))
                    self.plug_vifs(instance, network_info)
                    self._claim_name(instance)
                    self._rt.create(self._body(name, config, devices, source))
                    undo.append(lambda: self._rt.delete(name, instance.uuid))
                    self._push_seed(instance, network_info, extra=drive, fresh=True)
            except nova_exception.InstanceEventTimeout:
                if CONF.vif_plugging_is_fatal:
                    raise nova_exception.VirtualInterfaceCreateException()
                LOG.warning("No network-vif-plugged event in %ss; starting anyway "
                            "([DEFAULT] vif_plugging_is_fatal is false)",
                            CONF.vif_plugging_timeout, instance=instance)
            if power_on:
                self._rt.action(name, "start")
        except Exception as exc:  # noqa: BLE001 - roll back whatever failed, then re-raise
            with excutils.save_and_reraise_exception() as ctx:
                self._rollback(undo, instance)
                reason = unbootable_image_reason(exc)
                if reason:
                    # No other host can boot it either: fail the build, don't reschedule.
                    ctx.reraise = False
            raise nova_exception.ImageUnacceptable(image_id=image_meta.id, reason=reason)
        if power_on:
            self._consoles.up(name)
        LOG.info("Spawned container %s from %s in %.2fs", name,
                 f"image {image_meta.id}" if source["type"] == "image" else "a volume",
                 time.monotonic() - start, instance=instance)

    def _ephemeral_disks(self, instance: Any, block_device_info: Any,
                         devices: dict) -> list[ephemeral.Disk]:
        """The instance's ephemeral disks; their devices are added to *devices*."""
        disks = ephemeral.plan(instance.flavor.ephemeral_gb, block_device_info,
                               instance.system_metadata)
        devices.update(ephemeral.devices(self._pool, instance.name, disks))
        return disks

    def _claim_name(self, instance: Any) -> None:
        """The container name must be free. A leftover of this same instance (an
        earlier attempt whose clean-up failed) is removed; anything else is not
        ours to touch: the build fails on this host and nova reschedules."""
        data = self._rt.get(instance.name)
        if data is None:
            return
        if runtime_api.owner_of(data) == instance.uuid:
            LOG.warning("Removing a leftover container of this instance", instance=instance)
            self._rt.delete(instance.name, instance.uuid)
            return
        raise nova_exception.InstanceExists(name=instance.name)

    def _rollback(self, undo: list[Any], instance: Any) -> None:
        for step in reversed(undo):
            try:
                step()
            except Exception:
                LOG.exception("Rollback step failed", instance=instance)

    def _config(self, instance: Any, network_info: Any) -> tuple[dict, dict]:
        """Instance config and devices from the flavor and the ports."""
        mapping = flavor_mapping.instance_config(
            flavor_mapping.FlavorView.from_flavor(instance.flavor),
            flavor_mapping.HostFacts(pool=self._pool or "default",
                                     root_quota=self._root_quota))
        devices = dict(mapping.devices)
        config = dict(mapping.config)
        for index, vif in enumerate(network_info or []):
            vifs.check(vif)  # refuse a port we can't plug before any work
            dev_name, dev = vifs.nic_device(index, vif)
            devices[dev_name] = dev
            config[vifs.record_key(vif["id"])] = vifs.record(vif)
        config[UUID_KEY] = instance.uuid
        config[AUTOSTART_KEY] = "false"  # nova owns power state, also after a host reboot
        # cloud-init's ds-identify looks for this in PID 1's environment before it
        # asks nova's metadata service (a container has no DMI to tell it).
        config["environment.product_name"] = PRODUCT_NAME
        return config, devices

    def _body(self, name: str, config: dict, devices: dict, source: dict) -> dict:
        return {"name": name, "type": "container", "profiles": self._profiles,
                "config": config, "devices": devices, "source": source}

    def _push_seed(self, instance: Any, network_info: Any, name: str | None = None,
                   extra: dict[str, bytes] | None = None, fresh: bool = False) -> None:
        """NoCloud seed (and config drive) into the container: 0600 files, 0700 dirs.

        fresh: a new root (from an image or a volume), where a config drive found is
        not this instance's (an image made elsewhere): removed, so the guest reads
        only what nova gives it."""
        name = name or instance.name
        if fresh:
            self._rt.delete_tree(name, configdrive.CONFIG_DRIVE_MOUNT)
        files = configdrive.nocloud_files(instance, configdrive.hostname_for(instance),
                                          network_info)
        files.update(extra or {})
        self._rt.push_files(name, files, private=configdrive.PRIVATE_DIRS)

    @staticmethod
    def _config_drive(instance: Any, network_info: Any, injected_files: list | None = None,
                      admin_password: str | None = None) -> dict[str, bytes]:
        """nova's config-drive tree for /config-drive, if the instance has one.

        Written into the container's root, so it moves with the container (cold
        migration, resize); a rescue container gets its own with the rescue password."""
        if not configdrive_required(instance):
            return {}
        return configdrive.config_drive_files(instance, network_info, injected_files,
                                              admin_password)

    def _legacy_config_drive_dir(self, instance: Any) -> str:
        """Where versions that bind-mounted the config drive from the host wrote it."""
        return os.path.join(self._config_drive_dir, instance.uuid)

    @staticmethod
    def _neutron_events(network_info: Any, power_on: bool) -> list[tuple[str, str]]:
        """Events to wait for, as libvirt: ports still down, when the instance
        is to run and a timeout is set."""
        if not (power_on and CONF.vif_plugging_timeout):
            return []
        return [("network-vif-plugged", vif["id"]) for vif in network_info
                if vif.get("active", True) is False]

    @staticmethod
    def _neutron_failed_callback(event_name: str, instance: Any) -> None:
        LOG.error("Neutron reported failure on event %s", event_name, instance=instance)
        if CONF.vif_plugging_is_fatal:
            raise nova_exception.VirtualInterfaceCreateException()

    # -- destroy -----------------------------------------------------------------
    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        """Stop the container; with destroy_disks its root filesystem goes too
        (a container's disk is the container, so without it we keep it stopped)."""
        name = instance.name
        self._rt.delete(rescue_mod.name_of(name), instance.uuid)
        self._rt.delete(runtime_api.scratch_name(name), instance.uuid)
        data = self._own(instance)  # a container merely named like it is left alone
        if data is not None:
            if destroy_disks:
                self._rt.delete(name, instance.uuid)
            elif self._rt.status(name) != runtime_api.STOPPED:
                self._rt.action(name, "stop", timeout=-1, force=True)
        else:
            LOG.warning("Container %s was already gone", name, instance=instance)
        self._consoles.down(name)
        self._cleanup(instance, network_info, data, destroy_disks)
        volume.disconnect_all(block_device_info, instance)
        LOG.info("Destroyed container %s (destroy_disks=%s)", name, destroy_disks,
                 instance=instance)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        self._consoles.down(instance.name)
        data = self._rt.get(instance.name) if destroy_vifs else None
        self._cleanup(instance, network_info, data, destroy_disks, destroy_vifs)

    def _cleanup(self, instance: Any, network_info: Any, data: dict | None,
                 destroy_disks: bool, destroy_vifs: bool = True) -> None:
        """Unplug the ports, with *data* (the container as it was) naming those
        nova no longer lists, e.g. after its info cache was emptied."""
        if destroy_vifs:
            self.unplug_vifs(instance, network_info or [])
            if data is not None:
                vifs.unplug_leftovers(instance, data, network_info)
        if destroy_disks:
            self._rt.delete(instance.name, instance.uuid)
            ephemeral.delete(self._rt, self._pool, instance)
            shutil.rmtree(self._legacy_config_drive_dir(instance), ignore_errors=True)

    # -- power -----------------------------------------------------------------
    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None, share_info=None):
        name = instance.name
        self._require(instance)
        self._clear_suspended(instance)
        status = self._rt.status(name)
        if status == runtime_api.FROZEN:
            self._rt.action(name, "unfreeze")
        if status == runtime_api.STOPPED:
            self._rt.action(name, "start")
        elif reboot_type == "SOFT":
            try:
                self._rt.action(name, "restart", timeout=CONF.shutdown_timeout, force=False)
            except lxd_exceptions.LXDAPIException:
                LOG.warning("Soft reboot timed out, forcing it", instance=instance)
                self._rt.action(name, "restart", force=True)
        else:
            self._rt.action(name, "restart", force=True)
        if self._rt.status(name) != runtime_api.RUNNING:
            self._rt.action(name, "start")
        self._consoles.up(name)
        LOG.info("Rebooted container %s (%s)", name, reboot_type, instance=instance)

    def power_off(self, instance, timeout=0, retry_interval=0):
        """A missing container is off already (as libvirt treats a missing domain):
        rebuild powers off first, also when a rebuild cut short left nothing."""
        name = instance.name
        if self._own(instance) is None:
            LOG.warning("No container %s to power off", name, instance=instance)
            return
        self._consoles.down(name)
        self._clear_suspended(instance)
        status = self._rt.status(name)
        if status == runtime_api.STOPPED:
            return
        if status == runtime_api.FROZEN:
            self._rt.action(name, "unfreeze")
        if timeout:
            try:
                self._rt.action(name, "stop", timeout=timeout, force=False)
            except lxd_exceptions.LXDAPIException as exc:
                LOG.warning("Graceful stop did not finish in %ss (%s), forcing it",
                            timeout, exc, instance=instance)
        if self._rt.status(name) != runtime_api.STOPPED:
            self._rt.action(name, "stop", timeout=-1, force=True)
        LOG.info("Powered off container %s", name, instance=instance)

    def power_on(self, context, instance, network_info, block_device_info=None,
                 accel_info=None, share_info=None):
        name = instance.name
        self._require(instance)
        self._clear_suspended(instance)
        status = self._rt.status(name)
        if status == runtime_api.FROZEN:
            self._rt.action(name, "unfreeze")
        elif status != runtime_api.RUNNING:
            self.plug_vifs(instance, network_info or [])
            self._reconnect_volumes(context, instance, block_device_info)
            self._rt.action(name, "start")
        self._consoles.up(name)
        LOG.info("Powered on container %s", name, instance=instance)

    def resume_state_on_host_boot(self, context, instance, network_info, share_info,
                                  block_device_info=None):
        """After a host reboot: nova, not the runtime, starts what was running
        (our containers have boot.autostart=false)."""
        self.power_on(context, instance, network_info, block_device_info,
                      share_info=share_info)

    def pause(self, instance):
        self._require(instance)
        if self._rt.status(instance.name) != runtime_api.FROZEN:
            self._rt.action(instance.name, "freeze")
        LOG.info("Paused container %s", instance.name, instance=instance)

    def unpause(self, instance):
        self._require(instance)
        if self._rt.status(instance.name) == runtime_api.FROZEN:
            self._rt.action(instance.name, "unfreeze")
        LOG.info("Unpaused container %s", instance.name, instance=instance)

    def suspend(self, context, instance):
        """Containers have no RAM image to save: suspend freezes them and marks
        them so get_info reports SUSPENDED rather than PAUSED."""
        self._require(instance)
        self._consoles.down(instance.name)
        self._rt.patch_config(instance.name, {SUSPENDED_KEY: "true"})
        self._rt.action(instance.name, "freeze")
        LOG.info("Suspended (froze) container %s", instance.name, instance=instance)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        self._require(instance)
        if self._rt.status(instance.name) == runtime_api.FROZEN:
            self._rt.action(instance.name, "unfreeze")
        elif self._rt.status(instance.name) == runtime_api.STOPPED:
            self._rt.action(instance.name, "start")
        self._clear_suspended(instance)
        self._consoles.up(instance.name)
        LOG.info("Resumed container %s", instance.name, instance=instance)

    def _clear_suspended(self, instance: Any) -> None:
        data = self._own(instance)
        if data and (data.get("config") or {}).get(SUSPENDED_KEY):
            config = {k: v for k, v in data["config"].items() if k != SUSPENDED_KEY}
            self._rt.put_instance(instance.name, dict(data, config=config))

    # -- console -----------------------------------------------------------------
    def get_serial_console(self, context, instance):
        """A TCP port on [serial_console] proxyclient_address bridged to the
        container's /dev/console (the rescue container's while rescued)."""
        self._require(instance)
        for container in (rescue_mod.name_of(instance.name), instance.name):
            if self._rt.status(container) in (runtime_api.RUNNING, runtime_api.FROZEN):
                return self._consoles.connect_info(instance.name, container)
        if not CONF.serial_console.enabled:
            raise nova_exception.ConsoleTypeUnavailable(console_type="serial")
        raise nova_exception.InstanceNotReady(instance_id=instance.uuid)

    def get_console_output(self, context, instance):
        self._require(instance)
        data = self._rt.console_log(instance.name)
        # A str (nova's driver contract) holding the bytes as latin-1:
        # nova-compute encodes it back with latin-1 before tailing, which fails on
        # any other character (systemd prints U+2026), then decodes as ascii.
        return data[-self._console_max:].decode("latin-1")

    # -- images ----------------------------------------------------------------------
    def cache_image(self, context, image_id):
        """nova's image pre-caching (``POST /os-aggregates/{id}/images``): the image
        into the runtime before a server needs it, so first boots skip the download.
        True when fetched now, False when it was there."""
        if self._images.alias_target(image_id):
            return False
        from nova import objects

        self._images.ensure(context, objects.ImageMeta.from_image_ref(
            context, glance.API(), image_id))
        return True

    # -- snapshot -----------------------------------------------------------------
    def snapshot(self, context, instance, image_id, update_task_state):
        """Publish the container and upload it to Glance as a unified tarball.

        A running container is frozen only for the time of a runtime snapshot;
        the image is published from that snapshot, so the instance keeps
        running while the image is built and uploaded."""
        name = instance.name
        if self._own(instance) is None:
            raise nova_exception.InstanceNotRunning(instance_id=instance.uuid)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        snap = "nova-snapshot-" + image_id[:8]
        was_running = self._rt.status(name) == runtime_api.RUNNING
        if was_running:
            self.quiesce(context, instance, None)
        try:
            self._rt.snapshot(name, snap)
        finally:
            if was_running:
                self.unquiesce(context, instance, None)
        try:
            # like libvirt's, whose config drive is a disk of its own: never in the image
            fingerprint = self._rt.publish_snapshot(
                name, snap, f"snapshot of {instance.uuid}", instance.uuid,
                without=(configdrive.CONFIG_DRIVE_MOUNT,) if configdrive_required(instance)
                else ())
        finally:
            self._rt.delete_snapshot(name, snap)
        update_task_state(task_state=task_states.IMAGE_UPLOADING,
                          expected_state=task_states.IMAGE_PENDING_UPLOAD)
        glance_api = glance.API()
        image_meta = images.snapshot_image_meta(CONF.lxd.snapshot_disk_format)
        try:
            with contextlib.closing(self._rt.export(fingerprint, self._op_timeout)) as resp:
                glance_api.update(context, image_id, image_meta,
                                  data=runtime_api.ResponseReader(resp))
            self._images.add_alias(image_id, fingerprint)
        except Exception:  # noqa: BLE001 - drop the image, then re-raise
            with excutils.save_and_reraise_exception():
                self._rt.delete_image(fingerprint)
        LOG.info("Snapshot of %s uploaded as image %s", name, image_id, instance=instance)

    # -- rescue ------------------------------------------------------------------
    def rescue(self, context, instance, network_info, image_meta, rescue_password,
               block_device_info, share_info):
        """Stop the instance and boot a rescue container from the rescue image
        with the instance's root filesystem at /mnt/rescue, its ports and, when
        the image has chpasswd, the rescue password."""
        name = instance.name
        data = self._require(instance)
        root = rescue_mod.root_disk(self._rt, name, data, self._pool, self._local_state_dir())
        if self._rt.status(name) != runtime_api.STOPPED:
            self._rt.action(name, "stop", timeout=-1, force=True)
        fingerprint = self._images.ensure(context, image_meta)
        rescue = rescue_mod.name_of(name)
        network_info = network_info or []
        config, devices = self._config(instance, network_info)
        config = rescue_mod.config(config, instance.uuid)
        devices["rescue"] = root
        try:
            self.plug_vifs(instance, network_info)
            self._rt.create(self._body(rescue, config, devices,
                                       {"type": "image", "fingerprint": fingerprint}))
            self._push_seed(instance, network_info, rescue, self._config_drive(
                instance, network_info, admin_password=rescue_password), fresh=True)
            self._rt.action(rescue, "start")
            if rescue_password:
                try:
                    guest.set_password(self._rt, rescue, guest.admin_user(instance),
                                       rescue_password)
                except nova_exception.SetAdminPasswdNotSupported:
                    LOG.warning("The rescue image has no chpasswd: rescue password not set",
                                instance=instance)
        except Exception:  # noqa: BLE001 - undo the rescue, then re-raise
            with excutils.save_and_reraise_exception():
                self._rt.delete(rescue, instance.uuid)
                self._rt.action(name, "start")
        self._consoles.up(name, rescue)
        LOG.info("Rescued %s in %s", name, rescue, instance=instance)

    def unrescue(self, context, instance):
        name = instance.name
        self._rt.delete(rescue_mod.name_of(name), instance.uuid)
        if self._rt.status(name) != runtime_api.RUNNING:
            self._rt.action(name, "start")
        self._consoles.up(name)
        LOG.info("Unrescued %s", name, instance=instance)

    def _local_state_dir(self) -> str | None:
        """The state directory of a runtime on this host's unix socket."""
        if not self._endpoint.is_unix:
            return None
        return os.path.dirname(self._endpoint.url.removeprefix("unix://"))

    # -- volumes ---------------------------------------------------------------------
    def get_volume_connector(self, instance):
        return volume.connector_properties(CONF.my_block_storage_ip, CONF.host)

    def attach_volume(self, context, connection_info, instance, mountpoint, disk_bus=None,
                      device_type=None, encryption=None):
        """Connect the volume here and hand it to the container (hot-plugged when it
        runs): as a block device at mountpoint, or mounted where its metadata says."""
        vol_id = volume.volume_id(connection_info)
        if encryption:
            raise nova_exception.VolumeEncryptionNotSupported(volume_type="encrypted",
                                                              volume_id=vol_id)
        self._require_local_runtime(instance)
        data = self._require(instance)
        mount_at = self._volume_mount_path(context, vol_id)
        path = volume.connect(connection_info)
        devices = dict(data.get("devices") or {})
        devices[volume.device_name(vol_id)] = volume.device(path, mountpoint, mount_at)
        try:
            self._rt.put_instance(instance.name, dict(data, devices=devices))
        except Exception as exc:  # noqa: BLE001 - nothing half-made: disconnect again
            with excutils.save_and_reraise_exception(reraise=False):
                volume.disconnect(connection_info)
            raise nova_exception.VolumeAttachFailed(volume_id=vol_id, reason=str(exc))
        LOG.info("Attached volume %s (%s) %s", vol_id, path,
                 f"mounted at {mount_at}" if mount_at else f"as {mountpoint}",
                 instance=instance)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None):
        vol_id = volume.volume_id(connection_info)
        data = self._own(instance)
        name = volume.device_name(vol_id)
        if data is not None and name in (data.get("devices") or {}):
            devices = {k: v for k, v in data["devices"].items() if k != name}
            self._rt.put_instance(instance.name, dict(data, devices=devices))
        volume.disconnect(connection_info)
        LOG.info("Detached volume %s", vol_id, instance=instance)

    def swap_volume(self, context, old_connection_info, new_connection_info, instance,
                    mountpoint, resize_to):
        raise NotImplementedError(
            "swapping the volume under a running container is not supported (the "
            "data would have to be copied while the guest writes): detach and attach")

    def extend_volume(self, context, connection_info, instance, requested_size):
        """The host (and so the container) sees the grown device; a filesystem we
        mounted for the container from it is grown online where the host allows
        (see volume's docstring: a refusal is recorded, the volume keeps working)."""
        vol_id = volume.volume_id(connection_info)
        new_size = volume.extend(connection_info)
        path = (connection_info.get("data") or {}).get("device_path")
        at = volume.mounted_at((self._own(instance) or {}).get("devices"), path)
        grown = at is not None and volume.grow_filesystem(context, instance, vol_id, path, at,
                                                          CONF.host)
        LOG.info("Extended volume %s to %d bytes%s", vol_id, new_size,
                 f" and its filesystem at {at}" if grown else "", instance=instance)
        return new_size

    def _volume_devices(self, context, instance, block_device_info, current):
        return volume.connect_devices(
            block_device_info, instance, self._pool, current,
            lambda vol_id: self._volume_mount_path(context, vol_id))

    def _volume_mount_path(self, context, vol_id: str) -> str | None:
        if context is None:
            return None
        from nova.volume import cinder

        return volume.mount_path(cinder.API().get(context, vol_id))

    def _require_local_runtime(self, instance) -> None:
        if not self._endpoint.is_unix:
            raise nova_exception.NovaException(
                "Volumes need the runtime on this compute host (a unix socket endpoint): "
                "os-brick connects them here")

    def _reconnect_volumes(self, context, instance, block_device_info) -> None:
        """Before a start: (re)connect the volumes (after a host reboot their
        connections are gone and device paths may change) and update the container."""
        if not volume.mapped(block_device_info):
            return
        data = self._require(instance)
        current = dict(data.get("devices") or {})
        wanted = self._volume_devices(context, instance, block_device_info, current)
        if any(current.get(k) != v for k, v in wanted.items()):
            self._rt.put_instance(instance.name, dict(data, devices={**current, **wanted}))

    # -- diagnostics ---------------------------------------------------------------
    def get_diagnostics(self, instance):
        self._require(instance)
        return diagnostics.legacy(self._rt.state(instance.name) or {},
                                  instance.flavor.memory_mb)

    def get_instance_diagnostics(self, instance):
        data = self._require(instance)
        return diagnostics.instance_diagnostics(
            self._rt.state(instance.name) or {}, self._power_state(instance.name, data),
            instance.flavor.memory_mb, instance.launched_at, configdrive_required(instance))

    # -- guest ---------------------------------------------------------------------
    def set_admin_password(self, instance, new_pass):
        """chpasswd in the running container (images without it: not supported)."""
        if self._rt.status(instance.name) != runtime_api.RUNNING:
            raise nova_exception.InstanceNotRunning(instance_id=instance.uuid)
        guest.set_password(self._rt, instance.name, guest.admin_user(instance), new_pass)

    def quiesce(self, context, instance, image_meta):
        """Flush the guest's writes and freeze it (cgroup freezer) for a snapshot."""
        if self._rt.status(instance.name) != runtime_api.RUNNING:
            raise nova_exception.InstanceQuiesceNotSupported(
                instance_id=instance.uuid, reason="the container is not running")
        guest.flush_writes(self._rt, instance.name)
        self._rt.action(instance.name, "freeze")

    def unquiesce(self, context, instance, image_meta):
        if self._rt.status(instance.name) == runtime_api.FROZEN:
            self._rt.action(instance.name, "unfreeze")

    # -- cold migration and resize ------------------------------------------------------
    def migrate_disk_and_power_off(self, context, instance, dest, flavor, network_info,
                                   block_device_info=None, timeout=0, retry_interval=0):
        """Stop the container and offer it to the destination's runtime (a resize on
        this host needs no offer: the container is resized in place)."""
        name = instance.name
        self._require(instance)
        try:
            flavor_mapping.check_swap(flavor)
        except exception.SwapNotSupported as exc:
            raise nova_exception.InstanceFaultRollback(exc)
        host = self._rt.server()
        try:
            migrations.https_url(host)
        except migrations.NoHTTPSAddress as exc:
            if dest != CONF.my_ip:
                raise nova_exception.InstanceFaultRollback(
                    nova_exception.MigrationPreCheckError(reason=str(exc)))
            # most likely a resize on this host: finish_migration resizes in place
            self.power_off(instance, timeout, retry_interval)
            volume.disconnect_all(block_device_info, instance)
            return migrations.in_place()
        self.power_off(instance, timeout, retry_interval)
        # nova ends these connections and makes new ones for the destination (or
        # for this host again on revert)
        volume.disconnect_all(block_device_info, instance)
        op_id, secrets = self._rt.offer_migration(name)
        LOG.info("Offered container %s for migration to %s", name, dest, instance=instance)
        return migrations.offer(op_id, secrets, host)

    def finish_migration(self, context, migration, instance, disk_info, network_info,
                         image_meta, resize_instance, allocations, block_device_info=None,
                         power_on=True, share_info=None):
        """Pull the container from the source runtime with the (new) flavor, or on
        the same host apply the new flavor to the container in place."""
        name = instance.name
        if migrations.same_host(migration):
            self._rt.cancel_operation(migrations.offer_operation(disk_info))
            self._apply_flavor(instance, network_info, block_device_info, power_on)
            LOG.info("Resized container %s in place", name, instance=instance)
            return
        config, devices = self._config(instance, network_info)
        disks = self._ephemeral_disks(instance, block_device_info, devices)
        body = migrations.target_body(name, disk_info, self._profiles, config, devices)
        undo: list[Any] = []
        try:
            undo.append(lambda: volume.disconnect_all(block_device_info, instance))
            body["devices"].update(self._volume_devices(context, instance, block_device_info,
                                                        {}))
            undo.append(lambda: ephemeral.delete(self._rt, self._pool, instance))
            ephemeral.create(self._rt, self._pool, instance, disks)
            undo.append(lambda: self.unplug_vifs(instance, network_info))
            self.plug_vifs(instance, network_info or [])
            self._claim_name(instance)
            self._rt.create(body)
            undo.append(lambda: self._rt.delete(name, instance.uuid))
            self._push_seed(instance, network_info or [])
            if power_on:
                self._rt.action(name, "start")
        except Exception:  # noqa: BLE001 - roll back whatever failed, then re-raise
            with excutils.save_and_reraise_exception():
                self._rollback(undo, instance)
        if power_on:
            self._consoles.up(name)
        LOG.info("Received container %s (%s)", name,
                 "resized" if resize_instance else "migrated", instance=instance)

    def _apply_flavor(self, instance: Any, network_info: Any, block_device_info: Any,
                      power_on: bool) -> None:
        """Give the stopped container instance.flavor's limits, disks and devices."""
        name = instance.name
        data = self._require(instance)
        config, devices = self._config(instance, network_info)
        disks = self._ephemeral_disks(instance, block_device_info, devices)
        devices.update(self._volume_devices(None, instance, block_device_info,
                                            dict(data.get("devices") or {})))
        ephemeral.create(self._rt, self._pool, instance, disks)
        # keep what the runtime and the image wrote; everything else is the flavor's
        kept = {k: v for k, v in (data.get("config") or {}).items()
                if k.startswith(("volatile.", "image."))}
        self._rt.put_instance(name, dict(data, config={**kept, **config}, devices=devices))
        if power_on:
            self.power_on(None, instance, network_info)  # volumes connected just above

    def confirm_migration(self, context, migration, instance, network_info):
        """The move is final: drop the stopped source container and its ports
        (resized in place: nothing to drop).

        network_info is already the destination's binding (its bridge names);
        the container's own records say how the ports were plugged here."""
        if migrations.same_host(migration):
            return
        data = self._rt.get(instance.name)
        self._rt.delete(instance.name, instance.uuid)
        ephemeral.delete(self._rt, self._pool, instance)
        recorded = vifs.recorded((data or {}).get("config") or {})
        self._cleanup(instance, [] if recorded else network_info, data, destroy_disks=False)
        shutil.rmtree(self._legacy_config_drive_dir(instance), ignore_errors=True)

    def finish_revert_migration(self, context, instance, network_info, migration,
                                block_device_info=None, power_on=True, share_info=None):
        """Back on the source: the container is still here, stopped (resized in
        place: the old flavor is applied again)."""
        self._require(instance)
        if migrations.same_host(migration):
            self._apply_flavor(instance, network_info, block_device_info, power_on)
        else:
            self._reconnect_volumes(context, instance, block_device_info)
            if power_on:
                self.power_on(context, instance, network_info)

    # nova asks whether source and destination share the instance's storage before
    # it destroys the disks of a reverted resize or of an evacuated instance: they
    # do when both hosts drive the same runtime.
    def check_instance_shared_storage_local(self, context, instance):
        return {"runtime": self._runtime_identity()}

    def check_instance_shared_storage_remote(self, context, data):
        return data.get("runtime") == self._runtime_identity()

    def check_instance_shared_storage_cleanup(self, context, data):
        pass

    def _runtime_identity(self) -> str:
        env = self._rt.client.host_info.get("environment") or {}
        return env.get("certificate_fingerprint") or self._endpoint.describe()

    # -- networking -----------------------------------------------------------------
    def plug_vifs(self, instance, network_info):
        limits = {}
        if network_info:
            limits = flavor_mapping.instance_config(
                flavor_mapping.FlavorView.from_flavor(instance.flavor),
                flavor_mapping.HostFacts()).nic_limits
        for vif in network_info or []:
            vifs.plug(instance, vif, limits)

    def attach_interface(self, context, instance, image_meta, vif):
        """Hot-plug a port: a new veth, its container end as the next eth<N>
        (at once if the container runs, at its next start if not)."""
        name = instance.name
        data = self._require(instance)
        devices = dict(data.get("devices") or {})
        config = dict(data.get("config") or {})
        index = vifs.next_nic_name({**(data.get("expanded_devices") or {}), **devices})
        dev_name, dev = vifs.nic_device(index, vif)
        self.plug_vifs(instance, [vif])
        config[vifs.record_key(vif["id"])] = vifs.record(vif)
        try:
            self._rt.put_instance(name, dict(data, config=config,
                                             devices={**devices, dev_name: dev}))
        except Exception as exc:  # noqa: BLE001 - undo the plug, report nova's error
            vifs.unplug(instance, vif)
            LOG.error("Attaching port %s failed: %s", vif["id"], exc, instance=instance)
            raise nova_exception.InterfaceAttachFailed(instance_uuid=instance.uuid)
        LOG.info("Attached port %s as %s", vif["id"], dev_name, instance=instance)

    def detach_interface(self, context, instance, vif):
        name = instance.name
        data = self._require(instance)
        devices = dict(data.get("devices") or {})
        config = {k: v for k, v in (data.get("config") or {}).items()
                  if k != vifs.record_key(vif["id"])}
        dev_name = vifs.find_nic(devices, vif)
        if dev_name is None:
            LOG.warning("Port %s is not attached", vif["id"], instance=instance)
        else:
            del devices[dev_name]
        if dev_name is not None or config != data.get("config"):
            try:
                self._rt.put_instance(name, dict(data, config=config, devices=devices))
            except lxd_exceptions.LXDAPIException as exc:
                LOG.error("Detaching port %s failed: %s", vif["id"], exc, instance=instance)
                raise nova_exception.InterfaceDetachFailed(instance_uuid=instance.uuid)
        vifs.unplug(instance, vif)
        LOG.info("Detached port %s", vif["id"], instance=instance)

    def unplug_vifs(self, instance, network_info):
        for vif in network_info or []:
            vifs.unplug(instance, vif)

    # -- host -----------------------------------------------------------------------
    def _host_resources(self) -> host_info.HostResources:
        pool_name = self._pool or "default"
        try:
            resources, pool = self._rt.resources(pool_name)
        except lxd_exceptions.LXDAPIException:
            if not self._endpoint.is_unix:
                raise
            # A local runtime without the resources API: measure this host.
            source = None
            with contextlib.suppress(lxd_exceptions.LXDAPIException):
                source = (self._rt.pool(pool_name).get("config") or {}).get("source")
            resources, pool = host_info.local_resources(
                source if source and os.path.isdir(source) else CONF.state_path)
        return host_info.host_resources(resources, pool)

    def get_available_nodes(self, refresh=False):
        if self._clients.watch.down_reason is not None:
            # nova's resource periodic asks first: probe, so a runtime that is back is
            # noticed, and one still away skips the round (VirtDriverNotReady) cleanly.
            self._rt.server()
        return [self._nodename]

    def get_nodenames_by_uuid(self, refresh=False):
        return {self._node_uuid or nova.virt.node.get_local_node_uuid(): self._nodename}

    def get_available_resource(self, nodename):
        res = self._host_resources()
        env = self._rt.client.host_info.get("environment") or {}
        return host_info.available_resource(
            res, nodename, host_info.version_int(env.get("server_version")),
            self._node_uuid)

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        res = self._host_resources()
        inv = provider_tree.data(nodename).inventory
        ratios = self._get_allocation_ratios(inv)
        provider_tree.update_inventory(nodename, host_info.inventory(
            res, ratios, CONF.reserved_host_cpus, CONF.reserved_host_memory_mb,
            self._get_reserved_host_disk_gb_from_config()))
        wanted = host_info.driver_traits(res.arch, self._root_quota)
        provider_tree.add_traits(nodename, *wanted)
        stale = {host_info.ROOT_QUOTA_TRAIT} - wanted
        if stale & set(provider_tree.data(nodename).traits):
            provider_tree.remove_traits(nodename, *stale)

    def manage_image_cache(self, context, all_instances):
        """nova's image cache task: drop runtime images of Glance images no
        instance here uses, honouring [image_cache] remove_unused_* options."""
        if not CONF.image_cache.remove_unused_base_images:
            return
        in_use = {inst.image_ref for inst in all_instances if inst.image_ref}
        try:
            self._images.prune(in_use,
                               CONF.image_cache.remove_unused_original_minimum_age_seconds)
        except exception.RuntimeUnavailable as exc:
            LOG.warning("Image cache not pruned this time: %s", exc)

    def get_host_ip_addr(self):
        return CONF.my_ip

    def get_host_uptime(self):
        """The runtime's host's (it may be remote); a local LXD: this machine's."""
        stats = self._rt.host_resources().get("host_stats")
        if stats:
            return host_info.uptime_line(stats["uptime"], stats["load_average"])
        if self._endpoint.is_unix:
            return host_info.uptime_line(*host_info.local_uptime())
        raise NotImplementedError("the runtime does not report its host's uptime")

    def get_host_cpu_stats(self):
        resources = self._rt.host_resources()
        stats = resources.get("host_stats")
        if not stats:
            raise NotImplementedError("the runtime does not report its host's cpu times")
        return host_info.cpu_stats(stats["cpu_time"], host_info.cpu_frequency(resources))

    def node_is_available(self, nodename):
        return nodename == self._nodename


def configdrive_required(instance: Any) -> bool:
    from nova.virt import configdrive as nova_configdrive

    return nova_configdrive.required_by(instance)


# liblxc's words when the image has nothing to run as init. The bundled runtime
# puts liblxc's cause in its start error; LXD's only points at its log, so with
# LXD such a build is rescheduled like any other failure.
_NO_INIT = re.compile(r'Failed to exec "(/[^"]*)"')
# The bundled runtime's refusals of a hostile or broken image (tarball, templates,
# metadata, special files where the seed goes): no other host would do better.
_BAD_IMAGE = re.compile(
    r"(Unsafe image[^\n]*|Image templates? [^\n]*|Invalid metadata\.yaml[^\n]*|"
    r"Image (?:unpacks to|has) more than[^\n]*|"
    r"Path '[^']*' is a (?:fifo|socket|character device|block device)[^\n]*)")


def unbootable_image_reason(exc: BaseException) -> str | None:
    """Why the image itself can't boot on any host, from a create/start error, or None."""
    m = _NO_INIT.search(str(exc))
    if m is not None:
        return (f"the image has no usable init: {m.group(1)} could not be executed "
                "(a system container image needs /sbin/init)")
    m = _BAD_IMAGE.search(str(exc))
    if m is not None:
        return f"the image can't be used safely: {m.group(1)[:300]}"
    return None
