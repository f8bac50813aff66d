"""Hostile images (anything from Glance or an image server is tenant input).

One matrix, every case a real upload and a real instance on a real daemon: path
tricks in templates and tarballs, template bombs, hostile metadata.yaml, device
nodes and FIFOs, setuid files, size, entry and header bombs. Each hostile image
fails with a clear 4xx at the step named (upload, create or start) and leaves
nothing behind: no instance, no unpacked volume, no temporary directory, nothing
written on the host; special files are dropped, and a good image still works.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tarfile
import time
import uuid

import pylxd
import pytest

from tests.functional.runtime.harness import BUSYBOX
from tests.functional.runtime.security import rawhttp
from tests.functional.runtime.security.hostile_images import (
    Image, busybox_members, busybox_metadata, member, pool_images, raw_tar, with_template)

UP = "../" * 16
MARK = f"/tmp/nlx-hostile-{uuid.uuid4().hex[:8]}"   # a host path no image may create


def _bomb_template(body: str) -> Image:
    return with_template("bomb.tpl", body.encode())


def _meta_with(**changes) -> dict:
    meta = busybox_metadata()
    meta.update(changes)
    return meta


def _alias_bomb() -> bytes:
    lines = ["architecture: x86_64", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, "
                     f"*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]")
    lines.append("properties: {description: *a11}")
    return ("\n".join(lines) + "\n").encode()


# (case id, image factory, step that must fail or None, message part or check name)
CASES = [
    # templates: path tricks ([T1] is the reported reproduction)
    ("template-dotdot-host-hostname", lambda: with_template(UP + "etc/hostname"), "start",
     "can't be used"),
    ("template-absolute-name", lambda: with_template("/etc/hostname"), "start",
     "can't be used"),
    ("template-dotdot-server-state", lambda: with_template(UP + "{lxd_dir}/database/runtime.db"),
     "start", "can't be used"),
    ("template-symlink-out", lambda: Image(
        metadata=with_template("link.tpl").metadata,
        extra=[member("templates/link.tpl", tarfile.SYMTYPE, linkname="/etc/hostname")]),
     "start", "can't be used"),
    ("templates-dir-is-a-symlink", lambda: Image(
        metadata=with_template("hostname").metadata, drop=("templates", "templates/hostname.tpl"),
        extra=[member("templates", tarfile.SYMTYPE, linkname="/etc")]),
     "create", "must be a directory"),
    # templates: bounded rendering
    ("template-endless-loop", lambda: _bomb_template(
        "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"),
     "start", "rendering"),
    ("template-memory-bomb", lambda: _bomb_template('{{ "x" * 3000000000 }}'), "start",
     "memory"),
    ("template-output-bomb", lambda: _bomb_template(
        '{% for i in range(90000) %}{{ "x" * 100 }}{% endfor %}'), "start", "output larger"),
    ("template-sandbox-escape", lambda: _bomb_template(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}"), "start", "unsafe"),
    # metadata.yaml
    ("metadata-yaml-alias-bomb", lambda: Image(metadata=_alias_bomb()), "upload", "aliases"),
    ("metadata-yaml-too-large", lambda: Image(metadata=_meta_with(
        properties={"description": "x" * (2 << 20)})), "upload", "larger than"),
    ("metadata-yaml-symlink", lambda: Image(drop=("metadata.yaml",), extra=[
        member("metadata.yaml", tarfile.SYMTYPE, linkname="/etc/shadow")]),
     "upload", "metadata.yaml"),
    ("metadata-property-key-newline", lambda: Image(metadata=_meta_with(
        properties={"os\nlxc.hook.pre-start": "x"})), "upload", "control characters"),
    # tarball: path tricks
    ("tar-absolute-member", lambda: Image(extra=[member(MARK, data=b"pwned")]), "create",
     "absolute path"),
    ("tar-dotdot-member", lambda: Image(extra=[
        member("rootfs/" + UP + MARK.lstrip("/"), data=b"pwned")]), "create", "'..'"),
    ("tar-write-through-symlink", lambda: Image(extra=[
        member("rootfs/escape", tarfile.SYMTYPE, linkname="/tmp"),
        member(f"rootfs/escape/{os.path.basename(MARK)}", data=b"pwned")]),
     "create", "below the symlink"),
    ("tar-hardlink-absolute", lambda: Image(extra=[
        member("rootfs/shadow", tarfile.LNKTYPE, linkname="/etc/shadow")]),
     "create", "hard link"),
    ("tar-hardlink-dotdot", lambda: Image(extra=[
        member("rootfs/passwd", tarfile.LNKTYPE, linkname="rootfs/" + UP + "etc/passwd")]),
     "create", "hard link"),
    ("tar-unexpected-top-level", lambda: Image(extra=[member("etc/cron.d/evil", data=b"x")]),
     "create", "is not one of"),
    ("split-image-absolute-member", "split", "create", "absolute path"),
    # special files: dropped, the image still works
    ("tar-device-nodes-dropped", lambda: Image(extra=[
        member("rootfs/root/mem", tarfile.CHRTYPE, mode=0o666, dev=(1, 1)),
        member("rootfs/root/disk", tarfile.BLKTYPE, mode=0o666, dev=(8, 0))]),
     None, "absent:/root/mem,/root/disk"),
    ("tar-fifo-at-seed-path-dropped", lambda: Image(extra=[
        member("rootfs/var/lib/cloud/seed", tarfile.DIRTYPE, mode=0o755),
        member("rootfs/var/lib/cloud/seed/nocloud", tarfile.DIRTYPE, mode=0o755),
        member("rootfs/var/lib/cloud/seed/nocloud/user-data", tarfile.FIFOTYPE)]),
     None, "absent:/var/lib/cloud/seed/nocloud/user-data"),
    ("squashfs-device-node-dropped", "squashfs", None, "absent:/root/mem"),
    # bombs (limits lowered for the test through the server config)
    ("size-bomb", lambda: Image(extra=[member("rootfs/zeros", data=bytes(24 << 20))]),
     "create", "more than"),
    ("entry-bomb", lambda: Image(extra=[member(f"rootfs/many/{i}", data=b"")
                                        for i in range(3000)]), "create", "more than"),
    ("pax-header-bomb", lambda: Image(extra=[member(
        "rootfs/big", data=b"x", pax={"comment": "x" * (12 << 20)})]),
     "create", "header larger"),
]
LIMITS = {"images.max_unpacked_size": str(20 << 20), "images.max_unpacked_files": "2500"}


BOMBS = ("size-bomb", "entry-bomb")


@pytest.fixture
def limits(client, case_id):
    """Low unpack limits for the bomb cases (a real bomb would fill the disk first)."""
    if case_id not in BOMBS:
        yield
        return
    client.api.patch(json={"config": LIMITS})
    yield
    client.api.patch(json={"config": {k: None for k in LIMITS}})


def _upload(client, case: str, lxd_dir: str, tmp_path):
    if case == "split":
        meta = Image(drop=tuple(n for n in _rootfs_names())).tarball()
        rootfs = raw_tar([member("bin", tarfile.DIRTYPE, mode=0o755),
                          member(MARK, data=b"pwned")])
        return client.images.create(rootfs, metadata=meta, wait=True)
    if case == "squashfs":
        return _squashfs_image(client, tmp_path)
    return None


def _rootfs_names() -> list[str]:
    return [m.name.lstrip("./").rstrip("/") for m, _ in busybox_members()
            if m.name.lstrip("./").startswith("rootfs")]


def _squashfs_image(client, tmp_path):
    src = tmp_path / "root"
    src.mkdir()
    subprocess.run(["tar", "-xJf", BUSYBOX, "-C", str(src), "--strip-components=1",
                    "rootfs"], check=True)
    sq = tmp_path / "rootfs.sqfs"
    subprocess.run(["mksquashfs", str(src), str(sq), "-quiet", "-noappend",
                    "-p", "root/mem c 666 0 0 1 1"], check=True, stdout=subprocess.DEVNULL)
    meta = Image(drop=tuple(_rootfs_names())).tarball()
    return client.images.create(sq.read_bytes(), metadata=meta, wait=True)


def _host_untouched():
    assert not os.path.lexists(MARK), f"the image wrote {MARK} on the host"


def _gone(client, daemon, name: str, before_images: set[str]):
    assert not client.instances.exists(name)
    pool = os.path.join(daemon.lxd_dir, "storage-pools", "default")
    assert name not in os.listdir(os.path.join(pool, "containers"))
    left = pool_images(daemon.lxd_dir) - before_images
    assert not {e for e in left if e.endswith(".tmp")}, f"half-unpacked image left: {left}"


def _responsive(daemon) -> float:
    return rawhttp.latency(daemon.socket)


@pytest.mark.parametrize("case_id, factory, step, expect", CASES, ids=[c[0] for c in CASES])
def test_image_hostile(daemon, client, busybox, limits, tmp_path, case_id, factory, step,
                       expect):
    name = f"h-{uuid.uuid4().hex[:8]}"
    before = pool_images(daemon.lxd_dir)
    image = None
    failure = None
    inst = None
    try:
        try:
            image = _upload(client, factory, daemon.lxd_dir, tmp_path) if isinstance(
                factory, str) else client.images.create(
                _render(factory(), daemon.lxd_dir), wait=True)
        except pylxd.exceptions.LXDAPIException as exc:
            failure = ("upload", str(exc))
        if failure is None:
            try:
                inst = client.instances.create({
                    "name": name, "source": {"type": "image",
                                             "fingerprint": image.fingerprint}}, wait=True)
            except pylxd.exceptions.LXDAPIException as exc:
                failure = ("create", str(exc))
        if failure is None:
            t0 = time.monotonic()
            try:
                _start_watching(daemon, inst)
            except pylxd.exceptions.LXDAPIException as exc:
                failure = ("start", str(exc))
            assert time.monotonic() - t0 < 30, "a hostile image must fail fast"
        if step is None:
            assert failure is None, failure
            inst.sync()
            assert inst.status == "Running"
            for path in expect.split(":", 1)[1].split(","):
                res = inst.execute(["test", "-e", path])
                assert res.exit_code != 0, f"{path} should have been dropped from the image"
        else:
            assert failure is not None, f"{case_id}: the hostile image was accepted"
            assert failure[0] == step and expect in failure[1], failure
            assert "Internal error" not in failure[1]
            if step == "start":
                try:
                    written = inst.files.get("/etc/hostname").decode(errors="replace")
                except pylxd.exceptions.NotFound:
                    written = ""
                assert socket.gethostname() not in written
        _host_untouched()
        assert _responsive(daemon) < 1.0
    finally:
        if inst is not None:
            try:
                inst.sync()
                if inst.status != "Stopped":
                    inst.stop(force=True, wait=True)
                inst.delete(wait=True)
            except pylxd.exceptions.LXDAPIException:
                pass
        if image is not None:
            image.delete(wait=True)
        if os.path.lexists(MARK):
            os.unlink(MARK)
    if step in ("upload", "create"):
        _gone(client, daemon, name, before)


def _render(image: Image, lxd_dir: str) -> bytes:
    """Templates naming the daemon's own state directory get the real path."""
    if isinstance(image.metadata, dict):
        for spec in (image.metadata.get("templates") or {}).values():
            spec["template"] = spec["template"].replace("{lxd_dir}", lxd_dir.lstrip("/"))
    return image.tarball()


