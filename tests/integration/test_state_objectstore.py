"""The objectstore backend against real servers on loopback: S3 (moto, IAM auth on), Azure Blob
(Azurite, Shared Key checked) and GCS (fake-gcs-server, no authentication)."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from bwsync.errors import ConfigError, StateConflictError, StateError
from bwsync.settings import load_settings
from bwsync.state import open_store
from bwsync.state.base import StateDocument
from tests.fixtures.state import AzureState, GcsState, S3State, free_port


def test_state_object_is_json_at_the_key(s3_state: S3State) -> None:
    store = open_store(s3_state.settings())
    store.save(StateDocument(hash="h"))
    body = s3_state.server.client("s3").get_object(Bucket=s3_state.bucket, Key=s3_state.key)
    assert json.loads(body["Body"].read())["hash"] == "h"
    assert store.description == f"object storage s3://{s3_state.bucket}/bwsync/state.json"


def test_create_is_conditional(s3_state: S3State) -> None:
    """Two runs that both found no object: the second create fails (If-None-Match: *)."""
    a, b = open_store(s3_state.settings()), open_store(s3_state.settings())
    a.load()
    b.load()
    a.save(StateDocument(hash="a"))
    with pytest.raises(StateConflictError, match="another run wrote it"):
        b.save(StateDocument(hash="b"))


def test_update_is_conditional_on_the_etag(s3_state: S3State) -> None:
    store = open_store(s3_state.settings())
    store.save(StateDocument(hash="1"))
    store.load()
    # someone else rewrites the object behind our back (another tool, another run)
    s3_state.server.client("s3").put_object(
        Bucket=s3_state.bucket, Key=s3_state.key, Body=b'{"version": 1, "hash": "other"}'
    )
    with pytest.raises(StateConflictError):
        store.save(StateDocument(hash="2"))
    assert open_store(s3_state.settings()).load().hash == "other"


def test_missing_bucket_is_named_and_never_taken_for_empty_state(s3_state: S3State) -> None:
    settings = s3_state.settings(url="s3://no-such-bucket-here/bwsync/state.json")
    store = open_store(settings)
    for action in (store.load, lambda: store.save(StateDocument()), store.clear):
        with pytest.raises(StateError) as caught:
            action()
        text = str(caught.value)
        assert caught.value.exit_code == 5
        assert "object storage s3://no-such-bucket-here/bwsync/state.json" in text
        assert "bucket 'no-such-bucket-here' does not exist" in text
        assert "NoSuchBucket" in text


def test_wrong_secret_is_access_denied_without_the_secret(
    s3_state: S3State, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    with pytest.raises(StateError) as caught:
        open_store(s3_state.settings()).load()
    text = str(caught.value)
    assert "access denied" in text
    assert "SignatureDoesNotMatch" in text
    assert wrong not in text
    assert s3_state.server.secret_access_key not in text
    assert s3_state.bucket in text


def test_unknown_access_key(s3_state: S3State, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN00")
    with pytest.raises(StateError, match=r"access denied \(HTTP 403, InvalidAccessKeyId\)"):
        open_store(s3_state.settings()).save(StateDocument())


def test_read_only_policy_cannot_take_the_lease(
    s3_state: S3State, monkeypatch: pytest.MonkeyPatch
) -> None:
    iam = s3_state.server.client("iam")
    user = f"reader-{s3_state.bucket}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="read",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    store = open_store(s3_state.settings())
    assert store.load() == StateDocument()
    with pytest.raises(StateError, match=r"access denied \(HTTP 403, AccessDenied\)"):
        store.acquire_lease("default/h/1", 900)


def test_unreachable_endpoint_fails_fast(s3_state: S3State) -> None:
    settings = s3_state.settings(endpoint=f"http://127.0.0.1:{free_port()}", timeout=2)
    started = time.monotonic()
    with pytest.raises(StateError, match="cannot be read") as caught:
        open_store(settings).load()
    assert time.monotonic() - started < 15
    assert s3_state.server.secret_access_key not in str(caught.value)


def test_unreadable_aws_ca_bundle(
    s3_state: S3State, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(StateError, match="cannot read AWS_CA_BUNDLE"):
        open_store(s3_state.settings()).load()


def test_aws_ca_bundle_is_accepted(s3_state: S3State, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine sets AWS_CA_BUNDLE to the system bundle: it is added to the trusted roots
    and the (plain-HTTP) test endpoint still works."""
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    store = open_store(s3_state.settings())
    store.save(StateDocument(hash="ca"))
    assert store.load().hash == "ca"


# ------------------------------------------------------------------------------------------
# Azure Blob (Azurite): the account's blob endpoint in BWSYNC_STATE__ENDPOINT, the account
# name and key in AZURE_STORAGE_ACCOUNT_NAME/_KEY (Shared Key, checked by Azurite).


def test_azure_state_object_is_json_at_the_key(azure_state: AzureState) -> None:
    store = open_store(azure_state.settings())
    store.save(StateDocument(hash="h"))
    body = azure_state.server.get_blob(azure_state.container, azure_state.key)
    assert json.loads(body)["hash"] == "h"
    assert store.description == f"object storage az://{azure_state.container}/bwsync/state.json"


