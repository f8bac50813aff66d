"""Neutron ports reach the containers: veth pairs, MACs and fixed IPs.

nova 34 refuses Linux bridge bindings, so the ports are bound as ``tap``
(the compute makes the device, the network backend wires it). The test plays
the backend: it makes a Linux bridge of its own and enslaves the host ends
the driver created, then checks that two servers on two compute hosts got
their port's MAC and fixed IP (from the NoCloud seed) and reach each other.
"""
from __future__ import annotations

import nlx_threads  # noqa: F401 - first: nova in native threads (see the module)

import copy
import os
import subprocess
import time

import fixtures
from pyroute2 import IPRoute

from nova import context as nova_context
from nova import objects

import test_lxd_servers
from nova_lxd_py import privsep


class LXDNetworkTest(test_lxd_servers.LXDServersBase):
    def setUp(self):
        super().setUp()
        # Tests run as root: call the privileged helpers in-process.
        self.useFixture(fixtures.MockPatchObject(privsep.net_pctxt, "client_mode", False))
        self.neutron._ports[self.neutron.port_1["id"]]["binding:vif_type"] = "tap"
        self.neutron.default_port = copy.deepcopy(self.neutron.default_port)
        self.neutron.default_port["binding:vif_type"] = "tap"
        self.bridge = f"nlxbr{os.getpid() % 100000}"
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.bridge, kind="bridge")
            ipr.link("set", index=ipr.link_lookup(ifname=self.bridge)[0], state="up")
        self.addCleanup(self._del_link, self.bridge)

    @staticmethod
    def _del_link(name: str) -> None:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if found:
                ipr.link("del", index=found[0])

    def _enslave(self, port_id: str) -> str:
        devname = ("tap" + port_id)[:14]
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=devname)
            self.assertTrue(found, f"driver did not create {devname}")
            ipr.link("set", index=found[0], master=ipr.link_lookup(ifname=self.bridge)[0])
        return devname

    def _boot_on(self, name: str, host: str, networks: list, flavor_id=None) -> dict:
        server = self._build_server(name=name, image_uuid=self.image_id,
                                    flavor_id=flavor_id or self.flavor_id, networks=networks)
        server["host"] = host
        self._track_images(self.image_id)
        return self._wait_for_state_change(self.api.post_server({"server": server}), "ACTIVE")

    def test_ports_wired_with_mac_and_fixed_ip(self):
        port_1 = self.neutron.port_1
        net_id = self.neutron.network_1["id"]
        shaped = self._create_flavor(name="nlx.shaped", vcpu=1, memory_mb=128, disk=1,
                                     ephemeral=0,
                                     extra_spec={"quota:vif_inbound_average": "1000"})
        one = self._boot_on("nlx-net1", test_lxd_servers.COMPUTE_HOSTS[0],
                            [{"port": port_1["id"]}], flavor_id=shaped)
        two = self._boot_on("nlx-net2", test_lxd_servers.COMPUTE_HOSTS[1],
                            [{"uuid": net_id}])
        port_2 = [p for p in self.neutron._ports.values()
                  if p.get("device_id") == two["id"]][0]
        taps = [self._enslave(port_1["id"]), self._enslave(port_2["id"])]
        qdisc = subprocess.run(["tc", "qdisc", "show", "dev", taps[0]], capture_output=True,
                               text=True).stdout
        self.assertIn("tbf", qdisc)
        self.assertIn("8Mbit", qdisc)  # 1000 KB/s inbound average

        link = self._exec(one, "ip", "-o", "link", "show", "eth0")
        self.assertIn(port_1["mac_address"], link)
        addr = self._exec(one, "ip", "-o", "-4", "addr", "show", "eth0")
        self.assertIn(port_1["fixed_ips"][0]["ip_address"] + "/24", addr)
        ip_2 = port_2["fixed_ips"][0]["ip_address"]
        self.assertIn(ip_2 + "/24", self._exec(two, "ip", "-o", "-4", "addr", "show", "eth0"))
        self._exec(one, "ping", "-c", "1", "-W", "5", ip_2)

        for server in (one, two):
            self._delete_server(server)
        self._assert_runtimes_empty()
        with IPRoute() as ipr:
            for tap in taps:
                self.assertEqual([], ipr.link_lookup(ifname=tap), f"{tap} left behind")

    def test_rescue_keeps_the_ports(self):
        """The rescue container gets the instance's ports (same MAC and fixed IP),
        and gives them back at unrescue."""
        port_1 = self.neutron.port_1
        server = self._boot_on("nlx-net-rescue", test_lxd_servers.COMPUTE_HOSTS[0],
                               [{"port": port_1["id"]}])
        self._enslave(port_1["id"])
        # nova's Neutron fixture leaves this server's network info cache empty after
        # the boot (server["addresses"] is {}): refresh it as the heal task would.
        ctxt = nova_context.get_admin_context()
        self.computes[server["OS-EXT-SRV-ATTR:host"]].manager.network_api.get_instance_nw_info(
            ctxt, objects.Instance.get_by_uuid(ctxt, server["id"]), force_refresh=True)
        self.api.post_server_action(server["id"], {"rescue": {}})
        server = self._wait_for_state_change(server, "RESCUE")
        rescue = self.runtimes[server["OS-EXT-SRV-ATTR:host"]].client.instances.get(
            server["OS-EXT-SRV-ATTR:instance_name"] + "-rescue")
        link = rescue.execute(["ip", "-o", "link", "show", "eth0"])
        self.assertIn(port_1["mac_address"], link.stdout, link.stderr)
        deadline = time.monotonic() + 10
        while port_1["fixed_ips"][0]["ip_address"] not in rescue.execute(
                ["ip", "-o", "-4", "addr", "show", "eth0"]).stdout:
            self.assertLess(time.monotonic(), deadline, "rescue got no fixed IP")
            time.sleep(0.1)
        self.api.post_server_action(server["id"], {"unrescue": {}})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertIn(port_1["mac_address"],
                      self._exec(server, "ip", "-o", "link", "show", "eth0"))
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_diagnostics(self):
        """Server diagnostics through the API: cpu time, memory used against the
        flavor's limit, the port's counters under its MAC, the root disk."""
        port_1 = self.neutron.port_1
        server = self._boot_on("nlx-diag", test_lxd_servers.COMPUTE_HOSTS[0],
                               [{"port": port_1["id"]}])
        self._enslave(port_1["id"])
        self._exec(server, "sh", "-c", "ping -c 3 -i 0.2 -W 1 192.168.1.1 || true")
        self.admin_api.microversion = "2.48"
        self.addCleanup(setattr, self.admin_api, "microversion", self.microversion)
        diags = self.admin_api.api_get(f"/servers/{server['id']}/diagnostics").body
        self.assertEqual("running", diags["state"])
        self.assertEqual("lxd", diags["hypervisor"])
        self.assertGreater(diags["cpu_details"][0]["time"], 0)
        self.assertEqual(128, diags["memory_details"]["maximum"])
        self.assertGreater(diags["memory_details"]["used"], 0)
        self.assertEqual(1, diags["num_nics"])
        nic = diags["nic_details"][0]
        self.assertEqual(port_1["mac_address"], nic["mac_address"])
        self.assertGreater(nic["tx_packets"], 0)
        self.assertEqual(1, diags["num_disks"])
        self.admin_api.microversion = "2.47"  # the legacy flat form
        legacy = self.admin_api.api_get(f"/servers/{server['id']}/diagnostics").body
        self.assertGreater(legacy["eth0_tx_packets"], 0)
        self.assertGreater(legacy["root_usage"], 0)
        self.assertGreater(legacy["memory-actual"], 0)
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_attach_and_detach_interface(self):
        server = self._boot_on("nlx-hot", test_lxd_servers.COMPUTE_HOSTS[0], "none")
        net_id = self.neutron.network_1["id"]
        attachment = self.api.attach_interface(
            server["id"], {"interfaceAttachment": {"net_id": net_id}}).body["interfaceAttachment"]
        port_id = attachment["port_id"]
        mac = attachment["mac_addr"]
        self.assertIn(mac, self._exec(server, "ip", "-o", "link", "show", "eth0"))
        tap = ("tap" + port_id)[:14]
        with IPRoute() as ipr:
            self.assertTrue(ipr.link_lookup(ifname=tap))

        self.api.detach_interface(server["id"], port_id)
        self._wait_for_port_detached(server, port_id)
        result = self._container(server).execute(["ip", "link", "show", "eth0"])
        self.assertNotEqual(0, result.exit_code, "eth0 still in the container")
        with IPRoute() as ipr:
            self.assertEqual([], ipr.link_lookup(ifname=tap), f"{tap} left behind")
        self._delete_server(server)
        self._assert_runtimes_empty()
