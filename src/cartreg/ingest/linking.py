"""Rows that belong together: joins, relative lookups, pivots, splits (within one rule).

A rule of a long or linked export reads more than its own row:

* a ``join`` brings the columns of the row another source's key (a FHIR reference) names;
* a ``lookup`` takes a value from a related row of the same patient, chosen by date (the last
  marrow before the infusion, the CD19 result nearest to a relapse);
* a ``pivot`` reads a value only from rows carrying a given code (an entity-attribute-value
  extract: one row per observation);
* a ``split`` makes one row per part of a cell (``Blinatumomab + Inotuzumab``).

Everything is a polars join or expression over whole frames. Two candidate rows that would give
one value different values are never resolved by picking one: the value stays empty and an
``ING-CONFLICT`` finding names both rows. Rows combined across rules by ``key`` are merged in
``cartreg.ingest.combine``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cartreg.cdm.model import TableSpec
from cartreg.errors import ConfigError, did_you_mean
from cartreg.exprs import format_text
from cartreg.findings import MASK, findings_frame
from cartreg.ingest.mapping import ColumnRule, Condition, Join, Lookup, SiteMapping, TableRule
from cartreg.ingest.readers.fhir import resource_reference
from cartreg.ingest.transforms.dates import parse_dates
from cartreg.ingest.transforms.lists import contains_any
from cartreg.ingest.transforms.reshape import LINEAGE
from cartreg.ingest.transforms.sentinels import blank_to_null

PID = "__pid"
_SPLIT_MARK = "\x1f"


def lookup_column(target: str) -> str:
    return f"__lookup::{target}"


def lineage_columns(target: str) -> tuple[str, str]:
    """Where a looked-up value came from (its row's file and row), for findings about it."""
    return f"__lfile::{target}", f"__lrow::{target}"


def key_column(position: int) -> str:
    """A combine-key item read from a source column, carried to the combine step."""
    return f"__key::{position}"


@dataclass
class SourceAccess:
    """What a rule may read besides its own rows: the other sources of the submission."""

    frame_of: Callable[[str], pl.DataFrame]
    reader_of: Callable[[str], str]
    identifiers_of: Callable[[str], Mapping[str, str]]  # column -> why it is one


@dataclass
class Linked:
    """Rows used from other sources (source -> source rows) and findings met on the way."""

    used: dict[str, list[pl.Series]] = field(default_factory=dict)
    findings: list[pl.DataFrame] = field(default_factory=list)

    def use(self, source: str, rows: pl.Series) -> None:
        self.used.setdefault(source, []).append(rows.cast(pl.Int64).alias("source_row"))


def patient_key(site_id: str, local_id: pl.Expr, extract: str | None = None) -> pl.Expr:
    """``<site id>-<local id>``; null when the local id is blank (or the pattern finds none)."""
    text = local_id.cast(pl.String)
    if extract is not None:
        text = text.str.extract(extract, 1)
    return pl.concat_str(pl.lit(f"{site_id}-"), blank_to_null(text))


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Categorical).cast(pl.String))


def single_value(column: str) -> tuple[pl.Expr, pl.Expr]:
    """(the value, whether it holds several different values) of a list-of-text column."""
    values = pl.col(column).list.eval(pl.element().str.strip_chars()).list.drop_nulls()
    distinct = values.list.unique().list.len()
    several = (distinct > 1).fill_null(False)
    return pl.when(~several).then(values.list.first()), several


def _finding(
    rows: pl.DataFrame,
    *,
    rule_id: str,
    severity: str,
    table: str,
    column: str,
    site_id: str,
    message: pl.Expr,
    value: pl.Expr,
    category: str = "plausibility",
    subcategory: str = "atemporal",
) -> pl.DataFrame:
    return findings_frame(
        rows.select(
            pl.lit(rule_id).alias("rule_id"),
            pl.lit(severity).alias("severity"),
            pl.lit(category).alias("category"),
            pl.lit(subcategory).alias("subcategory"),
            pl.lit(table).alias("table"),
            pl.lit(column).alias("column"),
            pl.lit(site_id).alias("site_id"),
            "source_file",
            "source_row",
            value.cast(pl.String).alias("value"),
            message.alias("message"),
        )
    )


# ---- joins -------------------------------------------------------------------------------


