"""``ingest_submission``: a site's export folder + mapping -> CDM tables, quarantine, manifest.

Conservation: every source row read is either harmonized or quarantined, counted in source rows
(a row that feeds several tables counts once). A row is quarantined when any rule could not
harmonize it (no patient id, a required value missing or unreadable) or when no rule selects it;
its raw record and the reasons go to ``quarantine/<source>.parquet``: identifier-like columns
are left out, and identifier-looking values of the other columns are masked (see
``cartreg.redact``).
Rows it produced for other tables are kept, so one bad infusion cell does not drop the patient.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cartreg.cdm import CDM, load_cdm
from cartreg.errors import ConfigError, InputError
from cartreg.exprs import format_text
from cartreg.findings import empty_findings, findings_frame, sort_findings
from cartreg.ingest.cells import cell_values, with_cells
from cartreg.ingest.combine import combine_keyed, drop_before_index
from cartreg.ingest.derive import derive_tables, event_order
from cartreg.ingest.harmonize import ORDER, SharedParses, harmonize_rule, shared_parse_keys
from cartreg.ingest.identifiers import identifier_reasons, top_level
from cartreg.ingest.linking import SourceAccess
from cartreg.ingest.mapping import (
    SiteMapping,
    SourceSpec,
    TableRule,
    load_mapping,
    rule_input_columns,
)
from cartreg.ingest.readers.base import ReadResult, sha256_of
from cartreg.ingest.readers.csv import read_csv_text
from cartreg.ingest.readers.excel import read_excel_text
from cartreg.ingest.readers.fhir import identifying_columns, read_fhir
from cartreg.ingest.readers.json import read_json_text
from cartreg.ingest.readers.parquet import read_parquet_text
from cartreg.ingest.readers.redcap import (
    column_choices,
    identifier_fields,
    read_dictionary,
    read_redcap,
)
from cartreg.redact import MAX_CELL_CHARS, redact_columns, redact_expr, redact_findings

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

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


# How many of a where column's values a warning lists, how much of each, and how many distinct
# values are tallied at most (a column with more is not a column of categories to list).
_WHERE_SAMPLE, _WHERE_VALUE_CHARS, _WHERE_DISTINCT = 10, 40, 500


@dataclass
class WhereTally:
    """The values of ``where`` conditions (``equals``, ``in``) found in their source column, over
    every part of a source, so that a value matching no row of the file can be named. Counts
    add up over the parts, so a split source reports exactly what a single pass does."""

    # YAML key of the values (``tables.t[0].where[1].in``) -> (table, source, column, values)
    wanted: dict[str, tuple[str, str, str, tuple[str, ...]]] = field(default_factory=dict)
    found: dict[str, set[str]] = field(default_factory=dict)
    # (source name, column) -> rows per value, identifier columns excepted; None: too many
    present: dict[tuple[str, str], dict[str, int] | None] = field(default_factory=dict)

    def tally(
        self,
        spec: SourceSpec,
        rules: list[TableRule],
        frame: pl.DataFrame,
        skip: Callable[[str], bool],
        identifiers: Collection[str],
    ) -> None:
        """Note which condition values of ``rules`` occur in ``frame`` (columns for which
        ``skip`` holds are checked elsewhere: REDCap choices)."""
        distinct: dict[str, dict[str, int]] = {}
        for rule in rules:
            for cond in rule.where:
                values = (cond.equals,) if cond.equals is not None else cond.any_of
                if not values or cond.column not in frame.columns or skip(cond.column):
                    continue
                if cond.column not in distinct:
                    # Distinct cells first (a coded column has few), then their trimmed text.
                    per_value = (
                        frame.group_by(cond.column)
                        .len()
                        .select(pl.first().cast(pl.String).str.strip_chars(), "len")
                        .filter(pl.first().is_not_null() & (pl.first() != ""))
                        .group_by(pl.first())
                        .agg(pl.col("len").sum())
                    )
                    distinct[cond.column] = dict(per_value.iter_rows())
                key = f"{cond.key}.{'equals' if cond.equals is not None else 'in'}"
                self.wanted[key] = (rule.table, spec.name, cond.column, values)
                self.found.setdefault(key, set()).update(set(values) & set(distinct[cond.column]))
        for column, counts in distinct.items():
            if column not in identifiers:
                self._add((spec.name, column), counts)

    def _add(self, where: tuple[str, str], counts: dict[str, int] | None) -> None:
        total = self.present.get(where, {})
        if total is None or counts is None or len(counts) > _WHERE_DISTINCT:
            self.present[where] = None
            return
        for value, n in counts.items():
            total[value] = total.get(value, 0) + n
        self.present[where] = total if len(total) <= _WHERE_DISTINCT else None

    def merge(self, other: WhereTally) -> None:
        self.wanted.update(other.wanted)
        for key, found in other.found.items():
            self.found.setdefault(key, set()).update(found)
        for where, counts in other.present.items():
            self._add(where, counts)

    def findings(self, mapping: SiteMapping) -> list[pl.DataFrame]:
        """ING-WHERE-VALUE for each value that matches no row of its source: a misspelling
        (``Evaluation`` for ``Évaluation``) silently empties a table otherwise."""
        out = []
        for key, (table, source, column, values) in self.wanted.items():
            missing = [v for v in values if v not in self.found.get(key, set())]
            if not missing:
                continue
            counts = self.present.get((source, column))
            if counts:
                common = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
                listed = [v[:_WHERE_VALUE_CHARS] for v, _ in common[:_WHERE_SAMPLE]]
                more = " …" if len(common) > _WHERE_SAMPLE else ""
                shown = f"values present: {'; '.join(listed)}{more}"
            else:
                shown = "values not listed" if counts is None else "no values"
            label = mapping.sources[source].label
            out.append(
                source_finding(
                    "ING-WHERE-VALUE",
                    "warning",
                    mapping.site_id,
                    label,
                    f"{key}: {', '.join(repr(v) for v in missing)} matches no row of column "
                    f"'{column}' in {label} ({shown}): correct the value in the mapping",
                ).with_columns(
                    pl.lit(table).alias("table"),
                    pl.lit(column).alias("column"),
                    pl.lit(missing[0][:_WHERE_VALUE_CHARS]).alias("value"),
                )
            )
        return out


@dataclass
class Collected:
    """What the sources contribute, in mapping order."""

    table_parts: dict[str, list[pl.DataFrame]]
    findings: list[pl.DataFrame] = field(default_factory=list)
    quarantine: dict[str, pl.DataFrame] = field(default_factory=dict)
    sources_manifest: list[dict[str, Any]] = field(default_factory=list)
    # source name -> (its rows as read, its identifier columns and why), for late quarantine
    # decisions
    frames: dict[str, tuple[pl.DataFrame, Mapping[str, str]]] = field(default_factory=dict)
    # rule key -> (rows the rule made or quarantined, rows its source had), summed over parts
    rule_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    where: WhereTally = field(default_factory=lambda: WhereTally())

    def count_rule(self, rule: TableRule, made: int, source_rows: int) -> None:
        before = self.rule_counts.get(rule.key, (0, 0))
        self.rule_counts[rule.key] = (before[0] + made, before[1] + source_rows)

    # source name -> what the source is (for the manifest), until the rows are accounted for
    reads: dict[str, tuple[SourceSpec, ReadResult]] = field(default_factory=dict)
    # source name -> (source_row, rule) pairs: the rows each rule selected or read
    selected: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    # source name -> (source_row, rule_id, column): why rows are quarantined
    reasons: dict[str, list[pl.DataFrame]] = field(default_factory=dict)

    def tables(self) -> dict[str, pl.DataFrame]:
        """Each table's rule outputs stacked, ready for the derivations."""
        return {
            name: pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
            for name, parts in self.table_parts.items()
        }

    def select(self, source: str, rows: pl.Series, rule: int) -> None:
        pairs = rows.cast(pl.Int64).alias("source_row").to_frame()
        self.selected.setdefault(source, []).append(pairs.with_columns(pl.lit(rule).alias(RULE)))

    def quarantine_rows(self, source: str, reasons: pl.DataFrame) -> None:
        """``reasons`` (source_row, rule_id, column) for rows of ``source``."""
        if reasons.height:
            self.reasons.setdefault(source, []).append(
                reasons.select("source_row", "rule_id", "column")
            )

    def source_of_rows(self, rows: pl.DataFrame) -> dict[str, pl.DataFrame]:
        """Rows given by lineage (source_file, source_row, …), split by the source they are of."""
        out: dict[str, pl.DataFrame] = {}
        for name, (frame, _) in self.frames.items():
            mine = rows.join(
                frame.select("source_file", "source_row"),
                on=["source_file", "source_row"],
                how="semi",
            )
            if mine.height:
                out[name] = mine
        return out


