"""No newline or control character from a client reaches a generated config.

Every key the runtime knows (read from its own validation tables, so a new key
is covered automatically) is sent with each control character, through every
door that takes config: instance create and update, devices, profiles, networks,
storage pools, volumes, projects, server config, names, exec. Each must be a 400
naming the control character, with nothing created. The two reported
reproductions are run end to end: a newline in `environment.X` used to add an
`lxc.hook.pre-start` (run as host root), a newline in a nic `name` a mount.
"""
from __future__ import annotations

import json
import os
import uuid

import pytest

from runtime import controlchars
from runtime.instances import config as cfg
from runtime.network import manager as netmgr
from tests.functional.runtime.security import rawhttp

CHARS = {"LF": "\n", "CR": "\r", "NUL": "\x00", "TAB": "\t", "ESC": "\x1b", "DEL": "\x7f",
         "NEL": "\x85", "LS": "\u2028"}
MULTILINE_OK = ("LF", "CR", "TAB")
FREE_SAMPLES = {"user.": "user.note", "environment.": "environment.FOO",
                "image.": "image.nlx_sample", "volatile.": "volatile.eth0.hwaddr",
                "linux.sysctl.": "linux.sysctl.net.ipv4.ip_forward",
                "limits.kernel.": "limits.kernel.nofile",
                "security.syscalls.intercept.": "security.syscalls.intercept.mknod",
                "limits.hugepages.": "limits.hugepages.2MB"}
INSTANCE_KEYS = sorted(cfg.INSTANCE_KEYS) + [FREE_SAMPLES[p] for p in cfg.FREE_PREFIXES]
MARK = f"/tmp/nlx-injected-{uuid.uuid4().hex[:8]}"


def _value_cases(keys):
    for key in keys:
        for cname, ch in CHARS.items():
            if controlchars.multiline(key) and cname in MULTILINE_OK:
                continue
            yield key, cname, ch


def _api(daemon, method: str, path: str, body: dict | None = None):
    return rawhttp.request(daemon.socket, method, path,
                           body=json.dumps(body or {}).encode(),
                           headers={"Content-Type": "application/json"})


def _refused(status, body, what: str):
    assert status == 400, (what, status, body)
    assert "control character" in body["error"] or "Invalid" in body["error"], (what, body)


@pytest.fixture(scope="module")
def stopped(client, busybox):
    inst = client.instances.create({"name": "cc-target", "source": {
        "type": "image", "alias": "busybox"}}, wait=True)
    yield inst
    inst.delete(wait=True)


INSTANCE_CASES = list(_value_cases(INSTANCE_KEYS))


@pytest.mark.parametrize("key, cname, ch", INSTANCE_CASES,
                         ids=[f"{k}-{c}" for k, c, _ in INSTANCE_CASES])
def test_input_instance_config_value(daemon, client, stopped, key, cname, ch):
    value = "1" + ch + "lxc.hook.pre-start = /bin/true"
    name = f"cc-{uuid.uuid4().hex[:6]}"
    status, body = _api(daemon, "POST", "/1.0/instances",
                        {"name": name, "source": {"type": "none"}, "config": {key: value}})
    assert status == 400 and "control character" in body["error"], (key, cname, body)
    assert not client.instances.exists(name)
    status, body = _api(daemon, "PATCH", f"/1.0/instances/{stopped.name}",
                        {"config": {key: value}})
    assert status == 400 and "control character" in body["error"], (key, cname, body)
    assert key not in client.instances.get(stopped.name).config


@pytest.mark.parametrize("cname", list(CHARS))
def test_input_instance_config_key(daemon, stopped, cname):
    for prefix in cfg.FREE_PREFIXES:
        status, body = _api(daemon, "PATCH", f"/1.0/instances/{stopped.name}",
                            {"config": {f"{prefix}a{CHARS[cname]}b": "1"}})
        _refused(status, body, prefix)


