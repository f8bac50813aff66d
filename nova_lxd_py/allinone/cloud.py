"""An all-in-one nova cloud in this process, on the LXD driver.

Why nova's functional-test machinery: it is how nova itself runs API,
conductor, scheduler and several compute services in one process (in-memory
databases with cell mappings, a fake in-process message bus, placement served
in process, and stand-ins for Keystone, Glance, Neutron and Cinder). The nova
services themselves are real: the same manager, scheduler, conductor, resource
tracker and API code that runs in production, with our driver on every compute
host and one real runtime daemon per host. We host that machinery in one
``ProviderUsageBaseTestCase`` instance whose set-up we run, and whose cleanups
we run on exit; it never runs as a test.

What is added on top for operators: the Compute API served on a real
loopback TCP port (``noauth``: every request is an administrator), a small
Glance v2 image API on another port over the in-process image stand-in, and
an Identity v3 token stand-in whose catalog lists both, so ordinary clients
(the ``nova`` CLI, python-novaclient, keystoneauth, curl) can drive the cloud.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any
from unittest import mock
from wsgiref import simple_server

from nova_lxd_py.allinone import glance_api, identity, leftovers, network
from nova_lxd_py.allinone.runtimes import Runtime

PROJECT_ID = "aio"
_TEST_ENV = ("OS_STDOUT_CAPTURE", "OS_STDERR_CAPTURE", "OS_LOG_CAPTURE", "OS_TEST_TIMEOUT",
             "OS_DEBUG")


class _QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass


class _ThreadingServer(simple_server.WSGIServer):
    """One thread per request: the API may wait on RPC calls to computes."""

    daemon_threads = True

    def process_request(self, request, client_address):
        threading.Thread(target=self._handle, args=(request, client_address),
                         daemon=True).start()

    def _handle(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a broken client must not kill the server
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


def noauth(app: Callable) -> Callable:
    """Fill in the identity headers nova's (stubbed) Keystone middleware reads.

    Like nova's ``noauth2`` strategy: a token ``user:project`` names the
    caller; without one the caller is ``admin`` of project ``aio``. Every
    caller gets the admin role: this is a single-operator demo cloud.
    """
    def wrapped(environ, start_response):
        token = environ.get("HTTP_X_AUTH_TOKEN", "")
        user, _, project = token.partition(":")
        environ.setdefault("HTTP_X_AUTH_USER", user or "admin")
        environ.setdefault("HTTP_X_USER_ID", user or "admin")
        environ.setdefault("HTTP_X_AUTH_PROJECT_ID", project or PROJECT_ID)
        environ.setdefault("HTTP_X_PROJECT_ID", project or PROJECT_ID)
        environ.setdefault("HTTP_X_ROLES", "admin,member,reader")
        return app(environ, start_response)
    return wrapped


def serve(app: Callable, port: int = 0) -> simple_server.WSGIServer:
    """Serve a WSGI app on 127.0.0.1 (port 0: any free port) in a thread."""
    server = simple_server.make_server("127.0.0.1", port, app, server_class=_ThreadingServer,
                                       handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name=f"wsgi-{server.server_port}",
                     daemon=True).start()
    return server


def _make_case_class():
    # Imported late: importing nova's test machinery is slow and pulls in
    # test-only requirements, which only the all-in-one cloud needs.
    from nova.tests.functional import integrated_helpers

    class CloudCase(integrated_helpers.ProviderUsageBaseTestCase):
        """Hosts nova's in-process service machinery; never run as a test."""

        compute_driver = "lxd_py.LXDDriver"
        microversion = "latest"

        def runTest(self) -> None:  # pragma: no cover - never run
            raise AssertionError("not a test")

    return CloudCase


