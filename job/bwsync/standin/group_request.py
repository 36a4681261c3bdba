"""The bodies of the group writes bound as the official server binds them: ``PUT
/public/groups/{id}/member-ids`` (``parse_member_ids``) and ``PUT /public/groups/{id}``
(``parse_group_update``).

``UpdateMemberIdsRequestModel`` is one property, ``IEnumerable<Guid> MemberIds``, read by
System.Text.Json with ASP.NET's defaults (property names in any casing; a repeated property
keeps its last value), and validated by the public API's model-state filter (§3.6): every
binding problem is a 400 ``{"message": "The request's model state is invalid.", "errors":
{<path>: [...]}}`` before the controller runs. What binds:

* ``{"memberIds": [<guid>, ...]}``: those ids; a GUID is text in the ``8-4-4-4-12`` form,
  upper or lower case (anything else, ``null`` and numbers included, is a conversion error at
  ``$.memberIds[i]``);
* ``{"memberIds": null}``, ``{}``: no ids at all. The repository turns the missing list into
  an empty table (``DapperHelpers.ToArrayTVP`` skips a null sequence), so the group is
  emptied, exactly as by ``[]``.

``GroupCreateUpdateRequestModel`` (``PUT /public/groups/{id}``, bitwarden/server ac309aa19ed3
``src/Api/AdminConsole/Public/Models/Request/GroupCreateUpdateRequestModel.cs``,
``GroupBaseModel.cs``, ``AssociationWithPermissionsRequestModel.cs``,
``AssociationWithPermissionsBaseModel.cs``): ``name`` (``[Required]``, so not blank;
``[StringLength(100)]``), ``externalId`` (``[StringLength(300)]``; missing or null: none), and
``collections``, a list of ``{id, readOnly, hidePasswords, manage}`` (``id`` and ``readOnly``
``[Required]``) or missing/null: no collections given, which the update command reads as
"leave the grants as they are". Plain ``string`` properties (no permissive converter): a number
is a conversion error. DataAnnotations run into the list's items, keyed
``Collections[i].Id``.

Only the standard library and orjson: the demo ships this module.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from bwsync.standin.http import HttpError, public_error
from bwsync.standin.import_request import MODEL_STATE_INVALID, blank

__all__ = ["GroupUpdate", "parse_group_update", "parse_member_ids"]

_GUID_D = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_LIST = "System.Collections.Generic.IEnumerable`1[System.Guid]"


def _conversion(path: str, target: str) -> HttpError:
    text = f"The JSON value could not be converted to {target}. Path: {path}"
    return HttpError(public_error(400, MODEL_STATE_INVALID, {path: [text]}))


def parse_member_ids(raw: bytes) -> list[str]:
    """The member ids of the request, canonical (lower-case, with dashes), in request order,
    duplicates kept (the stored procedure inserts each, see the server's endpoint); or the
    400 the server answers, raised as ``HttpError``."""
    if not raw.strip():
        raise HttpError(public_error(400, MODEL_STATE_INVALID, {"": ["Body is empty."]}))
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(
            public_error(400, MODEL_STATE_INVALID, {"$": [f"The input is not valid JSON. {exc}"]})
        ) from None
    if not isinstance(doc, dict):
        raise _conversion(
            "$", "Bit.Api.AdminConsole.Public.Models.Request.UpdateMemberIdsRequestModel"
        )
    value: Any = None
    name = "memberIds"
    for key, v in doc.items():
        if key.lower() == "memberids":
            name, value = key, v
    if value is None:
        return []
    if not isinstance(value, list):
        raise _conversion(f"$.{name}", _LIST)
    ids: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _GUID_D.match(item):
            raise _conversion(f"$.{name}[{i}]", "System.Guid")
        ids.append(str(uuid.UUID(item)))
    return ids


_GROUP_MODEL = "Bit.Api.AdminConsole.Public.Models.Request.GroupCreateUpdateRequestModel"
_ASSOCIATION = "Bit.Api.AdminConsole.Public.Models.Request.AssociationWithPermissionsRequestModel"
_ASSOCIATIONS = f"System.Collections.Generic.IEnumerable`1[{_ASSOCIATION}]"
_NULLABLE_BOOL = "System.Nullable`1[System.Boolean]"
_NULLABLE_GUID = "System.Nullable`1[System.Guid]"
_LIMITS = {"Name": 100, "ExternalId": 300}


@dataclass(frozen=True, slots=True)
class GroupUpdate:
    """``PUT /public/groups/{id}`` bound and valid: the group's new name and externalId, and
    its collection grants (``{"id", "readOnly", "hidePasswords", "manage"}``, ids canonical),
    or ``None`` when the request gives none: the grants stay as they are."""

    name: str
    external_id: str | None
    collections: list[dict[str, Any]] | None


def _net_length(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-16-le")) // 2


def _object(doc: Any, path: str, target: str) -> dict[str, tuple[str, Any]]:
    """A JSON object's properties by lower-cased name (System.Text.Json, case-insensitive;
    a repeated property keeps its last value): (name as written, value)."""
    if not isinstance(doc, dict):
        raise _conversion(path, target)
    return {k.lower(): (k, v) for k, v in doc.items()}


def _text(props: dict[str, tuple[str, Any]], key: str) -> str | None:
    name, value = props.get(key.lower(), (key, None))
    if value is not None and not isinstance(value, str):
        raise _conversion(f"$.{name}", "System.String")
    return value


def parse_group_update(raw: bytes) -> GroupUpdate:
    """The request bound and validated as ASP.NET does, or the 400 the server answers (the
    public model-state error, every DataAnnotations problem keyed by its path), raised as
    ``HttpError``."""
    if not raw.strip():
        raise HttpError(public_error(400, MODEL_STATE_INVALID, {"": ["Body is empty."]}))
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(
            public_error(400, MODEL_STATE_INVALID, {"$": [f"The input is not valid JSON. {exc}"]})
        ) from None
    props = _object(doc, "$", _GROUP_MODEL)
    name = _text(props, "name")
    external_id = _text(props, "externalId")
    coll_name, raw_collections = props.get("collections", ("collections", None))
    collections: list[dict[str, Any]] | None = None
    required: list[tuple[str, Any]] = []
    if raw_collections is not None:
        if not isinstance(raw_collections, list):
            raise _conversion(f"$.{coll_name}", _ASSOCIATIONS)
        collections = []
        for i, item in enumerate(raw_collections):
            here = f"$.{coll_name}[{i}]"
            entry = _object(item, here, _ASSOCIATION)
            id_name, cid = entry.get("id", ("id", None))
            if cid is not None and (not isinstance(cid, str) or not _GUID_D.match(cid)):
                raise _conversion(f"{here}.{id_name}", _NULLABLE_GUID)
            flags: dict[str, bool | None] = {}
            for flag in ("readOnly", "hidePasswords", "manage"):
                flag_name, value = entry.get(flag.lower(), (flag, None))
                if value is not None and not isinstance(value, bool):
                    raise _conversion(f"{here}.{flag_name}", _NULLABLE_BOOL)
                flags[flag] = value
            required += [
                (f"Collections[{i}].Id", cid),
                (f"Collections[{i}].ReadOnly", flags["readOnly"]),
            ]
            collections.append(
                {
                    "id": str(uuid.UUID(cid)) if cid is not None else None,
                    "readOnly": flags["readOnly"],
                    "hidePasswords": bool(flags["hidePasswords"]),
                    "manage": bool(flags["manage"]),
                }
            )
    errors: dict[str, list[str]] = {}
    if blank(name):
        errors["Name"] = ["The Name field is required."]
    for prop, value in (("Name", name), ("ExternalId", external_id)):
        if value is not None and _net_length(value) > _LIMITS[prop]:
            text = f"The field {prop} must be a string with a maximum length of {_LIMITS[prop]}."
            errors.setdefault(prop, []).append(text)
    for key, value in required:
        if value is None:
            errors[key] = [f"The {key.rsplit('.', 1)[1]} field is required."]
    if errors:
        raise HttpError(public_error(400, MODEL_STATE_INVALID, errors))
    assert name is not None
    return GroupUpdate(name, external_id, collections)
