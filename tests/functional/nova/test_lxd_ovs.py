"""Neutron's Open vSwitch ports on real containers, through os-vif, with a real OVS.

Each test starts its own ovsdb-server and ovs-vswitchd (nlx_ovs) with one
integration bridge per compute host on the userspace datapath, joined by a
patch port pair (the way br-int and br-tun meet). nova's Neutron fixture binds
the ports as ``ovs``; the binding details name the host's bridge, the netdev
datapath and, per host, hybrid plugging, as ML2/OVS would. With no Neutron
agent the bridges forward as learning switches, which is enough to show the
wiring: MACs, MTU, addresses, ping and a TCP transfer between containers on
the two hosts, and nothing left behind.
"""
from __future__ import annotations

import nlx_threads  # noqa: F401 - first: nova in native threads (see the module)

import copy
import time

import fixtures
from vif_plug_ovs import privsep as os_vif_privsep

from nova import context as nova_context
from nova import objects

import nlx_ovs
import test_lxd_servers
from nova_lxd_py import privsep

HOSTS = test_lxd_servers.COMPUTE_HOSTS
EXTERNAL_IDS = ("iface-id", "iface-status", "attached-mac", "vm-uuid")


class LXDOVSBase(test_lxd_servers.LXDServersBase):
    def setUp(self):
        why = nlx_ovs.available()
        if why:
            self.skipTest(why)
        super().setUp()
        # Tests run as root: both privsep contexts run in-process
        # (test_privsep_rootwrap starts ours through rootwrap for real).
        self.useFixture(fixtures.MockPatchObject(privsep.net_pctxt, "client_mode", False))
        self.useFixture(fixtures.MockPatchObject(os_vif_privsep.vif_plug, "client_mode",
                                                 False))
        # Host devices of this test's ports go even when a test fails half-way
        # (the runtime fixture removes containers, the OVS fixture its bridges);
        # the fixture reuses port ids across tests, so stale ones go first.
        self._remove_port_devices()
        self.addCleanup(self._remove_port_devices)
        self.ovs = self.useFixture(nlx_ovs.OVSFixture())
        self.bridges = {host: self.ovs.add_bridge(str(n + 1)) for n, host in enumerate(HOSTS)}
        self.ovs.patch(*self.bridges.values())
        self.ovs.use_with_os_vif(self)
        self.hybrid_hosts: set[str] = set()
        self._bind_like_ml2_ovs()

    def _bind_like_ml2_ovs(self) -> None:
        """Binding details per host, as the OVS mechanism driver sends them."""
        update_port = self.neutron.update_port

        def bind(port_id, body=None):
            host = ((body or {}).get("port") or {}).get("binding:host_id")
            if host in self.bridges:
                body = copy.deepcopy(body)
                body["port"]["binding:vif_details"] = {
                    "bridge_name": self.bridges[host], "datapath_type": "netdev",
                    "port_filter": True, "connectivity": "l2",
                    "ovs_hybrid_plug": host in self.hybrid_hosts}
            return update_port(port_id, body)
        self.neutron.update_port = bind

    def _remove_port_devices(self) -> None:
        ids = set(self.neutron._ports) | {self.neutron.default_port["id"]}
        names = {name for port_id in ids for name in self._names(port_id).values()}
        nlx_ovs.delete_links(names & nlx_ovs.link_names())

    # -- helpers -------------------------------------------------------------------
    def _boot_on(self, name: str, host: str, networks, wait: str = "ACTIVE") -> dict:
        server = self._build_server(name=name, image_uuid=self.image_id,
                                    flavor_id=self.flavor_id, networks=networks)
        server["host"] = host
        self._track_images(self.image_id)
        return self._wait_for_state_change(self.api.post_server({"server": server}), wait)

    def _net(self) -> list[dict]:
        return [{"uuid": self.neutron.network_1["id"]}]

    def _own_port(self, last_octet: int) -> list[dict]:
        """A port of its own fixed IP: nova's NeutronFixture copies one template
        port, so two servers booted with _net() get the same address and a
        transfer "between" them is a connection to itself."""
        port = self.neutron.create_port(
            {"port": {"network_id": self.neutron.network_1["id"]}})["port"]
        fixed = [dict(ip, ip_address=ip["ip_address"].rsplit(".", 1)[0] + f".{last_octet}")
                 for ip in port["fixed_ips"]]
        self.neutron._ports[port["id"]]["fixed_ips"] = fixed
        return [{"port": port["id"]}]

    def _port_of(self, server: dict) -> dict:
        [port] = [p for p in self.neutron._ports.values() if p.get("device_id") == server["id"]]
        return port

    @staticmethod
    def _names(port_id: str) -> dict[str, str]:
        return {kind: (kind + port_id)[:14] for kind in ("tap", "tin", "qbr", "qvb", "qvo")}

    def _master(self, name: str) -> str | None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            [link] = ipr.get_links(ifname=name)
            master = link.get_attr("IFLA_MASTER")
            if not master:
                return None
            return ipr.get_links(master)[0].get_attr("IFLA_IFNAME")

    def _assert_ovs_port(self, server: dict, port: dict, name: str, host: str) -> None:
        iface = self.ovs.interface(name)
        self.assertTrue(iface, f"no OVS interface {name}")
        self.assertEqual(self.bridges[host], iface["bridge"])
        self.assertEqual({"iface-id": port["id"], "iface-status": "active",
                          "attached-mac": port["mac_address"], "vm-uuid": server["id"]},
                         {k: iface["external_ids"].get(k) for k in EXTERNAL_IDS})
        self.assertEqual(["set", []], iface["error"], f"OVS reports {iface['error']}")

    def _assert_nic(self, server: dict, port: dict, ifname: str = "eth0",
                    configured: bool = True) -> str:
        """The port's MAC and the network's MTU inside; its fixed IP from the seed
        when the port was there at first boot (a hot-plugged one is the guest's
        DHCP client's business)."""
        link = self._exec(server, "ip", "-o", "link", "show", ifname)
        self.assertIn(port["mac_address"], link)
        self.assertIn("mtu 1450", link)
        ip = port["fixed_ips"][0]["ip_address"]
        if not configured:
            return ip
        self.assertIn(ip + "/24", self._exec(server, "ip", "-o", "-4", "addr", "show", ifname))
        return ip

    def _assert_addresses_shown(self, server: dict, ip: str) -> None:
        server = self.api.get_server(server["id"])
        self.assertIn(ip, [a["addr"] for a in server["addresses"].get("private", [])],
                      f"addresses: {server['addresses']}")

    def _assert_tcp(self, client: dict, server: dict, server_ip: str) -> None:
        """A 2 MiB HTTP transfer: checksums and segmentation work, not just ICMP."""
        self._exec(client, "ping", "-c", "1", "-W", "5", server_ip)
        self._exec(server, "sh", "-c", "mkdir -p /srv && dd if=/dev/urandom of=/srv/blob "
                   "bs=1024 count=2048 2>/dev/null && httpd -p 8080 -h /srv")
        want = self._exec(server, "md5sum", "/srv/blob").split()[0]
        # to a file first: a failed wget shows its error here, not an empty checksum
        # (busybox 1.35's wget -T segfaults: the timeout comes from timeout(1))
        self._exec(client, "timeout", "30", "wget", "-q", "-O", "/tmp/blob",
                   f"http://{server_ip}:8080/blob")
        got = self._exec(client, "md5sum", "/tmp/blob").split()[0]
        self.assertEqual(want, got, "TCP transfer between the containers was corrupted")

    @staticmethod
    def _cell(server: dict):
        """A context targeted at the server's cell database."""
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(ctxt, server["id"])
        return nova_context.target_cell(ctxt, mapping.cell_mapping)

    def _replug_as_on_compute_start(self, server: dict, host: str) -> None:
        with self._cell(server) as cctxt:
            instance = objects.Instance.get_by_uuid(cctxt, server["id"],
                                                    expected_attrs=["info_cache", "flavor"])
            network_info = instance.get_network_info()
        self.assertTrue(network_info)
        self.computes[host].driver.plug_vifs(instance, network_info)

    def _assert_nothing_left(self, *port_ids: str) -> None:
        self._assert_runtimes_empty()
        for bridge in self.bridges.values():
            self.assertEqual([], [p for p in self.ovs.ports(bridge)
                                  if not p.startswith("nlxp")], f"ports left on {bridge}")
        links = nlx_ovs.link_names()
        for port_id in port_ids:
            left = set(self._names(port_id).values()) & links
            self.assertEqual(set(), left, "devices left behind")


