"""Small, typed calls on the runtime's REST API, shared by the driver.

pylxd's models re-read objects and hide operation errors in places; the
driver needs a handful of exact calls (state changes with timeouts, waits
with a deadline, file pushes) and clear errors, so they live here, on top
of pylxd's raw API nodes and one shared client.
"""
from __future__ import annotations

import contextlib
import os
import time

from oslo_log import log as logging
from pylxd import exceptions as lxd_exceptions

from nova import exception as nova_exception
from nova_lxd_py import exception

# LXD status codes the driver looks at.
STOPPED, RUNNING, FROZEN = 102, 103, 110
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


class _OperationError:
    """Enough of a requests.Response for pylxd's exception from an op error."""

    status_code = 500

    def __init__(self, error: str | None):
        self._error = error or "operation failed"

    def json(self) -> dict:
        return {"error": self._error}

    @property
    def content(self) -> bytes:
        return self._error.encode()


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


class RuntimeAPI:
    def __init__(self, clients, op_timeout: int):
        self._clients = clients
        self._op_timeout = op_timeout

    @property
    def client(self):
        return self._clients.get()

    @property
    def api(self):
        return self._clients.get().api

    def wait(self, response) -> dict:
        """Wait for the operation of an async response; raise on failure.

        Returns the operation's own metadata (e.g. ``fingerprint`` of a
        publish), or a sync response's metadata."""
        body = response.json()
        if body.get("type") != "async":
            return body.get("metadata") or {}
        op_id = body["operation"].rsplit("/", 1)[-1]
        deadline = time.monotonic() + self._op_timeout
        while True:
            left = max(1, int(deadline - time.monotonic()))
            op = self.api.operations[op_id].wait.get(
                params={"timeout": min(left, 30)}, timeout=min(left, 30) + 10).json()
            meta = op.get("metadata") or {}
            status = meta.get("status_code", 0)
            if status == 200:
                return meta.get("metadata") or {}
            if status >= 400 or meta.get("status") == "Failure":
                raise lxd_exceptions.LXDAPIException(_OperationError(meta.get("err")))
            if time.monotonic() > deadline:
                raise nova_exception.NovaException(
                    f"runtime operation {op_id} did not finish in {self._op_timeout}s")

    def get(self, name: str) -> dict | None:
        try:
            return self.api.instances[name].get().json()["metadata"]
        except lxd_exceptions.NotFound:
            return None

    def state(self, name: str) -> dict | None:
        try:
            return self.api.instances[name].state.get().json()["metadata"]
        except lxd_exceptions.NotFound:
            return None

    def status(self, name: str) -> int | None:
        state = self.state(name)
        return state.get("status_code") if state else None

    def action(self, name: str, action: str, timeout: int = 30, force: bool = True) -> None:
        response = self.api.instances[name].state.put(
            json={"action": action, "timeout": timeout, "force": force},
            timeout=max(timeout, 0) + 30)
        self.wait(response)

    def patch_config(self, name: str, config: dict[str, str]) -> None:
        self.wait(self.api.instances[name].patch(json={"config": config}))

    def put_instance(self, name: str, data: dict) -> None:
        """Replace the instance's own config and devices with *data*'s (on a
        running instance this hot-plugs or removes devices)."""
        self.wait(self.api.instances[name].put(json={
            "config": data.get("config") or {}, "devices": data.get("devices") or {},
            "profiles": data.get("profiles") or [],
            "architecture": data.get("architecture"),
            "ephemeral": data.get("ephemeral", False),
            "description": data.get("description", "")}))

    def create(self, body: dict) -> None:
        try:
            self.wait(self.api.instances.post(json=body))
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
        if self.status(name) not in (STOPPED, None):
            with contextlib.suppress(lxd_exceptions.LXDAPIException):
                self.action(name, "stop", timeout=-1, force=True)
        try:
            self.wait(self.api.instances[name].delete())
        except lxd_exceptions.NotFound:
            pass
        return True

    def owned(self) -> list[dict]:
        """Containers made by this driver (marked with the instance uuid)."""
        data = self.api.instances.get(params={"recursion": 1}).json()["metadata"]
        return [i for i in data if UUID_KEY in (i.get("config") or {})
                and IMAGE_KEY not in i["config"]]

    def running_names(self) -> set[str]:
        """Names of every running container (ours, rescue ones and others)."""
        data = self.api.instances.get(params={"recursion": 1}).json()["metadata"]
        return {i["name"] for i in data if i.get("status_code") == RUNNING}

    def push_files(self, name: str, files: dict[str, bytes], mode: str = "0600",
                   private: tuple[str, ...] = ()) -> None:
        """Write files (owned by the container's root) into the container, parents
        included: directories at or below a `private` one are 0700, others 0755.

        A path the image made unusable (a FIFO, a device node, a directory where a
        file goes) fails here with the runtime's 400, before the container starts.
        """
        api = self.api.instances[name].files
        made: set[str] = set()
        for path, data in files.items():
            self._mkdirs(api, os.path.dirname(path), made, private)
            api.post(params={"path": path}, data=data,
                     headers={"X-LXD-type": "file", "X-LXD-mode": mode,
                              "X-LXD-uid": "0", "X-LXD-gid": "0"})

    @staticmethod
    def _mkdirs(api, path: str, made: set[str], private: tuple[str, ...]) -> None:
        current = ""
        for part in (p for p in path.split("/") if p):
            current += "/" + part
            if current in made:
                continue
            secret = any(current == d or current.startswith(d + "/") for d in private)
            with contextlib.suppress(lxd_exceptions.LXDAPIException):
                api.post(params={"path": current},
                         headers={"X-LXD-type": "directory", "X-LXD-uid": "0",
                                  "X-LXD-gid": "0", "X-LXD-mode": "0700" if secret
                                  else "0755"})
            made.add(current)

    def execute(self, name: str, argv: list[str],
                stdin: str | None = None) -> tuple[int, str, str]:
        """Run argv in the container: (exit code, stdout, stderr)."""
        result = self.client.instances.get(name).execute(argv, stdin_payload=stdin)
        return result.exit_code, result.stdout, result.stderr

    def has_extension(self, name: str) -> bool:
        return name in (self.client.host_info.get("api_extensions") or [])

    def console_log(self, name: str) -> bytes:
        try:
            return self.api.instances[name].console.get(is_api=False).content
        except lxd_exceptions.LXDAPIException:
            return b""

    def pool(self, name: str) -> dict:
        return self.api["storage-pools"][name].get().json()["metadata"]

    def export(self, fingerprint: str, timeout: float):
        """Streaming response of an image export (close it when done)."""
        return self.api.images[fingerprint].export.get(stream=True, is_api=False,
                                                       timeout=timeout)

    def delete_image(self, fingerprint: str) -> None:
        with contextlib.suppress(lxd_exceptions.LXDAPIException):
            self.api.images[fingerprint].delete()

    def snapshot(self, name: str, snap: str) -> None:
        self.wait(self.api.instances[name].snapshots.post(json={"name": snap,
                                                                "stateful": False}))

    def delete_snapshot(self, name: str, snap: str) -> None:
        with contextlib.suppress(lxd_exceptions.LXDAPIException):
            self.wait(self.api.instances[name].snapshots[snap].delete())

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
            meta = self.wait(self.api.images.post(json={
                "source": source, "public": False,
                "properties": {"description": description}}))
        finally:
            if without:
                self.delete(scratch, owner)
        return meta["fingerprint"]

    def delete_tree(self, name: str, path: str) -> bool:
        """Remove path (recursively) inside the container through the file API,
        which resolves it as the container sees it; absent is fine."""
        api = self.api.instances[name].files
        try:
            # streamed: a file's content (an image may put anything there) is never read
            resp = api.get(params={"path": path}, is_api=False, stream=True)
        except lxd_exceptions.NotFound:
            return False
        with contextlib.closing(resp):
            entries = (resp.json().get("metadata") or []) \
                if resp.headers.get("X-LXD-type") == "directory" else []
        for entry in entries:
            self.delete_tree(name, path.rstrip("/") + "/" + entry)
        api.delete(params={"path": path})
        return True

    def offer_migration(self, name: str) -> tuple[str, dict]:
        """Start a pull migration source; returns (operation id, secrets)."""
        body = self.api.instances[name].post(json={"migration": True}).json()
        op_id = body["operation"].rsplit("/", 1)[-1]
        return op_id, (body.get("metadata") or {}).get("metadata") or {}

    def cancel_operation(self, op_id: str | None) -> None:
        """Cancel a background operation (e.g. a migration offer nobody will pull)."""
        if op_id:
            with contextlib.suppress(lxd_exceptions.LXDAPIException):
                self.api.operations[op_id].delete()

    def server(self) -> dict:
        """A fresh GET /1.0 (host_info of the client is from connect time)."""
        return self.api.get().json()["metadata"]

    # -- custom volumes ------------------------------------------------------------
    def _volumes(self, pool: str):
        return self.api["storage-pools"][pool].volumes.custom

    def custom_volumes(self, pool: str | None) -> list[dict]:
        """The pool's volumes; none when there is no such pool (or none named yet:
        a driver that never ran init_host has made nothing)."""
        if not pool:
            return []
        try:
            return self.api["storage-pools"][pool].volumes.get(
                params={"recursion": 1}).json()["metadata"]
        except lxd_exceptions.NotFound:
            return []

    def volume(self, pool: str, name: str) -> dict | None:
        try:
            return self._volumes(pool)[name].get().json()["metadata"]
        except lxd_exceptions.NotFound:
            return None

    def ensure_volume(self, pool: str, name: str, config: dict[str, str], owner: str) -> None:
        """Create the custom volume, or update the config of *owner*'s existing one."""
        found = self.volume(pool, name)
        if found is None:
            self.wait(self.api["storage-pools"][pool].volumes.post(
                json={"name": name, "type": "custom", "config": config}))
        elif (found.get("config") or {}).get(UUID_KEY) == owner:
            self.wait(self._volumes(pool)[name].patch(json={"config": config}))
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
        try:
            self.wait(self._volumes(pool)[name].delete())
        except lxd_exceptions.NotFound:
            pass
        return True

    def host_resources(self) -> dict:
        return self.api.resources.get().json()["metadata"]

    def resources(self, pool: str) -> tuple[dict, dict]:
        return (self.api.resources.get().json()["metadata"],
                self.api["storage-pools"][pool].resources.get().json()["metadata"])