DEVICE_CASES = [(dtype, key, cname, ch) for dtype, keys in sorted(cfg.DEVICE_KEYS.items())
                for key, cname, ch in _value_cases(sorted(keys))]


@pytest.mark.parametrize("dtype, key, cname, ch", DEVICE_CASES,
                         ids=[f"{d}-{k}-{c}" for d, k, c, _ in DEVICE_CASES])
def test_input_device_value(daemon, stopped, dtype, key, cname, ch):
    dev = {"type": dtype, key: "eth0" + ch + "lxc.mount.entry = / x none bind 0 0"}
    status, body = _api(daemon, "PATCH", f"/1.0/instances/{stopped.name}",
                        {"devices": {"d0": dev}})
    assert status == 400 and "control character" in body["error"], (dtype, key, body)


PROFILE_CASES = [("config", "environment.FOO"), ("config", "linux.sysctl.kernel.x"),
                 ("config", "limits.cpu"), ("device", "name"), ("device", "host_name"),
                 ("device", "parent"), ("device", "hwaddr")]


@pytest.mark.parametrize("where, key", PROFILE_CASES, ids=[k for _, k in PROFILE_CASES])
@pytest.mark.parametrize("cname", ["LF", "NUL", "ESC"])
def test_input_profile(daemon, client, where, key, cname):
    value = "x" + CHARS[cname] + "y"
    body = {"name": f"ccp-{uuid.uuid4().hex[:6]}"}
    if where == "config":
        body["config"] = {key: value}
    else:
        body["devices"] = {"eth0": {"type": "nic", "nictype": "p2p", key: value}}
    status, resp = _api(daemon, "POST", "/1.0/profiles", body)
    _refused(status, resp, key)
    assert not client.profiles.exists(body["name"])
    status, resp = _api(daemon, "PATCH", "/1.0/profiles/default",
                        {k: v for k, v in body.items() if k != "name"})
    _refused(status, resp, key)


NETWORK_CASES = list(_value_cases(sorted(netmgr.BRIDGE_KEYS) + ["user.note"]))


@pytest.mark.parametrize("key, cname, ch", NETWORK_CASES,
                         ids=[f"{k}-{c}" for k, c, _ in NETWORK_CASES])
def test_input_network_config(daemon, client, key, cname, ch):
    name = f"ccn{uuid.uuid4().hex[:6]}"
    status, body = _api(daemon, "POST", "/1.0/networks",
                        {"name": name, "config": {key: "10" + ch + "dhcp-option=3,1.2.3.4"}})
    try:
        _refused(status, body, key)
    finally:
        if status < 400:
            _api(daemon, "DELETE", f"/1.0/networks/{name}")
    assert not os.path.exists(f"/sys/class/net/{name}")


@pytest.mark.parametrize("key", ["source", "size", "user.note"])
@pytest.mark.parametrize("cname", ["LF", "NUL", "ESC"])
def test_input_storage_pool_and_volume_config(daemon, client, key, cname):
    value = "/tmp/x" + CHARS[cname] + "y"
    if key == "user.note" and cname == "LF":
        return  # user keys are free text
    name = f"ccs-{uuid.uuid4().hex[:6]}"
    status, body = _api(daemon, "POST", "/1.0/storage-pools",
                        {"name": name, "driver": "dir", "config": {key: value}})
    _refused(status, body, key)
    status, body = _api(daemon, "POST", "/1.0/storage-pools/default/volumes/custom",
                        {"name": name, "config": {key: value}})
    _refused(status, body, key)


@pytest.mark.parametrize("cname", ["LF", "NUL", "ESC"])
def test_input_project_and_server_config(daemon, cname):
    value = "true" + CHARS[cname]
    status, body = _api(daemon, "POST", "/1.0/projects",
                        {"name": f"ccj{uuid.uuid4().hex[:6]}",
                         "config": {"features.images": value}})
    _refused(status, body, "project")
    status, body = _api(daemon, "PATCH", "/1.0",
                        {"config": {"core.proxy_http": "http://x" + CHARS[cname]}})
    _refused(status, body, "server")


