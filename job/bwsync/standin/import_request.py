"""The import request as the official server binds and validates it (§3.1, §3.6), before its
command runs (``import_command``).

ASP.NET's model binding (System.Text.Json, case-insensitive property names, Bitwarden's
permissive string converter for ids) and DataAnnotations validation (required fields, .NET
string lengths, the lenient e-mail check), reproduced with their error bodies: a problem is a
400 ``ErrorResponseModel`` whose ``errors`` are keyed by path. The usual body (what every
client sends) takes a fast way through msgspec that binds exactly as the general way does
(``OfficialImportModel._from_wire``).
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, cast

import msgspec
import orjson

from bwsync.standin.http import HttpError, public_error

__all__ = ["MODEL_STATE_INVALID", "ImportGroup", "ImportMember", "OfficialImportModel", "blank"]

MODEL_STATE_INVALID = "The request's model state is invalid."


def blank(value: str | None) -> bool:
    """Missing or only whitespace: what ``[Required]`` refuses and ``string.IsNullOrWhiteSpace``
    tells."""
    return value is None or not value.strip()


_MAX_LENGTH = {"Name": 100, "Email": 256, "ExternalId": 300}
"""The request model's ``[StringLength]``/``[MaxLength]`` limits (group ``Name``, member
``Email``, both ``ExternalId``s), in .NET lengths (``_net_length``): ``_validate`` checks them,
and the wire structs let msgspec check them in the usual shape."""


class ImportMember(msgspec.Struct, gc=False):
    """One entry of ``members``, bound. Once validated, ``external_id`` is never blank and an
    active (not deleted) entry's ``email`` is a valid address (lower-cased in
    ``OfficialImportModel.emails``). A msgspec struct (untracked by the cyclic collector: it
    holds strings only) so that the entries of a body in the usual shape are decoded straight
    into it (``_WireMember``)."""

    email: str | None
    external_id: str | None
    deleted: bool


class _WireMember(ImportMember, rename="camel", forbid_unknown_fields=True, gc=False):
    """``ImportMember`` in the shape every client sends: exactly ``email``, ``externalId`` and
    ``deleted``, camelCase, strings within their length limits (in code points: bodies with
    characters beyond the BMP, where .NET's count differs, never come here) and a boolean.
    What msgspec cannot check (the address, a blank externalId) is checked by
    ``OfficialImportModel._from_wire``."""

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
class ImportGroup:
    name: str | None
    external_id: str | None
    member_external_ids: Sequence[str | None] | None


class _JsonTypeError(Exception):
    def __init__(self, path: str, target: str) -> None:
        super().__init__(path)
        self.path = path
        self.target = target


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
class OfficialImportModel:
    """A bound and validated import request. The command reads its members as columns:
    ``emails`` and ``external_ids`` of the active entries (not ``deleted``), in request order,
    and ``removed``, the externalIds of the deleted ones. Columns, because each can then be
    built, and mostly used, by a C call rather than entry by entry in Python."""

    groups: list[ImportGroup] | None
    members: list[ImportMember] | None
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
    def parse(cls, raw: bytes) -> OfficialImportModel:
        """Deserialize like ASP.NET (case-insensitive names, permissive ids), then validate
        like DataAnnotations; any problem is a 400 with ``errors`` keyed by path (§3.6)."""
        if not raw.strip():
            raise HttpError(public_error(400, MODEL_STATE_INVALID, {"": ["Body is empty."]}))
        return cls._from_wire(raw) or cls._from_any(raw)

    @classmethod
    def _from_any(cls, raw: bytes) -> OfficialImportModel:
        """``parse`` for any non-blank body, the general way: orjson, binding, validation."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HttpError(
                public_error(
                    400, MODEL_STATE_INVALID, {"$": [f"The input is not valid JSON. {exc}"]}
                )
            ) from None
        try:
            model, overwrite_missing = cls._from_json(doc)
        except _JsonTypeError as exc:
            text = f"The JSON value could not be converted to {exc.target}. Path: {exc.path}"
            raise HttpError(public_error(400, MODEL_STATE_INVALID, {exc.path: [text]})) from None
        errors = model._validate(overwrite_missing)
        if errors:
            raise HttpError(public_error(400, MODEL_STATE_INVALID, errors))
        active = [m for m in model.members if not m.deleted] if model.members else []
        # valid: an active entry's email and any entry's externalId are non-blank strings
        model.emails = [(m.email or "").lower() for m in active]
        model.external_ids = [m.external_id or "" for m in active]
        model.removed = [m.external_id or "" for m in model.members or () if m.deleted]
        return model

    @classmethod
    def _from_wire(cls, raw: bytes) -> OfficialImportModel | None:
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
        groups = [ImportGroup(g.name, g.external_id, g.member_external_ids) for g in wire.groups]
        return cls(
            groups,
            cast(list[ImportMember], members),
            wire.overwrite_existing,
            wire.large_import,
            wire.invite_users_after_provisioning,
            emails,
            exts,
            removed,
        )

    @classmethod
    def _from_json(cls, doc: Any) -> tuple[OfficialImportModel, bool]:
        """The model as bound, its columns still empty; and whether ``overwriteExisting`` was
        missing."""
        if not isinstance(doc, dict):
            raise _JsonTypeError(
                "$", "Bit.Api.AdminConsole.Public.Models.Request.OrganizationImportRequestModel"
            )
        top = _ci(doc)
        groups: list[ImportGroup] | None = None
        members: list[ImportMember] | None = None
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
                if blank(value):
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
            if blank(ext):
                add(xkey, "The ExternalId field is required.")
            elif ext is not None:
                check_length(xkey, "ExternalId", ext)
            # IValidatableObject runs only when the member's own attributes passed.
            if len(errors) == before and not m.deleted and blank(email):
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


def _group_from_json(item: Any, p: str) -> ImportGroup:
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
    return ImportGroup(gname, gext, mids)


def _member_from_json(item: Any, p: str) -> ImportMember:
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
    return ImportMember(email, ext, deleted)
