"""email_rules: what both Bitwarden servers accept (the official server's ``[EmailAddress]`` and
``[StringLength(256)]``, Vaultwarden's ``util::is_valid_email`` on the email_address crate)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bwsync.email_rules import (
    INVALID,
    LOCAL_PART_TOO_LONG,
    MAX_EMAIL_LENGTH,
    REASONS,
    TOO_LONG,
    email_problem,
    js_length,
)
from bwsync.standin.import_request import _valid_email as official_valid_email
from tests.standins.bitwarden.vw_email import vw_is_valid_email

LABEL = "d" * 63


@pytest.mark.parametrize(
    "email",
    [
        "ann@example.com",
        "ann.lee+tag@mail.example.co.uk",
        "o'brien@example.com",
        "x!#$%&'*+-/=?^_`{|}~@example.com",  # every atext character is allowed before the @
        '"john smith"@example.com',  # a quoted local part may hold spaces
        '"a\\"b"@example.com',
        "ann@localhost",  # the crate asks for no minimum number of labels
        "ann@xn--bcher-kva.example",
        "jörg@bücher.example",
        "राम@example.com",  # U+093E, a vowel sign: a mark, and alphabetic
        "ram@भारत.com",
        "ⓐnn@example.com",  # circled letters are alphabetic too
        "ann@a-b.example",
        "ann@example.123com",
        "ann@exa_mple.com",  # atext, and a URL host may hold it
        "a" * 64 + "@example.com",
        "a@" + ".".join([LABEL] * 3) + ".co",
    ],
)
def test_accepted(email: str) -> None:
    assert email_problem(email) is None
    assert vw_is_valid_email(email) and official_valid_email(email)


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("not-an-email", INVALID),  # reference/vaultwarden.md: HTTP 400
        ("john smith@example.com", INVALID),  # ditto
        ("@example.com", INVALID),
        ("ann@", INVALID),
        ("a@b@example.com", INVALID),
        ('"a@b"@example.com', INVALID),  # the official server wants one @
        ("ann <ann@example.com>", INVALID),  # a display name, not an address
        ("ann\n@example.com", INVALID),
        (".ann@example.com", INVALID),
        ("ann..lee@example.com", INVALID),
        ("ann.@example.com", INVALID),
        ('""@example.com', INVALID),
        ("ann@example..com", INVALID),
        ("ann@-example.com", INVALID),
        ("ann@example-.com", INVALID),
        ("ann@ex/ample.com", INVALID),  # a URL would read a path
        ("ann@ex?ample.com", INVALID),
        ("ann@ex#ample.com", INVALID),
        ("ann@ex%41mple.com", INVALID),
        ("ann@ex|ample.com", INVALID),
        ("ann@[192.168.0.1]", INVALID),  # a literal: no domain for Vaultwarden
        ("ann@192.168.0.1", INVALID),  # an IPv4 address to a URL parser
        ("ann@example.0x1f", INVALID),
        ("สมศักดิ์@example.com", INVALID),  # U+0E4C THANTHAKHAT: a mark, not alphabetic
        ("e\u0300@example.com", INVALID),  # a combining accent is not alphabetic either
        ('"jörg"@example.com', INVALID),  # a quoted local part: ASCII only to Vaultwarden
        ("ann@\u0e4cexample.com", INVALID),
        ("ann@" + "d" * 64 + ".com", INVALID),  # a label over 63
        ("a" * 65 + "@example.com", LOCAL_PART_TOO_LONG),
        ("é" * 33 + "@example.com", LOCAL_PART_TOO_LONG),  # 66 bytes of UTF-8
        ("a" * 244 + "@example.com", LOCAL_PART_TOO_LONG),  # reference: 256 in all, HTTP 400
        ("a" * 64 + "@" + "d" * 192 + ".com", TOO_LONG),
        ("\U0001f600" * 126 + "@e.com", TOO_LONG),  # 258 UTF-16 units
    ],
)
def test_refused(email: str, reason: str) -> None:
    assert email_problem(email) == reason


def test_every_reason_is_explained() -> None:
    assert set(REASONS) == {INVALID, LOCAL_PART_TOO_LONG, TOO_LONG}


@given(st.text(max_size=300))
def test_whatever_passes_meets_both_servers_basic_rules(email: str) -> None:
    """Anything accepted passes the official server's ``[EmailAddress]`` and length, and
    Vaultwarden's local-part limit."""
    if email_problem(email) is None:
        at = email.index("@")
        assert 0 < at < len(email) - 1 and email.count("@") == 1
        assert "\r" not in email and "\n" not in email
        assert js_length(email) <= MAX_EMAIL_LENGTH
        assert len(email[:at].encode("utf-8", "surrogatepass")) <= 64


_ADDRESSY = st.text(alphabet='ab.-_+@ "\\<>[]/?#%|1é\u093e\u0e4c\u0300\u24d0한', max_size=24)


@given(st.one_of(st.text(max_size=40), _ADDRESSY, _ADDRESSY.map(lambda s: s + "@example.com")))
def test_what_bwsync_sends_both_stand_ins_accept(email: str) -> None:
    """The two servers' checks as the stand-ins port them (the official server's
    ``[EmailAddress]``, Vaultwarden's ``is_valid_email``), written apart from email_rules:
    whatever bwsync lets through, neither refuses."""
    if email_problem(email) is None:
        assert official_valid_email(email)
        assert vw_is_valid_email(email)


@pytest.mark.parametrize(
    "email",
    ["ann <ann@example.com>", "ann@ex#ample.com", "ann@ex%41mple.com", '"a@b"@example.com'],
)
def test_where_bwsync_is_stricter_than_vaultwarden(email: str) -> None:
    """Corners Vaultwarden accepts and bwsync refuses on purpose (not addresses anyone means)."""
    assert vw_is_valid_email(email)
    assert email_problem(email) == INVALID
