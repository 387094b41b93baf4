"""Checks of a loaded optimizer state, made before it replaces anything.

``torch.optim.Optimizer.load_state_dict`` takes any per-parameter state as it is: a NaN
moment, a negative step or a missing buffer then fails (or poisons the parameters) at a
later ``step()``, after the optimizer has already been changed. A companion optimizer
checks each parameter's saved state first, against its family's :class:`Slot` list.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from companion._validation import check_real

__all__ = ["Slot", "check_saved_state"]


class Slot(NamedTuple):
    """One entry of a family's per-parameter state (``step`` is the step counter; every
    other entry a tensor shaped like its parameter)."""

    required: bool  # present in every state that exists (else made at the next step)
    nonnegative: bool  # a second moment (or a step count): no negative value
    nullable: bool = False  # None stands for "not made yet" (SGD's momentum buffer)


def check_saved_state(slots: dict[str, Slot], key: Any, entry: Any, param: Tensor) -> None:
    """Check the saved state ``entry`` of the parameter ``param`` (saved under ``key``).

    An empty state is valid (it is made at the next step). Otherwise every required slot
    must be there; ``step`` must be a whole number >= 0 (a number or a one-element
    tensor); every other slot a finite floating-point tensor of the parameter's shape,
    with no negative entry where the slot is a second moment.

    Raises
    ------
    TypeError, ValueError
        Naming the parameter's key and the slot.
    """
    where = f"state_dict state {key!r}"
    if not isinstance(entry, dict):
        raise TypeError(
            f"{where} must be a dict (one parameter's state), got {type(entry).__name__}"
        )
    if not entry:
        return
    for name, slot in slots.items():
        if name not in entry:
            if slot.required:
                needed = ", ".join(repr(n) for n, s in slots.items() if s.required)
                raise ValueError(f"{where} lacks {name!r}: a saved state holds {needed}")
            continue
        value = entry[name]
        if name == "step":
            _check_step(f"{where}: step", value)
        elif value is not None or not slot.nullable:
            _check_tensor(f"{where}: {name}", value, param, slot.nonnegative)


def _check_step(name: str, value: Any) -> None:
    number = check_real(name, value, low=0, allow_tensor=True)
    if isinstance(number, Tensor):
        number = number.detach().reshape(()).item()
    if not float(number).is_integer():
        raise ValueError(f"{name} must be a whole number >= 0, got {number!r}")


def _check_tensor(name: str, value: Any, param: Tensor, nonnegative: bool) -> None:
    shape = tuple(param.shape)
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{name} must be a tensor of the parameter's shape {shape}, got {value!r:.60}"
        )
    if value.device.type == "meta" or not (value.is_floating_point() or value.is_complex()):
        raise TypeError(
            f"{name} must be a floating-point tensor with values, got {value.dtype} on {value.device}"
        )
    if value.shape != param.shape:
        raise ValueError(f"{name} has shape {tuple(value.shape)}, the parameter {shape}")
    real = torch.view_as_real(value) if value.is_complex() else value
    if not bool(torch.isfinite(real).all()):  # read at load time, never in a step
        raise ValueError(f"{name} must be finite, but has NaN or infinite entries")
    if nonnegative and bool((real < 0).any()):
        raise ValueError(f"{name} must be >= 0 (a second moment), but has negative entries")
