"""Excel workbooks (.xlsx/.xlsm) as text, one sheet at a time, with the header on any row.

fastexcel (calamine) reads every cell as a string: real date cells arrive as
``2021-03-05 00:00:00`` (the date parser strips the midnight time), dates typed as text stay as
typed, and serial day numbers stay numbers for the ``EXCEL`` date format to convert.

calamine allocates the whole rectangle spanned by a sheet's cells, empty or not: one cell at
A1 and one at XFD1048576 asked for 512 GiB and aborted the process. So the sheet's XML is
scanned first (``scan_sheet``): the real cells, not the sheet's declared dimension, give the
rectangle, which must stay within ``MAX_SHEET_CELLS``, and the rows holding a value, which
are the independent record count. The rectangle also says where calamine's grid starts, so
every row keeps the number a person sees in the spreadsheet.
"""

from __future__ import annotations

import html
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

import polars as pl

from cartreg.errors import ZIP_DAMAGE, ZIP_ENTRY_DAMAGE, InputError, did_you_mean
from cartreg.findings import empty_findings, findings_frame, rule_columns
from cartreg.ingest.limits import (
    MAX_SHEET_CELLS,
    MAX_SHEET_COLUMNS,
    MAX_SHEET_ROWS,
    MAX_WORKBOOK_FILE_BYTES,
    MAX_WORKBOOK_XML_BYTES,
    check_file_size,
    size_text,
)
from cartreg.ingest.readers.base import (
    ReadResult,
    check_cell_sizes,
    clean_names,
    drop_blank_rows,
    require_file,
    suspicious_rows,
    with_lineage,
)

_NS = rb"(?:[A-Za-z_][\w.-]*:)?"
_ITEMS = re.compile(
    rb"(?P<row><" + _NS + rb"row\b[^>]*>)|(?P<cell><" + _NS + rb"c\b(?P<attrs>[^>]*?)"
    rb"(?:/>|>(?P<body>.*?)</" + _NS + rb"c>))",
    re.DOTALL,
)
_ROW_NUMBER = re.compile(rb'\br="(\d+)"')
_CELL_REF = re.compile(rb'\br="([A-Za-z]{1,3})(\d+)"')
_CELL_TYPE = re.compile(rb'\bt="(\w+)"')
_VALUE = re.compile(rb"<" + _NS + rb"v>(.*?)</" + _NS + rb"v>", re.DOTALL)
_FORMULA = re.compile(rb"<" + _NS + rb"f\b")
# What Excel writes in a cell whose formula failed; anything else is reported as "an error".
_EXCEL_ERRORS = frozenset(
    [
        "#NULL!",
        "#DIV/0!",
        "#VALUE!",
        "#REF!",
        "#NAME?",
        "#NUM!",
        "#N/A",
        "#GETTING_DATA",
        "#SPILL!",
        "#CALC!",
        "#FIELD!",
        "#BLOCKED!",
        "#CONNECT!",
        "#BUSY!",
        "#UNKNOWN!",
    ]
)
_TEXT = re.compile(rb"<" + _NS + rb"t\b[^>]*>(.*?)</" + _NS + rb"t>", re.DOTALL)
_PHONETIC = re.compile(rb"<" + _NS + rb"rPh\b.*?</" + _NS + rb"rPh>", re.DOTALL)
_SHARED = re.compile(rb"<" + _NS + rb"si\b[^>]*?(?:/>|>(.*?)</" + _NS + rb"si>)", re.DOTALL)
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RELS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def _not_a_workbook(path: Path, why: str) -> InputError:
    return InputError(
        f"{path}: not a readable .xlsx workbook ({why})",
        hint="save it from Excel as .xlsx, or export CSV",
    )


