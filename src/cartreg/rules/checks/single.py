"""Check types over the rows of one table: null, set membership, range, pattern, uniqueness,
sequence and conditional (optionally with columns looked up from related tables)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from cartreg.exprs import format_text
from cartreg.rules.checks.base import (
    ROW_ID,
    CheckContext,
    CheckOutput,
    Rows,
    describe,
    located,
    per_site,
    register,
    rows_where,
    shown,
    where,
)
from cartreg.rules.conditions import compile_condition, condition_columns


def _value_check(ctx: CheckContext, p: Mapping[str, Any], bad: pl.Expr, what: str) -> CheckOutput:
    table, column = str(p["table"]), str(p["column"])
    in_scope = rows_where(ctx, table, p.get("where")).both(pl.col(column).is_not_null())
    value = shown(ctx, table, column, pl.col(column))
    violations = located(
        in_scope.both(bad).frame(ctx),
        table=table,
        column=column,
        value=value,
        detail=format_text("{} = {} {}", pl.lit(column), value, pl.lit(what)),
    )
    return CheckOutput(violations, in_scope)


@register("not_null", required=("table", "column"), optional=("where",), conditions=("where",))
def not_null(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Rows (optionally only those matching ``where``) whose ``column`` is empty."""
    table, column = str(p["table"]), str(p["column"])
    scope = rows_where(ctx, table, p.get("where"))
    detail_cols = sorted(condition_columns(p.get("where")))
    detail = format_text("{} is empty", pl.lit(column))
    if detail_cols:
        described = describe(ctx, table, detail_cols, ctx.schema(table))
        detail = format_text("{} is empty ({})", pl.lit(column), described)
    violations = located(
        scope.both(pl.col(column).is_null()).frame(ctx),
        table=table,
        column=column,
        value=pl.lit(None, dtype=pl.String),
        detail=detail,
    )
    return CheckOutput(violations, scope)


