"""Image servers: one runtime serves its public images to another (LXD protocol),
a simplestreams index served from a local directory on loopback, the remote
image cache (expiry, refresh) and instances created straight from a remote."""
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import pylxd
import pytest
import requests

from tests.functional.runtime.harness import BUSYBOX, import_busybox
from tests.functional.runtime.remote_hosts import Hosts

if os.geteuid() != 0:
    pytest.skip("needs root (real containers)", allow_module_level=True)


@pytest.fixture(scope="module")
def hosts():
    h = Hosts(2, netns=False)
    server = h.local(0)
    fp = import_busybox(server, "busybox")
    img = server.images.get(fp)
    img.public = True
    img.save()
    yield h
    h.destroy()


def _sha(*paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class Streams:
    """A simplestreams tree in a directory, served over HTTP on 127.0.0.1."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="mg-ss-", dir="/var/tmp")
        self.work = os.path.join(self.root, ".work")
        os.makedirs(os.path.join(self.work, "x"))
        subprocess.run(["tar", "-xJf", BUSYBOX, "-C", os.path.join(self.work, "x"),
                        "--numeric-owner"], check=True)
        self.versions: dict[str, dict] = {}
        root = self.root

        shutil.copy(BUSYBOX, os.path.join(root, "busybox.tar.xz"))
        direct_fp = _sha(BUSYBOX)

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=root, **kw)

            def do_HEAD(self):
                if self.path == "/direct":    # LXD's `url` source protocol
                    self.send_response(200)
                    self.send_header("LXD-Image-Hash", direct_fp)
                    self.send_header("LXD-Image-URL", "/busybox.tar.xz")
                    self.end_headers()
                    return
                super().do_HEAD()

            def log_message(self, *args):
                pass
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add_version(self, version: str, marker: str) -> str:
        """Publish busybox with /etc/mg-version = marker; returns LXD's fingerprint."""
        x = os.path.join(self.work, "x")
        with open(os.path.join(x, "rootfs", "etc", "mg-version"), "w") as f:
            f.write(marker)
        vdir = os.path.join(self.root, "images", "busybox", version)
        os.makedirs(vdir, exist_ok=True)
        meta, rootfs = os.path.join(vdir, "lxd.tar.xz"), os.path.join(vdir, "root.tar.xz")
        entries = [e for e in ("metadata.yaml", "templates") if os.path.exists(
            os.path.join(x, e))]
        subprocess.run(["tar", "-I", "xz -0 -T0", "-cf", meta, "-C", x, *entries], check=True)
        subprocess.run(["tar", "-I", "xz -0 -T0", "-cf", rootfs, "--numeric-owner", "-C",
                        os.path.join(x, "rootfs"), "."], check=True)
        fp = _sha(meta, rootfs)
        rel = os.path.relpath(vdir, self.root)
        self.versions[version] = {"items": {
            "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"{rel}/lxd.tar.xz",
                           "sha256": _sha(meta), "size": os.path.getsize(meta),
                           "combined_rootxz_sha256": fp, "combined_sha256": fp},
            "root.tar.xz": {"ftype": "root.tar.xz", "path": f"{rel}/root.tar.xz",
                            "sha256": _sha(rootfs), "size": os.path.getsize(rootfs)}}}
        self._write()
        return fp

    def _write(self):
        os.makedirs(os.path.join(self.root, "streams", "v1"), exist_ok=True)
        products = {"busybox:1.35:amd64:default": {
            "aliases": "mg-busybox,mg-busybox/1.35", "arch": "amd64", "os": "BusyBox",
            "release": "1.35", "versions": self.versions}}
        with open(os.path.join(self.root, "streams", "v1", "images.json"), "w") as f:
            json.dump({"content_id": "images", "datatype": "image-downloads",
                       "format": "products:1.0", "products": products}, f)
        with open(os.path.join(self.root, "streams", "v1", "index.json"), "w") as f:
            json.dump({"format": "index:1.0", "index": {"images": {
                "datatype": "image-downloads", "path": "streams/v1/images.json",
                "format": "products:1.0", "products": list(products)}}}, f)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def streams():
    s = Streams()
    yield s
    s.close()


@pytest.fixture
def client(hosts):
    """The image client daemon (B); its images and instances are wiped afterwards."""
    c = hosts.local(1)
    yield c
    for inst in c.instances.all():
        if inst.status != "Stopped":
            inst.stop(force=True, wait=True)
        inst.delete(wait=True)
    for img in c.images.all():
        img.delete(wait=True)
    c.api.patch(json={"config": {"images.remote_cache_expiry": None,
                                 "images.auto_update_interval": None}})


