"""A hostile migration peer: header fuzzing and hostile tar streams from a scripted source.

The peer (hostile_peer) pushes to a real daemon in its own wire format. Every
lie in the header (snapshot names, snapshot/profile/instance config and devices,
types, id map, image, protocol) is refused before anything is made; every
hostile tar stream (absolute or `..` names, writes through symlinks, hard links
out, unexpected entries, garbage, header bombs) fails the migration with
nothing left; device nodes an unprivileged container can't make are dropped.
The reported reproduction: a snapshot name that was an absolute path made the
target create a root-owned directory there.
"""
from __future__ import annotations

import os
import tarfile
import uuid

import pytest

from tests.functional.runtime.security import rawhttp
from tests.functional.runtime.security.hostile_peer import (header, member, push, snapshot,
                                                            volume_tar)

MARK = f"/tmp/nlx-peer-{uuid.uuid4().hex[:8]}"
ENV_HOOK = {"environment.X": f"1\nlxc.hook.pre-start = /bin/touch {MARK}"}
NIC_NEWLINE = {"eth0": {"type": "nic", "nictype": "p2p",
                        "name": "eth0\nlxc.mount.entry = / mnt none rbind 0 0"}}

HEADER_CASES = {
    "snapshot-name-absolute-path": header(snapshots=[snapshot(MARK)]),
    "snapshot-name-dotdot": header(snapshots=[snapshot("../" * 12 + MARK.lstrip("/"))]),
    "snapshot-name-slash": header(snapshots=[snapshot("a/b")]),
    "snapshot-name-empty": header(snapshots=[snapshot("")]),
    "snapshot-name-dot": header(snapshots=[snapshot(".")]),
    "snapshot-name-dotdot-only": header(snapshots=[snapshot("..")]),
    "snapshot-name-newline": header(snapshots=[snapshot("s\n1")]),
    "snapshot-name-not-a-string": header(snapshots=[snapshot(123)]),
    "snapshot-name-too-long": header(snapshots=[snapshot("s" * 300)]),
    "snapshot-names-duplicate": header(snapshots=[snapshot("s1"), snapshot("s1")]),
    "snapshot-config-injection": header(snapshots=[snapshot("s1", config=ENV_HOOK)]),
    "snapshot-config-unknown-key": header(snapshots=[snapshot("s1", config={"evil": "1"})]),
    "snapshot-config-not-a-string": header(snapshots=[snapshot("s1", config={
        "limits.cpu": {"x": 1}})]),
    "snapshot-devices-injection": header(snapshots=[snapshot("s1", devices=NIC_NEWLINE)]),
    "snapshot-profiles-not-names": header(snapshots=[snapshot("s1", profiles=[1])]),
    "snapshot-created-at-text": header(snapshots=[snapshot("s1", created_at="yesterday")]),
    "snapshot-created-at-huge": header(snapshots=[snapshot("s1", created_at=1e300)]),
    "snapshot-architecture-bogus": header(snapshots=[snapshot("s1", architecture="sparc9")]),
    "snapshot-not-an-object": header(snapshots=["s1"]),
    "snapshots-not-a-list": header(snapshots={"s1": {}}),
    "profile-name-dotdot": header(profiles={"../x": {"config": {}, "devices": {}}}),
    "profile-config-injection": header(profiles={"p1": {"config": ENV_HOOK, "devices": {}}}),
    "profile-devices-injection": header(profiles={"p1": {"config": {},
                                                         "devices": NIC_NEWLINE}}),
    "profile-not-an-object": header(profiles={"p1": "x"}),
    "instance-config-injection": header(instance={**header()["instance"], "config": ENV_HOOK}),
    "instance-devices-injection": header(instance={**header()["instance"],
                                                   "devices": NIC_NEWLINE}),
    "instance-architecture-bogus": header(instance={**header()["instance"],
                                                    "architecture": "sparc9"}),
    "instance-not-an-object": header(instance=[1, 2]),
    "idmap-garbage": header(idmap="garbage"),
    "base-image-path": header(base_image="../../../etc"),
    "protocol-version": header(version=2),
    "header-not-an-object": [1, 2, 3],
    "header-not-json": "{not json",
}

STREAM_CASES = {
    "stream-absolute-member": [member(MARK, data=b"pwned")],
    "stream-dotdot-member": [member("rootfs/" + "../" * 12 + MARK.lstrip("/"), data=b"x")],
    "stream-write-through-symlink": [member("rootfs/escape", tarfile.SYMTYPE, linkname="/tmp"),
                                     member(f"rootfs/escape/{os.path.basename(MARK)}",
                                            data=b"pwned")],
    "stream-hardlink-out": [member("rootfs/shadow", tarfile.LNKTYPE, linkname="/etc/shadow")],
    "stream-unexpected-entry": [member("etc/cron.d/evil", data=b"* * * * * root x")],
    "stream-pax-header-bomb": [member("rootfs/big", data=b"x",
                                      pax={"comment": "x" * (12 << 20)})],
}


