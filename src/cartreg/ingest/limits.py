"""Resource limits of the readers: the largest input cartreg reads, checked before reading.

A file beyond a limit stops ingest with one line (exit 2) naming the file, the limit and the
way out, instead of exhausting memory or time. The limits are generous for registry exports
(docs/mapping.md "Limits" and docs/security.md "Resource limits" list them); each one bounds a
cost that grows with the input: bytes held in memory, objects built per JSON value, cells a
workbook reader allocates, recursion per nesting level.
"""

from __future__ import annotations

from pathlib import Path

from cartreg.errors import InputError

MIB = 2**20
GIB = 2**30

# A delimited file read whole (one that is not split into ranges of patients, see
# partition.py) is held in memory about twice.
MAX_TEXT_FILE_BYTES = 8 * GIB
# A delimited file whose quoting polars cannot parse (stray quotes) is read by Python's csv
# module, one Python object per cell.
MAX_IRREGULAR_TEXT_BYTES = 256 * MIB
# JSON is parsed into Python objects first (about ten times the file's size in memory).
MAX_JSON_FILE_BYTES = 512 * MIB
# Arrays and objects inside each other, counting the top-level array or object as 1.
MAX_JSON_DEPTH = 32
MAX_PARQUET_FILE_BYTES = 8 * GIB
# Workbooks: the file, the uncompressed XML of all its parts, and the rectangle spanned by a
# sheet's real cells (a reader allocates every cell of it, empty or not).
MAX_WORKBOOK_FILE_BYTES = 512 * MIB
MAX_WORKBOOK_XML_BYTES = 2 * GIB
MAX_SHEET_CELLS = 20_000_000
MAX_SHEET_COLUMNS = 16_384  # Excel's own limit (column XFD)
MAX_SHEET_ROWS = 1_048_576  # Excel's own limit
# A query workbook sent back by a site (the portal accepts one from any signed-in site user):
# its parts unpacked, and its rows. openpyxl holds shared strings and every row read in Python
# objects; a workbook made by cartreg lists a few thousand queries.
MAX_QUERY_WORKBOOK_XML_BYTES = 64 * MIB
MAX_QUERY_ROWS = 100_000
# One cell (a CSV field, a spreadsheet cell, a JSON string): free text is a few kB at most.
MAX_CELL_BYTES = 1 * MIB
# A mapping file is written by hand; a larger one is not a mapping.
MAX_MAPPING_FILE_BYTES = 1 * MIB


def size_text(n_bytes: float) -> str:
    """``5.2 MB``, ``1 GiB``-style sizes for messages."""
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}".replace(".0 ", " ")
    return f"{int(n_bytes)} bytes"


def check_file_size(path: Path, limit: int, what: str) -> int:
    """The size of ``path``; InputError when it is larger than ``limit``."""
    size = path.stat().st_size
    if size > limit:
        raise InputError(
            f"{path}: {what} of {size_text(size)} is larger than the {size_text(limit)} limit",
            hint="split the export into smaller files (see docs/mapping.md, Limits)",
        )
    return size


def cell_too_large(
    path: Path | str, column: str, n_bytes: int, row: int | None = None
) -> InputError:
    where = f"row {row}, column '{column}'" if row is not None else f"column '{column}'"
    return InputError(
        f"{path}: {where}: a cell of {size_text(n_bytes)} is larger than the "
        f"{size_text(MAX_CELL_BYTES)} limit",
        hint="remove the embedded document or text from the export",
    )
