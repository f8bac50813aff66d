"""Every storage pool of the daemon: their rows (`storage_pools`) and their pool layer.

The daemon builds one `Pools` at start; the API creates and deletes pools through
it, everything else looks a pool up by name (`get`) and calls its `Pool`.
"""
from __future__ import annotations

from collections.abc import ItemsView, ValuesView

from runtime.db.storage_pools import StoragePools
from runtime.errors import BadRequest, NotFound
from runtime.events import EventBus
from runtime.storage import open_pool
from runtime.storage.pool import Pool


class Pools:
    def __init__(self, rows: StoragePools, lxd_dir: str, bus: EventBus):
        self.rows, self.lxd_dir, self.bus = rows, lxd_dir, bus
        self._pools: dict[str, Pool] = {}

    async def open(self) -> None:
        """At start: a default dir pool on a fresh state directory, then every pool
        of the database opened (LXD's modes, half-unpacked images swept)."""
        if not self.rows.exists("default"):
            await open_pool("default", "dir", {}, self.lxd_dir).create()
            self.rows.create("default", "dir", "Default storage pool", {})
        for row in self.rows.list():
            pool = open_pool(row["name"], row["driver"], row["config"], self.lxd_dir)
            await pool.open()
            self._pools[row["name"]] = pool

    def get(self, name: str) -> Pool:
        if name not in self._pools:
            raise NotFound(f"Storage pool {name!r} not found")
        return self._pools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._pools

    def values(self) -> ValuesView[Pool]:
        return self._pools.values()

    def items(self) -> ItemsView[str, Pool]:
        return self._pools.items()

    async def create(self, name: str, driver: str, config: dict, description: str) -> None:
        pool = open_pool(name, driver, config, self.lxd_dir)
        try:
            await pool.create()
        except Exception as exc:
            raise BadRequest(f"Failed to create storage pool {name!r}: {exc}")
        self.rows.create(name, driver, description, pool.config)
        self._pools[name] = pool
        self.bus.lifecycle("storage-pool-created", f"/1.0/storage-pools/{name}", "default")

    async def delete(self, name: str) -> None:
        await self.get(name).delete()
        self.rows.delete(name)
        self._pools.pop(name, None)
        self.bus.lifecycle("storage-pool-deleted", f"/1.0/storage-pools/{name}", "default")
