"""Vaultwarden mode for the Bitwarden stand-in: the same organization and URLs, answered the way
a real Vaultwarden answers them (``reference/vaultwarden.md``; §6 of
``reference/bitwarden-public-api.md``), so bwsync's Vaultwarden support is tested against
Vaultwarden's rules, not the official server's.

With ``vaultwarden=True``, ``VaultwardenMode``:

* issues tokens as Vaultwarden's ``/identity/connect/token`` (every device field required,
  snake_case or not; its own error messages) (§6.1), behind its login rate limiter: a burst of
  ``login_ratelimit_max_burst`` (10) token requests, then one every
  ``login_ratelimit_seconds`` (60) on the stand-in's ``clock``, and over it HTTP 429 "Too many
  login requests" without ``Retry-After`` (governor's GCRA, as ``src/ratelimit.rs``);
* serves only the import: every other API path is Rocket's JSON 404, an unauthenticated call
  Rocket's JSON 401;
* imports by email, strictly typed (serde, 422 otherwise): a deleted entry revokes (never the
  last confirmed owner), an entry back restores; groups only with ``groups_enabled``
  (``ORG_GROUPS_ENABLED``) and never renamed; ``overwriteExisting`` hard-deletes unlisted
  synced members after the adds, without the official master-password guard (§6.2);
* is not atomic: the members are applied in order, and the first new member whose email
  Vaultwarden's ``is_valid_email`` refuses (``vw_email``) stops the import with HTTP 400 "User
  email <email> is not a valid email address": the members before it stay invited, the groups
  are not updated, overwrite does not run;
* with ``mail_enabled=False`` (no SMTP), adds a member whose account exists with a password
  (``add_account``) as Accepted instead of Invited;
* answers injected faults with Vaultwarden's bodies.

It is always self-hosted (no 2,000-entry cap, no rate limits).

What it does not model (Vaultwarden 46d71107, ``src/api/core/public.rs``), and what that means
for bwsync:

* **A restore refused by an organization policy** (``OrgPolicy::check_user_allowed``, e.g. two-
  step login required): Vaultwarden revokes the member again, logs a warning and goes on. Here
  every member back in the directory is restored. bwsync's memory then counts such a member as
  active, though Vaultwarden keeps it revoked: a later removal counts it once more (towards
  stricter limits, never fewer).
* **An invitation mail that cannot be sent**: Vaultwarden deletes the new user and membership
  and answers HTTP 400 "Error sending invite", half-way through the import, like an invalid
  email (which is modelled). Here invitations never fail. The run fails (exit 4) and, like any
  failed run, keeps the previous memory.
* **Owners**: only the *last confirmed* owner is never revoked or deleted, as in the source;
  ``reference/vaultwarden.md`` words it as "owners are not [revoked]". This stand-in, and the
  README, follow the source: another owner is revoked like anyone else.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any, TypedDict

import orjson

from bwsync.model import (
    STATUS_ACCEPTED,
    STATUS_CONFIRMED,
    STATUS_INVITED,
    STATUS_REVOKED,
    TYPE_OWNER,
    TYPE_USER,
)
from bwsync.standin.http import HttpError, Response, json_response
from bwsync.standin.organization import Group, Member, new_id, new_ids
from bwsync.standin.server import GUID
from tests.standins.bitwarden.faults import Fault, FaultInjection
from tests.standins.bitwarden.vw_email import vw_is_valid_email

__all__ = ["VaultwardenMode", "rocket_catcher", "vw_error"]

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


def vw_error(status: int, message: str) -> Response:
    """Vaultwarden's Bitwarden-like error JSON (§6.1)."""
    return json_response(
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


def rocket_catcher(status: int) -> Response:
    """Rocket's default JSON catcher body, which Vaultwarden returns for 401/404/422."""
    reason, description = _ROCKET_REASONS.get(status, ("Error", "An error occurred."))
    return json_response(
        status, {"error": {"code": status, "reason": reason, "description": description}}
    )


class VaultwardenMode(FaultInjection):
    """The stand-in (with its fault switches) that behaves like Vaultwarden when
    ``vaultwarden=True``, and exactly like the official server otherwise.

    * ``groups_enabled``: Vaultwarden's ``ORG_GROUPS_ENABLED`` (default false, as VW's).
    * ``mail_enabled``: Vaultwarden with SMTP configured (default). Without mail, a new member
      whose account already exists with a password (``add_account``) becomes Accepted instead
      of Invited (§6.2).
    * ``login_ratelimit_max_burst``, ``login_ratelimit_seconds``: Vaultwarden's
      ``LOGIN_RATELIMIT_MAX_BURST`` (10) and ``LOGIN_RATELIMIT_SECONDS`` (60); a burst of 0
      switches the limiter off. The time is the stand-in's ``clock``, so a test moves it on
      instead of waiting a minute.
    """

    def __init__(
        self,
        *,
        vaultwarden: bool = False,
        groups_enabled: bool = False,
        mail_enabled: bool = True,
        login_ratelimit_max_burst: int = 10,
        login_ratelimit_seconds: float = 60.0,
        self_hosted: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(self_hosted=self_hosted or vaultwarden, **kwargs)
        self.vaultwarden = vaultwarden
        self.groups_enabled = groups_enabled
        self.mail_enabled = mail_enabled
        self.login_ratelimit_max_burst = login_ratelimit_max_burst
        self.login_ratelimit_seconds = login_ratelimit_seconds
        self._login_tat: float | None = None
        """GCRA's theoretical arrival time of the next login (one client address: loopback)."""
        self._accounts: dict[str, bool] = {}

    def add_account(self, email: str, *, master_password: bool = True) -> None:
        """Seed a user account that is not (yet) a member: Vaultwarden's import looks accounts
        up by email when it adds a member (§6.2)."""
        with self._lock:
            self._accounts[email.lower()] = master_password

    def reset(self) -> None:
        """Also forget the accounts and the login limiter's history."""
        with self._lock:
            super().reset()
            self._accounts.clear()
            self._login_tat = None

    def _login_allowed(self) -> bool:
        """governor's GCRA, ``Quota::with_period(seconds).allow_burst(burst)``: one cell every
        ``seconds``, up to ``burst`` at once; a refused request does not count."""
        burst, period = self.login_ratelimit_max_burst, self.login_ratelimit_seconds
        if burst <= 0:
            return True
        now = self._clock()
        tat = now if self._login_tat is None else max(self._login_tat, now)
        if tat - now > (burst - 1) * period:
            return False
        self._login_tat = tat + period
        return True

    def _mode(self) -> str:
        return "vaultwarden" if self.vaultwarden else super()._mode()

    def _token_issuer(self) -> str:
        return f"{self.base_url}|api.organization" if self.vaultwarden else super()._token_issuer()

    def _dispatch(
        self,
        endpoint: str,
        params: list[str],
        method: str,
        headers: dict[str, str],
        raw: bytes,
        *,
        allowed: list[str],
    ) -> Response:
        if not self.vaultwarden:
            return super()._dispatch(endpoint, params, method, headers, raw, allowed=allowed)
        if endpoint == "token":
            return self._token_vaultwarden(method, headers, raw)
        if endpoint != "import":
            return rocket_catcher(404)
        self._authenticate(headers)
        return self._import_vaultwarden(headers, raw)

    def _authenticate(self, headers: dict[str, str]) -> None:
        """Rocket's JSON 401 where the official server answers an empty 401."""
        try:
            super()._authenticate(headers)
        except HttpError:
            if not self.vaultwarden:
                raise
            raise HttpError(rocket_catcher(401)) from None

    def _fault_response(self, fault: Fault) -> Response:
        """Vaultwarden's bodies for a fault's status (a given ``fault.body`` is sent as is)."""
        if not self.vaultwarden or fault.body is not None:
            return super()._fault_response(fault)
        status = fault.status or 500
        if status == 429:
            resp = vw_error(429, "Too many login requests")
        elif fault.endpoint == "token" and 400 <= status < 500:
            resp = vw_error(status, "Invalid client_id")
        elif status in (401, 404, 422) or status >= 500:
            resp = rocket_catcher(status)
        else:
            resp = Response(status)
        if fault.retry_after is not None:
            resp.headers["Retry-After"] = str(fault.retry_after)
        return resp

    # ---- identity (§6.1) -------------------------------------------------------------------

    def _token_vaultwarden(self, method: str, headers: dict[str, str], raw: bytes) -> Response:
        """Vaultwarden's ``/identity/connect/token`` for organization keys (§6.1)."""
        form = self._form(headers, raw) if method == "POST" else None
        if form is None:
            return rocket_catcher(415 if method == "POST" else 404)
        lower = {k.lower(): v for k, v in form.items()}
        grant = lower.get("grant_type", "")
        if grant != "client_credentials":
            return vw_error(400, "Invalid type" if grant else "grant_type cannot be blank")
        values: dict[str, str] = {}
        for name, aliases in _VW_REQUIRED_TOKEN_FIELDS:
            value = next((lower[a] for a in aliases if lower.get(a)), "")
            if not value:
                return vw_error(400, f"{name} cannot be blank")
            values[name] = value
        if not self._login_allowed():  # api_key_login checks the limit before anything else
            return vw_error(429, "Too many login requests")
        if values["scope"] != "api.organization":
            return vw_error(400, "Scope not supported")
        prefix, _, rest = values["client_id"].partition(".")
        if prefix != "organization" or not GUID.match(rest):
            return vw_error(400, "Malformed client_id")
        if str(uuid.UUID(rest)) != str(uuid.UUID(self.org_id)) or not self.api_enabled:
            return vw_error(400, "Invalid client_id")
        if not secrets.compare_digest(
            values["client_secret"].encode(), self.client_secret.encode()
        ):
            return vw_error(400, "Incorrect client_secret")
        return self._issue_token()

    # ---- import, Vaultwarden (§6.2) -------------------------------------------------------

    def _import_vaultwarden(self, headers: dict[str, str], raw: bytes) -> Response:
        """§6.2: strict body, members by email (deleted = revoke, back = restore), groups only
        with ORG_GROUPS_ENABLED and never renamed, then overwrite as a hard delete."""
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return rocket_catcher(415)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return rocket_catcher(400)
        model = _VaultwardenImportModel.parse(doc)
        if model is None:
            return rocket_catcher(422)
        # members first, by email (the first member of the org with it), in order: an invalid
        # new email ends the request there, with what was done before it kept (not atomic)
        keys = [m["email"].lower() for m in model.members]
        if len(set(keys)) == len(keys):
            refused = self._vw_import_members_once(model.members, keys)
        else:
            refused = self._vw_import_members(model.members, keys)
        if refused is not None:
            return vw_error(400, f"User email {refused} is not a valid email address")
        # groups, only with ORG_GROUPS_ENABLED
        if self.groups_enabled:
            by_ext = self._by_ext
            first = self._first
            groups_by_ext = {x.external_id: x for x in self._groups.values() if x.external_id}
            for g in model.groups:
                group = groups_by_ext.get(g.external_id)
                if group is None:
                    group = Group(id=new_id(), name=g.name, external_id=g.external_id)
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
        return Response(200)

    def _vw_refuses(self, email: str) -> bool:
        """A new member's email that ``User::save`` refuses: only an email with neither a
        membership nor an account is checked (a new placeholder account is saved)."""
        return email not in self._accounts and not vw_is_valid_email(email)

    def _vw_import_members(self, entries: list[_VwMember], keys: list[str]) -> str | None:
        """The members of an import, entry by entry (``keys``: their lower-cased emails). A
        later entry with an email met before acts on the member the earlier one found or
        added (§6.2: duplicates do not crash). Returns the first email refused, where the
        import stopped, or ``None``."""
        by_email = self._by_email
        for entry, key in zip(entries, keys, strict=True):
            same = by_email.get(key)
            member = self._first(same) if same else None
            if member is not None:
                self._vw_update_member(member, entry)
            elif not entry["deleted"]:
                if self._vw_refuses(key):
                    return key
                (new,) = self._vw_new_members([key], [entry["externalId"] or None])
                self._put_member(new, canonical=True)
        return None

    def _vw_import_members_once(self, entries: list[_VwMember], keys: list[str]) -> str | None:
        """``_vw_import_members`` when no two entries share an email (``keys`` are unique), as
        in every import bwsync sends: then each entry acts on a member of its own, and the new
        ones are added in bulk when the loop ends, or stops at a refused email (they cannot be
        the last confirmed owner the revocations look for, being Users)."""
        by_email, first, update = self._by_email, self._first, self._vw_update_member
        new_emails: list[str] = []
        new_exts: list[str | None] = []
        for entry, key in zip(entries, keys, strict=True):
            same = by_email.get(key)
            if same is None:
                if not entry["deleted"]:
                    if self._vw_refuses(key):
                        self._put_new_members(self._vw_new_members(new_emails, new_exts))
                        return key
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
        return None

    def _vw_update_member(self, member: Member, entry: _VwMember) -> None:
        """An entry for an existing member: revoke (not the last confirmed owner) or restore,
        and write its externalId."""
        if entry["deleted"]:
            if not self._vw_is_last_owner(member) and member.status != STATUS_REVOKED:
                member.prior_status = member.status
                member.status = STATUS_REVOKED
        elif member.status == STATUS_REVOKED:
            self._restore(member)
        self._set_external_id(member, entry["externalId"] or None)

    def _vw_new_members(self, emails: list[str], exts: list[str | None]) -> list[Member]:
        """Members for active entries the organization lacks (lower-cased emails, externalIds):
        an existing account with a password, and no mail to invite it, is Accepted."""
        members = [
            # id, email, external_id, type, status, user_id, name, has_master_password
            Member(i, e, x, TYPE_USER, STATUS_INVITED, None, None, False)
            for i, e, x in zip(new_ids(len(emails)), emails, exts, strict=True)
        ]
        if self._accounts and not self.mail_enabled:
            for m in members:
                if self._accounts.get(m.email or "", False):
                    m.status, m.user_id, m.has_master_password = STATUS_ACCEPTED, new_id(), True
        return members

    def _vw_is_last_owner(self, member: Member) -> bool:
        return (
            member.type == TYPE_OWNER
            and member.status == STATUS_CONFIRMED
            and self._confirmed_owners_except(member.id) == 0
        )


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