class LXDOVSTest(LXDOVSBase):
    def test_native_ports_across_hosts(self):
        one = self._boot_on("nlx-ovs1", HOSTS[0], self._own_port(41))
        two = self._boot_on("nlx-ovs2", HOSTS[1], self._own_port(42))
        ips = {}
        for server, host in ((one, HOSTS[0]), (two, HOSTS[1])):
            port = self._port_of(server)
            names = self._names(port["id"])
            # native: the veth's host end itself is the OVS port, no Linux bridge
            self._assert_ovs_port(server, port, names["tap"], host)
            self.assertNotIn(names["qbr"], nlx_ovs.link_names())
            ips[server["id"]] = self._assert_nic(server, port)
            self._assert_addresses_shown(server, ips[server["id"]])
        self.assertNotEqual(ips[one["id"]], ips[two["id"]])
        self._assert_tcp(one, two, ips[two["id"]])
        self._assert_tcp(two, one, ips[one["id"]])
        # nova-compute plugs every running instance again when it starts
        # (ComputeManager._init_instance): that must not disturb them.
        self._replug_as_on_compute_start(one, HOSTS[0])
        self._exec(two, "ping", "-c", "1", "-W", "5", ips[one["id"]])
        port_ids = [self._port_of(s)["id"] for s in (one, two)]
        for server in (one, two):
            self._delete_server(server)
        self._assert_nothing_left(*port_ids)

    def test_hybrid_port_talks_to_native_port(self):
        self.hybrid_hosts.add(HOSTS[0])
        one = self._boot_on("nlx-hyb1", HOSTS[0], self._own_port(43))
        two = self._boot_on("nlx-nat2", HOSTS[1], self._own_port(44))
        port = self._port_of(one)
        names = self._names(port["id"])
        links = nlx_ovs.link_names()
        for kind in ("qbr", "qvb", "qvo", "tap"):
            self.assertIn(names[kind], links, f"hybrid plug made no {kind}")
        # qvo is the OVS port; qvb and the container's veth hang off qbr
        self._assert_ovs_port(one, port, names["qvo"], HOSTS[0])
        self.assertEqual({}, self.ovs.interface(names["tap"]))
        self.assertEqual(names["qbr"], self._master(names["qvb"]))
        self.assertEqual(names["qbr"], self._master(names["tap"]))
        ip_one = self._assert_nic(one, port)
        ip_two = self._assert_nic(two, self._port_of(two))
        self._assert_tcp(one, two, ip_two)
        self._assert_tcp(two, one, ip_one)
        port_ids = [port["id"], self._port_of(two)["id"]]
        for server in (one, two):
            self._delete_server(server)
        self._assert_nothing_left(*port_ids)

    def test_attach_and_detach_on_running_and_stopped_servers(self):
        server = self._boot_on("nlx-ovs-hot", HOSTS[0], "none")
        net_id = self.neutron.network_1["id"]

        def attach() -> dict:
            body = self.api.attach_interface(
                server["id"], {"interfaceAttachment": {"net_id": net_id}}).body
            return self.neutron._ports[body["interfaceAttachment"]["port_id"]]

        # running: eth0 appears inside at once, wired into OVS
        port = attach()
        names = self._names(port["id"])
        self._assert_ovs_port(server, port, names["tap"], HOSTS[0])
        self._assert_nic(server, port, configured=False)
        self.api.detach_interface(server["id"], port["id"])
        self._wait_for_port_detached(server, port["id"])
        self.assertNotEqual(0, self._container(server).execute(
            ["ip", "link", "show", "eth0"]).exit_code, "eth0 still in the container")
        self.assertEqual({}, self.ovs.interface(names["tap"]))
        self.assertEqual(set(), set(names.values()) & nlx_ovs.link_names())

        # stopped: the port is wired now, the nic is there at the next start
        server = self._stop_server(server)
        port = attach()
        names = self._names(port["id"])
        self._assert_ovs_port(server, port, names["tap"], HOSTS[0])
        server = self._start_server(server)
        self._assert_nic(server, port, configured=False)
        server = self._stop_server(server)
        self.api.detach_interface(server["id"], port["id"])
        self._wait_for_port_detached(server, port["id"])
        self.assertEqual({}, self.ovs.interface(names["tap"]))
        server = self._start_server(server)
        self.assertNotEqual(0, self._container(server).execute(
            ["ip", "link", "show", "eth0"]).exit_code, "eth0 came back after detach")
        self._delete_server(server)
        self._assert_nothing_left(port["id"])

    def test_delete_without_network_info_still_unplugs_everything(self):
        """Two nics in port order; then nova hands destroy an empty network_info
        (its info cache and Neutron both forgot the ports): the container's
        records still name every port, OVS rows and qbr bridges included."""
        self.hybrid_hosts.add(HOSTS[0])
        server = self._boot_on("nlx-ovs-forgot", HOSTS[0], self._net() * 2)
        with self._cell(server) as cctxt:
            order = [vif["id"] for vif in objects.InstanceInfoCache.get_by_instance_uuid(
                cctxt, server["id"]).network_info]
        self.assertEqual(2, len(order))
        for index, port_id in enumerate(order):
            port = self.neutron._ports[port_id]
            self._assert_nic(server, port, f"eth{index}")
            self._assert_ovs_port(server, port, self._names(port_id)["qvo"], HOSTS[0])
        with self._cell(server) as cctxt:
            cache = objects.InstanceInfoCache.get_by_instance_uuid(cctxt, server["id"])
            cache.network_info = "[]"
            cache.save()
        for port_id in order:
            del self.neutron._ports[port_id]
        self._delete_server(server)
        self._assert_nothing_left(*order)

