"""``FineGrayFitter`` equals ``cmprsk::crr`` (coefficients and robust standard errors)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from cartreg.analysis.estimators import FineGrayFitter


def test_matches_cmprsk_crr(datasets: dict[str, pl.DataFrame], r_reference: Any) -> None:
    """R: ``crr(time, status, cov1 = cbind(x1, x2), failcode = 1, cencode = 0, gtol = 1e-12)``."""
    for name, frame in datasets.items():
        ref = r_reference[name]["crr"]
        assert ref["converged"]
        fit = FineGrayFitter().fit(
            frame["time"].to_numpy(),
            frame["status"].to_numpy(),
            frame.select("x1", "x2").to_numpy(),
        )
        assert fit.converged_
        assert fit.params_ == pytest.approx(ref["coef"], abs=1e-8), name
        assert fit.standard_errors_ == pytest.approx(ref["se"], abs=1e-8), name


def test_without_competing_events_it_is_a_breslow_cox_model() -> None:
    """With no competing failures every weight is 1: the partial likelihood is Cox's with
    Breslow ties. R: ``coxph(Surv(time, status) ~ x, ties = "breslow")`` on ovarian-like
    data gives the same coefficient (checked here against a direct Newton solve)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=80)
    time = np.ceil(rng.exponential(np.exp(-0.5 * x)) * 4)
    status = (rng.random(80) < 0.7).astype(int)
    fit = FineGrayFitter().fit(time, status, x)
    # Breslow score at the estimate is zero
    beta = fit.params_[0]
    score = 0.0
    for t in np.unique(time[status == 1]):
        at_risk = time >= t
        w = np.exp(beta * x[at_risk])
        d = ((time == t) & (status == 1)).sum()
        score += x[(time == t) & (status == 1)].sum() - d * (w * x[at_risk]).sum() / w.sum()
    assert score == pytest.approx(0.0, abs=1e-9)


def test_summary_has_hazard_ratios(datasets: dict[str, pl.DataFrame]) -> None:
    frame = datasets["d1"]
    fit = FineGrayFitter().fit(frame["time"], frame["status"], frame.select("x1").to_numpy())
    (row,) = fit.summary()
    assert row["hazard_ratio"] == pytest.approx(np.exp(row["coef"]))
    assert row["ci_low"] < row["hazard_ratio"] < row["ci_high"]
