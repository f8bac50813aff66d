"""A scripted migration peer speaking the runtime's own wire format, to lie with.

Push mode: we ask the daemon for an incoming migration (`source.type: migration,
mode: push`), connect to its `control` and `fs` websockets as the source would,
and send whatever header and tar streams the test wants (runtime/migration/native.py
documents the format: JSON header on control, `{"ready": ...}` back, one tar
stream per snapshot then the instance as binary frames ended by the text "end",
`{"success": ...}` back).
"""
from __future__ import annotations

import asyncio
import json

import aiohttp

from runtime.migration.native import WIRE_PROTOCOL

from tests.functional.runtime.security import rawhttp
from tests.functional.runtime.security.hostile_images import busybox_members, member, raw_tar

FRAME = 1 << 20


def volume_tar(extra: list | None = None, gz: bool = False) -> bytes:
    """A plausible volume stream: busybox's rootfs, metadata.yaml, templates, plus extra."""
    import gzip
    members = [(m, d) for m, d in busybox_members()]
    members += list(extra or [])
    data = raw_tar(members)
    return data if gz else gzip.decompress(data)


def header(**changes) -> dict:
    h = {"version": 1, "instance": {
        "name": "src", "architecture": "x86_64", "config": {}, "devices": {},
        "profiles": ["default"], "ephemeral": False, "description": "", "stateful": False},
        "profiles": {}, "snapshots": [], "idmap": "1000000:1000000000", "running": False,
        "start": False, "base_image": None}
    h.update(changes)
    return h


def snapshot(name, **changes) -> dict:
    s = {"name": name, "created_at": 1700000000.0, "expires_at": 0, "stateful": False,
         "description": "", "architecture": "x86_64", "ephemeral": False, "config": {},
         "devices": {}, "profiles": ["default"]}
    s.update(changes)
    return s


async def _connect(daemon, op: str, secret: str):
    session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.socket))
    # Offer the runtime's own wire format (without it the daemon speaks LXD's
    # protobuf protocol, and every lie here would fail for the wrong reason).
    ws = await session.ws_connect(f"http://localhost{op}/websocket?secret={secret}",
                                  max_msg_size=0, protocols=(WIRE_PROTOCOL,))
    assert ws.protocol == WIRE_PROTOCOL, "the daemon did not agree on its wire format"
    return session, ws


async def _push(daemon, name: str, head, streams: list[bytes]) -> dict:
    status, resp = rawhttp.request(
        daemon.socket, "POST", "/1.0/instances", headers={"Content-Type": "application/json"},
        body=json.dumps({"name": name, "source": {"type": "migration", "mode": "push"}}
                        ).encode())
    if status != 202:
        return {"refused": (status, resp)}
    op = resp["operation"]
    secrets = resp["metadata"]["metadata"]
    (s1, control), (s2, fs) = [await _connect(daemon, op, secrets[k])
                               for k in ("control", "fs")]
    out: dict = {"op": op}
    try:
        await control.send_str(head if isinstance(head, str) else json.dumps(head))
        msg = await asyncio.wait_for(control.receive(), 30)
        out["reply"] = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else None
        if out["reply"] and out["reply"].get("ready"):
            try:
                for stream in streams:
                    for i in range(0, len(stream), FRAME):
                        await fs.send_bytes(stream[i:i + FRAME])
                    await fs.send_str("end")
            except (ConnectionError, OSError):
                pass  # the target stopped listening: its verdict comes on control
            msg = await asyncio.wait_for(control.receive(), 60)
            out["result"] = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT \
                else None
    finally:
        for ws, session in ((control, s1), (fs, s2)):
            await ws.close()
            await session.close()
    _, final = rawhttp.request(daemon.socket, "GET", op + "/wait?timeout=60", timeout=90)
    out["status"] = final["metadata"]["status"]
    out["err"] = final["metadata"]["err"]
    return out


def push(daemon, name: str, head, streams: list[bytes] | None = None) -> dict:
    """Run one push migration to the daemon with this header and these streams."""
    return asyncio.run(_push(daemon, name, head, streams or []))


__all__ = ["header", "member", "push", "snapshot", "volume_tar"]
