"""One validation layer for the whole package (the bottom layer: numpy and torch only).

Every public constructor and function of :mod:`companion` checks its arguments here, so
that every bad input gets the same kind of answer:

* a **number** is any real scalar -- a Python ``int``/``float``, a numpy integer or
  floating scalar, a ``fractions.Fraction`` -- and, where the caller allows it, a
  one-element real tensor; **bools are not numbers** (``True`` is refused, as is
  ``np.True_``), nor are strings, ``None`` or complex values;
* a value of the **wrong type** raises :class:`TypeError`, a value of the right type
  outside its range raises :class:`ValueError`;
* every message names the argument, states the allowed range and shows the value
  received, in one format::

      lr must be a finite real number >= 0, got -1.0
      betas[1] must be a real number in [0, 1), got 1.5
      warmup_steps must be an integer in [0, total_steps=100], got 200

A check never changes anything: callers validate everything first, then act.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_choice",
    "check_flag",
    "check_integer",
    "check_pair",
    "check_real",
    "check_real_array",
    "check_steps",
    "interval",
    "is_real_scalar",
]


def is_real_scalar(value: Any) -> bool:
    """True for a real scalar that is not a bool (Python, numpy or ``Fraction``)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_integer_scalar(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _fmt(value: Any) -> str:
    """``value`` as a message shows it: numbers plainly, everything else by repr."""
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        return repr(value.item())
    if isinstance(value, torch.Tensor):
        if value.numel() == 1 and value.device.type == "cpu":
            return f"tensor({value.detach().reshape(()).item()!r})"
        return f"a tensor of shape {tuple(value.shape)} on {value.device}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def interval(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> str:
    """The allowed range as messages write it: ``">= 0"``, ``"in (0, 1)"``, ``"<= 5"``."""
    if low is not None and high is not None:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def _outside(value: float, low: Any, high: Any, low_open: bool, high_open: bool) -> bool:
    if low is not None and (value <= low if low_open else value < low):
        return True
    return high is not None and (value >= high if high_open else value > high)


def _named(bound: Any, name: str | None) -> Any:
    """A bound as messages show it: ``"total_steps=100"`` when it has a name."""
    return f"{name}={bound}" if name is not None and bound is not None else bound


def _describe(kind: str, low: Any, high: Any, low_open: bool, high_open: bool) -> str:
    bound = interval(low, high, low_open=low_open, high_open=high_open)
    return f"{kind} {bound}".rstrip()


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    allow_tensor: bool = False,
    read_tensor: bool = True,
    high_name: str | None = None,
) -> Any:
    """Check a real number and return it as a Python ``float`` (a tensor is returned as is).

    Parameters
    ----------
    name : str
        The argument's name, as messages show it (``"betas[0]"``, ``"clip's m_min"``).
    value
        What the caller received.
    low, high : float, optional
        Bounds of the allowed range; ``low_open``/``high_open`` make them strict.
    finite : bool
        Refuse NaN and infinities (default). NaN is refused whatever the bounds.
    allow_tensor : bool
        Accept a one-element real (non-bool, non-complex) tensor and return it unchanged.
    read_tensor : bool
        With ``allow_tensor``, also check a tensor's value. Reading a tensor that lives on
        an accelerator synchronises the host, so callers on a hot path pass ``False``
        there and only its shape and dtype are checked.
    high_name : str, optional
        Names the upper bound in the message (``"in [0, peak_lr=0.1]"``).

    Raises
    ------
    TypeError
        ``value`` is not a real number (a bool, a string, ``None``, a complex number, a
        tensor where none is allowed or one with more than one element).
    ValueError
        ``value`` is NaN, infinite (with ``finite``) or outside the range.

    Examples
    --------
    >>> check_real("lr", 0.1, low=0)
    0.1
    >>> check_real("lr", -1, low=0)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite real number >= 0, got -1
    """
    kind = "a finite real number" if finite else "a real number"
    shown_high = _named(high, high_name)
    wanted = _describe(kind, low, shown_high, low_open, high_open)
    if isinstance(value, torch.Tensor):
        if not allow_tensor:
            raise TypeError(f"{name} must be {wanted} (not a tensor), got {_fmt(value)}")
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex():
            raise TypeError(
                f"{name} must be {wanted} or a one-element real tensor, got {_fmt(value)}"
                + (f" of dtype {value.dtype}" if value.numel() == 1 else "")
            )
        if value.device.type == "meta":
            raise TypeError(f"{name} must be {wanted} or a tensor with a value, got a meta tensor")
        if read_tensor:
            number = float(value.detach().reshape(()).item())
            if _bad_number(number, finite, low, high, low_open, high_open):
                raise ValueError(f"{name} must be {wanted}, got {_fmt(value)}")
        return value
    if not is_real_scalar(value):
        raise TypeError(f"{name} must be {wanted}, got {_fmt(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float64's range
        number = math.inf if value > 0 else -math.inf
    if _bad_number(number, finite, low, high, low_open, high_open):
        raise ValueError(f"{name} must be {wanted}, got {_fmt(value)}")
    return number


def _bad_number(
    number: float, finite: bool, low: Any, high: Any, low_open: bool, high_open: bool
) -> bool:
    if math.isnan(number) or (finite and math.isinf(number)):
        return True
    return _outside(number, low, high, low_open, high_open)


def check_integer(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
    high_name: str | None = None,
) -> int:
    """Check an integer (Python or numpy; not a bool, not a float) and return it as ``int``.

    ``high_name`` names the bound in the message (``"total_steps=100"``).

    Examples
    --------
    >>> check_integer("warmup_steps", 5, low=0, high=10, high_name="total_steps")
    5
    >>> check_integer("warmup_steps", 2.0, low=0)
    Traceback (most recent call last):
    ...
    TypeError: warmup_steps must be an integer >= 0, got 2.0
    """
    shown_high = _named(high, high_name)
    wanted = _describe("an integer", low, shown_high, False, False)
    if not _is_integer_scalar(value):
        raise TypeError(f"{name} must be {wanted}, got {_fmt(value)}")
    number = int(value)
    if _outside(number, low, high, False, False):
        raise ValueError(f"{name} must be {wanted}, got {_fmt(value)}")
    return number


def check_flag(name: str, value: Any) -> bool:
    """Check a bool (Python or numpy) and return it as ``bool``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_fmt(value)}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices`` (compared by type and value) and return it.

    A numpy scalar counts as the Python value it holds (``np.str_("cosine")`` is
    ``"cosine"``).
    """
    choices = tuple(choices)
    if isinstance(value, np.generic):
        value = value.item()
    if any(value is c or (type(value) is type(c) and value == c) for c in choices):
        return value
    shown = ", ".join(map(repr, choices))
    wrong_type = all(not isinstance(value, type(c)) for c in choices if c is not None)
    error = TypeError if wrong_type and value is not None else ValueError
    raise error(f"{name} must be one of {shown}, got {_fmt(value)}")


def check_pair(name: str, value: Any, **bounds: Any) -> tuple[float, float]:
    """Check a pair of real numbers (a tuple, list or 2-element array) with common bounds.

    ``bounds`` are passed to :func:`check_real` for each element, named ``name[0]`` and
    ``name[1]``.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a pair of real numbers, got {_fmt(value)}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair of real numbers, got {len(value)} values")
    bounds.setdefault("allow_tensor", True)
    first = check_real(f"{name}[0]", value[0], **bounds)
    second = check_real(f"{name}[1]", value[1], **bounds)
    return _plain(first), _plain(second)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.device.type == "cpu":
        return float(value.detach().reshape(()).item())
    return value


def check_real_array(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    ndim: int | None = 1,
    nonempty: bool = True,
) -> np.ndarray:
    """Check a sequence or array of finite real numbers and return it as a float64 array.

    Bools, strings, ``None`` and complex entries are a :class:`TypeError`; NaN, infinite
    or out-of-range entries a :class:`ValueError` naming the first offending index.
    """
    wanted = _describe("finite real numbers", low, high, low_open, high_open)
    if isinstance(value, (str, bytes)) or value is None or isinstance(value, numbers.Number):
        raise TypeError(f"{name} must be a sequence of {wanted}, got {_fmt(value)}")
    if isinstance(value, torch.Tensor):
        value = _host_array(name, value)
    raw = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
    if raw.dtype == object:
        for index, item in np.ndenumerate(raw):
            if not is_real_scalar(item):
                raise TypeError(
                    f"{name} must be a sequence of {wanted}; {name}[{_index(index)}] is "
                    f"{_fmt(item)}"
                )
    elif raw.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a sequence of {wanted}, got an array of dtype {raw.dtype}")
    arr = np.asarray(raw, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d sequence of {wanted}, got shape {arr.shape}")
    if nonempty and arr.size == 0:
        raise ValueError(f"{name} must be a non-empty sequence of {wanted}, got an empty one")
    bad = np.isnan(arr) | np.isinf(arr)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= (arr >= high) if high_open else (arr > high)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must be a sequence of {wanted}; {name}[{_index(first)}] is {float(arr[first])!r}"
        )
    return arr


def _host_array(name: str, value: torch.Tensor) -> np.ndarray:
    """A tensor's values as a numpy array (bfloat16, which numpy lacks, as float32)."""
    if value.device.type == "meta":
        raise TypeError(f"{name} must hold values, got a meta tensor")
    value = value.detach().cpu()
    return (value.float() if value.dtype == torch.bfloat16 else value).numpy()


def _index(index: tuple[int, ...]) -> str:
    return ", ".join(str(i) for i in index)


#: The largest step a schedule accepts: steps are evaluated as int64 and float64.
MAX_STEP = 2**53


def check_steps(value: Any, name: str = "step") -> int | np.ndarray:
    """Check a schedule's step: an integer or an array of integers in ``[0, 2**53]``.

    Returns a Python ``int`` for a scalar and an ``int64`` array otherwise (an empty
    sequence gives an empty array). Unsigned and huge integers are compared before any
    conversion, so nothing wraps around or overflows.
    """
    wanted = f"an integer in [0, {MAX_STEP}] or an array of such integers"
    if _is_integer_scalar(value):
        number = int(value)
        if not 0 <= number <= MAX_STEP:
            raise ValueError(f"{name} must be {wanted}, got {number}")
        return number
    if isinstance(value, torch.Tensor):
        value = _host_array(name, value)
    if isinstance(value, (str, bytes)) or value is None or isinstance(value, numbers.Number):
        raise TypeError(f"{name} must be {wanted}, got {_fmt(value)}")
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        arr = value
    else:
        raw = np.asarray(value, dtype=object)
        if raw.size == 0:
            return np.zeros(raw.shape, dtype=np.int64)
        for index, item in np.ndenumerate(raw):
            if not _is_integer_scalar(item):
                raise TypeError(f"{name} must be {wanted}; {name}[{_index(index)}] is {_fmt(item)}")
        if any(not 0 <= int(item) <= MAX_STEP for item in raw.flat):
            low_or_high = min(int(i) for i in raw.flat), max(int(i) for i in raw.flat)
            raise ValueError(
                f"{name} must be {wanted}, got values in [{low_or_high[0]}, {low_or_high[1]}]"
            )
        return raw.astype(np.int64)
    if arr.size == 0:
        return arr.astype(np.int64)
    lowest, highest = int(arr.min()), int(arr.max())
    if lowest < 0 or highest > MAX_STEP:
        raise ValueError(f"{name} must be {wanted}, got values in [{lowest}, {highest}]")
    return arr.astype(np.int64, copy=False)
