"""Where a pool disk's source leads, without a daemon: only to a volume the
instance's project holds, or (container/<name>) to a plainly named instance."""
from types import SimpleNamespace

import pytest

from runtime.db.storage_volumes import StorageVolumes
from runtime.errors import BadRequest
from runtime.instances import devices


class _DB:
    def __init__(self, rows):
        self.rows = rows

    def get(self, table, **key):
        assert table == "storage_volumes"
        return next((r for r in self.rows if all(r.get(k) == v for k, v in key.items())),
                    None)


def _devices(rows, volumes_project="default"):
    pool = SimpleNamespace(custom_dir=lambda vol: f"/pool/custom/{vol}",
                           rootfs=lambda vol: f"/pool/containers/{vol}/rootfs")
    d = SimpleNamespace(volume_rows=StorageVolumes(_DB(rows)),
                        pools=SimpleNamespace(get=lambda name: pool),
                        volume_project=lambda project: volumes_project)
    return devices.Devices(d).disks


INST = SimpleNamespace(project="shared", name="i1")
ROWS = [{"pool": "default", "project": "default", "type": "custom", "name": "data"},
        {"pool": "default", "project": "p2", "type": "custom", "name": "vol"}]


def test_a_volume_of_the_project_is_found():
    dev = {"type": "disk", "pool": "default", "source": "data", "path": "/mnt"}
    assert _devices(ROWS)._volume_path(INST, dev) == "/pool/custom/data"


@pytest.mark.parametrize("source", ["p2_vol", "vol", "nothere", "data/../p2_vol", "..", "."])
def test_another_projects_volume_or_a_path_is_refused(source):
    """On disk the default project's volumes are plain names: "p2_vol" there is p2's."""
    dev = {"type": "disk", "pool": "default", "source": source, "path": "/mnt"}
    with pytest.raises(BadRequest):
        _devices(ROWS)._volume_path(INST, dev)


@pytest.mark.parametrize("source,name", [
    ("container/c1", "c1"), ("container/", None), ("container/../c1", None),
    ("container/a/b", None), ("container/..", None), ("container/.", None),
    ("c1", None)])
def test_instance_volume_names_are_plain(source, name):
    assert devices.instance_volume({"type": "disk", "pool": "default",
                                    "source": source}) == name
    assert devices.instance_volume({"type": "disk", "source": source}) is None
