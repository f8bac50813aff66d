"""The handlers of instance transfers: `source.type` copy and migration, and sending.

The instances API calls `daemon.transfers.create_handler(stype)` for sources that
are not an image, and `migrate_source` for `POST /1.0/instances/<n> {"migration":
true}`. The daemon fills this in from the modules that own the work (local copy:
runtime.instances.snapshots; cross-host migration: runtime.migration), so those
modules need not know about each other.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[..., Awaitable[Any]]


@dataclasses.dataclass(frozen=True)
class Transfers:
    copy: Handler          # async (request, project, body) -> response
    migration: Handler     # async (request, project, body) -> response
    migrate_source: Handler    # async (request, inst, body) -> response
    migrate_snapshot: Handler  # async (request, inst, snapshot name, body) -> response

    def create_handler(self, stype: str) -> Handler | None:
        """`async handler(request, project, body) -> response`, or None if unsupported."""
        return {"copy": self.copy, "migration": self.migration}.get(stype)
