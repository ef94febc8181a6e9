"""The registry of check types and the pieces every check builder shares.

A check type is a named, parameterized builder: given the CDM tables (LazyFrames) and a rule's
parameters it returns the violating rows and the denominator, both still lazy, so the engine can
collect the rules in batches. Violating rows carry the lineage of the row a site must fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.errors import ConfigError, did_you_mean
from cartreg.exprs import format_text
from cartreg.rules.conditions import check_condition, compile_condition

VIOLATION_COLUMNS: tuple[str, ...] = (
    "table",
    "column",
    "site_id",
    "source_file",
    "source_row",
    "value",
    "detail",
)
ROW_ID = "__rid"
# Optional column of violating rows: a severity for that row (null = the rule's severity).
SEVERITY = "severity"


@dataclass(frozen=True)
class CheckContext:
    """The CDM tables a check runs on, and the columns whose values must never be shown."""

    tables: Mapping[str, pl.LazyFrame]
    identifiers: frozenset[str] = field(default_factory=frozenset)

    def table(self, name: str) -> pl.LazyFrame:
        return self.tables[name]

    def schema(self, name: str) -> dict[str, pl.DataType]:
        return dict(self.tables[name].collect_schema())


@dataclass(frozen=True)
class Rows:
    """A denominator that is the rows of one ``table`` where ``mask`` holds (never null).

    The engine counts every rule's ``Rows`` of a table in one pass over it, instead of one
    grouping per rule; :meth:`frame` is the same rows as a frame, what ``per_site`` would count.
    """

    table: str
    mask: pl.Expr

    def frame(self, ctx: CheckContext) -> pl.LazyFrame:
        return ctx.table(self.table).filter(self.mask)

    def both(self, mask: pl.Expr) -> Rows:
        """These rows, narrowed by ``mask`` too (a null counts as not holding)."""
        return Rows(self.table, self.mask & mask.fill_null(False))

    def where(self, ctx: CheckContext, cond: Mapping[str, Any] | None) -> Rows:
        """These rows, narrowed to those where the rule condition ``cond`` holds."""
        if not cond:
            return self
        return self.both(compile_condition(cond, ctx.schema(self.table)))


@dataclass(frozen=True)
class CheckOutput:
    """Violating rows (``VIOLATION_COLUMNS``, optionally ``severity``) and the denominator:
    a frame of counts per site (``site_id``, ``n``), or the :class:`Rows` of a table to count."""

    violations: pl.LazyFrame
    denominator: pl.LazyFrame | Rows


Builder = Callable[[CheckContext, Mapping[str, Any]], CheckOutput]


@dataclass(frozen=True)
class CheckType:
    name: str
    build: Builder
    required: tuple[str, ...]
    optional: tuple[str, ...]
    description: str
    conditions: tuple[str, ...] = ()  # parameters holding a condition


REGISTRY: dict[str, CheckType] = {}


def register(
    name: str,
    *,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    conditions: tuple[str, ...] = (),
) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        REGISTRY[name] = CheckType(
            name, fn, required, optional, (fn.__doc__ or "").strip(), conditions
        )
        return fn

    return deco


def validate_params(check_type: str, params: Mapping[str, Any], path: Path) -> None:
    """Raise ConfigError when a rule's check parameters do not fit its check type."""
    spec = REGISTRY.get(check_type)
    if spec is None:
        raise ConfigError(
            f"unknown check type '{check_type}'",
            path=path,
            key="check.type",
            hint=did_you_mean(check_type, list(REGISTRY))
            or f"types: {', '.join(sorted(REGISTRY))}",
        )
    allowed = set(spec.required) | set(spec.optional)
    for key in params:
        if key not in allowed:
            raise ConfigError(
                f"unknown parameter '{key}' for check type {check_type}",
                path=path,
                key=f"check.{key}",
                hint=did_you_mean(key, allowed) or f"allowed: {', '.join(sorted(allowed))}",
            )
    for key in spec.required:
        if key not in params:
            raise ConfigError(
                f"missing parameter '{key}' for check type {check_type}",
                path=path,
                key=f"check.{key}",
            )
    for key in spec.conditions:
        # "unless.where": a condition inside a mapping parameter
        holder, _, inner = key.rpartition(".")
        scope = params.get(holder) if holder else params
        if isinstance(scope, Mapping) and inner in scope:
            check_condition(scope[inner], path, f"check.{key}")
    if check_type == "sql":
        from cartreg.rules.checks.sql import check_select

        check_select(str(params["query"]), path)
        if "denominator_query" in params:
            check_select(str(params["denominator_query"]), path)


