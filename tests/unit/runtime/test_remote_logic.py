"""Pure logic of TLS, trust, migration and image servers (no daemon, no root)."""
import base64
import json
import os
import ssl

import pytest

from runtime import tls
from runtime.api import certificates
from runtime.base import passwords
from runtime.cli import output
from runtime.cli.remotes import Config, decode_token
from runtime.images import remote
from runtime.migration import _ws_url
from runtime.storage import LAYER, VOLUME, Pool
from runtime.storage.btrfs import BtrfsPool
from runtime.storage.dir import DirPool


@pytest.mark.parametrize("value,expected", [
    ("127.0.0.1:8443", ("127.0.0.1", 8443)),
    ("127.0.0.1", ("127.0.0.1", 8443)),
    (":9000", ("::", 9000)),
    ("[::1]:8444", ("::1", 8444)),
    ("[::]", ("::", 8443)),
    ("fd00::1", ("fd00::1", 8443)),
])
def test_parse_address(value, expected):
    assert tls.parse_address(value) == expected


def test_keypair_fingerprint_and_contexts(tmp_path):
    crt, key = str(tmp_path / "s.crt"), str(tmp_path / "s.key")
    tls.generate_keypair(crt, key, "unit")
    pem = open(crt).read()
    assert tls.fingerprint_pem(pem) == tls.fingerprint_der(ssl.PEM_cert_to_DER_cert(pem))
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    ctx = tls.server_context(crt, key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert all(c["name"].startswith(("ECDHE", "TLS_")) for c in ctx.get_ciphers())
    pinned = tls.client_context(crt, key, pem)
    assert not pinned.check_hostname and pinned.verify_mode == ssl.CERT_REQUIRED
    default = tls.client_context(crt, key, None)
    assert default.check_hostname and default.verify_mode == ssl.CERT_REQUIRED


def test_password_hash_round_trip():
    stored = passwords.hash_password("s3cret")
    assert "s3cret" not in stored and len(stored) == 192
    assert passwords.check_password(stored, "s3cret")
    assert not passwords.check_password(stored, "other")
    assert not passwords.check_password("garbage", "s3cret")


def test_parse_certificate_pem_and_base64(tmp_path):
    crt, key = str(tmp_path / "c.crt"), str(tmp_path / "c.key")
    tls.generate_keypair(crt, key, "unit")
    pem = open(crt).read()
    der_b64 = base64.b64encode(ssl.PEM_cert_to_DER_cert(pem)).decode()
    assert certificates.parse_certificate(pem)[1] == certificates.parse_certificate(der_b64)[1]
    with pytest.raises(Exception, match="Invalid certificate"):
        certificates.parse_certificate("bm90IGEgY2VydA==")


def test_token_encoding_is_lxds_and_decodes():
    meta = {"fingerprint": "ab" * 32, "addresses": ["10.0.0.1:8443"], "secret": "s" * 64}
    token = certificates.encode_token(meta, "client-a")
    data = json.loads(base64.b64decode(token))
    assert data == {"client_name": "client-a", "fingerprint": "ab" * 32,
                    "addresses": ["10.0.0.1:8443"], "secret": "s" * 64,
                    "expires_at": "0001-01-01T00:00:00Z"}
    assert decode_token(token)["secret"] == "s" * 64
    assert decode_token("https://host:8443") is None


def test_ws_url():
    assert _ws_url("https://h:1/1.0/operations/x", "s") == \
        "wss://h:1/1.0/operations/x/websocket?secret=s"
    assert _ws_url("http://h/1.0/operations/x/", "s") == \
        "ws://h/1.0/operations/x/websocket?secret=s"


def test_layer_base_and_migration_types(tmp_path):
    """A dir pool's overlay volume can travel as its own layer over its image; a
    btrfs pool's volumes travel whole; the pool layer names what to send."""
    dirpool = Pool(DirPool("p", {}, str(tmp_path)))
    root = tmp_path / "storage-pools" / "p"
    vol = root / "containers" / "vol"
    (vol / ".upper").mkdir(parents=True)
    (vol / ".lower").write_text("abc\n")
    assert dirpool.migration_types() == (LAYER, VOLUME)
    assert dirpool.layer_base("vol") == "abc"
    assert dirpool.send_source("vol", None, LAYER) == (
        str(vol), [".upper", "metadata.yaml", "templates"])
    assert dirpool.send_source("vol", None, VOLUME)[1] == ["rootfs", "metadata.yaml",
                                                          "templates"]
    snap = root / "containers-snapshots" / "vol" / "s1"
    snap.mkdir(parents=True)        # a snapshot not on the same layer: all travels whole
    assert dirpool.layer_base("vol", snapshots=("s1",)) is None
    btrfs = Pool(BtrfsPool("p", {}, str(tmp_path)))
    assert btrfs.migration_types() == (VOLUME,)
    assert btrfs.layer_base("vol") is None
    (vol / ".upper").rmdir()
    assert dirpool.layer_base("vol") is None


def test_simplestreams_version_files():
    items = {"a": {"ftype": "lxd.tar.xz", "path": "m", "sha256": "1", "size": 1,
                   "combined_rootxz_sha256": "fp-xz", "combined_squashfs_sha256": "fp-sq"},
             "b": {"ftype": "squashfs", "path": "r.sq", "size": 2},
             "c": {"ftype": "root.tar.xz", "path": "r.xz", "size": 3}}
    found = remote._ss_version({"items": items})
    assert found["fingerprint"] == "fp-xz" and found["rootfs_path"] == "r.xz"
    del items["c"]
    assert remote._ss_version({"items": items})["fingerprint"] == "fp-sq"
    unified = {"u": {"ftype": "lxd_combined.tar.gz", "path": "u.tgz", "sha256": "fp-u"}}
    assert remote._ss_version({"items": unified})["rootfs_path"] is None
    assert remote._ss_version({"items": {}}) is None


def test_remote_source_validation():
    with pytest.raises(Exception, match="Invalid image server"):
        remote.Remote({"server": "ftp://x"})
    with pytest.raises(Exception, match="protocol"):
        remote.Remote({"server": "https://x", "protocol": "gopher"})


def test_cli_table_and_formats():
    rows = [{"name": "a", "ips": ["1", "2"]}, {"name": "bb", "ips": []}]
    cols = [("NAME", "name"), ("IPS", "ips")]
    table = output.render(rows, cols, "table")
    assert table.splitlines()[1] == "| NAME | IPS |"
    assert "| a    | 1   |" in table and "|      | 2   |" in table
    assert json.loads(output.render(rows, cols, "json")) == rows
    assert output.render(rows, cols, "csv") == 'a,"1\n2"\nbb,'   # RFC 4180, as lxc


def test_cli_config_split(tmp_path):
    cfg = Config(str(tmp_path))
    cfg.remotes["two"] = {"addr": "https://h:1", "protocol": "lxd"}
    assert cfg.split("two:c1") == ("two", "c1")
    assert cfg.split("c1") == ("local", "c1")
    assert cfg.split("two:") == ("two", "")
    with pytest.raises(Exception, match="doesn't exist"):
        cfg.split("nope:c1")
