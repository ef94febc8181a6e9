"""Rich renderables for findings in a terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    import polars as pl

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def findings_summary(findings: pl.DataFrame) -> Table:
    """Counts by severity and rule."""
    table = Table(title="Findings by rule", show_lines=False)
    for name in ("severity", "rule_id", "table", "findings"):
        table.add_column(name, justify="right" if name == "findings" else "left")
    if findings.height == 0:
        return table
    counts = (
        findings.group_by("severity", "rule_id", "table").len().sort("severity", "rule_id", "table")
    )
    for severity, rule_id, table_name, n in counts.iter_rows():
        table.add_row(
            f"[{_STYLE.get(severity, '')}]{severity}[/]", rule_id, table_name or "", str(n)
        )
    return table


def findings_table(findings: pl.DataFrame, limit: int = 50) -> Table:
    """The first ``limit`` findings with their location (file, row, column) and message."""
    table = Table(title=f"Findings (first {min(limit, findings.height)} of {findings.height})")
    for name in ("severity", "rule", "site", "file", "row", "column", "value", "message"):
        table.add_column(name, overflow="fold")
    for row in findings.head(limit).iter_rows(named=True):
        table.add_row(
            f"[{_STYLE.get(row['severity'], '')}]{row['severity']}[/]",
            row["rule_id"],
            row["site_id"] or "",
            row["source_file"] or "",
            "" if row["source_row"] is None else str(row["source_row"]),
            row["column"] or "",
            row["value"] or "",
            row["message"],
        )
    return table
