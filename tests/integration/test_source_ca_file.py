"""Every HTTP directory source treats an unloadable CA file alike: a settings error (exit 2)
naming the source's own ``CA_FILE`` setting, before any request (``cloud_http.ssl_verify``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bwsync.cli import main
from tests.standins.bitwarden import FakeBitwarden
from tests.standins.google_workspace import FakeGoogle

SOURCES = {
    "entra": {
        "BWSYNC_ENTRA__TENANT_ID": "00000000-0000-4000-8000-000000000001",
        "BWSYNC_ENTRA__CLIENT_ID": "00000000-0000-4000-8000-000000000002",
        "BWSYNC_ENTRA__CLIENT_SECRET": "not-used",
    },
    "google": {"BWSYNC_GOOGLE__ADMIN_EMAIL": "admin@example.com"},
    "okta": {"BWSYNC_OKTA__ORG_URL": "https://example.okta.com", "BWSYNC_OKTA__TOKEN": "not-used"},
    "onelogin": {
        "BWSYNC_ONELOGIN__CLIENT_ID": "not-used",
        "BWSYNC_ONELOGIN__CLIENT_SECRET": "not-used",
    },
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_an_unloadable_ca_file_is_exit_2_naming_the_setting(
    source: str,
    tmp_path: Path,
    fake_bitwarden: FakeBitwarden,
    fake_google: FakeGoogle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    not_pem = tmp_path / "corporate-ca.pem"
    not_pem.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    setting = f"BWSYNC_{source.upper()}__CA_FILE"
    env = {
        "BWSYNC_SOURCE": source,
        setting: str(not_pem),
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_STATE__BACKEND": "file",
        "BWSYNC_STATE__PATH": str(tmp_path / "state.json"),
        "BWSYNC_LOG__FORMAT": "json",
        **SOURCES[source],
    }
    if source == "google":
        env["BWSYNC_GOOGLE__CREDENTIALS_FILE"] = str(fake_google.key_file)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["sync"]) == 2
    err = capsys.readouterr().err
    assert f"{setting}: {not_pem} holds no usable PEM certificate" in err
    assert fake_bitwarden.writes() == []
