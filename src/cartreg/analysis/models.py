"""The regression models of the analysis, declared as data and fitted from the written datasets.

Each ``ModelSpec`` says which dataset rows (``adtte`` endpoint, ``adtte_tv`` counting process),
which event coding and which ``adsl`` covariates a model uses, and the R call that refits it;
``results.json`` carries the spec beside the estimates so anyone can refit every model from
``adsl`` + ``adtte`` (+ ``adtte_tv``) alone (a test does exactly that).

Time is in months (``aval_days / 30.4375``); a landmark model counts from the landmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import polars as pl

from cartreg.analysis import stats
from cartreg.analysis.derive import DAYS_PER_MONTH

Kind = Literal["cox", "cox_time_varying", "fine_gray"]

PPS_COVARIATES = (
    "remission_months_if_cr",
    "refractory",
    "high_burden",
    "cd19_loss",
    "cd19_unknown",
    "age_per_10y",
    "salvage_antibody",
    "salvage_car_t",
)
COVARIATE_LABELS = {
    "remission_months_if_cr": "Remission duration from CAR T, per month (relapsed patients)",
    "refractory": "Refractory to CAR T (no remission; remission duration set to 0)",
    "high_burden": "High disease burden at infusion",
    "cd19_loss": "CD19-negative/dim or lineage-switch progression",
    "cd19_unknown": "CD19 status at progression unknown",
    "age_per_10y": "Age at infusion (per 10 years)",
    "salvage_antibody": "First salvage: blinatumomab and/or inotuzumab",
    "salvage_car_t": "First salvage: CAR T",
    "hct_in_remission": "HCT in remission, ever (naive: immortal-time bias)",
    "hct": "HCT in remission (time-dependent)",
    "hct_by_landmark": "HCT in remission by the landmark",
}


@dataclass(frozen=True)
class ModelSpec:
    """What a model is fitted on. ``event`` is the ``evntcd`` of the event (1); for
    ``fine_gray`` ``evntcd`` itself is the status (1 event, 2 competing, 0 censored)."""

    key: str
    name: str
    kind: Kind
    paramcd: str
    covariates: tuple[str, ...]
    strata: str | None = None
    site: str | None = None
    landmark_days: int | None = None
    dataset: str = "adtte"

    def r_call(self, covariates: Sequence[str] | None = None) -> str:
        terms = " + ".join(covariates if covariates is not None else self.covariates) or "1"
        if self.strata:
            terms += f" + strata({self.strata})"
        if self.kind == "cox_time_varying":
            return f'coxph(Surv(tstart, tstop, event) ~ {terms}, data = adtte_tv, ties = "efron")'
        if self.kind == "fine_gray":
            cov = ", ".join(covariates if covariates is not None else self.covariates)
            return (
                f"cmprsk::crr(aval_months, evntcd, cov1 = cbind({cov}), failcode = 1, cencode = 0)"
            )
        time = "aval_months" if self.landmark_days is None else "months_from_landmark"
        return f'coxph(Surv({time}, evntcd == 1) ~ {terms}, data = d, ties = "efron")'

    def describe(self) -> dict[str, Any]:
        spec = asdict(self)
        spec["covariates"] = list(self.covariates)
        spec["data"] = (
            "adtte_tv rows of paramcd, joined to nothing"
            if self.dataset == "adtte_tv"
            else "adtte rows of paramcd joined to adsl on patient_key"
            + (f", site_id == {self.site}" if self.site else "")
            + (
                f", aval_days > {self.landmark_days}; months_from_landmark = "
                f"(aval_days - {self.landmark_days}) / 30.4375"
                if self.landmark_days is not None
                else ""
            )
        )
        return spec


def model_specs(landmark_days: int) -> list[ModelSpec]:
    """Every model of the analysis (per-site forest models are made by ``site_models``)."""
    return [
        ModelSpec(
            "burden_progression",
            "Cause-specific Cox model of progression (death without progression censored)",
            "cox",
            "TTP",
            ("high_burden",),
        ),
        ModelSpec(
            "burden_progression_by_site",
            "Cause-specific Cox model of progression, stratified by site",
            "cox",
            "TTP",
            ("high_burden",),
            strata="site_id",
        ),
        ModelSpec(
            "fine_gray_burden_progression",
            "Fine-Gray model of progression (death without progression competing)",
            "fine_gray",
            "TTP",
            ("high_burden",),
        ),
        ModelSpec(
            "fine_gray_burden_relapse",
            "Fine-Gray model of relapse from first CR (non-relapse mortality competing)",
            "fine_gray",
            "CIR_CR",
            ("high_burden",),
        ),
        ModelSpec(
            "pps_multivariable",
            "Multivariable Cox model of survival after progression",
            "cox",
            "PPS",
            PPS_COVARIATES,
        ),
        ModelSpec(
            "pps_multivariable_by_site",
            "Multivariable Cox model of survival after progression, stratified by site",
            "cox",
            "PPS",
            PPS_COVARIATES,
            strata="site_id",
        ),
        ModelSpec(
            "hct_ever",
            "Cox model of event-free survival on HCT in remission ever (naive, biased)",
            "cox",
            "EFS",
            ("hct_in_remission",),
        ),
        ModelSpec(
            "hct_time_dependent",
            "Cox model of event-free survival with HCT in remission as a time-dependent covariate",
            "cox_time_varying",
            "EFS",
            ("hct",),
            dataset="adtte_tv",
        ),
        ModelSpec(
            "hct_landmark",
            f"Landmark Cox model of event-free survival from day {landmark_days} on HCT in"
            " remission by the landmark",
            "cox",
            "EFS",
            ("hct_by_landmark",),
            landmark_days=landmark_days,
        ),
    ]


def site_models(sites: Sequence[str]) -> list[ModelSpec]:
    """The per-site models of the forest plot: progression on burden within each site."""
    return [
        ModelSpec(
            f"burden_progression_{site}",
            f"Cause-specific Cox model of progression, site {site}",
            "cox",
            "TTP",
            ("high_burden",),
            site=site,
        )
        for site in sites
    ]


def derive_counting_process(tte: pl.DataFrame, adsl: pl.DataFrame, paramcd: str) -> pl.DataFrame:
    """Counting-process rows of one endpoint with HCT in remission as a time-dependent
    covariate: ``(tstart, tstop]`` with ``hct`` 0 before the transplant day and 1 from it.

    A transplant strictly inside the follow-up splits it in two; rows of length 0 (an event or
    censoring on day 0) carry no risk time and are left out."""
    rows = (
        tte.filter(pl.col("paramcd") == paramcd)
        .select("patient_key", "site_id", "paramcd", "start_day", "end_day", "evntcd")
        .join(adsl.select("patient_key", "hct_day"), on="patient_key", how="left")
    )
    split = (
        pl.col("hct_day").is_not_null()
        & (pl.col("hct_day") > pl.col("start_day"))
        & (pl.col("hct_day") < pl.col("end_day"))
    )
    event = (pl.col("evntcd") == 1).cast(pl.Int8)
    before = rows.select(
        "patient_key",
        "site_id",
        "paramcd",
        pl.col("start_day").alias("tstart_day"),
        pl.when(split).then("hct_day").otherwise("end_day").alias("tstop_day"),
        pl.when(split).then(pl.lit(0, dtype=pl.Int8)).otherwise(event).alias("event"),
        pl.lit(0, dtype=pl.Int8).alias("hct"),
    )
    after = rows.filter(split).select(
        "patient_key",
        "site_id",
        "paramcd",
        pl.col("hct_day").alias("tstart_day"),
        pl.col("end_day").alias("tstop_day"),
        event.alias("event"),
        pl.lit(1, dtype=pl.Int8).alias("hct"),
    )
    return (
        pl.concat([before, after])
        .filter(pl.col("tstop_day") > pl.col("tstart_day"))
        .with_columns(
            tstart=pl.col("tstart_day") / DAYS_PER_MONTH,
            tstop=pl.col("tstop_day") / DAYS_PER_MONTH,
        )
        .sort("patient_key", "tstart_day")
    )


def model_frame(
    spec: ModelSpec, tte: pl.DataFrame, adsl: pl.DataFrame, tv: pl.DataFrame
) -> pl.DataFrame:
    """The rows a model is fitted on, sorted by patient (so the fit never depends on the
    order of the input rows)."""
    if spec.dataset == "adtte_tv":
        return tv.filter(pl.col("paramcd") == spec.paramcd).sort("patient_key", "tstart_day")
    rows = tte.filter(pl.col("paramcd") == spec.paramcd).join(
        adsl.drop("site_id"), on="patient_key", how="left"
    )
    if spec.site is not None:
        rows = rows.filter(pl.col("site_id") == spec.site)
    if spec.landmark_days is not None:
        rows = rows.filter(pl.col("aval_days") > spec.landmark_days).with_columns(
            aval_months=(pl.col("aval_days") - spec.landmark_days) / DAYS_PER_MONTH
        )
    return rows.with_columns(event=(pl.col("evntcd") == 1).cast(pl.Int8)).sort("patient_key")


def fit_model(
    spec: ModelSpec, tte: pl.DataFrame, adsl: pl.DataFrame, tv: pl.DataFrame
) -> dict[str, Any]:
    """Fit one model; the result carries its spec and the R call with the covariates used."""
    frame = model_frame(spec, tte, adsl, tv)
    if spec.kind == "cox_time_varying":
        result = stats.cox_time_varying(
            frame,
            id_col="patient_key",
            start="tstart",
            stop="tstop",
            event="event",
            covariates=list(spec.covariates),
            name=spec.name,
        )
    elif spec.kind == "fine_gray":
        result = stats.fine_gray_model(
            frame,
            duration="aval_months",
            code="evntcd",
            covariates=list(spec.covariates),
            name=spec.name,
        )
    else:
        result = stats.cox_model(
            frame,
            duration="aval_months",
            event="event",
            covariates=list(spec.covariates),
            name=spec.name,
            strata=spec.strata,
        )
    for coef in result["coefficients"]:
        coef["label"] = COVARIATE_LABELS.get(coef["term"], coef["term"])
    return {
        **result,
        "kind": spec.kind,
        "endpoint": spec.paramcd,
        "spec": spec.describe(),
        "r_call": spec.r_call(result["covariates"] or None),
    }
