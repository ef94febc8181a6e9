"""Result tables: the flow of patients, Table 1, endpoints, responses, follow-up, models.

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
    ("best_response", "Best response to CAR T (90 days)", "categorical"),
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


def _fmt(value: float | None, digits: int = 1) -> str:
    return "NR" if value is None else f"{value:.{digits}f}"


def flow_table(flow: dict[str, Any]) -> pl.DataFrame:
    """Received -> excluded (by reason) -> analysed, overall and per site."""
    sites = sorted(flow["received"]["by_site"])

    def row(step: str, block: dict[str, Any]) -> dict[str, str]:
        return {
            "step": step,
            "total": str(block["total"]),
            **{site: str(block["by_site"].get(site, 0)) for site in sites},
        }

    rows = [row("Patients received", flow["received"])]
    rows += [row(f"Excluded: {e['reason']}", e) for e in flow["excluded"]]
    rows.append(row("Patients analysed", flow["analysed"]))
    rows += [
        row(f"Analysed, {a['covariate']} set to unknown: {a['reason']}", a)
        for a in flow["covariates_set_to_unknown"]
    ]
    return pl.DataFrame(rows)


def summary_table(results: dict[str, Any]) -> pl.DataFrame:
    """One row per endpoint: estimator, n, events, median and its 95% CI."""
    rows = []
    for paramcd, block in results["endpoints"].items():
        ci = f"{_fmt(block['ci_low'])}-{_fmt(block['ci_high'])}"
        if block["estimator"] == "observed_median_range":
            ci += f" (range {_fmt(block['min_months'])}-{_fmt(block['max_months'])})"
        events = str(block["events"])
        if block["estimator"] == "aalen_johansen":
            events += f" (+{block['competing_events']} competing)"
        rows.append(
            {
                "endpoint": paramcd,
                "name": block["name"],
                "estimator": block["estimator"],
                "n": str(block["n"]),
                "events": events,
                "median (months)": _fmt(block["median_months"]),
                "95% CI": ci,
            }
        )
    return pl.DataFrame(rows)


def proportions_table(proportions: dict[str, list[dict[str, Any]]]) -> pl.DataFrame:
    """Response rates (ITT and evaluable) and salvage uptake with exact 95% intervals."""
    rows = []
    for code, entries in proportions.items():
        if code == "SALV_CR":
            continue
        for e in entries:
            rows.append(
                {
                    "measure": str(e["label"]),
                    "n / N": f"{e['numerator']}/{e['denominator']}",
                    "rate": "-" if e["estimate"] is None else f"{100 * e['estimate']:.1f}%",
                    "95% CI (exact)": "-"
                    if e["ci_low"] is None
                    else f"{100 * e['ci_low']:.1f}-{100 * e['ci_high']:.1f}%",
                }
            )
    return pl.DataFrame(rows)


def follow_up_table(follow_up: dict[str, Any]) -> pl.DataFrame:
    """Median follow-up (reverse KM) for vital status and progression, overall and by site."""

    def row(label: str, vital: dict[str, Any], progression: dict[str, Any]) -> dict[str, str]:
        v, p = vital["median_months"], progression["median_months"]
        return {
            "site": label,
            "vital status, median (95% CI)": f"{_fmt(v)} ({_fmt(vital['ci_low'])}-"
            f"{_fmt(vital['ci_high'])})",
            "progression, median (95% CI)": f"{_fmt(p)} ({_fmt(progression['ci_low'])}-"
            f"{_fmt(progression['ci_high'])})",
            "ratio": "-" if v is None or p is None or v == 0 else f"{p / v:.2f}",
        }

    rows = [row("All sites", follow_up["vital_status"], follow_up["progression"])]
    for site, block in follow_up["by_site"].items():
        marked = f"{site} (short)" if block["short"] else site
        rows.append(row(marked, block["vital_status"], block["progression"]))
    return pl.DataFrame(rows)


def model_table(model: dict[str, Any]) -> pl.DataFrame:
    """Hazard ratios with 95% CI, p and (Cox) the cox.zph test of each covariate."""
    if model["status"] != "fitted":
        return pl.DataFrame({"model": [model["model"]], "status": [model["message"]]})
    ph = {p["term"]: p["p_value"] for p in model.get("ph_test", [])}
    rows = []
    for c in model["coefficients"]:
        row = {
            "covariate": c["label"],
            "HR": f"{c['hazard_ratio']:.2f}",
            "95% CI": f"{c['ci_low']:.2f}-{c['ci_high']:.2f}",
            "p": f"{c['p_value']:.3g}",
        }
        if "ph_test" in model:
            row["PH test p"] = "-" if ph.get(c["term"]) is None else f"{ph[c['term']]:.3g}"
        rows.append(row)
    return pl.DataFrame(rows)


def to_markdown(frame: pl.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame of printable values."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row) + " |"
        for row in frame.iter_rows()
    ]
    return "\n".join([header, rule, *body]) + "\n"
