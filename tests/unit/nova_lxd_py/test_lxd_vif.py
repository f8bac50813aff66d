"""Port to container nic mapping and the VIF translation (binding details to
what gets plugged): pure parts of nova_lxd_py.vif."""
import json
import unittest
from unittest import mock

from nova.network import model as network_model
from os_vif import objects as osv_objects

from nova import exception as nova_exception
from nova_lxd_py import vif
from nova_lxd_py.vif import translate

PORT_ID = "0123456789abcdef-0000"
NET_ID = "3cb9bc59-5699-4588-a4b1-b87f96708bc6"
PORT = {"id": PORT_ID, "type": "tap", "devname": "tap0123456789a",
        "address": "fa:16:3e:00:00:01", "network": {"meta": {"mtu": 1450}}}

osv_objects.register_all()


def nova_vif(vif_type="ovs", details=None, bridge="br-nlx", vnic_type="normal",
             port_id="5a1f1d1e-1111-2222-3333-444455556666", **extra):
    """A port as nova's network model carries it (what spawn receives)."""
    return network_model.VIF.hydrate({
        "id": port_id, "type": vif_type, "address": "fa:16:3e:12:34:56",
        "devname": ("tap" + port_id)[:14], "ovs_interfaceid": port_id,
        "vnic_type": vnic_type, "details": details or {}, "active": False,
        "network": {"id": NET_ID, "bridge": bridge, "label": "private",
                    "subnets": [{"cidr": "10.0.0.0/24", "ips": [
                        {"address": "10.0.0.5", "type": "fixed", "version": 4}],
                        "dns": [], "routes": [], "gateway": {"address": "10.0.0.1"}}],
                    "meta": {"mtu": 1450, "tunneled": True}},
        **extra})


class NamesAndDevicesTest(unittest.TestCase):
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


class TranslationTest(unittest.TestCase):
    def test_tap_is_a_bare_veth(self):
        plan = translate.plan(nova_vif("tap"))
        self.assertIsNone(plan.osvif)
        self.assertEqual("tap5a1f1d1e-11", plan.host_name)
        self.assertEqual("tin5a1f1d1e-11", plan.peer_name)
        self.assertEqual(1450, plan.mtu)
        self.assertEqual("fa:16:3e:12:34:56", plan.address)
        self.assertTrue(plan.tx_checksum)

    def test_ovs_native_goes_on_the_binding_bridge_and_creates_its_port(self):
        plan = translate.plan(nova_vif(details={"datapath_type": "netdev",
                                                "port_filter": True}))
        obj = plan.osvif
        self.assertIsInstance(obj, osv_objects.vif.VIFOpenVSwitch)
        self.assertFalse(plan.hybrid)
        self.assertIsNone(plan.linux_bridge)
        self.assertEqual("ovs", obj.plugin)
        self.assertEqual("tap5a1f1d1e-11", obj.vif_name)  # the veth's host end
        self.assertEqual("br-nlx", obj.network.bridge)
        self.assertEqual(1450, obj.network.mtu)
        self.assertEqual("fa:16:3e:12:34:56", obj.address)
        profile = obj.port_profile
        self.assertEqual("5a1f1d1e-1111-2222-3333-444455556666", profile.interface_id)
        self.assertEqual("netdev", profile.datapath_type)
        self.assertTrue(profile.create_port, "no hypervisor adds the veth to the bridge")
        self.assertFalse(profile.create_tap, "the device is our veth, not a tap")
        self.assertEqual("netdev", plan.datapath_type)
        self.assertFalse(plan.tx_checksum, "userspace datapath: checksums in the guest")

    def test_ovs_kernel_datapath_keeps_offloads(self):
        for details in ({"datapath_type": "system"}, {}):
            plan = translate.plan(nova_vif(details=details))
            self.assertEqual("system", plan.datapath_type)
            self.assertTrue(plan.tx_checksum)

    def test_ovs_hybrid_uses_the_per_port_linux_bridge(self):
        plan = translate.plan(nova_vif(details={"ovs_hybrid_plug": True,
                                                "datapath_type": "netdev"}))
        obj = plan.osvif
        self.assertIsInstance(obj, osv_objects.vif.VIFBridge)
        self.assertTrue(plan.hybrid)
        self.assertEqual("qbr5a1f1d1e-11", plan.linux_bridge)
        self.assertEqual("br-nlx", obj.network.bridge)  # where os-vif puts qvo
        self.assertEqual("tap5a1f1d1e-11", obj.vif_name)
        self.assertFalse(plan.tx_checksum)

    def test_refused_types_name_the_type_and_what_is_supported(self):
        cases = {"bridge": "Linux bridge", "vhostuser": "vhost-user",
                 "binding_failed": "could not bind", "unbound": "not bound",
                 "hw_veb": "'hw_veb'", None: "None"}
        for vif_type, words in cases.items():
            with self.assertRaises(nova_exception.VirtualInterfacePlugException) as ctx:
                translate.plan(nova_vif(vif_type))
            message = str(ctx.exception)
            self.assertIn(repr(vif_type), message)
            self.assertIn(words, message)
            self.assertIn("ovs, tap", message)
            self.assertIn("5a1f1d1e-1111", message)

    def test_refuses_passthrough_vnic_types(self):
        for vnic in ("direct", "remote-managed", "vdpa"):
            with self.assertRaises(nova_exception.VirtualInterfacePlugException) as ctx:
                translate.plan(nova_vif(vnic_type=vnic))
            self.assertIn(repr(vnic), str(ctx.exception))

    def test_ovs_without_network_is_refused(self):
        bare = network_model.VIF(id="p1", type="ovs", address="fa:16:3e:00:00:09")
        with self.assertRaises(nova_exception.VirtualInterfacePlugException):
            translate.plan(bare)

    def test_plug_checks_before_touching_anything(self):
        with mock.patch.object(vif.privsep, "create_veth") as create:
            self.assertRaises(nova_exception.VirtualInterfacePlugException,
                              vif.plug, None, nova_vif("vhostuser"))
        create.assert_not_called()