RULE = "__rule"


def sorted_findings(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The findings of a run as they are output: sorted, identifier-looking values masked."""
    kept = [f for f in parts if f.height]
    if not kept:
        return empty_findings()
    return redact_findings(sort_findings(pl.concat(kept, how="vertical")))


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


# Longest file name and path Linux, macOS and Windows file systems open (bytes).
_NAME_MAX = 255
_PATH_MAX = 4096


def confined_path(root: Path, name: str, mapping_path: Path, key: str) -> Path:
    """``root / name``, which must stay inside the submission folder once symbolic links are
    followed: a mapping cannot make cartreg read ``/etc/passwd`` or ``../other_site``.

    A path written outside the folder is the mapping's mistake (ConfigError at ``key``); a
    link inside the folder pointing out of it is the submission's (InputError on the file).
    """
    longest = max((len(part.encode("utf-8")) for part in Path(name).parts), default=0)
    if longest > _NAME_MAX or len(str(root.absolute() / name).encode("utf-8")) > _PATH_MAX:
        raise ConfigError(
            f"'{name[:60]}…' is not a file name this system can open (a name of {longest} bytes)",
            path=mapping_path,
            key=key,
            hint="give the name of a file in the submission folder",
        )
    folder = root.resolve()
    written = Path(os.path.normpath(root.absolute() / name))
    try:
        resolved = (root / name).resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise InputError(f"{root / name}: cannot resolve the path ({exc})") from None
    if not written.is_relative_to(root.absolute()) and not written.is_relative_to(folder):
        raise ConfigError(
            f"'{name[:60]}' is outside the submission folder",
            path=mapping_path,
            key=key,
            hint="give a path relative to the submission folder, without '..'",
        )
    if not resolved.is_relative_to(folder):
        raise InputError(
            f"{root / name}: a link to a file outside the submission folder",
            hint="copy the file itself into the submission folder",
        )
    return resolved


def confine_sources(root: Path, mapping: SiteMapping) -> None:
    """Check every ``file`` and ``dictionary`` of the mapping with :func:`confined_path`, and
    that the folder holds at least one of them."""
    found = False
    for spec in mapping.sources.values():
        found |= confined_path(root, spec.file, mapping.path, f"{spec.key}.file").exists()
        if spec.dictionary:
            confined_path(root, spec.dictionary, mapping.path, f"{spec.key}.dictionary")
    if mapping.sources and not found:
        # Not one file: more likely another site's folder (or mapping) than a missing export.
        first = next(iter(mapping.sources.values())).file
        raise InputError(
            f"{root}: none of the files the mapping of site {mapping.site_id} reads is here "
            f"(such as {first})",
            hint=f"give site {mapping.site_id}'s submission folder, or this folder's own mapping",
        )


def read_source(spec: SourceSpec, root: Path) -> ReadResult:
    """Read one declared source as text."""
    path = root / spec.file
    label = spec.label
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
    if spec.reader == "fhir":
        assert spec.resource is not None
        return read_fhir(path, resource=spec.resource, label=f"{spec.file}#{spec.resource}")
    dictionary = root / spec.dictionary if spec.dictionary else None
    return read_redcap(path, dictionary=dictionary, decode=spec.decode, label=label)


def identifier_findings(
    identifiers: Mapping[str, str], spec: SourceSpec, site_id: str, label: str
) -> pl.DataFrame:
    if not identifiers:
        return empty_findings()
    columns = list(identifiers)
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
                    f"source column '{c}' looks like a direct identifier ({why}); "
                    "not copied to any output"
                    for c, why in identifiers.items()
                ],
            }
        )
    )


def _quarantine_records(
    frame: pl.DataFrame,
    reasons: pl.DataFrame,
    identifiers: Mapping[str, str],
    rejected: pl.DataFrame | None = None,
    label: str = "",
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
    # An array holding an identifier field goes as a whole.
    dropped = {top_level(c, records.columns) for c in identifiers}
    records = records.drop([c for c in dropped if c in records.columns])
    records = records.join(summary, on="source_row", how="inner")
    if rejected is not None and rejected.height:
        # Rows the reader rejected keep no cell: shifted values are no one's column.
        untrusted = rejected.select(
            pl.lit(label, dtype=pl.String).alias("source_file"),
            "source_row",
            format_text("{}(row)", "rule_id").alias("quarantine_reasons"),
        )
        records = pl.concat([records, untrusted], how="diagonal_relaxed")
    return _redacted(records.sort("source_row"))


def _redacted(records: pl.DataFrame) -> pl.DataFrame:
    """Quarantine records with identifier-looking values masked (inside arrays too) and long
    text cut; full dates stay, they are the dates the site has to fix."""
    own = {"source_file", "source_row", "quarantine_reasons"}
    text = [
        c
        for c, dtype in records.schema.items()
        if c not in own and (dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum))
    ]
    # An object with no field (``{}`` wherever it occurs) holds no value, and Parquet cannot
    # store its type.
    records = records.drop(c for c, dtype in records.schema.items() if _holds_no_field(dtype))
    nested = [c for c, dtype in records.schema.items() if dtype.is_nested()]
    records = redact_columns(records, text, dates=False, limit=MAX_CELL_CHARS)
    return records.with_columns(
        _redacted_nested(pl.col(c), records.schema[c]).alias(c) for c in nested
    )


def _holds_no_field(dtype: PolarsDataType) -> bool:
    """Whether a nested type has a field-less object at some level (``{}``, ``[{}]``)."""
    if isinstance(dtype, pl.Struct):
        return not dtype.fields or any(_holds_no_field(f.dtype) for f in dtype.fields)
    if isinstance(dtype, pl.List | pl.Array):
        return _holds_no_field(dtype.inner)
    return False


def _redacted_nested(expr: pl.Expr, dtype: PolarsDataType) -> pl.Expr:
    if dtype == pl.String:
        return redact_expr(expr, dates=False, limit=MAX_CELL_CHARS)
    if isinstance(dtype, pl.List):
        return expr.list.eval(_redacted_nested(pl.element(), dtype.inner))
    if isinstance(dtype, pl.Struct):
        fields = [
            _redacted_nested(expr.struct.field(f.name), f.dtype).alias(f.name) for f in dtype.fields
        ]
        return pl.when(expr.is_null()).then(None).otherwise(pl.struct(fields))
    return expr


def dictionary_identifiers(spec: SourceSpec, root: Path) -> set[str]:
    """Fields a REDCap data dictionary marks ``Identifier? = y``."""
    if spec.reader == "redcap" and spec.dictionary:
        return identifier_fields(read_dictionary(root / spec.dictionary))
    return set()


def source_identifiers(spec: SourceSpec, frame: pl.DataFrame, root: Path) -> dict[str, str]:
    """Columns of a source that look like direct identifiers and the mapping did not allow,
    each with the reason (``"phone number in row 501"``)."""
    extra = dictionary_identifiers(spec, root)
    if spec.reader == "fhir":
        extra = identifying_columns(frame.columns)
    found = dict(identifier_reasons(frame, extra))
    # A field inside an identifying element is one too (``name.family`` under ``name``).
    prefixes = {f"{c}.": why for c, why in found.items()}
    for column in frame.columns:
        owner = next((p for p in prefixes if column.startswith(p)), None)
        if owner is not None and column not in found:
            found[column] = prefixes[owner]
    return {c: why for c, why in found.items() if c not in spec.allow_identifiers}


def source_access(
    mapping: SiteMapping,
    read_of: Callable[[str], ReadResult],
    identifiers_of: Callable[[str], Mapping[str, str]],
) -> SourceAccess:
    """The sources of a submission as rules see them when they join or look up rows."""
    return SourceAccess(
        frame_of=lambda name: read_of(name).frame,
        reader_of=lambda name: mapping.sources[name].reader,
        identifiers_of=identifiers_of,
    )


def read_findings(
    read: ReadResult, spec: SourceSpec, identifiers: Mapping[str, str], site_id: str
) -> list[pl.DataFrame]:
    """Findings about a source as a whole: the reader's, the rows it rejected, an empty
    source, and the identifier columns left out."""
    label = spec.label
    found = [
        read.findings.with_columns(pl.lit(site_id).alias("site_id")),
        identifier_findings(identifiers, spec, site_id, label),
        rejected_findings(read.rejected, site_id, label),
    ]
    if read.frame.height == 0 and read.rejected.height == 0:
        found.append(no_rows_finding(site_id, label))
    return found


def no_rows_finding(site_id: str, label: str) -> pl.DataFrame:
    """The error for a source without a data row (an empty or header-only export)."""
    return source_finding(
        "ING-NO-ROWS",
        "error",
        site_id,
        label,
        "the source has no data rows (only a header, or nothing): send the complete export",
    )


def rejected_findings(rejected: pl.DataFrame, site_id: str, label: str) -> pl.DataFrame:
    """One error finding per row a reader rejected (its message, never its cells)."""
    if rejected.is_empty():
        return empty_findings()
    return findings_frame(
        rejected.select(
            "rule_id",
            pl.lit("error").alias("severity"),
            pl.lit("conformance").alias("category"),
            pl.lit("value").alias("subcategory"),
            pl.lit(site_id).alias("site_id"),
            pl.lit(label).alias("source_file"),
            "source_row",
            "message",
        )
    )


def not_mapped_findings(unused: pl.DataFrame, site_id: str, label: str) -> pl.DataFrame:
    """One warning per source row no rule selects: it is quarantined, and the report says so."""
    if unused.is_empty():
        return empty_findings()
    return findings_frame(
        unused.select(
            pl.lit("ING-NOT-MAPPED").alias("rule_id"),
            pl.lit("warning").alias("severity"),
            pl.lit("completeness").alias("category"),
            pl.lit("atemporal").alias("subcategory"),
            pl.lit(site_id).alias("site_id"),
            pl.lit(label).alias("source_file"),
            "source_row",
            pl.lit(
                "no rule selects this row: it is quarantined (NOT-MAPPED); if it belongs in the "
                "registry, add a rule for it, or correct the where that should select it"
            ).alias("message"),
        )
    )


def source_finding(
    rule_id: str, severity: str, site_id: str, label: str, message: str
) -> pl.DataFrame:
    """One finding about a whole source file."""
    return findings_frame(
        pl.DataFrame(
            {
                "rule_id": [rule_id],
                "severity": [severity],
                "category": ["completeness"],
                "subcategory": ["atemporal"],
                "site_id": [site_id],
                "source_file": [label],
                "message": [message],
            }
        )
    )


def count_findings(sources: list[dict[str, Any]], site_id: str) -> list[pl.DataFrame]:
    """ING-COUNT for every source whose rows do not reconcile with the independent count of
    its records: records lost (or invented) by the parse."""
    found = []
    for source in sources:
        counted = source.get("records_counted")
        rows = source["rows_harmonized"] + source["rows_quarantined"]
        if counted is not None and counted != rows:
            found.append(
                source_finding(
                    "ING-COUNT",
                    "error",
                    site_id,
                    source["file"],
                    f"the file holds {counted} records by a count of its lines (or brackets, or "
                    f"its footer) but {rows} were read: check quote characters and line breaks",
                )
            )
    return found


def harmonize_source(
    spec: SourceSpec,
    read: ReadResult,
    identifiers: Mapping[str, str],
    root: Path,
    mapping: SiteMapping,
    cdm: CDM,
    rules: list[tuple[str, int, TableRule]],
    workers: ThreadPoolExecutor,
    progress: Progress | None,
    out: Collected,
    access: SourceAccess | None = None,
) -> None:
    """Run the rules of one source on its frame and collect rows, findings and the rows they
    select; the source's rows are accounted for by :func:`settle`, once every source ran."""
    frame = read.frame
    own_rules = [rule for _table, _i, rule in rules if rule.source == spec.name]
    check_expected_columns(spec, frame.columns, own_rules, root)
    shared = SharedParses(frame, shared_parse_keys(own_rules, cdm))
    cells = cell_values(spec, root, own_rules)
    pending = [
        (
            n,
            rule,
            workers.submit(
                harmonize_rule,
                frame,
                with_cells(rule, cells),
                mapping,
                cdm,
                reader=spec.reader,
                choices=read.choices,
                identifiers=identifiers,
                rule_index=n,
                shared=shared,
                order_by=event_order(cdm.tables[rule.table]),
                access=access,
            ),
        )
        for n, (_table, _i, rule) in enumerate(rules)
        if rule.source == spec.name
    ]
    out.frames[spec.name] = (frame, identifiers)
    out.reads[spec.name] = (spec, read)
    out.selected.setdefault(spec.name, [])
    for n, rule, result in pending:
        if progress:
            progress(f"mapping {spec.name} -> {rule.table}")
        rule_out = result.result()
        out.table_parts[rule.table].append(rule_out.rows)
        out.findings.append(rule_out.findings)
        out.count_rule(rule, rule_out.rows.height + rule_out.quarantine.height, frame.height)
        out.select(spec.name, rule_out.selected, n)
        out.quarantine_rows(spec.name, rule_out.quarantine)
        for other, used in rule_out.used.items():
            for rows in used:
                out.select(other, rows, n)
    out.where.tally(
        spec,
        own_rules,
        frame,
        lambda column: column_choices(column, read.choices) is not None,
        identifiers,
    )


def close_sources(collected: Collected, root: Path, site_id: str) -> None:
    """Quarantine records and manifest counts of every source, once all rules ran.

    A row is quarantined when a rule gave a reason (no patient id, a required value missing,
    a repeated key), when no rule selected or read it (NOT-MAPPED, a warning per row), or
    when its reader rejected it.
    """
    for name, (spec, read) in collected.reads.items():
        frame, identifiers = collected.frames[name]
        label = spec.label
        parts = collected.selected.get(name, [])
        used = (
            pl.concat(parts).get_column("source_row")
            if parts
            else pl.Series("source_row", [], dtype=pl.Int64)
        )
        # is_in hashes the values anyway: de-duplicating them first would cost a second pass.
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
        collected.findings.append(not_mapped_findings(unused, site_id, label))
        reasons = pl.concat([*collected.reasons.get(name, []), unused], how="vertical")
        records = _quarantine_records(frame, reasons, identifiers, read.rejected, label)
        collected.quarantine[name] = records
        rows_read = frame.select(pl.col("source_row").n_unique()).item() if frame.height else 0
        rows_read += read.rejected.height
        collected.sources_manifest.append(
            {
                "source": name,
                "file": label,
                "sha256": read.sha256 or sha256_of(root / spec.file),
                "rows_read": rows_read,
                "rows_harmonized": rows_read - records.height,
                "rows_quarantined": records.height,
                "records_counted": read.records,
            }
        )


def settle_tables(
    collected: Collected,
    cdm: CDM,
    mapping: SiteMapping,
    rules: list[tuple[str, int, TableRule]],
) -> None:
    """What needs every rule's rows: rows before the index infusion left out where a rule asks,
    rows combined by key, repeated keys quarantined. :func:`close_sources` then accounts for
    every source row."""
    drop_before_index(collected, cdm, [r for _, _, r in rules])
    combine_keyed(collected, cdm, mapping)
    quarantine_repeated_keys(collected, cdm, mapping.site_id)


def settle(
    collected: Collected,
    cdm: CDM,
    mapping: SiteMapping,
    rules: list[tuple[str, int, TableRule]],
    root: Path,
) -> None:
    """:func:`settle_tables`, then every source row accounted for (:func:`close_sources`)."""
    settle_tables(collected, cdm, mapping, rules)
    close_sources(collected, root, mapping.site_id)


def check_expected_columns(
    spec: SourceSpec, columns: list[str], rules: list[TableRule], root: Path
) -> None:
    """InputError on the file when it has none of the columns its rules read: a wrong file, or
    a header on another row, is the file's problem; one missing column is the mapping's (a
    ConfigError with a "did you mean", raised by the rule)."""
    present = set(columns)
    wanted = {rule.patient_id for rule in rules} | {
        column
        for rule in rules
        if not (rule.explode or rule.unpivot_pattern or rule.checkbox_field)
        for column, _key in rule_input_columns(rule)
    }
    if wanted and not wanted & present:
        example = sorted(wanted)[0][:40]
        if spec.reader in ("json", "ndjson", "parquet", "fhir"):
            # Records name their fields themselves: there is no header line to point at.
            if not present - {"source_file", "source_row"}:
                raise InputError(
                    f"{root / spec.label}: the file has no records",
                    hint="send the complete export"
                    + (f"; records are read under '{spec.records}'" if spec.records else ""),
                )
            raise InputError(
                f"{root / spec.label}: none of the {len(wanted)} fields the mapping reads "
                f"(e.g. '{example}') is in the file's records",
                hint="is it the right file?"
                + (f" Records are read under '{spec.records}'." if spec.records else ""),
            )
        where = f"row {spec.header_row}" if spec.reader == "excel" else f"line {spec.header_row}"
        raise InputError(
            f"{root / spec.label}: none of the {len(wanted)} columns the mapping reads "
            f"(e.g. '{example}') is in the file's header",
            hint=f"is it the right file, with its column names on {where}?",
        )


def empty_rule_findings(
    mapping: SiteMapping, counts: dict[str, tuple[int, int]]
) -> list[pl.DataFrame]:
    """ING-RULE-EMPTY for each rule that made no row from a source that has rows: a
    ``where`` value, a checkbox or an array that matches nothing. Legitimate in some months (no
    deaths yet), so a warning; a misspelt value is the usual cause."""
    found = []
    for rules in mapping.tables.values():
        for rule in rules:
            made, source_rows = counts.get(rule.key, (0, 0))
            if made or not source_rows:
                continue
            reshaped = rule.explode or rule.checkbox_field or rule.unpivot_pattern
            how = "its where selects no row" if not reshaped else "it yields no row"
            label = mapping.sources[rule.source].label
            finding = source_finding(
                "ING-RULE-EMPTY",
                "warning",
                mapping.site_id,
                label,
                f"{rule.key} ({rule.table}): {how} of {label}: check the values it names",
            )
            found.append(finding.with_columns(pl.lit(rule.table).alias("table")))
    return found


def _repeated_records(collected: Collected, cdm: CDM) -> pl.DataFrame:
    """Source records (``source_file``, ``source_row``) whose row repeats the primary key of an
    earlier row of the same table (mapping order, then source order), with that first row."""
    found: list[pl.DataFrame] = []
    for name, parts in collected.table_parts.items():
        keys = list(cdm.tables[name].primary_key)
        if not parts or not all(k in parts[0].columns for k in keys):
            continue  # a derived key (row ids) cannot repeat
        rows = pl.concat([p.select(*keys, "source_file", "source_row", ORDER) for p in parts])
        key = pl.col(keys[0]) if len(keys) == 1 else pl.struct(keys)
        # one hash pass finds the repeated keys; the ordered windows run on those rows only
        repeating = rows.filter(pl.all_horizontal(pl.col(keys).is_not_null())).filter(
            key.is_duplicated()
        )
        ranked = repeating.with_columns(
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
    for name, rows in collected.source_of_rows(repeated).items():
        collected.quarantine_rows(
            name, rows.select("source_row", pl.lit("ING-DUPLICATE").alias("rule_id"), "column")
        )


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
    confine_sources(root, mapping)
    collected = Collected(table_parts={name: [] for name in cdm.tables})
    rules = [(t, i, r) for t, rs in mapping.tables.items() for i, r in enumerate(rs)]
    # Polars releases the GIL: the next source is read while this one's rules run, two rules
    # at a time. Results are taken in mapping order, so outputs and the first error raised are
    # those of a sequential run.
    # Identifier columns are found on a thread of their own as soon as a source is read, while
    # the rules of the previous source run.
    reader = ThreadPoolExecutor(max_workers=1)
    identify = ThreadPoolExecutor(max_workers=1)
    workers = ThreadPoolExecutor(max_workers=2)
    try:
        reads = {
            name: reader.submit(read_source, spec, root) for name, spec in mapping.sources.items()
        }

        def identify_source(spec: SourceSpec) -> dict[str, str]:
            return source_identifiers(spec, reads[spec.name].result().frame, root)

        found = {
            name: identify.submit(identify_source, spec) for name, spec in mapping.sources.items()
        }
        access = source_access(
            mapping, lambda name: reads[name].result(), lambda name: found[name].result()
        )
        for spec in mapping.sources.values():
            if progress:
                progress(f"reading {spec.file}")
            read = reads[spec.name].result()
            identifiers = access.identifiers_of(spec.name)
            collected.findings += read_findings(read, spec, identifiers, mapping.site_id)
            harmonize_source(
                spec,
                read,
                identifiers,
                root,
                mapping,
                cdm,
                rules,
                workers,
                progress,
                collected,
                access,
            )
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        identify.shutdown(wait=True, cancel_futures=True)
        workers.shutdown(wait=True, cancel_futures=True)
    settle_tables(collected, cdm, mapping, rules)
    if progress:
        progress("deriving ids and day offsets")
    # The tables are final but for their derivations, which run while the sources are closed
    # (quarantine records, counts) and the findings sorted and written.
    deriving = ThreadPoolExecutor(max_workers=1)
    try:
        derived = deriving.submit(
            derive_tables, collected.tables(), cdm, writer.table if writer else None
        )
        close_sources(collected, root, mapping.site_id)
        collected.findings += count_findings(collected.sources_manifest, mapping.site_id)
        collected.findings += empty_rule_findings(mapping, collected.rule_counts)
        collected.findings += collected.where.findings(mapping)
        findings_out = sorted_findings(collected.findings)
        if writer is not None:
            writer.findings(findings_out)
            writer.quarantine(collected.quarantine)
        tables = derived.result()
    finally:
        deriving.shutdown(wait=True, cancel_futures=True)
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
    confine_sources(root, mapping)
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
