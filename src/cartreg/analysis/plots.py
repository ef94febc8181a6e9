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
    curves: Mapping[str, tuple[Sequence[float], Sequence[int]]],
    *,
    title: str,
    labels: Mapping[int, str],
    stem: Path,
) -> list[Path]:
    """Aalen-Johansen cumulative incidence of each cause (codes 1 and 2), one panel per
    data set in ``curves`` (e.g. from infusion, from first CR), with numbers at risk.

    Estimates come from ``CumulativeIncidenceFitter`` (ties exact, no jitter)."""
    from cartreg.analysis.estimators import CumulativeIncidenceFitter

    plt = _pyplot()
    panels = [(name, data) for name, data in curves.items() if len(data[0])]
    fig, axes = plt.subplots(
        max(1, len(panels)), 1, figsize=(6.4, 4.8 * max(1, len(panels))), squeeze=False
    )
    for ax, (name, (times, codes)) in zip(axes[:, 0], panels, strict=False):
        time = np.asarray(times, dtype=float)
        code = np.asarray(codes, dtype=np.int64)
        fitter = CumulativeIncidenceFitter().fit(time, code)
        for cause, label in labels.items():
            if cause not in fitter.causes_:
                continue
            curve = fitter.curve(cause)
            x = np.concatenate(([0.0], curve.times, [fitter.max_time_]))
            y = np.concatenate(([0.0], curve.estimate, [curve.estimate[-1]]))
            line = ax.step(x, y, where="post", label=label)[0]
            lo = np.concatenate(
                ([0.0], np.nan_to_num(curve.lower), [np.nan_to_num(curve.lower)[-1]])
            )
            hi = np.concatenate(
                ([0.0], np.nan_to_num(curve.upper), [np.nan_to_num(curve.upper)[-1]])
            )
            ax.fill_between(x, lo, hi, step="post", alpha=0.15, color=line.get_color())
        ax.set_title(f"{title} {name}".strip() if len(panels) > 1 else title, fontsize=9)
        ax.set_xlabel("Months")
        ax.set_ylabel("Cumulative incidence")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.legend(loc="upper left", frameon=False)
        _at_risk_row(ax, time)
    fig.tight_layout()
    paths = _save(fig, stem)
    plt.close(fig)
    return paths


def _at_risk_row(ax: Any, times: np.ndarray) -> None:
    """Numbers still at risk (of any event) under the x axis ticks."""
    ticks = [t for t in ax.get_xticks() if 0 <= t <= ax.get_xlim()[1]]
    at_risk = [int((times >= t).sum()) for t in ticks]
    for t, n in zip(ticks, at_risk, strict=True):
        ax.annotate(
            str(n),
            (t, 0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -42),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.annotate(
        "At risk",
        (0, 0),
        xycoords="axes fraction",
        xytext=(-14, -42),
        textcoords="offset points",
        ha="right",
        fontsize=7,
    )


def plot_forest(
    sites: Sequence[Mapping[str, Any]],
    pooled: Mapping[str, Any] | None,
    *,
    title: str,
    stem: Path,
) -> list[Path]:
    """Hazard ratio (95% CI) of the first covariate per site, and the site-stratified model."""
    plt = _pyplot()
    rows: list[tuple[str, Mapping[str, Any]]] = [(str(m["spec"]["site"]), m) for m in sites]
    if pooled is not None:
        rows.append(("All sites (stratified by site)", pooled))
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(rows) + 1.4))
    labels = []
    for y, (label, model) in enumerate(reversed(rows)):
        coef = model["coefficients"][0] if model["status"] == "fitted" else None
        events = f"{model['events']} events / {model['n']}"
        if coef is None:
            labels.append(f"{label}  ({events}: not estimable)")
            continue
        labels.append(f"{label}  ({events})")
        marker = "D" if label.startswith("All sites") else "s"
        ax.plot([coef["ci_low"], coef["ci_high"]], [y, y], color="black", lw=1)
        ax.plot([coef["hazard_ratio"]], [y], marker=marker, color="black", ms=6)
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels)
    ax.set_xlabel("Hazard ratio (95% CI), log scale")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    paths = _save(fig, stem)
    plt.close(fig)
    return paths
