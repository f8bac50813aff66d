"""What nova-compute's start makes of the containers it finds.

nova's ``init_host`` only looks at the instances it places on this host: it sets
those whose build or rebuild was cut short to ERROR (``_init_instance``), and
``running_deleted_instance_action`` later handles instances deleted while the
host was down, as long as their rows exist. Three things fall between those
chairs, and the driver settles them here, before nova initialises the rest:

- a half-made container of a build or rebuild cut short: nova says ERROR, so the
  container goes (a later rebuild or delete then starts from nothing, and a
  hard reboot cannot start a root filesystem that was never finished);
- a container whose instance is deleted, or lives on another host with no move
  involving this one: removed, as nova would have done had it been up;
- a container whose instance nova does not know at all, not even as deleted
  (the row was purged, ``nova-manage db archive_deleted_rows --purge``): nova
  can never see it, so ``[lxd] unknown_container_action`` says what happens
  (reap, log, noop). Only containers carrying the driver's marks are
  considered; an operator's own containers are never touched.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nova.compute import task_states, vm_states
from oslo_log import log as logging

from nova import exception as nova_exception
from nova import objects
from nova import utils as nova_utils
from nova_lxd_py import runtime_api, volume

LOG = logging.getLogger(__name__)

REAP, LOG_ONLY, NOOP = "reap", "log", "noop"

_BUILD_STATES = (task_states.SCHEDULING, task_states.NETWORKING,
                 task_states.BLOCK_DEVICE_MAPPING, task_states.SPAWNING)
# nova's _init_instance sets these to ERROR too. In REBUILDING the old container
# may still be whole (nova had not destroyed it yet): it stays, a hard reboot
# starts it. After it, the old one is gone and what exists is rebuild's spawn.
_REBUILD_STATES = (task_states.REBUILD_BLOCK_DEVICE_MAPPING, task_states.REBUILD_SPAWNING)


def interrupted_build(instance: Any) -> bool:
    """nova sets such an instance to ERROR at start (compute manager's
    _init_instance): its container, if any, was never handed over."""
    return instance.vm_state == vm_states.BUILDING or instance.task_state in _BUILD_STATES


def interrupted_rebuild(instance: Any) -> bool:
    """A rebuild cut short after nova destroyed the old container: nova sets the
    instance to ERROR at start, and whatever rebuild's spawn made is half-made."""
    return instance.vm_state in (vm_states.ACTIVE, vm_states.STOPPED) and \
        instance.task_state in _REBUILD_STATES


def cut_short(instance: Any) -> str | None:
    """Which of nova's operations was cut short on *instance* leaving a container
    nova will not use (build, rebuild), or None."""
    if interrupted_build(instance):
        return "build"
    if interrupted_rebuild(instance):
        return "rebuild"
    return None


def lookup(context: Any, uuid: str) -> Any | None:
    """The instance of *uuid*, deleted ones included; None when nova has no row."""
    with nova_utils.temporary_mutation(context, read_deleted="yes"):
        try:
            return objects.Instance.get_by_uuid(
                context, uuid, expected_attrs=["migration_context", "system_metadata"])
        except nova_exception.InstanceNotFound:
            return None


def stale(instance: Any, nodename: str) -> bool:
    """Whether a container of *instance* found here can go: the instance is
    deleted, or lives on another host with no move under way (a resize awaiting
    confirmation keeps its source container; an evacuation nova has not cleaned
    up yet is nova's own business at init_host)."""
    if instance.deleted:
        return True
    return instance.host != nodename and instance.migration_context is None


@dataclass(frozen=True)
class Orphan:
    """What the clean-up helpers (ports, volumes, logs) read of an instance, for a
    container whose instance nova no longer has."""

    uuid: str
    name: str
    project_id: str | None = None

    def obj_attr_is_set(self, attr: str) -> bool:
        return getattr(self, attr, None) is not None

    def __getitem__(self, key: str) -> Any:   # oslo.log's "[instance: %(uuid)s]"
        return getattr(self, key)


def unknown_container(action: str, destroy: Callable[[Orphan], None], context: Any,
                      data: dict) -> None:
    """Apply ``[lxd] unknown_container_action`` to *data*, a container carrying
    the driver's marks whose instance nova does not know at all; *destroy* is the
    driver's own teardown of an instance's container (``LXDDriver.destroy``)."""
    name, uuid = data["name"], data["config"][runtime_api.UUID_KEY]
    if action == NOOP:
        return
    LOG.warning("Container %s carries instance uuid %s, which nova does not know, not even "
                "as deleted (deleted and purged while nova-compute was down?): %s", name,
                uuid, "removing it" if action == REAP else "left alone")
    if action == REAP:
        reap(destroy, context, data)


def reap(destroy: Callable[[Orphan], None], context: Any, data: dict) -> None:
    """Remove an unknown instance's container and what hung on it here, the way a
    delete does (*destroy*: rescue and scratch containers, ephemeral volumes,
    ports from the records in its config), then the volume connections and the
    Cinder attachments still recorded for it."""
    config = data.get("config") or {}
    orphan = Orphan(uuid=config[runtime_api.UUID_KEY], name=data["name"])
    destroy(orphan)
    _detach_volumes(context, orphan, data.get("devices") or {})
    LOG.info("Removed container %s of unknown instance %s", orphan.name, orphan.uuid)


def _detach_volumes(context: Any, orphan: Orphan, devices: dict[str, dict]) -> None:
    """Close this host's connection of every volume Cinder still attaches to the
    unknown instance, and delete those attachments; name the volume devices the
    container had that Cinder no longer attaches (nova deleted their attachments)."""
    from nova.volume import cinder

    api = cinder.API()
    detached: set[str] = set()
    try:
        attachments = api.attachment_get_all(context, instance_id=orphan.uuid)
    except Exception as exc:  # noqa: BLE001 - Cinder away or not configured: say so
        LOG.warning("Cannot list the Cinder attachments of unknown instance %s: %s",
                    orphan.uuid, exc)
        attachments = []
    for attachment in attachments:
        vol_id = attachment.get("volume_id")
        try:
            info = api.attachment_get(context, attachment["id"]).get("connection_info")
            if info:
                volume.disconnect(info)
            api.attachment_delete(context, attachment["id"])
            detached.add(vol_id)
            LOG.info("Detached volume %s from unknown instance %s", vol_id, orphan.uuid)
        except Exception:  # noqa: BLE001 - one volume must not stop the others
            LOG.exception("Detaching volume %s from unknown instance %s failed", vol_id,
                          orphan.uuid)
    for dev_name, dev in devices.items():
        vol_id = dev_name.removeprefix(volume.DEVICE_PREFIX)
        if dev_name.startswith(volume.DEVICE_PREFIX) and vol_id not in detached:
            LOG.warning("Volume %s was connected at %s for unknown instance %s; Cinder no "
                        "longer attaches it to that instance", vol_id, dev.get("source"),
                        orphan.uuid)
