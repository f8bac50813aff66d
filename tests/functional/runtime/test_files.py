"""File API: round trips with ownership/mode, and no way out of the container root.

Each escape attempt plants a marker on the host and checks it is neither read,
overwritten nor deleted through the API, for running and stopped instances.
"""
import os
import uuid

import pylxd
import pytest


def call(method, **kw):
    """(status, body bytes, json error) of a raw API call, whatever the status."""
    try:
        resp = method(**kw)
        return resp.status_code, resp.content, ""
    except pylxd.exceptions.LXDAPIException as exc:
        return exc.response.status_code, exc.response.content, str(exc)


@pytest.fixture
def host_secret(tmp_path):
    path = tmp_path / "secret"
    path.write_text("host-only\n")
    yield str(path)
    assert path.read_text() == "host-only\n", "a host file was modified through the API"


def test_put_get_mode_owner(make_instance):
    inst = make_instance()
    inst.files.put("/root/hello.txt", b"hello world\n", mode="0640", uid=1000, gid=1001)
    assert inst.files.get("/root/hello.txt") == b"hello world\n"
    out = inst.execute(["stat", "-c", "%a %u %g", "/root/hello.txt"]).stdout.split()
    assert out == ["640", "1000", "1001"]
    # append
    inst.client.api.instances[inst.name].files.post(
        params={"path": "/root/hello.txt"}, data=b"more\n", headers={"X-LXD-write": "append"})
    assert inst.files.get("/root/hello.txt") == b"hello world\nmore\n"
    resp = inst.client.api.instances[inst.name].files.get(params={"path": "/root/hello.txt"})
    assert resp.headers["X-LXD-uid"] == "1000" and resp.headers["X-LXD-mode"] == "0640"
    assert resp.headers["X-LXD-type"] == "file"


def test_directories_symlinks_delete(make_instance):
    inst = make_instance(start=False)
    inst.files.mk_dir("/opt", mode="0755")
    inst.files.mk_dir("/opt/data", mode="0750", uid=5)
    inst.files.put("/opt/data/a", b"A")
    listing = inst.client.api.instances[inst.name].files.get(params={"path": "/opt/data"})
    assert listing.headers["X-LXD-type"] == "directory"
    assert listing.json()["metadata"] == ["a"]
    inst.client.api.instances[inst.name].files.post(
        params={"path": "/opt/link"}, data=b"/opt/data/a",
        headers={"X-LXD-type": "symlink"})
    resp = inst.client.api.instances[inst.name].files.get(params={"path": "/opt/link"})
    assert resp.headers["X-LXD-type"] == "symlink" and resp.content == b"/opt/data/a"
    inst.files.delete("/opt/data/a")
    with pytest.raises(pylxd.exceptions.NotFound):
        inst.files.get("/opt/data/a")
    inst.start(wait=True)
    assert inst.execute(["stat", "-c", "%a %u", "/opt/data"]).stdout.split() == ["750", "5"]


def test_files_see_container_mounts_when_running(make_instance):
    """A running container's own mounts (tmpfs on /run) are what the API sees."""
    inst = make_instance()
    inst.execute(["sh", "-c", "echo from-inside > /run/marker"])
    assert inst.files.get("/run/marker") == b"from-inside\n"


@pytest.mark.parametrize("running", [True, False])
def test_no_escape_through_symlinks_or_dotdot(make_instance, host_secret, running):
    inst = make_instance(start=True)
    hostdir = os.path.dirname(host_secret)
    rel = os.path.relpath(host_secret, "/")
    inst.execute(["sh", "-c", f"ln -s {host_secret} /abs-link; ln -s ../../../../{rel} "
                  f"/root/rel-link; ln -s {hostdir} /dir-link; ln -s / /root-link"])
    if not running:
        inst.stop(force=True, wait=True)
    api = inst.client.api.instances[inst.name].files
    attempts = [f"/../../../../{rel}", f"/root/../../{rel}", "/abs-link", "/root/rel-link",
                "/dir-link/secret", f"/root-link/{rel}", f"/root-link/../{rel}"]
    for path in attempts:
        status, body, _ = call(api.get, params={"path": path})
        assert b"host-only" not in body, path
        # writes land inside the container (or fail), never on the host file
        call(api.post, params={"path": path}, data=b"pwned\n")
        # deletes never remove the host file
        call(api.delete, params={"path": path})
    assert os.path.exists(host_secret)


def test_bad_requests(make_instance):
    inst = make_instance(start=False)
    api = inst.client.api.instances[inst.name].files
    assert call(api.get, params={})[0] == 400
    assert call(api.get, params={"path": "relative/path"})[0] == 400
    assert call(api.get, params={"path": f"/nope-{uuid.uuid4().hex}"})[0] == 404
    status, _, err = call(api.post, params={"path": "/x"}, data=b"",
                          headers={"X-LXD-mode": "banana"})
    assert status == 400 and "X-LXD-mode" in err
    assert call(api.post, params={"path": "/x"}, data=b"",
                headers={"X-LXD-type": "fifo"})[0] == 400
    assert call(api.post, params={"path": "/x"}, data=b"",
                headers={"X-LXD-uid": "4000000000"})[0] == 400


def test_stopped_instances_hold_no_mount(daemon, make_instance):
    """As in LXD, a stop unmounts the root; the files API still reads and writes a
    stopped instance (mounting it for the request only), and the next start sees
    what was written."""
    from runtime import statedir
    inst = make_instance()
    root = os.path.join(daemon.lxd_dir, "storage-pools", "default", "containers",
                        inst.name, "rootfs")
    assert root in statedir.mounts_below(daemon.lxd_dir)
    inst.stop(wait=True, force=True)
    assert root not in statedir.mounts_below(daemon.lxd_dir)
    inst.files.put("/root/offline", b"written while stopped")
    assert inst.files.get("/root/offline") == b"written while stopped"
    inst.files.delete("/root/offline")
    inst.files.put("/root/offline", b"written while stopped")
    assert root not in statedir.mounts_below(daemon.lxd_dir)
    inst.start(wait=True)
    assert inst.execute(["cat", "/root/offline"]).stdout == "written while stopped"
    inst.stop(wait=True, force=True)
    assert root not in statedir.mounts_below(daemon.lxd_dir)
