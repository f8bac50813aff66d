"""The `storage_pools` table: each pool's driver and configuration."""
from __future__ import annotations

from typing import Any

from runtime.db.database import Database

_TABLE = "storage_pools"


class StoragePools:
    def __init__(self, db: Database):
        self.db = db

    def get(self, name: str) -> dict | None:
        return self.db.get(_TABLE, name=name)

    def exists(self, name: str) -> bool:
        return self.get(name) is not None

    def list(self) -> list[dict]:
        return self.db.select(_TABLE, order="name")

    def create(self, name: str, driver: str, description: str, config: dict) -> None:
        self.db.insert(_TABLE, name=name, driver=driver, description=description,
                       config=config)

    def update(self, name: str, **values: Any) -> None:
        self.db.update(_TABLE, {"name": name}, **values)

    def delete(self, name: str) -> None:
        self.db.delete(_TABLE, name=name)
