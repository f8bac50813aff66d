"""Tables for people, JSON or YAML for scripts, and a progress line for transfers."""
from __future__ import annotations

import csv
import io
import json
import sys
import time

import yaml


FORMATS = ("table", "compact", "csv", "json", "yaml")


def render(rows: list[dict], columns: list[tuple[str, str]], fmt: str, raw=None) -> str:
    """rows as a table (columns: (header, key)), or raw (default rows) as json/yaml.

    csv and compact follow the lxc CLI: csv is RFC 4180 (quoted where needed, no
    header, several values of one cell on lines of their own), compact is the
    table without borders."""
    data = rows if raw is None else raw
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=True, default_flow_style=False).rstrip()
    cells = [[_cell(r.get(k)) for _h, k in columns] for r in rows]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(cells)
        return out.getvalue().rstrip("\n")
    if fmt == "compact":
        return compact([[h for h, _k in columns]] + cells)
    return table([[h for h, _k in columns]] + cells)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value)
    return str(value)


def compact(rows: list[list[str]]) -> str:
    """Columns padded with spaces, a header line, no borders (lxc's compact)."""
    split = [[c.split("\n") for c in row] for row in rows]
    widths = [max(len(line) for row in split for line in row[i]) for i in range(len(rows[0]))]
    out = []
    for row in split:
        for h in range(max(len(c) for c in row)):
            out.append("  " + "  ".join((c[h] if h < len(c) else "").ljust(w)
                                        for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(out)


def table(rows: list[list[str]]) -> str:
    """An ASCII table like lxc's (multi-line cells allowed)."""
    split = [[c.split("\n") for c in row] for row in rows]
    widths = [max(len(line) for row in split for line in row[i]) for i in range(len(rows[0]))]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [sep]
    for n, row in enumerate(split):
        height = max(len(c) for c in row)
        for h in range(height):
            out.append("| " + " | ".join((c[h] if h < len(c) else "").ljust(w)
                                         for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0 or n == len(split) - 1:
            out.append(sep)
    return "\n".join(out)


def dump(data, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False).rstrip()


class Progress:
    """One self-overwriting status line on a terminal; silent otherwise."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.active = self.stream.isatty()
        self.t0 = time.monotonic()
        self.spin = 0

    def update(self, text: str) -> None:
        if not self.active:
            return
        self.spin = (self.spin + 1) % 4
        elapsed = time.monotonic() - self.t0
        spinner = "|/-\\"[self.spin]
        self.stream.write(f"\r{self.label} {spinner} {text} [{elapsed:.1f}s]\033[K")
        self.stream.flush()

    def bar(self, done: int, total: int) -> None:
        width = 30
        frac = min(1.0, done / total) if total else 0.0
        self.update("[" + "#" * int(frac * width) + "." * (width - int(frac * width))
                    + f"] {frac * 100:5.1f}%")

    def done(self) -> None:
        if self.active:
            self.stream.write("\r\033[K")
            self.stream.flush()
