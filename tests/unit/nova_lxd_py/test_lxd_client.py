"""Client factory: endpoints, and immunity to CA/proxy environment variables."""
import os
import unittest
from unittest import mock

from nova_lxd_py import client, exception


class EndpointTest(unittest.TestCase):
    def test_unix_forms(self):
        for url in ("/var/lib/x/unix.socket", "unix:///var/lib/x/unix.socket"):
            ep = client.Endpoint(url)
            self.assertTrue(ep.is_unix)
            self.assertEqual("http+unix://%2Fvar%2Flib%2Fx%2Funix.socket", ep.pylxd_url())

    def test_https_form(self):
        ep = client.Endpoint("https://10.0.0.1:8443/")
        self.assertFalse(ep.is_unix)
        self.assertEqual("https://10.0.0.1:8443", ep.pylxd_url())

    def test_session_ignores_ca_bundle_env(self):
        ep = client.Endpoint("https://10.0.0.1:8443", server_cert=__file__)
        env = {"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
               "CURL_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
               "HTTPS_PROXY": "http://127.0.0.1:9"}
        with mock.patch.dict(os.environ, env):
            session, cert = client.make_session(ep)
            settings = session.merge_environment_settings(
                "https://10.0.0.1:8443/1.0", {}, None, None, None)
        self.assertIsNone(cert)
        self.assertFalse(session.trust_env)
        self.assertEqual(__file__, settings["verify"])
        self.assertEqual({}, settings["proxies"])

    def test_cert_and_key_go_together(self):
        ep = client.Endpoint("https://h:8443", client_cert=__file__)
        with self.assertRaises(exception.RuntimeConfigError):
            client.make_session(ep)

    def test_unreachable_names_endpoint(self):
        ep = client.Endpoint("/nonexistent/nlx/unix.socket")
        with self.assertRaises(exception.RuntimeUnavailable) as ctx:
            client.ClientFactory(ep).get()
        self.assertIn("/nonexistent/nlx/unix.socket", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
