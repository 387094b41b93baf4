r"""The chapter's formulas for learning-rate schedules, as functions (sections 6.2 and 6.4).

numpy only. Each docstring states the formula and where the book derives it; the
corrections of the draft (``ERRATA.md`` items 1-8) are built in.

Examples
--------
The worked example of section 6.4 (:math:`\Delta = 100`, :math:`L\sigma^2/2 = 1`, T = 100):

>>> from companion.theory import sgd_bound, best_constant_lr
>>> sgd_bound([0.1] * 100, delta=100.0, L=2.0, sigma2=1.0)
10.1
>>> sgd_bound([0.1] * 50 + [0.025] * 50, delta=100.0, L=2.0, sigma2=1.0)
16.085
>>> best_constant_lr(delta=100.0, L=2.0, sigma2=1.0, T=100)
(1.0, 2.0)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "sgd_bound",
    "best_constant_lr",
    "min_warmup_steps",
    "cosine_early_approx",
    "cosine_late_approx",
    "noisy_quadratic_second_moment",
    "stationary_second_moment",
]


def _real(name: str, value: Any, *, positive: bool = False) -> float:
    """A finite real number >= 0 (> 0 if ``positive``)."""
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite real number {bound}, got {value!r}")
    x = float(value)
    if not math.isfinite(x) or x < 0.0 or (positive and x == 0.0):
        raise ValueError(f"{name} must be a finite real number {bound}, got {value!r}")
    return x


def _lrs(lrs: npt.ArrayLike) -> np.ndarray:
    """A non-empty 1-d array of finite learning rates >= 0."""
    arr = np.asarray(lrs, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"lrs must be a non-empty 1-d sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("lrs must contain finite learning rates >= 0")
    return arr


def sgd_bound(lrs: npt.ArrayLike, delta: float, L: float, sigma2: float) -> float:
    r"""Lemma 6.2.1: the bound on :math:`\min_t \mathbb{E}\|\nabla f(w_t)\|^2` for a schedule.

    For SGD :math:`w_{t+1} = w_t - \eta_t g_t` with deterministic rates on an
    :math:`L`-smooth :math:`f` with :math:`f(w_1) - f^* = \Delta` and unbiased
    gradients of second moment :math:`\mathbb{E}\|g_t\|^2 \le \sigma^2`,

    .. math::

        \min_{t \le T} \mathbb{E}\|\nabla f(w_t)\|^2
        \le \frac{\Delta + \tfrac{L\sigma^2}{2}\sum_{t=1}^T \eta_t^2}{\sum_{t=1}^T \eta_t}.

    The sums are computed with :func:`math.fsum` (correctly rounded), so the worked
    example of section 6.4 comes out as 10.1, 40.025 and 16.085 (= 3217/200).
    The bound depends on the multiset of rates only, not on their order (ERRATA 5).

    Parameters
    ----------
    lrs : array_like
        The rates :math:`\eta_1, \dots, \eta_T`: finite, >= 0, not all 0.
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
    >>> sgd_bound([0.025] * 100, delta=100.0, L=2.0, sigma2=1.0)
    40.025
    """
    arr = _lrs(lrs)
    delta = _real("delta", delta)
    L = _real("L", L, positive=True)
    sigma2 = _real("sigma2", sigma2)
    total = math.fsum(arr.tolist())
    if total <= 0.0:
        raise ValueError("lrs must not all be 0 (the bound divides by their sum)")
    squares = math.fsum((arr * arr).tolist())
    return (delta + L * sigma2 / 2.0 * squares) / total


def best_constant_lr(delta: float, L: float, sigma2: float, T: int) -> tuple[float, float]:
    r"""The constant rate that minimises Lemma 6.2.1's bound, and the bound there (ERRATA 5).

    With :math:`\eta_t = \eta` the bound is :math:`\Delta/(T\eta) + L\sigma^2\eta/2`,
    minimised at

    .. math::

        \eta^* = \sqrt{\frac{2\Delta}{L\sigma^2 T}}, \qquad
        \text{bound}(\eta^*) = \sqrt{\frac{2\Delta L\sigma^2}{T}}.

    Since :math:`\sum\eta_t^2 \ge (\sum\eta_t)^2/T`, no schedule beats this bound.
    (Whether :math:`\eta^*` is a sensible step, e.g. :math:`\eta^* \le 1/L`, is a
    separate question.)

    Parameters
    ----------
    delta, L, sigma2 : float
        All finite and > 0.
    T : int
        Number of steps, >= 1.

    Returns
    -------
    (float, float)
        :math:`\eta^*` and the bound at :math:`\eta^*`.

    Examples
    --------
    >>> best_constant_lr(delta=100.0, L=2.0, sigma2=1.0, T=100)
    (1.0, 2.0)
    """
    delta = _real("delta", delta, positive=True)
    L = _real("L", L, positive=True)
    sigma2 = _real("sigma2", sigma2, positive=True)
    if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 1:
        raise ValueError(f"T must be an integer >= 1, got {T!r}")
    lr = math.sqrt(2.0 * delta / (L * sigma2 * T))
    return lr, math.sqrt(2.0 * delta * L * sigma2 / T)


def min_warmup_steps(peak_lr: float, L0: float) -> int:
    r"""The shortest linear warmup whose first step is stable at sharpness :math:`L_0` (6.4).

    A linear warmup's first rate is :math:`\eta_{\text{peak}}/T_w`; gradient descent is
    stable only if :math:`\eta < 2/L`, so the first step needs

    .. math::

        T_w > \frac{\eta_{\text{peak}} L_0}{2}.

    Returned is the smallest integer satisfying it. The condition is *necessary*;
    it is sufficient only if the sharpness falls fast enough during warmup,
    :math:`L_t \le 2T_w/((t+1)\eta_{\text{peak}})` (ERRATA 6; the first rate is the
    smallest, not the most stringent).

    Parameters
    ----------
    peak_lr : float
        Finite, >= 0.
    L0 : float
        The initial sharpness, finite, >= 0.

    Returns
    -------
    int

    Examples
    --------
    >>> min_warmup_steps(peak_lr=1.0, L0=10.0)  # T_w > 5
    6
    """
    peak = _real("peak_lr", peak_lr)
    L0 = _real("L0", L0)
    return math.floor(peak * L0 / 2.0) + 1


def cosine_early_approx(peak_lr: float, t: npt.ArrayLike, total_steps: int) -> Any:
    r"""Early-phase Taylor approximation of the cosine schedule (6.4, ERRATA 7).

    For :math:`\eta_t = \tfrac{\eta_0}{2}(1 + \cos(\pi t/T))` and :math:`t \ll T`,
    :math:`\cos x \approx 1 - x^2/2` gives

    .. math::

        \eta_t \approx \eta_0\left(1 - \frac{\pi^2 t^2}{4T^2}\right),

    with an error of order :math:`\eta_0 (t/T)^4`. The exact curve is
    ``companion.schedules.cosine(peak_lr, total_steps)``.

    Parameters
    ----------
    peak_lr : float
        :math:`\eta_0`, finite, >= 0.
    t : int or array_like
        Step(s).
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
    peak = _real("peak_lr", peak_lr)
    T = _total(total_steps)
    x = np.asarray(t, dtype=np.float64)
    out = peak * (1.0 - np.pi**2 * x**2 / (4.0 * T**2))
    return float(out) if out.ndim == 0 else out


