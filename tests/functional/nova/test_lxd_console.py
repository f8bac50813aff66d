"""Serial consoles through nova's Compute API, with real containers.

`POST /servers/{id}/remote-consoles` (protocol serial) gives a URL whose token
names the host and port our driver listens on, as nova-serialproxy reads it
(ConsoleAuthToken.validate); the test then connects to that port like
nova-serialproxy does, logs in on the container's /dev/console and runs
`hostname`. Ports come from [serial_console] port_range through nova's own
allocator and go back on stop and delete.

What is not here: the hop through a running nova-serialproxy service (it needs
a real database and message bus): the real-cloud tests do that with
`console_dialogue.WebsocketConsole` on `openstack console url show --serial`.
Here websockify, the library nova-serialproxy is built on, relays a websocket
client to the port instead.
"""
from __future__ import annotations

import nlx_threads  # noqa: F401 - first: nova in native threads (see the module)

import random
import socket
import subprocess
import sys
import time
import urllib.parse
from unittest import mock

from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova.console import serial as nova_serial
from nova.tests.functional.api import client as api_client
from oslo_utils.fixture import uuidsentinel as uuids

import console_dialogue
import test_lxd_servers

PROXY_BASE_URL = "ws://127.0.0.1:6083/"
RANGE = 20


