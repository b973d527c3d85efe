"""The package's import graph has no cycle, and the command line imports only what the chosen subcommand needs.

The graph: one node per module of ``lfp_snn`` (a package is its ``__init__``), parsed with ``ast``, never
imported. An edge a -> b for every import of b in a, counted wherever it stands: at module level and inside
functions (a lazy import still makes a depend on b; it only moves the failure from import time to call time).
Two kinds do not count: imports under ``if TYPE_CHECKING:`` (never executed; type hints only), and the
implicit import of a package when one of its submodules is imported (``import a.b.c`` runs ``a/__init__``
first; counting that would make every submodule depend on its package's ``__init__``). ``from p import x``
is an edge to the module ``p.x`` when that is a module, else to ``p``; relative imports are resolved against
the importing module. A string constant that is exactly the dotted name of a submodule (the subcommand table
of ``lfp_snn.cli``, handed to ``importlib.import_module``) is an edge too; the bare ``"lfp_snn"`` is not (it
also names cache folders).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lfp_snn"


def modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every ``.py`` file under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, is_pkg: bool, known: dict) -> set[str]:
    """The modules of ``known`` that module ``name`` imports (see the module docstring for what counts)."""
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()

    def owner(target: str) -> str | None:
        while target and target not in known:
            if "." not in target:
                return None
            target = target.rsplit(".", 1)[0]
        return target or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for c in child.orelse:
                    visit(c)
                continue
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = here[: len(here) - child.level + 1] if child.level else []
                mod = ".".join(base + ([child.module] if child.module else []))
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in child.names]
            elif isinstance(child, ast.Constant) and isinstance(child.value, str) and "." in child.value:
                targets = [child.value] if child.value in known else []
            else:
                targets = []
            for t in targets:
                m = owner(t)
                if m is not None and m != name:
                    found.add(m)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    known = modules(package)
    return {name: imports_of(name, path, is_pkg, known) for name, (path, is_pkg) in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / "pkg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path / "pkg"


def test_lfp_snn_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and "lfp_snn.training.methods" in graph["lfp_snn.training.trainer"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_function_level_relative_and_string_imports(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .sub import b\n",
            "sub/__init__.py": "",
            "sub/b.py": "def f():\n    from .. import c\n",
            "c.py": "TABLE = {'x': 'pkg.a'}\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n",
        },
    )
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.d"] == set()  # type-checking imports do not count
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("TABLE = {}\n")
    assert find_cycle(import_graph(pkg)) is None


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not another installed copy
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


SUBCOMMANDS = ["lfp_snn.cli.train", "lfp_snn.cli.compare", "lfp_snn.cli.sweep", "lfp_snn.cli.export"]


@pytest.mark.parametrize("argv", [["--help"], ["export", "--help"], ["sweep", "--help"]])
def test_the_cli_imports_only_the_subcommand_that_runs(argv):
    code = f"""
import sys
from lfp_snn.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m in {SUBCOMMANDS!r}))
"""
    out = _python(code)
    assert out.returncode == 0, out.stderr
    wanted = [f"lfp_snn.cli.{argv[0]}"] if argv[0] != "--help" else []
    assert out.stdout.strip().splitlines()[-1] == repr(wanted)


def test_the_cli_starts_without_fcntl_and_a_sweep_says_why_it_cannot_lock(tmp_path):
    """As on Windows: ``fcntl`` cannot be imported. Every subcommand's parser builds; writing a sweep results
    file is one clear error."""
    code = f"""
import sys
sys.modules["fcntl"] = None  # import fcntl now raises ImportError
from lfp_snn.cli import build_parser
build_parser()
from lfp_snn.experiments.sweeps import ResultsStore
try:
    with ResultsStore({str(tmp_path / "r.h5")!r}):
        pass
except ImportError as e:
    print("refused:", e)
"""
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert "refused: writing a sweep results file takes a POSIX file lock (fcntl)" in out.stdout
    assert "--report-only" in out.stdout
    assert not (tmp_path / "r.h5.parts").exists()