@pytest.mark.parametrize("cname", ["LF", "NUL", "ESC", "LS"])
def test_input_names(daemon, client, stopped, busybox, cname):
    bad = "a" + CHARS[cname] + "b"
    status, body = _api(daemon, "POST", f"/1.0/instances/{stopped.name}/snapshots",
                        {"name": bad})
    assert status == 400, body
    status, body = _api(daemon, "POST", "/1.0/profiles", {"name": bad})
    assert status == 400, body
    status, body = _api(daemon, "POST", "/1.0/images/aliases",
                        {"name": bad, "target": busybox})
    assert status == 400, body
    status, body = _api(daemon, "POST", "/1.0/instances",
                        {"name": bad, "source": {"type": "none"}})
    assert status == 400, body


def test_input_exec_environment_and_command(daemon, make_instance):
    inst = make_instance()
    for body in ({"command": ["true"], "environment": {"A": "x\x00y"}},
                 {"command": ["true"], "environment": {"A=B": "x"}},
                 {"command": ["tr\x00ue"]},
                 {"command": ["true"], "width": "wide"}):
        status, resp = _api(daemon, "POST", f"/1.0/instances/{inst.name}/exec", body)
        assert status == 400, (body, resp)


def _attempt(daemon, client, body: dict) -> int:
    """Create (and, if the runtime accepts it, start) an instance; returns the status."""
    status, resp = _api(daemon, "POST", "/1.0/instances", body)
    if status < 400:
        inst = client.instances.get(body["name"])
        for _ in range(50):
            if inst.status == "Stopped":
                break
            inst.sync()
        try:
            inst.start(wait=True)
        except Exception:  # noqa: BLE001 - the injection matters, not the start
            pass
    return status


def _cleanup(client, name: str) -> None:
    if client.instances.exists(name):
        inst = client.instances.get(name)
        if inst.status != "Stopped":
            inst.stop(force=True, wait=True)
        inst.delete(wait=True)


def test_input_reproduction_environment_newline_adds_a_host_hook(daemon, client, busybox):
    name = "cc-env-hook"
    try:
        status = _attempt(daemon, client, {
            "name": name, "source": {"type": "image", "alias": "busybox"},
            "config": {"environment.X": f"1\nlxc.hook.pre-start = /bin/touch {MARK}"}})
        assert not os.path.exists(MARK), "the injected hook ran on the host"
        assert status == 400
    finally:
        _cleanup(client, name)
        if os.path.exists(MARK):
            os.unlink(MARK)


def test_input_reproduction_nic_name_newline_adds_a_mount(daemon, client, busybox):
    name = "cc-nic-mount"
    try:
        status = _attempt(daemon, client, {
            "name": name, "source": {"type": "image", "alias": "busybox"},
            "devices": {"eth0": {"type": "nic", "nictype": "p2p", "name":
                                 "eth0\nlxc.mount.entry = /etc root/host-etc none "
                                 "bind,create=dir 0 0"}}})
        if client.instances.exists(name) and client.instances.get(name).status == "Running":
            res = client.instances.get(name).execute(["test", "-e", "/root/host-etc/shadow"])
            assert res.exit_code != 0, "the injected mount exposed the host's /etc"
        assert status == 400
    finally:
        _cleanup(client, name)


def test_input_disk_path_with_spaces_is_one_mount(daemon, client, busybox, make_instance):
    """Spaces are legal in paths: escaped in the mount entry, they neither break it
    nor add mount options."""
    src = os.path.join(daemon.lxd_dir, "shared dir")   # traversable by the container
    os.mkdir(src, 0o755)
    with open(os.path.join(src, "marker"), "w") as f:
        f.write("here")
    inst = make_instance(devices={"d": {"type": "disk", "source": src,
                                        "path": "/mnt/a b", "readonly": "true"}})
    assert inst.execute(["cat", "/mnt/a b/marker"]).stdout == "here"
