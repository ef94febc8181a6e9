"""Response to CAR T: the day-28 response and the best response within the response window.

* **Day 28**: the disease assessment closest to day 28 within ``DAY28_WINDOW`` (28 +/- 7 days;
  at equal distance the earlier one).
* **Best response**: the best category among assessments after day 0 and up to
  ``RESPONSE_WINDOW_DAYS`` (90), ending early at the first progression (an assessment on that
  day still counts: it is the one that establishes refractory disease), the first salvage line
  or the first HCT after the infusion (assessments on or after those days do not count).
* A response is a **CR** when its code is a remission in the ``response`` vocabulary (CR, CRi,
  continued CR; CRh only with ``count_crh_as_cr``).
* **Evaluable**: at least one assessment with an evaluable response (not NOT_EVALUATED, UNKNOWN
  or missing) in the window, or a refractory progression dated in it. ITT rates count every
  analysed patient (a patient without an evaluable assessment counts as no CR); evaluable
  rates count only evaluable patients (DOMAIN.md 6.4).
"""

from __future__ import annotations

import polars as pl

DAY28_WINDOW = (21, 35)
RESPONSE_WINDOW_DAYS = 90
NOT_EVALUABLE = ("NOT_EVALUATED", "UNKNOWN")
# best first; codes not listed rank last
RESPONSE_RANK = ("CR", "CCR", "CRi", "CRh", "MLFS", "PR", "SD", "NR", "PD", "RELAPSE")

RESPONSE_SCHEMA: dict[str, pl.DataType] = {
    "patient_key": pl.String(),
    "response_day28": pl.String(),
    "cr_day28": pl.Int8(),
    "evaluable_day28": pl.Int8(),
    "best_response": pl.String(),
    "cr_best": pl.Int8(),
    "evaluable_best": pl.Int8(),
}


def derive_car_t_response(
    assessments: pl.DataFrame,
    progressions: pl.DataFrame,
    window_ends: pl.DataFrame,
    patients: pl.DataFrame,
    remission_codes: list[str],
) -> pl.DataFrame:
    """One row per patient of ``patients`` (``patient_key``).

    ``assessments``: patient_key, day, response (days from the index infusion);
    ``progressions``: the first progression per patient (patient_key, day, event_type);
    ``window_ends``: patient_key, therapy_day (first salvage or HCT after day 0, may be null).
    """
    rank = {code: i for i, code in enumerate(RESPONSE_RANK)}
    evaluable = pl.col("response").is_not_null() & ~pl.col("response").is_in(list(NOT_EVALUABLE))
    first_prog = progressions.select("patient_key", pl.col("day").alias("prog_day"), "event_type")
    scored = (
        assessments.filter(pl.col("day") > 0)
        .join(first_prog, on="patient_key", how="left")
        .join(window_ends, on="patient_key", how="left")
        .with_columns(
            _rank=pl.col("response").replace_strict(rank, default=len(rank), return_dtype=pl.Int64),
            _evaluable=evaluable,
        )
    )
    low, high = DAY28_WINDOW
    day28 = (
        scored.filter(pl.col("day").is_between(low, high))
        .with_columns(_distance=(pl.col("day") - 28).abs())
        .sort(["patient_key", "_distance", "day", "_rank"])
        .group_by("patient_key", maintain_order=True)
        .first()
        .select(
            "patient_key",
            pl.col("response").alias("response_day28"),
            pl.col("_evaluable").alias("_ev28"),
        )
    )
    window_end = pl.min_horizontal(pl.lit(RESPONSE_WINDOW_DAYS), pl.col("prog_day"))
    before_therapy = pl.col("therapy_day").is_null() | (pl.col("day") < pl.col("therapy_day"))
    best = (
        scored.filter((pl.col("day") <= window_end) & before_therapy)
        .sort(["patient_key", "_rank", "day"])
        .group_by("patient_key", maintain_order=True)
        .agg(
            pl.col("response").first().alias("best_response"),
            pl.col("_evaluable").any().alias("_evbest"),
        )
    )
    refractory = first_prog.filter(pl.col("event_type") == "REFRACTORY_NONRESPONSE")
    refractory_28 = refractory.filter(pl.col("prog_day").is_between(low, high)).select(
        "patient_key", pl.lit(True).alias("_ref28")
    )
    refractory_best = refractory.filter(
        pl.col("prog_day").is_between(1, RESPONSE_WINDOW_DAYS)
    ).select("patient_key", pl.lit(True).alias("_refbest"))
    is_cr = pl.col("response_day28").is_in(remission_codes).fill_null(False)
    is_best_cr = pl.col("best_response").is_in(remission_codes).fill_null(False)
    return (
        patients.select("patient_key")
        .join(day28, on="patient_key", how="left")
        .join(best, on="patient_key", how="left")
        .join(refractory_28, on="patient_key", how="left")
        .join(refractory_best, on="patient_key", how="left")
        .select(
            "patient_key",
            "response_day28",
            is_cr.cast(pl.Int8).alias("cr_day28"),
            (pl.col("_ev28").fill_null(False) | pl.col("_ref28").fill_null(False))
            .cast(pl.Int8)
            .alias("evaluable_day28"),
            "best_response",
            is_best_cr.cast(pl.Int8).alias("cr_best"),
            (pl.col("_evbest").fill_null(False) | pl.col("_refbest").fill_null(False))
            .cast(pl.Int8)
            .alias("evaluable_best"),
        )
        .sort("patient_key")
    )