def _start_watching(daemon, inst) -> None:
    """Start, checking that the daemon keeps answering while the image's templates run."""
    import threading
    latencies: list[float] = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            latencies.append(_responsive(daemon))
            time.sleep(0.2)
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    try:
        inst.start(wait=True)
    finally:
        stop.set()
        t.join()
        assert max(latencies or [0]) < 1.0, f"daemon froze while starting: {latencies}"


def _nobody_can(path: str) -> bool:
    """Whether an unprivileged host user can stat path."""
    p = subprocess.run([sys.executable, "-c", "import os, sys; os.stat(sys.argv[1])", path],
                       user=65534, group=65534, capture_output=True)
    return p.returncode == 0


@pytest.mark.parametrize("privileged", [False, True], ids=["unprivileged", "privileged"])
def test_image_setuid_files_out_of_host_users_reach(daemon, client, busybox, make_instance,
                                                    privileged):
    """A setuid binary from the image (or from a snapshot) is reachable by no host user;
    the container still starts and runs it."""
    busybox_bin = next(data for m, data in busybox_members() if m.name.endswith("bin/busybox"))
    image = client.images.create(Image(extra=[member(
        "rootfs/opt/true", data=busybox_bin, mode=0o4755)]).tarball(), wait=True)
    try:
        inst = make_instance(source={"type": "image", "fingerprint": image.fingerprint},
                             config={"security.privileged": str(privileged).lower()})
        inst.snapshots.create("s1", wait=True)
        assert inst.execute(["/opt/true"]).exit_code == 0
        assert inst.execute(["stat", "-c", "%a", "/opt/true"]).stdout.strip() == "4755"
        pool = os.path.join(daemon.lxd_dir, "storage-pools", "default")
        targets = [os.path.join(pool, "containers", inst.name, "rootfs", "opt", "true"),
                   os.path.join(pool, "containers", inst.name, ".upper"),
                   os.path.join(pool, "containers-snapshots", inst.name, "s1"),
                   os.path.join(pool, "images", image.fingerprint, "rootfs", "opt", "true")]
        reachable = [t for t in targets if _nobody_can(t)]
        assert not reachable, f"a host user reaches {reachable}"
        st = os.stat(os.path.join(pool, "containers", inst.name))
        assert oct(st.st_mode & 0o7777) == "0o100"
        assert os.stat(os.path.join(pool, "images")).st_mode & 0o777 == 0o700
    finally:
        for inst_name in [i.name for i in client.instances.all()
                          if i.config.get("volatile.base_image") == image.fingerprint]:
            i = client.instances.get(inst_name)
            if i.status != "Stopped":
                i.stop(force=True, wait=True)
            i.delete(wait=True)
        image.delete(wait=True)
