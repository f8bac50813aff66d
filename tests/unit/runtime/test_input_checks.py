"""Pure parts of the hostile-input checks: control characters, safe paths, the tar
guard, metadata.yaml, the template worker's limits, the database's durability."""
from __future__ import annotations

import io
import os
import sqlite3
import stat
import tarfile
import threading

import pytest

from runtime import controlchars, safepath, targuard
from runtime.db import Database
from runtime.errors import BadRequest
from runtime.images import metadata
from runtime.instances import template_worker
from runtime.instances.devices.base import mount_field


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b", "a\tb", "\x1b[31m", "a\x7f",
                                   "a\x85b", "a\u2028b", "a\u2029b"])
def test_single_line_values_refuse_control_characters(value):
    with pytest.raises(BadRequest, match="control character"):
        controlchars.check_value("environment.X", value, "instance config")


@pytest.mark.parametrize("key", ["raw.lxc", "user.note", "cloud-init.user-data",
                                 "image.description", "security.syscalls.deny"])
def test_multiline_keys_take_newlines_but_not_other_controls(key):
    assert controlchars.check_value(key, "a\nb\tc\r\n", "x") == "a\nb\tc\r\n"
    with pytest.raises(BadRequest):
        controlchars.check_value(key, "a\x00b", "x")


@pytest.mark.parametrize("key", ["environment.A B", "user.a\nb", "", "x\x00"])
def test_keys_refuse_whitespace_and_controls(key):
    with pytest.raises(BadRequest):
        controlchars.check_key(key, "config")


def test_generated_lines_guard():
    with pytest.raises(BadRequest):
        controlchars.check_generated(["lxc.environment = A=1", "x\ny"], "lxc.conf")


def test_mount_fields_are_escaped():
    assert mount_field("/a b\tc\\d") == "/a\\040b\\011c\\134d"


def test_read_beneath_refuses_escapes_and_special_files(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "ok.tpl").write_text("fine")
    os.symlink("/etc/hostname", tmp_path / "t" / "link.tpl")
    os.mkfifo(tmp_path / "t" / "fifo.tpl")
    (tmp_path / "secret").write_text("no")
    assert safepath.read_beneath(str(tmp_path / "t"), "ok.tpl", 100) == b"fine"
    for name in ("../secret", "/etc/hostname", "link.tpl", "a/../../secret"):
        with pytest.raises((OSError, ValueError)):
            safepath.read_beneath(str(tmp_path / "t"), name, 100)
    with pytest.raises(safepath.NotRegularFile, match="fifo"):
        safepath.read_beneath(str(tmp_path / "t"), "fifo.tpl", 100)
    with pytest.raises(ValueError, match="larger"):
        safepath.read_beneath(str(tmp_path / "t"), "ok.tpl", 2)


def test_open_regular_never_opens_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "f")
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        done = threading.Event()

        def attempt():
            with pytest.raises(safepath.NotRegularFile):
                safepath.open_or_create_regular(root, "/f", os.O_WRONLY, 0o600)
            done.set()
        t = threading.Thread(target=attempt, daemon=True)
        t.start()
        t.join(2)
        assert done.is_set(), "opening a FIFO blocked"
        fd, created = safepath.open_or_create_regular_created(root, "/new", os.O_WRONLY,
                                                              0o600)
        os.close(fd)
        assert created
        assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o600
        fd = safepath.open_or_create_regular(root, "/new", os.O_WRONLY, 0o600)
        os.close(fd)
        fd, created = safepath.open_or_create_regular_created(root, "new", os.O_WRONLY, 0o600)
        os.close(fd)
        assert not created
    finally:
        os.close(root)


def _tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _m(name, kind=tarfile.REGTYPE, data=b"", linkname="", dev=(0, 0)):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.devmajor, info.devminor = dev
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, (data if kind == tarfile.REGTYPE else None)


def _pump(data: bytes, policy: targuard.Policy) -> tuple[targuard.Result, bytes]:
    r, w = os.pipe()
    r2, w2 = os.pipe()
    out = bytearray()

    def feed():
        try:
            for i in range(0, len(data), 4096):
                os.write(w, data[i:i + 4096])
        except BrokenPipeError:
            pass  # the guard stopped reading: refused
        finally:
            os.close(w)

    def drain():
        while chunk := os.read(r2, 65536):
            out.extend(chunk)
    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    try:
        result = targuard.Guard(policy).pump(r, w2)
    finally:
        os.close(w2)
        os.close(r)
        for t in threads:
            t.join()
        os.close(r2)
    return result, bytes(out)


