"""redact: the masking boundary — every form of a remembered secret, URL credentials,
credential shapes; masking before cutting; where the secrets come from."""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import tracemalloc
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from bwsync import redact
from bwsync.config import Settings
from bwsync.errors import BitwardenError, ConfigError, shorten
from bwsync.redact import MASK, redact_data, remember, settings_secrets, strip_userinfo

SECRET = 'Entra"Secret\\XYZ~é /+&=%end'


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _written_forms(secret: str) -> dict[str, str]:
    """How servers and libraries write a secret back, computed here independently."""
    raw = secret.encode()
    return {
        "raw": secret,
        "quote": quote(secret, safe=""),
        "quote lower-case hex": _lower_hex(quote(secret, safe="")),
        "quote with /": quote(secret),
        "quote_plus": quote_plus(secret),
        "quote_plus lower-case hex": _lower_hex(quote_plus(secret)),
        "JSON": json.dumps(secret)[1:-1],
        "JSON ASCII": json.dumps(secret, ensure_ascii=True)[1:-1],
        "JSON ASCII upper-case hex": json.dumps(secret)[1:-1].replace("\\u00e9", "\\u00E9"),
        "JSON with \\/": json.dumps(secret)[1:-1].replace("/", "\\/"),
        "base64": base64.b64encode(raw).decode(),
        "Basic a:": base64.b64encode(b"a:" + raw).decode(),
        "Basic ab:": base64.b64encode(b"ab:" + raw).decode(),
        "Basic abc:": base64.b64encode(b"abc:" + raw).decode(),
        "base64url": base64.urlsafe_b64encode(b"x" + raw).decode(),
    }


@pytest.mark.parametrize("form", list(_written_forms(SECRET)))
def test_every_written_form_of_a_secret_is_masked(form: str) -> None:
    remember(SECRET)
    written = _written_forms(SECRET)[form]
    text = redact.redact(f"server said: <{written}> and more")
    assert written not in text
    assert MASK in text
    # no stretch of the secret's letters survives either
    assert "Secret" not in text.replace("Secret\\", "")


def test_a_cut_comes_after_masking_so_no_prefix_survives() -> None:
    secret = "TopSecretClientValue0123456789"
    remember(secret)
    echoed = "x" * 240 + f" client_secret={secret}&grant_type=client_credentials"
    cut = shorten(echoed)
    assert "TopSecret" not in cut
    assert len(cut) <= 256


def test_an_error_masks_a_secret_remembered_after_it_was_built() -> None:
    error = BitwardenError("token", "the server echoed LateSecret-1234567")
    assert "LateSecret" in error.args[0]
    remember("LateSecret-1234567")
    assert "LateSecret" not in str(error)
    assert "LateSecret" not in str(ConfigError(["BWSYNC_X: got LateSecret-1234567"]))


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("https://admin:p@ss@vault.example/identity", "vault.example/identity", "p@ss"),
        ("GET http://u:pw@h:1/x?y=a@b.c", "h:1/x?y=a@b.c", "u:pw"),
        ("ldaps://cn=x:secret@dc1", "dc1", "secret"),
        ("mail user@example.com about https://host/a@b", "user@example.com", "***"),
    ],
)
def test_url_credentials_are_stripped(text: str, kept: str, gone: str) -> None:
    out = redact.redact(text)
    assert kept in out
    assert gone not in out or gone == MASK


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("Authorization: Bearer eyJ0eXAiOiJKV1QifQ.abc.def-ghi", "eyJ0eXAi"),
        ("authorization=SSWS 00abcdefGHIJKLmnopQRSTuv", "00abcdef"),
        ("Authorization: bearer:0123456789abcdefABCD", "0123456789"),
        ("DPoP AbCdEfGhIjKlMnOpQrStUv", "AbCdEfGh"),
        ("Basic " + base64.b64encode(b"user:hunter2-hunter2").decode(), "dXNlcjpo"),
        ("assertion eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln here", "eyJzdWIi"),
        ("client_secret=abc%22def&grant_type=x", "abc%22def"),
        ("?sv=2022&sig=AbCd%2BEf%3D&se=1", "AbCd%2BEf"),
        ('{"password": "a\\"b c", "user": "x"}', 'a\\"b c'),
        ("{'client_assertion': 'abc.def.ghi', 'x': 1}", "abc.def.ghi"),
        ('{"x-amz-security-token": "IQoJb3/Tok+en=="}', "IQoJb3"),
        ("AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=0123456789abcdef", "0123456789abcdef"),
    ],
)
def test_credentials_are_masked_by_their_shape_even_unknown(text: str, gone: str) -> None:
    out = redact.redact(text)
    assert gone not in out
    assert MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "HTTP Basic authentication failed",
        "the bearer token expired",
        "password policy: at least 12 characters",
        "invite user12345@example.com (externalId cn=user12345,ou=people,dc=example,dc=com)",
    ],
)
def test_prose_is_left_alone(text: str) -> None:
    assert redact.redact(text) == text


