r"""The Adam family's update (section 6.3): one kernel on three paths.

* :func:`adam_reference` -- one parameter at a time, written to be read next to the
  equations (section 6.3.1 shows its source);
* :func:`adam_multi_tensor` -- the same arithmetic on lists of tensors
  (``torch._foreach_*``), one kernel launch per operation instead of one per parameter;
* :func:`adam_fused` -- PyTorch's fused kernel, for the updates it computes exactly.

The options cover Adam (``weight_decay`` as an L2 term added to the gradient), AdamW
(``decoupled=True``: :math:`w \leftarrow w(1-\alpha_t\lambda)`), AMSGrad's three variants
(``amsgrad=``, the names of section 6.3.3, :data:`AMSGRAD_VARIANTS`) and Reddi et al.'s
step size :math:`\alpha_t = \alpha/\sqrt t` (``lr_decay="sqrt"``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ._base import bucket_by, on_device, step_value

__all__ = ["AMSGRAD_VARIANTS", "adam_fused", "adam_multi_tensor", "adam_reference"]

AMSGradVariant = Literal["paper", "torch", "corrected"]
LrDecay = Literal["none", "sqrt"]

#: AMSGrad's variants (section 6.3.3), the one vocabulary of the kernels and of
#: :class:`~companion.optim.AMSGrad`: variant -> (the running maximum is taken of the
#: bias-corrected :math:`\hat v` rather than of the raw :math:`v`, bias correction).
#: ``"paper"`` is Reddi et al.'s Algorithm 2, ``"torch"`` PyTorch's ``amsgrad=True``,
#: ``"corrected"`` optax's default.
AMSGRAD_VARIANTS: dict[str, tuple[bool, bool]] = {
    "paper": (False, False),
    "torch": (False, True),
    "corrected": (True, True),
}


def _bias_correction(amsgrad: AMSGradVariant | None, bias_correction: bool | None) -> bool:
    """Whether to correct the bias: the variant's own, or ``bias_correction`` (default True)."""
    if amsgrad is None:
        return True if bias_correction is None else bias_correction
    own = AMSGRAD_VARIANTS[amsgrad][1]
    if bias_correction is not None and bias_correction != own:
        raise ValueError(
            f"amsgrad={amsgrad!r} fixes bias_correction={own}, got bias_correction="
            f"{bias_correction}; leave it out (None)"
        )
    return own


def _is_zero(x: float | Tensor) -> bool:
    """``x == 0`` for a number; a tensor is never treated as zero (reading it would sync)."""
    return not isinstance(x, Tensor) and x == 0


def adam_reference(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float | Tensor = 0.0,
    decoupled: bool = False,
    amsgrad: AMSGradVariant | None = None,
    bias_correction: bool | None = None,
    lr_decay: LrDecay = "none",
    maximize: bool = False,
) -> None:
    r"""One Adam-family step, one parameter at a time (the reference path).

    Updates ``params`` (:math:`w`), ``exp_avgs`` (:math:`m`), ``exp_avg_sqs``
    (:math:`v`), ``max_exp_avg_sqs`` (the running maximum, used when ``amsgrad`` names a
    variant of section 6.3.3) and the 0-d ``state_steps`` (:math:`t`, on the CPU) in
    place. ``bias_correction`` (default: on) switches :math:`\hat m_t = m_t/(1-\beta_1^t)`
    and :math:`\hat v_t = v_t/(1-\beta_2^t)`; an AMSGrad variant fixes it (off for
    ``"paper"``). ``lr`` may be a 0-d tensor on the parameters' device: it is then never
    read on the host. The equations are those of :class:`~companion.optim.Adam`,
    :class:`~companion.optim.AdamW` and :class:`~companion.optim.AMSGrad`.
    """
    correct = _bias_correction(amsgrad, bias_correction)
    for i, w in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        m, v = exp_avgs[i], exp_avg_sqs[i]
        state_steps[i] += 1
        t = step_value(state_steps[i])  # t = 1, 2, ...
        lr_t = lr / t**0.5 if lr_decay == "sqrt" else lr  # α_t = α/√t (Reddi et al.) or α

        if not _is_zero(weight_decay):
            if decoupled:
                w.mul_(1 - lr_t * weight_decay)  # w ← w(1 − α_t λ)              (AdamW)
            else:
                g = g.add(w, alpha=weight_decay)  # g ← g + λw                 (Adam + L2)

        m.lerp_(g, 1 - beta1)  # m_t = β₁ m_{t−1} + (1 − β₁) g_t
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v_t = β₂ v_{t−1} + (1 − β₂) g_t²

        bc1 = 1 - beta1**t if correct else 1.0  # m̂_t = m_t / (1 − β₁ᵗ)
        bc2 = 1 - beta2**t if correct else 1.0  # v̂_t = v_t / (1 − β₂ᵗ)
        v_hat = v
        if amsgrad in ("paper", "torch"):  # max of the raw v, bias-corrected afterwards
            v_hat = torch.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
        elif amsgrad == "corrected":  # max of the bias-corrected v̂ (optax)
            v_hat = torch.maximum(max_exp_avg_sqs[i], v / bc2, out=max_exp_avg_sqs[i])
            bc2 = 1.0

        denom = (v_hat.sqrt() / bc2**0.5).add_(eps)  # √v̂_t + ε
        step_size = lr_t / bc1  # α_t / (1 − β₁ᵗ)
        if isinstance(step_size, Tensor):  # a tensor lr stays on the device: fold it into denom
            w.addcdiv_(m, denom.div_(step_size), value=-1)
        else:
            w.addcdiv_(m, denom, value=-step_size)  # w_t = w_{t−1} − α_t m̂_t / (√v̂_t + ε)


