"""Vocabulary lookups, including hypothesis properties over every synonym of every vocabulary."""

from __future__ import annotations

import string
import unicodedata
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.errors import ConfigError
from cartreg.paths import schemas_dir
from cartreg.vocab import load_vocabularies, load_vocabulary, normalize_key

VOCABS = load_vocabularies(schemas_dir() / "vocabularies")
SPELLINGS = [
    (name, term.code, spelling)
    for name in VOCABS
    for term in VOCABS[name].terms
    for spelling in term.spellings()
    if normalize_key(spelling)
]
_SEPARATORS = ".,;:_/()'\"*#"  # inserted punctuation never includes the signs + and -


def _sign_positions(text: str) -> set[int]:
    """Indexes of + or - that end a word: removing those changes the meaning."""
    positions = set()
    for i, ch in enumerate(text):
        if ch in "+-\u2212":
            rest = text[i + 1 :].split(" ")[0] if i + 1 < len(text) else ""
            if not any(c.isalnum() for c in rest):
                positions.add(i)
    return positions


@st.composite
def variants(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """A synonym rewritten with other case, whitespace, punctuation and accents."""
    name, code, spelling = draw(st.sampled_from(SPELLINGS))
    if not any(ch.isalnum() for ch in spelling):
        # "<", "<=", "?": the punctuation is the content, only surrounding space may vary
        return name, code, spelling, draw(st.sampled_from(["", " "])) + spelling + " "
    out = []
    signs = _sign_positions(spelling)
    for i, ch in enumerate(spelling):
        if ch == " ":
            out.append(draw(st.sampled_from([" ", "  ", "\t", " \u00a0"])))
            continue
        if not ch.isalnum() and i not in signs and draw(st.booleans()):
            continue  # drop ordinary punctuation
        if ch.isalpha():
            ch = ch.upper() if draw(st.booleans()) else ch.lower()
            if ch.isascii() and draw(st.integers(0, 9)) == 0:
                ch = unicodedata.normalize("NFC", ch + "\u0301")  # add an accent
        out.append(ch)
        if i + 1 < len(spelling) and draw(st.integers(0, 5)) == 0:
            out.append(draw(st.sampled_from(_SEPARATORS)))
    prefix = draw(st.sampled_from(["", " ", "\t"]))
    suffix = draw(st.sampled_from(["", " ", ".", "  "]))
    return name, code, spelling, prefix + "".join(out) + suffix


@given(variants())
def test_any_variant_of_a_synonym_maps_to_its_term(case: tuple[str, str, str, str]) -> None:
    name, code, _spelling, variant = case
    assert VOCABS[name].code_for(variant) == code


_ALL_KEYS = {normalize_key(s) for name in VOCABS for t in VOCABS[name].terms for s in t.spellings()}


@given(st.text(alphabet=string.ascii_letters + string.digits + " -_", min_size=1, max_size=24))
def test_strings_in_no_vocabulary_are_unmapped(text: str) -> None:
    if normalize_key(text) in _ALL_KEYS:
        return  # only strings that are no spelling of anything are of interest here
    for name in VOCABS:
        assert VOCABS[name].lookup(text) is None


def test_map_series_is_vectorized_and_reports_unmapped_as_null() -> None:
    products = VOCABS["car_t_products"]
    raw = pl.Series(["Kymirah", "brexu-cel", None, "Tecartus ", "Zorbicel"])
    assert products.map_series(raw).to_list() == [
        "tisagenlecleucel",
        "brexucabtagene_autoleucel",
        None,
        "brexucabtagene_autoleucel",
        None,
    ]


def test_site_overrides_win_and_are_checked() -> None:
    sex = VOCABS["sex"].with_overrides({"1": "F", "2": "M"}, source="mapping.yaml")
    assert sex.code_for("1") == "F"
    assert VOCABS["sex"].code_for("1") is None  # shared vocabulary is unchanged
    with pytest.raises(
        ConfigError, match=r"mapping.yaml: 3: 'X' is not a term of vocabulary 'sex'"
    ):
        VOCABS["sex"].with_overrides({"3": "X"}, source="mapping.yaml")


def test_ambiguous_synonyms_are_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(
        "vocabulary: flags\nterms:\n  - {code: A, synonyms: [High]}\n  - {code: B, synonyms: [' high.']}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"flags.yaml: terms\[1\].synonyms: spelling ' high.'"):
        load_vocabulary(path)


def test_every_shipped_vocabulary_has_terms_and_a_description() -> None:
    assert len(VOCABS) >= 20
    for name in VOCABS:
        assert VOCABS[name].description, name
        assert VOCABS[name].terms, name
