"""Fine-Gray proportional subdistribution hazards regression (Fine & Gray 1999).

Patients who failed from a competing cause stay in the risk set after their failure with a
weight ``G(t-) / G(T_i-)``, where ``G`` is the Kaplan-Meier estimate of the censoring
distribution (censorings as events, failures of any cause as censored) evaluated just before
each time, exactly as ``cmprsk::crr`` evaluates it (``approx`` of the ``survfit`` step function
at ``t * (1 - 100 eps)``). At each distinct failure time ``s`` of the cause of interest, with
``w_j(s)`` that weight (1 while ``T_j >= s``; 0 after a censoring or after a failure of the
cause of interest)::

    S0(s) = sum_j w_j(s) exp(x_j b),  xbar(s) = S1(s) / S0(s)
    log L = sum_{failures i} x_i b - d(s) log S0(s)        (Breslow ties, as crr)

The estimate maximizes log L by Newton's method to a tight tolerance (crr stops at
``gtol = 1e-6`` by default; both converge to the same maximum). The variance is crr's robust
sandwich ``I^-1 (sum_i (eta_i + psi_i)(eta_i + psi_i)') I^-1``, where ``eta_i`` is patient i's
score residual and ``psi_i`` the term for the estimated censoring distribution
(``crrvv`` in cmprsk 2.2, one censoring group).

R::

    fit <- cmprsk::crr(time, status, cov1 = x, failcode = 1, cencode = 0, gtol = 1e-10)
    summary(fit)   # coef, se(coef), exp(coef) and its 95% interval equal ``summary()`` here
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

_EPS = float(np.finfo(np.float64).eps)


class FineGrayFitter:
    """Subdistribution hazards model of one cause with the others competing.

    Fitted attributes: ``params_`` (log subdistribution hazard ratios), ``variance_matrix_``
    (robust), ``standard_errors_``, ``information_`` (minus the Hessian of log L),
    ``log_likelihood_``, ``log_likelihood_null_``, ``n_``, ``n_events_``,
    ``n_competing_``, ``converged_``, ``iterations_``.
    """

    def __init__(self, tolerance: float = 1e-10, max_iterations: int = 100) -> None:
        self.tolerance = tolerance
        self.max_iterations = max_iterations

    def fit(
        self, durations: ArrayLike, events: ArrayLike, covariates: ArrayLike, *, cause: int = 1
    ) -> FineGrayFitter:
        """``events``: 0 censored, ``cause`` the failure of interest, other codes competing.
        ``covariates``: n x p (complete cases only; no missing values)."""
        time = np.asarray(durations, dtype=np.float64)
        code = np.asarray(events, dtype=np.int64)
        x = np.asarray(covariates, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if not (time.shape[0] == code.shape[0] == x.shape[0]):
            raise ValueError("durations, events and covariates must have the same length")
        if not np.isfinite(x).all() or not np.isfinite(time).all():
            raise ValueError("durations and covariates must be finite (complete cases only)")
        order = np.argsort(time, kind="stable")
        self._time, self._x = time[order], x[order]
        self._status = np.where(code[order] == cause, 1, np.where(code[order] > 0, 2, 0))
        self.n_ = int(time.size)
        self.n_events_ = int((self._status == 1).sum())
        self.n_competing_ = int((self._status == 2).sum())
        self._prepare()
        beta = np.zeros(x.shape[1])
        self.log_likelihood_null_ = self._loglik(beta)
        self.converged_ = False
        self.iterations_ = 0
        for iteration in range(1, self.max_iterations + 1):
            loglik, score, info = self._derivatives(beta)
            step = np.linalg.solve(info, score)
            trial = beta + step
            # halve the step while it does not improve log L (crr backtracks the same way)
            for _ in range(30):
                if self._loglik(trial) >= loglik - 1e-12 * abs(loglik):
                    break
                step = step / 2.0
                trial = beta + step
            beta = trial
            self.iterations_ = iteration
            if np.max(np.abs(step)) < self.tolerance:
                self.converged_ = True
                break
        self.params_ = beta
        self.log_likelihood_, _, self.information_ = self._derivatives(beta)
        inverse = np.linalg.inv(self.information_)
        self.variance_matrix_ = inverse @ self._sandwich_meat(beta) @ inverse
        self.standard_errors_ = np.sqrt(np.diag(self.variance_matrix_))
        return self

    def summary(self, alpha: float = 0.05) -> list[dict[str, float]]:
        """One dict per covariate: coef, se, z, p (two-sided Wald), hazard ratio and CI."""
        from scipy.stats import norm  # type: ignore[import-untyped]

        z_crit = float(norm.ppf(1.0 - alpha / 2.0))
        rows = []
        for coef, se in zip(self.params_, self.standard_errors_, strict=True):
            z = coef / se
            rows.append(
                {
                    "coef": float(coef),
                    "se": float(se),
                    "z": float(z),
                    "p_value": float(2.0 * norm.sf(abs(z))),
                    "hazard_ratio": float(np.exp(coef)),
                    "ci_low": float(np.exp(coef - z_crit * se)),
                    "ci_high": float(np.exp(coef + z_crit * se)),
                }
            )
        return rows

    # -- internals -------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Risk-set weights w_j(s) at each distinct failure time s (rows: failure times)."""
        time, status = self._time, self._status
        g_minus = _censoring_survival_before(time, status == 0)
        self._fail_times, fail_counts = np.unique(time[status == 1], return_counts=True)
        self._fail_counts = fail_counts.astype(np.float64)
        g_at_fail = _censoring_survival_before(
            self._fail_times, None, reference=(time, status == 0)
        )
        s = self._fail_times[:, None]
        in_risk_set = time[None, :] >= s
        competing_before = (time[None, :] < s) & (status[None, :] == 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            carried = np.where(competing_before, g_at_fail[:, None] / g_minus[None, :], 0.0)
        self._weights = np.where(in_risk_set, 1.0, carried)
        self._g_minus = g_minus

    def _sums(
        self, beta: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        risk = np.exp(self._x @ beta)
        r = self._weights * risk[None, :]  # failure times x patients
        s0 = r.sum(axis=1)
        s1 = r @ self._x
        xbar = s1 / s0[:, None]
        return r, s0, xbar, risk

    def _loglik(self, beta: NDArray[np.float64]) -> float:
        _, s0, _, _ = self._sums(beta)
        events = self._status == 1
        return float((self._x[events] @ beta).sum() - (self._fail_counts * np.log(s0)).sum())

    def _derivatives(
        self, beta: NDArray[np.float64]
    ) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
        r, s0, xbar, _ = self._sums(beta)
        events = self._status == 1
        loglik = float((self._x[events] @ beta).sum() - (self._fail_counts * np.log(s0)).sum())
        score = self._x[events].sum(axis=0) - (self._fail_counts[:, None] * xbar).sum(axis=0)
        centred = self._x[None, :, :] - xbar[:, None, :]  # failure times x patients x p
        cov = np.einsum("tj,tjp,tjq->tpq", r, centred, centred) / s0[:, None, None]
        info = (self._fail_counts[:, None, None] * cov).sum(axis=0)
        return loglik, score, info

    def _sandwich_meat(self, beta: NDArray[np.float64]) -> NDArray[np.float64]:
        """sum_i (eta_i + psi_i)(eta_i + psi_i)' as in cmprsk's crrvv (one censoring group)."""
        time, status, x = self._time, self._status, self._x
        r, s0, xbar, risk = self._sums(beta)
        weight = self._fail_counts / s0  # dLambda per failure time
        # eta_i: dN_i part at the patient's own failure time, minus the compensator
        fail_row = np.searchsorted(self._fail_times, time)
        own = np.where(
            (status == 1)[:, None], x - xbar[np.minimum(fail_row, len(self._fail_times) - 1)], 0.0
        )
        w = self._weights * weight[:, None]  # failure times x patients
        compensator = risk[:, None] * (x * w.sum(axis=0)[:, None] - w.T @ xbar)
        eta = own - compensator
        # psi_i: q(u) / Y(u) integrated against the censoring martingale
        psi = np.zeros_like(x)
        censored = status == 0
        if censored.any():
            competing = np.nonzero(status == 2)[0]
            # h[s, m] = dLambda(s) r_m(s) (x_m - xbar(s)) for the m-th competing failure
            h = (r[:, competing] * weight[:, None])[:, :, None] * (
                x[None, competing, :] - xbar[:, None, :]
            )
            cum_h = np.concatenate(
                [np.zeros((h.shape[0], 1, x.shape[1])), np.cumsum(h, axis=1)], axis=1
            )
            cens_times, n_cens = np.unique(time[censored], return_counts=True)
            n_before = np.searchsorted(time[competing], cens_times, side="left")
            later = self._fail_times[:, None] >= cens_times[None, :]  # s >= u
            q = np.einsum("tu,tup->up", later, cum_h[:, n_before, :])
            at_risk = time.size - np.searchsorted(time, cens_times, side="left")
            jump = -(n_cens / at_risk**2)[:, None] * q
            accumulated = np.cumsum(jump, axis=0)
            upto = np.searchsorted(cens_times, time, side="right") - 1
            psi = np.where((upto >= 0)[:, None], accumulated[np.maximum(upto, 0)], 0.0)
            own_u = np.searchsorted(cens_times, time)
            own_term = (
                q[np.minimum(own_u, len(cens_times) - 1)]
                / at_risk[np.minimum(own_u, len(cens_times) - 1)][:, None]
            )
            psi = psi + np.where(censored[:, None], own_term, 0.0)
        total = eta + psi
        return np.asarray(total.T @ total)


def _censoring_survival_before(
    times: NDArray[np.float64],
    censored: NDArray[np.bool_] | None,
    *,
    reference: tuple[NDArray[np.float64], NDArray[np.bool_]] | None = None,
) -> NDArray[np.float64]:
    """Kaplan-Meier of the censoring distribution just before each of ``times``.

    The curve comes from ``reference`` (times, censored) when given, else from ``times`` and
    ``censored`` themselves. Evaluated like cmprsk: the step function at ``t * (1 - 100 eps)``
    (so a time of 0 sees the censorings at 0)."""
    ref_time, ref_cens = reference if reference is not None else (times, censored)
    assert ref_cens is not None
    unique, inverse = np.unique(ref_time, return_inverse=True)
    leaving = np.bincount(inverse, minlength=unique.size)
    at_risk = ref_time.size - np.concatenate(([0], np.cumsum(leaving)[:-1]))
    n_cens = np.bincount(inverse[ref_cens], minlength=unique.size)
    curve = np.cumprod(1.0 - n_cens / at_risk)
    probe = times * (1.0 - 100.0 * _EPS)
    row = np.searchsorted(unique, probe, side="right") - 1
    return np.where(row >= 0, curve[np.maximum(row, 0)], 1.0)
