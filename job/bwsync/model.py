"""Plain data shared by every stage: no I/O; the one third-party import is msgspec, so the
Bitwarden member list decodes straight into ``OrgMember``. ``RunResult`` is the error tree's
(``bwsync.errors``): a run's result is carried by the type it ended with.

A directory source turns its entries into ``User`` and ``Group`` records; ``normalize`` cleans
them; ``payload`` serialises them. The field names follow bwdc's ``UserEntry``/``GroupEntry`` so
that the reference (``directory-connector-behaviour.md`` §1) reads straight onto this code.

Identifiers are ``str`` everywhere, OneLogin's numeric ids included: every externalId and group
member id goes into the import body as a JSON string, because Vaultwarden refuses numbers
(HTTP 422). bwdc sends OneLogin's as numbers; the README lists that difference.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import msgspec

from bwsync.errors import (
    EXIT_OK,
    SUCCESS_RESULTS,
    BwsyncError,
    RunResult,
    SafetyLimitError,
)

ExternalId: TypeAlias = str


@dataclass(slots=True)
class User:
    """One directory user, as bwdc's ``UserEntry``.

    ``reference_id`` is the source's native id (an LDAP DN, a Graph id …); ``external_id`` is
    what Bitwarden stores to recognise the member on the next run. They differ only for LDAP
    entries that carry an ``objectGUID``.
    """

    reference_id: ExternalId
    external_id: ExternalId
    email: str | None
    disabled: bool = False
    deleted: bool = False


@dataclass(slots=True)
class Group:
    """One directory group, as bwdc's ``GroupEntry``.

    Member collections are insertion-ordered sets (``dict`` keys): their order reaches the
    request body and so the hash, which must match bwdc's.
    """

    reference_id: ExternalId
    external_id: ExternalId
    name: str | None
    user_member_external_ids: dict[ExternalId, None] = field(default_factory=dict)
    group_member_reference_ids: dict[ExternalId, None] = field(default_factory=dict)

    def add_user(self, external_id: ExternalId) -> None:
        self.user_member_external_ids[external_id] = None

    def add_group(self, reference_id: ExternalId) -> None:
        self.group_member_reference_ids[reference_id] = None


@dataclass(slots=True)
class Directory:
    """What a source returned.

    ``users``/``groups`` are ``None`` when that kind of sync is switched off, as in bwdc, so
    that "not fetched" and "fetched, empty" stay distinguishable (the safety check needs that).
    ``skipped`` counts entries a source or ``normalize`` dropped, by a short reason name that
    is also a metric label. ``delta`` carries opaque incremental tokens a source wants kept
    in the state for the next run (Entra delta links); they are saved only if the run succeeds.
    ``rejected`` names the entries ``normalize`` dropped for an email the servers would refuse,
    so that the run can say which ones (they are counted in ``skipped`` too).
    """

    users: list[User] | None
    groups: list[Group] | None
    skipped: Counter[str] = field(default_factory=Counter)
    delta: dict[str, str] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class Rejected:
    """A directory entry left out of the import because the servers would refuse its email."""

    reason: str
    """The ``skipped`` reason (``bwsync.email_rules.REASONS``)."""
    entry: str
    """The source's own id of the entry (an LDAP DN, a Graph id, the file's ``id`` …)."""
    email: str
    external_id: ExternalId = ""
    """The entry's externalId: it is still in the directory, so the plan must not take the
    member carrying this externalId for gone (``plan``)."""
    deleted: bool = False
    disabled: bool = False


@dataclass(slots=True)
class RunReport:
    """Everything one run learned about itself: the summary log line, the metrics and the
    state's ``last_run`` are all made from this, so they cannot disagree.

    Counts only — never member lists — so it is safe to log at info level and to keep.
    """

    profile: str
    source: str
    command: str = "sync"
    result: RunResult = BwsyncError.result
    exit_code: int = BwsyncError.exit_code
    failure: type[BwsyncError] | None = None
    """The class of the error the run ended with (``failed``), ``None`` until then: what the
    CLI reads (``ends_loop``, a plan to show), never a number."""
    started: float = 0.0
    """Epoch seconds."""
    finished: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Stage name (settings, fetch, normalize, payload, snapshot, plan, apply, verify, state)
    → seconds."""
    directory_objects: dict[str, int] = field(default_factory=dict)
    """users, groups, disabled_users, deleted_users → count, after normalisation."""
    planned: dict[str, int] = field(default_factory=dict)
    """Action (invite, remove, revoke, restore, group_create, group_rename, group_empty,
    group_delete, member_add, member_remove) → count the plan holds."""
    applied: dict[str, int] = field(default_factory=dict)
    """Action → count confirmed applied (re-read from the server where it can be)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Reason → entries dropped before the import."""
    sent: dict[str, int] = field(default_factory=dict)
    """members, groups → entries carried by the import requests that succeeded."""
    unsent_batches: int = 0
    """Member batches left out because the plan found nothing in them for the server to do."""
    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    """(endpoint name, HTTP status or 0 for a transport error) → Bitwarden requests made."""
    retries: int = 0
    directory_requests: dict[int, int] = field(default_factory=dict)
    """HTTP status (0 for a transport error) → requests a cloud source made, retries and token
    requests included."""
    directory_retries: int = 0
    safety_breach: bool = False
    applied_differs: bool = False
    """The server, re-read after applying, does not show what the plan said."""
    error: str | None = None
    """The error message of a failed run (no secrets: errors are built without them)."""
    last_success_timestamp: float | None = None
    """Carried from the state so 'time since the last success' survives failed runs."""
    last_success_known: bool = True
    """False when the run ended before it read the state (a bad setting, an unreadable store):
    ``last_success_timestamp`` is then unknown, not "never", and the metrics keep the value
    delivered before instead of resetting it."""

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)

    def succeeded(self, result: RunResult) -> None:
        """The run did what it had to: ``success``, or ``no_change``."""
        assert result in SUCCESS_RESULTS, result
        self.result, self.exit_code, self.failure = result, EXIT_OK, None

    def failed(self, error: BwsyncError) -> None:
        """The run ended with ``error``: its type says the result and the exit code."""
        self.result, self.exit_code, self.failure = error.result, error.exit_code, type(error)
        self.error = str(error)
        self.safety_breach = self.safety_breach or isinstance(error, SafetyLimitError)


