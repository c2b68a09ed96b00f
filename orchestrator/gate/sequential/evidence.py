"""Anytime-valid evidence: log e-processes for Bernoulli rates, one sample and two.

Every function returns the logarithm of an e-process: a non-negative process whose expectation
stays at most 1 under its null hypothesis at every stopping time. Ville's inequality bounds the
chance it EVER reaches 1/alpha by alpha, so the gate may look every second, for as long as it
likes, against the fixed boundary log(1/alpha): peeking costs nothing.

One recipe for all of them (sequential "universal inference", Wasserman, Ramdas and
Balakrishnan, PNAS 2020): the numerator is the Bayesian mixture likelihood of the data with a
Beta(1/2, 1/2) prior on each rate (the Krichevsky-Trofimov mixture); the denominator is the
likelihood maximised over the null hypothesis. For every null parameter the mixture divided by
that parameter's likelihood is a martingale; the maximum is at least that likelihood, so the
ratio stays below every such martingale: an e-process for the whole composite null (this
handles the unknown background failure rate without any assumption on it). The mixture depends
on the counts only, not on their order or batching: per-second counts give exactly the value
call-by-call updating would.

The functions take numpy arrays (any shape, broadcast) so that the same code judges one gate at
a look and ten thousand simulated gates over a minute.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, xlog1py, xlogy

Floats = npt.NDArray[np.float64]
Counts = npt.ArrayLike

# Jeffreys/Krichevsky-Trofimov prior: its regret against the best rate in hindsight is
# about 0.5*log(n) + 0.6 nats whatever the rate, 0 and 1 included (a dead number, a clean one).
PRIOR_A = 0.5
PRIOR_B = 0.5
# Bisection halvings for the constrained maximum: 2**-40 (1e-12) is far below any rate that matters.
_HALVINGS = 40


class Side(StrEnum):
    """Which side of the bound the null hypothesis puts the parameter on."""

    AT_MOST = "at_most"
    AT_LEAST = "at_least"


def _floats(x: Counts) -> Floats:
    return np.asarray(x, dtype=np.float64)


def log_mixture(events: Counts, trials: Counts) -> Floats:
    """Log marginal likelihood of `events` in `trials` Bernoulli trials under the Beta prior."""
    e, n = _floats(events), _floats(trials)
    return np.asarray(betaln(e + PRIOR_A, n - e + PRIOR_B) - betaln(PRIOR_A, PRIOR_B), dtype=np.float64)


def log_likelihood(events: Counts, trials: Counts, rate: Counts) -> Floats:
    """Binomial log likelihood without the binomial coefficient (it cancels in every ratio); 0*log 0 = 0."""
    e, n, p = _floats(events), _floats(trials), np.clip(_floats(rate), 0.0, 1.0)
    return np.asarray(xlogy(e, p) + xlog1py(n - e, -p), dtype=np.float64)


def one_sample(events: Counts, trials: Counts, bound: float, side: Side) -> Floats:
    """Log e-process against H0: rate <= bound (AT_MOST) or rate >= bound (AT_LEAST).

    Used for the SER floor (failure ratio at most 1 - floor) and for the sign tests on
    setup-delay differences (chance of a positive difference at most 1/2)."""
    e, n = _floats(events), _floats(trials)
    with np.errstate(divide="ignore", invalid="ignore"):
        mle = np.where(n > 0, e / np.maximum(n, 1.0), bound)  # no data: the bound itself maximises
    closest = np.minimum(mle, bound) if side is Side.AT_MOST else np.maximum(mle, bound)
    return log_mixture(e, n) - log_likelihood(e, n, closest)


def two_sample(canary_events: Counts, canary_trials: Counts, baseline_events: Counts, baseline_trials: Counts,
               margin: float, side: Side) -> Floats:
    """Log e-process against H0: p_canary - p_baseline <= margin (AT_MOST) or >= margin (AT_LEAST).

    AT_MOST with margin 0 is "the canary fails no more often than the baseline": crossing it FAILs.
    AT_LEAST with margin delta is "the canary is worse by delta or more": crossing it rules the
    regression out, the PASS side."""
    fc, nc, fb, nb = (_floats(x) for x in (canary_events, canary_trials, baseline_events, baseline_trials))
    numerator = log_mixture(fc, nc) + log_mixture(fb, nb)
    return numerator - _two_sample_sup(fc, nc, fb, nb, margin, side)


def _two_sample_sup(fc: Floats, nc: Floats, fb: Floats, nb: Floats, margin: float, side: Side) -> Floats:
    """The log likelihood maximised over the null region (concave problem: the unconstrained
    maximum when it lies in the region, else the maximum on the boundary p_c = p_b + margin)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = np.where(nc > 0, fc / np.maximum(nc, 1.0), np.nan)
        rb = np.where(nb > 0, fb / np.maximum(nb, 1.0), np.nan)
    # an arm without data is free: any rate in [0, 1] maximises its (empty) likelihood
    lo_c, hi_c = np.where(nc > 0, rc, 0.0), np.where(nc > 0, rc, 1.0)
    lo_b, hi_b = np.where(nb > 0, rb, 0.0), np.where(nb > 0, rb, 1.0)
    inside = (lo_c - hi_b <= margin) if side is Side.AT_MOST else (hi_c - lo_b >= margin)
    free = log_likelihood(fc, nc, lo_c) + log_likelihood(fb, nb, lo_b)
    if margin == 0.0:
        # equal rates: the boundary maximum is at the pooled rate (closed form, the common case)
        with np.errstate(divide="ignore", invalid="ignore"):
            pooled = np.where(nc + nb > 0, (fc + fb) / np.maximum(nc + nb, 1.0), 0.0)
        edge = log_likelihood(fc, nc, pooled) + log_likelihood(fb, nb, pooled)
    else:
        edge = _boundary_max(fc, nc, fb, nb, margin)
    return np.asarray(np.where(inside, free, edge), dtype=np.float64)


def _boundary_max(fc: Floats, nc: Floats, fb: Floats, nb: Floats, margin: float) -> Floats:
    """max over p_b of l(p_b + margin; canary) + l(p_b; baseline): bisection on the derivative,
    vectorised (a closed form exists, a cubic, but its edge cases take more code than this)."""
    lo, hi = max(0.0, -margin), min(1.0, 1.0 - margin)
    shape = np.broadcast(fc, nc, fb, nb).shape
    a, b = np.full(shape, lo), np.full(shape, hi)
    sc, sb = nc - fc, nb - fb
    for _ in range(_HALVINGS):
        mid = 0.5 * (a + b)  # strictly inside (lo, hi): no division by zero below
        slope = fc / (mid + margin) - sc / (1.0 - mid - margin) + fb / mid - sb / (1.0 - mid)
        rising = slope > 0
        a = np.where(rising, mid, a)
        b = np.where(rising, b, mid)

    def at(p: Floats | float) -> Floats:
        return log_likelihood(fc, nc, np.asarray(p) + margin) + log_likelihood(fb, nb, p)

    # the derivative may keep one sign over the whole interval: then an end is the maximum
    return np.maximum(at(0.5 * (a + b)), np.maximum(at(lo), at(hi)))
