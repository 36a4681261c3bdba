"""vw_email's shortcuts answer as the checks they stand for: the local part's one regex call as
the loop over its characters, and a domain's kept answer as a fresh one. (What Vaultwarden
accepts is ``tests/unit/test_email_rules.py``'s subject.)"""

from __future__ import annotations

import regex
from hypothesis import given
from hypothesis import strategies as st

from tests.standins.bitwarden import vw_email
from tests.standins.bitwarden.vw_email import (
    _ALPHANUMERIC,
    _ATEXT,
    _ATEXT_CLASS,
    _DOT_ATOM,
    _is_alphanumeric,
    _is_atom,
    _is_utf8_non_ascii,
    vw_is_valid_email,
)

# A few characters on each side of every rule, so that generated strings hit them often:
# U+D7A4 (unassigned) is atext by the quirk alone (``_is_utf8_non_ascii``), U+C280 (Hangul)
# by it and as a letter, U+D7FF by neither.
_EDGES = '.a9-!~ "@[]é\u093e\u0e4c\u0300\uac00\uc280\ud7a4\ud7ff'
_SURROGATES = "\ud880\udfbf"  # the quirk's too; never in JSON, which the addresses come from


def test_the_character_class_is_atext_without_the_quirk() -> None:
    every = "".join(map(chr, range(0x110000)))
    in_class = set(regex.findall(f"[{_ATEXT_CLASS}]", every))
    assert in_class == set(_ALPHANUMERIC.findall(every)) | _ATEXT


@given(st.text(st.sampled_from(_EDGES + _SURROGATES) | st.characters(), max_size=24))
def test_the_local_part_regex_answers_as_the_loop(local: str) -> None:
    loop = all(_is_atom(a) for a in local.split("."))
    fast = _DOT_ATOM.fullmatch(local) is not None
    if any(_is_utf8_non_ascii(c) and not _is_alphanumeric(c) for c in local):
        assert not fast  # the quirk is the loop's alone: the caller asks it
    else:
        assert fast == loop


@given(st.lists(st.text(st.sampled_from(_EDGES), max_size=12), min_size=1, max_size=8))
def test_a_domain_answers_alike_kept_or_not(emails: list[str]) -> None:
    """Each address twice, the second time from the kept domain answers, and once after they
    are forgotten: the same answer every time."""
    addresses = [f"ann@{e}" for e in emails] + [f"{e}@{e}" for e in emails]
    first = [vw_is_valid_email(a) for a in addresses]
    again = [vw_is_valid_email(a) for a in addresses]
    vw_email._is_domain.cache_clear()
    vw_email._url_domain_ok.cache_clear()
    fresh = [vw_is_valid_email(a) for a in addresses]
    assert first == again == fresh