#: Names of the Bitwarden API calls bwsync makes: the client's metric labels
#: (``bitwarden_requests{endpoint}``) and the stand-in's names for requests and faults.
BITWARDEN_ENDPOINTS = (
    "token",
    "import",
    "list_members",
    "get_member",
    "member_group_ids",
    "list_groups",
    "get_group",
    "group_member_ids",
    "set_group_member_ids",
    "update_group",
    "delete_group",
    "revoke_member",
    "restore_member",
    "unknown",
)

# Bitwarden's member status and type codes (public API, integers).
STATUS_REVOKED, STATUS_INVITED, STATUS_ACCEPTED, STATUS_CONFIRMED, STATUS_STAGED = -1, 0, 1, 2, 3
TYPE_OWNER, TYPE_ADMIN, TYPE_USER, TYPE_CUSTOM = 0, 1, 2, 4


class OrgMember(msgspec.Struct, frozen=True, rename="camel"):
    """A member of the organization as ``GET /public/members`` shows it.

    A msgspec struct rather than a dataclass so the member list is decoded straight from the
    response bytes, reading only these five fields: on a 100,000-member organization (32 MB of
    JSON) that takes 0.11 s and 37 MB, where parsing every field into dicts first took 0.56 s
    and 165 MB (``tests/bench``)."""

    id: str
    email: str | None = None
    external_id: str | None = None
    status: int = 0
    type: int = 2


class MemberState(msgspec.Struct, frozen=True, rename="camel"):
    """What a re-read after an import checks of each member: is its externalId there, and is
    it revoked. Decoding only these two fields takes two thirds of ``OrgMember``'s time (0.030
    against 0.045 s for 100,000 members, measured side by side with the collector off): the
    ids and emails are skipped, not made into strings."""

    external_id: str | None = None
    status: int = 0


@dataclass(slots=True, frozen=True)
class CollectionGrant:
    """What a group grants on one collection (``GET /public/groups``: ``collections[]``)."""

    id: str
    read_only: bool = False
    hide_passwords: bool = False
    manage: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "readOnly": self.read_only,
            "hidePasswords": self.hide_passwords,
            "manage": self.manage,
        }

    def __str__(self) -> str:
        """The id and, in words, what the grant allows: what an admin re-grants from."""
        if self.manage:
            how = "can manage"
        elif self.read_only:
            how = "view only" if not self.hide_passwords else "view only, passwords hidden"
        else:
            how = "can edit" if not self.hide_passwords else "can edit, passwords hidden"
        return f"{self.id} ({how})"


@dataclass(slots=True, frozen=True)
class OrgGroup:
    """A group of the organization as ``GET /public/groups`` shows it."""

    id: str
    name: str
    external_id: str | None
    collections: tuple[CollectionGrant, ...] = ()
    """Its collection grants: what emptying keeps and deleting loses, shown in the plan."""

    @property
    def synced(self) -> bool:
        """Whether a directory sync owns it: an externalId that is not blank. The server
        treats a blank or whitespace one as made by hand (``OrganizationGroupImportData``:
        ``IsNullOrWhiteSpace``), so the import never matches it, and neither does bwsync."""
        return bool(self.external_id and self.external_id.strip())
