"""``.. runtime-routes::``: the runtime's REST endpoints, read from the code.

Every API module declares its endpoint table; the page lists them so the
reference cannot drift from what the daemon mounts.
"""
from __future__ import annotations

import importlib
import inspect

from docutils import nodes
from docutils.parsers.rst import Directive


def routes() -> list[tuple[str, str, str, str, str]]:
    """(module, method, path, access level, summary) for every mounted route."""
    app = importlib.import_module("runtime.api.app")
    out = []
    for mod in app.MODULES:
        modname = mod.__name__.rsplit(".", 1)[-1]
        for method, path, handler, access in mod.ROUTES:
            doc = inspect.getdoc(handler) or ""
            out.append((modname, method, path, access.value,
                        doc.split("\n\n")[0].replace("\n", " ")))
    return out


class RuntimeRoutes(Directive):
    has_content = False

    def run(self):
        table = nodes.table()
        group = nodes.tgroup(cols=4)
        table += group
        for width in (8, 40, 10, 42):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += self._row(["Method", "Path", "Who", "What"])
        body = nodes.tbody()
        group += body
        for _mod, method, path, access, summary in routes():
            body += self._row([method, path, access, summary])
        return [table]

    @staticmethod
    def _row(cells: list[str]) -> nodes.row:
        row = nodes.row()
        for text in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=text)
            row += entry
        return row


def setup(app):
    app.add_directive("runtime-routes", RuntimeRoutes)
    return {"parallel_read_safe": True}
