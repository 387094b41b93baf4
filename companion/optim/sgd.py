r"""SGD with momentum, dampening, Nesterov and L2 weight decay: one kernel, two paths.

The baseline of the chapter (section 6.1, :math:`w_{t+1} = w_t - \eta_t g_t`), written
like the Adam family: :func:`sgd_reference` to read, :func:`sgd_multi_tensor` to run
fast, and PyTorch's fused kernel where asked for.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from companion._validation import check_flag, check_real

from ._base import CompanionOptimizer, Kernels, bucket_by, check_lr, on_device, readable
from ._saved_state import Slot

__all__ = ["SGD", "sgd_fused", "sgd_multi_tensor", "sgd_reference"]


def _nonzero(x: float | Tensor) -> bool:
    """``x != 0`` for a number; a tensor counts as non-zero (reading it would sync)."""
    return isinstance(x, Tensor) or x != 0


def _add_decay(g: Tensor, w: Tensor, weight_decay: float | Tensor) -> Tensor:
    """``g + λ w`` as a new tensor; a tensor λ (on the device) is never read on the host."""
    if isinstance(weight_decay, Tensor):
        return g.addcmul(w, weight_decay)
    return g.add(w, alpha=weight_decay)


def sgd_reference(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float | Tensor = 0.0,
    maximize: bool = False,
) -> None:
    """One SGD step, one parameter at a time; new momentum buffers are written into the list.

    ``lr`` and ``weight_decay`` may be 0-d tensors on the parameters' device (never read
    on the host).
    """
    for i, w in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        if _nonzero(weight_decay):
            g = _add_decay(g, w, weight_decay)  # g ← g + λw
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = g.detach().clone()  # b_1 = g_1
            else:
                buf.mul_(momentum).add_(g, alpha=1 - dampening)  # b_t = μ b_{t−1} + (1 − τ) g_t
            g = g.add(buf, alpha=momentum) if nesterov else buf  # Nesterov: g_t + μ b_t
        if isinstance(lr, Tensor):
            w.addcmul_(g, lr, value=-1)  # a tensor lr stays on the device
        else:
            w.add_(g, alpha=-lr)  # w_t = w_{t−1} − γ d_t


def sgd_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float | Tensor = 0.0,
    maximize: bool = False,
) -> None:
    """The step of :func:`sgd_reference` on lists of tensors (``torch._foreach_*``)."""
    for (device, _), idx in bucket_by(params).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        if maximize:
            g = torch._foreach_neg(g)
        if isinstance(weight_decay, Tensor):  # λ on the device, never read on the host
            g = torch._foreach_add(g, torch._foreach_mul(p, on_device(weight_decay, device)))
        elif weight_decay != 0:
            if maximize:
                torch._foreach_add_(g, p, alpha=weight_decay)
            else:
                g = torch._foreach_add(g, p, alpha=weight_decay)
        if momentum != 0:
            bufs = [momentum_buffers[i] for i in idx]
            if all(b is not None for b in bufs):
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, g, alpha=1 - dampening)
            else:  # the first step: b_1 = g_1
                for j, i in enumerate(idx):
                    if bufs[j] is None:
                        bufs[j] = momentum_buffers[i] = g[j].detach().clone()
                    else:
                        bufs[j].mul_(momentum).add_(g[j], alpha=1 - dampening)
            if nesterov:
                if maximize or _nonzero(weight_decay):  # g is already our own copy
                    torch._foreach_add_(g, bufs, alpha=momentum)
                else:  # g is still the parameters' .grad: leave it alone
                    g = torch._foreach_add(g, bufs, alpha=momentum)
            else:
                g = bufs
        lr_d = on_device(lr, device)
        if isinstance(lr_d, Tensor):
            torch._foreach_sub_(p, torch._foreach_mul(g, lr_d))
        else:
            torch._foreach_add_(p, g, alpha=-lr_d)


def sgd_fused(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> None:
    """PyTorch's fused SGD kernel: the update of :func:`sgd_reference`.

    With a ``GradScaler`` it unscales the gradients itself and skips the update where
    ``found_inf``. New momentum buffers are written into the list.
    """
    first = momentum != 0 and all(b is None for b in momentum_buffers)
    if first:
        for i, g in enumerate(grads):
            momentum_buffers[i] = torch.empty_like(g)
    elif any(b is None for b in momentum_buffers):
        raise RuntimeError("SGD(fused=True): some parameters lack a momentum buffer")
    for (device, _), idx in bucket_by(params).items():
        torch._fused_sgd_(
            [params[i] for i in idx],
            [grads[i] for i in idx],
            [momentum_buffers[i] for i in idx] if momentum != 0 else [],
            weight_decay=weight_decay,
            momentum=momentum,
            lr=on_device(lr, device),
            dampening=dampening,
            nesterov=nesterov,
            maximize=maximize,
            is_first_step=first,
            grad_scale=grad_scale.to(device) if grad_scale is not None else None,
            found_inf=found_inf.to(device) if found_inf is not None else None,
        )


class SGD(CompanionOptimizer):
    r"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 decay.

    A drop-in replacement for :class:`torch.optim.SGD` (same arguments in the same
    order, same numbers, same ``state_dict``). With :math:`\gamma` the learning rate:

    .. math::

        \begin{aligned}
        g_t &= \nabla f_t(w_{t-1}) + \lambda\,w_{t-1} \\
        b_t &= \mu\, b_{t-1} + (1-\tau)\, g_t \quad (b_1 = g_1) \\
        d_t &= g_t + \mu\, b_t \ \text{(Nesterov)} \quad\text{or}\quad d_t = b_t \\
        w_t &= w_{t-1} - \gamma\, d_t
        \end{aligned}

    and :math:`d_t = g_t` without momentum: the plain step
    :math:`w_{t+1} = w_t - \eta_t g_t` of sections 6.1--6.2.

    Parameters
    ----------
    params : iterable
        Parameters, named parameters or param-group dicts.
    lr : float or Tensor
        :math:`\gamma`, a finite number :math:`\ge 0` or a 1-element tensor.
    momentum : float
        :math:`\mu \ge 0`.
    dampening : float
        :math:`\tau \in [0, 1]`.
    weight_decay : float or Tensor
        :math:`\lambda \ge 0`, an L2 penalty added to the gradient; a one-element tensor
        as in ``torch.optim.SGD`` (on the CPU it is read as a number, giving torch's
        numbers exactly; on an accelerator it is applied on the device, never read on the
        host, and the last bit may round differently from torch's, which reads it).
    nesterov : bool
        Nesterov momentum; needs :math:`\mu > 0` and :math:`\tau = 0`.
    maximize : bool
        Maximize the objective.
    foreach : bool, optional
        Multi-tensor path (``True``), reference path (``False``) or torch's choice (``None``).
    fused : bool, optional
        PyTorch's fused SGD kernel (with a number ``weight_decay``).
    differentiable : bool
        Accepted as ``False`` only, as ``torch.optim.SGD`` spells it; ``True`` raises
        ``ValueError`` with the reason (the update is in place, under ``no_grad``).

    Examples
    --------
    >>> import torch
    >>> from companion.optim import SGD
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    >>> opt = SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([1.0, 1.0])
    ...     opt.step()
    >>> w.detach()                     # 0.1·1 + 0.1·(0.9 + 1)
    tensor([0.7100, 1.7100])
    """

    kernels = Kernels(sgd_reference, sgd_multi_tensor, sgd_fused)
    state_slots = {"momentum_buffer": Slot(required=False, nonnegative=False, nullable=True)}

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float | Tensor = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        check_lr(group["lr"], at_step=at_step)
        momentum = check_real("momentum", group["momentum"], low=0)
        dampening = check_real("dampening", group["dampening"], low=0, high=1)
        wd = group["weight_decay"]
        check_real("weight_decay", wd, low=0, allow_tensor=True, read_tensor=readable(wd, at_step))
        nesterov = check_flag("nesterov", group["nesterov"])
        check_flag("maximize", group["maximize"])
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _fused_supported(self, group: dict[str, Any]) -> str | None:
        if isinstance(group["weight_decay"], Tensor):
            return "torch's fused SGD kernel takes weight_decay as a number, not a tensor"
        return None

    def _collect(self, group: dict[str, Any]) -> tuple[list[Any], ...] | None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return None
        grads = [p.grad for p in params]
        bufs = [self.state[p].get("momentum_buffer") for p in params]
        return params, grads, bufs if group["momentum"] != 0 else []

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        wd = group["weight_decay"]
        if isinstance(wd, Tensor) and wd.device.type == "cpu":
            wd = wd.item()  # free on the CPU, and torch's numbers exactly
        return dict(
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            weight_decay=wd,
            maximize=group["maximize"],
        )

    def _store(self, group: dict[str, Any], lists: tuple[list[Any], ...]) -> None:
        params, _, bufs = lists
        for p, b in zip(params, bufs, strict=False):
            self.state[p]["momentum_buffer"] = b
