"""Command line: ``bwsync sync|plan|check|state|config|version|demo``.

Exit codes: 0 when the run did what it had to; otherwise the ``exit_code`` of the error's class
in the tree ``bwsync.errors`` draws (2 configuration … 7 stopped by SIGTERM/SIGINT), read from
the type, never written here as a number; 1 for an error outside the tree (a bug). A second
stop signal ends the process at once with 128 + its number (``bwsync.stop``).

Output: logs (JSON lines or console) go to stderr; what a command *answers* (a plan, a state
document, check results) goes to stdout, so ``bwsync plan --output json > plan.json`` works.
Every message printed goes through the masking boundary (``_say``/``_complain``, which call
``bwsync.redact.redact``): check lines, errors, warnings; ``bwsync.output`` does the same for
the plan's notes and safety reasons.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from bwsync import __version__, logs
from bwsync.config import Settings, env_name, parse_duration
from bwsync.errors import (
    EXIT_OK,
    BwsyncError,
    ConfigError,
    DirectoryError,
    Interrupted,
    SafetyLimitError,
)
from bwsync.logs import event
from bwsync.output import plan_document, print_plan_text
from bwsync.plan import OWNERS_UNSEEN, stateless_refusal
from bwsync.redact import redact, redact_data, remember_settings
from bwsync.run import ClientFactory, Outcome, RunOptions, default_client, execute
from bwsync.settings import load_settings
from bwsync.stop import WRAP_UP_METRICS_SECONDS, StopRequest, on_signals, release_early
from bwsync.summary import summary

if TYPE_CHECKING:
    from bwsync.model import OrgGroup


def _say(text: str) -> None:
    """Print one line of a command's answer on stdout, masked."""
    print(redact(text))


def _complain(text: str) -> None:
    """Print one line of an error or warning on stderr, masked."""
    print(redact(text), file=sys.stderr)


