"""One measurement in a fresh process, so peak RSS belongs to it alone; prints one JSON line
with wall seconds, this process's CPU seconds (steadier than wall time on a shared machine:
the rest of the wall time is slapd working or other load) and peak RSS.

``python -m tests.bench.measure MODE ENGINE URL BIND_DN PASSWORD BASE_DN`` where MODE is
``bare`` (the engine's own paged search of the same entries and attributes the source asks
for, results dropped page by page) or ``fetch`` (``LdapSource.fetch``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings
from typing import Any

from bwsync.config import LdapSettings, SyncSettings
from bwsync.sources.base import FetchRequest
from bwsync.sources.ldap import LdapSource, SearchPlan

PAGE = 1000


def bare_python_ldap(url: str, dn: str, pw: str, searches: list[tuple[str, str, list[str]]]) -> int:
    import ldap
    from ldap.controls import SimplePagedResultsControl

    conn = ldap.initialize(url)
    conn.simple_bind_s(dn, pw)
    n = 0
    for base, flt, attrs in searches:
        ctrl = SimplePagedResultsControl(True, size=PAGE, cookie="")
        while True:
            msgid = conn.search_ext(base, ldap.SCOPE_SUBTREE, flt, attrs, serverctrls=[ctrl])
            _, page, _, rctrls = conn.result3(msgid)
            n += len(page)
            cookie = next((c.cookie for c in rctrls if c.controlType == ctrl.controlType), b"")
            if not cookie:
                break
            ctrl.cookie = cookie
    conn.unbind_s()
    return n


def bare_ldap3(url: str, dn: str, pw: str, searches: list[tuple[str, str, list[str]]]) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ldap3
    host, port = url.rsplit(":", 1)
    server = ldap3.Server(host.split("//")[1], port=int(port), get_info=ldap3.NONE)
    conn = ldap3.Connection(server, dn, pw, auto_bind=True, return_empty_attributes=False)
    n = 0
    for base, flt, attrs in searches:
        for _entry in conn.extend.standard.paged_search(
            base, flt, attributes=attrs, paged_size=PAGE, generator=True
        ):
            n += 1
    conn.unbind()
    return n


def main(argv: list[str]) -> None:
    mode, engine, url, dn, pw, base = argv
    settings = LdapSettings(
        url=url,
        bind_dn=dn,
        bind_password=pw,
        base_dn=base,
        engine=engine,
        page_size=PAGE,
        active_directory="false",
    )
    sync = SyncSettings()
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = before.ru_utime + before.ru_stime
    start = time.perf_counter()
    result: dict[str, Any] = {"mode": mode, "engine": engine}
    if mode == "bare":
        plan = SearchPlan.resolve(settings, sync, False)
        # The bench's groups list members by DN, so the source leaves the users' uid out
        # (LdapSource.fetch reads the groups first to know); the bare search asks the same.
        searches = [
            (plan.group_base, plan.group_filter, plan.group_attributes(plan.member_attribute)),
            (plan.user_base, plan.user_filter, plan.user_attributes(uid=False)),
        ]
        fn = bare_python_ldap if engine == "python-ldap" else bare_ldap3
        result["entries"] = fn(url, dn, pw, searches)
    else:
        d = LdapSource(settings, sync).fetch(FetchRequest())
        result["users"] = len(d.users or ())
        result["groups"] = len(d.groups or ())
        result["memberships"] = sum(len(g.user_member_external_ids) for g in d.groups or ())
    result["seconds"] = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime - cpu_start
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
