"""The stationary multiplier of River's trend formula (section 6.5; numpy only)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from companion._validation import (
    check_real,
    check_real_array,
    is_real_scalar,
)

__all__ = ["river_trend_multiplier", "river_trend_rate"]


def _beta_r(beta_r: Any) -> float:
    """River's reference rate, in (0, 1)."""
    return check_real("beta_r", beta_r, low=0.0, high=1.0, low_open=True, high_open=True)


def river_trend_multiplier(g: npt.ArrayLike, beta_r: float = 0.999, eps: float = 0.0) -> Any:
    r"""The stationary River multiplier under a geometric variance trend (section 6.5).

    If the batch variances are :math:`V_t = V e^{g t}`, both averages of River become,
    after their transients, the same geometric sequence times constant factors: the fast
    average :math:`u_t` is :math:`V_t (1-\beta_v)/(1-\beta_v e^{-g})` and the reference
    :math:`r_t` is :math:`u_t (1-\beta_r)/(1-\beta_r e^{-g})`. The unclipped multiplier
    :math:`\rho_t = r_t / (u_t + \epsilon\, r_t)` (relative :math:`\epsilon`) tends to

    .. math::

        \rho_\infty(g) = \frac{q}{1 + \epsilon\, q},
        \qquad q = \frac{1-\beta_r}{1-\beta_r e^{-g}},
        \qquad g > \ln\beta_r,

    whatever :math:`\beta_v` and whatever the level :math:`V`. A rising variance
    (:math:`g > 0`) gives :math:`\rho_\infty < 1`, a falling one :math:`\rho_\infty > 1`;
    for :math:`g \le \ln\beta_r` the reference is dominated by its start and
    :math:`\rho_t` grows without bound (into the clip).

    Parameters
    ----------
    g : float or array_like
        Growth rate of the variance per batch; every entry must exceed
        :math:`\ln\beta_r`.
    beta_r : float
        Rate of the reference average, in (0, 1).
    eps : float
        River's relative :math:`\epsilon` (``eps_mode="relative"``), >= 0.

    Returns
    -------
    float, or numpy.ndarray shaped like ``g``

    See Also
    --------
    river_trend_rate : the inverse, the growth rate that gives a multiplier.

    Examples
    --------
    >>> round(river_trend_multiplier(0.0), 12)
    1.0
    >>> round(river_trend_multiplier(math.log(1e4) / 4000), 4)  # x 10^4 in 4000 steps
    0.3032
    """
    beta = _beta_r(beta_r)
    eps = check_real("eps", eps, low=0.0)
    if is_real_scalar(g):
        arr = np.float64(check_real("g", g))
    else:
        arr = check_real_array("g", g, ndim=None)
    critical = math.log(beta)
    if np.any(arr <= critical):
        raise ValueError(
            f"g must be a growth rate > ln(beta_r) = {critical!r} (below it the multiplier "
            f"has no stationary value), got {float(np.min(arr))!r}"
        )
    q = (1.0 - beta) / (1.0 - beta * np.exp(-arr))
    out = q / (1.0 + eps * q)
    return float(out) if out.ndim == 0 else out


def river_trend_rate(multiplier: float, beta_r: float = 0.999) -> float:
    r"""The variance growth rate whose stationary River multiplier is ``multiplier`` (section 6.5).

    The inverse of :func:`river_trend_multiplier` with :math:`\epsilon = 0`:

    .. math::

        g(\rho) = \ln\beta_r - \ln\Bigl(1 - \frac{1-\beta_r}{\rho}\Bigr),

    which tends to the critical rate :math:`\ln\beta_r` as :math:`\rho\to\infty`
    (``multiplier=math.inf``). With ``multiplier`` set to the clip's upper end
    :math:`\rho_{\max}`, it is the slowest steady fall of the variance that holds the
    multiplier at the clip; :math:`\ln 2 / (-g)` is then the corresponding halving time.

    Parameters
    ----------
    multiplier : float
        :math:`\rho > 1 - \beta_r` (the multiplier of an infinitely fast rise), or ``inf``.
    beta_r : float
        Rate of the reference average, in (0, 1).

    Returns
    -------
    float

    Examples
    --------
    >>> round(river_trend_rate(math.inf), 7)  # ln(0.999)
    -0.0010005
    >>> round(math.log(2) / -river_trend_rate(10.0))  # halving time reaching clip 10
    770
    """
    beta = _beta_r(beta_r)
    rho = check_real("multiplier", multiplier, low=1.0 - beta, low_open=True, finite=False)
    return math.log(beta) - math.log1p(-(1.0 - beta) / rho)
