"""Toy objectives and small data sets for the notebooks (not used by the core layers).

Everything here is deterministic given its ``seed``: the chapters' numbers are
reproducible build after build.

* the digits data set and a small MLP (sections 6.3 and 6.5);
* the ill-conditioned quadratic (6.1), the scripted and noisy quadratics and the tilted
  double well (6.4);
* Reddi et al.'s online problem and the Adam-family runners on it (6.3);
* River on scripted variance sequences, least squares and the loss spread (6.5).
"""

from __future__ import annotations

from companion.problems._data import Split, digits, mlp
from companion.problems._online import adam_family_online, reddi_gradients, run_on_gradients
from companion.problems._quadratics import (
    TiltedDoubleWell,
    falling_sharpness,
    noise_ball_second_moment,
    noisy_quadratic_sgd,
    quadratic_gd_losses,
    quadratic_gd_steps,
    scripted_quadratic_path,
)
from companion.problems._river import (
    LeastSquares,
    LeastSquaresRun,
    least_squares,
    loss_spread_and_gradient_noise,
    river_on_script,
    sgd_least_squares,
)

__all__ = [
    "LeastSquares",
    "LeastSquaresRun",
    "least_squares",
    "loss_spread_and_gradient_noise",
    "river_on_script",
    "sgd_least_squares",
    "Split",
    "TiltedDoubleWell",
    "adam_family_online",
    "digits",
    "falling_sharpness",
    "mlp",
    "noise_ball_second_moment",
    "noisy_quadratic_sgd",
    "quadratic_gd_losses",
    "quadratic_gd_steps",
    "reddi_gradients",
    "run_on_gradients",
    "scripted_quadratic_path",
]
