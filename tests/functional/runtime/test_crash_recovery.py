"""kill -9 of the runtime in the middle of an action, then a restart: nothing lost,
nothing half made, nothing left over.

For each step named by runtime.crashpoint, the daemon is restarted with
NLR_CRASH_AT=<step>, asked for the action, dies by SIGKILL at that step (the test
checks it did), and is started again. Then: every instance, snapshot and image
is whole (it starts and runs a command; an image's file has its fingerprint) or
gone; the database and the disk agree, and no temporary file, mount, cgroup,
monitor or veth is left (tests/functional/runtime/consistency.py); a container
that was running before the crash runs on with the same init process.
"""
import hashlib
import io
import os
import signal
import tarfile
import threading
import time
import uuid

import pylxd
import pytest

from runtime.crashpoint import ENV
from tests.functional.runtime import consistency
from tests.functional.runtime import nethelpers as nh
from tests.functional.runtime.harness import import_busybox
from tests.functional.runtime.remote_hosts import Hosts


@pytest.fixture(scope="module")
def hosts():
    before = set(os.listdir("/sys/class/net"))
    h = Hosts(2, netns=False)
    try:
        import_busybox(h.local(0))
        yield h
    finally:
        h.destroy()
        nh.cleanup(h.daemons[0].lxd_dir, before)


@pytest.fixture(scope="module")
def bridge(hosts):
    name = nh.name("cr")
    hosts.local(0).networks.create(name, config={"ipv4.address": "10.231.78.1/24",
                                                 "ipv4.dhcp": "false"})
    yield name
    try:
        hosts.local(0).networks.get(name).delete()
    except pylxd.exceptions.LXDAPIException:
        pass
    nh.delete_links([name])


@pytest.fixture(scope="module")
def keeper(hosts, bridge):
    """A container running through every crash: it must never notice."""
    inst = _launch(hosts.local(0), "keeper", bridge, start=True)
    return inst.name


def _launch(client, name, bridge=None, start=False):
    body = {"name": name, "source": {"type": "image", "alias": "busybox"}}
    if bridge:
        body["devices"] = {"eth0": {"type": "nic", "nictype": "bridged", "parent": bridge}}
    inst = client.instances.create(body, wait=True)
    if start:
        inst.start(wait=True)
    return inst


def _init_pid(client, name) -> int:
    return client.instances.get(name).state().pid


