r"""The schedules of section 6.2.2: constant, warmup, cosine, step decay, SGDR, WSD, join.

Private: the public names are re-exported by :mod:`companion.schedules`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from companion._validation import MAX_STEP, check_choice, check_integer, check_real

from ._base import (
    WARMUP_SHAPES,
    WSD_SHAPES,
    Schedule,
    _Composed,
    _Constant,
    _Decay,
    _Geometric,
    _Join,
    _Ramp,
    _Steps,
    anneal,
    as_array,
    chain,
    count,
    entries,
    fill,
    increasing,
    ramp,
    rate,
)


def constant(lr: float) -> Schedule:
    r"""The constant schedule :math:`s(t) = \eta`.

    Parameters
    ----------
    lr : float
        The learning rate, finite and >= 0.

    Examples
    --------
    >>> constant(0.1)(7)
    0.1
    """
    return _Constant(rate("lr", lr))


@dataclass(frozen=True, repr=False)
class _LinearWarmup(_Composed):
    peak_lr: float
    warmup_steps: int
    init_lr: float = 0.0
    _name = "linear_warmup"

    def _build(self):
        return _Ramp(self.init_lr, self.peak_lr, self.warmup_steps)


def linear_warmup(peak_lr: float, warmup_steps: int, init_lr: float = 0.0) -> Schedule:
    r"""Linear warmup from ``init_lr`` to ``peak_lr`` over :math:`W` updates (6.2.2, 6.4).

    .. math::

        s(t) = \eta_{\text{init}} + (\eta_{\text{peak}} - \eta_{\text{init}})\,
               \frac{\min(t + 1, W)}{W},

    so :math:`s(0) = \eta_{\text{init}} + (\eta_{\text{peak}} - \eta_{\text{init}})/W > 0`
    (the first update never has learning rate 0) and :math:`s(t) = \eta_{\text{peak}}`
    for :math:`t \ge W - 1` (equation :eq:`eq-62-warmup`). With ``init_lr = 0`` this is
    PyTorch's ``LinearLR(start_factor=1/W, total_iters=W-1)``; optax's and Hugging
    Face's warmups use :math:`t/W` instead, so their first rate is 0.

    Parameters
    ----------
    peak_lr : float
        Learning rate reached at step ``W - 1`` and kept afterwards; finite, >= 0.
    warmup_steps : int
        ``W >= 1``.
    init_lr : float
        The value the line starts from (reached at the fictitious step -1); in
        ``[0, peak_lr]``.

    Examples
    --------
    >>> s = linear_warmup(1.0, 4)
    >>> s(np.arange(6))
    array([0.25, 0.5 , 0.75, 1.  , 1.  , 1.  ])
    """
    peak = rate("peak_lr", peak_lr)
    W = count("warmup_steps", warmup_steps, 1)
    return _LinearWarmup(peak, W, rate("init_lr", init_lr, peak))


def _warmup_args(peak: float, init_lr: Any, warmup_shape: Any) -> tuple[float, str]:
    return rate("init_lr", init_lr, peak), check_choice("warmup_shape", warmup_shape, WARMUP_SHAPES)


@dataclass(frozen=True, repr=False)
class _Cosine(_Composed):
    peak_lr: float
    total_steps: int
    final_lr: float = 0.0
    warmup_steps: int = 0
    init_lr: float = 0.0
    warmup_shape: str = "linear"
    _name = "cosine"

    def _build(self):
        peak, final, T, W = self.peak_lr, self.final_lr, self.total_steps, self.warmup_steps
        decay = chain((_Decay(peak, final, T - W, "cosine"), T - W), (_Constant(final), None))
        return ramp(self.init_lr, peak, W, self.warmup_shape, decay)


def cosine(
    peak_lr: float,
    total_steps: int,
    final_lr: float = 0.0,
    warmup_steps: int = 0,
    *,
    init_lr: float = 0.0,
    warmup_shape: str = "linear",
) -> Schedule:
    r"""Cosine decay with an optional warmup (6.2.2, equation :eq:`eq-62-cosine`; 6.4).

    .. math::

        s(t) = \begin{cases}
          \eta_{\text{init}} + (\eta_{\text{peak}} - \eta_{\text{init}})\, r\big((t+1)/W\big)
             & t < W,\\[2pt]
          \eta_{\min} + (\eta_{\text{peak}} - \eta_{\min})\,
             \dfrac{1 + \cos\!\big(\pi (t - W)/(T - W)\big)}{2} & W \le t < T,\\[2pt]
          \eta_{\min} & t \ge T,
        \end{cases}

    with the warmup shape :math:`r(q) = q` ("linear", :func:`linear_warmup`) or
    :math:`\sin^2(\pi q / 2)` ("cosine"). Without warmup this is the book's
    :math:`\tfrac{\eta_{\text{peak}}}{2}(1 + \cos(\pi t/T))` with 0-based steps (no
    update is wasted on :math:`\eta = 0`), and PyTorch's
    ``CosineAnnealingLR(T_max=T, eta_min=final_lr)`` for ``t <= T``. optax's
    ``warmup_cosine_decay_schedule`` and Hugging Face's
    ``get_cosine_schedule_with_warmup`` warm up with :math:`t/W` (their first rate is
    ``init_lr``, here it is above it).

    Parameters
    ----------
    peak_lr : float
        Finite, >= 0.
    total_steps : int
        ``T >= 1``: the step at which ``final_lr`` is reached.
    final_lr : float
        :math:`\eta_{\min}` in ``[0, peak_lr]``.
    warmup_steps : int
        ``W`` in ``[0, total_steps]``.
    init_lr : float
        Where the warmup starts (at the fictitious step -1); in ``[0, peak_lr]``.
    warmup_shape : {"linear", "cosine"}
        The warmup's shape :math:`r`.

    Examples
    --------
    >>> s = cosine(1.0, 4)
    >>> s(np.arange(6))
    array([1.        , 0.85355339, 0.5       , 0.14644661, 0.        , 0.        ])
    >>> cosine(1.0, 10, warmup_steps=2, warmup_shape="cosine")(np.arange(3))
    array([0.5, 1. , 1. ])
    """
    peak = rate("peak_lr", peak_lr)
    T = count("total_steps", total_steps, 1)
    final = rate("final_lr", final_lr, peak)
    W = count("warmup_steps", warmup_steps, 0, T)
    init, shape = _warmup_args(peak, init_lr, warmup_shape)
    return _Cosine(peak, T, final, W, init, shape)


@dataclass(frozen=True, repr=False)
class _PiecewiseConstant(_Composed):
    boundaries: tuple[int, ...]
    values: tuple[float, ...]
    _name = "piecewise_constant"

    def _build(self):
        if not self.boundaries:
            return _Constant(self.values[0])
        return _Join(tuple(_Constant(v) for v in self.values), self.boundaries)


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    r"""Step decay / multi-stage schedule (6.2.2, equation :eq:`eq-62-step`; 6.4).

    .. math::

        s(t) = v_i, \qquad i = \#\{j : b_j \le t\},

    i.e. ``values[0]`` before the first boundary, ``values[i]`` from ``boundaries[i-1]``
    on. The two-stage strategy of section 6.4 is ``piecewise_constant([50], [0.1, 0.025])``.
    PyTorch's ``MultiStepLR(milestones=b, gamma=g)`` is ``values = [lr * g**i]``, optax's
    ``piecewise_constant_schedule`` the same with multiplicative scales.

    Parameters
    ----------
    boundaries : sequence of int
        Strictly increasing, each >= 1 (may be empty).
    values : sequence of float
        ``len(boundaries) + 1`` learning rates, finite and >= 0.

    Examples
    --------
    >>> s = piecewise_constant([2, 4], [1.0, 0.5, 0.25])
    >>> [s(t) for t in range(6)]
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """
    b = increasing("boundaries", boundaries)
    v = entries("values", values, len(b) + 1, "learning rates")
    return _PiecewiseConstant(b, tuple(rate(f"values[{i}]", x) for i, x in enumerate(v)))


@dataclass(frozen=True, repr=False)
class _SGDR(Schedule):
    peak_lr: float
    cycle_steps: int
    cycle_mult: int = 1
    final_lr: float = 0.0
    peak_decay: float = 1.0
    _name = "sgdr"

    def _cycles(self, last: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Starts and lengths of the cycles up to the one holding ``last``, in exact
        integer arithmetic (None for ``m = 1``); the lengths as float64, which the phase
        is computed in anyway, since the last can exceed int64 (``C m^k > 2^63``)."""
        C, m = self.cycle_steps, self.cycle_mult
        if m == 1:
            return None
        starts, lengths = [0], [C]
        while starts[-1] + lengths[-1] <= last:
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * m)
        return np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.float64)

    def _peaks(self, k: np.ndarray) -> Any:
        """``max(peak * gamma**k, final)`` for cycle indices ``k``."""
        if self.peak_decay == 1.0:
            return self.peak_lr
        p = self.peak_lr * np.power(self.peak_decay, k.astype(np.float64))
        return np.maximum(p, self.final_lr)

    def _evaluate(self, t):
        C, final = self.cycle_steps, self.final_lr
        if t.size == 0:
            return np.empty(0)
        steps = _Steps(t)
        first, last = (int(t[0]), int(t[-1])) if steps.sorted else (0, int(t.max()))
        table = self._cycles(last)
        if table is None:
            k_first, k_last = first // C, last // C
        else:
            k_first = int(np.searchsorted(table[0], first, side="right")) - 1
            k_last = len(table[0]) - 1
        if steps.sorted and k_last - k_first < 64:
            # sorted steps over few cycles: one slice per cycle, scalar length and peak
            ks = np.arange(k_first, k_last + 1)
            if table is None:
                starts, lengths = ks * C, np.full(ks.shape, C)
            else:
                starts, lengths = table[0][ks], table[1][ks]
            peaks = np.broadcast_to(self._peaks(ks), ks.shape)
            out: Any = 0.0
            for b, n, p in zip(starts.tolist(), lengths.tolist(), peaks.tolist(), strict=True):
                out = fill(
                    out,
                    steps,
                    b,
                    b + n,
                    lambda s, b=b, n=n, p=p: anneal(s - b, n, p, final, "cosine"),
                )
            return as_array(out, t)
        if table is None:
            k = t // C
            begin, length = k * C, C
        else:
            k = np.searchsorted(table[0], t, side="right") - 1
            begin, length = table[0][k], table[1][k]
        return anneal(t - begin, length, self._peaks(k), final, "cosine")


