"""The package's import arrows (README, "How the code is organised"), read from the source: no
import cycle inside ``bwsync``, sources and state never reach the Bitwarden client or the run,
no source imports another source.

Every ``import`` counts, wherever it is written: at module level, inside a function (the lazy
imports that keep start-up fast), under ``if TYPE_CHECKING:``. A lazy import still makes one
module depend on the other, and a cycle through one still makes the two modules one unit.

What is a *source*: a module ``bwsync.sources.build_source`` imports to build a directory
source (``file``, ``ldap``, ``entra``, ``google``, ``okta``, ``onelogin``). The other modules of
``bwsync.sources`` are helper layers the sources share (``base``, ``filters``, ``cloud_http``,
``ldap_wire``): a source may import helpers, a helper imports no source, so no source reaches
another one, directly or through a helper.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "job"


def module_files(root: Path, package: str = "bwsync") -> dict[str, Path]:
    """Every module of ``package`` under ``root`` by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, modules: Iterable[str], package: str = "bwsync") -> set[str]:
    """The modules of ``package`` that module ``name`` imports anywhere in its text. ``from a
    import b`` names ``a.b`` when that is a module, else ``a``. Importing ``a.b`` also runs the
    package ``a``, but that edge is Python's, not the author's: it is not counted."""
    known = set(modules)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            for alias in node.names:
                out.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
    return {m for m in out if m in known and m != name and m.split(".")[0] == package}


def import_graph(root: Path, package: str = "bwsync") -> dict[str, set[str]]:
    files = module_files(root, package)
    return {name: imported(name, path, files, package) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for w in graph[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def source_modules(graph: dict[str, set[str]], root: Path) -> set[str]:
    """The modules ``build_source`` imports: the sources (see the module docstring)."""
    tree = ast.parse((root / "bwsync" / "sources" / "__init__.py").read_text(encoding="utf-8"))
    (build,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_source"]
    return {n.module for n in ast.walk(build) if isinstance(n, ast.ImportFrom) and n.module}


GRAPH = import_graph(PACKAGE_ROOT)


def test_the_graph_sees_every_kind_of_import() -> None:
    # Module level, inside a function and under TYPE_CHECKING, absolute and relative.
    assert "bwsync.run" in GRAPH["bwsync.cli"]  # module level
    assert "bwsync.demo.run" in GRAPH["bwsync.cli"]  # inside main()
    assert "bwsync.sources.ldap" in GRAPH["bwsync.sources"]  # inside build_source()
    assert "bwsync.config" in GRAPH["bwsync.standin.server"]  # TYPE_CHECKING and lazy


def test_a_cycle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
    )
    (pkg / "d.py").write_text("import pkg.a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_no_import_cycle_inside_bwsync() -> None:
    assert len(GRAPH) > 40  # the whole package was read
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("layer", ["bwsync.sources", "bwsync.state"])
def test_sources_and_state_never_reach_the_bitwarden_client_or_the_run(layer: str) -> None:
    modules = [m for m in GRAPH if m == layer or m.startswith(layer + ".")]
    assert len(modules) > 3
    forbidden = {"bwsync.bitwarden", "bwsync.run", "bwsync.standin"}
    reached = {m: sorted(reachable(GRAPH, m) & forbidden) for m in modules}
    assert {m: r for m, r in reached.items() if r} == {}


def test_state_knows_nothing_of_sources() -> None:
    state = [m for m in GRAPH if m == "bwsync.state" or m.startswith("bwsync.state.")]
    assert [
        m for m in state if any(r.startswith("bwsync.sources") for r in reachable(GRAPH, m))
    ] == []


def test_no_source_imports_another_source() -> None:
    sources = source_modules(GRAPH, PACKAGE_ROOT)
    assert {"bwsync.sources.file", "bwsync.sources.ldap", "bwsync.sources.okta"} <= sources
    helpers = {m for m in GRAPH if m.startswith("bwsync.sources.")} - sources
    assert "bwsync.sources.base" in helpers
    # A source imports no other source; a helper imports no source, so none is reached
    # through a helper either.
    assert {s: sorted(GRAPH[s] & sources) for s in sources if GRAPH[s] & sources} == {}
    assert {h: sorted(GRAPH[h] & sources) for h in helpers if GRAPH[h] & sources} == {}
