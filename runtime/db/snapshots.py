"""The `snapshots` table: instance snapshots (their record; the volume is the pool's)."""
from __future__ import annotations

from typing import Any

from runtime.db.database import Database

_TABLE = "snapshots"


class Snapshots:
    """Snapshot rows of one instance, by name or by id."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, instance_id: int, name: str) -> dict | None:
        return self.db.get(_TABLE, instance_id=instance_id, name=name)

    def list(self, instance_id: int, order: str = "created_at, id") -> list[dict]:
        """An instance's snapshots, oldest first (creation time; `id`: insertion order)."""
        return self.db.select(_TABLE, {"instance_id": instance_id}, order=order)

    def expiring(self) -> list[dict]:
        """Snapshots with an expiry, soonest first: {snap, project, inst, expires_at}."""
        rows = self.db.conn.execute(
            "SELECT s.name AS snap, i.project AS project, i.name AS inst, s.expires_at AS "
            "expires_at FROM snapshots s JOIN instances i ON i.id = s.instance_id "
            "WHERE s.expires_at > 0 ORDER BY s.expires_at").fetchall()
        return [dict(r) for r in rows]

    def create(self, instance_id: int, name: str, **values: Any) -> int:
        return self.db.insert(_TABLE, instance_id=instance_id, name=name, **values)

    def update(self, snapshot_id: int, **values: Any) -> None:
        self.db.update(_TABLE, {"id": snapshot_id}, **values)

    def delete(self, snapshot_id: int) -> None:
        self.db.delete(_TABLE, id=snapshot_id)
