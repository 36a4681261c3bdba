"""docker/bytecode.py, the program the image build runs to ship bytecode for what bwsync
imports and nothing else. Its pieces are checked here on throwaway files and, without writing
anything, on this environment; the image test (test_image.py) checks the result end to end:
a container compiles nothing when bwsync starts."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import ROOT

PROGRAM = ROOT / "docker" / "bytecode.py"


def _program() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docker_bytecode", PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bytecode = _program()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bwsync.cli", True),
        ("bwsync.sources.ldap", True),
        ("bwsync.standin", False),
        ("bwsync.standin.serve", False),
        ("bwsync.standings", True),  # a prefix of a name is not the package
        ("bwsync.__main__", False),
        ("pip.__main__", False),
    ],
)
def test_what_is_loaded_and_followed(name: str, expected: bool) -> None:
    assert bytecode.wanted(name) is expected


def test_imports_are_read_wherever_they_stand(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "import json, os.path\n"
        "from . import sibling\n"
        "from ..up import thing\n"
        "def later():\n"
        "    from pkg.lazy import helper\n"
        "class K:\n"
        "    import csv\n"
    )
    module = ModuleType("pkg.sub.mod")
    module.__file__ = str(source)
    module.__package__ = "pkg.sub"
    assert list(bytecode.named_by(module)) == [
        "json", "os.path", "pkg.sub", "pkg.sub.sibling", "pkg.up", "pkg.up.thing",
        "pkg.lazy", "pkg.lazy.helper", "csv",
    ]  # fmt: skip


def test_a_relative_import_beyond_the_top_is_skipped(tmp_path: Path) -> None:
    source = tmp_path / "top.py"
    source.write_text("from ... import nowhere\nimport json\n")
    module = ModuleType("top")
    module.__file__ = str(source)
    module.__package__ = ""
    assert list(bytecode.named_by(module)) == ["json"]


def test_package_modules_are_named_as_python_names_them(tmp_path: Path) -> None:
    top = tmp_path / "bwsync"
    (top / "sources").mkdir(parents=True)
    for rel in ("__init__.py", "cli.py", "sources/__init__.py", "sources/ldap.py"):
        (top / rel).write_text("")
    assert sorted(bytecode.package_modules(top)) == [
        "bwsync", "bwsync.cli", "bwsync.sources", "bwsync.sources.ldap",
    ]  # fmt: skip


def test_compiled_files_are_kept_and_every_other_pyc_is_removed(tmp_path: Path) -> None:
    stdlib = tmp_path / "lib"
    (stdlib / "email").mkdir(parents=True)
    used, unused = stdlib / "json_like.py", stdlib / "email" / "unused.py"
    used.write_text("X = 1\n")
    unused.write_text("Y = 2\n")
    stale = Path(bytecode.compile_all([str(unused)]).pop())  # as a base image ships it
    kept = bytecode.compile_all([str(used)])
    (pyc,) = kept
    # Unchecked-hash bytecode (PEP 552 flags 0b01): valid whatever the source's time.
    assert int.from_bytes(Path(pyc).read_bytes()[4:8], "little") == 0b01
    assert bytecode.prune(stdlib, kept) == 1
    assert Path(pyc).exists()
    assert not stale.exists()


def test_the_program_is_never_compiled_itself() -> None:
    main = ModuleType("__main__")
    main.__file__ = str(PROGRAM)
    lib = ModuleType("json")
    lib.__file__ = "/usr/lib/python3/json/__init__.py"
    assert bytecode.loaded_sources([main, lib]) == {"/usr/lib/python3/json/__init__.py"}


def test_what_bwsync_can_import_is_loaded_here() -> None:
    """Step 1 on this environment, in a child process (it imports a lot; it writes nothing)."""
    code = (
        "import importlib.util, json, sys, sysconfig\n"
        f"spec = importlib.util.spec_from_file_location('b', {str(PROGRAM)!r})\n"
        "b = importlib.util.module_from_spec(spec); spec.loader.exec_module(b)\n"
        "from pathlib import Path\n"
        "top = Path(importlib.util.find_spec('bwsync').origin).parent\n"
        # bwsync is installed editable here: its own files are outside site-packages.
        "b.load_reachable(top, (sysconfig.get_path('purelib'), str(top)))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = set(json.loads(res.stdout))
    # Every module of bwsync (the lazily imported sources and state backends too), and the
    # libraries they use, with the modules those import.
    assert {"bwsync.cli", "bwsync.sources.ldap", "bwsync.sources.okta", "bwsync.state.kube",
            "bwsync.metrics", "bwsync.metrics_delivery", "bwsync.metrics_server",
            "bwsync.output", "httpx", "pydantic", "msal"} <= loaded  # fmt: skip
    assert "bwsync.standin.serve" not in loaded  # the stand-in's command line
    assert not [m for m in loaded if m.startswith("bwsync") and m.endswith("__main__")]