def _allowance(text: str) -> int:
    """``--allow-removals N``: a count, so never negative."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the allowance cannot be negative")
    return value


def _duration(text: str) -> float:
    """``--every``: the same durations as the settings (``bwsync.config.parse_duration``)."""
    try:
        value = parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 1h") from None
    if value < 1:
        raise argparse.ArgumentTypeError("the interval must be at least 1s")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bwsync",
        description="Keep a Bitwarden organization in step with a directory. Settings come "
        "from BWSYNC_* environment variables and the secrets directory.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("sync", help="one sync pass (the container's default)")
    s.add_argument(
        "--force",
        action="store_true",
        help="ignore the stored hash and incremental state; fetch and apply all",
    )
    s.add_argument(
        "--allow-removals",
        type=_allowance,
        metavar="N",
        help="allow up to N members to lose access (removed, revoked, or in groups that left "
        "the directory) for this run, whatever the limits",
    )
    s.add_argument(
        "--allow-emptied-groups",
        type=_allowance,
        metavar="N",
        help="allow up to N synced groups to be emptied or deleted for this run, whatever "
        f"{env_name('sync', 'max_emptied_groups')} says (--allow-removals does not lift it)",
    )
    s.add_argument(
        "--every",
        type=_duration,
        metavar="INTERVAL",
        help="loop mode: sync every INTERVAL (e.g. 15m), serving /metrics",
    )
    s.add_argument(
        "--detail",
        action="store_true",
        help="also plan group membership changes (one request per group)",
    )
    pl = sub.add_parser("plan", help="show what a sync would change; writes nothing")
    pl.add_argument(
        "--output",
        choices=["text", "json"],
        default=None,
        help="text (a table; the default on a terminal) or json",
    )
    pl.add_argument("--force", action="store_true", help="plan as if the hash had changed")
    pl.add_argument(
        "--detail",
        action="store_true",
        help="include group membership changes (one request per group)",
    )
    pl.add_argument(
        "--allow-removals",
        type=_allowance,
        metavar="N",
        help="check the plan against this removal allowance instead of the limits",
    )
    pl.add_argument(
        "--allow-emptied-groups",
        type=_allowance,
        metavar="N",
        help="check the plan against this allowance of emptied or deleted groups instead of "
        f"{env_name('sync', 'max_emptied_groups')}",
    )
    pl.add_argument(
        "--directory-only",
        action="store_true",
        help="read the directory alone and list what the import would carry; Bitwarden is "
        "not contacted and no API key is needed",
    )
    c = sub.add_parser("check", help="check settings, directory, Bitwarden and state, each alone")
    c.add_argument(
        "--offline", action="store_true", help="check the settings only; contact nothing"
    )
    c.add_argument(
        "--read-only",
        action="store_true",
        help="only read the state store: leave out its write test, for an identity that may "
        "only read it (the chart's `helm test` pod)",
    )
    st = sub.add_parser("state", help="show or clear the stored state")
    st.add_argument("action", choices=["show", "clear"])
    cf = sub.add_parser("config", help="settings tools")
    cfs = cf.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cfs.add_parser("reference", help="print the settings table (Markdown) from the models")
    fb = cfs.add_parser("from-bwdc", help="convert a bwdc data.json to bwsync settings")
    fb.add_argument("data_file", type=Path, metavar="PATH/data.json")
    fb.add_argument(
        "--format",
        choices=["env", "helm"],
        default="env",
        help="an env file (default) or a Helm values file",
    )
    sub.add_parser("version", help="print the version")
    d = sub.add_parser(
        "demo",
        help="a sync of the built-in demo directory against a local "
        "Bitwarden stand-in; needs nothing else",
    )
    d.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the stand-in running afterwards (Ctrl-C to stop)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "sync"
    if command not in ("sync", "plan"):
        release_early()  # not a run: a stop signal ends it as it ends any process
    if command == "version":
        print(f"bwsync {__version__}")
        return EXIT_OK
    if command == "config":
        return cmd_config(args)
    if command == "demo":
        from bwsync.demo.run import run_demo

        return run_demo(keep_running=args.keep_running)
    try:
        settings = load_settings(api_key=needs_api_key(command, args))
    except ConfigError as exc:
        logs.setup(None, "info")
        if command == "check":
            for problem in exc.problems:
                _say(f"FAIL  settings: {problem}")
            return exc.exit_code
        _complain(f"bwsync: {exc}")
        if command == "sync":
            _report_config_error(exc)
        return exc.exit_code
    remember_settings(settings)
    logs.setup(settings.log.format, settings.log.level)
    try:
        if command == "check":
            return cmd_check(settings, offline=args.offline, read_only=args.read_only)
        if command == "state":
            return cmd_state(settings, args.action)
        with paused_gc(), on_signals(StopRequest(settings.stop_grace_seconds)) as stop:
            if command == "plan":
                return cmd_plan(settings, args, stop)
            return cmd_sync(settings, args, stop)
    except BwsyncError as exc:
        event("error", logging.ERROR, error=str(exc), exit_code=exc.exit_code)
        _complain(f"bwsync: {exc}")
        return exc.exit_code
    except Exception as exc:
        logs.LOGGER.exception("unexpected error: %s", type(exc).__name__)
        return BwsyncError.exit_code  # outside the tree: a bug


def needs_api_key(command: str, args: argparse.Namespace) -> bool:
    """Whether ``command`` talks to Bitwarden, so that the settings pass refuses a missing
    organization API key before anything is contacted: ``sync``, ``plan`` (but
    ``plan --directory-only``) and ``check`` — offline too, since it answers for ``sync``.
    ``state`` touches only the state store."""
    if command == "plan":
        return not args.directory_only
    return command in ("sync", "check")


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector, off for a pass (or, in loop mode, between the explicit
    collections after each pass), and back as it was afterwards.

    A pass builds several hundred thousand acyclic objects (entries, records, import bodies,
    the member list) that reference counting frees; the collector walked them over and over
    for nothing (0.1-0.3 s on 100,000 users). It resumes only once the pass's objects are gone
    (the command has returned), so its first collection has little left to walk."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _report_config_error(exc: ConfigError) -> None:
    """A sync that cannot start still records ``config_error`` in the metrics, when the metrics
    settings themselves are readable: a broken Secret at 3 a.m. must page someone."""
    from bwsync.metrics_delivery import deliver
    from bwsync.model import RunReport
    from bwsync.settings import metrics_settings_only

    found = metrics_settings_only()
    if found is None:
        return
    metrics_settings, profile, source = found
    now = time.time()
    # the state was not read: the metrics keep the last-success time they hold
    report = RunReport(
        profile=profile, source=source, started=now, finished=now, last_success_known=False
    )
    report.failed(exc)
    for warning in deliver(report, metrics_settings):
        _complain(f"bwsync: warning: {warning}")


def _deliver(settings: Settings, outcome: Outcome, stop: StopRequest | None = None) -> None:
    """The run's metrics; after a stop request, the push within the time the wrap-up leaves
    it (``StopRequest.wrap_up``), so that a Pushgateway that does not answer cannot keep the
    process past the pod's ``terminationGracePeriodSeconds``."""
    if not settings.metrics.delivered:
        return  # prometheus-client is 30 ms of imports
    from bwsync.metrics_delivery import deliver

    bound = None
    if stop is not None:
        bound = functools.partial(stop.wrap_up, cap=WRAP_UP_METRICS_SECONDS, name="metrics")
    for warning in deliver(outcome.report, settings.metrics, bound=bound):
        event("metrics_not_delivered", logging.WARNING, warning=warning)


