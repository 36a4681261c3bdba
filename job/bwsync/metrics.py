"""Prometheus metrics of one run, and their delivery: Pushgateway, textfile, or ``/metrics``.

Every value comes from the run's ``RunReport``, so the metrics, the summary log line and the
state's ``last_run`` cannot disagree. Nothing here touches prometheus-client's global
registry: ``build_registry`` returns a fresh ``CollectorRegistry`` per run (STYLE.md, Metrics),
which ``deliver`` pushes and/or writes, and which loop mode's ``MetricsServer`` serves.

Metrics
-------
Every series carries ``profile`` (the sync profile) and ``source`` (``ldap``, ``file`` …);
other labels are small fixed sets named by the code, never data from the directory.

``bwsync_last_success_timestamp_seconds``
    Epoch seconds when a run of this profile last ended in ``success`` or ``no_change``.
    Carried from the state through failed runs, so ``time() - this`` is always "time since
    the last success". ``0`` when the profile has never succeeded (so that alert fires).
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
``bwsync_bitwarden_requests_total{endpoint,code}``
    Requests made to Bitwarden during this run, by endpoint name and HTTP status (``0`` for a
    transport error: timeout, refused connection). Counts restart with every run.
``bwsync_retries_total``
    Bitwarden requests retried during this run (429, 5xx, transport errors).
``bwsync_directory_requests_total{code}``
    HTTP requests a cloud directory source (Entra, Google, Okta, OneLogin) made during this
    run, token requests and retries included, by HTTP status (``0``: no response).
``bwsync_directory_retries_total``
    Those requests that were retries (429, 5xx, Google's quota answers, transport errors).
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

Delivery
--------
``deliver`` pushes to ``BWSYNC_METRICS__PUSHGATEWAY_URL`` and/or writes
``BWSYNC_METRICS__TEXTFILE_PATH``, after every run including failed ones. A delivery problem is
returned as a warning and never fails the sync: the directory sync is what matters, and the
``BwsyncNoRecentSuccess`` alert catches metrics that stop arriving. The push is a PUT of the
whole group {job="bwsync", profile=…} (no ``instance``), with basic auth and a CA bundle from
``BWSYNC_METRICS__PUSHGATEWAY_*``; the textfile is replaced atomically (give each profile its
own ``.prom`` file: each write replaces the whole file). ``sync --every`` serves
the latest run on ``BWSYNC_METRICS__LISTEN`` (``/metrics``, ``/healthz``) with
``MetricsServer``: loopback (``127.0.0.1:9464``) unless the setting says otherwise, each
connection closed after ``HANDLER_TIMEOUT`` seconds of silence, at most ``MAX_CONNECTIONS``
served at once (more are closed at once), and its errors logged as JSON events, never as
tracebacks.

No free text is exported: every label value is a fixed set chosen by the code (results,
stages, kinds, actions, skip reasons, endpoint names) or a validated setting (profile), so no
error message, and no secret in one, can reach a metric.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import ssl
import tempfile
import threading
import typing
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socket import AF_INET6
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bwsync import __version__
from bwsync.changes import ACTIONS, APPLYING
from bwsync.config import MetricsSettings, env_name, split_listen
from bwsync.errors import SUCCESS_RESULTS, ConfigError, RunResult
from bwsync.logs import event
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
        "bitwarden_requests_total",
        "retries_total",
        "directory_requests_total",
        "directory_retries_total",
        "unsent_batches",
        "build_info",
    )
)
#: Seconds one push may take. A CronJob must not hang on a gateway that is down; 10 s is
#: ample for one small PUT inside a cluster.
PUSH_TIMEOUT = 10.0
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
    last_success = r.last_success_timestamp or 0.0
    ended = r.finished or r.started
    if completed and last_success < r.started:
        # The run did not record its own success time (the state's is older): its end is that
        # time. When it did, that recorded value is used as is, so the next failed run, which
        # carries it from the state, exports exactly the same number.
        last_success = ended

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
    requests = CounterMetricFamily(
        PREFIX + "bitwarden_requests",
        "Bitwarden requests made by the last run, by endpoint and HTTP status (0: no response).",
        labels=[*_LABELS, "endpoint", "code"],
    )
    for (endpoint, code), n in sorted(r.requests.items()):
        requests.add_metric([*base, endpoint, str(code)], float(n))
    yield requests
    retries = CounterMetricFamily(
        PREFIX + "retries", "Bitwarden requests retried by the last run.", labels=_LABELS
    )
    retries.add_metric(base, float(r.retries))
    yield retries
    directory = CounterMetricFamily(
        PREFIX + "directory_requests",
        "HTTP requests a cloud directory source made in the last run, by HTTP status "
        "(0: no response).",
        labels=[*_LABELS, "code"],
    )
    for code, n in sorted(r.directory_requests.items()):
        directory.add_metric([*base, str(code)], float(n))
    yield directory
    directory_retries = CounterMetricFamily(
        PREFIX + "directory_retries",
        "Cloud directory requests retried by the last run.",
        labels=_LABELS,
    )
    directory_retries.add_metric(base, float(r.directory_retries))
    yield directory_retries
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


def build_registry(report: RunReport) -> CollectorRegistry:
    """A fresh registry holding every ``bwsync_`` metric of this run (never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report))
    return registry


