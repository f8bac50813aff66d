"""No product module imports nova's tests (import-linter cannot forbid a
subpackage of an external package, so the import statements are read here)."""
import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_product_never_imports_nova_tests():
    offenders = []
    for package in ("nova_lxd_py", "runtime", "nova"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if any(n == "nova.tests" or n.startswith("nova.tests.") for n in names):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []
