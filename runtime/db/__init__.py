"""The daemon's SQLite database: the connection (`database`) and, one module per
table, the small repositories through which the rest of the runtime reads and
writes rows."""

from runtime.db.database import Database, now

__all__ = ["Database", "now"]
