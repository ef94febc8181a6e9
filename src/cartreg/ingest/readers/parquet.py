"""Parquet files: typed on disk, converted to text so every reader hands over the same thing.

pyarrow decodes the file and polars takes the result: polars' own Parquet decoder panicked
(``assertion left == right``, a Rust panic) on files with damaged pages, where pyarrow checks
the page sizes and raises an error. The record count comes from the file's footer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cartreg.errors import InputError
from cartreg.ingest.limits import MAX_PARQUET_FILE_BYTES, check_file_size
from cartreg.ingest.readers.base import (
    ReadResult,
    check_cell_sizes,
    check_names,
    require_file,
    to_text,
    with_lineage,
)
from cartreg.ingest.transforms.reshape import flatten_structs

if TYPE_CHECKING:  # pyarrow is imported when a Parquet file is read, not at start-up
    import pyarrow as pa


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


def _without_metadata(schema: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([_plain_field(f) for f in schema])


def _plain_field(field: pa.Field) -> pa.Field:
    """``field`` without metadata, nor any on the fields it holds."""
    import pyarrow as pa

    kind = field.type
    if pa.types.is_struct(kind):
        kind = pa.struct([_plain_field(kind.field(i)) for i in range(kind.num_fields)])
    elif pa.types.is_list(kind):
        kind = pa.list_(_plain_field(kind.value_field))
    elif pa.types.is_large_list(kind):
        kind = pa.large_list(_plain_field(kind.value_field))
    elif pa.types.is_fixed_size_list(kind):
        kind = pa.list_(_plain_field(kind.value_field), kind.list_size)
    return pa.field(field.name, kind, field.nullable)


def read_parquet_text(path: Path, *, label: str | None = None) -> ReadResult:
    require_file(path)
    check_file_size(path, MAX_PARQUET_FILE_BYTES, "a Parquet file")
    records = footer_rows(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        # pyarrow decodes text without checking it is UTF-8: a damaged page hands polars bytes
        # that are not characters, and parsing them later panicked (a char boundary in chrono)
        table.validate(full=True)
        # Metadata is not data, and polars panicked on a key that is not UTF-8 (a damaged
        # footer): the table goes over without it, at every level.
        table = table.cast(_without_metadata(table.schema))
        # Struct columns become ``parent.child`` columns, as JSON objects do.
        frame = flatten_structs(to_text(pl.DataFrame(pl.from_arrow(table))))
    except (
        pa.ArrowException,
        pl.exceptions.PolarsError,
        OSError,
        ValueError,
        TypeError,
        OverflowError,
    ) as exc:
        raise _unreadable(path, exc) from None
    check_names(frame.columns, str(path))
    # Parquet has no header line: row 1 is the first record.
    result = ReadResult(frame=with_lineage(frame, label or path.name, 1), records=records)
    check_cell_sizes(result.frame, str(path))
    return result
