"""Finding fingerprints: the identity of a data problem that survives resubmission.

A finding id (:mod:`cartreg.findings`) names a *place in a file*: rule, site, table, column,
file and row. A site that sorts its export differently, adds patients or inserts an event
moves every later row, and every finding id with it. A query must follow the *problem*, so its
fingerprint is built from what a clinician would use to name the record:

    fingerprint = hash(scheme, rule, site, local patient id, table, event identity, column)

The event identity of a row of an event table is ``anchor|kind|n`` (docs/queries.md):

* ``anchor``: the event's own date (``2023-04-12``), else its day offset (``d28``), else its
  year (``y2021``). When the finding is *about* the event's time (its date, day offset,
  precision or year), the time cannot name the event (correcting it would rename it): the
  anchor is then ``#k``, the event's place among the patient's events of that kind in time
  order.
* ``kind``: the columns that tell same-day events apart (specimen of an assessment, agent of a
  salvage line, ...), unless the finding is about that column.
* ``n``: 1, or the place of the row among rows with the same patient, anchor and kind, ordered
  by their other values (identical rows have no better name).

Patient-level tables (patients, follow-up) have an empty anchor and kind. Columns the pipeline
derives from the order of a patient's events (row ids, infusion number, event sequence, line
number, index flags) never take part, and neither do the offending column and its siblings, so
the offending value is stored beside the query, never in its identity.

A finding on a quarantined source row (no harmonized event exists) is named by the raw cells of
that row other than the offending one; a finding on a row that cannot be found is named by its
file and row (the last resort, position-dependent); a finding without a row (a missing column)
by its table and column alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cartreg.exprs import format_text
from cartreg.findings import finding_id

if TYPE_CHECKING:
    from cartreg.cdm import CDM
    from cartreg.cdm.model import TableSpec

SCHEME = "fp1"  # hashed into every fingerprint: a new scheme never collides with this one
FINGERPRINT_COLUMNS = ("finding_id", "fingerprint", "patient_key", "event", "event_label", "anchor")

# Columns that tell apart events of one patient on the same day (a marrow and a blood sample,
# two agents of a combination line). Absent columns are skipped, so a custom CDM still works.
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "disease_assessments": ("specimen",),
    "salvage_treatments": ("agent",),
    "progression_events": ("event_type",),
    "transplants": ("hct_type",),
}
# Derived from a patient's event order (ingest.derive): inserting an earlier event changes them.
ORDER_DERIVED = frozenset(
    {
        "infusion_id",
        "assessment_id",
        "progression_id",
        "salvage_id",
        "hct_id",
        "infusion_number",
        "event_seq",
        "line_number",
        "is_index_infusion",
        "is_reinfusion",
    }
)
_LOCATION = ("source_file", "source_row")
_SEP = "\x1f"


@dataclass(frozen=True)
class TableShape:
    """What names an event of one CDM table."""

    name: str
    order: tuple[str, ...]  # the event's date then day offset: its place in time
    timing: frozenset[str]  # every column holding the event's own time
    kinds: tuple[str, ...]
    content: tuple[str, ...]  # compared, sorted by name, to order otherwise identical rows
    families: Mapping[str, frozenset[str]]  # column -> itself and its siblings (_raw, _day...)

    def excluded(self, column: str | None) -> frozenset[str]:
        """The columns a finding on ``column`` must not be named by."""
        if not column:
            return frozenset()
        out: set[str] = set()
        for name in column.split(","):
            out |= self.families.get(name.strip(), {name.strip()})
        if out & self.timing:
            out |= self.timing
        return frozenset(out)


def table_shape(spec: TableSpec, lineage: Sequence[str] = ("site_id", *_LOCATION)) -> TableShape:
    from cartreg.ingest.derive import event_order

    order = tuple(event_order(spec))
    base = {c.name: c.sibling_of or c.name for c in spec.columns}
    groups: dict[str, set[str]] = {}
    for name, owner in base.items():
        groups.setdefault(owner, {owner}).add(name)
    families = {name: frozenset(groups[owner]) for name, owner in base.items()}
    timing: set[str] = set()
    for name in order:
        timing |= families.get(name, {name})
    for name in order:
        year = name.removesuffix("_date") + "_year"
        if name.endswith("_date") and year in base:
            timing.add(year)
    skip = {*lineage, "patient_key", *ORDER_DERIVED}
    content = tuple(sorted(c for c in base if c not in skip))
    kinds = tuple(c for c in KIND_COLUMNS.get(spec.name, ()) if c in base)
    return TableShape(spec.name, order, frozenset(timing), kinds, content, families)


@dataclass(frozen=True)
class QuarantinedRows:
    """Raw source rows a submission quarantined (``quarantine/<source>.parquet``)."""

    frame: pl.DataFrame
    patient_id: str | None  # the raw column holding the site's patient id
    # "table.column" -> the raw column the mapping fills it from (left out of the row's name)
    raw_columns: Mapping[str, str] = field(default_factory=dict)


def load_quarantine(
    out_dir: Path | str, mapping_path: Path | str | None, cdm: CDM
) -> list[QuarantinedRows]:
    """The quarantined rows of an ingest output folder, with the patient id column of each
    source taken from the site's mapping (none when the mapping is not at hand)."""
    folder = Path(out_dir) / "quarantine"
    if not folder.is_dir():
        return []
    id_columns: dict[str, str] = {}
    raw_columns: dict[str, dict[str, str]] = {}
    if mapping_path is not None:
        from cartreg.ingest.mapping import load_mapping

        mapping = load_mapping(Path(mapping_path), cdm)
        for table, rules in mapping.tables.items():
            for rule in rules:
                id_columns.setdefault(rule.source, rule.patient_id)
                for target, column in rule.columns.items():
                    if column.source is not None:
                        raw_columns.setdefault(rule.source, {})[f"{table}.{target}"] = column.source
        for name, source in mapping.sources.items():
            if source.patient_id:
                id_columns[name] = source.patient_id
    out: list[QuarantinedRows] = []
    for path in sorted(folder.glob("*.parquet")):
        frame = pl.read_parquet(path)
        if frame.height and all(c in frame.columns for c in _LOCATION):
            patient_id = id_columns.get(path.stem)
            out.append(
                QuarantinedRows(
                    frame,
                    patient_id if patient_id in frame.columns else None,
                    raw_columns.get(path.stem, {}),
                )
            )
    return out


