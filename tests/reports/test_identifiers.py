"""Reports never show direct identifiers (birth dates are masked in every format)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from cartreg.reports.html import render_html
from cartreg.reports.json_report import render_json
from cartreg.reports.tabular import write_csv, write_xlsx
from cartreg.reports.terminal import report_renderables
from cartreg.validation import Report

from .conftest import BIRTH_DATE


def test_birth_date_never_rendered(report: Report, tmp_path: Path) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200)
    for item in report_renderables(report):
        console.print(item)
    write_csv(report, tmp_path / "f.csv")
    write_xlsx(report, tmp_path / "f.xlsx")
    texts = {
        "json": render_json(report),
        "html": render_html(report),
        "terminal": buffer.getvalue(),
        "csv": (tmp_path / "f.csv").read_text(encoding="utf-8"),
    }
    for name, text in texts.items():
        assert BIRTH_DATE not in text, name
    assert "***" in texts["json"]
    import zipfile

    with zipfile.ZipFile(tmp_path / "f.xlsx") as archive:
        xml = "".join(archive.read(n).decode("utf-8", "ignore") for n in archive.namelist())
    assert BIRTH_DATE not in xml


def test_terminal_survives_markup_in_values(report: Report) -> None:
    import polars as pl

    from cartreg.reports.terminal import findings_table

    tricky = report.findings.with_columns(pl.lit("[/]oops[bold]").alias("value"))
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(findings_table(tricky))
    assert "[/]oops[bold]" in buffer.getvalue()
