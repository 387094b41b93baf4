r"""Adam and AdamW (section 6.3): the optimizers on the kernel of :mod:`.adam_kernels`.

:class:`Adam` is :prf:ref:`alg-63-adam` of section 6.3.1 with L2 weight decay coupled into the
gradient; :class:`AdamW` decouples the decay, in PyTorch's convention
(equation :eq:`eq-63-adamw-torch`) or Loshchilov & Hutter's, equation :eq:`eq-63-adamw-paper`.
The kernels are re-exported here (section 6.3.1 shows :func:`adam_reference`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Literal

import torch
from torch import Tensor

from companion._validation import check_choice, check_flag, check_pair, check_real

from ._base import CompanionOptimizer, Kernels, check_lr, readable, scalar_dtype, step_value
from ._saved_state import Slot
from .adam_kernels import (
    AMSGRAD_VARIANTS,
    adam_fused,
    adam_multi_tensor,
    adam_reference,
    fused_reason,
)

__all__ = ["AMSGRAD_VARIANTS", "Adam", "AdamW", "adam_fused", "adam_multi_tensor", "adam_reference"]


# The state of one parameter, as torch.optim.Adam keeps it (the maximum made where missing).
_ADAM_SLOTS = {
    "step": Slot(required=True, nonnegative=True),
    "exp_avg": Slot(required=True, nonnegative=False),
    "exp_avg_sq": Slot(required=True, nonnegative=True),
    "max_exp_avg_sq": Slot(required=False, nonnegative=True),
}


class _AdamFamily(CompanionOptimizer):
    """What Adam, AdamW and AMSGrad share: state, checks, the kernels' arguments. Not public."""

    kernels = Kernels(adam_reference, adam_multi_tensor, adam_fused)
    state_slots = _ADAM_SLOTS

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        betas = check_pair("betas", defaults["betas"], low=0, high=1, high_open=True)
        defaults["betas"] = tuple(float(b) for b in betas)  # a tensor beta is read once, here
        super().__init__(params, defaults)

    @abstractmethod
    def _options(self, group: dict[str, Any]) -> dict[str, Any]:
        """weight_decay, decoupled, amsgrad (a variant or None) and lr_decay of the group."""

    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        check_lr(group["lr"], at_step=at_step)
        check_pair("betas", group["betas"], low=0, high=1, high_open=True, read_tensor=not at_step)
        check_real("eps", group["eps"], low=0)
        check_real("weight_decay", group["weight_decay"], low=0)
        check_flag("maximize", group["maximize"])

    def _fused_supported(self, group: dict[str, Any]) -> str | None:
        o = self._options(group)
        return fused_reason(o["amsgrad"], o["lr_decay"], o["weight_decay"])

    def _collect(self, group: dict[str, Any]) -> tuple[list[Any], ...] | None:
        amsgrad = self._options(group)["amsgrad"] is not None
        fused = bool(group["fused"])
        lists: tuple[list[Any], ...] = ([], [], [], [], [], [])
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
            if amsgrad and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            tensors = [p, p.grad, state["exp_avg"], state["exp_avg_sq"]]
            if amsgrad:
                tensors.append(state["max_exp_avg_sq"])
            if torch.is_complex(p):  # a complex number is updated as two real ones
                tensors = [torch.view_as_real(x) for x in tensors]
            for xs, x in zip(lists, tensors, strict=False):
                xs.append(x)
            lists[5].append(state["step"])
        return lists if lists[0] else None

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        return dict(
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            maximize=group["maximize"],
            **self._options(group),
        )


PARAMS_DOC = """params : iterable
        Parameters, named parameters or param-group dicts, as for any ``torch.optim`` optimizer.
    lr : float or Tensor
        Learning rate :math:`\\gamma`, a finite number :math:`\\ge 0` or a 1-element tensor
        (read on the device, never on the host, inside :meth:`step`).
    betas : (float, float)
        :math:`(\\beta_1, \\beta_2)`, each in :math:`[0, 1)`.
    eps : float
        :math:`\\epsilon \\ge 0`, added to :math:`\\sqrt{\\hat v}`."""