def _timing_text(columns: Sequence[str], rows: pl.DataFrame) -> pl.Expr:
    """The event's own time as text: date, else ``d<day>``, else ``y<year>``, else ``?``."""
    parts: list[pl.Expr] = []
    for name in columns:
        if name not in rows.columns:
            continue
        text = pl.col(name).cast(pl.String)
        if name.endswith("_day"):
            text = pl.lit("d") + text
        elif name.endswith("_year"):
            text = pl.lit("y") + text
        parts.append(text)
    return pl.coalesce([*parts, pl.lit("?")]) if parts else pl.lit("?")


def _ordinal(rows: pl.DataFrame, by: list[str], within: list[str], name: str) -> pl.DataFrame:
    """1-based position of each row among the rows sharing ``within``, in ``by`` order."""
    ranked = rows.sort(by, nulls_last=True, maintain_order=True).with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(within).alias(name)
    )
    return ranked


def event_identities(rows: pl.DataFrame, shape: TableShape, column: str | None) -> pl.DataFrame:
    """``rows`` (every row of the patients concerned) with ``__event`` and ``__label`` naming
    each row's event for a finding on ``column``."""
    excluded = shape.excluded(column)
    content_cols = [c for c in shape.content if c not in excluded and c in rows.columns]
    content = (
        pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("") for c in content_cols], separator=_SEP
        )
        if content_cols
        else pl.lit("")
    )
    kinds = [c for c in shape.kinds if c not in excluded and c in rows.columns]
    if kinds:
        kind = pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("") for c in kinds], separator="/"
        )
    else:
        kind = pl.lit("*" if shape.kinds else "")
    rows = rows.with_columns(
        pl.col("patient_key").cast(pl.String), content.alias("__content"), kind.alias("__kind")
    )
    order = [c for c in shape.order if c in rows.columns]
    timing_cols = [*order, *sorted(c for c in shape.timing if c.endswith("_year"))]
    if not shape.order:
        rows = rows.with_columns(pl.lit("").alias("__anchor"), pl.lit("").alias("__anchor_label"))
    elif excluded & shape.timing:
        rows = _ordinal(
            rows, ["patient_key", "__kind", *order, "__content"], ["patient_key", "__kind"], "__k"
        ).with_columns(
            (pl.lit("#") + pl.col("__k").cast(pl.String)).alias("__anchor"),
            format_text("no. {} in time order", pl.col("__k")).alias("__anchor_label"),
        )
    else:
        text = _timing_text(timing_cols, rows)
        label = (
            pl.when(text.str.starts_with("d"))
            .then(pl.lit("day ") + text.str.slice(1))
            .when(text.str.starts_with("y"))
            .then(pl.lit("year ") + text.str.slice(1))
            .when(text == "?")
            .then(pl.lit("undated"))
            .otherwise(text)
        )
        rows = rows.with_columns(text.alias("__anchor"), label.alias("__anchor_label"))
    rows = _ordinal(
        rows,
        ["patient_key", "__anchor", "__kind", "__content"],
        ["patient_key", "__anchor", "__kind"],
        "__n",
    )
    kind_label = pl.when(pl.col("__kind").is_in(["", "*"])).then(pl.lit("")).otherwise("__kind")
    label = pl.concat_str(
        [
            pl.col("__anchor_label"),
            kind_label,
            pl.when(pl.col("__n") > 1)
            .then(format_text("(copy {})", pl.col("__n")))
            .otherwise(None),
        ],
        separator=" ",
        ignore_nulls=True,
    ).str.strip_chars()
    return rows.with_columns(
        pl.concat_str(
            [pl.col("__anchor"), pl.col("__kind"), pl.col("__n").cast(pl.String)], separator="|"
        ).alias("__event"),
        label.alias("__label"),
    )


