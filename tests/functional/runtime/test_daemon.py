"""Daemon-level behaviour: events, restart with running containers, validation, socket."""
import json
import os
import stat
import threading
import time

import pylxd
import pytest
from ws4py.client.threadedclient import WebSocketClient


def test_socket_is_root_only(daemon):
    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o660)


def test_api_root_and_server_info(client):
    info = client.host_info
    assert info["api_version"] == "1.0" and info["auth"] == "trusted"
    env = info["environment"]
    assert env["driver"] == "lxc" and env["server_pid"] > 0
    assert "x86_64" in env["architectures"] and env["kernel_version"]
    assert "instances" in info["api_extensions"]


def test_events_stream_lifecycle_and_operations(daemon, client, make_instance):
    got: list[dict] = []

    class Listener(WebSocketClient):
        def received_message(self, message):
            got.append(json.loads(message.data))

    ws = client.events(websocket_client=Listener,
                       event_types={pylxd.EventType.Lifecycle, pylxd.EventType.Operation})
    ws.connect()
    threading.Thread(target=ws.run_forever, daemon=True).start()
    time.sleep(0.2)
    inst = make_instance()
    inst.stop(force=True, wait=True)
    time.sleep(0.3)
    ws.close()
    actions = [e["metadata"]["action"] for e in got if e["type"] == "lifecycle"]
    assert "instance-created" in actions and "instance-started" in actions
    assert "instance-stopped" in actions
    assert any(e["type"] == "operation" and e["metadata"]["status"] == "Success" for e in got)


def test_restart_keeps_running_containers(daemon, client, make_instance):
    inst = make_instance()
    pid = inst.state().pid
    inst.execute(["sh", "-c", "echo before > /root/mark"])
    t0 = time.time()
    daemon.stop()
    assert os.path.exists(f"/proc/{pid}"), "the container must survive the daemon"
    daemon.start()
    startup = time.time() - t0
    fresh = daemon.client()
    again = fresh.instances.get(inst.name)
    assert again.status == "Running" and again.state().pid == pid
    assert again.execute(["cat", "/root/mark"]).stdout == "before\n"
    again.stop(force=True, wait=True)
    assert fresh.instances.get(inst.name).status == "Stopped"
    assert startup < 5


@pytest.mark.parametrize("body, status, words", [
    ({"name": "bad_name", "source": {"type": "none"}}, 400, "Invalid instance name"),
    ({"name": "9lives", "source": {"type": "none"}}, 400, "Invalid instance name"),
    ({"name": "ok1", "config": {"limits.memory": "lots"}, "source": {"type": "none"}}, 400,
     "limits.memory"),
    ({"name": "ok1", "config": {"no.such.key": "1"}, "source": {"type": "none"}}, 400,
     "no.such.key"),
    ({"name": "ok1", "devices": {"d": {"type": "floppy"}}, "source": {"type": "none"}}, 400,
     "floppy"),
    ({"name": "ok1", "profiles": ["nope"], "source": {"type": "none"}}, 400, "nope"),
    ({"name": "ok1", "architecture": "z80", "source": {"type": "none"}}, 400, "z80"),
    ({"name": "ok1", "source": {"type": "teleport"}}, 400, "teleport"),
])
def test_validation_errors(client, body, status, words):
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        client.instances.create(body, wait=True)
    assert exc.value.response.status_code == status
    assert words in str(exc.value)
    assert not client.instances.exists(body["name"])


def test_bad_json_and_unknown_paths(client):
    resp = client.api.instances.session.post(client.api.instances._api_endpoint,
                                             data=b"{not json", timeout=10)
    assert resp.status_code == 400 and "Invalid JSON" in resp.json()["error"]
    resp = client.api.session.get(client.api._api_endpoint + "/nothing-here", timeout=10)
    assert resp.status_code == 404 and resp.json()["type"] == "error"


def test_duplicate_name_conflict(client, make_instance):
    inst = make_instance(start=False)
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        client.instances.create({"name": inst.name, "source": {"type": "none"}}, wait=True)
    assert exc.value.response.status_code == 409


def test_running_instance_cannot_be_deleted(make_instance):
    inst = make_instance()
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        inst.delete(wait=True)
    assert exc.value.response.status_code == 400 and "running" in str(exc.value)


def test_operation_wait_and_list(client, make_instance):
    inst = make_instance(start=False)
    resp = client.api.instances[inst.name].state.put(json={"action": "start"})
    op_url = resp.json()["operation"]
    waited = client.api.session.get(client.api._api_endpoint.rstrip("/1.0") + op_url +
                                    "/wait?timeout=10", timeout=15).json()["metadata"]
    assert waited["status"] == "Success"
    assert client.api.operations.get().json()["type"] == "sync"


