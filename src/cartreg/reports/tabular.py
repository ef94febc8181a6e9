"""Findings as CSV or XLSX for sites, safe to open in a spreadsheet (see cartreg.spreadsheet)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cartreg import spreadsheet

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


def findings_table(report: Report) -> pl.DataFrame:
    """One row per finding with the site's guidance, every text cell neutralized."""
    guidance = report.guidance()
    frame = report.findings.with_columns(
        pl.col("rule_id")
        .replace_strict(guidance, default=None, return_dtype=pl.String)
        .alias("guidance")
    ).select(COLUMNS)
    return spreadsheet.safe_frame(frame)


def write_csv(report: Report, path: Path) -> None:
    spreadsheet.write_csv(findings_table(report), path)


def write_xlsx(report: Report, path: Path) -> None:
    spreadsheet.write_xlsx(path, {"findings": findings_table(report)})
