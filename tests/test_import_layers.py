"""The package's imports keep their layers (the import-linter contracts) and form no cycle."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "carbon_sensors"
#: About how long a module may grow before it should be split by concept.
MAX_MODULE_LINES = 600


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every group of modules that import each other, directly or not (lazy and type-only imports count)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycle_among_the_package_modules():
    """No module of carbon_sensors imports, through any chain, a module that imports it back."""
    graph = grimp.build_graph("carbon_sensors", cache_dir=None)
    cycles = import_cycles(graph)
    described = [
        " <-> ".join(group) + ": " + ", ".join(
            f"{a} -> {b} (l.{', '.join(str(d['line_number']) for d in graph.get_import_details(importer=a, imported=b))})"
            for a in group for b in sorted(graph.find_modules_directly_imported_by(a)) if b in group
        )
        for group in cycles
    ]
    assert not cycles, "import cycles (move what both need to a module of its own):\n" + "\n".join(described)


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: two modules importing each other are reported as one group."""
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert import_cycles(graph) == [["pkg.a", "pkg.b"]]


def test_the_import_linter_contracts_are_kept():
    """lint-imports passes: the core imports no adapter, the adapters not each other, the planner no I/O."""
    # In a child process: import-linter configures logging, which would silence other tests' log capture.
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_about_600_lines(path):
    """Every module stays small enough to read in one sitting: about 600 lines at most."""
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by concept"


def _package_imports() -> list[tuple[str, int, str, str]]:
    """Every ``from carbon_sensors.x import y`` in the package, lazy ones inside functions included."""
    import ast

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("carbon_sensors"):
                found += [(str(path.relative_to(PACKAGE)), node.lineno, node.module, a.name) for a in node.names]
    return found


def test_every_name_the_package_imports_from_itself_exists():
    """A lazy import left behind by a move (e.g. a name that left operators.carbon) fails here, not at run time."""
    import importlib

    missing = []
    for where, line, module, name in _package_imports():
        try:
            target = importlib.import_module(module)
        except ImportError as exc:  # another framework's adapter (Prefect in the Airflow venv, and back)
            if exc.name and not exc.name.startswith("carbon_sensors"):
                continue
            raise
        if name != "*" and not hasattr(target, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{where}:{line}: from {module} import {name}")
    assert not missing, "names that no longer exist where they are imported from:\n" + "\n".join(missing)


def test_every_subpackage_says_what_lives_there_and_who_may_import_it():
    """Each subpackage's docstring: what it holds, then which layer it is and who imports it."""
    import ast

    package = Path(__file__).resolve().parent.parent / "carbon_sensors"
    for init in sorted(package.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc, f"{init.parent.name}/__init__.py has no docstring"
        assert re.search(r"\bimport", doc.split(">>>")[0]), f"{init.parent.name}: say who may import it"
