"""The runtime's exceptions: each carries the HTTP status the API answers with.

Raised anywhere below the API layer; the API middleware turns them into the LXD
error envelope so a client always sees a clear message, never a traceback.
"""
import errno

NO_SPACE = "No space left on device"


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


class StorageFull(RuntimeAPIError):
    """A storage pool (or the image store) ran out of space: 507 Insufficient Storage."""
    status = 507


def pool_full(pool: str, detail: str) -> StorageFull:
    return StorageFull(f"Storage pool {pool!r} is full: no space left on device ({detail})")


def no_space(exc: BaseException, pool: str) -> StorageFull | None:
    """What a failure that ran out of space on `pool` answers (None: it did not).

    ENOSPC comes as an OSError of our own writes or as a tool's message (cp, tar,
    rsync, btrfs); either way the user learns which pool is full, not a traceback."""
    if isinstance(exc, StorageFull):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return pool_full(pool, f"writing {exc.filename}" if exc.filename else NO_SPACE)
    if isinstance(exc, CommandFailed) and NO_SPACE in str(exc):
        line = next(ln for ln in str(exc).splitlines() if NO_SPACE in ln)
        return pool_full(pool, line.strip()[-300:])
    return None


def raise_if_no_space(exc: BaseException, pool: str) -> None:
    """In an `except` block, after the clean-up: a failure that ran out of space
    on `pool` is raised again as StorageFull naming the pool; others return."""
    full = no_space(exc, pool) if isinstance(exc, Exception) else None
    if full is not None and full is not exc:
        raise full from exc
