"""Logs: one event per stage, one summary line, JSON on stderr (a console format on a TTY).

Every line is an *event* with fields (``event("fetch", users=10, seconds=0.2)``) so a log
pipeline can filter on them. Member lists are never logged at info level; plan entries are
logged once each, worded as actions ("invite x", "would invite x" in a plan).

Secrets: none of our messages is built with one, and as a second line of defence the handler
masks every secret value the settings hold, so even a library echoing a password cannot leak it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

LOGGER = logging.getLogger("bwsync")
_FIELDS = "bwsync_fields"


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields."""
    LOGGER.log(level, name, extra={_FIELDS: fields})


def _mask(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and s in text:
            text = text.replace(s, "***")
    return text


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        doc.update(getattr(record, _FIELDS, {}))
        if record.exc_info and record.levelno >= logging.ERROR:
            doc["exception"] = self.formatException(record.exc_info)
        text = orjson.dumps(doc, default=str).decode()
        return _mask(text, self.secrets)


class ConsoleFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, _FIELDS, {})
        parts = []
        for key, value in fields.items():
            if isinstance(value, float):
                shown = f"{value:.3f}"
            elif isinstance(value, dict | list):
                shown = orjson.dumps(value, default=str).decode()
            else:
                shown = str(value)
            parts.append(f"{key}={shown}")
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()}"
        if parts:
            line += "  " + " ".join(parts)
        return _mask(line, self.secrets)


def setup(fmt: str | None, level: str, secrets: Iterable[str] = ()) -> None:
    """(Re)configure the ``bwsync`` logger; idempotent so loop mode and tests can call it again."""
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    secrets = list(secrets)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else ConsoleFormatter(secrets))
    for old in list(LOGGER.handlers):
        LOGGER.removeHandler(old)
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
