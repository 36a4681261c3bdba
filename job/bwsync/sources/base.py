"""What every directory source provides, and the request a run hands it.

A source is small on purpose (client_python's ``Collector``, certbot's plugins): given its
settings section, ``fetch`` returns users and groups as ``model`` records; ``check`` says whether
the directory is reachable and the credentials work. Shared work lives outside the sources:
``normalize`` (emails, duplicates, nesting), ``payload`` (the import body). Sources translate
their library's exceptions into ``DirectoryError`` subclasses; nothing foreign escapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bwsync.model import Directory


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """What the run asks of a source.

    ``force`` is bwdc's *effectiveForce* (``--force`` or ``overwrite_existing``): ignore any
    incremental state and fetch everything; for AD it also includes deleted objects. ``delta``
    holds the tokens the source returned on the last successful run.

    Whatever these say, a source returns every user and every group in its scope: the plan
    takes a synced member or group missing from the result for gone from the directory. There
    is no "changed since the last run" request (bwdc's incremental LDAP and Okta runs are not
    reproduced); a delta token may only add what a full read cannot see (Entra's deleted
    users).
    """

    force: bool = False
    delta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of ``bwsync check``: what was tried, whether it worked, and why not."""

    name: str
    ok: bool
    detail: str


class Source(Protocol):
    """A directory. Construct with settings (no I/O), then ``fetch`` or ``check``."""

    #: the ``BWSYNC_SOURCE`` value, also the ``source`` metric label
    name: str

    def fetch(self, request: FetchRequest) -> Directory:
        """Read the directory. Users/groups are ``None`` when that sync kind is switched off."""
        ...

    def check(self) -> list[CheckResult]:
        """Connect and authenticate without reading the directory; never raises for a failure
        of the directory itself (it becomes a failed ``CheckResult``)."""
        ...

    @property
    def server(self) -> str:
        """What to name in messages: a URL or host, never a credential."""
        ...
