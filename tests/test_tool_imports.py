"""Tools and benchmarks as packages (issue 21 item 5): ``tools/`` never imports ``bench/``, nothing in
``tools/``, ``bench/`` or ``tests/`` edits ``sys.path``, and every tool and benchmark module imports as
``tools.NAME`` / ``bench.NAME`` (the ``python -m`` form).

A plain AST scan; the first rule is also part of the layer contract over every package
(tests/test_layers.py, import-linter), which this file does not replace: sys.path edits and the
module names are checked only here.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import importlib
from pathlib import Path

import pytest

from conftest import REPO


def module_name(path: Path) -> str:
    """``tools/training/config.py`` -> ``tools.training.config`` (``__init__.py`` -> the package)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module the source may import, as absolute dotted names: ``import`` and ``from`` statements
    anywhere (inside functions too; relative ones resolved against ``module``) and
    ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            if node.module:
                found.add(".".join(target))
            # ``from X import Y``: Y may be a submodule of X
            found.update(".".join(target + [alias.name]) for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            found.add(node.args[0].value)
    return {name for name in found if name}


def imports_bench(source: str, module: str = "tools.x", is_package: bool = False) -> list[str]:
    """The imported names that reach into the ``bench`` package (sorted)."""
    return sorted(n for n in imported_modules(source, module, is_package) if n == "bench" or n.startswith("bench."))


def sys_path_edits(source: str) -> list[int]:
    """Line numbers that change ``sys.path``: a call of one of its mutating methods, or an assignment to it
    or to a slice of it."""
    def is_sys_path(node) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "path"
                and isinstance(node.value, ast.Name) and node.value.id == "sys")

    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value)
                and node.func.attr in ("insert", "append", "extend", "remove", "pop", "clear")):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)) for t in targets):
                lines.append(node.lineno)
    return sorted(lines)


def py_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


# -- the scanners on planted cases ----------------------------------------------------------------------

@pytest.mark.parametrize("source,module,flagged", [
    ("import bench", "tools.x", ["bench"]),
    ("import bench.common", "tools.x", ["bench.common"]),
    ("from bench.common import markdown_table", "tools.x", ["bench.common", "bench.common.markdown_table"]),
    ("from bench import soak", "tools.x", ["bench", "bench.soak"]),
    ("def f():\n    import bench.soak as s\n    return s", "tools.x", ["bench.soak"]),
    ("from .. import bench", "tools.x", ["bench"]),
    ("from ...bench.common import REPO", "tools.training.x", ["bench.common", "bench.common.REPO"]),
    ("import importlib\nimportlib.import_module('bench.soak')", "tools.x", ["bench.soak"]),
    ("__import__('bench')", "tools.x", ["bench"]),
    ("import benchmark\nfrom benchmarks import x", "tools.x", []),
    ("from tools.tables import markdown_table", "tools.x", []),
    ("from . import tables\nfrom .training import config", "tools.x", []),
    ("from .bench_helpers import x", "tools.x", []),                  # tools.bench_helpers, not bench
    ("bench = 3\nprint('import bench')", "tools.x", []),
], ids=["import", "import-submodule", "from-submodule", "from-package", "inside-function", "relative-up",
        "relative-up-two", "importlib", "dunder-import", "similar-name", "tools-module", "relative-inside",
        "tools-bench-prefix", "name-and-string"])
def test_bench_import_scan(source, module, flagged):
    assert imports_bench(source, module) == flagged


@pytest.mark.parametrize("source,lines", [
    ("import sys\nsys.path.insert(0, 'x')", [2]),
    ("import sys\ndef f():\n    sys.path.append('x')", [3]),
    ("import sys\nsys.path[:0] = ['x']", [2]),
    ("import sys\nsys.path = ['x'] + sys.path", [2]),
    ("import sys\nsys.path += ['x']", [2]),
    ("import sys\nprint(sys.path)\nsys.exit(0)", []),
    ("import os\nos.path.join('a', 'b')", []),
    ("s = 'sys.path.insert(0, x)'", []),
], ids=["insert", "append-in-function", "slice-assign", "assign", "augmented", "read-only", "os-path", "in-string"])
def test_sys_path_scan(source, lines):
    assert sys_path_edits(source) == lines


# -- the rules on the tree -----------------------------------------------------------------------------

TOOL_FILES = py_files("tools")


@pytest.mark.parametrize("path", TOOL_FILES, ids=[str(p.relative_to(REPO)) for p in TOOL_FILES])
def test_tools_never_import_bench(path):
    found = imports_bench(path.read_text(), module_name(path), path.name == "__init__.py")
    assert found == [], (f"{path.relative_to(REPO)} imports {found}: tools/ must not import bench/ "
                         "(move the shared piece into tools/)")


def test_tools_tree_is_scanned():
    """The scan above sees the real tree (a moved folder would make it pass vacuously)."""
    names = {module_name(p) for p in TOOL_FILES}
    assert {"tools.train", "tools.eval_tracking", "tools.training.config", "tools.tables"} <= names


SCANNED = py_files("tools", "bench", "tests") + [REPO / "run_stream.py"]


@pytest.mark.parametrize("path", SCANNED, ids=[str(p.relative_to(REPO)) for p in SCANNED])
def test_nothing_edits_sys_path(path):
    lines = sys_path_edits(path.read_text())
    assert lines == [], (f"{path.relative_to(REPO)}:{lines} edits sys.path; run tools/benchmarks as "
                         "python -m tools.NAME / bench.NAME from the repo root (tests: pytest's pythonpath)")


MODULES = [module_name(p) for p in py_files("tools", "bench")]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_as_package(name):
    """Each tool and benchmark imports by its package name (what ``python -m`` does), with nothing on
    sys.path but the repository root."""
    assert importlib.import_module(name).__name__ == name


SCRIPTS = sorted(p for p in [*(REPO / "tools").rglob("*.py"), *(REPO / "bench").glob("*.py")]
                 if '__name__ == "__main__"' in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(p.relative_to(REPO)) for p in SCRIPTS])
def test_a_script_run_by_path_says_how_to_run_it(script, tmp_path):
    """``python tools/train.py`` cannot import the project's packages: one line naming the ``-m`` form, exit 1."""
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    module = ".".join(script.relative_to(REPO).with_suffix("").parts)
    assert run.returncode == 1
    assert run.stderr.strip() == f"run it from the repository root as a module: python -m {module} --help"
