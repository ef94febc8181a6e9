"""Splitting exports too large for memory into patient ranges, so ingest runs part by part.

Every derivation works within one patient and every output table is ordered by patient first,
so harmonizing contiguous ranges of patient ids one after the other and concatenating the parts
in range order gives the tables of a single pass (the tests compare the two).

Only CSV/TSV files are split, and only when their bytes prove the simple shape the streaming
reader needs: UTF-8, no quote characters, a one-byte separator, and separator and newline
counts that give every line exactly the header's field count (the same proof the in-memory
reader uses, counted block by block). Anything else is read whole, as before.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.cdm import CDM
from cartreg.ingest.derive import derive_tables
from cartreg.ingest.harmonize import is_reshaped
from cartreg.ingest.identifiers import SAMPLE_ROWS
from cartreg.ingest.mapping import SiteMapping, SourceSpec, check_source_columns
from cartreg.ingest.pipeline import (
    Collected,
    IngestResult,
    OutputWriter,
    Progress,
    build_manifest,
    harmonize_source,
    quarantine_repeated_keys,
    read_findings,
    read_source,
    sorted_findings,
    source_identifiers,
    source_label,
    write_table,
)
from cartreg.ingest.readers.base import ReadResult, sha256_of, with_lineage
from cartreg.ingest.readers.csv import (
    ByteScan,
    file_separator,
    scan_bytes,
)
from cartreg.ingest.transforms.sentinels import blank_to_null

PART = "__part"
ROW = "__row"


def header_of(path: Path, separator: str) -> list[str]:
    return pl.read_csv(path, separator=separator, n_rows=0, infer_schema=False).columns


def large_sources(mapping: SiteMapping, root: Path, limit_bytes: float) -> list[SourceSpec]:
    """CSV/TSV sources whose file is larger than ``limit_bytes``."""
    return [
        spec
        for spec in mapping.sources.values()
        if spec.reader in ("csv", "tsv")
        and (root / spec.file).is_file()
        and (root / spec.file).stat().st_size > limit_bytes
    ]


def patient_columns(mapping: SiteMapping) -> dict[str, str] | str:
    """The patient id column of every source, or why a source has none to split on."""
    found: dict[str, str] = {}
    for name, spec in mapping.sources.items():
        columns = {
            r.patient_id for rules in mapping.tables.values() for r in rules if r.source == name
        }
        if not columns and spec.patient_id:
            columns = {spec.patient_id}
        if len(columns) != 1:
            return f"the rules of source '{name}' do not read one patient id column"
        found[name] = columns.pop()
    return found


def why_not_streamable(
    spec: SourceSpec, scan: ByteScan, separator: str, n_columns: int
) -> str | None:
    """Why ``spec``'s file cannot be split by the streaming reader (None: it can)."""
    if spec.encoding not in (None, "auto", "utf-8", "utf8", "utf-8-sig"):
        return f"it is declared as {spec.encoding}"
    if spec.header_row != 1:
        return "its header is not on the first line"
    if not scan.utf8:
        return "it is not UTF-8"
    if scan.has_quotes:
        return "it has quoted fields"
    proof = scan.proof(separator)
    if n_columns < 2 or proof is None or proof[1] != (n_columns - 1) * proof[0]:
        return "its lines do not all have the header's field count"
    return None


def _clean_id(column: str) -> pl.Expr:
    return blank_to_null(pl.col(column).cast(pl.String))


def id_counts_of_file(path: Path, separator: str, column: str) -> pl.DataFrame:
    """Rows per cleaned patient id of a CSV file, streamed (raises PolarsError on a bad line)."""
    return (
        pl.scan_csv(path, separator=separator, infer_schema=False)
        .select(_clean_id(column).alias("pid"))
        .group_by("pid")
        .len()
        .collect(engine="streaming")
    )


