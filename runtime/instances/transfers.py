"""Registry of instance-creation source handlers (`source.type: copy`, `migration`).

The instances API looks up `daemon.transfers.create_handler(stype)` for sources
that are not an image. Each subsystem registers its own handler here, so local
copy (runtime.instances.snapshots) and cross-host migration (runtime.migration)
live in separate modules without knowing about each other. `migrate_source` is
set by the migration module: it answers `POST /1.0/instances/<n> {"migration": true}`.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from runtime.errors import BadRequest

Handler = Callable[..., Awaitable[Any]]


class Transfers:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self.migrate_source: Handler = _no_migration

    def register(self, stype: str, handler: Handler) -> None:
        """Install the handler for one `source.type` (replacing any previous one)."""
        self._handlers[stype] = handler

    def create_handler(self, stype: str) -> Handler | None:
        """`async handler(request, project, body) -> response`, or None if unsupported."""
        return self._handlers.get(stype)


async def _no_migration(request, inst, body):
    raise BadRequest("Migration is not supported by this runtime build")


def get(daemon) -> Transfers:
    """The daemon's registry, made on first use by whichever extension attaches first."""
    reg = getattr(daemon, "transfers", None)
    if not isinstance(reg, Transfers):
        reg = Transfers()
        daemon.transfers = reg
    return reg
