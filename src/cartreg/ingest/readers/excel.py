"""Excel workbooks as text, one sheet at a time, with the header on any row.

fastexcel (calamine) reads every cell as a string: real date cells arrive as
``2021-03-05 00:00:00`` (the date parser strips the midnight time), dates typed as text stay as
typed, and serial day numbers stay numbers for the ``EXCEL`` date format to convert.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cartreg.errors import InputError, did_you_mean
from cartreg.ingest.readers.base import ReadResult, drop_blank_rows, require_file, with_lineage


def sheet_names(path: Path) -> list[str]:
    import fastexcel

    require_file(path)
    try:
        return list(fastexcel.read_excel(path).sheet_names)
    except Exception as exc:  # fastexcel raises its own error classes for corrupt files
        raise InputError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__})") from None


def read_excel_text(
    path: Path,
    *,
    sheet: str | None = None,
    header_row: int = 1,
    label: str | None = None,
) -> ReadResult:
    """Read one sheet; ``header_row`` is the 1-based row of the column names."""
    import fastexcel

    names = sheet_names(path)
    sheet = sheet or names[0]
    if sheet not in names:
        hint = did_you_mean(sheet, names) or f"sheets: {', '.join(names)}"
        raise InputError(f"{path}: no sheet '{sheet}'", hint=hint)
    label = label or f"{path.name}#{sheet}"
    try:
        loaded = fastexcel.read_excel(path).load_sheet(
            sheet, header_row=header_row - 1, dtypes="string"
        )
        frame = loaded.to_polars()
    except Exception as exc:  # fastexcel raises its own error classes
        raise InputError(f"{path}#{sheet}: cannot read sheet ({type(exc).__name__})") from None
    frame = frame.rename({c: str(c).strip() for c in frame.columns})
    frame = frame.select(pl.all().cast(pl.String))
    # Data starts on the row after the header, numbered as the spreadsheet shows it.
    frame = with_lineage(frame, label, header_row + 1)
    return ReadResult(frame=drop_blank_rows(frame))
