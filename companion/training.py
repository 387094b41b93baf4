"""A short, seeded training loop for the notebooks: history, evaluation and a progress bar.

The loop is the one every chapter uses (section 6.5): the learning rate of step ``t``
never sees batch ``t``::

    losses = loss_fn(model(x), y, reduction="none")  # per example
    losses.mean().backward()
    optimizer.step(); optimizer.zero_grad()
    river.observe(losses.detach())  # after the step
    scheduler.step()                # next lr = s(t+1) x multiplier

Per-step records stay on the device until the end of an epoch, so the loop does not
synchronise the host at every step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from companion._validation import check_flag, check_integer
from companion.problems import Split

__all__ = ["History", "evaluate", "train"]


@dataclass
class History:
    """What :func:`train` records.

    Attributes
    ----------
    step_loss : np.ndarray
        Mean training loss of each mini-batch, one entry per step.
    step_lr : np.ndarray
        Learning rate of the first parameter group used at each step.
    step_multiplier : np.ndarray
        The multiplier (e.g. a River's) in force at each step; empty without one.
    step_loss_variance : np.ndarray
        Variance of each mini-batch's per-example losses (population form, divisor N).
    epoch_train_loss : list of float
        The mean cross-entropy over the whole training set, after each epoch.
    epoch_train_accuracy : list of float
        The fraction of the training set classified right, after each epoch.
    epoch_test_loss : list of float
        The mean cross-entropy over the whole test set, after each epoch.
    epoch_test_accuracy : list of float
        The fraction of the test set classified right, after each epoch.
    """

    step_loss: np.ndarray = field(default_factory=lambda: np.empty(0))
    step_lr: np.ndarray = field(default_factory=lambda: np.empty(0))
    step_multiplier: np.ndarray = field(default_factory=lambda: np.empty(0))
    step_loss_variance: np.ndarray = field(default_factory=lambda: np.empty(0))
    epoch_train_loss: list[float] = field(default_factory=list)
    epoch_train_accuracy: list[float] = field(default_factory=list)
    epoch_test_loss: list[float] = field(default_factory=list)
    epoch_test_accuracy: list[float] = field(default_factory=list)

    @property
    def final_test_accuracy(self) -> float:
        return self.epoch_test_accuracy[-1]

    @property
    def final_train_loss(self) -> float:
        return self.epoch_train_loss[-1]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)`` (at least one example)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or len(x) != len(y):
        raise ValueError("x and y must be tensors with one label per example")
    if len(y) == 0 or y.is_floating_point():
        raise ValueError(
            f"y must hold at least one integer class label, got {y.dtype} {tuple(y.shape)}"
        )
    was_training = model.training
    model.eval()
    logits = model(x)
    loss = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).double().mean().item()
    model.train(was_training)
    return loss, accuracy


def _lr_of(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    lr = optimizer.param_groups[0]["lr"]
    return lr.detach().clone() if torch.is_tensor(lr) else torch.tensor(float(lr))


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    *,
    epochs: int,
    batch_size: int,
    scheduler: Any | None = None,
    river: Any | None = None,
    seed: int = 0,
    loss_fn: Callable[..., torch.Tensor] = F.cross_entropy,
    progress: bool = True,
    description: str = "training",
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> History:
    """Train ``model`` with mini-batch steps and return its :class:`History`.

    Parameters
    ----------
    model : torch.nn.Module
        The model to train, in place.
    optimizer : torch.optim.Optimizer
        Any torch optimizer (``torch.optim`` or ``companion.optim``) over its parameters.
    data : Split
        Train and test tensors (see :func:`companion.problems.digits`).
    epochs : int
        Passes over the training set; the budget is
        ``epochs * ceil(n_train / batch_size)`` steps.
    batch_size : int
        Examples per step; batches are reshuffled each epoch by a generator seeded with
        ``seed``.
    scheduler
        Stepped once after every optimizer step (e.g. :class:`companion.ScheduledLR`).
    river
        A multiplier with ``observe(per_example_losses)``, fed after every step.
    loss_fn
        Called as ``loss_fn(outputs, targets, reduction="none")``.
    progress : bool
        Show a progress bar (one update per epoch) on standard error, when tqdm is
        installed; without it, or with ``progress=False``, there is none.
    description : str
        The progress bar's label.
    callback : callable, optional
        Called as ``callback(step, losses)`` after every optimizer step (and after the
        River's and the scheduler's updates), with the 0-based step and the batch's
        detached per-example losses.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if not all(hasattr(data, k) for k in ("x_train", "y_train", "x_test", "y_test")):
        raise TypeError(
            f"data must be a Split (x_train, y_train, x_test, y_test), got {type(data).__name__}"
        )
    for name, obj, method in (("scheduler", scheduler, "step"), ("river", river, "observe")):
        if obj is not None and not callable(getattr(obj, method, None)):
            raise TypeError(
                f"{name} must be None or have a {method}() method, got {type(obj).__name__}"
            )
    for name, fn in (("loss_fn", loss_fn), ("callback", callback)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    seed = check_integer("seed", seed, low=0, high=2**64 - 1)  # a torch seed
    epochs = check_integer("epochs", epochs, low=1)
    batch_size = check_integer("batch_size", batch_size, low=1)
    progress = check_flag("progress", progress)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(step, losses), got {callback!r}")

    generator = torch.Generator().manual_seed(seed)
    n = data.x_train.shape[0]
    history = History()
    losses_seen: list[torch.Tensor] = []
    lrs_seen: list[torch.Tensor] = []
    multipliers_seen: list[torch.Tensor] = []
    variances_seen: list[torch.Tensor] = []
    bar = _progress(range(epochs), description, progress)
    model.train()
    step = 0
    for _ in bar:
        order = torch.randperm(n, generator=generator).to(data.x_train.device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            lrs_seen.append(_lr_of(optimizer))
            if river is not None:
                multipliers_seen.append(torch.as_tensor(river.multiplier).detach().clone())
            losses = loss_fn(model(data.x_train[index]), data.y_train[index], reduction="none")
            losses.mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if river is not None:
                river.observe(losses.detach())
            if scheduler is not None:
                scheduler.step()
            detached = losses.detach()
            losses_seen.append(detached.mean())
            variances_seen.append(detached.var(unbiased=False))
            if callback is not None:
                callback(step, detached)
            step += 1
        train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
        history.epoch_train_loss.append(train_loss)
        history.epoch_train_accuracy.append(train_acc)
        history.epoch_test_loss.append(test_loss)
        history.epoch_test_accuracy.append(test_acc)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{train_loss:.3f}", test_acc=f"{test_acc:.3f}")
    history.step_loss = torch.stack(losses_seen).double().cpu().numpy()
    history.step_loss_variance = torch.stack(variances_seen).double().cpu().numpy()
    history.step_lr = torch.stack([lr.cpu() for lr in lrs_seen]).double().numpy()
    if multipliers_seen:
        history.step_multiplier = torch.stack([m.cpu() for m in multipliers_seen]).double().numpy()
    return history


def _progress(epochs: Iterable[int], description: str, show: bool) -> Iterable[int]:
    """``epochs`` wrapped in a tqdm bar on stderr when asked and tqdm is installed.

    The bar goes to standard error, which the book's build removes from its pages, so a
    reader running a chapter sees it and the rendered page does not.
    """
    if not show:
        return epochs
    try:
        from tqdm import tqdm
    except ImportError:  # a base install (numpy + torch only) has no progress bar
        return epochs
    return tqdm(epochs, desc=description, file=sys.stderr, ncols=80, mininterval=1.0)
