"""runtime.storage.usage.UsageCache: one instance's state gets a fresh number,
a listing never waits, the background refresh is one at a time and rate bounded,
and a forgotten volume's number never comes back."""
import asyncio

from runtime.storage.usage import UsageCache


class Disk:
    def __init__(self, delay: float = 0.0):
        self.values: dict[str, int] = {}
        self.calls: list[str] = []
        self.delay = delay
        self.running = 0
        self.most = 0

    async def measure(self, vol: str) -> int:
        self.calls.append(vol)
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(self.delay)
        self.running -= 1
        return self.values.get(vol, 0)


def test_now_measures_when_stale_and_reuses_when_fresh():
    async def run():
        disk = Disk()
        cache = UsageCache(disk.measure, fresh=0.2)
        disk.values["a"] = 10
        assert await cache.now("a") == 10
        disk.values["a"] = 20
        assert await cache.now("a") == 10 and disk.calls == ["a"]
        await asyncio.sleep(0.25)
        assert await cache.now("a") == 20 and disk.calls == ["a", "a"]
    asyncio.run(run())


def test_cached_never_waits_and_refreshes_in_background_one_at_a_time():
    async def run():
        disk = Disk(delay=0.01)
        disk.values.update(a=1, b=2, c=3)
        cache = UsageCache(disk.measure, fresh=5, duty=0.5)
        assert [cache.cached(v) for v in "abc"] == [None, None, None]
        assert disk.calls == []               # nothing measured on the caller's time
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(disk.calls) == 3 and not disk.running:
                break
        assert sorted(disk.calls) == ["a", "b", "c"] and disk.most == 1
        assert [cache.cached(v) for v in "abc"] == [1, 2, 3]
        await asyncio.sleep(0.05)
        assert len(disk.calls) == 3           # fresh: not measured again
    asyncio.run(run())


def test_refresh_rests_between_measurements():
    async def run():
        disk = Disk(delay=0.02)
        cache = UsageCache(disk.measure, fresh=5, duty=0.25)  # rest 3x each measurement
        for v in "abcd":
            cache.cached(v)
        await asyncio.sleep(0.13)
        # a,b measured (0.02 + 0.06 rest each = 0.08 per volume): not all four yet
        assert 1 <= len(disk.calls) <= 2
    asyncio.run(run())


def test_forget_drops_value_and_discards_an_overlapping_measurement():
    async def run():
        disk = Disk(delay=0.05)
        disk.values["a"] = 7
        cache = UsageCache(disk.measure, fresh=5)
        assert await cache.now("a") == 7
        cache.forget("a")
        assert cache.cached("a") is None      # queued again
        await asyncio.sleep(0.01)             # the worker is measuring "a" now
        cache.forget("a")                     # ... and the volume goes away
        await asyncio.sleep(0.1)
        assert cache.cached("a") is None, "a measurement from before forget() was kept"
    asyncio.run(run())


def test_a_failing_measurement_does_not_stop_the_worker():
    async def run():
        calls = []

        async def measure(vol):
            calls.append(vol)
            if vol == "bad":
                raise OSError("gone")
            return 5
        cache = UsageCache(measure, fresh=5, duty=1.0)
        cache.cached("bad")
        cache.cached("good")
        await asyncio.sleep(0.05)
        assert calls == ["bad", "good"] and cache.cached("good") == 5
    asyncio.run(run())
