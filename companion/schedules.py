r"""Closed-form learning-rate schedules (sections 6.2.1 and 6.4).

Every constructor checks its arguments and returns a :class:`Schedule`: a small,
frozen, pure function of the step. Steps are 0-based: ``s(t)`` is the learning
rate of the ``t``-th update. ``s`` accepts a Python or numpy integer (and returns
a Python ``float``) or an integer array (and returns a ``float64`` array of the
same shape). There is no recursion and no state: the value at step 10,000 is
computed directly, so nothing drifts and nothing needs resuming. The scalar path
runs the vectorised one, so ``s(np.arange(T))`` equals ``[s(t) for t in range(T)]``
exactly.

Conventions (they match PyTorch, optax and Hugging Face where those have the
schedule): a linear warmup over ``W`` steps multiplies by ``(t + 1) / W``, so the
first update never has learning rate 0; a cosine decay over ``T`` steps starts at
the peak at ``t = W`` and reaches ``final_lr`` at ``t = T``, after which it stays
there.

Examples
--------
>>> from companion.schedules import cosine, piecewise_constant
>>> s = cosine(peak_lr=0.1, total_steps=100, warmup_steps=10)
>>> s(0), s(9), s(10), s(100)
(0.01, 0.1, 0.1, 0.0)
>>> piecewise_constant([50], [0.1, 0.025])(np.array([0, 49, 50, 99]))
array([0.1  , 0.1  , 0.025, 0.025])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "Schedule",
    "constant",
    "linear_warmup",
    "cosine",
    "piecewise_constant",
    "sgdr",
    "wsd",
    "join",
    "WSD_SHAPES",
]

#: The decay shapes :func:`wsd` knows.
WSD_SHAPES = ("linear", "cosine", "1-sqrt", "1-square", "exp")


# ----------------------------------------------------------------------------- checks


def _lr(name: str, value: Any) -> float:
    """A learning rate: a finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    return value


