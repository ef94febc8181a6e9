"""The site scorecard: how each site's queries and data quality evolve (docs/queries.md).

Per site: open / answered / closed queries in total and per 100 patients, median days to the
site's first response and to closing, aging of open queries, reopen rate, share waived, and the
trend of findings per 100 patients by version and category. :func:`scorecard` computes the
numbers (the JSON); :func:`render_html` draws them as one self-contained page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from cartreg import __version__
from cartreg.queries.lifecycle import ANSWERED, CLOSED, OPEN, UNOBTAINABLE, WAIVED, site_queries
from cartreg.registry.store import Registry

SCORECARD_VERSION = "1.0.0"
CATEGORIES = ("conformance", "completeness", "plausibility")
AGING_BINS = ("0-30", "31-90", ">90")
TREND_SEVERITIES = ("error", "warning")
DEFINITIONS: dict[str, str] = {
    "patients": "patients in the site's latest stored version",
    "queries": "queries ever opened for the site, by current state (closed: resolved, waived "
    "or unobtainable)",
    "per_100_patients": "query count × 100 / patients",
    "median_days_to_first_response": "median over answered queries of the days from opening to "
    "the site's first answer",
    "median_days_to_close": "median over queries closed at least once of the days from opening "
    "to the first closing",
    "open_aging": "open or answered queries by whole days since they were last opened or "
    "reopened, as of the scorecard date: 0-30, 31-90, >90",
    "reopen_rate": "queries reopened at least once / queries closed at least once",
    "share_waived": "closed queries now waived / closed queries",
    "trend": "per stored version: error and warning findings the version's report shows "
    "(waived ones left out) per 100 patients of that version, by Kahn category",
}


def _days(later: pl.Expr, earlier: pl.Expr) -> pl.Expr:
    return (later - earlier).dt.total_seconds() / 86400.0


def _median(frame: pl.DataFrame, column: str) -> float | None:
    if frame.height == 0:
        return None
    value = frame[column].median()
    return round(float(value), 2) if isinstance(value, int | float) else None


def _ratio(part: int, whole: int, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


def _per_100(count: int, patients: int) -> float | None:
    return round(100.0 * count / patients, 2) if patients else None


def _versions(registry: Registry) -> pl.DataFrame:
    return registry.frame(
        """
        SELECT s.site_id, s.version, s.status, s.submission_id,
               CAST(timezone('UTC', s.submitted_at) AS DATE) AS submitted_on,
               CAST(coalesce((SELECT t.n_rows FROM submission_tables t
                              WHERE t.submission_id = s.submission_id
                                AND t.table_name = 'patients'), 0) AS BIGINT) AS patients
        FROM submissions s WHERE s.version IS NOT NULL
        ORDER BY s.site_id, s.version
        """
    )


def _trend_findings(registry: Registry) -> pl.DataFrame:
    severities = ", ".join(f"'{s}'" for s in TREND_SEVERITIES)
    return registry.frame(
        f"""
        SELECT f.submission_id, coalesce(f.category, 'unknown') AS category,
               CAST(count(*) AS BIGINT) AS n
        FROM submission_findings f
        LEFT JOIN (SELECT DISTINCT submission_id, finding_id, suppressed
                   FROM finding_fingerprints) p
          ON p.submission_id = f.submission_id AND p.finding_id = f.finding_id
        WHERE NOT coalesce(p.suppressed, false) AND f.severity IN ({severities})
        GROUP BY ALL
        """
    )


def _events(registry: Registry) -> pl.DataFrame:
    return registry.frame(
        "SELECT e.query_id, q.site_id, timezone('UTC', e.event_at) AS event_at, e.action, "
        "e.from_state, e.to_state FROM query_events e JOIN queries q USING (query_id) "
        "ORDER BY e.event_id"
    )


def _site_card(
    site: str,
    versions: pl.DataFrame,
    queries: pl.DataFrame,
    events: pl.DataFrame,
    findings: pl.DataFrame,
    as_of: dt.datetime,
) -> dict[str, Any]:
    latest = versions.row(versions.height - 1, named=True)
    patients = int(latest["patients"])
    state, resolution = pl.col("state"), pl.col("resolution")
    counts = {
        "total": queries.height,
        OPEN: queries.filter(state == OPEN).height,
        ANSWERED: queries.filter(state == ANSWERED).height,
        CLOSED: queries.filter(state == CLOSED).height,
        "resolved": queries.filter((state == CLOSED) & (resolution == "resolved")).height,
        WAIVED: queries.filter((state == CLOSED) & (resolution == WAIVED)).height,
        UNOBTAINABLE: queries.filter((state == CLOSED) & (resolution == UNOBTAINABLE)).height,
    }
    opened = queries.select("query_id", "opened_at")
    first_answer = (
        events.filter(pl.col("action") == "answer")
        .group_by("query_id")
        .agg(pl.col("event_at").min().alias("at"))
        .join(opened, on="query_id")
        .with_columns(_days(pl.col("at"), pl.col("opened_at")).alias("days"))
    )
    first_close = (
        events.filter((pl.col("to_state") == CLOSED) & (pl.col("from_state") != CLOSED))
        .group_by("query_id")
        .agg(pl.col("event_at").min().alias("at"))
        .join(opened, on="query_id")
        .with_columns(_days(pl.col("at"), pl.col("opened_at")).alias("days"))
    )
    reopened = events.filter(pl.col("action") == "reopen")["query_id"].n_unique()
    last_opened = (
        events.filter(pl.col("to_state") == OPEN)
        .group_by("query_id")
        .agg(pl.col("event_at").max().alias("since"))
    )
    waiting = (
        queries.filter(state.is_in([OPEN, ANSWERED]))
        .join(last_opened, on="query_id", how="left")
        .with_columns(
            _days(pl.lit(as_of.replace(tzinfo=None)), pl.coalesce("since", "opened_at"))
            .floor()
            .alias("age")
        )
    )
    age = pl.col("age")
    aging = dict(
        zip(
            AGING_BINS,
            (
                waiting.filter(age <= 30).height,
                waiting.filter((age > 30) & (age <= 90)).height,
                waiting.filter(age > 90).height,
            ),
            strict=True,
        )
    )
    trend = []
    for version in versions.iter_rows(named=True):
        found = findings.filter(pl.col("submission_id") == version["submission_id"])
        by_category = {c: 0 for c in CATEGORIES}
        for category, n in found.select("category", "n").iter_rows():
            by_category[category] = by_category.get(category, 0) + int(n)
        n_patients = int(version["patients"])
        trend.append(
            {
                "version": int(version["version"]),
                "status": version["status"],
                "submitted_on": version["submitted_on"].isoformat(),
                "patients": n_patients,
                "findings": by_category,
                "findings_per_100_patients": {
                    c: _per_100(n, n_patients) for c, n in by_category.items()
                },
                "total_per_100_patients": _per_100(sum(by_category.values()), n_patients),
            }
        )
    return {
        "site_id": site,
        "latest_version": int(latest["version"]),
        "patients": patients,
        "queries": counts,
        "per_100_patients": {
            k: _per_100(counts[k], patients) for k in ("total", OPEN, ANSWERED, CLOSED)
        },
        "answered_ever": first_answer.height,
        "median_days_to_first_response": _median(first_answer, "days"),
        "closed_ever": first_close.height,
        "median_days_to_close": _median(first_close, "days"),
        "open_aging": aging,
        "reopened": reopened,
        "reopen_rate": _ratio(reopened, first_close.height),
        "share_waived": _ratio(counts[WAIVED], counts[CLOSED]),
        "trend": trend,
    }


def scorecard(registry: Registry, *, as_of: dt.datetime, registry_name: str = "") -> dict[str, Any]:
    """Every site's scorecard as a JSON-ready dict (times in UTC)."""
    versions = _versions(registry)
    queries = site_queries(registry)
    events = _events(registry)
    findings = _trend_findings(registry)
    sites = []
    for site in versions["site_id"].unique().sort().to_list():
        sites.append(
            _site_card(
                site,
                versions.filter(pl.col("site_id") == site),
                queries.filter(pl.col("site_id") == site),
                events.filter(pl.col("site_id") == site),
                findings,
                as_of,
            )
        )
    return {
        "scorecard_version": SCORECARD_VERSION,
        "tool": {"name": "cartreg", "version": __version__},
        "registry": registry_name,
        "as_of": as_of.replace(microsecond=0).isoformat(),
        "definitions": DEFINITIONS,
        "sites": sites,
    }


