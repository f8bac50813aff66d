"""The `config` table: the server configuration (`GET/PUT /1.0` config), key -> value."""
from __future__ import annotations

from runtime.db.database import Database


class ServerConfig:
    """The server's configuration, always read and written whole (LXD's PUT /1.0)."""

    def __init__(self, db: Database):
        self.db = db

    def all(self) -> dict[str, str]:
        return self.db.config_get()

    def get(self, key: str, default: str | None = None) -> str | None:
        """One key; `default` when it is not set (an unset key has no row)."""
        return self.all().get(key, default)

    def replace(self, values: dict[str, str]) -> None:
        self.db.config_replace(values)
