"""The masking boundary: every text that leaves the process passes through ``redact``.

Why one function: a secret leaks through the one exit that forgot to mask it. So there is one
place that knows what a secret looks like, and every exit calls it —

* ``errors.shorten`` (which every cut of a server's text goes through) masks *before* it cuts,
  so no prefix of an echoed secret survives a cut; every ``BwsyncError`` masks its message
  (``__str__``), so any ``str(exc)`` is masked whenever and wherever it is taken;
* the log formatters (``logs``) mask the message and each field of every line (the values,
  not the finished line, which a short secret could corrupt), JSON or console, every level;
* the CLI masks every line it prints (``check`` lines, errors, warnings, the ``plan`` text
  and the free-text fields of the ``plan`` JSON);
* the state's run summaries (``StateDocument.record_run``: ``last_run`` and ``history``);
* metrics carry no free text at all: every label value is a fixed set chosen by the code.

What is masked (replaced by ``***``):

* every secret value the process knows (``remember``): the settings' secrets, the credential
  files they point to (``remember_settings``), the cloud credentials of the environment
  (``CREDENTIAL_VARIABLES``, the object-store keys among them) and the tokens obtained at run
  time (Bitwarden, Graph, Google, Okta, OneLogin, Kubernetes: ``remember_token``, called by
  the one token flow, ``bwsync.http.auth``; the last two of each kind are kept, so loop mode's
  token per pass holds a bounded number; a JWT is left to the shape rule); the password of a
  proxy variable or of a kubeconfig's ``proxy-url``, a kubeconfig's basic-auth password, the
  values of its exec plugin's ``env`` whose names say credential (``secret_name``). Each value
  as given and trimmed, each in the forms a server that echoes a request would use: raw;
  URL-encoded (``quote``, ``quote_plus`` and JavaScript's ``encodeURIComponent``, upper- and
  lower-case hex, and encoded twice); JSON-escaped (with and without ASCII escapes, ``\\/``);
  XML/HTML-escaped (``&amp;``, ``&quot;``, ``&#x27;``, ``&#39;``, ``&apos;``); Python's repr of
  the text and of its UTF-8 bytes; base64 at every alignment (an HTTP Basic header carries
  ``b64(id:secret)``; the secret's part of it is masked whatever the id); and every run of 8
  or more letters and digits of the secret, so that an encoding not listed here still leaves
  nothing long enough to matter;
* ``user:password@`` in any URL;
* credentials recognised by their shape, known or not: ``Bearer``/``Basic``/``SSWS``/``DPoP``
  authorization values; JWTs (assertions and access tokens: bwsync never needs to show one);
  form, query, JSON and Python-repr fields such as ``client_secret``, ``client_assertion``,
  ``assertion``, ``password``, ``access_token``, ``sig``, ``x-amz-security-token``.

A remembered value shorter than ``MIN_SECRET`` characters is not masked: it would mask ordinary
words (a count, ``true``, ``info``). Never silently: ``check`` and every run warn about such a
setting (``bwsync.cleartext``). A value of 4 to 7 characters is masked wherever it occurs, a
word inside an email address included (``alice@***.com``): safe, and a reason to choose a
longer secret. Masking is process-wide on purpose: a
secret is a fact about the process, and an error built in a library callback on another thread
must be masked as surely as one built in the run loop.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from pydantic import BaseModel

MASK = "***"
#: Shorter remembered values are not masked (they would mask ordinary words).
MIN_SECRET = 4
#: Runs of letters and digits of a secret at least this long are masked on their own.
MIN_RUN = 8
#: The base64 of a secret, at some alignment, is masked when it is at least this long.
MIN_BASE64 = 8

#: Environment variables holding credentials that bwsync's libraries read themselves (obstore's
#: S3, Azure and GCS credential chains; the Kubernetes client): not settings of ours, secrets
#: of the process all the same.
CREDENTIAL_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_SERVICE_ACCOUNT",
)
#: Variables naming a file whose content is a credential (a projected token, a key file).
CREDENTIAL_FILE_VARIABLES = (
    "AZURE_FEDERATED_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
)
#: Proxy variables (httpx, obstore and the Kubernetes client read them): a password in one is
#: a secret of the process.
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
)
#: Words in a variable's name that make its value a secret (a kubeconfig exec plugin's ``env``).
_SECRET_NAME = re.compile(r"(?i)secret|token|passw|credential|private|key|auth|sig")
#: Settings naming a file that holds a private key: (section, field).
CREDENTIAL_FILE_SETTINGS = (
    ("entra", "certificate_file"),
    ("google", "credentials_file"),
    ("okta", "private_key_file"),
)

#: ``user:password@`` after a scheme's ``://`` (the literal start keeps the search fast)
_URL_USERINFO = re.compile(r"://[^/?#\s\"'<>\\]*@")
_AUTH_VALUE = re.compile(r"(?i)\b(bearer|ssws|dpop|basic)([ :]\s*)([A-Za-z0-9\-._~+/]{12,}=*)")
_FIELD_NAMES = (
    r"client_secret|client_assertion|assertion|password|passwd|access_token|refresh_token"
    r"|id_token|private_key|sig|signature|x-amz-signature|x-amz-security-token|apikey|api_key"
)
_FORM_FIELD = re.compile(rf"(?i)(?<![A-Za-z0-9_\-])({_FIELD_NAMES})=([^&\s\"'<>]+)")
#: ``"name": "value"`` (JSON) or ``'name': 'value'`` (a Python repr)
_QUOTED_FIELD = re.compile(
    rf"""(?i)(["'](?:{_FIELD_NAMES})["']\s*:\s*)(["'])(?:(?!\2)[^\\]|\\.)*\2"""
)
#: header.payload.signature, both JSON parts starting ``{"`` (``eyJ``)
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
_PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL
)
_AUTH_HINTS = ("bearer", "ssws", "dpop", "basic")
_FIELD_HINTS = ("secret", "assertion", "passw", "token", "private_key", "sig", "api")
_RUN = re.compile(rf"[A-Za-z0-9]{{{MIN_RUN},}}")


def forms(secret: str) -> set[str]:
    """Every form of ``secret`` that ``redact`` masks (see the module docstring)."""
    out = {secret}
    # "/" kept (a path), and JavaScript's encodeURIComponent, which keeps !*'() as they are
    for safe in ("", "/", "!*'()"):
        for encoded in (quote(secret, safe=safe), quote_plus(secret, safe=safe)):
            out.add(encoded)
            out.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
            out.add(encoded.replace("~", "%7E"))
    once = quote(secret, safe="")
    out.add(quote(once, safe=""))  # encoded twice (a URL carried in a query string)
    # XML and HTML: an error page quoting the request; &#x27; &#39; &apos; for the apostrophe
    escaped_html = html.escape(secret, quote=True)
    out.add(escaped_html)
    out.add(escaped_html.replace("&#x27;", "&#39;"))
    out.add(escaped_html.replace("&#x27;", "&apos;").replace("&quot;", "&#34;"))
    out.add(html.escape(secret, quote=False))
    # Python's repr of the str and of its UTF-8 bytes (a library's error quoting its input)
    out.add(repr(secret)[1:-1])
    out.add(repr(secret.encode())[2:-1])
    for ascii_only in (False, True):
        escaped = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        out.add(escaped)
        out.add(escaped.replace("/", "\\/"))
        out.add(re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group(0)[2:].upper(), escaped))
    out.update(_base64_cores(secret.encode()))
    out.update(_RUN.findall(secret))
    return {f for f in out if len(f) >= MIN_SECRET}


def _base64_cores(data: bytes) -> set[str]:
    """The part of ``b64(prefix + data + suffix)`` that depends on ``data`` alone, for each of
    the three alignments (and in the URL-safe alphabet): found in any base64 text containing
    ``data``, such as a Basic header's ``b64(id:secret)``."""
    out: set[str] = set()
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode()
        start = -(-8 * k // 6)
        end = 8 * (k + len(data)) // 6
        core = encoded[start:end]
        if len(core) >= MIN_BASE64:
            out.add(core)
            out.add(core.replace("+", "-").replace("/", "_"))
    return out


#: Forms at least this long are found through their first ``ANCHOR`` characters; shorter
#: ones (the forms of a short secret) through a small pattern of their own.
ANCHOR = 8
#: Tokens kept per slot (``remember_token``): the current one and the one it replaced, whose
#: errors may still be on their way out when the next token arrives.
TOKENS_PER_SLOT = 2
#: Text is cut into pieces this long to list its ``ANCHOR``-grams (bounded memory).
_CHUNK = 65_536


@dataclass(frozen=True, slots=True)
class _View:
    """What ``redact`` reads, replaced whole on every change (readers take no lock)."""

    index: dict[str, tuple[str, ...]]
    """First ``ANCHOR`` characters of each long form → the forms starting so."""
    anchors: frozenset[str]
    short: re.Pattern[str] | None
    """Every form shorter than ``ANCHOR``, longest first, or ``None``."""


_EMPTY = _View({}, frozenset(), None)


class _Known:
    """The remembered secrets: those of the process (``remember``), kept for its life, and the
    tokens of each slot (``remember_token``), the oldest forgotten as new ones arrive — so
    that loop mode, which obtains a token per client and pass, holds a bounded number.

    Why not one regular expression of every form (as before): it was compiled again on every
    token, and Python's compiler takes time and memory superlinear in its size — a token of
    1.5 kB has ~100 forms; 144 tokens took 2.4 s per addition and 934 MB. Now each form is
    filed under its first ``ANCHOR`` characters; ``redact`` lists the text's ``ANCHOR``-grams
    (its cost depends on the text, not on how many secrets there are), and only when one is
    the start of a form does it look for the forms filed there (``_mask_forms``). Forms
    shorter than ``ANCHOR`` (a short secret's) stay in one small pattern."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fixed: set[str] = set()
        self._slots: dict[str, deque[str]] = {}
        self._forms: dict[str, frozenset[str]] = {}
        self.view = _EMPTY

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            new = {v for v in values if len(v) >= MIN_SECRET} - self._fixed
            if new:
                self._fixed |= new
                self._rebuild()

    def hold(self, slot: str, token: str) -> None:
        if len(token) < MIN_SECRET:
            return
        with self._lock:
            held = self._slots.setdefault(slot, deque(maxlen=TOKENS_PER_SLOT))
            if token in held:
                return
            held.append(token)
            self._rebuild()

    def clear(self) -> None:
        with self._lock:
            self._fixed.clear()
            self._slots.clear()
            self._forms.clear()
            self.view = _EMPTY

    def _rebuild(self) -> None:
        values = set(self._fixed).union(*self._slots.values())
        self._forms = {v: self._forms.get(v) or frozenset(forms(v)) for v in values}
        every: set[str] = set().union(*self._forms.values())
        index: dict[str, list[str]] = {}
        short = []
        for form in every:
            if len(form) >= ANCHOR:
                index.setdefault(form[:ANCHOR], []).append(form)
            else:
                short.append(form)
        self.view = _View(
            {a: tuple(sorted(fs, key=_longest_first)) for a, fs in index.items()},
            frozenset(index),
            re.compile("|".join(re.escape(f) for f in sorted(short, key=_longest_first)))
            if short
            else None,
        )


def _longest_first(form: str) -> tuple[int, str]:
    """An alternation takes the first branch that matches: a form inside a longer one must not
    win and leave the rest of the longer one behind."""
    return (-len(form), form)


def _mask_known(text: str, view: _View) -> str:
    """``text`` with the remembered forms it holds masked."""
    anchors = view.anchors
    if anchors and len(text) >= ANCHOR:
        hits: set[str] = set()
        step = _CHUNK - ANCHOR + 1
        for at in range(0, len(text) - ANCHOR + 1, step):
            piece = text[at : at + _CHUNK]
            grams = {piece[i : i + ANCHOR] for i in range(len(piece) - ANCHOR + 1)}
            hits |= grams & anchors  # CPython walks the smaller of the two
        if hits:
            text = _mask_forms(text, {f for a in hits for f in view.index[a] if f in text})
    if view.short is not None:
        text = view.short.sub(MASK, text)
    return text


def _mask_forms(text: str, found: set[str]) -> str:
    """``text`` with each of ``found`` (forms it holds) masked as an alternation of them,
    longest first, would: leftmost first, the longest at a place, no overlaps. Not a compiled
    pattern: ``re`` keeps the last 512 it compiled, each as big as a token's forms, and a
    forgotten token must not live on there."""
    places = sorted((at, -len(form)) for form in found for at in _occurrences(text, form))
    out: list[str] = []
    done = 0
    for at, minus_length in places:
        if at >= done:
            out += (text[done:at], MASK)
            done = at - minus_length
    return "".join(out) + text[done:] if out else text


def _occurrences(text: str, form: str) -> Iterator[int]:
    at = text.find(form)
    while at >= 0:
        yield at
        at = text.find(form, at + 1)


_KNOWN = _Known()


def redact(text: str) -> str:
    """``text`` with every remembered secret (in each of its forms), URL credentials and
    credential-shaped fields masked. Call it on anything about to leave the process."""
    if "://" in text and "@" in text:
        text = _URL_USERINFO.sub(f"://{MASK}@", text)
    low = text.lower()
    if any(h in low for h in _AUTH_HINTS):
        text = _AUTH_VALUE.sub(_auth_value, text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if any(h in low for h in _FIELD_HINTS):
        if "=" in text:
            text = _FORM_FIELD.sub(rf"\1={MASK}", text)
        if ":" in text:
            text = _QUOTED_FIELD.sub(rf"\1\2{MASK}\2", text)
    # the shapes first: a whole credential goes, not only the remembered part of it
    return _mask_known(text, _KNOWN.view)


def _auth_value(match: re.Match[str]) -> str:
    scheme, sep, value = match.groups()
    if scheme.lower() == "basic" and not _is_basic_credential(value):
        return match.group(0)  # "Basic authentication…": prose, not a header
    return f"{scheme}{sep}{MASK}"


def _is_basic_credential(value: str) -> bool:
    try:
        return b":" in base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except ValueError:
        return False


def redact_data(value: Any) -> Any:
    """``redact`` applied to every string inside a JSON-like structure (dicts, lists)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (for attributes and messages naming a server)."""
    return _URL_USERINFO.sub(f"://{MASK}@", url) if "://" in url else url


def remember(*values: str | None) -> None:
    """Mask these values (and their forms) in everything ``redact`` sees from now on, for the
    life of the process: the settings' secrets and credentials of the environment."""
    _KNOWN.add(form for v in values if v for form in (v, v.strip()))


def remember_token(slot: str, token: str | None) -> None:
    """Mask a credential obtained at run time (an access token) from now on, in place of the
    slot's oldest: a slot (``"bitwarden"``, ``"graph"``, ``"kubernetes"`` …) keeps the last
    ``TOKENS_PER_SLOT``, so a process that obtains a token per pass (loop mode) holds a
    bounded number, however long it runs. A JWT is not remembered: the shape rule masks any
    JWT, in every form a server echoes it (its characters need no encoding)."""
    if token and not _JWT.fullmatch(token):
        _KNOWN.hold(slot, token)


def forget_all() -> None:
    """Forget every remembered secret (tests: each test starts as a new process would)."""
    _KNOWN.clear()


def remember_settings(settings: BaseModel) -> None:
    """Remember every secret of these settings, of the credential files they name and of the
    process environment (``settings_secrets``)."""
    remember(*settings_secrets(settings))


def settings_secrets(settings: BaseModel) -> list[str]:
    """The secret values known to a process run with these settings (``bwsync.config.Settings``;
    typed loosely because ``config`` itself uses this module): every ``SecretStr``
    setting; the password of any URL setting (``https://user:password@host``); the private
    keys in the credential files the settings name (each PEM block, and each of its lines, so
    that a block re-wrapped or quoted in JSON is still caught); the credentials of the
    environment (``CREDENTIAL_VARIABLES`` and the files named by
    ``CREDENTIAL_FILE_VARIABLES``) and the password of a proxy variable
    (``PROXY_VARIABLES``). An unreadable file adds nothing: reading it is the job of the code
    that uses it, which reports the error."""
    out: list[str] = []
    for name in type(settings).model_fields:
        section = getattr(settings, name)
        for field in getattr(type(section), "model_fields", {}):
            value = getattr(section, field)
            if value is not None and hasattr(value, "get_secret_value"):
                out.append(value.get_secret_value())
            elif isinstance(value, str) and "://" in value and "@" in value:
                password = _url_password(value)
                if password:
                    out += [password, unquote(password)]
                out += url_passwords(value)
    for section_name, field in CREDENTIAL_FILE_SETTINGS:
        path = getattr(getattr(settings, section_name), field)
        if path is not None:
            out.extend(_file_secrets(Path(path)))
    for variable in CREDENTIAL_VARIABLES:
        value = os.environ.get(variable)
        if value:
            out.append(value)
            out.extend(_key_parts(value))
    for variable in CREDENTIAL_FILE_VARIABLES:
        value = os.environ.get(variable)
        if value:
            out.extend(_file_secrets(Path(value), whole=True))
    for variable in PROXY_VARIABLES:
        out.extend(url_passwords(os.environ.get(variable) or ""))
    return out


def secret_name(name: str) -> bool:
    """Whether a variable so named holds a credential (``AWS_SECRET_ACCESS_KEY``,
    ``VAULT_TOKEN``, ``DB_PASSWORD`` …), by the words in its name."""
    return bool(_SECRET_NAME.search(name))


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def url_passwords(value: str) -> list[str]:
    """What may be the password of a URL as written, even one a parser splits in the wrong
    place (a ``#``, ``/``, ``?`` or space left unencoded in the password ends the authority
    early, and the parser then sees no password at all): the text after the first ``:`` of
    the authority, up to the last ``@`` and up to the first, raw and decoded."""
    _, sep, rest = value.partition("://")
    if not sep or "@" not in rest:
        return []
    out: list[str] = []
    for userinfo in (rest.rpartition("@")[0], rest.partition("@")[0]):
        _, colon, password = userinfo.partition(":")
        if colon and password:
            out += [password, unquote(password)]
    return list(dict.fromkeys(out))


def shown_url(value: str) -> str:
    """``value`` fit to show in a message: as given, unless it holds ``@`` after a scheme (a
    user and maybe a password, possibly written so no parser finds where they end), then
    only its scheme and what follows the last ``@`` up to a path, query or fragment."""
    scheme, sep, rest = value.partition("://")
    if not sep or "@" not in rest:
        return value
    host = re.split(r"[/?#\s]", rest.rpartition("@")[2], maxsplit=1)[0]
    return f"{scheme}://{MASK}@{host}"


def _file_secrets(path: Path, *, whole: bool = False) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return []
    parts = _key_parts(text)
    if whole and not parts and text.strip():
        parts = [text.strip()]  # a token file
    return parts


def _key_parts(text: str) -> list[str]:
    """The private keys in ``text`` (PEM, or a JSON key file's ``private_key``): each block
    and each of its base64 lines."""
    found = _PEM_BLOCK.findall(text)
    if not found and text.lstrip().startswith("{"):
        try:
            key = json.loads(text).get("private_key")
        except (ValueError, AttributeError):
            key = None
        found = _PEM_BLOCK.findall(key) if isinstance(key, str) else []
    out: list[str] = []
    for block in found:
        out.append(block)
        out.extend(line.strip() for line in block.splitlines()[1:-1] if len(line.strip()) >= 16)
    return out
