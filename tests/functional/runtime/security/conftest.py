"""One HTTPS daemon for the security suite: three projects full of marked objects
and one client certificate per kind of caller (LXD's tls_restrictions.sh set-up).

Callers: `admin` (an unrestricted client certificate), `metrics` (a `metrics`
certificate), `restricted` (a client certificate restricted to project p1),
`stranger` (a certificate nobody trusts) and `none` (no certificate at all).
Every object a project holds carries that project's marker in its name or
description, so a response leaking another project's data is found by a
substring search.
"""
from __future__ import annotations

import json
import os
import uuid

import pylxd
import pytest
import requests

from tests.functional.runtime.harness import BUSYBOX
from tests.functional.runtime.remote_hosts import Hosts, generate_keypair

PROJECTS = ("default", "p1", "p2")
CALLERS = ("admin", "metrics", "restricted", "stranger", "none")


class World:
    def __init__(self) -> None:
        self.hosts = Hosts(1)
        self.daemon = self.hosts.daemons[0]
        self.url = self.daemon.url
        self.local = self.hosts.local(0)
        self.tag = uuid.uuid4().hex[:6]
        self.certs: dict[str, tuple[str, str] | None] = {
            "admin": (self.hosts.cert, self.hosts.key), "none": None}
        for who in ("metrics", "restricted", "stranger"):
            crt = os.path.join(self.hosts.tmp, f"{who}.crt")
            key = os.path.join(self.hosts.tmp, f"{who}.key")
            generate_keypair(crt, key, f"sec-{who}")
            self.certs[who] = (crt, key)
        self.fingerprints = {who: _fp(c[0]) for who, c in self.certs.items() if c}
        self.names: dict[str, dict[str, str]] = {}
        for proj in PROJECTS:
            self._populate(proj)
        self.trust("metrics", type="metrics")
        self.trust("restricted", restricted=True, projects=["p1"])

    # Requests ---------------------------------------------------------------
    def req(self, who: str, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.request(method, self.url + path, cert=self.certs[who], verify=False,
                                **kw)

    def admin(self, method: str, path: str, project: str = "default", wait: bool = True,
              **kw) -> dict:
        """A call over the unix socket (always an administrator); waits for operations."""
        params = dict(kw.pop("params", {}))
        if project != "default":
            params["project"] = project
        node = self.local.api
        for part in path.strip("/").split("/")[1:]:
            node = node[part]
        r = getattr(node, method.lower())(params=params, **kw)
        env = r.json()
        if env.get("type") == "async" and wait:
            self.local.operations.wait_for_operation(env["operation"])
        return env

    def client(self, who: str, project: str | None = None) -> pylxd.Client:
        return pylxd.Client(endpoint=self.url, cert=self.certs[who],
                            verify=self.daemon.server_crt, project=project)

    def trust(self, who: str, **fields) -> None:
        with open(self.certs[who][0]) as f:
            pem = f.read()
        self.admin("POST", "/1.0/certificates", json={"certificate": pem, "name": f"sec-{who}",
                                                      "type": "client", **fields})

    def marker(self, proj: str) -> str:
        return f"MARK{proj}x{self.tag}"

    # Set-up ----------------------------------------------------------------
    def _populate(self, proj: str) -> None:
        mark = self.marker(proj)
        names = {"instance": f"in{proj}x{self.tag}", "profile": f"pf{proj}x{self.tag}",
                 "volume": f"vol{proj}x{self.tag}", "alias": f"img{proj}x{self.tag}",
                 "snapshot": "s1", "volume_snapshot": "vs1"}
        self.names[proj] = names
        if proj != "default":
            fp = self.project(proj, {}, description=mark)
        else:
            fp = self.import_image(proj)
        params = {"project": proj} if proj != "default" else {}
        names["fingerprint"] = fp
        self.admin("POST", "/1.0/images/aliases", project=proj,
                   json={"name": names["alias"], "target": fp, "description": mark})
        self.admin("POST", "/1.0/instances", project=proj, json={
            "name": names["instance"], "description": mark,
            "source": {"type": "image", "alias": names["alias"]},
            "config": {"user.marker": mark}})
        # A file only this project's instance holds (read back through copies).
        self.local.api.instances[names["instance"]].files.post(
            params={"path": "/root/secret.txt", **params}, data=mark.encode(),
            headers={"X-LXD-type": "file", "X-LXD-mode": "0600"})
        self.admin("POST", f"/1.0/instances/{names['instance']}/snapshots", project=proj,
                   json={"name": "s1"})
        self.admin("POST", "/1.0/profiles", project=proj,
                   json={"name": names["profile"], "description": mark,
                         "config": {"user.marker": mark}})
        self.admin("POST", "/1.0/storage-pools/default/volumes/custom", project=proj,
                   json={"name": names["volume"], "description": mark})
        self.admin("POST", f"/1.0/storage-pools/default/volumes/custom/{names['volume']}"
                   "/snapshots", project=proj, json={"name": "vs1"})

    def import_image(self, proj: str) -> str:
        """The bundled busybox image in a project; its fingerprint."""
        with open(BUSYBOX, "rb") as f:
            env = self.local.api.images.post(data=f.read(), params={"project": proj}).json()
        return self.local.operations.wait_for_operation(env["operation"]).metadata[
            "fingerprint"]

    def project(self, proj: str, config: dict, description: str = "") -> str:
        """A new project whose default profile has a root disk, with the busybox
        image; returns the image's fingerprint."""
        self.admin("POST", "/1.0/projects", json={"name": proj, "description": description,
                                                  "config": config})
        self.admin("PATCH", "/1.0/profiles/default", project=proj, json={
            "devices": {"root": {"type": "disk", "path": "/", "pool": "default"}}})
        return self.import_image(proj)

    def empty_project(self, proj: str) -> None:
        """Remove everything a test project holds, then the project."""
        for inst in self.admin("GET", "/1.0/instances", project=proj)["metadata"]:
            name = inst.rsplit("/", 1)[-1].split("?")[0]
            try:
                self.admin("PUT", f"/1.0/instances/{name}/state", project=proj,
                           json={"action": "stop", "force": True})
            except pylxd.exceptions.LXDAPIException:
                pass   # not running
            self.admin("DELETE", f"/1.0/instances/{name}", project=proj)
        for img in self.admin("GET", "/1.0/images", project=proj)["metadata"]:
            self.admin("DELETE", img, project=proj)
        for vol in self.admin("GET", "/1.0/storage-pools/default/volumes/custom",
                              project=proj)["metadata"]:
            self.admin("DELETE", vol.split("?")[0], project=proj)
        for prof in self.admin("GET", "/1.0/profiles", project=proj)["metadata"]:
            name = prof.rsplit("/", 1)[-1].split("?")[0]
            if name != "default":
                self.admin("DELETE", f"/1.0/profiles/{name}", project=proj)
        self.admin("PUT", "/1.0/profiles/default", project=proj,
                   json={"config": {}, "devices": {}})
        self.admin("DELETE", f"/1.0/projects/{proj}")

    def state(self, proj: str) -> str:
        """What a project holds, as the administrator sees it (for 'nothing changed')."""
        out = {}
        for key, path in (("instances", "/1.0/instances"), ("profiles", "/1.0/profiles"),
                          ("images", "/1.0/images"), ("aliases", "/1.0/images/aliases"),
                          ("volumes", "/1.0/storage-pools/default/volumes/custom")):
            items = self.admin("GET", path, project=proj, params={"recursion": 1})["metadata"]
            for item in items:
                if isinstance(item, dict):
                    item.pop("last_used_at", None)
                    item.pop("used_by", None)
                    item.pop("status", None)
                    item.pop("status_code", None)
            out[key] = items
        inst = self.names[proj]["instance"]
        out["snapshots"] = self.admin("GET", f"/1.0/instances/{inst}/snapshots",
                                      project=proj)["metadata"]
        return json.dumps(out, sort_keys=True)

    def destroy(self) -> None:
        self.hosts.destroy()


def _fp(pem_path: str) -> str:
    import hashlib
    import ssl
    with open(pem_path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def pytest_collection_modifyitems(items):
    """The suite talks to its own daemon with verify=False on purpose."""
    for item in items:
        if "/security/" in str(item.fspath):
            item.add_marker(pytest.mark.filterwarnings(
                "ignore::urllib3.exceptions.InsecureRequestWarning"))


@pytest.fixture(scope="package")
def world():
    w = World()
    yield w
    w.destroy()
