"""Reading the organization (members, groups, optionally each group's members) for the plan.

On a large organization this is the run's most expensive request: 100,000 members are 32 MB of
JSON, which the server takes a while to build. ``BackgroundRead`` lets the run start it before
the directory fetch, so the two servers work at the same time; the run only asks for it when
it will need the snapshot whatever the directory holds (see ``_Run._read_early``), because an
unchanged directory must cost no Bitwarden request at all.
"""

from __future__ import annotations

import contextvars
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from bwsync.plan import OrgSnapshot

if TYPE_CHECKING:
    from bwsync.bitwarden import BitwardenClient
    from bwsync.model import OrgGroup


def read_org(client: BitwardenClient, *, detail: bool) -> OrgSnapshot | None:
    """The organization as the list endpoints show it; ``None`` where there are none
    (Vaultwarden). ``detail`` adds one request per synced group for its member ids."""
    members = client.list_members()
    if members is None:
        return None
    groups = client.list_groups() or []
    group_members = None
    if detail:
        group_members = {g.id: client.group_member_ids(g.id) for g in groups if g.synced}
    return OrgSnapshot(members=members, groups=groups, group_member_ids=group_members)


def read_group_members(client: BitwardenClient, org: OrgSnapshot, groups: list[OrgGroup]) -> None:
    """The member ids of these groups (``plan.groups_to_read``: the synced groups the
    directory no longer has, and those it names with no member the organization has) into
    ``org.member_ids_read``: the plan names who loses access through each, and the safety
    limits count them, with or without ``--detail`` (which read them already). A group
    deleted by hand since the group list was read (404) is left out of ``org.groups``."""
    known = org.group_member_ids or {}
    gone: set[str] = set()
    for g in dict.fromkeys(groups):
        if g.id in known:
            continue
        ids = client.group_member_ids(g.id, missing_ok=True)
        if ids is None:
            gone.add(g.id)
        else:
            org.member_ids_read[g.id] = ids
    if gone:
        org.groups = [g for g in org.groups if g.id not in gone]


class BackgroundRead:
    """``read_org`` on a worker thread, the client included: ``connect`` builds it there,
    since loading the default CA bundle into its TLS context costs 30-40 ms that can as well
    overlap the fetch (the run checks an explicit ``BWSYNC_BITWARDEN__CA_FILE`` before it
    starts, so a bad one is still reported before any connection). The client is the worker's
    until ``result`` returns, then the caller's (``client``). The thread is a daemon, so a run
    that fails before it needs the snapshot (an LDAP error) reports at once instead of waiting
    for it; ``close`` then leaves closing the client to the worker."""

    def __init__(self, connect: Callable[[], BitwardenClient], *, detail: bool) -> None:
        self._connect = connect
        self._detail = detail
        self._client: BitwardenClient | None = None
        self._snapshot: OrgSnapshot | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._finished = False
        self._closing = False
        self.seconds = 0.0
        """How long the read itself took (``result`` may have waited less)."""
        # In the caller's context: a stop request of the run (``bwsync.stop.active``) reaches
        # the read's requests too.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._work,),
            name="bwsync-snapshot",
            daemon=True,
        )
        self._thread.start()

    def _work(self) -> None:
        start = time.perf_counter()
        client = None
        try:
            client = self._connect()
            with self._lock:
                self._client = client
                abandoned = self._closing
            if not abandoned:  # the run may have ended while the client was being built
                self._snapshot = read_org(client, detail=self._detail)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - start
            with self._lock:
                self._finished = True
                close = self._closing
            if close and client is not None:
                client.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def client(self) -> BitwardenClient:
        """The client the read used; the caller's once ``result`` has returned."""
        assert self._finished, "result() first"
        assert self._client is not None
        return self._client

    def close(self) -> None:
        """Close the client now, or when the read ends if it is still running (the run is
        over either way); exactly one of this and the worker closes it."""
        with self._lock:
            self._closing = True
            finished, client = self._finished, self._client
        if finished:
            if client is not None:
                client.close()
        elif client is not None:
            client.detach()  # its remaining requests are no longer this run's

    def result(self) -> OrgSnapshot | None:
        """Wait for the read; raise what it raised (a ``BitwardenError`` names the step), once.

        An error is a web of reference cycles: its traceback holds the worker's frames, whose
        locals hold the error, and once raised here it grows through the caller's frames too,
        so the caller's whole run would stay alive until a collection (the CLI pauses the
        collector). So this read lets go of it, and the worker's frames lose their locals
        (their lines stay, for a traceback in the log)."""
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            chained: list[BaseException] = []
            link: BaseException | None = error
            while link is not None and link not in chained:
                chained.append(link)
                traceback.clear_frames(link.__traceback__)
                link = link.__cause__ or link.__context__
            del chained, link
            try:
                raise error
            finally:
                del error  # nor may this frame hold it
        return self._snapshot
