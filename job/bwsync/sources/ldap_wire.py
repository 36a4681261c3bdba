"""The LDAP wire: a small engine interface with two implementations.

``ldap.py`` knows what to ask (bases, filters, attributes) and what the answers mean; this module
knows how to ask. Keeping the two apart lets the source run unchanged on

* **python-ldap** (C libldap): 3–4× faster than ldap3 and far lighter on memory, so it is the
  default whenever it is importable (the ``fast-ldap`` extra; the image ships it);
* **ldap3** (pure Python): always installed, the fallback.

``BWSYNC_LDAP__ENGINE`` picks one explicitly. Both engines hand the source the same shapes:
pages (sequences) of ``(dn, attributes)`` with attribute values as raw ``bytes`` lists, keys as
the server spelled them, search references already dropped (python-ldap: entries whose dn is
``None``, which the source skips). Decoding is left to the source, which decodes only the
attributes it uses.

Every library exception is translated here, at the boundary, into ``LdapError`` (exit 3),
whose message names the server URL and the operation and never contains
the bind password. ``reason`` classifies the failure so ``check()`` can say which step broke.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from bwsync import stop
from bwsync.config import env_name
from bwsync.errors import ConfigError, LdapError, LdapReason, shorten

Attrs = Mapping[str, Sequence[bytes]]
"""One entry's attributes: name as the server spelled it → raw values."""
Entry = tuple[str | None, Attrs]
"""``(dn, attributes)``; a ``None`` dn is a search reference and carries no attributes."""

EngineName = Literal["python-ldap", "ldap3"]
#: How an engine classifies a failure; ``_Engine._fail`` turns it into the message.
Failure = Literal[
    "credentials",
    "filter",
    "no_such_object",
    "size",
    "timeout",
    "unreachable",
    "tls",
    "needs_tls",
    "other",
]

#: LDAP_SERVER_SHOW_DELETED_OID: makes AD return tombstones under CN=Deleted Objects.
SHOW_DELETED_OID = "1.2.840.113556.1.4.417"
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"

CA_HINT = f"is {env_name('ldap', 'ca_file')} the CA that signed the server certificate?"
SIZE_HINT = (
    "the server caps how many entries this account may read; raise its limit (OpenLDAP: "
    "limits dn.exact=<bind DN> size=unlimited size.pr=unlimited size.prtotal=unlimited)"
)
HOST_HINT = f"does the server certificate name the host in {env_name('ldap', 'url')}?"


@dataclass(frozen=True, slots=True)
class WireOptions:
    """How to reach and authenticate to the server (a secret-free view plus the password)."""

    url: str
    start_tls: bool = False
    ca_file: Path | None = None
    tls_verify: bool = True
    bind_dn: str | None = None
    bind_password: str | None = None
    timeout: float = 300.0
    page_size: int = 1000

    def __repr__(self) -> str:  # the password never reaches a log through a repr
        return f"WireOptions(url={self.url!r}, bind_dn={self.bind_dn!r}, password=***)"

    @property
    def uses_tls(self) -> bool:
        return self.start_tls or self.url.lower().startswith("ldaps://")


class Wire(Protocol):
    """One connection to one server. ``open`` connects, upgrades and binds; ``close`` unbinds."""

    engine: EngineName
    url: str

    def open(self) -> None: ...

    def root_dse(self, attributes: Sequence[str]) -> Attrs: ...

    def search(
        self,
        base: str,
        filterstr: str,
        attributes: Sequence[str],
        *,
        show_deleted: bool = False,
        filter_setting: str | None = None,
    ) -> Iterator[Sequence[Entry]]:
        """Subtree search with the paged-results control; yields one page at a time, in server
        order. ``filter_setting`` names the setting a malformed filter came from."""
        ...

    def read(self, dn: str, attributes: Sequence[str]) -> Attrs | None:
        """Base-scope read of one entry; ``None`` when it does not exist."""
        ...

    def close(self) -> None: ...


