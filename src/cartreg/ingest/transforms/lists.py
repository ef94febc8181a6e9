"""Cells that hold lists: JSON arrays of strings, or text such as ``allo-HSCT; blinatumomab``.

``contains`` asks whether such a cell holds one of some values. Elements are compared trimmed
and case-insensitively; a text cell is split at ``,``, ``;``, ``|`` and line breaks (not at
``-``, ``/`` or ``+``, which occur inside names such as ``allo-HSCT`` or ``CD19/CD22 CAR T``).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

LIST_SEPARATORS = r"[;|\n]"  # each becomes a comma, then the text is split at commas


def _elements(cell: pl.Expr, dtype: pl.DataType | None) -> pl.Expr:
    """The cell as a list of trimmed lower-case strings (null stays null)."""
    if isinstance(dtype, pl.List | pl.Array):
        items = cell.cast(pl.List(pl.String))
    else:
        items = cell.cast(pl.String).str.replace_all(LIST_SEPARATORS, ",").str.split(",")
    return items.list.eval(pl.element().str.strip_chars().str.to_lowercase())


def contains_any(cell: pl.Expr, dtype: pl.DataType | None, values: Sequence[str]) -> pl.Expr:
    """True when the list cell holds one of ``values``, False when it holds none (an empty list
    included), null when the cell is null or blank."""
    wanted = pl.lit(pl.Series([v.strip().lower() for v in values], dtype=pl.String))
    elements = _elements(cell, dtype)
    blank = (
        pl.lit(False)
        if isinstance(dtype, pl.List | pl.Array)
        else cell.cast(pl.String).str.strip_chars() == ""
    )
    hit = elements.list.eval(pl.element().is_in(wanted.implode())).list.any()
    return pl.when(cell.is_null() | blank).then(None).otherwise(hit)
