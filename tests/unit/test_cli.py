"""cli: what the command wrapper guarantees around a pass (the commands themselves: tests/e2e)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from bwsync import cli
from bwsync.run import RunOptions


def test_paused_gc_restores_the_collector_even_on_error() -> None:
    seen: list[bool] = []

    def fail_inside() -> None:
        with cli.paused_gc():
            seen.append(gc.isenabled())
            raise RuntimeError

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        fail_inside()
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()
    try:
        with cli.paused_gc():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def test_a_sync_runs_with_the_collector_paused_and_leaves_it_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    real = cli.execute

    def spy(settings: object, options: RunOptions, **kw: object) -> object:
        seen.append(gc.isenabled())
        return real(settings, options, **kw)  # type: ignore[arg-type]

    directory = tmp_path / "dir.json"
    directory.write_text(json.dumps({"users": [{"id": "u1", "email": "u1@example.com"}]}))
    monkeypatch.setattr(cli, "execute", spy)
    for k, v in {
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(directory),
        "BWSYNC_STATE__BACKEND": "none",
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["plan", "--directory-only", "--output", "json"]) == 0
    assert seen == [False]
    assert gc.isenabled()
