"""Reddi et al.'s online problem and the runners of section 6.3."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from companion._validation import (
    check_choice,
    check_integer,
    check_pair,
    check_real,
    check_real_array,
    is_real_scalar,
)

__all__ = ["adam_family_online", "reddi_gradients", "run_on_gradients"]


# --- used by section 6.3


def reddi_gradients(T: int, C: float = 3.0, *, period: int = 3, scale: float = 1.0) -> np.ndarray:
    r"""The gradients of Reddi et al.'s online linear problem (section 6.3.3).

    The losses are :math:`f_t(w) = g_t\,w` on the feasible set :math:`\mathcal K = [-1, 1]`,
    for the rounds :math:`t = 1, \dots, T`, with

    .. math::

        g_t = \begin{cases} s\,C, & t \bmod p = 1,\\ -s, & \text{otherwise,}\end{cases}

    where :math:`p` is ``period`` and :math:`s` is ``scale``. Over one period the losses
    add up to :math:`s\,(C - p + 1)\,w`, so for :math:`C > p - 1` the best fixed point
    is :math:`w^\star = -1`. ``reddi_gradients(T)`` is the problem of section
    6.3.3 (:math:`C = 3`); ``reddi_gradients(T, 101, period=101, scale=10)``
    is the experiment of Reddi et al.'s section 5 (:math:`1010\,w` every 101 rounds,
    :math:`-10\,w` otherwise).

    Parameters
    ----------
    T : int
        Number of rounds, >= 1.
    C : float
        The rare gradient's size relative to the frequent one, > 0.
    period : int
        Rounds per period, >= 2; the rare gradient comes first in each period.
    scale : float
        Common factor of all gradients, > 0.

    Returns
    -------
    np.ndarray
        ``g_1, ..., g_T`` as a float64 array of length ``T``.

    Examples
    --------
    >>> reddi_gradients(7)
    array([ 3., -1., -1.,  3., -1., -1.,  3.])
    >>> g = reddi_gradients(202, 101, period=101, scale=10)
    >>> [float(x) for x in (g[0], g[1], g[101], g.sum())]
    [1010.0, -10.0, 1010.0, 20.0]
    """
    T = check_integer("T", T, low=1)
    C = check_real("C", C, low=0, low_open=True)
    period = check_integer("period", period, low=2)
    scale = check_real("scale", scale, low=0, low_open=True)
    t = np.arange(1, T + 1)
    return np.where(t % period == 1, scale * C, -scale)


_METHODS = ("adam", "amsgrad")
_AMSGRAD_VARIANTS = ("paper", "torch", "corrected")


def adam_family_online(
    grads: Any,
    method: str = "adam",
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    variant: str = "paper",
    lr_decay: str = "none",
    w1: float = 0.0,
) -> np.ndarray:
    r"""Iterates of Adam or AMSGrad on a one-dimensional online linear problem (section 6.3.3).

    The losses are :math:`f_t(w) = g_t\,w` on :math:`\mathcal K = [-1, 1]`; after every
    step the iterate is projected onto :math:`\mathcal K` (clipped). The update is the
    one :class:`companion.optim.Adam` (``method="adam"``) or
    :class:`companion.optim.AMSGrad` (``method="amsgrad"``, with its ``variant``) takes
    on a one-element parameter whose gradient is :math:`g_t`, followed by
    ``p.clamp_(-1, 1)``: with :math:`m_0 = v_0 = \hat v_0 = 0` and :math:`t = 1, 2, \dots`,

    .. math::

        \begin{aligned}
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2,\\
        w_{t+1} &= \Pi_{[-1,1]}\Big(w_t - \alpha_t\,\frac{\hat m_t}{\sqrt{\hat v_t}+\epsilon}\Big),
        \end{aligned}

    with :math:`\alpha_t = \alpha` or :math:`\alpha/\sqrt t` (``lr_decay``) and
    :math:`\hat m_t, \hat v_t` as in Adam's algorithm (section 6.3.1) or in the AMSGrad
    variant chosen (:class:`~companion.optim.AMSGrad`; ``"paper"`` is Reddi et al.'s
    Algorithm 2 of section 6.3.3, without bias correction). Because the losses are
    linear, the gradients do not depend on the iterates, so the moments are computed in
    plain floats, with no autograd; ``tests/test_problems_online.py`` checks the result
    against the optimizers stepping a real tensor (agreement to rounding, about
    :math:`10^{-15}`).

    Parameters
    ----------
    grads : array_like
        :math:`g_1, \dots, g_T`, finite reals (e.g. :func:`reddi_gradients`).
    method : {"adam", "amsgrad"}
        Which optimizer's update.
    lr : float
        :math:`\alpha > 0`.
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in :math:`[0, 1)`.
    eps : float
        :math:`\epsilon \ge 0` (0 reproduces Reddi et al.'s algorithm exactly; a zero
        denominator, :math:`0/0`, is then an error).
    variant : {"paper", "torch", "corrected"}
        The AMSGrad variant (ignored by Adam), as in :class:`~companion.optim.AMSGrad`.
    lr_decay : {"none", "sqrt"}
        :math:`\alpha_t = \alpha` or :math:`\alpha/\sqrt t`. (For Adam, ``"sqrt"`` is the
        step size of Kingma & Ba's Theorem 4.1, set by hand at every step.)
    w1 : float
        The first point played, in :math:`[-1, 1]`.

    Returns
    -------
    np.ndarray
        :math:`w_1, \dots, w_{T+1}` (length :math:`T+1`): entry :math:`t-1` is the point
        played in round :math:`t`, the last one the point after the last step.

    Examples
    --------
    Adam with :math:`\beta_2 = 0.1` drifts to the worst point of the :math:`C = 3`
    problem; AMSGrad does not:

    >>> g = reddi_gradients(3000)
    >>> options = dict(lr=0.5, betas=(0.0, 0.1), eps=0.0, lr_decay="sqrt")
    >>> float(adam_family_online(g, "adam", **options)[-1])
    1.0
    >>> bool(adam_family_online(g, "amsgrad", **options)[-1] < -0.9)
    True
    """
    grads = check_real_array("grads", grads)
    method = check_choice("method", method, _METHODS)
    lr = check_real("lr", lr, low=0, low_open=True)
    beta1, beta2 = check_pair("betas", betas, low=0, high=1, high_open=True)
    eps = check_real("eps", eps, low=0)
    variant = check_choice("variant", variant, _AMSGRAD_VARIANTS)
    lr_decay = check_choice("lr_decay", lr_decay, ("none", "sqrt"))
    w = check_real("w1", w1, low=-1, high=1)

    adam = method == "adam"
    corrected = adam or variant != "paper"  # Adam's bias corrections (not the paper's AMSGrad)
    m = v = v_max = 0.0
    iterates = np.empty(grads.size + 1)
    iterates[0] = w
    for t, g in enumerate(grads.tolist(), start=1):
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        bc1 = 1.0 - beta1**t if corrected else 1.0
        bc2 = 1.0 - beta2**t if corrected else 1.0
        if adam:
            root = math.sqrt(v) / math.sqrt(bc2)
        elif variant == "corrected":  # the maximum of the bias-corrected v
            v_max = max(v_max, v / bc2)
            root = math.sqrt(v_max)
        else:  # "paper" and "torch": the maximum of the raw v (then corrected, for "torch")
            v_max = max(v_max, v)
            root = math.sqrt(v_max) / math.sqrt(bc2)
        denom = root + eps
        if denom == 0.0:
            raise ValueError(
                f"eps=0 and a zero second moment at round {t}: the step is 0/0; use eps > 0"
            )
        lr_t = lr / math.sqrt(t) if lr_decay == "sqrt" else lr
        w = min(1.0, max(-1.0, w - lr_t / bc1 * (m / denom)))
        iterates[t] = w
    return iterates


def run_on_gradients(
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    grads: Any,
    w0: Any,
    *,
    schedule: Callable[[int], float] | None = None,
    bounds: tuple[float, float] | None = None,
    callback: Callable[[int, torch.optim.Optimizer], None] | None = None,
) -> np.ndarray:
    r"""Step an optimizer through a given sequence of gradients and return its iterates.

    The loop of section 6.3's small experiments, where the gradient of step :math:`t`
    is given rather than computed: one float64 parameter starts at ``w0``, and for
    :math:`t = 0, \dots, T-1` its gradient is set to ``grads[t]``, the optimizer steps,
    the parameter is clipped to ``bounds`` (the projection onto a box, if given) and
    ``callback(t, optimizer)`` is called.

    Parameters
    ----------
    make_optimizer : callable
        ``make_optimizer([w])`` returns the optimizer (any ``torch.optim`` or
        ``companion.optim`` optimizer) for the parameter list ``[w]``.
    grads : array_like
        Shape ``(T,)`` for a one-element parameter or ``(T, d)`` for ``d`` elements;
        finite reals.
    w0 : float or array_like
        The starting point: a number (then ``d = 1``) or ``d`` numbers.
    schedule : callable, optional
        ``schedule(t)``, the learning rate of step :math:`t` (0-based), applied through
        :class:`companion.ScheduledLR`.
    bounds : (float, float), optional
        ``(low, high)``: project onto :math:`[\text{low}, \text{high}]^d` after each step.
    callback : callable, optional
        Called as ``callback(t, optimizer)`` after step :math:`t` and the projection.

    Returns
    -------
    np.ndarray
        The iterates :math:`w_0, \dots, w_T`, shape ``(T + 1,)`` or ``(T + 1, d)`` as
        ``grads``.

    Examples
    --------
    >>> from companion.optim import SGD
    >>> sgd = lambda p: SGD(p, lr=0.5)  # noqa: E731
    >>> run_on_gradients(sgd, [1.0, 1.0, -4.0], 0.0, bounds=(-1, 1))
    array([ 0. , -0.5, -1. ,  1. ])
    """
    one_dimensional = np.ndim(grads) == 1
    grads = check_real_array("grads", grads, ndim=None)
    if grads.ndim == 1:
        grads = grads[:, None]
    if grads.ndim != 2:
        raise ValueError(f"grads must have shape (T,) or (T, d), got shape {grads.shape}")
    start = check_real_array("w0", np.atleast_1d(w0) if is_real_scalar(w0) else w0)
    if start.size != grads.shape[1]:
        raise ValueError(
            f"w0 must have {grads.shape[1]} entries (one per column of grads), got {start.size}"
        )
    if bounds is not None:
        low, high = check_pair("bounds", bounds)
        if not low < high:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    if schedule is not None and not callable(schedule):
        raise TypeError(f"schedule must be callable as schedule(t), got {schedule!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(t, optimizer), got {callback!r}")

    w = nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = make_optimizer([w])
    scheduler = None
    if schedule is not None:
        from companion.lr_scheduler import ScheduledLR

        scheduler = ScheduledLR(optimizer, schedule)
    steps = torch.as_tensor(grads)
    path = torch.empty(len(steps) + 1, steps.shape[1], dtype=torch.float64)
    path[0] = w.detach()
    for t, g in enumerate(steps):
        w.grad = g.clone()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if bounds is not None:
            with torch.no_grad():
                w.clamp_(low, high)
        path[t + 1] = w.detach()
        if callback is not None:
            callback(t, optimizer)
    result = path.numpy()
    return result[:, 0] if one_dimensional else result
