"""Instance state and the recursion=2 listing against what the kernel shows, for a
real container with traffic: interfaces, addresses and counters (the container's
namespace read with iproute2 from the host), memory, cpu and processes (its
cgroups), disk usage (du of its volume), for a running and a stopped instance,
through pylxd, the raw API and the stock `lxc` CLI."""
import json
import os
import subprocess
import time

import pytest

from tests.functional.runtime import nethelpers as nh
from tests.functional.runtime.nethelpers import host_links_restored  # noqa: F401 - fixture

SUBNET = "10.231.64"


pytestmark = pytest.mark.usefixtures("host_links_restored")


@pytest.fixture(scope="module")
def bridge(client):
    net = client.networks.create(nh.name("st"), config={
        "ipv4.address": f"{SUBNET}.1/24", "ipv4.dhcp": "false", "ipv4.nat": "false",
        "ipv6.address": "none"})
    yield net.name
    try:
        net.delete()
    except Exception:  # noqa: BLE001 - the module's cleanup removes the link anyway
        nh.delete_links([net.name])


def _kernel_links(pid: int) -> dict:
    p = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-j", "-s", "addr"],
                       capture_output=True, text=True, check=True)
    return {link["ifname"]: link for link in json.loads(p.stdout)}


def _cgroup_file(pid: int, controller: str, name: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _hid, ctrls, path in lines:
        if controller in ctrls.split(","):
            return f"/sys/fs/cgroup/{controller}{path}/{name}"
    path = next(p for h, c, p in lines if h == "0")
    return f"/sys/fs/cgroup{path}/{name}"


def _memory(pid: int) -> int:
    for ctrl, name in (("memory", "memory.usage_in_bytes"), ("memory", "memory.current")):
        path = _cgroup_file(pid, ctrl, name)
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read())
    raise AssertionError("no memory cgroup file for the container")


def _cpu_ns(pid: int) -> int:
    path = _cgroup_file(pid, "cpuacct", "cpuacct.usage")
    if os.path.exists(path):
        with open(path) as f:
            return int(f.read())
    with open(_cgroup_file(pid, "cpu", "cpu.stat")) as f:
        usec = next(int(line.split()[1]) for line in f if line.startswith("usage_usec"))
    return usec * 1000


def _du(daemon, name: str) -> int:
    """du of the instance's own files (its overlay upper layer on an image-backed
    dir pool volume), as the runtime should count them."""
    base = os.path.join(daemon.lxd_dir, "storage-pools", "default", "containers", name)
    upper = os.path.join(base, ".upper")
    p = subprocess.run(["du", "-sxb", upper if os.path.isdir(upper) else base],
                       capture_output=True, text=True, check=True)
    return int(p.stdout.split()[0])


def _listing(client) -> dict:
    items = client.api.instances.get(params={"recursion": "2"}).json()["metadata"]
    return {i["name"]: i for i in items}


def _counters(link: dict) -> dict:
    rx, tx = link["stats64"]["rx"], link["stats64"]["tx"]
    return {"bytes_received": rx["bytes"], "bytes_sent": tx["bytes"],
            "packets_received": rx["packets"], "packets_sent": tx["packets"],
            "errors_received": rx["errors"], "errors_sent": tx["errors"],
            "packets_dropped_inbound": rx["dropped"],
            "packets_dropped_outbound": tx["dropped"]}


def _check_network(got: dict, before: dict, after: dict, inst) -> None:
    assert set(got) == set(after), "every interface of the namespace, no other"
    for name, link in after.items():
        g = got[name]
        assert g["mtu"] == link["mtu"]
        assert g["state"] == ("up" if "UP" in link["flags"] else "down")
        assert g["type"] == ("loopback" if name == "lo" else "broadcast")
        assert g["hwaddr"] == ("" if name == "lo" else link["address"])
        assert sorted((a["family"], a["address"], a["netmask"]) for a in g["addresses"]) == \
            sorted((a["family"], a["local"], str(a["prefixlen"]))
                   for a in link.get("addr_info", []))
        low, high = _counters(before[name]), _counters(link)
        for key, value in g["counters"].items():
            assert low[key] <= value <= high[key], (name, key, low[key], value, high[key])
    scopes = {a["address"]: a["scope"] for iface in got.values() for a in iface["addresses"]}
    assert scopes[f"{SUBNET}.10"] == "global" and scopes["127.0.0.1"] == "local"
    assert scopes["::1"] == "local"
    assert any(s == "link" and a.startswith("fe80:") for a, s in scopes.items())
    eth0 = got["eth0"]
    assert eth0["hwaddr"] == inst.config["volatile.eth0.hwaddr"]
    assert eth0["host_name"] == inst.config["volatile.eth0.host_name"]
    assert nh.exists(eth0["host_name"]) and got["lo"]["host_name"] == ""
    assert eth0["counters"]["packets_sent"] >= 20 and eth0["counters"]["bytes_received"] > 0


