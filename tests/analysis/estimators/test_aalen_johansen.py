"""``CumulativeIncidenceFitter``: exact ties by hand, equal to ``cmprsk::cuminc``, order-free."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartreg.analysis.estimators import CumulativeIncidenceFitter


def test_ties_between_causes_share_one_step() -> None:
    """Six patients: at t=1 one progression (1), one death (2) and one censoring; at t=2 one
    progression; at t=3 one death; at t=4 censored.

    By hand: n(1) = 6, S(1-) = 1 -> F1(1) = 1/6, F2(1) = 1/6, S(1) = 4/6.
    n(2) = 3 (three left after t=1) -> F1(2) = 1/6 + (4/6)(1/3) = 7/18, S(2) = (4/6)(2/3) = 4/9.
    n(3) = 2 -> F2(3) = 1/6 + (4/9)(1/2) = 7/18. F1 + F2 + S = 7/18 + 7/18 + 2/9 = 1.
    """
    fit = CumulativeIncidenceFitter().fit([1, 1, 1, 2, 3, 4], [1, 2, 0, 1, 2, 0])
    assert fit.timeline_.tolist() == [1.0, 2.0, 3.0]
    assert fit.n_at_risk_.tolist() == [6.0, 3.0, 2.0]
    assert fit.at([1, 2, 3], 1).estimate == pytest.approx([1 / 6, 7 / 18, 7 / 18])
    assert fit.at([1, 2, 3], 2).estimate == pytest.approx([1 / 6, 1 / 6, 7 / 18])
    assert fit.survival_[-1] == pytest.approx(2 / 9)
    assert fit.at([0.5], 1).estimate[0] == 0.0
    assert np.isnan(fit.at([0.5], 1).lower[0])


def test_matches_cmprsk_cuminc(datasets: dict[str, pl.DataFrame], r_reference: Any) -> None:
    """R: ``timepoints(cuminc(time, status), times)`` estimates and variances, every cause."""
    for name, frame in datasets.items():
        ref = r_reference[name]
        fit = CumulativeIncidenceFitter().fit(frame["time"].to_numpy(), frame["status"].to_numpy())
        for cause, values in ref["cif"].items():
            got = fit.at(ref["times"], int(cause))
            assert got.estimate == pytest.approx(values["est"], abs=1e-9), (name, cause)
            assert got.variance == pytest.approx(values["var"], abs=1e-9), (name, cause)


def test_time_reaching_a_level() -> None:
    fit = CumulativeIncidenceFitter().fit([1, 2, 3, 4, 5], [1, 2, 0, 1, 1])
    assert fit.time_reaching(0.5) == 4.0  # F1 = 0.2, 0.2, 0.5 at 4
    assert fit.time_reaching(0.9) is None


@settings(max_examples=25, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2)), min_size=1, max_size=40),
    seed=st.integers(0, 2**32 - 1),
)
def test_row_order_does_not_change_the_estimate(data: list[tuple[int, int]], seed: int) -> None:
    times = np.array([t for t, _ in data], dtype=float)
    codes = np.array([c for _, c in data])
    order = np.random.default_rng(seed).permutation(len(data))
    a = CumulativeIncidenceFitter().fit(times, codes)
    b = CumulativeIncidenceFitter().fit(times[order], codes[order])
    assert a.timeline_.tolist() == b.timeline_.tolist()
    assert np.array_equal(a.cumulative_incidence_, b.cumulative_incidence_)
    assert np.array_equal(a.variance_, b.variance_)
    # the causes and the survival add up to one
    total = a.cumulative_incidence_.sum(axis=1) + a.survival_
    assert np.allclose(total, 1.0)
