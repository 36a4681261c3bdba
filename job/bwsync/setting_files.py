"""The files settings point to (CA bundles, private keys, certificates, credentials), read and
parsed in one place.

The validation pass (``bwsync.settings``) calls these before anything is contacted, and the
sources and clients call the same functions when they build their connections, so a file is
judged the same way by ``check --offline`` and by ``sync``. Every problem is a ``ConfigError``
(exit 2) naming the setting and the path and saying what is wrong with the file: missing,
unreadable, a directory, not PEM, not the right kind of key. The content of a file is never
echoed: most of these files are secrets.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bwsync.config import env_name
from bwsync.errors import ConfigError


def _not_a_path(path: Path, setting: str) -> None:
    """A value that is a file's content rather than its path (a key pasted into the variable,
    or a secret file named after the setting) is refused without being repeated."""
    text = str(path)
    if "\n" in text or "-----BEGIN" in text or text.lstrip().startswith("{") or len(text) > 1024:
        raise ConfigError(
            f"{setting}: holds what looks like the file's content, not its path; set the path "
            f"of the file (secret files are mounted in {env_name('secrets_dir')} under any other "
            "name)"
        )


def read_bytes(path: Path, setting: str) -> bytes:
    """The file's bytes, or ``ConfigError`` naming ``setting`` and why it cannot be read."""
    _not_a_path(path, setting)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def _pem_text(data: bytes, path: Path, setting: str, what: str) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{setting}: {path} is not a PEM file of {what}") from None


def ca_context(path: Path, setting: str) -> ssl.SSLContext:
    """A client TLS context trusting exactly the CA certificates in ``path`` (PEM).

    An explicit context is immune to ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``, so the setting
    always wins over the environment's bundles."""
    text = _pem_text(read_bytes(path, setting), path, setting, "CA certificates")
    try:
        # With ``cadata``, the default context loads these certificates and no system store.
        context = ssl.create_default_context(cadata=text)
    except ssl.SSLError:
        raise ConfigError(
            f"{setting}: {path} holds no usable PEM certificate (a CA bundle starts with "
            "-----BEGIN CERTIFICATE-----)"
        ) from None
    return context


def private_key(path: Path, setting: str) -> Any:
    """An unencrypted PEM private key (PKCS#8 or PKCS#1), RSA or EC P-256: what Okta's
    private_key_jwt signs with (RS256, ES256)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    data = read_bytes(path, setting)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{setting}: {path} is not an unencrypted PEM private key (PKCS#8 or PKCS#1)"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return key
    raise ConfigError(f"{setting}: only RSA and EC P-256 keys are supported")


def _pem_blocks(text: str, label: str) -> list[str]:
    """Each ``-----BEGIN <label>----- … -----END <label>-----`` block of ``text``, in order."""
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    out: list[str] = []
    at = text.find(begin)
    while at >= 0:
        stop = text.find(end, at)
        if stop < 0:
            break
        out.append(text[at : stop + len(end)])
        at = text.find(begin, stop)
    return out


def certificate_and_key(path: Path, setting: str) -> tuple[str, str]:
    """(private key PEM, certificate PEM) from one file holding both, as Entra's certificate
    credential wants them; each is parsed, so a truncated or encrypted key is named here."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    text = _pem_text(read_bytes(path, setting), path, setting, "a certificate and its key")
    keys = [
        block
        for label in ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY")
        for block in _pem_blocks(text, label)
    ]
    certs = _pem_blocks(text, "CERTIFICATE")
    if not keys or not certs:
        raise ConfigError(
            f"{setting}: {path} must hold the certificate and its private key, both PEM"
        )
    try:
        serialization.load_pem_private_key(keys[0].encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{setting}: the private key in {path} is not an unencrypted PEM private key"
        ) from None
    try:
        x509.load_pem_x509_certificate(certs[0].encode())
    except ValueError:
        raise ConfigError(
            f"{setting}: the certificate in {path} is not a valid PEM certificate"
        ) from None
    return keys[0], certs[0]


def service_account_key(path: Path, setting: str) -> dict[str, Any]:
    """A Google service-account JSON key with what a delegated token needs (``client_email``,
    ``private_key``, ``token_uri``), its private key parsed."""
    from cryptography.hazmat.primitives import serialization

    data = read_bytes(path, setting)
    try:
        info = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ConfigError(f"{setting}: {path} is not a JSON key file") from None
    missing = [
        k
        for k in ("client_email", "private_key", "token_uri")
        if not isinstance(info, dict) or not isinstance(info.get(k), str) or not info.get(k)
    ]
    if missing or info.get("type", "service_account") != "service_account":
        raise ConfigError(
            f"{setting}: {path} is not a service-account key "
            f"(missing {', '.join(missing) or 'type service_account'})"
        )
    if urlsplit(str(info["token_uri"])).scheme.lower() != "https":
        raise ConfigError(
            f"{setting}: {path}: token_uri must be an https:// URL "
            "(it receives the signed assertion, a credential for an hour)"
        )
    try:
        serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{setting}: the private_key in {path} is not a PEM private key"
        ) from None
    return dict(info)


def readable_file(path: Path, setting: str) -> None:
    """``path`` is a file this process can open for reading (its content is the reader's
    business: a directory export, judged by its source)."""
    _not_a_path(path, setting)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
