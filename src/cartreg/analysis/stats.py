"""Estimation: lifelines for Kaplan-Meier, log-rank and Cox models, cartreg's own estimators
(``estimators/``) for what lifelines lacks, each returning JSON-ready dicts (floats, ints, None
for "not reached" / "not estimable").

Every number here is reproduced by an R call named in ``docs/analysis.md`` (tests run R on the
written datasets and compare to 1e-6):

* Kaplan-Meier: ``survfit(Surv(t, e) ~ 1, conf.type = "log-log")``. The median and its
  interval follow R's rule (``print.survfit``): the first time the curve (or a band) is below
  0.5 + sqrt(eps); when it sits exactly on 0.5 the median is the midpoint to the next drop.
* Cox: Efron ties; lifelines is run to a tight tolerance so coefficients equal ``coxph``'s;
  the proportional-hazards test is ``cox.zph`` (``CoxZphTest``), with its global test.
* Competing risks: ``CumulativeIncidenceFitter`` (``cmprsk::cuminc``), ``GrayTest``,
  ``FineGrayFitter`` (``cmprsk::crr``).
* Proportions: exact Clopper-Pearson (``binom.test``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

MIN_EVENTS_FOR_MODEL = 10
EVENTS_PER_COVARIATE = 5
R_TOLERANCE = math.sqrt(np.finfo(np.float64).eps)  # survival's tolerance for "S = 0.5"
# Newton-Raphson to (near) machine precision, so lifelines stops where R's coxph does
COX_FIT_OPTIONS = {"precision": 1e-12, "r_precision": 1e-14, "max_steps": 200}


def _finite(value: Any) -> float | None:
    """A float for JSON, or None when infinite/NaN ("not reached", "not estimable")."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def r_median(times: np.ndarray, curve: np.ndarray) -> float | None:
    """R's median of a survival curve (``survmean``'s ``minmin``): the first time the curve
    is below 0.5 (within sqrt(eps)); if it equals 0.5 there and drops later, the midpoint of
    that time and the time of the next drop. NaN values (undefined bands) are skipped."""
    keep = ~np.isnan(curve) & (curve < 0.5 + R_TOLERANCE)
    if not keep.any():
        return None
    x, y = times[keep], curve[keep]
    if abs(y[0] - 0.5) < R_TOLERANCE and (y < y[0]).any():
        return float((x[0] + x[int(np.argmax(y < y[0]))]) / 2.0)
    return float(x[0])


def kaplan_meier(
    durations: Sequence[float], events: Sequence[int], *, landmarks: Sequence[float] = ()
) -> dict[str, Any]:
    """KM median with 95% CI (log-log) and survival at landmark times.

    A landmark beyond the last observed time is not estimable (None)."""
    from lifelines import KaplanMeierFitter

    n = len(durations)
    event_flags = np.asarray(events, dtype=bool)
    result: dict[str, Any] = {
        "n": n,
        "events": int(event_flags.sum()),
        "median_months": None,
        "ci_low": None,
        "ci_high": None,
        "landmarks": [],
    }
    if n == 0:
        return result
    times = np.asarray(durations, dtype=float)
    kmf = KaplanMeierFitter().fit(times, event_flags)
    grid = kmf.survival_function_.index.to_numpy(dtype=float)
    surv = kmf.survival_function_.iloc[:, 0].to_numpy(dtype=float)
    band = kmf.confidence_interval_survival_function_.to_numpy(dtype=float)
    # R leaves the log-log band undefined where S is 0 or 1
    undefined = (surv <= 0.0) | (surv >= 1.0)
    lower = np.where(undefined, np.nan, band[:, 0])
    upper = np.where(undefined, np.nan, band[:, 1])
    result["median_months"] = r_median(grid, surv)
    result["ci_low"] = r_median(grid, lower)
    result["ci_high"] = r_median(grid, upper)
    last = float(times.max())
    for t in landmarks:
        row = int(np.searchsorted(grid, t, side="right")) - 1
        if t > last or row < 0:
            estimate = None if t > last else 1.0
            result["landmarks"].append(
                {"months": float(t), "estimate": estimate, "ci_low": None, "ci_high": None}
            )
            continue
        result["landmarks"].append(
            {
                "months": float(t),
                "estimate": float(surv[row]),
                "ci_low": _finite(lower[row]),
                "ci_high": _finite(upper[row]),
            }
        )
    return result


