r"""The chapter's formulas as functions (sections 6.2 to 6.5).

numpy only: the bounds and exact recursions of sections 6.2 and 6.4, the regret of
section 6.3's online problems and the stationary multiplier of section 6.5. Each docstring states the formula and where the book derives it (section,
lemma, equation label). Arguments are checked by :mod:`companion._validation`: a wrong
type is a :class:`TypeError`, a value out of range a :class:`ValueError`, and the
message names the argument, its range and the value.

Examples
--------
The worked example of sections 6.2 and 6.4: :math:`\Delta = 100`, :math:`L = 1`,
:math:`\sigma^2 = 2` (so :math:`L\sigma^2/2 = 1`), :math:`T = 100`:

>>> from companion.theory import sgd_bound, best_constant_lr
>>> sgd_bound([0.1] * 100, delta=100.0, L=1.0, sigma2=2.0)
10.1
>>> sgd_bound([0.1] * 50 + [0.025] * 50, delta=100.0, L=1.0, sigma2=2.0)
16.085
>>> best_constant_lr(delta=100.0, L=1.0, sigma2=2.0, T=100)
(1.0, 2.0)
"""

from __future__ import annotations

from companion.theory._online import average_regret
from companion.theory._river import river_trend_multiplier, river_trend_rate
from companion.theory._schedules import (
    best_constant_lr,
    cosine_early_approx,
    cosine_late_approx,
    min_warmup_steps,
    noisy_quadratic_second_moment,
    sgd_bound,
    stationary_second_moment,
)

__all__ = [
    "sgd_bound",
    "best_constant_lr",
    "min_warmup_steps",
    "cosine_early_approx",
    "cosine_late_approx",
    "noisy_quadratic_second_moment",
    "stationary_second_moment",
    "average_regret",
    "river_trend_multiplier",
    "river_trend_rate",
]
