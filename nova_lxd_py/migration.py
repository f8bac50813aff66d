"""Cold migration and resize between two runtimes (LXD's pull migration).

The source compute stops the container and asks its runtime to offer it for
migration: the runtime answers with an operation holding one-time websocket
secrets. That offer (operation URL on the source runtime's HTTPS address,
secrets, the source runtime's certificate) is the ``disk_info`` nova hands
to the destination compute, whose runtime then pulls the container with the
new flavor's config. The source container is kept, stopped, until nova
confirms (deleted) or reverts (started again).
"""
from __future__ import annotations

import json
from typing import Any


class NoHTTPSAddress(Exception):
    """The source runtime does not listen on HTTPS, so no peer can pull."""


def https_url(host_info: dict) -> str:
    """The source runtime's HTTPS address as a peer must dial it."""
    env = host_info.get("environment") or {}
    for address in env.get("addresses") or []:
        if address:
            return "https://" + address
    raise NoHTTPSAddress(
        "the runtime does not listen on HTTPS (set core.https_address on it) so the "
        "destination host cannot pull the instance")


def offer(operation_id: str, secrets: dict, host_info: dict) -> str:
    """The disk_info string the destination needs to pull the instance."""
    env = host_info.get("environment") or {}
    return json.dumps({
        "version": 1,
        "operation": f"{https_url(host_info)}/1.0/operations/{operation_id}",
        "secrets": {k: v for k, v in secrets.items() if k in ("control", "fs")},
        "certificate": env.get("certificate"),
    })


def target_body(name: str, disk_info: str, profiles: list[str], config: dict[str, str],
                devices: dict[str, Any]) -> dict:
    """Instance create body on the destination: pull from the offer."""
    data = json.loads(disk_info)
    if data.get("version") != 1:
        raise ValueError("disk_info is not a nova-lxd-py migration offer")
    return {
        "name": name, "type": "container", "profiles": profiles,
        "config": config, "devices": devices,
        "source": {"type": "migration", "mode": "pull", "operation": data["operation"],
                   "secrets": data["secrets"], "certificate": data["certificate"]},
    }


def in_place() -> str:
    """disk_info of a resize on the same runtime: nothing to pull."""
    return json.dumps({"version": 1, "in_place": True})


def offer_operation(disk_info: str) -> str | None:
    """The id of the source runtime's migration operation an offer holds."""
    data = json.loads(disk_info or "{}")
    operation = data.get("operation")
    return operation.rsplit("/", 1)[-1] if operation else None


def same_host(migration: Any) -> bool:
    """A resize that stays on its compute host (and node): same runtime."""
    return migration.source_compute == migration.dest_compute and \
        migration.source_node == migration.dest_node