def _one_sync(
    settings: Settings,
    args: argparse.Namespace,
    stop: StopRequest,
    client_factory: ClientFactory = default_client,
) -> Outcome:
    outcome = execute(
        settings,
        RunOptions(
            command="sync",
            force=args.force,
            allow_removals=args.allow_removals,
            allow_emptied_groups=args.allow_emptied_groups,
            detail=args.detail,
        ),
        client_factory=client_factory,
        stop=stop,
    )
    report = outcome.report
    event(
        "summary",
        logging.INFO
        if report.failure is None
        else logging.WARNING
        if issubclass(report.failure, Interrupted)
        else logging.ERROR,
        **summary(report),
    )
    _deliver(settings, outcome, stop)
    return outcome


def cmd_sync(settings: Settings, args: argparse.Namespace, stop: StopRequest) -> int:
    """One pass, or loop mode (``--every``): passes until a stop request, which ends the pass
    under way as any (``bwsync.stop``) or the wait between two. Loop mode then exits with the
    code of the pass the stop came in (7 when it interrupted it; its own code when it failed
    of something else first, or succeeded), or 0 when it came between two passes."""
    if not args.every:
        outcome = _one_sync(settings, args, stop)
        if outcome.report.error:
            _complain(f"bwsync: {outcome.report.error}")
        return outcome.report.exit_code
    from bwsync.bitwarden import TokenCache
    from bwsync.metrics_server import MetricsServer

    # One access token for every pass until it is about to expire: each token request counts
    # against Vaultwarden's login rate limit.
    client_factory = functools.partial(default_client, tokens=TokenCache())
    server = MetricsServer(settings.metrics.listen)
    server.start()
    try:
        while not stop.requested:
            started = time.monotonic()
            outcome = _one_sync(settings, args, stop, client_factory)
            server.update(outcome.report)
            failure = outcome.report.failure
            server.set_healthy(failure is None)
            # A wrong setting will not fix itself, a stop request is for the loop too: the
            # error's type says whether another pass could help (``BwsyncError.ends_loop``).
            if failure is not None and failure.ends_loop:
                return outcome.report.exit_code
            if stop.requested:  # the stop came during this pass: the loop ends with its result
                return outcome.report.exit_code
            del outcome
            gc.collect()  # what the pass left in cycles (the collector is paused: paused_gc)
            stop.wait(max(0.0, args.every - (time.monotonic() - started)))
    finally:
        server.stop()
    return EXIT_OK


def cmd_plan(settings: Settings, args: argparse.Namespace, stop: StopRequest) -> int:
    outcome = execute(
        settings,
        RunOptions(
            command="plan",
            force=args.force,
            detail=args.detail,
            allow_removals=args.allow_removals,
            allow_emptied_groups=args.allow_emptied_groups,
            bitwarden=not args.directory_only,
        ),
        stop=stop,
    )
    fmt = args.output or ("text" if sys.stdout.isatty() else "json")
    report = outcome.report
    if report.failure is not None and not issubclass(report.failure, SafetyLimitError):
        _complain(f"bwsync: {report.error}")
        return report.exit_code
    try:
        if fmt == "json":
            document = orjson.dumps(plan_document(outcome), option=orjson.OPT_INDENT_2)
            sys.stdout.buffer.write(document)
            sys.stdout.write("\n")
        else:
            print_plan_text(outcome)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (`bwsync plan | head`): not an error of the plan. Later
        # writes (the final flush) go nowhere instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return report.exit_code


