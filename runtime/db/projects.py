"""The `projects` table: project names, descriptions and config (features, limits)."""
from __future__ import annotations

from runtime.db.database import Database


class Projects:
    """Project rows: {name, description, config}."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, name: str) -> dict | None:
        return self.db.get("projects", name=name)

    def exists(self, name: str) -> bool:
        return self.get(name) is not None

    def list(self) -> list[dict]:
        return self.db.select("projects", order="name")

    def names(self) -> list[str]:
        return list(self.db.names("projects"))

    def stamp(self) -> tuple:
        """Every row as stored: equal stamps mean nothing in the table changed."""
        return tuple(tuple(r) for r in self.db.conn.execute("SELECT * FROM projects"))

    def create(self, name: str, description: str, config: dict) -> None:
        self.db.insert("projects", name=name, description=description, config=config)

    def update(self, name: str, *, config: dict, description: str) -> None:
        self.db.update("projects", {"name": name}, config=config, description=description)

    def rename(self, name: str, new: str) -> None:
        self.db.update("projects", {"name": name}, name=new)

    def delete(self, name: str) -> None:
        self.db.delete("projects", name=name)
