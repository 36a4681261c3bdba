"""What may ship: the rules the wheel (test_wheel.py) and the image (test_image.py) are held
to. Users run what ships, so it holds bwsync and nothing of its test rig: no test, conftest or
fake module, no stand-in but the Bitwarden one ``bwsync demo`` runs (``bwsync/standin``), and
none of the tests' extensions of that one (fault injection, rate limits, Vaultwarden mode)."""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping

#: A path component that names test code.
TEST_NAMES = re.compile(r"(^|[/_.-])(tests?|testing|conftest|fakes?)([/_.-]|$)", re.IGNORECASE)

#: The demo's stand-in, the one allowed.
STANDIN = "bwsync/standin/"

#: Classes the tests' extensions of the Bitwarden stand-in define (tests/standins/bitwarden),
#: and the methods they add to it: the fault switches, the rate limits, Vaultwarden mode.
TEST_ONLY_CLASSES = {"Fault", "FaultInjection", "VaultwardenMode", "FakeBitwarden"}
TEST_ONLY_METHODS = {
    "fail", "throttle", "server_error", "slow", "disconnect", "clear_faults", "expire_tokens",
    "_rate_limited", "_take_fault", "_fault_response", "_token_vaultwarden",
    "_import_vaultwarden", "add_account",
}  # fmt: skip

#: Base classes of a stand-in's server or handler (bwsync's own metrics server is no stand-in).
SERVER_BASES = {"StandInServer", "StandInHandler", "FakeHttpsServer", "BitwardenStandIn"}


def find_test_code(files: Mapping[str, str | None]) -> list[str]:
    """What in ``files`` (path -> Python source, or None for other files) is test code, each
    with the reason; empty when everything may ship."""
    found: list[str] = []
    for path, source in sorted(files.items()):
        if TEST_NAMES.search(path):
            found.append(f"{path}: named like test code")
        if "standin" in path.lower() and not path.startswith(STANDIN):
            found.append(f"{path}: a stand-in outside {STANDIN}")
        if source is None:
            continue
        for node in ast.walk(ast.parse(source, path)):
            if not isinstance(node, ast.ClassDef):
                continue
            if node.name in TEST_ONLY_CLASSES or node.name.lower().startswith("fake"):
                found.append(f"{path}: defines {node.name}")
            methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
            for name in sorted(methods & TEST_ONLY_METHODS):
                found.append(f"{path}: defines {node.name}.{name} (the tests' stand-in extensions)")
            bases = {
                b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
            }
            if bases & SERVER_BASES and not path.startswith(STANDIN):
                found.append(f"{path}: {node.name} serves HTTP like a stand-in")
    return found
