"""What every reader returns: text columns, lineage, and the problems met while reading."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.errors import InputError
from cartreg.findings import empty_findings


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
    """Prepend ``source_file``/``source_row`` (row ``first_row`` for the first record)."""
    clash = [c for c in ("source_file", "source_row") if c in frame.columns]
    if clash:
        frame = frame.rename({c: f"{c}_source" for c in clash})
    return frame.select(
        pl.lit(label, dtype=pl.String).alias("source_file"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + first_row).alias("source_row"),
        pl.all(),
    )


def require_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: input file not found", hint="check the 'file' of this source")
    if not path.is_file():
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