def sgdr(
    peak_lr: float,
    cycle_steps: int,
    cycle_mult: int = 1,
    final_lr: float = 0.0,
    peak_decay: float = 1.0,
) -> Schedule:
    r"""Cosine annealing with warm restarts, SGDR (Loshchilov & Hutter 2017; 6.2.2).

    Cycle :math:`k = 0, 1, \dots` lasts :math:`C_k = C m^k` steps and starts at
    :math:`S_k = C (m^k - 1)/(m - 1)` (:math:`S_k = kC` for :math:`m = 1`). With
    :math:`\tau = t - S_k` the step inside the cycle,

    .. math::

        s(t) = \eta_{\min} + (p_k - \eta_{\min})\,
               \frac{1 + \cos(\pi \tau / C_k)}{2},
        \qquad p_k = \max(\eta_{\text{peak}}\,\gamma^k,\ \eta_{\min}),

    with :math:`\gamma` = ``peak_decay``. For ``peak_decay = 1`` this is PyTorch's
    ``CosineAnnealingWarmRestarts(T_0=C, T_mult=m, eta_min=final_lr)``.

    Parameters
    ----------
    peak_lr : float
        Start of the first cycle; finite, >= 0.
    cycle_steps : int
        ``C >= 1``, the length of the first cycle.
    cycle_mult : int
        ``m >= 1`` (an integer, as in PyTorch): each cycle is ``m`` times longer.
    final_lr : float
        The floor every cycle decays towards; in ``[0, peak_lr]``.
    peak_decay : float
        ``gamma`` in ``[0, 1]``: cycle ``k`` restarts at ``peak_lr * gamma**k``.

    Examples
    --------
    >>> s = sgdr(1.0, cycle_steps=2, cycle_mult=2)
    >>> s(np.arange(8))
    array([1.        , 0.5       , 1.        , 0.85355339, 0.5       ,
           0.14644661, 1.        , 0.96193977])
    """
    peak = rate("peak_lr", peak_lr)
    C = check_integer("cycle_steps", cycle_steps, low=1, high=MAX_STEP)
    m = check_integer("cycle_mult", cycle_mult, low=1)
    final = rate("final_lr", final_lr, peak)
    gamma = check_real("peak_decay", peak_decay, low=0, high=1)
    return _SGDR(peak, C, m, final, gamma)


