"""The objectstore backend against a real S3 server on loopback (moto, IAM auth on)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bwsync.errors import StateError
from bwsync.state import open_store
from bwsync.state.base import StateConflictError, StateDocument
from tests.fixtures.state import S3State, free_port


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
