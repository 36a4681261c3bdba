"""Logs: one event per stage, one summary line, JSON on stderr (a console format on a TTY).

Every line is an *event* with fields (``event("fetch", users=10, seconds=0.2)``) so a log
pipeline can filter on them. Member lists are never logged at info level; plan entries are
logged once each, worded as actions ("invite x", "would invite x" in a plan).

Secrets: none of our messages is built with one, and the text of every line, at every level
and in both formats, goes through the masking boundary (``bwsync.redact``), so even a library or
a server echoing a password cannot leak it through a log. The message and each field's value are
masked before the line is put together, never the finished line: a short secret that reads as
a number, ``true``, a level or a field name must not turn a JSON line invalid or hide a level.
The libraries' own warnings (msal, google-auth, …, anything logged at WARNING or above outside
``bwsync``) go through the same formatter, with a ``logger`` field, instead of Python's
last-resort handler, which would print them raw.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from bwsync.redact import redact, remember

LOGGER = logging.getLogger("bwsync")
_FIELDS = "bwsync_fields"


class _LibraryHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root logger's handler for the libraries' warnings (replaced by each ``setup``)."""


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields."""
    LOGGER.log(level, name, extra={_FIELDS: fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": redact(record.getMessage()),
        }
        if not record.name.startswith("bwsync"):
            doc["logger"] = record.name
        for name, value in getattr(record, _FIELDS, {}).items():
            doc[name] = _masked(value)
        if record.exc_info and record.levelno >= logging.ERROR:
            doc["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(doc).decode()


def _masked(value: Any) -> Any:
    """``value`` with the text in it masked, as JSON will carry it. The values are masked, never
    the finished line: a secret that reads as a number, ``true`` or a field name would
    otherwise turn ``"count":2026`` into invalid JSON or ``"level":"info"`` into a mask. Numbers,
    booleans and ``null`` are the code's own values and stay; anything orjson cannot write
    natively is written as its text (``str``), masked."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {redact(str(k)): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return _masked(orjson.loads(orjson.dumps(value, default=str)))


def counts_text(counts: Mapping[str, int]) -> str:
    """Counts as a person reads them: ``invite 8, link 1, group_create 4`` (in the mapping's
    order), ``none`` when empty. Used wherever counts are shown as text (the plan's totals,
    the summary line, console logs): never a Python ``{'invite': 8}``."""
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def _is_counts(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    )


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, _FIELDS, {})
        parts = []
        for key, value in fields.items():
            if isinstance(value, float):
                shown = f"{value:.3f}"
            elif _is_counts(value):
                text = counts_text(value)
                shown = f'"{text}"' if " " in text else text
            elif isinstance(value, dict | list):
                shown = orjson.dumps(value, default=str).decode()
            else:
                shown = str(value)
            parts.append(f"{key}={redact(shown)}")
        # the message and each value masked, not the line: the level and the field names stay
        line = f"{stamp} {record.levelname.lower():7} {redact(record.getMessage())}"
        if parts:
            line += "  " + " ".join(parts)
        if record.exc_info and record.levelno >= logging.ERROR:
            # an exit-1 bug: the traceback is what the person at the terminal reports
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def setup(fmt: str | None, level: str, secrets: Iterable[str] = ()) -> None:
    """(Re)configure the ``bwsync`` logger; idempotent so loop mode and tests can call it again.
    ``secrets`` are remembered for masking (``bwsync.redact.remember``), with every form."""
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    remember(*secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    for old in list(LOGGER.handlers):
        LOGGER.removeHandler(old)
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LibraryHandler)]:
        root.removeHandler(old)
    libraries = _LibraryHandler(sys.stderr)
    libraries.setLevel(logging.WARNING)
    libraries.setFormatter(handler.formatter)
    root.addHandler(libraries)
