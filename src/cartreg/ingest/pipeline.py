"""``ingest_submission``: a site's export folder + mapping -> CDM tables, quarantine, manifest.

Conservation: every source row read is either harmonized or quarantined, counted in source rows
(a row that feeds several tables counts once). A row is quarantined when any rule could not
harmonize it (no patient id, a required value missing or unreadable) or when no rule selects it;
its raw record (identifier-like columns removed) and the reasons go to
``quarantine/<source>.parquet``.
Rows it produced for other tables are kept, so one bad infusion cell does not drop the patient.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.cdm import CDM, load_cdm
from cartreg.errors import InputError
from cartreg.exprs import format_text
from cartreg.findings import empty_findings, findings_frame, sort_findings
from cartreg.ingest.derive import derive_tables, event_order
from cartreg.ingest.harmonize import ORDER, SharedParses, harmonize_rule, shared_parse_keys
from cartreg.ingest.identifiers import identifier_columns
from cartreg.ingest.mapping import SiteMapping, SourceSpec, TableRule, load_mapping
from cartreg.ingest.readers.base import ReadResult, sha256_of
from cartreg.ingest.readers.csv import read_csv_text
from cartreg.ingest.readers.excel import read_excel_text
from cartreg.ingest.readers.json import read_json_text
from cartreg.ingest.readers.parquet import read_parquet_text
from cartreg.ingest.readers.redcap import identifier_fields, read_dictionary, read_redcap

Progress = Callable[[str], None]
DEFAULT_PARTITION_MB = 256
NOT_MAPPED = "NOT-MAPPED"


@dataclass
class IngestResult:
    """Harmonized tables (all CDM tables, typed), findings, manifest and quarantined records."""

    tables: dict[str, pl.DataFrame]
    findings: pl.DataFrame
    manifest: dict[str, Any]
    quarantine: dict[str, pl.DataFrame] = field(default_factory=dict)


@dataclass
class Collected:
    """What the sources contribute, in mapping order."""

    table_parts: dict[str, list[pl.DataFrame]]
    findings: list[pl.DataFrame] = field(default_factory=list)
    quarantine: dict[str, pl.DataFrame] = field(default_factory=dict)
    sources_manifest: list[dict[str, Any]] = field(default_factory=list)
    # source name -> (its rows as read, its identifier columns), for late quarantine decisions
    frames: dict[str, tuple[pl.DataFrame, list[str]]] = field(default_factory=dict)

    def tables(self) -> dict[str, pl.DataFrame]:
        """Each table's rule outputs stacked, ready for the derivations."""
        return {
            name: pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
            for name, parts in self.table_parts.items()
        }


def sorted_findings(parts: list[pl.DataFrame]) -> pl.DataFrame:
    kept = [f for f in parts if f.height]
    return sort_findings(pl.concat(kept, how="vertical")) if kept else empty_findings()


def build_manifest(
    cdm: CDM,
    mapping: SiteMapping,
    sources: list[dict[str, Any]],
    tables: dict[str, pl.DataFrame],
) -> dict[str, Any]:
    return {
        "cdm_version": cdm.version,
        "mapping_version": mapping.mapping_version,
        "site_id": mapping.site_id,
        "mapping_file": mapping.path.name,
        "sources": sources,
        "tables": {name: frame.height for name, frame in tables.items()},
    }


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
            categorical=True,
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
        reasons.with_columns(format_text("{}({})", "rule_id", "column").alias("reason"))
        .group_by("source_row", maintain_order=True)
        .agg(
            pl.col("reason").unique(maintain_order=True).str.join("; ").alias("quarantine_reasons")
        )
    )
    # Narrow the (possibly million-row) source to the few quarantined rows before the join.
    records = frame.filter(pl.col("source_row").is_in(summary.get_column("source_row").implode()))
    records = records.drop([c for c in identifiers if c in records.columns]).with_columns(
        pl.col(pl.Categorical).cast(pl.String)
    )
    return records.join(summary, on="source_row", how="inner").sort("source_row")


