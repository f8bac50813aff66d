"""The `certificates` table: the trust store (client and metrics certificates)."""
from __future__ import annotations

from runtime.db.database import Database


class Certificates:
    """Certificate rows: {fingerprint, type, name, certificate (PEM), restricted,
    projects}."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, fingerprint: str) -> dict | None:
        return self.db.get("certificates", fingerprint=fingerprint)

    def exists(self, fingerprint: str) -> bool:
        return self.get(fingerprint) is not None

    def list(self) -> list[dict]:
        return self.db.select("certificates", order="name")

    def by_prefix(self, prefix: str) -> list[dict]:
        """Certificates whose fingerprint starts with prefix (compared as given, so no
        LIKE wildcard in a client's prefix can match)."""
        return [r for r in self.db.select("certificates", order="fingerprint")
                if r["fingerprint"].startswith(prefix)]

    def create(self, fingerprint: str, certificate: str, *, type: str = "client",
               name: str = "", restricted: bool = False,
               projects: list[str] | None = None) -> None:
        self.db.insert("certificates", fingerprint=fingerprint, type=type, name=name,
                       certificate=certificate, restricted=restricted,
                       projects=projects or [])

    def update(self, fingerprint: str, *, name: str | None = None, type: str | None = None,
               restricted: bool | None = None, projects: list[str] | None = None,
               certificate: str | None = None, new_fingerprint: str | None = None) -> None:
        """Change the fields given (a new certificate comes with its new fingerprint)."""
        values = {k: v for k, v in (("name", name), ("type", type),
                                    ("restricted", restricted), ("projects", projects),
                                    ("certificate", certificate),
                                    ("fingerprint", new_fingerprint)) if v is not None}
        if values:
            self.db.update("certificates", {"fingerprint": fingerprint}, **values)

    def delete(self, fingerprint: str) -> None:
        self.db.delete("certificates", fingerprint=fingerprint)
