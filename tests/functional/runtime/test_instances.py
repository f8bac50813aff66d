"""Instance lifecycle through unchanged pylxd against the real daemon and liblxc."""
import subprocess
import time

import pylxd
import pytest


def test_create_start_exec_stop_delete(client, make_instance):
    inst = make_instance(start=False)
    assert inst.status == "Stopped"
    assert inst.expanded_devices["root"] == {"type": "disk", "path": "/", "pool": "default"}
    assert inst.config["volatile.base_image"]
    inst.start(wait=True)
    inst.sync(rollback=True)
    assert inst.status == "Running"
    state = inst.state()
    assert state.pid > 0 and state.processes >= 1
    # init really is busybox init, PID 1 in its own namespaces
    res = inst.execute(["cat", "/proc/1/comm"])
    assert res.exit_code == 0 and res.stdout.strip() == "init"
    inst.stop(force=True, wait=True)
    inst.sync(rollback=True)
    assert inst.status == "Stopped"
    name = inst.name
    inst.delete(wait=True)
    assert not client.instances.exists(name)


def test_exec_streams_env_cwd_exit_code(make_instance):
    inst = make_instance()
    res = inst.execute(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (res.exit_code, res.stdout, res.stderr) == (7, "out\n", "err\n")
    assert inst.execute(["cat"], stdin_payload="from stdin").stdout == "from stdin"
    env = inst.execute(["env"], environment={"FOO": "bar baz"}).stdout.splitlines()
    assert "FOO=bar baz" in env and "HOME=/root" in env
    assert inst.execute(["pwd"]).stdout == "/root\n"
    assert inst.execute(["pwd"], cwd="/etc").stdout == "/etc\n"
    missing = inst.execute(["pwd"], cwd="/does/not/exist")
    assert missing.exit_code != 0
    assert inst.execute(["id", "-u"], user=1000).stdout == "1000\n"
    assert inst.execute(["sh", "-c", "exit 0"]).exit_code == 0


def test_exec_record_output(client, make_instance):
    inst = make_instance()
    resp = client.api.instances[inst.name].exec.post(json={
        "command": ["sh", "-c", "echo recorded; echo oops >&2; exit 2"],
        "wait-for-websocket": False, "record-output": True, "interactive": False})
    op = client.operations.wait_for_operation(resp.json()["operation"])
    assert op.metadata["return"] == 2
    out = op.metadata["output"]
    stdout = client.api._api_endpoint  # noqa: F841 - endpoint is exercised below
    assert client.api.instances[inst.name].logs[out["1"].rsplit("/", 1)[1]].get().text \
        == "recorded\n"
    assert client.api.instances[inst.name].logs[out["2"].rsplit("/", 1)[1]].get().text \
        == "oops\n"


def test_unprivileged_by_default(make_instance, daemon):
    inst = make_instance()
    uid_map = inst.execute(["cat", "/proc/self/uid_map"]).stdout.split()
    assert uid_map[0] == "0" and int(uid_map[1]) >= 100000
    pid = inst.state().pid
    with open(f"/proc/{pid}/status") as f:
        uids = [line for line in f if line.startswith("Uid:")][0].split()[1:]
    assert all(int(u) >= 100000 for u in uids), "container root must not be host root"


def test_limits_applied_at_start(make_instance):
    inst = make_instance(config={"limits.memory": "64MiB", "limits.processes": "50",
                                 "limits.cpu": "1"})
    limit = inst.execute(["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).stdout
    assert int(limit) == 64 * 2**20
    assert inst.execute(["cat", "/sys/fs/cgroup/pids/pids.max"]).stdout.strip() == "50"
    assert inst.execute(["nproc"]).stdout.strip() == "1"


def test_freeze_unfreeze(make_instance):
    inst = make_instance()
    inst.freeze(wait=True)
    inst.sync(rollback=True)
    assert inst.status == "Frozen"
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        inst.execute(["true"])
    inst.unfreeze(wait=True)
    inst.sync(rollback=True)
    assert inst.status == "Running"
    assert inst.execute(["true"]).exit_code == 0


def test_graceful_stop_and_restart(make_instance):
    inst = make_instance()
    pid = inst.state().pid
    inst.restart(wait=True)
    inst.sync(rollback=True)
    assert inst.status == "Running" and inst.state().pid != pid
    start = time.time()
    inst.stop(force=False, timeout=30, wait=True)
    inst.sync(rollback=True)
    assert inst.status == "Stopped"
    assert time.time() - start < 30


def test_stop_noticed_when_init_exits(make_instance):
    inst = make_instance()
    inst.execute(["poweroff"])
    for _ in range(100):
        inst.sync(rollback=True)
        if inst.status == "Stopped":
            break
        time.sleep(0.1)
    assert inst.status == "Stopped"


def test_rename(client, make_instance):
    inst = make_instance(start=False)
    old = inst.name
    inst.rename(old + "-b", wait=True)
    assert not client.instances.exists(old)
    renamed = client.instances.get(old + "-b")
    renamed.start(wait=True)
    assert renamed.execute(["hostname"]).stdout.strip() == old + "-b"
    renamed.stop(force=True, wait=True)
    renamed.delete(wait=True)


def test_update_config_live(make_instance):
    inst = make_instance(config={"limits.memory": "64MiB"})
    inst.config["limits.memory"] = "96MiB"
    inst.config["user.note"] = "hello"
    inst.save(wait=True)
    inst.sync(rollback=True)
    assert inst.config["user.note"] == "hello"
    limit = inst.execute(["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).stdout
    assert int(limit) == 96 * 2**20


def test_console_log(client, make_instance):
    inst = make_instance()
    time.sleep(0.3)
    text = client.api.instances[inst.name].console.get().text
    assert "login" in text or text == "" or "getty" in text


def test_empty_instance_and_architecture_number(client):
    inst = client.instances.create({"name": "empty1", "architecture": "2",
                                    "source": {"type": "none"}}, wait=True)
    try:
        assert inst.architecture == "x86_64"
        assert inst.status == "Stopped"
    finally:
        inst.delete(wait=True)


def test_legacy_containers_endpoint(client, make_instance):
    inst = make_instance(start=False)
    resp = client.api.containers[inst.name].get()
    assert resp.json()["metadata"]["name"] == inst.name
    names = [u.rsplit("/", 1)[1] for u in client.api.containers.get().json()["metadata"]]
    assert inst.name in names


def test_lxc_cli_lists_instances(daemon, make_instance, tmp_path):
    inst = make_instance()
    env = {"LXD_DIR": daemon.lxd_dir, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    try:
        out = subprocess.run(["lxc", "list", "--format", "csv", "-c", "ns"], env=env,
                             capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("the lxc CLI (lxd-client) is not installed")
    assert out.returncode == 0, out.stderr
    assert f"{inst.name},RUNNING" in out.stdout
    out = subprocess.run(["lxc", "exec", inst.name, "--", "echo", "via-cli"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "via-cli\n", out.stderr


def test_lxc_cli_interactive_exec(daemon, make_instance, tmp_path):
    """`lxc exec` with a terminal: keystrokes in, output back, exit code kept."""
    import shutil

    from tests.functional.runtime.harness import PtyProcess
    if shutil.which("lxc") is None:
        pytest.skip("the lxc CLI (lxd-client) is not installed")
    inst = make_instance()
    term = PtyProcess(["lxc", "exec", inst.name, "--", "sh"],
                      {"LXD_DIR": daemon.lxd_dir, "HOME": str(tmp_path)})
    try:
        term.expect(b"#")
        term.send(b"echo typed-$((40+2)); tty\n")
        term.expect(b"typed-42")
        term.expect(b"/dev/pts/")
        term.send(b"exit 5\n")
        assert term.wait() == 5
    finally:
        term.close()


def test_failed_start_says_why(client, daemon, tmp_path):
    """An image without /sbin/init: the error names liblxc's cause (not its generic
    "run the container in foreground mode" cascade), the instance stays Stopped
    and no liblxc monitor is left for it."""
    import os

    from tests.functional.runtime.harness import BUSYBOX
    work = tmp_path / "img"
    work.mkdir()
    subprocess.run(["tar", "-xJf", BUSYBOX, "-C", str(work), "--numeric-owner"], check=True)
    os.unlink(work / "rootfs" / "sbin" / "init")
    tarball = tmp_path / "noinit.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "--numeric-owner", "-C", str(work),
                    *sorted(os.listdir(work))], check=True)
    img = client.images.create(tarball.read_bytes(), wait=True)
    inst = client.instances.create({"name": "noinit", "source": {
        "type": "image", "fingerprint": img.fingerprint}}, wait=True)
    try:
        for _ in range(2):    # the second failure reports its own cause, not the first's
            with pytest.raises(pylxd.exceptions.LXDAPIException) as err:
                inst.start(wait=True)
            assert 'Failed to exec "/sbin/init"' in str(err.value)
            assert "foreground mode" not in str(err.value)
            assert client.instances.get("noinit").status == "Stopped"
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert not [line for line in ps.splitlines()
                    if "[lxc monitor]" in line and daemon.lxd_dir in line and "noinit" in line]
    finally:
        inst.delete(wait=True)
        img.delete(wait=True)