# --- delivery ---------------------------------------------------------------------------------


def _redact(url: str) -> str:
    """The URL without user:password, fit for a warning or a request line."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


PushHandler = Callable[[str, str, float | None, list[tuple[str, str]], bytes], Callable[[], None]]


def push_handler(
    *, ca_file: Path | None = None, username: str | None = None, password: str | None = None
) -> PushHandler:
    """A ``push_to_gateway`` handler with basic auth and a CA bundle.

    Proxy variables are ignored on purpose: a Pushgateway lives inside the cluster, while
    ``HTTPS_PROXY`` is usually set for egress to Bitwarden and its ``NO_PROXY`` rarely lists the
    monitoring namespace. Redirects are not followed for PUT (urllib's default), so a body is
    never replayed to another host.
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    auth: str | None = None
    if username is not None:
        token = b64encode(f"{username}:{password or ''}".encode()).decode()
        auth = "Basic " + token

    def handler(
        url: str,
        method: str,
        timeout: float | None,
        headers: list[tuple[str, str]],
        data: bytes,
    ) -> Callable[[], None]:
        def handle() -> None:
            request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only, checked in push()
            for name, value in headers:
                request.add_header(name, value)
            if auth is not None:
                request.add_header("Authorization", auth)
            opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
            )
            with opener.open(request, timeout=timeout) as response:
                if response.status >= 400:  # urllib raises for these; kept as a guard
                    raise OSError(f"HTTP {response.status} {response.reason}")

        return handle

    return handler


def push(registry: CollectorRegistry, settings: MetricsSettings, *, job: str, profile: str) -> None:
    """PUT the registry to the Pushgateway under {job, profile}, replacing that whole group.

    PUT, not POST: a series the previous run had and this one lacks (a stage not reached, a skip
    reason gone) must disappear. No ``instance`` in the key: a CronJob's pod name changes every
    run, and a group per pod would pile up forever. Credentials may also come as
    ``https://user:password@host`` in the URL; the separate settings win.
    """
    url = settings.pushgateway_url
    if not url:
        return
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {parts.scheme!r}; use http:// or https://")
    username, password = parts.username, parts.password
    if settings.pushgateway_username is not None:
        username = settings.pushgateway_username
        secret = settings.pushgateway_password
        password = secret.get_secret_value() if secret is not None else None
    handler = push_handler(
        ca_file=settings.pushgateway_ca_file, username=username, password=password
    )
    push_to_gateway(
        _redact(urlunsplit(parts)),
        job=job,
        registry=registry,
        grouping_key={"profile": profile},
        timeout=PUSH_TIMEOUT,
        handler=handler,
    )


def write_textfile(registry: CollectorRegistry, path: Path) -> None:
    """Write the registry in node_exporter's textfile format, atomically.

    The text goes to a temporary file in the same directory (so ``os.replace`` is a rename on one
    filesystem) whose name does not end in ``.prom``, so the collector never reads half a file.
    Mode 0644: node_exporter usually runs as another user.
    """
    data = generate_latest(registry)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def deliver(report: RunReport, settings: MetricsSettings, job: str = "bwsync") -> list[str]:
    """Push and/or write this run's metrics as the settings ask; return warnings, never raise.

    Called after every run, failed ones included, so the failure itself reaches the alerts.
    """
    warnings: list[str] = []
    if not settings.delivered:
        return warnings
    registry = build_registry(report)
    if settings.pushgateway_url:
        try:
            push(registry, settings, job=job, profile=report.profile)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            warnings.append(
                f"metrics not pushed to the Pushgateway {_redact(settings.pushgateway_url)}: "
                f"{_reason(exc)}"
            )
    if settings.textfile_path is not None:
        path = settings.textfile_path
        if not path.name.endswith(".prom"):
            warnings.append(
                f"metrics textfile {path} does not end in .prom; "
                "node_exporter's textfile collector will ignore it"
            )
        try:
            write_textfile(registry, path)
        except (OSError, ValueError) as exc:
            warnings.append(f"metrics textfile {path} not written: {_reason(exc)}")
    return warnings


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason: urllib wraps the interesting error in ``.reason``."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        inner = exc.reason
        return _reason(inner) if isinstance(inner, BaseException) else str(inner)
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror
    return str(exc) or type(exc).__name__


