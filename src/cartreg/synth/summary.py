"""Calibration statistics of a truth cohort, each with the target range it must land in.

Targets come from the founding study (Wudhikarn et al., Blood 2021: CR >80%, median time to
progression 5.5 months among progressors, 79% salvage, 43% salvage CR, 58% after blinatumomab
and/or inotuzumab, median survival after progression 7.5 months, longer after a longer remission)
and the 420-patient multicenter cohort (relapse phenotypes 50/41/7% CD19+/CD19-/lineage switch).
Ranges are about the central 90-95% of what a 240-patient cohort gives by chance
(checked over 40 seeds); a cohort of tens of thousands lands near the centre.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import numpy as np
import polars as pl

DAYS_PER_MONTH = 30.4375
OBE_CEL_APPROVAL = date(2024, 11, 8)

# statistic -> (description, low, high)
TARGETS: dict[str, tuple[str, float, float]] = {
    "cr_rate": ("CR/CRi after CAR T (all infused)", 0.74, 0.88),
    "progression_risk_ratio_high_vs_low": (
        "progression risk, high vs low burden (ratio)",
        1.4,
        4.0,
    ),
    "median_ttp_months_progressors": ("median time to progression, progressors (months)", 4.0, 7.0),
    "salvage_rate": ("progressors given salvage", 0.70, 0.88),
    "salvage_cr_rate": ("CR/CRi to first salvage line", 0.34, 0.54),
    "salvage_cr_rate_blin_ino": ("CR/CRi after blinatumomab and/or inotuzumab", 0.42, 0.76),
    "median_pps_months": ("median survival after progression, KM (months)", 5.5, 9.5),
    "pps_ratio_long_vs_short_remission": (
        "median PPS, remission >=6 vs <6 months (ratio)",
        1.2,
        10.0,
    ),
    "phenotype_cd19_pos": ("CD19-positive, of known relapse phenotypes", 0.40, 0.62),
    "phenotype_cd19_neg": ("CD19-negative incl. dim/partial, of known", 0.30, 0.52),
    "phenotype_lineage_switch": ("lineage switch, of known", 0.02, 0.13),
    "phenotype_unknown": ("relapse phenotype unknown", 0.02, 0.20),
    "reinfusions": ("CAR T reinfusions (count)", 1, float("inf")),
    "consolidative_hct": ("consolidative HCT in remission (count)", 1, float("inf")),
    "non_relapse_deaths": ("deaths without progression (count)", 1, float("inf")),
    "obe_cel_before_approval": ("obe-cel infused before 2024-11-08 (count)", 0, 0),
}


def km_median(time: np.ndarray, event: np.ndarray) -> float:
    """Kaplan–Meier median: the first time the survival estimate drops to 0.5 or below."""
    order = np.lexsort((~event.astype(bool), time))
    t, e = time[order], event[order].astype(bool)
    at_risk = t.size - np.arange(t.size)
    surv = np.cumprod(np.where(e, 1.0 - 1.0 / at_risk, 1.0))
    below = np.nonzero(surv <= 0.5)[0]
    return float(t[below[0]]) if below.size else float("nan")


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def cohort_statistics(tables: Mapping[str, pl.DataFrame]) -> dict[str, float]:
    """The calibration statistics of a truth cohort (CDM tables)."""
    inf = tables["car_t_infusions"]
    asm = tables["disease_assessments"]
    prog = tables["progression_events"].filter(pl.col("event_seq") == 1)
    sal = tables["salvage_treatments"]
    hct = tables["transplants"]
    fu = tables["follow_up"]
    index = inf.filter(pl.col("is_index_infusion"))
    n = index.height

    cr_keys = asm.filter(
        pl.col("response").is_in(["CR", "CRi"]) & (pl.col("assessment_day") <= 90)
    )["patient_key"].unique()
    burden = index.select(
        "patient_key",
        "disease_burden",
        pl.col("patient_key").is_in(prog["patient_key"].implode()).alias("p"),
    )
    rates = burden.group_by("disease_burden").agg(pl.col("p").mean())
    rate = dict(zip(rates["disease_burden"].to_list(), rates["p"].to_list(), strict=True))

    first_line = sal.filter(pl.col("line_number") == 1)
    per_patient = first_line.group_by("patient_key").agg(
        pl.col("best_response").is_in(["CR", "CRi"]).any().alias("cr"),
        pl.col("category").is_in(["BLINATUMOMAB", "INOTUZUMAB"]).any().alias("ab"),
    )
    ab = per_patient.filter(pl.col("ab"))

    pps = prog.join(fu, on="patient_key").select(
        (pl.coalesce("death_date", "last_contact_date") - pl.col("progression_date"))
        .dt.total_days()
        .alias("t"),
        pl.col("death_date").is_not_null().alias("e"),
        (pl.col("progression_day") - pl.col("remission_day")).alias("rem"),
    )
    long_rem = pps.filter(pl.col("rem") >= 183)
    short_rem = pps.filter(pl.col("rem").is_null() | (pl.col("rem") < 183))

    def median_of(frame: pl.DataFrame) -> float:
        if frame.height == 0:
            return float("nan")
        return km_median(frame["t"].to_numpy(), frame["e"].to_numpy()) / DAYS_PER_MONTH

    pheno = prog["antigen_phenotype"]
    known = pheno.filter(pheno != "UNKNOWN")
    n_known = max(known.len(), 1)
    dead_no_prog = fu.filter(
        (pl.col("vital_status") == "DEAD")
        & ~pl.col("patient_key").is_in(prog["patient_key"].implode())
    ).height
    return {
        "cr_rate": cr_keys.len() / max(n, 1),
        "progression_risk_ratio_high_vs_low": rate.get("HIGH", 0.0)
        / max(rate.get("LOW", 0.0), 1e-9),
        "median_ttp_months_progressors": _num(prog["progression_day"].median()) / DAYS_PER_MONTH,
        "salvage_rate": per_patient.height / max(prog.height, 1),
        "salvage_cr_rate": _num(per_patient["cr"].mean()),
        "salvage_cr_rate_blin_ino": _num(ab["cr"].mean()),
        "median_pps_months": median_of(pps),
        "pps_ratio_long_vs_short_remission": median_of(long_rem) / max(median_of(short_rem), 1e-9),
        "phenotype_cd19_pos": float((known == "CD19_POS").sum() / n_known),
        "phenotype_cd19_neg": float(known.is_in(["CD19_NEG", "CD19_DIM_PARTIAL"]).sum() / n_known),
        "phenotype_lineage_switch": float((known == "LINEAGE_SWITCH").sum() / n_known),
        "phenotype_unknown": float((pheno == "UNKNOWN").sum() / max(pheno.len(), 1)),
        "reinfusions": float(inf["is_reinfusion"].sum()),
        "consolidative_hct": float((hct["intent"] == "CONSOLIDATION").sum()),
        "non_relapse_deaths": float(dead_no_prog),
        "obe_cel_before_approval": float(
            inf.filter(
                (pl.col("product") == "obecabtagene_autoleucel")
                & (pl.col("infusion_date") < OBE_CEL_APPROVAL)
            ).height
        ),
    }


def calibration_table(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per statistic: value, target range and PASS/FAIL."""
    stats = cohort_statistics(tables)
    rows = []
    for key, (label, low, high) in TARGETS.items():
        value = float(stats[key])
        ok = bool(np.isfinite(value) and low <= value <= high)
        rows.append(
            {
                "statistic": key,
                "description": label,
                "value": value,
                "low": float(low),
                "high": float(high),
                "status": "PASS" if ok else "FAIL",
            }
        )
    return pl.DataFrame(rows)
