"""Values of LXD configuration keys (sizes, booleans, choices), interface and snapshot names.

Used by the instance, network, storage and image code alike, so they live below all
of them. A check raises ValueError with the reason; callers name the key.
"""
import re
from collections.abc import Callable

from runtime.errors import BadRequest

_SIZE_UNITS = {"": 1, "B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9,
               "TB": 10**12, "PB": 10**15, "EB": 10**18, "KiB": 2**10, "MiB": 2**20,
               "GiB": 2**30, "TiB": 2**40, "PiB": 2**50, "EiB": 2**60}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMGTPE]?i?B?)\s*$")


def parse_size(value: str) -> int:
    """Bytes from an LXD size string ("512MB", "1GiB", "4096")."""
    m = _SIZE_RE.match(str(value))
    if not m or m.group(2) not in _SIZE_UNITS:
        raise ValueError(f"invalid size {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def is_bool(v: str) -> None:
    if str(v).lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off", ""):
        raise ValueError("must be a boolean (true/false)")


def truthy(v: str | None) -> bool:
    return str(v or "").lower() in ("true", "1", "yes", "on")


def is_uint(v: str) -> None:
    if not str(v).isdigit():
        raise ValueError("must be a non-negative integer")


def is_size(v: str) -> None:
    parse_size(v)


def one_of(*choices: str) -> Callable[[str], None]:
    def check(v: str) -> None:
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
    return check


def any_value(v: str) -> None:
    return None


def is_interface_name(name: str) -> bool:
    """What the kernel accepts as a link name (dev_valid_name), as LXD checks nic names."""
    return 0 < len(name) <= 15 and name not in (".", "..") and not any(
        c in "/:" or c.isspace() or not c.isprintable() for c in name)


_SNAP_NAME = re.compile(r"^[^/\s][^/]{0,62}$")


def validate_snapshot_name(name: object) -> str:
    """A snapshot name is a directory name on disk: no '/', no '..', nothing unprintable."""
    if not isinstance(name, str) or not _SNAP_NAME.match(name) or name in (".", "..") \
            or not name.isprintable():
        raise BadRequest(f"Invalid snapshot name {name!r}")
    return name
