"""Parquet files: typed on disk, converted to text so every reader hands over the same thing.

The record count comes from the file's footer (read by pyarrow), independently of the pages
polars decodes into rows.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cartreg.errors import InputError
from cartreg.ingest.limits import MAX_PARQUET_FILE_BYTES, check_file_size
from cartreg.ingest.readers.base import (
    ReadResult,
    check_cell_sizes,
    require_file,
    to_text,
    with_lineage,
)


def _unreadable(path: Path, exc: BaseException) -> InputError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"{path}: not a readable Parquet file ({first[:100]})",
        hint="write the file again, or export CSV",
    )


def footer_rows(path: Path) -> int:
    """Rows the Parquet footer declares."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def read_parquet_text(path: Path, *, label: str | None = None) -> ReadResult:
    require_file(path)
    check_file_size(path, MAX_PARQUET_FILE_BYTES, "a Parquet file")
    records = footer_rows(path)
    try:
        frame = to_text(pl.read_parquet(path))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _unreadable(path, exc) from None
    # Parquet has no header line: row 1 is the first record.
    result = ReadResult(frame=with_lineage(frame, label or path.name, 1), records=records)
    check_cell_sizes(result.frame, str(path))
    return result
