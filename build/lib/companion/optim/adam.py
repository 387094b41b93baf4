r"""The Adam family (section 6.3): one update kernel, every variant an option of it.

The kernel has two paths over the same semantics,

* :func:`adam_reference` -- one parameter at a time, written to be read next to the
  equations (the book shows its source);
* :func:`adam_multi_tensor` -- the same arithmetic on lists of tensors
  (``torch._foreach_*``), one kernel launch per operation instead of one per parameter;

and, where PyTorch's fused kernel computes exactly the same update, :func:`adam_fused`
calls it. The options cover

* Adam (Kingma & Ba): ``weight_decay`` as an L2 term added to the gradient;
* AdamW (Loshchilov & Hutter): ``decoupled=True``, :math:`\theta \leftarrow \theta(1-\gamma\lambda)`;
* AMSGrad: ``amsgrad="raw"`` keeps the running maximum of the raw :math:`v` (PyTorch's
  ``amsgrad=True``; Reddi et al.'s Algorithm 2 together with ``bias_correction=False``),
  ``amsgrad="corrected"`` the maximum of the bias-corrected :math:`\hat v` (optax's default);
* ``lr_decay="sqrt"``: :math:`\gamma_t = \gamma/\sqrt{t}` as in Reddi et al.'s analysis.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Literal

import torch
from torch import Tensor

from ._base import (
    CompanionOptimizer,
    as_float,
    bucket_by,
    check_choice,
    check_lr,
    check_nonnegative,
    check_unit_interval,
    lr_for,
    scalar_dtype,
    step_value,
)

__all__ = ["Adam", "AdamW", "adam_fused", "adam_multi_tensor", "adam_reference"]

AmsgradMode = Literal["raw", "corrected"] | None
LrDecay = Literal["none", "sqrt"]


def _is_zero(x: float | Tensor) -> bool:
    """``x == 0`` for a number; a tensor is never treated as zero (reading it would sync)."""
    return not isinstance(x, Tensor) and x == 0


# ------------------------------------------------------------------------- the kernel
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
    amsgrad: AmsgradMode = None,
    bias_correction: bool = True,
    lr_decay: LrDecay = "none",
    maximize: bool = False,
) -> None:
    r"""One Adam-family step, one parameter at a time (the reference path).

    Updates ``params``, ``exp_avgs`` (:math:`m`), ``exp_avg_sqs`` (:math:`v`),
    ``max_exp_avg_sqs`` (:math:`\hat v_{\max}`, used when ``amsgrad`` is set) and the
    0-d ``state_steps`` (:math:`t`, on the CPU) in place. ``lr`` may be a 0-d tensor on
    the parameters' device: it is then never read on the host. The equations are those
    of :class:`Adam`, :class:`AdamW` and :class:`~companion.optim.AMSGrad`.
    """
    for i, theta in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        m, v = exp_avgs[i], exp_avg_sqs[i]
        state_steps[i] += 1
        t = step_value(state_steps[i])  # t = 1, 2, ...
        lr_t = lr / t**0.5 if lr_decay == "sqrt" else lr  # γ_t = α/√t (Reddi et al.) or γ

        if not _is_zero(weight_decay):
            if decoupled:
                theta.mul_(1 - lr_t * weight_decay)  # θ ← θ(1 − γλ)           (AdamW)
            else:
                g = g.add(theta, alpha=weight_decay)  # g ← g + λθ             (Adam + L2)

        m.lerp_(g, 1 - beta1)  # m_t = β₁ m_{t−1} + (1 − β₁) g_t
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v_t = β₂ v_{t−1} + (1 − β₂) g_t²

        bc1 = 1 - beta1**t if bias_correction else 1.0  # m̂_t = m_t / (1 − β₁ᵗ)
        bc2 = 1 - beta2**t if bias_correction else 1.0  # v̂_t = v_t / (1 − β₂ᵗ)
        v_hat = v
        if amsgrad == "raw":  # max of the raw v, bias-corrected afterwards (PyTorch, Reddi)
            v_hat = torch.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
        elif amsgrad == "corrected":  # max of the bias-corrected v̂ (optax)
            v_hat = torch.maximum(max_exp_avg_sqs[i], v / bc2, out=max_exp_avg_sqs[i])
            bc2 = 1.0

        denom = (v_hat.sqrt() / bc2**0.5).add_(eps)  # √v̂_t + ε
        step_size = lr_t / bc1  # γ_t / (1 − β₁ᵗ)
        if isinstance(step_size, Tensor):  # a tensor lr stays on the device: fold it into denom
            theta.addcdiv_(m, denom.div_(step_size), value=-1)
        else:
            theta.addcdiv_(m, denom, value=-step_size)  # θ_t = θ_{t−1} − γ_t m̂_t / (√v̂_t + ε)


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
    amsgrad: AmsgradMode = None,
    bias_correction: bool = True,
    lr_decay: LrDecay = "none",
    maximize: bool = False,
) -> None:
    """The step of :func:`adam_reference`, on lists of tensors (``torch._foreach_*``).

    Tensors are bucketed by device, dtype and step count, so every bucket shares one
    bias correction; the arithmetic, operation by operation, is the reference path's.
    """
    if not params:
        return
    torch._foreach_add_(state_steps, 1)
    steps = [step_value(s) for s in state_steps]
    for (device, _, t), idx in bucket_by(params, steps).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        m = [exp_avgs[i] for i in idx]
        v = [exp_avg_sqs[i] for i in idx]
        lr_t = lr_for(lr, device)
        if lr_decay == "sqrt":
            lr_t = lr_t / t**0.5

        if maximize:
            g = torch._foreach_neg(g)
        if not _is_zero(weight_decay):
            if decoupled:
                torch._foreach_mul_(p, 1 - lr_t * lr_for(weight_decay, device))
            elif maximize:  # g is already our own copy
                torch._foreach_add_(g, p, alpha=weight_decay)
            else:
                g = torch._foreach_add(g, p, alpha=weight_decay)

        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, 1 - beta2)
        del g

        bc1 = 1 - beta1**t if bias_correction else 1.0
        bc2 = 1 - beta2**t if bias_correction else 1.0
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
    amsgrad: bool = False,
    maximize: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> None:
    """PyTorch's fused Adam/AdamW kernel (``torch._fused_adam_``/``torch._fused_adamw_``).

    It computes the update of :func:`adam_reference` with bias correction, no lr decay and
    ``amsgrad`` in {off, "raw"}; the step counters live on the parameters' device. With a
    ``GradScaler`` it unscales the gradients itself and skips the update where ``found_inf``.
    """
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
            amsgrad=amsgrad,
            lr=lr_for(lr, device),
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


# ---------------------------------------------------------------------- the optimizers
class _AdamFamily(CompanionOptimizer):
    """What Adam, AdamW and AMSGrad share: state, checks, path choice. Not public."""

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        defaults["betas"] = tuple(
            as_float(f"betas[{i}]", b) for i, b in enumerate(defaults["betas"])
        )
        super().__init__(params, defaults)

    @abstractmethod
    def _kernel_options(self, group: dict[str, Any]) -> dict[str, Any]:
        """weight_decay, decoupled, amsgrad, bias_correction, lr_decay of the group."""

    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        check_lr(group["lr"], check_value=not at_step)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_unit_interval("betas[0]", betas[0])
        check_unit_interval("betas[1]", betas[1])
        check_nonnegative("eps", group["eps"])
        check_nonnegative("weight_decay", group["weight_decay"])
        check_choice("maximize", group["maximize"], (False, True))

    def _fused_supported(self, group: dict[str, Any]) -> str | None:
        o = self._kernel_options(group)
        if not o["bias_correction"] or o["amsgrad"] == "corrected" or o["lr_decay"] != "none":
            return "torch's fused kernel computes only bias-corrected Adam/AdamW/torch-AMSGrad"
        if isinstance(o["weight_decay"], Tensor):
            return "the decay coefficient depends on a tensor initial_lr"
        return None

    def _step_group(
        self, group: dict[str, Any], grad_scale: Tensor | None, found_inf: Tensor | None
    ) -> None:
        opts = self._kernel_options(group)
        fused = bool(group["fused"])
        params: list[Tensor] = []
        grads: list[Tensor] = []
        exp_avgs: list[Tensor] = []
        exp_avg_sqs: list[Tensor] = []
        max_exp_avg_sqs: list[Tensor] = []
        steps: list[Tensor] = []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if len(state) == 0:
                state["step"] = (
                    torch.zeros((), dtype=torch.float32, device=p.device)
                    if fused
                    else torch.tensor(0.0, dtype=scalar_dtype())
                )
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if opts["amsgrad"] is not None and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            tensors = [p, p.grad, state["exp_avg"], state["exp_avg_sq"]]
            if opts["amsgrad"] is not None:
                tensors.append(state["max_exp_avg_sq"])
            if torch.is_complex(p):  # a complex number is updated as two real ones
                tensors = [torch.view_as_real(x) for x in tensors]
            params.append(tensors[0])
            grads.append(tensors[1])
            exp_avgs.append(tensors[2])
            exp_avg_sqs.append(tensors[3])
            if opts["amsgrad"] is not None:
                max_exp_avg_sqs.append(tensors[4])
            steps.append(state["step"])
        if not params:
            return

        beta1, beta2 = group["betas"]
        lists = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
        common = dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"])
        if fused:
            adam_fused(
                *lists,
                **common,
                weight_decay=opts["weight_decay"],
                decoupled=opts["decoupled"],
                amsgrad=opts["amsgrad"] is not None,
                maximize=group["maximize"],
                grad_scale=grad_scale,
                found_inf=found_inf,
            )
        elif self._use_foreach(group, params):
            adam_multi_tensor(*lists, **common, **opts, maximize=group["maximize"])
        elif isinstance(group["lr"], Tensor) or isinstance(opts["weight_decay"], Tensor):
            # one call per device, with the tensor hyperparameters on that device
            for (device, _), idx in bucket_by(params).items():
                sub = [[xs[i] for i in idx] if xs else xs for xs in lists]
                common["lr"] = lr_for(group["lr"], device)
                opts["weight_decay"] = lr_for(opts["weight_decay"], device)
                adam_reference(*sub, **common, **opts, maximize=group["maximize"])
        else:
            adam_reference(*lists, **common, **opts, maximize=group["maximize"])


PARAMS_DOC = """params : iterable
        Parameters, named parameters or param-group dicts, as for any ``torch.optim`` optimizer.
    lr : float or Tensor
        Learning rate :math:`\\gamma`, a finite number :math:`\\ge 0` or a 1-element tensor
        (read on the device, never on the host, inside :meth:`step`).
    betas : (float, float)
        :math:`(\\beta_1, \\beta_2)`, each in :math:`[0, 1)`.
    eps : float
        :math:`\\epsilon \\ge 0`, added to :math:`\\sqrt{\\hat v}`."""

FLAGS_DOC = """maximize : bool
        Maximize the objective (the gradient's sign is flipped).
    foreach : bool, optional
        ``True``: multi-tensor path; ``False``: reference path; ``None`` (default): the
        multi-tensor path where ``torch.optim`` would pick it (all parameters on CUDA).
    fused : bool, optional
        ``True``: PyTorch's fused kernel, where it computes exactly this update."""


class Adam(_AdamFamily):
    r"""Adam (Kingma & Ba, 2015), with L2 weight decay coupled into the gradient (section 6.3.1).

    A drop-in replacement for :class:`torch.optim.Adam` (same arguments, same numbers,
    same ``state_dict``). With :math:`m_0 = v_0 = 0` and :math:`t = 1, 2, \dots`:

    .. math::

        \begin{aligned}
        g_t &= \nabla f_t(\theta_{t-1}) + \lambda\,\theta_{t-1}
              && \text{(the L2 term: "Adam with L2")} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \hat m_t &= \frac{m_t}{1-\beta_1^t}, \qquad
        \hat v_t = \frac{v_t}{1-\beta_2^t}
            \quad\Big(\text{amsgrad: } \hat v_t = \frac{\max(v_1,\dots,v_t)}{1-\beta_2^t}\Big) \\
        \theta_t &= \theta_{t-1} - \gamma\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        \end{aligned}

    Parameters
    ----------
    {params}
    weight_decay : float
        :math:`\lambda \ge 0`, an L2 penalty added to the gradient (coupled: it passes
        through :math:`m` and :math:`v`). Use :class:`AdamW` for decoupled decay.
    amsgrad : bool
        PyTorch's AMSGrad variant: the maximum of the raw :math:`v`, then bias-corrected.
        For Reddi et al.'s algorithm use :class:`~companion.optim.AMSGrad`.
    {flags}
    decoupled_weight_decay : bool
        As in ``torch.optim.Adam``: ``True`` makes this AdamW (PyTorch's convention).

    Notes
    -----
    The update itself is :math:`\approx \gamma\,\hat m/\sqrt{\hat v}`, of order
    :math:`\gamma` whatever the gradient's scale: large gradients get a smaller
    *effective learning rate* :math:`\gamma/(\sqrt{\hat v}+\epsilon)`, not a smaller step.
    The default ``eps=1e-8`` and ``betas=(0.9, 0.999)`` are the paper's.

    Examples
    --------
    >>> import torch
    >>> from companion.optim import Adam
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    >>> opt = Adam([w], lr=0.1)
    >>> w.grad = torch.tensor([3.0, -0.01])
    >>> opt.step()                      # first step: m̂/√v̂ = sign(g), so each moves by ≈ lr
    >>> w.detach()
    tensor([0.9000, 1.1000])
    """

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        super()._check_group(group, at_step=at_step)
        check_choice("amsgrad", group["amsgrad"], (False, True))
        check_choice("decoupled_weight_decay", group["decoupled_weight_decay"], (False, True))

    def _kernel_options(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(
            weight_decay=group["weight_decay"],
            decoupled=bool(group["decoupled_weight_decay"]),
            amsgrad="raw" if group["amsgrad"] else None,
            bias_correction=True,
            lr_decay="none",
        )


class AdamW(_AdamFamily):
    r"""AdamW: Adam with decoupled weight decay, in either convention (section 6.3.2).

    ``decay="torch"`` (default) is :class:`torch.optim.AdamW`, with :math:`\gamma` the
    current (scheduled) learning rate:

    .. math::

        \theta_t = \theta_{t-1}(1 - \gamma\lambda)
                   - \gamma\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.

    ``decay="paper"`` is Loshchilov & Hutter's Algorithm 2, where :math:`\eta_t` is the
    schedule *multiplier* and :math:`\alpha` the base rate, so the decay is not scaled by
    :math:`\alpha`:

    .. math::

        \theta_t = \theta_{t-1} - \eta_t \Big(\alpha\, \frac{\hat m_t}{\sqrt{\hat v_t}+\epsilon}
                   + \lambda\, \theta_{t-1}\Big),
        \qquad \eta_t = \gamma_t / \alpha .

    Here :math:`\gamma_t` is the group's current ``lr`` and :math:`\alpha` its initial
    one: ``group["initial_lr"]`` when a scheduler recorded it (torch's schedulers and
    :class:`companion.ScheduledLR` do), else the lr the group was created with (kept in
    ``group["decay_base_lr"]``). The two conventions agree when
    :math:`\lambda_{\text{paper}} = \alpha\,\lambda_{\text{torch}}`, for every schedule.
    :math:`m, v, \hat m, \hat v` are Adam's (see :class:`Adam`).

    Parameters
    ----------
    {params}
    weight_decay : float
        :math:`\lambda \ge 0`, the decoupled decay coefficient (default ``1e-2``, as torch).
    amsgrad : bool
        PyTorch's AMSGrad variant (maximum of the raw :math:`v`, then bias-corrected).
    {flags}
    decay : {"torch", "paper"}
        The decay convention (above). ``fused=True`` serves both: the paper convention is
        torch's kernel with :math:`\lambda/\alpha`.

    Examples
    --------
    >>> import torch
    >>> from companion.optim import AdamW
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.01)
    >>> w.grad = torch.tensor([3.0, -0.01])
    >>> opt.step()                      # θ(1 − 0.1·0.01) ∓ 0.1
    >>> w.detach()
    tensor([0.8990, 1.0990])
    >>> w2 = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    >>> opt = AdamW([w2], lr=0.1, weight_decay=0.01, decay="paper")   # η = lr/α = 1
    >>> w2.grad = torch.tensor([3.0, -0.01])
    >>> opt.step()                      # θ(1 − 0.01) ∓ 0.1
    >>> w2.detach()
    tensor([0.8900, 1.0900])
    """

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        decay: Literal["torch", "paper"] = "torch",
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            decay=decay,
            decoupled_weight_decay=True,  # what torch.optim.AdamW's groups say
        )
        super().__init__(params, defaults)

    def _prepare_group(self, group: dict[str, Any]) -> None:
        lr = group["lr"]
        group.setdefault("decay_base_lr", lr.detach().clone() if isinstance(lr, Tensor) else lr)

    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        super()._check_group(group, at_step=at_step)
        check_choice("amsgrad", group["amsgrad"], (False, True))
        check_choice("decay", group["decay"], ("torch", "paper"))
        if group["decay"] == "paper":
            alpha = self._alpha(group)
            if not isinstance(alpha, Tensor) and not alpha > 0:
                raise ValueError(
                    "decay='paper' needs a base learning rate alpha > 0 (the group's "
                    f"initial_lr, else the lr it was created with), got {alpha!r}"
                )

    def _kernel_options(self, group: dict[str, Any]) -> dict[str, Any]:
        wd = group["weight_decay"]
        if group["decay"] == "paper" and wd != 0:
            wd = wd / self._alpha(group)  # decay η_t λ θ = lr (λ/α) θ
        return dict(
            weight_decay=wd,
            decoupled=True,
            amsgrad="raw" if group["amsgrad"] else None,
            bias_correction=True,
            lr_decay="none",
        )

    @staticmethod
    def _alpha(group: dict[str, Any]) -> float | Tensor:
        """α of decay="paper": the scheduler's initial_lr, else the lr at the group's creation."""
        return group.get("initial_lr", group.get("decay_base_lr", group["lr"]))


def _fill_doc(cls: type) -> type:
    """Insert the argument descriptions every Adam-family class shares."""
    cls.__doc__ = cls.__doc__.replace("{params}", PARAMS_DOC).replace("{flags}", FLAGS_DOC)
    return cls


_fill_doc(Adam)
_fill_doc(AdamW)
