"""Finding the Kubernetes API: kubeconfig rules, service-account files, token refresh."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bwsync.errors import StateError
from bwsync.redact import MASK, redact, remember
from bwsync.state.kube import (
    ExecAuth,
    StaticTokenAuth,
    TokenFileAuth,
    from_kubeconfig,
    from_service_account,
    load_config,
)
from tests.fixtures.clock import FakeClock


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def _config(
    current: str | None = "main",
    clusters: dict[str, dict[str, Any]] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
    contexts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": k, "cluster": v} for k, v in (clusters or {}).items()],
        "users": [{"name": k, "user": v} for k, v in (users or {}).items()],
        "contexts": [{"name": k, "context": v} for k, v in (contexts or {}).items()],
    }
    if current:
        doc["current-context"] = current
    return doc


MAIN = _config(
    clusters={"c": {"server": "https://k8s.example:6443/", "insecure-skip-tls-verify": True}},
    users={"u": {"token": "abc"}},
    contexts={"main": {"cluster": "c", "user": "u", "namespace": "ops"}},
)


def test_current_context_gives_server_namespace_and_token(tmp_path: Path) -> None:
    cfg = from_kubeconfig([_write(tmp_path / "config", MAIN)])
    assert cfg.server == "https://k8s.example:6443"
    assert cfg.namespace == "ops"
    assert isinstance(cfg.auth, StaticTokenAuth)
    assert cfg.verify.verify_mode == ssl.CERT_NONE
    assert "context main" in cfg.origin


def test_namespace_setting_wins_and_default_is_default(tmp_path: Path) -> None:
    path = _write(tmp_path / "config", MAIN)
    assert from_kubeconfig([path], namespace="mine").namespace == "mine"
    no_ns = _config(
        clusters={"c": {"server": "https://h"}},
        contexts={"main": {"cluster": "c"}},
    )
    assert from_kubeconfig([_write(tmp_path / "other", no_ns)]).namespace == "default"


def test_merge_first_file_wins_per_name(tmp_path: Path) -> None:
    first = _write(
        tmp_path / "a",
        _config(
            current=None,
            clusters={"c": {"server": "https://first"}},
        ),
    )
    second = _write(
        tmp_path / "b",
        _config(
            current="main",
            clusters={"c": {"server": "https://second"}},
            users={"u": {"token": "t"}},
            contexts={"main": {"cluster": "c", "user": "u"}},
        ),
    )
    cfg = from_kubeconfig([tmp_path / "missing", first, second])
    assert cfg.server == "https://first"


def test_relative_paths_resolve_against_the_file_that_names_them(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    (d / "creds").mkdir(parents=True)
    (d / "creds" / "token").write_text("from-file\n")
    doc = _config(
        clusters={"c": {"server": "https://h", "certificate-authority": "creds/ca.crt"}},
        users={"u": {"tokenFile": "creds/token"}},
        contexts={"main": {"cluster": "c", "user": "u"}},
    )
    path = _write(d / "config", doc)
    with pytest.raises(StateError, match="cannot set up TLS"):
        from_kubeconfig([path])  # the CA file is looked for next to the kubeconfig
    doc["clusters"][0]["cluster"].pop("certificate-authority")
    cfg = from_kubeconfig([_write(d / "config", doc)])
    assert isinstance(cfg.auth, TokenFileAuth)
    assert cfg.auth.path == d / "creds" / "token"
    assert cfg.auth.token() == "from-file"


def test_certificate_data_is_used(tmp_path: Path) -> None:
    bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    end = "-----END CERTIFICATE-----"
    pem = (bundle.split(end)[0] + end + "\n").encode()  # one CA is enough
    doc = _config(
        clusters={
            "c": {
                "server": "https://h",
                "certificate-authority-data": base64.b64encode(pem).decode(),
            }
        },
        users={"u": {"username": "admin", "password": "pw"}},
        contexts={"main": {"cluster": "c", "user": "u"}},
    )
    cfg = from_kubeconfig([_write(tmp_path / "config", doc)])
    assert cfg.verify.verify_mode == ssl.CERT_REQUIRED
    assert isinstance(cfg.auth, httpx.BasicAuth)


def test_bad_base64_is_named(tmp_path: Path) -> None:
    doc = _config(
        clusters={"c": {"server": "https://h", "certificate-authority-data": "!!!"}},
        contexts={"main": {"cluster": "c"}},
    )
    with pytest.raises(StateError, match="certificate-authority-data is not valid base64"):
        from_kubeconfig([_write(tmp_path / "config", doc)])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_config(current=None), "has no current-context"),
        (_config(current="nope"), "context 'nope' not found"),
        (_config(contexts={"main": {"cluster": "gone"}}), "cluster 'gone' not found"),
        (
            _config(
                clusters={"c": {"server": "https://h"}},
                users={"u": {"auth-provider": {"name": "gcp"}}},
                contexts={"main": {"cluster": "c", "user": "u"}},
            ),
            "legacy auth-provider 'gcp' is not supported",
        ),
    ],
)
def test_unusable_kubeconfig_is_explained(
    tmp_path: Path, doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(StateError, match=message):
        from_kubeconfig([_write(tmp_path / "config", doc)])


def test_not_yaml_and_nothing_found(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("clusters: [unclosed\n")
    with pytest.raises(StateError, match="not valid YAML at line"):
        from_kubeconfig([bad])
    with pytest.raises(StateError, match="no kubeconfig found"):
        from_kubeconfig([tmp_path / "none"])


def test_kubeconfig_env_wins_over_in_cluster(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("t")
    (sa / "namespace").write_text("pod-ns")
    path = _write(tmp_path / "config", MAIN)
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert load_config(None, sa, env).origin.startswith("in-cluster")
    assert load_config(None, sa, env | {"KUBECONFIG": str(path)}).namespace == "ops"


def test_in_cluster_ipv6_service_address(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    cfg = from_service_account(env, tmp_path, "ns")
    assert cfg.server == "https://[fd00::1]:443"


def test_default_kubeconfig_in_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _write(tmp_path / ".kube" / "config", MAIN)
    assert load_config(None, tmp_path / "no-sa", {}).namespace == "ops"


# -- tokens --------------------------------------------------------------------------------
def _echo_auth(auth: httpx.Auth, valid: set[str]) -> tuple[httpx.Client, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        seen.append(token)
        return httpx.Response(200 if token in valid else 401)

    return httpx.Client(transport=httpx.MockTransport(handler), auth=auth), seen


def test_token_file_is_reread_on_401(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one")
    auth = TokenFileAuth(path)
    client, seen = _echo_auth(auth, {"one"})
    with client:
        assert client.get("https://k/").status_code == 200
        path.write_text("two")  # rotated; "one" revoked
        client.get("https://k/")
        assert seen == ["one", "one"]  # still cached, and still valid here
    client, seen = _echo_auth(auth, {"two"})
    with client:
        assert client.get("https://k/").status_code == 200
    assert seen == ["one", "two"]


def test_token_file_is_reread_after_max_age(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one")
    clock = FakeClock(0.0)
    auth = TokenFileAuth(path, max_age=60, clock=clock)
    assert auth.token() == "one"
    path.write_text("two")
    clock.now = 59
    assert auth.token() == "one"
    clock.now = 61
    assert auth.token() == "two"


def test_a_401_with_an_unchanged_token_is_not_retried(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one")
    client, seen = _echo_auth(TokenFileAuth(path), set())
    with client:
        assert client.get("https://k/").status_code == 401
    assert seen == ["one"]


def test_missing_or_empty_token_file(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot read the Kubernetes token file"):
        TokenFileAuth(tmp_path / "nope").token()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(StateError, match="is empty"):
        TokenFileAuth(tmp_path / "empty").token()


def test_exec_plugin_failure_shows_stderr_never_stdout(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.write_text("#!/bin/sh\necho SECRET-TOKEN\necho 'login expired' >&2\nexit 3\n")
    plugin.chmod(0o755)
    auth = ExecAuth({"command": str(plugin)}, tmp_path)
    with pytest.raises(StateError, match="exited 3: login expired") as caught:
        auth.token()
    assert "SECRET-TOKEN" not in str(caught.value)


def test_exec_plugin_without_token(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.write_text('#!/bin/sh\necho \'{"status": {"clientCertificateData": "x"}}\'\n')
    plugin.chmod(0o755)
    with pytest.raises(StateError, match="did not print an ExecCredential with a token"):
        ExecAuth({"command": str(plugin)}, tmp_path).token()


def test_unchecked_certificates_are_never_silent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bwsync import logs

    logs.setup("json", "info")
    from_kubeconfig([_write(tmp_path / "config", MAIN)])
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert line["event"] == "cleartext" and line["level"] == "warning"
    assert "insecure-skip-tls-verify" in line["warning"]


def test_kubeconfig_credentials_are_remembered_for_masking(tmp_path: Path) -> None:
    """A kubeconfig's basic-auth password, its proxy-url's password and the credential values
    of an exec plugin's env are secrets of the process: any error quoting them is masked."""
    doc = _config(
        clusters={
            "c": {
                "server": "https://k8s.example:6443",
                "proxy-url": "http://me:Proxy#Pw/9@proxy.corp:3128",
            }
        },
        users={"u": {"username": "admin", "password": "Kube Pass!"}},
        contexts={"main": {"cluster": "c", "user": "u"}},
    )
    from_kubeconfig([_write(tmp_path / "config", doc)])
    ExecAuth(
        {
            "command": "/bin/true",
            "env": [
                {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalr XUtn/FEMI"},
                {"name": "AWS_PROFILE", "value": "production"},
            ],
        },
        tmp_path,
    )
    said = redact("echo: Kube Pass! Proxy#Pw/9 wJalr XUtn/FEMI production")
    assert said == f"echo: {MASK} {MASK} {MASK} production"


def test_an_exec_plugin_error_is_masked_before_it_is_cut(tmp_path: Path) -> None:
    """The plugin's stderr is cut to 200 characters after masking: a secret across the cut
    leaves no prefix behind."""
    secret = "pl#g-" * 10  # no run of 8 letters and digits that would be masked on its own
    remember(secret)
    plugin = tmp_path / "plugin"
    plugin.write_text(f"#!/bin/sh\necho '{'x' * 180} {secret}' >&2\nexit 1\n")
    plugin.chmod(0o755)
    with pytest.raises(StateError) as caught:
        ExecAuth({"command": str(plugin)}, tmp_path).token()
    assert "pl#g-pl#g" not in str(caught.value)
    assert MASK in str(caught.value)


@pytest.mark.parametrize(
    ("server", "loud"),
    [
        ("http://k8s.example:8080", True),
        ("http://127.0.0.1:8080", False),
        ("https://k8s.example:6443", False),
    ],
)
def test_a_plain_http_api_server_with_a_credential_is_never_silent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server: str, loud: bool
) -> None:
    from bwsync import logs

    logs.setup("json", "info")
    doc = _config(
        clusters={"c": {"server": server}},
        users={"u": {"token": "a-static-token"}},
        contexts={"main": {"cluster": "c", "user": "u"}},
    )
    from_kubeconfig([_write(tmp_path / "config", doc)])
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    warned = [x for x in lines if x["event"] == "cleartext" and "plain http" in x["warning"]]
    assert bool(warned) is loud
