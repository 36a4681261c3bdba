"""logs: every line, JSON or console, every level, tracebacks included, goes through the masking
boundary."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest

from bwsync import logs
from bwsync.redact import MASK

SECRET = 'Log"Secret\\value-0123456789'


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_debug_lines_fields_and_tracebacks_are_masked(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup(fmt, "debug", [SECRET])
    logs.event("token", logging.DEBUG, body=f"client_secret={quote(SECRET)}", raw=SECRET)
    try:
        raise RuntimeError(f"echoed {SECRET}")
    except RuntimeError:
        logs.LOGGER.exception("unexpected error: %s", "RuntimeError")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert quote(SECRET, safe="") not in err
    assert json.dumps(SECRET)[1:-1] not in err
    assert "0123456789" not in err
    assert err.count(MASK) >= 3
    if fmt == "json":
        lines = [json.loads(line) for line in err.splitlines()]
        assert lines[0]["event"] == "token" and lines[0]["level"] == "debug"
        assert "RuntimeError" in lines[1]["exception"]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_librarys_warnings_go_through_the_same_boundary(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup(fmt, "info", [SECRET])
    library = logging.getLogger("some.library")
    library.warning("retrying https://user:%s@host/x", "pw123456")
    library.warning("sent client_secret=%s", quote(SECRET))
    library.info("not shown: below WARNING")
    err = capsys.readouterr().err
    assert "pw123456" not in err and quote(SECRET) not in err and "not shown" not in err
    assert len(err.splitlines()) == 2
    if fmt == "json":
        assert {json.loads(line)["logger"] for line in err.splitlines()} == {"some.library"}


def test_console_counts_read_as_words(capsys: pytest.CaptureFixture[str]) -> None:
    """Counts in a console line read `invite 8, link 1`, never as a Python or JSON mapping;
    other structures stay JSON (one value per field)."""
    logs.setup("console", "info")
    logs.event("summary", applied={"invite": 8, "link": 1, "group_create": 4}, planned={})
    logs.event("plan", users=3, notes=["a b"], skipped={"no_email": 2})
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith('summary  applied="invite 8, link 1, group_create 4" planned=none')
    assert second.endswith('plan  users=3 notes=["a b"] skipped="no_email 2"')
    assert logs.counts_text({}) == "none"


@pytest.mark.parametrize("secret", ["2026", "true", "123456", "info", "null", "event"])
def test_a_secret_that_looks_like_a_value_or_a_name_leaves_the_line_whole(
    secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the text of the values is masked, not the finished line: a secret that reads as a
    number, a literal, a level or a field name must neither break the JSON nor hide what the
    code wrote (a count that happens to equal a short secret is no secret)."""
    logs.setup("json", "info", [secret])
    logs.event("summary", count=2026, applied_differs=True, ratio=123456.0, missing=None)
    logs.event("echoed", detail=f"server said {secret}", nested={"why": [f"x {secret}"]})
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["level"] == "info" and first["event"] == "summary"
    assert (first["count"], first["applied_differs"], first["ratio"]) == (2026, True, 123456.0)
    assert "missing" in first and first["missing"] is None
    assert second["detail"] == f"server said {MASK}"
    assert second["nested"] == {"why": [f"x {MASK}"]}


def test_console_masks_the_values_not_the_level_or_the_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.setup("console", "info", ["info", "count"])
    logs.event("summary", count=3, detail="the count was info")
    line = capsys.readouterr().err
    assert " info " in line and "count=3" in line
    assert f"detail=the {MASK} was {MASK}" in line


def test_console_shows_the_traceback_of_an_unexpected_error_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An exit-1 bug is logged with its traceback; the console format (a terminal's) must show
    it as the JSON format does, or the person at the terminal cannot report the bug."""
    secret = "Trace:Secret-0123"
    logs.setup("console", "info", [secret])
    try:
        raise KeyError(f"echoed {secret}")
    except KeyError:
        logs.LOGGER.exception("unexpected error: %s", "KeyError")
    err = capsys.readouterr().err
    first, *rest = err.splitlines()
    assert first.endswith("unexpected error: KeyError")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == f"KeyError: 'echoed {MASK}'"
    assert secret not in err
