"""Which ephemeral disks an instance gets, where they are mounted; swap refused."""
from types import SimpleNamespace

import pytest

from nova_lxd_py import ephemeral, exception, flavor


def test_flavor_ephemeral_is_one_disk_at_mnt():
    assert ephemeral.plan(2, None, {}) == [ephemeral.Disk(0, 2, "/mnt")]
    assert ephemeral.plan(0, None, {}) == []


def test_mapped_ephemerals_win_over_the_flavor():
    bdi = {"ephemerals": [{"size": 1, "device_name": "/dev/vdb"},
                          {"size": 3, "device_name": "/dev/vdc"}]}
    assert ephemeral.plan(4, bdi, {}) == [ephemeral.Disk(0, 1, "/mnt"),
                                          ephemeral.Disk(1, 3, "/mnt/ephemeral1")]


def test_image_property_moves_the_first_disk():
    meta = {"image_lxd_ephemeral_path": "/srv/scratch/"}
    assert ephemeral.plan(1, None, meta)[0].path == "/srv/scratch"


@pytest.mark.parametrize("path", ["relative", "/", "/proc/x", "/dev", "/a/../etc", "/sys"])
def test_bad_image_paths_are_refused(path):
    with pytest.raises(exception.InvalidImageProperty):
        ephemeral.image_mount_path({"image_lxd_ephemeral_path": path})


def test_devices_name_the_instances_volumes():
    disks = ephemeral.plan(1, None, {})
    assert ephemeral.devices("default", "inst-1", disks) == {
        "ephemeral0": {"type": "disk", "pool": "default", "source": "inst-1-eph0",
                       "path": "/mnt"}}


def test_swap_is_refused():
    flavor.check_swap(SimpleNamespace(name="ok", swap=0))
    with pytest.raises(exception.SwapNotSupported, match="swap"):
        flavor.check_swap(SimpleNamespace(name="m1.swap", swap=512))


def test_one_mapped_ephemeral_follows_the_flavor_after_a_resize():
    bdi = {"ephemerals": [{"size": 1, "device_name": "/dev/vdb"}]}
    assert ephemeral.plan(2, bdi, {}) == [ephemeral.Disk(0, 2, "/mnt")]
