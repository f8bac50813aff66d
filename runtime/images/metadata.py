"""An image's metadata.yaml: tenant input (Glance, image servers), read with bounds.

LXD reads it with a 1 MiB cap; so do we, and YAML aliases are refused (a few
lines of anchors expand into gigabytes once the properties are turned into
strings). The shape is checked here once, so the store, the template renderer
and publish can trust what they get.
"""
from __future__ import annotations

import yaml

from runtime import safepath
from runtime.errors import BadRequest

MAX_BYTES = 1024 * 1024
_SCALARS = (str, int, float, bool, type(None))


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases are not allowed")
        return super().compose_node(parent, index)


def _check_templates(templates: object) -> None:
    if not isinstance(templates, dict):
        raise ValueError("'templates' must be a mapping")
    for path, spec in templates.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"template target {path!r} must be an absolute path")
        if not isinstance(spec, dict):
            raise ValueError(f"template {path!r} must be a mapping")
        when = spec.get("when") or []
        if not isinstance(when, list) or not all(isinstance(w, str) for w in when):
            raise ValueError(f"template {path!r}: 'when' must be a list of triggers")
        if not isinstance(spec.get("template", ""), str):
            raise ValueError(f"template {path!r}: 'template' must be a file name")
        props = spec.get("properties") or {}
        if not isinstance(props, dict) or not all(isinstance(v, _SCALARS)
                                                  for v in props.values()):
            raise ValueError(f"template {path!r}: 'properties' must map names to values")
        for key in ("mode", "uid", "gid", "create_only"):
            if not isinstance(spec.get(key), _SCALARS):
                raise ValueError(f"template {path!r}: {key!r} must be a plain value")


def parse(data: bytes) -> dict:
    """metadata.yaml content as a checked mapping; BadRequest naming what is wrong."""
    if len(data) > MAX_BYTES:
        raise BadRequest(f"Invalid metadata.yaml: larger than {MAX_BYTES} bytes")
    try:
        meta = yaml.load(data, Loader=_Loader) or {}  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, RecursionError) as exc:
        raise BadRequest(f"Invalid metadata.yaml: {exc}")
    if not isinstance(meta, dict):
        raise BadRequest("Invalid metadata.yaml: not a mapping")
    try:
        props = meta.get("properties") or {}
        if not isinstance(props, dict) or not all(isinstance(v, _SCALARS)
                                                  for v in props.values()):
            raise ValueError("'properties' must map names to plain values")
        _check_templates(meta.get("templates") or {})
        for key in ("creation_date", "expiry_date"):
            if meta.get(key) is not None and (not isinstance(meta[key], (int, float))
                                              or isinstance(meta[key], bool)):
                raise ValueError(f"{key!r} must be a number")
        if not isinstance(meta.get("architecture") or "", str):
            raise ValueError("'architecture' must be a name")
    except ValueError as exc:
        raise BadRequest(f"Invalid metadata.yaml: {exc}")
    return meta


def read(path: str) -> dict:
    """A volume's metadata.yaml ({} when there is none); never follows a symlink."""
    try:
        data = safepath.read_regular(path, MAX_BYTES)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BadRequest(f"Invalid metadata.yaml: {exc}")
    return parse(data)
