"""Sentinel codes ("999", "UNK", "1900-01-01") that stand for a missing value.

A sentinel becomes null, and the pipeline reports it as an ING-SENTINEL info finding so the
reason is kept; comparison ignores case and surrounding blanks.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

# Markers spreadsheets and EHR extracts use for "nothing here"; a mapping may replace the list.
DEFAULT_SENTINELS: tuple[str, ...] = ("#N/A", "N/A", "NULL", "-", ".", "?")
REDCAP_MISSING_CODES: tuple[str, ...] = (
    "UNK",
    "NASK",
    "ASKU",
    "NAV",
    "NI",
    "NA",
    "OTH",
    "MSK",
    "NP",
)


def normalize_sentinel(text: str) -> str:
    return text.strip().upper()


def is_sentinel(raw: pl.Expr, codes: Iterable[str]) -> pl.Expr:
    """True where ``raw`` is one of ``codes`` (false for null)."""
    keys = sorted({normalize_sentinel(c) for c in codes})
    if not keys:
        return pl.lit(False)
    return raw.str.strip_chars().str.to_uppercase().is_in(keys).fill_null(False)


def blank_to_null(raw: pl.Expr) -> pl.Expr:
    """Empty or whitespace-only text is absent, not a value."""
    text = raw.str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)
