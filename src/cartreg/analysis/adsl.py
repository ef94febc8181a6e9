"""The per-patient analysis dataset (ADSL-like): every covariate, under the name models use.

One row per analysed patient. ``adsl.parquet`` (and ``adsl.csv``) is written beside
``adtte.parquet``, so every model in ``results.json`` can be refitted from the two files (and
``adtte_tv`` for the time-dependent HCT model); ``docs/analysis.md`` lists the columns.

Conventions: indicators are 1/0, and null where they do not apply (``refractory`` is null for
a patient who never progressed); times are days from the index infusion (``*_day``) or months
(``*_months``, days / 30.4375).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING

import polars as pl

from cartreg.analysis.derive import (
    BASELINE_COLUMNS,
    DAYS_PER_MONTH,
    derive_baseline,
    derive_first_progression,
    derive_first_remission,
    derive_salvage_response,
    event_days,
    first_hct_after_index,
    prepare_tables,
    remission_codes,
)
from cartreg.analysis.endpoints import Endpoint
from cartreg.analysis.response import derive_car_t_response, therapy_window_ends

if TYPE_CHECKING:
    from cartreg.cdm import CDM

CD19_LOSS = ("CD19_NEG", "CD19_DIM_PARTIAL", "LINEAGE_SWITCH")


def derive_adsl(
    tables: Mapping[str, pl.DataFrame],
    data_cut: dt.date,
    *,
    progression_endpoint: Endpoint,
    salvage_endpoint: Endpoint | None,
    tte: pl.DataFrame,
    set_aside: pl.DataFrame | None = None,
    landmark_days: int = 90,
    cdm: CDM | None = None,
) -> pl.DataFrame:
    """The analysis dataset of ``tables`` (already restricted to the analysed patients).

    ``set_aside`` (patient_key, covariate) lists covariates to treat as unknown because an
    error finding contradicts them; ``landmark_days`` is the landmark of the HCT analysis.
    """
    cdm, full, base = prepare_tables(tables, data_cut, cdm)
    ep = progression_endpoint
    baseline = derive_baseline(
        tables,
        data_cut,
        burden_threshold_pct=float(ep.param("burden_threshold_pct")),
        emd_counts_high=bool(ep.param("emd_counts_high")),
        cdm=cdm,
    )
    aside = (
        set_aside
        if set_aside is not None
        else pl.DataFrame(schema={"patient_key": pl.String, "covariate": pl.String})
    )

    def flagged(covariate: str) -> pl.Expr:
        keys = aside.filter(pl.col("covariate") == covariate)["patient_key"]
        return pl.col("patient_key").is_in(keys.implode())

    baseline = baseline.with_columns(
        burden=pl.when(flagged("burden")).then(pl.lit("UNKNOWN")).otherwise("burden"),
        burden_source=pl.when(flagged("burden"))
        .then(pl.lit("set aside"))
        .otherwise("burden_source"),
    )
    first_prog = derive_first_progression(tables, ep, data_cut, cdm=cdm).select(
        "patient_key",
        pl.col("day").alias("progression_day"),
        pl.col("event_type").alias("progression_type"),
        pl.when(flagged("cd19_phenotype"))
        .then(None)
        .otherwise(pl.col("antigen_phenotype"))
        .alias("antigen_phenotype"),
    )
    first_cr = derive_first_remission(full, base, ep, cdm).select(
        "patient_key", pl.col("day").alias("cr_day")
    )
    if salvage_endpoint is not None:
        salvage = derive_salvage_response(tables, salvage_endpoint, data_cut, cdm=cdm).select(
            "patient_key",
            pl.col("start_day").alias("salvage_day"),
            pl.col("agent_class").alias("salvage_class"),
            pl.col("aval").alias("salvage_cr"),
            pl.col("evaluable").alias("salvage_evaluable"),
        )
    else:
        salvage = pl.DataFrame(
            schema={
                "patient_key": pl.String,
                "salvage_day": pl.Int64,
                "salvage_class": pl.String,
                "salvage_cr": pl.Int8,
                "salvage_evaluable": pl.Int8,
            }
        )
    hct = first_hct_after_index(full, base).join(
        first_prog.select("patient_key", "progression_day"), on="patient_key", how="left"
    )
    # HCT in remission: after the infusion and before any progression (consolidation)
    hct = hct.filter(
        pl.col("progression_day").is_null() | (pl.col("day") < pl.col("progression_day"))
    ).select("patient_key", pl.col("day").alias("hct_day"))
    assessments = event_days(full, base, "disease_assessments", "assessment_date").select(
        "patient_key", "day", "response"
    )
    therapy = therapy_window_ends(
        event_days(full, base, "salvage_treatments", "start_date").select("patient_key", "day"),
        event_days(full, base, "transplants", "hct_date")
        .filter(pl.col("intent").fill_null("") != "PRIOR_TO_INDEX")
        .select("patient_key", "day"),
    )
    response = derive_car_t_response(
        assessments,
        first_prog.select(
            "patient_key", pl.col("progression_day").alias("day"), "progression_type"
        ).rename({"progression_type": "event_type"}),
        therapy,
        base.select("patient_key"),
        remission_codes(cdm, ep),
    )
    efs = tte.filter(pl.col("paramcd") == "EFS").select(
        "patient_key", pl.col("aval_days").alias("_efs_days")
    )
    progressed = pl.col("progression_day").is_not_null()
    refractory = pl.col("progression_type") == "REFRACTORY_NONRESPONSE"
    relapsed_after_cr = progressed & ~refractory & pl.col("cr_day").is_not_null()
    remission = (pl.col("progression_day") - pl.col("cr_day")) / DAYS_PER_MONTH
    out = (
        baseline.join(first_prog, on="patient_key", how="left")
        .join(first_cr, on="patient_key", how="left")
        .join(salvage, on="patient_key", how="left")
        .join(hct, on="patient_key", how="left")
        .join(response, on="patient_key", how="left")
        .join(efs, on="patient_key", how="left")
        .with_columns(
            high_burden=pl.when(pl.col("burden") == "HIGH")
            .then(1)
            .when(pl.col("burden") == "LOW")
            .then(0)
            .cast(pl.Int8),
            age_per_10y=pl.col("age") / 10.0,
            progressed=progressed.cast(pl.Int8),
            refractory=pl.when(progressed).then(refractory.cast(pl.Int8)),
            remission_months=pl.when(relapsed_after_cr).then(remission),
            # PPS model: remission duration of relapsed patients, 0 for refractory ones (who
            # have their own indicator), so neither is dropped nor given a false duration
            remission_months_if_cr=pl.when(relapsed_after_cr)
            .then(remission)
            .when(progressed & refractory)
            .then(0.0),
            cd19_loss=pl.when(progressed).then(
                pl.col("antigen_phenotype").is_in(list(CD19_LOSS)).fill_null(False).cast(pl.Int8)
            ),
            cd19_unknown=pl.when(progressed).then(
                (
                    pl.col("antigen_phenotype").is_null()
                    | ~pl.col("antigen_phenotype").is_in([*CD19_LOSS, "CD19_POS"])
                ).cast(pl.Int8)
            ),
            salvaged=pl.when(progressed).then(pl.col("salvage_class").is_not_null().cast(pl.Int8)),
            salvage_antibody=pl.when(progressed).then(
                (pl.col("salvage_class") == "ANTIBODY").fill_null(False).cast(pl.Int8)
            ),
            salvage_car_t=pl.when(progressed).then(
                (pl.col("salvage_class") == "CAR_T").fill_null(False).cast(pl.Int8)
            ),
            hct_in_remission=pl.col("hct_day").is_not_null().cast(pl.Int8),
            hct_by_landmark=pl.when(pl.col("_efs_days") > landmark_days).then(
                (pl.col("hct_day") <= landmark_days).fill_null(False).cast(pl.Int8)
            ),
        )
    )
    return out.select(
        *BASELINE_COLUMNS,
        "age_per_10y",
        "high_burden",
        "response_day28",
        "cr_day28",
        "evaluable_day28",
        "best_response",
        "cr_best",
        "evaluable_best",
        "cr_day",
        "progressed",
        "progression_day",
        "progression_type",
        "refractory",
        "antigen_phenotype",
        "cd19_loss",
        "cd19_unknown",
        "remission_months",
        "remission_months_if_cr",
        "salvaged",
        "salvage_day",
        "salvage_class",
        "salvage_antibody",
        "salvage_car_t",
        "salvage_cr",
        "salvage_evaluable",
        "hct_day",
        "hct_in_remission",
        "hct_by_landmark",
    ).sort("patient_key")