def _ldap3() -> Any:
    """Import ldap3. Its 2.9.1 release touches pyasn1 names that newer pyasn1 deprecates; that
    warning is about ldap3's code, not ours, so it is silenced for the import only."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ldap3
        import ldap3.core.exceptions
        import ldap3.utils.config

    return ldap3


def python_ldap_available() -> bool:
    try:
        import _ldap  # noqa: F401  (python-ldap's C extension: see PythonLdapWire)
    except ImportError:
        return False
    return True


def make_wire(engine: Literal["auto", "python-ldap", "ldap3"], options: WireOptions) -> Wire:
    """The wire for ``engine``; ``auto`` prefers python-ldap when it is importable."""
    if engine == "auto":
        engine = "python-ldap" if python_ldap_available() else "ldap3"
    if engine == "python-ldap":
        if not python_ldap_available():
            raise LdapError(
                options.url,
                f"{env_name('ldap', 'engine')}=python-ldap but python-ldap is not installed "
                "(install bwsync[fast-ldap], or use ldap3)",
            )
        return PythonLdapWire(options)
    return Ldap3Wire(options)


#: A StartTLS extended request, BER-encoded (message id 1), for ``tls_diagnosis``.
_STARTTLS_REQUEST = b"\x30\x1d\x02\x01\x01\x77\x18\x80\x16" + b"1.3.6.1.4.1.1466.20037"


def tls_diagnosis(options: WireOptions) -> tuple[LdapReason, str] | None:
    """Why a connection fails below LDAP, in words a person can act on.

    libldap (GnuTLS here) reports a refused certificate as "Can't contact LDAP server: (unknown
    error code)". When that happens, repeat the connection with the standard library — same
    CA file, same host name — and return ``("unreachable", why)`` when TCP fails or
    ``("tls", why)`` with OpenSSL's verification message; ``None`` when it cannot tell.
    """
    parts = urlsplit(options.url)
    host = parts.hostname or ""
    port = parts.port or (636 if parts.scheme.lower() == "ldaps" else 389)
    try:
        sock = socket.create_connection((host, port), timeout=min(options.timeout, 10.0))
    except OSError as exc:
        return "unreachable", exc.strerror or str(exc)
    with sock:
        if not options.uses_tls:
            return None
        try:
            if options.start_tls:
                sock.sendall(_STARTTLS_REQUEST)
                sock.recv(4096)  # the extended response; a refusal shows in the handshake
            ctx = ssl.create_default_context(
                cafile=str(options.ca_file) if options.ca_file else None
            )
            if not options.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(sock, server_hostname=host):
                return None
        except ssl.SSLCertVerificationError as exc:
            return "tls", f"certificate verify failed: {exc.verify_message}"
        except (OSError, ssl.SSLError) as exc:
            return "tls", str(exc)


def _tls_message(detail: str) -> str:
    low = detail.lower()
    if "mismatch" in low or "not valid for" in low or "doesn't match" in low:
        return f"TLS handshake failed: {detail} ({HOST_HINT})"
    return f"TLS handshake failed: {detail} ({CA_HINT})"


def _looks_like_tls(detail: str) -> bool:
    low = detail.lower()
    return any(
        w in low
        for w in ("certificate", "ssl", "tls", "handshake", "x509", "issuer", "not trusted")
    )


class _Engine:
    """What the two engines share: the options, the connection, and the way a library exception
    becomes an ``LdapError`` (each engine classifies its own library's exceptions)."""

    engine: EngineName

    def __init__(self, options: WireOptions) -> None:
        self.options = options
        self.url = options.url
        self._conn: Any = None

    def _classify(self, op: str, exc: Exception) -> tuple[Failure, str]:
        """The kind of failure ``exc`` is, and the detail its message shows."""
        raise NotImplementedError

    def _fail(
        self,
        op: str,
        exc: Exception,
        *,
        base: str | None = None,
        filterstr: str | None = None,
        filter_setting: str | None = None,
    ) -> LdapError:
        """``exc`` as an ``LdapError``: one message per kind of failure, written once so the two
        engines cannot drift apart (their tests assert identical messages)."""
        kind, detail = self._classify(op, exc)
        url, o = self.url, self.options
        if kind == "credentials":
            return LdapError(
                url, f"bind as {o.bind_dn} refused: invalid credentials", "credentials"
            )
        if kind == "filter":
            return LdapError(url, _filter_message(filterstr, filter_setting), "filter")
        if kind == "no_such_object":
            return LdapError(url, f"base DN {base} does not exist", "no_such_object")
        if kind == "size":
            return LdapError(url, f"{op} failed: {detail} ({SIZE_HINT})")
        if kind == "timeout":
            return LdapError(url, f"{op} timed out after {o.timeout:g} s", "timeout")
        if kind == "unreachable":
            return LdapError(url, f"server unreachable: {detail}", "unreachable")
        if kind == "tls":
            return LdapError(url, _tls_message(detail), "tls")
        if kind == "needs_tls":
            return LdapError(
                url,
                f"bind as {o.bind_dn} refused: {detail} "
                f"(the server wants TLS: use ldaps:// or {env_name('ldap', 'start_tls')}=true)",
                "credentials",
            )
        return LdapError(url, f"{op} failed: {detail}")


# -- python-ldap --------------------------------------------------------------------------------


def paged_response_cookie(value: bytes) -> bytes:
    """The cookie of a paged-results response control (RFC 2696: ``SEQUENCE { size INTEGER,
    cookie OCTET STRING }``; the size is the server's estimate, unused). ``ValueError`` when
    it is not that shape.

    Decoded here rather than by python-ldap's ``_ldap.decode_page_control``, which crashes the
    process (a segmentation fault, python-ldap 3.4.8) on an empty control value: a server, or
    anything between it and a plain ``ldap://`` client, could end a run with no message and
    no exit code of ours. The request control is python-ldap's (``encode_page_control``)."""

    def element(at: int, tag: int) -> tuple[int, int]:
        """(start, end) of the content of the element at ``at``, which must carry ``tag``."""
        if at + 2 > len(value) or value[at] != tag:
            raise ValueError(f"expected BER tag {tag:#x} at byte {at}")
        first, at = value[at + 1], at + 2
        length = first
        if first & 0x80:
            count = first & 0x7F
            if not 0 < count <= 4 or at + count > len(value):
                raise ValueError(f"bad BER length at byte {at - 1}")
            length, at = int.from_bytes(value[at : at + count], "big"), at + count
        if at + length > len(value):
            raise ValueError(f"BER element at byte {at} runs past the end")
        return at, at + length

    start, end = element(0, 0x30)
    _, size_end = element(start, 0x02)
    cookie_start, cookie_end = element(size_end, 0x04)
    if cookie_end != end:
        raise ValueError("trailing bytes in the paged results control")
    return value[cookie_start:cookie_end]


class PythonLdapWire(_Engine):
    """python-ldap engine: the raw ``search_ext``/``result4`` loop, one page in memory.

    It drives python-ldap's C extension, ``_ldap``, directly rather than through the ``ldap``
    package. That package's ``__init__`` loads its object wrapper, the schema module (which
    pulls in ``urllib.request``, ``http.client`` and ``email``) and, through ``ldap.extop``,
    pyasn1: 35-100 ms at every start, on the run's critical path, where ``_ldap`` loads in
    6 ms. What the wrapper adds is not needed here: a lock per call (one connection, one
    thread), trace logging, and control classes around ``_ldap``'s own paged-control codec
    (whose decoder this engine replaces: see ``paged_response_cookie``). The exception
    classes are the same objects (``ldap`` re-exports ``_ldap``'s), and the wrapper's one
    other service, filling a missing ``info`` from ``errno``, is done in ``_classify``.
    ``_ldap`` has had this interface since python-ldap 2; the tests run every LDAP scenario
    against it, and the lock file pins the version."""

    engine: EngineName = "python-ldap"

    def __init__(self, options: WireOptions) -> None:
        import _ldap

        self._ldap: Any = _ldap
        super().__init__(options)

    def _classify(self, op: str, exc: Exception) -> tuple[Failure, str]:
        ldap = self._ldap
        info: dict[str, Any] = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        desc = str(info.get("desc") or type(exc).__name__)
        if "info" not in info and isinstance(info.get("errno"), int):
            info = {**info, "info": os.strerror(info["errno"])}  # as python-ldap's wrapper does
        extra = str(info.get("info") or "")
        detail = shorten(f"{desc}: {extra}" if extra else desc)
        kind: Failure | None = (
            "credentials" if isinstance(exc, ldap.INVALID_CREDENTIALS)
            else "filter" if isinstance(exc, ldap.FILTER_ERROR)
            else "no_such_object" if isinstance(exc, ldap.NO_SUCH_OBJECT)
            else "size" if isinstance(exc, ldap.SIZELIMIT_EXCEEDED | ldap.ADMINLIMIT_EXCEEDED)
            else "timeout" if isinstance(exc, ldap.TIMEOUT | ldap.TIMELIMIT_EXCEEDED)
            else None
        )  # fmt: skip
        if kind is not None:
            return kind, detail
        if isinstance(exc, ldap.SERVER_DOWN | ldap.CONNECT_ERROR):
            found = tls_diagnosis(self.options) if op in ("StartTLS", "bind") else None
            if found is not None and found[0] == "unreachable":
                return "unreachable", found[1]
            if found is not None or op == "StartTLS" or _looks_like_tls(extra):
                return "tls", shorten(found[1] if found else detail)
            return "unreachable", detail
        if op == "bind" and isinstance(
            exc, ldap.STRONG_AUTH_REQUIRED | ldap.CONFIDENTIALITY_REQUIRED
        ):
            return "needs_tls", detail
        return "other", detail

    def open(self) -> None:
        ldap = self._ldap
        o = self.options
        try:
            conn = ldap.initialize(o.url)
            self._conn = conn
            conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
            conn.set_option(ldap.OPT_REFERRALS, 0)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, o.timeout)
            conn.set_option(ldap.OPT_TIMEOUT, o.timeout)
            conn.set_option(ldap.OPT_TIMELIMIT, max(1, int(o.timeout)))
            conn.set_option(ldap.OPT_SIZELIMIT, 0)
            if o.uses_tls:
                if o.ca_file is not None:
                    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(o.ca_file))
                conn.set_option(
                    ldap.OPT_X_TLS_REQUIRE_CERT,
                    ldap.OPT_X_TLS_DEMAND if o.tls_verify else ldap.OPT_X_TLS_NEVER,
                )
                # Options set on a connection apply only once a new TLS context is built.
                conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        except ldap.LDAPError as exc:
            raise self._fail("connect", exc) from exc
        except ValueError as exc:
            # libldap refused a TLS option ("option error"): the CA file it could not load.
            # The settings pass reads that file first, so only a file libldap alone rejects
            # gets here; it is still the setting's fault.
            raise ConfigError(
                f"{env_name('ldap', 'ca_file')}: libldap cannot use {o.ca_file} for TLS ({exc})"
                if o.ca_file is not None
                else f"{env_name('ldap', 'url')}: libldap cannot set up TLS for {o.url} ({exc})"
            ) from None
        if o.start_tls:
            try:
                conn.start_tls_s()
            except ldap.LDAPError as exc:
                raise self._fail("StartTLS", exc) from exc
        try:
            msgid = conn.simple_bind(o.bind_dn or "", o.bind_password or "", None, None)
            conn.result4(msgid, 1, o.timeout, 0, 0, 0)
        except ldap.LDAPError as exc:
            raise self._fail("bind", exc) from exc

    def _base_entry(self, dn: str, attributes: Sequence[str]) -> Attrs | None:
        """Base-scope read of ``dn`` (``""``: the root DSE); library errors are the caller's."""
        conn, timeout = self._conn, self.options.timeout
        msgid = conn.search_ext(
            dn, self._ldap.SCOPE_BASE, "(objectClass=*)", list(attributes), 0, None, None, timeout
        )
        for entry_dn, attrs in conn.result4(msgid, 1, timeout, 0, 0, 0)[1]:
            if entry_dn is not None:
                return attrs  # type: ignore[no-any-return]
        return None

    def root_dse(self, attributes: Sequence[str]) -> Attrs:
        try:
            attrs = self._base_entry("", attributes)
        except self._ldap.LDAPError as exc:
            raise self._fail("reading the root DSE", exc) from exc
        return {} if attrs is None else attrs

    def search(
        self,
        base: str,
        filterstr: str,
        attributes: Sequence[str],
        *,
        show_deleted: bool = False,
        filter_setting: str | None = None,
    ) -> Iterator[Sequence[Entry]]:
        ldap = self._ldap
        conn = self._conn
        size = self.options.page_size
        extra: list[tuple[str, bool, bytes | None]] = []
        if show_deleted:
            extra.append((SHOW_DELETED_OID, True, None))
        attrlist = list(attributes)
        timeout = self.options.timeout
        search_ext, result4 = conn.search_ext, conn.result4
        scope = ldap.SCOPE_SUBTREE
        encode_page_control = ldap.encode_page_control

        def request(cookie: bytes) -> int:
            stop.check(f"the next page of the search under {base}")
            paged = (PAGED_RESULTS_OID, True, encode_page_control(size, cookie))
            sent: int = search_ext(base, scope, filterstr, attrlist, 0, [paged, *extra], None)
            return sent

        def fail(exc: Exception) -> LdapError:
            return self._fail(
                f"search under {base}",
                exc,
                base=base,
                filterstr=filterstr,
                filter_setting=filter_setting,
            )

        # Pipelined: as soon as a page (and its cookie) is in, the next page is requested, so
        # the server produces page n+1 while the caller turns page n into records. On two
        # cores that hides most of the server's time.
        msgid: int | None = None
        try:
            try:
                msgid = request(b"")
            except ldap.LDAPError as exc:
                raise fail(exc) from exc
            while msgid is not None:
                try:
                    _, page, _, rctrls = result4(msgid, 1, timeout, 0, 0, 0)  # no extop: 4
                except ldap.LDAPError as exc:
                    raise fail(exc) from exc
                msgid = None
                cookie = b""
                for oid, _critical, value in rctrls:
                    if oid == PAGED_RESULTS_OID:
                        try:
                            cookie = paged_response_cookie(value or b"")
                        except ValueError as exc:
                            raise LdapError(
                                self.url,
                                f"search under {base}: the server's paged results control "
                                f"is malformed ({exc})",
                            ) from None
                        break
                if cookie:
                    try:
                        msgid = request(cookie)
                    except ldap.LDAPError as exc:
                        raise fail(exc) from exc
                yield page
                del page  # the library's objects never outlive their page
        finally:
            if msgid is not None:  # the caller stopped early: do not leave the server working
                with contextlib.suppress(ldap.LDAPError):
                    conn.abandon_ext(msgid, None, None)

    def read(self, dn: str, attributes: Sequence[str]) -> Attrs | None:
        ldap = self._ldap
        try:
            return self._base_entry(dn, attributes)
        except ldap.NO_SUCH_OBJECT:
            return None
        except ldap.LDAPError as exc:
            raise self._fail(f"reading {dn}", exc, base=dn) from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(self._ldap.LDAPError):  # already gone: nothing to release
                conn.unbind_ext(None, None)


