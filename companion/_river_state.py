r"""How :class:`companion.river.River` measures a batch and keeps and updates its state (6.5).

On the CPU the state is Python floats rounded to its dtype: reading a value is free there,
so the batch variance is read once and the update is plain float arithmetic, with no
torch operation (each costs microseconds of dispatch, more right after an optimizer
step). On an accelerator it is 0-d tensors, and no value is read back to the host: a
skipped batch is chosen with ``where``, not with a branch. River's one update is written
once on the operations of :class:`StateOps`, which both kinds provide.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

import torch

# How the averages start: (the first weights of u and r, whether they are bias-corrected).
# The weight of an accepted batch in u (in r) is w_u (w_r); "first" gives the first batch
# weight 1 (u_0 = V_0, r_0 = u_0), "zero" starts from u = r = 0 at the constant weights
# 1 - beta, and "zero-debiased" follows Adam's correction, which is the same as giving the
# t-th accepted batch the weight (1 - beta) / (1 - beta^(t + 1)) on the corrected averages.
INITS = {"first": ("one", False), "zero": ("rates", False), "zero-debiased": ("one", True)}


def _host_where(cond: Any, a: Any, b: Any) -> Any:
    return a if cond else b


def _host_clamp(x: Any, lo: Any, hi: Any) -> Any:
    """``torch.clamp`` on scalars (NaN stays NaN), by comparisons: no builtin called."""
    return lo if x < lo else hi if x > hi else x


def _host_mix(fit: Callable[[float], float], a: float, b: float, w: float) -> float:
    """``torch.lerp``'s formula on scalars (exact at ``w = 1``), rounded by ``fit``."""
    return fit(a + w * (b - a) if w < 0.5 else b - (b - a) * (1 - w))


def _identity(x: Any) -> Any:
    return x


_FLOAT32 = struct.Struct("f")
# Veltkamp's splitting (Dekker, 1971): for a double x, with c = 2^29 + 1 and g = c x, the
# sum g + (x - g) is x rounded to nearest on 53 - 29 = 24 significant bits, which is float32's
# rounding wherever float32 has all 24 bits and c x cannot overflow: 2^-126 <= |x| < 2^127.
# Three float operations, where ``struct`` costs microseconds on the cold caches right
# after an optimizer step (River rounds at each update). Tested against ``struct`` on every
# kind of double, ties (which go to the even neighbour) included.
_SPLITTER = 2.0**29 + 1.0
_NORMAL32 = (2.0**-126, 2.0**127)


def _round32(x: float) -> float:
    """``x`` rounded to float32 (infinite beyond its range, as ``.to(torch.float32)``)."""
    lo, hi = _NORMAL32
    if lo <= x < hi or -hi < x <= -lo:
        g = _SPLITTER * x
        return g + (x - g)
    try:  # zero, subnormal, near or beyond float32's largest, NaN, infinite
        return _FLOAT32.unpack(_FLOAT32.pack(x))[0]
    except OverflowError:  # e.g. a float64 variance reduced over ranks
        return math.copysign(math.inf, x)


# State dtypes that River keeps as Python floats when its state is on the CPU, and how a
# float is rounded to the dtype: each update is computed in float64 and stored rounded,
# so the state (and a state dict) holds values of the dtype, without a torch operation.
HOST_SCALARS = {torch.float32: _round32, torch.float64: float}