def _crash(daemon, step: str, action) -> None:
    """Restart daemon with the crash point armed, run action, see it die there."""
    daemon.stop()
    daemon.extra_env = {ENV: step}
    try:
        daemon.start()
    finally:
        daemon.extra_env = {}
    box = {}

    def run():
        try:
            box["result"] = action()
        except Exception as exc:  # noqa: BLE001 - the daemon died under it: expected
            box["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        rc = daemon.proc.wait(60)
    except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
        rc = None
    assert rc == -signal.SIGKILL, f"{step}: the daemon did not die there (rc {rc}, {box})"
    daemon.proc = None
    t.join(30)
    daemon.start()


def _settled(daemon, bridges, timeout: float = 10.0) -> None:
    """Consistent within timeout (some clean-up runs just after the daemon answers)."""
    deadline = time.monotonic() + timeout
    while True:
        found = consistency.problems(daemon.lxd_dir, bridges)
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not found, found


def _whole_or_gone(client, name: str, running: bool | None = None) -> bool:
    """The instance works (starts, runs a command) or does not exist. Returns whether
    it exists; `running`: the state it must be in, if it exists."""
    try:
        inst = client.instances.get(name)
    except pylxd.exceptions.NotFound:
        return False
    deadline = time.monotonic() + 15  # autostart (a restore's restart) runs after start-up
    while running and inst.status != "Running" and time.monotonic() < deadline:
        time.sleep(0.2)
        inst = client.instances.get(name)
    if running is not None:
        assert (inst.status == "Running") == running, (name, inst.status)
    was = inst.status
    if was != "Running":
        inst.start(wait=True)
    res = inst.execute(["cat", "/etc/hostname"])
    assert res.exit_code == 0, res.stderr
    if was != "Running":
        inst.stop(force=True, wait=True)
    return True


def _remove(client, name: str) -> None:
    try:
        inst = client.instances.get(name)
    except pylxd.exceptions.NotFound:
        return
    if inst.status != "Stopped":
        inst.stop(force=True, wait=True)
    inst.delete(wait=True)


def _unique_image() -> bytes:
    """A small unified image with a fingerprint of its own."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, data: bytes | None = None) -> None:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        add("metadata.yaml", f"architecture: x86_64\ncreation_date: {int(time.time())}\n"
            f"properties:\n  description: crash {uuid.uuid4().hex}\n".encode())
        add("rootfs")
        add("rootfs/etc")
        add("rootfs/etc/hostname", b"image\n")
    return buf.getvalue()


def _images_whole(client) -> None:
    for image in client.images.all():
        data = image.export().read()
        assert hashlib.sha256(data).hexdigest() == image.fingerprint


# Actions on one daemon: (step, what is made beforehand, the action, running after) ---
LOCAL = [
    "create.recorded", "create.volume", "start.spawned", "copy.volume", "copy.frozen",
    "snapshot.volume", "snapshot.frozen", "restore.prepared", "restore.swapped",
    "publish.snapshot", "publish.packed", "image.received", "image.stored",
]


@pytest.mark.parametrize("step", LOCAL)
def test_crash_on_one_host(hosts, bridge, keeper, step):
    d = hosts.daemons[0]
    c = hosts.local(0)
    keeper_pid = _init_pid(c, keeper)
    subject = f"s-{uuid.uuid4().hex[:6]}"
    action_name = step.split(".")[0]
    running = action_name in ("restore", "publish") or step in ("copy.frozen",
                                                                "snapshot.frozen")
    if action_name != "create":
        _launch(c, subject, bridge, start=running)
    if action_name == "restore":
        c.instances.get(subject).snapshots.create("before", wait=True)
        c.instances.get(subject).execute(["touch", "/after-snapshot"])
    images_before = {i.fingerprint for i in c.images.all()}

    def action():
        cc = hosts.local(0)
        if action_name == "create":
            return _launch(cc, subject, bridge)
        if action_name == "start":
            return cc.instances.get(subject).start(wait=True)
        if action_name == "copy":
            return cc.api.instances.post(json={"name": subject + "c", "source": {
                "type": "copy", "source": subject}})
        if action_name == "snapshot":
            return cc.instances.get(subject).snapshots.create("snap0", wait=True)
        if action_name == "restore":
            return cc.instances.get(subject).restore_snapshot("before", wait=True)
        if action_name == "publish":
            return cc.api.images.post(json={"source": {"type": "instance", "name": subject}})
        if action_name == "image":
            return cc.api.images.post(data=_unique_image())
        raise AssertionError(step)
    try:
        _crash(d, step, action)
        c = hosts.local(0)
        _settled(d, [bridge])
        assert _init_pid(c, keeper) == keeper_pid, "the running container was restarted"
        if action_name == "create":
            _whole_or_gone(c, subject, running=False)
        elif action_name == "start":
            assert _whole_or_gone(c, subject)
        elif action_name == "copy":
            assert _whole_or_gone(c, subject, running=running)
            _whole_or_gone(c, subject + "c", running=False)
        elif action_name == "snapshot":
            assert _whole_or_gone(c, subject, running=running)
            snaps = [s.name for s in c.instances.get(subject).snapshots.all()]
            assert snaps in ([], ["snap0"])
        elif action_name == "restore":
            # Running before, running after (restarted if the restore had stopped it),
            # and either the old state or the snapshot's, nothing in between.
            assert _whole_or_gone(c, subject, running=True)
            c.instances.get(subject).execute(["ls", "/"])
        else:
            _images_whole(c)
            new = {i.fingerprint for i in c.images.all()} - images_before
            for fp in new:
                c.images.get(fp).delete(wait=True)
        _settled(d, [bridge])
    finally:
        for name in (subject, subject + "c"):
            _remove(hosts.local(0), name)


# Migration: the source or the target dies --------------------------------------------
@pytest.mark.parametrize("step,side,running", [
    ("migration.source.sending", 0, False),
    ("migration.target.record", 1, False),
    ("migration.target.volume", 1, True),
    ("migration.target.rootfs", 1, False),
])
def test_crash_during_migration(hosts, bridge, keeper, step, side, running):
    a, b = hosts.https(0), hosts.https(1)
    name = f"m-{uuid.uuid4().hex[:6]}"
    inst = _launch(hosts.local(0), name, bridge, start=True)
    inst.execute(["dd", "if=/dev/zero", "of=/data", "bs=1M", "count=8"])
    if not running:
        inst.stop(force=True, wait=True)
    keeper_pid = _init_pid(hosts.local(0), keeper)
    box = {}

    def action():
        env = a.api.instances[name].post(json={"migration": True}).json()
        op = a.api.operations[env["operation"].split("/")[-1]]._api_endpoint
        cert = a.host_info["environment"]["certificate"]
        box["source_op"] = env["operation"]
        target = b.api.instances.post(json={"name": name, "source": {
            "type": "migration", "mode": "pull", "operation": op, "certificate": cert,
            "secrets": env["metadata"]["metadata"]}}).json()
        return b.api.operations[target["operation"].split("/")[-1]].wait.get(
            params={"timeout": 60}).json()
    try:
        _crash(hosts.daemons[side], step, action)
        other = hosts.daemons[1 - side]
        if side == 1 and "source_op" in box:  # the source notices its target died
            try:
                hosts.local(0).api.operations[box["source_op"].split("/")[-1]].wait.get(
                    params={"timeout": 30})
            except pylxd.exceptions.NotFound:
                pass  # over and retired already
        for i, dm in enumerate(hosts.daemons):
            _settled(dm, [bridge] if i == 0 else [])
        assert _init_pid(hosts.local(0), keeper) == keeper_pid
        # The source keeps its instance, in the state it had; the target has none.
        assert _whole_or_gone(hosts.local(0), name, running=running)
        assert name not in [i.name for i in hosts.local(1).instances.all()]
        assert other.proc is not None and other.proc.poll() is None
    finally:
        for i in (0, 1):
            _remove(hosts.local(i), name)
