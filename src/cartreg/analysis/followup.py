"""Follow-up: median follow-up by reverse Kaplan-Meier, and per-site completeness of the
progression follow-up against the vital-status follow-up.

* **Vital-status follow-up**: reverse KM of overall survival (time to the last day known alive,
  deaths "censored"): what OS can see.
* **Progression follow-up**: reverse KM of event-free survival (time to the last day known
  progression-free, progressions and deaths "censored"): what EFS, TTP and remission duration
  can see.

A site whose median progression follow-up is less than ``SHORT_RATIO`` of its median
vital-status follow-up gets a warning in the report: its progression-type endpoints are
censored early (typically a registry-style export whose follow-up forms, "progression since
the last report? no", are not mapped to ``follow_up.disease_status``).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartreg.analysis.stats import reverse_km_follow_up

SHORT_RATIO = 0.5


def _reverse(rows: pl.DataFrame) -> dict[str, Any]:
    return reverse_km_follow_up(
        rows["aval_months"].to_list(), (rows["evntcd"] == 0).cast(pl.Int8).to_list()
    )


def follow_up_summary(tte: pl.DataFrame) -> dict[str, Any]:
    """Overall and per-site reverse-KM medians, their ratio, and warnings for short sites."""
    os_rows = tte.filter(pl.col("paramcd") == "OS").sort("patient_key")
    efs_rows = tte.filter(pl.col("paramcd") == "EFS").sort("patient_key")
    out: dict[str, Any] = {
        "method": "reverse Kaplan-Meier (R: survfit(Surv(aval_months, evntcd == 0) ~ 1))",
        "vital_status": _reverse(os_rows),
        "progression": _reverse(efs_rows),
        "short_ratio": SHORT_RATIO,
        "by_site": {},
        "warnings": [],
    }
    sites = sorted(os_rows["site_id"].drop_nulls().unique().to_list())
    for site in sites:
        vital = _reverse(os_rows.filter(pl.col("site_id") == site))
        progression = _reverse(efs_rows.filter(pl.col("site_id") == site))
        v, p = vital["median_months"], progression["median_months"]
        ratio = p / v if (v is not None and p is not None and v > 0) else None
        short = ratio is not None and ratio < SHORT_RATIO
        out["by_site"][site] = {
            "vital_status": vital,
            "progression": progression,
            "ratio": ratio,
            "short": short,
        }
        if short:
            out["warnings"].append(
                f"Site {site}: median progression follow-up {p:.1f} months against"
                f" {v:.1f} months of vital-status follow-up: EFS, TTP and remission duration"
                " are censored early at this site. Check that its follow-up forms (disease"
                " status at each follow-up) are mapped to follow_up.disease_status."
            )
    return out