def batch_variance(losses: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    r""":math:`V_t` of one batch, in the state's ``dtype`` (at least float32).

    The variance of :math:`d_i = \ell_i - \ell_0`: shifting by one of the batch's own
    losses keeps it accurate however large the losses are against their spread (an
    untrained classifier's, all about :math:`\log 10`); :func:`torch.var_mean` then runs
    in one kernel. float32 on the CPU needs no shift: that kernel accumulates it in
    float64, whose error is far below an ulp of float32 even for losses one float32 ulp
    apart (and two operations fewer per batch).
    """
    x = losses.detach() if losses.requires_grad else losses
    x = x if x.dtype is dtype else x.to(dtype)
    return _unshifted_variance(x if dtype is torch.float32 and x.is_cpu else x - x[0])


def _unshifted_variance(x: torch.Tensor) -> torch.Tensor:
    """:func:`batch_variance` of float32 losses on the CPU, already of its dtype, no graph."""
    return torch.var_mean(x, correction=0)[0]


class StateOps:
    """A River's hyperparameters as scalars of its state, and the operations on them.

    The state is Python floats (rounded to its dtype by ``fit``) on the CPU, where
    branches on values cost nothing, and 0-d tensors on an accelerator (no value is read
    back: ``where`` instead of branches); the one update of :class:`River` runs on either.
    Tensor constants are built once: an operation with a Python number wraps it into a
    tensor on every call.
    """

    def __init__(self, cfg: Mapping[str, Any], dtype: torch.dtype, device: torch.device):
        self.dtype, self.device = dtype, device
        self.cpu = device.type == "cpu"  # where reading a value is free
        self.host = self.cpu and dtype in HOST_SCALARS
        # V_t of losses of the state's dtype on its device, 1-d, with no graph.
        self.variance: Callable[[torch.Tensor], torch.Tensor] = (
            _unshifted_variance
            if self.cpu and dtype is torch.float32
            else functools.partial(batch_variance, dtype=dtype)
        )
        if self.host:
            scalar: Any = HOST_SCALARS[dtype]
            self.where, self.clamp = _host_where, _host_clamp
            self.fit, self.mix = scalar, functools.partial(_host_mix, scalar)
        else:
            scalar = functools.partial(torch.tensor, dtype=dtype, device=device)
            self.where, self.clamp = torch.where, torch.clamp
            self.fit = _identity  # tensor operations round to the dtype already
            self.mix = torch.lerp
        lo, hi = cfg["clip"]
        self.neutral_value = min(max(1.0, lo), hi)
        self.rate_v, self.rate_r = scalar(1.0 - cfg["beta_v"]), scalar(1.0 - cfg["beta_r"])
        self.beta_v, self.beta_r = scalar(cfg["beta_v"]), scalar(cfg["beta_r"])
        start, self.debiased = INITS[cfg["init"]]
        self.start = (self.rate_v, self.rate_r) if start == "rates" else (scalar(1.0),) * 2
        self.relative = cfg["eps_mode"] == "relative"
        self.eps, self.inf, self.zero = scalar(cfg["eps"]), scalar(math.inf), scalar(0.0)
        self.one, self.lo, self.hi = scalar(1.0), scalar(lo), scalar(hi)
        self.neutral = scalar(self.neutral_value)

    def load(self, value: torch.Tensor) -> Any:
        """A 0-d tensor as a value of the state (dtype, device and kind)."""
        if self.host:
            return self.fit(value.item())  # on the CPU: reading is free
        return value.to(device=self.device, dtype=self.dtype)

    def export(self, value: Any) -> torch.Tensor:
        """A value of the state as a new 0-d tensor (never aliasing the state)."""
        if self.host:  # a float (scalar_tensor: a third of torch.tensor's cost)
            return torch.scalar_tensor(value, dtype=self.dtype)
        return value.clone()

    def multiplier(self, u: Any, r: Any) -> Any:
        r""":math:`\rho = \operatorname{clip}(r / (u + \epsilon r))`, or :math:`r / (u + \epsilon)`.

        Neutral where the quotient is undefined: where :math:`u + \epsilon r = 0` (that is,
        :math:`u = r = 0`) in relative mode, where :math:`r = 0` in absolute mode.
        """
        if self.relative:
            den = u + self.eps * r
            defined = den > self.zero
        else:
            den = u + self.eps
            defined = r > self.zero
        q = r / self.where(defined, den, self.one)
        return self.fit(self.where(defined, self.clamp(q, self.lo, self.hi), self.neutral))