_COLORS = {
    "conformance": "#3b6ea5",
    "completeness": "#c9822b",
    "plausibility": "#7a4fa0",
    "unknown": "#888888",
}


def trend_svg(site: dict[str, Any]) -> str:
    """Findings per 100 patients by version (x) and category (one line each), inline SVG."""
    from markupsafe import escape

    trend = site["trend"]
    width, height, left, bottom, top, right = 560, 230, 48, 34, 14, 150
    categories = sorted({c for point in trend for c in point["findings_per_100_patients"]})
    values = [point["findings_per_100_patients"][c] or 0.0 for point in trend for c in categories]
    peak = max([*values, 1.0])
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(trend) - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if len(trend) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h * (1 - value / peak)

    sid = escape(site["site_id"])
    parts = [
        f'<svg class="trend" role="img" aria-label="Findings per 100 patients by version, '
        f'{sid}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
        'font-size="11">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
        f'<text x="4" y="{top + 4}">{peak:.4g}</text>',
        f'<text x="4" y="{top + plot_h}">0</text>',
        f'<text x="{left + plot_w / 2 - 20:.1f}" y="{height - 4}">version</text>',
    ]
    for i, point in enumerate(trend):
        parts.append(f'<text x="{x(i) - 4:.1f}" y="{top + plot_h + 14}">{point["version"]}</text>')
    for k, category in enumerate(categories):
        color = _COLORS.get(category, "#888888")
        points = [
            (x(i), y(point["findings_per_100_patients"].get(category) or 0.0))
            for i, point in enumerate(trend)
        ]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for px, py in points:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>')
        ly = top + 14 + 16 * k
        parts.append(
            f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
        )
        parts.append(f'<text x="{left + plot_w + 26}" y="{ly}">{escape(category)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(card: dict[str, Any]) -> str:
    """The scorecard as one self-contained HTML page (no script, no network)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cartreg.queries", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    charts = {site["site_id"]: trend_svg(site) for site in card["sites"]}
    return env.get_template("scorecard.html.j2").render(card=card, charts=charts)
