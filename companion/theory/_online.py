"""Regret of the online problems of section 6.3 (numpy only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from companion._validation import (
    check_real,
    check_real_array,
)

__all__ = ["average_regret"]


def average_regret(played: npt.ArrayLike, grads: npt.ArrayLike, radius: float = 1.0) -> np.ndarray:
    r"""Average regret :math:`R(t)/t`, :math:`t = 1, \dots, T`, of an online linear problem (6.3.3).

    For linear losses :math:`f_t(w) = g_t\,w` on :math:`\mathcal K = [-r, r]` the best
    fixed point after :math:`t` rounds is :math:`-r\,\operatorname{sign}\sum_{s\le t} g_s`,
    so the regret of section 6.3.3 is a running sum:

    .. math::

        R(t) = \sum_{s=1}^{t} g_s\,w_s + r\,\Big|\sum_{s=1}^{t} g_s\Big| .

    Parameters
    ----------
    played : array_like
        :math:`w_1, \dots, w_T`, the points played (in :math:`[-r, r]`), e.g. all but
        the last entry of :func:`companion.problems.adam_family_online`.
    grads : array_like
        :math:`g_1, \dots, g_T`, finite reals, as many as ``played``.
    radius : float
        :math:`r > 0`, the half-width of :math:`\mathcal K`.

    Returns
    -------
    np.ndarray
        :math:`R(1)/1, \dots, R(T)/T`.

    Examples
    --------
    Playing :math:`w = +1` on the :math:`C = 3` problem costs :math:`2(C-2)/3 = 2/3`
    per round (section 6.3.3):

    >>> from companion.problems import reddi_gradients
    >>> g = reddi_gradients(300)
    >>> round(float(average_regret(np.ones(300), g)[-1]), 12)
    0.666666666667
    """

    radius = check_real("radius", radius, low=0, low_open=True)
    played = check_real_array("played", played, low=-radius, high=radius)
    grads = check_real_array("grads", grads)
    if played.shape != grads.shape:
        raise ValueError(
            f"played and grads must have the same length, got {played.size} and {grads.size}"
        )
    t = np.arange(1, grads.size + 1)
    return (np.cumsum(grads * played) + radius * np.abs(np.cumsum(grads))) / t
