"""Image metadata generation and format detection (pure parts of image.py)."""
import hashlib
import io
import os
import tarfile
import tempfile
import unittest

import yaml

from nova_lxd_py import image


def _tar(path, names):
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))


class ImageMetadataTest(unittest.TestCase):
    def test_metadata_yaml(self):
        doc = yaml.safe_load(image.metadata_yaml("abc", "Debian", "aarch64", created=7))
        self.assertEqual("aarch64", doc["architecture"])
        self.assertEqual(7, doc["creation_date"])
        self.assertEqual("abc", doc["properties"]["glance_id"])

    def test_arch_names(self):
        self.assertEqual("x86_64", image.runtime_arch("amd64"))
        self.assertEqual("aarch64", image.runtime_arch("aarch64"))
        self.assertEqual(os.uname().machine, image.runtime_arch(None))

    def test_metadata_tarball_is_deterministic(self):
        one = image.metadata_tarball("architecture: x86_64\n")
        self.assertEqual(one, image.metadata_tarball("architecture: x86_64\n"))
        with tarfile.open(fileobj=io.BytesIO(one)) as tar:
            self.assertEqual(["metadata.yaml"], tar.getnames())

    def test_unified_detection(self):
        with tempfile.TemporaryDirectory() as tmp:
            unified = os.path.join(tmp, "u.tar.gz")
            _tar(unified, ["metadata.yaml", "rootfs/bin/sh"])
            rootfs = os.path.join(tmp, "r.tar.gz")
            _tar(rootfs, ["./bin/sh", "./etc/hostname"])
            dot = os.path.join(tmp, "d.tar")
            _tar(dot, ["./metadata.yaml", "./rootfs/etc/hostname"])
            self.assertTrue(image.is_unified_tarball(unified))
            self.assertFalse(image.is_unified_tarball(rootfs))
            self.assertTrue(image.is_unified_tarball(dot))
            junk = os.path.join(tmp, "junk")
            with open(junk, "wb") as f:
                f.write(b"not a tarball at all")
            with self.assertRaises(ValueError):
                image.is_unified_tarball(junk)

    def test_split_fingerprint_is_sha256_of_metadata_then_rootfs(self):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"rootfs-bytes")
            f.flush()
            self.assertEqual(hashlib.sha256(b"meta" + b"rootfs-bytes").hexdigest(),
                             image.sha256_of(b"meta", f.name))
            self.assertEqual(hashlib.sha256(b"rootfs-bytes").hexdigest(),
                             image.sha256_of(f.name))


class UnusedAliasesTest(unittest.TestCase):
    A = "11111111-2222-3333-4444-555555555555"
    B = "66666666-7777-8888-9999-000000000000"

    def test_selection(self):
        aliases = [{"name": self.A, "target": "fa"}, {"name": self.B, "target": "fb"},
                   {"name": "nlx-busybox", "target": "fa"}]
        uploaded = {"fa": 0.0, "fb": 1000.0}
        self.assertEqual([self.A], image.unused_aliases(aliases, uploaded, {self.B}, 10, 2000))
        # too young to go
        self.assertEqual([], image.unused_aliases(aliases, uploaded, {self.A}, 1500, 2000))
        # operator aliases (not Glance ids) are never touched
        self.assertEqual([self.A, self.B], image.unused_aliases(aliases, uploaded, set(), 0, 2000))


if __name__ == "__main__":
    unittest.main()
