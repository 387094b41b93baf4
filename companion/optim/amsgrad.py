r"""AMSGrad (Reddi, Kale & Kumar, 2018) and its two common variants, on the Adam kernel.

Section 6.3.3, :prf:ref:`alg-63-amsgrad`. The class is a thin front end: the
update is :func:`companion.optim.adam.adam_reference` (or its multi-tensor twin) with
``amsgrad=variant`` -- one vocabulary, :data:`~companion.optim.adam.AMSGRAD_VARIANTS`,
for the class, the kernels and the book -- and ``lr_decay``.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from companion._validation import check_choice

from .adam import AMSGRAD_VARIANTS, PATH_FLAGS_DOC, _AdamFamily, _fill_doc

__all__ = ["AMSGrad"]


class AMSGrad(_AdamFamily):
    r"""AMSGrad: Adam whose second-moment estimate never decreases (section 6.3.3).

    ``variant="paper"`` (default) is Reddi et al.'s Algorithm 2: with
    :math:`m_0 = v_0 = \hat v_0 = 0` and :math:`t = 1, 2, \dots`,

    .. math::

        \begin{aligned}
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2, \\
        \hat v_t &= \max(\hat v_{t-1}, v_t), \qquad
        w_t = w_{t-1} - \alpha_t\, \frac{m_t}{\sqrt{\hat v_t} + \epsilon},
        \qquad \alpha_t = \frac{\alpha}{\sqrt t},
        \end{aligned}

    with no bias correction. The other variants differ only in :math:`\hat v` and
    :math:`\hat m`:

    * ``"torch"`` -- PyTorch's ``Adam(amsgrad=True)``: the maximum of the *raw*
      :math:`v`, then bias-corrected, :math:`\hat v_t = \max_{s\le t} v_s / (1-\beta_2^t)`
      (so :math:`\hat v_t` itself can decrease), and :math:`\hat m_t = m_t/(1-\beta_1^t)`;
    * ``"corrected"`` -- optax's default: the maximum of the bias-corrected estimates,
      :math:`\hat v_t = \max(\hat v_{t-1}, v_t/(1-\beta_2^t))`, and
      :math:`\hat m_t = m_t/(1-\beta_1^t)`.

    With ``variant="torch", lr_decay="none"`` this is exactly
    ``torch.optim.Adam(amsgrad=True)`` (and :class:`~companion.optim.Adam` with
    ``amsgrad=True``).

    Parameters
    ----------
    {params}
        (The paper has no :math:`\epsilon`; ``eps=0`` is allowed and reproduces it
        exactly, but a coordinate whose gradients have all been zero then gets
        :math:`0/0`. The default keeps torch's ``1e-8``.)
    weight_decay : float
        :math:`\lambda \ge 0`, an L2 term added to the gradient (not part of the paper).
    variant : {"paper", "torch", "corrected"}
        Which :math:`\hat v` (above).
    lr_decay : {"sqrt", "none"}
        ``"sqrt"`` (default): :math:`\alpha_t = \alpha/\sqrt t`, the step size of the
        paper's theorem, applied on top of the group's ``lr`` (so a scheduler multiplies
        it). ``"none"``: :math:`\alpha_t = \alpha`, the group's ``lr`` as it is.
    {flags}
        (``fused``: for ``variant="torch", lr_decay="none"`` only.)

    Notes
    -----
    * :math:`\beta_1` is constant. The paper's analysis asks for
      :math:`\beta_{1t} \le \beta_1` decreasing (e.g. :math:`\beta_1\gamma^{t-1}`) and
      :math:`\beta_1/\sqrt{\beta_2} < 1`; a constant :math:`\beta_1` is what practice and
      the paper's experiments use. Schedule :math:`\beta_1` by writing ``group["betas"]``.
    * The projection :math:`\Pi_{\mathcal K}` of Algorithm 2 is not part of the
      optimizer: project after each step yourself, e.g.
      ``with torch.no_grad(): p.clamp_(-1, 1)`` for :math:`\mathcal K = [-1, 1]`.
    * The state keys are Adam's (``step``, ``exp_avg``, ``exp_avg_sq``,
      ``max_exp_avg_sq``); for ``"corrected"``, ``max_exp_avg_sq`` holds the maximum of
      the bias-corrected :math:`v`.

    Examples
    --------
    Reddi et al.'s online problem, :math:`f_t(w) = 3w` if :math:`t \bmod 3 = 1`
    else :math:`-w` on :math:`[-1, 1]`, where Adam drifts to :math:`w = +1`
    (:func:`companion.problems.reddi_gradients` builds it for the book):

    >>> import torch
    >>> from companion.optim import AMSGrad
    >>> w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    >>> opt = AMSGrad([w], lr=0.5, betas=(0.0, 0.1))
    >>> for t in range(1, 3001):
    ...     w.grad = torch.tensor([3.0 if t % 3 == 1 else -1.0], dtype=torch.float64)
    ...     opt.step()
    ...     with torch.no_grad():
    ...         _ = w.clamp_(-1.0, 1.0)          # the projection is the user's
    >>> bool(w.item() < -0.9)
    True
    """

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        variant: Literal["paper", "torch", "corrected"] = "paper",
        lr_decay: Literal["sqrt", "none"] = "sqrt",
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            variant=variant,
            lr_decay=lr_decay,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], *, at_step: bool = False) -> None:
        super()._check_group(group, at_step=at_step)
        check_choice("variant", group["variant"], tuple(AMSGRAD_VARIANTS))
        check_choice("lr_decay", group["lr_decay"], ("sqrt", "none"))

    def _options(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(
            weight_decay=group["weight_decay"],
            decoupled=False,
            amsgrad=group["variant"],
            lr_decay=group["lr_decay"],
        )


_fill_doc(AMSGrad, PATH_FLAGS_DOC)  # no capturable/differentiable: not torch's class
