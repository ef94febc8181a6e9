"""Estimation with lifelines (never reimplemented here) and exact binomial intervals.

Every function takes plain polars frames or lists, converts to pandas once at the lifelines
boundary, and returns JSON-ready dicts (floats, ints, None for "not reached"/"not estimable").

Conventions: times in months; 95% intervals; Kaplan-Meier pointwise intervals use lifelines'
exponential Greenwood (log(-log)) transform, and the median's interval is read off those
bands (Brookmeyer-Crowley style inversion). Cox models use Efron's method for ties (as R's
``coxph`` default).
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
SEED = 20210531  # AalenJohansenFitter jitters tied times; a fixed seed keeps runs identical


def _finite(value: Any) -> float | None:
    """A float for JSON, or None when infinite/NaN ("not reached", "not estimable")."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def kaplan_meier(
    durations: Sequence[float], events: Sequence[int], *, landmarks: Sequence[float] = ()
) -> dict[str, Any]:
    """KM median with 95% CI and survival at landmark times (same time unit as ``durations``)."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    n = len(durations)
    event_flags = np.asarray(events, dtype=bool)
    n_events = int(event_flags.sum())
    result: dict[str, Any] = {
        "n": n,
        "events": n_events,
        "median_months": None,
        "ci_low": None,
        "ci_high": None,
        "landmarks": [],
    }
    if n == 0:
        return result
    kmf = KaplanMeierFitter().fit(np.asarray(durations, dtype=float), event_flags)
    ci = median_survival_times(kmf.confidence_interval_)
    result["median_months"] = _finite(kmf.median_survival_time_)
    result["ci_low"] = _finite(ci.iloc[0, 0])
    result["ci_high"] = _finite(ci.iloc[0, 1])
    band = kmf.confidence_interval_survival_function_
    for t in landmarks:
        surv = float(kmf.survival_function_at_times(t).iloc[0])
        # the band is a step function: take the last row at or before t
        rows = band[band.index <= t]
        low, high = (rows.iloc[-1, 0], rows.iloc[-1, 1]) if len(rows) else (1.0, 1.0)
        result["landmarks"].append(
            {"months": float(t), "estimate": surv, "ci_low": _finite(low), "ci_high": _finite(high)}
        )
    return result


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


def _first_time_at_least(curve: Any, level: float) -> float | None:
    reached = curve[curve >= level]
    return _finite(reached.index[0]) if len(reached) else None


def cumulative_incidence(
    durations: Sequence[float], codes: Sequence[int], *, landmarks: Sequence[float] = ()
) -> dict[str, Any]:
    """Aalen-Johansen cumulative incidence of code 1 with code 2 competing (0 = censored)."""
    from lifelines import AalenJohansenFitter

    n = len(durations)
    result: dict[str, Any] = {
        "n": n,
        "events": int((np.asarray(codes) == 1).sum()),
        "competing_events": int((np.asarray(codes) == 2).sum()),
        "median_months": None,
        "ci_low": None,
        "ci_high": None,
        "landmarks": [],
    }
    if n == 0 or result["events"] == 0:
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tie-jitter warning; the seed makes it reproducible
        ajf = AalenJohansenFitter(calculate_variance=True, seed=SEED).fit(
            list(durations), list(codes), event_of_interest=1
        )
    cif = ajf.cumulative_density_
    band = ajf.confidence_interval_
    # median time to the event: where the incidence curve (and its band) first reaches 0.5
    result["median_months"] = _first_time_at_least(cif.iloc[:, 0], 0.5)
    result["ci_low"] = _first_time_at_least(band.iloc[:, 1], 0.5)
    result["ci_high"] = _first_time_at_least(band.iloc[:, 0], 0.5)
    for t in landmarks:
        rows = cif[cif.index <= t]
        est = float(rows.iloc[-1, 0]) if len(rows) else 0.0
        brows = band[band.index <= t]
        low, high = (brows.iloc[-1, 0], brows.iloc[-1, 1]) if len(brows) else (0.0, 0.0)
        result["landmarks"].append(
            {"months": float(t), "estimate": est, "ci_low": _finite(low), "ci_high": _finite(high)}
        )
    return result


def logrank(
    durations: Sequence[float], events: Sequence[int], groups: Sequence[str]
) -> dict[str, Any]:
    """Log-rank test across groups (two or more); None when fewer than two groups have data."""
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


def cox_model(
    frame: pl.DataFrame,
    *,
    duration: str,
    event: str,
    covariates: Sequence[str],
    name: str,
    min_events: int = MIN_EVENTS_FOR_MODEL,
    events_per_covariate: int = EVENTS_PER_COVARIATE,
) -> dict[str, Any]:
    """A Cox model with proportional-hazards diagnostics, or a clear reason why it was not fitted.

    Covariates that are constant or missing everywhere are dropped; rows with a missing
    covariate are left out (complete cases). When events are too few for all covariates, the
    later covariates in ``covariates`` (the order states priority) are dropped until there are
    at least ``events_per_covariate`` events per covariate.
    """
    result: dict[str, Any] = {
        "model": name,
        "status": "not_fitted",
        "message": "",
        "n": 0,
        "events": 0,
        "covariates": [],
        "dropped_covariates": [],
        "coefficients": [],
        "ph_test": [],
    }
    usable = [c for c in covariates if c in frame.columns and frame[c].drop_nulls().n_unique() > 1]
    result["dropped_covariates"] = [c for c in covariates if c not in usable]
    observed = frame.select([duration, event, *usable]).drop_nulls([duration, event])
    keep = usable[: max(1, int(observed[event].sum()) // events_per_covariate)] if usable else []
    result["dropped_covariates"] += usable[len(keep) :]
    data = observed.select([duration, event, *keep]).drop_nulls()
    n_events = int(data[event].sum()) if data.height else 0
    result["n"], result["events"] = data.height, n_events
    if not keep:
        result["message"] = "no covariate varies in these data"
        return result
    if n_events < min_events:
        result["message"] = (
            f"too few events to fit the model ({n_events} events among {data.height} patients"
            f" with complete data; at least {min_events} needed)"
        )
        return result
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import proportional_hazard_test

    pdf = data.with_columns(pl.col(c).cast(pl.Float64) for c in keep).to_pandas()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph = CoxPHFitter().fit(pdf, duration_col=duration, event_col=event)
            ph = proportional_hazard_test(cph, pdf, time_transform="rank")
    except (ConvergenceError, ValueError, ZeroDivisionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result["message"] = f"the model did not converge: {first}"
        return result
    summary = cph.summary
    result["status"] = "fitted"
    result["covariates"] = list(keep)
    result["message"] = ""
    for term in keep:
        row = summary.loc[term]
        result["coefficients"].append(
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
    ph_summary = ph.summary
    for term in keep:
        if term in ph_summary.index:
            prow = ph_summary.loc[term]
            result["ph_test"].append(
                {
                    "term": term,
                    "statistic": _finite(prow["test_statistic"]),
                    "p_value": _finite(prow["p"]),
                }
            )
    result["concordance"] = _finite(cph.concordance_index_)
    return result


def proportion(numerator: int, denominator: int) -> dict[str, Any]:
    """A proportion with its exact (Clopper-Pearson) 95% confidence interval."""
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
