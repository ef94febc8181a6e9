"""What every reader returns: text columns, lineage, and the problems met while reading.

Besides the rows, a reader hands over the rows it read but cannot trust (``rejected``: a line
with more or fewer fields than the header, a comment line, a repeated header, a record cut off
by the end of the file) and the number of records the file holds by a count that does not
come from the parse that made the rows (``records``). Rejected rows never reach a rule: they
are quarantined with their reason and no cell of theirs is copied anywhere.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.errors import InputError
from cartreg.findings import empty_findings
from cartreg.ingest.limits import MAX_CELL_BYTES, cell_too_large

LINEAGE = ("source_file", "source_row")
REJECTED_SCHEMA: dict[str, pl.DataType] = {
    "source_row": pl.Int64(),
    "rule_id": pl.String(),
    "message": pl.String(),
}


def no_rejected() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECTED_SCHEMA)


@dataclass
class ReadResult:
    """A source as text: every value a string (or a list/struct of strings), nothing inferred.

    ``frame`` starts with ``source_file`` and ``source_row`` (the row a person sees: spreadsheet
    row or CSV line, header included; for JSON the 1-based record number).
    """

    frame: pl.DataFrame
    findings: pl.DataFrame = field(default_factory=empty_findings)
    # Extra knowledge a reader has (REDCap choice labels, checkbox fields) for later steps.
    choices: dict[str, dict[str, str]] = field(default_factory=dict)
    # SHA-256 of the file's bytes when the reader already had them in memory (else None).
    sha256: str | None = None
    # Rows read but not trusted (source_row, rule_id, message): quarantined, cells not kept.
    rejected: pl.DataFrame = field(default_factory=no_rejected)
    # Records in the file by a count independent of the parse (None: no such count).
    records: int | None = None

    def reject(self, rows: pl.DataFrame) -> None:
        """Move the rows listed in ``rows`` (source_row, rule_id, message) out of the frame."""
        if rows.is_empty():
            return
        rows = rows.select(pl.col(c).cast(t) for c, t in REJECTED_SCHEMA.items())
        self.frame = self.frame.filter(
            ~pl.col("source_row").is_in(rows.get_column("source_row").implode())
        )
        self.rejected = pl.concat([self.rejected, rows]).unique("source_row", keep="first")
        self.rejected = self.rejected.sort("source_row")


def text_dtype(dtype: Any) -> pl.DataType:
    """The all-text version of a (possibly nested) dtype."""
    if isinstance(dtype, pl.Struct):
        return pl.Struct([pl.Field(f.name, text_dtype(f.dtype)) for f in dtype.fields])
    if isinstance(dtype, pl.List | pl.Array):
        inner = dtype.inner
        assert inner is not None
        return pl.List(text_dtype(inner))
    return pl.String()


def category_values(values: pl.Series) -> pl.Series:
    """The text of each code of a Categorical column, in code order (position = code).

    Built by polars from the codes 0..max present (``Categories.to_series`` walks the
    categories in Python: 20 ms per 100,000 of them).
    """
    top = values.to_physical().max()
    codes = pl.Series(values.name, range(0 if top is None else int(top) + 1), dtype=pl.UInt32)  # type: ignore[arg-type]
    return codes.cat.to(values.dtype).cast(pl.String)


def to_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast every column, nested or not, to text."""
    exprs = []
    for name, dtype in frame.schema.items():
        target = text_dtype(dtype)
        if dtype == pl.Boolean:
            exprs.append(pl.col(name).cast(pl.String).alias(name))
        elif target != dtype:
            exprs.append(pl.col(name).cast(target).alias(name))
        else:
            exprs.append(pl.col(name))
    return frame.select(exprs)


def with_lineage(frame: pl.DataFrame, label: str, first_row: int) -> pl.DataFrame:
    """Prepend ``source_file``/``source_row`` (row ``first_row`` for the first record).

    A source column with one of those names is kept as ``<name>_source``.
    """
    clash = [c for c in LINEAGE if c in frame.columns]
    if clash:
        renamed = {c: f"{c}_source" for c in clash}
        taken = [new for new in renamed.values() if new in frame.columns]
        if taken:
            raise InputError(
                f"{label}: columns '{taken[0].removesuffix('_source')}' and '{taken[0]}' clash "
                "with the lineage column cartreg adds",
                hint=f"rename the column '{taken[0].removesuffix('_source')}' in the export",
            )
        frame = frame.rename(renamed)
    return frame.select(
        pl.lit(label, dtype=pl.String).alias("source_file"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + first_row).alias("source_row"),
        pl.all(),
    )