def test_azure_update_is_conditional_on_the_etag(azure_state: AzureState) -> None:
    store = open_store(azure_state.settings())
    store.save(StateDocument(hash="1"))
    store.load()
    azure_state.rewrite(b'{"version": 1, "hash": "other"}')
    with pytest.raises(StateConflictError):
        store.save(StateDocument(hash="2"))
    assert open_store(azure_state.settings()).load().hash == "other"


def test_azure_missing_container_is_named_and_never_taken_for_empty_state(
    azure_state: AzureState,
) -> None:
    store = open_store(azure_state.settings(url="az://no-such-container/bwsync/state.json"))
    for action in (store.load, lambda: store.save(StateDocument()), store.clear):
        with pytest.raises(StateError) as caught:
            action()
        text = str(caught.value)
        assert caught.value.exit_code == 5
        assert "object storage az://no-such-container/bwsync/state.json" in text
        assert "container 'no-such-container' does not exist" in text
    # read and write answer with the service's code (a delete goes through a batch request,
    # whose per-blob answer obstore reports without it)
    for action in (store.load, lambda: store.save(StateDocument())):
        with pytest.raises(StateError, match="ContainerNotFound"):
            action()


def test_azure_wrong_key_is_access_denied_without_the_key(
    azure_state: AzureState, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = base64.b64encode(b"not the account key, but valid base64 all the same!").decode()
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", wrong)
    store = open_store(azure_state.settings())
    for action in (store.load, lambda: store.save(StateDocument()), store.clear):
        with pytest.raises(StateError) as caught:
            action()
        text = str(caught.value)
        # Azure says AuthenticationFailed, Azurite AuthorizationFailure
        assert re.search(r"access denied \(HTTP 403, Auth\w+(Failed|Failure)\)", text), text
        assert "check the Azure credentials" in text
        assert wrong not in text
        assert azure_state.server.key not in text
        assert azure_state.container in text


def test_azure_malformed_key_is_not_echoed(
    azure_state: AzureState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key that is not base64: obstore's message names the offending character and its
    offset, a piece of the secret, which must not reach the log."""
    malformed = azure_state.server.key[:-3] + "X=="
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", malformed)
    with pytest.raises(StateError, match="cannot be configured") as caught:
        open_store(azure_state.settings()).load()
    text = str(caught.value)
    assert "Invalid Access Key" in text
    assert "'X'" not in text
    assert "offset" not in text
    assert malformed not in text


def test_azure_emulator_settings_from_the_environment_alone(
    azure_state: AzureState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """obstore's own emulator switch: no endpoint setting, only its variables."""
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME")
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_KEY")
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", azure_state.server.endpoint.rsplit("/", 1)[0])
    store = open_store(azure_state.settings(endpoint=None))
    store.save(StateDocument(hash="emulated"))
    assert open_store(azure_state.settings()).load().hash == "emulated"


# ------------------------------------------------------------------------------------------
# GCS (fake-gcs-server): configured through GOOGLE_SERVICE_ACCOUNT only; no endpoint setting.


def test_gcs_state_object_is_json_at_the_key(gcs_state: GcsState) -> None:
    store = open_store(gcs_state.settings())
    store.save(StateDocument(hash="h"))
    body = gcs_state.server.get_object(gcs_state.bucket, gcs_state.key)
    assert json.loads(body)["hash"] == "h"
    assert store.description == f"object storage gs://{gcs_state.bucket}/bwsync/state.json"


def test_gcs_update_is_conditional_on_the_generation(gcs_state: GcsState) -> None:
    store = open_store(gcs_state.settings())
    store.save(StateDocument(hash="1"))
    store.load()
    gcs_state.rewrite(b'{"version": 1, "hash": "other"}')
    with pytest.raises(StateConflictError):
        store.save(StateDocument(hash="2"))
    assert open_store(gcs_state.settings()).load().hash == "other"


@pytest.mark.xfail(
    strict=True,
    reason="fake-gcs-server answers a missing bucket as a missing object (a bare 404 'Not "
    "Found'); GCS's XML API answers NoSuchBucket, 'The specified bucket does not exist.'",
)
def test_gcs_missing_bucket_is_named_and_never_taken_for_empty_state(gcs_state: GcsState) -> None:
    store = open_store(gcs_state.settings(url="gs://no-such-bucket-here/bwsync/state.json"))
    for action in (store.load, lambda: store.save(StateDocument()), store.clear):
        with pytest.raises(StateError) as caught:
            action()
        assert "bucket 'no-such-bucket-here' does not exist" in str(caught.value)


def test_gcs_endpoint_setting_is_refused(
    gcs_state: GcsState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GCS's base URL comes from the credentials (as here), never from bwsync's settings."""
    for name, value in gcs_state.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BWSYNC_STATE__ENDPOINT", gcs_state.server.base_url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems == ["BWSYNC_STATE__ENDPOINT: not supported for gs:// URLs"]


def test_a_plain_http_loopback_endpoint_never_goes_through_a_proxy(
    s3_state: S3State, monkeypatch: pytest.MonkeyPatch
) -> None:
    """obstore reads HTTP_PROXY itself: without care, a loopback endpoint (allowed in clear
    because it stays on the host) would hand the proxy the state and any session token."""
    assert s3_state.endpoint.startswith("http://127.0.0.1:")
    seen: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:  # a "proxy" that records what it is sent and answers 502
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                seen.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        store = open_store(s3_state.settings())
        store.save(StateDocument(hash="h"))
        assert store.load().hash == "h"
    finally:
        stop.set()
        worker.join(5)
        listener.close()
    assert seen == []
