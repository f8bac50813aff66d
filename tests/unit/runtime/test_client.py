"""The one LXD client's own logic (runtime.client) over a fake API tree: waiting for
operations (success, failure, deadline, progress), paths, exec in record-output
mode, and endpoints (the real calls are exercised by the functional tests)."""
from __future__ import annotations

import os
import ssl
from unittest import mock

import pytest

from runtime.client import (LXDAPI, ConfigError, Endpoint, OperationFailed, OperationTimeout,
                            session)

CERT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "runtime", "client",
                    "__init__.py")


class _Resp:
    def __init__(self, body: dict | None = None, content: bytes = b""):
        self._body = body or {}
        self.content = content

    def json(self) -> dict:
        return self._body


class _Node:
    """An API node recording calls; `answers[path]` gives what a GET/POST returns."""

    def __init__(self, answers: dict, calls: list, path: str = "/1.0"):
        self._answers, self._calls, self.path = answers, calls, path

    def __getitem__(self, key: str) -> _Node:
        return _Node(self._answers, self._calls, f"{self.path}/{key}")

    __getattr__ = __getitem__

    def _do(self, method: str, **kwargs) -> _Resp:
        self._calls.append((method, self.path, kwargs))
        answer = self._answers[(method, self.path)]
        return answer(**kwargs) if callable(answer) else answer

    def get(self, **kwargs) -> _Resp:
        return self._do("get", **kwargs)

    def post(self, **kwargs) -> _Resp:
        return self._do("post", **kwargs)

    def put(self, **kwargs) -> _Resp:
        return self._do("put", **kwargs)


class _API(LXDAPI):
    def __init__(self, answers: dict, op_timeout: float | None = 5):
        super().__init__(None, op_timeout)
        self.calls: list = []
        self._root = _Node(answers, self.calls)

    @property
    def api(self):
        return self._root


def _op(status_code: int, status: str, metadata: dict | None = None, err: str = "") -> _Resp:
    return _Resp({"type": "sync", "metadata": {"status_code": status_code, "status": status,
                                               "metadata": metadata, "err": err}})


ASYNC = _Resp({"type": "async", "operation": "/1.0/operations/op1", "metadata": {}})


def test_async_response_waited_for_and_its_metadata_returned():
    api = _API({("put", "/1.0/instances/c1/state"): ASYNC,
                ("get", "/1.0/operations/op1/wait"): _op(200, "Success", {"x": 1})})
    assert api.call("PUT", "/1.0/instances/c1/state", {"action": "start"}) == {"x": 1}
    assert api.calls[0][2]["json"] == {"action": "start"}


def test_sync_response_is_its_metadata():
    api = _API({("get", "/1.0/instances/c1"): _Resp({"type": "sync", "metadata": {"a": 1}})})
    assert api.call("GET", "/1.0/instances/c1?recursion=1") == {"a": 1}


@pytest.mark.parametrize("code,status", [(400, "Failure"), (401, "Cancelled")])
def test_failed_operation_raises_with_its_error(code, status):
    api = _API({("put", "/1.0/instances/c1/state"): ASYNC,
                ("get", "/1.0/operations/op1/wait"): _op(code, status, err="no such thing")})
    with pytest.raises(OperationFailed) as exc:
        api.action("c1", "start")
    assert "no such thing" in str(exc.value)


def test_operation_past_its_deadline_raises_timeout():
    api = _API({("get", "/1.0/operations/op1/wait"): _op(103, "Running")}, op_timeout=0)
    with pytest.raises(OperationTimeout) as exc:
        api.wait_operation("/1.0/operations/op1")
    assert exc.value.op_id == "op1"


def test_progress_callback_sees_running_operation_and_polls_briefly():
    states = iter([_op(103, "Running", {"download_progress": "50%"}),
                   _op(200, "Success", {"fingerprint": "f"})])
    api = _API({("get", "/1.0/operations/op1/wait"): lambda **_: next(states)},
               op_timeout=None)
    seen = []
    op = api.wait_operation("op1", on_update=lambda m: seen.append(m["metadata"]))
    assert op["metadata"] == {"fingerprint": "f"}
    assert seen == [{"download_progress": "50%"}]
    assert api.calls[0][2]["params"] == {"timeout": 0.5}


def test_exec_record_reads_both_logs():
    logs = "/1.0/instances/c1/logs/exec_1"
    api = _API({("post", "/1.0/instances/c1/exec"): ASYNC,
                ("get", "/1.0/operations/op1/wait"): _op(200, "Success", {
                    "return": 3, "output": {"1": logs + ".stdout", "2": logs + ".stderr"}}),
                ("get", logs + ".stdout"): _Resp(content=b"out\n"),
                ("get", logs + ".stderr"): _Resp(content=b"err\n")})
    assert api.exec_record("c1", ["sh", "-c", "x"]) == (3, b"out\n", b"err\n")
    body = api.calls[0][2]["json"]
    assert body["record-output"] and not body["wait-for-websocket"]


def test_endpoint_forms():
    assert Endpoint.unix("/a b/unix.socket").pylxd_url() == "http+unix://%2Fa%20b%2Funix.socket"
    assert Endpoint("/x/unix.socket").socket_path == "/x/unix.socket"
    assert Endpoint("https://h:8443/").base_url == "https://h:8443"
    assert Endpoint.unix("/x").base_url == "http://localhost"


def test_session_ignores_environment_and_checks_files():
    env = {"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
           "HTTPS_PROXY": "http://127.0.0.1:9"}
    with mock.patch.dict(os.environ, env):
        s = session(Endpoint("https://h:8443", server_cert=CERT))
        settings = s.merge_environment_settings("https://h:8443/1.0", {}, None, None, None)
    assert settings["verify"] == CERT and settings["proxies"] == {}
    with pytest.raises(ConfigError):
        session(Endpoint("https://h:8443", client_cert=CERT))
    with pytest.raises(ConfigError):
        session(Endpoint("https://h:8443", server_cert="/nonexistent/server.crt"))


def test_pinned_certificate_is_the_identity():
    with mock.patch.object(ssl.SSLContext, "load_verify_locations") as load:
        ctx = Endpoint("https://h:8443", server_cert=CERT).ssl_context()
    load.assert_called_once_with(cafile=CERT)
    assert ctx.check_hostname is False and ctx.verify_mode == ssl.CERT_REQUIRED
    assert Endpoint("https://h:8443").ssl_context().check_hostname is True
