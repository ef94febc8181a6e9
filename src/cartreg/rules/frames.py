"""CDM tables as the engine needs them: every CDM column present and typed.

Also builds small typed tables from plain rows (the inline examples of rule files, and tests).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from cartreg.cdm import CDM
from cartreg.cdm.schema import polars_dtype
from cartreg.errors import ConfigError


def _coerce(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if dtype == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if dtype == "string" and not isinstance(value, str):
        return str(value)
    return value


def rows_frame(table: str, rows: Sequence[Mapping[str, Any]], cdm: CDM) -> pl.DataFrame:
    """A typed CDM frame from plain rows; omitted columns are null, lineage is filled in.

    Default lineage: ``site_id`` from the patient key's prefix (else ``EX``), ``source_file``
    ``<table>.csv`` and ``source_row`` = position + 2 (header on line 1).
    """
    spec = cdm.table(table)
    known = set(spec.column_names)
    for row in rows:
        for name in row:
            if name not in known:
                raise ConfigError(
                    f"unknown column '{name}' in example rows", path=spec.path or table, key=table
                )
    data: dict[str, list[Any]] = {}
    for col in spec.columns:
        values = [_coerce(row.get(col.name), col.dtype) for row in rows]
        data[col.name] = values
    keys = [str(row.get("patient_key") or "") for row in rows]
    data["site_id"] = [
        row.get("site_id") or (k.split("-", 1)[0] if "-" in k else "EX")
        for row, k in zip(rows, keys, strict=True)
    ]
    data["source_file"] = [row.get("source_file") or f"{table}.csv" for row in rows]
    data["source_row"] = [row.get("source_row") or i + 2 for i, row in enumerate(rows)]
    schema = {c.name: polars_dtype(c) for c in spec.columns}
    return pl.DataFrame(data, schema=schema)


def example_tables(
    tables: Mapping[str, Sequence[Mapping[str, Any]]], cdm: CDM
) -> dict[str, pl.DataFrame]:
    return {name: rows_frame(name, rows, cdm) for name, rows in tables.items()}


def conform(frame: pl.DataFrame | pl.LazyFrame, table: str, cdm: CDM) -> pl.LazyFrame:
    """Add the CDM columns a frame lacks (as typed nulls) so that every check can reference them."""
    lf = frame.lazy()
    spec = cdm.table(table)
    have = set(lf.collect_schema().names())
    missing = [
        pl.lit(None, dtype=polars_dtype(c)).alias(c.name)
        for c in spec.columns
        if c.name not in have
    ]
    return lf.with_columns(missing) if missing else lf


_TRUE = ["true", "t", "1", "yes", "y"]
_FALSE = ["false", "f", "0", "no", "n"]


def typed(frame: pl.DataFrame, table: str, cdm: CDM) -> pl.DataFrame:
    """Convert text columns (a CSV table) to their CDM dtypes; unconvertible cells become null.

    The schema validator reports those cells (CDM-DTYPE); rules then see them as missing.
    """
    if table not in cdm.tables:
        return frame
    exprs: list[pl.Expr] = []
    for col in cdm.tables[table].columns:
        if col.name not in frame.columns:
            continue
        target = polars_dtype(col)
        current = frame.schema[col.name]
        if current == target:
            continue
        c = pl.col(col.name)
        if current == pl.String:
            text = c.str.strip_chars()
            text = pl.when(text == "").then(None).otherwise(text)
            if col.dtype == "date":
                expr = text.str.to_date("%Y-%m-%d", strict=False)
            elif col.dtype == "boolean":
                low = text.str.to_lowercase()
                expr = pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
            elif col.dtype == "integer":
                expr = text.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
            else:
                expr = text.cast(target, strict=False)
        elif col.dtype == "date" and isinstance(current, pl.Datetime):
            expr = c.dt.date()
        else:
            expr = c.cast(target, strict=False)
        exprs.append(expr.alias(col.name))
    return frame.with_columns(exprs) if exprs else frame
