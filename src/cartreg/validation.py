"""Validate an ingest output folder: ingest findings + CDM schema findings + data-quality rules,
combined into one :class:`Report` that every renderer (terminal, JSON, HTML, CSV/XLSX) consumes.

The report is deterministic for the same inputs (rules by id, findings by severity and location),
so it can be diffed between submissions and compared to golden files.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cartreg import __version__
from cartreg.cdm import CDM, load_cdm, validate_tables
from cartreg.cdm.validate import find_table_files, read_table_file
from cartreg.errors import InputError
from cartreg.findings import (
    FINDING_FIELDS,
    MASK,
    SEVERITY_ORDER,
    empty_findings,
    finding_schema,
    findings_frame,
    sort_findings,
)
from cartreg.progress import OnStep
from cartreg.redact import redact_findings
from cartreg.rules.engine import RuleRun, prepare_tables, run_rules
from cartreg.rules.frames import typed
from cartreg.rules.model import Rule, load_rules
from cartreg.rules.overrides import Override
from cartreg.rules.waivers import Waiver, waiver_frame

REPORT_VERSION = "1.0.0"
# Findings to waive, decided once they are known and with the tables at hand (the registry's
# waived queries name a finding by its fingerprint): given findings and the CDM tables, the
# ``finding_id``, ``justification`` and ``expires`` of those to hide.
TableWaiverLookup = Callable[[pl.DataFrame, Mapping[str, pl.DataFrame]], pl.DataFrame]
STATUS_ORDER = ("ERROR", "NOT_APPLICABLE", "FAILED", "PASSED")

# Documentation of the finding ids raised by the ingest and schema stages (not rule files).
STAGE_CHECKS: dict[str, tuple[str, str, str]] = {
    "ING-UNMAPPED": (
        "ingest",
        "A coded value is not in the vocabulary or the site's overrides.",
        "Add the value to the mapping's overrides, or correct it in the source.",
    ),
    "ING-DATE": (
        "ingest",
        "A date could not be parsed, is not a calendar date, or is ambiguous.",
        "Correct the value at the site when the column's other dates read in the formats the "
        "mapping lists; change the column's formats (or defaults.date_formats) only when the "
        "whole column is written another way.",
    ),
    "ING-NUMBER": (
        "ingest",
        "A number could not be parsed.",
        "Remove text and units from the cell, or declare the unit in the mapping.",
    ),
    "ING-MISSING-KEY": (
        "ingest",
        "A row has no patient id and was quarantined.",
        "Fill in the study id of the row.",
    ),
    "ING-REQUIRED": (
        "ingest",
        "A required field is missing or unparseable; the row was quarantined.",
        "Fill in the field; the row is left out until it is fixed.",
    ),
    "ING-RAGGED": (
        "ingest",
        "A CSV row has more or fewer cells than the header; it was quarantined, no cell kept.",
        "Quote cells that hold the delimiter or a line break.",
    ),
    "ING-QUOTE": (
        "ingest",
        "A stray quote joined several lines into one record; it was quarantined.",
        "Remove the stray quote, or quote the whole cell.",
    ),
    "ING-TRUNCATED": (
        "ingest",
        "The file ends inside a record (cut off, or a quote never closed).",
        "Send the complete file.",
    ),
    "ING-COMMENT": (
        "ingest",
        "A comment line ('#') in the data; it was quarantined.",
        "Export the data without comment lines.",
    ),
    "ING-REPEATED-HEADER": (
        "ingest",
        "The header line appears again among the records; it was quarantined.",
        "Export the file once, not pasted together.",
    ),
    "ING-NO-ROWS": (
        "ingest",
        "A source file has no data rows.",
        "Send the complete export.",
    ),
    "ING-COUNT": (
        "ingest",
        "The records counted in the file differ from the rows read: records may be lost.",
        "Check the file's quote characters and line breaks.",
    ),
    "ING-RULE-EMPTY": (
        "ingest",
        "A mapping rule selects no row of a source that has rows.",
        "Check the values its where, explode or checkbox names.",
    ),
    "ING-CELL": (
        "ingest",
        "A workbook cell holds no value to read: an Excel error (#N/A, #DIV/0!, ...) or a "
        "formula saved without its result. It was read as empty.",
        "Correct the formula in the workbook, or open and save the workbook in Excel so that "
        "formulas keep their results.",
    ),
    "ING-SENTINEL": (
        "ingest",
        "A sentinel code (e.g. 999, UNK) was turned into an empty value.",
        "Nothing to do unless the code was a real value.",
    ),
    "ING-IDENTIFIER": (
        "ingest",
        "An identifier-like column was not copied into the registry.",
        "Nothing to do: direct identifiers never leave the site.",
    ),
    "ING-DUPLICATE": (
        "ingest",
        "A record repeats the key of an earlier one (a subject listed twice): the first is kept, "
        "the repeat quarantined.",
        "Remove the repeated record, or merge the two at the site.",
    ),
    "ING-WHERE-VALUE": (
        "ingest",
        "A mapping condition names a value that matches no row of its source column (for "
        "REDCap: neither a code nor a label of its field).",
        "Correct the value at the YAML key the message names, from the values it lists (REDCap: "
        "a choice code or label from the data dictionary).",
    ),
    "ING-NOT-MAPPED": (
        "ingest",
        "No mapping rule selects this source row; it was quarantined (NOT-MAPPED).",
        "Add a rule for such rows if they belong in the registry, or correct the where that "
        "should select them.",
    ),
    "CDM-DTYPE": (
        "schema",
        "A value does not have the column's data type.",
        "Correct the value (numbers without text, dates as YYYY-MM-DD).",
    ),
    "CDM-REQUIRED": ("schema", "A required column is empty.", "Fill in the value."),
    "CDM-VOCAB": (
        "schema",
        "A coded value is not a term of its vocabulary.",
        "Map the value to a vocabulary term in the site mapping.",
    ),
    "CDM-RANGE": (
        "schema",
        "A value is outside its allowed range.",
        "Check the value and its unit.",
    ),
    "CDM-PATTERN": (
        "schema",
        "A value does not match the column's pattern.",
        "Correct the format (e.g. NCT01234567, C91.00).",
    ),
    "CDM-UNIQUE": ("schema", "A primary key is repeated.", "Remove the duplicate row."),
    "CDM-COLUMN-MISSING": (
        "schema",
        "A column of the CDM table is missing.",
        "Map the column in the site mapping.",
    ),
    "CDM-COLUMN-UNKNOWN": (
        "schema",
        "A column is not part of the CDM table.",
        "Remove it or map it to a CDM column.",
    ),
}


@dataclass(frozen=True)
class Report:
    """Everything a coordinator needs about one validation run."""

    findings: pl.DataFrame
    results: pl.DataFrame
    site_results: pl.DataFrame
    rules: tuple[Rule, ...]
    cdm_version: str
    source: Mapping[str, Any] = field(default_factory=dict)
    waived: pl.DataFrame = field(default_factory=empty_findings)
    expired_waivers: tuple[Waiver, ...] = ()
    generated_at: str | None = None

    def worst_severity(self) -> str | None:
        if self.findings.height == 0:
            return None
        present: set[str] = set(self.findings["severity"].to_list())
        return min(present, key=lambda s: SEVERITY_ORDER.get(s, 9))

    def summary(self) -> dict[str, Any]:
        f = self.findings
        by_sev = {s: 0 for s in SEVERITY_ORDER}
        for sev, n in f.group_by("severity").len().iter_rows():
            by_sev[sev] = int(n)
        by_cat: dict[str, int] = {}
        for cat, n in f.group_by("category").len().sort("category", nulls_last=True).iter_rows():
            by_cat[cat or "unknown"] = int(n)
        sites = (
            f.with_columns(pl.col("site_id").fill_null("(none)"))
            .group_by("site_id")
            .agg([(pl.col("severity") == s).sum().cast(pl.Int64).alias(s) for s in SEVERITY_ORDER])
            .sort("site_id")
        )
        statuses = {s: 0 for s in STATUS_ORDER}
        for status, n in self.results.group_by("status").len().iter_rows():
            statuses[status] = int(n)
        decided = statuses["PASSED"] + statuses["FAILED"]
        return {
            "status": "FAILED" if by_sev["error"] else "PASSED",
            "findings_total": f.height,
            "findings_by_severity": by_sev,
            "findings_by_category": by_cat,
            "findings_by_site": sites.to_dicts(),
            "rules_total": self.results.height,
            "rules_by_status": statuses,
            "pass_rate_pct": round(100.0 * statuses["PASSED"] / decided, 2) if decided else None,
            "waived_findings": self.waived.height,
            "expired_waivers": [
                {"finding_id": w.finding_id, "expires": w.expires.isoformat()}
                for w in self.expired_waivers
            ],
        }

    def rule_entries(self) -> list[dict[str, Any]]:
        docs = {r.id: r.doc_dict() for r in self.rules}
        out: list[dict[str, Any]] = []
        for row in self.results.sort("rule_id").iter_rows(named=True):
            entry = {**docs.get(row["rule_id"], {}), **row}
            pct = entry.get("pct_violated")
            entry["pct_violated"] = None if pct is None else round(float(pct), 4)
            out.append(entry)
        return out

    def stage_entries(self) -> list[dict[str, Any]]:
        counts = dict(self.findings.group_by("rule_id").len().iter_rows())
        return [
            {
                "rule_id": rid,
                "stage": stage,
                "description": desc,
                "guidance": guide,
                "num_findings": int(counts.get(rid, 0)),
            }
            for rid, (stage, desc, guide) in STAGE_CHECKS.items()
        ]

    def guidance(self) -> dict[str, str]:
        """What a site should do, by rule id (data-quality rules and stage checks)."""
        out = {rid: guide for rid, (_, _, guide) in STAGE_CHECKS.items()}
        out.update({r.id: r.guidance for r in self.rules})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_version": REPORT_VERSION,
            "tool": {"name": "cartreg", "version": __version__},
            "cdm_version": self.cdm_version,
            "generated_at": self.generated_at,
            "source": dict(self.source),
            "summary": self.summary(),
            "rules": self.rule_entries(),
            "stage_checks": self.stage_entries(),
            "site_results": self.site_entries(),
            "waived": self.waived_entries(),
            "findings": self.findings.select(FINDING_FIELDS).to_dicts(),
        }

    def site_entries(self) -> list[dict[str, Any]]:
        """Rule results per site (each site is judged against its own threshold)."""
        out = self.site_results.sort("rule_id", "site_id", nulls_last=True).to_dicts()
        for entry in out:
            pct = entry["pct_violated"]
            entry["pct_violated"] = None if pct is None else round(float(pct), 4)
        return out

    def waived_entries(self) -> list[dict[str, Any]]:
        """Findings hidden by an active waiver, with its justification (for audit)."""
        cols = [
            "finding_id",
            "rule_id",
            "site_id",
            "table",
            "source_file",
            "source_row",
            "justification",
            "expires",
        ]
        if self.waived.height == 0 or "justification" not in self.waived.columns:
            return []
        return self.waived.select(cols).sort("finding_id").to_dicts()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


# Rule ids of the findings ingest writes; the other stages' findings are computed again from
# the tables whenever an output folder is validated.
INGEST_RULE_PREFIX = "ING-"


def write_findings(out_dir: Path, report: Report) -> Path:
    """Write the report's findings (ingest, schema, rules) as ``out_dir/findings.json``: the
    output of ``cartreg check`` holds every finding of the check, not only ingest's."""
    from cartreg.ingest.pipeline import _findings_json

    path = Path(out_dir) / "findings.json"
    path.write_text(_findings_json(report.findings.select(FINDING_FIELDS)), encoding="utf-8")
    return path


