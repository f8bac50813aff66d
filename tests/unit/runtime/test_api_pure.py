"""Response envelopes and the operation object, without a daemon."""
import asyncio
import json

from runtime.api import response
from runtime.errors import NotFound
from runtime.events import EventBus
from runtime.operations import Operations


def test_sync_and_error_envelopes():
    body = json.loads(response.sync({"a": 1}).text)
    assert body == {"type": "sync", "status": "Success", "status_code": 200, "operation": "",
                    "error_code": 0, "error": "", "metadata": {"a": 1}}
    err = response.error("nope", 404)
    assert err.status == 404
    assert json.loads(err.text)["error_code"] == 404
    created = response.created("/1.0/certificates/abc")
    assert created.status == 201 and created.headers["Location"] == "/1.0/certificates/abc"


def test_operation_lifecycle_and_events():
    async def scenario():
        bus = EventBus()
        sub = bus.subscribe({"operation"})
        ops = Operations(bus)

        async def work(op):
            return {"return": 3}
        op = ops.create("task", "Doing", work)
        resp = response.async_(op)
        assert resp.status == 202 and resp.headers["Location"] == op.url
        await op.wait(5)
        assert op.render()["status"] == "Success" and op.metadata["return"] == 3

        async def fails(op):
            raise NotFound("gone")
        bad = ops.create("task", "Failing", fails)
        await bad.wait(5)
        assert bad.render()["status_code"] == 400 and bad.err == "gone"
        statuses = []
        while not sub.queue.empty():
            statuses.append(sub.queue.get_nowait()["metadata"]["status"])
        assert statuses.count("Success") == 1 and "Failure" in statuses

        async def ws_op(op):
            await op.socket("0", 5)
        wop = ops.create("websocket", "Exec", ws_op, websockets=["0", "control"])
        secret = wop.metadata["fds"]["0"]
        assert wop.claim(secret) == "0"
        try:
            wop.claim(secret)
            raise AssertionError("a secret must work once")
        except Exception as exc:  # noqa: BLE001
            assert "secret" in str(exc)
        wop.sockets["0"].set_result(object())
        await wop.wait(5)
        assert wop.render()["status"] == "Success" and "fds" not in (wop.render()["metadata"]
                                                                     or {})
    asyncio.run(scenario())
