"""Pure parts of the all-in-one cloud: the Glance v2 subset over an in-memory
store, the noauth identity middleware, the table, leftover detection."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import wsgiref.util

import pytest

from nova_lxd_py.allinone import cloud, demo, glance_api, identity, leftovers


class FakeStore:
    """The slice of nova's GlanceFixture the image API uses."""

    def __init__(self):
        self.images: dict[str, dict] = {}
        self._imagedata: dict[str, bytes] = {}

    def create(self, context, metadata, data=None):
        self.images[metadata["id"]] = dict(metadata)
        return self.images[metadata["id"]]

    def detail(self, context, **kwargs):
        return list(self.images.values())

    def update(self, context, image_id, metadata, data=None, purge_props=False):
        self.images[image_id].update(metadata)
        return self.images[image_id]

    def delete(self, context, image_id):
        del self.images[image_id]


def call(app, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    environ: dict = {"REQUEST_METHOD": method, "PATH_INFO": path,
                     "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(headers or {})
    seen = {}

    def start_response(status, response_headers):
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(response_headers)
    data = b"".join(app(environ, start_response))
    return seen["status"], data


def test_image_create_upload_show_list_download_delete():
    store = FakeStore()
    app = glance_api.GlanceV2(store, "aio")
    status, data = call(app, "POST", "/v2/images", json.dumps({
        "name": "bb", "disk_format": "raw", "container_format": "bare",
        "hw_architecture": "x86_64", "size": 5}).encode())
    assert status == 201
    image = json.loads(data)
    assert image["status"] == "queued" and image["size"] == 0  # size is read-only
    assert image["hw_architecture"] == "x86_64" and image["owner"] == "aio"
    assert store.images[image["id"]]["properties"]["hw_architecture"] == "x86_64"

    status, _ = call(app, "PUT", f"/v2/images/{image['id']}/file", b"tarball")
    assert status == 204
    status, data = call(app, "GET", f"/v2/images/{image['id']}")
    shown = json.loads(data)
    assert (shown["status"], shown["size"], shown["disk_format"]) == ("active", 7, "raw")
    status, data = call(app, "GET", "/v2/images")
    assert [i["id"] for i in json.loads(data)["images"]] == [image["id"]]
    status, data = call(app, "GET", f"/v2/images/{image['id']}/file")
    assert (status, data) == (200, b"tarball")
    assert call(app, "DELETE", f"/v2/images/{image['id']}")[0] == 204
    assert call(app, "GET", f"/v2/images/{image['id']}")[0] == 404
    assert call(app, "GET", "/v2/tasks")[0] == 404
    assert call(app, "POST", "/v2/images", b"{not json")[0] == 400


def test_snapshot_data_given_to_update_is_kept():
    store = FakeStore()
    store.create(None, {"id": "i1", "properties": {}})
    glance_api.keep_snapshot_data(store)
    store.update(None, "i1", {"status": "active"}, data=io.BytesIO(b"snap"))
    assert store._imagedata["i1"] == b"snap" and store.images["i1"]["size"] == 4


def test_noauth_fills_identity_unless_given():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return [b""]
    cloud.noauth(app)({}, None)
    assert (seen["HTTP_X_AUTH_USER"], seen["HTTP_X_AUTH_PROJECT_ID"]) == ("admin", "aio")
    assert "admin" in seen["HTTP_X_ROLES"].split(",")
    seen.clear()
    cloud.noauth(app)({"HTTP_X_AUTH_TOKEN": "alice:p1"}, None)
    assert (seen["HTTP_X_AUTH_USER"], seen["HTTP_X_AUTH_PROJECT_ID"]) == ("alice", "p1")


def test_table_aligns_columns():
    text = demo.table(["a", "long header"], [["x" * 5, 1], ["y", 22]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].startswith("| a     | long header |")


def test_leftovers_skip_live_clouds_and_clean_dead_ones(tmp_path):
    live, dead = tmp_path / "aio-live", tmp_path / "aio-dead"
    for path in (live, dead):
        (path / "aio-host1" / "containers").mkdir(parents=True)
    leftovers.record(str(live), os.getpid(), [])
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that is gone
    # a "runtime" pid that is alive but not a runtime of that dir: never killed
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        leftovers.record(str(dead), child.pid, [sleeper.pid])
        cleaned = leftovers.clean(str(tmp_path), progress=lambda m: None)
        assert cleaned == [str(dead)]
        assert live.exists() and not dead.exists()
        time.sleep(0.1)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("argv", [["--help"]])
def test_cli_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args(argv)
    assert exit_info.value.code == 0
    assert "--keep" in capsys.readouterr().out


def test_identity_issues_user_project_tokens_with_the_catalog():
    app = identity.IdentityV3({"compute": "http://c/v2.1", "image": "http://i"}, "aio")
    assert call(app, "GET", "/v3")[0] == 200
    body = json.dumps({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "alice", "domain": {"id": "default"}, "password": "x"}}},
        "scope": {"project": {"name": "p1", "domain": {"id": "default"}}}}}).encode()
    seen = {}

    def start_response(status, headers):
        seen.update(status=status, headers=dict(headers))
    token = json.loads(b"".join(app({
        "REQUEST_METHOD": "POST", "PATH_INFO": "/v3/auth/tokens",
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}, start_response)))
    assert seen["status"].startswith("201")
    assert seen["headers"]["X-Subject-Token"] == "alice:p1"  # what noauth reads back
    urls = {s["type"]: s["endpoints"][0]["url"] for s in token["token"]["catalog"]}
    assert urls == {"compute": "http://c/v2.1", "image": "http://i"}
    assert call(app, "POST", "/v3/auth/tokens", b"[]")[0] == 400
