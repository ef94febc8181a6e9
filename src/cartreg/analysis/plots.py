"""Kaplan-Meier and cumulative-incidence figures with numbers at risk (PNG and SVG).

Figures are deterministic: the Agg backend, a fixed SVG hash salt and no creation date in the
metadata, so two runs on the same data give identical files.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cartreg.analysis.stats import SEED

Curve = tuple[Sequence[float], Sequence[int]]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "cartreg"
    plt.rcParams["font.size"] = 9
    return plt


def _save(fig: Any, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    return [png, svg]


def plot_km(curves: Mapping[str, Curve], *, title: str, ylabel: str, stem: Path) -> list[Path]:
    """One Kaplan-Meier curve per group (times in months) with a number-at-risk table."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    fitters = []
    for label, (times, events) in curves.items():
        if not times:
            continue
        kmf = KaplanMeierFitter(label=f"{label} (n={len(times)})").fit(
            np.asarray(times, dtype=float), np.asarray(events, dtype=bool)
        )
        kmf.plot_survival_function(ax=ax, ci_show=True, show_censors=True, censor_styles={"ms": 4})
        fitters.append(kmf)
    ax.set_title(title)
    ax.set_xlabel("Months")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    if fitters:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])
    fig.tight_layout()
    paths = _save(fig, stem)
    plt.close(fig)
    return paths


def plot_cif(
    times: Sequence[float],
    codes: Sequence[int],
    *,
    title: str,
    labels: Mapping[int, str],
    stem: Path,
) -> list[Path]:
    """Aalen-Johansen cumulative incidence of each cause (codes 1 and 2) with numbers at risk."""
    from lifelines import AalenJohansenFitter, KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for code, label in labels.items():
        if not (np.asarray(codes) == code).any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ajf = AalenJohansenFitter(calculate_variance=True, seed=SEED).fit(
                list(times), list(codes), event_of_interest=code, label=label
            )
        ajf.plot_cumulative_density(ax=ax, ci_show=True)
    ax.set_title(title)
    ax.set_xlabel("Months")
    ax.set_ylabel("Cumulative incidence")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    if times:
        # patients at risk of either cause: a KM fit on "any event" has the same risk set
        at_risk = KaplanMeierFitter(label="All").fit(
            np.asarray(times, dtype=float), np.asarray(codes) > 0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            add_at_risk_counts(at_risk, ax=ax, rows_to_show=["At risk"])
    fig.tight_layout()
    paths = _save(fig, stem)
    plt.close(fig)
    return paths
