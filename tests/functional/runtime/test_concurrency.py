"""50 clients at once against one daemon: creates, starts, lookups, stops, deletes.

Each client has its own connection (as 50 nova-compute workers or CLI users
would), all released together by a barrier. Every answer must be right: the
instance it names exists with the config it asked for, running, with a nic of
its own; a name asked for twice is made once and refused once with 409; nothing
says "database is locked"; the daemon logs no traceback.
"""
import concurrent.futures
import os
import threading
import uuid

import pylxd
import pytest

from tests.functional.runtime import nethelpers as nh
from tests.functional.runtime.harness import import_busybox

N = 50


@pytest.fixture(scope="module")
def network(client):
    name = nh.name("cc")
    client.networks.create(name, config={"ipv4.address": "10.231.77.1/24",
                                         "ipv4.dhcp": "false"})
    yield name
    try:
        client.networks.get(name).delete()
    except pylxd.exceptions.LXDAPIException:
        pass
    nh.delete_links([name])


def _together(endpoint: str, fn, args: list) -> list:
    """fn(client, arg) for every arg, each in its own thread with its own client,
    released at the same moment. Returns results or exceptions, in order."""
    barrier = threading.Barrier(len(args))

    def one(arg):
        c = pylxd.Client(endpoint=endpoint)
        barrier.wait()
        try:
            return fn(c, arg)
        except Exception as exc:  # noqa: BLE001 - reported per call by the caller
            return exc
    with concurrent.futures.ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(one, args))


def _no_lock_errors(results: list) -> None:
    errors = [r for r in results if isinstance(r, Exception)]
    assert not any("locked" in str(e) for e in errors), errors
    assert not errors, errors[:5]


def test_fifty_concurrent_creates_and_starts(daemon, client, network):
    import_busybox(client)
    tag = uuid.uuid4().hex[:6]
    names = [f"cc-{tag}-{i:02d}" for i in range(N)]

    def create(c, i):
        body = {"name": names[i], "source": {"type": "image", "alias": "busybox"},
                "config": {"user.index": str(i)},
                "devices": {"eth0": {"type": "nic", "nictype": "bridged",
                                     "parent": network}}}
        if i % 2:  # half start in the same request (LXD's `start: true`)
            body["start"] = True
            inst = c.instances.create(body, wait=True)
        else:
            inst = c.instances.create(body, wait=True)
            inst.start(wait=True)
        return c.instances.get(names[i])

    try:
        results = _together(daemon.endpoint, create, list(range(N)))
        _no_lock_errors(results)
        for i, inst in enumerate(results):
            assert inst.name == names[i]
            assert inst.status == "Running", (inst.name, inst.status)
            assert inst.config["user.index"] == str(i)
        listed = {i.name: i for i in client.instances.all() if i.name.startswith("cc-" + tag)}
        assert sorted(listed) == names
        # Every container is really running, each with its own host veth and MAC.
        states = _together(daemon.endpoint, lambda c, n: c.instances.get(n).state(), names)
        _no_lock_errors(states)
        pids = {s.pid for s in states}
        assert len(pids) == N and all(p > 0 and os.path.exists(f"/proc/{p}") for p in pids)
        veths = {s.network["eth0"]["host_name"] for s in states}
        macs = {s.network["eth0"]["hwaddr"] for s in states}
        assert len(veths) == N and len(macs) == N
        assert all(nh.master(v) == network for v in veths)
        # Lookups while everything changes: 50 readers at once.
        pages = _together(daemon.endpoint,
                          lambda c, _: c.api.instances.get(params={"recursion": 2}).json(),
                          list(range(N)))
        _no_lock_errors(pages)
        assert all(len([m for m in p["metadata"] if m["name"].startswith("cc-" + tag)]) == N
                   for p in pages)
    finally:
        def stop_delete(c, name):
            try:
                inst = c.instances.get(name)
            except pylxd.exceptions.NotFound:
                return None
            if inst.status != "Stopped":
                inst.stop(force=True, wait=True)
            inst.delete(wait=True)
            return name
        done = _together(daemon.endpoint, stop_delete, names)
    _no_lock_errors(done)
    assert not [i.name for i in client.instances.all() if i.name.startswith("cc-" + tag)]
    assert not [v for v in veths if nh.exists(v)]
    _clean_log(daemon)


def test_same_name_twice_at_once_makes_one(daemon, client):
    """Two creates of one name racing: one instance, one 409, no half-made record."""
    import_busybox(client)
    names = [f"dup-{uuid.uuid4().hex[:6]}-{i}" for i in range(10)]

    def create(c, name):
        return c.instances.create({"name": name, "source": {"type": "image",
                                                            "alias": "busybox"}}, wait=True)
    results = _together(daemon.endpoint, create, [n for n in names for _ in (0, 1)])
    try:
        for k, name in enumerate(names):
            pair = results[2 * k:2 * k + 2]
            made = [r for r in pair if not isinstance(r, Exception)]
            refused = [r for r in pair if isinstance(r, Exception)]
            assert len(made) == 1 and len(refused) == 1, pair
            assert "already exists" in str(refused[0]), refused[0]
            assert getattr(refused[0], "response", None) is None or \
                refused[0].response.status_code == 409
            assert client.instances.get(name).status == "Stopped"
    finally:
        for name in names:
            try:
                client.instances.get(name).delete(wait=True)
            except pylxd.exceptions.NotFound:
                pass
    _clean_log(daemon)


def _clean_log(daemon) -> None:
    log = daemon.tail(100000)
    assert "database is locked" not in log
    assert "Traceback" not in log, log[-3000:]
