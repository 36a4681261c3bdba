"""Backend selection, settings checks and error wording, without a server."""

from __future__ import annotations

import os
import signal
import ssl
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from bwsync.config import StateSettings
from bwsync.errors import ConfigError, Interrupted, StateConflictError, StateError
from bwsync.settings import load_settings
from bwsync.state import open_store
from bwsync.state.base import NoStateStore, StateDocument
from bwsync.state.configmap import ConfigMapStateStore
from bwsync.state.file import FileStateStore
from bwsync.state.kube import KubeConfig, StaticTokenAuth
from bwsync.state.objectstore import ObjectStateStore, _unblocked, split_url
from bwsync.stop import StopRequest, active, on_signals


def test_open_store_picks_the_backend_without_io(tmp_path: Path) -> None:
    assert isinstance(open_store(StateSettings(backend="none")), NoStateStore)
    assert isinstance(
        open_store(StateSettings(backend="file", path=tmp_path / "s.json")), FileStateStore
    )
    cm = open_store(StateSettings(backend="configmap", configmap="x", namespace="ns"))
    assert isinstance(cm, ConfigMapStateStore)
    assert cm.description == "configmap ns/x"
    obj = open_store(StateSettings(backend="objectstore", url="gs://b/k.json"))
    assert isinstance(obj, ObjectStateStore)
    assert obj.description == "object storage gs://b/k.json"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BWSYNC_STATE__BACKEND", "objectstore")
    monkeypatch.setenv("BWSYNC_STATE__URL", "s3://bucket/bwsync/state.json")
    monkeypatch.setenv("BWSYNC_STATE__ENDPOINT", "http://minio:9000")
    store = open_store(load_settings().state)
    assert isinstance(store, ObjectStateStore)
    assert (store.bucket, store.key, store.endpoint) == (
        "bucket",
        "bwsync/state.json",
        "http://minio:9000",
    )


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("s3://b/k", ("s3", "b", "k")),
        ("gs://b/dir/state.json", ("gs", "b", "dir/state.json")),
        ("az://container/state.json", ("az", "container", "state.json")),
        ("S3://b/k", ("s3", "b", "k")),
    ],
)
def test_state_urls(url: str, parts: tuple[str, str, str]) -> None:
    assert split_url(url) == parts


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://b/k", "must start with s3://, gs:// or az://"),
        ("state.json", "must start with"),
        ("s3://bucket", "must name a bucket and an object key"),
        ("s3://bucket/dir/", "must name a bucket and an object key"),
        ("s3:///key", "must name a bucket"),
        ("s3://b/k?versionId=1", "query or fragment"),
    ],
)
def test_bad_state_urls_are_config_errors(
    url: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BWSYNC_STATE__BACKEND", "objectstore")
    monkeypatch.setenv("BWSYNC_STATE__URL", url)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings()
    assert caught.value.exit_code == 2
    assert caught.value.problems[0].startswith("BWSYNC_STATE__URL: ")
    with pytest.raises(ConfigError, match=message):  # a store built without the settings
        ObjectStateStore(url)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, "BWSYNC_STATE__URL: required when BWSYNC_STATE__BACKEND=objectstore"),
        (
            {"BWSYNC_STATE__URL": "s3://b/k", "BWSYNC_STATE__ENDPOINT": "minio:9000"},
            "BWSYNC_STATE__ENDPOINT: must be an http:// or https:// URL (got 'minio:9000')",
        ),
        (
            {"BWSYNC_STATE__URL": "gs://b/k", "BWSYNC_STATE__ENDPOINT": "http://x"},
            "BWSYNC_STATE__ENDPOINT: not supported for gs:// URLs",
        ),
    ],
)
def test_objectstore_needs_a_url_and_a_sane_endpoint(
    env: dict[str, str], problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BWSYNC_STATE__BACKEND", "objectstore")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems == [problem]


# -- configmap error wording over a mock API -----------------------------------------------
def _store(handler: Any) -> ConfigMapStateStore:
    config = KubeConfig(
        server="https://k8s.test",
        namespace="ns",
        verify=ssl.create_default_context(),
        auth=StaticTokenAuth("sekret-token"),
        origin="test kubeconfig",
        transport=httpx.MockTransport(handler),
    )
    return ConfigMapStateStore("state", config=config)


def test_a_namespace_given_beside_a_ready_connection_is_the_one_used() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(404, json={"kind": "Status", "reason": "NotFound", "code": 404})

    config = _store(handler).config  # its connection's namespace: "ns"
    store = ConfigMapStateStore("state", namespace="other", config=config)
    assert (store.namespace, store.description) == ("other", "configmap other/state")
    assert store.load() == StateDocument()
    assert paths == ["/api/v1/namespaces/other/configmaps/state"]
    assert ConfigMapStateStore("state", config=config).namespace == "ns"


def test_unstructured_error_body_is_cut_short() -> None:
    body = "<html>" + "x" * 5000 + "</html>"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text=body)

    with pytest.raises(StateError, match="get failed with HTTP 502") as caught:
        _store(handler).load()
    assert len(str(caught.value)) < 400


