"""Statistics checked against reference values produced by R's survival package.

Data: the ``aml`` and ``ovarian`` datasets shipped with R's survival package, typed in below.
Reference outputs were produced with::

    library(survival)
    fit <- survfit(Surv(time, status) ~ x, data = aml)
    summary(fit)                      # survival and Greenwood std.err at each event time
    print(fit)                        # n, events, median: Maintained 31, Nonmaintained 23
    survdiff(Surv(time, status) ~ x, data = aml)
    #   Chisq= 3.4 on 1 degrees of freedom, p= 0.07   (p = 0.0653)
    coxph(Surv(time, status) ~ x, data = aml)
    #   xNonmaintained coef 0.9155 exp(coef) 2.498 se(coef) 0.5119 z 1.788 p 0.0737
    #   Likelihood ratio test=3.38 on 1 df
    coxph(Surv(futime, fustat) ~ age, data = ovarian)
    #   age coef 0.16162 exp(coef) 1.17541 se(coef) 0.04974 z 3.249 p 0.00116
    binom.test(0, 10)$conf.int        # 0.0000000 0.3084971

The same numbers were reproduced independently with statsmodels 0.15 (not a cartreg
dependency) on the data below::

    from statsmodels.duration.hazard_regression import PHReg
    from statsmodels.duration.survfunc import SurvfuncRight, survdiff
    PHReg(time, x[:, None], status=status, ties="efron").fit()   # aml: 0.91553 (se 0.51193)
    survdiff(time, status, x)                                     # (3.3964, 0.065339)
    SurvfuncRight(time_m, status_m).quantile(0.5)                 # 31 (Maintained), 23 (Non.)
    PHReg(futime, age[:, None], status=fustat, ties="efron").fit()  # 0.16162 (se 0.04974)

lifelines' median interval uses the log(-log) transform (R: ``conf.type = "log-log"``); the
expected interval is derived in ``_loglog_median_ci`` from R's printed survival and standard
errors, independently of lifelines.
"""

from __future__ import annotations

import math

import polars as pl
import pytest
from scipy.stats import beta

from cartreg.analysis import stats

AML_MAINTAINED = ([9, 13, 13, 18, 23, 28, 31, 34, 45, 48, 161], [1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0])
AML_NONMAINTAINED = (
    [5, 5, 8, 8, 12, 16, 23, 27, 30, 33, 43, 45],
    [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1],
)

# summary(survfit(...)): time, survival, std.err
R_SUMMARY = {
    "Maintained": [
        (9, 0.909, 0.0867),
        (13, 0.818, 0.1163),
        (18, 0.716, 0.1397),
        (23, 0.614, 0.1526),
        (31, 0.491, 0.1642),
        (34, 0.368, 0.1627),
        (48, 0.184, 0.1535),
    ],
    "Nonmaintained": [
        (5, 0.8333, 0.1076),
        (8, 0.6667, 0.1361),
        (12, 0.5833, 0.1423),
        (23, 0.4861, 0.1481),
        (27, 0.3889, 0.1470),
        (30, 0.2917, 0.1387),
        (33, 0.1944, 0.1219),
        (43, 0.0972, 0.0919),
    ],
}
R_MEDIAN = {"Maintained": 31.0, "Nonmaintained": 23.0}

# ovarian: futime, fustat, age
OVARIAN = [
    (59, 1, 72.3315),
    (115, 1, 74.4932),
    (156, 1, 66.4658),
    (421, 0, 53.3644),
    (431, 1, 50.3397),
    (448, 0, 56.4301),
    (464, 1, 56.9370),
    (475, 1, 59.8548),
    (477, 0, 64.1753),
    (563, 1, 55.1781),
    (638, 1, 56.7562),
    (744, 0, 50.1096),
    (769, 0, 59.6301),
    (770, 0, 57.0521),
    (803, 0, 39.2712),
    (855, 0, 43.1233),
    (1040, 0, 38.8932),
    (1106, 0, 44.6000),
    (1129, 0, 53.9068),
    (1206, 0, 44.2055),
    (1227, 0, 59.5890),
    (268, 1, 74.5041),
    (329, 1, 43.1370),
    (353, 1, 63.2192),
    (365, 1, 64.4247),
    (377, 0, 58.3096),
]


def _loglog_median_ci(rows: list[tuple[int, float, float]]) -> tuple[float, float]:
    """Median CI: first times where the log(-log) lower / upper bands reach 0.5."""
    z = 1.959964
    low_t = high_t = math.inf
    for t, s, se in rows:
        theta = math.log(-math.log(s))
        se_theta = se / (s * abs(math.log(s)))
        lower = math.exp(-math.exp(theta + z * se_theta))
        upper = math.exp(-math.exp(theta - z * se_theta))
        if lower <= 0.5 and low_t == math.inf:
            low_t = t
        if upper <= 0.5 and high_t == math.inf:
            high_t = t
    return low_t, high_t


