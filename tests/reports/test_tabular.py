"""CSV/XLSX findings for sites: spreadsheet formulas are neutralized."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import openpyxl
import pytest

from cartreg.reports.tabular import findings_table, write_csv, write_xlsx
from cartreg.validation import Report

_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"


def test_csv_neutralizes_formulas(report: Report, tmp_path: Path) -> None:
    path = tmp_path / "findings.csv"
    write_csv(report, path)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    values = {r["rule_id"]: r["value"] for r in rows}
    assert values["ING-UNMAPPED"].startswith("'=HYPERLINK")
    assert values["ING-NUMBER"] == "-5"  # a plain number stays one (trial 13, point 13)
    assert values["ING-SENTINEL"] == "'@SUM(A1)"
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(_DANGEROUS) or re.fullmatch(_NUMBER, cell), cell
    assert {r["guidance"] for r in rows if r["rule_id"] == "PT-003"} == {
        next(rule.guidance for rule in report.rules if rule.id == "PT-003")
    }


def test_xlsx_has_no_formula_cells(report: Report, tmp_path: Path) -> None:
    path = tmp_path / "findings.xlsx"
    write_xlsx(report, path)
    sheet = openpyxl.load_workbook(path)["findings"]
    cells = [c for row in sheet.iter_rows(min_row=2) for c in row if c.value is not None]
    assert cells
    assert all(c.data_type != "f" for c in cells)
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert '\'=HYPERLINK("#x","click")' in texts
    assert sheet.max_row == report.findings.height + 1


@pytest.mark.parametrize("column", ["value", "message", "source_file"])
def test_every_text_column_is_neutralized(report: Report, column: str) -> None:
    table = findings_table(report)
    cells = table[column].drop_nulls()
    assert not cells.filter(~cells.str.contains(f"^{_NUMBER}$")).str.contains(r"^[=+\-@\t\r]").any()