def cmd_check(settings: Settings, *, offline: bool, read_only: bool = False) -> int:
    """Each side on its own line, as ``sync`` will need it. The settings pass (files, modules,
    API key) has run already: a problem there printed ``FAIL settings`` lines and exit 2
    before this. Exit: 3 directory, 4 Bitwarden, 5 state, the first failing side's code.
    ``read_only`` leaves out the state's write test, for an identity other than the sync's
    that may only read (the chart's test pod): its answer would not be the sync's."""
    from bwsync.cleartext import exposures

    _say(f"ok    settings ({settings.source} source, profile {settings.profile})")
    for exposure in exposures(settings):
        _say(f"WARN  settings: {exposure.setting}: {exposure.text}")
    if offline:
        return EXIT_OK
    from bwsync.bitwarden import BitwardenClient
    from bwsync.sources import build_source
    from bwsync.state import open_store

    code = 0
    unlisted = False
    source = build_source(settings)
    for result in source.check():
        _say(f"{'ok  ' if result.ok else 'FAIL'}  directory: {result.name}: {result.detail}")
        if not result.ok:
            code = code or DirectoryError.exit_code
    try:
        with BitwardenClient(settings.bitwarden) as client:
            client.check_token()
            _say(f"ok    bitwarden: token from {settings.bitwarden.resolved_identity_url}")
            groups = client.list_groups()
        if groups is not None:
            _say("ok    bitwarden: members and groups can be listed (plans see the server)")
        else:
            unlisted = True
            _say(
                "note  bitwarden: the server has no member or group list endpoints "
                "(Vaultwarden?): plans are made against bwsync's memory of what it synced; "
                f"{OWNERS_UNSEEN} ({len(settings.sync.protected)} listed)"
            )
        if settings.sync.remove_missing and settings.sync.groups:
            _check_group_endpoints(groups, settings)
    except BwsyncError as exc:
        _say(f"FAIL  bitwarden: {exc}")
        code = code or exc.exit_code
    store = open_store(settings.state)
    try:
        if read_only:
            store.load()
            verified = "readable (write not tested: --read-only)"
        else:
            verified = store.check()
        _say(f"ok    state: {store.description} {verified}")
    except BwsyncError as exc:
        _say(f"FAIL  state: {exc}")
        code = code or exc.exit_code
    refusal = stateless_refusal(settings.sync) if settings.state.backend == "none" else None
    if unlisted and refusal is not None:
        _say(f"FAIL  state: {refusal}")
        code = code or ConfigError.exit_code
    return code


def _check_group_endpoints(groups: list[OrgGroup] | None, settings: Settings) -> None:
    """With ``remove_missing``, groups that leave the directory are emptied or deleted through
    the group endpoints: say whether this server has them (Vaultwarden does not; ``groups`` is
    then ``None``)."""
    from bwsync.plan import NO_GROUP_ENDPOINTS

    if groups is None:
        _say(f"note  bitwarden: {NO_GROUP_ENDPOINTS}")
        return
    synced = sum(1 for g in groups if g.synced)
    fate = "emptied" if settings.sync.stale_groups == "empty" else "deleted"
    _say(
        f"ok    bitwarden: group endpoints ({len(groups)} groups, {synced} synced); synced "
        f"groups that leave the directory are {fate} ({env_name('sync', 'stale_groups')})"
    )


def cmd_config(args: argparse.Namespace) -> int:
    if args.config_command == "reference":
        from bwsync.reference import settings_table

        sys.stdout.write(settings_table())
        return EXIT_OK
    from bwsync.bwdc_config import from_bwdc

    try:
        text, warnings = from_bwdc(args.data_file, args.format)
    except ConfigError as exc:
        _complain(f"bwsync: {exc}")
        return exc.exit_code
    sys.stdout.write(text)
    for warning in warnings:
        _complain(f"bwsync: warning: {warning}")
    return EXIT_OK


def cmd_state(settings: Settings, action: str) -> int:
    from dataclasses import asdict

    from bwsync.state import open_store

    store = open_store(settings.state)
    if action == "show":
        from bwsync.memory import describe

        doc = store.load()
        # masked again: a document written by an older version may hold what this one masks
        shown = redact_data(asdict(doc))
        shown["memory"] = describe(doc.memory)  # counts and size, not every email
        sys.stdout.buffer.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2))
        sys.stdout.write("\n")
        return EXIT_OK
    store.clear()
    _say(f"cleared {store.description}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