def test_unreachable_rootfs_is_a_clear_error(tmp_path):
    """LXD_DIR under a 0700 directory: unprivileged containers can't reach their
    rootfs; the start fails with a message saying which directory and why."""
    import shutil
    import tempfile

    from tests.functional.runtime.harness import RuntimeDaemon, import_busybox
    closed = tempfile.mkdtemp(prefix="nlr-closed-", dir="/var/tmp")
    os.chmod(closed, 0o700)
    d = None
    try:
        os.makedirs(os.path.join(closed, "rt"))
        d = RuntimeDaemon(os.path.join(closed, "rt"))
        d.start()
        c = d.client()
        import_busybox(c)
        inst = c.instances.create({"name": "x1", "source": {"type": "image",
                                                             "alias": "busybox"}}, wait=True)
        with pytest.raises(pylxd.exceptions.LXDAPIException, match="o\\+x") as exc:
            inst.start(wait=True)
        assert closed in str(exc.value)
        assert c.instances.get("x1").status == "Stopped"
    finally:
        if d is not None:
            d.destroy()
        shutil.rmtree(closed, ignore_errors=True)


def test_restart_removes_instances_left_half_made(daemon, client, make_instance):
    """A daemon killed while it made an instance leaves the record marked
    volatile.incomplete (and a partial volume): the next start removes both. A
    client can't set the mark (a PUT that sends it back is ignored for that key)."""
    import json
    import sqlite3
    whole = make_instance(start=False)
    half = make_instance(start=False)
    # What a SIGKILL between the record and the end of the volume leaves behind.
    daemon.stop()
    db = sqlite3.connect(os.path.join(daemon.lxd_dir, "database", "runtime.db"))
    row = db.execute("SELECT config FROM instances WHERE name = ?", (half.name,)).fetchone()
    config = dict(json.loads(row[0]), **{"volatile.incomplete": "true"})
    db.execute("UPDATE instances SET config = ? WHERE name = ?",
               (json.dumps(config), half.name))
    db.commit()
    db.close()
    daemon.start()
    fresh = daemon.client()
    names = [i.name for i in fresh.instances.all()]
    assert half.name not in names and whole.name in names
    assert not [d for d in os.listdir(os.path.join(
        daemon.lxd_dir, "storage-pools", "default", "containers")) if half.name in d]
    # the mark is the daemon's alone
    fresh.api.instances[whole.name].patch(json={"config": {"volatile.incomplete": "true"}})
    assert "volatile.incomplete" not in fresh.instances.get(whole.name).config
    daemon.stop()
    daemon.start()
    assert whole.name in [i.name for i in daemon.client().instances.all()]


def test_wipe_after_a_crash_leaves_nothing():
    """tools.statedir.wipe (tests, benchmarks and the cloud use it)
    after the daemon was SIGKILLed with a container running: no liblxc monitor,
    no mount, no directory, no cgroup of that daemon. The lxcpath holds no
    per-container directory, so the containers are found through their monitors."""
    import signal as sig

    from tools import statedir
    from tests.functional.runtime.harness import RuntimeDaemon, import_busybox
    d = RuntimeDaemon().start()
    try:
        c = d.client()
        import_busybox(c)
        inst = c.instances.create({"name": "crash", "source": {
            "type": "image", "alias": "busybox"}}, wait=True)
        inst.start(wait=True)
        assert not os.listdir(os.path.join(d.lxd_dir, "containers"))
        assert statedir.monitors_below(d.lxd_dir)
        d.proc.send_signal(sig.SIGKILL)
        d.proc.wait()
    finally:
        statedir.wipe(d.lxd_dir)
    assert not statedir.monitors_below(d.lxd_dir)
    assert not statedir.mounts_below(d.lxd_dir)
    assert not os.path.exists(d.lxd_dir)
    from runtime.instances import cgroups, lxc
    assert not [os.path.join(root, parent) for root in cgroups.hierarchies()
                for parent in lxc.daemon_cgroup_dirs(d.lxd_dir)
                if os.path.exists(os.path.join(root, parent))]


def test_socket_group_and_request_ids_in_the_log():
    """--group opens the socket to a group (root:<group> 0660, as LXD's --group), and
    each log line of a request carries its request id."""
    import grp
    import re
    import stat

    from tests.functional.runtime.harness import RuntimeDaemon, wipe
    d = RuntimeDaemon(args=("--group", "adm")).start()
    try:
        st = os.stat(d.socket)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0
        assert st.st_gid == grp.getgrnam("adm").gr_gid
        d.client().api.storage_pools.default.volumes.custom.post(json={"name": "rid"})
        log = open(d.log, errors="replace").read()
        assert re.search(r"INFO runtime\.storage\.volumes \[req-[0-9a-f-]{36}\] storage "
                         r"volume default/rid created", log), log[-2000:]
        assert re.search(r"INFO runtime \[-\] listening on ", log)
    finally:
        d.stop()
        wipe(d.lxd_dir)
