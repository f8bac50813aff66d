"""Actions inside a guest through the runtime's exec: passwords, flushing writes.

Containers have no guest agent; the runtime's exec runs a command in the
container as its root, which is all these need. The password travels on the
command's stdin (never in its arguments, never logged).
"""
from __future__ import annotations

from typing import Any

from oslo_log import log as logging

from nova import exception as nova_exception

LOG = logging.getLogger(__name__)

# exit status of a shell for a command it could not find or run
_NOT_FOUND = (126, 127)


def admin_user(instance: Any) -> str:
    """The account set_admin_password changes: the image's os_admin_user or root."""
    props = instance.image_meta.properties
    user = props.get("os_admin_user") if props.obj_attr_is_set("os_admin_user") else None
    return user or "root"


def set_password(rt: Any, name: str, user: str, password: str) -> None:
    """chpasswd in container *name*; SetAdminPasswdNotSupported when the image
    has no chpasswd, InstancePasswordSetFailed when it refuses."""
    if ":" in user or "\n" in user or "\n" in password:
        raise nova_exception.InstancePasswordSetFailed(
            instance=name, reason="user names and passwords can't contain newlines")
    try:
        code, _out, err = rt.execute(name, ["chpasswd"], stdin=f"{user}:{password}\n")
    except FileNotFoundError:
        code, err = 127, "chpasswd not found"
    if code in _NOT_FOUND:
        raise nova_exception.SetAdminPasswdNotSupported()
    if code != 0:
        raise nova_exception.InstancePasswordSetFailed(
            instance=name, reason=f"chpasswd exited with {code}: {err.strip()[:200]}")
    LOG.info("Password of %s set in %s", user, name)


def flush_writes(rt: Any, name: str) -> None:
    """sync(2) inside the container before a freeze, so what the guest wrote is on
    its disks (also volumes the host mounted for it) when a snapshot is taken.
    Best effort: an image without sync is frozen all the same."""
    try:
        code, _out, err = rt.execute(name, ["sync"])
    except Exception as exc:  # noqa: BLE001 - freezing alone still stops new writes
        code, err = -1, str(exc)
    if code != 0:
        LOG.warning("sync in %s failed (%s): freezing without it", name, err.strip()[:200])