def source_identifiers(spec: SourceSpec, frame: pl.DataFrame, root: Path) -> list[str]:
    """Columns of a source that look like direct identifiers and the mapping did not allow."""
    extra = set()
    if spec.reader == "redcap" and spec.dictionary:
        extra = identifier_fields(read_dictionary(root / spec.dictionary))
    return [c for c in identifier_columns(frame, extra) if c not in spec.allow_identifiers]


def read_findings(
    read: ReadResult, spec: SourceSpec, identifiers: list[str], site_id: str
) -> list[pl.DataFrame]:
    """Findings about a source as a whole: the reader's, and the identifier columns left out."""
    return [
        read.findings.with_columns(pl.lit(site_id).alias("site_id")),
        _identifier_findings(identifiers, spec, site_id, source_label(spec)),
    ]


def harmonize_source(
    spec: SourceSpec,
    read: ReadResult,
    identifiers: list[str],
    root: Path,
    mapping: SiteMapping,
    cdm: CDM,
    rules: list[tuple[str, int, TableRule]],
    workers: ThreadPoolExecutor,
    progress: Progress | None,
    out: Collected,
) -> None:
    """Run the rules of one source on its frame and collect rows, findings and quarantine."""
    frame = read.frame
    label = source_label(spec)
    selected: list[pl.Series] = []
    reasons: list[pl.DataFrame] = []
    own_rules = [rule for _table, _i, rule in rules if rule.source == spec.name]
    shared = SharedParses(frame, shared_parse_keys(own_rules, cdm))
    pending = [
        (
            rule,
            workers.submit(
                harmonize_rule,
                frame,
                rule,
                mapping,
                cdm,
                reader=spec.reader,
                choices=read.choices,
                identifiers=identifiers,
                rule_index=n,
                shared=shared,
                order_by=event_order(cdm.tables[rule.table]),
            ),
        )
        for n, (_table, _i, rule) in enumerate(rules)
        if rule.source == spec.name
    ]
    for rule, result in pending:
        if progress:
            progress(f"mapping {spec.name} -> {rule.table}")
        rule_out = result.result()
        out.table_parts[rule.table].append(rule_out.rows)
        out.findings.append(rule_out.findings)
        selected.append(rule_out.selected)
        reasons.append(rule_out.quarantine.select("source_row", "rule_id", "column"))
    # is_in hashes the values anyway: de-duplicating them first would cost a second hash pass.
    used = pl.concat(selected) if selected else pl.Series("source_row", [], dtype=pl.Int64)
    unused = (
        frame.lazy()
        .filter(~pl.col("source_row").is_in(used.implode()))
        .select(
            "source_row",
            pl.lit(NOT_MAPPED).alias("rule_id"),
            pl.lit("no table rule selects this row").alias("column"),
        )
        .collect()
    )
    reasons.append(unused)
    all_reasons = pl.concat(reasons, how="vertical")
    records = _quarantine_records(frame, all_reasons, identifiers)
    out.quarantine[spec.name] = records
    out.frames[spec.name] = (frame, identifiers)
    rows_quarantined = records.height
    rows_read = frame.select(pl.col("source_row").n_unique()).item() if frame.height else 0
    out.sources_manifest.append(
        {
            "source": spec.name,
            "file": label,
            "sha256": read.sha256 or sha256_of(root / spec.file),
            "rows_read": rows_read,
            "rows_harmonized": rows_read - rows_quarantined,
            "rows_quarantined": rows_quarantined,
        }
    )