def cosine_late_approx(peak_lr: float, k: npt.ArrayLike, total_steps: int) -> Any:
    r"""Late-phase Taylor approximation of the cosine schedule (6.4, ERRATA 7).

    At :math:`t = T - k` with :math:`k \ll T`, :math:`1 + \cos(\pi - x) \approx x^2/2` gives

    .. math::

        \eta_{T-k} \approx \frac{\eta_0 \pi^2}{4}\left(\frac{k}{T}\right)^2:

    a quadratic, smooth landing (zero slope at :math:`k = 0`), not a fast decay.

    Parameters
    ----------
    peak_lr : float
        :math:`\eta_0`, finite, >= 0.
    k : int or array_like
        Steps before the end.
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
    peak = _real("peak_lr", peak_lr)
    T = _total(total_steps)
    x = np.asarray(k, dtype=np.float64)
    out = peak * np.pi**2 / 4.0 * (x / T) ** 2
    return float(out) if out.ndim == 0 else out


def _total(total_steps: Any) -> int:
    if (
        isinstance(total_steps, bool)
        or not isinstance(total_steps, numbers.Integral)
        or total_steps < 1
    ):
        raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
    return int(total_steps)


def noisy_quadratic_second_moment(
    lrs: npt.ArrayLike,
    curvature: float,
    sigma2: float,
    w0: float,
    *,
    full: bool = False,
) -> Any:
    r"""Exact :math:`\mathbb{E}[w^2]` after SGD on the noisy quadratic (6.4, ERRATA 5).

    On :math:`f(w) = \lambda w^2/2` with gradients :math:`g_t = \lambda w_t + \xi_t`,
    :math:`\mathbb{E}\xi_t = 0`, :math:`\mathbb{E}\xi_t^2 = \sigma^2` independent of the
    past, SGD :math:`w_{t+1} = (1 - \eta_t\lambda) w_t - \eta_t \xi_t` gives the recursion

    .. math::

        \mathbb{E} w_{t+1}^2 = (1 - \eta_t\lambda)^2\, \mathbb{E} w_t^2 + \eta_t^2\sigma^2,

    i.e. after the :math:`T` rates :math:`\eta_1, \dots, \eta_T`

    .. math::

        \mathbb{E} w_{T+1}^2 = \prod_{t=1}^T (1 - \eta_t\lambda)^2\, w_1^2
          + \sigma^2 \sum_{t=1}^T \eta_t^2 \prod_{s=t+1}^T (1 - \eta_s\lambda)^2.

    Unlike Lemma 6.2.1's bound, this last-iterate value depends on the *order* of
    the rates: with :math:`\lambda = \sigma = 1`, :math:`w_1 = 10`, T = 100 it is
    0.0526 for constant 0.1, 0.0161 for 50 steps of 0.1 then 50 of 0.025, 0.0528
    for the reverse, and 0.0183 for ``cosine(0.1, 100)``.

    Parameters
    ----------
    lrs : array_like
        The rates in the order they are used; finite, >= 0 (may be empty).
    curvature : float
        :math:`\lambda`, finite, >= 0.
    sigma2 : float
        :math:`\sigma^2`, the gradient-noise variance, finite, >= 0.
    w0 : float
        The deterministic starting point :math:`w_1`, finite.
    full : bool
        If true, return the whole path :math:`\mathbb{E}w_1^2, \dots, \mathbb{E}w_{T+1}^2`.

    Returns
    -------
    float, or numpy.ndarray of length T + 1 if ``full``

    Examples
    --------
    >>> round(noisy_quadratic_second_moment([0.1] * 100, 1.0, 1.0, 10.0), 4)
    0.0526
    """
    arr = np.asarray(lrs, dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("lrs must be a 1-d sequence of finite learning rates >= 0")
    lam = _real("curvature", curvature)
    sigma2 = _real("sigma2", sigma2)
    if isinstance(w0, bool) or not isinstance(w0, numbers.Real) or not math.isfinite(w0):
        raise ValueError(f"w0 must be a finite real number, got {w0!r}")
    m = float(w0) ** 2
    path = [m]
    for eta in arr.tolist():
        m = (1.0 - eta * lam) ** 2 * m + eta * eta * sigma2
        path.append(m)
    return np.array(path) if full else m


def stationary_second_moment(lr: float, curvature: float, sigma2: float) -> float:
    r"""The noise ball of constant-rate SGD on a quadratic (6.2.1, 6.4, ERRATA 8).

    The fixed point of :math:`m \mapsto (1 - \eta\lambda)^2 m + \eta^2\sigma^2` is

    .. math::

        \lim_{t\to\infty} \mathbb{E} w_t^2 = \frac{\eta\sigma^2}{\lambda(2 - \eta\lambda)},
        \qquad 0 < \eta\lambda < 2:

    the *squared* radius (and the suboptimality :math:`\lambda\,\mathbb{E}w^2/2`)
    scale with :math:`\eta`, the radius with :math:`\sqrt{\eta}`.

    Parameters
    ----------
    lr : float
        :math:`\eta > 0`.
    curvature : float
        :math:`\lambda > 0`, with :math:`\eta\lambda < 2` (else SGD diverges).
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
    eta = _real("lr", lr, positive=True)
    lam = _real("curvature", curvature, positive=True)
    sigma2 = _real("sigma2", sigma2)
    if eta * lam >= 2.0:
        raise ValueError(
            f"lr * curvature must be in (0, 2) for a stationary distribution, got {eta * lam}"
        )
    return eta * sigma2 / (lam * (2.0 - eta * lam))


