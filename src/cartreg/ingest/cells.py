"""Single cells outside a source's table: a title row's data cut, a document-level field.

``{cell: A1}`` reads one cell above the header of a CSV file or a worksheet (``A1`` = first
column of the first line); ``{cell: export.data_cut}`` reads a field of a JSON document or FHIR
bundle outside its records. The text found is the column's value for every row of the rule,
parsed like a constant (with ``extract`` and ``formats`` when given), so the mapping no longer
has to be edited for each submission.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from cartreg.errors import InputError
from cartreg.ingest.mapping import SourceSpec, TableRule, cell_position
from cartreg.ingest.readers.base import require_file
from cartreg.ingest.readers.csv import DELIMITERS, decode
from cartreg.ingest.readers.fhir import document_value


def cell_values(spec: SourceSpec, root: Path, rules: Iterable[TableRule]) -> dict[str, str | None]:
    """The text of every cell the rules of ``spec`` read (None for an empty cell)."""
    refs = sorted({c.cell for r in rules for c in r.columns.values() if c.cell is not None})
    return {ref: read_cell(spec, root / spec.file, ref) for ref in refs}


def with_cells(rule: TableRule, cells: Mapping[str, str | None]) -> TableRule:
    """``rule`` with each ``cell:`` column turned into the constant found in the file."""
    if not any(c.cell is not None for c in rule.columns.values()):
        return rule
    columns = {
        target: dataclasses.replace(col, value=cells.get(col.cell)) if col.cell is not None else col
        for target, col in rule.columns.items()
    }
    return dataclasses.replace(rule, columns=columns)


def read_cell(spec: SourceSpec, path: Path, ref: str) -> str | None:
    require_file(path)
    if spec.reader in ("json", "fhir"):
        return document_value(path, ref)
    position = cell_position(ref)
    if position is None:  # checked when the mapping was loaded
        raise InputError(f"{path}: '{ref}' is not a cell")
    row, column = position
    if spec.reader == "excel":
        return _excel_cell(path, spec.sheet, row, column)
    return _text_cell(path, spec, row, column)


_HEAD_BYTES = 1 << 20  # where a title cell is looked for


def _excel_cell(path: Path, sheet: str | None, row: int, column: int) -> str | None:
    import fastexcel

    try:
        book = fastexcel.read_excel(path)
        name = sheet or book.sheet_names[0]
        frame = book.load_sheet(name, header_row=None, n_rows=row, dtypes="string").to_polars()
    except Exception as exc:  # fastexcel raises its own error classes
        raise InputError(f"{path}: cannot read cells ({type(exc).__name__})") from None
    if frame.height < row or frame.width < column:
        return None
    value = frame.item(row - 1, column - 1)
    return None if value is None or not str(value).strip() else str(value).strip()


def _text_cell(path: Path, spec: SourceSpec, row: int, column: int) -> str | None:
    with path.open("rb") as handle:
        # The title rows and the header (it tells the delimiter) are at the top: a bounded
        # read, split on any line ending (a CR-only file has no b"\n" to stop a readline).
        head = handle.read(_HEAD_BYTES)
    data, _ = decode(head, spec.encoding)
    lines = data.decode("utf-8", errors="replace").splitlines()[: max(row, spec.header_row)]
    if len(lines) < row:
        return None
    delimiter = spec.delimiter or _delimiter(lines[-1])
    fields = list(csv.reader(lines, delimiter=delimiter))
    if len(fields) < row or len(fields[row - 1]) < column:
        return None
    value = fields[row - 1][column - 1].strip()
    return value or None


def _delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","
