"""Aalen-Johansen cumulative incidence with exact ties and the cmprsk variance.

For competing causes 1..K and censoring (code 0), at each distinct time ``t_j`` with ``n_j``
patients at risk (those with time >= ``t_j``; a censoring at ``t_j`` is still at risk) and
``d_kj`` events of cause ``k``::

    S(t_j)   = S(t_{j-1}) * (1 - d_j / n_j)           overall event-free survival (Kaplan-Meier)
    F_k(t_j) = F_k(t_{j-1}) + S(t_{j-1}) * d_kj / n_j  cumulative incidence of cause k

Events of different causes on the same day enter the same step: nothing is jittered, so the
estimate is the same for any order of the input rows (lifelines' ``AalenJohansenFitter`` shifts
tied times by random amounts instead).

**Variance.** The delta-method variance of Gray (1988) as ``cmprsk::cuminc`` computes it
(``cinc`` in cmprsk 2.2): with ``S_-`` and ``S`` the survival before and after ``t_j``, each
cause contributes ``S_-^2 * c(d) * d / n^2`` (``c(d) = 1 - (d - 1)/(n - 1)`` corrects for ties)
to three running sums ``v1, v2, v3`` weighted by ``(1 + F/S)^2, (1 + F/S)/S, 1/S^2`` for the
cause of interest and ``(F/S)^2, F/S^2, 1/S^2`` for the others, and
``Var F_k(t) = v1 + F^2 v3 - 2 F v2``. As in cmprsk, the variance is updated at the times of the
cause of interest only (it is a step function with the same jumps as the estimate).

R::

    fit <- cmprsk::cuminc(time, status)        # status 0 = censored
    cmprsk::timepoints(fit, times)             # $est and $var equal ``at(times, cause)``

**Confidence interval.** Pointwise, log(-log) transformed (as tidycmprsk reports cuminc):
``theta = log(-log F)``, ``se_theta = sqrt(Var F) / (F * |log F|)``,
``[exp(-exp(theta + z se_theta)), exp(-exp(theta - z se_theta))]``; undefined where F is 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Curve = Literal["estimate", "lower", "upper"]
LEVEL_TOLERANCE = 1e-9  # "reaches 50%" must not depend on the last bit of a sum


@dataclass(frozen=True)
class CumulativeIncidence:
    """The estimate of one cause at given times (arrays of the same length)."""

    times: NDArray[np.float64]
    estimate: NDArray[np.float64]
    variance: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]


class CumulativeIncidenceFitter:
    """Cumulative incidence of every cause by the Aalen-Johansen estimator.

    Fitted attributes: ``causes_`` (the cause codes seen), ``timeline_`` (distinct event
    times), ``n_at_risk_``, ``n_events_`` (times x causes), ``survival_`` (overall event-free
    survival just after each time), ``cumulative_incidence_`` and ``variance_`` (times x
    causes), ``max_time_`` (the largest observed time, event or censoring).
    """

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha = alpha

    def fit(self, durations: ArrayLike, events: ArrayLike) -> CumulativeIncidenceFitter:
        """``events``: 0 censored, 1, 2, ... the cause. Durations must be finite and >= 0."""
        time = np.asarray(durations, dtype=np.float64)
        code = np.asarray(events, dtype=np.int64)
        if time.shape != code.shape or time.ndim != 1:
            raise ValueError("durations and events must be 1-d arrays of the same length")
        if time.size and (not np.isfinite(time).all() or time.min() < 0 or code.min() < 0):
            raise ValueError("durations must be finite and >= 0, events >= 0")
        self.causes_ = tuple(int(c) for c in np.unique(code[code > 0]))
        self.max_time_ = float(time.max()) if time.size else 0.0
        unique, inverse = np.unique(time, return_inverse=True)
        # patients at risk at each distinct time: those whose time is not earlier
        leaving = np.bincount(inverse, minlength=unique.size)
        at_risk = time.size - np.concatenate(([0], np.cumsum(leaving)[:-1]))
        counts = np.zeros((unique.size, len(self.causes_)), dtype=np.int64)
        for k, cause in enumerate(self.causes_):
            counts[:, k] = np.bincount(inverse[code == cause], minlength=unique.size)
        any_event = counts.sum(axis=1) > 0
        self.timeline_ = unique[any_event]
        self.n_at_risk_ = at_risk[any_event].astype(np.float64)
        self.n_events_ = counts[any_event].astype(np.float64)
        total = self.n_events_.sum(axis=1)
        survival = np.cumprod(1.0 - total / self.n_at_risk_)
        before = np.concatenate(([1.0], survival[:-1]))
        self.survival_ = survival
        self.cumulative_incidence_ = np.cumsum(
            before[:, None] * self.n_events_ / self.n_at_risk_[:, None], axis=0
        )
        self.variance_ = (
            np.column_stack(
                [self._gray_variance(k, before, survival) for k in range(len(self.causes_))]
            )
            if self.causes_
            else np.zeros((self.timeline_.size, 0))
        )
        return self

    def _gray_variance(
        self, k: int, before: NDArray[np.float64], after: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        n = self.n_at_risk_
        own = self.n_events_[:, k]
        other = self.n_events_.sum(axis=1) - own
        f = self.cumulative_incidence_[:, k]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_after = np.where(after > 0, 1.0 / after, 0.0)

            def weight(d: NDArray[np.float64]) -> NDArray[np.float64]:
                tie = np.where(d > 1, 1.0 - (d - 1.0) / (n - 1.0), 1.0)
                return np.where(d > 0, before * before * tie * d / (n * n), 0.0)

            # the other causes: only while someone is still event-free after the step
            w_other = np.where(after > 0, weight(other), 0.0)
            t4_other = f * inv_after
            w_own = weight(own)
            t4_own = 1.0 + inv_after * f
        v1 = np.cumsum(t4_other * t4_other * w_other + t4_own * t4_own * w_own)
        v2 = np.cumsum(inv_after * t4_other * w_other + inv_after * t4_own * w_own)
        v3 = np.cumsum(inv_after * inv_after * w_other + inv_after * inv_after * w_own)
        value = v1 + f * f * v3 - 2.0 * f * v2
        # cmprsk updates the variance at the times of this cause only: carry it between them
        steps = np.where(own > 0, np.arange(own.size), -1)
        last = np.maximum.accumulate(steps)
        return np.where(last >= 0, value[np.maximum(last, 0)], 0.0)

    def cause_index(self, cause: int) -> int:
        if cause not in self.causes_:
            raise ValueError(f"cause {cause} was not observed")
        return self.causes_.index(cause)

    def at(self, times: ArrayLike, cause: int = 1) -> CumulativeIncidence:
        """Estimate, variance and log(-log) interval at ``times`` (step function values).

        Before the first event the incidence is 0 (interval undefined: NaN)."""
        when = np.atleast_1d(np.asarray(times, dtype=np.float64))
        k = self.cause_index(cause)
        row = np.searchsorted(self.timeline_, when, side="right") - 1
        safe = np.maximum(row, 0)
        estimate = np.where(row >= 0, self.cumulative_incidence_[safe, k], 0.0)
        variance = np.where(row >= 0, self.variance_[safe, k], 0.0)
        lower, upper = self._loglog(estimate, variance)
        return CumulativeIncidence(when, estimate, variance, lower, upper)

    def _loglog(
        self, estimate: NDArray[np.float64], variance: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        from scipy.stats import norm  # type: ignore[import-untyped]

        z = float(norm.ppf(1.0 - self.alpha / 2.0))
        defined = (estimate > 0) & (estimate < 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_f = np.log(np.where(defined, estimate, 0.5))
            theta = np.log(-log_f)
            se = np.sqrt(np.maximum(variance, 0.0)) / (np.where(defined, estimate, 0.5) * -log_f)
            lower = np.exp(-np.exp(theta + z * se))
            upper = np.exp(-np.exp(theta - z * se))
        nan = np.full_like(estimate, np.nan)
        return np.where(defined, lower, nan), np.where(defined, upper, nan)

    def curve(self, cause: int = 1) -> CumulativeIncidence:
        """The whole step function of one cause, at every event time."""
        return self.at(self.timeline_, cause)

    def time_reaching(
        self, level: float, cause: int = 1, which: Curve = "estimate"
    ) -> float | None:
        """The first event time at which the estimate (or a confidence limit) reaches
        ``level``; None when it never does (e.g. the median "not reached")."""
        full = self.curve(cause)
        values = {"estimate": full.estimate, "lower": full.lower, "upper": full.upper}[which]
        reached = np.nonzero(np.nan_to_num(values, nan=-1.0) >= level - LEVEL_TOLERANCE)[0]
        return float(full.times[reached[0]]) if reached.size else None
