"""Operations and events as each caller sees them: secrets only for the operation's
creator (in listings, on /wait and in events), trust tokens only for
administrators and gone when they expire, other projects' events never reach a
restricted certificate (even with all-projects), cancel only by creator or admin."""
from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time

import pytest

from tests.functional.runtime.remote_hosts import generate_keypair
from tests.functional.runtime.security.conftest import _fp


class Listener:
    """A /1.0/events websocket held by one caller, in a thread of its own."""

    def __init__(self, world, who: str, **params) -> None:
        self.events: list[dict] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: str | None = None
        url = world.url.replace("https://", "wss://") + "/1.0/events"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.load_cert_chain(*world.certs[who])
        self.thread = threading.Thread(target=asyncio.run, args=(self._run(url, ctx, params),),
                                       daemon=True)
        self.thread.start()
        assert self.ready.wait(10), self.error

    async def _run(self, url: str, ctx, params: dict) -> None:
        import aiohttp
        try:
            async with aiohttp.ClientSession() as s, s.ws_connect(url, ssl=ctx,
                                                                  params=params) as ws:
                self.ready.set()
                while not self.stop.is_set():
                    try:
                        msg = await ws.receive(timeout=0.1)
                    except TimeoutError:
                        continue
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    self.events.append(json.loads(msg.data))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = f"{type(exc).__name__}: {exc}"
            self.ready.set()

    def close(self) -> list[dict]:
        time.sleep(0.3)
        self.stop.set()
        self.thread.join(5)
        return self.events


@pytest.fixture
def colleague(world, tmp_path):
    """A second certificate restricted to p1 (same project, another client)."""
    world.certs["colleague"] = (str(tmp_path / "c.crt"), str(tmp_path / "c.key"))
    generate_keypair(*world.certs["colleague"], "sec-colleague")
    world.trust("colleague", restricted=True, projects=["p1"])
    yield "colleague"
    world.admin("DELETE", f"/1.0/certificates/{_fp(world.certs.pop('colleague')[0])}")


@pytest.fixture
def running_p1(world):
    inst = world.names["p1"]["instance"]
    world.admin("PUT", f"/1.0/instances/{inst}/state", project="p1",
                json={"action": "start"})
    yield inst
    world.admin("PUT", f"/1.0/instances/{inst}/state", project="p1",
                json={"action": "stop", "force": True})


def _secret_values(obj) -> set[str]:
    out = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("secret", "fds", "control", "fs") and isinstance(value, (str, dict)):
                out |= set(value.values()) if isinstance(value, dict) else {value}
            else:
                out |= _secret_values(value)
    elif isinstance(obj, list):
        for item in obj:
            out |= _secret_values(item)
    return out


# (endpoint, body, number of websockets): exec's fds 0-2 and control, the console's
# 0 and control.
WEBSOCKET_OPERATIONS = {
    "exec": ("exec", {"command": ["sleep", "30"], "wait-for-websocket": True,
                      "interactive": False}, 4),
    "console": ("console", {"type": "console"}, 2),
}


@pytest.mark.parametrize("kind", sorted(WEBSOCKET_OPERATIONS))
def test_websocket_secrets_only_for_the_creator(world, colleague, running_p1, kind):
    endpoint, body, count = WEBSOCKET_OPERATIONS[kind]
    listeners = {who: Listener(world, who, **{"all-projects": "true"})
                 for who in ("restricted", colleague, "admin")}
    r = world.req("restricted", "POST", f"/1.0/instances/{running_p1}/{endpoint}",
                  params={"project": "p1"}, json=body)
    assert r.status_code == 202, r.text
    op = r.json()["metadata"]
    fds = set(op["metadata"]["fds"].values())
    assert len(fds) == count
    url = f"/1.0/operations/{op['id']}"
    seen = {}
    for who in ("restricted", colleague, "admin"):
        got = world.req(who, "GET", url).json()["metadata"]
        listed = world.req(who, "GET", "/1.0/operations",
                           params={"project": "p1", "recursion": 1}).json()["metadata"]
        seen[who] = (_secret_values(got) | _secret_values(listed)) & fds
    seen["unix"] = (_secret_values(world.admin("GET", url)["metadata"]) |
                    _secret_values(world.admin("GET", "/1.0/operations", params={
                        "recursion": 1})["metadata"])) & fds
    assert seen == {"restricted": fds, colleague: set(), "admin": set(), "unix": set()}
    # A colleague sees the operation (same project) but may not cancel it.
    assert world.req(colleague, "GET", url).status_code == 200
    assert world.req(colleague, "DELETE", url).status_code == 403
    # Its websockets are reachable only with the secrets: an empty or wrong one is 403.
    assert world.req("stranger", "GET", url + "/websocket",
                     params={"secret": "0" * 64}).status_code == 403
    events = {who: lst.close() for who, lst in listeners.items()}
    for who, evs in events.items():
        mine = [e for e in evs if e["type"] == "operation"
                and e["metadata"]["id"] == op["id"]]
        assert mine, f"{who} saw no event of the operation"
        leaked = set().union(*(_secret_values(e) for e in mine)) & fds
        assert leaked == (fds if who == "restricted" else set()), who


