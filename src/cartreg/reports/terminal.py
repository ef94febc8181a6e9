"""Rich renderables for findings in a terminal."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from cartreg.validation import Report

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# Narrowest text report written to a file or a pipe (wider when a table needs it).
FILE_WIDTH = 160


def unwrapped_width(renderables: Sequence[Any], minimum: int = FILE_WIDTH) -> int:
    """The width at which no table of ``renderables`` folds a cell: a report written to a file
    or a pipe is read whole (and searched), not squeezed to a terminal's 80 columns."""
    probe = Console(file=io.StringIO(), width=1_000_000)
    return max([minimum, *(probe.measure(item).maximum for item in renderables)])


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
            # Data values may contain "[...]", which rich would read as markup.
            escape(row["rule_id"]),
            escape(row["site_id"] or ""),
            escape(row["source_file"] or ""),
            "" if row["source_row"] is None else str(row["source_row"]),
            escape(row["column"] or ""),
            escape(row["value"] or ""),
            escape(row["message"]),
        )
    return table


def report_renderables(report: Report, *, worst: int = 10, limit: int = 30) -> list[Any]:
    """Summary by severity and category, the worst rules, per-site counts, then the findings."""
    summary = report.summary()
    out: list[Any] = []
    head = Table(title=f"Validation: {summary['status']}", show_header=True)
    head.add_column("severity")
    head.add_column("findings", justify="right")
    for sev, n in summary["findings_by_severity"].items():
        head.add_row(f"[{_STYLE.get(sev, '')}]{sev}[/]", str(n))
    out.append(head)
    cats = Table(title="Findings by Kahn category")
    cats.add_column("category")
    cats.add_column("findings", justify="right")
    for cat, n in summary["findings_by_category"].items():
        cats.add_row(cat, str(n))
    out.append(cats)
    statuses = Table(title="Rules by status")
    statuses.add_column("status")
    statuses.add_column("rules", justify="right")
    for status, n in summary["rules_by_status"].items():
        statuses.add_row(status, str(n))
    out.append(statuses)
    failed = report.results.filter(pl.col("status").is_in(["FAILED", "ERROR"])).sort(
        ["num_violated", "rule_id"], descending=[True, False]
    )
    rules = Table(title=f"Worst rules (top {worst})")
    for name in ("rule", "severity", "status", "violated", "denominator", "%", "name"):
        rules.add_column(
            name, justify="right" if name in ("violated", "denominator", "%") else "left"
        )
    for row in failed.head(worst).iter_rows(named=True):
        pct = "" if row["pct_violated"] is None else f"{row['pct_violated']:.1f}"
        rules.add_row(
            row["rule_id"],
            f"[{_STYLE.get(row['severity'], '')}]{row['severity']}[/]",
            row["status"],
            str(row["num_violated"]),
            str(row["num_denominator"]),
            pct,
            row["name"],
        )
    out.append(rules)
    sites = Table(title="Findings by site")
    for name in ("site", "error", "warning", "info"):
        sites.add_column(name, justify="left" if name == "site" else "right")
    for row in summary["findings_by_site"]:
        sites.add_row(
            escape(row["site_id"]), str(row["error"]), str(row["warning"]), str(row["info"])
        )
    out.append(sites)
    if summary["expired_waivers"]:
        expired = Table(title="Expired waivers (their findings are reported again)")
        expired.add_column("finding_id")
        expired.add_column("expired")
        for item in summary["expired_waivers"]:
            expired.add_row(item["finding_id"], item["expires"])
        out.append(expired)
    if report.findings.height:
        out.append(findings_table(report.findings, limit=limit))
    return out
