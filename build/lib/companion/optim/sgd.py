r"""SGD with momentum, dampening, Nesterov and L2 weight decay: one kernel, two paths.

The baseline of the chapter (section 6.1, :math:`w_{t+1} = w_t - \eta_t g_t`), written
like the Adam family: :func:`sgd_reference` to read, :func:`sgd_multi_tensor` to run
fast, and PyTorch's fused kernel where asked for.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import (
    CompanionOptimizer,
    bucket_by,
    check_choice,
    check_lr,
    check_nonnegative,
    check_unit_interval,
    lr_for,
)

__all__ = ["SGD", "sgd_multi_tensor", "sgd_reference"]


def sgd_reference(
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
) -> None:
    """One SGD step, one parameter at a time; new momentum buffers are written into the list."""
    for i, theta in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        if weight_decay != 0:
            g = g.add(theta, alpha=weight_decay)  # g ← g + λθ
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = g.detach().clone()  # b_1 = g_1
            else:
                buf.mul_(momentum).add_(g, alpha=1 - dampening)  # b_t = μ b_{t−1} + (1 − τ) g_t
            g = g.add(buf, alpha=momentum) if nesterov else buf  # Nesterov: g_t + μ b_t
        if isinstance(lr, Tensor):
            theta.addcmul_(g, lr, value=-1)  # a tensor lr stays on the device
        else:
            theta.add_(g, alpha=-lr)  # θ_t = θ_{t−1} − γ g_t


def sgd_multi_tensor(
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
) -> None:
    """The step of :func:`sgd_reference` on lists of tensors (``torch._foreach_*``)."""
    for (device, _), idx in bucket_by(params).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        if maximize:
            g = torch._foreach_neg(g)
        if weight_decay != 0:
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
                if maximize or weight_decay != 0:  # g is already our own copy
                    torch._foreach_add_(g, bufs, alpha=momentum)
                else:  # g is still the parameters' .grad: leave it alone
                    g = torch._foreach_add(g, bufs, alpha=momentum)
            else:
                g = bufs
        lr_d = lr_for(lr, device)
        if isinstance(lr_d, Tensor):
            torch._foreach_sub_(p, torch._foreach_mul(g, lr_d))
        else:
            torch._foreach_add_(p, g, alpha=-lr_d)


class SGD(CompanionOptimizer):
    r"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 decay.

    A drop-in replacement for :class:`torch.optim.SGD` (same arguments in the same
    order, same numbers, same ``state_dict``). With :math:`\gamma` the learning rate:

    .. math::

        \begin{aligned}
        g_t &= \nabla f_t(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        b_t &= \mu\, b_{t-1} + (1-\tau)\, g_t \quad (b_1 = g_1) \\
        d_t &= g_t + \mu\, b_t \ \text{(Nesterov)} \quad\text{or}\quad d_t = b_t \\
        \theta_t &= \theta_{t-1} - \gamma\, d_t
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
    weight_decay : float
        :math:`\lambda \ge 0`, an L2 penalty added to the gradient.
    nesterov : bool
        Nesterov momentum; needs :math:`\mu > 0` and :math:`\tau = 0`.
    maximize : bool
        Maximize the objective.
    foreach : bool, optional
        Multi-tensor path (``True``), reference path (``False``) or torch's choice (``None``).
    fused : bool, optional
        PyTorch's fused SGD kernel.

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

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
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
            fused=fused,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        check_lr(group["lr"], check_value=not at_step)
        check_nonnegative("momentum", group["momentum"])
        check_unit_interval("dampening", group["dampening"], closed=True)
        check_nonnegative("weight_decay", group["weight_decay"])
        check_choice("nesterov", group["nesterov"], (False, True))
        check_choice("maximize", group["maximize"], (False, True))
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _step_group(
        self, group: dict[str, Any], grad_scale: Tensor | None, found_inf: Tensor | None
    ) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        use_momentum = group["momentum"] != 0
        bufs = [self.state[p].get("momentum_buffer") for p in params] if use_momentum else []
        hyper = {k: group[k] for k in ("momentum", "dampening", "nesterov", "weight_decay")}
        if group["fused"]:
            self._fused(params, grads, bufs, group, grad_scale, found_inf)
        elif self._use_foreach(group, params):
            sgd_multi_tensor(
                params, grads, bufs, lr=group["lr"], maximize=group["maximize"], **hyper
            )
        else:
            for (device, _), idx in bucket_by(params).items():
                sub_bufs = [bufs[i] for i in idx] if use_momentum else []
                sgd_reference(
                    [params[i] for i in idx],
                    [grads[i] for i in idx],
                    sub_bufs,
                    lr=lr_for(group["lr"], device),
                    maximize=group["maximize"],
                    **hyper,
                )
                for j, i in enumerate(idx):
                    if use_momentum:
                        bufs[i] = sub_bufs[j]
        if use_momentum:
            for p, b in zip(params, bufs, strict=True):
                self.state[p]["momentum_buffer"] = b

    @staticmethod
    def _fused(
        params: list[Tensor],
        grads: list[Tensor],
        bufs: list[Tensor | None],
        group: dict[str, Any],
        grad_scale: Tensor | None,
        found_inf: Tensor | None,
    ) -> None:
        """PyTorch's fused SGD kernel (the same update; it unscales and skips for GradScaler)."""
        first = bool(bufs) and all(b is None for b in bufs)
        if first:
            for i, g in enumerate(grads):
                bufs[i] = torch.empty_like(g)
        elif any(b is None for b in bufs):
            raise RuntimeError("SGD(fused=True): some parameters lack a momentum buffer")
        for (device, _), idx in bucket_by(params).items():
            torch._fused_sgd_(
                [params[i] for i in idx],
                [grads[i] for i in idx],
                [bufs[i] for i in idx] if bufs else [],
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                lr=lr_for(group["lr"], device),
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                maximize=group["maximize"],
                is_first_step=first,
                grad_scale=grad_scale.to(device) if grad_scale is not None else None,
                found_inf=found_inf.to(device) if found_inf is not None else None,
            )
