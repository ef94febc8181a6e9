"""Rows of several rules (or several rows of one) that are one CDM row, and rows a rule keeps
only from the index infusion on. Both need every rule's rows, so they run once all sources are
harmonized (and, for a large export, once per range of patients: both work within a patient).

**Combine by key.** Every rule of a table that declares ``key`` feeds the same rows: rows with
the same patient and equal key values (``assessment_date``, or a source column such as an
encounter id) become one row. Each column takes the value its rows give; rows that give
different values for a column are an ``ING-CONFLICT`` error at each row that disagrees with
the first (mapping order, then source order) and the column stays empty: no value is picked.
A row whose key is incomplete (an unreadable date) is kept on its own. The combined row has the
lineage of its first row; required columns are checked on the combined row, and when one is
missing every row that went into it is quarantined.

**After the index infusion.** A rule with ``after_index_infusion: true`` keeps the rows dated
on or after the patient's index CAR T infusion (day 0 included): a marrow before it is the
infusion's baseline (read with a ``lookup``), not an assessment. Rows without a date or day
are kept. Rows it leaves out are not selected by that rule (``NOT-MAPPED`` unless another rule
reads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl

from cartreg.cdm.model import CDM, TableSpec
from cartreg.exprs import format_text
from cartreg.findings import findings_frame
from cartreg.ingest.derive import INDEX_DATE, derive_index_infusion, ensure_columns, event_order
from cartreg.ingest.harmonize import COMBINE, DERIVED_COLUMNS, ORDER, qualifier_column
from cartreg.ingest.linking import key_column
from cartreg.ingest.mapping import SiteMapping, TableRule

if TYPE_CHECKING:
    from cartreg.ingest.pipeline import Collected

RULE_STRIDE = 1_000_000_000  # ORDER = rule index * RULE_STRIDE + row within the rule
_LINEAGE = ("site_id", "source_file", "source_row", "patient_key")
_FIRST_FILE = "__first_file"
_FIRST_ROW = "__first_row"
_MEMBER_FILES = "__member_files"
_MEMBER_ROWS = "__member_rows"


def rule_of(part: pl.DataFrame) -> int | None:
    """The index (in mapping order) of the rule that produced a table part."""
    if part.is_empty():
        return None
    return int(part.get_column(ORDER)[0]) // RULE_STRIDE


# ---- after the index infusion ----------------------------------------------------------------


def drop_before_index(collected: Collected, cdm: CDM, rules: Sequence[TableRule]) -> None:
    """Leave out the rows dated before the index infusion of rules that ask for it."""
    flagged = {n for n, rule in enumerate(rules) if rule.after_index_infusion}
    if not flagged:
        return
    index = _index_dates(collected, cdm)
    for name, parts in collected.table_parts.items():
        order = event_order(cdm.tables[name])
        if not order:
            continue
        date, day = order
        kept_parts: list[pl.DataFrame] = []
        for part in parts:
            n = rule_of(part)
            if n is None or n not in flagged:
                kept_parts.append(part)
                continue
            when = part.select("patient_key").join(
                index, on="patient_key", how="left", maintain_order="left"
            )
            before = pl.lit(False)
            if day in part.columns:
                before = before | (pl.col(day) < 0).fill_null(False)
            if date in part.columns:
                before = before | (pl.col(date) < when.get_column(INDEX_DATE)).fill_null(False)
            flags = part.select(before.alias("__before")).to_series()
            kept = part.filter(~flags)
            dropped = part.filter(flags)
            kept_parts.append(kept)
            _deselect(collected, rules[n].source, n, dropped, kept)
        collected.table_parts[name] = kept_parts


def _index_dates(collected: Collected, cdm: CDM) -> pl.DataFrame:
    """patient_key -> the index infusion date, as the derivations will choose it."""
    parts = collected.table_parts.get("car_t_infusions", [])
    infusions = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
    spec = cdm.tables["car_t_infusions"]
    frame = ensure_columns(infusions.select(c for c in infusions.columns if c != COMBINE), spec)
    frame = frame.select([pl.col(c.name).cast(_dtype(c.dtype)) for c in spec.columns] + [ORDER])
    _, index = derive_index_infusion(frame.filter(pl.col("patient_key").is_not_null()))
    return index


def _dtype(name: str) -> pl.DataType:
    from cartreg.ingest.derive import polars_dtype

    return polars_dtype(name)


def _deselect(
    collected: Collected, source: str, rule: int, dropped: pl.DataFrame, kept: pl.DataFrame
) -> None:
    """The source rows all of whose rows the rule left out are no longer selected by it."""
    if dropped.is_empty():
        return
    gone = (
        dropped.select("source_row")
        .unique()
        .join(kept.select("source_row").unique(), on="source_row", how="anti")
    )
    if gone.is_empty():
        return
    rows = gone.get_column("source_row").implode()
    collected.selected[source] = [
        pairs.filter(~((pl.col("__rule") == rule) & pl.col("source_row").is_in(rows)))
        for pairs in collected.selected.get(source, [])
    ]


# ---- combine by key --------------------------------------------------------------------------


def combine_keyed(collected: Collected, cdm: CDM, mapping: SiteMapping) -> None:
    """Merge the rows of each table's rules that declare a key (see the module docstring)."""
    for name, parts in collected.table_parts.items():
        keyed = [p for p in parts if COMBINE in p.columns]
        if not keyed:
            continue
        rules = [r for r in mapping.tables.get(name, ()) if r.combine_key is not None]
        spec = cdm.tables[name]
        key = [
            item if target else key_column(position)
            for position, (item, target) in enumerate(rules[0].key_items())
        ]
        rows = pl.concat(keyed, how="diagonal_relaxed").sort(ORDER)
        complete = pl.all_horizontal(pl.col(key).is_not_null())
        alone = _as_members(rows.filter(~complete))
        rows = rows.filter(complete)
        repeated = (
            rows.select(pl.struct(key).is_duplicated().any()).item() if rows.height else False
        )
        if repeated:
            merged, conflicts = _merge(rows, key, spec, mapping.site_id)
            collected.findings.append(conflicts)
        else:
            merged = _as_members(rows)
        combined = pl.concat([merged, alone], how="diagonal_relaxed")
        combined = _required(collected, combined, spec, mapping.site_id)
        helpers = [c for c in combined.columns if c == COMBINE or c.startswith("__key::")]
        others = [p for p in parts if COMBINE not in p.columns]
        collected.table_parts[name] = [*others, combined.drop(helpers)]


