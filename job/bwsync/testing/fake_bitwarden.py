"""A faithful, stateful stand-in for Bitwarden's organization API, served over real HTTP.

Why it exists: we cannot run the official server (or Vaultwarden) in tests, and mocks of our own
client would only test our assumptions. This server is written from the contract in
``reference/bitwarden-public-api.md`` (cited below as §n) and enforces its errors, limits and
quirks, not only the happy path: the 2,000-entry cap, the no-master-password guard of
``overwriteExisting``, the 500s the real server throws on duplicates, non-transactional imports,
rate limiting with ``Retry-After``, and Vaultwarden's different rules (§6).

One base URL serves both halves, as a self-hosted server does behind its nginx::

    {base}/identity/connect/token        (also {base}/connect/token)
    {base}/api/public/...                (also {base}/public/...)

so ``BWSYNC_BITWARDEN__SERVER={base}`` works with the derived ``/api`` and ``/identity``.

In-process use (tests, ``bwsync demo``)::

    with FakeBitwarden() as bw:                  # started on a free loopback port
        bw.add_owner("boss@example.com")
        bw.add_member("ann@example.com", external_id="ann")
        bw.throttle("import", times=1, retry_after=2)
        ... run the client against bw.base_url with bw.client_id / bw.client_secret ...
        bw.find_member(email="ann@example.com"); bw.requests; bw.events

From a shell::

    python -m bwsync.testing.fake_bitwarden --port 8087 [--vaultwarden] [--self-hosted]

Decisions where the reference is silent (from the server source, see the module's tests):

* ``POST /public/members/{id}/revoke`` and ``/restore``: the API key acts as a *system user*, so
  the "only owners can revoke owners" check does not apply: owners can be revoked, except the
  last confirmed owner (400 "Organization must have at least one confirmed owner."). Revoking a
  revoked member is 400 "Already revoked."; restoring an active one is 400 "Already active.";
  an id outside the organization is 404 with an empty body; success is 200 with an empty body.
  Restore puts the member back in the status it had before (Invited without an account).
* Unknown paths answer 404 with an empty body (official) or the JSON catcher (Vaultwarden).

Only the standard library, orjson and msgspec (runtime dependencies): the demo ships this module.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import gc
import itertools
import math
import operator
import random
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Annotated, Any, TypedDict, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
import orjson

from bwsync.model import (
    BITWARDEN_ENDPOINTS,
    STATUS_ACCEPTED,
    STATUS_CONFIRMED,
    STATUS_INVITED,
    STATUS_REVOKED,
    STATUS_STAGED,
    TYPE_ADMIN,
    TYPE_OWNER,
    TYPE_USER,
)
from bwsync.testing.fake_http import StandInHandler, StandInServer

if TYPE_CHECKING:
    from bwsync.config import BitwardenSettings

__all__ = [
    "ENDPOINTS",
    "FakeBitwarden",
    "FakeGroup",
    "FakeMember",
    "Fault",
    "RecordedRequest",
    "main",
]

#: Endpoint names, shared with ``bwsync.bitwarden`` (its ``on_request`` metric labels).
ENDPOINTS = BITWARDEN_ENDPOINTS

MODEL_STATE_INVALID = "The request's model state is invalid."
UNHANDLED = "An unhandled server error has occurred."
TOO_MUCH_DATA = "You cannot import this much data at once."
OVERWRITE_NO_MP = (
    "Sync failed. To proceed, disable the 'Remove and re-add users during next sync' setting "
    "and try again."
)
CLOUD_IMPORT_CAP = 2000
_GUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_KNOWN_GRANTS = {
    "authorization_code",
    "client_credentials",
    "refresh_token",
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:device_code",
    "webauthn",
}
_VW_REQUIRED_TOKEN_FIELDS = (
    ("client_id", ("client_id", "clientid")),
    ("client_secret", ("client_secret", "clientsecret")),
    ("scope", ("scope",)),
    ("device_identifier", ("device_identifier", "deviceidentifier")),
    ("device_name", ("device_name", "devicename")),
    ("device_type", ("device_type", "devicetype")),
)
_ROCKET_REASONS = {
    400: (
        "Bad Request",
        "The request could not be understood by the server due to malformed syntax.",
    ),
    401: ("Unauthorized", "The request requires user authentication."),
    404: ("Not Found", "The requested resource could not be found."),
    415: (
        "Unsupported Media Type",
        "The request entity has a media type which the server or resource does not support.",
    ),
    422: (
        "Unprocessable Entity",
        "The request was well-formed but was unable to be followed due to semantic errors.",
    ),
}


# --------------------------------------------------------------------------------------------
# State


@dataclass(slots=True)
class FakeMember:
    """One organization membership, as the server stores it.

    ``user_id`` is set when the membership is linked to an account (Accepted, Confirmed, or
    revoked after that); ``has_master_password`` matters for the overwrite guard (§3.4 step 4).
    """

    id: str
    email: str | None
    external_id: str | None = None
    type: int = TYPE_USER
    status: int = STATUS_CONFIRMED
    user_id: str | None = None
    name: str | None = None
    has_master_password: bool = True
    two_factor_enabled: bool = False
    reset_password_enrolled: bool = False
    prior_status: int | None = None
    """Status before a revocation, for restore."""

    def as_json(self, *, collections: list[Any] | None) -> dict[str, Any]:
        """The public API's MemberResponseModel (§5): camelCase, integer enums, nulls kept."""
        return _members_json([self], collections)[0]

    @property
    def no_master_password(self) -> bool:
        """True for members the overwrite guard protects: no account yet, or no master password."""
        return self.user_id is None or not self.has_master_password


def _members_json(
    members: Iterable[FakeMember], collections: list[Any] | None
) -> list[dict[str, Any]]:
    """``as_json`` of each member, in one comprehension: listing 100,000 members need not
    make 100,000 method calls (and the shape stays defined once)."""
    return [
        {
            "object": "member",
            "id": m.id,
            "userId": m.user_id,
            "name": m.name,
            "email": m.email,
            "twoFactorEnabled": m.two_factor_enabled,
            "status": m.status,
            "type": m.type,
            "externalId": m.external_id,
            "permissions": None,
            "collections": collections,
            "resetPasswordEnrolled": m.reset_password_enrolled,
            "ssoExternalId": None,
        }
        for m in members
    ]


class _ListedMember(msgspec.Struct, tag_field="object", tag="member", rename="camel", gc=False):
    """``FakeMember.as_json(collections=None)`` as a msgspec struct, for the list endpoint:
    the same keys in the same order (the tag first), and msgspec encodes strings exactly as
    orjson does (checked for every code point). 100,000 of them are built and encoded in
    45 ms, where as many dicts and ``orjson.dumps`` took 95 ms. The values are not checked on
    the way in: ``FakeBitwarden._plain_members`` says when the struct may be used at all."""

    id: str
    user_id: str | None
    name: str | None
    email: str | None
    two_factor_enabled: bool
    status: int
    type: int
    external_id: str | None
    permissions: None
    collections: None
    reset_password_enrolled: bool
    sso_external_id: None


class _MemberList(msgspec.Struct, tag_field="object", tag="list", rename="camel", gc=False):
    """``GET /public/members`` (§5): ``{"object": "list", "data": [...],
    "continuationToken": null}``."""

    data: list[_ListedMember]
    continuation_token: None


_ENCODER = msgspec.json.Encoder()
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
"""The integers orjson encodes (it refuses the others)."""


def _plain(m: FakeMember) -> bool:
    """Whether the member's listed values are of the plain types (str, None, bool, an int
    orjson accepts) on which msgspec's encoding is byte for byte orjson's. The stand-in
    stores nothing else; seeding may (``add_member(type=SomeEnum.X)``, a float status ...)."""
    return (
        type(m.id) is str
        and (m.user_id is None or type(m.user_id) is str)
        and (m.name is None or type(m.name) is str)
        and (m.email is None or type(m.email) is str)
        and (m.external_id is None or type(m.external_id) is str)
        and type(m.two_factor_enabled) is bool
        and type(m.reset_password_enrolled) is bool
        and type(m.status) is int
        and type(m.type) is int
        and _INT64_MIN <= m.status <= _UINT64_MAX
        and _INT64_MIN <= m.type <= _UINT64_MAX
    )


@dataclass(slots=True)
class FakeGroup:
    """One group; ``member_ids`` are membership ids (not user ids), in insertion order."""

    id: str
    name: str
    external_id: str | None = None
    member_ids: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The public API's GroupResponseModel (§5); members are not inline."""
        return {
            "object": "group",
            "id": self.id,
            "name": self.name,
            "externalId": self.external_id,
            "collections": [],
        }


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the stand-in received it, for assertions.

    ``raw`` keeps the bytes; ``body`` parses them.
    """

    method: str
    path: str
    endpoint: str
    headers: dict[str, str]
    raw: bytes
    status: int
    """Status answered (0 when the connection was dropped on purpose)."""

    @property
    def body(self) -> Any:
        """The parsed JSON for JSON requests, the form as a dict for the token endpoint,
        ``None`` when empty or unparsable. Parsed anew on each access: the log keeps bytes
        only, as parsing (and holding) every import body cost the stand-in a second parse
        of each request that tests seldom read."""
        if self.endpoint == "token":
            return dict(parse_qsl(self.raw.decode("utf-8", "replace"), keep_blank_values=True))
        if not self.raw:
            return None
        try:
            return orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return None


@dataclass(slots=True)
class Fault:
    """A switched-on misbehaviour for one endpoint (or ``"*"``), for ``times`` requests.

    ``times=None`` means until cleared. ``status=None`` only delays (or drops) and then answers
    normally.
    """

    endpoint: str
    status: int | None = None
    times: int | None = 1
    retry_after: int | None = None
    body: bytes | None = None
    delay: float = 0.0
    disconnect: bool = False

    def matches(self, endpoint: str) -> bool:
        return (self.times is None or self.times > 0) and self.endpoint in ("*", endpoint)


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: bool = False


class _HttpError(Exception):
    """Raised inside a handler to answer with this response (the state stays as it is)."""

    def __init__(self, response: _Response) -> None:
        super().__init__(response.status)
        self.response = response


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> _Response:
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return _Response(status, orjson.dumps(obj), h)


def _public_error(
    status: int, message: str, errors: dict[str, list[str]] | None = None
) -> _Response:
    """The public API's ErrorResponseModel (§3.6)."""
    return _json(status, {"object": "error", "message": message, "errors": errors})