def apply_joins(
    frame: pl.DataFrame,
    rule: TableRule,
    mapping: SiteMapping,
    access: SourceAccess,
    linked: Linked,
) -> pl.DataFrame:
    """Add ``<name>.<column>`` for each join: the columns of the row this row refers to.

    A reference naming no row, or several, joins nothing and is an ``ING-REFERENCE`` warning;
    identifier-like columns of the other source are never brought over.
    """
    for join in rule.joins:
        frame = _join_one(frame, join, rule, mapping, access, linked)
    return frame


def _join_one(
    frame: pl.DataFrame,
    join: Join,
    rule: TableRule,
    mapping: SiteMapping,
    access: SourceAccess,
    linked: Linked,
) -> pl.DataFrame:
    other = as_text(access.frame_of(join.source))
    file = mapping.sources[join.source].file
    if join.column not in frame.columns:
        raise ConfigError(
            f"source column '{join.column}' not found in {mapping.sources[rule.source].file}",
            path=mapping.path,
            key=f"{join.key}.from",
            hint=did_you_mean(join.column, list(frame.columns)),
        )
    if join.to is None:
        if not {"resourceType", "id"} <= set(other.columns):
            raise ConfigError(
                f"{file} has no FHIR resources to refer to", path=mapping.path, key=join.key
            )
        to = resource_reference(other)
    else:
        if join.to not in other.columns:
            raise ConfigError(
                f"source column '{join.to}' not found in {file}",
                path=mapping.path,
                key=f"{join.key}.to",
                hint=did_you_mean(join.to, list(other.columns)),
            )
        to = pl.col(join.to)
    hidden = set(access.identifiers_of(join.source)) | set(LINEAGE)
    prefix = f"{join.name}."
    brought = [c for c in other.columns if c not in hidden]
    target = other.select(
        blank_to_null(to.cast(pl.String).str.strip_chars()).alias("__to"),
        pl.col("source_row").alias(f"__jrow::{join.name}"),
        *[pl.col(c).alias(prefix + c) for c in brought],
    ).filter(pl.col("__to").is_not_null())
    repeated = target.filter(pl.col("__to").is_duplicated())
    target = target.filter(~pl.col("__to").is_duplicated())
    if isinstance(frame.schema[join.column], pl.List):
        on, several = single_value(join.column)
    else:
        on, several = (
            blank_to_null(pl.col(join.column).cast(pl.String).str.strip_chars()),
            pl.lit(False),
        )
    keyed = frame.with_columns(on.alias("__on"), several.alias("__several"))
    joined = keyed.join(target, left_on="__on", right_on="__to", how="left", maintain_order="left")
    ambiguous = repeated.get_column("__to").unique().implode()
    problems = joined.filter(
        pl.col("__several")
        | (pl.col("__on").is_not_null() & pl.col(f"__jrow::{join.name}").is_null())
    )
    if problems.height:
        why = (
            pl.when(pl.col("__several"))
            .then(pl.lit("holds several references"))
            .when(pl.col("__on").is_in(ambiguous))
            .then(format_text("'{}' matches several rows of {}", "__on", pl.lit(file)))
            .otherwise(format_text("'{}' matches no row of {}", "__on", pl.lit(file)))
        )
        linked.findings.append(
            _finding(
                problems,
                rule_id="ING-REFERENCE",
                severity="warning",
                table=rule.table,
                column=join.column,
                site_id=mapping.site_id,
                category="conformance",
                subcategory="relational",
                value=pl.col("__on"),
                message=format_text(
                    "{}: {} ({}); its columns are empty for this row",
                    pl.lit(join.key),
                    why,
                    pl.lit(join.column),
                ),
            )
        )
    return joined.drop("__on", "__several")


def take_joined_rows(frame: pl.DataFrame, rule: TableRule, linked: Linked) -> pl.DataFrame:
    """Record the joined rows of the rule's final rows as used, and drop the bookkeeping."""
    for join in rule.joins:
        rows = frame.get_column(f"__jrow::{join.name}").drop_nulls()
        linked.use(join.source, rows)
    return frame.drop([f"__jrow::{j.name}" for j in rule.joins])


# ---- pivots ------------------------------------------------------------------------------


def code_matches(frame: pl.DataFrame, column: str, codes: Sequence[str]) -> pl.Expr:
    """Rows whose code column (a value, or a list of codes) holds one of ``codes``."""
    wanted = list(codes)
    if isinstance(frame.schema.get(column), pl.List):
        hit = pl.col(column).list.eval(pl.element().str.strip_chars().is_in(wanted)).list.any()
    else:
        hit = pl.col(column).cast(pl.String).str.strip_chars().is_in(wanted)
    return hit.fill_null(False)


