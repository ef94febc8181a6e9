"""What changed between two versions of a site: records added, removed and changed field by field.

Records are matched on each CDM table's primary key. Lineage columns (file, row) are not
compared: a record that moved to another line of the export has not changed. Identifier columns
are compared but their values are masked in the report. Records that were in an *accepted*
version and are missing from the next one are "records lost" warnings (rule REG-RECORD-LOST).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from cartreg.errors import InputError
from cartreg.exprs import format_text
from cartreg.findings import MASK, empty_findings, findings_frame

if TYPE_CHECKING:
    from cartreg.cdm import CDM
    from cartreg.registry.store import Registry

RECORD_LOST = "REG-RECORD-LOST"

_RECORD_SCHEMA = {
    "table": pl.String,
    "record_key": pl.String,
    "patient_key": pl.String,
    "change": pl.String,
}
_CHANGE_SCHEMA = {
    "table": pl.String,
    "record_key": pl.String,
    "patient_key": pl.String,
    "column": pl.String,
    "old": pl.String,
    "new": pl.String,
}


@dataclass(frozen=True)
class VersionRef:
    site_id: str
    version: int
    submission_id: int
    status: str
    submitted_at: str


@dataclass
class DiffReport:
    """Differences from version ``base`` (None: nothing before) to version ``target`` of a site."""

    site_id: str
    base: VersionRef | None
    target: VersionRef
    records: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_RECORD_SCHEMA))
    changes: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_CHANGE_SCHEMA))
    findings: pl.DataFrame = field(default_factory=empty_findings)

    def patients(self, change: str) -> list[str]:
        """Patient keys added or removed (``change`` = "added" / "removed")."""
        rows = self.records.filter((pl.col("table") == "patients") & (pl.col("change") == change))
        return sorted(rows["record_key"].to_list())

    def summary(self) -> pl.DataFrame:
        """Per table: records added, removed, changed (records with at least one field changed)."""
        counts = self.records.group_by("table", "change").len()
        changed = (
            self.changes.group_by("table")
            .agg(pl.col("record_key").n_unique().alias("len"))
            .with_columns(pl.lit("changed").alias("change"))
        )
        both = pl.concat([counts, changed.select(counts.columns)], how="vertical_relaxed")
        if both.height == 0:
            return pl.DataFrame(
                schema={
                    "table": pl.String,
                    "added": pl.UInt32,
                    "removed": pl.UInt32,
                    "changed": pl.UInt32,
                }
            )
        wide = both.pivot(on="change", index="table", values="len")
        for name in ("added", "removed", "changed"):
            if name not in wide.columns:
                wide = wide.with_columns(pl.lit(0, dtype=pl.UInt32).alias(name))
        return wide.select("table", "added", "removed", "changed").fill_null(0).sort("table")

    @property
    def is_empty(self) -> bool:
        return self.records.height == 0 and self.changes.height == 0

    def to_dict(self) -> dict[str, Any]:
        def ref(v: VersionRef | None) -> dict[str, Any] | None:
            return (
                None
                if v is None
                else {
                    "version": v.version,
                    "submission_id": v.submission_id,
                    "status": v.status,
                    "submitted_at": v.submitted_at,
                }
            )

        return {
            "report": "cartreg.registry.diff",
            "report_version": 1,
            "site_id": self.site_id,
            "from": ref(self.base),
            "to": ref(self.target),
            "patients_added": self.patients("added"),
            "patients_removed": self.patients("removed"),
            "summary": self.summary().to_dicts(),
            "records": self.records.to_dicts(),
            "changes": self.changes.to_dicts(),
            "findings": self.findings.to_dicts(),
        }


def _versions(registry: Registry, site: str) -> list[VersionRef]:
    rows = registry.conn.execute(
        "SELECT version, submission_id, status, CAST(submitted_at AS VARCHAR) FROM submissions "
        "WHERE site_id = ? AND version IS NOT NULL ORDER BY version",
        [site],
    ).fetchall()
    return [VersionRef(site, int(v), int(s), str(st), str(at)) for v, s, st, at in rows]


def resolve_versions(
    registry: Registry, site: str, from_version: int | None, to_version: int | None
) -> tuple[VersionRef | None, VersionRef]:
    """Default ``to``: the latest version; default ``from``: the latest accepted version before
    it (else the version just before it; else nothing)."""
    versions = _versions(registry, site)
    if not versions:
        sites = [
            str(r[0])
            for r in registry.conn.execute(
                "SELECT DISTINCT site_id FROM submissions ORDER BY 1"
            ).fetchall()
        ]
        raise InputError(
            f"site {site} has no stored version",
            where=str(registry.path),
            hint=f"sites: {', '.join(sites)}" if sites else "submit one first",
        )
    by_number = {v.version: v for v in versions}

    def pick(number: int) -> VersionRef:
        if number not in by_number:
            raise InputError(
                f"site {site} has no version {number}",
                where=str(registry.path),
                hint=f"versions: {', '.join(str(v) for v in by_number)}",
            )
        return by_number[number]

    target = pick(to_version) if to_version is not None else versions[-1]
    if from_version is not None:
        return pick(from_version), target
    earlier = [v for v in versions if v.version < target.version]
    accepted = [v for v in earlier if v.status == "accepted"]
    base = accepted[-1] if accepted else (earlier[-1] if earlier else None)
    return base, target


def load_version_table(registry: Registry, table: str, submission_id: int | None) -> pl.DataFrame:
    """The rows of ``table`` stored by one submission (empty frame for None)."""
    cols = [c for c in registry.table_columns(table) if c != "submission_id"]
    if not cols:
        return pl.DataFrame()
    select = ", ".join(f'"{c}"' for c in cols)
    return registry.frame(
        f'SELECT {select} FROM "cdm_{table}" WHERE submission_id = ?', [submission_id or -1]
    )


def _record_key(key_cols: tuple[str, ...]) -> pl.Expr:
    return pl.concat_str([pl.col(k).cast(pl.String) for k in key_cols], separator="|")


def diff_tables(
    old: pl.DataFrame,
    new: pl.DataFrame,
    *,
    table: str,
    key: tuple[str, ...],
    ignore: set[str],
    masked: set[str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Records added/removed and field changes between two versions of one table."""
    key_expr = _record_key(key).alias("record_key")
    patient = pl.col("patient_key") if "patient_key" in new.columns else pl.lit(None, pl.String)
    old_k = old.with_columns(key_expr)
    new_k = new.with_columns(key_expr)
    added = new_k.join(old_k.select("record_key"), on="record_key", how="anti")
    removed = old_k.join(new_k.select("record_key"), on="record_key", how="anti")
    records = pl.concat(
        [
            frame.select(
                pl.lit(table).alias("table"),
                "record_key",
                patient.cast(pl.String).alias("patient_key"),
                pl.lit(change).alias("change"),
            )
            for frame, change in ((added, "added"), (removed, "removed"))
        ],
        how="vertical_relaxed",
    )
    compare = [c for c in new.columns if c in old.columns and c not in ignore and c not in key]
    both = old_k.join(new_k, on="record_key", how="inner", suffix="__new")
    parts: list[pl.DataFrame] = []
    for col in compare:  # a loop over columns; each step is vectorized over the rows
        differs = both.filter(pl.col(col).ne_missing(pl.col(f"{col}__new")))
        if differs.height == 0:
            continue
        old_val = pl.lit(MASK) if col in masked else pl.col(col).cast(pl.String)
        new_val = pl.lit(MASK) if col in masked else pl.col(f"{col}__new").cast(pl.String)
        parts.append(
            differs.select(
                pl.lit(table).alias("table"),
                "record_key",
                patient.cast(pl.String).alias("patient_key"),
                pl.lit(col).alias("column"),
                old_val.alias("old"),
                new_val.alias("new"),
            )
        )
    changes = (
        pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame(schema=_CHANGE_SCHEMA)
    )
    return records, changes


