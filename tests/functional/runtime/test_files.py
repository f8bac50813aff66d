"""File API: round trips with ownership/mode, and no way out of the container root.

Each escape attempt plants a marker on the host and checks it is neither read,
overwritten nor deleted through the API, for running and stopped instances,
with absolute and relative paths (LXD takes a relative path as relative to `/`).
The stock lxc 5.0 CLI and pylxd are used as their users would.
"""
import os
import shutil
import subprocess
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
    attempts += [a.lstrip("/") for a in attempts] + [rel, f"../{rel}", f"./../../{rel}"]
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
    assert call(api.get, params={"path": "relative/path"})[0] == 404
    assert call(api.get, params={"path": "a\x00b"})[0] == 400
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
    from tools import statedir
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


def test_relative_paths_are_relative_to_root(make_instance):
    """As in LXD: `root/x` is `/root/x`, for every verb, running or stopped."""
    inst = make_instance()
    api = inst.client.api.instances[inst.name].files
    api.post(params={"path": "root/rel.txt"}, data=b"rel\n")
    assert inst.files.get("/root/rel.txt") == b"rel\n"
    assert inst.files.get("root/rel.txt") == b"rel\n"
    assert inst.files.get("./root/../root/rel.txt") == b"rel\n"
    assert "rel.txt" in api.get(params={"path": "root"}).json()["metadata"]
    inst.files.mk_dir("root/d")
    assert inst.execute(["stat", "-c", "%F", "/root/d"]).stdout.strip() == "directory"
    inst.stop(force=True, wait=True)
    assert inst.files.get("root/rel.txt") == b"rel\n"
    inst.files.delete("root/rel.txt")
    assert call(api.get, params={"path": "/root/rel.txt"})[0] == 404


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_new_files_and_directories_belong_to_container_root(make_instance, running):
    """Without owner headers, what the API makes is the container root's (its mapped
    id on the host), not the host root's (nobody, 65534, inside the container); what
    exists keeps its owner."""
    inst = make_instance()
    inst.execute(["sh", "-c", "echo u > /home/owned && chown 1000:1000 /home/owned"])
    if not running:
        inst.stop(force=True, wait=True)
    inst.files.mk_dir("/mnt/new")
    inst.files.put("/mnt/new/f", b"x")
    inst.files.put("/home/owned", b"rewritten\n")
    api = inst.client.api.instances[inst.name].files
    api.post(params={"path": "/mnt/link"}, data=b"new/f", headers={"X-LXD-type": "symlink"})
    for path, owner in (("/mnt/new", "0"), ("/mnt/new/f", "0"), ("/mnt/link", "0"),
                        ("/home/owned", "1000")):
        headers = api.get(params={"path": path}).headers
        assert (headers["X-LXD-uid"], headers["X-LXD-gid"]) == (owner, owner), path
    if not running:
        inst.start(wait=True)
    out = inst.execute(["stat", "-c", "%u:%g", "/mnt/new", "/mnt/new/f", "/home/owned"])
    assert out.stdout.split() == ["0:0", "0:0", "1000:1000"], out.stdout
    # container root can use what the API made (host root's files would be nobody's)
    assert inst.execute(["sh", "-c", "echo y >> /mnt/new/f && touch /mnt/new/g"]).exit_code == 0


def test_pylxd_recursive_put_makes_container_root_directories(make_instance, tmp_path):
    inst = make_instance()
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "leaf").write_text("leaf\n")
    inst.files.recursive_put(str(src), "/mnt/tree")
    out = inst.execute(["sh", "-c", "cat /mnt/tree/a/b/leaf; stat -c '%u:%g' /mnt/tree "
                                    "/mnt/tree/a /mnt/tree/a/b /mnt/tree/a/b/leaf"])
    assert out.stdout.split() == ["leaf", "0:0", "0:0", "0:0", "0:0"], out.stdout


@pytest.fixture
def lxc(daemon, tmp_path):
    """The stock lxc 5.0 CLI on the daemon's unix socket."""
    if shutil.which("lxc") is None:
        pytest.skip("the lxc CLI (lxd-client) is not installed")
    env = {"LXD_DIR": daemon.lxd_dir, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def run(*args, check=True):
        p = subprocess.run(["lxc", *args], env=env, capture_output=True, text=True,
                           timeout=60, cwd=str(tmp_path))
        if check:
            assert p.returncode == 0, f"lxc {' '.join(args)}: {p.stdout}{p.stderr}"
        return p
    return run


def test_stock_lxc_file_push_pull(lxc, make_instance, tmp_path, host_secret):
    """`lxc file pull c1/root/p` sends a relative path; `push -p` makes the missing
    parents without owner headers: both as with LXD, and no way out either."""
    inst = make_instance()
    local = tmp_path / "p"
    local.write_text("pushed\n")
    lxc("file", "push", "-p", str(local), f"{inst.name}/root/deep/er/p")
    out = inst.execute(["sh", "-c", "cat /root/deep/er/p; stat -c '%u:%g' /root/deep "
                                    "/root/deep/er /root/deep/er/p"])
    assert out.stdout.split() == ["pushed", "0:0", "0:0", "0:0"], out.stdout
    pulled = tmp_path / "pulled"
    lxc("file", "pull", f"{inst.name}/root/deep/er/p", str(pulled))
    assert pulled.read_text() == "pushed\n"
    lxc("file", "pull", "-r", f"{inst.name}/root/deep", str(tmp_path / "tree"))
    assert (tmp_path / "tree" / "deep" / "er" / "p").read_text() == "pushed\n"
    # stdout, and the way out refused the same way as with absolute paths
    assert lxc("file", "pull", f"{inst.name}/etc/hostname", "-").returncode == 0
    rel = os.path.relpath(host_secret, "/")
    p = lxc("file", "pull", f"{inst.name}/../../../{rel}", "-", check=False)
    assert "host-only" not in p.stdout
    inst.stop(force=True, wait=True)
    lxc("file", "pull", f"{inst.name}/root/deep/er/p", str(tmp_path / "stopped"))
    assert (tmp_path / "stopped").read_text() == "pushed\n"
