"""Daemon state in SQLite (WAL), one schema with numbered migrations.

Config and device maps are stored as JSON text: the API always reads and writes
them whole, and the daemon never queries inside them.
"""
import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

# Each entry upgrades the schema by one version; never edit a released entry.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE projects (
        name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}');
    CREATE TABLE instances (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL, name TEXT NOT NULL,
        type TEXT NOT NULL DEFAULT 'container',
        architecture TEXT NOT NULL, ephemeral INTEGER NOT NULL DEFAULT 0,
        stateful INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL, last_used_at REAL NOT NULL DEFAULT 0,
        config TEXT NOT NULL DEFAULT '{}', devices TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[]', pool TEXT NOT NULL DEFAULT '',
        UNIQUE(project, name));
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        name TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL DEFAULT 0,
        stateful INTEGER NOT NULL DEFAULT 0, description TEXT NOT NULL DEFAULT '',
        architecture TEXT NOT NULL DEFAULT '', ephemeral INTEGER NOT NULL DEFAULT 0,
        config TEXT NOT NULL DEFAULT '{}', devices TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[]',
        UNIQUE(instance_id, name));
    CREATE TABLE images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL, fingerprint TEXT NOT NULL,
        filename TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 0,
        public INTEGER NOT NULL DEFAULT 0, auto_update INTEGER NOT NULL DEFAULT 0,
        cached INTEGER NOT NULL DEFAULT 0, architecture TEXT NOT NULL DEFAULT '',
        type TEXT NOT NULL DEFAULT 'container',
        created_at REAL NOT NULL DEFAULT 0, uploaded_at REAL NOT NULL DEFAULT 0,
        last_used_at REAL NOT NULL DEFAULT 0, expires_at REAL NOT NULL DEFAULT 0,
        properties TEXT NOT NULL DEFAULT '{}', source TEXT NOT NULL DEFAULT '{}',
        UNIQUE(project, fingerprint));
    CREATE TABLE image_aliases (
        project TEXT NOT NULL, name TEXT NOT NULL, fingerprint TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '', type TEXT NOT NULL DEFAULT 'container',
        PRIMARY KEY(project, name));
    CREATE TABLE profiles (
        project TEXT NOT NULL, name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}', devices TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY(project, name));
    CREATE TABLE storage_pools (
        name TEXT PRIMARY KEY, driver TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '', config TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'Created');
    CREATE TABLE storage_volumes (
        pool TEXT NOT NULL, project TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '', config TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL DEFAULT 0,
        PRIMARY KEY(pool, project, type, name));
    CREATE TABLE networks (
        name TEXT PRIMARY KEY, type TEXT NOT NULL DEFAULT 'bridge',
        description TEXT NOT NULL DEFAULT '', config TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'Created');
    CREATE TABLE certificates (
        fingerprint TEXT PRIMARY KEY, type TEXT NOT NULL DEFAULT 'client',
        name TEXT NOT NULL DEFAULT '', certificate TEXT NOT NULL,
        restricted INTEGER NOT NULL DEFAULT 0, projects TEXT NOT NULL DEFAULT '[]');
    """,
]

_JSON_COLUMNS = {"config", "devices", "profiles", "properties", "source", "projects"}


def _decode(row: sqlite3.Row) -> dict:
    out = {}
    for key in row.keys():  # noqa: SIM118 - sqlite3.Row iterates values
        value = row[key]
        out[key] = json.loads(value) if key in _JSON_COLUMNS and value is not None else value
    return out


def _encode(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return int(value)
    return value


class Database:
    """Thin access layer; all calls come from the event loop thread."""

    def __init__(self, path: str):
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is on disk before it returns (WAL fsync), as LXD's
        # database is; a power loss must not forget an instance whose volume exists,
        # nor a restore in the middle of its swap. Costs ~0.25 ms per commit here.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.conn.execute("BEGIN")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")
                self.conn.execute("COMMIT")
            except Exception:
                self.conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.conn.close()

    # Generic helpers -----------------------------------------------------
    def select(self, table: str, where: dict | None = None, order: str = "") -> list[dict]:
        where = where or {}
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        if order:
            sql += f" ORDER BY {order}"
        rows = self.conn.execute(sql, [_encode(v) for v in where.values()]).fetchall()
        return [_decode(r) for r in rows]

    def get(self, table: str, **where: Any) -> dict | None:
        rows = self.select(table, where)
        return rows[0] if rows else None

    def insert(self, table: str, **values: Any) -> int:
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cur = self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                                [_encode(v) for v in values.values()])
        return cur.lastrowid

    def update(self, table: str, where: dict, **values: Any) -> int:
        sets = ", ".join(f"{k} = ?" for k in values)
        conds = " AND ".join(f"{k} = ?" for k in where)
        cur = self.conn.execute(f"UPDATE {table} SET {sets} WHERE {conds}",
                                [_encode(v) for v in values.values()]
                                + [_encode(v) for v in where.values()])
        return cur.rowcount

    def delete(self, table: str, **where: Any) -> int:
        conds = " AND ".join(f"{k} = ?" for k in where)
        cur = self.conn.execute(f"DELETE FROM {table} WHERE {conds}",
                                [_encode(v) for v in where.values()])
        return cur.rowcount

    def transaction(self) -> "_Transaction":
        return _Transaction(self.conn)

    # Server config ---------------------------------------------------------
    def config_get(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.conn.execute("SELECT * FROM config")}

    def config_replace(self, values: dict[str, str]) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM config")
            self.conn.executemany("INSERT INTO config VALUES (?, ?)", values.items())

    def names(self, table: str, column: str = "name", **where: Any) -> Iterable[str]:
        return [r[column] for r in self.select(table, where, order=column)]


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def now() -> float:
    return time.time()
