"""File capabilities survive the id shift of an image into a container's map.

chown drops `security.capability`, and a capability only counts in a user
namespace whose root owns it (v3 rootid). An image file with cap_net_raw (as
Debian's ping has) must give that capability to an unprivileged user inside an
unprivileged container, and to one inside a privileged container.
"""
import os
import struct
import subprocess
import tarfile
import tempfile
import uuid

import pytest

from tests.functional.runtime.harness import BUSYBOX

CAP_NET_RAW = 13
V2_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << CAP_NET_RAW, 0, 0, 0)


@pytest.fixture(scope="module")
def caps_image(client):
    """The busybox image plus /opt/cap/busybox: busybox with cap_net_raw+ep (a v2
    xattr; busybox picks its applet from argv[0], so the copy keeps the name)."""
    work = tempfile.mkdtemp(prefix="nlr-caps-", dir="/var/tmp")
    try:
        subprocess.run(["tar", "-xf", BUSYBOX, "-C", work], check=True)
        os.makedirs(os.path.join(work, "rootfs", "opt", "cap"))
        capbox = os.path.join(work, "rootfs", "opt", "cap", "busybox")
        with open(os.path.join(work, "rootfs", "bin", "busybox"), "rb") as src, \
                open(capbox, "wb") as dst:
            dst.write(src.read())
        os.chmod(capbox, 0o755)
        os.setxattr(capbox, "security.capability", V2_NET_RAW)
        tarball = os.path.join(work, "caps.tar")
        subprocess.run(["tar", "-cf", tarball, "--xattrs", "--xattrs-include=*",
                        "--numeric-owner", "-C", work, "metadata.yaml", "templates",
                        "rootfs"], check=True)
        with open(tarball, "rb") as f:
            image = client.images.create(f.read(), wait=True)
    finally:
        subprocess.run(["rm", "-rf", work], check=False)
    yield image
    image.delete(wait=True)


def _launch(client, image, config):
    name = f"t-caps-{uuid.uuid4().hex[:6]}"
    inst = client.instances.create({"name": name, "config": config,
                                    "source": {"type": "image",
                                               "fingerprint": image.fingerprint}}, wait=True)
    inst.start(wait=True)
    return inst


def _cap_eff_as_user(inst) -> int:
    """CapEff of /opt/cap/busybox run by uid 1000 (busybox runs grep in that process)."""
    res = inst.execute(["/opt/cap/busybox", "grep", "CapEff", "/proc/self/status"], user=1000,
                       group=1000)
    assert res.exit_code == 0, res.stderr
    return int(res.stdout.split()[1], 16)


@pytest.mark.parametrize("privileged", [False, True], ids=["unprivileged", "privileged"])
def test_image_file_capability_counts_in_container(client, caps_image, privileged):
    config = {"security.privileged": "true"} if privileged else {}
    inst = _launch(client, caps_image, config)
    try:
        assert _cap_eff_as_user(inst) == 1 << CAP_NET_RAW
        # Without the file capability, the same user has none.
        res = inst.execute(["grep", "CapEff", "/proc/self/status"], user=1000, group=1000)
        assert int(res.stdout.split()[1], 16) == 0
    finally:
        inst.stop(force=True, wait=True)
        inst.delete(wait=True)


def test_capability_names_container_root_on_disk(daemon, client, caps_image):
    """The image volume holds a v3 capability owned by the container root's host id."""
    pool = os.path.join(daemon.lxd_dir, "storage-pools", "default", "images",
                        caps_image.fingerprint, "rootfs", "opt", "cap", "busybox")
    inst = _launch(client, caps_image, {})
    try:
        value = os.getxattr(pool, "security.capability")
        magic, permitted, _inh, _p2, _i2, rootid = struct.unpack("<6I", value)
        assert magic == 0x03000001 and permitted == 1 << CAP_NET_RAW
        # The container root's host id: the owner of the file (root:root in the image).
        assert rootid == os.stat(pool).st_uid != 0
    finally:
        inst.stop(force=True, wait=True)
        inst.delete(wait=True)


def test_tar_roundtrip_keeps_v2(tmp_path):
    """Guard for the fixture itself: GNU tar carries the capability xattr."""
    f = tmp_path / "x"
    f.write_bytes(b"x")
    os.setxattr(f, "security.capability", V2_NET_RAW)
    subprocess.run(["tar", "-cf", str(tmp_path / "t.tar"), "--xattrs", "--xattrs-include=*",
                    "-C", str(tmp_path), "x"], check=True)
    with tarfile.open(tmp_path / "t.tar") as t:
        member = t.getmember("x")
        assert "SCHILY.xattr.security.capability" in member.pax_headers
