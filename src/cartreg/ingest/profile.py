"""Profiling source files to help a coordinator write a mapping.

Per column: inferred type, null rate, distinct count, top values, the date formats that parse
its values, the decimal mark its numbers show, and the CDM vocabulary to map it with when its
name and its values agree on one. Values of identifier-like columns (by name or by value, see
``identifiers``) are never shown, and a shown value that looks like an identifier on its own is
masked (see ``cartreg.redact``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from cartreg.cdm import CDM
from cartreg.errors import InputError
from cartreg.findings import MASK
from cartreg.ingest.identifiers import identifier_columns, name_kind
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
from cartreg.ingest.transforms.numbers import decimal_mark, parse_numbers
from cartreg.ingest.transforms.reshape import LINEAGE, explode_path
from cartreg.redact import redact_value
from cartreg.vocab.normalize import normalize_key
from cartreg.vocab.vocabulary import Vocabulary
from cartreg.yamlio import load_yaml

PROFILE_COLUMNS = (
    "source",
    "column",
    "inferred_type",
    "null_rate",
    "distinct",
    "top_values",
    "date_formats",
    "decimal",
    "vocabulary",
    "vocabulary_match",
    "identifier",
)
_TOP = 5
_MATCH_MIN = 0.5
_SUBJECT_WORDS_FILE = Path(__file__).with_name("vocabulary_words.yaml")
_SUBJECT_WORDS: dict[str, frozenset[str]] | None = None
# A subject word this long also matches the start of a longer word (plurals, compounds).
_PREFIX_MIN = 5
# Share of distinct values that must be terms: of a vocabulary the name is about, of yes/no.
_NAMED_MIN = 0.25
_ANSWERS_MIN = 0.6
_YES_NO = "yes_no_unknown"
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


def subject_words() -> dict[str, frozenset[str]]:
    """Per vocabulary, the words of a column name saying it is about its subject (data:
    ``vocabulary_words.yaml``)."""
    global _SUBJECT_WORDS
    if _SUBJECT_WORDS is None:
        raw = load_yaml(_SUBJECT_WORDS_FILE)
        _SUBJECT_WORDS = {str(k): frozenset(str(w) for w in v) for k, v in raw.items()}
    return _SUBJECT_WORDS


def name_words(column: str) -> set[str]:
    """Lower-case ASCII words of a column name (``CD19-Phänotyp`` -> cd19, phanotyp;
    ``bestResponse`` -> best, response)."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", column)
    text = unicodedata.normalize("NFKD", spaced).encode("ascii", "ignore").decode("ascii")
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


def _names_subject(words: set[str], subject: frozenset[str]) -> bool:
    return any(
        w == s or (len(s) >= _PREFIX_MIN and w.startswith(s)) for w in words for s in subject
    )


def suggest_vocabulary(column: str, values: pl.Series, cdm: CDM) -> tuple[str | None, float]:
    """The vocabulary a coordinator should map ``column`` with, and the share of its distinct
    values that are terms, or ``(None, 0.0)`` when the evidence does not agree.

    Name and values must agree: the column's name holds a word of the vocabulary's subject (in
    any of the consortium's languages) and at least a quarter of its distinct values are terms,
    including every value another vocabulary named by the column knows (else they point two
    ways). Values alone only ever suggest ``yes_no_unknown`` (it says what the values are, not
    what they are about).
    Nothing is better than a wrong suggestion: ``positif`` is an MRD, a Ph and a CD19 term.
    """
    distinct = [v for v in values.drop_nulls().unique().to_list() if normalize_key(v)]
    if not distinct:
        return None, 0.0
    words = name_words(column)
    named = {
        name: _terms(cdm.vocabularies[name], distinct)
        for name, subject in subject_words().items()
        if name in cdm.vocabularies and _names_subject(words, subject)
    }
    if named:
        name = max(named, key=lambda n: len(named[n]))
        share = len(named[name]) / len(distinct)
        if share >= _NAMED_MIN:
            others = [terms for n, terms in named.items() if n != name]
            # Values another named vocabulary knows and this one does not, or the same values
            # known by two: they point two ways.
            if any(not terms < named[name] for terms in others if terms):
                return None, 0.0
            return name, share
    answers = cdm.vocabularies[_YES_NO]
    codes = {answers.code_for(v) for v in distinct}
    share = len(_terms(answers, distinct)) / len(distinct)
    if share >= _ANSWERS_MIN and codes & {"Y", "N"}:
        return _YES_NO, share
    return None, 0.0


def _terms(vocabulary: Vocabulary, distinct: list[str]) -> set[str]:
    return {v for v in distinct if vocabulary.code_for(v) is not None}


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
        "decimal": "",
        "vocabulary": None,
        "vocabulary_match": 0.0,
        "identifier": False,
    }


# A profile reads the first row as the header: above a workbook's or a CSV's title rows the
# real column names are cells of the first rows, where a name such as ``patient_name`` is no
# column name and its names were printed. A short cell there that names an identifier hides
# its column's values.
_HEADER_ROWS = 20
_HEADER_CELL_CHARS = 60


def named_below_a_title(frame: pl.DataFrame, columns: list[str]) -> set[str]:
    """Columns one of whose first cells is the name of an identifier column."""
    head = frame.head(_HEADER_ROWS)
    found = set()
    for column in columns:
        if head.schema[column] not in (pl.String, pl.Categorical):
            continue
        cells = head.get_column(column).cast(pl.String).drop_nulls().str.strip_chars()
        if any(len(c) <= _HEADER_CELL_CHARS and name_kind(c) is not None for c in cells):
            found.add(column)
    return found


def profile_frame(source: SourceFrame, cdm: CDM) -> pl.DataFrame:
    """One profile row per column of a source."""
    frame = source.frame
    columns = source.own_columns()
    identifiers = set(identifier_columns(frame)) | named_below_a_title(frame, columns)
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
        vocabulary, share = suggest_vocabulary(column, values, cdm)
        # Renamed first: a source column may itself be called "count".
        counts = values.drop_nulls().alias("value").value_counts(sort=True).head(_TOP)
        hidden = column in identifiers
        # Dates are what a coordinator profiles for: only a birth-named column hides them, and
        # that column is an identifier already when it holds full dates.
        top = "; ".join(
            f"{MASK if hidden else redact_value(v, date_column=True)} ({c})"
            for v, c in counts.iter_rows()
        )
        rows.append(
            {
                "source": source.label,
                "column": column,
                "inferred_type": _infer_type(values, formats, vocabulary),
                "null_rate": round(values.null_count() / n, 3) if n else 0.0,
                "distinct": values.n_unique() - (1 if values.null_count() else 0),
                "top_values": top,
                "date_formats": ", ".join(formats),
                "decimal": decimal_mark(values) or "",
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
