"""The problems of section 6.5: scripted variance sequences, least squares, loss spread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from companion._validation import (
    check_integer,
    check_real,
    check_real_array,
)

__all__ = [
    "LeastSquares",
    "LeastSquaresRun",
    "least_squares",
    "loss_spread_and_gradient_noise",
    "river_on_script",
    "sgd_least_squares",
]


def river_on_script(
    river: Any, variances: Any, noise: torch.Tensor, center: float = 2.0
) -> np.ndarray:
    r"""Feed a River batches of losses whose variance follows a script (section 6.5).

    Batch :math:`t` is :math:`\ell_{t,i} = c + \sqrt{a_t}\, z_{t,i}`, where :math:`a_t` is
    ``variances[t]`` and :math:`z_{t,i}` is ``noise[t, i]``: the same draws rescaled for
    every script, so two scripts differ only by their variances. No model is trained, so
    nothing stops the multiplier from using the current batch
    (``River(use_current_batch=True)`` returns :math:`\rho_t` after batch :math:`t`).

    Parameters
    ----------
    river : companion.river.River
        Any object with ``observe(per_example_losses)`` returning the multiplier.
    variances : array_like
        The scripted variances :math:`a_0, \dots, a_{T-1}`, finite and >= 0.
    noise : torch.Tensor
        A ``(T, N)`` tensor of draws :math:`z_{t,i}` (standard normal, say), ``N >= 2``.
    center : float
        The losses' centre :math:`c`.

    Returns
    -------
    numpy.ndarray
        The T values that ``river.observe`` returned, as float64.

    Examples
    --------
    >>> from companion.river import River
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(100, 8, generator=g, dtype=torch.float64)
    >>> rho = river_on_script(River(use_current_batch=True), np.full(100, 4.0), z)
    >>> rho.shape, round(float(rho[0]), 6)  # rho_0 = 1 / (1 + eps): equal averages
    ((100,), 1.0)
    """
    if not callable(getattr(river, "observe", None)):
        raise TypeError(f"river must have an observe(per_example_losses) method, got {river!r}")
    variances = check_real_array("variances", variances, low=0.0)
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise must be a (T, N) tensor, got {type(noise).__name__}")
    if noise.ndim != 2 or noise.shape[0] != variances.size or noise.shape[1] < 2:
        raise ValueError(
            f"noise must have shape (T={variances.size}, N >= 2), got {tuple(noise.shape)}"
        )
    center = check_real("center", center)
    scale = torch.as_tensor(np.sqrt(variances), device=noise.device)
    rho = [river.observe(center + scale[t] * noise[t]) for t in range(noise.shape[0])]
    return torch.stack([torch.as_tensor(r) for r in rho]).double().cpu().numpy()


@dataclass(frozen=True)
class LeastSquares:
    r"""A least-squares problem :math:`f(w) = \frac1n\sum_i \frac12 (x_i^\top w - y_i)^2`.

    Attributes
    ----------
    X : torch.Tensor
        The ``(n, d)`` design matrix, rows :math:`x_i^\top`.
    y : torch.Tensor
        The ``n`` targets.
    """

    X: torch.Tensor
    y: torch.Tensor

    def losses(self, w: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        r"""Per-example losses :math:`\ell_i(w) = \frac12(x_i^\top w - y_i)^2` (rows ``index``)."""
        X, y = (self.X, self.y) if index is None else (self.X[index], self.y[index])
        return 0.5 * (X @ w - y) ** 2

    def loss(self, w: torch.Tensor) -> float:
        """The objective :math:`f(w)`, the mean of the per-example losses."""
        with torch.no_grad():
            return float(self.losses(w).mean())

    @property
    def minimum(self) -> float:
        r""":math:`f^\star = \min_w f(w)`, from :func:`torch.linalg.lstsq`."""
        return self.loss(torch.linalg.lstsq(self.X, self.y).solution)


def least_squares(n: int, d: int, noise: float = 0.0, seed: int = 0) -> LeastSquares:
    r"""A random least-squares problem with a planted solution (section 6.5).

    :math:`x_i \sim \mathcal N(0, I_d)`, :math:`y_i = x_i^\top w^\star + \xi_i` with
    :math:`w^\star \sim \mathcal N(0, I_d)` and label noise :math:`\xi_i \sim
    \mathcal N(0, \text{noise}^2)`, in float64. With ``noise=0`` and ``n >= d`` the
    problem interpolates: every per-example loss is 0 at :math:`w^\star`.

    Parameters
    ----------
    n : int
        Number of examples (rows of :math:`X`), >= 1.
    d : int
        Dimension of :math:`w`, >= 1.
    noise : float
        Standard deviation of the label noise, >= 0.
    seed : int
        Seed of the generator that draws :math:`X`, :math:`w^\star` and the noise.

    Examples
    --------
    >>> problem = least_squares(32, 4, seed=0)
    >>> problem.X.shape, problem.minimum < 1e-25
    (torch.Size([32, 4]), True)
    """
    n = check_integer("n", n, low=1)
    d = check_integer("d", d, low=1)
    noise = check_real("noise", noise, low=0.0)
    seed = check_integer("seed", seed, low=0, high=2**64 - 1)  # a torch.Generator seed
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64)
    return LeastSquares(X, y + noise * torch.randn(n, generator=g, dtype=torch.float64))


@dataclass(frozen=True)
class LeastSquaresRun:
    """What :func:`sgd_least_squares` records.

    Attributes
    ----------
    lr : numpy.ndarray
        The rate :math:`\\eta_t` of each update ``t = 0, ..., T-1``.
    loss : numpy.ndarray
        The objective :math:`f(w_t)` for ``t = 0, ..., T`` (before the first update and
        after each one).
    batch_variance : numpy.ndarray
        :math:`V_t`, the population variance of batch ``t``'s per-example losses.
    """

    lr: np.ndarray
    loss: np.ndarray
    batch_variance: np.ndarray


def sgd_least_squares(
    problem: LeastSquares,
    schedule: Callable[[int], float],
    *,
    steps: int,
    batch_size: int,
    river: Any | None = None,
    seed: int = 1,
) -> LeastSquaresRun:
    r"""Plain SGD from :math:`w_0 = 0` on a least-squares problem, optionally with a River.

    The loop of section 6.5: batch :math:`B_t` is drawn uniformly with replacement (a
    generator seeded with ``seed``); the optimizer steps on the batch's mean loss, then
    the River observes the batch's per-example losses, then a
    :class:`companion.ScheduledLR` sets the next rate :math:`s(t+1)` times the multiplier.

    Parameters
    ----------
    problem : LeastSquares
        From :func:`least_squares`.
    schedule : callable
        :math:`s(t)`, e.g. a :mod:`companion.schedules` schedule.
    steps : int
        The number of updates :math:`T`, >= 1.
    batch_size : int
        The examples :math:`N` of each batch (drawn uniformly, with replacement), >= 1.
    river : companion.river.River, optional
        The multiplier; without it the rate is the schedule.
    seed : int
        Seed of the batch sampler.

    Returns
    -------
    LeastSquaresRun

    Examples
    --------
    >>> from companion.schedules import constant
    >>> problem = least_squares(64, 4)
    >>> run = sgd_least_squares(problem, constant(0.2), steps=200, batch_size=8)
    >>> bool(run.loss[0] > 0.1 and run.loss[-1] < 1e-25)  # interpolation: f* = 0
    True
    """
    from companion.lr_scheduler import ScheduledLR
    from companion.optim import SGD

    if not isinstance(problem, LeastSquares):
        raise TypeError(f"problem must be a LeastSquares, got {type(problem).__name__}")
    if not callable(schedule):
        raise TypeError(f"schedule must be callable as schedule(step), got {schedule!r}")
    steps = check_integer("steps", steps, low=1)
    batch_size = check_integer("batch_size", batch_size, low=1)
    seed = check_integer("seed", seed, low=0, high=2**64 - 1)  # a torch.Generator seed
    g = torch.Generator().manual_seed(seed)
    n, d = problem.X.shape
    w = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))
    optimizer = SGD([w], lr=max(float(schedule(0)), 1e-3))
    scheduler = ScheduledLR(optimizer, schedule, multiplier=river)
    lrs, losses_t, variances = np.empty(steps), np.empty(steps + 1), np.empty(steps)
    losses_t[0] = problem.loss(w)
    for t in range(steps):
        batch = torch.randint(0, n, (batch_size,), generator=g)
        losses = problem.losses(w, batch)
        lrs[t] = float(optimizer.param_groups[0]["lr"])
        variances[t] = float(losses.detach().var(unbiased=False))
        losses.mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        if river is not None:
            river.observe(losses.detach())
        scheduler.step()
        losses_t[t + 1] = problem.loss(w)
    return LeastSquaresRun(lrs, losses_t, variances)


def loss_spread_and_gradient_noise(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[..., torch.Tensor] | None = None,
) -> tuple[float, float]:
    r"""The spread of the per-example losses and of the per-example gradients (section 6.5).

    For examples :math:`i = 1, \dots, n` (the rows of ``x``) with losses
    :math:`\ell_i(w)` and :math:`f = \frac1n\sum_i\ell_i`, returns

    .. math::

        \operatorname{Var}_i \ell_i(w) = \frac1n\sum_i\bigl(\ell_i(w) - f(w)\bigr)^2
        \quad\text{and}\quad
        \frac1n\sum_i\bigl\lVert\nabla\ell_i(w) - \nabla f(w)\bigr\rVert^2 ,

    the second being the gradient-noise variance of a batch of one (the :math:`\sigma^2`
    of the variance form of Lemma 6.2.1). Per-example gradients come from
    :func:`torch.func.vmap` over :func:`torch.func.grad`; the model is not changed.

    Parameters
    ----------
    model : torch.nn.Module
        A model without batch-dependent layers (no batch norm).
    x : torch.Tensor
        Inputs, ``n >= 1`` rows.
    y : torch.Tensor
        Targets, one row for each row of ``x``.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets, reduction=...)`` as in :mod:`torch.nn.functional`
        (an example's loss is the mean over its output's elements); default
        cross-entropy.

    Returns
    -------
    tuple of float
        ``(loss variance, gradient noise)``.

    Examples
    --------
    >>> from companion.problems import mlp
    >>> model = mlp(4, 8, 3, seed=0)
    >>> x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    >>> spread, noise = loss_spread_and_gradient_noise(model, x, torch.arange(16) % 3)
    >>> spread > 0 and noise > 0
    True
    """
    from torch.func import functional_call, grad, vmap

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be tensors")
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(
            f"x and y must have the same number n >= 1 of rows, got {x.shape[0]} and {y.shape[0]}"
        )
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_of(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, p, (xi[None],)), yi[None])

    per_example = vmap(grad(loss_of), in_dims=(None, 0, 0))(params, x, y)
    flat = torch.cat([g.flatten(1) for g in per_example.values()], dim=1)
    with torch.no_grad():
        losses = loss_fn(model(x), y, reduction="none").reshape(x.shape[0], -1).mean(1)
    noise = ((flat - flat.mean(0)) ** 2).sum(1).mean()
    return float(losses.var(unbiased=False)), float(noise)