def _as_members(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows that are their own only member."""
    return rows.with_columns(
        pl.concat_list(pl.col("source_file")).alias(_MEMBER_FILES),
        pl.concat_list(pl.col("source_row")).alias(_MEMBER_ROWS),
    )


def _value_columns(rows: pl.DataFrame, key: list[str], spec: TableSpec) -> dict[str, list[str]]:
    """Columns compared across the rows of a key, each with the siblings that follow it (its raw
    text, precision and comparator come from the row that gave the value)."""
    roles = {c.name: c.role for c in spec.columns}
    skip = {*_LINEAGE, ORDER, COMBINE, *key}
    values: dict[str, list[str]] = {}
    followers: set[str] = set()
    for column in rows.columns:
        if column in skip or column.startswith("__") or roles.get(column) in ("raw", "precision"):
            continue
        siblings = [f"{column}_raw", f"{column}_precision"]
        qualifier = qualifier_column(spec, column)
        if qualifier is not None:
            siblings.append(qualifier)
        values[column] = [s for s in siblings if s in rows.columns]
        followers |= set(values[column])
    return {c: s for c, s in values.items() if c not in followers}


def _merge(
    rows: pl.DataFrame, key: list[str], spec: TableSpec, site_id: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per key value; conflicting columns empty, with their findings."""
    values = _value_columns(rows, key, spec)
    aggregations: list[pl.Expr] = [
        pl.col("site_id").first(),
        pl.col("source_file").first(),
        pl.col("source_row").first(),
        pl.col(ORDER).first(),
        pl.col("source_file").alias(_MEMBER_FILES),
        pl.col("source_row").alias(_MEMBER_ROWS),
    ]
    # A key's precision and raw text are no key: they follow the key's first row.
    key_siblings = [
        s for k in key for s in (f"{k}_raw", f"{k}_precision") if s in rows.columns and s not in key
    ]
    aggregations += [pl.col(s).first() for s in key_siblings]
    for column, siblings in values.items():
        given = pl.col(column).is_not_null()
        aggregations.append(pl.col(column).filter(given).first())
        aggregations.append(
            (pl.col(column).drop_nulls().n_unique() > 1).alias(f"__clash::{column}")
        )
        aggregations += [pl.col(s).filter(given).first() for s in siblings]
        aggregations += [
            pl.col("source_file").filter(given).first().alias(f"__from_file::{column}"),
            pl.col("source_row").filter(given).first().alias(f"__from_row::{column}"),
        ]
    merged = rows.group_by(key, maintain_order=True).agg(aggregations)
    clashing = [c for c in values if merged.get_column(f"__clash::{c}").any()]
    conflicts = [_conflicts(rows, merged, key, c, spec, site_id) for c in clashing]
    cleared = []
    for column in clashing:
        clash = pl.col(f"__clash::{column}")
        cleared += [
            pl.when(clash).then(None).otherwise(pl.col(c)).alias(c)
            for c in (column, *values[column])
        ]
    if cleared:
        merged = merged.with_columns(cleared)
    scratch = [c for c in merged.columns if c.startswith(("__clash::", "__from_"))]
    frame = findings_frame(pl.concat(conflicts)) if conflicts else pl.DataFrame()
    return merged.drop(scratch), frame


def _conflicts(
    rows: pl.DataFrame,
    merged: pl.DataFrame,
    key: list[str],
    column: str,
    spec: TableSpec,
    site_id: str,
) -> pl.DataFrame:
    """ING-CONFLICT at each row whose value differs from the first row's."""
    raw = f"{column}_raw" if f"{column}_raw" in rows.columns else column
    first = merged.filter(pl.col(f"__clash::{column}")).select(
        *key,
        pl.col(column).alias("__first"),
        pl.col(raw).cast(pl.String).alias("__first_text"),
        pl.col(f"__from_file::{column}").alias(_FIRST_FILE),
        pl.col(f"__from_row::{column}").alias(_FIRST_ROW),
    )
    described = " and ".join(k for k in key if not k.startswith("__")) or "patient"
    differing = rows.join(first, on=key, how="inner").filter(
        pl.col(column).is_not_null() & (pl.col(column) != pl.col("__first"))
    )
    return differing.select(
        pl.lit("ING-CONFLICT").alias("rule_id"),
        pl.lit("error").alias("severity"),
        pl.lit("plausibility").alias("category"),
        pl.lit("atemporal").alias("subcategory"),
        pl.lit(spec.name).alias("table"),
        pl.lit(column).alias("column"),
        pl.lit(site_id).alias("site_id"),
        "source_file",
        "source_row",
        pl.col(raw).cast(pl.String).alias("value"),
        format_text(
            "{}.{} '{}' differs from '{}' of {} row {}, for the same {}; the value is left "
            "empty: correct the row that is wrong",
            pl.lit(spec.name),
            pl.lit(column),
            pl.col(raw).cast(pl.String),
            pl.col("__first_text"),
            pl.col(_FIRST_FILE),
            pl.col(_FIRST_ROW),
            pl.lit(described),
        ).alias("message"),
    )


def _required(
    collected: Collected, combined: pl.DataFrame, spec: TableSpec, site_id: str
) -> pl.DataFrame:
    """Combined rows missing a required value leave the table; every row that went into them
    is quarantined (ING-REQUIRED) with a finding."""
    required = [
        c.name
        for c in spec.columns
        if c.required and c.role == "declared" and c.name not in DERIVED_COLUMNS
    ]
    present = [c for c in required if c in combined.columns]
    missing_columns = [c for c in required if c not in combined.columns]
    lacking = pl.lit(bool(missing_columns))
    for column in present:
        lacking = lacking | pl.col(column).is_null()
    what = pl.lit(missing_columns[0]) if missing_columns else pl.lit(None, dtype=pl.String)
    for column in reversed(present):
        what = pl.when(pl.col(column).is_null()).then(pl.lit(column)).otherwise(what)
    flagged = combined.with_columns(lacking.alias("__lacking"), what.alias("__what"))
    bad = flagged.filter(pl.col("__lacking"))
    if bad.height:
        members = (
            bad.select(
                pl.col(_MEMBER_FILES).alias("source_file"),
                pl.col(_MEMBER_ROWS).alias("source_row"),
                pl.col("__what").alias("column"),
            )
            .explode(["source_file", "source_row"])
            .unique(["source_file", "source_row"], maintain_order=True)
        )
        collected.findings.append(
            findings_frame(
                members.select(
                    pl.lit("ING-REQUIRED").alias("rule_id"),
                    pl.lit("error").alias("severity"),
                    pl.lit("completeness").alias("category"),
                    pl.lit("atemporal").alias("subcategory"),
                    pl.lit(spec.name).alias("table"),
                    "column",
                    pl.lit(site_id).alias("site_id"),
                    "source_file",
                    "source_row",
                    pl.lit(None, dtype=pl.String).alias("value"),
                    format_text(
                        "required {}.{} missing or unreadable in the rows combined with this "
                        "one; rows quarantined",
                        pl.lit(spec.name),
                        "column",
                    ).alias("message"),
                )
            )
        )
        for source, rows in collected.source_of_rows(members).items():
            collected.quarantine_rows(
                source, rows.select("source_row", pl.lit("ING-REQUIRED").alias("rule_id"), "column")
            )
    return flagged.filter(~pl.col("__lacking")).drop(
        "__lacking", "__what", _MEMBER_FILES, _MEMBER_ROWS
    )
