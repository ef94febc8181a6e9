"""Findings as CSV or XLSX for sites, safe to open in a spreadsheet.

Any text cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab / carriage return) could be run
as a formula by Excel or LibreOffice; it is prefixed with an apostrophe (OWASP CSV injection).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from cartreg.validation import Report

COLUMNS: tuple[str, ...] = (
    "severity",
    "rule_id",
    "site_id",
    "source_file",
    "source_row",
    "table",
    "column",
    "value",
    "message",
    "guidance",
    "category",
    "subcategory",
    "finding_id",
)
_FORMULA_START = r"^[=+\-@\t\r]"


def neutralize(expr: pl.Expr) -> pl.Expr:
    """Prefix text that a spreadsheet would read as a formula with an apostrophe."""
    # The untouched branch comes first so the result keeps the input column's name.
    return pl.when(~expr.str.contains(_FORMULA_START)).then(expr).otherwise(pl.lit("'") + expr)


def findings_table(report: Report) -> pl.DataFrame:
    """One row per finding with the site's guidance, every text cell neutralized."""
    guidance = report.guidance()
    frame = report.findings.with_columns(
        pl.col("rule_id")
        .replace_strict(guidance, default=None, return_dtype=pl.String)
        .alias("guidance")
    ).select(COLUMNS)
    text = [c for c, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns([neutralize(pl.col(c)).alias(c) for c in text])


def write_csv(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    findings_table(report).write_csv(path)


def write_xlsx(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_workbook(findings_table(report), path)


def _write_workbook(frame: pl.DataFrame, path: Path) -> None:
    import xlsxwriter

    # strings_to_formulas=False is a second guard: xlsxwriter then never writes a formula cell.
    workbook = xlsxwriter.Workbook(
        str(path), {"strings_to_formulas": False, "strings_to_urls": False}
    )
    try:
        sheet = workbook.add_worksheet("findings")
        bold = workbook.add_format({"bold": True})
        for j, name in enumerate(frame.columns):
            sheet.write_string(0, j, name, bold)
        for i, row in enumerate(frame.iter_rows(), start=1):  # writing cells is per cell by nature
            for j, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, int | float):
                    sheet.write_number(i, j, value)
                else:
                    sheet.write_string(i, j, str(value))
        sheet.autofilter(0, 0, max(frame.height, 1), len(frame.columns) - 1)
        sheet.freeze_panes(1, 0)
    finally:
        workbook.close()