def pivot_rows(frame: pl.DataFrame, rule: TableRule) -> tuple[pl.DataFrame, TableRule]:
    """Keep the rows carrying a code some column asks for; mask each ``code:`` column to its
    rows (the value of another code's row is no value of this column)."""
    assert rule.pivot_code is not None
    codes = sorted({c for col in rule.columns.values() for c in col.code or ()})
    frame = frame.filter(code_matches(frame, rule.pivot_code, codes))
    added: list[pl.Expr] = []
    columns = dict(rule.columns)
    for target, col in rule.columns.items():
        if not col.code:
            continue
        name = f"__code::{target}"
        mine = code_matches(frame, rule.pivot_code, col.code)
        shown = f"{col.source or col.value} of code {'/'.join(col.code)}"
        if col.source is not None:
            added.append(pl.when(mine).then(pl.col(col.source)).alias(name))
            columns[target] = _replaced(col, source=name, shown=col.shown or shown)
        else:  # a constant when the code is present: {code: X, value: BONE_MARROW}
            added.append(pl.when(mine).then(pl.lit(col.value, dtype=pl.String)).alias(name))
            columns[target] = _replaced(col, source=name, value=None, shown=shown)
    return frame.with_columns(added), _replaced_rule(rule, columns)


def _replaced(col: ColumnRule, **changes: Any) -> ColumnRule:
    import dataclasses

    return dataclasses.replace(col, **changes)


def _replaced_rule(rule: TableRule, columns: Mapping[str, ColumnRule]) -> TableRule:
    import dataclasses

    return dataclasses.replace(rule, columns=dict(columns))


# ---- lists read as one value, splits ----------------------------------------------------------


def single_values(
    frame: pl.DataFrame, rule: TableRule, mapping: SiteMapping, linked: Linked
) -> tuple[pl.DataFrame, TableRule]:
    """FHIR list columns read as one value: the element when there is one (or all are equal);
    several different elements are an ``ING-CONFLICT`` and no value."""
    columns = dict(rule.columns)
    added: list[pl.Expr] = []
    checks: list[tuple[str, str, pl.Expr]] = []
    for target, col in rule.columns.items():
        if col.source is None or col.contains is not None:
            continue
        if not isinstance(frame.schema.get(col.source), pl.List):
            continue
        name = f"__one::{col.source}"
        value, several = single_value(col.source)
        if name not in {e.meta.output_name() for e in added}:
            added.append(value.alias(name))
            checks.append((col.source, target, several))
        columns[target] = _replaced(col, source=name, shown=col.shown or col.source)
    if not added:
        return frame, rule
    for source_column, target, several in checks:
        bad = frame.filter(several)
        if bad.height:
            linked.findings.append(
                _finding(
                    bad,
                    rule_id="ING-CONFLICT",
                    severity="error",
                    table=rule.table,
                    column=target,
                    site_id=mapping.site_id,
                    value=pl.col(source_column).list.join("; "),
                    message=pl.lit(
                        f"{rule.table}.{target}: '{source_column}' holds several different "
                        "values; no value taken (the export must say which one applies)"
                    ),
                )
            )
    return frame.with_columns(added), _replaced_rule(rule, columns)


def split_rows(frame: pl.DataFrame, rule: TableRule) -> pl.DataFrame:
    """One row per part of the split column's cells (parts trimmed, empty parts dropped; a row
    whose cell is empty keeps one row)."""
    col = rule.splits
    if col is None or col.split is None or col.source is None:
        return frame
    text = pl.col(col.source).cast(pl.String)
    for separator in col.split:
        text = text.str.replace_all(separator, _SPLIT_MARK, literal=True)
    parts = (
        text.str.split(_SPLIT_MARK)
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
    )
    parts = pl.when(parts.list.len() > 0).then(parts)
    return frame.with_columns(parts.alias(col.source)).explode(col.source)


# ---- lookups ----------------------------------------------------------------------------


