"""Vaultwarden's email check, ported for the stand-in from its source, step for step:
``util::is_valid_email`` (vaultwarden 46d71107) on the ``email_address`` crate 0.2.9 with its
default options, then a WHATWG URL parse of ``https://<domain>``.

Written apart from ``bwsync.email_rules`` on purpose: bwsync's rule is what *both* servers
accept and is stricter in places; this is what Vaultwarden alone accepts. A property test
holds the two together (everything bwsync lets through, this accepts). Rust's
``char::is_alphanumeric`` (Unicode's Alphabetic property, or a number: Nd, Nl, No) comes from
the ``regex`` module's Unicode tables, not from Python's ``str.isalnum`` (letters and numbers
only, without the marks that Alphabetic counts: Devanagari's vowel signs) nor from bwsync's
own table. Where the port cannot be exact (IDNA), it follows Python's.
"""

from __future__ import annotations

import functools
from urllib.parse import unquote

import regex

__all__ = ["vw_is_valid_email"]

_ALPHANUMERIC = regex.compile(r"[\p{Alphabetic}\p{N}]")

_LOCAL_PART_MAX = 64
_DOMAIN_MAX = 254
_SUB_DOMAIN_MAX = 63
_ATEXT = set("!#$%&'*+-/=?^_`{|}~")
#: WHATWG forbidden domain code points that the crate's atext lets through.
_FORBIDDEN_IN_HOST = set("%^|<>[]\\ ")
_ATEXT_CLASS = r"\p{Alphabetic}\p{N}" + "".join(regex.escape(c) for c in sorted(_ATEXT))
_DOT_ATOM = regex.compile(rf"[{_ATEXT_CLASS}]+(?:\.[{_ATEXT_CLASS}]+)*")
"""A local part of atoms, each character alphanumeric or one of ``_ATEXT``, in one regex call
where ``_is_atom`` makes one per character (with the domain's, 2.4 million calls and 1 s of the
1.2 s an import of 100,000 new members took). It accepts less than the loop (not the
``_is_utf8_non_ascii`` quirk); what it refuses goes through the loop, so the answer is the
loop's."""
_DOMAINS_KEPT = 4096
"""Domains whose answers are kept (``_is_domain``, ``_url_domain_ok``)."""


def _is_alphanumeric(c: str) -> bool:
    """Rust's ``char::is_alphanumeric``."""
    return _ALPHANUMERIC.match(c) is not None


def _is_utf8_non_ascii(c: str) -> bool:
    """0.2.9's ``is_utf8_non_ascii``: it reads the code point's value, as four big-endian
    bytes, as if they were UTF-8, so only U+C280..U+DFBF with a second byte in 80..BF pass
    (Hangul syllables, which are alphabetic anyway, and a few unassigned code points); every
    other non-ASCII character fails, ``é`` included."""
    cp = ord(c)
    return cp >> 16 == 0 and 0xC2 <= (cp >> 8) <= 0xDF and 0x80 <= (cp & 0xFF) <= 0xBF


def _is_atext(c: str) -> bool:
    # char::is_alphanumeric, one of the specials, or the quirk above
    return _is_alphanumeric(c) or c in _ATEXT or _is_utf8_non_ascii(c)


def _is_atom(s: str) -> bool:
    return bool(s) and all(_is_atext(c) for c in s)


def _is_qcontent(s: str) -> bool:
    chars = iter(s)
    for c in chars:
        if c == "\\":
            nxt = next(chars, None)
            if nxt is None or not ("!" <= nxt <= "~"):
                return False
        elif not (c in " \t!" or "#" <= c <= "[" or "]" <= c <= "~" or _is_utf8_non_ascii(c)):
            return False  # qtext: ASCII, or the quirk (not alphanumerics, unlike atext)
    return True


def _parse(address: str) -> tuple[str, str] | None:
    """``EmailAddress::from_str``: the (local part, domain), or ``None`` on any error."""
    display, sep, rest = address.rpartition(" <")
    if sep:  # a display name: "name <addr>" is accepted, its address checked
        rest = rest.strip()
        if not rest.endswith(">"):
            return None
        email, display = rest[:-1], display.strip()
    else:
        email, display = address, ""
    local, at, domain = email.rpartition("@")
    if not at:
        return None
    if not display and local.startswith("<"):
        return None
    # local part
    if not local or len(local.encode()) > _LOCAL_PART_MAX:
        return None
    if local.startswith('"') and local.endswith('"'):
        if len(local) <= 2 or not _is_qcontent(local[1:-1]):
            return None
    elif not (_DOT_ATOM.fullmatch(local) or all(_is_atom(a) for a in local.split("."))):
        return None
    return (local, domain) if _is_domain(domain) else None


@functools.lru_cache(maxsize=_DOMAINS_KEPT)
def _is_domain(domain: str) -> bool:
    """The crate's domain check. A pure function of the domain, kept per domain: the members
    of an organization share a few domains, and checking the same one again was a quarter of
    an import's time (with ``_url_domain_ok``)."""
    if not domain or len(domain.encode()) > _DOMAIN_MAX:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        inner = domain[1:-1]
        return all("!" <= c <= "Z" or "^" <= c <= "~" or _is_utf8_non_ascii(c) for c in inner)
    for label in domain.split("."):
        if not label or not _is_alphanumeric(label[0]) or not _is_alphanumeric(label[-1]):
            return False
        if len(label.encode()) > _SUB_DOMAIN_MAX or not _is_atom(label):
            return False
    return True


@functools.lru_cache(maxsize=_DOMAINS_KEPT)
def _url_domain_ok(domain: str) -> bool:
    """``Url::parse("https://" + domain)``: the path must be "/", no query, a domain (not an
    IP address) as the host. Kept per domain, as ``_is_domain``."""
    host = domain
    for end in "/\\?#":
        cut = host.find(end)
        if cut != -1:
            if end in "/\\":
                return False  # a path other than "/"
            if end == "?":
                return False  # a query
            host = host[:cut]  # a fragment: the URL is still fine
    if not host or host.startswith("["):
        return False  # an IPv6 literal, or nothing: no domain
    host = unquote(host)
    if any(c in _FORBIDDEN_IN_HOST or ord(c) < 0x20 or c == "\x7f" for c in host):
        return False
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host.lower()
    except UnicodeError:
        return False
    last = ascii_host.rstrip(".").rpartition(".")[2]
    numeric = last.isdigit() or (
        last[:2] in ("0x",) and all(c in "0123456789abcdef" for c in last[2:])
    )
    return not numeric  # an IPv4 address, or a failure to parse one: no domain either way


def vw_is_valid_email(email: str) -> bool:
    """What Vaultwarden's ``util::is_valid_email`` answers for ``email``."""
    parsed = _parse(email)
    if parsed is None:
        return False
    return _url_domain_ok(parsed[1])
