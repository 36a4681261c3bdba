"""The official server's import (§3): the controller's checks, then the command that changes
the organization, step by step as §3.4 lays them out.

The steps run in order and are not transactional: each commits before the next runs, so a
request that fails half-way (a duplicated email, a plan without groups) leaves the earlier
steps' changes in place, as the real server does. Request binding and validation are in
``import_request``; what the steps change is ``organization``'s.
"""

from __future__ import annotations

import itertools

from bwsync.model import STATUS_INVITED, STATUS_REVOKED, STATUS_STAGED, TYPE_OWNER, TYPE_USER
from bwsync.standin.http import HttpError, Response, public_error, unhandled
from bwsync.standin.import_request import ImportGroup, OfficialImportModel, blank
from bwsync.standin.organization import Group, Member, Organization, new_id, new_ids

__all__ = ["CLOUD_IMPORT_CAP", "OVERWRITE_NO_MP", "TOO_MUCH_DATA", "OfficialImport"]

TOO_MUCH_DATA = "You cannot import this much data at once."
OVERWRITE_NO_MP = (
    "Sync failed. To proceed, disable the 'Remove and re-add users during next sync' setting "
    "and try again."
)
CLOUD_IMPORT_CAP = 2000


class OfficialImport(Organization):
    """An organization that the official import changes, with the server settings the import
    reads:

    * ``self_hosted``: no 2,000-entry cap (§3.2).
    * ``staged_status``: the server flag that makes ``inviteUsersAfterProvisioning:false``
      create Staged members (§3.1).
    * ``use_directory`` / ``use_groups``: plan features (§3.4 steps 1, 7).
    * ``seats``: seat limit for invites (None = unlimited / autoscale).
    * ``require_confirmed_owner``: refuse invites when the org has no confirmed owner, as the
      real server does (off by default so tests may seed organizations without an owner).

    They are attributes, and may be changed between requests.
    """

    def __init__(
        self,
        *,
        self_hosted: bool = False,
        staged_status: bool = False,
        use_directory: bool = True,
        use_groups: bool = True,
        seats: int | None = None,
        require_confirmed_owner: bool = False,
    ) -> None:
        super().__init__()
        self.self_hosted = self_hosted
        self.staged_status = staged_status
        self.use_directory = use_directory
        self.use_groups = use_groups
        self.seats = seats
        self.require_confirmed_owner = require_confirmed_owner

    def _import_official(self, headers: dict[str, str], raw: bytes) -> Response:
        """The controller (§3.1, §3.2): content type, model binding and validation, the
        arrays it dereferences, the cloud cap; then the command."""
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/json", "text/json") and not ctype.endswith("+json"):
            return Response(415)
        model = OfficialImportModel.parse(raw)
        # Controller: the arrays are used before anything is validated against them (§3.1).
        if model.groups is None or model.members is None:
            raise unhandled()
        if (
            not self.self_hosted
            and not model.large_import
            and (len(model.groups) > CLOUD_IMPORT_CAP or len(model.emails) > CLOUD_IMPORT_CAP)
        ):
            raise HttpError(public_error(400, TOO_MUCH_DATA))
        if any(g.member_external_ids is None for g in model.groups):
            raise unhandled()
        self._run_official_import(model)
        return Response(200)

    def _run_official_import(  # noqa: PLR0915 - §3.4 step by step, kept in one place
        self, model: OfficialImportModel
    ) -> None:
        """§3.4, in order and not transactional: each step commits before the next runs."""
        assert model.groups is not None
        assert model.members is not None
        # 1. plan features
        if not self.use_directory:
            raise HttpError(public_error(400, "Organization cannot use directory syncing."))
        emails, exts = model.emails, model.external_ids
        remove_ids = set(model.removed)
        active_ext: set[str] = set()  # wanted by steps 3 and 4 only: built if they run
        if remove_ids or model.overwrite_existing:
            active_ext = set(exts)
        # 2. existing external members (self._linked: the index, not a scan); a duplicated
        #    externalId makes ToDictionary throw
        if any(x.strip() for x in self._ext_dups):
            raise unhandled()
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
                if not blank(m.external_id)
                and m.external_id not in active_ext
                and m.type != TYPE_OWNER
            ]
            if any(m.no_master_password for m in candidates):
                raise HttpError(public_error(400, OVERWRITE_NO_MP))
            for m in candidates:
                self._delete_member(m, "OrganizationUser_Removed")
        # 5. link by email: members without an externalId adopt an active entry's. The server
        #    builds a dictionary by email; its keys suffice until a member adopts one.
        keys = set(emails)
        if len(keys) < len(emails):
            raise unhandled()  # Dictionary.Add on a duplicate key
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
                raise HttpError(
                    public_error(400, "Organization must have at least one confirmed owner.")
                )
            if self.seats is not None:  # a scan: statuses are not indexed (tests set them)
                occupied = sum(
                    1
                    for m in self._members.values()
                    if m.status not in (STATUS_REVOKED, STATUS_STAGED)
                )
                if occupied + len(new_emails) > self.seats:
                    raise HttpError(public_error(400, "Seat limit has been reached."))
        status = STATUS_STAGED if staged else STATUS_INVITED
        ids = new_ids(len(new_emails))
        new_members = [
            # id, email, external_id, type, status, user_id, name, has_master_password
            Member(i, e, x, TYPE_USER, status, None, None, False)
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
            raise HttpError(public_error(400, "Organization cannot use groups."))
        wanted: dict[str, ImportGroup] = {}
        for g in model.groups:
            assert g.external_id is not None
            if g.external_id in wanted:
                raise unhandled()
            wanted[g.external_id] = g
        existing_groups: dict[str, Group] = {}
        for eg in self._groups.values():
            if not blank(eg.external_id):
                assert eg.external_id is not None
                if eg.external_id in existing_groups:
                    raise unhandled()
                existing_groups[eg.external_id] = eg
        # Every member with an externalId after steps 3-6: self._linked, inlined.
        for ext, g in wanted.items():
            group = existing_groups.get(ext)
            if group is None:
                group = Group(id=new_id(), name=g.name or "", external_id=ext)
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
