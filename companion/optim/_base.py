"""What every companion optimizer shares: checks, the choice of path, the ``torch.optim`` face.

The algorithms live in :mod:`companion.optim.sgd` and :mod:`companion.optim.adam`; this
module holds the part that is the same for all of them -- checking hyperparameters
(through :mod:`companion._validation`) before anything changes, choosing between the
reference (single-tensor), multi-tensor and fused paths, refusing sparse gradients,
running the closure, and keeping ``state_dict``/``load_state_dict`` compatible with
``torch.optim`` while checking a loaded dict before it replaces anything.
"""

from __future__ import annotations

import copy
import numbers
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Hashable, Iterable
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer

from companion._validation import check_choice, check_flag, check_real

from ._saved_state import Slot, check_saved_state

__all__ = ["CompanionOptimizer", "Kernels", "check_lr", "readable", "scalar_dtype", "step_value"]

_FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu", "hpu")

#: Why ``capturable=True`` and ``differentiable=True`` are refused (accepted as False).
_UNSUPPORTED = {
    "capturable": (
        "companion.optim keeps its step counters on the CPU and reads them there, so a step "
        "cannot be captured in a CUDA graph; a tensor lr on the device already gives a step "
        "without host synchronisation. Use torch.optim for CUDA graphs"
    ),
    "differentiable": (
        "companion.optim updates the parameters in place under torch.no_grad(); to "
        "differentiate through the optimizer step use torch.optim with differentiable=True"
    ),
}


# ---------------------------------------------------------------- argument checks
def readable(value: Any, at_step: bool) -> bool:
    """Whether a check may read ``value``: always outside a step, on the CPU inside one.

    Reading a tensor on an accelerator waits for the device, which a training step never
    does; a CPU tensor (or a number) costs nothing to read.
    """
    return not at_step or not isinstance(value, Tensor) or value.device.type == "cpu"


def check_lr(lr: Any, *, at_step: bool = False) -> None:
    r"""``lr`` is a finite real number :math:`\ge 0` or a one-element real tensor.

    A tensor's value is checked too, except inside a step on an accelerator (see
    :func:`readable`), where only its shape and dtype are.
    """
    check_real("lr", lr, low=0, allow_tensor=True, read_tensor=readable(lr, at_step))
    if isinstance(lr, Tensor) and not lr.is_floating_point():  # an update would truncate
        raise TypeError(f"lr must be a float or a floating-point tensor, got a {lr.dtype} tensor")


def check_paths(group: dict[str, Any]) -> None:
    """``foreach``/``fused`` are None or bools, not both True; ``capturable`` and
    ``differentiable`` are accepted as ``False`` (as ``torch.optim`` spells them) and
    refused, with the reason, as ``True``."""
    for name in ("foreach", "fused"):
        check_choice(name, group.get(name), (None, False, True))
    if group.get("foreach") and group.get("fused"):
        raise ValueError("foreach=True and fused=True cannot be used together; choose one")
    for name, reason in _UNSUPPORTED.items():
        if check_flag(name, group.get(name, False)):
            raise ValueError(f"{name}=True is not supported: {reason}")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, (int, float)):
        return float(value)  # a Fraction: torch's in-place operations take no such scalar
    return value


def plain_numbers(group: dict[str, Any]) -> None:
    """A group's numbers as Python numbers, in place: numpy scalars (``lr=np.float32(0.1)``)
    and fractions, alone or in a pair (``betas``; a 1-d array becomes a tuple)."""
    for key, value in group.items():
        if key == "params":
            continue
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = group[key] = tuple(value.tolist())
        if isinstance(value, (tuple, list)):
            plain = tuple(map(_plain, value))
            if any(a is not b for a, b in zip(plain, value, strict=True)):
                group[key] = plain
        else:
            group[key] = _plain(value)


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


# ---------------------------------------------------------------- the three paths
class Kernels(NamedTuple):
    """One family's update on its three paths, all with the same arguments.

    ``reference(*lists, **hyper)`` and ``multi_tensor(*lists, **hyper)``; ``fused`` also
    takes ``grad_scale`` and ``found_inf`` (a ``GradScaler``'s). The first list holds the
    parameters; a kernel may write new tensors into the other lists (e.g. momentum
    buffers created at the first step).
    """

    reference: Callable[..., None]
    multi_tensor: Callable[..., None]
    fused: Callable[..., None]


