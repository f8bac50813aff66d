"""Disk usage of volumes, remembered, so that listing instances never waits on it.

On a `dir` pool (and on btrfs without quotas) the only way to know how much an
instance's root holds is to walk it (`du`), a helper process per volume: LXD
5.0 does not even try there (its GetVolumeUsage answers "not supported" and the
state has no root disk entry). We keep the number, because nova's diagnostics
show it, but out of the way:

- one instance's state (GET .../state, GET .../<name>?recursion=1) gets a value
  at most `fresh` seconds old, measured on the spot when older;
- a listing (`recursion=2`, what `lxc list` asks) takes whatever is known, of any
  age, and queues the stale and missing ones for a single background worker. An
  instance measured never yet is left out of that listing, as LXD leaves it out.

The worker measures one volume at a time and rests `(1 - duty) / duty` times as
long as each measurement took, so refreshing 1,000 roots costs at most about a
tenth of a core, however often clients list, and nothing at all when nobody asks.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

Measure = Callable[[str], Awaitable[int]]
LOG = logging.getLogger(__name__)


class UsageCache:
    """Last known usage per volume, with a rate-bounded background refresher."""

    def __init__(self, measure: Measure, fresh: float = 5.0, duty: float = 0.1):
        self._measure = measure
        self.fresh = fresh
        self.duty = duty
        self._known: dict[str, tuple[float, int]] = {}
        self._queued: dict[str, None] = {}   # insertion-ordered set
        self._worker: asyncio.Task | None = None
        self._forgets = 0   # a measurement that overlapped a forget is not kept

    async def now(self, vol: str) -> int:
        """Usage at most `fresh` seconds old (measured now if need be)."""
        known = self._known.get(vol)
        if known and time.monotonic() - known[0] < self.fresh:
            return known[1]
        return await self._update(vol)

    def cached(self, vol: str) -> int | None:
        """Last known usage of any age, never waiting; None when never measured.
        A stale or unknown volume is queued for the background worker."""
        known = self._known.get(vol)
        if known is None or time.monotonic() - known[0] >= self.fresh:
            self._queued[vol] = None
            if self._worker is None or self._worker.done():
                self._worker = asyncio.get_running_loop().create_task(self._refresh())
        return known[1] if known else None

    def forget(self, vol: str) -> None:
        """The volume is gone or renamed: its number must not outlive it."""
        self._known.pop(vol, None)
        self._queued.pop(vol, None)
        self._forgets += 1

    async def _update(self, vol: str) -> int:
        forgets = self._forgets
        value = await self._measure(vol)
        if forgets == self._forgets:
            self._known[vol] = (time.monotonic(), value)
        return value

    async def _refresh(self) -> None:
        while self._queued:
            vol = next(iter(self._queued))
            del self._queued[vol]
            known = self._known.get(vol)
            if known and time.monotonic() - known[0] < self.fresh:
                continue  # measured meanwhile (one instance's state asked for it)
            t0 = time.monotonic()
            try:
                await self._update(vol)
            except Exception:  # noqa: BLE001 - one volume must not stop the others
                LOG.exception("measuring the disk usage of volume %s", vol)
            took = time.monotonic() - t0
            await asyncio.sleep(min(1.0, took * (1 - self.duty) / self.duty))
