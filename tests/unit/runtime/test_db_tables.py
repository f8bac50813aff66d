"""Every table behind its repository: outside runtime/db/ no code names a table that
has one, neither in a string-named Database call nor in raw SQL."""
import pathlib
import re

import runtime

ROOT = pathlib.Path(runtime.__file__).parent
# Tables whose repository exists (runtime/db/<table>.py). The tables of the
# instance and storage layers join this list with their repositories.
TABLES = ("certificates", "config", "images", "image_aliases", "networks", "profiles",
          "projects")
# Reads a state directory's database without opening it as the daemon does
# (which would migrate a foreign or dead daemon's schema): a test and tool helper.
ALLOWED = {"statedir.py"}

_NAMES = "|".join(TABLES)
# A Database's generic helpers with a table's name, also split over lines.
_CALL = re.compile(rf"\bdb\.(select|get|insert|update|delete|names)\(\s*\"({_NAMES})\"")
_SQL = re.compile(rf"\b(FROM|INTO|UPDATE|JOIN)\s+({_NAMES})\b")
_CONFIG = re.compile(r"\bdb\.config_(get|replace)\(")


def test_tables_only_through_repositories():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "db" or str(rel) in ALLOWED:
            continue
        text = path.read_text()
        for pattern in (_CALL, _SQL, _CONFIG):
            for m in pattern.finditer(text):
                number = text.count("\n", 0, m.start()) + 1
                found.append(f"runtime/{rel}:{number}: {m.group(0)}")
    assert not found, "use the table's repository (runtime/db/):\n" + "\n".join(found)


def test_each_table_has_its_repository():
    for table in TABLES:
        assert (ROOT / "db" / f"{table}.py").is_file(), table
