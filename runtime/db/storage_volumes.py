"""The `storage_volumes` table: custom volumes and their snapshots, keyed by
(pool, project, type, name); a snapshot is type "custom-snapshot" named
"<volume>/<snapshot>", as LXD names them."""
from __future__ import annotations

from typing import Any

from runtime.db.database import Database

_TABLE = "storage_volumes"


def key(row: dict) -> dict:
    """The primary key of a row."""
    return {"pool": row["pool"], "project": row["project"], "type": row["type"],
            "name": row["name"]}


class StorageVolumes:
    def __init__(self, db: Database):
        self.db = db

    def get(self, pool: str, project: str, vtype: str, name: str) -> dict | None:
        return self.db.get(_TABLE, pool=pool, project=project, type=vtype, name=name)

    def list(self, pool: str | None = None, project: str | None = None,
             vtype: str | None = None, order: str = "name") -> list[dict]:
        where = {k: v for k, v in (("pool", pool), ("project", project), ("type", vtype))
                 if v is not None}
        return self.db.select(_TABLE, where, order=order)

    def move_project(self, old: str, new: str) -> None:
        """A renamed project's volumes (callers hold the transaction)."""
        self.db.update(_TABLE, {"project": old}, project=new)

    def create(self, pool: str, project: str, vtype: str, name: str, **values: Any) -> None:
        self.db.insert(_TABLE, pool=pool, project=project, type=vtype, name=name, **values)

    def update(self, row: dict, **values: Any) -> None:
        self.db.update(_TABLE, key(row), **values)

    def delete(self, row: dict) -> None:
        self.db.delete(_TABLE, **key(row))