def _no_trace(client, daemon, name: str) -> None:
    assert not os.path.lexists(MARK), f"the peer made {MARK} on the target host"
    assert not client.instances.exists(name)
    assert name not in os.listdir(os.path.join(daemon.lxd_dir, "storage-pools", "default",
                                               "containers"))
    assert not client.profiles.exists("p1") and not client.profiles.exists("../x")
    assert rawhttp.latency(daemon.socket) < 1.0


@pytest.fixture(autouse=True)
def _clean():
    yield
    if os.path.isdir(MARK):
        import shutil
        shutil.rmtree(MARK)
    elif os.path.lexists(MARK):
        os.unlink(MARK)


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_peer_header_fuzz(daemon, client, busybox, case):
    name = f"peer-{uuid.uuid4().hex[:6]}"
    head = HEADER_CASES[case]
    snaps = len(head.get("snapshots") or []) if isinstance(head, dict) and \
        isinstance(head.get("snapshots"), list) else 0
    out = push(daemon, name, head, [volume_tar()] * (snaps + 1))
    assert out.get("reply") is None or not out["reply"].get("ready"), out
    assert out["status"] == "Failure", out
    assert "Internal error" not in (out["err"] or ""), out
    _no_trace(client, daemon, name)


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_peer_stream_fuzz(daemon, client, busybox, case):
    name = f"peer-{uuid.uuid4().hex[:6]}"
    out = push(daemon, name, header(), [volume_tar(STREAM_CASES[case])])
    assert out["reply"] == {"ready": True, "layered": False}, out
    assert out["status"] == "Failure" and not (out.get("result") or {}).get("success"), out
    _no_trace(client, daemon, name)


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_peer_snapshot_stream_fuzz(daemon, client, busybox, case):
    """A hostile stream for a snapshot (unpacked straight into the snapshot's
    directory on a dir pool) is held to the same rules, and no snapshot is left."""
    name = f"peer-{uuid.uuid4().hex[:6]}"
    out = push(daemon, name, header(snapshots=[snapshot("s0"), snapshot("s1")]),
               [volume_tar(), volume_tar(STREAM_CASES[case]), volume_tar()])
    assert out["reply"] == {"ready": True, "layered": False}, out
    assert out["status"] == "Failure" and not (out.get("result") or {}).get("success"), out
    _no_trace(client, daemon, name)
    snaps = os.path.join(daemon.lxd_dir, "storage-pools", "default", "containers-snapshots")
    assert not os.path.isdir(snaps) or name not in os.listdir(snaps)


def test_peer_stream_garbage(daemon, client, busybox):
    name = f"peer-{uuid.uuid4().hex[:6]}"
    out = push(daemon, name, header(), [os.urandom(300_000)])
    assert out["status"] == "Failure", out
    _no_trace(client, daemon, name)


def test_peer_device_nodes_dropped_and_owners_clamped(daemon, client, busybox):
    """What an unprivileged container can't make itself never lands on the target;
    files owned by host root in the stream end up owned by the container's overflow id."""
    name = f"peer-{uuid.uuid4().hex[:6]}"
    root_owned = member("rootfs/root/suid", data=b"#!/bin/sh\n", mode=0o4755)
    out = push(daemon, name, header(), [volume_tar([
        member("rootfs/root/disk", tarfile.BLKTYPE, mode=0o666, dev=(8, 0)),
        member("rootfs/root/mem", tarfile.CHRTYPE, mode=0o666, dev=(1, 1)),
        member("rootfs/root/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        root_owned])])
    assert out["status"] == "Success", out
    try:
        inst = client.instances.get(name)
        pool = os.path.join(daemon.lxd_dir, "storage-pools", "default", "containers", name,
                            "rootfs", "root")
        assert not os.path.lexists(os.path.join(pool, "disk"))
        assert not os.path.lexists(os.path.join(pool, "mem"))
        assert os.path.lexists(os.path.join(pool, "null"))   # LXD's mknod set is kept
        st = os.lstat(os.path.join(pool, "suid"))
        assert st.st_uid >= 1000000, "a file from the peer stayed owned by host root"
        inst.start(wait=True)
        assert inst.execute(["true"]).exit_code == 0
        inst.stop(force=True, wait=True)
    finally:
        client.instances.get(name).delete(wait=True)


def test_peer_good_migration_with_snapshots_still_works(daemon, client, busybox):
    name = f"peer-{uuid.uuid4().hex[:6]}"
    out = push(daemon, name, header(snapshots=[snapshot("s0"), snapshot("s1")]),
               [volume_tar()] * 3)
    assert out["status"] == "Success", out
    inst = client.instances.get(name)
    assert sorted(s.name for s in inst.snapshots.all()) == ["s0", "s1"]
    inst.delete(wait=True)