# --- loop mode --------------------------------------------------------------------------------


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) → (host, port)."""
    try:
        return split_listen(listen)
    except ValueError as exc:
        raise ConfigError(f"{env_name('metrics', 'listen')}: {exc} (got {listen!r})") from None


#: Seconds a connection may stay silent (no request sent, the response not read) before it is
#: closed. A scrape takes milliseconds; a half-open connection must not hold a thread for ever.
HANDLER_TIMEOUT = 10.0
#: Connections served at once; one more is closed as soon as it is accepted. Prometheus scrapes
#: one at a time and the kubelet's probes add one or two.
MAX_CONNECTIONS = 16


class _Server(ThreadingHTTPServer):
    """One thread per connection, but at most ``max_connections`` at once; errors go to the
    JSON log instead of socketserver's traceback on stderr."""

    daemon_threads = True
    #: listen backlog: socketserver's 5 drops the SYNs of a burst, each retried a second later
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any, max_connections: int) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0
        """Connections closed unanswered because every slot was taken (tests, debugging)."""
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                event(
                    "metrics_connections_refused",
                    logging.WARNING,
                    refused=self.refused,
                    limit=MAX_CONNECTIONS,
                    note="more connections than the metrics server serves at once; "
                    "the extra ones were closed",
                )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # the thread never started
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is routine (debug); anything else is a warning.
        Never a traceback: stderr carries JSON lines only."""
        import sys

        exc = sys.exc_info()[1]
        routine = isinstance(exc, ConnectionError | TimeoutError | socket.timeout)
        event(
            "metrics_request_failed",
            logging.DEBUG if routine else logging.WARNING,
            client=str(client_address[0]) if client_address else "",
            error=f"{type(exc).__name__}: {exc}" if exc is not None else "unknown",
        )


class _Server6(_Server):
    address_family = AF_INET6


class MetricsServer:
    """``/metrics`` and ``/healthz`` for ``sync --every`` loop mode, on a background thread.

    It serves the latest run's registry; ``update`` swaps the report in one assignment, so a
    scrape sees one run or the next, never a mix. Before the first run ``/metrics`` is empty
    (valid, with no series) and ``/healthz`` is 200: the process is alive and a long first run
    must not get the pod killed by a liveness probe.
    """

    def __init__(
        self,
        listen: str,
        *,
        timeout: float = HANDLER_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.timeout = timeout
        self.max_connections = max_connections
        self._collector = ReportCollector()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._collector)
        self._healthy = True
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound: with port 0 the system picks the port."""
        if self._server is None:
            return self.host, self.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def update(self, report: RunReport) -> None:
        """Serve this run's metrics from now on."""
        self._collector.report = report

    def set_healthy(self, ok: bool) -> None:
        """``/healthz`` answers 200 when ``ok``, 503 otherwise."""
        self._healthy = ok

    def start(self) -> None:
        """Bind and serve in a daemon thread; a bind failure is a ``ConfigError`` (exit 2)."""
        if self._server is not None:
            return
        server_cls = _Server6 if ":" in self.host else _Server
        try:
            server = server_cls((self.host, self.port), self._handler_class(), self.max_connections)
        except OSError as exc:
            raise ConfigError(
                f"{env_name('metrics', 'listen')}: cannot listen on "
                f"{self.host or '*'}:{self.port}: {exc.strerror or exc}"
            ) from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="bwsync-metrics", daemon=True
        )
        self._thread.start()

    @property
    def refused(self) -> int:
        """Connections closed unanswered because ``max_connections`` were being served."""
        return self._server.refused if self._server is not None else 0

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "bwsync"
            timeout = owner.timeout  # socket timeout: a silent client is dropped

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._send(200, content_type, encoder(owner._registry))
                elif path == "/healthz":
                    ok = owner._healthy
                    self._send(200 if ok else 503, "text/plain", b"ok\n" if ok else b"unhealthy\n")
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Silent: scrapes every 15 s would drown the run's own log lines."""

        return Handler