def _lazy(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


def _on_rows(
    located: pl.DataFrame,
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    shapes: Mapping[str, TableShape],
) -> pl.DataFrame:
    """Findings that point at a harmonized row, named by that row's event."""
    parts: list[pl.DataFrame] = []
    # One pass per (table, column): the column decides which identity the event gets.
    for (table, column), group in located.group_by(["table", "column"], maintain_order=True):
        assert isinstance(table, str)
        col = column if isinstance(column, str) else None
        source = _lazy(tables[table])
        names = source.collect_schema().names()
        if "patient_key" not in names or not all(c in names for c in _LOCATION):
            continue
        where = group.select(*_LOCATION).unique()
        rows = source.with_columns(
            pl.col("patient_key").cast(pl.String), pl.col("source_row").cast(pl.Int64)
        )
        patients = (
            rows.join(where.lazy(), on=list(_LOCATION), how="semi", nulls_equal=True)
            .select("patient_key")
            .unique()
        )
        concerned = rows.join(patients, on="patient_key", how="semi", nulls_equal=True).collect()
        named = event_identities(concerned, shapes[table], col)
        value = (
            pl.col(col).cast(pl.String) if col in named.columns else pl.lit(None, dtype=pl.String)
        )
        candidates = group.join(
            named.select(*_LOCATION, "patient_key", "__event", "__label", value.alias("__value")),
            on=list(_LOCATION),
            nulls_equal=True,
        )
        # Several CDM rows from one source row (two agents in one cell): prefer the row holding
        # the reported value, then the first by identity, so the choice never depends on order.
        best = candidates.sort(
            ["__f", pl.col("__value").eq_missing(pl.col("value")).not_(), "__event"]
        ).unique("__f", keep="first", maintain_order=True)
        parts.append(
            best.select(
                "__f",
                "patient_key",
                pl.col("__event").alias("event"),
                pl.col("__label").alias("event_label"),
                pl.lit("event").alias("anchor"),
            )
        )
    return pl.concat(parts) if parts else _empty_named()


def _on_quarantine(pending: pl.DataFrame, quarantine: Sequence[QuarantinedRows]) -> pl.DataFrame:
    """Findings on quarantined source rows, named by the row's other raw cells."""
    parts: list[pl.DataFrame] = []
    for source in quarantine:
        frame = source.frame.with_columns(pl.col("source_row").cast(pl.Int64))
        cells = sorted(
            c for c in frame.columns if c not in (*_LOCATION, "quarantine_reasons", "__f")
        )
        joined = pending.join(frame, on=list(_LOCATION), nulls_equal=True, suffix="__raw")
        if joined.height == 0:
            continue
        raw = {c: (f"{c}__raw" if f"{c}__raw" in joined.columns else c) for c in cells}
        # The offending cell (mapped to the finding's column, or holding its value) is left
        # out, as for harmonized rows.
        joined = joined.with_columns(
            pl.concat_str([pl.col("table"), pl.col("column")], separator=".")
            .replace_strict(dict(source.raw_columns), default=None, return_dtype=pl.String)
            .alias("__skip")
        )
        text = pl.concat_str(
            [
                pl.when(
                    pl.col(raw[c]).cast(pl.String).eq_missing(pl.col("value"))
                    | pl.col("__skip").eq_missing(pl.lit(c))
                )
                .then(pl.lit(""))
                .otherwise(pl.col(raw[c]).cast(pl.String).fill_null(""))
                for c in cells
            ],
            separator=_SEP,
        )
        local = (
            pl.col(raw[source.patient_id]).cast(pl.String).str.strip_chars()
            if source.patient_id
            else pl.lit(None, dtype=pl.String)
        )
        keyed = joined.with_columns(text.alias("__cells"), local.alias("__local"))
        digests = [finding_id("quarantined", t) for t in keyed["__cells"].to_list()]
        parts.append(
            keyed.with_columns(pl.Series("__digest", digests, dtype=pl.String)).select(
                "__f",
                pl.when(pl.col("__local").is_not_null() & (pl.col("__local") != ""))
                .then(pl.concat_str([pl.col("site_id"), pl.lit("-"), pl.col("__local")]))
                .alias("patient_key"),
                (pl.lit("Q|") + pl.col("__digest")).alias("event"),
                format_text("quarantined row {}", pl.col("source_row")).alias("event_label"),
                pl.lit("quarantine").alias("anchor"),
            )
        )
    if not parts:
        return _empty_named()
    return pl.concat(parts).unique("__f", keep="first", maintain_order=True)


def _empty_named() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "__f": pl.UInt32(),
            "patient_key": pl.String(),
            "event": pl.String(),
            "event_label": pl.String(),
            "anchor": pl.String(),
        }
    )


