"""Every CSV and XLSX file cartreg writes, safe to open in a spreadsheet (OWASP CSV injection).

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return can be run as
a formula by Excel or LibreOffice (``=HYPERLINK(...)``, ``-1+cmd|' /C calc'!A0``). Such a cell,
header cells included, is written with a leading apostrophe, which spreadsheets show as text,
unless the whole cell is a plain decimal number (``-124``, ``+3``, ``-1.5e3``: ASCII digits,
one optional sign, point and exponent), which a spreadsheet reads as a number and never runs.
Typed numbers are never touched. The rule is stated in docs/security.md.

Writers call :func:`write_csv` or :func:`write_xlsx` here, never polars' ``write_csv`` or
xlsxwriter directly (a test checks the code base for it). The synthetic site exports of
``cartreg synth`` are the one exception: they imitate what a hospital system writes, sentinel
codes such as ``-99`` included, and hold no data from outside.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl
    import xlsxwriter

FORMULA_START = r"^[=+\-@\t\r]"
# A plain decimal number in ASCII digits (``-124``, ``+3``, ``-1.5e3``): a spreadsheet reads it
# as a number, never as a formula, so it keeps its sign and stays a number when opened.
PLAIN_NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_FORMULA_CHARS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(PLAIN_NUMBER.removeprefix("^").removesuffix("$"))


def neutralize_text(text: str) -> str:
    """``'=1+1`` for ``=1+1`` and ``'-1+cmd|...`` for ``-1+cmd|...``; ``-124`` and any text not
    starting with a formula character unchanged."""
    if text.startswith(_FORMULA_CHARS) and _PLAIN_NUMBER.fullmatch(text) is None:
        return "'" + text
    return text


def neutralize(expr: pl.Expr) -> pl.Expr:
    """:func:`neutralize_text` for a column of text."""
    import polars as pl

    # The untouched branch comes first so the result keeps the input column's name.
    formula = expr.str.contains(FORMULA_START) & ~expr.str.contains(PLAIN_NUMBER)
    return pl.when(~formula).then(expr).otherwise(pl.lit("'") + expr)


def safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every text cell and every column name neutralized (typed cells kept)."""
    import polars as pl

    text = [
        c
        for c, dtype in frame.schema.items()
        if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)
    ]
    safe = frame.with_columns(neutralize(pl.col(c).cast(pl.String)).alias(c) for c in text)
    renames = {c: neutralize_text(c) for c in safe.columns if neutralize_text(c) != c}
    return safe.rename(renames) if renames else safe


def write_csv(frame: pl.DataFrame, path: Path | None = None) -> str | None:
    """``frame`` as CSV at ``path`` (or returned as text when ``path`` is None), neutralized."""
    safe = safe_frame(frame)
    if path is None:
        return safe.write_csv()
    path.parent.mkdir(parents=True, exist_ok=True)
    safe.write_csv(path)
    return None


def new_workbook(path: Path) -> xlsxwriter.Workbook:
    """An empty XLSX workbook at ``path`` that never writes a formula or URL cell.

    For a workbook :func:`write_xlsx` cannot lay out (protected sheets, drop-downs): write its
    text cells through :func:`neutralize_text`.
    """
    import xlsxwriter

    path.parent.mkdir(parents=True, exist_ok=True)
    # strings_to_formulas=False is a second guard: xlsxwriter then never writes a formula cell.
    return xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_urls": False})


def write_xlsx(path: Path, sheets: Mapping[str, pl.DataFrame]) -> None:
    """One worksheet per frame: a bold, frozen, filterable header row over the cells.

    Text is written as text cells (never a formula) and neutralized as in CSV, so a cell copied
    out of the workbook is safe too; numbers and booleans keep their types.
    """
    workbook = new_workbook(path)
    try:
        bold = workbook.add_format({"bold": True})
        for name, frame in sheets.items():
            safe = safe_frame(frame)
            sheet = workbook.add_worksheet(neutralize_text(name)[:31])
            for j, column in enumerate(safe.columns):
                sheet.write_string(0, j, column, bold)
            for i, row in enumerate(safe.iter_rows(), start=1):  # cells are written one by one
                for j, value in enumerate(row):
                    if value is None:
                        continue
                    if isinstance(value, bool):
                        sheet.write_boolean(i, j, value)
                    elif isinstance(value, int | float):
                        sheet.write_number(i, j, value)
                    else:
                        sheet.write_string(i, j, neutralize_text(str(value)))
            if safe.width:
                sheet.autofilter(0, 0, max(safe.height, 1), safe.width - 1)
            sheet.freeze_panes(1, 0)
    finally:
        workbook.close()