class RecordTest(unittest.TestCase):
    def test_record_is_enough_to_unplug_the_same_way(self):
        for details in ({"ovs_hybrid_plug": True, "datapath_type": "netdev"},
                        {"datapath_type": "netdev", "bridge_name": "br-nlx"}, {}):
            original = nova_vif(details=details)
            config = {translate.record_key(original["id"]): translate.record(original),
                      "user.other": "x", "limits.cpu": "1"}
            [back] = translate.recorded(config)
            a, b = translate.plan(original), translate.plan(back)
            self.assertEqual((a.host_name, a.peer_name, a.hybrid, a.datapath_type, a.mtu),
                             (b.host_name, b.peer_name, b.hybrid, b.datapath_type, b.mtu))
            self.assertEqual(a.osvif.network.bridge, b.osvif.network.bridge)
            self.assertEqual(a.osvif.port_profile.interface_id,
                             b.osvif.port_profile.interface_id)
            self.assertLess(len(config[translate.record_key(original["id"])]), 600)

    def test_unreadable_records_are_skipped(self):
        self.assertEqual([], translate.recorded({translate.RECORD_PREFIX + "x": "{not json"}))
        self.assertEqual([], translate.recorded({translate.RECORD_PREFIX + "y": "[]"}))

    def test_leftovers_are_the_recorded_ports_nova_did_not_list(self):
        listed, forgotten = nova_vif(port_id="aaaa"), nova_vif(port_id="bbbb")
        data = {"config": {translate.record_key(v["id"]): translate.record(v)
                           for v in (listed, forgotten)},
                "devices": {"eth0": {"type": "nic", "nictype": "physical",
                                     "parent": "tinbbbb"},
                            "eth9": {"type": "nic", "nictype": "physical",
                                     "parent": "enp3s0"}}}
        with mock.patch.object(vif, "unplug") as unplug, \
                mock.patch.object(vif.privsep, "delete_link") as delete_link:
            vif.unplug_leftovers(None, data, [listed])
        self.assertEqual(["bbbb"], [c.args[1]["id"] for c in unplug.call_args_list])
        delete_link.assert_called_once_with("tinbbbb")  # never the real NIC

    def test_record_is_json_with_the_binding_details_that_matter(self):
        rec = json.loads(translate.record(nova_vif(details={
            "ovs_hybrid_plug": True, "port_filter": True, "datapath_type": "netdev",
            "connectivity": "l2", "bound_drivers": {"0": "openvswitch"}})))
        self.assertEqual({"ovs_hybrid_plug": True, "port_filter": True,
                          "datapath_type": "netdev"}, rec["details"])
        self.assertEqual([], rec["network"]["subnets"])


if __name__ == "__main__":
    unittest.main()
