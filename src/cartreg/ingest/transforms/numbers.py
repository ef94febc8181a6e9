"""Number parsing: decimal commas, qualifiers, percent signs and scientific notation.

Lab values arrive as ``<5%``, ``>90``, ``0,03``, ``1 234,5``, ``1E-4``, ``1 x 10^-4`` or
``10-5``. The comparator becomes a qualifier code (numeric_qualifier vocabulary), a ``%`` sign
or the column's declared unit decides the percent/fraction scaling, and anything else that is
not a number stays null with a finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

Decimal = Literal[".", ",", "auto"]
Unit = Literal["percent", "fraction"]

QUALIFIER_CODES: dict[str, str] = {
    "<": "LT",
    "<=": "LE",
    "≤": "LE",
    ">": "GT",
    ">=": "GE",
    "≥": "GE",
    "=": "EQ",
}

_QUALIFIER = r"^(<=|>=|≤|≥|<|>|=)"
# A thousands grouping starts with 1-3 digits that are not a lone 0: "0,111" is a decimal comma.
_THOUSANDS_COMMA = r"^[+-]?[1-9]\d{0,2}(,\d{3})+(\.\d+)?$"
_THOUSANDS_DOT = r"^[+-]?[1-9]\d{0,2}(\.\d{3})+(,\d+)?$"
# A number whose only separator is one comma or one dot (qualifier, sign and % allowed).
_ONE_SEPARATOR = r"^(?:<=|>=|≤|≥|<|>|=)?[+-]?\d*([.,])\d+%?$"
# "1 x 10^-4", "1x10-4", "10^-5", "1*10^3" (spaces already removed).
_POWER_OF_TEN = r"^(?:([0-9]*\.?[0-9]+)[x×*])?10\^?([+-]?\d+)$"


@dataclass(frozen=True)
class NumberParse:
    value: pl.Expr
    qualifier: pl.Expr  # the comparator's code where the value parsed
    ok: pl.Expr
    written_qualifier: pl.Expr  # the comparator's code, whether or not the value parsed


def parse_numbers(
    raw: pl.Expr,
    *,
    decimal: Decimal = "auto",
    source_unit: Unit | None = None,
    target_unit: Unit | None = None,
) -> NumberParse:
    """Parse numbers written as text. ``ok`` is False where a non-null value did not parse.

    ``decimal="auto"`` reads a comma as the decimal mark unless the value is a well-formed
    thousands grouping (``1,000`` or ``12,345.6``); sites with decimal commas say ``","``.
    """
    text = raw.str.strip_chars().str.replace_all(r"[\s\u00a0\u202f']", "")
    text = text.str.replace_all("[−–]", "-")
    qualifier_text = text.str.extract(_QUALIFIER, 1)
    body = text.str.replace(_QUALIFIER, "")
    has_percent = body.str.ends_with("%")
    body = body.str.strip_suffix("%")
    if decimal == ",":
        body = (
            pl.when(body.str.contains(_THOUSANDS_DOT) | body.str.contains(","))
            .then(body.str.replace_all(r"\.", "").str.replace(",", "."))
            .otherwise(body)
        )
    elif decimal == ".":
        body = (
            pl.when(body.str.contains(_THOUSANDS_COMMA))
            .then(body.str.replace_all(",", ""))
            .otherwise(body)
        )
    else:
        body = (
            pl.when(body.str.contains(_THOUSANDS_COMMA))
            .then(body.str.replace_all(",", ""))
            .when(body.str.count_matches(",") == 1)
            .then(body.str.replace(r"\.", "").str.replace(",", "."))
            .otherwise(body)
        )
    lowered = body.str.to_lowercase()
    mantissa = lowered.str.extract(_POWER_OF_TEN, 1).cast(pl.Float64, strict=False)
    exponent = lowered.str.extract(_POWER_OF_TEN, 2).cast(pl.Float64, strict=False)
    power = mantissa.fill_null(1.0) * pl.lit(10.0).pow(exponent)
    plain = (
        pl.when(lowered.str.contains(r"^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$"))
        .then(lowered.cast(pl.Float64, strict=False))
        .otherwise(None)
    )
    value = pl.coalesce(plain, power)
    is_percent = has_percent
    if source_unit == "percent":
        is_percent = pl.lit(True)
    if target_unit == "fraction":
        value = pl.when(is_percent).then(value / 100.0).otherwise(value)
    elif target_unit == "percent" and source_unit == "fraction":
        value = pl.when(has_percent).then(value).otherwise(value * 100.0)
    written = qualifier_text.replace_strict(QUALIFIER_CODES, default=None, return_dtype=pl.String)
    qualifier = pl.when(value.is_not_null()).then(written).otherwise(None)
    ok = raw.is_null() | value.is_not_null()
    return NumberParse(value=value, qualifier=qualifier, ok=ok, written_qualifier=written)


def unit_of(cdm_unit: str | None) -> Unit | None:
    """The scaling kind a CDM column's unit text implies."""
    if cdm_unit is None:
        return None
    if "fraction" in cdm_unit:
        return "fraction"
    if cdm_unit.startswith("%"):
        return "percent"
    return None


def decimal_mark(values: pl.Series) -> str | None:
    """The decimal mark a column's numbers show: ``","`` or ``"."``; None when they show none,
    or both (a mix to ask the site about).

    Only a mark that cannot be a thousands separator counts: ``0,111`` or ``2,5`` is a decimal
    comma, ``1,000`` could be either and says nothing.
    """
    text = values.cast(pl.String).str.replace_all(r"[\s\u00a0\u202f]", "").drop_nulls()
    marks = (
        pl.DataFrame({"t": text})
        .select(
            pl.col("t").str.extract(_ONE_SEPARATOR, 1).alias("mark"),
            pl.col("t").str.strip_chars_start("<>=≤≥+-").str.contains(_THOUSANDS_COMMA).alias("k"),
        )
        .filter(pl.col("mark").is_not_null() & ~pl.col("k"))
        .get_column("mark")
        .unique()
        .to_list()
    )
    return marks[0] if len(marks) == 1 else None
