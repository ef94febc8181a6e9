"""Profiling source files to help a coordinator write a mapping.

Per column: inferred type, null rate, distinct count, top values, the date formats that parse
its values, and the CDM vocabulary its values match best. Values of identifier-like columns are
never shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from cartreg.cdm import CDM
from cartreg.errors import InputError
from cartreg.findings import MASK
from cartreg.ingest.identifiers import identifier_columns
from cartreg.ingest.readers.base import ReadResult
from cartreg.ingest.readers.csv import read_csv_text
from cartreg.ingest.readers.excel import read_excel_text, sheet_names
from cartreg.ingest.readers.fhir import (
    identifying_columns,
    is_fhir_document,
    load_resources,
    read_fhir,
)
from cartreg.ingest.readers.json import read_json_text
from cartreg.ingest.readers.parquet import read_parquet_text
from cartreg.ingest.transforms.dates import detect_date_formats, parse_dates
from cartreg.ingest.transforms.numbers import parse_numbers
from cartreg.ingest.transforms.reshape import LINEAGE, explode_path
from cartreg.vocab.normalize import normalize_key

PROFILE_COLUMNS = (
    "source",
    "column",
    "inferred_type",
    "null_rate",
    "distinct",
    "top_values",
    "date_formats",
    "vocabulary",
    "vocabulary_match",
    "identifier",
)
_TOP = 5
_MATCH_MIN = 0.5
# Arrays nested deeper than this are described, not exploded further.
_MAX_DEPTH = 3
_YEAR_RANGE = (1900, 2100)
YYYYMMDD = "%Y%m%d"


@dataclass(frozen=True)
class SourceFrame:
    label: str
    path: Path
    sheet: str | None
    frame: pl.DataFrame
    # The ``explode`` a mapping rule needs to see these rows (() for the records themselves).
    explode: tuple[str, ...] = ()

    def own_columns(self) -> list[str]:
        """Columns this record set adds: all of them, or those under its last exploded path."""
        columns = [c for c in self.frame.columns if c not in LINEAGE]
        if not self.explode:
            return columns
        path = self.explode[-1]
        return [c for c in columns if c == path or c.startswith(f"{path}.")]


def array_sources(source: SourceFrame) -> list[SourceFrame]:
    """One record set per array column (JSON events), exploded as a mapping rule would.

    Arrays inside array elements are exploded in turn (``[salvage, salvage.agents]``), so their
    fields can be profiled and proposed like any other column.
    """
    out: list[SourceFrame] = []
    if len(source.explode) >= _MAX_DEPTH:
        return out
    for column in source.own_columns():
        if not isinstance(source.frame.schema[column], pl.List):
            continue
        exploded = explode_path(source.frame, column)
        if exploded.is_empty():
            # Empty in every record: the array's own profile row says so.
            continue
        child = replace(source, frame=exploded, explode=(*source.explode, column))
        out.append(child)
        out.extend(array_sources(child))
    return out


def year_plausible(column: str, values: pl.Series) -> bool:
    """Whether an integer-looking column could hold years (day offsets like 1915 cannot)."""
    name = column.lower()
    if name.endswith("day") or name.endswith("days"):
        return False
    numbers = values.cast(pl.String, strict=False).str.strip_chars().cast(pl.Int64, strict=False)
    present = numbers.drop_nulls()
    if present.is_empty():
        return True
    low, high = _YEAR_RANGE
    return bool(present.min() >= low and present.max() <= high)  # type: ignore[operator]


def date_formats_for(column: str, values: pl.Series) -> list[str]:
    """Date formats that parse ``values``; none of the year-only ones for day offsets.

    ``ISO`` and ``Y`` both accept a bare ``1915``: a column that cannot hold years keeps only
    the formats its non-integer values need.
    """
    formats = detect_date_formats(values)
    if year_plausible(column, values):
        return formats
    text = values.cast(pl.String, strict=False).str.strip_chars().drop_nulls()
    if text.len() and text.str.contains(r"^(19|20)\d{6}$").all():
        # Dates stored as YYYYMMDD integers (data warehouses): every value must be a real day.
        days = text.str.to_date("%Y%m%d", strict=False)
        if days.null_count() == 0:
            return [YYYYMMDD]
    non_integers = text.filter(text.cast(pl.Int64, strict=False).is_null())
    return detect_date_formats(non_integers) if non_integers.len() else []


def read_any(path: Path) -> list[SourceFrame]:
    """Every record set in a file, read as text (all sheets of a workbook)."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return [
            SourceFrame(f"{path.name}#{s}", path, s, read_excel_text(path, sheet=s).frame)
            for s in sheet_names(path)
        ]
    if suffix in (".json", ".ndjson", ".jsonl") and is_fhir_document(path):
        # Resources of different types share no shape: one record set per resourceType.
        # Elements that identify a person (name, telecom, address…) are never shown.
        frames = {t: read_fhir(path, resource=t).frame for t in load_resources(path).types()}
        return [
            SourceFrame(f"{path.name}#{t}", path, t, f.drop(identifying_columns(f.columns)))
            for t, f in frames.items()
        ]
    result: ReadResult
    if suffix in (".csv", ".tsv", ".txt", ".tab"):
        result = read_csv_text(path)
    elif suffix in (".json", ".ndjson", ".jsonl"):
        result = read_json_text(path)
    elif suffix == ".parquet":
        result = read_parquet_text(path)
    else:
        raise InputError(
            f"{path}: unsupported file type '{suffix}'",
            hint="csv, tsv, xlsx, json, ndjson, parquet",
        )
    return [SourceFrame(path.name, path, None, result.frame)]


