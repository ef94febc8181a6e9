"""Gray's K-sample test for equality of cumulative incidence functions (Gray 1988).

For the cause of interest, at each distinct event time the test compares each group's
subdistribution hazard with the pooled one, weighted by ``(1 - F(t-))^rho``. The score of the
first K-1 groups and its variance are accumulated exactly as ``cmprsk::cuminc`` does (``crstm``
and ``crst`` in cmprsk 2.2), strata summed; the statistic ``s' V^-1 s`` is chi-square with
K - 1 degrees of freedom. Ties between causes and with censorings are handled as in cmprsk
(events before censorings, no jitter).

R::

    cmprsk::cuminc(time, status, group, strata, rho = 0)$Tests   # stat, pv, df per cause

Notation below follows the paper and cmprsk: per group ``g`` at time ``t``, ``R_g`` at risk,
``S_g(t-)`` the group's Kaplan-Meier (all causes) before ``t``, ``F_g(t-)`` its cumulative
incidence before ``t``; ``h = sum_g R_g / S_g(t-)``, ``q = sum_g R_g (1 - F_g(t-)) / S_g(t-)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


class GrayTest:
    """Gray's test of one cause across groups (optionally stratified).

    Fitted attributes: ``groups_`` (sorted group labels with data), ``score_`` (first K-1
    groups), ``variance_`` ((K-1) x (K-1)), ``statistic_``, ``df_``, ``p_value_`` (None when
    the variance is singular or fewer than two groups have data, where cmprsk reports -1).
    """

    def __init__(self, rho: float = 0.0) -> None:
        self.rho = rho

    def fit(
        self,
        durations: ArrayLike,
        events: ArrayLike,
        groups: ArrayLike,
        *,
        cause: int = 1,
        strata: ArrayLike | None = None,
    ) -> GrayTest:
        """``events``: 0 censored, any other code a cause; ``cause`` is the one tested."""
        from scipy.stats import chi2  # type: ignore[import-untyped]

        time = np.asarray(durations, dtype=np.float64)
        code = np.asarray(events, dtype=np.int64)
        label = np.asarray(groups).astype(str)
        stratum = np.zeros(time.size, dtype=np.int64) if strata is None else _codes(strata)
        self.groups_ = tuple(str(g) for g in np.unique(label))
        k = len(self.groups_)
        self.df_ = k - 1
        self.statistic_: float | None = None
        self.p_value_: float | None = None
        if k < 2:
            self.score_ = np.zeros(0)
            self.variance_ = np.zeros((0, 0))
            return self
        group = np.searchsorted(np.asarray(self.groups_), label)
        # 1 = the cause tested, 2 = any other cause, 0 = censored
        status = np.where(code == cause, 1, np.where(code > 0, 2, 0))
        score = np.zeros(k - 1)
        variance = np.zeros((k - 1, k - 1))
        for s in np.unique(stratum):
            rows = stratum == s
            part_s, part_v = _stratum(time[rows], status[rows], group[rows], k, self.rho)
            score += part_s
            variance += part_v
        self.score_, self.variance_ = score, variance
        if np.linalg.matrix_rank(variance) == k - 1:
            self.statistic_ = float(score @ np.linalg.solve(variance, score))
            self.p_value_ = float(chi2.sf(self.statistic_, self.df_))
        return self


def _codes(values: ArrayLike) -> NDArray[np.int64]:
    return np.unique(np.asarray(values).astype(str), return_inverse=True)[1].astype(np.int64)


def _stratum(
    time: NDArray[np.float64],
    status: NDArray[np.int64],
    group: NDArray[np.int64],
    k: int,
    rho: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Score and variance contributions of one stratum (vectorized over event times)."""
    unique, inverse = np.unique(time, return_inverse=True)
    n_t = unique.size

    def per_time(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
        out = np.zeros((n_t, k))
        np.add.at(out, (inverse[mask], group[mask]), 1.0)
        return out

    leaving = per_time(np.ones(time.size, dtype=bool))
    at_risk = leaving.sum(axis=0) - np.vstack([np.zeros(k), np.cumsum(leaving, axis=0)[:-1]])
    d1 = per_time(status == 1)
    d2 = per_time(status == 2)
    event_time = (d1.sum(axis=1) + d2.sum(axis=1)) > 0
    rs, d1, d2 = at_risk[event_time], d1[event_time], d2[event_time]
    nd1 = d1.sum(axis=1)
    present = rs > 0
    safe_rs = np.where(present, rs, 1.0)
    # per-group Kaplan-Meier (all causes) and cumulative incidence, left and right limits
    factor = np.where(present, (rs - d1 - d2) / safe_rs, 1.0)
    skm = np.cumprod(factor, axis=0)
    skmm = np.vstack([np.ones(k), skm[:-1]])
    f1 = np.cumsum(np.where(present, skmm * d1 / safe_rs, 0.0), axis=0)
    f1m = np.vstack([np.zeros(k), f1[:-1]])
    # a group with nobody left at risk has its KM at 0: keep it out of every ratio
    safe_skmm = np.where(present, skmm, 1.0)
    ratio = np.where(present, rs / safe_skmm, 0.0)
    tr = ratio.sum(axis=1)
    tq = np.where(present, rs * (1.0 - f1m) / safe_skmm, 0.0).sum(axis=1)
    f = np.cumsum(nd1 / tr)
    fm = np.concatenate(([0.0], f[:-1]))
    fb = (1.0 - fm) ** rho

    # a: the weighted covariance of group membership in the risk set; c accumulates a dF
    both = present[:, :, None] & present[:, None, :]
    a = -fb[:, None, None] * ratio[:, :, None] * ratio[:, None, :] / tr[:, None, None]
    eye = np.eye(k, dtype=bool)[None]
    a = np.where(eye, (fb[:, None] * ratio * (1.0 - ratio / tr[:, None]))[:, :, None], a)
    a = np.where(both, a, 0.0)
    c = np.cumsum(a * (nd1 / (tr * (1.0 - fm)))[:, None, None], axis=0)

    score = (
        fb[:, None]
        * np.where(present, d1 - nd1[:, None] * rs * (1.0 - f1m) / (safe_skmm * tq[:, None]), 0.0)
    ).sum(axis=0)[: k - 1]

    v3 = np.zeros(k)
    v2 = np.zeros((k - 1, k))
    v = np.zeros((k - 1, k - 1))
    # failures from the cause tested
    with np.errstate(divide="ignore", invalid="ignore"):
        t4 = np.where(skm > 0, 1.0 - (1.0 - f[:, None]) / skm, 1.0)
        t5 = np.where(
            nd1[:, None] > 1, 1.0 - (nd1[:, None] - 1.0) / (tr[:, None] * skmm - 1.0), 1.0
        )
        t3 = np.where(
            present & (nd1[:, None] > 0), t5 * skmm * nd1[:, None] / (tr[:, None] * safe_rs), 0.0
        )
    t1 = a[:, : k - 1, :] - t4[:, None, :] * c[:, : k - 1, :]
    v3 += (t4 * t4 * t3).sum(axis=0)
    v2 += np.einsum("tik,tk->ik", t1, t4 * t3)
    v += np.einsum("tik,tjk,tk->ij", t1, t1, t3)
    # failures from the other causes
    with np.errstate(divide="ignore", invalid="ignore"):
        t4 = np.where(skm > 0, (1.0 - f[:, None]) / skm, 0.0)
        t5 = np.where(d2 > 1, 1.0 - (d2 - 1.0) / (safe_rs - 1.0), 1.0)
        t3 = np.where((skm > 0) & (d2 > 0), t5 * skmm * skmm * d2 / (safe_rs * safe_rs), 0.0)
    t1 = t4[:, None, :] * c[:, : k - 1, :]
    v3 += (t4 * t4 * t3).sum(axis=0)
    v2 -= np.einsum("tik,tk->ik", t1, t4 * t3)
    v += np.einsum("tik,tjk,tk->ij", t1, t1, t3)
    # the terms that use c at the end of follow-up
    last = c[-1, : k - 1, :]
    v += np.einsum("ik,jk,k->ij", last, last, v3) + last @ v2.T + v2 @ last.T
    return score, v
