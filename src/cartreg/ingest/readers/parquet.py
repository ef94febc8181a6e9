"""Parquet files: typed on disk, converted to text so every reader hands over the same thing."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cartreg.errors import InputError
from cartreg.ingest.readers.base import ReadResult, require_file, to_text, with_lineage


def read_parquet_text(path: Path, *, label: str | None = None) -> ReadResult:
    require_file(path)
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(
            f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})"
        ) from None
    # Parquet has no header line: row 1 is the first record.
    return ReadResult(frame=with_lineage(to_text(frame), label or path.name, 1))
