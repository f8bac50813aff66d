"""The driver's calls on its runtime: the one LXD client (``runtime.client.LXDAPI``)
with nova's policy on top.

What is nova's here: containers and volumes carry the uuid of their instance, and
the driver deletes only what carries it; failures become nova faults; an image of
an instance is published from a scratch copy with nova's secrets removed.
"""
from __future__ import annotations

from oslo_log import log as logging
from pylxd import exceptions as lxd_exceptions

from nova import exception as nova_exception
from nova_lxd_py import exception
from runtime.client import api as lxd_api
from runtime.client.errors import OperationTimeout

# LXD status codes the driver looks at.
STOPPED, RUNNING, FROZEN = lxd_api.STOPPED, lxd_api.RUNNING, lxd_api.FROZEN
UUID_KEY = "user.nova_instance_uuid"
# On a rescue container: the uuid of the instance it rescues (not UUID_KEY, so
# it is not listed as an instance of its own).
RESCUE_KEY = "user.nova_rescue_of"
# On a scratch copy an image is published from (see publish_snapshot): the uuid
# of its instance; the copy keeps UUID_KEY but is not an instance of its own.
IMAGE_KEY = "user.nova_image_of"
LOG = logging.getLogger(__name__)


def scratch_name(name: str) -> str:
    """The scratch copy an image of *name* is published from."""
    return name + "-image"


def owner_of(data: dict | None) -> str | None:
    """The nova instance a container belongs to (itself or as its rescue)."""
    config = (data or {}).get("config") or {}
    return config.get(UUID_KEY) or config.get(RESCUE_KEY)


class ResponseReader:
    """File-like view of a streamed download, so Glance uploads it in chunks."""

    def __init__(self, response, chunk: int = 1024 * 1024):
        self._iter = response.iter_content(chunk_size=chunk)
        self._chunk = chunk
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            try:
                self._buf += next(self._iter)
            except StopIteration:
                break
        if size < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def __iter__(self):
        while chunk := self.read(self._chunk):
            yield chunk


class RuntimeAPI(lxd_api.LXDAPI):
    """The one client's calls, with nova's ownership rules and faults."""

    def __init__(self, clients, op_timeout: int):
        super().__init__(clients, op_timeout)

    def wait_operation(self, operation, timeout=None, on_update=None) -> dict:
        try:
            return super().wait_operation(operation, timeout, on_update)
        except OperationTimeout as exc:
            raise nova_exception.NovaException(str(exc)) from exc

    def create(self, body: dict) -> dict:
        try:
            return super().create(body)
        except lxd_exceptions.LXDAPIException as exc:
            raise exception.RuntimeOperationFailed(action="create", name=body["name"],
                                                   reason=str(exc)) from exc

    def delete(self, name: str, owner: str) -> bool:
        """Stop (forced) and delete *name* if it belongs to instance *owner*.

        Absent is fine. A container of that name that is not *owner*'s (another
        instance's, or not made by nova at all) is left alone and False returned:
        the driver never deletes what it did not make."""
        data = self.get(name)
        if data is None:
            return False
        if owner_of(data) != owner:
            LOG.warning("Not deleting container %s: it belongs to %s, not to instance %s",
                        name, owner_of(data) or "no nova instance", owner)
            return False
        self.delete_instance(name)
        return True

    def owned(self) -> list[dict]:
        """Containers made by this driver (marked with the instance uuid)."""
        return [i for i in self.instances() if UUID_KEY in (i.get("config") or {})
                and IMAGE_KEY not in i["config"]]

    def publish_snapshot(self, name: str, snap: str, description: str, owner: str = "",
                         without: tuple[str, ...] = ()) -> str:
        """Publish a snapshot as an image (its fingerprint).

        Paths in *without* (secrets nova keeps off images, like the config drive)
        are removed first, from a scratch copy of the snapshot: the instance and
        its snapshot are never touched."""
        source = {"type": "snapshot", "name": f"{name}/{snap}"}
        scratch = scratch_name(name)
        if without:
            self.delete(scratch, owner)  # a leftover of an interrupted snapshot
            self.create({"name": scratch, "source": {"type": "copy", "source": f"{name}/{snap}",
                                                     "instance_only": True},
                         "config": {IMAGE_KEY: owner}})
            source = {"type": "instance", "name": scratch}
        try:
            for path in without:
                self.delete_tree(scratch, path)
            return self.publish(source, {"description": description})
        finally:
            if without:
                self.delete(scratch, owner)

    def ensure_volume(self, pool: str, name: str, config: dict[str, str], owner: str) -> None:
        """Create the custom volume, or update the config of *owner*'s existing one."""
        found = self.volume(pool, name)
        if found is None:
            self.create_volume(pool, name, config)
        elif (found.get("config") or {}).get(UUID_KEY) == owner:
            self.patch_volume(pool, name, config)
        else:
            raise exception.RuntimeOperationFailed(
                action="create volume", name=name, reason="a volume of that name exists "
                "and belongs to another instance")

    def delete_volume(self, pool: str, name: str, owner: str) -> bool:
        """Delete the custom volume if it carries *owner*'s uuid (absent is fine)."""
        found = self.volume(pool, name)
        if found is None:
            return False
        if (found.get("config") or {}).get(UUID_KEY) != owner:
            LOG.warning("Not deleting volume %s: it is not instance %s's", name, owner)
            return False
        self.remove_volume(pool, name)
        return True
