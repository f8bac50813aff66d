"""The devices coordinator's hot-plug order, with recording device types (no
containers): removals first, limits-only changes in place, a failed plug undone."""
import asyncio

import pytest

from runtime.errors import BadRequest
from runtime.instances import devices
from runtime.instances.devices.base import Device, only_limits_changed


class Recorder(Device):
    calls: list = []
    fail_on: str | None = None

    def updatable(self, old, new):
        return only_limits_changed(old, new, ("limits.max",))

    async def update(self, inst, pid, name, old, new):
        if not self.updatable(old, new):
            return False
        self.calls.append(("update", name))
        return True

    async def plug(self, inst, pid, name, dev, set_volatile):
        if name == self.fail_on:
            raise BadRequest(f"cannot plug {name}")
        self.calls.append(("plug", name))
        set_volatile({f"volatile.{name}.plugged": "1"})

    async def unplug(self, inst, pid, name, dev, set_volatile):
        self.calls.append(("unplug", name))
        return True


class Inst:
    name = "c1"

    def __init__(self, devs):
        self.expanded_devices = devs


class Instances:
    def __init__(self):
        self.volatile = {}

    def pid(self, inst):
        return 4242

    def set_volatile(self, inst, values):
        self.volatile.update(values)


class Daemon:
    def __init__(self):
        self.instances = Instances()


@pytest.fixture
def coordinator(monkeypatch):
    monkeypatch.setitem(devices.TYPES, "disk", Recorder)
    Recorder.calls = []
    Recorder.fail_on = None
    return devices.Devices(Daemon())


def test_removals_first_limits_in_place(coordinator):
    old = {"a": {"type": "disk", "path": "/a", "limits.max": "1MB"},
           "b": {"type": "disk", "path": "/b"}}
    new = {"a": {"type": "disk", "path": "/a", "limits.max": "2MB"},
           "c": {"type": "disk", "path": "/c"}}
    asyncio.run(coordinator.hotplug(Inst(new), old))
    assert Recorder.calls == [("unplug", "b"), ("update", "a"), ("plug", "c")]
    assert coordinator.d.instances.volatile == {"volatile.c.plugged": "1"}


def test_failed_plug_is_undone(coordinator):
    Recorder.fail_on = "z"
    new = {"y": {"type": "disk", "path": "/y"}, "z": {"type": "disk", "path": "/z"}}
    with pytest.raises(BadRequest, match="cannot plug z"):
        asyncio.run(coordinator.hotplug(Inst(new), {}))
    assert Recorder.calls == [("plug", "y"), ("unplug", "y")]


def test_unsupported_types_are_refused(coordinator):
    with pytest.raises(BadRequest, match="type 'gpu' is not supported"):
        asyncio.run(coordinator.hotplug(Inst({"g": {"type": "gpu"}}), {}))
    assert devices.device_class({"type": "nic", "nictype": "macvlan"}).__name__ == "MacvlanNic"
    assert devices.device_class({"type": "nic"}).__name__ == "BridgedNic"
    assert devices.device_class({"type": "unix-block"}).__name__ == "Unix"


def test_lxc_lines_per_type(tmp_path):
    src = tmp_path / "vol"
    src.mkdir()
    lines = devices.lxc_lines(
        {"eth0": {"type": "nic", "nictype": "bridged", "parent": "br0", "mtu": "1400"},
         "eth1": {"type": "nic", "nictype": "p2p", "name": "e1"},
         "eth2": {"type": "nic", "nictype": "macvlan", "parent": "dummy0"},
         "eth3": {"type": "nic", "nictype": "physical", "parent": "dummy1"},
         "data": {"type": "disk", "path": "/srv/data", "source": str(src), "readonly": "true"},
         "root": {"type": "disk", "path": "/", "pool": "default"}},
        {"volatile.eth0.hwaddr": "00:16:3e:00:00:01", "volatile.eth0.host_name": "vethA",
         "volatile.eth1.host_name": "vethB"}, {})
    assert lines[0] == f"lxc.mount.entry = {src} srv/data none bind,create=dir,ro 0 0"
    assert lines[1:8] == ["lxc.net.0.type = veth", "lxc.net.0.link = br0",
                          "lxc.net.0.veth.pair = vethA", "lxc.net.0.flags = up",
                          "lxc.net.0.name = eth0", "lxc.net.0.hwaddr = 00:16:3e:00:00:01",
                          "lxc.net.0.mtu = 1400"]
    assert lines[8:12] == ["lxc.net.1.type = veth", "lxc.net.1.veth.pair = vethB",
                           "lxc.net.1.flags = up", "lxc.net.1.name = e1"]
    assert lines[12:15] == ["lxc.net.2.type = macvlan", "lxc.net.2.macvlan.mode = bridge",
                            "lxc.net.2.link = dummy0"]
    assert lines[17:19] == ["lxc.net.3.type = phys", "lxc.net.3.link = dummy1"]
    with pytest.raises(BadRequest, match="nictype 'ipvlan' is not supported"):
        devices.lxc_lines({"e": {"type": "nic", "nictype": "ipvlan"}}, {}, {})
    with pytest.raises(BadRequest, match="bridged needs 'parent' or 'network'"):
        devices.lxc_lines({"e": {"type": "nic"}}, {}, {})
