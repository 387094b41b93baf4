"""The bounds and exact formulas of sections 6.2 and 6.4 (numpy only)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from companion._validation import (
    check_flag,
    check_integer,
    check_real,
    check_real_array,
    is_real_scalar,
)

__all__ = [
    "sgd_bound",
    "best_constant_lr",
    "min_warmup_steps",
    "cosine_early_approx",
    "cosine_late_approx",
    "noisy_quadratic_second_moment",
    "stationary_second_moment",
]


def sgd_bound(lrs: npt.ArrayLike, delta: float, L: float, sigma2: float) -> float:
    r"""Lemma 6.2.1: the bound on :math:`\min_t \mathbb{E}\|\nabla f(w_t)\|^2` for a schedule.

    For SGD :math:`w_{t+1} = w_t - \eta_t g_t` with deterministic rates on an
    :math:`L`-smooth :math:`f` with :math:`f(w_0) - f^\star = \Delta` and gradients that
    are unbiased given the history, with :math:`\mathbb{E}[\|g_t\|^2 \mid \mathcal F_t]
    \le \sigma^2` (the lemma's hypothesis; section 6.2, equation :eq:`eq-62-bound`),

    .. math::

        \min_{0 \le t < T} \mathbb{E}\|\nabla f(w_t)\|^2
        \le \frac{\Delta + \tfrac{L\sigma^2}{2}\sum_{t=0}^{T-1} \eta_t^2}
                  {\sum_{t=0}^{T-1} \eta_t}.

    The sums are computed with :func:`math.fsum` (correctly rounded), so the worked
    example of section 6.4 comes out as 10.1, 40.025 and 16.085 (= 3217/200).
    The bound depends on the multiset of rates only, not on their order.

    Parameters
    ----------
    lrs : array_like
        The rates :math:`\eta_0, \dots, \eta_{T-1}`: a non-empty 1-d sequence of finite
        real numbers >= 0 (bools are not numbers), not all 0.
    delta : float
        :math:`\Delta \ge 0`, the initial gap.
    L : float
        :math:`L > 0`, the smoothness constant.
    sigma2 : float
        :math:`\sigma^2 \ge 0`, the bound on the gradients' second moment.

    Returns
    -------
    float

    Examples
    --------
    The book's constants (:math:`\Delta = 100`, :math:`L = 1`, :math:`\sigma^2 = 2`):

    >>> sgd_bound([0.025] * 100, delta=100.0, L=1.0, sigma2=2.0)
    40.025
    """
    arr = check_real_array("lrs", lrs, low=0)
    delta = check_real("delta", delta, low=0)
    L = check_real("L", L, low=0, low_open=True)
    sigma2 = check_real("sigma2", sigma2, low=0)
    total = math.fsum(arr.tolist())
    if total <= 0.0:
        raise ValueError("lrs must not all be 0 (the bound divides by their sum)")
    squares = math.fsum((arr * arr).tolist())
    return (delta + L * sigma2 / 2.0 * squares) / total


def best_constant_lr(delta: float, L: float, sigma2: float, T: int) -> tuple[float, float]:
    r"""The constant rate that minimises Lemma 6.2.1's bound, and the bound there (6.4).

    With :math:`\eta_t = \eta` the bound is :math:`\Delta/(T\eta) + L\sigma^2\eta/2`,
    minimised at (section 6.4, equation :eq:`eq-64-eta-star`)

    .. math::

        \eta^\star = \sqrt{\frac{2\Delta}{L\sigma^2 T}}, \qquad
        \text{bound}(\eta^\star) = \sqrt{\frac{2\Delta L\sigma^2}{T}}.

    Since :math:`\sum\eta_t^2 \ge (\sum\eta_t)^2/T`, no schedule beats this bound.
    (Whether :math:`\eta^\star` is a sensible step, e.g. :math:`\eta^\star \le 1/L`, is a
    separate question.)

    Parameters
    ----------
    delta : float
        :math:`\Delta > 0`, the initial gap; finite.
    L : float
        :math:`L > 0`, the smoothness constant; finite.
    sigma2 : float
        :math:`\sigma^2 > 0`, the bound on the gradients' second moment; finite.
    T : int
        Number of steps, >= 1.

    Returns
    -------
    (float, float)
        :math:`\eta^\star` and the bound at :math:`\eta^\star`.

    Examples
    --------
    >>> best_constant_lr(delta=100.0, L=1.0, sigma2=2.0, T=100)
    (1.0, 2.0)
    """
    delta = check_real("delta", delta, low=0, low_open=True)
    L = check_real("L", L, low=0, low_open=True)
    sigma2 = check_real("sigma2", sigma2, low=0, low_open=True)
    T = check_integer("T", T, low=1)
    lr = math.sqrt(2.0 * delta / (L * sigma2 * T))
    return lr, math.sqrt(2.0 * delta * L * sigma2 / T)


def min_warmup_steps(peak_lr: float, L0: float) -> int:
    r"""The shortest linear warmup whose first step is stable at sharpness :math:`S_0` (6.4).

    A linear warmup's first rate is :math:`\eta_{\text{peak}}/W`; gradient descent is
    stable only if :math:`\eta\,S < 2`, so the first step needs (section 6.4, equation
    :eq:`eq-64-warmup-length`)

    .. math::

        W > \frac{\eta_{\text{peak}} S_0}{2}.

    Returned is the smallest integer satisfying it. The condition is *necessary*; it
    is sufficient only if the sharpness falls fast enough during warmup,
    :math:`S_t \le 2W/((t+1)\eta_{\text{peak}})` (equation :eq:`eq-64-warmup-all`).

    Parameters
    ----------
    peak_lr : float
        :math:`\eta_{\text{peak}}`, finite, >= 0.
    L0 : float
        :math:`S_0`, the initial sharpness, finite, >= 0.

    Returns
    -------
    int

    Examples
    --------
    >>> min_warmup_steps(peak_lr=1.0, L0=10.0)  # W > 5
    6
    """
    peak = check_real("peak_lr", peak_lr, low=0)
    L0 = check_real("L0", L0, low=0)
    return math.floor(peak * L0 / 2.0) + 1


def _taylor(peak_lr: Any, name: str, steps: Any, total_steps: Any, formula: Any) -> Any:
    """``formula(peak, x, T)`` at the checked steps ``x``: a float for a number, else an array."""
    peak = check_real("peak_lr", peak_lr, low=0)
    if is_real_scalar(steps):
        x: Any = check_real(name, steps, low=0)
    else:
        x = check_real_array(name, steps, low=0, ndim=None, nonempty=False)
    out = formula(peak, x, check_integer("total_steps", total_steps, low=1))
    return float(out) if np.ndim(out) == 0 else out


def cosine_early_approx(peak_lr: float, t: npt.ArrayLike, total_steps: int) -> Any:
    r"""Early-phase Taylor approximation of the cosine schedule (6.4, equation :eq:`eq-64-cos-early`).

    For :math:`s(t) = \tfrac{\eta_{\text{peak}}}{2}(1 + \cos(\pi t/T))` and
    :math:`t \ll T`, :math:`\cos x \approx 1 - x^2/2` gives

    .. math::

        s(t) \approx \eta_{\text{peak}}\left(1 - \frac{\pi^2 t^2}{4T^2}\right),

    with an error of order :math:`\eta_{\text{peak}} (t/T)^4`. The exact curve is
    ``companion.schedules.cosine(peak_lr, total_steps)``.

    Parameters
    ----------
    peak_lr : float
        :math:`\eta_{\text{peak}}`, finite, >= 0.
    t : float or array_like
        Step(s): finite real numbers >= 0.
    total_steps : int
        :math:`T \ge 1`.

    Returns
    -------
    float or numpy.ndarray

    Examples
    --------
    >>> round(cosine_early_approx(1.0, 10, 100), 6)
    0.975326
    """
    return _taylor(
        peak_lr, "t", t, total_steps, lambda p, x, T: p * (1.0 - np.pi**2 * x**2 / (4.0 * T**2))
    )


def cosine_late_approx(peak_lr: float, k: npt.ArrayLike, total_steps: int) -> Any:
    r"""Late-phase Taylor approximation of the cosine schedule (6.4, equation :eq:`eq-64-cos-late`).

    At :math:`t = T - k` with :math:`k \ll T`, :math:`1 + \cos(\pi - x) \approx x^2/2` gives

    .. math::

        s(T - k) \approx \frac{\eta_{\text{peak}} \pi^2}{4}\left(\frac{k}{T}\right)^2:

    a quadratic, smooth landing (zero slope at :math:`k = 0`), not a fast decay.

    Parameters
    ----------
    peak_lr : float
        :math:`\eta_{\text{peak}}`, finite, >= 0.
    k : float or array_like
        Steps before the end: finite real numbers >= 0.
    total_steps : int
        :math:`T \ge 1`.

    Returns
    -------
    float or numpy.ndarray

    Examples
    --------
    >>> round(cosine_late_approx(1.0, 10, 100), 6)
    0.024674
    """
    return _taylor(peak_lr, "k", k, total_steps, lambda p, x, T: p * np.pi**2 / 4.0 * (x / T) ** 2)


def noisy_quadratic_second_moment(
    lrs: npt.ArrayLike,
    curvature: float,
    sigma2: float,
    w0: float,
    *,
    full: bool = False,
) -> Any:
    r"""Exact :math:`\mathbb{E}[w_T^2]` after SGD on the noisy quadratic (6.4, equation :eq:`eq-64-last-iterate`).

    On :math:`f(w) = h w^2/2` with gradients :math:`g_t = h w_t + \xi_t`,
    :math:`\mathbb{E}\xi_t = 0`, :math:`\mathbb{E}\xi_t^2 = \sigma^2` independent of the
    past, SGD :math:`w_{t+1} = (1 - \eta_t h) w_t - \eta_t \xi_t` gives the recursion

    .. math::

        \mathbb{E} w_{t+1}^2 = (1 - \eta_t h)^2\, \mathbb{E} w_t^2 + \eta_t^2\sigma^2,

    i.e. after the :math:`T` rates :math:`\eta_0, \dots, \eta_{T-1}`

    .. math::

        \mathbb{E} w_T^2 = \prod_{t=0}^{T-1} (1 - \eta_t h)^2\, w_0^2
          + \sigma^2 \sum_{t=0}^{T-1} \eta_t^2 \prod_{s=t+1}^{T-1} (1 - \eta_s h)^2.

    Unlike Lemma 6.2.1's bound, this last-iterate value depends on the *order* of
    the rates. With section 6.4's quadratic, which shares the worked example's constants
    (:math:`h = L = 1`, :math:`\sigma^2 = 2`, :math:`w_0 = 10\sqrt2` so that
    :math:`\Delta = 100`, :math:`T = 100`), it is 0.1053 for constant 0.1, 0.0321 for 50
    steps of 0.1 then 50 of 0.025, 0.1057 for the reverse, and 0.0367 for
    ``cosine(0.1, 100)`` (see the examples).

    Parameters
    ----------
    lrs : array_like
        The rates in the order they are used; finite, >= 0 (may be empty).
    curvature : float
        :math:`h`, finite, >= 0.
    sigma2 : float
        :math:`\sigma^2`, the gradient-noise variance, finite, >= 0.
    w0 : float
        The deterministic starting point :math:`w_0`, finite.
    full : bool
        If true, return the whole path :math:`\mathbb{E}w_0^2, \dots, \mathbb{E}w_T^2`.

    Returns
    -------
    float, or numpy.ndarray of length T + 1 if ``full``

    Examples
    --------
    >>> w0 = 10 * np.sqrt(2)
    >>> round(noisy_quadratic_second_moment([0.1] * 100, 1.0, 2.0, w0), 4)
    0.1053
    >>> two_stage = [0.1] * 50 + [0.025] * 50
    >>> round(noisy_quadratic_second_moment(two_stage, 1.0, 2.0, w0), 4)
    0.0321
    >>> round(noisy_quadratic_second_moment(two_stage[::-1], 1.0, 2.0, w0), 4)
    0.1057
    >>> from companion.schedules import cosine
    >>> cosine_rates = cosine(0.1, 100)(np.arange(100))
    >>> round(noisy_quadratic_second_moment(cosine_rates, 1.0, 2.0, w0), 4)
    0.0367
    """
    arr = check_real_array("lrs", lrs, low=0, nonempty=False)
    h = check_real("curvature", curvature, low=0)
    sigma2 = check_real("sigma2", sigma2, low=0)
    m = check_real("w0", w0) ** 2
    full = check_flag("full", full)
    path = [m]
    for eta in arr.tolist():
        m = (1.0 - eta * h) ** 2 * m + eta * eta * sigma2
        path.append(m)
    return np.array(path) if full else m


def stationary_second_moment(lr: float, curvature: float, sigma2: float) -> float:
    r"""The noise ball of constant-rate SGD on a quadratic (6.2.2; 6.4, equation :eq:`eq-64-noise-ball`).

    The fixed point of :math:`m \mapsto (1 - \eta h)^2 m + \eta^2\sigma^2` is

    .. math::

        \lim_{t\to\infty} \mathbb{E} w_t^2 = \frac{\eta\sigma^2}{h(2 - \eta h)},
        \qquad 0 < \eta h < 2:

    the *squared* radius (and the suboptimality :math:`h\,\mathbb{E}w^2/2`)
    scale with :math:`\eta`, the radius with :math:`\sqrt{\eta}`.

    Parameters
    ----------
    lr : float
        :math:`\eta > 0`.
    curvature : float
        :math:`h > 0`, with :math:`\eta h < 2` (else SGD diverges).
    sigma2 : float
        :math:`\sigma^2 \ge 0`.

    Returns
    -------
    float

    Examples
    --------
    >>> round(stationary_second_moment(0.1, 1.0, 1.0), 6)  # 0.1 / 1.9
    0.052632
    """
    eta = check_real("lr", lr, low=0, low_open=True)
    lam = check_real("curvature", curvature, low=0, low_open=True)
    sigma2 = check_real("sigma2", sigma2, low=0)
    if eta * lam >= 2.0:
        raise ValueError(
            f"lr * curvature must be in (0, 2) for a stationary distribution, got {eta * lam}"
        )
    return eta * sigma2 / (lam * (2.0 - eta * lam))
