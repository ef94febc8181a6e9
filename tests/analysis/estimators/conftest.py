"""Tie-heavy competing-risk data sets and R's reference values for them (one Rscript run).

Each data set draws times from exponential hazards that depend on a binary ``x1`` and a
continuous ``x2``, then rounds them coarsely, so that many events of different causes and
censorings fall on the same time. ``r/estimators.R`` computes, for every data set, what
``cmprsk`` and ``survival`` report; the estimator tests compare with it to 1e-6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tests.analysis.rscript import run_r

# (n, causes, censoring rate, time resolution): from 40 patients to 400, 2 or 3 causes, light
# to heavy censoring, times rounded to 1, 2 or 4 per unit (heavy ties)
DESIGNS = [
    (60, 2, 0.5, 1.0),
    (120, 2, 1.0, 0.5),
    (200, 3, 0.7, 2.0),
    (40, 2, 0.3, 1.0),
    (150, 2, 2.0, 1.0),
    (400, 2, 0.8, 4.0),
    (80, 3, 0.2, 0.25),
]


def make_dataset(
    seed: int, n: int, causes: int, censoring: float, resolution: float
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.integers(0, 2, n).astype(float)
    x2 = np.round(rng.normal(0, 1, n), 2)
    latent = np.column_stack(
        [rng.exponential(10 / np.exp(0.6 * x1 - 0.3 * x2 + 0.2 * k)) for k in range(causes)]
    )
    censor = rng.exponential(10 / censoring, n)
    first = latent.min(axis=1)
    status = np.where(censor < first, 0, latent.argmin(axis=1) + 1)
    time = np.ceil(np.minimum(first, censor) * resolution) / resolution
    groups = ["A", "B", "C"][: 2 + seed % 2]
    return pl.DataFrame(
        {
            "dataset": f"d{seed}",
            "time": time,
            "status": status,
            "grp": rng.choice(groups, n),
            "stratum": rng.choice(["s1", "s2"], n),
            "x1": x1,
            "x2": x2,
        }
    )


@pytest.fixture(scope="session")
def datasets() -> dict[str, pl.DataFrame]:
    return {f"d{i}": make_dataset(i, *design) for i, design in enumerate(DESIGNS)}


@pytest.fixture(scope="session")
def r_reference(datasets: dict[str, pl.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder: Path = tmp_path_factory.mktemp("estimators_r")
    pl.concat(list(datasets.values())).write_csv(folder / "data.csv")
    grid = pl.concat(
        [
            pl.DataFrame(
                {
                    "dataset": name,
                    "time": np.unique(
                        np.quantile(frame["time"].to_numpy(), [0.05, 0.25, 0.5, 0.75, 0.95])
                    ),
                }
            )
            for name, frame in datasets.items()
        ]
    )
    grid.write_csv(folder / "times.csv")
    return run_r("estimators.R", folder / "data.csv", folder / "times.csv")
