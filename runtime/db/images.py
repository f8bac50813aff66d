"""The `images` table: one row per image a project holds (the files are the store's).

The same fingerprint can be held by several projects; the image's files stay
while any of them does (`held`).
"""
from __future__ import annotations

from runtime.db.database import Database


class Images:
    """Image rows: {project, fingerprint, filename, size, public, auto_update, cached,
    architecture, type, created_at, uploaded_at, last_used_at, expires_at, properties,
    source}."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, project: str, fingerprint: str) -> dict | None:
        return self.db.get("images", project=project, fingerprint=fingerprint)

    def exists(self, project: str, fingerprint: str) -> bool:
        return self.get(project, fingerprint) is not None

    def matching(self, project: str, prefix: str) -> list[str]:
        """Fingerprints of a project's images that start with prefix (lower-case hex,
        checked by the caller)."""
        rows = self.db.conn.execute(
            "SELECT fingerprint FROM images WHERE project = ? AND fingerprint LIKE ?",
            (project, prefix + "%")).fetchall()
        return [r[0] for r in rows]

    def list(self, project: str, public_only: bool = False) -> list[dict]:
        """A project's images, oldest upload first (as `GET /1.0/images` lists them)."""
        where: dict = {"project": project}
        if public_only:
            where["public"] = 1
        return self.db.select("images", where, order="uploaded_at")

    def newest_first(self, project: str) -> list[dict]:
        """A project's images, most recently created first."""
        return self.db.select("images", {"project": project}, order="created_at DESC")

    def fingerprints(self, project: str) -> list[str]:
        return list(self.db.names("images", "fingerprint", project=project))

    def all(self) -> list[dict]:
        """Every project's images."""
        return self.db.select("images")

    def held(self, fingerprint: str) -> bool:
        """Whether any project still holds the image."""
        return bool(self.db.select("images", {"fingerprint": fingerprint}))

    def cached(self) -> list[dict]:
        """Images downloaded only to create instances (pruned when unused)."""
        return self.db.select("images", {"cached": 1})

    def auto_updating(self) -> list[dict]:
        return self.db.select("images", {"auto_update": 1})

    def create(self, project: str, fingerprint: str, *, filename: str, size: int,
               public: bool, architecture: str, created_at: float, uploaded_at: float,
               expires_at: float, properties: dict, cached: bool, source: dict) -> None:
        self.db.insert("images", project=project, fingerprint=fingerprint, filename=filename,
                       size=size, public=public, architecture=architecture,
                       created_at=created_at, uploaded_at=uploaded_at, expires_at=expires_at,
                       properties=properties, cached=cached, source=source)

    def update(self, project: str, fingerprint: str, *, properties: dict | None = None,
               public: bool | None = None, auto_update: bool | None = None,
               cached: bool | None = None, last_used_at: float | None = None,
               expires_at: float | None = None) -> None:
        """Change the fields given."""
        values = {k: v for k, v in (("properties", properties), ("public", public),
                                    ("auto_update", auto_update), ("cached", cached),
                                    ("last_used_at", last_used_at),
                                    ("expires_at", expires_at)) if v is not None}
        if values:
            self.db.update("images", {"project": project, "fingerprint": fingerprint},
                           **values)

    def mark_used(self, fingerprint: str, when: float) -> None:
        """An instance was created from the image (in whichever project holds it)."""
        self.db.conn.execute("UPDATE images SET last_used_at = ? WHERE fingerprint = ?",
                             (when, fingerprint))

    def delete(self, project: str, fingerprint: str) -> None:
        self.db.delete("images", project=project, fingerprint=fingerprint)

    def move_project(self, project: str, new: str) -> None:
        """A project's images follow its rename."""
        self.db.update("images", {"project": project}, project=new)