def reverse_km_follow_up(durations: Sequence[float], censored: Sequence[int]) -> dict[str, Any]:
    """Median follow-up by the reverse Kaplan-Meier method (Schemper & Smith 1996): the KM
    curve of time to censoring, with deaths (or the event) as "censored" observations.
    R: ``survfit(Surv(time, 1 - status) ~ 1)``."""
    block = kaplan_meier(durations, censored)
    return {
        "n": block["n"],
        "censored": block["events"],
        "median_months": block["median_months"],
        "ci_low": block["ci_low"],
        "ci_high": block["ci_high"],
    }


def describe_times(durations: Sequence[float]) -> dict[str, Any]:
    """Median (range) of observed times: a description of event times, not an estimator.

    The median's 95% CI is the distribution-free order-statistic interval: with ``l`` the 2.5%
    quantile of Binomial(n, 1/2), the ``l``-th and ``(n - l + 1)``-th smallest times.
    """
    values = np.sort(np.asarray(durations, dtype=float))
    empty = {"median_months": None, "ci_low": None, "ci_high": None}
    if values.size == 0:
        return {"n": 0, "events": 0, **empty, "min_months": None, "max_months": None}
    from scipy.stats import binom  # type: ignore[import-untyped]

    n = int(values.size)
    rank = int(binom.ppf(0.025, n, 0.5))
    ci_low = float(values[rank - 1]) if rank >= 1 else None
    ci_high = float(values[n - rank]) if rank >= 1 else None
    return {
        "n": n,
        "events": n,
        "median_months": float(np.median(values)),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "min_months": float(values[0]),
        "max_months": float(values[-1]),
    }


def _cif_landmarks(fitter: Any, cause: int, landmarks: Sequence[float]) -> list[dict[str, Any]]:
    out = []
    for t in landmarks:
        if t > fitter.max_time_:
            out.append({"months": float(t), "estimate": None, "ci_low": None, "ci_high": None})
            continue
        if cause not in fitter.causes_:
            out.append({"months": float(t), "estimate": 0.0, "ci_low": None, "ci_high": None})
            continue
        at = fitter.at([t], cause)
        out.append(
            {
                "months": float(t),
                "estimate": float(at.estimate[0]),
                "variance": float(at.variance[0]),
                "ci_low": _finite(at.lower[0]),
                "ci_high": _finite(at.upper[0]),
            }
        )
    return out


def competing_risks(
    durations: Sequence[float], codes: Sequence[int], *, landmarks: Sequence[float] = ()
) -> dict[str, Any]:
    """Aalen-Johansen cumulative incidence of cause 1 (``events``) and cause 2 (``competing``).

    ``median_months`` is the first time the incidence of cause 1 reaches 50% and its interval
    the times the upper / lower log-log limits reach it (None: not reached). Variances are
    cmprsk's (``cuminc``)."""
    from cartreg.analysis.estimators import CumulativeIncidenceFitter

    code = np.asarray(codes, dtype=np.int64)
    result: dict[str, Any] = {
        "n": len(durations),
        "events": int((code == 1).sum()),
        "competing_events": int((code == 2).sum()),
        "median_months": None,
        "ci_low": None,
        "ci_high": None,
        "landmarks": [],
        "competing_landmarks": [],
    }
    if len(durations) == 0:
        return result
    fitter = CumulativeIncidenceFitter().fit(np.asarray(durations, dtype=float), code)
    if 1 in fitter.causes_:
        result["median_months"] = fitter.time_reaching(0.5, 1, "estimate")
        result["ci_low"] = fitter.time_reaching(0.5, 1, "upper")
        result["ci_high"] = fitter.time_reaching(0.5, 1, "lower")
    result["landmarks"] = _cif_landmarks(fitter, 1, landmarks)
    result["competing_landmarks"] = _cif_landmarks(fitter, 2, landmarks)
    return result


