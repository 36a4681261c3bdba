"""alphabetic: Rust's ``char::is_alphanumeric`` (Unicode Alphabetic, or a number), held to the
``regex`` module's Unicode tables over every code point.

``uv run python -m tests.unit.test_alphabetic`` prints the table ``bwsync.alphabetic`` keeps,
from the installed ``regex``: paste it there when a newer Unicode adds to Other_Alphabetic."""

from __future__ import annotations

import textwrap
import unicodedata

import pytest
import regex

from bwsync.alphabetic import is_alphanumeric

RUST_ALPHANUMERIC = regex.compile(r"[\p{Alphabetic}\p{N}]")


def test_never_looser_than_rust_and_equal_where_python_knows_the_character() -> None:
    looser, stricter = [], []
    for cp in range(0x80, 0x110000):
        c = chr(cp)
        ours, rust = is_alphanumeric(c), RUST_ALPHANUMERIC.match(c) is not None
        if ours and not rust:
            looser.append(hex(cp))
        elif rust and not ours and unicodedata.category(c) != "Cn":
            stricter.append(hex(cp))
    assert looser == []
    assert stricter == [], "regenerate the table: uv run python -m tests.unit.test_alphabetic"


@pytest.mark.parametrize(
    ("c", "expected"),
    [
        ("\u093e", True),  # DEVANAGARI VOWEL SIGN AA (Mc): राम
        ("\u0e31", True),  # THAI CHARACTER MAI HAN-AKAT (Mn, Other_Alphabetic)
        ("\u24d0", True),  # CIRCLED LATIN SMALL LETTER A (So)
        ("\u0e4c", False),  # THAI CHARACTER THANTHAKHAT (Mn, not Alphabetic)
        ("\u0300", False),  # COMBINING GRAVE ACCENT
        ("é", True),
        ("٣", True),  # ARABIC-INDIC DIGIT THREE (Nd)
        ("\u2460", True),  # CIRCLED DIGIT ONE (No)
        ("·", False),
    ],
)
def test_samples(c: str, expected: bool) -> None:
    assert is_alphanumeric(c) is expected


def table() -> str:
    """``bwsync.alphabetic._OTHER_ALPHABETIC`` from the installed ``regex``."""
    other = regex.compile(r"\p{Other_Alphabetic}")
    ranges: list[list[int]] = []
    for cp in range(0x80, 0x110000):
        if other.match(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    text = " ".join(f"{a:x}" if a == b else f"{a:x}-{b:x}" for a, b in ranges)
    return "\n".join("    " + line for line in textwrap.wrap(text, 88, break_on_hyphens=False))


if __name__ == "__main__":
    print(table())
