"""Typed calls on the LXD REST API, over pylxd's raw API nodes.

pylxd's models re-read objects, hide operation errors in places and poll exec
output every 100 ms; the callers (driver, CLI, tests, benchmarks) need a handful
of exact calls instead: state changes with timeouts, operations waited for with a
deadline and failures raised, file pushes, exec without polling. Policy (whose
container may be deleted, which nova fault to raise) stays with each caller.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import pylxd
from pylxd import exceptions as lxd_exceptions

from runtime.client.errors import OperationFailed, OperationTimeout

# LXD status codes callers look at.
STOPPED, RUNNING, FROZEN = 102, 103, 110
# How long one GET .../wait blocks on the server before we look at the clock again.
POLL = 30


class LXDAPI:
    """Calls on one runtime.

    *clients* is a pylxd client, or a factory whose ``get()`` returns one (the
    driver's, built lazily and rebuilt after a lost runtime). *op_timeout* bounds
    every operation wait (None: no bound)."""

    def __init__(self, clients: Any, op_timeout: float | None = None):
        self._clients = clients
        self._op_timeout = op_timeout

    @property
    def client(self) -> pylxd.Client:
        if isinstance(self._clients, pylxd.Client):
            return self._clients
        return self._clients.get()

    @property
    def api(self):
        """pylxd's raw API node of ``/1.0``."""
        return self.client.api

    def node(self, path: str):
        """The raw API node of an absolute path such as ``/1.0/instances/c1``."""
        node = self.api
        for part in path.split("?", 1)[0].strip("/").split("/")[1:]:
            node = node[part]
        return node

    # -- operations ------------------------------------------------------------------
    def wait_operation(self, operation: str, timeout: float | None = None,
                       on_update: Callable[[dict], None] | None = None) -> dict:
        """Block on an operation (id or URL) until it ends; its final object.

        Raises OperationFailed if it failed or was cancelled, OperationTimeout after
        *timeout* (default: the client's op_timeout). With *on_update*, the server is
        asked every half second and the callback gets the running operation (for
        progress bars)."""
        op_id = operation.rstrip("/").rsplit("/", 1)[-1]
        limit = self._op_timeout if timeout is None else timeout
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            if on_update is not None:
                step: float = 0.5
            elif deadline is None:
                step = POLL
            else:
                step = min(max(1, int(deadline - time.monotonic())), POLL)
            meta = self.api.operations[op_id].wait.get(
                params={"timeout": step}, timeout=step + 10).json().get("metadata") or {}
            status = meta.get("status_code", 0)
            if status == 200:
                return meta
            if status >= 200 or meta.get("status") == "Failure":
                raise OperationFailed(meta.get("err") or f"operation {meta.get('status')}")
            if deadline is not None and time.monotonic() > deadline:
                raise OperationTimeout(op_id, limit)
            if on_update is not None:
                on_update(meta)

    def wait(self, response, timeout: float | None = None,
             on_update: Callable[[dict], None] | None = None) -> dict:
        """The result of a response: a sync response's metadata, or the metadata of
        the operation of an async one once it succeeded (e.g. ``fingerprint`` of a
        publish, ``return`` of an exec)."""
        body = response if isinstance(response, dict) else response.json()
        if body.get("type") != "async":
            return body.get("metadata") or {}
        return self.wait_operation(body["operation"], timeout, on_update).get(
            "metadata") or {}

    def call(self, method: str, path: str, json: Any = None, params: dict | None = None,
             **kwargs: Any) -> dict:
        """One request on an API path, waited for if it is async: the result (see
        ``wait``). Errors are pylxd's exceptions (NotFound, Conflict, ...)."""
        if json is not None:
            kwargs["json"] = json
        response = getattr(self.node(path), method.lower())(params=params or {}, **kwargs)
        return self.wait(response)

    def cancel_operation(self, op_id: str | None) -> None:
        """Cancel a background operation (e.g. a migration offer nobody will pull)."""
        if op_id:
            with contextlib.suppress(lxd_exceptions.LXDAPIException):
                self.api.operations[op_id].delete()

    # -- server ----------------------------------------------------------------------
    def server(self) -> dict:
        """A fresh GET /1.0 (host_info of the client is from connect time)."""
        return self.api.get().json()["metadata"]

    def has_extension(self, name: str) -> bool:
        return name in (self.client.host_info.get("api_extensions") or [])

    def host_resources(self) -> dict:
        return self.api.resources.get().json()["metadata"]

    def resources(self, pool: str) -> tuple[dict, dict]:
        return (self.api.resources.get().json()["metadata"],
                self.api["storage-pools"][pool].resources.get().json()["metadata"])

    def pool(self, name: str) -> dict:
        return self.api["storage-pools"][name].get().json()["metadata"]

    # -- instances -------------------------------------------------------------------
    def instances(self) -> list[dict]:
        """Every instance, with its config (recursion=1)."""
        return self.api.instances.get(params={"recursion": 1}).json()["metadata"]

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

    def running_names(self) -> set[str]:
        """Names of every running instance."""
        return {i["name"] for i in self.instances() if i.get("status_code") == RUNNING}

    def action(self, name: str, action: str, timeout: int = 30, force: bool = True) -> None:
        response = self.api.instances[name].state.put(
            json={"action": action, "timeout": timeout, "force": force},
            timeout=max(timeout, 0) + 30)
        self.wait(response)

    def create(self, body: dict) -> dict:
        return self.wait(self.api.instances.post(json=body))

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

    def delete_instance(self, name: str) -> bool:
        """Stop (forced) and delete *name*; False when there is none."""
        if self.status(name) not in (STOPPED, None):
            with contextlib.suppress(lxd_exceptions.LXDAPIException):
                self.action(name, "stop", timeout=-1, force=True)
        try:
            self.wait(self.api.instances[name].delete())
        except lxd_exceptions.NotFound:
            return False
        return True

    def console_log(self, name: str) -> bytes:
        try:
            return self.api.instances[name].console.get(is_api=False).content
        except lxd_exceptions.LXDAPIException:
            return b""

    def offer_migration(self, name: str) -> tuple[str, dict]:
        """Start a pull migration source; returns (operation id, secrets)."""
        body = self.api.instances[name].post(json={"migration": True}).json()
        op_id = body["operation"].rsplit("/", 1)[-1]
        return op_id, (body.get("metadata") or {}).get("metadata") or {}

    # -- exec ------------------------------------------------------------------------
    def execute(self, name: str, argv: list[str],
                stdin: str | None = None) -> tuple[int, str, str]:
        """Run argv in the container through pylxd's websockets (stdin possible):
        (exit code, stdout, stderr)."""
        result = self.client.instances.get(name).execute(argv, stdin_payload=stdin)
        return result.exit_code, result.stdout, result.stderr

    def exec_record(self, name: str, argv: list[str], environment: dict | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run argv in record-output mode: one POST, one /wait, the two logs.

        No websockets and no polling (pylxd's execute sleeps 100 ms per round), so
        this costs what the server costs; no stdin."""
        meta = self.wait(self.api.instances[name].exec.post(json={
            "command": argv, "environment": environment or {}, "interactive": False,
            "wait-for-websocket": False, "record-output": True}), timeout)
        output = meta.get("output") or {}
        streams = []
        for fd in ("1", "2"):
            path = output.get(fd) or output.get(int(fd)) if isinstance(output, dict) else None
            streams.append(self.node(path).get(is_api=False).content if path else b"")
        return meta.get("return", -1), streams[0], streams[1]

    # -- files -----------------------------------------------------------------------
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

    # -- snapshots and images ----------------------------------------------------------
    def snapshot(self, name: str, snap: str) -> None:
        self.wait(self.api.instances[name].snapshots.post(json={"name": snap,
                                                                "stateful": False}))

    def delete_snapshot(self, name: str, snap: str) -> None:
        with contextlib.suppress(lxd_exceptions.LXDAPIException):
            self.wait(self.api.instances[name].snapshots[snap].delete())

    def publish(self, source: dict, properties: dict[str, str] | None = None,
                public: bool = False) -> str:
        """Publish an instance or snapshot (*source* as the API takes it) as an
        image; its fingerprint."""
        meta = self.wait(self.api.images.post(json={
            "source": source, "public": public, "properties": properties or {}}))
        return meta["fingerprint"]

    def export(self, fingerprint: str, timeout: float):
        """Streaming response of an image export (close it when done)."""
        return self.api.images[fingerprint].export.get(stream=True, is_api=False,
                                                       timeout=timeout)

    def delete_image(self, fingerprint: str) -> None:
        with contextlib.suppress(lxd_exceptions.LXDAPIException):
            self.api.images[fingerprint].delete()

    # -- custom volumes --------------------------------------------------------------
    def _volumes(self, pool: str):
        return self.api["storage-pools"][pool].volumes.custom

    def custom_volumes(self, pool: str | None) -> list[dict]:
        """The pool's volumes; none when there is no such pool (or none named)."""
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

    def create_volume(self, pool: str, name: str, config: dict[str, str]) -> None:
        self.wait(self.api["storage-pools"][pool].volumes.post(
            json={"name": name, "type": "custom", "config": config}))

    def patch_volume(self, pool: str, name: str, config: dict[str, str]) -> None:
        self.wait(self._volumes(pool)[name].patch(json={"config": config}))

    def remove_volume(self, pool: str, name: str) -> bool:
        """Delete the custom volume; False when there is none."""
        try:
            self.wait(self._volumes(pool)[name].delete())
        except lxd_exceptions.NotFound:
            return False
        return True
