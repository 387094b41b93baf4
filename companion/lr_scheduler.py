r"""Drive any torch optimizer's learning rate from a companion schedule (sections 6.2, 6.5).

:class:`ScheduledLR` is a :class:`torch.optim.lr_scheduler.LRScheduler`. At step
:math:`t` (0-based: the learning rate of the :math:`t`-th update) it sets every
parameter group's learning rate to

.. math::

    \eta^{(g)}_t = s(t)\,\frac{\alpha^{(g)}}{\alpha}\, \rho,

where :math:`s` is the schedule, :math:`\alpha^{(g)}` the group's initial learning
rate, :math:`\alpha` = ``optimizer.defaults["lr"]`` and :math:`\rho` the current value
of an optional stateful multiplier such as :class:`companion.river.River` (section 6.5;
in its default loop :math:`\rho = \rho_{t-2}`). The
schedule is a closed form, so the scheduler's only state is the step count (plus
the multiplier's state): a reloaded scheduler continues exactly.

The training loop (the learning rate of step :math:`t` never sees batch :math:`t`)::

    losses = loss_fn(model(x), y, reduction="none")
    losses.mean().backward()
    optimizer.step(); optimizer.zero_grad()
    river.observe(losses.detach())      # after the step
    scheduler.step()                    # sets the next lr = s(t+1) * rho
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from companion._validation import MAX_STEP, check_flag, check_integer, check_real, is_real_scalar
from companion.optim._base import CompanionOptimizer
from companion.schedules import Schedule

__all__ = ["ScheduledLR"]

#: The two-learning-rates check: a factor between the optimizer's lr and the schedule's
#: peak beyond which construction warns (see :meth:`ScheduledLR._warn_if_two_rates`).
RATE_MISMATCH_FACTOR = 10.0


#: Steps of a :class:`companion.schedules.Schedule` that :class:`ScheduledLR` evaluates at
#: once: one vectorised call costs about what one step's value does, and its values are
#: bit for bit those of ``schedule(t)`` (the scalar path runs the same array code).
BLOCK_STEPS = 256


def _schedule_value(schedule: Callable[[int], Any], t: int) -> float:
    """``schedule(t)`` as a host float, refused unless a finite real number >= 0."""
    value = schedule(t)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return _checked(value, t)


def _checked(value: Any, t: int) -> float:
    if type(value) is float and math.isfinite(value) and value >= 0:
        return value
    return float(check_real(f"the schedule's value at step t={t}", value, low=0, allow_tensor=True))


def _check_writable(lr: Any, i: int) -> None:
    """A group's lr that ScheduledLR may overwrite: a tensor must hold a float and need no
    gradient (``fill_`` would truncate an integer one, or fail on a leaf that needs one)."""
    if isinstance(lr, Tensor) and (not lr.is_floating_point() or lr.requires_grad):
        raise TypeError(
            f"param_groups[{i}]'s lr must be a number or a floating-point tensor without "
            f"requires_grad, got a {lr.dtype} tensor (requires_grad={lr.requires_grad})"
        )


class _ScheduleValues:
    """``schedule(t)`` as checked host floats; a companion schedule's a block at a time.

    Any other callable is called at each step (it need not take arrays, nor be pure).
    """

    __slots__ = ("schedule", "start", "values")

    def __init__(self, schedule: Callable[[int], Any]) -> None:
        self.schedule = schedule
        self.start, self.values = 0, []

    def __call__(self, t: int) -> float:
        i = t - self.start
        if not 0 <= i < len(self.values):
            if not isinstance(self.schedule, Schedule):
                return _schedule_value(self.schedule, t)
            steps = np.arange(t, min(t + BLOCK_STEPS, MAX_STEP + 1), dtype=np.int64)
            try:
                values = self.schedule(steps).tolist()
            except Exception:  # e.g. a subclass that refuses a later step: one at a time
                return _schedule_value(self.schedule, t)
            self.start, self.values, i = t, values, 0
        return _checked(self.values[i], t)


class ScheduledLR(LRScheduler):
    r"""An ``LRScheduler`` that sets each group's lr to ``s(t) × ratio × multiplier``.

    Right after construction every group's learning rate is :math:`s(0)\cdot r_g`
    with :math:`r_g = \alpha^{(g)}/\alpha` (the group's ``initial_lr`` over
    ``optimizer.defaults["lr"]``), so a group created with half the base learning
    rate follows half the schedule. After the :math:`k`-th call of :meth:`step` it is
    :math:`s(k)\cdot r_g\cdot \rho` with :math:`\rho` the multiplier's current value.

    The schedule's values *are* the learning rate; the optimizer's ``lr`` only sets the
    ratios between groups. A group added with ``optimizer.add_param_group`` after
    construction takes its ratio from its own ``lr`` (recorded as its ``initial_lr``)
    and follows the schedule from the next :meth:`step` on.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any torch optimizer (``torch.optim`` or ``companion.optim``); its
        ``defaults["lr"]`` must be a finite number > 0.
    schedule : callable
        ``schedule(t) -> float`` for an int ``t >= 0``, e.g. a
        :mod:`companion.schedules` schedule; every value must be a finite number
        :math:`\ge 0`.
    multiplier : object, optional
        Anything with a ``multiplier`` attribute giving a float or a 0-d tensor, and
        optionally ``state_dict()`` / ``load_state_dict()`` (e.g. a
        :class:`companion.river.River`). Where it also has ``multiplier_float()``, that
        is called first: a float (the value, where reading it is free) is used instead of
        ``multiplier``, ``None`` falls back to it.

    Warns
    -----
    UserWarning
        When the optimizer's ``lr`` :math:`\alpha` and the schedule's peak
        :math:`\eta_{\text{peak}}` (its ``peak_lr`` attribute where it has one, else its
        value at step 0, whichever is larger) differ by more than a factor of
        :data:`RATE_MISMATCH_FACTOR` (10) either way, unless :math:`\alpha = 1` (the
        convention where group lrs are pure ratios) or the schedule starts and peaks at 0.
        ``AdamW(lr=1e-3)`` with ``cosine(peak_lr=0.1)`` trains at 0.1, not 1e-3: pass the
        schedule's peak as ``lr``.

    Raises
    ------
    ValueError
        From :meth:`step` (and at construction, and in :meth:`load_state_dict`) when the
        schedule's value, or a multiplier read on the host, is NaN, infinite or negative;
        the message names the step, and the learning rates and the step count are left
        as they were.

    Notes
    -----
    What is checked where: the schedule's value is a host float and is always checked;
    a float multiplier, and a tensor multiplier on the CPU, are read (which costs
    nothing) and checked; a tensor multiplier on an accelerator is *not* read -- that
    would make every step wait for the device -- so its value reaches the optimizer
    unchecked (:class:`companion.river.River` clips its own multiplier to a finite range).

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

    A :class:`companion.schedules.Schedule` is evaluated :data:`BLOCK_STEPS` (256)
    steps at a time, in one vectorised call whose values are bit for bit those of
    ``schedule(t)``; a step then costs about what torch's own schedulers' does (see
    ``python -m companion.benchmarks.schedules``). Any other callable is called at
    each step.

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
            raise TypeError(f"optimizer must be a torch Optimizer, got {type(optimizer).__name__}")
        if not callable(schedule):
            raise TypeError(f"schedule must be callable as schedule(step), got {schedule!r}")
        if multiplier is not None and not hasattr(multiplier, "multiplier"):
            raise TypeError(
                "multiplier must have a 'multiplier' attribute (a float or a 0-d tensor), "
                f"got {type(multiplier).__name__}"
            )
        if "lr" not in optimizer.defaults:
            raise ValueError("optimizer.defaults must contain 'lr' (the base learning rate)")
        for i, group in enumerate(optimizer.param_groups):
            _check_writable(group["lr"], i)
        self._base = float(
            check_real(
                'optimizer.defaults["lr"]',
                optimizer.defaults["lr"],
                low=0,
                low_open=True,
                allow_tensor=True,
            )
        )
        ratios = [self._ratio(group, i) for i, group in enumerate(optimizer.param_groups)]
        first = _schedule_value(schedule, 0)
        self._warn_if_two_rates(schedule, first)

        self.schedule = schedule
        self._values_of = _ScheduleValues(schedule)
        self.multiplier = multiplier
        self._ratios = ratios
        self._multiplied = False
        self._constructing = True
        recorded = [("initial_lr" in group) for group in optimizer.param_groups]
        try:
            super().__init__(optimizer)  # records initial_lr, then calls self.step() once
        except BaseException:
            for group, had in zip(optimizer.param_groups, recorded, strict=False):
                if not had:
                    group.pop("initial_lr", None)  # the optimizer as it was
            raise
        finally:
            self._constructing = False

    def _ratio(self, group: dict[str, Any], i: int) -> float:
        """The group's initial lr over the base lr (read once, when the group is first seen)."""
        initial = check_real(
            f"param_groups[{i}]'s initial lr",
            group.get("initial_lr", group["lr"]),
            low=0,
            allow_tensor=True,
        )
        return float(initial) / self._base

    def _warn_if_two_rates(self, schedule: Callable[[int], float], first: float) -> None:
        """The two-learning-rates trap (the rule is in the class docstring, *Warns*)."""
        peak = getattr(schedule, "peak_lr", None)
        peak = max(first, float(peak) if is_real_scalar(peak) and math.isfinite(peak) else 0.0)
        base = self._base
        if base == 1.0 or peak == 0.0:
            return
        if max(peak / base, base / peak) > RATE_MISMATCH_FACTOR:
            warnings.warn(
                f"ScheduledLR: the optimizer's lr ({base:g}) and the schedule's peak "
                f"({peak:g}) differ by a factor of {max(peak / base, base / peak):.3g}. The "
                "schedule's values are the learning rate (the optimizer's lr only sets the "
                f"ratios between groups), so this run trains at up to {peak:g}. Pass the "
                "schedule's peak as the optimizer's lr (or lr=1.0 with per-group ratios).",
                UserWarning,
                stacklevel=3,
            )

    # -------------------------------------------------------------------- lr values

    def _factor(self, t: int) -> tuple[float | Tensor | None, float | None]:
        """The multiplier's value and, where reading it is free, that value as a float.

        What is read is checked (see Notes): a number, or a tensor on the CPU.
        """
        if self.multiplier is None:
            return None, None
        read = getattr(self.multiplier, "multiplier_float", None)
        m = read() if callable(read) else None
        if m is None:
            m = self.multiplier.multiplier
        if type(m) is float and math.isfinite(m) and m >= 0:  # e.g. a River on the CPU
            return m, m
        name = f"the multiplier at step t={t}"
        if not isinstance(m, Tensor):
            m = check_real(name, m, low=0)
            return m, m
        m = m.detach()
        if m.device.type != "cpu":
            return m, None  # not read: that would wait for the device
        check_real(name, m, low=0, allow_tensor=True, read_tensor=False)  # shape and dtype
        value = float(m)
        if not (math.isfinite(value) and value >= 0):
            check_real(name, m, low=0, allow_tensor=True)  # raises, showing the tensor
        return m, value

    def _values(self, t: int, multiplied: bool) -> tuple[list[float | Tensor], list[float]]:
        """The learning rate of every group at step ``t`` and the groups' ratios, checked.

        Nothing is written: a refused value leaves everything as it was.
        """
        if self._values_of.schedule is not self.schedule:  # the attribute was reassigned
            self._values_of = _ScheduleValues(self.schedule)
        s = self._values_of(t)
        m, m_float = self._factor(t) if multiplied else (None, None)
        groups = self.optimizer.param_groups
        ratios = self._ratios + [
            self._ratio(g, i) for i, g in enumerate(groups) if i >= len(self._ratios)
        ]
        out: list[float | Tensor] = []
        for group, ratio in zip(groups, ratios, strict=True):
            base = s * ratio
            if m is None:
                out.append(base)
            elif not isinstance(m, Tensor):
                out.append(base * m)
            elif isinstance(group["lr"], Tensor) or self._writes_tensor_lr(m):
                out.append(m * base)
            else:
                if m_float is None:  # read once; waits for the device: use a tensor lr
                    m_float = float(m)
                out.append(base * m_float)
        return out, ratios

    def _writes_tensor_lr(self, m: Tensor) -> bool:
        """Whether a float lr becomes a device tensor (companion optimizers, accelerators)."""
        return m.device.type != "cpu" and isinstance(self.optimizer, CompanionOptimizer)

    def _apply(self, t: int, multiplied: bool) -> None:
        values, ratios = self._values(t, multiplied)
        groups = self.optimizer.param_groups
        added = groups[len(self._ratios) :]  # groups added after construction
        for i, group in enumerate(added, len(self._ratios)):
            _check_writable(group["lr"], i)  # all checked before any is recorded
        for group in added:
            lr = group["lr"]
            group.setdefault("initial_lr", lr.clone() if isinstance(lr, Tensor) else lr)
        self._ratios = ratios
        for group, value in zip(groups, values, strict=True):
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
            g["lr"].clone() if isinstance(g["lr"], Tensor) else g["lr"] for g in groups
        ]

    def get_last_lr(self) -> list[float | Tensor]:
        """The learning rates set at the last step (copies: editing them changes nothing)."""
        return [lr.clone() if isinstance(lr, Tensor) else lr for lr in self._last_lr]

    def get_lr(self) -> list[float | Tensor]:
        """The learning rates of the current step (``last_epoch``), recomputed."""
        return self._values(self.last_epoch, self._multiplied)[0]

    def step(self, epoch: int | None = None) -> None:
        """Advance to the next step (or jump to ``epoch``) and set the learning rates.

        Parameters
        ----------
        epoch : int, optional
            Jump to this step instead of advancing by one (>= 0).

        Raises
        ------
        ValueError
            The schedule's value (or a multiplier read on the host) at the new step is
            not a finite number >= 0; nothing changes, the step count included.
        """
        if epoch is None:
            t = self.last_epoch + 1
            if t > MAX_STEP:
                raise ValueError(f"ScheduledLR is at step {MAX_STEP}, the last a schedule takes")
        else:
            t = check_integer("epoch", epoch, low=0, high=MAX_STEP)
        initial = self._constructing  # the base class's own first step: no multiplier yet
        self._apply(t, multiplied=not initial and self.multiplier is not None)
        self._step_count += 1
        self.last_epoch = t

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
        """Restore the step count (and the multiplier) and set the learning rates for it.

        The whole dict is checked first -- the counters, the flag, the schedule's value
        at the saved step, and the multiplier's state by the multiplier itself -- and a
        refused dict leaves the scheduler, its multiplier and the learning rates as they
        were.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = {"last_epoch", "_step_count", "multiplied", "multiplier"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict is missing {sorted(missing)}")
        last = check_integer(
            "state_dict['last_epoch']", state_dict["last_epoch"], low=0, high=MAX_STEP
        )
        count = check_integer("state_dict['_step_count']", state_dict["_step_count"], low=0)
        multiplied = check_flag("state_dict['multiplied']", state_dict["multiplied"])
        mstate = state_dict["multiplier"]
        if mstate is not None and not callable(getattr(self.multiplier, "load_state_dict", None)):
            raise ValueError(
                "state_dict holds a multiplier state but this scheduler's multiplier "
                "cannot load one (it is None or has no load_state_dict)"
            )
        _schedule_value(self.schedule, last)
        previous = copy.deepcopy(self.multiplier.state_dict()) if mstate is not None else None
        if mstate is not None:
            self.multiplier.load_state_dict(mstate)  # checks its own state first
        try:
            self._apply(last, multiplied and self.multiplier is not None)
        except (TypeError, ValueError):
            if previous is not None:
                self.multiplier.load_state_dict(previous)
            raise
        self.last_epoch = last
        self._step_count = count

    def __repr__(self) -> str:
        extra = "" if self.multiplier is None else f", multiplier={type(self.multiplier).__name__}"
        return f"ScheduledLR({self.schedule!r}, step={self.last_epoch}{extra})"