def _internal_error(status: int, message: str) -> _Response:
    """The internal ErrorResponseModel, used by the rate limiter (§3.6, §4)."""
    return _json(
        status,
        {
            "object": "error",
            "message": message,
            "validationErrors": None,
            "exceptionMessage": None,
            "exceptionStackTrace": None,
            "innerExceptionMessage": None,
        },
    )


def _vw_error(status: int, message: str) -> _Response:
    """Vaultwarden's Bitwarden-like error JSON (§6.1)."""
    return _json(
        status,
        {
            "message": message,
            "error": "",
            "error_description": "",
            "validationErrors": {"": [message]},
            "errorModel": {"message": message, "object": "error"},
            "exceptionMessage": None,
            "exceptionStackTrace": None,
            "innerExceptionMessage": None,
            "object": "error",
        },
    )


def _rocket_catcher(status: int) -> _Response:
    """Rocket's default JSON catcher body, which Vaultwarden returns for 401/404/422."""
    reason, description = _ROCKET_REASONS.get(status, ("Error", "An error occurred."))
    return _json(status, {"error": {"code": status, "reason": reason, "description": description}})


def _unhandled() -> _HttpError:
    return _HttpError(_public_error(500, UNHANDLED))


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


# --------------------------------------------------------------------------------------------
# The server


