"""``GrayTest`` equals ``cmprsk::cuminc(time, status, group[, strata])$Tests``."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from cartreg.analysis.estimators import GrayTest


@pytest.mark.parametrize("stratified", [False, True], ids=["plain", "stratified"])
def test_matches_cmprsk(
    datasets: dict[str, pl.DataFrame], r_reference: Any, stratified: bool
) -> None:
    key = "gray_strata" if stratified else "gray"
    for name, frame in datasets.items():
        ref = r_reference[name][key]
        for cause, stat, pv in zip(ref["causes"], ref["stat"], ref["pv"], strict=True):
            test = GrayTest().fit(
                frame["time"].to_numpy(),
                frame["status"].to_numpy(),
                frame["grp"].to_numpy(),
                cause=int(cause),
                strata=frame["stratum"].to_numpy() if stratified else None,
            )
            assert test.statistic_ == pytest.approx(stat, abs=1e-8), (name, cause)
            assert test.p_value_ == pytest.approx(pv, abs=1e-8), (name, cause)
            assert test.df_ == len(set(frame["grp"].to_list())) - 1


def test_one_group_has_no_test() -> None:
    test = GrayTest().fit([1, 2, 3], [1, 0, 2], ["A", "A", "A"])
    assert test.statistic_ is None and test.p_value_ is None


def test_group_order_and_row_order_do_not_matter(datasets: dict[str, pl.DataFrame]) -> None:
    frame = datasets["d0"]
    a = GrayTest().fit(frame["time"], frame["status"], frame["grp"])
    order = np.random.default_rng(1).permutation(frame.height)
    relabel = {"A": "Z", "B": "Y"}
    b = GrayTest().fit(
        frame["time"].to_numpy()[order],
        frame["status"].to_numpy()[order],
        [relabel.get(g, g) for g in frame["grp"].to_numpy()[order]],
    )
    assert a.statistic_ == pytest.approx(b.statistic_, rel=1e-12)