@register(
    "in_set", required=("table", "column", "values"), optional=("where",), conditions=("where",)
)
def in_set(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Non-empty values of ``column`` that are not among ``values``."""
    allowed = [str(v) for v in p["values"]]
    bad = ~pl.col(p["column"]).cast(pl.String).is_in(allowed)
    return _value_check(ctx, p, bad, f"is not one of {', '.join(allowed)}")


@register(
    "not_in_set", required=("table", "column", "values"), optional=("where",), conditions=("where",)
)
def not_in_set(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Values of ``column`` that are among the unexpected ``values``."""
    forbidden = [str(v) for v in p["values"]]
    bad = pl.col(p["column"]).cast(pl.String).is_in(forbidden)
    return _value_check(ctx, p, bad, "is not expected here")


@register(
    "range", required=("table", "column"), optional=("min", "max", "where"), conditions=("where",)
)
def value_range(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Non-empty values of ``column`` below ``min`` or above ``max`` (both inclusive bounds)."""
    col = pl.col(p["column"])
    bad = pl.lit(False)
    if p.get("min") is not None:
        bad = bad | (col < p["min"])
    if p.get("max") is not None:
        bad = bad | (col > p["max"])
    low = "" if p.get("min") is None else p["min"]
    high = "" if p.get("max") is None else p["max"]
    return _value_check(ctx, p, bad, f"is outside [{low}, {high}]")


@register(
    "regex", required=("table", "column", "pattern"), optional=("where",), conditions=("where",)
)
def regex(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Non-empty values of ``column`` that do not match ``pattern`` (Rust regex syntax)."""
    bad = ~pl.col(p["column"]).cast(pl.String).str.contains(str(p["pattern"]))
    return _value_check(ctx, p, bad, f"does not match {p['pattern']}")


def _lineage_order(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.sort(["site_id", "source_file", "source_row"], nulls_last=True, maintain_order=True)


@register("unique", required=("table", "columns"), optional=("where",), conditions=("where",))
def unique(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Rows repeating the ``columns`` of an earlier row (by file and row); nulls never match."""
    table, columns = str(p["table"]), [str(c) for c in p["columns"]]
    scope = rows_where(ctx, table, p.get("where")).both(
        pl.all_horizontal([pl.col(c).is_not_null() for c in columns])
    )
    # Only rows of repeated keys are ordered (a sort of the whole table is the costly part).
    # polars tells repeated keys exactly by their row encoding: on 671 k assessments that was
    # faster than a first pass over a 64-bit hash of the key (which needed an exact second).
    whole = pl.struct(columns) if len(columns) > 1 else pl.col(columns[0])
    repeated = scope.frame(ctx).filter(whole.is_duplicated())
    ranked = _lineage_order(repeated).with_columns(
        pl.int_range(pl.len()).over(columns).alias("__k")
    )
    key = pl.concat_str([pl.col(c).cast(pl.String) for c in columns], separator="|")
    violations = located(
        ranked.filter(pl.col("__k") > 0),
        table=table,
        column=",".join(columns),
        value=key,
        detail=format_text(
            "repeats ({}) = ({}) of an earlier row", pl.lit(", ".join(columns)), key
        ),
    )
    return CheckOutput(violations, scope)


@register(
    "sequence",
    required=("table", "key", "number", "order"),
    optional=("where",),
    conditions=("where",),
)
def sequence(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """``number`` must count 1..n within ``key`` in the order of ``order`` (tied events may
    take their numbers in any order)."""
    table, number, order = str(p["table"]), str(p["number"]), str(p["order"])
    keys = [str(k) for k in p["key"]]
    scope = rows_where(ctx, table, p.get("where")).both(
        pl.col(number).is_not_null() & pl.col(order).is_not_null()
    )
    # Ranks instead of a sort: an event's number must lie between the first and the last
    # position its day can take among the patient's events. Ranking within each key (a window
    # rank) is slow for many small groups, so one global rank of (key, order) is taken instead
    # and shifted by the key's first rank: the same numbers, 2-3x faster.
    group = pl.struct(keys) if len(keys) > 1 else pl.col(keys[0])
    combined = group.rank("dense").cast(pl.Int64).fill_null(0) * (pl.len() + 1) + pl.col(
        order
    ).rank("dense").cast(pl.Int64)
    ranked = (
        scope.frame(ctx)
        .with_columns(
            combined.rank("min").cast(pl.Int64).alias("__rmin"),
            combined.rank("max").cast(pl.Int64).alias("__rmax"),
        )
        .with_columns(pl.col("__rmin").min().over(keys).alias("__start"))
        .with_columns(
            (pl.col("__rmin") - pl.col("__start") + 1).alias("__first"),
            (pl.col("__rmax") - pl.col("__start") + 1).alias("__last"),
        )
    )
    bad = (pl.col(number) < pl.col("__first")) | (pl.col(number) > pl.col("__last"))
    violations = located(
        ranked.filter(bad),
        table=table,
        column=number,
        value=pl.col(number),
        detail=format_text(
            "{} = {} but by {} ({} = {}) this is event {}",
            pl.lit(number),
            pl.col(number),
            pl.lit(order),
            pl.lit(order),
            pl.col(order),
            pl.col("__first"),
        ),
    )
    return CheckOutput(violations, scope)


def joined(ctx: CheckContext, table: str, joins: list[Mapping[str, Any]] | None) -> pl.LazyFrame:
    """``table`` with, for each join, the related table's columns as ``alias.col`` (and a row id
    when there are joins).

    A base row matched by several related rows appears once per match, its copies next to each
    other in the order of the base rows (``conditional_output`` relies on that).
    """
    lf = ctx.table(table)
    if joins:
        lf = lf.with_row_index(ROW_ID)
    for spec in joins or []:
        other = str(spec["table"])
        alias = str(spec.get("alias", other))
        on = spec["keys"]
        pairs = dict(on) if isinstance(on, Mapping) else {str(c): str(c) for c in on}
        right = where(ctx.table(other), spec.get("where"))
        right = right.select(pl.all().name.prefix(f"{alias}."))
        lf = lf.join(
            right,
            left_on=list(pairs),
            right_on=[f"{alias}.{c}" for c in pairs.values()],
            how="left",
            coalesce=False,
            nulls_equal=False,
            # Keeping the left order is also the faster join here (measured at 10 M rows).
            maintain_order="left",
        )
    return lf


def conditional_output(
    ctx: CheckContext,
    table: str,
    base: pl.LazyFrame,
    when: Mapping[str, Any] | None,
    then: Mapping[str, Any],
    column: str,
    detail_columns: list[str],
    *,
    fanned_out: bool = True,
    base_rows: Rows | None = None,
) -> CheckOutput:
    """Rows where ``when`` holds but ``then`` does not (a null ``then`` is not a violation).

    ``fanned_out`` says that ``base`` may hold a row several times (joined related rows), the
    copies next to each other, as ``joined`` gives them. ``base_rows`` says that ``base`` is
    those rows of ``table`` (so not fanned out), and the engine may count the denominator with
    other rules'.
    """
    schema = dict(base.collect_schema())
    scope = base
    if when:
        scope = base.filter(compile_condition(when, schema).fill_null(False))
    failed = scope.filter(~compile_condition(then, schema).fill_null(True))
    if fanned_out:
        # A row matched by several related rows is one violation; report the smallest match so
        # the message does not depend on row order.
        failed = failed.sort([ROW_ID, *detail_columns], nulls_last=True).unique(
            subset=[ROW_ID], keep="first", maintain_order=True
        )
        # Copies are adjacent, so comparing with the previous row deduplicates without hashing.
        scope = scope.filter(pl.col(ROW_ID).diff().fill_null(1) != 0)
    value_col = column if column in schema else next(iter(sorted(condition_columns(then))))
    violations = located(
        failed,
        table=table,
        column=value_col,
        value=shown(ctx, table, value_col, pl.col(value_col)),
        detail=describe(ctx, table, detail_columns, schema),
    )
    if base_rows is not None:
        counted = base_rows.both(compile_condition(when, schema)) if when else base_rows
        return CheckOutput(violations, counted)
    return CheckOutput(violations, per_site(scope))


@register(
    "conditional",
    required=("table", "then"),
    optional=("when", "join", "column"),
    conditions=("when", "then"),
)
def conditional(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Rows matching ``when`` (all rows if absent) that fail ``then``; ``join`` adds related
    tables' columns as ``alias.column``."""
    table = str(p["table"])
    base = joined(ctx, table, p.get("join"))
    when, then = p.get("when"), p["then"]
    cols = sorted(condition_columns(when) | condition_columns(then))
    column = str(p.get("column") or sorted(condition_columns(then))[0])
    if p.get("join"):
        return conditional_output(ctx, table, base, when, then, column, cols)
    every = rows_where(ctx, table, None)
    return conditional_output(
        ctx, table, base, when, then, column, cols, fanned_out=False, base_rows=every
    )