def test_token_operations_are_for_administrators_only(world, colleague):
    env = world.admin("POST", "/1.0/certificates", wait=False,
                      json={"name": "sec-tok", "token": True})
    op_id = env["operation"].split("/")[-1]
    secret = env["metadata"]["metadata"]["secret"]
    try:
        for who in ("restricted", colleague):
            for params in ({}, {"all-projects": "true"}, {"project": "p1"}):
                r = world.req(who, "GET", "/1.0/operations", params={"recursion": 1,
                                                                     **params})
                assert op_id not in r.text and secret not in r.text, (who, params)
            r = world.req(who, "GET", f"/1.0/operations/{op_id}")
            assert r.status_code == 404 and secret not in r.text
            assert world.req(who, "GET", f"/1.0/operations/{op_id}/wait",
                             params={"timeout": 0}).status_code == 404
            assert world.req(who, "DELETE", f"/1.0/operations/{op_id}").status_code == 404
            assert world.req(who, "POST", "/1.0/certificates",
                             json={"token": True, "name": "x"}).status_code == 403
        # Another administrator certificate sees the token, not its secret.
        r = world.req("admin", "GET", f"/1.0/operations/{op_id}")
        assert r.status_code == 200 and secret not in r.text
        assert secret in json.dumps(world.admin("GET", f"/1.0/operations/{op_id}"))
    finally:
        world.admin("DELETE", f"/1.0/operations/{op_id}")


def test_tokens_expire(world, tmp_path):
    world.admin("PATCH", "/1.0", json={"config": {"core.remote_token_expiry": "2S"}})
    joiner = (str(tmp_path / "j.crt"), str(tmp_path / "j.key"))
    generate_keypair(*joiner, "sec-joiner")
    world.certs["joiner"] = joiner
    try:
        r = world.req("admin", "PATCH", "/1.0",
                      json={"config": {"core.remote_token_expiry": "soon"}})
        assert r.status_code == 400, r.text
        env = world.admin("POST", "/1.0/certificates", wait=False,
                          json={"name": "sec-exp", "token": True})
        meta = env["metadata"]["metadata"]
        assert meta["expires_at"] != "0001-01-01T00:00:00Z"
        time.sleep(2.5)
        r = world.req("joiner", "POST", "/1.0/certificates",
                      json={"type": "client", "trust_token": meta["secret"]})
        assert r.status_code == 403, r.text
        op = world.admin("GET", env["operation"])["metadata"]
        assert op["status"] == "Failure" and "expired" in op["err"], op
        assert "secret" not in (op["metadata"] or {})
        # A fresh token works within its lifetime.
        env = world.admin("POST", "/1.0/certificates", wait=False,
                          json={"name": "sec-exp2", "token": True})
        r = world.req("joiner", "POST", "/1.0/certificates",
                      json={"type": "client",
                            "trust_token": env["metadata"]["metadata"]["secret"]})
        assert r.status_code == 201, r.text
        assert world.req("joiner", "GET", "/1.0").json()["metadata"]["auth"] == "trusted"
    finally:
        world.certs.pop("joiner", None)
        world.admin("PATCH", "/1.0", json={"config": {"core.remote_token_expiry": None}})
        try:
            world.admin("DELETE", f"/1.0/certificates/{_fp(joiner[0])}")
        except Exception:  # noqa: BLE001 - not joined
            pass


def test_events_of_other_projects_never_reach_a_restricted_certificate(world):
    listeners = {
        "restricted all-projects": Listener(world, "restricted", **{"all-projects": "true"}),
        "restricted": Listener(world, "restricted"),
        "restricted p1": Listener(world, "restricted", project="p1"),
        "admin all-projects": Listener(world, "admin", **{"all-projects": "true"}),
    }
    r = world.req("restricted", "GET", "/1.0/events", params={"project": "p2"})
    assert r.status_code == 403
    made = []
    for proj in ("p1", "p2", "default"):
        name = f"ev{proj}x{world.tag}"
        world.admin("POST", "/1.0/profiles", project=proj, json={"name": name})
        made.append((proj, name))
    env = world.admin("POST", "/1.0/certificates", wait=False,
                      json={"name": "sec-ev", "token": True})
    world.admin("DELETE", env["operation"])
    try:
        got = {}
        for label, lst in listeners.items():
            evs = lst.close()
            got[label] = sorted({e.get("project") for e in evs})
            if label.startswith("restricted"):
                assert all(e.get("project") == "p1" for e in evs), (label, evs[:3])
                assert not any(e["type"] == "operation" and e["metadata"]["class"] == "token"
                               for e in evs), label
                assert any(e["type"] == "lifecycle" and
                           e["metadata"]["action"] == "profile-created" for e in evs), label
        assert {"p1", "p2", "default"} <= set(got["admin all-projects"]), got
    finally:
        for proj, name in made:
            world.admin("DELETE", f"/1.0/profiles/{name}", project=proj)
