r"""Drive any torch optimizer's learning rate from a companion schedule (sections 6.2, 6.5).

:class:`ScheduledLR` is a :class:`torch.optim.lr_scheduler.LRScheduler`. At step
:math:`t` (0-based: the learning rate of the :math:`t`-th update) it sets every
parameter group's learning rate to

.. math::

    \eta^{(g)}_t = s(t)\,\frac{\alpha^{(g)}}{\alpha}\, m_t,

where :math:`s` is the schedule, :math:`\alpha^{(g)}` the group's initial learning
rate, :math:`\alpha` = ``optimizer.defaults["lr"]`` and :math:`m_t` an optional
stateful multiplier such as :class:`companion.river.River` (section 6.5). The
schedule is a closed form, so the scheduler's only state is the step count (plus
the multiplier's state): a reloaded scheduler continues exactly.

The training loop (the learning rate of step :math:`t` never sees batch :math:`t`)::

    losses = loss_fn(model(x), y, reduction="none")
    losses.mean().backward()
    optimizer.step(); optimizer.zero_grad()
    river.observe(losses.detach())      # after the step
    scheduler.step()                    # sets the next lr = s(t+1) * m
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from companion.optim._base import CompanionOptimizer

__all__ = ["ScheduledLR"]


def _as_float(value: Any, what: str) -> float:
    """A Python float from a number or a 0-d tensor (used at construction only)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{what} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach().cpu())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a real number, got {value!r}")
    return float(value)