def test_invalid_is_reported_with_the_servers_reason() -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "state", "resourceVersion": "5"},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=cm)
        return httpx.Response(
            422,
            json={
                "kind": "Status",
                "status": "Failure",
                "reason": "Invalid",
                "message": 'ConfigMap "state" is invalid: []: Too long',
                "code": 422,
            },
        )

    store = _store(handler)
    store.load()
    with pytest.raises(StateError, match="update failed with HTTP 422 Invalid: ConfigMap"):
        store.save(StateDocument())


def test_token_never_appears_in_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer sekret-token"
        return httpx.Response(401, json={"kind": "Status", "reason": "Unauthorized", "code": 401})

    with pytest.raises(StateError) as caught:
        _store(handler).load()
    assert "sekret-token" not in str(caught.value)
    assert "test kubeconfig" in str(caught.value)


def test_not_a_configmap_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")

    with pytest.raises(StateError, match="not a ConfigMap"):
        _store(handler).load()


def test_create_race_lost_is_a_conflict() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"kind": "Status", "reason": "NotFound", "code": 404})
        return httpx.Response(409, json={"kind": "Status", "reason": "AlreadyExists", "code": 409})

    store = _store(handler)
    store.load()
    with pytest.raises(StateConflictError):
        store.save(StateDocument())


def test_obstore_messages_lose_url_queries() -> None:
    from bwsync.state.objectstore import _first_line

    text = (
        "Generic MicrosoftAzure error: Error performing GET "
        "https://acct.blob.core.windows.net/c/state.json?sv=2022&sig=SECRETSIG in 3ms\nmore"
    )
    line = _first_line(text)
    assert "SECRETSIG" not in line
    assert "https://acct.blob.core.windows.net/c/state.json?…" in line
    assert "more" not in line


def test_obstore_messages_are_masked_before_they_are_cut() -> None:
    from bwsync.redact import MASK, remember
    from bwsync.state.objectstore import _first_line

    secret = "ObstoreKey-" + "q" * 40
    remember(secret)
    line = _first_line("Generic S3 error: " + "x" * 170 + f" key {secret} rejected")
    assert "ObstoreKe" not in line
    assert MASK in line


def test_the_grace_period_ends_an_objectstore_call_that_blocks() -> None:
    """obstore blocks in Rust, where the grace period's SIGALRM cannot raise: the call is made
    in a worker thread and the main thread waits where it can be interrupted."""
    stop = StopRequest(grace=0.01)
    blocked = threading.Event()  # stands for the call in Rust: no Python code runs in it
    assert _unblocked(lambda: "answer") == "answer"
    with pytest.raises(ZeroDivisionError):
        _unblocked(lambda: 1 // 0)

    def stopped_while_waiting() -> None:
        with active(stop):
            os.kill(os.getpid(), signal.SIGTERM)
            _unblocked(lambda: blocked.wait(600))

    with on_signals(stop), pytest.raises(Interrupted, match=r"0\.01 s grace"):
        stopped_while_waiting()
    blocked.set()
