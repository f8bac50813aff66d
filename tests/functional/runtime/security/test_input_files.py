"""The files API opens regular files only and never stalls the daemon.

FIFOs, sockets and device nodes in a container (made by its image, by the
container itself, or here from the host through /proc/<pid>/root) are refused
with a 400 for reading and writing, at once; opening a FIFO used to block the
event loop forever, opening a device node to read the host's hardware.
"""
from __future__ import annotations

import os
import socket
import stat
import threading
import time
import urllib.parse

import pytest

from tests.functional.runtime.security import rawhttp

KINDS = {"fifo": "fifo", "socket": "socket", "chr": "character device",
         "blk": "block device"}
OPS = ["get", "overwrite", "append"]


def _make(root: str, path: str, kind: str) -> None:
    full = root + path
    if kind == "fifo":
        os.mkfifo(full)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(full)
        s.close()
    elif kind == "chr":
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        os.mknod(full, stat.S_IFBLK | 0o666, os.makedev(7, 0))


def _files(daemon, inst, op: str, path: str, timeout: float = 10.0):
    url = f"/1.0/instances/{inst.name}/files?path={urllib.parse.quote(path)}"
    if op == "get":
        return rawhttp.request(daemon.socket, "GET", url, timeout=timeout)
    return rawhttp.request(daemon.socket, "POST", url, body=b"secret\n", timeout=timeout,
                           headers={"X-LXD-type": "file", "X-LXD-write": op,
                                    "Content-Type": "application/octet-stream"})


@pytest.fixture(scope="module")
def target(client, busybox, daemon):
    inst = client.instances.create({"name": "files-hostile", "source": {
        "type": "image", "alias": "busybox"}}, wait=True)
    inst.start(wait=True)
    root = f"/proc/{inst.state().pid}/root"
    for kind in KINDS:
        _make(root, f"/tmp/{kind}", kind)
    os.symlink("/tmp/fifo", root + "/tmp/link-to-fifo")
    yield inst
    inst.stop(force=True, wait=True)
    inst.delete(wait=True)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_input_files_special_file_refused(daemon, target, kind, op):
    t0 = time.monotonic()
    status, body = _files(daemon, target, op, f"/tmp/{kind}")
    elapsed = time.monotonic() - t0
    assert status == 400, (status, body)
    assert KINDS[kind] in body["error"], body
    assert elapsed < 2.0, f"{op} of a {kind} took {elapsed:.1f} s"
    assert rawhttp.latency(daemon.socket) < 1.0


def test_input_files_write_through_symlink_to_fifo(daemon, target):
    status, body = _files(daemon, target, "overwrite", "/tmp/link-to-fifo")
    assert status == 400 and "fifo" in body["error"], body
    status, body = _files(daemon, target, "get", "/tmp/link-to-fifo")
    assert status == 200 and body == b"/tmp/fifo"   # a symlink reads as its target


def test_input_files_fifo_at_seed_path_does_not_freeze_the_daemon(daemon, target):
    """The reported reproduction: a FIFO where the driver pushes the NoCloud
    user-data froze the whole daemon during spawn."""
    assert target.execute(["sh", "-c", "mkdir -p /var/lib/cloud/seed/nocloud && "
                                       "mkfifo /var/lib/cloud/seed/nocloud/user-data"]
                          ).exit_code == 0
    latencies: list[float] = []
    done = threading.Event()

    def probe():
        while not done.is_set():
            latencies.append(rawhttp.latency(daemon.socket))
            time.sleep(0.1)
    t = threading.Thread(target=probe)
    t.start()
    try:
        status, body = _files(daemon, target, "overwrite",
                              "/var/lib/cloud/seed/nocloud/user-data", timeout=10)
    finally:
        done.set()
        t.join()
    assert status == 400 and "fifo" in body["error"], body
    assert max(latencies or [0]) < 1.0, latencies
    # the file is still a FIFO, untouched
    res = target.execute(["test", "-p", "/var/lib/cloud/seed/nocloud/user-data"])
    assert res.exit_code == 0


def test_input_files_regular_files_still_work(daemon, target):
    status, _ = _files(daemon, target, "overwrite", "/tmp/regular")
    assert status == 200
    status, _ = _files(daemon, target, "append", "/tmp/regular")
    assert status == 200
    status, body = _files(daemon, target, "get", "/tmp/regular")
    assert status == 200 and body == b"secret\nsecret\n"
