"""The machinery every schedule shares: the base class, step selection, the phase chain,
the warmup ramp, the decay shapes and the argument checks (section 6.2.2).

Private: the public names are re-exported by :mod:`companion.schedules`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from companion._validation import check_integer, check_real, check_steps

_CHUNK = 1 << 16  # steps evaluated at a time (about 0.5 MB per float64 temporary)

#: The decay shapes of :func:`wsd`'s cooldown.
WSD_SHAPES = ("linear", "cosine", "1-sqrt", "1-square", "exp")
#: The warmup shapes of :func:`cosine` and :func:`wsd`.
WARMUP_SHAPES = ("linear", "cosine")


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
        """Learning rate at ``step``: an integer in ``[0, 2**53]``, or an array of them."""
        t = check_steps(step)
        if isinstance(t, int):
            return float(self._evaluate(np.array([t], dtype=np.int64))[0])
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
        """The call that builds the schedule; arguments left at their default are omitted."""
        args = []
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if not f.init or (f.default is not MISSING and _same(value, f.default)):
                continue
            args.append(f"{f.name}={_fmt(value)}")
        return f"{self._name}({', '.join(args)})"


def _same(value: Any, default: Any) -> bool:
    return type(value) is type(default) and value == default


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return repr(value)


@dataclass(frozen=True, repr=False)
class _Composed(Schedule):
    """A schedule defined by its arguments (for ``repr`` and ``==``) and computed by the
    chain of phases :meth:`_build` returns once, at construction."""

    _body: Schedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_body", self._build())

    @abstractmethod
    def _build(self) -> Schedule:
        """The phases, as private pieces joined by :func:`chain`."""

    def _evaluate(self, t):
        return self._body._evaluate(t)


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


def fill(
    out: np.ndarray | float,
    steps: _Steps,
    lo: int,
    hi: int | None,
    fn: Callable[[np.ndarray], np.ndarray] | float,
) -> Any:
    """Set ``out[i] = fn(t[i])`` for the steps ``lo <= t[i] < hi`` (``hi=None``: no bound).

    ``out`` is an array, or a float standing for an array filled with it (allocated
    only if needed); the result (possibly a new array) is returned. ``fn`` returns a
    new array, or is a float: the value of every selected step.
    """
    t = steps.t
    sel = steps.select(lo, hi)
    n = sel.stop - sel.start if isinstance(sel, slice) else int(np.count_nonzero(sel))
    if n == 0:
        return out
    if not callable(fn):
        if n == t.size or not isinstance(out, np.ndarray) and out == fn:
            return fn
        out = as_array(out, t)
        out[sel] = fn
        return out
    if n == t.size:
        return fn(t)
    out = as_array(out, t)
    out[sel] = fn(t[sel])
    return out


def as_array(out: np.ndarray | float, t: np.ndarray) -> np.ndarray:
    return out if isinstance(out, np.ndarray) else np.full(t.shape, out, dtype=np.float64)


# ----------------------------------------------------------------------------- composition


@dataclass(frozen=True, repr=False)
class _Join(Schedule):
    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]
    _name = "join"

    def _evaluate(self, t):
        steps, out = _Steps(t), 0.0
        starts, ends = (0, *self.boundaries), (*self.boundaries, None)
        for s, lo, hi in zip(self.schedules, starts, ends, strict=True):
            fn = s.lr if isinstance(s, _Constant) else _shifted(s, lo)
            out = fill(out, steps, lo, hi, fn)
        return as_array(out, t)

    def __repr__(self) -> str:
        return f"join({_fmt(self.schedules)}, boundaries={_fmt(self.boundaries)})"


def _shifted(s: Schedule, lo: int) -> Callable[[np.ndarray], np.ndarray]:
    """``s`` on its own step count, for the steps from ``lo`` on."""
    return (lambda x: s._evaluate(x - lo)) if lo else s._evaluate


def chain(*phases: tuple[Schedule, int | None]) -> Schedule:
    """Phases ``(piece, length)`` one after the other, each from its own step 0 (the
    last one's length is ``None``: it runs forever); empty phases are dropped."""
    pieces, boundaries, start = [], [], 0
    for piece, length in phases:
        if length == 0:
            continue
        if pieces:
            boundaries.append(start)
        pieces.append(piece)
        if length is not None:
            start += length
    return pieces[0] if len(pieces) == 1 else _Join(tuple(pieces), tuple(boundaries))


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Run ``schedules[i]`` from ``boundaries[i-1]`` on, each seeing its own step count.

    .. math::

        s(t) = s_i(t - b_{i-1}), \qquad i = \#\{j : b_j \le t\},\ b_{-1} = 0.

    This is optax's ``join_schedules``; every warmup-then-decay schedule of this module
    is built this way.

    Parameters
    ----------
    schedules : sequence of Schedule
        ``len(boundaries) + 1`` companion schedules.
    boundaries : sequence of int
        Strictly increasing, each >= 1.

    Examples
    --------
    >>> from companion.schedules import cosine, linear_warmup
    >>> s = join([linear_warmup(1.0, 2), cosine(1.0, 4)], boundaries=[2])
    >>> s(np.arange(7))
    array([0.5       , 1.        , 1.        , 0.85355339, 0.5       ,
           0.14644661, 0.        ])
    """
    b = increasing("boundaries", boundaries)
    pieces = entries("schedules", schedules, len(b) + 1, "schedules")
    for i, s in enumerate(pieces):
        if not isinstance(s, Schedule):
            raise TypeError(f"schedules[{i}] must be a companion Schedule, got {s!r}")
    return _Join(pieces, b)


# ----------------------------------------------------------------------------- pieces


@dataclass(frozen=True, repr=False)
class _Constant(Schedule):
    lr: float
    _name = "constant"

    def _evaluate(self, t):
        return np.full(t.shape, self.lr, dtype=np.float64)


@dataclass(frozen=True, repr=False)
class _Ramp(Schedule):
    r"""The warmup: :math:`\eta_{\text{init}} + (\eta_{\text{peak}} - \eta_{\text{init}})
    \,r(\min(t+1, W)/W)` with :math:`r(q) = q` ("linear") or :math:`\sin^2(\pi q/2)`
    ("cosine"); exactly :math:`\eta_{\text{peak}}` from :math:`t = W - 1` on."""

    init: float
    peak: float
    length: int
    shape: str = "linear"
    _name = "_ramp"

    def _evaluate(self, t):
        return as_array(fill(self.peak, _Steps(t), 0, self.length - 1, self._rise), t)

    def _rise(self, t: np.ndarray) -> np.ndarray:
        x = np.add(t, 1, dtype=np.float64)
        x /= self.length
        if self.shape == "cosine":
            x *= np.pi / 2
            np.sin(x, out=x)
            x *= x
        x *= self.peak - self.init
        x += self.init
        return np.clip(x, self.init, self.peak, out=x)


def ramp(init: float, peak: float, length: int, shape: str, then: Schedule) -> Schedule:
    """``then`` after a warmup of ``length`` steps (none for ``length = 0``)."""
    return chain((_Ramp(init, peak, length, shape), length), (then, None))


def anneal(tau: Any, length: Any, start: Any, end: Any, shape: str, power: float = 1.0) -> Any:
    r"""From ``start`` (at ``tau = 0``) to ``end`` (at ``tau = length``):
    :math:`e + (s - e)\,f(\tau/\ell)`, clipped to the two, with :math:`f(p)` = ``1 - p``
    ("linear", computed as :math:`s + (e - s)p`), :math:`(1 + \cos\pi p)/2` ("cosine", in PyTorch's order of operations),
    :math:`1 - \sqrt p` ("1-sqrt"), :math:`1 - p^2` ("1-square"), :math:`(1-p)^k`
    ("poly"). ``start``, ``end`` and ``length`` may be arrays; computed in place."""
    if shape == "cosine":
        x = np.multiply(tau, np.pi, dtype=np.float64)
        x /= length
        np.cos(x, out=x)
        x += 1.0
        x *= np.subtract(start, end)
        x /= 2.0
    elif shape == "linear":  # PyTorch's order (OneCycleLR): s + (e - s) p, exactly s at p = 0
        x = np.divide(tau, length, dtype=np.float64)
        x *= np.subtract(end, start)
        x += start
        return np.clip(x, np.minimum(start, end), np.maximum(start, end), out=x)
    else:
        x = np.divide(tau, length, dtype=np.float64)
        if shape == "1-sqrt":
            np.sqrt(x, out=x)
        elif shape == "1-square":
            x *= x
        np.subtract(1.0, x, out=x)
        if shape == "poly":
            np.power(x, power, out=x)
        x *= np.subtract(start, end)
    x += end
    return np.clip(x, np.minimum(start, end), np.maximum(start, end), out=x)


@dataclass(frozen=True, repr=False)
class _Decay(Schedule):
    """``anneal`` from ``start`` to ``end`` over ``length`` steps (defined on ``[0, length)``)."""

    start: float
    end: float
    length: int
    shape: str
    power: float = 1.0
    _name = "_decay"

    def _evaluate(self, t):
        return anneal(t, self.length, self.start, self.end, self.shape, self.power)


@dataclass(frozen=True, repr=False)
class _Geometric(Schedule):
    r""":math:`\max(\eta\,\gamma^{p}, \eta_{\min})` with :math:`p = t/k` (floored if ``staircase``)."""

    peak: float
    rate: float
    every: int
    staircase: bool
    floor: float
    _name = "_geometric"

    def _evaluate(self, t):
        p = np.divide(t, self.every, dtype=np.float64)
        if self.staircase:
            np.floor(p, out=p)
        x = np.power(self.rate, p, out=p)
        x *= self.peak
        return np.clip(x, self.floor, self.peak, out=x)


# ----------------------------------------------------------------------------- checks


def rate(name: str, value: Any, peak: float | None = None) -> float:
    """A learning rate: finite and >= 0, and <= ``peak_lr`` when ``peak`` is given."""
    return check_real(name, value, low=0, high=peak, high_name="peak_lr")


def count(name: str, value: Any, low: int = 0, high: int | None = None) -> int:
    """A number of steps: an integer >= ``low`` (and <= ``total_steps`` = ``high``)."""
    return check_integer(name, value, low=low, high=high, high_name="total_steps")


def items(name: str, value: Any, what: str) -> tuple[Any, ...]:
    """The entries of a sequence (TypeError for anything else, a string included)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of {what}, got {value!r}")
    return tuple(value)


def increasing(name: str, value: Any) -> tuple[int, ...]:
    """Strictly increasing integers >= 1."""
    out = tuple(count(f"{name}[{i}]", b, 1) for i, b in enumerate(items(name, value, "ints")))
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            raise ValueError(
                f"{name} must be strictly increasing, got {name}[{i - 1}] = {out[i - 1]} "
                f">= {name}[{i}] = {out[i]}"
            )
    return out


def entries(name: str, value: Any, expected: int, what: str) -> tuple[Any, ...]:
    """A sequence of ``expected`` entries, ``len(boundaries) + 1`` of them."""
    out = items(name, value, what)
    if len(out) != expected:
        raise ValueError(
            f"{name} must have len(boundaries) + 1 = {expected} entries, got {len(out)}"
        )
    return out
