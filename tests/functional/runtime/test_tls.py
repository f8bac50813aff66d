"""HTTPS and trust: key pair, listener on/off through PUT/PATCH /1.0, TLS policy,
untrusted clients, certificates CRUD, trust tokens, trust password, restricted
certificates, unchanged pylxd over HTTPS, and Debian's LXD 5.0 `lxc` CLI."""
import base64
import json
import os
import shutil
import socket
import sqlite3
import ssl
import stat
import subprocess
import tempfile
import time
import uuid

import pylxd
import pytest
import requests

from tests.functional.runtime.harness import import_busybox
from tests.functional.runtime.remote_hosts import generate_keypair

if os.geteuid() != 0:
    pytest.skip("needs root (real containers)", allow_module_level=True)


@pytest.fixture
def stranger(tmp_path):
    """A client key pair no daemon trusts (yet)."""
    crt, key = str(tmp_path / "s.crt"), str(tmp_path / "s.key")
    generate_keypair(crt, key, "mg-stranger")
    return crt, key


def _fp(pem_path):
    with open(pem_path) as f:
        return __import__("hashlib").sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def _https(hosts, i, cert):
    d = hosts.daemons[i]
    return pylxd.Client(endpoint=d.url, cert=cert, verify=d.server_crt)


def _raw(hosts, i, path, cert=None, method="GET", **kw):
    return requests.request(method, hosts.daemons[i].url + path, cert=cert, verify=False,
                            timeout=10, **kw)


def test_keypair_and_fingerprint(hosts):
    d = hosts.daemons[0]
    st = os.stat(os.path.join(d.lxd_dir, "server.key"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    env = hosts.local(0).host_info["environment"]
    assert env["certificate_fingerprint"] == _fp(d.server_crt)
    assert env["certificate"] == open(d.server_crt).read()
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(open(d.server_crt, "rb").read())
    assert cert.public_key().curve.name == "secp384r1"
    # the unix socket stays root-only
    st = os.stat(d.socket)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o660)


def test_untrusted_sees_public_form_only(hosts, stranger):
    for cert in (None, stranger):
        r = _raw(hosts, 0, "/1.0", cert)
        meta = r.json()["metadata"]
        assert r.status_code == 200 and meta["auth"] == "untrusted"
        assert "environment" not in meta and "config" not in meta
        for path in ("/1.0/instances", "/1.0/containers", "/1.0/certificates",
                     "/1.0/profiles", "/1.0/operations", "/1.0/storage-pools"):
            r = _raw(hosts, 0, path, cert)
            assert r.status_code == 403, path
            assert r.json()["error_code"] == 403
        assert _raw(hosts, 0, "/1.0", cert, "PATCH", json={"config": {}}).status_code == 403


def test_every_route_refuses_untrusted_clients(hosts, stranger):
    """Walks the daemon's own endpoint tables: only routes marked UNTRUSTED (and
    public images) answer a client without a trusted certificate; every other one
    is a 403 envelope."""
    import re

    from runtime import auth
    from runtime.api import app
    checked = 0
    for mod in app.MODULES:
        for method, path, _handler, access in mod.ROUTES:
            if access is auth.UNTRUSTED or (method == "GET" and path.startswith("/1.0/images")):
                continue  # public images are for anyone: test_image_servers covers them
            url = re.sub(r"\{[^}]+\}", "x", path)
            for cert in (None, stranger):
                r = _raw(hosts, 0, url, cert, method,
                         data=b"{}" if method in ("POST", "PUT", "PATCH") else None)
                assert r.status_code == 403, (method, url, r.status_code, r.text[:200])
                assert r.json()["error_code"] == 403
                checked += 1
    assert checked > 100


def test_tls_policy(hosts):
    host, port = "127.0.0.1", hosts.daemons[0].port

    def handshake(ctx):
        with socket.create_connection((host, port), timeout=5) as s, \
                ctx.wrap_socket(s, server_hostname=host) as t:
            return t.version(), t.cipher()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    version, cipher = handshake(ctx)
    assert version == "TLSv1.3"
    ctx12 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx12.check_hostname, ctx12.verify_mode = False, ssl.CERT_NONE
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = handshake(ctx12)
    assert version == "TLSv1.2" and cipher[0].startswith("ECDHE-") and "GCM" in cipher[0] \
        or "CHACHA20" in cipher[0]
    # CBC suites and TLS < 1.2 are refused
    weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    weak.check_hostname, weak.verify_mode = False, ssl.CERT_NONE
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA:AES256-SHA:ECDHE-RSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        handshake(weak)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.options &= ~ssl.OP_NO_TLSv1_1
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return
    with pytest.raises(ssl.SSLError):
        handshake(old)


def test_pylxd_over_https_trusted(hosts):
    c = hosts.https(0)
    assert c.trusted
    import_busybox(c, "busybox")
    name = f"mg-{uuid.uuid4().hex[:8]}"
    inst = c.instances.create({"name": name, "source": {"type": "image",
                                                        "alias": "busybox"}}, wait=True)
    try:
        inst.start(wait=True)
        assert inst.execute(["echo", "hi"]).stdout == "hi\n"
        inst.stop(wait=True)
    finally:
        inst.delete(wait=True)


def test_https_address_follows_server_config(hosts):
    local = hosts.local(1)
    d = hosts.daemons[1]
    new_port = d.port + 1000
    local.api.patch(json={"config": {"core.https_address": f"127.0.0.1:{new_port}"}})
    try:
        r = requests.get(f"https://127.0.0.1:{new_port}/1.0", verify=False, timeout=5)
        assert r.json()["metadata"]["auth"] == "untrusted"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{d.url}/1.0", verify=False, timeout=5)
        # Unset: the listener goes away (PUT replaces the whole config).
        local.api.put(json={"config": {}})
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"https://127.0.0.1:{new_port}/1.0", verify=False, timeout=5)
        # An address that can't be bound is refused and the old state kept.
        with pytest.raises(pylxd.exceptions.LXDAPIException):
            local.api.patch(json={"config": {"core.https_address": "192.0.2.77:8443"}})
    finally:
        local.api.patch(json={"config": {"core.https_address": f"127.0.0.1:{d.port}"}})
    assert _raw(hosts, 1, "/1.0").status_code == 200