def on_device(value: Any, device: torch.device) -> Any:
    """A tensor hyperparameter as a 0-d tensor on ``device`` (copied without blocking)."""
    if isinstance(value, Tensor):
        value = value.detach().reshape(())
        if value.device != device:
            value = value.to(device, non_blocking=True)
    return value


def bucket_by(tensors: list[Tensor], keys: list[Any] | None = None) -> dict[Any, list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype[, key]) -- one foreach call per bucket."""
    buckets: dict[Any, list[int]] = {}
    for i, t in enumerate(tensors):
        k = (t.device, t.dtype) if keys is None else (t.device, t.dtype, keys[i])
        buckets.setdefault(k, []).append(i)
    return buckets


def reference_per_device(
    kernel: Callable[..., None], lists: tuple[list[Any], ...], hyper: dict[str, Any]
) -> None:
    """Run the reference kernel once, or once per device when a hyperparameter is a tensor.

    A tensor hyperparameter (lr, weight decay) is moved to each device; what the kernel
    writes into a sub-list (a new momentum buffer) is copied back into ``lists``.
    """
    if not any(isinstance(v, Tensor) for v in hyper.values()):
        kernel(*lists, **hyper)
        return
    for (device, _), idx in bucket_by(lists[0]).items():
        subs = [[xs[i] for i in idx] if xs else xs for xs in lists]
        kernel(*subs, **{k: on_device(v, device) for k, v in hyper.items()})
        for xs, sub in zip(lists, subs, strict=True):
            for j, i in enumerate(idx if xs else ()):
                xs[i] = sub[j]


# ---------------------------------------------------------------- the optimizer face
class CompanionOptimizer(Optimizer, metaclass=ABCMeta):
    """Base class: a ``torch.optim.Optimizer`` whose ``step`` validates, then updates.

    Subclasses set ``kernels`` and ``state_slots`` and implement

    * ``_check_group(group, at_step=...)`` -- raise ``TypeError``/``ValueError`` naming a
      bad hyperparameter;
    * ``_collect(group)`` -- the lists the kernels take (parameters first), or ``None``
      when no parameter has a gradient; ``_hyper(group)`` -- their keyword arguments;
      ``_store(group, lists)`` -- keep what the kernels created (nothing by default);
    * optionally ``_prepare_group(group)`` and ``_fused_supported(group)``.
    """

    kernels: Kernels
    #: The per-parameter state the family keeps (checked by ``load_state_dict``).
    state_slots: ClassVar[dict[str, Slot]]

    @property
    def family(self) -> str:
        """The class name, as error messages show it."""
        return type(self).__name__

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        if not isinstance(params, (Iterable, Tensor)):
            raise TypeError(
                "params must be an iterable of tensors or of param-group dicts, "
                f"got {type(params).__name__}"
            )
        plain_numbers(defaults)
        self._check_options(dict(defaults, params=[]))
        super().__init__(params, defaults)
        if defaults.get("fused"):
            # torch.amp.GradScaler then hands grad_scale/found_inf to the fused kernel
            self._step_supports_amp_scaling = True

    # -- hooks for the subclasses
    @abstractmethod
    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        """Raise ``TypeError``/``ValueError`` naming a bad hyperparameter of ``group``."""

    @abstractmethod
    def _collect(self, group: dict[str, Any]) -> tuple[list[Any], ...] | None:
        """The kernels' lists for this group's parameters with a gradient (state made lazily)."""

    @abstractmethod
    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        """The kernels' keyword arguments for this group."""

    def _store(self, group: dict[str, Any], lists: tuple[list[Any], ...]) -> None:
        """Keep what the kernels wrote into the lists (nothing by default)."""

    def _prepare_group(self, group: dict[str, Any]) -> None:
        """Fill derived keys of a new or loaded group (nothing by default)."""

    def _fused_supported(self, group: dict[str, Any]) -> str | None:
        """``None`` when ``fused=True`` computes this group's update exactly, else the reason."""
        return None

    def _check_options(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        """Every check of one group: paths, hyperparameters, fused support."""
        check_paths(group)
        self._check_group(group, at_step=at_step)
        if group.get("fused"):
            reason = self._fused_supported(group)
            if reason is not None:
                raise ValueError(f"fused=True is not available for {self.family}: {reason}")

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
        plain_numbers(group)
        try:
            self._check_options(group)
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise
        self._prepare_group(group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict`` (ours or ``torch.optim``'s), checked whole before anything changes.

        Every saved group's hyperparameters (with this optimizer's defaults for the keys a
        ``torch.optim`` dict lacks) are checked as the constructor checks them, and so is
        every parameter's saved state: a step counter that is a whole number >= 0, moments
        that are finite floating-point tensors of the parameter's shape (second moments
        >= 0), no entry missing, none for a parameter that the groups do not hold. A
        refused dict leaves the optimizer exactly as it was.

        Raises
        ------
        TypeError, ValueError
            Naming the group and the bad entry.
        """
        saved = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if not isinstance(saved, list) or not isinstance(state_dict.get("state"), dict):
            raise TypeError("state_dict must be a dict with 'state' and 'param_groups' entries")
        if len(saved) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved)} param groups, this optimizer {len(self.param_groups)}"
            )
        owners: dict[Any, Tensor] = {}
        for gi, (own, group) in enumerate(zip(self.param_groups, saved, strict=True)):
            ids = group.get("params") if isinstance(group, dict) else None
            if not isinstance(ids, (list, tuple)) or not all(isinstance(i, Hashable) for i in ids):
                raise TypeError(f"state_dict param group {gi} must hold a list of parameter ids")
            if len(ids) != len(own["params"]):
                raise ValueError(f"state_dict param group {gi} does not match this optimizer's")
            merged = {**self.defaults, **copy.copy(group)}
            plain_numbers(merged)
            try:
                self._check_options(merged)
            except (TypeError, ValueError) as err:
                raise type(err)(f"state_dict param group {gi}: {err}") from None
            owners.update(zip(ids, own["params"], strict=True))
        for key, entry in state_dict["state"].items():
            if key not in owners:
                raise ValueError(f"state_dict state {key!r} belongs to no parameter of its groups")
            check_saved_state(self.state_slots, key, entry, owners[key])
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            plain_numbers(group)

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
        """Everything that can make a step fail is checked here, before any tensor changes.

        A group's hyperparameters are checked again whenever they differ from the last
        ones that passed (a NaN never equals itself, so it is always re-checked), and at
        every step where one of them is a tensor, whose value may change in place.
        """
        passed = self.__dict__.setdefault("_passed", {})
        for gi, group in enumerate(self.param_groups):
            hyper = [
                (k, tuple(v) if isinstance(v, (list, np.ndarray)) else v) for k, v in group.items()
            ]
            del hyper[next(i for i, (k, _) in enumerate(hyper) if k == "params")]
            has_tensor = any(isinstance(v, Tensor) for _, v in hyper)
            if has_tensor or passed.get(gi) != hyper:
                plain_numbers(group)  # e.g. a Fraction set by hand: torch would fail midway
                self._check_options(group, at_step=True)
                passed[gi] = None if has_tensor else hyper
            fused = bool(group.get("fused"))
            if not fused and amp:
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

    def _step_group(
        self, group: dict[str, Any], grad_scale: Tensor | None, found_inf: Tensor | None
    ) -> None:
        """The one choice of path for every family: fused, multi-tensor or reference."""
        lists = self._collect(group)
        if lists is None:
            return
        hyper = self._hyper(group)
        if group.get("fused"):
            self.kernels.fused(*lists, **hyper, grad_scale=grad_scale, found_inf=found_inf)
        elif self._use_foreach(group, lists[0]):
            self.kernels.multi_tensor(*lists, **hyper)
        else:
            reference_per_device(self.kernels.reference, lists, hyper)
        self._store(group, lists)

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