def _int(name: str, value: Any, minimum: int) -> int:
    """A step count: an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _boundaries(name: str, value: Any) -> tuple[int, ...]:
    """Strictly increasing integers >= 1."""
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers, got {value!r}") from None
    out = tuple(_int(f"{name}[{i}]", b, 1) for i, b in enumerate(items))
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            raise ValueError(
                f"{name} must be strictly increasing, got {name}[{i - 1}] = {out[i - 1]} "
                f">= {name}[{i}] = {out[i]}"
            )
    return out


def _steps(step: Any) -> np.ndarray:
    """The step(s) as an int64 array; ValueError for negative or non-integer steps."""
    arr = np.asarray(step)
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"step must be an integer >= 0 or an array of integers >= 0, got {step!r}"
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"step must be >= 0, got a minimum of {arr.min()}")
    return arr


# ----------------------------------------------------------------------------- base


class Schedule:
    """A learning-rate schedule: a pure function of the 0-based step.

    Subclasses implement :meth:`_evaluate` on an int64 array; :meth:`__call__`
    checks the step and routes scalars through the same vectorised code.
    """

    __slots__ = ()
    _name = "schedule"

    @overload
    def __call__(self, step: int | np.integer) -> float: ...

    @overload
    def __call__(self, step: npt.ArrayLike) -> np.ndarray: ...

    def __call__(self, step):
        """Learning rate at ``step`` (an int, or an integer array)."""
        if isinstance(step, numbers.Integral) and not isinstance(step, bool):
            if step < 0:
                raise ValueError(f"step must be >= 0, got {step}")
            return float(self._evaluate(np.array([step], dtype=np.int64))[0])
        return self._evaluate(_steps(step))

    def _evaluate(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={_fmt(getattr(self, f.name))}" for f in fields(self))
        return f"{self._name}({args})"


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return repr(value)


def _warmup(t: np.ndarray, peak: float, warmup: int, init: float = 0.0) -> np.ndarray:
    r"""``init + (peak - init) * min(t + 1, W) / W`` (``W >= 1``), clipped to [init, peak]."""
    frac = np.minimum(t + 1, warmup) / warmup
    out = init + (peak - init) * frac
    lo, hi = min(init, peak), max(init, peak)
    return np.clip(out, lo, hi)


def _cosine_decay(tau: np.ndarray, length: Any, peak: Any, final: float) -> np.ndarray:
    r"""``final + (peak - final) * (1 + cos(pi * tau / length)) / 2`` (torch's order of ops)."""
    return final + (peak - final) * (1.0 + np.cos(np.pi * tau / length)) / 2.0


# ----------------------------------------------------------------------------- schedules


@dataclass(frozen=True, repr=False)
class _Constant(Schedule):
    lr: float
    _name = "constant"

    def _evaluate(self, t):
        return np.full(t.shape, self.lr, dtype=np.float64)


def constant(lr: float) -> Schedule:
    r"""The constant schedule :math:`\eta_t = \eta`.

    Parameters
    ----------
    lr : float
        The learning rate, finite and >= 0.

    Examples
    --------
    >>> constant(0.1)(7)
    0.1
    """
    return _Constant(_lr("lr", lr))


@dataclass(frozen=True, repr=False)
class _LinearWarmup(Schedule):
    peak_lr: float
    warmup_steps: int
    init_lr: float = 0.0
    _name = "linear_warmup"

    def _evaluate(self, t):
        return _warmup(t, self.peak_lr, self.warmup_steps, self.init_lr)


def linear_warmup(peak_lr: float, warmup_steps: int, init_lr: float = 0.0) -> Schedule:
    r"""Linear warmup from ``init_lr`` to ``peak_lr`` over ``warmup_steps`` updates (6.2.1, 6.4).

    .. math::

        \eta_t = \eta_{\text{init}} + (\eta_{\text{peak}} - \eta_{\text{init}})\,
                 \frac{\min(t + 1, W)}{W},

    so :math:`\eta_0 = \eta_{\text{init}} + (\eta_{\text{peak}} - \eta_{\text{init}})/W > 0`
    (the first update never has learning rate 0) and :math:`\eta_t = \eta_{\text{peak}}`
    for :math:`t \ge W - 1`. With ``init_lr = 0`` this is PyTorch's
    ``LinearLR(start_factor=1/W, total_iters=W-1)``.

    Parameters
    ----------
    peak_lr : float
        Learning rate reached at step ``W - 1`` and kept afterwards; finite, >= 0.
    warmup_steps : int
        ``W >= 1``.
    init_lr : float
        The value the line starts from (reached at the fictitious step -1); finite, >= 0.

    Examples
    --------
    >>> s = linear_warmup(1.0, 4)
    >>> s(np.arange(6))
    array([0.25, 0.5 , 0.75, 1.  , 1.  , 1.  ])
    """
    return _LinearWarmup(
        _lr("peak_lr", peak_lr), _int("warmup_steps", warmup_steps, 1), _lr("init_lr", init_lr)
    )


@dataclass(frozen=True, repr=False)
class _Cosine(Schedule):
    peak_lr: float
    total_steps: int
    final_lr: float = 0.0
    warmup_steps: int = 0
    _name = "cosine"

    def _evaluate(self, t):
        peak, final, T, W = self.peak_lr, self.final_lr, self.total_steps, self.warmup_steps
        if T > W:
            out = _cosine_decay(t - W, T - W, peak, final)
        else:
            out = np.full(t.shape, peak, dtype=np.float64)
        if W > 0:
            out = np.where(t < W, _warmup(t, peak, W), out)
        return np.clip(np.where(t >= T, final, out), final, peak)


def cosine(
    peak_lr: float, total_steps: int, final_lr: float = 0.0, warmup_steps: int = 0
) -> Schedule:
    r"""Cosine decay with an optional linear warmup (6.2.1, 6.4).

    .. math::

        \eta_t = \begin{cases}
          \eta_{\text{peak}}\,(t + 1)/W & t < W,\\[2pt]
          \eta_{\text{final}} + (\eta_{\text{peak}} - \eta_{\text{final}})\,
             \dfrac{1 + \cos\!\big(\pi (t - W)/(T - W)\big)}{2} & W \le t < T,\\[2pt]
          \eta_{\text{final}} & t \ge T.
        \end{cases}

    Without warmup this is the draft's :math:`\tfrac{\eta_0}{2}(1 + \cos(t\pi/T))` with
    0-based steps (so no update is wasted on :math:`\eta = 0`, ERRATA 7), and
    PyTorch's ``CosineAnnealingLR(T_max=T, eta_min=final_lr)`` for ``t <= T``.

    Parameters
    ----------
    peak_lr : float
        Finite, >= 0.
    total_steps : int
        ``T >= 1``: the step at which ``final_lr`` is reached.
    final_lr : float
        Finite, in ``[0, peak_lr]``.
    warmup_steps : int
        ``W`` in ``[0, total_steps]``.

    Examples
    --------
    >>> s = cosine(1.0, 4)
    >>> s(np.arange(6))
    array([1.        , 0.85355339, 0.5       , 0.14644661, 0.        , 0.        ])
    """
    peak = _lr("peak_lr", peak_lr)
    T = _int("total_steps", total_steps, 1)
    final = _lr("final_lr", final_lr)
    if final > peak:
        raise ValueError(f"final_lr must be in [0, peak_lr={peak}], got {final}")
    W = _int("warmup_steps", warmup_steps, 0)
    if W > T:
        raise ValueError(f"warmup_steps must be in [0, total_steps={T}], got {W}")
    return _Cosine(peak, T, final, W)


@dataclass(frozen=True, repr=False)
class _PiecewiseConstant(Schedule):
    boundaries: tuple[int, ...]
    values: tuple[float, ...]
    _name = "piecewise_constant"

    def _evaluate(self, t):
        idx = np.searchsorted(np.asarray(self.boundaries, dtype=np.int64), t, side="right")
        return np.asarray(self.values, dtype=np.float64)[idx]


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    r"""Step decay / multi-stage schedule (6.2.1, 6.4).

    .. math::

        \eta_t = v_i, \qquad i = \#\{j : b_j \le t\},

    i.e. ``values[0]`` before the first boundary, ``values[i]`` from ``boundaries[i-1]``
    on. The draft's two-stage strategy is ``piecewise_constant([50], [0.1, 0.025])``.
    PyTorch's ``MultiStepLR(milestones=b, gamma=g)`` is ``values = [lr * g**i]``.

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
    b = _boundaries("boundaries", boundaries)
    try:
        items = tuple(values)
    except TypeError:
        raise ValueError(f"values must be a sequence of learning rates, got {values!r}") from None
    if len(items) != len(b) + 1:
        raise ValueError(
            f"values must have len(boundaries) + 1 = {len(b) + 1} entries, got {len(items)}"
        )
    v = tuple(_lr(f"values[{i}]", x) for i, x in enumerate(items))
    return _PiecewiseConstant(b, v)


@dataclass(frozen=True, repr=False)
class _SGDR(Schedule):
    peak_lr: float
    cycle_steps: int
    cycle_mult: int = 1
    final_lr: float = 0.0
    peak_decay: float = 1.0
    _name = "sgdr"

    def _cycle(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cycle index k, start of cycle k, length of cycle k) for each step."""
        C, m = self.cycle_steps, self.cycle_mult
        if m == 1:
            k = t // C
            return k, k * C, np.full(t.shape, C, dtype=np.int64)
        # k = floor(log_m(1 + t (m - 1) / C)), then corrected exactly in integers.
        k = np.floor(np.log1p(t * ((m - 1) / C)) / math.log(m)).astype(np.int64)
        k = np.maximum(k, 0)

        def start(j):
            return C * (np.power(np.int64(m), j) - 1) // (m - 1)

        k = np.where(start(k) > t, k - 1, k)
        k = np.where(start(k + 1) <= t, k + 1, k)
        return k, start(k), C * np.power(np.int64(m), k)

    def _evaluate(self, t):
        k, begin, length = self._cycle(t)
        peak = np.maximum(self.peak_lr * np.power(self.peak_decay, k.astype(np.float64)),
                          self.final_lr)
        out = _cosine_decay(t - begin, length, peak, self.final_lr)
        return np.clip(out, self.final_lr, peak)


def sgdr(
    peak_lr: float,
    cycle_steps: int,
    cycle_mult: int = 1,
    final_lr: float = 0.0,
    peak_decay: float = 1.0,
) -> Schedule:
    r"""Cosine annealing with warm restarts, SGDR (Loshchilov & Hutter 2017; 6.2.1).

    Cycle :math:`k = 0, 1, \dots` lasts :math:`L_k = C m^k` steps and starts at
    :math:`S_k = C (m^k - 1)/(m - 1)` (:math:`S_k = kC` for :math:`m = 1`). With
    :math:`\tau = t - S_k` the step inside the cycle,

    .. math::

        \eta_t = \eta_{\text{final}} + (p_k - \eta_{\text{final}})\,
                 \frac{1 + \cos(\pi \tau / L_k)}{2},
        \qquad p_k = \max(\eta_{\text{peak}}\,\gamma^k,\ \eta_{\text{final}}),

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
    peak = _lr("peak_lr", peak_lr)
    C = _int("cycle_steps", cycle_steps, 1)
    m = _int("cycle_mult", cycle_mult, 1)
    final = _lr("final_lr", final_lr)
    if final > peak:
        raise ValueError(f"final_lr must be in [0, peak_lr={peak}], got {final}")
    if isinstance(peak_decay, bool) or not isinstance(peak_decay, numbers.Real):
        raise ValueError(f"peak_decay must be a real number in [0, 1], got {peak_decay!r}")
    gamma = float(peak_decay)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"peak_decay must be a real number in [0, 1], got {peak_decay!r}")
    return _SGDR(peak, C, m, final, gamma)


@dataclass(frozen=True, repr=False)
class _WSD(Schedule):
    peak_lr: float
    total_steps: int
    warmup_steps: int
    decay_steps: int
    shape: str = "linear"
    final_lr: float = 0.0
    _name = "wsd"

    def _evaluate(self, t):
        peak, final = self.peak_lr, self.final_lr
        T, W, D = self.total_steps, self.warmup_steps, self.decay_steps
        out = np.full(t.shape, peak, dtype=np.float64)
        if D > 0:
            p = np.clip((t - (T - D)) / D, 0.0, 1.0)
            if self.shape == "exp":
                decayed = peak * np.power(final / peak, p)
            else:
                if self.shape == "linear":
                    f = 1.0 - p
                elif self.shape == "cosine":
                    f = (1.0 + np.cos(np.pi * p)) / 2.0
                elif self.shape == "1-sqrt":
                    f = 1.0 - np.sqrt(p)
                else:  # "1-square"
                    f = 1.0 - p * p
                decayed = final + (peak - final) * f
            out = np.where(t >= T - D, decayed, out)
        if W > 0:
            out = np.where(t < W, _warmup(t, peak, W), out)
        return np.clip(np.where(t >= T, final, out), final, peak)


def wsd(
    peak_lr: float,
    total_steps: int,
    warmup_steps: int,
    decay_steps: int,
    shape: str = "linear",
    final_lr: float = 0.0,
) -> Schedule:
    r"""Warmup-stable-decay, WSD (Hu et al. 2024; Hägele et al. 2024; Wen et al. 2024).

    Linear warmup, a long constant phase at the peak, and a short cooldown over the
    last ``D`` of ``T`` steps. With :math:`p = (t - (T - D))/D \in [0, 1)`,

    .. math::

        \eta_t = \begin{cases}
          \eta_{\text{peak}}\,(t + 1)/W & t < W,\\
          \eta_{\text{peak}} & W \le t < T - D,\\
          \eta_{\text{final}} + (\eta_{\text{peak}} - \eta_{\text{final}})\, f(p)
             & T - D \le t < T,\\
          \eta_{\text{final}} & t \ge T,
        \end{cases}

    where :math:`f(p) = 1 - p` ("linear"), :math:`(1 + \cos \pi p)/2` ("cosine"),
    :math:`1 - \sqrt{p}` ("1-sqrt", Hägele et al.), :math:`1 - p^2` ("1-square");
    the "exp" shape is geometric, :math:`\eta_{\text{peak}}
    (\eta_{\text{final}}/\eta_{\text{peak}})^p`, and needs ``final_lr > 0``.

    Parameters
    ----------
    peak_lr : float
        Finite, >= 0 (> 0 for "exp").
    total_steps : int
        ``T >= 1``.
    warmup_steps, decay_steps : int
        ``W >= 0``, ``D >= 0`` with ``W + D <= T``.
    shape : str
        One of ``"linear"``, ``"cosine"``, ``"1-sqrt"``, ``"1-square"``, ``"exp"``.
    final_lr : float
        In ``[0, peak_lr]``; honoured by every shape.

    Examples
    --------
    >>> s = wsd(1.0, total_steps=8, warmup_steps=2, decay_steps=4)
    >>> s(np.arange(9))
    array([0.5 , 1.  , 1.  , 1.  , 1.  , 0.75, 0.5 , 0.25, 0.  ])
    """
    peak = _lr("peak_lr", peak_lr)
    T = _int("total_steps", total_steps, 1)
    W = _int("warmup_steps", warmup_steps, 0)
    D = _int("decay_steps", decay_steps, 0)
    if W > T:
        raise ValueError(f"warmup_steps must be in [0, total_steps={T}], got {W}")
    if W + D > T:
        raise ValueError(
            f"warmup_steps + decay_steps must be <= total_steps={T}, got {W} + {D} = {W + D}"
        )
    if shape not in WSD_SHAPES:
        raise ValueError(f"shape must be one of {WSD_SHAPES}, got {shape!r}")
    final = _lr("final_lr", final_lr)
    if final > peak:
        raise ValueError(f"final_lr must be in [0, peak_lr={peak}], got {final}")
    if shape == "exp" and final <= 0.0:
        raise ValueError(f"final_lr must be > 0 (and <= peak_lr) for shape='exp', got {final}")
    return _WSD(peak, T, W, D, shape, final)


@dataclass(frozen=True, repr=False)
class _Join(Schedule):
    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]
    _name = "join"

    def _evaluate(self, t):
        flat = t.ravel()
        idx = np.searchsorted(np.asarray(self.boundaries, dtype=np.int64), flat, side="right")
        out = np.empty(flat.shape, dtype=np.float64)
        starts = (0, *self.boundaries)
        for i, (s, start) in enumerate(zip(self.schedules, starts, strict=True)):
            mask = idx == i
            if mask.any():
                out[mask] = s._evaluate(flat[mask] - start)
        return out.reshape(t.shape)

    def __repr__(self) -> str:
        return f"join({_fmt(self.schedules)}, boundaries={_fmt(self.boundaries)})"


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Run ``schedules[i]`` from ``boundaries[i-1]`` on, each seeing its own step count.

    .. math::

        \eta_t = s_i(t - b_{i-1}), \qquad i = \#\{j : b_j \le t\},\ b_{-1} = 0.

    Parameters
    ----------
    schedules : sequence of Schedule
        ``len(boundaries) + 1`` companion schedules.
    boundaries : sequence of int
        Strictly increasing, each >= 1.

    Examples
    --------
    >>> s = join([linear_warmup(1.0, 2), cosine(1.0, 4)], boundaries=[2])
    >>> s(np.arange(7))
    array([0.5       , 1.        , 1.        , 0.85355339, 0.5       ,
           0.14644661, 0.        ])
    """
    b = _boundaries("boundaries", boundaries)
    try:
        items = tuple(schedules)
    except TypeError:
        raise ValueError(f"schedules must be a sequence of schedules, got {schedules!r}") from None
    if len(items) != len(b) + 1:
        raise ValueError(
            f"schedules must have len(boundaries) + 1 = {len(b) + 1} entries, got {len(items)}"
        )
    for i, s in enumerate(items):
        if not isinstance(s, Schedule):
            raise ValueError(f"schedules[{i}] must be a companion Schedule, got {s!r}")
    return _Join(items, b)
