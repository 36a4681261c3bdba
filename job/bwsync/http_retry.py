"""HTTP header parsing shared by the Bitwarden client and the cloud directory sources.

Why a module of its own: ``bitwarden.py`` and ``sources/cloud_http.py`` both honour
``Retry-After`` and must read it the same way, but the arrows in DESIGN.md forbid either from
importing the other (sources know nothing of Bitwarden; Bitwarden code does not reach into
``bwsync.sources``). A neutral leaf module, depending on nothing in bwsync, keeps one copy.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx

__all__ = ["retry_after"]


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
