"""The `profiles` table: named config and device sets, per project."""
from __future__ import annotations

from runtime.db.database import Database


class Profiles:
    """Profile rows: {project, name, description, config, devices}."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, project: str, name: str) -> dict | None:
        return self.db.get("profiles", project=project, name=name)

    def exists(self, project: str, name: str) -> bool:
        return self.get(project, name) is not None

    def list(self, project: str | None = None) -> list[dict]:
        """A project's profiles by name; every project's (in insertion order) for None."""
        if project is None:
            return self.db.select("profiles")
        return self.db.select("profiles", {"project": project}, order="name")

    def names(self, project: str) -> list[str]:
        return list(self.db.names("profiles", project=project))

    def stamp(self) -> tuple:
        """Every row as stored: equal stamps mean nothing in the table changed."""
        return tuple(tuple(r) for r in self.db.conn.execute("SELECT * FROM profiles"))

    def create(self, project: str, name: str, description: str = "",
               config: dict | None = None, devices: dict | None = None) -> None:
        self.db.insert("profiles", project=project, name=name, description=description,
                       config=config or {}, devices=devices or {})

    def update(self, project: str, name: str, *, config: dict, devices: dict,
               description: str) -> None:
        self.db.update("profiles", {"project": project, "name": name}, config=config,
                       devices=devices, description=description)

    def set_devices(self, project: str, name: str, devices: dict) -> None:
        self.db.update("profiles", {"project": project, "name": name}, devices=devices)

    def rename(self, project: str, name: str, new: str) -> None:
        self.db.update("profiles", {"project": project, "name": name}, name=new)

    def delete(self, project: str, name: str) -> None:
        self.db.delete("profiles", project=project, name=name)

    def delete_project(self, project: str) -> None:
        """Every profile of a project (the project goes, or stops having its own)."""
        self.db.delete("profiles", project=project)

    def move_project(self, project: str, new: str) -> None:
        """A project's profiles follow its rename."""
        self.db.update("profiles", {"project": project}, project=new)
