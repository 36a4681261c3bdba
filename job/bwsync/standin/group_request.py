"""The body of ``PUT /public/groups/{id}/member-ids`` bound as the official server binds it.

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

Only the standard library and orjson: the demo ships this module.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson

from bwsync.standin.http import HttpError, public_error
from bwsync.standin.import_request import MODEL_STATE_INVALID

__all__ = ["parse_member_ids"]

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
