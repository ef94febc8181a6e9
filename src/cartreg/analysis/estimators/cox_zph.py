"""The proportional-hazards test of ``survival::cox.zph`` (survival >= 3.0).

For a fitted Cox model with coefficients ``b`` the test asks whether adding ``x * g(t)`` terms
would improve the fit: a score test of ``gamma = 0`` in ``h(t) = h0(t) exp(x b + x g(t) gamma)``,
evaluated at ``(b, 0)``. ``g`` is the "km" transform of time, ``1 - S(t-)`` from the
Kaplan-Meier curve of all patients (strata ignored), centred at its mean over the events. With
``u`` the score of the ``2p`` parameters (its first ``p`` entries are 0 at the maximum) and
``I`` their ``2p x 2p`` information (Efron or Breslow, within strata)::

    per covariate j:  u_j' I_jj^-1 u_j   with the rows/columns (1..p, p + j),  1 df
    global:           u' I^-1 u,                                               p df

This is what ``cox.zph`` computes (``zph1.c`` in survival 3.5); it is not the older test on
scaled Schoenfeld residuals (survival < 3.0, and lifelines' ``proportional_hazard_test``),
which gives different numbers.

R::

    fit <- coxph(Surv(time, status) ~ x1 + x2 + strata(site), ties = "efron")
    cox.zph(fit)$table     # chisq, df, p for x1, x2 and GLOBAL
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


class CoxZphTest:
    """Score tests of proportional hazards for each covariate and globally.

    Fitted attributes: ``terms_`` (covariate names), ``statistic_`` and ``p_value_`` (one per
    term), ``df_``, ``global_statistic_``, ``global_p_value_``, ``global_df_``, ``score_``
    (length 2p) and ``information_`` (2p x 2p).
    """

    def __init__(self, ties: str = "efron") -> None:
        if ties not in ("efron", "breslow"):
            raise ValueError("ties must be 'efron' or 'breslow'")
        self.ties = ties

    def fit(
        self,
        durations: ArrayLike,
        events: ArrayLike,
        covariates: ArrayLike,
        coefficients: ArrayLike,
        *,
        strata: ArrayLike | None = None,
        names: list[str] | None = None,
    ) -> CoxZphTest:
        from scipy.stats import chi2  # type: ignore[import-untyped]

        time = np.asarray(durations, dtype=np.float64)
        event = np.asarray(events, dtype=np.float64) > 0
        x = np.asarray(covariates, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        beta = np.asarray(coefficients, dtype=np.float64).reshape(-1)
        p = x.shape[1]
        if beta.size != p:
            raise ValueError("one coefficient per covariate")
        self.terms_ = list(names) if names is not None else [f"x{j + 1}" for j in range(p)]
        g = _km_transform(time, event)
        g = g - g[event].mean()
        x = x - x.mean(axis=0)  # as zph1.c: centring only helps the arithmetic
        eta = x @ beta
        stratum = (
            np.zeros(time.size, dtype=np.int64)
            if strata is None
            else np.unique(np.asarray(strata).astype(str), return_inverse=True)[1]
        )
        score = np.zeros(2 * p)
        info = np.zeros((2 * p, 2 * p))
        for s in np.unique(stratum):
            rows = stratum == s
            part_u, part_i = self._stratum(time[rows], event[rows], x[rows], eta[rows], g[rows])
            score += part_u
            info += part_i
        self.score_, self.information_ = score, info
        stats: list[float] = []
        for j in range(p):
            keep = [*range(p), p + j]
            u = np.concatenate([np.zeros(p), score[p + j : p + j + 1]])
            stats.append(float(u @ np.linalg.solve(info[np.ix_(keep, keep)], u)))
        self.statistic_ = np.asarray(stats)
        self.df_ = np.ones(p, dtype=np.int64)
        self.p_value_ = chi2.sf(self.statistic_, 1)
        u = np.concatenate([np.zeros(p), score[p:]])
        self.global_statistic_ = float(u @ np.linalg.solve(info, u))
        self.global_df_ = p
        self.global_p_value_ = float(chi2.sf(self.global_statistic_, p))
        return self

    def _stratum(
        self,
        time: NDArray[np.float64],
        event: NDArray[np.bool_],
        x: NDArray[np.float64],
        eta: NDArray[np.float64],
        g: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Score and information of (b, gamma) from one stratum's risk sets."""
        p = x.shape[1]
        risk = np.exp(eta)
        unique, inverse = np.unique(time, return_inverse=True)
        n_t = unique.size

        def by_time(values: NDArray[np.float64], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
            out = np.zeros((n_t, *values.shape[1:]))
            np.add.at(out, inverse[mask], values[mask])
            return out

        outer = x[:, :, None] * x[:, None, :]
        everyone = np.ones(time.size, dtype=bool)
        # sums over those with time >= t (reverse cumulative), and over the deaths at t
        s0 = np.cumsum(by_time(risk, everyone)[::-1])[::-1]
        s1 = np.cumsum(by_time(risk[:, None] * x, everyone)[::-1], axis=0)[::-1]
        s2 = np.cumsum(by_time(risk[:, None, None] * outer, everyone)[::-1], axis=0)[::-1]
        d = by_time(np.ones(time.size), event)
        d0 = by_time(risk, event)
        d1 = by_time(risk[:, None] * x, event)
        d2 = by_time(risk[:, None, None] * outer, event)
        dx = by_time(x, event)
        g_t = by_time(g, everyone) / np.maximum(by_time(np.ones(time.size), everyone), 1)
        has = d > 0
        s0, s1, s2, d, d0, d1, d2, dx, g_t = (a[has] for a in (s0, s1, s2, d, d0, d1, d2, dx, g_t))
        # one row per death: the Efron terms k = 1..d remove k/d of the deaths' risk
        deaths = d.astype(np.int64)
        row = np.repeat(np.arange(deaths.size), deaths)
        if self.ties == "efron":
            k = np.concatenate([np.arange(n) for n in deaths]).astype(np.float64)
            frac = k / d[row]  # 0, 1/d, ..., (d-1)/d of the deaths removed
        else:
            frac = np.zeros(row.size)
        den = s0[row] - frac * d0[row]
        num1 = s1[row] - frac[:, None] * d1[row]
        num2 = s2[row] - frac[:, None, None] * d2[row]
        mean = num1 / den[:, None]
        cov = num2 / den[:, None, None] - mean[:, :, None] * mean[:, None, :]
        gr = g_t[row]
        u_beta = dx.sum(axis=0) - mean.sum(axis=0)
        u_gamma = (g_t[:, None] * dx).sum(axis=0) - (gr[:, None] * mean).sum(axis=0)
        info = np.zeros((2 * p, 2 * p))
        info[:p, :p] = cov.sum(axis=0)
        info[:p, p:] = (gr[:, None, None] * cov).sum(axis=0)
        info[p:, :p] = info[:p, p:].T
        info[p:, p:] = (gr[:, None, None] ** 2 * cov).sum(axis=0)
        return np.concatenate([u_beta, u_gamma]), info


def _km_transform(time: NDArray[np.float64], event: NDArray[np.bool_]) -> NDArray[np.float64]:
    """``1 - S(t-)`` for each patient from the Kaplan-Meier curve of all patients."""
    unique, inverse = np.unique(time, return_inverse=True)
    leaving = np.bincount(inverse, minlength=unique.size)
    at_risk = time.size - np.concatenate(([0], np.cumsum(leaving)[:-1]))
    deaths = np.bincount(inverse[event], minlength=unique.size)
    surv = np.cumprod(1.0 - deaths / at_risk)
    before = np.concatenate(([1.0], surv[:-1]))
    return np.asarray(1.0 - before[inverse])
