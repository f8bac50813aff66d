"""The `image_aliases` table: per-project names that point at an image fingerprint."""
from __future__ import annotations

from runtime.db.database import Database


class ImageAliases:
    """Alias rows: {project, name, fingerprint, description, type}."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, project: str, name: str) -> dict | None:
        return self.db.get("image_aliases", project=project, name=name)

    def exists(self, project: str, name: str) -> bool:
        return self.get(project, name) is not None

    def list(self, project: str) -> list[dict]:
        return self.db.select("image_aliases", {"project": project}, order="name")

    def of_image(self, project: str, fingerprint: str) -> list[dict]:
        """The aliases that point at one image, by name."""
        return self.db.select("image_aliases", {"project": project,
                                                "fingerprint": fingerprint}, order="name")

    def create(self, project: str, name: str, fingerprint: str,
               description: str = "") -> None:
        self.db.insert("image_aliases", project=project, name=name, fingerprint=fingerprint,
                       description=description)

    def update(self, project: str, name: str, *, fingerprint: str | None = None,
               description: str | None = None) -> None:
        """Change the fields given."""
        values = {k: v for k, v in (("fingerprint", fingerprint),
                                    ("description", description)) if v is not None}
        if values:
            self.db.update("image_aliases", {"project": project, "name": name}, **values)

    def rename(self, project: str, name: str, new: str) -> None:
        self.db.update("image_aliases", {"project": project, "name": name}, name=new)

    def retarget(self, project: str, fingerprint: str, new: str) -> None:
        """Every alias of one image now names another (an image refreshed)."""
        self.db.conn.execute(
            "UPDATE image_aliases SET fingerprint = ? WHERE project = ? AND fingerprint = ?",
            (new, project, fingerprint))

    def delete(self, project: str, name: str) -> None:
        self.db.delete("image_aliases", project=project, name=name)

    def delete_of_image(self, project: str, fingerprint: str) -> None:
        """The aliases of an image leave with it."""
        self.db.delete("image_aliases", project=project, fingerprint=fingerprint)

    def move_project(self, project: str, new: str) -> None:
        """A project's aliases follow its rename."""
        self.db.update("image_aliases", {"project": project}, project=new)
