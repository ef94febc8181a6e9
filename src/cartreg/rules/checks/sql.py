"""Free-form read-only logic: one SELECT run by Polars' SQL engine over the CDM tables.

The query must return the lineage of the violating rows (``site_id``, ``source_file``,
``source_row``) and may return ``value``, ``detail``, ``severity`` (a lower severity for rows
the rule cannot decide, e.g. an age known only from the year of birth) and, when the rows come
from several tables, ``table_name`` and ``column_name``. ``denominator_query`` (one row per row
in scope, with its ``site_id``) replaces the default denominator, the rows of ``table`` matching
``denominator_where``. Only a single SELECT (or WITH … SELECT) is accepted; statements that
write, attach or read files are refused when the rule is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.errors import ConfigError
from cartreg.rules.checks.base import (
    SEVERITY,
    CheckContext,
    CheckOutput,
    per_site,
    register,
    rows_where,
)

_FORBIDDEN = re.compile(
    r"\b(insert|update|delete|drop|create|alter|attach|detach|copy|pragma|install|load|export|import|"
    r"call|set|truncate|replace|grant|merge|read_\w+|scan_\w+)\b",
    re.IGNORECASE,
)
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRING = re.compile(r"'(?:[^']|'')*'")


def check_select(query: str, path: Path | str) -> None:
    """Raise ConfigError unless ``query`` is one read-only SELECT statement."""
    text = _COMMENT.sub(" ", query)
    bare = _STRING.sub("''", text).strip().rstrip(";").strip()
    if ";" in bare:
        raise ConfigError("an sql check must be a single statement", path=path, key="check.query")
    if not re.match(r"^(select|with)\b", bare, re.IGNORECASE):
        raise ConfigError("an sql check must be a SELECT", path=path, key="check.query")
    bad = _FORBIDDEN.search(bare)
    if bad:
        raise ConfigError(
            f"'{bad.group(0)}' is not allowed in a read-only sql check",
            path=path,
            key="check.query",
        )


@register(
    "sql",
    required=("query", "table"),
    optional=("column", "denominator_where", "denominator_query"),
    conditions=("denominator_where",),
)
def sql(ctx: CheckContext, p: Mapping[str, Any]) -> CheckOutput:
    """Rows returned by a read-only SELECT over the CDM tables (reported in ``table`` unless the
    query returns ``table_name``); the denominator is ``denominator_query``'s rows, else the rows
    of ``table`` matching ``denominator_where``."""
    table = str(p["table"])
    query = str(p["query"])
    check_select(query, "<rule>")
    context = pl.SQLContext(frames=dict(ctx.tables), eager=False)
    result = context.execute(query, eager=False)
    names = result.collect_schema().names()

    def text(name: str, default: str | None) -> pl.Expr:
        return pl.col(name) if name in names else pl.lit(default, dtype=pl.String)

    violations = result.select(
        text("table_name", table).cast(pl.String).alias("table"),
        text("column_name", str(p.get("column", ""))).cast(pl.String).alias("column"),
        pl.col("site_id").cast(pl.String),
        pl.col("source_file").cast(pl.String),
        pl.col("source_row").cast(pl.Int64),
        text("value", None).cast(pl.String).alias("value"),
        text("detail", None).cast(pl.String).alias("detail"),
        text(SEVERITY, None).cast(pl.String).alias(SEVERITY),
    )
    # A row the query returns several times (e.g. one per matching partner) is one violation;
    # keep the smallest detail so the message does not depend on row order.
    location = ["table", "column", "site_id", "source_file", "source_row"]
    violations = violations.sort([*location, "value", "detail"], nulls_last=True).unique(
        subset=location, keep="first", maintain_order=True
    )
    if not p.get("denominator_query"):
        return CheckOutput(violations, rows_where(ctx, table, p.get("denominator_where")))
    check_select(str(p["denominator_query"]), "<rule>")
    in_scope = context.execute(str(p["denominator_query"]), eager=False)
    return CheckOutput(violations, per_site(in_scope))