def test_certificates_crud(hosts, stranger):
    local = hosts.local(0)
    fp = _fp(stranger[0])
    cert = local.certificates.create("", open(stranger[0], "rb").read(), name="mg-crud")
    try:
        c = _https(hosts, 0, stranger)
        assert c.trusted
        listed = {x.fingerprint: x for x in local.certificates.all()}
        assert fp in listed and listed[fp].name == "mg-crud"
        row = local.api.certificates[fp[:12]].get().json()["metadata"]
        assert row["fingerprint"] == fp and row["type"] == "client"
        local.api.certificates[fp].patch(json={"name": "renamed"})
        assert local.certificates.get(fp).name == "renamed"
        with pytest.raises(pylxd.exceptions.LXDAPIException):    # duplicate
            local.certificates.create("", open(stranger[0], "rb").read(), name="again")
    finally:
        local.api.certificates[fp].delete()
    del cert
    assert not _https(hosts, 0, stranger).trusted


def test_trust_password_hashed_and_checked(hosts, stranger):
    local = hosts.local(0)
    local.api.patch(json={"config": {"core.trust_password": "mg-secret"}})
    try:
        assert local.api.get().json()["metadata"]["config"]["core.trust_password"] == "true"
        db = sqlite3.connect(os.path.join(hosts.daemons[0].lxd_dir, "database",
                                          "runtime.db"))
        stored = db.execute("SELECT value FROM config WHERE key='core.trust_password'"
                            ).fetchone()[0]
        db.close()
        assert "mg-secret" not in stored and len(stored) == 192
        c = _https(hosts, 0, stranger)
        with pytest.raises(pylxd.exceptions.LXDAPIException):
            c.authenticate("wrong")
        assert not c.trusted
        c.authenticate("mg-secret")
        assert c.trusted
        # An unrelated PATCH keeps the stored hash working.
        local.api.patch(json={"config": {"user.mg": "x"}})
        local.api.certificates[_fp(stranger[0])].delete()
        c2 = _https(hosts, 0, stranger)
        c2.authenticate("mg-secret")
        assert c2.trusted
    finally:
        local.api.patch(json={"config": {"core.trust_password": None, "user.mg": None}})
        try:
            local.api.certificates[_fp(stranger[0])].delete()
        except pylxd.exceptions.LXDAPIException:
            pass


