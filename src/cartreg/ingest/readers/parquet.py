"""Parquet files: typed on disk, converted to text so every reader hands over the same thing.

pyarrow decodes the file and polars takes the result: polars' own Parquet decoder panicked
(``assertion left == right``, a Rust panic) on files with damaged pages, where pyarrow checks
the page sizes and raises an error. The record count comes from the file's footer.

Some values Arrow holds, polars cannot take: 256-bit decimals (``Int256``) and dates beyond
the years chrono can write (a ``date32`` of year 800,000) panicked inside polars, so they are
turned into text by pyarrow before polars sees them (a far date becomes a value the date
parser reports, not a crash).
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
    clean_names,
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


# Days from 1970-01-01 to 0001-01-01 and to 10000-01-01: dates outside go to polars as text.
_FIRST_DAY, _END_DAY = -719_162, 2_932_897
_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def _beyond_calendar(array: pa.Array) -> bool:
    """Whether a date or timestamp in ``array`` (at any nesting level) lies outside the years
    1 to 9999: polars panicked (``out-of-range date``) turning such a value into text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_struct(kind):
        return any(_beyond_calendar(array.field(i)) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _beyond_calendar(array.flatten())
    if pa.types.is_dictionary(kind):
        return _beyond_calendar(array.dictionary)
    if pa.types.is_date32(kind):
        numbers, per_day = array.view(pa.int32()), 1
    elif pa.types.is_date64(kind):
        numbers, per_day = array.view(pa.int64()), _PER_DAY["ms"]
    elif pa.types.is_timestamp(kind):
        numbers, per_day = array.view(pa.int64()), _PER_DAY[kind.unit]
    else:
        return False
    bounds = pc.min_max(numbers)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return low is not None and (low < _FIRST_DAY * per_day or high >= _END_DAY * per_day)


def _readable_schema(table: pa.Table) -> pa.Schema:
    """The schema polars is given: no metadata, and text for what polars cannot take."""
    import pyarrow as pa

    far = {
        name
        for name, column in zip(table.column_names, table.columns, strict=True)
        if any(_beyond_calendar(chunk) for chunk in column.chunks)
    }
    return pa.schema([_plain_field(f, dates_as_text=f.name in far) for f in table.schema])


def _as_text(kind: pa.DataType, dates: bool) -> bool:
    import pyarrow as pa

    return pa.types.is_decimal256(kind) or (
        dates and (pa.types.is_date(kind) or pa.types.is_timestamp(kind))
    )


def _plain_field(field: pa.Field, *, dates_as_text: bool = False) -> pa.Field:
    """``field`` without metadata, nor any on the fields it holds; 256-bit decimals (and,
    with ``dates_as_text``, dates and timestamps) as text, which pyarrow writes."""
    import pyarrow as pa

    kind = field.type

    def inner(f: pa.Field) -> pa.Field:
        return _plain_field(f, dates_as_text=dates_as_text)

    if pa.types.is_struct(kind):
        kind = pa.struct([inner(kind.field(i)) for i in range(kind.num_fields)])
    elif pa.types.is_list(kind):
        kind = pa.list_(inner(kind.value_field))
    elif pa.types.is_large_list(kind):
        kind = pa.large_list(inner(kind.value_field))
    elif pa.types.is_fixed_size_list(kind):
        kind = pa.list_(inner(kind.value_field), kind.list_size)
    elif _as_text(kind.value_type if pa.types.is_dictionary(kind) else kind, dates_as_text):
        kind = pa.large_string()
    return pa.field(field.name, kind, field.nullable)


def read_parquet_text(path: Path, *, label: str | None = None) -> ReadResult:
    require_file(path)
    check_file_size(path, MAX_PARQUET_FILE_BYTES, "a Parquet file")
    records = footer_rows(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # Two columns of one name: a mapping could not say which it means (and pyarrow failed
        # on the ambiguous name in its own words).
        clean_names(pq.read_schema(path).names, str(path), naming="the file")
        table = pq.read_table(path)
        # pyarrow decodes text without checking it is UTF-8: a damaged page hands polars bytes
        # that are not characters, and parsing them later panicked (a char boundary in chrono)
        table.validate(full=True)
        # Metadata is not data, and polars panicked on a key that is not UTF-8 (a damaged
        # footer): the table goes over without it, at every level; values polars panicked
        # on go over as text.
        table = table.cast(_readable_schema(table))
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
