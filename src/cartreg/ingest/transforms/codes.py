"""Coded values through the CDM vocabularies plus a site's overrides.

Only distinct raw values go through Python (a vocabulary lookup each); rows are mapped with one
``replace_strict`` so that a million rows cost the same as their few dozen distinct spellings.
"""

from __future__ import annotations

import polars as pl

from cartreg.vocab import Vocabulary
from cartreg.vocab.normalize import normalize_key

_TRUE_CODES = {"Y": True, "N": False}


def code_mapping(values: pl.Series, vocabulary: Vocabulary) -> dict[str, str | None]:
    """Raw spelling -> code for the distinct non-null values of ``values`` (None = unmapped)."""
    distinct = values.drop_nulls().unique().to_list()
    return {raw: vocabulary.code_for(raw) for raw in distinct}


def map_codes(raw: pl.Expr, mapping: dict[str, str | None]) -> pl.Expr:
    return raw.replace_strict(mapping, default=None, return_dtype=pl.String)


def boolean_mapping(values: pl.Series, yes_no: Vocabulary) -> dict[str, bool | None]:
    """Raw spelling -> bool using the yes_no_unknown vocabulary (plus "true"/"false")."""
    out: dict[str, bool | None] = {}
    for raw in values.drop_nulls().unique().to_list():
        key = normalize_key(raw)
        if key in ("true", "t"):
            out[raw] = True
        elif key in ("false", "f"):
            out[raw] = False
        else:
            code = yes_no.code_for(raw)
            out[raw] = _TRUE_CODES.get(code) if code is not None else None
    return out
