"""Reshaping source frames: wide-to-long column groups, REDCap checkboxes, nested arrays.

Each function keeps the lineage columns (``source_file``, ``source_row``) of the row an output
row came from; loops run over column groups or checkbox choices, never over data rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import polars as pl

LINEAGE = ("source_file", "source_row")
CHECKED_VALUES = ("1", "checked", "yes", "true", "x")


def unpivot_groups(
    frame: pl.DataFrame,
    pattern: str,
    *,
    index_name: str = "index",
    keep: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Repeated column groups (``salv1_agent``, ``salv2_agent``…) to one row per group.

    ``pattern`` is a regex with named groups ``index`` and ``field``; output columns are the
    ``keep`` columns (default: every column outside the groups), ``index_name`` (the group's
    index as text) and one column per field. A group
    whose fields are all empty yields no row.
    """
    regex = re.compile(pattern)
    groups: dict[str, dict[str, str]] = {}
    for column in frame.columns:
        match = regex.fullmatch(column)
        if match is not None:
            groups.setdefault(match.group("index"), {})[match.group("field")] = column
    fields = sorted({f for g in groups.values() for f in g})
    grouped = {c for g in groups.values() for c in g.values()}
    if keep is None:
        keep = [c for c in frame.columns if c not in grouped and c not in LINEAGE]
    base = [c for c in (*LINEAGE, *keep) if c in frame.columns]
    parts: list[pl.DataFrame] = []
    for index, columns in sorted(groups.items(), key=lambda kv: _natural_key(kv[0])):
        part = frame.select(
            *base,
            pl.lit(index).alias(index_name),
            *[
                (pl.col(columns[f]) if f in columns else pl.lit(None, dtype=pl.String)).alias(f)
                for f in fields
            ],
        )
        filled = pl.any_horizontal(
            [pl.col(f).str.strip_chars().str.len_chars() > 0 for f in fields]
        ).fill_null(False)
        parts.append(part.filter(filled))
    if not parts:
        return (
            frame.select(*base)
            .clear()
            .with_columns(pl.lit(None, dtype=pl.String).alias(index_name))
        )
    return pl.concat(parts, how="vertical").sort([c for c in LINEAGE if c in base] + [index_name])


def checkbox_columns(columns: Sequence[str], field: str) -> dict[str, str]:
    """REDCap checkbox columns of ``field``: column name -> choice code.

    REDCap writes choice ``-1`` as ``field____1`` (the minus becomes an extra underscore).
    """
    prefix = f"{field}___"
    out: dict[str, str] = {}
    for column in columns:
        if column.startswith(prefix) and len(column) > len(prefix):
            code = column[len(prefix) :]
            out[column] = "-" + code[1:] if code.startswith("_") else code
    return out


def checkbox_to_rows(
    frame: pl.DataFrame,
    field: str,
    *,
    into: str,
    labels: Mapping[str, str] | None = None,
    keep: Sequence[str] | None = None,
) -> pl.DataFrame:
    """One row per ticked choice of a REDCap checkbox (a row with k ticks yields k rows).

    ``into`` receives the choice label when ``labels`` (code -> label, from the data dictionary)
    knows it, else the code. Raw exports tick with ``1``, label exports with ``Checked``.
    """
    boxes = checkbox_columns(frame.columns, field)
    if keep is None:
        keep = [c for c in frame.columns if c not in boxes and c not in LINEAGE]
    base = [c for c in (*LINEAGE, *keep) if c in frame.columns]
    parts: list[pl.DataFrame] = []
    for column, code in boxes.items():
        value = (labels or {}).get(code, code)
        ticked = pl.col(column).str.strip_chars().str.to_lowercase().is_in(CHECKED_VALUES)
        parts.append(
            frame.filter(ticked.fill_null(False)).select(
                *base, pl.lit(value, dtype=pl.String).alias(into)
            )
        )
    if not parts:
        return frame.select(*base).clear().with_columns(pl.lit(None, dtype=pl.String).alias(into))
    order = [c for c in LINEAGE if c in base]
    return pl.concat(parts, how="vertical").sort(order, maintain_order=True)


def explode_path(frame: pl.DataFrame, path: str) -> pl.DataFrame:
    """An array column (``events``) to one row per element, its fields as ``events.<field>``.

    A row whose array is empty or null yields no row.
    """
    exploded = frame.explode(path, empty_as_null=False, keep_nulls=False)
    return flatten_structs(exploded)


def flatten_structs(frame: pl.DataFrame, sep: str = ".") -> pl.DataFrame:
    """Nested objects to ``parent.child`` columns, repeatedly, until none is a struct."""
    while True:
        structs = [c for c, t in frame.schema.items() if isinstance(t, pl.Struct)]
        if not structs:
            return frame
        for column in structs:
            dtype = frame.schema[column]
            assert isinstance(dtype, pl.Struct)
            names = [f.name for f in dtype.fields]
            frame = frame.with_columns(
                [pl.col(column).struct.field(n).alias(f"{column}{sep}{n}") for n in names]
            ).drop(column)


def _natural_key(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (10**9, text)