def id_counts_of_frame(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    return frame.select(_clean_id(column).alias("pid")).group_by("pid").len()


def assign_parts(counts: list[pl.DataFrame], rows_per_part: int) -> pl.DataFrame:
    """``pid -> part``: consecutive ranges of sorted ids holding about ``rows_per_part`` rows.

    A patient is never split; rows without an id go to part 0 (they are quarantined anyway).
    """
    ids = (
        pl.concat(counts)
        .drop_nulls("pid")
        .group_by("pid")
        .agg(pl.col("len").sum())
        .sort("pid")
        .with_columns(((pl.col("len").cum_sum() - pl.col("len")) // rows_per_part).alias(PART))
    )
    return ids.select("pid", pl.col(PART).rank("dense").cast(pl.Int64) - 1)


def with_parts(frame: pl.LazyFrame, column: str, parts: pl.DataFrame) -> pl.LazyFrame:
    """``frame`` plus the part of each row's patient (part 0 for rows without an id)."""
    columns = frame.collect_schema().names()
    return frame.join(
        parts.lazy(), left_on=_clean_id(column), right_on="pid", how="left", maintain_order="left"
    ).select(*columns, pl.col(PART).fill_null(0))


def split_file(path: Path, separator: str, column: str, parts: pl.DataFrame, folder: Path) -> None:
    """Write the file's rows, as text with their line number, to one folder per part."""
    frame = pl.scan_csv(
        path, separator=separator, infer_schema=False, row_index_name=ROW, row_index_offset=2
    )
    with_parts(frame, column, parts).sink_parquet(
        pl.PartitionBy(folder, key=PART, include_key=False), mkdir=True
    )


def read_part(folder: Path, part: int, columns: list[str], label: str) -> pl.DataFrame:
    """One part of a split file as the CSV reader returns it: lineage first, text coded."""
    files = sorted((folder / f"{PART}={part}").glob("*.parquet"))
    if files:
        frame = pl.read_parquet(files)
        if not frame.get_column(ROW).is_sorted():
            frame = frame.sort(ROW)
    else:
        frame = pl.DataFrame(schema={ROW: pl.UInt32, **dict.fromkeys(columns, pl.String)})
    rows = frame.get_column(ROW).cast(pl.Int64).alias("source_row")
    data = frame.drop(ROW).rename({c: c.strip() for c in columns if c != c.strip()})
    # The same coding the in-memory reader applies (see read_csv_text(categorical=True)).
    data = data.with_columns(
        pl.col(c).cast(pl.Categorical(pl.Categories.random())) for c in data.columns
    )
    return with_lineage(data, label, 0).with_columns(rows)


@dataclass
class LargeSource:
    """A source file split by the streaming reader."""

    spec: SourceSpec
    separator: str
    header: list[str]
    scan: ByteScan


@dataclass
class SplitPlan:
    """How a submission is harmonized part by part."""

    large: dict[str, LargeSource]
    small: dict[str, ReadResult]
    patient_columns: dict[str, str]
    parts: pl.DataFrame  # pid -> part
    n_parts: int


def plan_split(
    root: Path,
    mapping: SiteMapping,
    limit_bytes: float,
    scratch: Path,
    progress: Progress | None = None,
) -> SplitPlan | None:
    """Split the large sources into ``scratch`` when some source is larger than
    ``limit_bytes`` and every large one can be split; else None.

    Sources that cannot be split are explained through ``progress`` and the submission is read
    whole, as it would be without a limit.
    """
    large = large_sources(mapping, root, limit_bytes)
    if not large:
        return None

    def whole(reason: str) -> SplitPlan | None:
        if progress:
            progress(f"reading the submission whole: {reason}")
        return None

    columns = patient_columns(mapping)
    if isinstance(columns, str):
        return whole(columns)
    found: dict[str, LargeSource] = {}
    counts: list[pl.DataFrame] = []
    for spec in large:
        path = root / spec.file
        separator = file_separator(path, spec.delimiter)
        if separator is None:
            return whole(f"{spec.file} has no header line")
        header = header_of(path, separator)
        # A mapping naming a column the file lacks fails now, not after splitting the file.
        for rules in mapping.tables.values():
            for rule in rules:
                if rule.source == spec.name and not is_reshaped(rule):
                    check_source_columns(mapping, rule, [c.strip() for c in header])
        if progress:
            progress(f"checking {spec.file}")
        scan = scan_bytes(path, separator)
        reason = why_not_streamable(spec, scan, separator, len(header))
        if reason is None:
            try:
                ids = id_counts_of_file(path, separator, columns[spec.name])
            except pl.exceptions.PolarsError:
                reason = "a line has more fields than the header"
            else:
                if scan.lines != int(ids.get_column("len").sum()) + 1:
                    reason = "it has blank lines"
        if reason is not None:
            return whole(f"{spec.file} cannot be split ({reason})")
        found[spec.name] = LargeSource(spec, separator, header, scan)
        counts.append(ids)
    small = {
        name: read_source(spec, root) for name, spec in mapping.sources.items() if name not in found
    }
    counts += [id_counts_of_frame(read.frame, columns[name]) for name, read in small.items()]
    rows = sum(s.scan.lines - 1 for s in found.values())
    size = sum(s.scan.size for s in found.values())
    rows_per_part = max(1, int(rows * limit_bytes / size))
    parts = assign_parts(counts, rows_per_part)
    n_parts = 1 + (int(parts.select(pl.col(PART).max()).item()) if parts.height else 0)
    for name, big in found.items():
        if progress:
            progress(f"splitting {big.spec.file} into {n_parts} ranges of patients")
        try:
            split_file(root / big.spec.file, big.separator, columns[name], parts, scratch / name)
        except pl.exceptions.PolarsError:
            # The id count reads one column; a line with an extra field (balanced by a short
            # one, so the separator total matched) only shows when every column is parsed.
            return whole(
                f"{big.spec.file} cannot be split (a line has more fields than the header)"
            )
    return SplitPlan(found, small, columns, parts, n_parts)


def harmonize_in_parts(
    root: Path,
    mapping: SiteMapping,
    cdm: CDM,
    plan: SplitPlan,
    scratch: Path,
    progress: Progress | None = None,
    writer: OutputWriter | None = None,
) -> IngestResult:
    """:func:`harmonize_submission` over the patient ranges of ``plan``, one after the other.

    ``scratch`` is the folder given to :func:`plan_split`; each part's tables go there too.
    The final tables are their concatenation in part order, the single-pass order (patient
    first).
    """
    site = mapping.site_id
    rules = [(t, i, r) for t, rs in mapping.tables.items() for i, r in enumerate(rs)]
    identifiers: dict[str, list[str]] = {}
    findings: list[pl.DataFrame] = []
    small_parts: dict[str, pl.DataFrame] = {}
    for name, spec in mapping.sources.items():
        if name in plan.large:
            big = plan.large[name]
            head = pl.read_csv(
                root / spec.file, separator=big.separator, n_rows=SAMPLE_ROWS, infer_schema=False
            )
            read = ReadResult(frame=head, sha256=big.scan.sha256)
        else:
            read = plan.small[name]
            read.sha256 = read.sha256 or sha256_of(root / spec.file)
            small_parts[name] = with_parts(
                read.frame.lazy(), plan.patient_columns[name], plan.parts
            ).collect()
        identifiers[name] = source_identifiers(spec, read.frame, root)
        findings += read_findings(read, spec, identifiers[name], site)

    counts: dict[str, dict[str, Any]] = {}
    quarantine: dict[str, list[pl.DataFrame]] = {name: [] for name in mapping.sources}
    table_files: dict[str, list[Path]] = {name: [] for name in cdm.tables}
    for name in cdm.tables:
        (scratch / "tables" / name).mkdir(parents=True, exist_ok=True)
    workers = ThreadPoolExecutor(max_workers=2)
    try:
        for part in range(plan.n_parts):

            def note(message: str, part: int = part) -> None:
                if progress:
                    progress(f"part {part + 1}/{plan.n_parts}: {message}")

            collected = Collected(table_parts={name: [] for name in cdm.tables})
            for name, spec in mapping.sources.items():
                if name in plan.large:
                    big = plan.large[name]
                    frame = read_part(scratch / name, part, big.header, source_label(spec))
                    read = ReadResult(frame=frame, sha256=big.scan.sha256)
                else:
                    small = plan.small[name]
                    frame = small_parts[name].filter(pl.col(PART) == part).drop(PART)
                    read = ReadResult(frame=frame, choices=small.choices, sha256=small.sha256)
                harmonize_source(
                    spec,
                    read,
                    identifiers[name],
                    root,
                    mapping,
                    cdm,
                    rules,
                    workers,
                    note,
                    collected,
                )
            quarantine_repeated_keys(collected, cdm, site)
            note("deriving ids and day offsets")

            def keep(name: str, table: pl.DataFrame, part: int = part) -> None:
                path = scratch / "tables" / name / f"{part:06d}.parquet"
                write_table(table, path)
                table_files[name].append(path)

            derive_tables(collected.tables(), cdm, on_table=keep)
            findings += collected.findings
            for entry in collected.sources_manifest:
                total = counts.setdefault(entry["source"], {**entry, **dict.fromkeys(_COUNTS, 0)})
                for key in _COUNTS:
                    total[key] += entry[key]
            for name, records in collected.quarantine.items():
                quarantine[name].append(records)
    finally:
        workers.shutdown(wait=True, cancel_futures=True)

    findings_out = sorted_findings(findings)
    quarantined = {
        name: pl.concat(parts, how="diagonal_relaxed").sort("source_row")
        for name, parts in quarantine.items()
        if parts
    }
    if writer is not None:
        writer.findings(findings_out)
        writer.quarantine(quarantined)
    if progress:
        progress("joining the parts")
    tables: dict[str, pl.DataFrame] = {}
    for name in cdm.tables:
        files = sorted(table_files[name])
        if writer is not None:
            tables[name] = writer.table_from_parts(name, files)
        else:
            tables[name] = pl.read_parquet(files)
    sources = [counts[name] for name in mapping.sources if name in counts]
    manifest = build_manifest(cdm, mapping, sources, tables)
    return IngestResult(
        tables=tables, findings=findings_out, manifest=manifest, quarantine=quarantined
    )


_COUNTS = ("rows_read", "rows_harmonized", "rows_quarantined")
