"""Prometheus metrics of one run: what each series means, and how a ``RunReport`` becomes them.

Every value comes from the run's ``RunReport``, so the metrics, the summary log line and the
state's ``last_run`` cannot disagree. Nothing here touches prometheus-client's global
registry: ``build_registry`` returns a fresh ``CollectorRegistry`` per run (STYLE.md, Metrics),
which ``bwsync.metrics_delivery`` pushes and/or writes after every run, and which loop mode's
``bwsync.metrics_server`` serves on ``/metrics``. This module is the definitions alone: it
opens no socket and writes no file.

Metrics
-------
Every series carries ``profile`` (the sync profile) and ``source`` (``ldap``, ``file`` …);
other labels are small fixed sets named by the code, never data from the directory.

``bwsync_last_success_timestamp_seconds``
    Epoch seconds when a run of this profile last ended in ``success`` or ``no_change``.
    Carried from the state through failed runs, so ``time() - this`` is always "time since
    the last success". ``0`` when the profile has never succeeded (so that alert fires). A run
    that ended before reading the state (a configuration error, an unreadable store) does not
    know it: ``deliver`` carries the value the textfile or the Pushgateway already holds, and
    loop mode the one it served, so a bad setting never resets it to 0.
``bwsync_last_run_timestamp_seconds``
    Epoch seconds when this run ended, whatever its result.
``bwsync_last_run_result{result}``
    One series per result (``success``, ``no_change``, ``failed``, ``safety_stop``,
    ``config_error``, ``interrupted``): 1 for this run's result, 0 for the others.
    ``interrupted``: stopped by SIGTERM/SIGINT, lease given back, exit 7 (``bwsync.stop``).
``bwsync_run_duration_seconds``
    Wall-clock seconds of the whole run.
``bwsync_stage_duration_seconds{stage}``
    Seconds spent per stage (``state_read``, ``fetch``, ``normalize``, ``payload``,
    ``snapshot``, ``plan``, ``lease``, ``apply``, ``verify``, ``state_write``); only the stages
    the run reached.
``bwsync_directory_objects{kind}``
    Objects the directory returned after normalisation, by kind (``users``, ``groups``,
    ``disabled_users``, ``deleted_users``); only the kinds the run got to count.
``bwsync_planned_changes{action}``
    Changes the plan holds, by action: every action of ``bwsync.changes.ACTIONS`` (the table
    in docs/operations.md, "Plan actions"). For a completed run every action has a series (0
    when none), so sums and comparisons never miss one.
``bwsync_applied_changes{action}``
    Changes confirmed applied, by action; the same series but ``skip``, which applies nothing
    (``bwsync.changes.APPLYING``).
``bwsync_applied_differs``
    1 when the server, re-read after applying, does not show what the plan said; else 0.
``bwsync_safety_limit_breached``
    1 when the plan exceeded a safety limit (the run stopped, or would have), else 0.
``bwsync_skipped_entries{reason}``
    Directory entries dropped before the import, by reason (a short name set by the code).
``bwsync_bitwarden_requests{endpoint,code}``
    Requests the last run made to Bitwarden, by endpoint name and HTTP status (``0`` for a
    transport error: timeout, refused connection). A gauge: the value is the last run's, not a
    total since some start (each CronJob run is a new process, and a Pushgateway keeps only the
    last push), so ``rate()`` does not apply; sum it over runs with ``sum_over_time``.
``bwsync_retries``
    Bitwarden requests the last run retried (429, 5xx, transport errors); a gauge, as above.
``bwsync_directory_requests{code}``
    HTTP requests a cloud directory source (Entra, Google, Okta, OneLogin) made during the last
    run, token requests and retries included, by HTTP status (``0``: no response); a gauge.
``bwsync_directory_retries``
    Those requests that were retries (429, 5xx, Google's quota answers, transport errors); a
    gauge.
``bwsync_build_info{version}``
    Always 1; ``version`` is the installed bwsync version.

A Pushgateway adds ``job`` (``bwsync``) and ``profile`` from the grouping key, and its own
``push_time_seconds``/``push_failure_time_seconds``.

Alerts (``helm/bwsync/files/bwsync-rules.yaml``, also the chart's PrometheusRule)
--------------------------------------------------------------------------------
``BwsyncSyncFailing``
    ``last_run_result{result=~"failed|config_error"} == 1``. Not ``interrupted``: a run
    stopped by SIGTERM (a drain, a rollout) is routine, the next one finishes the job; runs
    interrupted again and again stop succeeding, which ``BwsyncNoRecentSuccess`` reports.
``BwsyncNoRecentSuccess``
    ``time() - last_success_timestamp_seconds > 3 * 3600``: three hourly runs missed; the
    threshold (runs times interval) is marked in the file and replaced by the chart.
``BwsyncSafetyStop``
    ``last_run_result{result="safety_stop"} == 1``.
``BwsyncAppliedDiffersFromPlanned``
    ``applied_differs == 1``.

No free text is exported: every label value is a fixed set chosen by the code (results,
stages, kinds, actions, skip reasons, endpoint names) or a validated setting (profile), so no
error message, and no secret in one, can reach a metric.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bwsync import __version__
from bwsync.changes import ACTIONS, APPLYING
from bwsync.errors import SUCCESS_RESULTS, RunResult
from bwsync.model import RunReport

PREFIX = "bwsync_"
#: Every value of ``bwsync_last_run_result{result}``, in a fixed order.
RESULTS: tuple[str, ...] = typing.get_args(RunResult)
#: Names of every metric family this module exports (as written in PromQL).
METRIC_NAMES: frozenset[str] = frozenset(
    PREFIX + n
    for n in (
        "last_success_timestamp_seconds",
        "last_run_timestamp_seconds",
        "last_run_result",
        "run_duration_seconds",
        "stage_duration_seconds",
        "directory_objects",
        "planned_changes",
        "applied_changes",
        "applied_differs",
        "safety_limit_breached",
        "skipped_entries",
        "bitwarden_requests",
        "retries",
        "directory_requests",
        "directory_retries",
        "unsent_batches",
        "build_info",
    )
)
_LABELS = ("profile", "source")


class ReportCollector(Collector):
    """Turns one ``RunReport`` into metric families on each collection.

    A custom collector rather than ``Gauge`` objects: it yields exactly the series the report
    has (no ``_created`` samples, no leftovers from a previous run), and loop mode can swap the
    report it reads without rebuilding a registry.
    """

    def __init__(self, report: RunReport | None = None) -> None:
        self.report = report

    def collect(self) -> Iterable[Metric]:
        report = self.report  # one read: a concurrent swap cannot mix two runs
        if report is None:
            return []
        return list(_families(report))


def _families(r: RunReport) -> Iterator[Metric]:
    base = [r.profile, r.source]

    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily(PREFIX + name, doc, labels=_LABELS)
        g.add_metric(base, value)
        return g

    def by(name: str, doc: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
        g = GaugeMetricFamily(PREFIX + name, doc, labels=[*_LABELS, label])
        for key, value in sorted(values.items()):
            g.add_metric([*base, key], float(value))
        return g

    completed = r.result in SUCCESS_RESULTS
    ended = r.finished or r.started
    last_success = last_success_of(r)
    if last_success is not None:
        # Unknown (the state was not read) is left out rather than exported as 0 ("never"):
        # ``deliver`` carries the previous value in when it can find one.
        yield gauge(
            "last_success_timestamp_seconds",
            "Epoch seconds of the last run that ended in success or no_change (0: never).",
            last_success,
        )
    yield gauge("last_run_timestamp_seconds", "Epoch seconds when the last run ended.", ended)
    yield by(
        "last_run_result",
        "Result of the last run: 1 for its result, 0 for the others.",
        "result",
        {res: float(res == r.result) for res in RESULTS},
    )
    yield gauge("run_duration_seconds", "Wall-clock seconds of the last run.", r.duration)
    yield by(
        "stage_duration_seconds",
        "Seconds the last run spent per stage.",
        "stage",
        r.stage_seconds,
    )
    yield by(
        "directory_objects",
        "Directory objects after normalisation, by kind.",
        "kind",
        r.directory_objects,
    )
    # Once a run has completed, every action has a series (0 when none), so none is missing.
    for name, doc, counts, actions in (
        ("planned_changes", "Changes the plan held, by action.", r.planned, ACTIONS),
        ("applied_changes", "Changes confirmed applied, by action.", r.applied, APPLYING),
    ):
        values = dict.fromkeys(actions, 0) | counts if completed or counts else counts
        yield by(name, doc, "action", values)
    yield gauge(
        "applied_differs",
        "1 when the server, re-read after applying, does not show what was planned.",
        float(r.applied_differs),
    )
    yield gauge(
        "safety_limit_breached",
        "1 when the plan exceeded a safety limit.",
        float(r.safety_breach),
    )
    yield by(
        "skipped_entries",
        "Directory entries dropped before the import, by reason.",
        "reason",
        r.skipped,
    )
    requests = GaugeMetricFamily(
        PREFIX + "bitwarden_requests",
        "Bitwarden requests made by the last run, by endpoint and HTTP status (0: no response).",
        labels=[*_LABELS, "endpoint", "code"],
    )
    for (endpoint, code), n in sorted(r.requests.items()):
        requests.add_metric([*base, endpoint, str(code)], float(n))
    yield requests
    yield gauge("retries", "Bitwarden requests retried by the last run.", float(r.retries))
    directory = GaugeMetricFamily(
        PREFIX + "directory_requests",
        "HTTP requests a cloud directory source made in the last run, by HTTP status "
        "(0: no response).",
        labels=[*_LABELS, "code"],
    )
    for code, n in sorted(r.directory_requests.items()):
        directory.add_metric([*base, str(code)], float(n))
    yield directory
    yield gauge(
        "directory_retries",
        "Cloud directory requests retried by the last run.",
        float(r.directory_retries),
    )
    yield gauge(
        "unsent_batches",
        "Import batches the last run left out because the plan found no change in them.",
        float(r.unsent_batches),
    )
    info = GaugeMetricFamily(
        PREFIX + "build_info",
        "Always 1; labelled with the bwsync version.",
        labels=[*_LABELS, "version"],
    )
    info.add_metric([*base, __version__], 1.0)
    yield info


def last_success_of(r: RunReport) -> float | None:
    """What ``last_success_timestamp_seconds`` says for this run; ``None`` when unknown."""
    completed = r.result in SUCCESS_RESULTS
    if not (completed or r.last_success_known):
        return None
    last_success = r.last_success_timestamp or 0.0
    if completed and last_success < r.started:
        # The run did not record its own success time (the state's is older): its end is that
        # time. When it did, that recorded value is used as is, so the next failed run, which
        # carries it from the state, exports exactly the same number.
        last_success = r.finished or r.started
    return last_success


def build_registry(report: RunReport) -> CollectorRegistry:
    """A fresh registry holding every ``bwsync_`` metric of this run (never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report))
    return registry
