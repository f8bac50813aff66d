"""The `networks` table: the managed bridges and their config."""
from __future__ import annotations

from runtime.db.database import Database


class Networks:
    """Network rows: {name, type, description, config, status}."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, name: str) -> dict | None:
        return self.db.get("networks", name=name)

    def list(self) -> list[dict]:
        return self.db.select("networks", order="name")

    def names(self) -> list[str]:
        return list(self.db.names("networks"))

    def create(self, name: str, description: str, config: dict, type: str = "bridge",
               status: str = "Created") -> None:
        self.db.insert("networks", name=name, type=type, description=description,
                       config=config, status=status)

    def update(self, name: str, *, config: dict, description: str) -> None:
        self.db.update("networks", {"name": name}, config=config, description=description)

    def rename(self, name: str, new: str) -> None:
        self.db.update("networks", {"name": name}, name=new)

    def delete(self, name: str) -> None:
        self.db.delete("networks", name=name)
