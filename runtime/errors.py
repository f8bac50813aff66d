"""The runtime's exceptions: each carries the HTTP status the API answers with.

Raised anywhere below the API layer; the API middleware turns them into the LXD
error envelope so a client always sees a clear message, never a traceback.
"""


class RuntimeAPIError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequest(RuntimeAPIError):
    status = 400


class Forbidden(RuntimeAPIError):
    status = 403


class NotFound(RuntimeAPIError):
    status = 404


class Conflict(RuntimeAPIError):
    status = 409


class PreconditionFailed(RuntimeAPIError):
    status = 412


class RequestTooLarge(RuntimeAPIError):
    status = 413


class InternalError(RuntimeAPIError):
    status = 500


class CommandFailed(InternalError):
    """An external tool (lxc-start, tar, btrfs, ...) failed; message has its stderr."""
