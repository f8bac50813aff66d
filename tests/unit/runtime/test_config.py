"""Pure logic of the runtime: validation, expansion, id maps, cgroups, lxc config."""
import pytest

from runtime import arch
from runtime.errors import BadRequest
from runtime.instances import cgroups, config, devices, lxc
from runtime.base.idmap import IdMap, allocate_isolated
from runtime.instances.model import expand, root_disk


@pytest.mark.parametrize("value, expected", [
    ("4096", 4096), ("1kB", 1000), ("1KiB", 1024), ("64MiB", 64 * 2**20), ("2GB", 2 * 10**9),
    ("1.5GiB", int(1.5 * 2**30)),
])
def test_parse_size(value, expected):
    assert config.parse_size(value) == expected


@pytest.mark.parametrize("bad", ["", "lots", "12XB", "-1", "1 2"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError):
        config.parse_size(bad)


def test_validate_config_accepts_known_and_free_keys():
    out = config.validate_config({"limits.cpu": "2", "limits.memory": "50%",
                                  "user.x": "y", "environment.A": "b",
                                  "security.nesting": True, "limits.processes": 100})
    assert out["security.nesting"] == "true" and out["limits.processes"] == "100"


@pytest.mark.parametrize("cfg, word", [
    ({"no.such": "1"}, "no.such"), ({"limits.memory": "1KiB"}, "limits.memory"),
    ({"limits.cpu": "zero"}, "limits.cpu"), ({"security.privileged": "maybe"}, "privileged"),
    ({"limits.memory.enforce": "strict"}, "enforce"), ({"limits.cpu.allowance": "fast"},
                                                      "allowance"),
])
def test_validate_config_rejects_naming_the_key(cfg, word):
    with pytest.raises(BadRequest, match=word):
        config.validate_config(cfg)


def test_validate_devices():
    devs = config.validate_devices({"eth0": {"type": "nic", "nictype": "bridged",
                                             "parent": "br0", "mtu": 1400}})
    assert devs["eth0"]["mtu"] == "1400"
    for bad, word in [({"d": {"type": "disk", "path": "/mnt"}}, "source"),
                      ({"d": {"type": "nic"}}, "nictype"),
                      ({"d": {"type": "nic", "nictype": "bridged", "hwaddr": "zz"}}, "hwaddr"),
                      ({"d": {"type": "unix-char", "path": "/dev/x", "mode": "999"}}, "mode"),
                      ({"d": {"type": "disk", "path": "/", "colour": "red"}}, "colour"),
                      ({"bad name!": {"type": "none"}}, "device name")]:
        with pytest.raises(BadRequest, match=word):
            config.validate_devices(bad)


@pytest.mark.parametrize("name, ok", [("c1", True), ("a-b-c", True), ("1abc", False),
                                      ("a_b", False), ("a-", False), ("x" * 64, False),
                                      ("", False)])
def test_validate_name(name, ok):
    if ok:
        assert config.validate_name(name) == name
    else:
        with pytest.raises(BadRequest):
            config.validate_name(name)


def test_expand_profiles_in_order_local_wins():
    profiles = [{"config": {"limits.cpu": "1", "user.a": "p1"},
                 "devices": {"root": {"type": "disk", "path": "/", "pool": "p"},
                             "eth0": {"type": "nic", "nictype": "p2p"}}},
                {"config": {"user.a": "p2"}, "devices": {}}]
    cfg, devs = expand(profiles, {"limits.cpu": "2"},
                       {"eth0": {"type": "nic", "nictype": "bridged", "parent": "br"}})
    assert cfg == {"limits.cpu": "2", "user.a": "p2"}
    assert devs["eth0"] == {"type": "nic", "nictype": "bridged", "parent": "br"}
    assert root_disk(devs) == ("root", {"type": "disk", "path": "/", "pool": "p"})


def test_architecture_names_and_numbers():
    assert arch.normalize("2") == arch.normalize(2) == arch.normalize("amd64") == "x86_64"
    assert arch.normalize("arm64") == "aarch64"
    with pytest.raises(BadRequest):
        arch.normalize("z80")


def test_idmap_translation_and_isolated_allocation():
    m = IdMap(1000000, 65536)
    assert m.to_host(0) == 1000000 and m.to_container(1000005) == 5
    assert m.to_container(5) == 65534
    with pytest.raises(ValueError):
        m.to_host(70000)
    first = allocate_isolated((1000000, 1000000000), [])
    second = allocate_isolated((1000000, 1000000000), [first])
    assert first.base == 1000000 + 65536 and second.base == first.base + 65536
    assert IdMap.decode(first.encode()) == first


def test_cgroup_limits_v1_and_v2():
    conf = {"limits.memory": "64MiB", "limits.memory.swap": "false", "limits.cpu": "0-1",
            "limits.processes": "10", "limits.cpu.allowance": "25ms/100ms"}
    v1 = cgroups.limits(conf, v2=False)
    assert v1["memory.limit_in_bytes"] == str(64 * 2**20)
    assert v1["cpuset.cpus"] == "0,1" and v1["pids.max"] == "10"
    assert v1["cpu.cfs_quota_us"] == "25000" and v1["cpu.cfs_period_us"] == "100000"
    v2 = cgroups.limits(conf, v2=True)
    assert v2["memory.max"] == str(64 * 2**20) and v2["memory.swap.max"] == "0"
    assert v2["cpu.max"] == "25000 100000"
    soft = cgroups.limits({"limits.memory": "1GiB", "limits.memory.enforce": "soft"}, v2=False)
    assert "memory.soft_limit_in_bytes" in soft
    assert cgroups.cpuset_for("2", [0, 1, 2, 3]) == "0,1"


def test_render_config_unprivileged_with_devices(tmp_path):
    paths = lxc.Paths(str(tmp_path), "c1", str(tmp_path / "logs"))
    text = lxc.render_config(
        name="c1", hostname="c1", rootfs="/r", paths=paths, idmap=IdMap(1000000, 65536),
        config={"limits.memory": "64MiB", "environment.FOO": "bar", "raw.lxc":
                "lxc.apparmor.profile = unconfined"},
        device_lines=devices.lxc_lines(
            {"root": {"type": "disk", "path": "/", "pool": "default"},
             "eth0": {"type": "nic", "nictype": "bridged", "parent": "br0",
                      "hwaddr": "00:16:3e:00:00:01"}}, {}, {}),
        architecture="x86_64", host_arch="x86_64", cgroup="nlr-x/c1")
    assert "lxc.idmap = u 0 1000000 65536" in text
    assert "lxc.rootfs.path = dir:/r" in text
    assert "lxc.net.0.link = br0" in text and "lxc.net.0.hwaddr = 00:16:3e:00:00:01" in text
    assert "lxc.environment = FOO=bar" in text
    assert text.rstrip().endswith("lxc.apparmor.profile = unconfined")
    assert "sys_module" in text and "lxc.seccomp.profile" in text


def test_seccomp_policy():
    assert "init_module errno 38" in lxc.seccomp_policy({})
    assert "mount errno 1" in lxc.seccomp_policy({"security.syscalls.deny": "mount"})
    allow = lxc.seccomp_policy({"security.syscalls.allow": "read write"})
    assert allow.startswith("2\nallowlist") and "init_module" not in allow


def test_keys_this_runtime_cannot_honour_are_refused_not_ignored():
    with pytest.raises(BadRequest, match="raw.idmap.*not supported"):
        config.validate_config({"raw.idmap": "both 1000 1000"})
    with pytest.raises(BadRequest, match="security.devlxd.*only 'false'"):
        config.validate_config({"security.devlxd": "true"})
    assert config.validate_config({"security.devlxd": "false"}) == {"security.devlxd": "false"}