def _token(local, name="mg-token", **extra):
    env = local.api.certificates.post(json={"name": name, "token": True, **extra}).json()
    meta = env["metadata"]["metadata"]
    token = base64.b64encode(json.dumps({
        "client_name": name, "fingerprint": meta["fingerprint"],
        "addresses": meta["addresses"], "secret": meta["secret"],
        "expires_at": meta["expires_at"]}).encode()).decode()
    return env["operation"], meta, token


def test_trust_token_one_time(hosts, stranger, tmp_path):
    local = hosts.local(0)
    op, meta, token = _token(local)
    assert meta["fingerprint"] == _fp(hosts.daemons[0].server_crt)
    assert meta["addresses"] == [f"127.0.0.1:{hosts.daemons[0].port}"]
    c = _https(hosts, 0, stranger)
    c.authenticate(token)                       # the whole token, as newer clients send
    assert c.trusted
    assert local.certificates.get(_fp(stranger[0])).name == "mg-token"
    status = local.api.operations[op.split("/")[-1]].get().json()["metadata"]["status"]
    assert status == "Success"
    # A second client can't reuse it.
    crt2, key2 = str(tmp_path / "o.crt"), str(tmp_path / "o.key")
    generate_keypair(crt2, key2, "mg-other")
    other = _https(hosts, 0, (crt2, key2))
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        other.authenticate(meta["secret"])
    # A cancelled token is dead too; a raw secret works while it lives.
    op2, meta2, _ = _token(local, "mg-t2")
    local.api.operations[op2.split("/")[-1]].delete()
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        other.authenticate(meta2["secret"])
    _op3, meta3, _ = _token(local, "mg-t3")
    other.authenticate(meta3["secret"])         # what `lxc remote add` of LXD 5.0 sends
    assert other.trusted
    for fp in (_fp(stranger[0]), _fp(crt2)):
        local.api.certificates[fp].delete()


def test_restricted_certificate(hosts, stranger):
    local = hosts.local(0)
    proj = f"mgp{uuid.uuid4().hex[:5]}"
    try:
        local.api.projects.post(json={"name": proj, "config": {}})
    except pylxd.exceptions.LXDAPIException as exc:
        pytest.skip(f"projects not available in this build: {exc}")
    fp = _fp(stranger[0])
    try:
        pem = open(stranger[0]).read()
        local.api.certificates.post(json={"type": "client", "certificate": pem,
                                          "name": "mg-r", "restricted": True,
                                          "projects": [proj]})
        r = _raw(hosts, 0, f"/1.0/instances?project={proj}", stranger)
        assert r.status_code == 200, r.text
        assert _raw(hosts, 0, "/1.0/instances", stranger).status_code == 403
        assert _raw(hosts, 0, "/1.0", stranger, "PATCH",
                    json={"config": {}}).status_code == 403
        assert _raw(hosts, 0, "/1.0/certificates", stranger, "POST",
                    json={"token": True}).status_code == 403
        assert _raw(hosts, 0, "/1.0", stranger).json()["metadata"]["auth"] == "trusted"
    finally:
        try:
            local.api.certificates[fp].delete()
        except pylxd.exceptions.LXDAPIException:
            pass
        local.api.projects[proj].delete()


