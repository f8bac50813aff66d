"""Write oslo.config style ini files from nested dicts.

Why not configparser: oslo.config reads multi-valued options from repeated
keys, and configparser's interpolation and case folding get in the way.
"""
from __future__ import annotations

import os

Sections = dict[str, dict[str, object]]


def render(sections: Sections) -> str:
    out = []
    for section, options in sections.items():
        out.append(f"[{section}]")
        for key, value in options.items():
            if isinstance(value, bool):
                value = str(value)
            elif isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            out.append(f"{key} = {value}")
        out.append("")
    return "\n".join(out)


CHANGED: set[str] = set()  # files written with new content by this process


def write(path: str, sections: Sections, mode: int = 0o640) -> str:
    """Write *path* only when its content changes; return the path."""
    return write_text(path, render(sections), mode)


def write_text(path: str, text: str, mode: int = 0o640) -> str:
    """Write *path* only when *text* differs from what it holds (recorded in
    CHANGED, so a running service that reads it is restarted)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except FileNotFoundError:
        pass
    CHANGED.add(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def merge(*parts: Sections) -> Sections:
    """Later sections' options override earlier ones'."""
    merged: Sections = {}
    for part in parts:
        for section, options in part.items():
            merged.setdefault(section, {}).update(options)
    return merged
