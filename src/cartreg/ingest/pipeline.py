"""``ingest_submission``: a site's export folder + mapping -> CDM tables, quarantine, manifest.

Conservation: every source row read is either harmonized or quarantined, counted in source rows
(a row that feeds several tables counts once). A row is quarantined when any rule could not
harmonize it (no patient id, a required value missing or unreadable) or when no rule selects it;
its raw record (identifier-like columns removed) and the reasons go to
``quarantine/<source>.parquet``.
Rows it produced for other tables are kept, so one bad infusion cell does not drop the patient.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.cdm import CDM, load_cdm
from cartreg.errors import InputError
from cartreg.findings import empty_findings, findings_frame, sort_findings
from cartreg.ingest.derive import derive_tables
from cartreg.ingest.harmonize import harmonize_rule
from cartreg.ingest.identifiers import identifier_columns
from cartreg.ingest.mapping import SiteMapping, SourceSpec, load_mapping
from cartreg.ingest.readers.base import ReadResult, sha256_of
from cartreg.ingest.readers.csv import read_csv_text
from cartreg.ingest.readers.excel import read_excel_text
from cartreg.ingest.readers.json import read_json_text
from cartreg.ingest.readers.parquet import read_parquet_text
from cartreg.ingest.readers.redcap import identifier_fields, read_dictionary, read_redcap

Progress = Callable[[str], None]
NOT_MAPPED = "NOT-MAPPED"


@dataclass
class IngestResult:
    """Harmonized tables (all CDM tables, typed), findings, manifest and quarantined records."""

    tables: dict[str, pl.DataFrame]
    findings: pl.DataFrame
    manifest: dict[str, Any]
    quarantine: dict[str, pl.DataFrame] = field(default_factory=dict)


def source_label(spec: SourceSpec) -> str:
    return f"{spec.file}#{spec.sheet}" if spec.reader == "excel" and spec.sheet else spec.file


def read_source(spec: SourceSpec, root: Path) -> ReadResult:
    """Read one declared source as text."""
    path = root / spec.file
    label = source_label(spec)
    if spec.reader in ("csv", "tsv"):
        return read_csv_text(
            path,
            label=label,
            delimiter=spec.delimiter,
            encoding=spec.encoding,
            header_row=spec.header_row,
        )
    if spec.reader == "excel":
        return read_excel_text(
            path, sheet=spec.sheet, header_row=spec.header_row, label=label if spec.sheet else None
        )
    if spec.reader in ("json", "ndjson"):
        return read_json_text(
            path, label=label, records=spec.records, ndjson=spec.reader == "ndjson"
        )
    if spec.reader == "parquet":
        return read_parquet_text(path, label=label)
    dictionary = root / spec.dictionary if spec.dictionary else None
    return read_redcap(path, dictionary=dictionary, decode=spec.decode, label=label)


def _identifier_findings(
    columns: list[str], spec: SourceSpec, site_id: str, label: str
) -> pl.DataFrame:
    if not columns:
        return empty_findings()
    return findings_frame(
        pl.DataFrame(
            {
                "rule_id": "ING-IDENTIFIER",
                "severity": "info",
                "category": "conformance",
                "subcategory": "value",
                "column": columns,
                "site_id": site_id,
                "source_file": label,
                "message": [
                    f"source column '{c}' looks like a direct identifier; not copied to any output"
                    for c in columns
                ],
            }
        )
    )


def _quarantine_records(
    frame: pl.DataFrame, reasons: pl.DataFrame, identifiers: list[str]
) -> pl.DataFrame:
    summary = (
        reasons.with_columns(pl.format("{}({})", "rule_id", "column").alias("reason"))
        .group_by("source_row", maintain_order=True)
        .agg(
            pl.col("reason").unique(maintain_order=True).str.join("; ").alias("quarantine_reasons")
        )
    )
    records = frame.drop([c for c in identifiers if c in frame.columns])
    return records.join(summary, on="source_row", how="inner").sort("source_row")


def harmonize_submission(
    root: Path, mapping: SiteMapping, cdm: CDM, progress: Progress | None = None
) -> IngestResult:
    """Everything :func:`ingest_submission` does except writing files."""
    if not root.is_dir():
        raise InputError(f"{root}: submission folder not found")
    table_parts: dict[str, list[pl.DataFrame]] = {name: [] for name in cdm.tables}
    findings: list[pl.DataFrame] = []
    quarantine: dict[str, pl.DataFrame] = {}
    sources_manifest: list[dict[str, Any]] = []
    rules = [(t, i, r) for t, rs in mapping.tables.items() for i, r in enumerate(rs)]
    for spec in mapping.sources.values():
        if progress:
            progress(f"reading {spec.file}")
        read = read_source(spec, root)
        frame = read.frame
        label = source_label(spec)
        extra = set()
        if spec.reader == "redcap" and spec.dictionary:
            extra = identifier_fields(read_dictionary(root / spec.dictionary))
        identifiers = [
            c for c in identifier_columns(frame, extra) if c not in spec.allow_identifiers
        ]
        findings.append(read.findings.with_columns(pl.lit(mapping.site_id).alias("site_id")))
        findings.append(_identifier_findings(identifiers, spec, mapping.site_id, label))
        selected: list[pl.Series] = []
        reasons: list[pl.DataFrame] = []
        for n, (_table, _i, rule) in enumerate(rules):
            if rule.source != spec.name:
                continue
            if progress:
                progress(f"mapping {spec.name} -> {rule.table}")
            out = harmonize_rule(
                frame,
                rule,
                mapping,
                cdm,
                reader=spec.reader,
                choices=read.choices,
                identifiers=identifiers,
                rule_index=n,
            )
            table_parts[rule.table].append(out.rows)
            findings.append(out.findings)
            selected.append(out.selected)
            reasons.append(out.quarantine.select("source_row", "rule_id", "column"))
        used = (
            pl.concat(selected).unique()
            if selected
            else pl.Series("source_row", [], dtype=pl.Int64)
        )
        unused = frame.filter(~pl.col("source_row").is_in(used.implode())).select(
            "source_row",
            pl.lit(NOT_MAPPED).alias("rule_id"),
            pl.lit("no table rule selects this row").alias("column"),
        )
        reasons.append(unused)
        all_reasons = pl.concat(reasons, how="vertical")
        records = _quarantine_records(frame, all_reasons, identifiers)
        quarantine[spec.name] = records
        rows_quarantined = records.height
        rows_read = frame.select(pl.col("source_row").n_unique()).item() if frame.height else 0
        sources_manifest.append(
            {
                "source": spec.name,
                "file": label,
                "sha256": sha256_of(root / spec.file),
                "rows_read": rows_read,
                "rows_harmonized": rows_read - rows_quarantined,
                "rows_quarantined": rows_quarantined,
            }
        )
    if progress:
        progress("deriving ids and day offsets")
    combined = {
        name: pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
        for name, parts in table_parts.items()
    }
    tables = derive_tables(combined, cdm)
    all_findings = [f for f in findings if f.height]
    findings_out = (
        sort_findings(pl.concat(all_findings, how="vertical")) if all_findings else empty_findings()
    )
    manifest = {
        "cdm_version": cdm.version,
        "mapping_version": mapping.mapping_version,
        "site_id": mapping.site_id,
        "mapping_file": mapping.path.name,
        "sources": sources_manifest,
        "tables": {name: frame.height for name, frame in tables.items()},
    }
    return IngestResult(
        tables=tables, findings=findings_out, manifest=manifest, quarantine=quarantine
    )


def write_outputs(result: IngestResult, out_dir: Path) -> None:
    """Write the output folder layout fixed for the project (see module docstring)."""
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    (out_dir / "quarantine").mkdir(parents=True, exist_ok=True)
    for name, frame in result.tables.items():
        frame.write_parquet(out_dir / "tables" / f"{name}.parquet")
    for name, frame in result.quarantine.items():
        frame.write_parquet(out_dir / "quarantine" / f"{name}.parquet")
    (out_dir / "manifest.json").write_text(
        json.dumps(result.manifest, indent=2) + "\n", encoding="utf-8"
    )
    (out_dir / "findings.json").write_text(
        json.dumps(result.findings.to_dicts(), indent=2, default=str) + "\n", encoding="utf-8"
    )


def ingest_submission(
    submission_dir: Path | str,
    mapping_path: Path | str,
    out_dir: Path | str | None,
    *,
    cdm: CDM | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Harmonize a site submission; write ``out_dir`` unless it is None.

    Raises ConfigError for a broken mapping and InputError for missing or unreadable files;
    problems in the data are findings.
    """
    cdm = cdm or load_cdm()
    mapping = load_mapping(mapping_path, cdm)
    result = harmonize_submission(Path(submission_dir), mapping, cdm, progress)
    if out_dir is not None:
        write_outputs(result, Path(out_dir))
    return result
