"""The `restricted.*` matrix (LXD's projects.sh restriction cases): each key, with
its blocking and allowing values, against each way an instance can get a setting:
creation, update, a new profile, an edit of a profile an instance uses, and the
hot-plug of a device into a running instance. Blocked is a 403 with nothing
changed; allowed is the change made. The rules hold for the administrator on the
unix socket too (they are the project's, not the caller's); the restricted
certificate's own attempts are in test_reproductions.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import uuid

import pylxd
import pytest

from tests.functional.loopdev import LoopDevice


PROJECT = "rp"
BLOCKED, ALLOWED = "blocked", "allowed"
PATHS = ("create", "update", "profile", "profile-edit")


@pytest.fixture(scope="module")
def rp(world):
    """A restricted project with a root disk, an image, a managed bridge and a plain
    instance using a shared profile (the target of updates and profile edits)."""
    w = world
    fp = w.project(PROJECT, {"restricted": "true"})
    bridge = f"nsb{w.tag}"
    w.admin("POST", "/1.0/networks", json={"name": bridge, "config": {
        "ipv4.address": "none"}})
    w.admin("POST", "/1.0/profiles", project=PROJECT, json={"name": "shared"})
    w.admin("POST", "/1.0/storage-pools/default/volumes/custom", project=PROJECT,
            json={"name": "rvol"})
    w.admin("POST", "/1.0/instances", project=PROJECT, json={
        "name": "base", "source": {"type": "image", "fingerprint": fp},
        "profiles": ["default", "shared"]})
    ctx = {"fp": fp, "bridge": bridge, "counts": {}}
    yield ctx
    print(f"\nrestricted.* matrix cases per path: {ctx['counts']}")
    w.empty_project(PROJECT)
    w.admin("DELETE", f"/1.0/networks/{bridge}")


def _disk(source: str, **extra) -> dict:
    return {"d1": {"type": "disk", "source": source, "path": "/mnt/d1", **extra}}


def _dev(dtype: str, **keys) -> dict:
    return {"d1": {"type": dtype, **keys}}


# (label, project settings, {"config": ...} or {"devices": ...}, expectation)
CONFIG_CASES = [
    ("privileged, default", {}, {"security.privileged": "true"}, BLOCKED),
    ("privileged, unprivileged", {"restricted.containers.privilege": "unprivileged"},
     {"security.privileged": "true"}, BLOCKED),
    ("privileged, allow", {"restricted.containers.privilege": "allow"},
     {"security.privileged": "true"}, ALLOWED),
    ("nesting, default", {}, {"security.nesting": "true"}, BLOCKED),
    ("nesting, block", {"restricted.containers.nesting": "block"},
     {"security.nesting": "true"}, BLOCKED),
    ("nesting, allow", {"restricted.containers.nesting": "allow"},
     {"security.nesting": "true"}, ALLOWED),
    ("intercept mknod, default", {}, {"security.syscalls.intercept.mknod": "true"},
     BLOCKED),
    ("intercept mknod, allow", {"restricted.containers.interception": "allow"},
     {"security.syscalls.intercept.mknod": "true"}, ALLOWED),
    ("restricted=false", {"restricted": "false", "restricted.containers.privilege":
                          "unprivileged"}, {"security.privileged": "true"}, ALLOWED),
]
LOWLEVEL = {"raw.lxc": "lxc.environment = SEC=1", "raw.seccomp": "2\ndenylist\n",
            "raw.apparmor": "deny /sec rw,", "linux.kernel_modules": "ip_tables",
            "security.idmap.base": "300000", "security.idmap.size": "65536",
            "boot.host_shutdown_timeout": "10", "security.syscalls.intercept.other": "true"}
for key, value in LOWLEVEL.items():
    CONFIG_CASES += [
        (f"{key}, default", {}, {key: value}, BLOCKED),
        (f"{key}, block", {"restricted.containers.lowlevel": "block"}, {key: value}, BLOCKED),
        (f"{key}, allow", {"restricted.containers.lowlevel": "allow"}, {key: value}, ALLOWED),
    ]

DEVICE_CASES = [
    ("host disk, default", {}, _disk("/tmp"), BLOCKED),
    ("host disk /, default", {}, _disk("/"), BLOCKED),
    ("host disk, managed", {"restricted.devices.disk": "managed"}, _disk("/tmp"), BLOCKED),
    ("host disk, block", {"restricted.devices.disk": "block"}, _disk("/tmp"), BLOCKED),
    ("host disk, allow", {"restricted.devices.disk": "allow"}, _disk("/tmp"), ALLOWED),
    ("host disk in paths", {"restricted.devices.disk": "allow",
                            "restricted.devices.disk.paths": "/tmp/sec"},
     _disk("/tmp/sec/a"), ALLOWED),
    ("host disk outside paths", {"restricted.devices.disk": "allow",
                                 "restricted.devices.disk.paths": "/tmp/sec"},
     _disk("/etc"), BLOCKED),
    ("host disk sibling of paths", {"restricted.devices.disk": "allow",
                                    "restricted.devices.disk.paths": "/tmp/sec"},
     _disk("/tmp/secret"), BLOCKED),
    ("host disk .. out of paths", {"restricted.devices.disk": "allow",
                                   "restricted.devices.disk.paths": "/tmp/sec"},
     _disk("/tmp/sec/../../etc"), BLOCKED),
    ("shift with paths", {"restricted.devices.disk": "allow",
                          "restricted.devices.disk.paths": "/tmp/sec"},
     _disk("/tmp/sec/a", shift="true"), BLOCKED),
    ("pool disk, default", {}, _disk("rvol", pool="default"), ALLOWED),
    ("pool disk, block", {"restricted.devices.disk": "block"}, _disk("rvol", pool="default"),
     BLOCKED),
    ("pool disk with ../", {}, _disk("rvol/../../..", pool="default"), BLOCKED),
    # a host block device is a host-path disk (mounted by the daemon on the host)
    ("block device, default", {}, _disk("/dev/loop0"), BLOCKED),
    ("block device, managed", {"restricted.devices.disk": "managed"}, _disk("/dev/loop0"),
     BLOCKED),
    ("block device outside paths", {"restricted.devices.disk": "allow",
                                    "restricted.devices.disk.paths": "/tmp/sec"},
     _disk("/dev/loop0"), BLOCKED),
    ("block device .. out of paths", {"restricted.devices.disk": "allow",
                                      "restricted.devices.disk.paths": "/tmp/sec"},
     _disk("/tmp/sec/../../dev/loop0"), BLOCKED),
    # another instance's root (container/<name>): not in a restricted project at all
    ("instance root volume, default", {}, _disk("container/base", pool="default"),
     BLOCKED),
    ("instance root volume, allow", {"restricted.devices.disk": "allow"},
     _disk("container/base", pool="default"), BLOCKED),
    ("instance root volume ../", {"restricted.devices.disk": "allow"},
     _disk("container/../../containers/base", pool="default"), BLOCKED),
    ("nic network, default", {}, "NET", ALLOWED),
    ("nic network, block", {"restricted.devices.nic": "block"}, "NET", BLOCKED),
    ("nic network not in access", {"restricted.networks.access": "other0"}, "NET", BLOCKED),
    ("nic network in access", {"restricted.networks.access": "BRIDGE"}, "NET", ALLOWED),
    ("nic parent, default", {}, "PARENT", BLOCKED),
    ("nic parent, managed", {"restricted.devices.nic": "managed"}, "PARENT", BLOCKED),
    ("nic parent, allow", {"restricted.devices.nic": "allow"}, "PARENT", ALLOWED),
    ("nic macvlan lo, allow+access", {"restricted.devices.nic": "allow",
                                      "restricted.networks.access": "BRIDGE"},
     _dev("nic", nictype="macvlan", parent="lo"), BLOCKED),
]
for dtype, keys in (("unix-char", {"source": "/dev/null", "path": "/dev/sec0"}),
                    ("unix-block", {"source": "/dev/loop0", "path": "/dev/sec1"}),
                    ("unix-hotplug", {"vendorid": "1d6b"}), ("gpu", {}),
                    ("usb", {"vendorid": "1d6b"}),
                    ("proxy", {"listen": "tcp:127.0.0.1:1", "connect": "tcp:127.0.0.1:2"}),
                    ("infiniband", {"nictype": "physical", "parent": "ib0"})):
    DEVICE_CASES += [
        (f"{dtype}, default", {}, _dev(dtype, **keys), BLOCKED),
        (f"{dtype}, allow", {f"restricted.devices.{dtype}": "allow"}, _dev(dtype, **keys),
         ALLOWED),
    ]


def _payload(ctx: dict, payload) -> dict:
    if payload == "NET":
        return {"devices": _dev("nic", network=ctx["bridge"], name="eth1")}
    if payload == "PARENT":
        return {"devices": _dev("nic", nictype="bridged", parent=ctx["bridge"],
                                name="eth1")}
    if isinstance(payload, dict) and "d1" in payload:
        return {"devices": payload}
    return {"config": payload}


def _settings(ctx: dict, settings: dict) -> dict:
    return {k: v.replace("BRIDGE", ctx["bridge"]) for k, v in settings.items()}


def _set(world, settings: dict) -> None:
    world.admin("PATCH", f"/1.0/projects/{PROJECT}", json={"config": settings})


def _reset(world, settings: dict) -> None:
    world.admin("PATCH", f"/1.0/projects/{PROJECT}", json={"config": {
        **{k: "" for k in settings}, "restricted": "true"}})


def _status(world, method: str, path: str, body: dict) -> tuple[int, str]:
    """HTTP status over the unix socket, and the operation's result if it has one."""
    node = world.local.api
    for part in path.strip("/").split("/")[1:]:
        node = node[part]
    try:
        r = getattr(node, method.lower())(json=body, params={"project": PROJECT})
    except pylxd.exceptions.LXDAPIException as exc:
        return exc.response.status_code, str(exc)
    env = r.json()
    if env.get("type") == "async":
        try:
            op = world.local.operations.wait_for_operation(env["operation"])
        except pylxd.exceptions.LXDAPIException:
            return r.status_code, "Failure"
        return r.status_code, op.status
    return r.status_code, "Success"


