"""Moving stopped containers between Debian's LXD 5.0.2 and the runtime, both ways,
in LXD's migration protocol (protobuf header, index header, rsync per snapshot).

A private LXD (tests/functional/runtime/lxd_daemon.py: own LXD_DIR, offline, dir
pool) and one runtime daemon, both on loopback HTTPS, one client certificate
trusted by both. Each case checks what arrived: snapshots (their contents, by
restoring them), files owned by container uids (1000, a setuid root binary), the
instance starting and running on the other side, and the source being gone after
a move. The id map differs between the two sides (`security.idmap.isolated`), so
every file is re-owned on the way in both directions.
"""
import asyncio
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import aiohttp
import pylxd
import pytest

from runtime.base.idmap import IdMap
from runtime.migration import lxd_protocol as proto

from tests.functional.runtime.harness import BUSYBOX, import_busybox
from tests.functional.runtime.lxd_daemon import LxdDaemon, lxd_binary
from tests.functional.runtime.remote_hosts import Hosts

if os.geteuid() != 0:
    pytest.skip("needs root (real containers)", allow_module_level=True)
if lxd_binary() is None:
    pytest.skip("Debian's lxd package is not installed (bindep.txt, test profile)",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hosts():
    h = Hosts(1, netns=False)
    import_busybox(h.local(0))
    yield h
    h.destroy()


@pytest.fixture(scope="module")
def lxd(hosts):
    d = LxdDaemon(_free_port()).start()
    try:
        d.trust(hosts.cert)
        d.lxc("image", "import", BUSYBOX, "--alias", "busybox")
        yield d
    except BaseException:
        print(d.tail())
        raise
    finally:
        d.stop()


@pytest.fixture(scope="module")
def lxd_client(hosts, lxd):
    client = pylxd.Client(endpoint=lxd.url, cert=(hosts.cert, hosts.key),
                          verify=lxd.server_crt)
    _CLI_EXEC[id(client)] = lxd.lxc
    yield client
    _CLI_EXEC.pop(id(client), None)


@pytest.fixture(scope="module")
def rt_client(hosts):
    return hosts.https(0)


@pytest.fixture(scope="module")
def lxc_cli(hosts, lxd):
    """The stock lxc CLI with remotes `rt` (the runtime) and `lx` (the LXD)."""
    home = tempfile.mkdtemp(prefix="nlx-lxc-", dir="/var/tmp")
    env = {"HOME": home, "LXD_CONF": os.path.join(home, "conf"),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def run(*args, check=True, timeout=120):
        p = subprocess.run(["lxc", *args], env=env, capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"lxc {' '.join(args)}: {p.stdout}{p.stderr}")
        return p
    hosts.local(0).api.patch(json={"config": {"core.trust_password": "nlx-pw"}})
    lxd.lxc("config", "set", "core.trust_password", "nlx-pw")
    run("remote", "add", "rt", hosts.daemons[0].url, "--password", "nlx-pw",
        "--accept-certificate")
    run("remote", "add", "lx", lxd.url, "--password", "nlx-pw", "--accept-certificate")
    yield run
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def names(rt_client, lxd_client):
    made = []

    def new() -> str:
        made.append(f"lm-{uuid.uuid4().hex[:8]}")
        return made[-1]
    yield new
    for client in (rt_client, lxd_client):
        for name in made:
            try:
                inst = client.instances.get(name)
            except pylxd.exceptions.NotFound:
                continue
            try:
                if inst.status != "Stopped":
                    inst.stop(force=True, wait=True)
                inst.delete(wait=True)
            except pylxd.exceptions.LXDAPIException:
                pass


# Commands in LXD's containers go through the stock lxc CLI on its unix socket:
# pylxd's execute() closes its websockets after LXD 5.0.2 has already hung up the
# TLS connection, and ws4py then fails with SSLEOFError (a client-side race).
_CLI_EXEC: dict[int, object] = {}


def _sh(inst, script: str) -> str:
    cli = _CLI_EXEC.get(id(inst.client))
    if cli is not None:
        p = cli("exec", inst.name, "--", "sh", "-c", script, check=False)
        assert p.returncode == 0, (script, p.stdout, p.stderr)
        return p.stdout
    res = inst.execute(["sh", "-c", script])
    assert res.exit_code == 0, (script, res.stdout, res.stderr)
    return res.stdout


def _prepare(client, name: str, config: dict) -> None:
    """A container with content in three states: s0, s1 (snapshots) and the live one.

    Files are made inside the running container, so their owners are container ids.
    Each state of /root/a has its own size: LXD's protocol runs one rsync per
    snapshot into the same volume, and LXD's rsync server (its arguments are
    fixed by LXD) skips a file whose size and mtime second are unchanged, so a
    same-size rewrite within one second between two snapshots never reaches an
    LXD target (LXD to LXD alike). On the runtime a stop, snapshot and start
    take well under a second, so equal sizes would test that limitation.
    """
    inst = client.instances.create({"name": name, "config": config,
                                    "source": {"type": "image", "alias": "busybox"}},
                                   wait=True)
    inst.start(wait=True)
    _sh(inst, "mkdir -p /home/u && echo v0 > /root/a && echo mine > /home/u/f && "
              "chown -R 1000:1000 /home/u && chmod 640 /home/u/f && "
              "cp /bin/busybox /root/suid && chmod 4755 /root/suid")
    inst.stop(force=True, wait=True)
    inst.snapshots.create("s0", wait=True)
    inst.start(wait=True)
    _sh(inst, "echo v1. > /root/a && echo b > /root/b && chown 1001:1002 /root/b")
    inst.stop(force=True, wait=True)
    inst.snapshots.create("s1", wait=True)
    inst.start(wait=True)
    _sh(inst, "echo v2.. > /root/a")
    inst.stop(force=True, wait=True)


def _check_live(inst) -> None:
    """Started on its new side, the container sees the live state, owners intact."""
    inst.start(wait=True)
    try:
        out = _sh(inst, "cat /root/a; stat -c '%u:%g %a' /home/u /home/u/f /root/b "
                        "/root/suid; cat /home/u/f")
        assert out.split("\n")[:6] == ["v2..", "1000:1000 755", "1000:1000 640",
                                       "1001:1002 644", "0:0 4755", "mine"], out
        # init runs (PID 1 is the image's init, not a shell of ours)
        assert _sh(inst, "cat /proc/1/comm").strip() == "init"
    finally:
        inst.stop(force=True, wait=True)


def _check_snapshots(client, name: str) -> None:
    """Each snapshot holds its own state: restore it and look."""
    inst = client.instances.get(name)
    assert sorted(s.name for s in inst.snapshots.all()) == ["s0", "s1"]
    for snap, expect in (("s0", "v0\nno-b"), ("s1", "v1.\n1001:1002")):
        inst.restore_snapshot(snap, wait=True)
        inst.start(wait=True)
        try:
            out = _sh(inst, "cat /root/a; stat -c '%u:%g' /root/b 2>/dev/null || "
                            "echo no-b")
            assert out.strip() == expect, (snap, out)
        finally:
            inst.stop(force=True, wait=True)


@pytest.mark.parametrize("isolated", [False, True], ids=["shared-map", "isolated-map"])
def test_pylxd_migrate_lxd_to_runtime_and_back(lxd_client, rt_client, names, isolated):
    """pylxd's migrate(), LXD -> runtime (the runtime pulls), then runtime -> LXD."""
    name = names()
    config = {"security.idmap.isolated": "true"} if isolated else {}
    _prepare(lxd_client, name, config)
    t0 = time.monotonic()
    lxd_client.instances.get(name).migrate(rt_client, wait=True)
    print(f"\npylxd migrate LXD -> runtime with 2 snapshots: "
          f"{(time.monotonic() - t0) * 1000:.0f} ms")
    moved = rt_client.instances.get(name)
    assert moved.status == "Stopped"
    _check_live(moved)
    for _ in range(50):                  # pylxd deletes the source without waiting
        if not lxd_client.instances.exists(name):
            break
        time.sleep(0.1)
    assert not lxd_client.instances.exists(name)
    t0 = time.monotonic()
    moved.migrate(lxd_client, wait=True)
    print(f"pylxd migrate runtime -> LXD with 2 snapshots: "
          f"{(time.monotonic() - t0) * 1000:.0f} ms")
    back = lxd_client.instances.get(name)
    _check_live(back)
    _check_snapshots(lxd_client, name)


def test_lxc_cli_move_and_copy_both_ways(lxc_cli, lxd_client, rt_client, names):
    """The stock lxc 5.0 CLI: move runtime -> LXD, copy LXD -> runtime, snapshots too."""
    name, copy = names(), names()
    _prepare(rt_client, name, {})
    lxc_cli("move", f"rt:{name}", f"lx:{name}")
    assert not rt_client.instances.exists(name)
    _check_live(lxd_client.instances.get(name))
    lxc_cli("copy", f"lx:{name}", f"rt:{copy}")
    assert lxd_client.instances.exists(name)
    _check_live(rt_client.instances.get(copy))
    _check_snapshots(rt_client, copy)


def test_lxc_cli_copy_one_lxd_snapshot_as_new_instance(lxc_cli, lxd_client, rt_client, names):
    """A snapshot alone, as a new instance (lxc copy c/snap remote:new)."""
    name, single = names(), names()
    _prepare(lxd_client, name, {})
    lxc_cli("copy", f"lx:{name}/s0", f"rt:{single}")
    inst = rt_client.instances.get(single)
    assert inst.snapshots.all() == []
    inst.start(wait=True)
    try:
        assert _sh(inst, "cat /root/a").strip() == "v0"
    finally:
        inst.stop(force=True, wait=True)


def test_lxc_cli_copy_running_lxd_container_stateless(lxc_cli, lxd_client, rt_client, names):
    """A running source: LXD sends the volume twice (the final sync after a stop)."""
    name, copy = names(), names()
    _prepare(lxd_client, name, {})
    lxd_client.instances.get(name).start(wait=True)
    lxc_cli("copy", f"lx:{name}", f"rt:{copy}", "--stateless", "--instance-only")
    inst = rt_client.instances.get(copy)
    assert inst.snapshots.all() == []
    _check_live(inst)


def test_live_migration_from_runtime_refused_with_reason(lxc_cli, rt_client, names):
    name = names()
    inst = rt_client.instances.create({"name": name, "source": {"type": "image",
                                                                "alias": "busybox"}},
                                      wait=True)
    inst.start(wait=True)
    # lxc 5.0 moves a running instance live unless told --stateless
    p = lxc_cli("move", f"rt:{name}", f"lx:{name}", check=False)
    assert p.returncode != 0
    assert "CRIU" in p.stdout + p.stderr
    assert rt_client.instances.get(name).status == "Running"


# A hostile LXD source (issue 12): the runtime waits in push mode, the test plays the
# source and sends LXD's messages with malicious content. Each is refused with a
# clear message on the control channel and in the operation, nothing is left behind.
def _offer(snapshots=("s0",), idmap=IdMap(1000000, 65536)):
    return proto.offer(idmap, [{"name": n, "architecture": "x86_64",
                                "created_at": 1700000000} for n in snapshots])


def _renamed_snapshot(name):
    offer = _offer()
    offer.snapshotNames[0] = offer.snapshots[0].name = name
    return offer


def _holey_map():
    offer = _offer()
    offer.idmap.add(isuid=True, isgid=True, hostid=5000, nsid=70000, maprange=10)
    return offer


def _live():
    offer = _offer()
    offer.criu = proto.CRIU_RSYNC
    return offer


def _index(container: dict) -> dict:
    return {"config": {"Container": {"name": "evil", "architecture": "x86_64",
                                     "config": {}, "devices": {}, "profiles": ["default"],
                                     **container}}}


_HOSTILE = {
    # name: (offer, index header or None, refused before the response, error text)
    "dotdot-snapshot": (_renamed_snapshot("../../../../etc"), _index({}), False,
                        "snapshot name"),
    "newline-config": (_offer(), _index({"config": {"limits.cpu": "1\nlxc.hook.x=/x"}}),
                       False, "limits.cpu"),
    "device-path-escape": (_offer(), _index({"devices": {"x": {
        "type": "disk", "path": "/mnt", "source": "/etc\nlxc.mount.entry=/ x"}}}),
        False, "control character"),
    "profile-path": (_offer(), _index({"profiles": ["../../x"]}), False, "profile name"),
    "unhashable-profiles": (_offer(), _index({"profiles": [{"a": 1}]}), False,
                            "profiles must be"),
    "snapshot-flood": (_offer([f"s{i}" for i in range(10001)]), _index({}), False,
                       "more than"),
    "id-map-holes": (_holey_map(), None, True, "id map"),
    "live-criu": (_live(), None, True, "CRIU"),
    "garbage": (b"\xff\x01garbage", None, True, "Malformed"),
}


async def _hostile_source(lxd_dir: str, op: str, secrets: dict, offer, index,
                          expect: int) -> list:
    """Connect as the source, send the offer (and the index header); return the
    control messages the runtime sent (raw bytes): `expect` of them, fewer if it
    hangs up first."""
    url = f"http://lxd/1.0/operations/{op}/websocket?secret="
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(
            path=os.path.join(lxd_dir, "unix.socket"))) as session:
        control = await session.ws_connect(url + secrets["control"])
        fs = await session.ws_connect(url + secrets["fs"])
        await control.send_bytes(offer if isinstance(offer, bytes)
                                 else offer.SerializeToString())
        if index is not None:
            await fs.send_bytes(json.dumps(index).encode())
            await fs.send_str("")
        got = []
        while len(got) < expect:
            msg = await control.receive(timeout=30)
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            got.append(msg.data)
        await fs.close()
        await control.close()
        return got


@pytest.mark.parametrize("case", list(_HOSTILE))
def test_hostile_lxd_source_is_refused(hosts, rt_client, names, case):
    offer, index, early, text = _HOSTILE[case]
    local = hosts.local(0)
    profiles = sorted(p.name for p in local.profiles.all())
    name = names()
    resp = local.api.instances.post(json={"name": name, "source": {
        "type": "migration", "mode": "push"}})
    meta = resp.json()["metadata"]
    got = asyncio.run(_hostile_source(hosts.daemons[0].lxd_dir, meta["id"],
                                      meta["metadata"], offer, index,
                                      1 if early else 2))
    # LXD's order: the response only for an offer it can take, then the failure.
    assert len(got) == (1 if early else 2), got
    if not early:
        assert proto.parse(proto.MigrationHeader, got[0]).fs == proto.FS_RSYNC
    failure = proto.parse(proto.MigrationControl, got[-1])
    assert not failure.success and text.lower() in failure.message.lower(), failure.message
    result = local.api.operations[meta["id"]].wait.get(params={"timeout": 30}).json()
    assert result["metadata"]["status"] == "Failure", result
    assert text.lower() in result["metadata"]["err"].lower()
    assert not rt_client.instances.exists(name)
    assert sorted(p.name for p in local.profiles.all()) == profiles
    assert not glob.glob(os.path.join(hosts.daemons[0].lxd_dir, "storage-pools", "*", "*",
                                      f"*{name}*"))
