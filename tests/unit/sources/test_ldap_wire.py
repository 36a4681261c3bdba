"""The python-ldap engine's own BER for the paged-results control, checked against the encoder
python-ldap itself uses (``SimplePagedResultsControl``, through pyasn1). The engine's searches
are tested against real servers in tests/integration."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bwsync.sources.ldap_wire import paged_request_value, paged_response_cookie

controls = pytest.importorskip("ldap.controls")

sizes = st.integers(min_value=0, max_value=2**31 - 1)
# AD cookies are a few hundred bytes: one- and two-byte BER lengths; the examples add three.
cookies = st.binary(max_size=600)
LONG = bytes(range(256)) * 300


# No deadline: what is checked is the bytes; a loaded machine's pause is not a failure.


@settings(deadline=None)
@given(size=sizes, cookie=cookies)
@example(size=2**31 - 1, cookie=LONG)
def test_request_value_is_what_python_ldap_encodes(size: int, cookie: bytes) -> None:
    reference = controls.SimplePagedResultsControl(True, size=size, cookie=cookie)
    assert paged_request_value(size, cookie) == reference.encodeControlValue()


@settings(deadline=None)
@given(size=sizes, cookie=cookies)
@example(size=128, cookie=LONG)
def test_response_cookie_is_what_python_ldap_decodes(size: int, cookie: bytes) -> None:
    value = controls.SimplePagedResultsControl(True, size=size, cookie=cookie).encodeControlValue()
    reference = controls.SimplePagedResultsControl()
    reference.decodeControlValue(value)
    assert paged_response_cookie(value) == reference.cookie == cookie


@pytest.mark.parametrize("length", [0, 1, 119, 120, 121, 127, 128, 255, 256, 65_535, 65_536])
@pytest.mark.parametrize("size", [0, 127, 128, 1000, 2**31 - 1])
def test_length_boundaries_match_python_ldap(length: int, size: int) -> None:
    """Where BER lengths change form: the cookie's and, 6-8 bytes later, the SEQUENCE's."""
    cookie = bytes(i % 251 for i in range(length))
    reference = controls.SimplePagedResultsControl(True, size=size, cookie=cookie)
    value = reference.encodeControlValue()
    assert paged_request_value(size, cookie) == value
    assert paged_response_cookie(value) == cookie


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x04\x00",  # not a SEQUENCE
        b"\x30\x06\x02\x01\x00\x04\x00",  # SEQUENCE longer than the bytes
        b"\x30\x03\x02\x01\x00",  # no cookie
        b"\x30\x05\x04\x00\x02\x01\x00",  # cookie before size
        b"\x30\x06\x02\x01\x00\x04\x01",  # cookie runs past the end
        b"\x30\x06\x02\x01\x00\x04\x00\x00",  # a byte after the cookie, inside the SEQUENCE
        b"\x30\x85\x00\x00\x00\x00\x05",  # a 5-byte length
    ],
)
def test_malformed_response_values_are_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match=r"BER|trailing|expected"):
        paged_response_cookie(value)