@pytest.mark.parametrize(
    ("arm", "data"), [("Maintained", AML_MAINTAINED), ("Nonmaintained", AML_NONMAINTAINED)]
)
def test_km_median_and_ci_match_r(arm: str, data: tuple[list[int], list[int]]) -> None:
    times, events = data
    result = stats.kaplan_meier(times, events, landmarks=[t for t, _, _ in R_SUMMARY[arm]])
    assert result["n"] == len(times)
    assert result["events"] == sum(events)
    assert result["median_months"] == R_MEDIAN[arm]
    low, high = _loglog_median_ci(R_SUMMARY[arm])
    assert result["ci_low"] == low
    assert result["ci_high"] == (None if high == math.inf else high)
    for mark, (_, surv, _) in zip(result["landmarks"], R_SUMMARY[arm], strict=True):
        assert mark["estimate"] == pytest.approx(surv, abs=6e-4)


def test_logrank_matches_r_survdiff() -> None:
    times = AML_MAINTAINED[0] + AML_NONMAINTAINED[0]
    events = AML_MAINTAINED[1] + AML_NONMAINTAINED[1]
    groups = ["M"] * 11 + ["N"] * 12
    result = stats.logrank(times, events, groups)
    assert result["statistic"] == pytest.approx(3.4, abs=0.05)
    assert result["p_value"] == pytest.approx(0.0653, abs=5e-4)
    assert result["df"] == 1


def test_cox_matches_r_coxph_aml() -> None:
    frame = pl.DataFrame(
        {
            "time": AML_MAINTAINED[0] + AML_NONMAINTAINED[0],
            "status": AML_MAINTAINED[1] + AML_NONMAINTAINED[1],
            "nonmaintained": [0] * 11 + [1] * 12,
        }
    )
    result = stats.cox_model(
        frame, duration="time", event="status", covariates=["nonmaintained"], name="aml"
    )
    assert result["status"] == "fitted"
    (coef,) = result["coefficients"]
    assert coef["coef"] == pytest.approx(0.9155, abs=5e-4)
    assert coef["hazard_ratio"] == pytest.approx(2.498, abs=5e-3)
    assert coef["se"] == pytest.approx(0.5119, abs=5e-4)
    assert coef["p_value"] == pytest.approx(0.0737, abs=5e-4)
    assert coef["ci_low"] == pytest.approx(math.exp(0.9155 - 1.959964 * 0.5119), abs=5e-3)
    assert result["ph_test"] and result["ph_test"][0]["p_value"] is not None
    assert result["ph_global"]["df"] == 1


def test_cox_matches_r_coxph_ovarian() -> None:
    frame = pl.DataFrame(OVARIAN, schema=["futime", "fustat", "age"], orient="row")
    result = stats.cox_model(
        frame, duration="futime", event="fustat", covariates=["age"], name="ov"
    )
    (coef,) = result["coefficients"]
    assert coef["coef"] == pytest.approx(0.16162, abs=5e-5)
    assert coef["se"] == pytest.approx(0.04974, abs=5e-5)
    assert coef["p_value"] == pytest.approx(0.00116, abs=5e-5)


def test_cox_with_too_few_events_explains_instead_of_crashing() -> None:
    frame = pl.DataFrame({"t": [1.0, 2.0, 3.0, 4.0], "e": [1, 1, 1, 0], "x": [0, 1, 0, 1]})
    result = stats.cox_model(frame, duration="t", event="e", covariates=["x"], name="tiny")
    assert result["status"] == "not_fitted"
    assert "too few events" in result["message"]
    assert result["coefficients"] == []


def test_cox_drops_constant_covariates() -> None:
    frame = pl.DataFrame(OVARIAN, schema=["futime", "fustat", "age"], orient="row").with_columns(
        constant=pl.lit(1.0)
    )
    result = stats.cox_model(
        frame, duration="futime", event="fustat", covariates=["age", "constant"], name="ov"
    )
    assert result["covariates"] == ["age"]
    assert result["dropped_covariates"] == [{"term": "constant", "reason": "constant or missing"}]


