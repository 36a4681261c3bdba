"""The error tree: the exit codes and results it carries, the README's exit-code table drawn
from it, and every exception bwsync defines being part of it."""

from __future__ import annotations

import importlib
import pkgutil
import re
import typing
from pathlib import Path

import pytest

import bwsync
from bwsync import errors
from bwsync.errors import (
    EXIT_OK,
    SUCCESS_RESULTS,
    BwsyncError,
    ConfigError,
    Interrupted,
    LeaseHeldError,
    RunResult,
    SafetyLimitError,
    StateConflictError,
    StateError,
    error_classes,
)
from bwsync.model import RunReport

README = Path(__file__).resolve().parents[2] / "README.md"

#: Exceptions bwsync defines outside the tree, and why each may.
OUTSIDE_THE_TREE: dict[str, str] = {
    # Control flow of the HTTP layer, translated by every caller into its own error (the
    # Bitwarden client, the cloud sources, the ConfigMap state) before it leaves the call.
    "RetriesExhausted": "bwsync.http.retry: caught and translated by each HTTP client",
    "Cancelled": "bwsync.http.fanout: stops the reads after one failed; that failure is raised",
    # A wrap-up step given up after a stop (a TimeoutError): logged by the run and the metrics
    # delivery, never the run's failure (which is Interrupted).
    "WrapUpTimeout": "bwsync.stop: caught by run._wrap_up and metrics.deliver, and logged",
}


def _readme_exit_codes() -> dict[int, str]:
    section = README.read_text().split("### Exit codes", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", section, re.M)
    assert rows, "the README's exit-code table was not found"
    return {int(code): meaning.strip() for code, meaning in rows}


def test_the_readme_table_has_exactly_the_codes_of_the_tree() -> None:
    """A new branch of the tree with a code of its own needs its row, and a row needs its
    branch: the table is drawn from the tree, not kept beside it."""
    tree = {EXIT_OK} | {cls.exit_code for cls in error_classes()}
    assert set(_readme_exit_codes()) == tree


def test_each_code_belongs_to_one_branch_of_the_tree() -> None:
    """Below the root, one code per branch: the code says which side failed, whatever the
    subclass (a subclass never changes its branch's code or result)."""
    branches = BwsyncError.__subclasses__()
    assert len({b.exit_code for b in branches}) == len(branches)
    for branch in branches:
        for cls in error_classes():
            if issubclass(cls, branch):
                assert (cls.exit_code, cls.result) == (branch.exit_code, branch.result), cls


def test_results_are_the_successes_and_those_of_the_tree() -> None:
    """Every result the metrics promise is reached: by a run that did its job, or by an
    error class carrying it; and no error class carries a result outside the set."""
    carried = {cls.result for cls in error_classes()}
    assert carried | SUCCESS_RESULTS == set(typing.get_args(RunResult))
    assert not carried & SUCCESS_RESULTS


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_the_report_reads_result_and_exit_code_from_the_type(cls: type[BwsyncError]) -> None:
    report = RunReport(profile="p", source="file")
    error = cls.__new__(cls)
    Exception.__init__(error, "what went wrong")
    report.failed(error)
    assert (report.result, report.exit_code, report.failure) == (cls.result, cls.exit_code, cls)
    assert report.safety_breach == issubclass(cls, SafetyLimitError)
    report.succeeded("no_change")
    assert (report.result, report.exit_code, report.failure) == ("no_change", 0, None)


def test_only_the_loop_enders_end_the_loop() -> None:
    """``sync --every`` stops for a wrong setting and a stop request; a server's failure is
    tried again at the next interval."""
    ending = {cls for cls in error_classes() if cls.ends_loop}
    assert ending == {cls for cls in error_classes() if issubclass(cls, ConfigError | Interrupted)}


def _bwsync_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(bwsync.__path__, "bwsync."):
        if info.name.startswith(("bwsync.standin", "bwsync.demo", "bwsync.__main__")):
            continue  # the stand-in server and the demo: not the job's own errors
        names.append(info.name)
    return names


def test_every_exception_bwsync_defines_is_in_the_tree() -> None:
    """What the run, the CLI and the metrics read (exit code, result) exists only on the tree,
    so an exception class outside it would reach them as a bug (exit 1). Private classes that
    never leave their module (control flow) are the exception."""
    outside = []
    for name in _bwsync_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not issubclass(value, BwsyncError)
                and not attr.startswith("_")
                and attr not in OUTSIDE_THE_TREE
            ):
                outside.append(f"{name}.{attr}")
    assert outside == []


def test_the_tree_is_drawn_in_the_docstring() -> None:
    doc = errors.__doc__ or ""
    for cls in error_classes():
        assert cls.__name__ in doc, cls


def test_interrupted_reads_one_way_before_a_step_and_one_after_the_grace() -> None:
    before = Interrupted("SIGTERM", before="import 2/3")
    assert str(before) == (
        "stopped by SIGTERM before import 2/3; nothing more was sent, and the next run starts over"
    )
    given_up = Interrupted("SIGINT", grace=5, failed="LDAP x: Interrupted system call")
    assert str(given_up) == (
        "stopped by SIGINT: the request in flight did not end within the 5 s grace period "
        "(BWSYNC_STOP_GRACE_SECONDS), and was given up (LDAP x: Interrupted system call); the "
        "next run starts over"
    )


def test_state_errors_name_the_store_in_one_wording() -> None:
    conflict = StateConflictError("ConfigMap bwsync/x", how="resourceVersion conflict")
    assert str(conflict) == (
        "ConfigMap bwsync/x changed since this run read it (resourceVersion conflict): another "
        "run wrote it"
    )
    assert str(StateConflictError("file /s.json")) == (
        "file /s.json changed since this run read it: another run wrote it"
    )
    held = LeaseHeldError("file /s.json", "p/host/1", ", until 2030-01-01T00:00:00Z")
    assert (
        str(held)
        == "another run holds the lease on file /s.json: p/host/1, until 2030-01-01T00:00:00Z"
    )
    assert isinstance(held, StateError) and held.holder == "p/host/1"


def test_a_safety_stop_lists_its_reasons_and_what_lifts_them() -> None:
    error = SafetyLimitError(["3 removals exceed X", "a hazard"], "fix it")
    assert (
        str(error) == "safety limit reached, nothing applied: 3 removals exceed X; a hazard. fix it"
    )
    assert error.reasons == ["3 removals exceed X", "a hazard"]