def test_short_values_are_not_masked_they_would_hide_words() -> None:
    remember("pw1", "", None)
    assert redact.redact("pw1 is too short to be masked") == "pw1 is too short to be masked"


def test_the_longer_form_wins_over_a_form_inside_it() -> None:
    remember("abcd", "abcd-efgh-ijkl")
    assert redact.redact("x abcd-efgh-ijkl y abcd z") == f"x {MASK} y {MASK} z"


def test_redact_data_masks_every_string_in_a_structure() -> None:
    remember("NestedSecret99")
    doc = {"error": "NestedSecret99", "list": ["a", "NestedSecret99"], "n": 3, "d": {"k": None}}
    assert redact_data(doc) == {"error": MASK, "list": ["a", MASK], "n": 3, "d": {"k": None}}


def test_strip_userinfo() -> None:
    assert strip_userinfo("https://a:b@h/p") == f"https://{MASK}@h/p"
    assert strip_userinfo("https://h/p") == "https://h/p"


def test_remember_from_many_threads_loses_nothing() -> None:
    values = [f"ThreadSecret-{i:04d}-xyz" for i in range(40)]
    threads = [threading.Thread(target=remember, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = redact.redact(" ".join(values))
    assert not any(v in text for v in values)


def _pem_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_settings_secrets_cover_settings_urls_files_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _pem_key()
    okta_key = tmp_path / "okta.pem"
    okta_key.write_text(key)
    google_key = tmp_path / "google.json"
    google_key.write_text(json.dumps({"type": "service_account", "private_key": key}))
    token_file = tmp_path / "federated"
    token_file.write_text("federated-token-value\n")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws/secret+key")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    settings = Settings(
        okta={"private_key_file": okta_key, "client_id": "0oa1"},
        google={"credentials_file": google_key},
        onelogin={"client_secret": "onelogin-secret"},
        ldap={"bind_password": "ldap-pw"},
        metrics={"pushgateway_url": "https://prom:url%2Fpw@push.example"},
    )
    found = settings_secrets(settings)
    lines = [line for line in key.splitlines() if "PRIVATE KEY" not in line]
    assert {"onelogin-secret", "ldap-pw", "aws/secret+key", "federated-token-value"} <= set(found)
    assert {"url%2Fpw", "url/pw"} <= set(found)
    assert set(lines) <= set(found)
    assert key.strip() in found


def test_an_unreadable_credential_file_adds_nothing(tmp_path: Path) -> None:
    settings = Settings(okta={"private_key_file": tmp_path / "missing", "client_id": "0oa1"})
    assert settings_secrets(settings) == []


# -- tokens obtained at run time: bounded however many (loop mode) ---------------------------


def _opaque_token(i: int) -> str:
    """An opaque 1.5 kB access token (Google's and OneLogin's are opaque; a JWT is masked by
    its shape and never remembered)."""
    return f"tok{i:04d}-" + base64.urlsafe_b64encode(os.urandom(1120)).decode()


def test_500_replaced_tokens_keep_memory_and_the_index_bounded() -> None:
    """Loop mode obtains a token per client and pass (96 a day at 15 minutes): each replaces
    the slot's oldest, so what is held, and what a mask costs, stops growing."""
    remember("Settings-Secret-0123")
    tracemalloc.start()
    try:
        for i in range(500):
            token = _opaque_token(i)
            redact.remember_token("graph", token)
            if i % 20 == 0:
                assert redact.redact(f"echoed {token} again") == f"echoed {MASK} again"
            if i == 399:
                after_400 = tracemalloc.get_traced_memory()[0]
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current - after_400 < 64 * 1024, current - after_400
    assert peak < 8 * 1024 * 1024, peak
    view = redact._KNOWN.view
    held = {f for forms in view.index.values() for f in forms}
    assert len(held) <= len(redact.forms("Settings-Secret-0123")) + 2 * 200, len(held)


def test_a_slot_keeps_the_token_it_replaced_and_forgets_the_one_before() -> None:
    """The replaced token's errors may still be on their way out (an error is masked when it
    is printed); the one before that is long gone. Other slots are untouched."""
    first, second, third = (f"{n * 9}.{n * 12}" for n in "ABC")
    redact.remember_token("okta", first)
    redact.remember_token("kubernetes", "KubeToken-abcdefghij")
    redact.remember_token("okta", second)
    redact.remember_token("okta", third)
    assert redact.redact(f"{second} {third} KubeToken-abcdefghij") == f"{MASK} {MASK} {MASK}"
    assert redact.redact(first) == first


def test_a_jwt_is_never_remembered_its_shape_masks_it() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').decode().rstrip("=")
    claims = base64.urlsafe_b64encode(b'{"sub":"organization.x","exp":1}').decode().rstrip("=")
    jwt = f"{header}.{claims}.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    redact.remember_token("bitwarden", jwt)
    assert redact._KNOWN.view.anchors == frozenset()
    for written in (jwt, quote(jwt, safe=""), json.dumps({"access_token": jwt})):
        assert jwt not in redact.redact(f"server said {written}")


def test_a_text_without_a_secret_costs_no_search_per_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check by the text's first characters comes first: a log line holding none of the
    secrets is not searched for each of them, however many there are."""
    remember(*(f"Many-Secret-{i:03d}-xyzw" for i in range(300)))
    searched: list[str] = []
    real = redact._mask_forms
    monkeypatch.setattr(redact, "_mask_forms", lambda t, f: searched.append(t) or real(t, f))
    line = '{"level":"info","event":"fetch","users":100000,"detail":"GET /v1.0/users 200"}'
    assert redact.redact(line) == line
    assert searched == []
    assert redact.redact("x Many-Secret-123-xyzw y") == f"x {MASK} y"
    assert searched == ["x Many-Secret-123-xyzw y"]


def test_a_long_text_is_masked_across_its_pieces() -> None:
    """Text longer than one piece of the first-characters check: a secret across the border
    of two pieces is found."""
    secret = "Border-Secret-0123456789"
    remember(secret)
    at = redact._CHUNK - 10
    text = "x" * at + secret + "y" * redact._CHUNK
    assert redact.redact(text) == "x" * at + MASK + "y" * redact._CHUNK


# -- human passwords: no long run of letters and digits to fall back on ----------------------

HUMAN = "p#ss w'rd\"<ä>!*()"


def _human_forms(secret: str) -> dict[str, str]:
    """Encodings a server or library may echo, computed here independently; the secret has no
    run of 8 letters and digits, so each form must be known to be masked."""
    once = quote(secret, safe="")
    return {
        "HTML &#x27;": secret.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;"),
        "XML &apos; &#34;": secret.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&apos;"),
        "HTML &#39;": secret.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;"),
        "encodeURIComponent": quote(secret, safe="!*'()"),
        "URL-encoded twice": quote(once, safe=""),
        "Python repr": repr(secret)[1:-1],
        "bytes repr": repr(secret.encode())[2:-1],
        "trimmed": secret.strip(),
    }


@pytest.mark.parametrize("form", list(_human_forms(HUMAN)))
def test_a_human_password_is_masked_in_every_written_form(form: str) -> None:
    remember(f"  {HUMAN}\n")  # as a secret file holds it: padded
    written = _human_forms(HUMAN)[form]
    text = redact.redact(f"server said: [{written}] and more")
    assert written not in text, text
    assert text == f"server said: [{MASK}] and more"


def test_proxy_passwords_are_secrets_of_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password in a proxy variable (httpx, obstore and the Kubernetes client read them) is
    masked like a setting's, however it is written."""
    monkeypatch.setenv("HTTPS_PROXY", "http://me:Proxy#Pass/1@proxy.corp:3128")
    monkeypatch.setenv("all_proxy", "http://me:All%2BProxy%2FPass@proxy.corp:3128")
    found = settings_secrets(Settings())
    assert "Proxy#Pass/1" in found
    assert "All+Proxy/Pass" in found


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("AWS_SECRET_ACCESS_KEY", True),
        ("VAULT_TOKEN", True),
        ("DB_PASSWORD", True),
        ("AWS_PROFILE", False),
        ("AWS_REGION", False),
    ],
)
def test_a_variable_name_says_whether_its_value_is_a_credential(name: str, secret: bool) -> None:
    assert redact.secret_name(name) is secret
