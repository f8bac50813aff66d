"""Fixtures: a real daemon per test module, the busybox image, and instances that
are always cleaned up, even when a test fails."""
import os
import uuid

import pytest

from tests.functional.runtime.harness import RuntimeDaemon, import_busybox
from tests.functional.runtime.remote_hosts import Hosts

if os.geteuid() != 0:
    pytest.skip("runtime functional tests need root (they run real containers)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def daemon():
    d = RuntimeDaemon().start()
    yield d
    d.destroy()


@pytest.fixture(scope="module")
def hosts():
    """Two daemons on this host (loopback HTTPS); modules may override it."""
    h = Hosts(2, netns=False)
    yield h
    h.destroy()


@pytest.fixture(scope="module")
def client(daemon):
    return daemon.client()


@pytest.fixture(scope="module")
def busybox(client):
    return import_busybox(client)


@pytest.fixture
def make_instance(client, busybox):
    """Factory: make_instance(start=True, **config) -> pylxd Instance, deleted after."""
    made = []

    def make(name: str | None = None, start: bool = True, config: dict | None = None,
             devices: dict | None = None, profiles: list | None = None, **extra):
        body = {"name": name or f"t-{uuid.uuid4().hex[:8]}",
                "source": {"type": "image", "alias": "busybox"},
                "config": config or {}, "devices": devices or {}}
        if profiles is not None:
            body["profiles"] = profiles
        body.update(extra)
        inst = client.instances.create(body, wait=True)
        made.append(inst.name)
        if start:
            inst.start(wait=True)
            inst.sync(rollback=True)
        return inst

    yield make
    for name in made:
        try:
            inst = client.instances.get(name)
        except Exception:  # noqa: BLE001 - already gone (renamed or deleted by the test)
            continue
        try:
            if inst.status != "Stopped":
                inst.stop(force=True, wait=True)
            if inst.config.get("security.protection.delete") == "true":
                inst.config["security.protection.delete"] = "false"
                inst.save(wait=True)
            inst.delete(wait=True)
        except Exception:  # noqa: BLE001 - the module's daemon teardown wipes the rest
            pass