POLICY = targuard.Policy("image", 10**6, 100, top_level=frozenset({"rootfs", "metadata.yaml"}))


@pytest.mark.parametrize("members, why", [
    ([_m("/etc/passwd")], "absolute"),
    ([_m("rootfs/../../x")], "'..'"),
    ([_m("rootfs/l", tarfile.SYMTYPE, linkname="/etc"), _m("rootfs/l/passwd")], "symlink"),
    ([_m("rootfs/h", tarfile.LNKTYPE, linkname="/etc/shadow")], "hard link"),
    ([_m("rootfs/h", tarfile.LNKTYPE, linkname="rootfs/later")], "hard link"),
    ([_m("other/x")], "is not one of"),
    ([_m("rootfs/a\nb")], "control character"),
    ([_m(f"rootfs/{i}") for i in range(101)], "more than 100 entries"),
    ([_m("rootfs/big", data=bytes(10**6 + 1))], "more than 1000000 bytes"),
])
def test_guard_refuses(members, why):
    with pytest.raises(targuard.UnsafeArchive, match=why.replace("(", r"\(")):
        _pump(_tar(members), POLICY)


def test_guard_drops_devices_and_fifos_and_forwards_only_checked_members():
    data = _tar([_m("rootfs/ok", data=b"hi"), _m("rootfs/mem", tarfile.CHRTYPE, dev=(1, 1)),
                 _m("rootfs/p", tarfile.FIFOTYPE), _m("rootfs/h", tarfile.LNKTYPE,
                                                      linkname="rootfs/ok")])
    result, out = _pump(data + b"\xff" * 512 + _tar([_m("rootfs/evil")]), POLICY)
    assert sorted(result.dropped) == ["rootfs/mem", "rootfs/p"]
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(out))]
    assert names == ["rootfs/ok", "rootfs/mem", "rootfs/p", "rootfs/h"]   # no evil


def test_metadata_refuses_aliases_and_bad_shapes():
    with pytest.raises(BadRequest, match="aliases"):
        metadata.parse(b"a: &x [1]\nb: *x\n")
    with pytest.raises(BadRequest, match="larger"):
        metadata.parse(b"x" * (metadata.MAX_BYTES + 1))
    with pytest.raises(BadRequest, match="absolute path"):
        metadata.parse(b"templates: {etc/hostname: {template: x}}\n")
    assert metadata.parse(b"architecture: x86_64\nproperties: {os: busybox}\n")[
        "properties"] == {"os": "busybox"}


def _render(source: str, **limits) -> dict:
    import json
    lim = {"seconds": 3.0, "cpu": 2, "memory": 128 << 20, "output": 1 << 20, **limits}
    return json.loads(template_worker.handle({
        "templates": [{"path": "/etc/x", "trigger": "start", "source": source,
                       "properties": {}}],
        "context": {"instance": {"name": "c1"}, "config": {"user.k": "v"}},
        "limits": lim}))


def test_template_worker_renders_and_bounds():
    assert _render("{{ instance.name }} {{ config_get('user.k') }}")["results"][0]["text"] \
        == "c1 v"
    assert "memory" in _render('{{ "x" * 3000000000 }}')["results"][0]["error"]
    assert "output larger" in _render('{% for i in range(20000) %}{{ "x" * 100 }}'
                                      '{% endfor %}')["results"][0]["error"]
    assert "unsafe" in _render("{{ ''.__class__.__mro__ }}")["results"][0]["error"]
    slow = _render("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}"
                   "{% endfor %}", seconds=1.0)
    assert "error" in slow and ("longer" in slow["error"] or "CPU" in slow["error"])


def test_database_commits_are_durable(tmp_path):
    db = Database(str(tmp_path / "x.db"))
    try:
        assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    assert sqlite3.connect(tmp_path / "x.db").execute("PRAGMA user_version").fetchone()[0]