@dataclass(frozen=True, repr=False)
class _WSD(_Composed):
    peak_lr: float
    total_steps: int
    warmup_steps: int
    decay_steps: int
    shape: str = "linear"
    final_lr: float = 0.0
    init_lr: float = 0.0
    warmup_shape: str = "linear"
    _name = "wsd"

    def _build(self):
        peak, final = self.peak_lr, self.final_lr
        T, W, K = self.total_steps, self.warmup_steps, self.decay_steps
        if self.shape == "exp":
            cool: Schedule = _Geometric(peak, final / peak, K, False, final)
        else:
            cool = _Decay(peak, final, K, self.shape)
        decay = chain((_Constant(peak), T - K - W), (cool, K), (_Constant(final), None))
        return ramp(self.init_lr, peak, W, self.warmup_shape, decay)


def wsd(
    peak_lr: float,
    total_steps: int,
    warmup_steps: int,
    decay_steps: int,
    shape: str = "linear",
    final_lr: float = 0.0,
    *,
    init_lr: float = 0.0,
    warmup_shape: str = "linear",
) -> Schedule:
    r"""Warmup-stable-decay, WSD (Hu et al. 2024; Hägele et al. 2024; Wen et al. 2024).

    Warmup, a long constant phase at the peak, and a short cooldown over the last
    :math:`K` of :math:`T` steps (6.2.2, equation :eq:`eq-62-wsd`). With
    :math:`p = (t - (T - K))/K \in [0, 1)`,

    .. math::

        s(t) = \begin{cases}
          \eta_{\text{init}} + (\eta_{\text{peak}} - \eta_{\text{init}})\, r\big((t+1)/W\big)
             & t < W,\\
          \eta_{\text{peak}} & W \le t < T - K,\\
          \eta_{\min} + (\eta_{\text{peak}} - \eta_{\min})\, f(p)
             & T - K \le t < T,\\
          \eta_{\min} & t \ge T,
        \end{cases}

    where :math:`f(p) = 1 - p` ("linear"), :math:`(1 + \cos \pi p)/2` ("cosine"),
    :math:`1 - \sqrt{p}` ("1-sqrt", Hägele et al.), :math:`1 - p^2` ("1-square");
    the "exp" shape is geometric, :math:`\eta_{\text{peak}}
    (\eta_{\min}/\eta_{\text{peak}})^p`, and needs ``final_lr > 0``. The warmup shape
    :math:`r` is as in :func:`cosine`.

    Parameters
    ----------
    peak_lr : float
        Finite, >= 0 (> 0 for "exp").
    total_steps : int
        ``T >= 1``.
    warmup_steps : int
        :math:`W \ge 0`, the steps of the warmup, with :math:`W + K \le T`.
    decay_steps : int
        :math:`K \ge 0`, the steps of the final decay, with :math:`W + K \le T`.
    shape : str
        One of ``"linear"``, ``"cosine"``, ``"1-sqrt"``, ``"1-square"``, ``"exp"``.
    final_lr : float
        :math:`\eta_{\min}` in ``[0, peak_lr]``; honoured by every shape.
    init_lr : float
        Where the warmup starts; in ``[0, peak_lr]``.
    warmup_shape : {"linear", "cosine"}
        The warmup's shape.

    Examples
    --------
    >>> s = wsd(1.0, total_steps=8, warmup_steps=2, decay_steps=4)
    >>> s(np.arange(9))
    array([0.5 , 1.  , 1.  , 1.  , 1.  , 0.75, 0.5 , 0.25, 0.  ])
    """
    peak = rate("peak_lr", peak_lr)
    T = count("total_steps", total_steps, 1)
    W = count("warmup_steps", warmup_steps, 0, T)
    K = count("decay_steps", decay_steps, 0)
    if W + K > T:
        raise ValueError(
            f"warmup_steps + decay_steps must be <= total_steps={T}, got {W} + {K} = {W + K}"
        )
    shape = check_choice("shape", shape, WSD_SHAPES)
    final = rate("final_lr", final_lr, peak)
    if shape == "exp" and final <= 0.0:
        raise ValueError(f"final_lr must be > 0 (and <= peak_lr) for shape='exp', got {final}")
    init, warm = _warmup_args(peak, init_lr, warmup_shape)
    return _WSD(peak, T, W, K, shape, final, init, warm)