class Cloud:
    """Nova API, conductor, scheduler, placement and N LXD compute hosts."""

    def __init__(self, state_dir: str, hosts: tuple[str, ...] = ("aio-host1", "aio-host2"),
                 api_port: int = 0, image_port: int = 0, identity_port: int = 0,
                 netns: bool = True,
                 progress: Callable[[str], None] = print):
        self.state_dir = state_dir
        self.hosts = hosts
        self.api_port = api_port
        self.image_port = image_port
        self.identity_port = identity_port
        self.progress = progress
        self.netns = netns
        self.network: network.HostNetwork | None = None
        self.runtimes: dict[str, Runtime] = {}
        self.computes: dict[str, Any] = {}
        self.case: Any = None
        self.servers: list[simple_server.WSGIServer] = []
        self.compute_url = ""
        self.image_url = ""
        self.identity_url = ""

    # -- start -------------------------------------------------------------------
    def start(self) -> None:
        leftovers.clean(os.path.dirname(os.path.abspath(self.state_dir)),
                        progress=self.progress)
        os.makedirs(self.state_dir, mode=0o711, exist_ok=True)
        os.chmod(self.state_dir, 0o711)
        for name in _TEST_ENV:  # nova's test base would capture our output
            os.environ.pop(name, None)
        if self.netns and not network.available():
            self.progress("network namespaces unavailable here: runtimes share loopback")
            self.netns = False
        if self.netns:
            self.network = network.HostNetwork()
        for index, host in enumerate(self.hosts):
            runtime = Runtime(host, os.path.join(self.state_dir, host))
            if self.network:
                namespace, runtime.address = self.network.add_host(index)
                runtime.wrap = lambda argv, ns=namespace: network.HostNetwork.wrap(ns, argv)
            self.runtimes[host] = runtime
            self._record()
            runtime.start()
            self._record()
            runtime.listen_https()
            where = (f"netns {namespace}, https {runtime.https_address}" if self.network
                     else f"https {runtime.https_address}")
            self.progress(f"runtime daemon for {host} up (pid {runtime.pid}, "
                          f"socket {runtime.socket}, {where})")
        if self.network:
            self.progress(f"hosts joined by bridge {self.network.bridge} "
                          f"({self.network.subnet}.0/24)")
        self._start_nova()

    def _record(self) -> None:
        leftovers.record(self.state_dir, os.getpid(),
                         [r.pid for r in self.runtimes.values() if r.pid],
                         self.network.names() if self.network else [])

    def _start_nova(self) -> None:
        from nova_lxd_py import driver as _lxd_driver  # noqa: F401 - registers [lxd]

        self.case = _make_case_class()("runTest")
        case = self.case
        case.flags(api_paste_config=os.path.join(sys.prefix, "etc", "nova", "api-paste.ini"),
                   group="wsgi")
        case.setUp()
        self._log_to_file()
        case.flags(instance_name_template="aio-instance-%08x", shutdown_timeout=5,
                   vif_plugging_timeout=0,
                   instances_path=os.path.join(self.state_dir, "instances"))
        glance = case.glance
        glance.images.clear()  # the stand-in's sample images are not ours
        glance_api.keep_snapshot_data(glance)
        self.progress("nova API, conductor, scheduler and placement up")
        for host in self.hosts:
            self._start_compute(host)
            self.progress(f"nova-compute {host} up (driver lxd_py.LXDDriver -> "
                          f"{self.runtimes[host].socket})")
        api = serve(noauth(case.api_fixture.app()), self.api_port)
        images = serve(glance_api.GlanceV2(glance, PROJECT_ID), self.image_port)
        self.compute_url = f"http://127.0.0.1:{api.server_port}/v2.1"
        self.image_url = f"http://127.0.0.1:{images.server_port}"
        keystone = serve(identity.IdentityV3({"compute": self.compute_url,
                                              "image": self.image_url}, PROJECT_ID),
                         self.identity_port)
        self.identity_url = f"http://127.0.0.1:{keystone.server_port}/v3"
        self.servers = [api, images, keystone]
        self.progress(f"Compute API on {self.compute_url}, image API on {self.image_url}, "
                      f"identity on {self.identity_url}")

    def _start_compute(self, host: str) -> None:
        from oslo_utils import uuidutils

        case = self.case
        runtime = self.runtimes[host]
        case.flags(endpoint=runtime.socket, group="lxd")
        case.flags(image_cache_dir=os.path.join(self.state_dir, f"{host}-image-cache"),
                   group="lxd")
        # Each host keeps its own node identity, as on separate machines.
        node = uuidutils.generate_uuid()
        with mock.patch("nova.virt.node.get_local_node_uuid", return_value=node):
            self.computes[host] = case.start_service("compute", host=host)

    def _log_to_file(self) -> None:
        """nova's fixtures capture logging; keep a copy where an operator can read it."""
        handler = logging.FileHandler(self.log_path)
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
        logging.getLogger().addHandler(handler)
        self._log_handler = handler

    @property
    def log_path(self) -> str:
        return os.path.join(self.state_dir, "nova.log")

    @property
    def glance(self):
        return self.case.glance

    # -- stop --------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Stop everything; return the problems met (best effort, never raises)."""
        problems: list[str] = []
        for server in self.servers:
            try:
                server.shutdown()
                server.server_close()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"API server: {exc}")
        self.servers = []
        if self.case is not None:
            # Anything nova's threads still say while their fixtures are
            # torn down is noise (and would reach stderr once nova's log
            # capture is gone): silence logging for the teardown.
            logging.disable(logging.CRITICAL)
            cleanups = getattr(self.case, "_cleanups", [])
            while cleanups:
                function, args, kwargs = cleanups.pop()
                try:
                    function(*args, **kwargs)
                except Exception:  # noqa: BLE001 - keep cleaning
                    problems.append("nova cleanup: " + traceback.format_exc(limit=2))
            self.case = None
            logging.disable(logging.NOTSET)
        handler = getattr(self, "_log_handler", None)
        if handler:
            logging.getLogger().removeHandler(handler)
            handler.close()
        for host, runtime in self.runtimes.items():
            try:
                runtime.stop()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"runtime {host}: {exc}")
        if self.network:
            try:
                self.network.destroy()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"network: {exc}")
        return problems