# --- used by section 6.5

from companion._validation import check_real, check_real_array, is_real_scalar  # noqa: E402

__all__ += ["river_trend_multiplier", "river_trend_rate"]


def _beta_r(beta_r: Any) -> float:
    """River's reference rate, in (0, 1)."""
    return check_real("beta_r", beta_r, low=0.0, high=1.0, low_open=True, high_open=True)


def river_trend_multiplier(g: npt.ArrayLike, beta_r: float = 0.999, eps: float = 0.0) -> Any:
    r"""The stationary River multiplier under a geometric variance trend (section 6.5).

    If the batch variances are :math:`V_t = V e^{g t}`, both averages of River become,
    after their transients, the same geometric sequence times constant factors: the fast
    average :math:`u_t` is :math:`V_t (1-\beta_v)/(1-\beta_v e^{-g})` and the reference
    :math:`r_t` is :math:`u_t (1-\beta_r)/(1-\beta_r e^{-g})`. The unclipped multiplier
    :math:`\rho_t = r_t / (u_t + \epsilon\, r_t)` (relative :math:`\epsilon`) tends to

    .. math::

        \rho_\infty(g) = \frac{q}{1 + \epsilon\, q},
        \qquad q = \frac{1-\beta_r}{1-\beta_r e^{-g}},
        \qquad g > \ln\beta_r,

    whatever :math:`\beta_v` and whatever the level :math:`V`. A rising variance
    (:math:`g > 0`) gives :math:`\rho_\infty < 1`, a falling one :math:`\rho_\infty > 1`;
    for :math:`g \le \ln\beta_r` the reference is dominated by its start and
    :math:`\rho_t` grows without bound (into the clip).

    Parameters
    ----------
    g : float or array_like
        Growth rate of the variance per batch; every entry must exceed
        :math:`\ln\beta_r`.
    beta_r : float
        Rate of the reference average, in (0, 1).
    eps : float
        River's relative :math:`\epsilon` (``eps_mode="relative"``), >= 0.

    Returns
    -------
    float, or numpy.ndarray shaped like ``g``

    See Also
    --------
    river_trend_rate : the inverse, the growth rate that gives a multiplier.

    Examples
    --------
    >>> round(river_trend_multiplier(0.0), 12)
    1.0
    >>> round(river_trend_multiplier(math.log(1e4) / 4000), 4)  # a factor 10^4 in 4000 steps
    0.3032
    """
    beta = _beta_r(beta_r)
    eps = check_real("eps", eps, low=0.0)
    if is_real_scalar(g):
        arr = np.float64(check_real("g", g))
    else:
        arr = check_real_array("g", g, ndim=None)
    critical = math.log(beta)
    if np.any(arr <= critical):
        raise ValueError(
            f"g must be a growth rate > ln(beta_r) = {critical!r} (below it the multiplier "
            f"has no stationary value), got {float(np.min(arr))!r}"
        )
    q = (1.0 - beta) / (1.0 - beta * np.exp(-arr))
    out = q / (1.0 + eps * q)
    return float(out) if out.ndim == 0 else out