def gray_test(
    durations: Sequence[float],
    codes: Sequence[int],
    groups: Sequence[str],
    *,
    strata: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Gray's test of each cause (1 and 2) across groups; R ``cmprsk::cuminc(...)$Tests``."""
    from cartreg.analysis.estimators import GrayTest

    levels = sorted(set(groups))
    out: dict[str, Any] = {"groups": levels, "causes": {}}
    code = np.asarray(codes, dtype=np.int64)
    for cause in (1, 2):
        if len(levels) < 2 or not (code == cause).any():
            out["causes"][str(cause)] = {"statistic": None, "df": None, "p_value": None}
            continue
        test = GrayTest().fit(
            np.asarray(durations, dtype=float), code, np.asarray(groups), cause=cause, strata=strata
        )
        out["causes"][str(cause)] = {
            "statistic": _finite(test.statistic_),
            "df": test.df_,
            "p_value": _finite(test.p_value_),
        }
    return out


def logrank(
    durations: Sequence[float], events: Sequence[int], groups: Sequence[str]
) -> dict[str, Any]:
    """Log-rank test across groups; R ``survdiff``. None when fewer than two groups have data."""
    from lifelines.statistics import multivariate_logrank_test

    levels = sorted(set(groups))
    flags = np.asarray(events, dtype=bool)
    if len(levels) < 2 or not flags.any():
        return {"groups": levels, "statistic": None, "df": None, "p_value": None}
    res = multivariate_logrank_test(np.asarray(durations, dtype=float), list(groups), flags)
    return {
        "groups": levels,
        "statistic": _finite(res.test_statistic),
        "df": int(res.degrees_of_freedom),
        "p_value": _finite(res.p_value),
    }


def _model_frame(
    frame: pl.DataFrame,
    columns: Sequence[str],
    covariates: Sequence[str],
    result: dict[str, Any],
    min_events: int,
    events_per_covariate: int,
    event: str,
) -> tuple[pl.DataFrame | None, list[str]]:
    """Complete cases and the covariates that can be estimated; explains what it leaves out.

    Constant covariates are dropped; rows with a missing covariate are left out and counted per
    covariate; later covariates (the order states priority) are dropped until there are
    ``events_per_covariate`` events per covariate; a binary covariate with no event in one of
    its levels has an infinite estimate and is dropped."""
    observed = frame.drop_nulls(list(columns))
    result["incomplete"] = {
        c: int(observed[c].null_count()) for c in covariates if c in observed.columns
    }
    usable = [c for c in covariates if c in frame.columns and frame[c].drop_nulls().n_unique() > 1]
    result["dropped_covariates"] = [
        {"term": c, "reason": "constant or missing"} for c in covariates if c not in usable
    ]
    keep = usable[: max(1, int(observed[event].sum()) // events_per_covariate)] if usable else []
    result["dropped_covariates"] += [
        {"term": c, "reason": "too few events per covariate"} for c in usable[len(keep) :]
    ]
    data = observed.drop_nulls(keep)
    for c in list(keep):
        values = data[c].unique()
        if values.len() == 2:
            per_level = data.group_by(c).agg(pl.col(event).sum())
            if (per_level[event] == 0).any():
                keep.remove(c)
                result["dropped_covariates"].append(
                    {"term": c, "reason": "no event in one level (infinite estimate)"}
                )
    data = observed.drop_nulls(keep)
    n_events = int(data[event].sum()) if data.height else 0
    result["n"], result["events"] = data.height, n_events
    if not keep:
        result["message"] = "no covariate can be estimated in these data"
        return None, []
    if n_events < min_events:
        result["message"] = (
            f"too few events to fit the model ({n_events} events among {data.height} patients"
            f" with complete data; at least {min_events} needed)"
        )
        return None, []
    return data, keep


def _coefficient_rows(summary: Any, terms: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for term in terms:
        row = summary.loc[term]
        rows.append(
            {
                "term": term,
                "coef": _finite(row["coef"]),
                "se": _finite(row["se(coef)"]),
                "hazard_ratio": _finite(row["exp(coef)"]),
                "ci_low": _finite(row["exp(coef) lower 95%"]),
                "ci_high": _finite(row["exp(coef) upper 95%"]),
                "p_value": _finite(row["p"]),
            }
        )
    return rows


def _fit_lifelines(fit: Any, result: dict[str, Any]) -> Any:
    """Run a lifelines fit; on failure (no convergence, singular data) say why in ``result``
    and return None."""
    from lifelines.exceptions import ConvergenceError, ConvergenceWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            return fit()
    except (
        ConvergenceError,
        ConvergenceWarning,
        ValueError,
        ZeroDivisionError,
        np.linalg.LinAlgError,
    ) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result["message"] = f"the model did not converge: {first}"
        return None


def _empty_model(name: str) -> dict[str, Any]:
    return {
        "model": name,
        "status": "not_fitted",
        "message": "",
        "n": 0,
        "events": 0,
        "covariates": [],
        "dropped_covariates": [],
        "incomplete": {},
        "coefficients": [],
        "ph_test": [],
        "ph_global": None,
    }


def cox_model(
    frame: pl.DataFrame,
    *,
    duration: str,
    event: str,
    covariates: Sequence[str],
    name: str,
    strata: str | None = None,
    min_events: int = MIN_EVENTS_FOR_MODEL,
    events_per_covariate: int = EVENTS_PER_COVARIATE,
) -> dict[str, Any]:
    """A Cox model (Efron ties, optionally stratified) with ``cox.zph`` tests, or a clear reason
    why it was not fitted. R: ``coxph(Surv(duration, event) ~ covariates + strata(s))``."""
    from lifelines import CoxPHFitter

    from cartreg.analysis.estimators import CoxZphTest

    result = _empty_model(name)
    result["strata"] = strata
    base_cols = [duration, event] + ([strata] if strata else [])
    data, keep = _model_frame(
        frame, base_cols, covariates, result, min_events, events_per_covariate, event
    )
    if data is None:
        return result
    columns = [duration, event, *keep] + ([strata] if strata else [])
    pdf = data.select(columns).with_columns(pl.col(c).cast(pl.Float64) for c in keep).to_pandas()
    cph = _fit_lifelines(
        lambda: CoxPHFitter(strata=[strata] if strata else None).fit(
            pdf, duration_col=duration, event_col=event, fit_options=COX_FIT_OPTIONS
        ),
        result,
    )
    if cph is None:
        return result
    result["status"] = "fitted"
    result["covariates"] = list(keep)
    result["coefficients"] = _coefficient_rows(cph.summary, keep)
    result["concordance"] = _finite(cph.concordance_index_)
    beta = np.asarray([cph.params_[t] for t in keep], dtype=float)
    zph = CoxZphTest().fit(
        data[duration].to_numpy(),
        data[event].to_numpy(),
        data.select(keep).cast(pl.Float64).to_numpy(),
        beta,
        strata=data[strata].to_numpy() if strata else None,
        names=list(keep),
    )
    result["ph_test"] = [
        {"term": t, "statistic": _finite(s), "df": 1, "p_value": _finite(p)}
        for t, s, p in zip(keep, zph.statistic_, zph.p_value_, strict=True)
    ]
    result["ph_global"] = {
        "statistic": _finite(zph.global_statistic_),
        "df": zph.global_df_,
        "p_value": _finite(zph.global_p_value_),
    }
    return result


def cox_time_varying(
    frame: pl.DataFrame,
    *,
    id_col: str,
    start: str,
    stop: str,
    event: str,
    covariates: Sequence[str],
    name: str,
    min_events: int = MIN_EVENTS_FOR_MODEL,
) -> dict[str, Any]:
    """A Cox model on counting-process rows (time-dependent covariates), Efron ties.
    R: ``coxph(Surv(start, stop, event) ~ covariates)``."""
    from lifelines import CoxTimeVaryingFitter

    result = _empty_model(name)
    data, keep = _model_frame(
        frame, [id_col, start, stop, event], covariates, result, min_events, 1, event
    )
    if data is None:
        return result
    result["n"] = int(data[id_col].n_unique())
    result["intervals"] = data.height
    pdf = (
        data.select(id_col, start, stop, event, *keep)
        .with_columns(pl.col(c).cast(pl.Float64) for c in keep)
        .to_pandas()
    )
    ctv = _fit_lifelines(
        lambda: CoxTimeVaryingFitter().fit(
            pdf,
            id_col=id_col,
            event_col=event,
            start_col=start,
            stop_col=stop,
            fit_options=COX_FIT_OPTIONS,
        ),
        result,
    )
    if ctv is None:
        return result
    result["status"] = "fitted"
    result["covariates"] = list(keep)
    result["coefficients"] = _coefficient_rows(ctv.summary, keep)
    return result


def fine_gray_model(
    frame: pl.DataFrame,
    *,
    duration: str,
    code: str,
    covariates: Sequence[str],
    name: str,
    min_events: int = MIN_EVENTS_FOR_MODEL,
    events_per_covariate: int = EVENTS_PER_COVARIATE,
) -> dict[str, Any]:
    """Fine-Gray subdistribution hazards of cause 1 (``code`` 1; 2 competing, 0 censored).
    R: ``cmprsk::crr(duration, code, cov1 = covariates, failcode = 1, cencode = 0)``."""
    from cartreg.analysis.estimators import FineGrayFitter

    result = _empty_model(name)
    result.pop("ph_test")
    result.pop("ph_global")
    marked = frame.with_columns((pl.col(code) == 1).cast(pl.Int8).alias("__event"))
    data, keep = _model_frame(
        marked, [duration, code], covariates, result, min_events, events_per_covariate, "__event"
    )
    if data is None:
        return result
    result["competing_events"] = int((data[code] == 2).sum())
    try:
        fit = FineGrayFitter().fit(
            data[duration].to_numpy(),
            data[code].to_numpy(),
            data.select(keep).cast(pl.Float64).to_numpy(),
        )
    except np.linalg.LinAlgError as exc:
        result["message"] = f"the model could not be fitted: {exc}"
        return result
    if not fit.converged_:
        result["message"] = "the model did not converge"
        return result
    result["status"] = "fitted"
    result["covariates"] = list(keep)
    result["coefficients"] = [
        {"term": t, **{k: _finite(v) for k, v in row.items() if k != "z"}}
        for t, row in zip(keep, fit.summary(), strict=True)
    ]
    return result


def proportion(numerator: int, denominator: int) -> dict[str, Any]:
    """A proportion with its exact (Clopper-Pearson) 95% interval; R ``binom.test(x, n)``."""
    if denominator == 0:
        return {"numerator": 0, "denominator": 0, "estimate": None, "ci_low": None, "ci_high": None}
    from scipy.stats import binomtest

    ci = binomtest(numerator, denominator).proportion_ci(confidence_level=0.95, method="exact")
    return {
        "numerator": int(numerator),
        "denominator": int(denominator),
        "estimate": numerator / denominator,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
    }