def _free_range(size: int) -> int:
    """A block of ports nobody listens on, so the range is ours alone."""
    for _ in range(50):
        start = random.randrange(20000, 60000 - size)
        socks = []
        try:
            for port in range(start, start + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports")


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


LOG_CAP = 4096


class LXDSerialConsoleTest(test_lxd_servers.LXDServersBase):
    def setUp(self):
        # read by the driver when nova-compute starts it
        self.flags(console_log_max_bytes=LOG_CAP, group="lxd")
        super().setUp()
        self.port_start = _free_range(RANGE)
        self.flags(enabled=True, port_range=f"{self.port_start}:{self.port_start + RANGE}",
                   proxyclient_address="127.0.0.1", base_url=PROXY_BASE_URL,
                   group="serial_console")
        self.ctxt = nova_context.get_admin_context()

    # -- helpers ----------------------------------------------------------------------------
    def _serial_console(self, server: dict) -> tuple[str, str, int]:
        """(URL, host, port): the URL from the API, host and port as nova-serialproxy
        learns them from the token."""
        body = self.api.api_post(f"/servers/{server['id']}/remote-consoles",
                                 {"remote_console": {"protocol": "serial",
                                                     "type": "serial"}}).body
        console = body["remote_console"]
        self.assertEqual(("serial", "serial"), (console["protocol"], console["type"]))
        url = console["url"]
        self.assertTrue(url.startswith(PROXY_BASE_URL), url)
        token = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["token"][0]
        info = objects.ConsoleAuthToken.validate(self.ctxt, token)
        self.assertEqual(server["id"], info.instance_uuid)
        return url, info.host, info.port

    def _assert_port_from_range(self, host: str, port: int) -> None:
        self.assertEqual("127.0.0.1", host)
        self.assertTrue(self.port_start <= port < self.port_start + RANGE, port)
        self.assertIn((host, port), nova_serial.ALLOCATED_PORTS)
        self.assertTrue(_listening(host, port))

    def _assert_released(self, host: str, port: int) -> None:
        self.assertNotIn((host, port), nova_serial.ALLOCATED_PORTS)
        self.assertFalse(_listening(host, port), f"{host}:{port} still listens")

    def _remote_console_error(self, server: dict) -> int:
        try:
            self._serial_console(server)
        except api_client.OpenStackApiException as exc:
            return exc.response.status_code
        self.fail("remote-consoles succeeded")

    def _hostname(self, server: dict) -> str:
        return server["OS-EXT-SRV-ATTR:hostname"]

    def _run_on_console(self, host: str, port: int, command: str,
                        password: str | None = None) -> str:
        """Connect as nova-serialproxy does, log in, run command; its output."""
        with console_dialogue.TcpConsole(host, port) as con:
            return console_dialogue.login_and_run(con, command, password=password)

    # -- tests ------------------------------------------------------------------------------
    def test_login_over_the_serial_port_released_on_stop_and_delete(self):
        server = self._boot("nlx-serial")
        url, host, port = self._serial_console(server)
        self._assert_port_from_range(host, port)
        # nova-serialproxy checks the port with the compute host before it connects
        compute = self.computes[server["OS-EXT-SRV-ATTR:host"]]
        instance = objects.Instance.get_by_uuid(self.ctxt, server["id"])
        self.assertTrue(compute.manager.validate_console_port(
            self.ctxt, instance, str(port), "serial"))
        self.assertEqual(self._hostname(server), self._run_on_console(host, port, "hostname"))
        # the same session is in the console log (console.serial.log)
        log = self.api.post_server_action(server["id"], {"os-getConsoleOutput": {}})["output"]
        self.assertIn("END-42", log)
        self.assertIn("login: root", log)

        self._stop_server(server)
        self._assert_released(host, port)
        self.assertEqual(409, self._remote_console_error(server))

        server = self._start_server(server)
        _, host, port = self._serial_console(server)
        self._assert_port_from_range(host, port)
        self.assertEqual("again", self._run_on_console(host, port, "echo again"))

        self._delete_server(server)
        self._assert_released(host, port)
        self._assert_runtimes_empty()

    def test_one_client_at_a_time_and_reattach(self):
        server = self._boot("nlx-serial-busy")
        _, host, port = self._serial_console(server)
        with console_dialogue.TcpConsole(host, port) as first:
            first.send(b"\n")
            first.expect(b"login: ")
            with console_dialogue.TcpConsole(host, port) as second:
                refusal = second.read_rest(timeout=10).decode(errors="replace")
            self.assertIn("in use by another client", refusal)
            self.assertEqual("still-first", console_dialogue.login_and_run(
                first, "echo still-first"))
        for _ in range(2):  # a detached console can be taken again at once
            self.assertEqual(self._hostname(server),
                             self._run_on_console(host, port, "hostname"))
        self._delete_server(server)
        self._assert_released(host, port)

    def test_websocket_client_through_websockify(self):
        """A browser-like websocket client, relayed to the port by websockify
        (what nova-serialproxy runs on), logs in and runs hostname."""
        server = self._boot("nlx-serial-ws")
        _, host, port = self._serial_console(server)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ws_port = s.getsockname()[1]
        proxy = subprocess.Popen([sys.executable, "-m", "websockify", f"127.0.0.1:{ws_port}",
                                  f"{host}:{port}"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(proxy.wait)
        self.addCleanup(proxy.kill)
        deadline = time.monotonic() + 20
        while not _listening("127.0.0.1", ws_port):
            self.assertLess(time.monotonic(), deadline, "websockify did not start")
            time.sleep(0.05)
        with console_dialogue.WebsocketConsole(f"ws://127.0.0.1:{ws_port}/",
                                               origin="http://127.0.0.1") as con:
            self.assertEqual(self._hostname(server),
                             console_dialogue.login_and_run(con, "hostname"))
        self._delete_server(server)

    def test_rescue_console_and_compute_restart(self):
        """While rescued the port reaches the rescue container; after unrescue the
        instance's own (root logs in with the rescue password there, without one
        here). A restarted nova-compute listens again for what runs."""
        server = self._boot("nlx-serial-rescue")
        _, host, port = self._serial_console(server)
        self.api.post_server_action(server["id"], {"rescue": {"adminPass": "r3scue-pw"}})
        server = self._wait_for_state_change(server, "RESCUE")
        _, host, port = self._serial_console(server)
        self.assertTrue(self._run_on_console(host, port, "hostname",
                                             password="r3scue-pw").endswith("-rescue"))
        self.api.post_server_action(server["id"], {"unrescue": {}})
        server = self._wait_for_state_change(server, "ACTIVE")

        compute_host = server["OS-EXT-SRV-ATTR:host"]
        with mock.patch("nova.virt.node.get_local_node_uuid",  # as _start_lxd_compute
                        return_value=str(getattr(uuids, "node_" + compute_host))):
            self.computes[compute_host] = self.restart_compute_service(
                self.computes[compute_host])
        _, host, port = self._serial_console(server)
        self._assert_port_from_range(host, port)
        self.assertEqual(self._hostname(server), self._run_on_console(host, port, "hostname"))
        self._delete_server(server)
        self._assert_released(host, port)

    def test_console_output_is_the_log_capped(self):
        """get_console_output: the last [lxd] console_log_max_bytes of what went to
        /dev/console."""
        server = self._boot("nlx-console-log")
        self._exec(server, "sh", "-c", "i=0; while [ $i -lt 400 ]; do "
                   "echo line-$i-0123456789abcdefghij; i=$((i+1)); done > /dev/console")
        deadline = time.monotonic() + 10
        while True:
            log = self.api.post_server_action(
                server["id"], {"os-getConsoleOutput": {}})["output"]
            if "line-399-" in log or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # the API drops control characters (the CRs); the driver's own answer is
        # exactly the cap
        # (the getty may print its prompt again after our lines)
        ours = [line.rstrip() for line in log.splitlines() if line.startswith("line-")]
        self.assertEqual("line-399-0123456789abcdefghij", ours[-1] if ours else "",
                         log[-200:])
        self.assertNotIn("line-0-", log)
        driver = self.computes[server["OS-EXT-SRV-ATTR:host"]].manager.driver
        instance = objects.Instance.get_by_uuid(self.ctxt, server["id"])
        self.assertEqual(LOG_CAP, len(driver.get_console_output(self.ctxt, instance)))
        self._delete_server(server)

    def test_disabled_serial_console_is_unavailable(self):
        self.flags(enabled=False, group="serial_console")
        server = self._boot("nlx-serial-off")
        self.assertFalse(any(self.port_start <= p < self.port_start + RANGE
                             for _, p in nova_serial.ALLOCATED_PORTS))
        self.assertEqual(400, self._remote_console_error(server))
        driver = self.computes[server["OS-EXT-SRV-ATTR:host"]].manager.driver
        instance = objects.Instance.get_by_uuid(self.ctxt, server["id"])
        self.assertRaises(nova_exception.ConsoleTypeUnavailable,
                          driver.get_serial_console, self.ctxt, instance)
        self._delete_server(server)

