r"""The schedules practitioners bring from PyTorch, optax and Hugging Face: polynomial,
exponential, inverse square root and one-cycle (section 6.2.2).

Private: the public names are re-exported by :mod:`companion.schedules`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from companion._validation import check_choice, check_flag, check_integer, check_real

from ._base import (
    Schedule,
    _Composed,
    _Constant,
    _Decay,
    _Geometric,
    _Steps,
    anneal,
    as_array,
    chain,
    count,
    fill,
    ramp,
    rate,
)

#: The annealing strategies of :func:`one_cycle` (PyTorch's ``anneal_strategy``).
ONE_CYCLE_ANNEALS = ("cos", "linear")


@dataclass(frozen=True, repr=False)
class _Polynomial(_Composed):
    peak_lr: float
    total_steps: int
    power: float = 1.0
    final_lr: float = 0.0
    warmup_steps: int = 0
    _name = "polynomial"

    def _build(self):
        peak, final, T, W = self.peak_lr, self.final_lr, self.total_steps, self.warmup_steps
        decay = _Decay(peak, final, T - W, "poly", self.power)
        return ramp(0.0, peak, W, "linear", chain((decay, T - W), (_Constant(final), None)))


def polynomial(
    peak_lr: float,
    total_steps: int,
    power: float = 1.0,
    final_lr: float = 0.0,
    warmup_steps: int = 0,
) -> Schedule:
    r"""Polynomial decay to ``final_lr`` at step :math:`T`, after an optional linear warmup.

    .. math::

        s(t) = \begin{cases}
          \eta_{\text{peak}}\,(t + 1)/W & t < W,\\[2pt]
          \eta_{\min} + (\eta_{\text{peak}} - \eta_{\min})
            \Big(1 - \dfrac{t - W}{T - W}\Big)^{k} & W \le t < T,\\[2pt]
          \eta_{\min} & t \ge T,
        \end{cases}

    with :math:`k` = ``power`` (``power = 1`` is a linear decay). Peers: with no warmup
    and ``final_lr = 0`` this is PyTorch's ``PolynomialLR(total_iters=T, power=k)``, and
    with no warmup optax's ``polynomial_schedule(peak_lr, final_lr, k, T)``, at every
    step. Convention: the warmup is :func:`linear_warmup`'s, so :math:`s(0) > 0`
    (optax's ``transition_begin`` holds the peak instead; Hugging Face's
    ``get_polynomial_decay_schedule_with_warmup`` warms up with :math:`t/W`).

    Parameters
    ----------
    peak_lr : float
        Finite, >= 0.
    total_steps : int
        ``T >= 1``: the step at which ``final_lr`` is reached.
    power : float
        ``k > 0``, finite.
    final_lr : float
        :math:`\eta_{\min}` in ``[0, peak_lr]``.
    warmup_steps : int
        ``W`` in ``[0, total_steps]``.

    Examples
    --------
    >>> polynomial(1.0, 4, power=2.0)(np.arange(6))
    array([1.    , 0.5625, 0.25  , 0.0625, 0.    , 0.    ])
    """
    peak = rate("peak_lr", peak_lr)
    T = count("total_steps", total_steps, 1)
    k = check_real("power", power, low=0, low_open=True)
    final = rate("final_lr", final_lr, peak)
    return _Polynomial(peak, T, k, final, count("warmup_steps", warmup_steps, 0, T))


@dataclass(frozen=True, repr=False)
class _Exponential(_Composed):
    peak_lr: float
    decay_rate: float
    decay_steps: int = 1
    staircase: bool = False
    final_lr: float = 0.0
    warmup_steps: int = 0
    _name = "exponential"

    def _build(self):
        peak, W = self.peak_lr, self.warmup_steps
        decay = _Geometric(peak, self.decay_rate, self.decay_steps, self.staircase, self.final_lr)
        return ramp(0.0, peak, W, "linear", decay)


def exponential(
    peak_lr: float,
    decay_rate: float,
    decay_steps: int = 1,
    staircase: bool = False,
    final_lr: float = 0.0,
    warmup_steps: int = 0,
) -> Schedule:
    r"""Exponential decay, never below ``final_lr``, after an optional linear warmup.

    .. math::

        s(t) = \begin{cases}
          \eta_{\text{peak}}\,(t + 1)/W & t < W,\\[2pt]
          \max\!\big(\eta_{\text{peak}}\,\gamma^{\,p},\ \eta_{\min}\big),
            \quad p = \dfrac{t - W}{k} & t \ge W,
        \end{cases}

    with :math:`\gamma` = ``decay_rate``, :math:`k` = ``decay_steps`` and :math:`p`
    rounded down with ``staircase``. Peers: with ``decay_steps = 1`` and no warmup this
    is PyTorch's ``ExponentialLR(gamma=decay_rate)`` (which multiplies the previous rate
    by :math:`\gamma` at every step, so it drifts from the closed form by rounding);
    with no warmup it is optax's ``exponential_decay(peak_lr, decay_steps, decay_rate,
    staircase=staircase, end_value=final_lr)``. Convention: optax's ``transition_begin``
    holds the peak where this warmup rises from :math:`\eta_{\text{peak}}/W`.

    Parameters
    ----------
    peak_lr : float
        Finite, >= 0.
    decay_rate : float
        :math:`\gamma` in ``(0, 1]``.
    decay_steps : int
        :math:`k \ge 1`: the rate is multiplied by :math:`\gamma` every :math:`k` steps.
    staircase : bool
        Decay in jumps every :math:`k` steps instead of continuously.
    final_lr : float
        :math:`\eta_{\min}` in ``[0, peak_lr]``: the floor.
    warmup_steps : int
        ``W >= 0``.

    Examples
    --------
    >>> exponential(1.0, 0.5, decay_steps=2)(np.arange(5))
    array([1.        , 0.70710678, 0.5       , 0.35355339, 0.25      ])
    >>> stairs = exponential(1.0, 0.5, decay_steps=2, staircase=True, final_lr=0.3)
    >>> stairs(np.arange(5))
    array([1. , 1. , 0.5, 0.5, 0.3])
    """
    peak = rate("peak_lr", peak_lr)
    gamma = check_real("decay_rate", decay_rate, low=0, high=1, low_open=True)
    k = count("decay_steps", decay_steps, 1)
    stairs = check_flag("staircase", staircase)
    final = rate("final_lr", final_lr, peak)
    return _Exponential(peak, gamma, k, stairs, final, count("warmup_steps", warmup_steps, 0))


@dataclass(frozen=True, repr=False)
class _InverseSqrtDecay(Schedule):
    peak: float
    timescale: int
    _name = "_inverse_sqrt_decay"

    def _evaluate(self, t):
        # Hugging Face's order of operations: peak * (1 / sqrt((t + tau) / tau))
        x = np.add(t, self.timescale, dtype=np.float64)
        x /= self.timescale
        np.sqrt(x, out=x)
        np.divide(1.0, x, out=x)
        x *= self.peak
        return x


@dataclass(frozen=True, repr=False)
class _InverseSqrt(_Composed):
    peak_lr: float
    warmup_steps: int
    timescale: int | None = None
    _name = "inverse_sqrt"

    def _build(self):
        W = self.warmup_steps
        return ramp(0.0, self.peak_lr, W, "linear", _InverseSqrtDecay(self.peak_lr, self.timescale))


def inverse_sqrt(peak_lr: float, warmup_steps: int, timescale: int | None = None) -> Schedule:
    r"""The Transformer's inverse-square-root schedule (Vaswani et al. 2017), with warmup.

    .. math::

        s(t) = \begin{cases}
          \eta_{\text{peak}}\,(t + 1)/W & t < W,\\[2pt]
          \eta_{\text{peak}} \sqrt{\dfrac{\tau}{t - W + \tau}} & t \ge W,
        \end{cases}

    with :math:`\tau` = ``timescale`` (default :math:`W`). The rate never reaches 0; it
    halves every time :math:`t - W + \tau` quadruples. Peer: for :math:`t \ge W` this is
    Hugging Face's ``get_inverse_sqrt_schedule(num_warmup_steps=W, timescale=tau)``, to
    the last bit (the same order of operations). Convention: Hugging Face warms up with
    :math:`t/W`, so its :math:`s(0) = 0`; here :math:`s(0) = \eta_{\text{peak}}/W` and
    both :math:`t = W - 1` and :math:`t = W` are at the peak. Hugging Face's default
    :math:`\tau = 10^4` for :math:`W = 0` is not copied: give ``timescale`` then.

    Parameters
    ----------
    peak_lr : float
        Finite, >= 0.
    warmup_steps : int
        ``W >= 0``.
    timescale : int, optional
        :math:`\tau \ge 1`; required when ``warmup_steps`` is 0.

    Examples
    --------
    >>> inverse_sqrt(1.0, warmup_steps=2)(np.array([0, 1, 2, 8, 32]))
    array([0.5 , 1.  , 1.  , 0.5 , 0.25])
    """
    peak = rate("peak_lr", peak_lr)
    W = count("warmup_steps", warmup_steps, 0)
    if timescale is None:
        if W == 0:
            raise ValueError("timescale must be given (an integer >= 1) when warmup_steps is 0")
        tau = W
    else:
        tau = check_integer("timescale", timescale, low=1)
    return _InverseSqrt(peak, W, tau)


@dataclass(frozen=True, repr=False)
class _OneCycle(Schedule):
    peak_lr: float
    total_steps: int
    pct_start: float = 0.3
    anneal: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    _name = "one_cycle"

    def _phases(self) -> list[tuple[int, int, float, float, float, float]]:
        """``(lo, hi, begin, end, start_value, end_value)`` per phase: the phase holds the
        steps in ``[lo, hi)``, runs from step ``begin`` to ``end`` (floats, as OneCycleLR
        computes them) and from ``start_value`` to ``end_value``."""
        T, p, peak = self.total_steps, self.pct_start, self.peak_lr
        initial = peak / self.div_factor
        low = initial / self.final_div_factor
        if self.three_phase:
            ends = [float(p * T) - 1, float(2 * p * T) - 2, float(T - 1)]
            values = [(initial, peak), (peak, initial), (initial, low)]
        else:
            ends = [float(p * T) - 1, float(T - 1)]
            values = [(initial, peak), (peak, low)]
        out, lo, begin = [], 0, 0.0
        for i, (end, (a, b)) in enumerate(zip(ends, values, strict=True)):
            # OneCycleLR: the first phase whose end is >= t (the last one otherwise)
            hi = T if i == len(ends) - 1 else max(lo, math.floor(end) + 1)
            out.append((lo, hi, begin, end, a, b))
            lo, begin = hi, end
        return out

    def _evaluate(self, t):
        shape = "cosine" if self.anneal == "cos" else "linear"
        steps, out = _Steps(t), self.peak_lr / self.div_factor / self.final_div_factor
        for lo, hi, begin, end, a, b in self._phases():
            if hi > lo:
                out = fill(out, steps, lo, hi, self._piece(begin, end, a, b, shape))
        return as_array(out, t)

    @staticmethod
    def _piece(begin: float, end: float, a: float, b: float, shape: str) -> Any:
        if end == begin:  # a phase of length 0 (OneCycleLR divides by zero): at its end
            return lambda s: np.full(s.shape, b)
        return lambda s: anneal(np.subtract(s, begin, dtype=np.float64), end - begin, a, b, shape)


def one_cycle(
    peak_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    r"""The one-cycle policy (Smith & Topin 2019): up to the peak, then far below the start.

    With :math:`\eta_0 = \eta_{\text{peak}}/d` (``div_factor``), :math:`\eta_{\min} =
    \eta_0/d_f` (``final_div_factor``) and the phase ends :math:`e_1 = pT - 1`,
    :math:`e_2 = T - 1` (:math:`p` = ``pct_start``),

    .. math::

        s(t) = \begin{cases}
          A\big(\eta_0, \eta_{\text{peak}}, t/e_1\big) & t \le e_1,\\[2pt]
          A\big(\eta_{\text{peak}}, \eta_{\min}, (t - e_1)/(e_2 - e_1)\big)
            & e_1 < t \le e_2,\\[2pt]
          \eta_{\min} & t \ge T,
        \end{cases}

    where :math:`A(a, b, q) = b + (a - b)(1 + \cos\pi q)/2` (``anneal="cos"``) or
    :math:`a + (b - a)q` (``"linear"``). With ``three_phase`` the phases end at
    :math:`e_1 = pT - 1`, :math:`e_2 = 2pT - 2`, :math:`e_3 = T - 1` and go
    :math:`\eta_0 \to \eta_{\text{peak}} \to \eta_0 \to \eta_{\min}`. Peer: this is the
    learning rate of PyTorch's ``OneCycleLR(max_lr=peak_lr, total_steps=T, ...)`` (with
    ``cycle_momentum=False``; the momentum cycle is not a schedule of the rate) at every
    step :math:`t < T`, both anneal strategies and both layouts. Conventions: this
    schedule has its own warmup (``s(0) = peak_lr / div_factor``); after :math:`T` it
    stays at :math:`\eta_{\min}` (PyTorch raises); a first phase of length 0
    (:math:`pT = 1`, where PyTorch divides by zero) starts at the peak.

    Parameters
    ----------
    peak_lr : float
        Finite, >= 0.
    total_steps : int
        ``T >= 1``.
    pct_start : float
        :math:`p` in ``[0, 1]`` (in ``[0, 0.5]`` with ``three_phase``): the share of the
        steps spent rising.
    anneal : {"cos", "linear"}
        The shape of every phase.
    div_factor : float
        :math:`d > 0`, finite: the first rate is ``peak_lr / div_factor``.
    final_div_factor : float
        :math:`d_f > 0`, finite: the last rate is the first divided by
        ``final_div_factor``.
    three_phase : bool
        Add the symmetric descent back to :math:`\eta_0` before the final annealing.

    Examples
    --------
    >>> s = one_cycle(1.0, 10, pct_start=0.3, anneal="linear", div_factor=10.0)
    >>> s(np.arange(4))
    array([0.1       , 0.55      , 1.        , 0.85714429])
    """
    peak = rate("peak_lr", peak_lr)
    T = count("total_steps", total_steps, 1)
    three = check_flag("three_phase", three_phase)
    p = check_real("pct_start", pct_start, low=0, high=1)
    if three and p > 0.5:
        raise ValueError(
            f"pct_start must be in [0, 0.5] when three_phase=True (the descent mirrors "
            f"the rise), got {p}"
        )
    shape = check_choice("anneal", anneal, ONE_CYCLE_ANNEALS)
    d = check_real("div_factor", div_factor, low=0, low_open=True)
    d_f = check_real("final_div_factor", final_div_factor, low=0, low_open=True)
    if not math.isfinite(peak / d / d_f):  # the first rate peak/d, the last peak/(d d_f)
        raise ValueError(
            f"div_factor={d:g} and final_div_factor={d_f:g} make a rate infinite: the first "
            f"rate is peak_lr/div_factor = {peak / d:g}, the last that over final_div_factor"
        )
    return _OneCycle(peak, T, p, shape, d, d_f, three)