def require_file(path: Path) -> None:
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError as exc:  # a name too long, a path through a file
        raise InputError(f"{str(path)[:120]}: cannot open ({exc.strerror})") from None
    if not exists:
        raise InputError(f"{path}: input file not found", hint="check the 'file' of this source")
    if not is_file:
        raise InputError(f"{path}: not a file")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def drop_blank_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows with no value at all (trailing spreadsheet rows, blank lines) are not records."""
    data = [
        c
        for c, t in frame.schema.items()
        if c not in ("source_file", "source_row") and t == pl.String
    ]
    if not data:
        return frame
    any_value = pl.any_horizontal(
        [pl.col(c).str.strip_chars().str.len_chars().fill_null(0) > 0 for c in data]
    )
    return frame.filter(any_value)


# A column name holding an e-mail address or a phone number is a data row merged into the
# header (or a damaged header): names are echoed in messages, values must not be.
_VALUE_IN_NAME = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}|\+?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}")


def check_names(names: list[str], where: str) -> None:
    """InputError for a column name that holds what looks like an identifier value."""
    for i, name in enumerate(names, start=1):
        if _VALUE_IN_NAME.search(str(name)):
            raise InputError(
                f"{where}: the name of column {i} looks like an e-mail address or phone "
                "number, not a column name",
                hint="check that the header line is complete and on a line of its own",
            )


def clean_names(names: list[str], where: str, *, naming: str = "the header") -> list[str]:
    """Header names without surrounding spaces; an empty name becomes ``column_<position>``.

    Two columns whose names are equal once trimmed are an InputError: a mapping could not say
    which of them it means; so is a name holding an identifier value (``check_names``).
    ``naming`` says what holds the names in that message (a Parquet file has no header).
    """
    check_names(names, where)
    # A byte-order mark left in a name (a file saved twice with one: "\ufeffid") is invisible,
    # and a mapping naming "id" would be told of a column it cannot see the difference in.
    trimmed = [str(n).replace("\ufeff", "").strip() for n in names]
    cleaned = [n if n else f"column_{i}" for i, n in enumerate(trimmed, start=1)]
    seen: dict[str, int] = {}
    for i, name in enumerate(cleaned, start=1):
        if name in seen:
            raise InputError(
                f"{where}: {naming} names column '{name[:40]}' twice "
                f"(columns {seen[name]} and {i})",
                hint="rename one of them in the export",
            )
        seen[name] = i
    return cleaned


def check_cell_sizes(frame: pl.DataFrame, where: str) -> None:
    """InputError when a text cell is larger than ``MAX_CELL_BYTES``.

    Categorical columns are checked on the text of the codes they hold.
    """
    text = [c for c, t in frame.schema.items() if t == pl.String and c not in LINEAGE]
    coded = [c for c, t in frame.schema.items() if isinstance(t, pl.Categorical)]
    sizes: dict[str, int] = {}
    if text:
        longest = frame.select(pl.col(text).str.len_bytes().max().fill_null(0)).row(0)
        sizes.update({name: int(size) for name, size in zip(text, longest, strict=True)})
    for name in coded:
        # each column has its own categories (readers give it a fresh mapping): its distinct
        # texts are measured once, not once per row
        size = category_values(frame.get_column(name)).str.len_bytes().max()
        sizes[name] = int(size) if isinstance(size, int) else 0
    for name, size in sizes.items():
        if size > MAX_CELL_BYTES:
            rows = frame.filter(pl.col(name).cast(pl.String).str.len_bytes() > MAX_CELL_BYTES)
            if rows.is_empty():
                continue  # the text of a code only rows the reader rejected held
            raise cell_too_large(where, name, size, int(rows.get_column("source_row")[0]))


def suspicious_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of a table-like source that are not records: comment lines and repeated headers.

    * a row whose first cell starts with ``#`` is a comment line some exports add;
    * a row whose every value equals its column's name is the header again (files joined
      by copy and paste).

    Returns ``source_row``, ``rule_id``, ``message`` (no cell values). Cheap on coded columns:
    only rows whose first cell is a candidate are compared column by column.
    """
    data = [c for c in frame.columns if c not in LINEAGE]
    if not data or frame.is_empty():
        return no_rejected()
    if isinstance(frame.schema[data[0]], pl.Categorical):
        # On coded text these comparisons run per distinct value: no candidate row, no work.
        coded = pl.col(data[0])
        probe = coded.cat.starts_with("#") | coded.cat.starts_with(" ") | (coded == data[0])
        if not frame.select(probe.any()).item():
            return no_rejected()
    first = pl.col(data[0]).cast(pl.String).str.strip_chars()
    candidates = frame.filter(first.str.starts_with("#") | (first == data[0]))
    if candidates.is_empty():
        return no_rejected()
    equal = [(pl.col(c).cast(pl.String).str.strip_chars() == c).fill_null(False) for c in data]
    empty = [pl.col(c).cast(pl.String).str.strip_chars().fill_null("").eq("") for c in data]
    header = pl.all_horizontal([e | b for e, b in zip(equal, empty, strict=True)]) & (
        pl.sum_horizontal(equal) >= min(2, len(data))
    )
    return candidates.select(
        "source_row",
        pl.when(header)
        .then(pl.lit("ING-REPEATED-HEADER"))
        .when(first.str.starts_with("#"))
        .then(pl.lit("ING-COMMENT"))
        .alias("rule_id"),
        pl.when(header)
        .then(pl.lit("the header line again, not a record; row quarantined: remove it"))
        .when(first.str.starts_with("#"))
        .then(pl.lit("a comment line (starts with '#'), not a record; row quarantined: remove it"))
        .alias("message"),
    ).drop_nulls("rule_id")
