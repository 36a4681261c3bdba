"""Which email addresses the Bitwarden servers accept, checked before anything is sent.

One bad address must not block everyone else: the official server refuses the whole import
with HTTP 400 when one entry's email fails its check, and Vaultwarden applies the entries in
order and stops at the bad one, leaving the members before it invited and the groups not
updated (``reference/vaultwarden.md``). So ``normalize`` drops such entries, names them and
counts them by reason, and the import carries the others.

The rule is what **both** servers accept, so one directory gives one body whatever the server:

* the whole address at most 256 characters, counted as .NET counts (UTF-16 code units): the
  official server's ``[StringLength(256)]`` and bwdc's own cut-off (``email_too_long``);
* the local part (before the ``@``) at most 64 bytes of UTF-8: Vaultwarden's check, the
  ``email_address`` crate 0.2.9 (``email_local_part_too_long``);
* the syntax (``invalid_email``): exactly one ``@``, neither first nor last, no line break (the
  official server's ``[EmailAddress]``), and what Vaultwarden's ``util::is_valid_email``
  accepts: a dot-atom or quoted local part, a domain of dot-separated labels that start and
  end with a letter or digit (each at most 63 bytes, 254 in all) and that a URL parser takes
  for a host name — not an IP address or a bracketed literal, no ``/``, ``?`` or ``#``.

Outside ASCII a character counts as Vaultwarden counts it: alphanumeric in Rust's sense
(``bwsync.alphabetic``: letters, numbers and the marks Unicode calls alphabetic, such as
Devanagari's vowel signs in ``राम@example.com``), in the local part and in domain labels. A
quoted local part holds ASCII only: the crate's check of other characters there accepts next
to none (it reads the code point as UTF-8 bytes).

It is stricter than either server alone in four corners no directory should hold: a
display-name form (``Ann <ann@example.com>``), a quoted local part holding an ``@`` (both each
accept one of these), a domain with ``%``, ``^`` or ``|`` (which a URL parser refuses or
rewrites), and the few Hangul code points the crate's quirk lets into a quoted local part.
Domains outside ASCII go through Python's IDNA codec, which may differ from Rust's UTS 46 in
rare characters.
"""

from __future__ import annotations

from typing import Final

from bwsync.alphabetic import is_alphanumeric

#: The server rejects longer emails (and bwdc drops them); measured in UTF-16 code units, as
#: .NET and JavaScript's ``String.length`` count, so the cut-off is bwdc's to the character.
MAX_EMAIL_LENGTH: Final = 256
#: Vaultwarden's limit on the part before the ``@``, in bytes of UTF-8 (RFC 5321's 64 octets).
MAX_LOCAL_PART_BYTES: Final = 64
MAX_DOMAIN_BYTES: Final = 254
MAX_LABEL_BYTES: Final = 63

INVALID: Final = "invalid_email"
LOCAL_PART_TOO_LONG: Final = "email_local_part_too_long"
TOO_LONG: Final = "email_too_long"

#: Reason → what it means, for warnings and documentation.
REASONS: Final = {
    TOO_LONG: f"longer than {MAX_EMAIL_LENGTH} characters",
    LOCAL_PART_TOO_LONG: f"the part before the @ is longer than {MAX_LOCAL_PART_BYTES} bytes",
    INVALID: "not an email address the Bitwarden servers accept",
}

_ATEXT_ASCII: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
#: atext a URL host may not hold (WHATWG forbidden domain code points, or what ends the host).
_NOT_IN_HOST: Final = frozenset("/?#%^|")
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def js_length(text: str) -> int:
    """Length in UTF-16 code units (.NET's and JavaScript's ``length``)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def email_problem(email: str) -> str | None:
    """The reason the servers would refuse ``email`` (one of ``REASONS``), or ``None``.

    ``email`` is already trimmed and lower-cased (``normalize``)."""
    # A UTF-16 length is at most twice the code points: most addresses need no count at all.
    if len(email) > MAX_EMAIL_LENGTH // 2 and js_length(email) > MAX_EMAIL_LENGTH:
        return TOO_LONG
    at = email.find("@")
    # " <" starts a display name to the email_address crate, which then wants a closing ">".
    if at <= 0 or " <" in email or at == len(email) - 1 or at != email.rfind("@"):
        return INVALID
    local, domain = email[:at], email[at + 1 :]
    if len(local) > MAX_LOCAL_PART_BYTES or (
        not local.isascii() and len(local.encode("utf-8", "surrogatepass")) > MAX_LOCAL_PART_BYTES
    ):
        return LOCAL_PART_TOO_LONG
    if not (_local_part_ok(local) and _domain_ok(domain)):
        return INVALID
    return None


def _atext(c: str) -> bool:
    return c in _ATEXT_ASCII or (not c.isascii() and is_alphanumeric(c))


def _local_part_ok(local: str) -> bool:
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        return _quoted_ok(local[1:-1])
    return all(atom and all(_atext(c) for c in atom) for atom in local.split("."))


def _quoted_ok(content: str) -> bool:
    """RFC 5322 qcontent with spaces, ASCII only: qtext, a space or tab, or a backslash and a
    visible character."""
    if not content:
        return False
    escaped = False
    for c in content:
        if escaped:
            if not ("!" <= c <= "~"):
                return False
            escaped = False
        elif c == "\\":
            escaped = True
        elif not (c in " \t!" or "#" <= c <= "[" or "]" <= c <= "~"):
            return False
    return not escaped


def _domain_ok(domain: str) -> bool:
    if len(domain.encode("utf-8", "surrogatepass")) > MAX_DOMAIN_BYTES:
        return False
    labels = domain.split(".")
    for label in labels:
        if not label or not (is_alphanumeric(label[0]) and is_alphanumeric(label[-1])):
            return False
        if len(label.encode("utf-8", "surrogatepass")) > MAX_LABEL_BYTES:
            return False
        if any(c in _NOT_IN_HOST or not _atext(c) for c in label):
            return False
    last = labels[-1]
    # A URL parser reads a host whose last label is a number as an IPv4 address (WHATWG's
    # "ends in a number"): Vaultwarden then finds no domain.
    hexadecimal = last[:2] in ("0x", "0X") and all(c in _HEX for c in last[2:])
    if (last.isascii() and last.isdigit()) or hexadecimal:
        return False
    if not domain.isascii():
        try:
            domain.encode("idna")
        except UnicodeError:
            return False
    return True