class FakeBitwarden:
    """The stand-in: organization state, the HTTP server, request log and fault switches.

    Parameters (all keyword-only):

    * ``vaultwarden``: behave like Vaultwarden (§6) instead of the official server.
    * ``self_hosted``: official server without the 2,000-entry cap (and without rate limits).
    * ``client_id`` / ``client_secret`` / ``org_id``: the organization API key; random by default.
    * ``token_lifetime``: seconds a token is valid and the ``expires_in`` answered (3600).
    * ``jwt_tokens``: issue JWT-shaped tokens (default) or opaque random strings.
    * ``staged_status``: the server flag that makes ``inviteUsersAfterProvisioning:false``
      create Staged members (§3.1).
    * ``use_directory`` / ``use_groups`` / ``api_enabled``: plan features (§3.4 steps 1, 7; §2.1).
    * ``groups_enabled``: Vaultwarden's ``ORG_GROUPS_ENABLED`` (default false, as VW's).
    * ``mail_enabled``: Vaultwarden with SMTP configured (default). Without mail, a new member
      whose account already exists with a password (``add_account``) becomes Accepted instead
      of Invited (§6.2).
    * ``seats``: seat limit for invites (None = unlimited / autoscale).
    * ``require_confirmed_owner``: refuse invites when the org has no confirmed owner, as the
      real server does (off by default so tests may seed organizations without an owner).
    * ``host`` / ``port``: where to listen (loopback, a free port by default).
    * ``rate_limits``: enforce the cloud's committed per-IP limits (§4) — identity 5/s and
      60/min, token 10/min; API POST/PUT/DELETE 5/s and 60/min, GET 200/min — answering 429
      with ``Retry-After`` like the real middleware. Off by default (tests switch faults on
      explicitly); never in self-hosted or Vaultwarden mode.
    * ``clock``: monotonic seconds for token expiry and rate windows (tests may pass a fake).
    * ``ssl_context``: serve HTTPS with this server-side context (``base_url`` becomes https),
      to test CA trust end to end.

    Like a real server's database indexes, the stand-in keeps members indexed by externalId and
    email, and groups by member, so an import request costs in proportion to its own size, not
    to the organization's (a 100,000-member directory arrives as 51 batches). Members' ``email``
    and ``external_id`` and groups' ``member_ids`` must therefore change only through the
    stand-in (its seeding methods and endpoints), never by assigning the attributes of its
    internal objects; ``status``, ``type``, ``user_id`` and the other attributes are not
    indexed. (The seeding methods and the inspection properties hand out copies anyway.)
    """

    def __init__(
        self,
        *,
        vaultwarden: bool = False,
        self_hosted: bool = False,
        client_id: str | None = None,
        client_secret: str | None = None,
        org_id: str | None = None,
        token_lifetime: int = 3600,
        jwt_tokens: bool = True,
        staged_status: bool = False,
        use_directory: bool = True,
        use_groups: bool = True,
        api_enabled: bool = True,
        groups_enabled: bool = False,
        mail_enabled: bool = True,
        seats: int | None = None,
        require_confirmed_owner: bool = False,
        rate_limits: bool = False,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.vaultwarden = vaultwarden
        self._ssl_context = ssl_context
        self.self_hosted = self_hosted or vaultwarden
        if client_id is not None:
            prefix, _, org_id = client_id.partition(".")
            if prefix != "organization":
                raise ValueError(f"client_id must be organization.<guid>, not {client_id!r}")
        self.org_id = (
            str(uuid.UUID(org_id)) if org_id else str(uuid.uuid4())
        )  # ValueError if not a GUID
        self.client_id = client_id or f"organization.{self.org_id}"
        self.client_secret = client_secret or secrets.token_urlsafe(22)
        self.token_lifetime = token_lifetime
        self.jwt_tokens = jwt_tokens
        self.staged_status = staged_status
        self.use_directory = use_directory
        self.use_groups = use_groups
        self.api_enabled = api_enabled
        self.groups_enabled = groups_enabled
        self.mail_enabled = mail_enabled
        self._accounts: dict[str, bool] = {}
        self.seats = seats
        self.require_confirmed_owner = require_confirmed_owner
        self.rate_limits = rate_limits
        self._clock = clock
        self._windows: dict[tuple[str, float], list[float]] = {}
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._members: dict[str, FakeMember] = {}
        self._groups: dict[str, FakeGroup] = {}
        self._clear_indexes()
        self._tokens: dict[str, float] = {}
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._event_types: list[str] = []
        self._event_ids: list[str] = []
        """The event log as two columns (type, member or group id): an import into an empty
        organization logs 100,000 events, and two list extensions cost 8 ms less than as many
        tuples (``events`` pairs them up when asked)."""
        self.tokens_issued = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeBitwarden:
        """Listen and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler)
        server.fake = self
        if self._ssl_context is not None:
            # Handshake lazily, in the handler thread, so a client refusing our certificate
            # cannot stall the accept loop.
            server.socket = self._ssl_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            daemon=True,
            name=f"fake-bitwarden-{server.server_address[1]}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeBitwarden:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = (
            "vaultwarden" if self.vaultwarden else ("self-hosted" if self.self_hosted else "cloud")
        )
        where = self.base_url if self._server is not None else "stopped"
        return f"<FakeBitwarden {mode} {where} org={self.org_id}>"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeBitwarden is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the ``server`` setting (``/api``, ``/identity`` derived)."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api"

    @property
    def identity_url(self) -> str:
        return self.base_url + "/identity"

    def settings(self, **overrides: Any) -> BitwardenSettings:
        """``BitwardenSettings`` pointing at this server (imported lazily: pydantic)."""
        from bwsync.config import BitwardenSettings

        values: dict[str, Any] = {
            "server": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        values.update(overrides)
        return BitwardenSettings(**values)

    # ---- seeding ---------------------------------------------------------------------------

    def add_member(
        self,
        email: str | None,
        *,
        external_id: str | None = None,
        type: int = TYPE_USER,
        status: int = STATUS_CONFIRMED,
        linked: bool | None = None,
        master_password: bool = True,
        name: str | None = None,
        two_factor: bool = False,
        member_id: str | None = None,
    ) -> FakeMember:
        """Seed a membership. ``linked`` (has an account) defaults to False for Invited and
        Staged, True otherwise; ``master_password=False`` models TDE/Key Connector users.
        A Revoked member restores to Confirmed when linked, Invited otherwise."""
        if linked is None:
            linked = status not in (STATUS_INVITED, STATUS_STAGED)
        prior = None
        if status == STATUS_REVOKED:
            prior = STATUS_CONFIRMED if linked else STATUS_INVITED
        member = FakeMember(
            id=member_id or str(uuid.uuid4()),
            email=email.lower() if email else email,
            external_id=external_id,
            type=type,
            status=status,
            user_id=str(uuid.uuid4()) if linked else None,
            name=name if linked else None,
            has_master_password=master_password if linked else False,
            two_factor_enabled=two_factor,
            prior_status=prior,
        )
        with self._lock:
            self._put_member(member)
        return dataclasses.replace(member)

    def add_owner(self, email: str, **kw: Any) -> FakeMember:
        """Seed a confirmed Owner (import never removes owners)."""
        return self.add_member(email, type=TYPE_OWNER, **kw)

    def add_admin(self, email: str, **kw: Any) -> FakeMember:
        return self.add_member(email, type=TYPE_ADMIN, **kw)

    def remove_member(self, member: FakeMember | str) -> None:
        """Remove a membership (a FakeMember, as ``members`` copies it, or its id) as an admin
        does by hand in the Admin Console."""
        with self._lock:
            stored = self._members[member if isinstance(member, str) else member.id]
            self._delete_member(stored, "OrganizationUser_Removed")

    def add_account(self, email: str, *, master_password: bool = True) -> None:
        """Seed a user account that is not (yet) a member: Vaultwarden's import looks accounts
        up by email when it adds a member (§6.2)."""
        with self._lock:
            self._accounts[email.lower()] = master_password

    def add_group(
        self,
        name: str,
        *,
        external_id: str | None = None,
        members: Iterable[FakeMember | str] = (),
        group_id: str | None = None,
    ) -> FakeGroup:
        """Seed a group; ``members`` are FakeMembers or membership ids."""
        ids = [m.id if isinstance(m, FakeMember) else m for m in members]
        group = FakeGroup(
            id=group_id or str(uuid.uuid4()), name=name, external_id=external_id, member_ids=ids
        )
        with self._lock:
            self._note_id(group.id)
            old = self._groups.get(group.id)
            if old is not None:
                self._set_group_members(old, [])
            self._groups[group.id] = group
            if self._groups_of is not None:
                for i in ids:
                    self._groups_of.setdefault(i, {})[group.id] = None
        return dataclasses.replace(group, member_ids=list(ids))

    def reset(self) -> None:
        """Forget members, groups, tokens, faults, requests and events."""
        with self._lock:
            self._members.clear()
            self._groups.clear()
            self._clear_indexes()
            self._tokens.clear()
            self._faults.clear()
            self._requests.clear()
            self._event_types.clear()
            self._event_ids.clear()

    # ---- indexes ---------------------------------------------------------------------------

    def _clear_indexes(self) -> None:
        """Empty indexes over ``_members`` and ``_groups``, which only ``_put_member``,
        ``_put_new_members``, ``_delete_member``, ``_set_external_id``, ``_set_group_members``
        and ``add_group`` change (the class docstring says why they exist)."""
        self._order = itertools.count()
        self._seq: dict[str, int] | None = None
        """Member id -> its rank in ``_members`` (dict order), to break ties like a scan; built
        when first needed (``_ranks``), as an organization whose members' emails and
        externalIds are all distinct never has a tie to break."""
        self._by_ext: dict[str, list[FakeMember]] = {}
        """Non-empty external_id -> members having it (more than one: a broken org)."""
        self._ext_epoch = next(_epochs)
        """Changes whenever ``_by_ext`` does (``_index_ext``, ``_unindex_ext``,
        ``_put_new_members``), so that ``_resolved`` knows when it still holds."""
        self._resolved: dict[str, tuple[int, list[str | None], list[str]]] = {}
        """Group id -> (``_ext_epoch``, the ``memberExternalIds`` an import sent for it, the
        member ids they resolved to then). Resolving is the group step's cost (a lookup in
        ``_by_ext`` and a member per id: 14 ms for 200 groups of 50 in an organization of
        100,000); unless ``_by_ext`` changed since, the same ids resolve alike, so a sync in
        step resolves each group once, not on every import (2 ms)."""
        self._ext_dups: set[str] = set()
        """Keys of ``_by_ext`` held by more than one member."""
        self._unlinked: dict[str | None, list[FakeMember]] = {}
        """Stored email -> members whose external_id is blank (None or whitespace)."""
        self._by_email: dict[str, list[FakeMember]] = {}
        """Lower-cased email ("" for None) -> members having it."""
        self._groups_of: dict[str, dict[str, None]] | None = None
        """Member id -> ids of the groups whose ``member_ids`` list it; built when first
        needed (``_member_groups``), as most organizations never lose a member."""
        self._canonical_ids = True
        """Every member and group id is a canonical GUID string (``_find``'s fast path)."""
        self._plain_members = True
        """Every member's listed values are ``_plain`` (the list endpoint's fast path). Only
        seeding can store other values (``_put_member`` notes it), and the public API hands
        out copies of members, never the stored objects, so nothing else can."""

    def _note_id(self, key: str) -> None:
        if self._canonical_ids:
            try:
                self._canonical_ids = str(uuid.UUID(key)) == key
            except ValueError:
                self._canonical_ids = False

    def _put_member(self, member: FakeMember, *, canonical: bool = False) -> None:
        """Add (or replace, keeping its place, as a dict does) a member, indexed;
        ``canonical``: its id comes from ``_new_id``."""
        old = self._members.get(member.id)
        if old is None:
            if self._seq is not None:
                self._seq[member.id] = next(self._order)
            if not canonical:
                self._note_id(member.id)
        else:
            self._unindex(old)
        self._members[member.id] = member
        if self._plain_members and not _plain(member):
            self._plain_members = False
        self._index_ext(member)
        key = (member.email or "").lower()
        same = self._by_email.get(key)
        if same is None:
            self._by_email[key] = [member]
        else:
            same.append(member)

    def _put_new_members(self, members: list[FakeMember]) -> None:
        """Add members created with ``_new_ids`` whose lower-cased emails are new to the
        organization and to one another, as ``_put_member(member, canonical=True)`` would one by
        one, but with dict updates: those calls were a third of an import into an empty
        organization. The same indexes result, as each id and email is a new key."""
        if not members:  # (not a change of _by_ext: see _ext_epoch)
            return
        ids = [m.id for m in members]
        self._members.update(zip(ids, members, strict=True))
        if self._seq is not None:  # ids first: zip takes no rank it would lose
            self._seq.update(zip(ids, self._order, strict=False))
        self._by_email.update([(m.email or "", [m]) for m in members])
        self._index_ext(*members)

    def _unindex(self, member: FakeMember) -> None:
        self._unindex_ext(member)
        key = (member.email or "").lower()
        same = self._by_email[key]
        _remove_identical(same, member)
        if not same:
            del self._by_email[key]

    def _index_ext(self, *members: FakeMember) -> None:
        """Index members by externalId (without one: as unlinked, by email)."""
        self._ext_epoch = next(_epochs)
        by_ext, unlinked = self._by_ext, self._unlinked
        for member in members:
            x = member.external_id
            if x:
                same = by_ext.get(x)
                if same is None:
                    by_ext[x] = [member]
                else:
                    same.append(member)
                    self._ext_dups.add(x)
            if x is None or not x.strip():
                unlinked.setdefault(member.email, []).append(member)

    def _unindex_ext(self, member: FakeMember) -> None:
        self._ext_epoch = next(_epochs)
        x = member.external_id
        if x:
            same = self._by_ext[x]
            _remove_identical(same, member)
            if not same:
                del self._by_ext[x]
            if len(same) <= 1:
                self._ext_dups.discard(x)
        if x is None or not x.strip():
            unlinked = self._unlinked[member.email]
            _remove_identical(unlinked, member)
            if not unlinked:
                del self._unlinked[member.email]

    def _set_external_id(self, member: FakeMember, external_id: str | None) -> None:
        if member.external_id == external_id:  # re-indexing would only move it last in lists
            return
        self._unindex_ext(member)
        member.external_id = external_id
        self._index_ext(member)

    def _first(self, members: list[FakeMember]) -> FakeMember:
        """The one of these members a scan of ``_members`` meets first."""
        if len(members) == 1:
            return members[0]
        seq = self._ranks()
        return min(members, key=lambda m: seq[m.id])

    def _ranks(self) -> dict[str, int]:
        """``_seq``, built now if it was not."""
        if self._seq is None:
            self._seq = dict(zip(self._members, self._order, strict=False))  # members first
        return self._seq

    def _linked(self, external_id: str | None) -> FakeMember | None:
        """The official import's externalId -> member map (§3.4 step 2, updated by steps
        3-6): non-blank externalIds only; the member given it last when several share it."""
        if external_id is None:
            return None
        same = self._by_ext.get(external_id)
        if same is None or not external_id.strip():
            return None
        return same[-1]

    def _member_groups(self) -> dict[str, dict[str, None]]:
        if self._groups_of is None:
            self._groups_of = {}
            for g in self._groups.values():
                for i in g.member_ids:
                    self._groups_of.setdefault(i, {})[g.id] = None
        return self._groups_of

    def _set_group_members(self, group: FakeGroup, ids: list[str]) -> None:
        index = self._groups_of
        if index is not None:
            old, new = set(group.member_ids), set(ids)
            for i in old - new:
                groups = index[i]
                del groups[group.id]
                if not groups:
                    del index[i]
            for i in new - old:
                index.setdefault(i, {})[group.id] = None
        group.member_ids = ids

    # ---- inspection ------------------------------------------------------------------------

    @property
    def members(self) -> list[FakeMember]:
        """Copies of every membership, in creation order."""
        with self._lock:
            return [dataclasses.replace(m) for m in self._members.values()]

    @property
    def groups(self) -> list[FakeGroup]:
        with self._lock:
            return [
                dataclasses.replace(g, member_ids=list(g.member_ids)) for g in self._groups.values()
            ]

    def member(self, member_id: str) -> FakeMember | None:
        with self._lock:
            m = self._members.get(member_id)
            return dataclasses.replace(m) if m else None

    def find_member(
        self, *, email: str | None = None, external_id: str | None = None
    ) -> FakeMember | None:
        """The first member with this (case-insensitive) email and/or this external id."""
        for m in self.members:
            if email is not None and (m.email or "").lower() != email.lower():
                continue
            if external_id is not None and m.external_id != external_id:
                continue
            return m
        return None

    def find_group(
        self, *, external_id: str | None = None, name: str | None = None
    ) -> FakeGroup | None:
        for g in self.groups:
            if external_id is not None and g.external_id != external_id:
                continue
            if name is not None and g.name != name:
                continue
            return g
        return None

    def group_member_emails(self, group: FakeGroup | str) -> set[str]:
        """Emails of a group's members (by FakeGroup, id or external id): handy in assertions."""
        with self._lock:
            g = self._resolve_group(group)
            return {self._members[i].email or "" for i in g.member_ids if i in self._members}

    def group_member_external_ids(self, group: FakeGroup | str) -> set[str]:
        with self._lock:
            g = self._resolve_group(group)
            return {self._members[i].external_id or "" for i in g.member_ids if i in self._members}

    def _resolve_group(self, group: FakeGroup | str) -> FakeGroup:
        gid = group.id if isinstance(group, FakeGroup) else group
        if gid in self._groups:
            return self._groups[gid]
        for g in self._groups.values():
            if g.external_id == gid:
                return g
        raise KeyError(gid)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def writes(self) -> list[RecordedRequest]:
        """Requests that could change the organization: everything but the token and reads.
        What "nothing sent" means after a directory error on a first run, which reads the
        organization beside the directory fetch (``bwsync.snapshot``)."""
        return [r for r in self.requests if r.method != "GET" and r.endpoint != "token"]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def events(self) -> list[tuple[str, str]]:
        """Event log entries ``(event type, member or group id)``, as the server would log them
        (``OrganizationUser_Invited``, ``_Removed``, ``_Revoked``, ``Group_Created`` …)."""
        with self._lock:
            return list(zip(self._event_types, self._event_ids, strict=True))

    def _log(self, event: str, subject_id: str) -> None:
        """Log one event (see ``events``)."""
        self._event_types.append(event)
        self._event_ids.append(subject_id)

    # ---- faults and tokens -----------------------------------------------------------------

    def fail(
        self,
        endpoint: str = "*",
        *,
        status: int = 500,
        times: int | None = 1,
        retry_after: int | None = None,
        body: bytes | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` requests to ``endpoint`` with ``status`` and ``body``
        (default: the server's own error body for that status)."""
        self._add_fault(
            Fault(
                endpoint,
                status=status,
                times=times,
                retry_after=retry_after,
                body=body,
                delay=delay,
            )
        )

    def throttle(
        self, endpoint: str = "*", *, times: int | None = 1, retry_after: int | None = 1
    ) -> None:
        """429 as the cloud's rate limiter sends it (§4): ``Retry-After`` and the internal error
        body. ``retry_after=None`` omits the header, as Vaultwarden does."""
        self._add_fault(Fault(endpoint, status=429, times=times, retry_after=retry_after))

    def server_error(
        self, endpoint: str = "*", *, times: int | None = 1, status: int = 500
    ) -> None:
        """5xx with the public API's unhandled-error body."""
        self._add_fault(Fault(endpoint, status=status, times=times))

    def slow(self, endpoint: str = "*", seconds: float = 1.0, *, times: int | None = None) -> None:
        """Delay the answer (then answer normally): for client timeouts."""
        self._add_fault(Fault(endpoint, status=None, times=times, delay=seconds))

    def disconnect(self, endpoint: str = "*", *, times: int | None = 1) -> None:
        """Close the connection without answering: the client sees a transport error."""
        self._add_fault(Fault(endpoint, status=None, times=times, disconnect=True))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: Fault) -> None:
        if fault.endpoint != "*" and fault.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {fault.endpoint!r}; one of {', '.join(ENDPOINTS)}")
        with self._lock:
            self._faults.append(fault)

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid now (as if its hour had passed)."""
        with self._lock:
            for t in self._tokens:
                self._tokens[t] = 0.0

    # ---- request handling -----------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str, list[str], list[str]]:
        """(endpoint name, path parameters, methods the path allows when ``method`` is not one
        of them) for a request path (prefix ``/api`` optional)."""
        p = path.rstrip("/") or "/"
        if p in ("/identity/connect/token", "/connect/token"):
            return "token", [], []
        if p.startswith("/api/"):
            p = p[4:]
        parts = [unquote(x) for x in p.strip("/").split("/")]
        if parts[:1] != ["public"]:
            return "unknown", [], []
        rest = parts[1:]
        table: list[tuple[str, list[str], str]] = [
            ("POST", ["organization", "import"], "import"),
            ("GET", ["members"], "list_members"),
            ("GET", ["members", "*"], "get_member"),
            ("GET", ["members", "*", "group-ids"], "member_group_ids"),
            ("POST", ["members", "*", "revoke"], "revoke_member"),
            ("POST", ["members", "*", "restore"], "restore_member"),
            ("GET", ["groups"], "list_groups"),
            ("GET", ["groups", "*"], "get_group"),
            ("GET", ["groups", "*", "member-ids"], "group_member_ids"),
        ]
        allowed: list[str] = []
        for m, pattern, name in table:
            if len(pattern) == len(rest) and all(
                a == "*" or a == b.lower() for a, b in zip(pattern, rest, strict=True)
            ):
                if m == method:
                    return name, [b for a, b in zip(pattern, rest, strict=True) if a == "*"], []
                allowed.append(m)
        return "unknown", [], sorted(set(allowed))

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Response:
        path = urlsplit(target).path
        endpoint, params, allowed = self._route(method, path)
        fault = self._take_fault(endpoint) or self._rate_limited(method, endpoint)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.disconnect:
            response = _Response(0, disconnect=True)
        elif fault is not None and fault.status is not None:
            response = self._fault_response(fault)
        else:
            with self._lock:
                try:
                    response = self._dispatch(
                        endpoint, params, method, headers, raw, allowed=allowed
                    )
                except _HttpError as exc:
                    response = exc.response
        with self._lock:
            self._requests.append(
                RecordedRequest(method, path, endpoint, headers, raw, response.status)
            )
        return response

    def _rate_limited(self, method: str, endpoint: str) -> Fault | None:
        """The cloud's AspNetCoreRateLimit rules (§4), sliding windows, one client IP.

        Every matching rule must have room; blocked requests are not counted
        (``StackBlockedRequests: false``). ``Retry-After`` is the time until the tripped
        rule's oldest request leaves its window, in whole seconds, at least 1."""
        if not self.rate_limits or self.self_hosted:
            return None
        if endpoint == "token":
            rules = [("identity:*", 1.0, 5), ("identity:*", 60.0, 60), ("identity:token", 60.0, 10)]
        elif method == "GET":
            rules = [("api:get", 60.0, 200)]
        else:
            verb = method.lower()
            rules = [(f"api:{verb}", 1.0, 5), (f"api:{verb}", 60.0, 60)]
        now = self._clock()
        with self._lock:
            for name, period, limit in rules:
                window = self._windows.setdefault((name, period), [])
                window[:] = [t for t in window if t > now - period]
                if len(window) >= limit:
                    wait = max(1, math.ceil(window[0] + period - now))
                    label = "1s" if period == 1.0 else "1m"
                    body = _internal_error(
                        429, f"Slow down! Too many requests. Try again in {label}."
                    ).body
                    return Fault(endpoint, status=429, retry_after=wait, body=body)
            for name, period, _limit in rules:
                self._windows[(name, period)].append(now)
        return None

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.matches(endpoint):
                    if f.times is not None:
                        f.times -= 1
                    return dataclasses.replace(f)
        return None

    def _fault_response(self, fault: Fault) -> _Response:
        """The answer to a switched-on fault: ``fault.body`` if given, else what this server
        sends for that status on that endpoint."""
        status = fault.status or 500
        extra: dict[str, str] = {}
        if fault.retry_after is not None:
            extra["Retry-After"] = str(fault.retry_after)
        if fault.body is not None:
            return _Response(
                status, fault.body, {"Content-Type": "application/json; charset=utf-8", **extra}
            )
        vw = self.vaultwarden
        if status == 429 and vw:
            resp = _vw_error(429, "Too many login requests")
        elif status == 429:
            period = f"{fault.retry_after}s" if fault.retry_after else "1m"
            resp = _internal_error(429, f"Slow down! Too many requests. Try again in {period}.")
        elif fault.endpoint == "token" and 400 <= status < 500:
            resp = (
                _vw_error(status, "Invalid client_id")
                if vw
                else _json(status, {"error": "invalid_client"})
            )
        elif vw and status in (401, 404, 422):
            resp = _rocket_catcher(status)
        elif status == 401:
            resp = _Response(401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        elif status >= 500:
            resp = _rocket_catcher(status) if vw else _public_error(status, UNHANDLED)
        else:
            resp = _Response(status)
        resp.headers.update(extra)
        return resp

    def _dispatch(
        self,
        endpoint: str,
        params: list[str],
        method: str,
        headers: dict[str, str],
        raw: bytes,
        *,
        allowed: list[str],
    ) -> _Response:
        if endpoint == "token":
            if self.vaultwarden:
                return self._token_vaultwarden(method, headers, raw)
            return self._token_official(method, headers, raw)
        if self.vaultwarden and endpoint not in ("import",):
            return _rocket_catcher(404)
        if endpoint == "unknown":
            if allowed:  # the route exists for other methods: ASP.NET routing says 405
                return _Response(405, headers={"Allow": ", ".join(allowed)})
            return _Response(404)
        self._authenticate(headers)
        if endpoint == "import":
            if self.vaultwarden:
                return self._import_vaultwarden(headers, raw)
            return self._import_official(headers, raw)
        handler: Callable[[list[str]], _Response] = getattr(self, "_ep_" + endpoint)
        return handler(params)

    # ---- identity (§2, §6.1) ----------------------------------------------------------------

    def _issue_token(self) -> _Response:
        now = time.time()
        if self.jwt_tokens:

            def b64(obj: Any) -> str:
                return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

            claims = {
                "iss": self.identity_url
                if not self.vaultwarden
                else f"{self.base_url}|api.organization",
                "nbf": int(now),
                "iat": int(now),
                "exp": int(now) + self.token_lifetime,
                "scope": ["api.organization"],
                "client_id": self.client_id,
                "sub": self.org_id,
                "client_sub": self.org_id,
                "client_type": "Organization",
                "jti": secrets.token_hex(16),
            }
            token = ".".join(
                [b64({"alg": "RS256", "typ": "at+jwt"}), b64(claims), secrets.token_urlsafe(32)]
            )
        else:
            token = secrets.token_urlsafe(48)
        self._tokens[token] = self._clock() + self.token_lifetime
        self.tokens_issued += 1
        return _json(
            200,
            {
                "access_token": token,
                "expires_in": self.token_lifetime,
                "token_type": "Bearer",
                "scope": "api.organization",
            },
            {"Cache-Control": "no-store, no-cache, max-age=0", "Pragma": "no-cache"},
        )

    @staticmethod
    def _form(headers: dict[str, str], raw: bytes) -> dict[str, str] | None:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return None
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))

    def _token_official(self, method: str, headers: dict[str, str], raw: bytes) -> _Response:
        """Duende IdentityServer, client_credentials for ``organization.<guid>`` (§2.1-2.3)."""
        form = self._form(headers, raw) if method == "POST" else None
        if form is None:
            return _json(400, {"error": "invalid_request"})
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = headers.get("authorization", "")
        if not client_id and auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:]).decode()
                client_id, _, client_secret = decoded.partition(":")
                client_id, client_secret = unquote(client_id), unquote(client_secret)
            except ValueError:
                return _json(400, {"error": "invalid_client"})
        prefix, _, rest = client_id.partition(".")
        if (
            prefix != "organization"
            or not _GUID.match(rest)
            or str(uuid.UUID(rest)) != str(uuid.UUID(self.org_id))
            or not self.api_enabled
            or not secrets.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return _json(400, {"error": "invalid_client"})
        grant = form.get("grant_type", "")
        if not grant or grant not in _KNOWN_GRANTS:
            return _json(400, {"error": "unsupported_grant_type"})
        if grant != "client_credentials":
            return _json(400, {"error": "unauthorized_client"})
        scopes = form.get("scope", "").split()
        if any(s != "api.organization" for s in scopes):
            return _json(400, {"error": "invalid_scope"})
        return self._issue_token()

    def _token_vaultwarden(self, method: str, headers: dict[str, str], raw: bytes) -> _Response:
        """Vaultwarden's ``/identity/connect/token`` for organization keys (§6.1)."""
        form = self._form(headers, raw) if method == "POST" else None
        if form is None:
            return _rocket_catcher(415 if method == "POST" else 404)
        lower = {k.lower(): v for k, v in form.items()}
        grant = lower.get("grant_type", "")
        if grant != "client_credentials":
            return _vw_error(400, "Invalid type" if grant else "grant_type cannot be blank")
        values: dict[str, str] = {}
        for name, aliases in _VW_REQUIRED_TOKEN_FIELDS:
            value = next((lower[a] for a in aliases if lower.get(a)), "")
            if not value:
                return _vw_error(400, f"{name} cannot be blank")
            values[name] = value
        if values["scope"] != "api.organization":
            return _vw_error(400, "Scope not supported")
        prefix, _, rest = values["client_id"].partition(".")
        if prefix != "organization" or not _GUID.match(rest):
            return _vw_error(400, "Malformed client_id")
        if str(uuid.UUID(rest)) != str(uuid.UUID(self.org_id)) or not self.api_enabled:
            return _vw_error(400, "Invalid client_id")
        if not secrets.compare_digest(
            values["client_secret"].encode(), self.client_secret.encode()
        ):
            return _vw_error(400, "Incorrect client_secret")
        return self._issue_token()

    def _authenticate(self, headers: dict[str, str]) -> None:
        """401 with an empty body for a missing, unknown or expired bearer token (§2.4)."""
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= self._clock():
            if self.vaultwarden:
                raise _HttpError(_rocket_catcher(401))
            challenge = (
                "Bearer"
                if expiry is None and not token
                else (
                    'Bearer error="invalid_token", error_description="The token expired"'
                    if expiry is not None
                    else 'Bearer error="invalid_token"'
                )
            )
            raise _HttpError(_Response(401, b"", {"WWW-Authenticate": challenge}))

    # ---- read and member endpoints (§5) -----------------------------------------------------

    def _find(self, table: dict[str, Any], raw_id: str) -> Any:
        """Look up by GUID the way ASP.NET binds ``Guid id`` (case-insensitive, dashes
        optional); anything else is 404 with an empty body."""
        try:
            key = str(uuid.UUID(raw_id))
        except ValueError:
            raise _HttpError(_Response(404)) from None
        if self._canonical_ids:  # every key is its own canonical form: one lookup does
            found = table.get(key)
            if found is None:
                raise _HttpError(_Response(404))
            return found
        for k, v in table.items():
            try:
                if str(uuid.UUID(k)) == key:
                    return v
            except ValueError:
                continue
        raise _HttpError(_Response(404))

    def _ep_list_members(self, params: list[str]) -> _Response:
        # The list endpoint passes no collections, so the response carries ``null`` (§5).
        if not self._plain_members:  # what msgspec might encode otherwise than orjson
            data = _members_json(self._members.values(), None)
            return _json(200, {"object": "list", "data": data, "continuationToken": None})
        listed = [
            _ListedMember(
                m.id,
                m.user_id,
                m.name,
                m.email,
                m.two_factor_enabled,
                m.status,
                m.type,
                m.external_id,
                None,
                None,
                m.reset_password_enrolled,
                None,
            )
            for m in self._members.values()
        ]
        body = _ENCODER.encode(_MemberList(listed, None))
        return _Response(200, body, {"Content-Type": "application/json; charset=utf-8"})

    def _ep_get_member(self, params: list[str]) -> _Response:
        member: FakeMember = self._find(self._members, params[0])
        return _json(200, member.as_json(collections=[]))

    def _ep_member_group_ids(self, params: list[str]) -> _Response:
        member: FakeMember = self._find(self._members, params[0])
        mine = self._member_groups().get(member.id, {})
        return _json(200, [g for g in self._groups if g in mine] if mine else [])

    def _ep_list_groups(self, params: list[str]) -> _Response:
        data = [g.as_json() for g in self._groups.values()]
        return _json(200, {"object": "list", "data": data, "continuationToken": None})

    def _ep_get_group(self, params: list[str]) -> _Response:
        group: FakeGroup = self._find(self._groups, params[0])
        return _json(200, group.as_json())

    def _ep_group_member_ids(self, params: list[str]) -> _Response:
        group: FakeGroup = self._find(self._groups, params[0])
        return _json(200, [i for i in group.member_ids if i in self._members])

    def _confirmed_owners_except(self, member_id: str) -> int:
        return sum(
            1
            for m in self._members.values()
            if m.id != member_id and m.type == TYPE_OWNER and m.status == STATUS_CONFIRMED
        )

    def _ep_revoke_member(self, params: list[str]) -> _Response:
        member: FakeMember = self._find(self._members, params[0])
        if member.status == STATUS_REVOKED:
            raise _HttpError(_public_error(400, "Already revoked."))
        if member.type == TYPE_OWNER and self._confirmed_owners_except(member.id) == 0:
            raise _HttpError(
                _public_error(400, "Organization must have at least one confirmed owner.")
            )
        member.prior_status = member.status
        member.status = STATUS_REVOKED
        self._log("OrganizationUser_Revoked", member.id)
        return _Response(200)

    def _ep_restore_member(self, params: list[str]) -> _Response:
        member: FakeMember = self._find(self._members, params[0])
        if member.status != STATUS_REVOKED:
            raise _HttpError(_public_error(400, "Already active."))
        self._restore(member)
        self._log("OrganizationUser_Restored", member.id)
        return _Response(200)

    @staticmethod
    def _restore(member: FakeMember) -> None:
        if member.prior_status is not None and member.prior_status != STATUS_REVOKED:
            member.status = member.prior_status
        else:
            member.status = STATUS_CONFIRMED if member.user_id else STATUS_INVITED
        member.prior_status = None

    # ---- import, official (§3) ---------------------------------------------------------------

    def _import_official(self, headers: dict[str, str], raw: bytes) -> _Response:
        """The controller (§3.1, §3.2): content type, model binding and validation, the
        arrays it dereferences, the cloud cap; then the command."""
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/json", "text/json") and not ctype.endswith("+json"):
            return _Response(415)
        model = _OfficialImportModel.parse(raw)
        # Controller: the arrays are used before anything is validated against them (§3.1).
        if model.groups is None or model.members is None:
            raise _unhandled()
        if (
            not self.self_hosted
            and not model.large_import
            and (len(model.groups) > CLOUD_IMPORT_CAP or len(model.emails) > CLOUD_IMPORT_CAP)
        ):
            raise _HttpError(_public_error(400, TOO_MUCH_DATA))
        if any(g.member_external_ids is None for g in model.groups):
            raise _unhandled()
        self._run_official_import(model)
        return _Response(200)

    def _run_official_import(  # noqa: PLR0915 - §3.4 step by step, kept in one place
        self, model: _OfficialImportModel
    ) -> None:
        """§3.4, in order and not transactional: each step commits before the next runs."""
        assert model.groups is not None
        assert model.members is not None
        # 1. plan features
        if not self.use_directory:
            raise _HttpError(_public_error(400, "Organization cannot use directory syncing."))
        emails, exts = model.emails, model.external_ids
        remove_ids = set(model.removed)
        active_ext: set[str] = set()  # wanted by steps 3 and 4 only: built if they run
        if remove_ids or model.overwrite_existing:
            active_ext = set(exts)
        # 2. existing external members (self._linked: the index, not a scan); a duplicated
        #    externalId makes ToDictionary throw
        if any(x.strip() for x in self._ext_dups):
            raise _unhandled()
        # 3. explicit removals: deleted entries, not also active, known, not owners
        for ext in remove_ids - active_ext:
            gone = self._linked(ext)
            if gone is not None and gone.type != TYPE_OWNER:
                self._delete_member(gone, "OrganizationUser_Removed")
        # 4. overwrite: remove every external non-owner not in the active set, unless one of
        #    them has no master password (a scan of the org: that is what overwrite asks)
        if model.overwrite_existing:
            candidates = [
                m
                for m in self._members.values()
                if not _blank(m.external_id)
                and m.external_id not in active_ext
                and m.type != TYPE_OWNER
            ]
            if any(m.no_master_password for m in candidates):
                raise _HttpError(_public_error(400, OVERWRITE_NO_MP))
            for m in candidates:
                self._delete_member(m, "OrganizationUser_Removed")
        # 5. link by email: members without an externalId adopt an active entry's. The server
        #    builds a dictionary by email; its keys suffice until a member adopts one.
        keys = set(emails)
        if len(keys) < len(emails):
            raise _unhandled()  # Dictionary.Add on a duplicate key
        # (in the order a scan of the org meets them: it decides who holds a shared externalId)
        unlinked = self._unlinked
        adopted = [m for e in unlinked.keys() & keys for m in unlinked[e]]
        if len(adopted) > 1:
            seq = self._ranks()
            adopted.sort(key=lambda m: seq[m.id])
        if adopted:
            ext_of = dict(zip(emails, exts, strict=True))
            for m in adopted:
                self._set_external_id(m, ext_of[m.email or ""])
        # 6. add new members (invite, or stage), skipping emails already in the org. The
        #    server also skips entries with a blank email or one met before in the request;
        #    validated active entries have neither (lower-cased emails, unique since step 5),
        #    nor a blank externalId, so being a key of _by_ext is self._linked.
        staged = not model.invite_users_after_provisioning and self.staged_status
        org_emails, by_ext = self._by_email, self._by_ext
        # (the lookups of every entry, in C when a whole request is answered at once: 20 ms
        # less for 100,000 new entries, 3 ms for as many already there)
        if exts and exts[0] in by_ext and all(map(by_ext.__contains__, exts)):
            new_emails, new_exts = [], []  # none of them: an organization in step
        elif by_ext.keys().isdisjoint(exts) and org_emails.keys().isdisjoint(emails):
            new_emails, new_exts = emails, exts  # all of them: into an empty organization
        else:
            new = [
                (e, x)
                for e, x in zip(emails, exts, strict=True)
                if x not in by_ext and e not in org_emails
            ]
            new_emails, new_exts = [e for e, _ in new], [x for _, x in new]
        if new_emails and not staged:
            if self.require_confirmed_owner and self._confirmed_owners_except("") == 0:
                raise _HttpError(
                    _public_error(400, "Organization must have at least one confirmed owner.")
                )
            if self.seats is not None:  # a scan: statuses are not indexed (tests set them)
                occupied = sum(
                    1
                    for m in self._members.values()
                    if m.status not in (STATUS_REVOKED, STATUS_STAGED)
                )
                if occupied + len(new_emails) > self.seats:
                    raise _HttpError(_public_error(400, "Seat limit has been reached."))
        status = STATUS_STAGED if staged else STATUS_INVITED
        ids = _new_ids(len(new_emails))
        new_members = [
            # id, email, external_id, type, status, user_id, name, has_master_password
            FakeMember(i, e, x, TYPE_USER, status, None, None, False)
            for i, e, x in zip(ids, new_emails, new_exts, strict=True)
        ]
        self._put_new_members(new_members)
        event = "OrganizationUser_Staged" if staged else "OrganizationUser_Invited"
        self._event_types.extend(itertools.repeat(event, len(ids)))
        self._event_ids.extend(ids)
        # 7. groups
        if not model.groups:
            return
        if not self.use_groups:
            raise _HttpError(_public_error(400, "Organization cannot use groups."))
        wanted: dict[str, _ImportGroup] = {}
        for g in model.groups:
            assert g.external_id is not None
            if g.external_id in wanted:
                raise _unhandled()
            wanted[g.external_id] = g
        existing_groups: dict[str, FakeGroup] = {}
        for eg in self._groups.values():
            if not _blank(eg.external_id):
                assert eg.external_id is not None
                if eg.external_id in existing_groups:
                    raise _unhandled()
                existing_groups[eg.external_id] = eg
        # Every member with an externalId after steps 3-6: self._linked, inlined.
        for ext, g in wanted.items():
            group = existing_groups.get(ext)
            if group is None:
                group = FakeGroup(id=_new_id(), name=g.name or "", external_id=ext)
                self._groups[group.id] = group
                self._log("Group_Created", group.id)
            else:
                group.name = g.name or ""
                self._log("Group_Updated", group.id)
            mids = g.member_external_ids or ()
            known = self._resolved.get(group.id)
            if known is not None and known[0] == self._ext_epoch and known[1] == mids:
                resolved_ids = known[2]
            else:
                resolved: dict[str, None] = {}
                for x in mids:
                    same = by_ext.get(x) if x is not None else None
                    if same is not None and x is not None and x.strip():
                        resolved[same[-1].id] = None
                resolved_ids = list(resolved)
                self._resolved[group.id] = (self._ext_epoch, list(mids), resolved_ids)
            if group.member_ids != resolved_ids and set(resolved_ids) != set(group.member_ids):
                self._set_group_members(group, list(resolved_ids))

    def _delete_member(self, member: FakeMember, event: str) -> None:
        if self._members.get(member.id) is member:
            del self._members[member.id]
            if self._seq is not None:
                del self._seq[member.id]
            self._unindex(member)
        index = self._member_groups()
        groups = index.get(member.id)
        if groups:  # each group listing it loses one mention (a group may list it twice)
            for gid in list(groups):
                ids = self._groups[gid].member_ids
                i = ids.index(member.id)
                del ids[i]
                if member.id not in itertools.islice(ids, i, None):
                    del groups[gid]
            if not groups:
                del index[member.id]
        self._log(event, member.id)

    # ---- import, Vaultwarden (§6.2) -------------------------------------------------------

    def _import_vaultwarden(self, headers: dict[str, str], raw: bytes) -> _Response:
        """§6.2: strict body, members by email (deleted = revoke, back = restore), groups only
        with ORG_GROUPS_ENABLED and never renamed, then overwrite as a hard delete."""
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _rocket_catcher(415)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _rocket_catcher(400)
        model = _VaultwardenImportModel.parse(doc)
        if model is None:
            return _rocket_catcher(422)
        # members first, by email (the first member of the org with it)
        keys = [m["email"].lower() for m in model.members]
        if len(set(keys)) == len(keys):
            self._vw_import_members_once(model.members, keys)
        else:
            self._vw_import_members(model.members, keys)
        # groups, only with ORG_GROUPS_ENABLED
        if self.groups_enabled:
            by_ext = self._by_ext
            first = self._first
            groups_by_ext = {x.external_id: x for x in self._groups.values() if x.external_id}
            for g in model.groups:
                group = groups_by_ext.get(g.external_id)
                if group is None:
                    group = FakeGroup(id=_new_id(), name=g.name, external_id=g.external_id)
                    self._groups[group.id] = group
                    groups_by_ext[g.external_id] = group
                ids = dict.fromkeys(
                    first(by_ext[x]).id for x in g.member_external_ids if x in by_ext
                )
                self._set_group_members(group, list(ids))
        # then overwrite: hard delete of unlisted external members, last owner protected
        if model.overwrite_existing:
            listed = {m["externalId"] for m in model.members}
            for member in list(self._members.values()):
                if member.external_id and member.external_id not in listed:
                    if self._vw_is_last_owner(member):
                        continue
                    self._delete_member(member, "OrganizationUser_Removed")
        return _Response(200)

    def _vw_import_members(self, entries: list[_VwMember], keys: list[str]) -> None:
        """The members of an import, entry by entry (``keys``: their lower-cased emails). A
        later entry with an email met before acts on the member the earlier one found or
        added (§6.2: duplicates do not crash)."""
        by_email = self._by_email
        for entry, key in zip(entries, keys, strict=True):
            same = by_email.get(key)
            member = self._first(same) if same else None
            if member is not None:
                self._vw_update_member(member, entry)
            elif not entry["deleted"]:
                (new,) = self._vw_new_members([key], [entry["externalId"] or None])
                self._put_member(new, canonical=True)

    def _vw_import_members_once(self, entries: list[_VwMember], keys: list[str]) -> None:
        """``_vw_import_members`` when no two entries share an email (``keys`` are unique), as
        in every import bwsync sends: then each entry acts on a member of its own, and the new
        ones are added in bulk after the loop (they cannot be the last confirmed owner the
        revocations look for, being Users)."""
        by_email, first, update = self._by_email, self._first, self._vw_update_member
        new_emails: list[str] = []
        new_exts: list[str | None] = []
        for entry, key in zip(entries, keys, strict=True):
            same = by_email.get(key)
            if same is None:
                if not entry["deleted"]:
                    new_emails.append(key)
                    new_exts.append(entry["externalId"] or None)
                continue
            member = same[0] if len(same) == 1 else first(same)
            if (  # in step: nothing to change (what update() would find), inlined
                not entry["deleted"]
                and member.status != STATUS_REVOKED
                and member.external_id == (entry["externalId"] or None)
            ):
                continue
            update(member, entry)
        self._put_new_members(self._vw_new_members(new_emails, new_exts))

    def _vw_update_member(self, member: FakeMember, entry: _VwMember) -> None:
        """An entry for an existing member: revoke (not the last confirmed owner) or restore,
        and write its externalId."""
        if entry["deleted"]:
            if not self._vw_is_last_owner(member) and member.status != STATUS_REVOKED:
                member.prior_status = member.status
                member.status = STATUS_REVOKED
        elif member.status == STATUS_REVOKED:
            self._restore(member)
        self._set_external_id(member, entry["externalId"] or None)

    def _vw_new_members(self, emails: list[str], exts: list[str | None]) -> list[FakeMember]:
        """Members for active entries the organization lacks (lower-cased emails, externalIds):
        an existing account with a password, and no mail to invite it, is Accepted."""
        members = [
            # id, email, external_id, type, status, user_id, name, has_master_password
            FakeMember(i, e, x, TYPE_USER, STATUS_INVITED, None, None, False)
            for i, e, x in zip(_new_ids(len(emails)), emails, exts, strict=True)
        ]
        if self._accounts and not self.mail_enabled:
            for m in members:
                if self._accounts.get(m.email or "", False):
                    m.status, m.user_id, m.has_master_password = STATUS_ACCEPTED, _new_id(), True
        return members

    def _vw_is_last_owner(self, member: FakeMember) -> bool:
        return (
            member.type == TYPE_OWNER
            and member.status == STATUS_CONFIRMED
            and self._confirmed_owners_except(member.id) == 0
        )


# --------------------------------------------------------------------------------------------
# Request models


_MAX_LENGTH = {"Name": 100, "Email": 256, "ExternalId": 300}
"""The request model's ``[StringLength]``/``[MaxLength]`` limits (group ``Name``, member
``Email``, both ``ExternalId``s), in .NET lengths (``_net_length``): ``_validate`` checks them,
and the wire structs let msgspec check them in the usual shape."""


class _ImportMember(msgspec.Struct, gc=False):
    """One entry of ``members``, bound. Once validated, ``external_id`` is never blank and an
    active (not deleted) entry's ``email`` is a valid address (lower-cased in
    ``_OfficialImportModel.emails``). A msgspec struct (untracked by the cyclic collector: it
    holds strings only) so that the entries of a body in the usual shape are decoded straight
    into it (``_WireMember``)."""

    email: str | None
    external_id: str | None
    deleted: bool


class _WireMember(_ImportMember, rename="camel", forbid_unknown_fields=True, gc=False):
    """``_ImportMember`` in the shape every client sends: exactly ``email``, ``externalId`` and
    ``deleted``, camelCase, strings within their length limits (in code points: bodies with
    characters beyond the BMP, where .NET's count differs, never come here) and a boolean.
    What msgspec cannot check (the address, a blank externalId) is checked by
    ``_OfficialImportModel._from_wire``."""

    email: Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["Email"])]
    external_id: Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["ExternalId"])]
    deleted: bool


class _WireGroup(msgspec.Struct, rename="camel", forbid_unknown_fields=True, gc=False):
    """One ``groups`` entry in the usual shape (see ``_WireMember``)."""

    name: Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["Name"])]
    external_id: Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["ExternalId"])]
    member_external_ids: list[str]


class _WireImport(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """An import body in the usual shape: the three required properties present and of their
    type, the two optional ones absent or booleans, no other property (any other casing is
    one)."""

    groups: list[_WireGroup]
    members: list[_WireMember]
    overwrite_existing: bool
    large_import: bool = False
    invite_users_after_provisioning: bool = True


_WIRE_IMPORT = msgspec.json.Decoder(_WireImport)
_DELETED = operator.attrgetter("deleted")


@dataclass(slots=True)
class _ImportGroup:
    name: str | None
    external_id: str | None
    member_external_ids: Sequence[str | None] | None


class _JsonTypeError(Exception):
    def __init__(self, path: str, target: str) -> None:
        super().__init__(path)
        self.path = path
        self.target = target


def _remove_identical(items: list[FakeMember], member: FakeMember) -> None:
    """Remove this very object (``list.remove`` compares fields: copies are equal)."""
    for i, m in enumerate(items):
        if m is member:
            del items[i]
            return
    raise ValueError(member.id)


def _random_id_head() -> str:
    """``xxxxxxxx-xxxx-4xxx-yxxx-``: the first four groups of a version-4 UUID, random."""
    h = f"{random.getrandbits(76):019x}"
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-"


_ID_HEAD = _random_id_head()
_epochs = itertools.count()
"""Values of ``FakeBitwarden._ext_epoch``, never twice the same."""
_id_counter = itertools.count(random.getrandbits(40))
_ID_TAILS = [f"{i:03x}" for i in range(4096)]
"""The last 3 hex digits of every 12-digit last group, to build ids by concatenation."""


def _new_ids(n: int) -> list[str]:
    """``n`` version-4-shaped UUID strings, unique in this process: a random head drawn once
    and a counter as the last group. Drawing 128 random bits per id was a fifth of the
    stand-in's time when an import creates 100,000 members (ids need be unique, not
    unpredictable), and formatting each number a tenth: the last group is 9 digits formatted
    once per 4,096 ids and 3 from a table."""
    numbers = list(itertools.islice(_id_counter, n))  # consecutive: taken in one C call
    ids: list[str] = []
    if numbers:
        start, stop = numbers[0], numbers[-1] + 1
        for block in range(start >> 12, ((stop - 1) >> 12) + 1):
            base = block << 12
            tails = _ID_TAILS[max(start - base, 0) : min(stop - base, 4096)]
            ids += map(f"{_ID_HEAD}{block & 0xFFFFFFFFF:09x}".__add__, tails)
    return ids


def _new_id() -> str:
    """One of ``_new_ids``."""
    return _new_ids(1)[0]


def _ci(obj: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Case-insensitive property lookup, as System.Text.Json with PropertyNameCaseInsensitive:
    lower-cased name -> (name as written, value); the last duplicate wins."""
    return {k.lower(): (k, v) for k, v in obj.items()}


def _permissive(value: Any, path: str) -> str | None:
    """Bitwarden's PermissiveStringConverter: strings, numbers and booleans become text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise _JsonTypeError(path, "System.String")


def _string(value: Any, path: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _JsonTypeError(path, "System.String")


def _bool(value: Any, path: str, *, nullable: bool) -> bool | None:
    if isinstance(value, bool) or (value is None and nullable):
        return value
    raise _JsonTypeError(
        path, "System.Boolean" if not nullable else "System.Nullable`1[System.Boolean]"
    )


def _net_length(value: str) -> int:
    """A string's length as .NET counts it (``string.Length``: UTF-16 code units), which the
    server's ``[StringLength]``/``[MaxLength]`` limits compare: a character outside the Basic
    Multilingual Plane (an emoji) counts twice, where ``len`` counts it once."""
    return len(value) if value.isascii() else len(value.encode("utf-16-le")) // 2


#: High surrogates written as JSON escapes (``\ud83d``): the other way to write such a character.
_ESCAPED_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB]")