def _repeated_records(collected: Collected, cdm: CDM) -> pl.DataFrame:
    """Source records (``source_file``, ``source_row``) whose row repeats the primary key of an
    earlier row of the same table (mapping order, then source order), with that first row."""
    found: list[pl.DataFrame] = []
    for name, parts in collected.table_parts.items():
        keys = list(cdm.tables[name].primary_key)
        if not parts or not all(k in parts[0].columns for k in keys):
            continue  # a derived key (row ids) cannot repeat
        rows = pl.concat([p.select(*keys, "source_file", "source_row", ORDER) for p in parts])
        ranked = rows.filter(pl.all_horizontal(pl.col(keys).is_not_null())).with_columns(
            pl.col("source_file").first().over(keys, order_by=ORDER).alias("__first_file"),
            pl.col("source_row").first().over(keys, order_by=ORDER).alias("__first_row"),
            pl.int_range(pl.len()).over(keys, order_by=ORDER).alias("__k"),
        )
        later = ranked.filter(pl.col("__k") > 0)
        if later.height:
            found.append(
                later.select(
                    pl.lit(name).alias("table"),
                    pl.lit(",".join(keys)).alias("column"),
                    pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="|").alias(
                        "value"
                    ),
                    "source_file",
                    "source_row",
                    "__first_file",
                    "__first_row",
                )
            )
    if not found:
        return pl.DataFrame()
    return pl.concat(found).unique(["source_file", "source_row"], keep="first", maintain_order=True)


def quarantine_repeated_keys(collected: Collected, cdm: CDM, site_id: str) -> None:
    """Keep the first of rows repeating a table's primary key; quarantine the other records.

    A record repeating a patient (a subject listed twice, a second follow-up row) is a
    duplicate: every row it produced is dropped from the tables (a repeated wide patient row
    would otherwise add a second infusion), the record goes to quarantine with reason
    ``ING-DUPLICATE(<key column>)`` and counts as quarantined in the manifest, and an
    ``ING-DUPLICATE`` error names the row kept. Tables never hold a repeated key.
    """
    repeated = _repeated_records(collected, cdm)
    if repeated.is_empty():
        return
    lineage = repeated.select("source_file", "source_row")
    for name, parts in collected.table_parts.items():
        collected.table_parts[name] = [
            p.join(lineage, on=["source_file", "source_row"], how="anti") for p in parts
        ]
    collected.findings.append(
        findings_frame(
            repeated.select(
                pl.lit("ING-DUPLICATE").alias("rule_id"),
                pl.lit("error").alias("severity"),
                pl.lit("conformance").alias("category"),
                pl.lit("relational").alias("subcategory"),
                "table",
                "column",
                pl.lit(site_id).alias("site_id"),
                "source_file",
                "source_row",
                "value",
                format_text(
                    "{}.{} '{}' repeats the record of {} row {}, which is kept; this record is "
                    "quarantined: remove or merge the repeated record at the site",
                    "table",
                    "column",
                    "value",
                    "__first_file",
                    "__first_row",
                ).alias("message"),
            )
        )
    )
    for entry in collected.sources_manifest:
        frame, identifiers = collected.frames[entry["source"]]
        mine = repeated.join(
            frame.select("source_file", "source_row"), on=["source_file", "source_row"], how="semi"
        )
        if mine.is_empty():
            continue
        reasons = mine.select("source_row", pl.lit("ING-DUPLICATE").alias("rule_id"), "column")
        added = _quarantine_records(frame, reasons, identifiers)
        before = collected.quarantine[entry["source"]]
        merged = pl.concat([before, added], how="diagonal_relaxed")
        collected.quarantine[entry["source"]] = (
            merged.group_by("source_row", maintain_order=True)
            .agg(
                pl.all().exclude("quarantine_reasons").first(),
                pl.col("quarantine_reasons").str.join("; "),
            )
            .sort("source_row")
            .select(before.columns if before.width else added.columns)
        )
        entry["rows_quarantined"] = collected.quarantine[entry["source"]].height
        entry["rows_harmonized"] = entry["rows_read"] - entry["rows_quarantined"]