def _run(world, ctx: dict, path: str, payload: dict) -> tuple[int, str, callable]:
    """Try the change along one path; returns (status, result, undo)."""
    if path == "create":
        name = f"m{uuid.uuid4().hex[:8]}"
        status = _status(world, "POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "fingerprint": ctx["fp"]}, **payload})
        return (*status, lambda: _delete(world, f"/1.0/instances/{name}"))
    if path == "update":
        before = world.admin("GET", "/1.0/instances/base", project=PROJECT)["metadata"]
        patch = {k: {**before[k], **v} for k, v in payload.items()}
        status = _status(world, "PATCH", "/1.0/instances/base", patch)
        return (*status, lambda: world.admin("PUT", "/1.0/instances/base", project=PROJECT,
                                             json={k: before[k] for k in (
                                                 "config", "devices", "profiles")}))
    if path == "profile":
        name = f"m{uuid.uuid4().hex[:8]}"
        status = _status(world, "POST", "/1.0/profiles", {"name": name, **payload})
        return (*status, lambda: _delete(world, f"/1.0/profiles/{name}"))
    status = _status(world, "PATCH", "/1.0/profiles/shared", payload)
    return (*status, lambda: world.admin("PUT", "/1.0/profiles/shared", project=PROJECT,
                                         json={"config": {}, "devices": {}}))


def _delete(world, path: str) -> None:
    try:
        world.admin("DELETE", path, project=PROJECT)
    except pylxd.exceptions.LXDAPIException:
        pass


def _check(world, ctx: dict, settings: dict, payload, expect: str, path: str) -> None:
    settings = _settings(ctx, settings)
    body = _payload(ctx, payload)
    if path == "profile" and any(k.startswith("volatile.") for k in body.get("config", {})):
        pytest.skip("volatile keys only matter on instances")
    ctx["counts"][path] = ctx["counts"].get(path, 0) + 1
    snapshot = world.admin("GET", "/1.0/instances", project=PROJECT,
                           params={"recursion": 1})["metadata"]
    _set(world, settings)
    undo, status = None, None
    try:
        status, result, undo = _run(world, ctx, path, body)
        if expect == BLOCKED:
            assert status == 403, (status, result)
            after = world.admin("GET", "/1.0/instances", project=PROJECT,
                                params={"recursion": 1})["metadata"]
            assert [(i["name"], i["config"], i["devices"]) for i in after] == \
                [(i["name"], i["config"], i["devices"]) for i in snapshot]
        else:
            assert status in (200, 201, 202) and result == "Success", (status, result)
    finally:
        if undo is not None and status in (200, 201, 202):
            undo()
        _reset(world, settings)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("label,settings,payload,expect", CONFIG_CASES,
                         ids=[c[0] for c in CONFIG_CASES])
def test_config_restrictions(world, rp, label, settings, payload, expect, path):
    _check(world, rp, settings, payload, expect, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("label,settings,payload,expect", DEVICE_CASES,
                         ids=[c[0] for c in DEVICE_CASES])
def test_device_restrictions(world, rp, label, settings, payload, expect, path):
    _check(world, rp, settings, payload, expect, path)


@pytest.mark.parametrize("key", ["volatile.idmap.base", "volatile.last_state.idmap",
                                 "volatile.eth0.host_name"])
def test_volatile_keys(world, rp, key):
    """Daemon-kept keys: `volatile.idmap.base=0` with an isolated map would make the
    container's root the host's root. A restricted project's clients set none."""
    value = "0" if key == "volatile.idmap.base" else \
        '[{"Isuid":true,"Isgid":true,"Hostid":0,"Nsid":0,"Maprange":65536}]' \
        if key.endswith("idmap") else "veth0"
    for path in ("create", "update"):
        rp["counts"][path] = rp["counts"].get(path, 0) + 1
        status, result, undo = _run(world, rp, path, {"config": {
            key: value, "security.idmap.isolated": "true"}})
        if status in (200, 201, 202):
            undo()
        assert status == 403, (path, status, result)


def test_snapshots(world, rp):
    for settings, expect in (({}, 403), ({"restricted.snapshots": "block"}, 403),
                             ({"restricted.snapshots": "allow"}, 202)):
        _set(world, settings)
        try:
            for path in ("/1.0/instances/base/snapshots",
                         "/1.0/storage-pools/default/volumes/custom/rvol/snapshots"):
                status, result = _status(world, "POST", path, {"name": "snap"})
                assert status == expect, (settings, path, status, result)
                if status == 202:
                    _delete(world, f"{path}/snap")
        finally:
            _reset(world, settings)
        rp["counts"]["snapshot"] = rp["counts"].get("snapshot", 0) + 2


def test_project_cannot_be_restricted_under_its_instances(world, rp):
    """Tightening a project is refused while it holds what the new rules forbid."""
    _set(world, {"restricted.containers.privilege": "allow"})
    status, result, undo = _run(world, rp, "update", {"config": {
        "security.privileged": "true"}})
    assert status == 202, result
    try:
        r = world.req("admin", "PATCH", f"/1.0/projects/{PROJECT}",
                      json={"config": {"restricted.containers.privilege": "unprivileged"}})
        assert r.status_code == 400 and "Conflict" in r.text, r.text
        r = world.req("admin", "PATCH", f"/1.0/projects/{PROJECT}",
                      json={"config": {"restricted.containers.privilege": "isolated"}})
        assert r.status_code == 400, r.text
    finally:
        undo()
        _reset(world, {"restricted.containers.privilege": ""})
    r = world.req("admin", "PATCH", f"/1.0/projects/{PROJECT}",
                  json={"config": {"restricted.devices.bogus": "allow"}})
    assert r.status_code == 400, r.text
    r = world.req("admin", "PATCH", f"/1.0/projects/{PROJECT}",
                  json={"config": {"restricted.devices.disk": "sometimes"}})
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("label,devices", [
    ("host root", _disk("/")),
    ("unix-char /dev/mem", _dev("unix-char", source="/dev/mem", path="/dev/mem")),
    ("nic on a host parent", "PARENT"),
])
def test_hot_plug_into_a_running_instance(world, rp, label, devices):
    world.admin("PUT", "/1.0/instances/base/state", project=PROJECT,
                json={"action": "start"})
    try:
        rp["counts"]["hot-plug"] = rp["counts"].get("hot-plug", 0) + 1
        status, result, undo = _run(world, rp, "update", _payload(rp, devices))
        if status in (200, 201, 202):
            undo()
        assert status == 403, (status, result)
        mounts = world.local.api.instances.base.exec.post(params={"project": PROJECT}, json={
            "command": ["cat", "/proc/mounts"], "record-output": True,
            "wait-for-websocket": False}).json()
        op = world.local.operations.wait_for_operation(mounts["operation"])
        assert op.metadata["return"] == 0
        out = world.local.api.instances.base.logs[
            op.metadata["output"]["1"].rsplit("/", 1)[-1]].get(
            params={"project": PROJECT}).text
        assert "/mnt/d1" not in out and "/dev/mem" not in out
    finally:
        world.admin("PUT", "/1.0/instances/base/state", project=PROJECT,
                    json={"action": "stop", "force": True})


def test_disk_paths_symlink_resolved_at_start_and_hot_plug(world, rp):
    """restricted.devices.disk.paths is checked lexically when the device is added
    (as LXD), so a symlink under an allowed path could point anywhere: the source is
    resolved again at every start and hot-plug and refused outside the paths."""
    base = tempfile.mkdtemp(prefix="sec-paths-", dir="/var/tmp")
    os.chmod(base, 0o755)   # the unprivileged container's root must traverse it
    allowed = pathlib.Path(base) / "allowed"
    (allowed / "data").mkdir(parents=True)
    (allowed / "escape").symlink_to("/")
    settings = {"restricted.devices.disk": "allow",
                "restricted.devices.disk.paths": str(allowed)}
    _set(world, settings)
    name = f"m{uuid.uuid4().hex[:8]}"
    try:
        status, result = _status(world, "POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "fingerprint": rp["fp"]},
            "devices": _disk(str(allowed / "escape"))})
        assert (status, result) == (202, "Success")
        status, result = _status(world, "PUT", f"/1.0/instances/{name}/state",
                                 {"action": "start"})
        assert result == "Failure", (status, result)
        op_err = world.admin("GET", "/1.0/operations", project=PROJECT,
                             params={"recursion": 1})["metadata"].get("failure", [])
        assert any("outside restricted.devices.disk.paths" in o["err"] for o in op_err)
        # The same instance with a real directory under the path starts, and a
        # hot-plugged escape is refused while it runs.
        world.admin("PATCH", f"/1.0/instances/{name}", project=PROJECT,
                    json={"devices": _disk(str(allowed / "data"))})
        status, result = _status(world, "PUT", f"/1.0/instances/{name}/state",
                                 {"action": "start"})
        assert result == "Success", (status, result)
        status, result = _status(world, "PATCH", f"/1.0/instances/{name}",
                                 {"devices": {"d2": {"type": "disk", "path": "/mnt/d2",
                                                     "source": str(allowed / "escape")}}})
        assert status == 403, (status, result)
    finally:
        try:
            world.admin("PUT", f"/1.0/instances/{name}/state", project=PROJECT,
                        json={"action": "stop", "force": True})
        except pylxd.exceptions.LXDAPIException:
            pass
        _delete(world, f"/1.0/instances/{name}")
        _reset(world, settings)
        shutil.rmtree(base)


def test_disk_paths_symlink_to_a_block_device(world, rp):
    """A symlink under an allowed path naming a host block device passes the lexical
    check when added; at start it is resolved, refused, and nothing is mounted."""
    loop = LoopDevice(size_mb=16)
    base = tempfile.mkdtemp(prefix="sec-blk-", dir="/var/tmp")
    allowed = pathlib.Path(base) / "allowed"
    allowed.mkdir()
    (allowed / "blk").symlink_to(loop.path)
    settings = {"restricted.devices.disk": "allow",
                "restricted.devices.disk.paths": str(allowed)}
    _set(world, settings)
    name = f"m{uuid.uuid4().hex[:8]}"
    disks = os.path.join(world.daemon.lxd_dir, "disks")
    try:
        status, result = _status(world, "POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "fingerprint": rp["fp"]},
            "devices": _disk(str(allowed / "blk"))})
        assert (status, result) == (202, "Success")
        rp["counts"]["start"] = rp["counts"].get("start", 0) + 1
        status, result = _status(world, "PUT", f"/1.0/instances/{name}/state",
                                 {"action": "start"})
        assert result == "Failure", (status, result)
        failed = world.admin("GET", "/1.0/operations", project=PROJECT,
                             params={"recursion": 1})["metadata"].get("failure", [])
        assert any(loop.path in o["err"] and "outside restricted.devices.disk.paths"
                   in o["err"] for o in failed), failed
        with open("/proc/self/mounts") as f:
            assert not [m for m in f if m.split()[1].startswith(disks + "/")]
    finally:
        _delete(world, f"/1.0/instances/{name}")
        _reset(world, settings)
        shutil.rmtree(base)
        loop.cleanup()


def test_copy_into_a_restricted_project(world, rp):
    """A copy is a creation: the source's config and snapshots meet the target's
    rules (an administrator copying from the default project included)."""
    src = world.names["default"]["instance"]
    world.admin("POST", "/1.0/instances", json={
        "name": "privsrc", "source": {"type": "image", "alias": world.names["default"][
            "alias"]}, "config": {"security.privileged": "true"}})
    try:
        cases = [
            ({"source": src, "project": "default"}, (403, None)),     # brings snapshot s1
            ({"source": src, "project": "default", "instance_only": True}, (202, "Success")),
            ({"source": f"{src}/s1", "project": "default"}, (202, "Success")),
            ({"source": "privsrc", "project": "default", "instance_only": True},
             (403, None)),
        ]
        for source, expect in cases:
            name = f"m{uuid.uuid4().hex[:8]}"
            status, result = _status(world, "POST", "/1.0/instances", {
                "name": name, "source": {"type": "copy", **source}})
            rp["counts"]["copy"] = rp["counts"].get("copy", 0) + 1
            _delete(world, f"/1.0/instances/{name}")
            assert (status, result if status == 202 else None) == expect, (source, result)
    finally:
        world.admin("DELETE", "/1.0/instances/privsrc")