def response_rates(adsl: pl.DataFrame) -> dict[str, list[dict[str, object]]]:
    """CR rate to CAR T (day 28, best) and salvage uptake / salvage CR, ITT and evaluable,
    with exact 95% intervals. ``adsl`` is the per-patient analysis dataset."""
    from cartreg.analysis.stats import proportion

    def rate(frame: pl.DataFrame, numerator: str) -> dict[str, object]:
        return proportion(int(frame[numerator].fill_null(0).sum()), frame.height)

    progressors = adsl.filter(pl.col("progressed") == 1)
    salvaged = adsl.filter(pl.col("salvaged") == 1)
    out: dict[str, list[dict[str, object]]] = {}
    for code, cr, ev, label in (
        ("CR_DAY28", "cr_day28", "evaluable_day28", "CR/CRi at day 28 (+/- 7 days)"),
        ("CR_BEST", "cr_best", "evaluable_best", "Best response CR/CRi within 90 days"),
    ):
        out[code] = [
            {"group": "ITT", "label": f"{label}, all analysed patients", **rate(adsl, cr)},
            {
                "group": "EVALUABLE",
                "label": f"{label}, evaluable patients",
                **rate(adsl.filter(pl.col(ev) == 1), cr),
            },
        ]
    out["SALVAGE_UPTAKE"] = [
        {
            "group": "PROGRESSORS",
            "label": "Salvage treatment among patients who progressed",
            **rate(progressors, "salvaged"),
        }
    ]
    out["SALV_CR_EVALUABLE"] = [
        {
            "group": "EVALUABLE",
            "label": "CR/CRi to salvage, patients with an evaluable salvage response",
            **rate(salvaged.filter(pl.col("salvage_evaluable") == 1), "salvage_cr"),
        }
    ]
    return out


def therapy_window_ends(salvage_days: pl.DataFrame, hct_days: pl.DataFrame) -> pl.DataFrame:
    """patient_key, therapy_day: the first salvage line or HCT after day 0."""
    parts = [
        f.select("patient_key", pl.col(c).alias("therapy_day"))
        for f, c in ((salvage_days, "day"), (hct_days, "day"))
        if f.height
    ]
    if not parts:
        return pl.DataFrame(schema={"patient_key": pl.String, "therapy_day": pl.Int64})
    return (
        pl.concat(parts, how="vertical_relaxed")
        .filter(pl.col("therapy_day") > 0)
        .group_by("patient_key")
        .agg(pl.col("therapy_day").min())
    )


__all__ = [
    "DAY28_WINDOW",
    "RESPONSE_WINDOW_DAYS",
    "derive_car_t_response",
    "response_rates",
    "therapy_window_ends",
]