def _read_ingest_findings(path: Path) -> pl.DataFrame:
    """The ingest findings of an output folder (a check output's findings.json holds the
    schema and rule findings too: those are computed again, never counted twice)."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read ingest findings: {exc}", where=str(path)) from None
    if not isinstance(records, list) or not records:
        return empty_findings()
    schema = finding_schema()
    frame = pl.DataFrame(
        [{k: r.get(k) for k in FINDING_FIELDS} for r in records if isinstance(r, dict)],
        schema=schema,
        strict=False,
    )
    frame = frame.filter(pl.col("rule_id").str.starts_with(INGEST_RULE_PREFIX))
    with_ids = frame.filter(pl.col("finding_id").is_not_null())
    without = frame.filter(pl.col("finding_id").is_null())
    if without.height:
        with_ids = pl.concat([with_ids, findings_frame(without.drop("finding_id"))])
    return with_ids


def _mask_identifiers(findings: pl.DataFrame, cdm: CDM) -> pl.DataFrame:
    identifiers = sorted({c.name for t in cdm.tables.values() for c in t.columns if c.identifier})
    if not identifiers or findings.height == 0:
        return findings
    return findings.with_columns(
        pl.when(pl.col("column").is_in(identifiers) & pl.col("value").is_not_null())
        .then(pl.lit(MASK))
        .otherwise(pl.col("value"))
        .alias("value")
    )


def load_output_tables(out_dir: Path, cdm: CDM) -> dict[str, pl.DataFrame]:
    """The CDM tables of an ingest output folder (``tables/`` inside it, or the folder itself)."""
    if not out_dir.is_dir():
        raise InputError(
            "output folder not found",
            where=str(out_dir),
            hint="give the --out folder of `cartreg ingest`",
        )
    folder = out_dir / "tables" if (out_dir / "tables").is_dir() else out_dir
    files = find_table_files(folder, cdm)
    return {name: read_table_file(path) for name, path in files.items()}


def build_report(
    tables: Mapping[str, pl.DataFrame],
    *,
    ingest_findings: pl.DataFrame | None = None,
    rules: Sequence[Rule] | None = None,
    rules_dir: Path | str | None = None,
    cdm: CDM | None = None,
    overrides: Sequence[Override] | None = None,
    waivers: Sequence[Waiver] | None = None,
    as_of: dt.date | None = None,
    source: Mapping[str, Any] | None = None,
    generated_at: str | None = None,
    waive: TableWaiverLookup | None = None,
    on_step: OnStep | None = None,
) -> Report:
    """Schema findings + rule findings (+ ingest findings) for CDM ``tables`` as one Report.

    ``waive`` hides further findings of every stage (waived registry queries), with the
    justification and expiry shown in the report's ``waived`` section. ``on_step`` hears of
    tables checked (``schema``) and rules run (``rules``), from two threads.
    """
    cdm = cdm or load_cdm()

    def bound(found: pl.DataFrame) -> pl.DataFrame:
        assert waive is not None
        return waive(found, tables)

    # The catalog (~80 YAML files: Python, ~0.1 s) is read while polars makes the tables ready
    # for the rules, which leaves the GIL free; beside the schema thread's Python it took five
    # times as long, all of it before the first rule could run.
    with ThreadPoolExecutor(max_workers=1) as pool:
        catalog = pool.submit(load_rules, rules_dir, cdm=cdm) if rules is None else None
        typed_tables = {name: typed(frame, name, cdm) for name, frame in tables.items()}
        ready = prepare_tables(typed_tables, cdm)
        if catalog is not None:
            rules = catalog.result()
    # The schema checks (pandera: much Python between polars calls) run beside the rules (one
    # polars batch after another), which keeps both cores busier: ~10% off the whole at 1 M rows.
    with ThreadPoolExecutor(max_workers=1) as pool:
        schema_job = pool.submit(validate_tables, dict(tables), cdm=cdm, on_step=on_step)
        try:
            run: RuleRun = run_rules(
                ready,
                rules=rules,
                cdm=cdm,
                overrides=overrides,
                waivers=waivers,
                as_of=as_of,
                rules_dir=rules_dir,
                waive=bound if waive is not None else None,
                on_step=on_step,
            )
        finally:
            # A schema failure is reported first, as when the two ran one after the other.
            schema_findings = schema_job.result()
    parts = [
        p for p in (ingest_findings, schema_findings, run.findings) if p is not None and p.height
    ]
    findings = (
        pl.concat([p.select(FINDING_FIELDS).cast(pl.Schema(finding_schema())) for p in parts])
        if parts
        else empty_findings()
    )
    # Two CDM rows from one source row (e.g. two agents of one salvage line in one JSON record)
    # can violate a rule at the same place: that is one thing for the site to fix, one finding.
    findings = findings.unique("finding_id", keep="first", maintain_order=True)
    # Rule findings were waived by the engine (so rule statuses count them as waived); ingest
    # and schema findings are waived here, by the same waivers.
    today = as_of or dt.date.today()
    listed = waiver_frame([w for w in waivers or () if w.active(today)])
    hidden = [listed]
    if waive is not None and findings.height:
        hidden.append(bound(findings).select(listed.columns).cast(pl.Schema(listed.schema)))
    table = pl.concat(hidden).unique("finding_id", keep="first", maintain_order=True)
    waived = pl.concat([run.waived, findings.join(table, on="finding_id")], how="diagonal_relaxed")
    findings = findings.join(table, on="finding_id", how="anti")
    findings = redact_findings(sort_findings(_mask_identifiers(findings, cdm)))
    sites = sorted(
        {
            s
            for frame in tables.values()
            if "site_id" in frame.columns
            for s in frame["site_id"].drop_nulls().unique().to_list()
        }
    )
    return Report(
        findings=findings,
        results=run.results,
        site_results=run.site_results,
        rules=run.rules,
        cdm_version=cdm.version,
        source={**(source or {}), "site_ids": sites},
        waived=redact_findings(_mask_identifiers(waived, cdm)),
        expired_waivers=run.expired_waivers,
        generated_at=generated_at,
    )


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    source: dict[str, Any] = {"out_dir": root.name}
    if not path.is_file():
        return source
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read manifest: {exc}", where=str(path)) from None
    if isinstance(manifest, dict):
        source.update({k: manifest.get(k) for k in ("cdm_version", "mapping_version", "site_id")})
        source["files"] = [
            {k: s.get(k) for k in ("file", "rows_read", "rows_harmonized", "rows_quarantined")}
            for s in manifest.get("sources", [])
            if isinstance(s, dict)
        ]
    return source


def validate_output(
    out_dir: Path | str | Sequence[Path | str],
    *,
    rules: Sequence[Rule] | None = None,
    rules_dir: Path | str | None = None,
    cdm: CDM | None = None,
    overrides: Sequence[Override] | None = None,
    waivers: Sequence[Waiver] | None = None,
    as_of: dt.date | None = None,
    generated_at: str | None = None,
    waive: TableWaiverLookup | None = None,
    on_step: OnStep | None = None,
) -> Report:
    """Validate the output folder(s) of ``cartreg ingest`` (tables, findings.json, manifest.json).

    Several folders (one per site) are validated together, so that cross-site rules such as
    possible duplicate patients can see every site.
    """
    cdm = cdm or load_cdm()
    roots = [Path(out_dir)] if isinstance(out_dir, str | Path) else [Path(p) for p in out_dir]
    if not roots:
        raise InputError("no output folder given")
    per_table: dict[str, list[pl.DataFrame]] = {}
    ingest: list[pl.DataFrame] = []
    sources: list[dict[str, Any]] = []
    for root in roots:
        for name, frame in load_output_tables(root, cdm).items():
            per_table.setdefault(name, []).append(frame)
        if (root / "findings.json").is_file():
            ingest.append(_read_ingest_findings(root / "findings.json"))
        sources.append(_read_manifest(root))
    tables = {
        name: frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        for name, frames in per_table.items()
    }
    source: dict[str, Any] = sources[0] if len(sources) == 1 else {"outputs": sources}
    ingest_findings = pl.concat(ingest) if ingest else None
    return build_report(
        tables,
        ingest_findings=ingest_findings,
        rules=rules,
        rules_dir=rules_dir,
        cdm=cdm,
        overrides=overrides,
        waivers=waivers,
        as_of=as_of,
        source=source,
        generated_at=generated_at,
        waive=waive,
        on_step=on_step,
    )
