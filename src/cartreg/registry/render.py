"""Renderings of registry reports: rich renderables for the terminal, and HTML."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    import polars as pl

    from cartreg.registry.diff import DiffReport

_STATUS_STYLE = {"accepted": "green", "rejected": "bold red", "noop": "dim"}


def status_table(status: pl.DataFrame) -> Table:
    table = Table(title="Registry: stored versions")
    # Narrow headers so the table fits 80 columns; `status --json` has every field.
    columns = {
        "site_id": "site",
        "version": "ver",
        "status": "status",
        "submitted_at": "submitted",
        "patients": "pat.",
        "events": "events",
        "errors": "err",
        "warnings": "warn",
        "noop_resubmissions": "no-op",
    }
    numeric = {"version", "patients", "events", "errors", "warnings", "noop_resubmissions"}
    for name, header in columns.items():
        table.add_column(
            header,
            justify="right" if name in numeric else "left",
            no_wrap=name in ("site_id", "status", "submitted_at"),
        )
    for row in status.iter_rows(named=True):
        style = _STATUS_STYLE.get(row["status"], "")
        cells = ["" if row[c] is None else str(row[c]) for c in columns]
        cells[2] = f"[{style}]{row['status']}[/]"
        cells[3] = str(row["submitted_at"])[:10]  # UTC date; --json has the time
        table.add_row(*cells)
    return table


def diff_renderables(report: DiffReport, limit: int = 50) -> list[Any]:
    """Header line, per-table summary, patients added/removed, first field changes, warnings."""
    base = f"version {report.base.version} ({report.base.status})" if report.base else "nothing"
    out: list[Any] = [
        f"[bold]{report.site_id}[/]: {base} → version {report.target.version} "
        f"({report.target.status})"
    ]
    summary = Table(title="Records by table")
    for name in ("table", "added", "removed", "changed"):
        summary.add_column(name, justify="left" if name == "table" else "right")
    for cells in report.summary().iter_rows():
        summary.add_row(*(str(v) for v in cells))
    out.append(summary)
    added, removed = report.patients("added"), report.patients("removed")
    out.append(f"patients added ({len(added)}): {', '.join(added) or '-'}")
    out.append(f"patients removed ({len(removed)}): {', '.join(removed) or '-'}")
    events = report.records.filter(report.records["table"] != "patients")
    if events.height:
        table = Table(
            title=f"Events added/removed (first {min(limit, events.height)} of {events.height})"
        )
        for name in ("table", "record_key", "change"):
            table.add_column(name)
        for event in events.head(limit).iter_rows(named=True):
            table.add_row(event["table"], event["record_key"], event["change"])
        out.append(table)
    if report.changes.height:
        table = Table(
            title=f"Changed values (first {min(limit, report.changes.height)} of "
            f"{report.changes.height})"
        )
        for name in ("table", "record_key", "column", "old", "new"):
            table.add_column(name, overflow="fold")
        for row in report.changes.head(limit).iter_rows(named=True):
            table.add_row(
                row["table"], row["record_key"], row["column"], row["old"] or "∅", row["new"] or "∅"
            )
        out.append(table)
    if report.findings.height:
        out.append(
            f"[yellow]warning: {report.findings.height} records lost[/] (in accepted version "
            f"{report.base.version if report.base else '?'}, missing now)"
        )
    return out


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Registry diff {{ d.site_id }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.warn{color:#8a5a00}.added{color:#176b00}.removed{color:#a00}
</style></head><body>
<h1>Site {{ d.site_id }}: what changed</h1>
<p>From {% if d['from'] %}version {{ d['from'].version }} ({{ d['from'].status }},
{{ d['from'].submitted_at }}){% else %}nothing{% endif %} to version {{ d.to.version }}
({{ d.to.status }}, {{ d.to.submitted_at }}).</p>
<h2>Summary</h2>
<table><tr><th>table</th><th>added</th><th>removed</th><th>changed</th></tr>
{% for r in d.summary %}<tr><td>{{ r.table }}</td><td>{{ r.added }}</td><td>{{ r.removed }}</td>
<td>{{ r.changed }}</td></tr>{% endfor %}</table>
<p class="added">Patients added: {{ d.patients_added | join(', ') or '-' }}</p>
<p class="removed">Patients removed: {{ d.patients_removed | join(', ') or '-' }}</p>
{% if d.findings %}<h2 class="warn">Records lost ({{ d.findings | length }})</h2>
<ul>{% for f in d.findings %}<li class="warn">{{ f.message }}</li>{% endfor %}</ul>{% endif %}
<h2>Records added or removed</h2>
<table><tr><th>table</th><th>record</th><th>change</th></tr>
{% for r in d.records %}<tr class="{{ r.change }}"><td>{{ r.table }}</td><td>{{ r.record_key }}</td>
<td>{{ r.change }}</td></tr>{% endfor %}</table>
<h2>Changed values</h2>
<table><tr><th>table</th><th>record</th><th>column</th><th>old</th><th>new</th></tr>
{% for c in d.changes %}<tr><td>{{ c.table }}</td><td>{{ c.record_key }}</td><td>{{ c.column }}</td>
<td>{{ c.old if c.old is not none else '∅' }}</td><td>{{ c.new if c.new is not none else '∅' }}</td>
</tr>{% endfor %}</table>
</body></html>
"""


def diff_html(report: DiffReport) -> str:
    """A self-contained HTML page of the diff (values escaped)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_HTML).render(d=report.to_dict())