def harmonize_submission(
    root: Path,
    mapping: SiteMapping,
    cdm: CDM,
    progress: Progress | None = None,
    *,
    writer: OutputWriter | None = None,
) -> IngestResult:
    """Everything :func:`ingest_submission` does; files only through ``writer``.

    The writer gets each output as soon as it is final (findings and quarantine after the rules,
    each table after its derivations), so writing overlaps the remaining work.
    """
    if not root.is_dir():
        raise InputError(f"{root}: submission folder not found")
    collected = Collected(table_parts={name: [] for name in cdm.tables})
    rules = [(t, i, r) for t, rs in mapping.tables.items() for i, r in enumerate(rs)]
    # Polars releases the GIL: the next source is read while this one's rules run, two rules
    # at a time. Results are taken in mapping order, so outputs and the first error raised are
    # those of a sequential run.
    reader = ThreadPoolExecutor(max_workers=1)
    workers = ThreadPoolExecutor(max_workers=2)
    try:
        reads = {
            name: reader.submit(read_source, spec, root) for name, spec in mapping.sources.items()
        }
        for spec in mapping.sources.values():
            if progress:
                progress(f"reading {spec.file}")
            read = reads[spec.name].result()
            identifiers = source_identifiers(spec, read.frame, root)
            collected.findings += read_findings(read, spec, identifiers, mapping.site_id)
            harmonize_source(
                spec, read, identifiers, root, mapping, cdm, rules, workers, progress, collected
            )
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        workers.shutdown(wait=True, cancel_futures=True)
    quarantine_repeated_keys(collected, cdm, mapping.site_id)
    findings_out = sorted_findings(collected.findings)
    if writer is not None:
        writer.findings(findings_out)
        writer.quarantine(collected.quarantine)
    if progress:
        progress("deriving ids and day offsets")
    tables = derive_tables(collected.tables(), cdm, on_table=writer.table if writer else None)
    manifest = build_manifest(cdm, mapping, collected.sources_manifest, tables)
    return IngestResult(
        tables=tables,
        findings=findings_out,
        manifest=manifest,
        quarantine=collected.quarantine,
    )


# Text json.dumps writes unchanged between quotes: printable ASCII other than " and \.
_PLAIN_TEXT = r"^[\x20-\x7e]*$"


def _findings_json(findings: pl.DataFrame) -> str:
    """``json.dumps(records, indent=2, default=str)`` of the findings, built by polars.

    json.dumps with an indent runs its pure-Python encoder (a tenth of a second per 20k
    findings); the same text is assembled here with string expressions. Frames the fast path
    cannot prove identical (non-ASCII text, floats, dates) take json.dumps itself.
    """
    schema = findings.schema
    texts = [c for c, t in schema.items() if t == pl.String]
    fast = findings.height > 0 and all(
        t == pl.String or t.is_integer() or t == pl.Boolean for t in schema.values()
    )
    if fast and texts:
        plain = pl.all_horizontal(
            [pl.col(c).str.contains(_PLAIN_TEXT).fill_null(True) for c in texts]
        )
        fast = bool(findings.select(plain.all()).item())
    if not fast:
        return json.dumps(findings.to_dicts(), indent=2, default=str) + "\n"
    fields = []
    for name, dtype in schema.items():
        column = pl.col(name)
        if dtype == pl.String:
            escaped = column.str.replace_all("\\", "\\\\", literal=True).str.replace_all(
                '"', '\\"', literal=True
            )
            value = pl.concat_str(pl.lit('"'), escaped, pl.lit('"'))
        else:
            value = column.cast(pl.String)
        fields.append(pl.concat_str(pl.lit(f"    {json.dumps(name)}: "), value.fill_null("null")))
    record = pl.concat_str(pl.lit("  {\n"), pl.concat_str(fields, separator=",\n"), pl.lit("\n  }"))
    body = findings.select(record.str.join(",\n")).item()
    return f"[\n{body}\n]\n"


