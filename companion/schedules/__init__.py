r"""Closed-form learning-rate schedules (sections 6.2.2 and 6.4).

Every constructor checks its arguments and returns a :class:`Schedule`: a small,
frozen, pure function of the step. Steps are 0-based: ``s(t)`` is the learning
rate of the ``t``-th update. ``s`` accepts a Python or numpy integer in
``[0, 2**53]`` (and returns a Python ``float``) or an array or sequence of them (and
returns a ``float64`` array of the same shape; an empty one gives an empty array).
There is no recursion and no state: the value at step 10,000 is computed directly,
so nothing drifts and nothing needs resuming. The scalar path runs the vectorised
one, so ``s(np.arange(T))`` equals ``[s(t) for t in range(T)]`` exactly.

Warmup and decay are composed as optax composes them (:func:`join`): every schedule
with a warmup is the warmup ramp joined to its decay, each phase counting its own
steps.

Conventions: the decays are PyTorch's closed forms where it has the schedule
(``CosineAnnealingLR``, ``MultiStepLR``, ``CosineAnnealingWarmRestarts``,
``PolynomialLR``, ``ExponentialLR``, ``OneCycleLR``; also optax's and Hugging Face's
cosine, polynomial, exponential and inverse-square-root schedules): a decay over
``T`` steps is at the peak at ``t = W`` and reaches ``final_lr`` at ``t = T``, where
it stays. A linear warmup over ``W`` steps multiplies by ``(t + 1) / W`` (PyTorch's
``LinearLR(start_factor=1/W, total_iters=W-1)``), not by ``t / W`` as optax and
Hugging Face do, so the first update never has learning rate 0.

Examples
--------
>>> from companion.schedules import cosine, piecewise_constant
>>> s = cosine(peak_lr=0.1, total_steps=100, warmup_steps=10)
>>> s(0), s(9), s(10), s(100)
(0.01, 0.1, 0.1, 0.0)
>>> s
cosine(peak_lr=0.1, total_steps=100, warmup_steps=10)
>>> piecewise_constant([50], [0.1, 0.025])(np.array([0, 49, 50, 99]))
array([0.1  , 0.1  , 0.025, 0.025])
"""

from __future__ import annotations

import numpy as np  # noqa: F401 - the examples use np

from . import _base, _peers
from ._base import Schedule, join
from ._classic import constant, cosine, linear_warmup, piecewise_constant, sgdr, wsd
from ._peers import exponential, inverse_sqrt, one_cycle, polynomial

#: The cooldown shapes of :func:`wsd`.
WSD_SHAPES = _base.WSD_SHAPES
#: The warmup shapes of :func:`cosine` and :func:`wsd`.
WARMUP_SHAPES = _base.WARMUP_SHAPES
#: The annealing strategies of :func:`one_cycle` (PyTorch's ``anneal_strategy``).
ONE_CYCLE_ANNEALS = _peers.ONE_CYCLE_ANNEALS

__all__ = [
    "Schedule",
    "constant",
    "linear_warmup",
    "cosine",
    "piecewise_constant",
    "sgdr",
    "wsd",
    "join",
    "polynomial",
    "exponential",
    "inverse_sqrt",
    "one_cycle",
    "WSD_SHAPES",
    "WARMUP_SHAPES",
    "ONE_CYCLE_ANNEALS",
]
