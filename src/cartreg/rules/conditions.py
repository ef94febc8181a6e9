"""A small, declarative condition language compiled to polars expressions (never ``eval``).

A condition is a mapping, for example::

    {column: response, in: [CR, CRi]}
    {column: bm_blast_pct, gte: 5}
    {column: progression_day, minus: start_day, gt: 180}      # progression_day - start_day > 180
    {column: hct_day, minus: start_day, abs: true, lte: 7}
    {column: setting, in: [CLINICAL_TRIAL], null_as: false}  # missing counts as "not in"
    {all: [...]}, {any: [...]}, {not: {...}}

Literals compared with a date column are ISO strings converted to dates. A comparison that meets
a null is null; callers decide what null means (usually "not applicable").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.errors import ConfigError

VALUE_OPS = ("equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "matches")
COLUMN_OPS = (
    "equals_column",
    "not_equals_column",
    "gt_column",
    "gte_column",
    "lt_column",
    "lte_column",
)
FLAG_OPS = ("is_null", "not_null")
_MODIFIERS = ("column", "minus", "abs", "null_as")
_COMBINATORS = ("all", "any", "not")


def condition_columns(cond: Any) -> set[str]:
    """Every column name a condition mentions (to check inputs before running it)."""
    if not isinstance(cond, Mapping):
        return set()
    out: set[str] = set()
    for key, value in cond.items():
        if key in ("all", "any"):
            for item in value if isinstance(value, list) else []:
                out |= condition_columns(item)
        elif key == "not":
            out |= condition_columns(value)
        elif key in ("column", "minus") or key in COLUMN_OPS:
            out.add(str(value))
    return out


def check_condition(cond: Any, path: Path, key: str) -> None:
    """Raise ConfigError when ``cond`` is not a well-formed condition."""
    if not isinstance(cond, Mapping) or not cond:
        raise ConfigError("a condition must be a non-empty mapping", path=path, key=key)
    combos = [k for k in cond if k in _COMBINATORS]
    if combos:
        if len(cond) != 1:
            raise ConfigError(
                f"'{combos[0]}' must be the only key of its condition", path=path, key=key
            )
        name = combos[0]
        if name == "not":
            check_condition(cond["not"], path, f"{key}.not")
            return
        items = cond[name]
        if not isinstance(items, list) or not items:
            raise ConfigError(
                f"'{name}' needs a non-empty list of conditions", path=path, key=f"{key}.{name}"
            )
        for i, item in enumerate(items):
            check_condition(item, path, f"{key}.{name}[{i}]")
        return
    if not isinstance(cond.get("column"), str):
        raise ConfigError("a condition needs 'column' (or all/any/not)", path=path, key=key)
    ops = [k for k in cond if k not in _MODIFIERS]
    allowed = (*VALUE_OPS, *COLUMN_OPS, *FLAG_OPS)
    bad = [k for k in ops if k not in allowed]
    if bad:
        raise ConfigError(
            f"unknown operator '{bad[0]}'",
            path=path,
            key=key,
            hint=f"allowed: {', '.join(allowed)}",
        )
    if len(ops) != 1:
        raise ConfigError("a condition needs exactly one operator", path=path, key=key)
    if ops[0] in ("in", "not_in") and not isinstance(cond[ops[0]], list):
        raise ConfigError(f"'{ops[0]}' needs a list of values", path=path, key=f"{key}.{ops[0]}")


def _literal(value: Any, dtype: pl.DataType) -> Any:
    if dtype == pl.Date and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def compile_condition(cond: Mapping[str, Any], schema: Mapping[str, pl.DataType]) -> pl.Expr:
    """The boolean polars expression of ``cond`` over a frame with ``schema``.

    ``null_as: true|false`` on a leaf condition decides the result when a value is missing.
    """
    if "null_as" in cond:
        inner = {k: v for k, v in cond.items() if k != "null_as"}
        return _compile(inner, schema).fill_null(bool(cond["null_as"]))
    return _compile(cond, schema)


def _compile(cond: Mapping[str, Any], schema: Mapping[str, pl.DataType]) -> pl.Expr:
    if "all" in cond:
        return pl.all_horizontal([compile_condition(c, schema) for c in cond["all"]])
    if "any" in cond:
        return pl.any_horizontal([compile_condition(c, schema) for c in cond["any"]])
    if "not" in cond:
        return ~compile_condition(cond["not"], schema)
    name = str(cond["column"])
    dtype = schema.get(name, pl.String())
    left = pl.col(name)
    if "minus" in cond:
        left = left - pl.col(str(cond["minus"]))
        if dtype == pl.Date:
            left = left.dt.total_days()
        dtype = pl.Int64()
    if cond.get("abs"):
        left = left.abs()
    for op in FLAG_OPS:
        if op in cond:
            null = left.is_null() if op == "is_null" else left.is_not_null()
            return null if cond[op] else ~null
    for op in COLUMN_OPS:
        if op in cond:
            right = pl.col(str(cond[op]))
            return {
                "equals_column": left == right,
                "not_equals_column": left != right,
                "gt_column": left > right,
                "gte_column": left >= right,
                "lt_column": left < right,
                "lte_column": left <= right,
            }[op]
    op = next(k for k in cond if k in VALUE_OPS)
    value = cond[op]
    if op in ("in", "not_in"):
        values = [_literal(v, dtype) for v in value]
        member = left.is_in(values)
        # is_in gives False on null; keep null so a missing value is "unknown", not "outside".
        member = pl.when(left.is_null()).then(None).otherwise(member)
        return member if op == "in" else ~member
    if op == "matches":
        return left.cast(pl.String).str.contains(str(value))
    lit = pl.lit(_literal(value, dtype))
    return {
        "equals": left == lit,
        "not_equals": left != lit,
        "gt": left > lit,
        "gte": left >= lit,
        "lt": left < lit,
        "lte": left <= lit,
    }[op]