def test_running_state_and_listing_match_the_kernel(daemon, client, bridge, make_instance):
    inst = make_instance(devices={"eth0": {"type": "nic", "network": bridge, "name": "eth0"}})
    for cmd in (["ip", "addr", "add", f"{SUBNET}.10/24", "dev", "eth0"],
                ["ping", "-c", "20", "-i", "0.05", "-s", "1000", "-W", "2", f"{SUBNET}.1"],
                ["dd", "if=/dev/zero", "of=/root/blob", "bs=4096", "count=256"]):
        res = inst.execute(cmd)
        assert res.exit_code == 0, (cmd, res.stdout, res.stderr)
    seen = inst.state()   # pylxd reads it as it reads LXD's
    pid = seen.pid
    assert seen.network["eth0"]["hwaddr"] == inst.config["volatile.eth0.hwaddr"]
    assert seen.disk["root"]["usage"] > 0 and seen.memory["usage"] > 0
    for reader in ("state", "listing"):
        before = _kernel_links(pid)
        mem0, cpu0 = _memory(pid), _cpu_ns(pid)
        state = (client.api.instances[inst.name].state.get().json()["metadata"]
                 if reader == "state" else _listing(client)[inst.name]["state"])
        after = _kernel_links(pid)
        mem1, cpu1 = _memory(pid), _cpu_ns(pid)
        assert state["status"] == "Running" and state["status_code"] == 103
        assert state["pid"] == pid
        _check_network(state["network"], before, after, inst)
        assert cpu0 <= state["cpu"]["usage"] <= cpu1
        slack = 1 << 20   # an idle busybox moves its memory by a few pages at most
        assert min(mem0, mem1) - slack <= state["memory"]["usage"] <= max(mem0, mem1) + slack
        assert state["memory"]["usage_peak"] >= state["memory"]["usage"] - slack
        with open(_cgroup_file(pid, "pids", "cgroup.procs")) as f:
            assert state["processes"] == len(f.read().split())
        # the 1 MiB written inside is counted; the number is du's for the volume
        usage = state["disk"]["root"]["usage"]
        assert usage >= 1 << 20 and abs(usage - _du(daemon, inst.name)) <= 64 * 1024


def test_stopped_instance_state_and_listing(daemon, client, make_instance):
    inst = make_instance(start=False)
    state = client.api.instances[inst.name].state.get().json()["metadata"]
    assert state["status"] == "Stopped" and state["status_code"] == 102
    assert state["pid"] == 0 and state["processes"] == 0 and state["network"] is None
    assert state["memory"] == {"usage": 0, "usage_peak": 0, "swap_usage": 0,
                               "swap_usage_peak": 0}
    assert state["cpu"] == {"usage": 0}
    assert state["disk"]["root"]["usage"] == _du(daemon, inst.name)
    listed = _listing(client)[inst.name]
    assert listed["status"] == "Stopped" and listed["state"]["network"] is None
    assert listed["state"]["disk"] == state["disk"]


def test_listing_never_waits_on_disk_usage_and_fills_it_in(daemon, client, make_instance):
    """An instance nobody asked about yet: the listing leaves its disk out (as LXD
    does where it cannot tell) and has it within seconds, from the background."""
    inst = make_instance()
    res = inst.execute(["dd", "if=/dev/zero", "of=/root/blob", "bs=4096", "count=64"])
    assert res.exit_code == 0
    first = _listing(client)[inst.name]["state"]
    assert first["disk"] in ({}, {"root": {"usage": _du(daemon, inst.name)}})
    deadline = time.monotonic() + 15
    while not _listing(client)[inst.name]["state"]["disk"]:
        assert time.monotonic() < deadline, "disk usage never appeared in the listing"
        time.sleep(0.2)
    usage = _listing(client)[inst.name]["state"]["disk"]["root"]["usage"]
    assert usage >= 256 * 1024 and abs(usage - _du(daemon, inst.name)) <= 64 * 1024


def test_lxc_cli_list_default_columns(daemon, bridge, make_instance):
    """The stock `lxc list` (LXD 5.0's CLI) reads the listing: name, state, IPv4."""
    if subprocess.run(["which", "lxc"], capture_output=True).returncode != 0:
        pytest.skip("the lxc CLI is not installed (bindep: test)")
    inst = make_instance(devices={"eth0": {"type": "nic", "network": bridge, "name": "eth0"}})
    assert inst.execute(["ip", "addr", "add", f"{SUBNET}.11/24", "dev", "eth0"]).exit_code == 0
    inst.state()   # its disk usage known, so the listing has it
    env = dict(os.environ, LXD_DIR=daemon.lxd_dir, HOME=daemon.lxd_dir,
               LXD_CONF=os.path.join(daemon.lxd_dir, "cli-conf"))
    p = subprocess.run(["lxc", "list", "--format", "csv", "-c", "ns4NmD", inst.name],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    name, status, ipv4, procs, mem, disk = next(csv_row(p.stdout))
    assert (name, status) == (inst.name, "RUNNING")
    assert f"{SUBNET}.11 (eth0)" in ipv4
    assert int(procs) >= 1 and mem.endswith("iB") and disk.endswith("iB")


def csv_row(text: str):
    import csv
    import io
    yield from csv.reader(io.StringIO(text))