# Debian's LXD 5.0 `lxc` CLI -----------------------------------------------------
@pytest.fixture
def lxc_cli():
    if not shutil.which("lxc"):
        pytest.skip("Debian's lxd package (lxc CLI) is not installed")
    home = tempfile.mkdtemp(prefix="mg-lxc-", dir="/var/tmp")
    env = {"HOME": home, "LXD_CONF": os.path.join(home, "conf"),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def run(*args, stdin="", check=True, timeout=60):
        p = subprocess.run(["lxc", *args], input=stdin, env=env, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"lxc {' '.join(args)}: {p.stdout}{p.stderr}")
        return p
    yield run
    shutil.rmtree(home, ignore_errors=True)


def test_lxc_cli_remote_add_fingerprint_and_copy(hosts, lxc_cli):
    local0, local1 = hosts.local(0), hosts.local(1)
    import_busybox(local0, "busybox")
    local1.api.patch(json={"config": {"core.trust_password": "mg-pw"}})
    try:
        # Password path: the CLI shows the fingerprint and asks before trusting it.
        p = lxc_cli("remote", "add", "mgb", hosts.daemons[1].url, "--password", "mg-pw",
                    stdin="n\n", check=False)
        assert _fp(hosts.daemons[1].server_crt) in p.stdout + p.stderr
        assert p.returncode != 0                # declined: not added
        p = lxc_cli("remote", "add", "mgb", hosts.daemons[1].url, "--password", "mg-pw",
                    stdin=_fp(hosts.daemons[1].server_crt) + "\n")
        # Token path: the token carries the fingerprint.
        _op, _meta, token = _token(local0, "mg-lxc")
        lxc_cli("remote", "add", "mga", token)
        remotes = lxc_cli("remote", "list", "--format", "csv").stdout
        assert "mga,https://127.0.0.1" in remotes and "mgb," in remotes
        name = f"mg-{uuid.uuid4().hex[:6]}"
        lxc_cli("launch", "mga:busybox", f"mga:{name}")
        assert lxc_cli("exec", f"mga:{name}", "--", "echo", "hi").stdout == "hi\n"
        # A running container: live migration is refused clearly (no working CRIU) ...
        p = lxc_cli("move", f"mga:{name}", f"mgb:{name}", check=False)
        assert p.returncode != 0 and "criu" in p.stderr.lower()
        # ... a stateless move works (the source stops it, the CLI starts it there).
        lxc_cli("move", "--stateless", f"mga:{name}", f"mgb:{name}")
        assert lxc_cli("list", "mgb:", "--format", "csv", "-c", "ns").stdout.strip() == \
            f"{name},RUNNING"
        assert name not in lxc_cli("list", "mga:", "--format", "csv", "-c", "n").stdout
        lxc_cli("move", "--stateless", f"mgb:{name}", f"mga:{name}")
        lxc_cli("stop", "-f", f"mga:{name}")
        t0 = time.perf_counter()
        lxc_cli("copy", f"mga:{name}", f"mgb:{name}")
        took = time.perf_counter() - t0
        assert name in lxc_cli("list", "mgb:", "--format", "csv", "-c", "n").stdout
        lxc_cli("move", f"mgb:{name}", f"mga:{name}-m")
        assert f"{name}-m" in lxc_cli("list", "mga:", "--format", "csv", "-c", "n").stdout
        assert name not in lxc_cli("list", "mgb:", "--format", "csv", "-c", "n").stdout
        print(f"lxc copy between two runtimes: {took * 1000:.0f} ms (CLI included)")
        for n in (name, f"{name}-m"):
            lxc_cli("delete", "-f", f"mga:{n}", check=False)
    finally:
        local1.api.patch(json={"config": {"core.trust_password": None}})
