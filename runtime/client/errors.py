"""What the client raises besides pylxd's own exceptions (callers map these to
their users' errors: nova faults in the driver, one line in the CLI)."""
from __future__ import annotations

from pylxd import exceptions as lxd_exceptions


class ClientError(Exception):
    """Base of the client's own errors."""


class ConfigError(ClientError):
    """The connection settings are unusable (a missing certificate file, ...)."""


class Unreachable(ClientError):
    """No LXD API answers at the endpoint."""

    def __init__(self, endpoint: str, reason: str):
        super().__init__(f"{endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class _OperationResponse:
    """Enough of a requests.Response for pylxd's exception from an operation error."""

    status_code = 500

    def __init__(self, error: str | None):
        self._error = error or "operation failed"

    def json(self) -> dict:
        return {"error": self._error}

    @property
    def content(self) -> bytes:
        return self._error.encode()


class OperationFailed(lxd_exceptions.LXDAPIException):
    """A background operation ended in failure; a pylxd LXDAPIException, so callers
    that catch those for synchronous errors catch these too."""

    def __init__(self, error: str | None):
        super().__init__(_OperationResponse(error))


class OperationTimeout(ClientError):
    """An operation did not finish within the caller's deadline."""

    def __init__(self, op_id: str, timeout: float):
        super().__init__(f"runtime operation {op_id} did not finish in {timeout}s")
        self.op_id = op_id
        self.timeout = timeout
