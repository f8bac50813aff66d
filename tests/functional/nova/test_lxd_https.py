"""The driver's client over HTTPS with a client certificate.

The environment of these machines sets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE,
which make plain pylxd pin the wrong certificate; the driver's client must
work regardless, pinned to the runtime's own certificate.

The client runs in a child process: nova's test packages monkey-patch the
test process with eventlet (nova-compute 34 itself runs without it), and
eventlet's ssl breaks urllib3's TLS setup.
"""
from __future__ import annotations

import nlx_threads  # noqa: F401 - first: nova in native threads (see the module)

import base64
import datetime
import json
import os
import socket
import subprocess
import sys

import fixtures
import testtools
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pylxd import exceptions as lxd_exceptions

import nlx_fixtures


def _client_cert(directory: str) -> tuple[str, str, str]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nlx-nova-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA384()))
    cert_path = os.path.join(directory, "client.crt")
    key_path = os.path.join(directory, "client.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    der = cert.public_bytes(serialization.Encoding.DER)
    return cert_path, key_path, base64.b64encode(der).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HTTPSClientTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.runtime = self.useFixture(nlx_fixtures.RuntimeFixture("tls"))
        self.tmp = self.useFixture(fixtures.TempDir()).path
        api = self.runtime.client.api
        before = api.get().json()["metadata"].get("config") or {}
        self.address = f"127.0.0.1:{_free_port()}"
        try:
            api.patch(json={"config": {"core.https_address": self.address}})
        except lxd_exceptions.LXDAPIException as exc:
            self.skipTest(f"runtime cannot listen on https: {exc}")
        self.addCleanup(api.patch, json={"config": {
            "core.https_address": before.get("core.https_address", "")}})
        self.cert, self.key, der_b64 = _client_cert(self.tmp)
        api.certificates.post(json={"type": "client", "name": "nlx-nova-test",
                                    "certificate": der_b64})
        fingerprint = self._fingerprint(der_b64)
        self.addCleanup(self._untrust, fingerprint)
        server_pem = api.get().json()["metadata"]["environment"]["certificate"]
        self.server_cert = os.path.join(self.tmp, "server.crt")
        with open(self.server_cert, "w") as f:
            f.write(server_pem)
        # What this machine's environment does to every process.
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        self.useFixture(fixtures.EnvironmentVariable("REQUESTS_CA_BUNDLE", bundle))
        self.useFixture(fixtures.EnvironmentVariable("CURL_CA_BUNDLE", bundle))

    @staticmethod
    def _fingerprint(der_b64: str) -> str:
        digest = hashes.Hash(hashes.SHA256())
        digest.update(base64.b64decode(der_b64))
        return digest.finalize().hex()

    def _untrust(self, fingerprint: str) -> None:
        try:
            self.runtime.client.api.certificates[fingerprint].delete()
        except lxd_exceptions.LXDAPIException:
            pass

    def _connect(self, **endpoint) -> subprocess.CompletedProcess:
        code = (
            "import json, sys\n"
            "from nova_lxd_py import client\n"
            "ep = client.Endpoint(**json.loads(sys.argv[1]))\n"
            "try:\n"
            "    c = client.make_client(ep)\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc); sys.exit(3)\n"
            "c.api.instances.get()\n"
            "print(c.host_info['auth'])\n")
        return subprocess.run([sys.executable, "-c", code, json.dumps(endpoint)],
                              capture_output=True, text=True, timeout=60)

    def test_trusted_client_pinned_to_server_cert(self):
        result = self._connect(url=f"https://{self.address}", client_cert=self.cert,
                               client_key=self.key, server_cert=self.server_cert)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        self.assertEqual("trusted", result.stdout.strip())

    def test_unpinned_self_signed_server_is_a_clear_error(self):
        result = self._connect(url=f"https://{self.address}", client_cert=self.cert,
                               client_key=self.key)
        self.assertEqual(3, result.returncode, result.stdout + result.stderr)
        self.assertIn("RuntimeUnavailable", result.stdout)
        self.assertIn(self.address, result.stdout)

    def test_lifecycle_events_over_https(self):
        """The event listener follows a remote runtime over wss with the client
        certificate, verifying the pinned server certificate. In a child process,
        like the other checks here: nova's test process patches ssl."""
        name = nlx_fixtures.NAME_PREFIX + "events"
        code = (
            "import json, sys, threading\n"
            "from nova.compute import power_state\n"
            "from nova_lxd_py import client, events\n"
            "ep = client.Endpoint(**json.loads(sys.argv[1]))\n"
            "seen = threading.Event()\n"
            "def read_state(name):\n"
            "    return ('uuid-of-' + name, power_state.SHUTDOWN) if name == sys.argv[2] "
            "else None\n"
            "def emit(event):\n"
            "    print(event.get_instance_uuid(), event.get_transition(), flush=True)\n"
            "    seen.set()\n"
            "listener = events.LifecycleListener(ep, read_state, emit, lambda: [])\n"
            "listener.start()\n"
            "print('connected' if listener.connected.wait(20) else 'no stream', flush=True)\n"
            "seen.wait(20)\n"
            "listener.stop()\n")
        endpoint = {"url": f"https://{self.address}", "client_cert": self.cert,
                    "client_key": self.key, "server_cert": self.server_cert}
        child = subprocess.Popen([sys.executable, "-c", code, json.dumps(endpoint), name],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(child.kill)
        self.assertEqual("connected", child.stdout.readline().strip(), "no stream over https")
        self.runtime.client.instances.create({"name": name, "source": {"type": "none"}},
                                             wait=True)
        self.runtime.client.api.instances[name].patch(json={"config": {"user.poke": "1"}})
        out, err = child.communicate(timeout=60)
        from nova.virt import event as virtevent
        self.assertEqual(f"uuid-of-{name} {virtevent.EVENT_LIFECYCLE_STOPPED}",
                         out.strip(), err)