def vocabulary_match(values: pl.Series, cdm: CDM) -> tuple[str | None, float]:
    """The vocabulary recognising the largest share of distinct values, and that share."""
    distinct = [v for v in values.drop_nulls().unique().to_list() if normalize_key(v)]
    if not distinct:
        return None, 0.0
    best: tuple[str | None, float] = (None, 0.0)
    for name in cdm.vocabularies:
        if name in ("date_precision", "numeric_qualifier"):
            continue
        vocab = cdm.vocabularies[name]
        share = sum(vocab.code_for(v) is not None for v in distinct) / len(distinct)
        if share > best[1]:
            best = (name, share)
    return best if best[1] >= _MATCH_MIN else (None, best[1])


def _infer_type(values: pl.Series, formats: list[str], vocabulary: str | None) -> str:
    present = pl.DataFrame({"v": values}).drop_nulls()
    if present.height == 0:
        return "empty"
    numbers = present.select(parse_numbers(pl.col("v")).value.alias("n"))["n"]
    if numbers.null_count() == 0:
        whole = (numbers.round(0) == numbers).all()
        if formats == [YYYYMMDD]:
            return "date"
        if not (whole and formats and "Y" not in formats and "EXCEL" in formats):
            return "integer" if whole else "number"
    for fmt in formats:
        parsed = present.select(parse_dates(pl.col("v"), [fmt]).value.alias("d"))["d"]
        if parsed.null_count() <= present.height * 0.1:
            return "date"
    if vocabulary is not None:
        return "coded"
    return "text"


def _array_profile(
    label: str, column: str, values: pl.Series, n: int, explode: tuple[str, ...]
) -> dict[str, object]:
    lengths = values.list.len()
    total = int(lengths.sum() or 0)
    path = ", ".join((*explode, column))
    kind = f"array (explode: [{path}])" if total else "array (empty in every record)"
    return {
        "source": label,
        "column": column,
        "inferred_type": kind,
        "null_rate": round(values.null_count() / n, 3) if n else 0.0,
        "distinct": None,
        "top_values": f"elements per record: max {lengths.max() or 0!s}, total {total}",
        "date_formats": "",
        "vocabulary": None,
        "vocabulary_match": 0.0,
        "identifier": False,
    }


def profile_frame(source: SourceFrame, cdm: CDM) -> pl.DataFrame:
    """One profile row per column of a source."""
    frame = source.frame
    columns = source.own_columns()
    identifiers = set(identifier_columns(frame))
    rows = []
    n = frame.height
    for column in columns:
        values = frame.get_column(column)
        if isinstance(values.dtype, pl.List):
            # The array's fields are profiled in the exploded record set that follows.
            rows.append(_array_profile(source.label, column, values, n, source.explode))
            continue
        if values.dtype != pl.String:
            values = values.cast(pl.String, strict=False)
        values = values.str.strip_chars().replace("", None)
        formats = (
            [f for f in date_formats_for(column, values) if f != "EXCEL"]
            if values.null_count() < n
            else []
        )
        vocabulary, share = vocabulary_match(values, cdm)
        # Renamed first: a source column may itself be called "count".
        counts = values.drop_nulls().alias("value").value_counts(sort=True).head(_TOP)
        hidden = column in identifiers
        top = "; ".join(f"{MASK if hidden else v} ({c})" for v, c in counts.iter_rows())
        rows.append(
            {
                "source": source.label,
                "column": column,
                "inferred_type": _infer_type(values, formats, vocabulary),
                "null_rate": round(values.null_count() / n, 3) if n else 0.0,
                "distinct": values.n_unique() - (1 if values.null_count() else 0),
                "top_values": top,
                "date_formats": ", ".join(formats),
                "vocabulary": vocabulary,
                "vocabulary_match": round(share, 3),
                "identifier": hidden,
            }
        )
    return (
        pl.DataFrame(rows, schema_overrides={"vocabulary": pl.String}).select(PROFILE_COLUMNS)
        if rows
        else pl.DataFrame()
    )


def profile_files(paths: list[Path], cdm: CDM) -> pl.DataFrame:
    """Profiles of every record set in ``paths``."""
    sources = [s for p in paths for base in read_any(p) for s in (base, *array_sources(base))]
    parts = [profile_frame(s, cdm) for s in sources]
    parts = [p for p in parts if p.height]
    return pl.concat(parts, how="vertical") if parts else pl.DataFrame()