def _beyond_bmp(raw: bytes) -> bool:
    """Whether a body may hold a character outside the BMP, UTF-8 encoded (lead bytes F0-F4)
    or escaped; an ASCII body without escapes (what clients send) is cleared in microseconds."""
    if not raw.isascii() and any(
        lead in raw for lead in (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
    ):
        return True
    return b"\\u" in raw and _ESCAPED_HIGH_SURROGATE.search(raw) is not None


def _valid_email(value: str) -> bool:
    """.NET's lenient EmailAddressAttribute: exactly one '@', neither first nor last."""
    i = value.find("@")
    return i > 0 and i != len(value) - 1 and i == value.rfind("@")


@dataclass(slots=True)
class _OfficialImportModel:
    """A bound and validated import request. The command reads its members as columns:
    ``emails`` and ``external_ids`` of the active entries (not ``deleted``), in request order,
    and ``removed``, the externalIds of the deleted ones. Columns, because each can then be
    built, and mostly used, by a C call rather than entry by entry in Python."""

    groups: list[_ImportGroup] | None
    members: list[_ImportMember] | None
    """``None`` when the body had no (or a null) ``members``: the controller crashes on it."""
    overwrite_existing: bool
    large_import: bool
    invite_users_after_provisioning: bool
    emails: list[str]
    """The active entries' emails, valid and lower-cased."""
    external_ids: list[str]
    """The active entries' externalIds, never blank (same order as ``emails``)."""
    removed: list[str]
    """The deleted entries' externalIds, in request order."""

    @classmethod
    def parse(cls, raw: bytes) -> _OfficialImportModel:
        """Deserialize like ASP.NET (case-insensitive names, permissive ids), then validate
        like DataAnnotations; any problem is a 400 with ``errors`` keyed by path (§3.6)."""
        if not raw.strip():
            raise _HttpError(_public_error(400, MODEL_STATE_INVALID, {"": ["Body is empty."]}))
        return cls._from_wire(raw) or cls._from_any(raw)

    @classmethod
    def _from_any(cls, raw: bytes) -> _OfficialImportModel:
        """``parse`` for any non-blank body, the general way: orjson, binding, validation."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _HttpError(
                _public_error(
                    400, MODEL_STATE_INVALID, {"$": [f"The input is not valid JSON. {exc}"]}
                )
            ) from None
        try:
            model, overwrite_missing = cls._from_json(doc)
        except _JsonTypeError as exc:
            text = f"The JSON value could not be converted to {exc.target}. Path: {exc.path}"
            raise _HttpError(_public_error(400, MODEL_STATE_INVALID, {exc.path: [text]})) from None
        errors = model._validate(overwrite_missing)
        if errors:
            raise _HttpError(_public_error(400, MODEL_STATE_INVALID, errors))
        active = [m for m in model.members if not m.deleted] if model.members else []
        # valid: an active entry's email and any entry's externalId are non-blank strings
        model.emails = [(m.email or "").lower() for m in active]
        model.external_ids = [m.external_id or "" for m in active]
        model.removed = [m.external_id or "" for m in model.members or () if m.deleted]
        return model

    @classmethod
    def _from_wire(cls, raw: bytes) -> _OfficialImportModel | None:
        """The model of a valid body in the shape every client sends (``_WireImport``), or
        ``None`` for any other body, which then takes the general way (``_from_any``) to the
        same model or to its error.

        Why: that general way spent most of an import's time in Python, entry by entry (a
        dict per entry, then type, length and address checks); msgspec decodes the body into
        structs and checks names, types and lengths in C, and the rest is checked column by
        column: the 51 batches of the benchmark's 100,000 members were parsed in 87 ms, now
        in 38 ms (CPU, in process).

        Exactly the bodies this accepts must bind and validate without error the general
        way, to the same values: msgspec and orjson agree on JSON syntax (UTF-8, escapes,
        surrogates, control characters, whitespace: see the test
        ``test_bodies_msgspec_accepts_bind_alike_the_general_way``), a repeated property keeps
        its last value in both, and the usual shape leaves no room for the rest: no numbers
        (big ints, NaN), no nulls, no property in another casing, no permissive conversion."""
        if _beyond_bmp(raw):
            return None  # msgspec's lengths count code points; the server's, UTF-16 units
        try:
            wire = _WIRE_IMPORT.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec's error for bad UTF-8
            return None
        for g in wire.groups:
            if not (g.name.strip() and g.external_id.strip()):
                return None  # _validate: required
        members = wire.members
        exts = [m.external_id for m in members]
        emails = _usual_emails([m.email for m in members])
        if emails is None or not all(map(str.strip, exts)):
            return None  # a blank externalId, or (maybe) an invalid address: _validate says
        removed: list[str] = []
        if any(map(_DELETED, members)):
            active = [not m.deleted for m in members]
            removed = [m.external_id for m in members if m.deleted]
            emails = list(itertools.compress(emails, active))
            exts = list(itertools.compress(exts, active))
        groups = [_ImportGroup(g.name, g.external_id, g.member_external_ids) for g in wire.groups]
        return cls(
            groups,
            cast(list[_ImportMember], members),
            wire.overwrite_existing,
            wire.large_import,
            wire.invite_users_after_provisioning,
            emails,
            exts,
            removed,
        )

    @classmethod
    def _from_json(cls, doc: Any) -> tuple[_OfficialImportModel, bool]:
        """The model as bound, its columns still empty; and whether ``overwriteExisting`` was
        missing."""
        if not isinstance(doc, dict):
            raise _JsonTypeError(
                "$", "Bit.Api.AdminConsole.Public.Models.Request.OrganizationImportRequestModel"
            )
        top = _ci(doc)
        groups: list[_ImportGroup] | None = None
        members: list[_ImportMember] | None = None
        if "groups" in top and top["groups"][1] is not None:
            name, value = top["groups"]
            if not isinstance(value, list):
                raise _JsonTypeError(f"$.{name}", "OrganizationImportGroupRequestModel[]")
            groups = [_group_from_json(item, f"$.{name}[{i}]") for i, item in enumerate(value)]
        if "members" in top and top["members"][1] is not None:
            name, value = top["members"]
            if not isinstance(value, list):
                raise _JsonTypeError(f"$.{name}", "OrganizationImportMemberRequestModel[]")
            members = [_member_from_json(item, f"$.{name}[{i}]") for i, item in enumerate(value)]
        overwrite: bool | None = None
        if "overwriteexisting" in top:
            okey, ovalue = top["overwriteexisting"]
            overwrite = _bool(ovalue, f"$.{okey}", nullable=True)
        large = False
        if "largeimport" in top:
            lkey, lvalue = top["largeimport"]
            large = bool(_bool(lvalue, f"$.{lkey}", nullable=False))
        invite = True
        if "inviteusersafterprovisioning" in top:
            ikey, ivalue = top["inviteusersafterprovisioning"]
            invite = bool(_bool(ivalue, f"$.{ikey}", nullable=False))
        model = cls(groups, members, bool(overwrite), large, invite, [], [], [])
        return model, overwrite is None

    def _validate(self, overwrite_missing: bool) -> dict[str, list[str]]:
        """DataAnnotations as the request models declare them (§3.1); keys are model paths."""
        errors: dict[str, list[str]] = {}

        def add(key: str, text: str) -> None:
            errors.setdefault(key, []).append(text)

        def check_length(key: str, prop: str, value: str) -> None:
            limit = _MAX_LENGTH[prop]
            if _net_length(value) > limit:
                add(key, f"The field {prop} must be a string with a maximum length of {limit}.")

        for i, g in enumerate(self.groups or []):
            for prop, value in (("Name", g.name), ("ExternalId", g.external_id)):
                key = f"Groups[{i}].{prop}"
                if _blank(value):
                    add(key, f"The {prop} field is required.")
                elif value is not None:
                    check_length(key, prop, value)
        for i, m in enumerate(self.members or []):
            email, ext = m.email, m.external_id
            before = len(errors)
            key = f"Members[{i}].Email"
            if email is not None:
                if not _valid_email(email):
                    add(key, "The Email field is not a valid e-mail address.")
                check_length(key, "Email", email)
            xkey = f"Members[{i}].ExternalId"
            if _blank(ext):
                add(xkey, "The ExternalId field is required.")
            elif ext is not None:
                check_length(xkey, "ExternalId", ext)
            # IValidatableObject runs only when the member's own attributes passed.
            if len(errors) == before and not m.deleted and _blank(email):
                add(key, "Email is required for enabled members.")
        if overwrite_missing:
            add("OverwriteExisting", "The OverwriteExisting field is required.")
        return errors


_AT_AND_LF_ONLY = bytes(b for b in range(256) if b not in b"@\n")
"""The bytes ``bytes.translate`` deletes to keep only '@' and line feeds (in UTF-8, no other
character's encoding contains those bytes)."""


def _usual_emails(emails: list[str]) -> list[str] | None:
    """These addresses lower-cased if ``_valid_email`` holds for each, else ``None``, in a few
    C calls over them all rather than Python calls for each (8 ms for 100,000, not 23).

    Joined by line feeds, they must show exactly one '@' between line feeds (their '@'s and
    line feeds alone, in order, are "@\\n@\\n...@": so no address holds a line feed, and
    each holds one '@'), and no '@' next to a line feed or at either end (none begins or ends
    with it). An address holding a line feed makes this ``None``, valid or not: the caller
    then takes the long way, which tells."""
    if not emails:
        return emails
    joined = "\n".join(emails)
    marks = joined.encode("utf-8", "surrogatepass").translate(None, _AT_AND_LF_ONLY)
    if (
        marks != b"@" + b"\n@" * (len(emails) - 1)
        or "\n@" in joined
        or "@\n" in joined
        or joined[0] == "@"
        or joined[-1] == "@"
    ):
        return None
    # Lower-casing changes no character of the join (U+03A3, the one whose lower case
    # depends on its neighbours, always changes) only if it changes none of the addresses.
    return emails if joined.lower() == joined else list(map(str.lower, emails))


def _group_from_json(item: Any, p: str) -> _ImportGroup:
    """One ``groups`` entry (JSON path ``p``), bound like System.Text.Json would."""
    if not isinstance(item, dict):
        raise _JsonTypeError(p, "OrganizationImportGroupRequestModel")
    g = _ci(item)
    nkey, nvalue = g.get("name", ("name", None))
    xkey, xvalue = g.get("externalid", ("externalId", None))
    gname = _string(nvalue, f"{p}.{nkey}")
    gext = _permissive(xvalue, f"{p}.{xkey}")
    mkey, mval = g.get("memberexternalids", ("memberExternalIds", None))
    mids: list[str | None] | None = None
    if mval is not None:
        if not isinstance(mval, list):
            raise _JsonTypeError(f"{p}.{mkey}", "IEnumerable`1[System.String]")
        if all(type(v) is str for v in mval):  # the usual case, fast
            mids = list(mval)
        else:
            mids = [_permissive(v, f"{p}.{mkey}[{j}]") for j, v in enumerate(mval)]
    return _ImportGroup(gname, gext, mids)


def _member_from_json(item: Any, p: str) -> _ImportMember:
    """One ``members`` entry (JSON path ``p``), bound like System.Text.Json would."""
    if not isinstance(item, dict):
        raise _JsonTypeError(p, "OrganizationImportMemberRequestModel")
    m = _ci(item)
    ekey, evalue = m.get("email", ("email", None))
    xkey, xvalue = m.get("externalid", ("externalId", None))
    email = _string(evalue, f"{p}.{ekey}")
    ext = _permissive(xvalue, f"{p}.{xkey}")
    deleted = False
    if "deleted" in m:
        dkey, dvalue = m["deleted"]
        deleted = bool(_bool(dvalue, f"{p}.{dkey}", nullable=False))
    return _ImportMember(email, ext, deleted)


class _VwMember(TypedDict):
    """One entry of ``members`` as parsed: serde's field names are the wire names."""

    email: str
    externalId: str
    deleted: bool


@dataclass(slots=True)
class _VwGroup:
    name: str
    external_id: str
    member_external_ids: list[str]


@dataclass(slots=True)
class _VaultwardenImportModel:
    groups: list[_VwGroup]
    members: list[_VwMember]
    overwrite_existing: bool

    @classmethod
    def parse(cls, doc: Any) -> _VaultwardenImportModel | None:
        """serde with ``rename_all = "camelCase"``: exact names, every field required, strings
        only, other fields ignored; ``None`` means 422. ``doc`` comes from ``orjson.loads``, so
        its values are exactly dicts, lists, strs, ints, floats, bools or None."""

        def req(obj: Any, key: str, kind: type) -> Any:
            if type(obj) is not dict or type(obj.get(key)) is not kind:
                raise KeyError(key)
            return obj[key]

        try:
            groups = [
                _VwGroup(
                    req(g, "name", str),
                    req(g, "externalId", str),
                    [
                        x if type(x) is str else _raise(KeyError("memberExternalIds"))
                        for x in req(g, "memberExternalIds", list)
                    ],
                )
                for g in req(doc, "groups", list)
            ]
            members: list[_VwMember] = req(doc, "members", list)
            overwrite = req(doc, "overwriteExisting", bool)
        except KeyError:
            return None
        # The parsed entries serve as they are, once every one has its fields (one pass).
        for m in members:
            if not (
                type(m) is dict
                and type(m.get("email")) is str
                and type(m.get("externalId")) is str
                and type(m.get("deleted")) is bool
            ):
                return None
        return cls(groups, members, overwrite)


def _raise(exc: Exception) -> Any:
    raise exc


# --------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(StandInServer):
    # Quiet for every connection and TLS failure (a client dropping the connection or refusing
    # our certificate is a test scenario); anything else is a bug and is printed.
    quiet_errors = (OSError,)
    # server_close() would otherwise join every handler thread, and one blocked on a client's
    # idle keep-alive connection would hang stop(); close_connections() ends those instead.
    block_on_close = False
    fake: FakeBitwarden

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on every open client connection, as a stopped server would."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(StandInHandler):
    server: _Server
    server_version = "FakeBitwarden/1.0"

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.server.fake._handle(self.command, self.path, headers, raw)
        if response.disconnect:
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Date", formatdate(usegmt=True))
        for k, v in response.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; print the base URL and the organization API key."""
    parser = argparse.ArgumentParser(
        prog="python -m bwsync.testing.fake_bitwarden",
        description="A local stand-in for the Bitwarden organization API (tests and demos only).",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--vaultwarden", action="store_true", help="behave like Vaultwarden")
    parser.add_argument("--self-hosted", action="store_true", help="no 2,000-entry import cap")
    parser.add_argument("--client-id", help="organization.<uuid> (random by default)")
    parser.add_argument("--client-secret", help="the API key secret (random by default)")
    parser.add_argument("--staged", action="store_true", help="server flag for Staged members")
    parser.add_argument(
        "--groups-enabled", action="store_true", help="Vaultwarden ORG_GROUPS_ENABLED"
    )
    parser.add_argument("--owner", default="owner@example.com", help="seed this confirmed owner")
    args = parser.parse_args(argv)
    fake = FakeBitwarden(
        vaultwarden=args.vaultwarden,
        self_hosted=args.self_hosted,
        client_id=args.client_id,
        client_secret=args.client_secret,
        staged_status=args.staged,
        groups_enabled=args.groups_enabled,
        host=args.host,
        port=args.port,
    )
    if args.owner:
        fake.add_owner(args.owner)
    # A server process holding an organization of 100,000 long-lived members: the cyclic
    # collector's full passes over them cost more than the few cycles it would reclaim (error
    # tracebacks), so what exists now is frozen and full passes come rarely.
    gc.freeze()
    gc.set_threshold(10_000, 50, 1_000)
    fake.start()
    print(fake.base_url, flush=True)
    print(f"BWSYNC_BITWARDEN__SERVER={fake.base_url}", flush=True)
    print(f"BWSYNC_BITWARDEN__CLIENT_ID={fake.client_id}", flush=True)
    print(f"BWSYNC_BITWARDEN__CLIENT_SECRET={fake.client_secret}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
