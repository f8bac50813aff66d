"""Security settings seen from inside real containers: id maps, seccomp,
capabilities, protection, raw.lxc, environment, and autostart after a restart."""
import subprocess
import time

import pylxd
import pytest

CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_TIME = 16, 17, 25


def sh(inst, script: str) -> str:
    res = inst.execute(["sh", "-c", script])
    assert res.exit_code == 0, (script, res.stdout, res.stderr)
    return res.stdout.strip()


def uid_map(inst) -> tuple[int, int, int]:
    first = sh(inst, "cat /proc/self/uid_map").splitlines()[0].split()
    return int(first[0]), int(first[1]), int(first[2])


def proc1(inst, field: str) -> str:
    for line in sh(inst, "cat /proc/1/status").splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in /proc/1/status")


def environ(inst) -> list[str]:
    return sh(inst, "tr '\\000' '\\n' < /proc/1/environ").splitlines()


def test_unprivileged_by_default_and_privileged_on_request(make_instance):
    plain = make_instance()
    inside, outside, size = uid_map(plain)
    assert inside == 0 and outside > 0, "default containers run in a user namespace"
    priv = make_instance(config={"security.privileged": "true"})
    assert uid_map(priv) == (0, 0, 4294967295)


def test_idmap_isolated_gives_each_instance_its_own_range(make_instance):
    shared = uid_map(make_instance())
    a = uid_map(make_instance(config={"security.idmap.isolated": "true"}))
    b = uid_map(make_instance(config={"security.idmap.isolated": "true"}))
    assert a[1] != b[1]
    assert a[1] + a[2] <= b[1] or b[1] + b[2] <= a[1], (a, b)
    assert a[1] != shared[1] and b[1] != shared[1]
    assert a[2] == b[2] == 65536


def test_protection_delete(client, make_instance):
    inst = make_instance(start=False, config={"security.protection.delete": "true"})
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="protected"):
        inst.delete(wait=True)
    assert client.instances.exists(inst.name)
    inst.config["security.protection.delete"] = "false"
    inst.save(wait=True)
    inst.delete(wait=True)
    assert not client.instances.exists(inst.name)


def test_default_seccomp_and_dropped_capabilities(make_instance):
    inst = make_instance()
    assert proc1(inst, "Seccomp") == "2", "init must run under a seccomp filter"
    bounding = int(proc1(inst, "CapBnd"), 16)
    for cap in (CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_TIME):
        assert not bounding & (1 << cap), f"capability {cap} must be dropped"


def test_syscalls_deny(make_instance):
    inst = make_instance(config={"security.syscalls.deny": "mkdir mkdirat"})
    res = inst.execute(["mkdir", "/tmp/denied"])
    assert res.exit_code != 0 and "not permitted" in res.stderr, res.stderr
    other = make_instance()
    assert other.execute(["mkdir", "/tmp/allowed"]).exit_code == 0


def test_raw_lxc_and_environment(make_instance):
    inst = make_instance(config={"raw.lxc": "lxc.environment = NT_RAW=from-raw-lxc\n",
                                 "environment.NT_ENV": "hello world",
                                 "user.nt-note": "kept"})
    env = environ(inst)
    assert "NT_RAW=from-raw-lxc" in env
    assert "NT_ENV=hello world" in env
    assert "NT_ENV=hello world" in inst.execute(["env"]).stdout.splitlines(), \
        "environment.* also reaches exec sessions"
    assert inst.config["user.nt-note"] == "kept"


def test_bad_raw_lxc_fails_start_with_clear_error(make_instance):
    inst = make_instance(start=False, config={"raw.lxc": "lxc.no.such.key = 1"})
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        inst.start(wait=True)


def test_nesting_profile_shipped(client):
    docker = client.profiles.get("docker")
    assert docker.config["security.nesting"] == "true"
    assert docker.config["security.syscalls.intercept.mknod"] == "true"


def test_boot_autostart_after_daemon_restart(daemon, client, make_instance):
    """A host reboot kills containers while the daemon is down; on its next start
    the daemon starts boot.autostart=true instances, and leaves =false ones."""
    auto = make_instance(config={"boot.autostart": "true"})
    manual = make_instance(config={"boot.autostart": "false"})
    daemon.stop()
    lxcpath = f"{daemon.lxd_dir}/containers"
    for name in (auto.name, manual.name):
        subprocess.run(["lxc-stop", "-P", lxcpath, "-n", name, "-k"], check=True,
                       capture_output=True, timeout=60)
    daemon.start()
    deadline = time.time() + 20
    while time.time() < deadline:
        if client.instances.get(auto.name).status == "Running":
            break
        time.sleep(0.2)
    assert client.instances.get(auto.name).status == "Running"
    assert client.instances.get(manual.name).status == "Stopped"


def test_mknod_interception(make_instance):
    """security.syscalls.intercept.mknod: the daemon makes harmless char devices for
    an unprivileged container (the kernel refuses them to user namespaces)."""
    plain = make_instance()
    assert plain.execute(["mknod", "/tmp/null2", "c", "1", "3"]).exit_code != 0
    inst = make_instance(config={"security.syscalls.intercept.mknod": "true"})
    res = inst.execute(["sh", "-c", "cd /tmp && mknod null2 c 1 3 && echo x > null2 && "
                        "ls -ln null2"])
    assert res.exit_code == 0, res.stderr
    fields = res.stdout.split()
    assert fields[0].startswith("c") and fields[2:4] == ["0", "0"], res.stdout
    for args in (["c", "1", "1"], ["b", "7", "0"]):  # /dev/mem, a loop device: refused
        res = inst.execute(["mknod", "/tmp/no", *args])
        assert res.exit_code != 0 and "not permitted" in res.stderr
    # An unprivileged user inside lacks CAP_MKNOD: refused too.
    assert inst.execute(["mknod", "/tmp/u", "c", "1", "3"], user=1000).exit_code != 0


def test_kernel_limits_and_raw_seccomp(make_instance):
    inst = make_instance(config={"limits.kernel.nofile": "200:300",
                                 "raw.seccomp": "2\ndenylist\n[all]\nrmdir errno 1\n"})
    limits = sh(inst, "grep 'Max open files' /proc/1/limits").split()
    assert limits[3:5] == ["200", "300"], limits  # init runs with the prlimits
    inst.execute(["mkdir", "/tmp/d"])
    res = inst.execute(["rmdir", "/tmp/d"])
    assert res.exit_code != 0 and "not permitted" in res.stderr