# -- ldap3 --------------------------------------------------------------------------------------


def _ldap3_tls_class() -> Any:
    Tls = _ldap3().Tls

    class VerifyingTls(Tls):  # type: ignore[misc,valid-type]
        """ldap3's ``Tls`` turns the standard library's host-name check off and replaces it
        with its own (``ssl.match_hostname``: deprecated, gone in 3.12). This one lets
        ``ssl`` check chain and host name during the handshake, as every other client does."""

        def __init__(self, ca_file: Path | None, verify: bool) -> None:
            super().__init__(
                validate=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
                ca_certs_file=str(ca_file) if ca_file else None,
            )
            self.verify = verify

        def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
            ctx = ssl.create_default_context(cafile=self.ca_certs_file)
            if not self.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            raw = connection.socket
            try:
                connection.socket = ctx.wrap_socket(
                    raw,
                    server_side=False,
                    do_handshake_on_connect=do_handshake,
                    server_hostname=connection.server.host,
                )
            except BaseException:
                raw.close()  # ldap3 would leave the refused socket open
                raise

    return VerifyingTls


class Ldap3Wire(_Engine):
    """ldap3 engine: its own paged loop (ldap3's generator yields each page in reverse order,
    and the source must keep server order), raw attribute values, no schema reading."""

    engine: EngineName = "ldap3"

    def __init__(self, options: WireOptions) -> None:
        self._ldap3 = _ldap3()
        super().__init__(options)

    def _classify(self, op: str, exc: Exception) -> tuple[Failure, str]:
        e3 = self._ldap3.core.exceptions

        text = shorten(str(exc) or type(exc).__name__)
        timed_out = isinstance(
            exc, e3.LDAPTimeLimitExceededResult | e3.LDAPResponseTimeoutError
        ) or (isinstance(exc, e3.LDAPSocketReceiveError) and "timed out" in text)
        kind: Failure | None = (
            "credentials" if isinstance(exc, e3.LDAPInvalidCredentialsResult)
            else "filter" if isinstance(exc, e3.LDAPInvalidFilterError)
            else "no_such_object" if isinstance(exc, e3.LDAPNoSuchObjectResult)
            else "size" if isinstance(
                exc, e3.LDAPSizeLimitExceededResult | e3.LDAPAdminLimitExceededResult)
            else "timeout" if timed_out
            else None
        )  # fmt: skip
        if kind is not None:
            return kind, text
        if isinstance(exc, e3.LDAPStartTLSError | e3.LDAPCertificateError | ssl.SSLError) or (
            isinstance(exc, e3.LDAPSocketOpenError) and _looks_like_tls(text)
        ):
            return "tls", _ssl_detail(text)
        if isinstance(exc, e3.LDAPCommunicationError | OSError):
            return "unreachable", text
        if op == "bind" and isinstance(
            exc, e3.LDAPStrongerAuthRequiredResult | e3.LDAPConfidentialityRequiredResult
        ):
            return "needs_tls", text
        return "other", text

    def open(self) -> None:
        ldap3 = self._ldap3
        LDAPException = ldap3.core.exceptions.LDAPException

        o = self.options
        parts = urlsplit(o.url)
        ldaps = parts.scheme.lower() == "ldaps"
        try:
            tls = _ldap3_tls_class()(o.ca_file, o.tls_verify) if o.uses_tls else None
            server = ldap3.Server(
                parts.hostname or "",
                port=parts.port or (636 if ldaps else 389),
                use_ssl=ldaps,
                tls=tls,
                get_info=ldap3.NONE,
                connect_timeout=o.timeout,
            )
            conn = ldap3.Connection(
                server,
                user=o.bind_dn or None,
                password=o.bind_password or None,
                auto_bind=ldap3.AUTO_BIND_NONE,
                raise_exceptions=True,
                read_only=True,
                receive_timeout=max(1, math.ceil(o.timeout)),
                auto_referrals=False,
                auto_range=False,
                check_names=False,
                return_empty_attributes=False,
            )
            self._conn = conn
        except (LDAPException, OSError) as exc:
            raise self._fail("connect", exc) from exc
        try:
            conn.open()
        except (LDAPException, OSError) as exc:
            raise self._fail("connect", exc) from exc
        if o.start_tls:
            try:
                conn.start_tls()
            except (LDAPException, OSError) as exc:
                raise self._fail("StartTLS", exc) from exc
        try:
            conn.bind()
        except (LDAPException, OSError) as exc:
            raise self._fail("bind", exc) from exc

    @contextlib.contextmanager
    def _plain_dicts(self) -> Iterator[None]:
        """ldap3 builds each entry's attributes as a ``CaseInsensitiveDict`` (pure Python, a
        lower-casing lookup per access) unless told otherwise. The source matches names
        case-insensitively itself, so plain dicts are asked for — for our calls only: the
        setting is process-wide, and is restored at once."""
        config = self._ldap3.utils.config
        before = config.get_config_parameter("CASE_INSENSITIVE_ATTRIBUTE_NAMES")
        config.set_config_parameter("CASE_INSENSITIVE_ATTRIBUTE_NAMES", False)
        try:
            yield
        finally:
            config.set_config_parameter("CASE_INSENSITIVE_ATTRIBUTE_NAMES", before)

    def root_dse(self, attributes: Sequence[str]) -> Attrs:
        return self.read("", attributes) or {}

    def search(
        self,
        base: str,
        filterstr: str,
        attributes: Sequence[str],
        *,
        show_deleted: bool = False,
        filter_setting: str | None = None,
    ) -> Iterator[Sequence[Entry]]:
        ldap3 = self._ldap3
        LDAPException = ldap3.core.exceptions.LDAPException
        conn = self._conn
        controls = [(SHOW_DELETED_OID, True, None)] if show_deleted else None
        attrs = list(attributes)
        cookie: bytes | None = None
        time_limit = max(1, int(self.options.timeout))
        while True:
            stop.check(f"the next page of the search under {base}")
            try:
                with self._plain_dicts():
                    conn.search(
                        base,
                        filterstr,
                        ldap3.SUBTREE,
                        attributes=attrs,
                        controls=controls,
                        paged_size=self.options.page_size,
                        paged_cookie=cookie,
                        time_limit=time_limit,
                    )
            except (LDAPException, OSError) as exc:
                raise self._fail(
                    f"search under {base}",
                    exc,
                    base=base,
                    filterstr=filterstr,
                    filter_setting=filter_setting,
                ) from exc
            # Take the cookie before handing the page out: the caller may run other operations
            # on this connection (ranged member reads), and each replaces conn.result.
            try:
                cookie = conn.result["controls"][PAGED_RESULTS_OID]["value"]["cookie"]
            except (KeyError, TypeError):
                cookie = None
            page = [
                (e["dn"], e["raw_attributes"])
                for e in conn.response
                if e["type"] == "searchResEntry"
            ]
            yield page
            if not cookie:
                return

    def read(self, dn: str, attributes: Sequence[str]) -> Attrs | None:
        ldap3 = self._ldap3
        LDAPException = ldap3.core.exceptions.LDAPException
        LDAPNoSuchObjectResult = ldap3.core.exceptions.LDAPNoSuchObjectResult

        try:
            with self._plain_dicts():
                self._conn.search(
                    dn,
                    "(objectClass=*)",
                    ldap3.BASE,
                    attributes=list(attributes),
                    time_limit=max(1, int(self.options.timeout)),
                )
        except LDAPNoSuchObjectResult:
            return None
        except (LDAPException, OSError) as exc:
            raise self._fail(f"reading {dn or 'the root DSE'}", exc, base=dn) from exc
        for e in self._conn.response or ():
            if e["type"] == "searchResEntry":
                return e["raw_attributes"]  # type: ignore[no-any-return]
        return None

    def close(self) -> None:
        LDAPException = self._ldap3.core.exceptions.LDAPException
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(LDAPException, OSError):  # already gone: nothing to release
                conn.unbind()
            # ldap3 keeps the socket of a failed open (refused, TLS error) in the connection.
            sock = getattr(conn, "socket", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


def _ssl_detail(text: str) -> str:
    """ldap3 wraps the ssl error in its own words (and lists every address tried); keep the
    part a person can act on."""
    for marker in (
        "certificate verify failed",
        "CERTIFICATE_VERIFY_FAILED",
        "doesn't match",
        "Hostname mismatch",
        "IP address mismatch",
    ):
        i = text.find(marker)
        if i >= 0:
            end = text.find("(_ssl", i)
            return text[i : end if end > 0 else None].strip(" ,'\"[]()")
    return text


def _filter_message(filterstr: str | None, setting: str | None) -> str:
    where = f" (check {setting})" if setting else ""
    return f"invalid filter {filterstr}{where}"