def adam_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float | Tensor = 0.0,
    decoupled: bool = False,
    amsgrad: AMSGradVariant | None = None,
    bias_correction: bool | None = None,
    lr_decay: LrDecay = "none",
    maximize: bool = False,
) -> None:
    """The step of :func:`adam_reference`, on lists of tensors (``torch._foreach_*``).

    Tensors are bucketed by device, dtype and step count, so every bucket shares one
    bias correction; the arithmetic, operation by operation, is the reference path's.
    """
    if not params:
        return
    correct = _bias_correction(amsgrad, bias_correction)
    torch._foreach_add_(state_steps, 1)
    steps = [step_value(s) for s in state_steps]
    for (device, _, t), idx in bucket_by(params, steps).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        m = [exp_avgs[i] for i in idx]
        v = [exp_avg_sqs[i] for i in idx]
        lr_t = on_device(lr, device)
        if lr_decay == "sqrt":
            lr_t = lr_t / t**0.5

        if maximize:
            g = torch._foreach_neg(g)
        if not _is_zero(weight_decay):
            if decoupled:
                torch._foreach_mul_(p, 1 - lr_t * on_device(weight_decay, device))
            elif maximize:  # g is already our own copy
                torch._foreach_add_(g, p, alpha=weight_decay)
            else:
                g = torch._foreach_add(g, p, alpha=weight_decay)

        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, 1 - beta2)
        del g

        bc1 = 1 - beta1**t if correct else 1.0
        bc2 = 1 - beta2**t if correct else 1.0
        v_hat = v
        if amsgrad is not None:
            v_hat = [max_exp_avg_sqs[i] for i in idx]
            if amsgrad == "corrected":
                torch._foreach_maximum_(v_hat, torch._foreach_div(v, bc2))
                bc2 = 1.0
            else:
                torch._foreach_maximum_(v_hat, v)

        denom = torch._foreach_sqrt(v_hat)
        torch._foreach_div_(denom, bc2**0.5)
        torch._foreach_add_(denom, eps)
        step_size = lr_t / bc1
        if isinstance(step_size, Tensor):
            torch._foreach_div_(denom, step_size)
            torch._foreach_addcdiv_(p, m, denom, -1)
        else:
            torch._foreach_addcdiv_(p, m, denom, -step_size)


def fused_reason(
    amsgrad: AMSGradVariant | None, lr_decay: LrDecay, weight_decay: float | Tensor
) -> str | None:
    """``None`` where :func:`adam_fused` computes this update exactly, else why not."""
    if amsgrad not in (None, "torch") or lr_decay != "none":
        return "torch's fused kernel computes only bias-corrected Adam/AdamW/torch-AMSGrad"
    if isinstance(weight_decay, Tensor):
        return "the decay coefficient depends on a tensor initial_lr"
    return None


def adam_fused(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float = 0.0,
    decoupled: bool = False,
    amsgrad: AMSGradVariant | None = None,
    lr_decay: LrDecay = "none",
    maximize: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> None:
    """PyTorch's fused Adam/AdamW kernel (``torch._fused_adam_``/``torch._fused_adamw_``).

    It computes the update of :func:`adam_reference` with bias correction, no lr decay and
    ``amsgrad`` off or ``"torch"`` (see :func:`fused_reason`); the step counters live on
    the parameters' device. With a ``GradScaler`` it unscales the gradients itself and
    skips the update where ``found_inf``.
    """
    reason = fused_reason(amsgrad, lr_decay, weight_decay)
    if reason is not None:
        raise ValueError(f"adam_fused: {reason}")
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
    for (device, _), idx in bucket_by(params).items():
        steps = [state_steps[i] for i in idx]
        scale = grad_scale.to(device, non_blocking=True) if grad_scale is not None else None
        inf = found_inf.to(device, non_blocking=True) if found_inf is not None else None
        torch._foreach_add_(steps, 1)
        kernel(
            [params[i] for i in idx],
            [grads[i] for i in idx],
            [exp_avgs[i] for i in idx],
            [exp_avg_sqs[i] for i in idx],
            [max_exp_avg_sqs[i] for i in idx] if amsgrad else [],
            steps,
            amsgrad=amsgrad is not None,
            lr=on_device(lr, device),
            beta1=beta1,
            beta2=beta2,
            weight_decay=weight_decay,
            eps=eps,
            maximize=maximize,
            grad_scale=scale,
            found_inf=inf,
        )
        if inf is not None:  # a skipped step does not count
            torch._foreach_sub_(steps, [inf] * len(steps))
