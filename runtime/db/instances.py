"""The `instances` table: one row per instance (its record; its state is liblxc's)."""
from __future__ import annotations

from typing import Any

from runtime.db.database import Database

_TABLE = "instances"


class Instances:
    """Instance rows, by (project, name) or by id."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, project: str, name: str) -> dict | None:
        return self.db.get(_TABLE, project=project, name=name)

    def get_by_id(self, instance_id: int) -> dict | None:
        return self.db.get(_TABLE, id=instance_id)

    def exists(self, project: str, name: str) -> bool:
        return self.get(project, name) is not None

    def list(self, project: str | None = None, pool: str | None = None) -> list[dict]:
        """Rows ordered by name, of one project and/or one pool when given."""
        where: dict = {}
        if project is not None:
            where["project"] = project
        if pool is not None:
            where["pool"] = pool
        return self.db.select(_TABLE, where, order="name")

    def raw(self, project: str | None = None) -> list:
        """The rows as SQLite gives them, undecoded (sqlite3.Row), ordered by name: a
        listing keys its cache on them and decodes only the rows that changed."""
        sql, args = "SELECT * FROM instances", ()
        if project:
            sql, args = sql + " WHERE project = ?", (project,)
        return self.db.conn.execute(sql + " ORDER BY name", args).fetchall()

    def names(self, project: str) -> list[str]:
        return list(self.db.names(_TABLE, project=project))

    def create(self, **values: Any) -> int:
        """A new row (sqlite3.IntegrityError when the name is taken); its id."""
        return self.db.insert(_TABLE, **values)

    def update(self, instance_id: int, **values: Any) -> None:
        self.db.update(_TABLE, {"id": instance_id}, **values)

    def delete(self, instance_id: int) -> None:
        self.db.delete(_TABLE, id=instance_id)