class ScheduledLR(LRScheduler):
    r"""An ``LRScheduler`` that sets each group's lr to ``s(t) × ratio × multiplier``.

    Right after construction every group's learning rate is :math:`s(0)\cdot r_g`
    with :math:`r_g = \alpha^{(g)}/\alpha` (the group's ``initial_lr`` over
    ``optimizer.defaults["lr"]``), so a group created with half the base learning
    rate follows half the schedule. After the :math:`k`-th call of :meth:`step` it is
    :math:`s(k)\cdot r_g\cdot m` with :math:`m` the multiplier's current value.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any torch optimizer (``torch.optim`` or ``companion.optim``); its
        ``defaults["lr"]`` must be a finite number > 0.
    schedule : callable
        ``schedule(t) -> float`` for an int ``t >= 0``, e.g. a
        :mod:`companion.schedules` schedule.
    multiplier : object, optional
        Anything with a ``multiplier`` attribute giving a float or a 0-d tensor, and
        optionally ``state_dict()`` / ``load_state_dict()`` (e.g. a
        :class:`companion.river.River`).

    Notes
    -----
    Where a group's ``lr`` is a tensor, it is written in place (``fill_`` or
    ``copy_``), so it stays the tensor the optimizer holds (e.g. for ``capturable``
    or ``fused`` Adam), and a tensor multiplier is applied on its device with no
    host synchronisation; keep the lr tensor on the multiplier's device. Where a
    group's ``lr`` is a Python float and the multiplier is a tensor on an accelerator,
    the optimizer is a :mod:`companion.optim` optimizer (which takes a tensor lr on
    every path) and the scheduler writes the group's lr as a 0-d tensor on the
    multiplier's device, so no step waits for the device. For any other optimizer the
    lr stays a float and the multiplier is read with ``float()``, which waits for the
    device on an accelerator: give such an optimizer a tensor ``lr`` where it accepts
    one. On the CPU a float lr always stays a float.

    Unlike torch's recursive schedulers, ``step(epoch)`` may jump to any step: the
    value is a closed form. The order warnings of torch's base class are not
    emitted (the closed form has nothing to get out of step).

    Examples
    --------
    >>> import torch
    >>> from companion.schedules import cosine
    >>> p = torch.nn.Parameter(torch.zeros(2))
    >>> opt = torch.optim.SGD([{"params": [p]}, {"params": [], "lr": 0.05}], lr=0.1)
    >>> sched = ScheduledLR(opt, cosine(0.1, total_steps=4))
    >>> sched.get_last_lr()
    [0.1, 0.05]
    >>> opt.step(); sched.step()
    >>> [round(lr, 6) for lr in sched.get_last_lr()]
    [0.085355, 0.042678]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: Callable[[int], float],
        multiplier: Any = None,
    ) -> None:
        # Everything is checked before the base class touches the optimizer.
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if not callable(schedule):
            raise ValueError(f"schedule must be callable as schedule(step), got {schedule!r}")
        if multiplier is not None and not hasattr(multiplier, "multiplier"):
            raise ValueError(
                "multiplier must have a 'multiplier' attribute (a float or a 0-d tensor), "
                f"got {type(multiplier).__name__}"
            )
        if "lr" not in optimizer.defaults:
            raise ValueError("optimizer.defaults must contain 'lr' (the base learning rate)")
        base = _as_float(optimizer.defaults["lr"], 'optimizer.defaults["lr"]')
        if not math.isfinite(base) or base <= 0.0:
            raise ValueError(f'optimizer.defaults["lr"] must be a finite number > 0, got {base}')
        ratios = []
        for i, group in enumerate(optimizer.param_groups):
            initial = _as_float(group.get("initial_lr", group["lr"]), f"param_groups[{i}] lr")
            if not math.isfinite(initial) or initial < 0.0:
                raise ValueError(f"param_groups[{i}] lr must be finite and >= 0, got {initial}")
            ratios.append(initial / base)
        first = schedule(0)
        if isinstance(first, bool) or not isinstance(first, numbers.Real):
            raise ValueError(f"schedule(0) must return a real number, got {first!r}")

        self.schedule = schedule
        self.multiplier = multiplier
        self._ratios = ratios
        self._multiplied = False
        self._constructing = True
        try:
            super().__init__(optimizer)  # records initial_lr, then calls self.step() once
        finally:
            self._constructing = False

    # -------------------------------------------------------------------- lr values

    def _factor(self) -> float | Tensor | None:
        if self.multiplier is None:
            return None
        m = self.multiplier.multiplier
        return m.detach() if isinstance(m, Tensor) else float(m)

    def _values(self, t: int, multiplied: bool) -> list[float | Tensor]:
        """The learning rate of every group at step ``t`` (a tensor where it must be one)."""
        s = float(self.schedule(t))
        m = self._factor() if multiplied else None
        m_float: float | None = None  # a tensor multiplier read once, for float-lr groups
        out: list[float | Tensor] = []
        for group, ratio in zip(self.optimizer.param_groups, self._ratios, strict=True):
            base = s * ratio
            if m is None:
                out.append(base)
            elif not isinstance(m, Tensor):
                out.append(base * m)
            elif isinstance(group["lr"], Tensor) or self._writes_tensor_lr(m):
                out.append(m * base)
            else:
                if m_float is None:
                    m_float = float(m)  # waits for the device: use a tensor lr to avoid it
                out.append(base * m_float)
        return out

    def _writes_tensor_lr(self, m: Tensor) -> bool:
        """Whether a float lr becomes a device tensor (companion optimizers, accelerators)."""
        return m.device.type != "cpu" and isinstance(self.optimizer, CompanionOptimizer)

    def _apply(self, t: int, multiplied: bool) -> None:
        for group, value in zip(
            self.optimizer.param_groups, self._values(t, multiplied), strict=True
        ):
            lr = group["lr"]
            if isinstance(lr, Tensor):
                if isinstance(value, Tensor):
                    lr.copy_(value)
                else:
                    lr.fill_(value)
            elif isinstance(value, Tensor):
                group["lr"] = value.clone()  # a float lr becomes a tensor on the device
            else:
                group["lr"] = value
        self._multiplied = multiplied
        self._last_lr = [
            g["lr"].clone() if isinstance(g["lr"], Tensor) else g["lr"]
            for g in self.optimizer.param_groups
        ]

    def get_lr(self) -> list[float | Tensor]:
        """The learning rates of the current step (``last_epoch``), recomputed."""
        return self._values(self.last_epoch, self._multiplied)

    def step(self, epoch: int | None = None) -> None:
        """Advance to the next step (or jump to ``epoch``) and set the learning rates.

        Parameters
        ----------
        epoch : int, optional
            Jump to this step instead of advancing by one (>= 0).
        """
        if epoch is not None and (
            isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0
        ):
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        initial = self._constructing  # the base class's own first step: no multiplier yet
        self._step_count += 1
        if epoch is not None:
            self.last_epoch = int(epoch)
        else:
            self.last_epoch += 1
        self._apply(self.last_epoch, multiplied=not initial and self.multiplier is not None)

    # -------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """The step count and the multiplier's state (plain values and tensors only).

        Loadable with ``torch.load(..., weights_only=True)``.
        """
        state = getattr(self.multiplier, "state_dict", None)
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "multiplied": self._multiplied,
            "multiplier": state() if callable(state) else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the step count (and the multiplier) and set the learning rates for it."""
        missing = {"last_epoch", "_step_count", "multiplied", "multiplier"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict is missing {sorted(missing)}")
        last = state_dict["last_epoch"]
        if isinstance(last, bool) or not isinstance(last, numbers.Integral) or last < 0:
            raise ValueError(f"state_dict['last_epoch'] must be an integer >= 0, got {last!r}")
        mstate = state_dict["multiplier"]
        if mstate is not None and not callable(getattr(self.multiplier, "load_state_dict", None)):
            raise ValueError(
                "state_dict holds a multiplier state but this scheduler's multiplier "
                "cannot load one (it is None or has no load_state_dict)"
            )
        if mstate is not None:
            self.multiplier.load_state_dict(mstate)
        self.last_epoch = int(last)
        self._step_count = int(state_dict["_step_count"])
        multiplied = bool(state_dict["multiplied"]) and self.multiplier is not None
        self._apply(self.last_epoch, multiplied)

    def __repr__(self) -> str:
        extra = "" if self.multiplier is None else f", multiplier={type(self.multiplier).__name__}"
        return f"ScheduledLR({self.schedule!r}, step={self.last_epoch}{extra})"
