"""Scripted quadratics and the double well of sections 6.1 and 6.4.

The ill-conditioned quadratic (6.1), the quadratic with a falling sharpness (warmup),
the noisy quadratic (last iterate and noise ball) and the tilted double well (restarts).
numpy only, seeded, vectorised over chains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from companion._validation import (
    check_integer,
    check_real,
    check_real_array,
    check_steps,
    is_real_scalar,
)

__all__ = [
    "TiltedDoubleWell",
    "falling_sharpness",
    "noise_ball_second_moment",
    "noisy_quadratic_sgd",
    "quadratic_gd_losses",
    "quadratic_gd_steps",
    "scripted_quadratic_path",
]


def quadratic_gd_steps(
    curvatures: np.ndarray, lrs: np.ndarray, w0: np.ndarray, tol: float, max_steps: int
) -> int | None:
    r"""Steps gradient descent needs on :math:`f(w)=\tfrac12\sum_i h_i w_i^2` to reach ``f <= tol``.

    The iterates are :math:`w_{t,i} = (1-\eta_i h_i)^t\,w_{0,i}` (section 6.1), where
    ``lrs`` holds one rate per coordinate (or one shared rate, broadcast). Evaluated in
    closed form for every ``t`` up to ``max_steps``; ``None`` if the tolerance is not met.

    Examples
    --------
    >>> h, lrs = np.array([1.0, 100.0]), np.array([1.0, 0.01])
    >>> quadratic_gd_steps(h, lrs, np.ones(2), tol=1e-8, max_steps=10)
    1
    """
    curvatures = check_real_array("curvatures", curvatures, low=0)
    lrs = check_real_array("lrs", [lrs] if is_real_scalar(lrs) else lrs, low=0)
    w0 = check_real_array("w0", w0)
    check_real("tol", tol, low=0, low_open=True)
    check_integer("max_steps", max_steps, low=0)
    t = np.arange(max_steps + 1)[:, None]
    w = (1.0 - lrs * curvatures) ** t * w0
    f = 0.5 * (curvatures * w**2).sum(axis=1)
    hit = np.flatnonzero(f <= tol)
    return int(hit[0]) if hit.size else None


def quadratic_gd_losses(
    curvatures: npt.ArrayLike, lrs: npt.ArrayLike | float, w0: npt.ArrayLike, steps: npt.ArrayLike
) -> np.ndarray:
    r"""Relative loss :math:`f(w_t)/f(w_0)` of gradient descent on a diagonal quadratic.

    Section 6.1: on :math:`f(w) = \tfrac12\sum_i h_i w_i^2`, gradient descent with a rate
    :math:`\eta_i` per coordinate (or one rate for all) has the closed form
    :math:`w_{t,i} = (1 - \eta_i h_i)^t\, w_{0,i}`, so

    .. math:: \frac{f(w_t)}{f(w_0)} = \frac{\sum_i h_i (1-\eta_i h_i)^{2t} w_{0,i}^2}
              {\sum_i h_i w_{0,i}^2} .

    Parameters
    ----------
    curvatures : array_like
        The curvatures :math:`h_i > 0` (1-d, length :math:`d`).
    lrs : float or array_like
        One rate :math:`\eta \ge 0` for every coordinate, or :math:`d` rates :math:`\eta_i`.
    w0 : array_like
        The initial point (length :math:`d`, not all zero).
    steps : int or array_like of int
        The steps :math:`t \ge 0` at which to evaluate.

    Returns
    -------
    numpy.ndarray
        :math:`f(w_t)/f(w_0)` for each step, with the shape of ``steps``.

    Examples
    --------
    >>> quadratic_gd_losses([1.0, 100.0], 0.01, [1.0, 1.0], [0, 1, 2]).round(4)
    array([1.    , 0.0097, 0.0095])
    """
    h = check_real_array("curvatures", curvatures, low=0.0, low_open=True)
    if is_real_scalar(lrs):
        eta = np.full_like(h, check_real("lrs", lrs, low=0.0))
    else:
        eta = check_real_array("lrs", lrs, low=0.0)
        if eta.shape != h.shape:
            raise ValueError(f"lrs must be one rate or {h.size} rates, got shape {eta.shape}")
    start = check_real_array("w0", w0)
    if start.shape != h.shape:
        raise ValueError(f"w0 must have {h.size} entries like curvatures, got shape {start.shape}")
    if not np.any(start != 0.0):
        raise ValueError("w0 must not be all zero (f(w0) = 0 leaves nothing to reduce)")
    t = np.asarray(check_steps(steps, "steps"))
    weights = h * start**2
    factors = (1.0 - eta * h) ** 2
    losses = (factors ** t[..., None].astype(np.float64)) @ weights
    return losses / weights.sum()


# --- used by section 6.4 -------------------------------------------------------------
# Scripted one-dimensional problems of "The role of the learning-rate schedule": the
# quadratic with a falling sharpness (warmup), the noisy quadratic (last iterate and noise
# ball) and the tilted double well (restarts). numpy only, seeded, vectorised over chains.


def falling_sharpness(steps: np.ndarray, S0: float, tau: float, S_min: float = 0.0) -> np.ndarray:
    r"""A sharpness that falls like :math:`1/(1 + t/\tau)` down to a floor (section 6.4).

    .. math::

        S_t = \max\Big(\frac{S_0}{1 + t/\tau},\ S_{\min}\Big).

    With :math:`\tau = 1` the sharpness falls exactly like :math:`1/(t+1)`, the case in
    which every step of a linear warmup is equally demanding; :math:`\tau < 1` falls faster
    (the first warmup step binds), :math:`\tau > 1` more slowly (the last one binds).

    Parameters
    ----------
    steps : array_like
        The steps :math:`t`, finite and >= 0.
    S0 : float
        The initial sharpness :math:`S_0 > 0`.
    tau : float
        The time scale :math:`\tau > 0`.
    S_min : float
        The floor :math:`S_{\min} \ge 0`.

    Returns
    -------
    numpy.ndarray
        :math:`S_t` for each step.

    Examples
    --------
    >>> falling_sharpness(np.arange(4), S0=12.0, tau=1.0, S_min=3.5)
    array([12. ,  6. ,  4. ,  3.5])
    """
    t = check_real_array("steps", steps, low=0, ndim=None, nonempty=False)
    S0 = check_real("S0", S0, low=0, low_open=True)
    tau = check_real("tau", tau, low=0, low_open=True)
    S_min = check_real("S_min", S_min, low=0)
    return np.maximum(S0 / (1.0 + t / tau), S_min)


def scripted_quadratic_path(lrs: np.ndarray, curvatures: np.ndarray, w0: float = 1.0) -> np.ndarray:
    r"""Gradient descent on a quadratic whose curvature is scripted step by step (6.4).

    Step :math:`t` sees :math:`f_t(w) = \tfrac{h_t}{2} w^2` and moves
    :math:`w_{t+1} = (1 - \eta_t h_t)\,w_t`, so

    .. math::

        w_t = w_0 \prod_{s=0}^{t-1} (1 - \eta_s h_s), \qquad t = 0, \dots, T.

    It models the sharpest direction near a minimum whose sharpness :math:`S_t = h_t`
    changes over training: step :math:`t` contracts iff :math:`\eta_t S_t < 2`.

    Parameters
    ----------
    lrs : array_like
        The rates :math:`\eta_0, \dots, \eta_{T-1}`, finite and >= 0.
    curvatures : array_like
        The curvatures :math:`h_0, \dots, h_{T-1}`, finite and >= 0, as many as ``lrs``.
    w0 : float
        The starting point, finite.

    Returns
    -------
    numpy.ndarray
        :math:`w_0, \dots, w_T` (length :math:`T + 1`); entries that overflow are ``±inf``.

    Examples
    --------
    >>> scripted_quadratic_path([0.5, 0.5, 1.0], [1.0, 3.0, 4.0], w0=2.0)
    array([ 2. ,  1. , -0.5,  1.5])
    """
    lrs = check_real_array("lrs", lrs, low=0, nonempty=False)
    curvatures = check_real_array("curvatures", curvatures, low=0, nonempty=False)
    if curvatures.shape != lrs.shape:
        raise ValueError(
            f"curvatures must have one entry per rate ({lrs.size}), got {curvatures.size}"
        )
    w0 = check_real("w0", w0)
    with np.errstate(over="ignore", invalid="ignore"):
        factors = np.cumprod(1.0 - lrs * curvatures)
    return w0 * np.concatenate([[1.0], factors])


def _chain_arguments(curvature: Any, sigma2: Any, chains: Any, seed: Any) -> tuple:
    return (
        check_real("curvature", curvature, low=0),
        check_real("sigma2", sigma2, low=0),
        check_integer("chains", chains, low=1),
        check_integer("seed", seed, low=0),
    )


def noisy_quadratic_sgd(
    lrs: np.ndarray,
    curvature: float,
    sigma2: float,
    w0: float,
    *,
    chains: int,
    seed: int = 0,
) -> np.ndarray:
    r"""Independent SGD chains on the noisy quadratic; their last iterates (section 6.4).

    On :math:`f(w) = \tfrac h2 w^2` with gradients :math:`g_t = h w_t + \xi_t`,
    :math:`\xi_t \sim \mathcal N(0, \sigma^2)` independent across steps and chains,

    .. math::

        w_{t+1} = (1 - \eta_t h)\,w_t - \eta_t \xi_t, \qquad t = 0, \dots, T-1 .

    The mean of :math:`w_T^2` over the chains estimates the exact value that
    :func:`companion.theory.noisy_quadratic_second_moment` computes from the recursion
    for :math:`\mathbb{E}w_t^2`.

    Parameters
    ----------
    lrs : array_like
        The rates :math:`\eta_0, \dots, \eta_{T-1}` in the order they are used.
    curvature : float
        :math:`h \ge 0`.
    sigma2 : float
        The noise variance :math:`\sigma^2 \ge 0`.
    w0 : float
        The common, deterministic starting point.
    chains : int
        Number of independent chains, >= 1.
    seed : int
        Seed of the noise (numpy's default generator), >= 0.

    Returns
    -------
    numpy.ndarray
        :math:`w_T` of each chain, shape ``(chains,)``.

    Examples
    --------
    >>> noisy_quadratic_sgd([0.5, 0.5], 1.0, 0.0, 4.0, chains=2)  # no noise: 4 / 2 / 2
    array([1., 1.])
    """
    lrs = check_real_array("lrs", lrs, low=0, nonempty=False)
    h, sigma2, chains, seed = _chain_arguments(curvature, sigma2, chains, seed)
    w = np.full(chains, check_real("w0", w0))
    rng = np.random.default_rng(seed)
    noise_std = math.sqrt(sigma2)
    for eta in lrs.tolist():
        w = w - eta * (h * w + noise_std * rng.standard_normal(chains))
    return w


def noise_ball_second_moment(
    rates: np.ndarray,
    curvature: float,
    sigma2: float,
    *,
    chains: int,
    burn_in: int,
    keep: int,
    seed: int = 0,
) -> np.ndarray:
    r"""Simulated stationary :math:`\mathbb{E}w^2` of constant-rate SGD on the noisy quadratic.

    For each constant rate :math:`\eta`, ``chains`` chains of
    :math:`w_{t+1} = (1 - \eta h) w_t - \eta\xi_t` (as in :func:`noisy_quadratic_sgd`)
    start at :math:`w_0 = 0`, run ``burn_in`` steps, and :math:`w_t^2` is then averaged
    over the chains and the next ``keep`` steps. Section 6.4 compares it with the fixed
    point :math:`\eta\sigma^2/(h(2 - \eta h))` of
    :func:`companion.theory.stationary_second_moment`.

    Parameters
    ----------
    rates : array_like
        The constant rates, each with :math:`0 < \eta h < 2`.
    curvature : float
        :math:`h > 0`.
    sigma2 : float
        The noise variance :math:`\sigma^2 \ge 0`.
    chains : int
        Independent chains per rate, >= 1.
    burn_in : int
        Steps run and discarded before averaging, >= 0.
    keep : int
        Steps averaged after the burn-in, >= 1.
    seed : int
        Seed of the noise, >= 0.

    Returns
    -------
    numpy.ndarray
        The time- and chain-averaged :math:`w^2`, one per rate.

    Examples
    --------
    >>> noise_ball_second_moment([0.5], 1.0, 0.0, chains=3, burn_in=0, keep=5)
    array([0.])
    """
    rates = check_real_array("rates", rates, low=0, low_open=True)
    h, sigma2, chains, seed = _chain_arguments(curvature, sigma2, chains, seed)
    if h == 0.0 or np.any(rates * h >= 2.0):
        raise ValueError(
            "rates * curvature must lie in (0, 2) for a stationary distribution, got "
            f"curvature={h!r} and rates up to {float(rates.max())!r}"
        )
    burn_in = check_integer("burn_in", burn_in, low=0)
    keep = check_integer("keep", keep, low=1)
    rng = np.random.default_rng(seed)
    noise_std = math.sqrt(sigma2)
    etas = rates[:, None]
    w = np.zeros((rates.size, chains))
    total = np.zeros(rates.size)
    for step in range(burn_in + keep):
        w = w - etas * (h * w + noise_std * rng.standard_normal(w.shape))
        if step >= burn_in:
            total += np.mean(w * w, axis=1)
    return total / keep


def _points(name: str, w: Any) -> Any:
    """A point or an array of points, as float64 (a scalar stays a 0-d array)."""
    if is_real_scalar(w):
        return np.asarray(check_real(name, w), dtype=np.float64)
    return check_real_array(name, w, ndim=None, nonempty=False)


@dataclass(frozen=True)
class TiltedDoubleWell:
    r"""The tilted double well :math:`f(w) = (w^2 - 1)^2 + a\,w` of section 6.4.

    For a tilt :math:`0 < a < 8/(3\sqrt3)` it has a shallow minimum at :math:`w > 0`, a
    barrier (a local maximum) between the two, and a deep minimum at :math:`w < 0`; the
    three are the roots of :math:`f'(w) = 4w^3 - 4w + a`.

    Parameters
    ----------
    tilt : float
        :math:`a`, in :math:`(0, 8/(3\sqrt3))`.

    Examples
    --------
    >>> well = TiltedDoubleWell(0.3)
    >>> [round(x, 4) for x in (well.shallow, well.barrier, well.deep)]
    [0.9601, 0.0754, -1.0356]
    """

    tilt: float = 0.3

    def __post_init__(self) -> None:
        limit = 8.0 / (3.0 * math.sqrt(3.0))
        object.__setattr__(
            self,
            "tilt",
            check_real("tilt", self.tilt, low=0, high=limit, low_open=True, high_open=True),
        )
        roots = np.sort(np.roots([4.0, 0.0, -4.0, self.tilt]).real)
        object.__setattr__(self, "_points", tuple(float(r) for r in roots[::-1]))

    @property
    def shallow(self) -> float:
        """The shallow (local) minimum, :math:`w > 0`."""
        return self._points[0]

    @property
    def barrier(self) -> float:
        """The local maximum between the two basins."""
        return self._points[1]

    @property
    def deep(self) -> float:
        """The deep (global) minimum, :math:`w < 0`."""
        return self._points[2]

    def value(self, w: Any) -> Any:
        """:math:`f(w)`, elementwise."""
        w = _points("w", w)
        return (w * w - 1.0) ** 2 + self.tilt * w

    def grad(self, w: Any) -> Any:
        """:math:`f'(w) = 4w(w^2 - 1) + a`, elementwise."""
        return self._grad(_points("w", w))

    def _grad(self, w: np.ndarray) -> np.ndarray:
        """:meth:`grad` of float64 points already checked (the SGD loop's own iterates)."""
        return 4.0 * w * (w * w - 1.0) + self.tilt

    def curvature(self, w: Any) -> Any:
        """:math:`f''(w) = 12w^2 - 4`, elementwise."""
        w = _points("w", w)
        return 12.0 * w * w - 4.0

    def sgd(
        self, lrs: np.ndarray, *, chains: int, noise_std: float, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""SGD chains from the shallow minimum with Gaussian gradient noise.

        Every chain starts at :attr:`shallow` and moves
        :math:`w_{t+1} = w_t - \eta_t\,(f'(w_t) + \sigma\,\zeta_t)`,
        :math:`\zeta_t \sim \mathcal N(0, 1)` independent across steps and chains.
        A chain is in the deep basin when it lies beyond the barrier: ``w < barrier``
        (:attr:`barrier`).

        Parameters
        ----------
        lrs : array_like
            The rates :math:`\eta_0, \dots, \eta_{T-1}`, finite and >= 0.
        chains : int
            Number of chains, >= 1.
        noise_std : float
            The noise's standard deviation :math:`\sigma \ge 0`.
        seed : int
            Seed of the noise, >= 0.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            The last iterates, shape ``(chains,)``, and the fraction of chains in the deep
            basin after each step, shape ``(T + 1,)`` (entry 0 is the start, 0).

        Examples
        --------
        >>> w, deep = TiltedDoubleWell(0.3).sgd([0.01] * 3, chains=2, noise_std=0.0)
        >>> deep
        array([0., 0., 0., 0.])
        """
        lrs = check_real_array("lrs", lrs, low=0, nonempty=False)
        chains = check_integer("chains", chains, low=1)
        noise_std = check_real("noise_std", noise_std, low=0)
        seed = check_integer("seed", seed, low=0)
        rng = np.random.default_rng(seed)
        w = np.full(chains, self.shallow)
        in_deep = np.zeros(lrs.size + 1)
        for t, eta in enumerate(lrs.tolist()):
            w = w - eta * (self._grad(w) + noise_std * rng.standard_normal(chains))
            in_deep[t + 1] = np.mean(w < self.barrier)
        return w, in_deep