def diff_versions(
    registry: Registry,
    site: str,
    *,
    from_version: int | None = None,
    to_version: int | None = None,
    cdm: CDM | None = None,
) -> DiffReport:
    """Compare two stored versions of ``site`` table by table."""
    from cartreg.cdm import load_cdm

    cdm = cdm or load_cdm()
    base, target = resolve_versions(registry, site, from_version, to_version)
    records: list[pl.DataFrame] = []
    changes: list[pl.DataFrame] = []
    lost: list[pl.DataFrame] = []
    stored = set(registry.data_tables())
    for spec in cdm.tables.values():
        if spec.name not in stored:
            continue
        old = load_version_table(registry, spec.name, base.submission_id if base else None)
        new = load_version_table(registry, spec.name, target.submission_id)
        ignore = set(cdm.lineage_columns)
        masked = {c.name for c in spec.columns if c.identifier}
        recs, chg = diff_tables(
            old, new, table=spec.name, key=spec.primary_key, ignore=ignore, masked=masked
        )
        records.append(recs)
        changes.append(chg)
        if base is not None and base.status == "accepted":
            gone = old.with_columns(_record_key(spec.primary_key).alias("record_key")).join(
                recs.filter(pl.col("change") == "removed").select("record_key"),
                on="record_key",
                how="semi",
            )
            if gone.height:
                lost.append(
                    gone.select(
                        pl.lit(RECORD_LOST).alias("rule_id"),
                        pl.lit("warning").alias("severity"),
                        pl.lit("completeness").alias("category"),
                        pl.lit("relational").alias("subcategory"),
                        pl.lit(spec.name).alias("table"),
                        pl.lit(",".join(spec.primary_key)).alias("column"),
                        pl.col("site_id").cast(pl.String),
                        pl.col("source_file").cast(pl.String),
                        pl.col("source_row").cast(pl.Int64),
                        pl.col("record_key").alias("value"),
                        format_text(
                            "record lost: {} {} was in accepted version {} and is missing "
                            "from version {}",
                            pl.lit(spec.name),
                            pl.col("record_key"),
                            pl.lit(base.version),
                            pl.lit(target.version),
                        ).alias("message"),
                    )
                )
    report = DiffReport(site_id=site, base=base, target=target)
    if records:
        report.records = pl.concat(records, how="vertical_relaxed").sort(
            "table", "change", "record_key"
        )
        report.changes = pl.concat(changes, how="vertical_relaxed").sort(
            "table", "record_key", "column"
        )
    if lost:
        report.findings = findings_frame(pl.concat(lost, how="vertical_relaxed"))
    return report
