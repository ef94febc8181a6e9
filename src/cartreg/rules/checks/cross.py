"""Check types across tables: foreign keys, counts of related rows, and the order of two days."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from cartreg.exprs import format_text
from cartreg.rules.checks.base import (
    CheckContext,
    CheckOutput,
    Rows,
    describe,
    located,
    per_site,
    register,
    rows_where,
    split_ref,
    where,
)
from cartreg.rules.checks.single import conditional_output, joined
from cartreg.rules.conditions import compile_condition


@register(
    "foreign_key",
    required=("table", "columns", "ref_table"),
    optional=("ref_columns", "where"),
    conditions=("where",),
)
def foreign_key(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Rows whose non-empty ``columns`` match no row of ``ref_table`` (on ``ref_columns``)."""
    table, ref_table = str(p["table"]), str(p["ref_table"])
    columns = [str(c) for c in p["columns"]]
    ref_columns = [str(c) for c in p.get("ref_columns", columns)]
    scope = rows_where(ctx, table, p.get("where")).both(
        pl.all_horizontal([pl.col(c).is_not_null() for c in columns])
    )
    parents = ctx.table(ref_table).select(ref_columns).unique()
    orphans = scope.frame(ctx).join(parents, left_on=columns, right_on=ref_columns, how="anti")
    key = pl.concat_str([pl.col(c).cast(pl.String) for c in columns], separator="|")
    violations = located(
        orphans,
        table=table,
        column=",".join(columns),
        value=key,
        detail=format_text(
            "({}) = ({}) has no matching row in {}",
            pl.lit(", ".join(columns)),
            key,
            pl.lit(ref_table),
        ),
    )
    return CheckOutput(violations, scope)


@register(
    "count_per_key",
    required=("table", "key", "child_table"),
    optional=("child_key", "child_where", "where", "match", "min", "max", "what", "unless"),
    conditions=("where", "child_where", "match", "unless.where"),
)
def count_per_key(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Rows of ``table`` whose number of related ``child_table`` rows (same key, matching
    ``child_where`` and ``match``) is outside [``min``, ``max``]; ``unless`` (``table``,
    ``where``) leaves out the rows with a related row there that matches (a death before the
    window of an expected assessment; nothing is left out when that table is not provided)."""
    table, child = str(p["table"]), str(p["child_table"])
    keys = [str(k) for k in p["key"]]
    child_keys = [str(k) for k in p.get("child_key", keys)]
    low, high = p.get("min"), p.get("max")
    rows = rows_where(ctx, table, p.get("where"))
    scope = rows.frame(ctx)
    exempting = bool(p.get("unless")) and str(p["unless"]["table"]) in ctx.tables
    if exempting:
        exempt = where(ctx.table(str(p["unless"]["table"])), p["unless"].get("where"))
        scope = scope.join(exempt.select(keys).unique(), on=keys, how="anti", nulls_equal=False)
    scope = scope.with_row_index("__pid")
    kids = where(ctx.table(child), p.get("child_where")).select(pl.all().name.prefix(f"{child}."))
    pairs = scope.join(
        kids,
        left_on=keys,
        right_on=[f"{child}.{k}" for k in child_keys],
        how="inner",
        coalesce=False,
        nulls_equal=False,
    )
    if p.get("match"):
        pairs = pairs.filter(
            compile_condition(p["match"], dict(pairs.collect_schema())).fill_null(False)
        )
    counts = pairs.group_by("__pid").agg(pl.len().alias("__n"))
    with_n = scope.join(counts, on="__pid", how="left").with_columns(pl.col("__n").fill_null(0))
    bad = pl.lit(False)
    if low is not None:
        bad = bad | (pl.col("__n") < low)
    if high is not None:
        bad = bad | (pl.col("__n") > high)
    what = str(p.get("what", f"related {child} rows"))
    if low == high:
        bounds = f"exactly {low}"
    elif high is None:
        bounds = f"at least {low}"
    elif low is None:
        bounds = f"at most {high}"
    else:
        bounds = f"between {low} and {high}"
    violations = located(
        with_n.filter(bad),
        table=table,
        column=",".join(keys),
        value=pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="|"),
        detail=format_text("{} {} found, expected {}", pl.col("__n"), pl.lit(what), pl.lit(bounds)),
    )
    return CheckOutput(violations, per_site(scope) if exempting else rows)


@register(
    "day_order",
    required=("earlier", "later"),
    optional=("keys", "locate", "min_gap", "max_gap", "where_earlier", "where_later"),
    conditions=("where_earlier", "where_later"),
)
def day_order(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """``later - earlier`` (day offsets, possibly in two tables joined on ``keys``) must lie in
    [``min_gap``, ``max_gap``]; the violating row is reported in the ``locate`` side's table."""
    e_table, e_col = split_ref(str(p["earlier"]))
    l_table, l_col = split_ref(str(p["later"]))
    on = p.get("keys", ["patient_key"])
    pairs = dict(on) if isinstance(on, Mapping) else {str(c): str(c) for c in on}
    locate = str(p.get("locate", "later"))
    base_rows: Rows | None = None
    if e_table == l_table:
        base_rows = rows_where(ctx, e_table, p.get("where_earlier")).where(
            ctx, p.get("where_later")
        )
        base = base_rows.frame(ctx)
        table, first, second = e_table, e_col, l_col
    elif locate == "later":
        base = where(
            joined(
                ctx, l_table, [{"table": e_table, "keys": pairs, "where": p.get("where_earlier")}]
            ),
            p.get("where_later"),
        )
        table, first, second = l_table, f"{e_table}.{e_col}", l_col
    else:
        base = where(
            joined(
                ctx, e_table, [{"table": l_table, "keys": pairs, "where": p.get("where_later")}]
            ),
            p.get("where_earlier"),
        )
        table, first, second = e_table, e_col, f"{l_table}.{l_col}"
    low = p.get("min_gap", 0)
    high = p.get("max_gap")
    gap: dict[str, Any] = {"column": second, "minus": first}
    checks: list[dict[str, Any]] = [{**gap, "gte": low}] if low is not None else []
    if high is not None:
        checks.append({**gap, "lte": high})
    when = {"all": [{"column": first, "not_null": True}, {"column": second, "not_null": True}]}
    then: dict[str, Any] = {"all": checks} if checks else {"column": second, "not_null": True}
    column = second if locate == "later" or e_table == l_table else first
    return conditional_output(
        ctx,
        table,
        base,
        when,
        then,
        column,
        [first, second],
        fanned_out=e_table != l_table,
        base_rows=base_rows,
    )


__all__ = ["count_per_key", "day_order", "describe", "foreign_key"]