PATH_FLAGS_DOC = """maximize : bool
        Maximize the objective (the gradient's sign is flipped).
    foreach : bool, optional
        ``True``: multi-tensor path; ``False``: reference path; ``None`` (default): the
        multi-tensor path where ``torch.optim`` would pick it (all parameters on CUDA).
    fused : bool, optional
        ``True``: PyTorch's fused kernel, where it computes exactly this update."""

FLAGS_DOC = (
    PATH_FLAGS_DOC
    + """
    capturable : bool
        Accepted as ``False`` only, as ``torch.optim`` spells it; ``True`` raises
        ``ValueError`` with the reason (the step counters live on the CPU).
    differentiable : bool
        Accepted as ``False`` only; ``True`` raises ``ValueError`` with the reason (the
        update is written in place, outside autograd)."""
)


class Adam(_AdamFamily):
    r"""Adam (Kingma & Ba, 2015), with L2 weight decay coupled into the gradient (section 6.3.1).

    A drop-in replacement for :class:`torch.optim.Adam` (same arguments, same numbers,
    same ``state_dict``). With :math:`m_0 = v_0 = 0` and :math:`t = 1, 2, \dots`:

    .. math::

        \begin{aligned}
        g_t &= \nabla f_t(w_{t-1}) + \lambda\,w_{t-1}
              \qquad \text{(the L2 term)} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \hat m_t &= \frac{m_t}{1-\beta_1^t}, \qquad
        \hat v_t = \frac{v_t}{1-\beta_2^t} \\
        w_t &= w_{t-1} - \eta_t\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        \end{aligned}

    with :math:`\eta_t` the group's current ``lr``; with ``amsgrad=True``,
    :math:`\hat v_t = \max(v_1, \dots, v_t)/(1-\beta_2^t)`.

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
    >>> opt.step()  # first step: m̂/√v̂ = sign(g), so each moves by ≈ lr
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
        capturable: bool = False,
        differentiable: bool = False,
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
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        super()._check_group(group, at_step=at_step)
        check_flag("amsgrad", group["amsgrad"])
        check_flag("decoupled_weight_decay", group["decoupled_weight_decay"])

    def _options(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(
            weight_decay=group["weight_decay"],
            decoupled=bool(group["decoupled_weight_decay"]),
            amsgrad="torch" if group["amsgrad"] else None,
            lr_decay="none",
        )


class AdamW(_AdamFamily):
    r"""AdamW: Adam with decoupled weight decay, in either convention (section 6.3.2).

    ``decay="torch"`` (default) is :class:`torch.optim.AdamW`, with :math:`\eta_t` the
    current (scheduled) learning rate:

    .. math::

        w_t = w_{t-1}(1 - \eta_t\lambda)
                   - \eta_t\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.

    ``decay="paper"`` is Loshchilov & Hutter's Algorithm 2, where :math:`c_t` is the
    schedule *multiplier* (their :math:`\eta_t`) and :math:`\alpha` the base rate, so
    the decay is not scaled by :math:`\alpha`:

    .. math::

        w_t = w_{t-1} - c_t \Big(\alpha\, \frac{\hat m_t}{\sqrt{\hat v_t}+\epsilon}
                   + \lambda\, w_{t-1}\Big),
        \qquad c_t = \eta_t / \alpha .

    Here :math:`\eta_t` is the group's current ``lr`` and :math:`\alpha` its initial
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
        torch's kernel with :math:`\lambda/\alpha`. With ``"paper"`` a step whose decay
        factor :math:`1 - \eta_t\lambda/\alpha` is :math:`\le 0` (a rate at or above
        :math:`\alpha/\lambda`, e.g. any :math:`\lambda \ge 1` at :math:`\eta_t = \alpha`)
        is refused, naming the update and the numbers, before any weight changes; so is
        :math:`\alpha \le 0`. Both are checked wherever the values are free to read (numbers,
        CPU tensors; a tensor lr on an accelerator is not read inside :meth:`step`).

    Examples
    --------
    >>> import torch
    >>> from companion.optim import AdamW
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.01)
    >>> w.grad = torch.tensor([3.0, -0.01])
    >>> opt.step()                      # w(1 − 0.1·0.01) ∓ 0.1
    >>> w.detach()
    tensor([0.8990, 1.0990])
    >>> w2 = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    >>> opt = AdamW([w2], lr=0.1, weight_decay=0.01, decay="paper")   # c_t = lr/α = 1
    >>> w2.grad = torch.tensor([3.0, -0.01])
    >>> opt.step()                      # w(1 − 0.01) ∓ 0.1
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
        capturable: bool = False,
        differentiable: bool = False,
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
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _prepare_group(self, group: dict[str, Any]) -> None:
        lr = group["lr"]
        group.setdefault("decay_base_lr", lr.detach().clone() if isinstance(lr, Tensor) else lr)

    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        super()._check_group(group, at_step=at_step)
        check_flag("amsgrad", group["amsgrad"])
        check_choice("decay", group["decay"], ("torch", "paper"))
        if group["decay"] == "paper":
            self._check_paper_decay(group, at_step)

    def _check_paper_decay(self, group: dict[str, Any], at_step: bool) -> None:
        r"""α > 0, and the decay factor :math:`1 - \eta_t\lambda/\alpha` positive.

        Both are checked wherever their values are free to read: always for numbers and
        CPU tensors, and outside a step for a tensor on an accelerator (inside a step that
        read would wait for the device, so a tensor lr there is not checked).
        """
        alpha, lr, lam = self._alpha(group), group["lr"], group["weight_decay"]
        check_real(
            "alpha of decay='paper' (the group's initial_lr, else its lr at creation)",
            alpha,
            low=0,
            low_open=True,
            allow_tensor=True,
            read_tensor=readable(alpha, at_step),
        )
        if lam == 0 or not (readable(alpha, at_step) and readable(lr, at_step)):
            return
        a, g = float(alpha), float(lr)
        factor = 1 - g * (lam / a)  # the factor the kernel multiplies w by
        if factor <= 0:
            when = self._next_update(group) if at_step else None
            raise ValueError(
                f"AdamW(decay='paper'){'' if when is None else f' at update t={when}'}: "
                f"the decay factor 1 - lr*weight_decay/alpha = 1 - {g:g}*{lam:g}/{a:g} = "
                f"{factor:g} is <= 0, so the step would zero every weight or flip its sign; "
                f"the lr must stay below alpha/weight_decay = {a / lam:g} (a schedule's "
                "values are the lr: lower its peak, or use a smaller weight_decay)"
            )

    def _next_update(self, group: dict[str, Any]) -> int | None:
        """The 0-based index t of the group's next update, where its counter is on the CPU."""
        for p in group["params"]:
            step = self.state.get(p, {}).get("step")
            if isinstance(step, Tensor) and step.device.type == "cpu":
                return int(step_value(step))
        return 0 if not any(p in self.state for p in group["params"]) else None

    def _options(self, group: dict[str, Any]) -> dict[str, Any]:
        wd = group["weight_decay"]
        if group["decay"] == "paper" and wd != 0:
            wd = wd / self._alpha(group)  # decay η_t λ w = γ_t (λ/α) w
        return dict(
            weight_decay=wd,
            decoupled=True,
            amsgrad="torch" if group["amsgrad"] else None,
            lr_decay="none",
        )

    @staticmethod
    def _alpha(group: dict[str, Any]) -> float | Tensor:
        """α of decay="paper": the scheduler's initial_lr, else the lr at the group's creation."""
        return group.get("initial_lr", group.get("decay_base_lr", group["lr"]))


def _fill_doc(cls: type, flags: str = FLAGS_DOC) -> type:
    """Insert the argument descriptions every Adam-family class shares."""
    cls.__doc__ = cls.__doc__.replace("{params}", PARAMS_DOC).replace("{flags}", flags)
    return cls


_fill_doc(Adam)
_fill_doc(AdamW)
