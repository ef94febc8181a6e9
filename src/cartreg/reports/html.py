"""A self-contained HTML report a coordinator can e-mail to a site.

One file: inline CSS, inline JavaScript (filter and sort the findings table), an inline SVG chart
of findings by category, and the documentation of every rule. No CDN, no network request (a
Content-Security-Policy forbids them). Every value is HTML-escaped by Jinja's autoescape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import escape

if TYPE_CHECKING:
    from cartreg.validation import Report

MAX_ROWS = 5000  # beyond this a browser table is unusable; the CSV/XLSX export has everything

_COLORS = {"conformance": "#3b6ea5", "completeness": "#c9822b", "plausibility": "#7a4fa0"}

_TEMPLATE = "report.html.j2"


def _chart(by_category: dict[str, int]) -> str:
    """A horizontal bar chart (inline SVG) of findings per Kahn category."""
    items = sorted(by_category.items())
    if not items:
        return '<p id="chart">No findings.</p>'
    width, bar_h, gap, label_w = 520, 22, 8, 130
    top = max(n for _, n in items) or 1
    height = len(items) * (bar_h + gap) + gap
    parts = [
        f'<svg id="chart" role="img" aria-label="Findings by category" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="12">'
    ]
    for i, (name, n) in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = max(2, int((width - label_w - 60) * n / top))
        color = _COLORS.get(name, "#888888")
        label = escape(name)
        parts.append(f'<text x="0" y="{y + 15}">{label}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{color}"/>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 15}">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    data = report.to_dict()
    guidance = report.guidance()
    rows: list[dict[str, Any]] = data["findings"][:MAX_ROWS]
    for row in rows:
        row["guidance"] = guidance.get(row["rule_id"], "")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cartreg.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = env.get_template(_TEMPLATE)
    return template.render(
        tool_version=data["tool"]["version"],
        cdm_version=data["cdm_version"],
        report_version=data["report_version"],
        generated_at=data["generated_at"],
        sites=data["source"].get("site_ids", []),
        summary=data["summary"],
        chart=_chart(data["summary"]["findings_by_category"]),
        rows=rows,
        truncated=len(data["findings"]) > MAX_ROWS,
        rules=data["rules"],
        stage_checks=data["stage_checks"],
    )