def apply_lookups(
    frame: pl.DataFrame,
    rule: TableRule,
    table: TableSpec,
    mapping: SiteMapping,
    access: SourceAccess,
    linked: Linked,
) -> tuple[pl.DataFrame, TableRule]:
    """Each ``lookup:`` column as the text of the related row it finds (see :class:`Lookup`),
    with that row's lineage beside it; the rule then reads that text like any source column."""
    columns = dict(rule.columns)
    for target, col in rule.columns.items():
        if col.lookup is None:
            continue
        values = _look_up(frame, col.lookup, target, rule, table, mapping, access, linked)
        frame = frame.hstack(values)
        shown = f"{col.lookup.value} of the related {col.lookup.source} row"
        columns[target] = _replaced(
            col, source=lookup_column(target), lookup=None, shown=col.shown or shown
        )
    return frame, _replaced_rule(rule, columns)


def _when(text: pl.Expr, *, day: bool, formats: Sequence[str]) -> pl.Expr:
    """A date (or a day offset, for de-identified sources) parsed from text."""
    if day:
        return text.cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)
    return parse_dates(text.cast(pl.String), formats).value


def _look_up(
    frame: pl.DataFrame,
    lookup: Lookup,
    target: str,
    rule: TableRule,
    table: TableSpec,
    mapping: SiteMapping,
    access: SourceAccess,
    linked: Linked,
) -> pl.DataFrame:
    anchor = rule.columns[lookup.anchor]
    assert anchor.source is not None
    day = table.column(lookup.anchor).role == "day_offset"
    other = as_text(access.frame_of(lookup.source))
    file = mapping.sources[lookup.source].file
    for column, key in [
        (lookup.value, f"{lookup.key}.value"),
        (lookup.date, f"{lookup.key}.date"),
        (lookup.patient_id, f"{lookup.key}.patient_id"),
        *[(c.column, f"{c.key}.column") for c in lookup.where],
    ]:
        if column not in other.columns:
            raise ConfigError(
                f"source column '{column}' not found in {file}",
                path=mapping.path,
                key=key,
                hint=did_you_mean(column, list(other.columns)),
            )
    hidden = set(access.identifiers_of(lookup.source))
    if lookup.value in hidden:
        raise ConfigError(
            f"source column '{lookup.value}' looks like a direct identifier and is not copied",
            path=mapping.path,
            key=f"{lookup.key}.value",
        )
    formats = lookup.formats or mapping.date_formats
    if isinstance(other.schema[lookup.value], pl.List):
        value, _ = single_value(lookup.value)
    else:
        value = pl.col(lookup.value)
    candidates = (
        other.filter(_conditions(lookup.where, other.schema))
        .select(
            patient_key(
                mapping.site_id, pl.col(lookup.patient_id), lookup.patient_id_extract
            ).alias("__cp"),
            _when(pl.col(lookup.date), day=day, formats=formats).alias("__d"),
            blank_to_null(value.cast(pl.String).str.strip_chars()).alias("__v"),
            pl.col("source_file").alias("__cf"),
            pl.col("source_row").alias("__cr"),
        )
        .drop_nulls(["__cp", "__d", "__v"])
        .sort("__cr")
    )
    # Rows of one patient on one date are one candidate: equal values agree, others conflict.
    same = candidates.group_by(["__cp", "__d"], maintain_order=True).agg(
        pl.col("__v").first(),
        pl.col("__cf").first(),
        pl.col("__cr").first(),
        (pl.col("__v").n_unique() > 1).alias("__clash"),
        pl.struct("__cf", "__cr", "__v").alias("__all"),
    )
    anchor_formats = anchor.formats or mapping.date_formats
    anchors = frame.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("__i"),
        pl.col(PID).alias("__cp"),
        _when(pl.col(anchor.source), day=day, formats=anchor_formats).alias("__a"),
    )
    found = _nearest(anchors.drop_nulls(), same.sort("__d"), lookup, day)
    result = anchors.select("__i").join(found, on="__i", how="left", maintain_order="left")
    clash = result.filter(pl.col("__clash").fill_null(False))
    if clash.height:
        linked.findings.append(_clash_findings(clash, lookup, target, rule, mapping, file))
    chosen = result.filter(~pl.col("__clash").fill_null(False) & pl.col("__cr").is_not_null())
    linked.use(lookup.source, chosen.get_column("__cr"))
    ok = ~pl.col("__clash").fill_null(False)
    file_column, row_column = lineage_columns(target)
    return result.select(
        pl.when(ok).then(pl.col("__v")).alias(lookup_column(target)),
        pl.when(ok).then(pl.col("__cf")).alias(file_column),
        pl.when(ok).then(pl.col("__cr")).alias(row_column),
    )


