"""The tree's shape holds: no import circles among our modules (imports inside functions included), and our own
modules are imported at the top of a file, except the few edges imported lazily to keep requests and docker off
the no-op plan path."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runner", "server", "schemas")
# (file, module): an edge of ours imported inside a function, and why.
LAZY_OWN = {
    ("runner/cli.py", "runner.clients.api"),  # imports requests: not for validate or a usage error
    ("runner/cli.py", "runner.clients.containers"),  # imports docker: only when a container runs
    ("runner/cli.py", "runner.clients.oidc"),  # imports requests: as runner.clients.api
    ("runner/login.py", "runner.clients.oidc"),  # imports requests: not for a usage error
}


def _cycles(graph, packages: tuple[str, ...] = PACKAGES) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w.split(".")[0] not in packages:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(graph.modules):
        if m.split(".")[0] in packages and m not in index:
            visit(m)
    return out


def _graph(exclude_type_checking: bool = True):
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=exclude_type_checking)


@pytest.mark.parametrize("package", ["runner", "server", "schemas"])
def test_no_import_circles(package):
    cycles = [c for c in _cycles(_graph()) if c[0].split(".")[0] == package]
    assert cycles == [], f"import circles: {cycles}"


def test_the_circle_check_finds_a_circle(tmp_path, monkeypatch):
    pkg = tmp_path / "runner_circle_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from runner_circle_probe import b\n")
    (pkg / "b.py").write_text("from runner_circle_probe import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("runner_circle_probe")
    assert _cycles(graph, ("runner_circle_probe",)) == [["runner_circle_probe.a", "runner_circle_probe.b"]]


def _function_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found += [(node.lineno, n) for n in names if n.split(".")[0] in PACKAGES]
    return found


@pytest.mark.parametrize("package", ["runner", "server", "schemas"])
def test_own_modules_are_imported_at_the_top(package):
    hidden = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        hidden += [f"{rel}:{line} {name}" for line, name in _function_imports(path) if (rel, name) not in LAZY_OWN]
    assert hidden == []


def test_a_data_owner_installs_and_imports_no_server_stack():
    """The runner's install pulls neither the registry's web stack nor its database driver."""
    import configparser
    import json
    import subprocess
    import sys

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    required = cfg["options"]["install_requires"]
    server_stack = ("bottle", "cheroot", "psycopg", "pyjwt", "jwt")
    assert not [p for p in server_stack if p in required]
    assert all(p in cfg["options.extras_require"]["server"] for p in ("bottle", "cheroot", "psycopg", "pyjwt"))
    code = ("import sys, json, pkgutil, importlib, runner\n"
            "for m in pkgutil.walk_packages(runner.__path__, 'runner.'): importlib.import_module(m.name)\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(server_stack)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert json.loads(out) == []
