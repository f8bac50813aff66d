"""Port to container nic mapping (pure parts of vif.py)."""
import unittest

from nova import exception as nova_exception

from nova_lxd_py import vif

PORT = {"id": "0123456789abcdef-0000", "type": "tap", "devname": "tap0123456789a",
        "address": "fa:16:3e:00:00:01", "network": {"meta": {"mtu": 1450}}}


class VifTest(unittest.TestCase):
    def test_names_fit_ifnamsiz(self):
        self.assertEqual("tap0123456789a", vif.host_name(PORT))
        self.assertEqual("tin0123456789a", vif.peer_name(PORT))
        self.assertLessEqual(len(vif.peer_name({"id": "x" * 40})), 14)

    def test_nic_device(self):
        name, device = vif.nic_device(1, PORT)
        self.assertEqual("eth1", name)
        self.assertEqual({"type": "nic", "nictype": "physical", "parent": "tin0123456789a",
                          "name": "eth1", "hwaddr": "fa:16:3e:00:00:01", "mtu": "1450"},
                         device)

    def test_next_nic_name_and_find(self):
        devices = {"root": {"type": "disk"}, "eth0": {"type": "nic", "parent": "x"},
                   "eth2": {"type": "nic", "parent": vif.peer_name(PORT)}}
        self.assertEqual(1, vif.next_nic_name(devices))
        self.assertEqual(0, vif.next_nic_name({}))
        self.assertEqual("eth2", vif.find_nic(devices, PORT))
        self.assertIsNone(vif.find_nic({}, PORT))

    def test_kbit(self):
        self.assertEqual(8000, vif.kbit("8000kbit"))

    def test_unsupported_vif_type_is_a_clear_error(self):
        with self.assertRaises(nova_exception.VirtualInterfacePlugException) as ctx:
            vif.plug(None, dict(PORT, type="ovs"))
        self.assertIn("'ovs'", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