def split_ref(ref: str) -> tuple[str, str]:
    """``"table.column"`` -> ``("table", "column")``."""
    table, _, column = ref.partition(".")
    return table, column


def where(lf: pl.LazyFrame, cond: Mapping[str, Any] | None) -> pl.LazyFrame:
    """Rows of ``lf`` where ``cond`` holds (null counts as not holding)."""
    if not cond:
        return lf
    return lf.filter(compile_condition(cond, dict(lf.collect_schema())).fill_null(False))


def rows_where(ctx: CheckContext, table: str, cond: Mapping[str, Any] | None) -> Rows:
    """The rows of ``table`` where ``cond`` holds (all rows without one), as :class:`Rows`."""
    return Rows(table, pl.lit(True)).where(ctx, cond)


def shown(ctx: CheckContext, table: str, column: str, expr: pl.Expr) -> pl.Expr:
    """A value as text for a finding, masked when the column is a direct identifier."""
    if f"{table}.{column}" in ctx.identifiers or column in ctx.identifiers:
        return pl.lit("***", dtype=pl.String)
    return expr.cast(pl.String)


def typed_date(column: str, schema: Mapping[str, pl.DataType]) -> pl.Expr | None:
    """The date behind a day offset (``progression_date`` of ``progression_day``) as text, to
    its precision (``2024-03`` for a month), when the frame has it: a site finds the row by the
    date it typed, not by the offset cartreg computed."""
    if not column.endswith("_day"):
        return None
    date = f"{column[: -len('_day')]}_date"
    if date not in schema:
        return None
    precision = f"{date}_precision"
    text = pl.col(date).cast(pl.Date, strict=False).dt.strftime("%Y-%m-%d")
    if precision in schema:
        text = (
            pl.when(pl.col(precision) == "YEAR")
            .then(text.str.slice(0, 4))
            .when(pl.col(precision) == "MONTH")
            .then(text.str.slice(0, 7))
            .otherwise(text)
        )
    return text


def describe(
    ctx: CheckContext,
    table: str,
    columns: list[str],
    schema: Mapping[str, pl.DataType] | None = None,
) -> pl.Expr:
    """``"a=1, b=null"`` for the given columns (identifiers masked); a day offset is followed
    by its date when ``schema`` shows the date (``progression_day=-124 (2024-01-12)``)."""
    parts = []
    for c in dict.fromkeys(columns):
        part = format_text(
            "{}={}", pl.lit(c), shown(ctx, table, c.rpartition(".")[2], pl.col(c)).fill_null("null")
        )
        date = typed_date(c, schema or {})
        if date is not None:
            part = pl.concat_str([part, format_text(" ({})", date).fill_null("")])
        parts.append(part)
    if not parts:
        return pl.lit(None, dtype=pl.String)
    return pl.concat_str(parts, separator=", ")


def located(
    lf: pl.LazyFrame, *, table: str, column: str, value: pl.Expr, detail: pl.Expr
) -> pl.LazyFrame:
    """Select the standard violation columns from violating rows of ``table``."""
    return lf.select(
        pl.lit(table, dtype=pl.String).alias("table"),
        pl.lit(column, dtype=pl.String).alias("column"),
        pl.col("site_id").cast(pl.String),
        pl.col("source_file").cast(pl.String),
        pl.col("source_row").cast(pl.Int64),
        value.cast(pl.String).alias("value"),
        detail.cast(pl.String).alias("detail"),
    )


def per_site(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Denominator rows counted per site."""
    # Grouped as stored (a categorical in the engine's tables), then named as text.
    return (
        lf.group_by("site_id")
        .agg(pl.len().cast(pl.Int64).alias("n"))
        .with_columns(pl.col("site_id").cast(pl.String))
    )