def write_table(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """Parquet as ingest writes it (a LazyFrame is streamed to the file): zstd level 1
    compresses these tables as small as the default level 3 does, in less time."""
    if isinstance(frame, pl.LazyFrame):
        frame.sink_parquet(path, compression="zstd", compression_level=1)
    else:
        frame.write_parquet(path, compression="zstd", compression_level=1)


class OutputWriter:
    """Writes the output folder (layout in the module docstring) piece by piece.

    The findings JSON is built on a thread while tables are derived and written: both spend
    most of their time in polars, outside the GIL. ``manifest.json`` is written last, by
    ``finish()`` after a successful run, so its presence marks a complete folder.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._findings: Future[str] | None = None

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def findings(self, findings: pl.DataFrame) -> None:
        self._findings = self._pool.submit(_findings_json, findings)

    def _path(self, folder: str, name: str) -> Path:
        # Folders appear with their first file: a run stopped by a mapping error leaves none.
        (self.out_dir / folder).mkdir(parents=True, exist_ok=True)
        return self.out_dir / folder / f"{name}.parquet"

    def quarantine(self, records: dict[str, pl.DataFrame]) -> None:
        for name, frame in records.items():
            write_table(frame, self._path("quarantine", name))

    def table(self, name: str, frame: pl.DataFrame) -> None:
        write_table(frame, self._path("tables", name))

    def table_from_parts(self, name: str, parts: list[Path]) -> pl.DataFrame:
        """Write the concatenation of Parquet ``parts`` (streamed) and return it."""
        path = self._path("tables", name)
        write_table(pl.scan_parquet(parts), path)
        return pl.read_parquet(path)

    def finish(self, manifest: dict[str, Any]) -> None:
        (self.out_dir / "tables").mkdir(parents=True, exist_ok=True)
        (self.out_dir / "quarantine").mkdir(parents=True, exist_ok=True)
        if self._findings is not None:
            text = self._findings.result()
            (self.out_dir / "findings.json").write_text(text, encoding="utf-8")
        (self.out_dir / "manifest.json").write_text(
            json.dumps(manifest, indent=2) + "\n", encoding="utf-8"
        )


def write_outputs(result: IngestResult, out_dir: Path) -> None:
    """Write a harmonized result to ``out_dir`` (layout in the module docstring)."""
    with OutputWriter(out_dir) as writer:
        writer.findings(result.findings)
        writer.quarantine(result.quarantine)
        for name, frame in result.tables.items():
            writer.table(name, frame)
        writer.finish(result.manifest)


def ingest_submission(
    submission_dir: Path | str,
    mapping_path: Path | str,
    out_dir: Path | str | None,
    *,
    cdm: CDM | None = None,
    progress: Progress | None = None,
    partition_mb: float | None = DEFAULT_PARTITION_MB,
) -> IngestResult:
    """Harmonize a site submission; write ``out_dir`` unless it is None.

    A CSV source larger than ``partition_mb`` megabytes is split into ranges of patients that
    are harmonized one after the other, so memory stays bounded (see ``partition``); None or 0
    reads every source whole. Raises ConfigError for a broken mapping and InputError for
    missing or unreadable files; problems in the data are findings.
    """
    # partition builds on this module, so it is imported when needed.
    from cartreg.ingest.partition import harmonize_in_parts, plan_split

    cdm = cdm or load_cdm()
    mapping = load_mapping(mapping_path, cdm)
    root = Path(submission_dir)
    if not root.is_dir():  # before anything is written to out_dir
        raise InputError(f"{root}: submission folder not found")
    out = Path(out_dir) if out_dir is not None else None
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cartreg-")))
        limit = partition_mb * 2**20 if partition_mb else None
        plan = plan_split(root, mapping, limit, scratch, progress) if limit else None
        writer = stack.enter_context(OutputWriter(out)) if out is not None else None
        if plan is None:
            result = harmonize_submission(root, mapping, cdm, progress, writer=writer)
        else:
            result = harmonize_in_parts(root, mapping, cdm, plan, scratch, progress, writer)
        if writer is not None:
            writer.finish(result.manifest)
    return result