def fingerprint_findings(
    findings: pl.DataFrame,
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    *,
    cdm: CDM,
    quarantine: Sequence[QuarantinedRows] = (),
) -> pl.DataFrame:
    """One row per finding (input order): ``finding_id``, ``fingerprint``, ``patient_key``,
    ``event`` (its identity), ``event_label`` (for people) and ``anchor`` (``event``,
    ``quarantine``, ``row`` or ``table``: how it was named)."""
    base = findings.select(
        "finding_id", "rule_id", "site_id", "table", "column", *_LOCATION, "value"
    ).with_row_index("__f")
    if base.height == 0:
        return pl.DataFrame(schema=dict.fromkeys(FINGERPRINT_COLUMNS, pl.String()))
    shapes = {name: table_shape(spec) for name, spec in cdm.tables.items() if name in tables}
    located = base.filter(pl.col("source_row").is_not_null() & pl.col("table").is_in(list(shapes)))
    on_rows = _on_rows(located, tables, shapes)
    pending = base.filter(pl.col("source_row").is_not_null()).join(
        on_rows.select("__f"), on="__f", how="anti"
    )
    on_quarantine = _on_quarantine(pending, quarantine)
    named = pl.concat([on_rows, on_quarantine])
    out = base.join(named, on="__f", how="left").sort("__f")
    positional = pl.col("source_row").is_not_null()
    out = out.with_columns(
        pl.when(pl.col("anchor").is_not_null())
        .then(pl.col("anchor"))
        .when(positional)
        .then(pl.lit("row"))
        .otherwise(pl.lit("table"))
        .alias("anchor"),
        pl.when(pl.col("anchor").is_not_null())
        .then(pl.col("event"))
        .when(positional)
        .then(format_text("row|{}|{}", pl.col("source_file").fill_null(""), pl.col("source_row")))
        .otherwise(pl.lit(""))
        .alias("event"),
        pl.when(pl.col("anchor").is_not_null())
        .then(pl.col("event_label"))
        .when(positional)
        .then(format_text("{} row {}", pl.col("source_file").fill_null(""), pl.col("source_row")))
        .otherwise(pl.lit(""))
        .alias("event_label"),
    )
    local = (
        pl.when(pl.col("patient_key").str.starts_with(pl.col("site_id") + pl.lit("-")))
        .then(pl.col("patient_key").str.slice(pl.col("site_id").str.len_chars() + 1))
        .otherwise(pl.col("patient_key"))
    )
    keys = out.select(
        pl.concat_str(
            [
                pl.lit(SCHEME),
                pl.col("rule_id").fill_null(""),
                pl.col("site_id").fill_null(""),
                local.fill_null(""),
                pl.col("table").fill_null(""),
                pl.col("event").fill_null(""),
                pl.col("column").fill_null(""),
            ],
            separator=_SEP,
        )
    ).to_series()
    prints = [finding_id(key) for key in keys.to_list()]  # one hash per finding, not per row
    return out.with_columns(pl.Series("fingerprint", prints, dtype=pl.String)).select(
        FINGERPRINT_COLUMNS
    )


def fingerprint_output(
    out_dir: Path | str,
    findings: pl.DataFrame,
    *,
    cdm: CDM,
    mapping_path: Path | str | None = None,
) -> pl.DataFrame:
    """:func:`fingerprint_findings` for the findings of an ingest output folder."""
    folder = Path(out_dir) / "tables"
    tables: dict[str, pl.LazyFrame] = {
        name: pl.scan_parquet(folder / f"{name}.parquet")
        for name in cdm.tables
        if (folder / f"{name}.parquet").is_file()
    }
    return fingerprint_findings(
        findings, tables, cdm=cdm, quarantine=load_quarantine(out_dir, mapping_path, cdm)
    )
