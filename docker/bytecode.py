"""Ship bytecode for what bwsync can import, and only for that (run once, at image build time).

The image's root filesystem is read-only, so Python cannot cache the bytecode it compiles:
without shipped ``.pyc`` files every run compiled its imports again (0.2-0.8 s a start). And the
base image ships ``.pyc`` files for the whole standard library, most of which bwsync never
imports. So, in the runtime stage, with the virtualenv's Python (``/opt/bwsync/bin/python``)::

    python bytecode.py

1. imports every module of the ``bwsync`` package (but ``EXCLUDED``), then follows the import
   statements of every module so loaded from the virtualenv's site-packages, those written
   inside functions too (the lazy imports of bwsync and its libraries), and imports what they
   name, until nothing new comes in;
2. compiles every module then loaded from a ``.py`` file, standard library included, with
   unchecked-hash invalidation (valid whatever the files' times: a copied tree keeps them);
3. deletes every other ``.pyc`` of the standard library.

An import that fails (an optional dependency absent, a platform module) is skipped: the program
loads what can be loaded. It prints one line: how many modules it compiled and removed.

Neither loaded on their own nor followed (``EXCLUDED``): ``bwsync.standin``, the Bitwarden
stand-in only ``bwsync demo`` runs (what the demo imports of it is compiled like the rest, its
command line is not), and ``__main__`` modules (importing one would run it).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import py_compile
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

PACKAGE = "bwsync"
EXCLUDED = ("bwsync.standin",)


def wanted(name: str) -> bool:
    """Whether a module is to be loaded and compiled at all."""
    excluded = any(name == e or name.startswith(e + ".") for e in EXCLUDED)
    return not excluded and name.rpartition(".")[2] != "__main__"


def load(name: str) -> None:
    """Import a module if it can be imported; a failure only means it is not compiled."""
    with contextlib.suppress(Exception):
        importlib.import_module(name)


def package_modules(top: Path) -> Iterator[str]:
    """Every module of the package whose directory is ``top``, by dotted name."""
    for path in sorted(top.rglob("*.py")):
        parts = path.relative_to(top.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def named_by(module: ModuleType) -> Iterator[str]:
    """The modules an import statement of ``module`` names, wherever it stands: ``import a.b``
    names ``a.b``; ``from a import b`` names ``a`` and ``a.b`` (``b`` may be a module)."""
    source = Path(module.__file__ or "").read_bytes()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            relative = "." * node.level + (node.module or "")
            try:
                base = importlib.util.resolve_name(relative, module.__package__)
            except (ImportError, ValueError):
                continue
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def followed(module: ModuleType, roots: tuple[str, ...]) -> bool:
    """Whether the imports of a loaded module are followed: source files under ``roots``
    (site-packages: bwsync and its libraries), not the standard library's own (it imports
    lazily what the modules bwsync uses never reach)."""
    file = getattr(module, "__file__", None) or ""
    return file.startswith(roots) and file.endswith(".py") and wanted(module.__name__)


def load_reachable(top: Path, roots: tuple[str, ...]) -> None:
    """Step 1: load the package's modules, then whatever their imports name, transitively
    (``roots``: see ``followed``)."""
    for name in package_modules(top):
        if wanted(name):
            load(name)
    done: set[str] = set()
    while todo := [
        m for m in list(sys.modules.values()) if followed(m, roots) and m.__name__ not in done
    ]:
        for module in todo:
            done.add(module.__name__)
            for name in named_by(module):
                if wanted(name):
                    load(name)


def loaded_sources(modules: Iterable[ModuleType]) -> set[str]:
    """The ``.py`` files the loaded modules came from, but this program's own (``__main__``:
    it is not part of the image)."""
    files = {getattr(m, "__file__", None) or "" for m in modules if m.__name__ != "__main__"}
    return {f for f in files if f.endswith(".py")}


def compile_all(sources: Iterable[str]) -> set[str]:
    """Step 2: compile each file next to itself (``__pycache__``); the ``.pyc`` paths."""
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    compiled = (py_compile.compile(f, doraise=True, invalidation_mode=mode) for f in sources)
    return {pyc for pyc in compiled if pyc is not None}  # (None only without doraise)


def prune(stdlib: Path, kept: set[str]) -> int:
    """Step 3: delete every ``.pyc`` under ``stdlib`` that is not ``kept``; how many."""
    stale = [pyc for pyc in stdlib.rglob("*.pyc") if str(pyc) not in kept]
    for pyc in stale:
        pyc.unlink()
    return len(stale)


def main() -> int:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        print(f"bytecode: {PACKAGE} is not installed in {sys.prefix}", file=sys.stderr)
        return 1
    load_reachable(Path(spec.origin).parent, (sysconfig.get_path("purelib"),))
    kept = compile_all(loaded_sources(list(sys.modules.values())))
    removed = prune(Path(sysconfig.get_path("stdlib")), kept)
    print(f"bytecode: {len(kept)} modules compiled, {removed} unused standard library .pyc removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