def _import(c, source, **body):
    env = c.api.images.post(json={"source": {"type": "image", "mode": "pull", **source},
                                  **body}).json()
    op = env["operation"].split("/")[-1]
    return c.api.operations[op].wait.get(params={"timeout": 60}).json()["metadata"]


def _lxd_source(hosts, **extra):
    return {"server": hosts.daemons[0].url, "protocol": "lxd",
            "certificate": open(hosts.daemons[0].server_crt).read(), **extra}


def test_public_images_served_to_untrusted_clients(hosts):
    server = hosts.local(0)
    url = hosts.daemons[0].url
    public_fp = server.images.get_by_alias("busybox").fingerprint
    r = requests.get(f"{url}/1.0/images", verify=False, timeout=10)
    assert r.status_code == 200 and r.json()["metadata"] == [f"/1.0/images/{public_fp}"]
    r = requests.get(f"{url}/1.0/images/aliases/busybox", verify=False, timeout=10)
    assert r.json()["metadata"]["target"] == public_fp
    r = requests.get(f"{url}/1.0/images/{public_fp}/export", verify=False, timeout=10)
    assert hashlib.sha256(r.content).hexdigest() == public_fp
    # Private: invisible, and writing is never allowed.
    img = server.images.get(public_fp)
    img.public = False
    img.save()
    try:
        assert requests.get(f"{url}/1.0/images", verify=False,
                            timeout=10).json()["metadata"] == []
        assert requests.get(f"{url}/1.0/images/{public_fp}", verify=False,
                            timeout=10).status_code == 404
        assert requests.get(f"{url}/1.0/images/{public_fp}/export", verify=False,
                            timeout=10).status_code == 404
        assert requests.delete(f"{url}/1.0/images/{public_fp}", verify=False,
                               timeout=10).status_code == 403
    finally:
        img.public = True
        img.save()


def test_import_from_runtime_over_lxd_protocol(hosts, client):
    fp = hosts.local(0).images.get_by_alias("busybox").fingerprint
    res = _import(client, _lxd_source(hosts, alias="busybox"), aliases=[{"name": "bb"}])
    assert res["status"] == "Success", res["err"]
    assert res["metadata"]["fingerprint"] == fp
    img = client.images.get(fp)
    assert not img.cached and img.aliases[0]["name"] == "bb"
    assert img.update_source["server"] == hosts.daemons[0].url


def test_instance_from_remote_alias_caches_image(hosts, client):
    name = f"mg-{uuid.uuid4().hex[:6]}"
    inst = client.instances.create({"name": name, "source": {
        "type": "image", **_lxd_source(hosts, alias="busybox")}}, wait=True)
    inst.start(wait=True)
    assert inst.execute(["echo", "ok"]).stdout == "ok\n"
    imgs = client.images.all()
    assert len(imgs) == 1 and imgs[0].cached


def test_bad_sources_are_clear(hosts, client):
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        client.api.images.post(json={"source": {"type": "image", "server": "ftp://x",
                                                "alias": "a"}})
    assert "server" in str(exc.value)
    res = _import(client, {"server": "https://127.0.0.1:9", "protocol": "lxd",
                           "alias": "busybox"})
    assert res["status"] == "Failure" and "127.0.0.1:9" in res["err"]
    res = _import(client, _lxd_source(hosts, alias="no-such-alias"))
    assert res["status"] == "Failure" and "not found" in res["err"].lower()


def test_simplestreams_import_and_launch(streams, client):
    fp = streams.add_version("20260101_00:00", "v1")
    res = _import(client, {"server": streams.url, "protocol": "simplestreams",
                           "alias": "mg-busybox"}, aliases=[{"name": "ssbb"}])
    assert res["status"] == "Success", res["err"]
    assert res["metadata"]["fingerprint"] == fp
    client.images.get(fp).delete(wait=True)
    inst = client.instances.create({"name": "mg-ss", "source": {
        "type": "image", "server": streams.url, "protocol": "simplestreams",
        "alias": "mg-busybox"}}, wait=True)
    inst.start(wait=True)
    assert inst.execute(["cat", "/etc/mg-version"]).stdout == "v1"
    assert client.images.get(fp).cached