def _nearest(anchors: pl.DataFrame, candidates: pl.DataFrame, lookup: Lookup, day: bool) -> Any:
    """The candidate each anchor row takes, by the lookup's relation and window."""
    window: Any = None
    if lookup.within_days is not None:
        window = lookup.within_days if day else f"{lookup.within_days}d"
    anchors = anchors.sort("__a")

    def asof(strategy: str, exact: bool) -> pl.DataFrame:
        return anchors.join_asof(
            candidates,
            left_on="__a",
            right_on="__d",
            by="__cp",
            strategy=strategy,  # type: ignore[arg-type]
            allow_exact_matches=exact,
            tolerance=window,
            check_sortedness=False,
        )

    if lookup.relation == "last_before":
        return asof("backward", False).drop("__a", "__cp")
    if lookup.relation == "first_after":  # on or after the anchor, as docs/mapping.md says
        return asof("forward", True).drop("__a", "__cp")
    before = asof("backward", True)
    after = asof("forward", True)
    both = before.join(after, on="__i", suffix="_after")
    distance = (pl.col("__a") - pl.col("__d")).abs()
    distance_after = (pl.col("__d_after") - pl.col("__a")).abs()
    if not day:
        distance, distance_after = distance.dt.total_days(), distance_after.dt.total_days()
    take_after = pl.col("__d").is_null() | (
        pl.col("__d_after").is_not_null() & (distance_after < distance)
    )
    tie = (
        pl.col("__d").is_not_null()
        & pl.col("__d_after").is_not_null()
        & (distance_after == distance)
        & (pl.col("__d_after") != pl.col("__d"))
        & (pl.col("__v_after") != pl.col("__v"))
    )
    fields = ["__d", "__v", "__cf", "__cr"]
    return both.select(
        "__i",
        *[
            pl.when(take_after).then(pl.col(f"{f}_after")).otherwise(pl.col(f)).alias(f)
            for f in fields
        ],
        (
            pl.when(take_after).then(pl.col("__clash_after")).otherwise(pl.col("__clash"))
            | tie.fill_null(False)
        ).alias("__clash"),
        pl.when(tie.fill_null(False))
        .then(pl.concat_list(pl.col("__all"), pl.col("__all_after")))
        .when(take_after)
        .then(pl.col("__all_after"))
        .otherwise(pl.col("__all"))
        .alias("__all"),
    )


def _clash_findings(
    clash: pl.DataFrame,
    lookup: Lookup,
    target: str,
    rule: TableRule,
    mapping: SiteMapping,
    file: str,
) -> pl.DataFrame:
    """One ING-CONFLICT at each related row after the first that disagrees with it."""
    rows = (
        clash.select("__i", pl.col("__all"))
        .explode("__all")
        .unnest("__all")
        .unique(["__i", "__cf", "__cr"], maintain_order=True)
        .with_columns(
            pl.col("__v").first().over("__i").alias("__first"),
            pl.col("__cr").first().over("__i").alias("__first_row"),
        )
        .filter(pl.col("__v") != pl.col("__first"))
        .unique(["__cf", "__cr"], maintain_order=True)
        .rename({"__cf": "source_file", "__cr": "source_row"})
    )
    return _finding(
        rows,
        rule_id="ING-CONFLICT",
        severity="error",
        table=rule.table,
        column=target,
        site_id=mapping.site_id,
        value=pl.col("__v"),
        message=format_text(
            "{}.{}: '{}' and '{}' ({} row {}) are both the related row of {} ({}); no value taken",
            pl.lit(rule.table),
            pl.lit(target),
            pl.col("__v"),
            pl.col("__first"),
            pl.lit(file),
            pl.col("__first_row"),
            pl.lit(lookup.anchor),
            pl.lit(lookup.relation.replace("_", " ")),
        ),
    )


def _conditions(conditions: Sequence[Condition], schema: Mapping[str, Any]) -> pl.Expr:
    from cartreg.ingest.harmonize import condition_expr

    return condition_expr(conditions, schema)


def masked(value: pl.Expr, hidden: bool) -> pl.Expr:
    return pl.lit(MASK) if hidden else value


__all__ = [
    "Linked",
    "SourceAccess",
    "apply_joins",
    "apply_lookups",
    "code_matches",
    "contains_any",
    "key_column",
    "lineage_columns",
    "patient_key",
    "pivot_rows",
    "single_values",
    "split_rows",
    "take_joined_rows",
]
