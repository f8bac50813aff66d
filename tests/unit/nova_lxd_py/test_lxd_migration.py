"""Migration offer and pull body (pure parts of migration.py)."""
import json
import unittest

from nova_lxd_py import migration

HOST = {"environment": {"addresses": ["127.0.0.1:8443"], "certificate": "PEM"}}


class MigrationTest(unittest.TestCase):
    def test_offer_roundtrip(self):
        disk_info = migration.offer("op-1", {"control": "c", "fs": "f", "other": "x"}, HOST)
        body = migration.target_body("inst", disk_info, ["default"], {"limits.cpu": "2"},
                                     {"root": {"type": "disk"}})
        self.assertEqual({"type": "migration", "mode": "pull",
                          "operation": "https://127.0.0.1:8443/1.0/operations/op-1",
                          "secrets": {"control": "c", "fs": "f"}, "certificate": "PEM"},
                         body["source"])
        self.assertEqual("2", body["config"]["limits.cpu"])
        self.assertEqual(1, json.loads(disk_info)["version"])

    def test_no_https_is_a_clear_error(self):
        with self.assertRaises(migration.NoHTTPSAddress) as ctx:
            migration.https_url({"environment": {"addresses": []}})
        self.assertIn("core.https_address", str(ctx.exception))

    def test_foreign_disk_info_rejected(self):
        with self.assertRaises(ValueError):
            migration.target_body("i", "{}", [], {}, {})