def _read_part(book: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """One part of the workbook, refused when its uncompressed size is beyond the limit."""
    try:
        info = book.getinfo(name)
    except KeyError:
        raise _not_a_workbook(path, f"{name} is missing") from None
    if info.file_size > MAX_WORKBOOK_XML_BYTES:
        raise InputError(
            f"{path}: {name} unpacks to {size_text(info.file_size)}, more than the "
            f"{size_text(MAX_WORKBOOK_XML_BYTES)} limit",
            hint="split the workbook, or export CSV",
        )
    try:
        return book.read(name)
    except (*ZIP_ENTRY_DAMAGE, OSError) as exc:
        raise _not_a_workbook(path, f"{name}: {exc}") from None


def _open(path: Path) -> zipfile.ZipFile:
    require_file(path)
    check_file_size(path, MAX_WORKBOOK_FILE_BYTES, "a workbook")
    try:
        book = zipfile.ZipFile(path)
    except ZIP_DAMAGE as exc:
        raise _not_a_workbook(path, str(exc)[:60]) from None
    total = sum(info.file_size for info in book.infolist())
    if total > 4 * MAX_WORKBOOK_XML_BYTES:
        raise InputError(
            f"{path}: unpacks to {size_text(total)}, more than the workbook limit",
            hint="split the workbook, or export CSV",
        )
    return book


def _xml(data: bytes, path: Path, name: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise _not_a_workbook(path, f"{name}: {exc}") from None


def sheet_parts(path: Path) -> dict[str, str]:
    """Sheet name -> the zip member holding its cells, in workbook order."""
    with _open(path) as book:
        workbook = _xml(_read_part(book, "xl/workbook.xml", path), path, "workbook.xml")
        rels = _xml(_read_part(book, "xl/_rels/workbook.xml.rels", path), path, "workbook.xml.rels")
    targets = {r.get("Id"): r.get("Target", "") for r in rels.iter(f"{_PKG}Relationship")}
    parts: dict[str, str] = {}
    for sheet in workbook.iter(f"{_MAIN}sheet"):
        target = targets.get(sheet.get(f"{_RELS}id"))
        name = sheet.get("name")
        if target and name is not None:
            member = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            parts[name] = str(PurePosixPath(member))
    return parts


def sheet_names(path: Path) -> list[str]:
    return list(sheet_parts(path))


def _column_number(letters: bytes) -> int:
    number = 0
    for ch in letters.upper():
        number = number * 26 + ch - 64
    return number


def _shared_blank(book: zipfile.ZipFile, path: Path) -> list[bool]:
    """For each shared string, whether it holds only whitespace."""
    if "xl/sharedStrings.xml" not in book.namelist():
        return []
    data = _read_part(book, "xl/sharedStrings.xml", path)
    return [_blank_text(m.group(1) or b"") for m in _SHARED.finditer(data)]


def _blank_text(xml: bytes) -> bool:
    xml = _PHONETIC.sub(b"", xml)
    texts = b"".join(t.group(1) for t in _TEXT.finditer(xml))
    return not html.unescape(texts.decode("utf-8", errors="replace")).strip()


@dataclass(frozen=True)
class SheetExtent:
    """Where a sheet's real cells are (1-based rows and columns; all 0 for an empty sheet)."""

    first_row: int
    first_column: int
    last_row: int
    last_column: int
    rows_with_values: tuple[int, ...]  # rows holding at least one non-blank value, sorted
    # Cells with no value to read (row, column, what): an Excel error such as ``#N/A``, or ""
    # for a formula saved without its result. calamine reads both as empty cells.
    unreadable: tuple[tuple[int, int, str], ...] = ()

    @property
    def cells(self) -> int:
        if not self.last_row:
            return 0
        return (self.last_row - self.first_row + 1) * (self.last_column - self.first_column + 1)

    def records_after(self, header_row: int) -> int:
        return sum(1 for r in self.rows_with_values if r > header_row)


def scan_sheet(path: Path, sheet: str) -> SheetExtent:
    """The rectangle of ``sheet``'s cells that hold a value, and its rows with a value."""
    parts = sheet_parts(path)
    with _open(path) as book:
        data = _read_part(book, parts[sheet], path)
        blank_shared = _shared_blank(book, path)
    rows: set[int] = set()
    unreadable: list[tuple[int, int, str]] = []
    first_row = first_col = 10**9
    last_row = last_col = 0
    row = column = 0
    for item in _ITEMS.finditer(data):
        if item.group("row") is not None:
            number = _ROW_NUMBER.search(item.group("row"))
            row = int(number.group(1)) if number else row + 1
            column = 0
            continue
        attrs = item.group("attrs")
        ref = _CELL_REF.search(attrs)
        if ref is not None:
            column, row = _column_number(ref.group(1)), int(ref.group(2))
        else:
            column += 1
        body = item.group("body") or b""
        kind = _CELL_TYPE.search(attrs)
        cell_type = kind.group(1) if kind else b"n"
        if cell_type == b"inlineStr":
            if b"<" not in body or not re.search(rb"<" + _NS + rb"is\b", body):
                continue
            blank = _blank_text(body)
        else:
            value = _VALUE.search(body)
            if value is None or not value.group(1).strip():
                if _FORMULA.search(body):
                    unreadable.append((row, column, ""))
                continue
            text = value.group(1)
            if cell_type == b"e":
                code = html.unescape(text.decode("utf-8", errors="replace")).strip()
                unreadable.append((row, column, code if code in _EXCEL_ERRORS else "an error"))
            if cell_type == b"s":
                index = int(text) if text.strip().isdigit() else -1
                blank = 0 <= index < len(blank_shared) and blank_shared[index]
            else:
                blank = not html.unescape(text.decode("utf-8", errors="replace")).strip()
        first_row, last_row = min(first_row, row), max(last_row, row)
        first_col, last_col = min(first_col, column), max(last_col, column)
        if not blank:
            rows.add(row)
    if not last_row:
        return SheetExtent(0, 0, 0, 0, ())
    return SheetExtent(
        first_row, first_col, last_row, last_col, tuple(sorted(rows)), tuple(unreadable)
    )


def _check_extent(extent: SheetExtent, where: str) -> None:
    width = extent.last_column - extent.first_column + 1
    height = extent.last_row - extent.first_row + 1
    if (
        extent.cells > MAX_SHEET_CELLS
        or extent.last_column > MAX_SHEET_COLUMNS
        or extent.last_row > MAX_SHEET_ROWS
    ):
        raise InputError(
            f"{where}: cells span {height:,} rows x {width:,} columns, over the "
            f"{MAX_SHEET_CELLS:,}-cell limit",
            hint="delete stray cells far below or right of the table",
        )


def read_excel_text(
    path: Path,
    *,
    sheet: str | None = None,
    header_row: int = 1,
    label: str | None = None,
) -> ReadResult:
    """Read one sheet; ``header_row`` is the 1-based row of the column names.

    Rows above the header are skipped; when the header row is empty, the first row with a
    value below it holds the names. Rows keep their spreadsheet numbers.
    """
    import fastexcel

    names = sheet_names(path)
    if not names:
        raise _not_a_workbook(path, "it has no sheets")
    sheet = sheet or names[0]
    if sheet not in names:
        hint = did_you_mean(sheet, names) or f"sheets: {', '.join(n[:30] for n in names[:10])}"
        raise InputError(f"{path}: no sheet '{sheet[:40]}'", hint=hint)
    where = f"{path}#{sheet}"
    label = label or f"{path.name}#{sheet}"
    extent = scan_sheet(path, sheet)
    if not extent.rows_with_values:
        raise InputError(f"{where}: the sheet is empty", hint="choose the sheet with the data")
    _check_extent(extent, where)
    header = min((r for r in extent.rows_with_values if r >= header_row), default=None)
    if header is None:
        raise InputError(
            f"{where}: no row with values at or below header_row {header_row}",
            hint=f"the last row with values is {extent.rows_with_values[-1]}",
        )
    try:
        grid = (
            fastexcel.read_excel(path)
            .load_sheet(sheet, header_row=None, dtypes="string")
            .to_polars()
        )
    except Exception as exc:  # fastexcel raises its own error classes
        raise InputError(f"{where}: cannot read sheet ({type(exc).__name__})") from None
    grid = grid.select(pl.all().cast(pl.String))
    # calamine's grid starts at the first cell with a value: its row i is spreadsheet row
    # first_row + i.
    first_row = extent.first_row
    if grid.height != extent.last_row - first_row + 1 or header - first_row >= grid.height:
        raise InputError(
            f"{where}: the sheet's cells could not be placed (read {grid.height} rows, "
            f"found rows {first_row}-{extent.last_row})",
            hint="save the workbook again from Excel, or export CSV",
        )
    titles = [v if v is not None else "" for v in grid.row(header - first_row)]
    names = clean_names(titles, where)
    frame = grid.slice(header - first_row + 1).rename(dict(zip(grid.columns, names, strict=True)))
    frame = with_lineage(frame, label, header + 1)
    result = ReadResult(
        frame=drop_blank_rows(frame),
        records=extent.records_after(header),
        findings=_unreadable_findings(extent, header, names, label),
    )
    check_cell_sizes(result.frame, where)
    result.reject(suspicious_rows(result.frame))
    return result


def _cell_name(row: int, column: int) -> str:
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row}"


def _unreadable_findings(
    extent: SheetExtent, header: int, names: list[str], label: str
) -> pl.DataFrame:
    """A warning for each data cell read as empty because it holds no value: an Excel error,
    or a formula whose result the workbook does not hold (written by a program, not saved by
    Excel). Without it such a cell vanished without a word."""
    cells = [
        (row, column, what)
        for row, column, what in extent.unreadable
        if row > header and 0 <= column - extent.first_column < len(names)
    ]
    if not cells:
        return empty_findings()
    messages = [
        f"cell {_cell_name(row, column)} holds the Excel error {what}: read as empty"
        if what
        else f"cell {_cell_name(row, column)} is a formula with no saved result: read as empty"
        for row, column, what in cells
    ]
    return findings_frame(
        pl.DataFrame(
            {
                "column": [names[column - extent.first_column] for _, column, _ in cells],
                "source_row": [row for row, _, _ in cells],
                "value": [what or None for _, _, what in cells],
                "message": messages,
            },
            schema={
                "column": pl.String,
                "source_row": pl.Int64,
                "value": pl.String,
                "message": pl.String,
            },
        ).with_columns(
            rule_columns(
                "ING-CELL", "warning", "conformance", subcategory="value", source_file=label
            )
        )
    )