def test_cox_drops_a_binary_covariate_without_events_in_one_level() -> None:
    """All events in one level: the estimate is infinite (R warns "coefficient may be
    infinite"); the covariate is dropped with that reason instead of reporting a huge HR."""
    frame = pl.DataFrame(OVARIAN, schema=["futime", "fustat", "age"], orient="row").with_columns(
        flag=pl.col("fustat")
    )
    result = stats.cox_model(
        frame, duration="futime", event="fustat", covariates=["age", "flag"], name="ov"
    )
    assert result["covariates"] == ["age"]
    assert {"term": "flag", "reason": "no event in one level (infinite estimate)"} in result[
        "dropped_covariates"
    ]


def test_cox_counts_patients_left_out_for_a_missing_covariate() -> None:
    frame = pl.DataFrame(OVARIAN, schema=["futime", "fustat", "age"], orient="row").with_columns(
        age=pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("age"))
    )
    result = stats.cox_model(
        frame, duration="futime", event="fustat", covariates=["age"], name="ov"
    )
    assert result["incomplete"] == {"age": 3}
    assert result["n"] == len(OVARIAN) - 3


def test_aalen_johansen_matches_hand_computation() -> None:
    """Five patients, no ties: 1 (cause 1), 2 (cause 2), 3 (censored), 4 (cause 1), 5 (cause 1).

    By hand: CIF1(1) = 1/5 = 0.2; S = 0.8; CIF2(2) = 0.8 * 1/4; S = 0.6;
    CIF1(4) = 0.2 + 0.6 * 1/2 = 0.5; S = 0.3; CIF1(5) = 0.5 + 0.3 * 1/1 = 0.8.
    """
    result = stats.competing_risks([1, 2, 3, 4, 5], [1, 2, 0, 1, 1], landmarks=[1, 2, 3, 4, 5])
    estimates = [m["estimate"] for m in result["landmarks"]]
    assert estimates == pytest.approx([0.2, 0.2, 0.2, 0.5, 0.8])
    assert [m["estimate"] for m in result["competing_landmarks"]] == pytest.approx(
        [0, 0.2] + [0.2] * 3
    )
    assert result["events"] == 3 and result["competing_events"] == 1
    assert result["median_months"] == 4.0  # the incidence reaches 50% at time 4


def test_aalen_johansen_without_competing_events_is_one_minus_km() -> None:
    times, events = AML_NONMAINTAINED
    result = stats.competing_risks(times, events, landmarks=[5, 8, 12, 23])
    for mark, (_, surv, _) in zip(result["landmarks"], R_SUMMARY["Nonmaintained"], strict=False):
        assert mark["estimate"] == pytest.approx(1 - surv, abs=6e-4)


def test_km_median_uses_rs_midpoint_rule() -> None:
    """S drops to exactly 0.5 at t=2 and stays there until t=4: R's median is (2 + 4) / 2 = 3.

    R: survfit(Surv(c(1, 2, 3, 4), c(1, 1, 0, 1)) ~ 1) prints median 3 (S = 0.75, 0.5, 0.5, 0).
    """
    result = stats.kaplan_meier([1, 2, 3, 4], [1, 1, 0, 1])
    assert result["median_months"] == 3.0


def test_landmark_beyond_follow_up_is_not_estimable() -> None:
    result = stats.kaplan_meier([1, 2, 3], [1, 0, 0], landmarks=[2, 10])
    assert result["landmarks"][0]["estimate"] == pytest.approx(2 / 3)
    assert result["landmarks"][1]["estimate"] is None


def test_clopper_pearson() -> None:
    zero = stats.proportion(0, 10)
    assert zero["ci_low"] == 0.0
    assert zero["ci_high"] == pytest.approx(0.3084971, abs=1e-7)
    thirteen = stats.proportion(13, 30)
    assert thirteen["estimate"] == pytest.approx(13 / 30)
    assert thirteen["ci_low"] == pytest.approx(beta.ppf(0.025, 13, 18), abs=1e-9)
    assert thirteen["ci_high"] == pytest.approx(beta.ppf(0.975, 14, 17), abs=1e-9)
    assert stats.proportion(0, 0)["estimate"] is None


def test_describe_times_is_median_and_range() -> None:
    small = stats.describe_times([5.0, 1.0, 3.0, 10.0])
    assert (small["median_months"], small["min_months"], small["max_months"]) == (4.0, 1.0, 10.0)
    assert small["ci_low"] is None  # four values cannot give a 95% distribution-free interval


def test_describe_times_median_ci_uses_order_statistics() -> None:
    """R: qbinom(0.025, 10, 0.5) = 2, so the interval is the 2nd and 9th smallest values."""
    result = stats.describe_times([float(v) for v in range(10, 0, -1)])
    assert (result["ci_low"], result["median_months"], result["ci_high"]) == (2.0, 5.5, 9.0)
