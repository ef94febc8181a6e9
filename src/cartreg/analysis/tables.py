"""Result tables: Table 1 (baseline characteristics) and the salvage response table.

Tables are polars frames of strings ready to print; ``to_markdown`` renders any of them.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartreg.analysis.stats import proportion

# (column, label, kind): "continuous" -> median (Q1-Q3); "categorical" -> n (%) per level
TABLE1_ROWS: tuple[tuple[str, str, str], ...] = (
    ("age", "Age at infusion, years", "continuous"),
    ("sex", "Sex", "categorical"),
    ("ph_status", "Ph / BCR::ABL1 status", "categorical"),
    ("kmt2a_rearranged", "KMT2A rearranged", "categorical"),
    ("n_prior_lines", "Prior lines of therapy", "continuous"),
    ("prior_allohct", "Prior allogeneic HCT", "categorical"),
    ("prior_blinatumomab", "Prior blinatumomab", "categorical"),
    ("product", "CAR T product", "categorical"),
    ("pre_bm_blast_pct", "Marrow blasts before infusion, %", "continuous"),
    ("burden", "Disease burden at infusion", "categorical"),
)
AGENT_CLASS_LABELS = {
    "ANTIBODY": "Blinatumomab and/or inotuzumab",
    "CAR_T": "CAR T (reinfusion or new product)",
    "CHEMOTHERAPY": "Chemotherapy",
    "HCT": "Allogeneic HCT",
    "OTHER": "Other",
}


def _fmt_number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value - round(value)) > 1e-9 else f"{value:.0f}"


def _continuous(series: pl.Series) -> str:
    values = series.drop_nulls().cast(pl.Float64)
    if values.len() == 0:
        return "-"
    med = values.median()
    q1 = values.quantile(0.25, interpolation="linear")
    q3 = values.quantile(0.75, interpolation="linear")
    return f"{_fmt_number(med)} ({_fmt_number(q1)}-{_fmt_number(q3)})"  # type: ignore[arg-type]


def table_one(baseline: pl.DataFrame) -> pl.DataFrame:
    """Baseline characteristics overall and by site (columns: characteristic, level, groups)."""
    sites = sorted(baseline["site_id"].drop_nulls().unique().to_list())
    groups: list[tuple[str, pl.DataFrame]] = [("Overall", baseline)] + [
        (site, baseline.filter(pl.col("site_id") == site)) for site in sites
    ]
    rows: list[dict[str, str]] = [
        {"characteristic": "Patients, n", "level": "", **{g: str(f.height) for g, f in groups}}
    ]
    for column, label, kind in TABLE1_ROWS:
        if column not in baseline.columns or baseline[column].null_count() == baseline.height:
            continue
        if kind == "continuous":
            rows.append(
                {
                    "characteristic": f"{label}, median (IQR)",
                    "level": "",
                    **{g: _continuous(f[column]) for g, f in groups},
                }
            )
            continue
        levels = sorted(str(v) for v in baseline[column].fill_null("Missing").unique().to_list())
        for level in levels:
            cells: dict[str, str] = {}
            for g, f in groups:
                count = f.filter(
                    pl.col(column).cast(pl.String).fill_null("Missing") == level
                ).height
                pct = 100 * count / f.height if f.height else 0.0
                cells[g] = f"{count} ({pct:.0f}%)"
            rows.append({"characteristic": label, "level": level, **cells})
    return pl.DataFrame(rows)


def salvage_response(responses: pl.DataFrame) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """CR rate to salvage overall and by agent class, with Clopper-Pearson 95% CIs.

    Returns the display table and the JSON-ready proportions.
    """
    groups: list[tuple[str, str, pl.DataFrame]] = [("OVERALL", "All salvaged patients", responses)]
    for code, label in AGENT_CLASS_LABELS.items():
        subset = responses.filter(pl.col("agent_class") == code)
        if subset.height:
            groups.append((code, label, subset))
    display: list[dict[str, str]] = []
    estimates: list[dict[str, Any]] = []
    for code, label, subset in groups:
        est = proportion(int(subset["aval"].sum()) if subset.height else 0, subset.height)
        estimates.append({"group": code, "label": label, **est})
        display.append(
            {
                "group": label,
                "CR / treated": f"{est['numerator']}/{est['denominator']}",
                "CR rate": "-" if est["estimate"] is None else f"{100 * est['estimate']:.1f}%",
                "95% CI (exact)": "-"
                if est["ci_low"] is None
                else f"{100 * est['ci_low']:.1f}-{100 * est['ci_high']:.1f}%",
            }
        )
    return pl.DataFrame(display), estimates


def to_markdown(frame: pl.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame of printable values."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row) + " |"
        for row in frame.iter_rows()
    ]
    return "\n".join([header, rule, *body]) + "\n"
