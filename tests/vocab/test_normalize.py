"""normalize_key: case, whitespace, punctuation and accent insensitive; trailing +/- are signs."""

from __future__ import annotations

import pytest

from cartreg.vocab import normalize_key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Tisa-Cel", "tisacel"),
        ("  KYMRIAH  ", "kymriah"),
        ("Féminin", "feminin"),
        ("CD19 -", "cd19-"),
        ("CD19-.", "CD19-"),
        ("cd19 +", "CD19+"),
        ("CD19−", "CD19-"),  # unicode minus
        ("CD19-/dim", "cd19 dim"),
        ("t(9;22)", "t922"),
    ],
)
def test_equivalent_spellings(a: str, b: str) -> None:
    assert normalize_key(a) == normalize_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("CD19+", "CD19-"), ("CD19-", "CD19"), ("Ph+", "Ph-"), ("MRD-", "MRD")],
)
def test_signs_are_not_punctuation(a: str, b: str) -> None:
    assert normalize_key(a) != normalize_key(b)


def test_blank_and_punctuation_only() -> None:
    assert normalize_key("   ") == ""
    assert normalize_key(" ? ") == "?"
    assert normalize_key("<=") != normalize_key("<")
