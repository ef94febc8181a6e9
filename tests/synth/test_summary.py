"""Calibration statistics of the truth cohort."""

from __future__ import annotations

import numpy as np
import polars as pl
from lifelines import KaplanMeierFitter

from cartreg.synth.sample import sample_cohort
from cartreg.synth.summary import TARGETS, calibration_table, km_median


def test_committed_seed_lands_in_every_target_range() -> None:
    table = calibration_table(sample_cohort().tables)
    assert table.height == len(TARGETS)
    failed = table.filter(pl.col("status") != "PASS")
    assert failed.height == 0, failed


def test_km_median_matches_lifelines() -> None:
    """Reference: lifelines' KaplanMeierFitter.median_survival_time_ on the same data."""
    rng = np.random.default_rng(5)
    time = rng.integers(1, 400, 300).astype(float)
    event = rng.random(300) < 0.7
    kmf = KaplanMeierFitter().fit(time, event)
    assert km_median(time, event) == float(kmf.median_survival_time_)


def test_progression_risk_is_higher_with_high_burden() -> None:
    t = sample_cohort().tables
    idx = t["car_t_infusions"].filter(pl.col("is_index_infusion"))
    progressed = t["progression_events"]["patient_key"].implode()
    rates = idx.group_by("disease_burden").agg(
        pl.col("patient_key").is_in(progressed).mean().alias("r")
    )
    rate = dict(zip(rates["disease_burden"], rates["r"], strict=True))
    assert rate["HIGH"] > rate["LOW"]
