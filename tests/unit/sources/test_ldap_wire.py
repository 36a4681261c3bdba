"""The python-ldap engine's own decoder of the paged-results response control, checked against
the values python-ldap itself encodes (``SimplePagedResultsControl``). The engine's searches
are tested against real servers in tests/integration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bwsync.sources.ldap_wire import paged_response_cookie

controls = pytest.importorskip("ldap.controls")

sizes = st.integers(min_value=0, max_value=2**31 - 1)
# AD cookies are a few hundred bytes: one- and two-byte BER lengths; the example adds three.
cookies = st.binary(max_size=600)
LONG = bytes(range(256)) * 300


def _encoded(size: int, cookie: bytes) -> bytes:
    value: bytes = controls.SimplePagedResultsControl(
        True, size=size, cookie=cookie
    ).encodeControlValue()
    return value


# No deadline: what is checked is the bytes; a loaded machine's pause is not a failure.
@settings(deadline=None)
@given(size=sizes, cookie=cookies)
@example(size=128, cookie=LONG)
def test_response_cookie_is_what_python_ldap_encoded(size: int, cookie: bytes) -> None:
    assert paged_response_cookie(_encoded(size, cookie)) == cookie


@pytest.mark.parametrize("length", [0, 1, 119, 120, 121, 127, 128, 255, 256, 65_535, 65_536])
@pytest.mark.parametrize("size", [0, 127, 128, 1000, 2**31 - 1])
def test_length_boundaries(length: int, size: int) -> None:
    """Where BER lengths change form: the cookie's and, 6-8 bytes later, the SEQUENCE's."""
    cookie = bytes(i % 251 for i in range(length))
    assert paged_response_cookie(_encoded(size, cookie)) == cookie


MALFORMED = [
    b"",  # python-ldap's own decoder crashes the process on this one (see below)
    b"\x04\x00",  # not a SEQUENCE
    b"\x30\x06\x02\x01\x00\x04\x00",  # SEQUENCE longer than the bytes
    b"\x30\x03\x02\x01\x00",  # no cookie
    b"\x30\x05\x04\x00\x02\x01\x00",  # cookie before size
    b"\x30\x06\x02\x01\x00\x04\x01",  # cookie runs past the end
    b"\x30\x06\x02\x01\x00\x04\x00\x00",  # a byte after the cookie, inside the SEQUENCE
    b"\x30\x85\x00\x00\x00\x00\x05",  # a 5-byte length
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_response_values_are_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match=r"BER|trailing|expected"):
        paged_response_cookie(value)


def test_python_ldaps_decoder_still_crashes_on_an_empty_value() -> None:
    """Why the engine decodes the control itself. When a python-ldap release fixes this, the
    test fails, and ``_ldap.decode_page_control`` may replace ``paged_response_cookie``."""
    crash = subprocess.run(
        [sys.executable, "-c", "import _ldap; _ldap.decode_page_control(b'')"],
        capture_output=True,
        check=False,
    )
    assert crash.returncode < 0, crash  # killed by a signal (SIGSEGV)


def test_a_ca_file_libldap_cannot_use_is_a_settings_error_not_a_crash(tmp_path: Path) -> None:
    """Issue 22: python-ldap answers a CA file it cannot load with `ValueError: option error`
    when the TLS context is built, which reached the user as a traceback (exit 1). The
    settings pass now refuses such a file first; the engine still names the setting itself
    when it gets one (exit 2), before any connection."""
    from bwsync.errors import ConfigError
    from bwsync.sources.ldap_wire import WireOptions, make_wire

    missing = tmp_path / "ldap-ca.pem"
    wire = make_wire("python-ldap", WireOptions(url="ldaps://127.0.0.1:1", ca_file=missing))
    with pytest.raises(ConfigError) as caught:
        wire.open()
    assert caught.value.problems == [
        f"BWSYNC_LDAP__CA_FILE: libldap cannot use {missing} for TLS (option error)"
    ]
