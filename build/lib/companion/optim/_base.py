"""What every companion optimizer shares: argument checks and the ``torch.optim`` face.

The algorithms live in :mod:`companion.optim.sgd` and :mod:`companion.optim.adam`; this
module holds the part that is the same for all of them -- checking hyperparameters
before anything changes, choosing between the reference (single-tensor), multi-tensor
and fused paths the way ``torch.optim`` does, refusing sparse gradients, running the
closure, and keeping ``state_dict``/``load_state_dict`` compatible with ``torch.optim``.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = [
    "CompanionOptimizer",
    "check_choice",
    "check_lr",
    "check_nonnegative",
    "check_unit_interval",
    "scalar_dtype",
    "step_value",
]

_FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu", "hpu")


# ---------------------------------------------------------------- argument checks
def _is_real_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_lr(lr: float | Tensor, *, check_value: bool = True) -> None:
    r"""Raise ``ValueError`` unless ``lr`` is a finite number :math:`\ge 0` (or a 1-element tensor).

    ``check_value=False`` skips reading a tensor's value (no host synchronisation):
    only its size is checked then.
    """
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(
                f"lr must be a number or a 1-element tensor, got shape {tuple(lr.shape)}"
            )
        if lr.is_complex() or not (
            lr.is_floating_point() or lr.dtype in (torch.int32, torch.int64)
        ):
            raise ValueError(f"lr must be a real tensor, got dtype {lr.dtype}")
        if not check_value:
            return
        value = lr.detach().reshape(()).to(torch.float64).cpu().item()
    elif _is_real_number(lr):
        value = float(lr)
    else:
        raise ValueError(f"lr must be a finite number >= 0 or a 1-element tensor, got {lr!r}")
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"lr must be a finite number >= 0, got {value}")


def check_nonnegative(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number :math:`\\ge 0`."""
    if not _is_real_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_unit_interval(name: str, value: Any, *, closed: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` lies in ``[0, 1)`` (``[0, 1]`` when ``closed``)."""
    upper_ok = (value <= 1.0) if closed else (value < 1.0)
    if not _is_real_number(value) or not (value >= 0.0 and upper_ok):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_flags(foreach: Any, fused: Any) -> None:
    """``foreach`` and ``fused`` are ``None`` or booleans, and not both ``True``."""
    for name, flag in (("foreach", foreach), ("fused", fused)):
        if flag is not None and not isinstance(flag, bool):
            raise ValueError(f"{name} must be None, True or False, got {flag!r}")
    if foreach and fused:
        raise ValueError("foreach=True and fused=True cannot be used together; choose one")


def as_float(name: str, value: Any) -> Any:
    """A 1-element tensor hyperparameter (e.g. a beta) becomes a Python float, at construction."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
        return value.detach().cpu().item()
    return value


# ---------------------------------------------------------------- step counters
def scalar_dtype() -> torch.dtype:
    """The dtype of a non-fused step counter, as in ``torch.optim`` (float64 under a float64 default)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def step_value(step: Tensor) -> float:
    """The value of a step counter, a 0-d tensor.

    Outside the fused path, step counters live on the CPU (as in ``torch.optim``), so this
    read never waits for an accelerator.
    """
    return step.item()


# ---------------------------------------------------------------- the optimizer face
class CompanionOptimizer(Optimizer, metaclass=ABCMeta):
    """Base class: a ``torch.optim.Optimizer`` whose ``step`` validates, then updates.

    Subclasses implement

    * ``_check_group(group)`` -- raise ``ValueError`` on a bad hyperparameter;
    * ``_step_group(group, grad_scale, found_inf)`` -- update one group's parameters;
    * optionally ``_prepare_group(group)`` -- fill group keys when a group is added or loaded.
    """

    @property
    def family(self) -> str:
        """The class name, as error messages show it."""
        return type(self).__name__

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        check_flags(defaults.get("foreach"), defaults.get("fused"))
        super().__init__(params, defaults)
        if defaults.get("fused"):
            # torch.amp.GradScaler then hands grad_scale/found_inf to the fused kernel
            self._step_supports_amp_scaling = True

    # -- hooks for the subclasses
    @abstractmethod
    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        """Raise ``ValueError`` naming a bad hyperparameter of ``group``."""

    @abstractmethod
    def _step_group(
        self, group: dict[str, Any], grad_scale: Tensor | None, found_inf: Tensor | None
    ) -> None:
        """Update the parameters (and state) of one group."""

    def _prepare_group(self, group: dict[str, Any]) -> None:
        """Fill derived keys of a new or loaded group (nothing by default)."""

    def _fused_supported(self, group: dict[str, Any]) -> str | None:
        """``None`` when ``fused=True`` computes this group's update exactly, else the reason."""
        return None

    # -- torch.optim API
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; its hyperparameters are checked before it is accepted.

        Parameters
        ----------
        param_group : dict
            ``{"params": [...], "lr": ..., ...}``; missing options take the constructor's values.
        """
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            check_flags(group.get("foreach"), group.get("fused"))
            self._check_group(group)
            if group.get("fused"):
                reason = self._fused_supported(group)
                if reason is not None:
                    raise ValueError(f"fused=True is not available for {self.family}: {reason}")
        except ValueError:
            self.param_groups.pop()
            raise
        self._prepare_group(group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            # a torch.optim state_dict lacks our options: take them from the constructor
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            self._prepare_group(group)
            for p in group["params"]:
                st = self.state.get(p)
                if not st or "step" not in st:
                    continue
                step = st["step"]
                if not torch.is_tensor(step):
                    step = torch.tensor(float(step), dtype=scalar_dtype())
                if group.get("fused"):
                    step = step.to(device=p.device, dtype=torch.float32)
                elif step.device.type != "cpu":
                    step = step.cpu()  # the reference and multi-tensor paths read it on the host
                st["step"] = step

    def _use_foreach(self, group: dict[str, Any], params: list[Tensor]) -> bool:
        """``foreach=None`` picks the multi-tensor path where torch would (CUDA tensors)."""
        if group.get("foreach") is not None:
            return bool(group["foreach"])
        from torch.optim.optimizer import _default_to_fused_or_foreach

        _, foreach = _default_to_fused_or_foreach(params, False, use_fused=False)
        return foreach

    def _check_before_step(self, amp: bool) -> None:
        """Everything that can make a step fail is checked here, before any tensor changes."""
        for gi, group in enumerate(self.param_groups):
            self._check_group(group, at_step=True)
            fused = bool(group.get("fused"))
            if fused:
                reason = self._fused_supported(group)
                if reason is not None:
                    raise ValueError(f"fused=True is not available for {self.family}: {reason}")
            elif amp:
                raise RuntimeError(
                    f"{self.family}: a GradScaler found the optimizer fused, but param group "
                    f"{gi} is not; use fused=True for every group or for none"
                )
            for pi, p in enumerate(group["params"]):
                g = p.grad
                if g is None:
                    continue
                if g.is_sparse:
                    raise RuntimeError(
                        f"companion.optim.{self.family} does not support sparse gradients "
                        f"(param group {gi}, parameter {pi}); use dense gradients "
                        "(e.g. nn.Embedding(sparse=False)) or torch.optim.SparseAdam"
                    )
                if fused and not (p.is_floating_point() and p.device.type in _FUSED_DEVICES):
                    raise ValueError(
                        f"fused=True needs real floating-point parameters on one of "
                        f"{_FUSED_DEVICES}; param group {gi}, parameter {pi} is "
                        f"{p.dtype} on {p.device.type}"
                    )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (run with gradients enabled).

        Returns
        -------
        The closure's return value, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        self._check_before_step(grad_scale is not None or found_inf is not None)
        for group in self.param_groups:
            self._step_group(group, grad_scale, found_inf)
        return loss


def lr_for(lr: float | Tensor, device: torch.device) -> float | Tensor:
    """A tensor lr as a 0-d tensor on ``device`` (copied without blocking); numbers as is."""
    if isinstance(lr, Tensor):
        lr = lr.detach().reshape(())
        if lr.device != device:
            lr = lr.to(device, non_blocking=True)
    return lr


def bucket_by(tensors: list[Tensor], keys: list[Any] | None = None) -> dict[Any, list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype[, key]) -- one foreach call per bucket."""
    buckets: dict[Any, list[int]] = {}
    for i, t in enumerate(tensors):
        k = (t.device, t.dtype) if keys is None else (t.device, t.dtype, keys[i])
        buckets.setdefault(k, []).append(i)
    return buckets