def river_trend_rate(multiplier: float, beta_r: float = 0.999) -> float:
    r"""The variance growth rate whose stationary River multiplier is ``multiplier`` (section 6.5).

    The inverse of :func:`river_trend_multiplier` with :math:`\epsilon = 0`:

    .. math::

        g(\rho) = \ln\beta_r - \ln\Bigl(1 - \frac{1-\beta_r}{\rho}\Bigr),

    which tends to the critical rate :math:`\ln\beta_r` as :math:`\rho\to\infty`
    (``multiplier=math.inf``). With ``multiplier`` set to the clip's upper end
    :math:`\rho_{\max}`, it is the slowest steady fall of the variance that holds the
    multiplier at the clip; :math:`\ln 2 / (-g)` is then the corresponding halving time.

    Parameters
    ----------
    multiplier : float
        :math:`\rho > 1 - \beta_r` (the multiplier of an infinitely fast rise), or ``inf``.
    beta_r : float
        Rate of the reference average, in (0, 1).

    Returns
    -------
    float

    Examples
    --------
    >>> round(river_trend_rate(math.inf), 7)  # ln(0.999)
    -0.0010005
    >>> round(math.log(2) / -river_trend_rate(10.0))  # halving time that reaches the clip 10
    770
    """
    beta = _beta_r(beta_r)
    rho = check_real("multiplier", multiplier, low=1.0 - beta, low_open=True, finite=False)
    return math.log(beta) - math.log1p(-(1.0 - beta) / rho)