def test_cache_expiry(streams, client):
    fp = streams.add_version("20260101_00:00", "v1")
    client.instances.create({"name": "mg-exp", "source": {
        "type": "image", "server": streams.url, "protocol": "simplestreams",
        "alias": "mg-busybox"}}, wait=True).delete(wait=True)
    assert client.images.get(fp).cached
    client.api.patch(json={"config": {"images.remote_cache_expiry": "10"}})
    assert client.images.get(fp)                 # used seconds ago: kept
    time.sleep(1.2)
    client.api.patch(json={"config": {"images.remote_cache_expiry": "0.00001"}})  # ~0.9 s
    with pytest.raises(pylxd.exceptions.NotFound):
        client.images.get(fp)


def test_refresh_when_source_has_newer_image(streams, client):
    fp1 = streams.add_version("20260101_00:00", "v1")
    res = _import(client, {"server": streams.url, "protocol": "simplestreams",
                           "alias": "mg-busybox"}, aliases=[{"name": "rb"}],
                  auto_update=True)
    assert res["metadata"]["fingerprint"] == fp1
    fp2 = streams.add_version("20260202_00:00", "v2")
    assert fp2 != fp1
    client.api.patch(json={"config": {"images.auto_update_interval": "1"}})
    target = client.api.images.aliases["rb"].get().json()["metadata"]["target"]
    assert target == fp2
    # An instance created from the remote alias gets the newest image too.
    inst = client.instances.create({"name": "mg-new", "source": {
        "type": "image", "server": streams.url, "protocol": "simplestreams",
        "alias": "mg-busybox"}}, wait=True)
    inst.start(wait=True)
    assert inst.execute(["cat", "/etc/mg-version"]).stdout == "v2"


def test_refresh_disabled(streams, client):
    fp1 = streams.add_version("20260101_00:00", "v1")
    _import(client, {"server": streams.url, "protocol": "simplestreams",
                     "alias": "mg-busybox"}, aliases=[{"name": "nr"}], auto_update=False)
    streams.add_version("20260202_00:00", "v2")
    client.api.patch(json={"config": {"images.auto_update_interval": "1"}})
    assert client.api.images.aliases["nr"].get().json()["metadata"]["target"] == fp1


def test_real_lxd_pulls_a_public_image_from_the_runtime(hosts, tmp_path):
    """Debian's LXD 5.0 as the image client: our image-server side is the real protocol."""
    sock = "/var/lib/lxd/unix.socket"
    if not os.path.exists(sock):
        pytest.skip("no LXD daemon here (benchmarks/lxd_baseline.sh up)")
    import urllib.parse
    try:
        # pylxd.Client() already talks to the daemon (GET /1.0): a stale socket
        # left by a stopped LXD must skip, not fail.
        lxd = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(sock, safe=""))
        _ = lxd.host_info
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"LXD does not answer: {exc}")
    # A variant of busybox, so that LXD really downloads (it may hold busybox already).
    work = tmp_path / "v"
    work.mkdir()
    subprocess.run(["tar", "-xJf", BUSYBOX, "-C", str(work), "--numeric-owner"], check=True)
    (work / "rootfs" / "etc" / "mg-variant").write_text(uuid.uuid4().hex)
    variant = tmp_path / "variant.tar.gz"
    subprocess.run(["tar", "-czf", str(variant), "--numeric-owner", "-C", str(work),
                    *sorted(os.listdir(work))], check=True)
    server = hosts.local(0)
    img = server.images.create(variant.read_bytes(), public=True, wait=True)
    alias = f"mg-variant-{uuid.uuid4().hex[:6]}"
    img.add_alias(alias, "")
    try:
        env = lxd.api.images.post(json={"source": {
            "type": "image", "mode": "pull", "protocol": "lxd", "alias": alias,
            "server": hosts.daemons[0].url,
            "certificate": open(hosts.daemons[0].server_crt).read()}}).json()
        op = env["operation"].split("/")[-1]
        result = lxd.api.operations[op].wait.get(params={"timeout": 60}).json()["metadata"]
        assert result["status"] == "Success", result["err"]
        assert result["metadata"]["fingerprint"] == img.fingerprint
    finally:
        try:
            lxd.images.get(img.fingerprint).delete(wait=True)
        except pylxd.exceptions.NotFound:
            pass
        img.delete(wait=True)


def test_pylxd_image_helpers(streams, client):
    """pylxd's create_from_simplestreams() (alias sent as `fingerprint`) and
    create_from_url() (LXD-Image-Hash / LXD-Image-URL headers)."""
    fp = streams.add_version("20260101_00:00", "v1")
    img = pylxd.models.Image.create_from_simplestreams(client, streams.url, "mg-busybox")
    assert img.fingerprint == fp
    img = pylxd.models.Image.create_from_url(client, streams.url + "/direct")
    assert img.fingerprint == _sha(BUSYBOX)
