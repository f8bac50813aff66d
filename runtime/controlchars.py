"""No control character in any key or value a client, an image or a peer gives us.

Config keys and values end up in line-oriented files and streams the daemon
generates: lxc.conf (`lxc.environment = K=V`, `lxc.net.N.name = ...`), the seccomp
policy, `ip -batch` input, dnsmasq's hosts file. One newline in a value adds a
line of the attacker's choosing there: a `lxc.hook.pre-start` run as host root,
a mount, a dnsmasq option. So every key and value is checked here, once, where
it enters (instance, profile and device config; networks, storage pools and
volumes, projects, server config; image properties; a migration peer's header),
and every validator calls this module rather than keeping its own rule.

Keys never hold a control character, whitespace or a Unicode line separator.
Values don't either, except the few documented as multi-line text (raw.lxc,
cloud-init and user data, image properties...): those may hold newlines and
tabs but no other control character, and are never rendered line by line by
the daemon except raw.lxc / raw.seccomp / raw.dnsmasq, whose very purpose is to
add lines (and which project restrictions govern).
"""
from __future__ import annotations

import unicodedata

from runtime.errors import BadRequest

MULTILINE_PREFIXES = ("user.", "image.", "cloud-init.")
MULTILINE_KEYS = frozenset({"raw.lxc", "raw.seccomp", "raw.apparmor", "raw.dnsmasq",
                            "raw.idmap", "security.syscalls.allow",
                            "security.syscalls.deny"})
_MULTILINE_OK = frozenset("\n\t\r")


def _bad_char(text: str, allowed: frozenset = frozenset()) -> str | None:
    for ch in text:
        if ch in allowed:
            continue
        if ch < " " or ch == "\x7f" or ("\x80" <= ch <= "\x9f") or \
                (ch > "\x7f" and unicodedata.category(ch) in ("Zl", "Zp")):
            return ch
    return None


def multiline(key: str) -> bool:
    return key in MULTILINE_KEYS or key.startswith(MULTILINE_PREFIXES)


def check_key(key: object, where: str) -> str:
    """A config key: printable, no whitespace."""
    if not isinstance(key, str) or not key:
        raise BadRequest(f"Invalid {where} key {key!r}")
    bad = _bad_char(key)
    if bad is not None or any(ch.isspace() for ch in key):
        raise BadRequest(f"Invalid {where} key {key!r}: keys can't contain whitespace or "
                         "control characters")
    return key


def check_value(key: str, value: str, where: str, allow_multiline: bool | None = None) -> str:
    """A value for key: one line unless the key is documented as multi-line text."""
    ml = multiline(key) if allow_multiline is None else allow_multiline
    bad = _bad_char(value, _MULTILINE_OK if ml else frozenset())
    if bad is not None:
        raise BadRequest(f"Invalid value for {where} key {key!r}: control character "
                         f"{bad!r} is not allowed" + ("" if ml else " (one line only)"))
    return value


def check_config(config: dict, where: str) -> dict:
    """Every key and (string) value of a config map; returns it unchanged."""
    for key, value in config.items():
        check_key(key, where)
        if isinstance(value, str):
            check_value(key, value, where)
    return config


def string_map(config: object, where: str) -> dict[str, str]:
    """A client's config object as str -> str (null: empty), every key and value checked."""
    if not isinstance(config, dict):
        raise BadRequest(f"Invalid {where}: must be an object")
    out = {}
    for key, value in config.items():
        check_key(key, where)
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif value is None:
            value = ""
        elif not isinstance(value, str):
            raise BadRequest(f"Invalid value for {where} key {key!r}: must be a string")
        out[key] = check_value(key, value, where)
    return out


def check_name(name: str, what: str) -> str:
    """A name (snapshot, profile, alias, property key...): printable, one line."""
    if not isinstance(name, str) or _bad_char(name) is not None:
        raise BadRequest(f"Invalid {what} {name!r}: control characters are not allowed")
    return name


def check_generated(lines: list[str], what: str) -> list[str]:
    """Last guard before lines are written to a generated file or command stream.

    Keys and values were checked where they came in; a record stored before that
    check (or a path built from one) must still never add a line.
    """
    for line in lines:
        if _bad_char(line) is not None:
            raise BadRequest(f"Refusing to write a {what} line with a control character: "
                             f"{line[:80]!r}")
    return lines
