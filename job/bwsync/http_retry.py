"""What is temporary, and how long to wait: shared by the Bitwarden client and the cloud
directory sources.

Why a module of its own: ``bitwarden.py`` and ``sources/cloud_http.py`` both retry the same
failures and honour ``Retry-After`` and must decide alike, but the arrows in DESIGN.md forbid
either from importing the other (sources know nothing of Bitwarden; Bitwarden code does not
reach into ``bwsync.sources``). A neutral leaf module, depending on nothing in bwsync, keeps
one copy.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx

__all__ = ["retry_after", "should_retry"]


def should_retry(status: int | None, exc: Exception | None = None) -> bool:
    """The one place that decides what is temporary.

    ``status`` is the HTTP status, or ``None`` when ``exc`` (an httpx exception) replaced the
    response. Retried: 429 (rate limit), any 5xx, timeouts and transport failures other than a
    certificate refusal. Never retried: every other status, redirects included, and a TLS
    verification failure (waiting cannot fix it).
    """
    if exc is not None:
        return isinstance(exc, httpx.TransportError) and "CERTIFICATE_VERIFY_FAILED" not in str(exc)
    return status == 429 or (status is not None and 500 <= status <= 599)


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or HTTP-date); ``None`` when absent/unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
