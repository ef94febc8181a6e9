"""``CoxZphTest`` equals ``survival::cox.zph`` (survival 3.5), terms and global, strata."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from cartreg.analysis.estimators import CoxZphTest


@pytest.mark.parametrize("stratified", [False, True], ids=["plain", "stratified"])
def test_matches_cox_zph(
    datasets: dict[str, pl.DataFrame], r_reference: Any, stratified: bool
) -> None:
    """R: ``cox.zph(coxph(Surv(time, status > 0) ~ x1 + x2 [+ strata(stratum)]))$table``,
    given R's coefficients (the Cox fit itself is compared in test_against_r)."""
    key = "cox_strata" if stratified else "cox"
    for name, frame in datasets.items():
        ref = r_reference[name][key]
        test = CoxZphTest().fit(
            frame["time"].to_numpy(),
            frame["status"].to_numpy() > 0,
            frame.select("x1", "x2").to_numpy(),
            ref["coef"],
            strata=frame["stratum"].to_numpy() if stratified else None,
            names=["x1", "x2"],
        )
        assert ref["zph"]["terms"] == ["x1", "x2", "GLOBAL"]
        got = [*test.statistic_, test.global_statistic_]
        assert got == pytest.approx(ref["zph"]["chisq"], abs=1e-8), name
        got_p = [*test.p_value_, test.global_p_value_]
        assert got_p == pytest.approx(ref["zph"]["p"], abs=1e-8), name
