"""A run's metrics leave the process: a push to a Pushgateway and/or a node_exporter textfile.

``deliver`` pushes to ``BWSYNC_METRICS__PUSHGATEWAY_URL`` and/or writes
``BWSYNC_METRICS__TEXTFILE_PATH``, after every run including failed ones. A delivery problem is
returned as a warning and never fails the sync: the directory sync is what matters, and the
``BwsyncNoRecentSuccess`` alert catches metrics that stop arriving. The push is a PUT of the
whole group {job="bwsync", profile=…} (no ``instance``), with basic auth and a CA bundle from
``BWSYNC_METRICS__PUSHGATEWAY_*``; the textfile is replaced atomically (give each profile its
own ``.prom`` file: each write replaces the whole file). What the series are is
``bwsync.metrics``'s; ``sync --every`` also serves them (``bwsync.metrics_server``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from bwsync.config import MetricsSettings
from bwsync.errors import SUCCESS_RESULTS
from bwsync.metrics import PREFIX, build_registry
from bwsync.model import RunReport

#: Seconds one push may take. A CronJob must not hang on a gateway that is down; 10 s is
#: ample for one small PUT inside a cluster.
PUSH_TIMEOUT = 10.0


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
    if not settings.pushgateway_url:
        return
    url, username, password = _gateway(settings)
    handler = push_handler(
        ca_file=settings.pushgateway_ca_file, username=username, password=password
    )
    push_to_gateway(
        url,
        job=job,
        registry=registry,
        grouping_key={"profile": profile},
        timeout=PUSH_TIMEOUT,
        handler=handler,
    )


def _gateway(settings: MetricsSettings) -> tuple[str, str | None, str | None]:
    """The Pushgateway's URL without credentials, and the user and password to send: from
    ``https://user:password@host`` in the URL, the separate settings winning."""
    url = settings.pushgateway_url or ""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {parts.scheme!r}; use http:// or https://")
    username, password = parts.username, parts.password
    if settings.pushgateway_username is not None:
        username = settings.pushgateway_username
        secret = settings.pushgateway_password
        password = secret.get_secret_value() if secret is not None else None
    return _redact(urlunsplit(parts)), username, password


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


def deliver(
    report: RunReport,
    settings: MetricsSettings,
    job: str = "bwsync",
    *,
    bound: Callable[[Callable[[], None]], object] | None = None,
) -> list[str]:
    """Push and/or write this run's metrics as the settings ask; return warnings, never raise.

    Called after every run, failed ones included, so the failure itself reaches the alerts.
    ``bound`` makes the push, and may raise ``TimeoutError`` when it takes too long (after a
    stop request: ``StopRequest.wrap_up``); the local file is written all the same.
    """
    warnings: list[str] = []
    if not settings.delivered:
        return warnings
    if not report.last_success_known and report.result not in SUCCESS_RESULTS:
        report = _with_delivered_last_success(report, settings, job)
    registry = build_registry(report)
    if settings.pushgateway_url:

        def pushed() -> None:
            push(registry, settings, job=job, profile=report.profile)

        try:
            pushed() if bound is None else bound(pushed)
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


def _with_delivered_last_success(
    report: RunReport, settings: MetricsSettings, job: str
) -> RunReport:
    """``report`` carrying the last-success time its previous delivery left, when it can be
    read back: from the textfile, else from the Pushgateway's group (its JSON API). Not found,
    the metric is left out of this delivery — never 0, which would page at once."""
    found: float | None = None
    if settings.textfile_path is not None:
        found = _textfile_last_success(settings.textfile_path, report.profile)
    if found is None and settings.pushgateway_url:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError,
                                 http.client.HTTPException):  # fmt: skip
            found = _pushed_last_success(settings, job, report.profile)
    if found is None:
        return report
    return dataclasses.replace(report, last_success_timestamp=found, last_success_known=True)


def _textfile_last_success(path: Path, profile: str) -> float | None:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    with contextlib.suppress(ValueError):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == PREFIX + "last_success_timestamp_seconds"
                    and sample.labels.get("profile") == profile
                ):
                    return float(sample.value)
    return None


def _pushed_last_success(settings: MetricsSettings, job: str, profile: str) -> float | None:
    """The value the Pushgateway holds for {job, profile}: GET /api/v1/metrics."""
    url, username, password = _gateway(settings)
    request = urllib.request.Request(url.rstrip("/") + "/api/v1/metrics")  # noqa: S310 - http(s) only, checked in _gateway()
    if username is not None:
        token = b64encode(f"{username}:{password or ''}".encode()).decode()
        request.add_header("Authorization", "Basic " + token)
    context = ssl.create_default_context(
        cafile=str(settings.pushgateway_ca_file) if settings.pushgateway_ca_file else None
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(request, timeout=PUSH_TIMEOUT) as response:
        groups = json.loads(response.read())["data"]
    for group in groups:
        labels = group.get("labels", {})
        if labels.get("job") == job and labels.get("profile") == profile:
            family = group.get(PREFIX + "last_success_timestamp_seconds")
            if family:
                return float(family["metrics"][0]["value"])
    return None


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