class LXDVifEventsTest(LXDOVSBase):
    """spawn and Neutron's network-vif-plugged events, as libvirt."""

    def setUp(self):
        super().setUp()
        # Neutron reports new ports DOWN: nova expects an event for each.
        self.neutron.default_port = copy.deepcopy(self.neutron.default_port)
        self.neutron.default_port["status"] = "DOWN"

    def test_starts_only_after_the_event(self):
        self.flags(vif_plugging_timeout=60, vif_plugging_is_fatal=True)
        server = self._build_server(name="nlx-ev", image_uuid=self.image_id,
                                    flavor_id=self.flavor_id, networks=self._net())
        server["host"] = HOSTS[0]
        self._track_images(self.image_id)
        server = self.api.post_server({"server": server})
        runtime = self.runtimes[HOSTS[0]]
        deadline = time.monotonic() + test_lxd_servers.WAIT_TIMEOUT
        while not runtime.ours():
            self.assertLess(time.monotonic(), deadline, "no container made")
            time.sleep(0.05)
        [name] = runtime.ours()
        time.sleep(1)  # the wait is under way: plugged, made, not started
        self.assertEqual("Stopped", runtime.client.instances.get(name).status)
        self.assertEqual("BUILD", self.api.get_server(server["id"])["status"])
        port = self._port_of(server)
        self.assertTrue(self.ovs.interface(self._names(port["id"])["tap"]))
        self.admin_api.create_server_external_events([{
            "name": "network-vif-plugged", "server_uuid": server["id"], "tag": port["id"]}])
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("Running", self._status(server))
        self._delete_server(server)
        self._assert_nothing_left(port["id"])

    def test_non_fatal_timeout_boots_the_server(self):
        self.flags(vif_plugging_timeout=1, vif_plugging_is_fatal=False)
        server = self._boot_on("nlx-ev-late", HOSTS[0], self._net())
        self.assertEqual("Running", self._status(server), "ACTIVE must mean running")
        port = self._port_of(server)
        self._assert_nic(server, port)
        self._assert_ovs_port(server, port, self._names(port["id"])["tap"], HOSTS[0])
        self._delete_server(server)
        self._assert_nothing_left(port["id"])

    def test_fatal_timeout_fails_the_build_and_cleans_up(self):
        self.flags(vif_plugging_timeout=1, vif_plugging_is_fatal=True)
        server = self._boot_on("nlx-ev-fatal", HOSTS[0], self._net(), wait="ERROR")
        self._assert_runtimes_empty()
        for bridge in self.bridges.values():
            self.assertEqual([], [p for p in self.ovs.ports(bridge)
                                  if not p.startswith("nlxp")])
        self._delete_server(server)
