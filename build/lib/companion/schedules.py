r"""Closed-form learning-rate schedules (sections 6.2.1 and 6.4).

Every constructor checks its arguments and returns a :class:`Schedule`: a small,
frozen, pure function of the step. Steps are 0-based: ``s(t)`` is the learning
rate of the ``t``-th update. ``s`` accepts a Python or numpy integer (and returns
a Python ``float``) or an integer array (and returns a ``float64`` array of the
same shape). There is no recursion and no state: the value at step 10,000 is
computed directly, so nothing drifts and nothing needs resuming. The scalar path
runs the vectorised one, so ``s(np.arange(T))`` equals ``[s(t) for t in range(T)]``
exactly.

Conventions: the decays are PyTorch's closed forms where it has the schedule
(``CosineAnnealingLR``, ``MultiStepLR``, ``CosineAnnealingWarmRestarts``; also
optax's and Hugging Face's cosine): a cosine decay over ``T`` steps is at the peak
at ``t = W`` and reaches ``final_lr`` at ``t = T``, where it stays. A linear warmup
over ``W`` steps multiplies by ``(t + 1) / W`` (PyTorch's
``LinearLR(start_factor=1/W, total_iters=W-1)``), not by ``t / W`` as optax and
Hugging Face do, so the first update never has learning rate 0.

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
from abc import ABC, abstractmethod
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

_CHUNK = 1 << 16  # steps evaluated at a time (about 0.5 MB per float64 temporary)


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
        raise ValueError(f"step must be an integer >= 0 or an array of integers >= 0, got {step!r}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"step must be >= 0, got a minimum of {arr.min()}")
    return arr


# ----------------------------------------------------------------------------- base


class Schedule(ABC):
    """A learning-rate schedule: a pure function of the 0-based step.

    Subclasses implement :meth:`_evaluate` on a 1-d int64 array; :meth:`__call__`
    checks the step and routes scalars through the same vectorised code, so both
    paths perform the same floating-point operations on every element.
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
        t = _steps(step)
        flat = t.ravel()
        if flat.size <= _CHUNK:
            return self._evaluate(flat).reshape(t.shape)
        # chunks that stay in cache: the same operations per element, fewer memory passes
        out = np.empty(flat.shape, dtype=np.float64)
        for i in range(0, flat.size, _CHUNK):
            out[i : i + _CHUNK] = self._evaluate(flat[i : i + _CHUNK])
        return out.reshape(t.shape)

    @abstractmethod
    def _evaluate(self, t: np.ndarray) -> np.ndarray:
        """The rates of the steps ``t`` (a 1-d int64 array of steps >= 0)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={_fmt(getattr(self, f.name))}" for f in fields(self))
        return f"{self._name}({args})"


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return repr(value)


class _Steps:
    """A 1-d int64 step array that selects the steps in ``[lo, hi)``.

    For sorted steps (``np.arange(T)``, the common case, or a single step) the
    selection is a slice found by binary search, so a phase costs no mask, gather or
    scatter; otherwise it is a boolean mask. Both select the same elements, and the
    values computed on them do not depend on which.
    """

    __slots__ = ("t", "sorted")

    def __init__(self, t: np.ndarray) -> None:
        self.t = t
        self.sorted = t.size < 2 or bool(np.all(t[1:] >= t[:-1]))

    def select(self, lo: int, hi: int | None = None) -> slice | np.ndarray:
        t = self.t
        if self.sorted:
            a = int(np.searchsorted(t, lo)) if lo > 0 else 0
            b = t.size if hi is None else int(np.searchsorted(t, hi))
            return slice(a, max(a, b))
        return t >= lo if hi is None else (t >= lo) & (t < hi)


def _fill(out: np.ndarray | float, steps: _Steps, lo: int, hi: int | None, fn: Any) -> Any:
    """Set ``out[i] = fn(t[i])`` for the steps ``lo <= t[i] < hi`` (``hi=None``: no bound).

    ``out`` is an array, or a float standing for an array filled with it (allocated
    only if needed); the result (possibly a new array) is returned. ``fn`` returns a
    new array.
    """
    t = steps.t
    sel = steps.select(lo, hi)
    n = sel.stop - sel.start if isinstance(sel, slice) else int(np.count_nonzero(sel))
    if n == 0:
        return out
    if n == t.size:
        return fn(t)
    if not isinstance(out, np.ndarray):
        out = np.full(t.shape, out, dtype=np.float64)
    out[sel] = fn(t[sel])
    return out


def _array(out: np.ndarray | float, t: np.ndarray) -> np.ndarray:
    return out if isinstance(out, np.ndarray) else np.full(t.shape, out, dtype=np.float64)


def _warmup(t: np.ndarray, peak: float, warmup: int, init: float = 0.0) -> np.ndarray:
    r"""``init + (peak - init) * (t + 1) / W`` for ``t < W``, clipped to [init, peak]."""
    x = np.add(t, 1, dtype=np.float64)
    x /= warmup
    x *= peak - init
    x += init
    return np.clip(x, min(init, peak), max(init, peak), out=x)


def _cosine_decay(tau: np.ndarray, length: Any, peak: Any, final: float) -> np.ndarray:
    r"""``final + (peak - final) * (1 + cos(pi * tau / length)) / 2``, clipped to [final, peak].

    Same order of operations as PyTorch's closed form; computed in place.
    """
    x = np.multiply(tau, np.pi, dtype=np.float64)
    x /= length
    np.cos(x, out=x)
    x += 1.0
    x *= np.subtract(peak, final)
    x /= 2.0
    x += final
    return np.clip(x, final, peak, out=x)


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
        W = self.warmup_steps
        warm = _fill(
            self.peak_lr, _Steps(t), 0, W - 1, lambda s: _warmup(s, self.peak_lr, W, self.init_lr)
        )
        return _array(warm, t)


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
        steps, out = _Steps(t), final
        if W > 0:
            out = _fill(out, steps, 0, W, lambda s: _warmup(s, peak, W))
        if T > W:
            out = _fill(out, steps, W, T, lambda s: _cosine_decay(s - W, T - W, peak, final))
        return _array(out, t)


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
        steps = _Steps(t)
        if not steps.sorted:
            idx = np.searchsorted(np.asarray(self.boundaries, dtype=np.int64), t, side="right")
            return np.asarray(self.values, dtype=np.float64)[idx]
        out: Any = self.values[0]
        ends = (*self.boundaries[1:], None)
        for i, lo in enumerate(self.boundaries):
            v = self.values[i + 1]
            out = _fill(out, steps, lo, ends[i], lambda s, v=v: np.full(s.shape, v))
        return _array(out, t)


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

    def _cycles(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Starts and lengths of the cycles from the one holding ``first`` to the one
        holding ``last``, in exact integer arithmetic (None for ``m = 1``)."""
        C, m = self.cycle_steps, self.cycle_mult
        if m == 1:
            return None
        starts, lengths = [0], [C]
        while starts[-1] + lengths[-1] <= last:
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * m)
        return np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)

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
        table = self._cycles(first, last)
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
                out = _fill(
                    out, steps, b, b + n, lambda s, b=b, n=n, p=p: _cosine_decay(s - b, n, p, final)
                )
            return _array(out, t)
        if table is None:
            k = t // C
            begin, length = k * C, C
        else:
            k = np.searchsorted(table[0], t, side="right") - 1
            begin, length = table[0][k], table[1][k]
        return _cosine_decay(t - begin, length, self._peaks(k), final)


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

    def _decay(self, t: np.ndarray) -> np.ndarray:
        """The cooldown for ``T - D <= t < T``: ``final + (peak - final) f(p)`` or geometric."""
        peak, final, D = self.peak_lr, self.final_lr, self.decay_steps
        p = np.subtract(t, self.total_steps - D, dtype=np.float64)
        p /= D
        if self.shape == "exp":
            x = np.power(final / peak, p, out=p)
            x *= peak
        else:
            if self.shape == "linear":
                x = np.subtract(1.0, p, out=p)
            elif self.shape == "cosine":
                x = np.multiply(np.pi, p, out=p)
                np.cos(x, out=x)
                x += 1.0
                x /= 2.0
            elif self.shape == "1-sqrt":
                x = np.sqrt(p, out=p)
                np.subtract(1.0, x, out=x)
            else:  # "1-square"
                x = np.multiply(p, p, out=p)
                np.subtract(1.0, x, out=x)
            x *= peak - final
            x += final
        return np.clip(x, final, peak, out=x)

    def _evaluate(self, t):
        peak, final = self.peak_lr, self.final_lr
        T, W, D = self.total_steps, self.warmup_steps, self.decay_steps
        steps, out = _Steps(t), peak
        if W > 0:
            out = _fill(out, steps, 0, W, lambda s: _warmup(s, peak, W))
        if D > 0:
            out = _fill(out, steps, T - D, T, self._decay)
        out = _fill(out, steps, T, None, lambda s: np.full(s.shape, final))
        return _array(out, t)


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
        steps, out = _Steps(t), 0.0
        starts, ends = (0, *self.boundaries), (*self.boundaries, None)
        for s, lo, hi in zip(self.schedules, starts, ends, strict=True):
            out = _fill(out, steps, lo, hi, lambda x, s=s, lo=lo: s._evaluate(x - lo))
        return _array(out, t)

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
