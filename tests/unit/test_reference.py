"""The README's settings table is generated from the models; it must not drift."""

from __future__ import annotations

from pathlib import Path

from bwsync.reference import BEGIN, END, readme_section, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_matches_the_models() -> None:
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == readme_section(), (
        "README settings table is stale: regenerate it with `bwsync config reference`"
    )


def test_every_setting_has_a_docstring() -> None:
    undocumented = [line for line in settings_table().splitlines()[2:] if line.endswith("|  |")]
    assert undocumented == []
