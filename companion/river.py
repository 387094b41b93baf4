r"""The River multiplier: a learning-rate factor driven by the trend of the loss variance.

Section 6.5 of the chapter (overview in 6.2.2). The learning rate of step :math:`t` is a
time-based schedule times a multiplier computed from the spread of the per-example losses,

.. math:: \eta_t = \eta^{\text{global}}_t \, m_t .

This is the book's *illustrative heuristic*, named after the river-valley metaphor; it is
not a published method. (The draft attributed it to arXiv:2410.05192, which is Wen et al.,
"Understanding Warmup-Stable-Decay Learning Rates: A River Valley Loss Landscape
Perspective" (2024): that paper explains WSD schedules with a river-valley landscape and
contains no such multiplier.) Its closest published relatives use the *gradient* variance
instead: vSGD (Schaul, Zhang & LeCun, 2013), M-SVAG (Balles & Hennig, 2018), the gradient
noise scale (McCandlish et al., 2018).

The multiplier reacts to the *trend* of the loss variance, not to its level: under any
constant variance :math:`m_t \to 1`; :math:`m_t < 1` while the variance rises and
:math:`m_t > 1` while it falls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["River"]

_INITS = ("first", "zero", "zero-debiased")
_EPS_MODES = ("relative", "absolute")
_STATE_KEYS = ("v", "r", "step", "multiplier")
_CONFIG_KEYS = (
    "beta_v",
    "beta_r",
    "eps",
    "eps_mode",
    "clip",
    "init",
    "use_current_batch",
    "dtype",
)


def _batch_moments(losses: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    r"""Count, sum and sum of squares of one batch of losses: :math:`(N, \sum L_i, \sum L_i^2)`.

    These add up across batches or devices (an all-reduce with ``SUM``), which is why the
    variance is computed from them. The sums are accumulated in float64 (float32 on MPS,
    which has no float64), so :math:`\sum L_i^2/N - \bar L^2` keeps about
    :math:`16 - \log_{10}(\bar L^2/\operatorname{Var})` significant digits.

    Parameters
    ----------
    losses : torch.Tensor
        1-d per-example losses.

    Returns
    -------
    tuple
        ``(N, sum, sum_of_squares)``: a Python int and two 0-d tensors on ``losses.device``.
    """
    x = losses.to(torch.float32 if losses.device.type == "mps" else torch.float64)
    return x.numel(), x.sum(), torch.dot(x, x)


def _variance_from_moments(
    count: int | torch.Tensor, total: torch.Tensor, total_sq: torch.Tensor
) -> torch.Tensor:
    r"""Population variance from :func:`_batch_moments`' output.

    .. math::
        \operatorname{Var} = \max\Bigl(0,\ \frac{\sum L_i^2}{N}
        - \Bigl(\frac{\sum L_i}{N}\Bigr)^2\Bigr)
    """
    mean = total / count
    return torch.addcmul(total_sq / count, mean, mean, value=-1.0).clamp_min(0.0)


def _check_beta(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


def _check_config(
    beta_v: Any,
    beta_r: Any,
    eps: Any,
    eps_mode: Any,
    clip: Any,
    init: Any,
    use_current_batch: Any,
    dtype: Any,
) -> dict[str, Any]:
    """Validate the hyperparameters; return them normalised (floats, a tuple clip)."""
    beta_v = _check_beta("beta_v", beta_v)
    beta_r = _check_beta("beta_r", beta_r)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise ValueError(f"eps must be a positive finite float, got {eps!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0.0):
        raise ValueError(f"eps must be a positive finite float (eps > 0), got {eps!r}")
    if eps_mode not in _EPS_MODES:
        raise ValueError(f"eps_mode must be one of {_EPS_MODES}, got {eps_mode!r}")
    if (
        isinstance(clip, (str, bytes))
        or not isinstance(clip, Sequence)
        or len(clip) != 2
        or any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in clip)
    ):
        raise ValueError(f"clip must be a pair (m_min, m_max) of floats, got {clip!r}")
    m_min, m_max = float(clip[0]), float(clip[1])
    if not (math.isfinite(m_min) and math.isfinite(m_max)):
        raise ValueError(f"clip must be finite: 0 < m_min <= m_max < inf, got {clip!r}")
    if m_min <= 0.0:
        raise ValueError(f"clip's m_min must be > 0 (0 < m_min <= m_max), got {clip!r}")
    if m_min > m_max:
        raise ValueError(f"clip needs m_min <= m_max (0 < m_min <= m_max), got {clip!r}")
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    if not isinstance(use_current_batch, bool):
        raise ValueError(f"use_current_batch must be a bool, got {use_current_batch!r}")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be None or a floating torch.dtype, got {dtype!r}")
    return {
        "beta_v": beta_v,
        "beta_r": beta_r,
        "eps": eps,
        "eps_mode": eps_mode,
        "clip": (m_min, m_max),
        "init": init,
        "use_current_batch": use_current_batch,
        "dtype": dtype,
    }


class River:
    r"""Landscape-aware learning-rate multiplier from the per-example loss variance.

    Section 6.5 (overview in 6.2.2). Each call of :meth:`observe` with the per-example
    losses :math:`L_t(i),\ i \in B_t,\ |B_t| = N` of an accepted batch (index :math:`t`
    counts accepted batches, :math:`t = 1, 2, \dots`) runs the four steps:

    1. instantaneous roughness, the population variance (divisor :math:`N`, as the draft):

       .. math::
           \bar L_t = \frac1N \sum_{i \in B_t} L_t(i), \qquad
           \operatorname{Var}_t = \frac1N \sum_{i \in B_t} \bigl(L_t(i) - \bar L_t\bigr)^2 ;

    2. smoothed roughness, an EMA with rate :math:`\beta_v`:

       .. math:: v_t = \beta_v v_{t-1} + (1 - \beta_v) \operatorname{Var}_t ;

    3. target roughness, a slower EMA of :math:`v_t` with rate :math:`\beta_r`, and the
       clipped multiplier:

       .. math::
           v^{\text{target}}_t = \beta_r v^{\text{target}}_{t-1} + (1 - \beta_r) v_t,
           \qquad
           m_t = \operatorname{clip}\Bigl(\frac{v^{\text{target}}_t}{v_t + \epsilon},\
           m_{\min},\ m_{\max}\Bigr) ;

    4. the learning rate :math:`\eta_t = \eta^{\text{global}}_t\, m` is set by the
       scheduler (:class:`companion.lr_scheduler.ScheduledLR` with ``multiplier=river``),
       which reads :attr:`multiplier`.

    This is the book's illustrative heuristic, not a published method (see the module
    docstring: arXiv:2410.05192 is Wen et al.'s river-valley paper on WSD, which contains no
    such multiplier). It follows the *trend* of the variance: for a constant variance,
    whatever its level, :math:`m_t \to 1`.

    Parameters
    ----------
    beta_v : float, default 0.99
        Rate of the fast EMA, in (0, 1).
    beta_r : float, default 0.999
        Rate of the target EMA, in (0, 1). The draft leaves it open; it should exceed
        ``beta_v`` for the target to be the slower average.
    eps : float, default 1e-8
        :math:`\epsilon > 0`, see ``eps_mode``.
    eps_mode : {"relative", "absolute"}, default "relative"
        ``"relative"``: :math:`\epsilon_t = \epsilon\, v^{\text{target}}_t`, so
        :math:`m_t = 1 / (v_t / v^{\text{target}}_t + \epsilon)` does not depend on the
        scale of the loss and never exceeds :math:`1/\epsilon`. ``"absolute"``: the draft's
        constant :math:`\epsilon`, in squared loss units.
    clip : tuple of float, default (0.1, 10.0)
        :math:`(m_{\min}, m_{\max})` with :math:`0 < m_{\min} \le m_{\max} < \infty`.
    init : {"first", "zero", "zero-debiased"}, default "first"
        How both EMAs start (the draft leaves it open):

        * ``"first"``: :math:`v_1 = \operatorname{Var}_1`,
          :math:`v^{\text{target}}_1 = v_1`, hence :math:`m_1 = 1/(1+\epsilon)`;
        * ``"zero"``: :math:`v_0 = v^{\text{target}}_0 = 0`, no correction; gives
          :math:`m_1 \approx 1 - \beta_r` (clipped), a data-independent warmup with time
          constant about :math:`1/(1-\beta_r)` steps;
        * ``"zero-debiased"``: zero start with Adam's bias correction,
          :math:`\hat v_t = v_t/(1-\beta_v^t)`, the target is the EMA of
          :math:`\hat v_t` and is read as :math:`\hat v^{\text{target}}_t =
          v^{\text{target}}_t/(1-\beta_r^t)`, and :math:`m_t` uses the corrected pair;
          :math:`m_1 = 1/(1+\epsilon)` as with ``"first"``.
    use_current_batch : bool, default False
        Whether the multiplier that :meth:`observe` leaves in :attr:`multiplier` already
        includes the batch just observed. ``False`` (default): after observing batch
        :math:`t` the multiplier is :math:`m_{t-1}` (from :math:`v_{t-1}` and
        :math:`v^{\text{target}}_{t-1}`), so it never depends on the losses it was just
        given — the learning rate of a step is independent of that step's batch even if
        ``observe`` is called before ``optimizer.step()`` (the draft's correlation between
        :math:`\eta_t` and :math:`g_t`, section 6.5). In the recommended loop below this
        costs one extra step of lag, negligible next to the EMA's :math:`1/(1-\beta_v)`.
        ``True``: the multiplier is :math:`m_t`; in the recommended loop it is still only
        used from the next step on.
    dtype : torch.dtype, optional
        Floating dtype of the state. Default: the losses' dtype promoted to at least
        float32 (float32 for half, bfloat16 and float32 losses; float64 for float64).

    Notes
    -----
    *State and devices.* The state is created on the first :meth:`observe`, on the losses'
    device, and never leaves it: no operation reads a value back to the host, so a CUDA
    training loop is not synchronised. Batch statistics are accumulated as shifted power
    sums :math:`[N, \sum d_i, \sum d_i^2]`, :math:`d_i = L_t(i) - c`, in float64 (float32
    on MPS), with the shift :math:`c` the mean loss of the previous accepted batch (0 for
    the first), so the variance does not suffer from cancellation; these sums can be
    all-reduced across devices.

    *Degenerate batches.* A batch with fewer than two examples (its variance, 0, says
    nothing about spread) or with a non-finite loss is *skipped*: the EMAs, the step count
    and the shift keep their values (selected with :func:`torch.where`, no host branch) and
    :attr:`num_skipped` is incremented. The multiplier stays finite and inside ``clip``.
    Before the first accepted batch the multiplier is 1 (clipped into ``clip``); before
    the first :meth:`observe` it is that value as a 0-d float32 tensor on the CPU. With
    ``eps_mode="relative"``, if :math:`v_t = v^{\text{target}}_t = 0` (only zero-variance
    batches so far) :math:`m_t := 1`.

    *Interpolation.* When the model fits the batch exactly, :math:`v_t \to 0` and
    :math:`m_t` sits at :math:`m_{\max}` (ERRATA 22): the clip range matters.

    The recommended loop (the learning rate of step :math:`t` never sees batch :math:`t`)::

        losses = loss_fn(model(x), y, reduction="none")
        losses.mean().backward()
        optimizer.step(); optimizer.zero_grad()
        river.observe(losses.detach())
        scheduler.step()               # next lr = s(t + 1) * river.multiplier

    Examples
    --------
    >>> import torch
    >>> river = River(beta_v=0.9, beta_r=0.99, use_current_batch=True)
    >>> _ = river.observe(torch.tensor([0.0, 2.0]))   # Var = 1: v = 1, target = 1
    >>> round(float(river.multiplier), 6)
    1.0
    >>> _ = river.observe(torch.tensor([0.0, 4.0]))   # Var = 4: v = 1.3, target = 1.003
    >>> round(float(river.multiplier), 4)              # 1.003 / 1.3: the variance rose
    0.7715
    """

    def __init__(
        self,
        beta_v: float = 0.99,
        beta_r: float = 0.999,
        eps: float = 1e-8,
        eps_mode: str = "relative",
        clip: tuple[float, float] = (0.1, 10.0),
        init: str = "first",
        use_current_batch: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        self._set_config(
            _check_config(beta_v, beta_r, eps, eps_mode, clip, init, use_current_batch, dtype)
        )
        self._state: dict[str, torch.Tensor] | None = None
        self._next: torch.Tensor | None = None  # m from the current state (past mode)
        self._multiplier = torch.tensor(self._neutral, dtype=torch.float32)

    # ------------------------------------------------------------------ configuration
    def _set_config(self, config: Mapping[str, Any]) -> None:
        self.beta_v: float = config["beta_v"]
        self.beta_r: float = config["beta_r"]
        self.eps: float = config["eps"]
        self.eps_mode: str = config["eps_mode"]
        self.clip: tuple[float, float] = tuple(config["clip"])  # type: ignore[assignment]
        self.init: str = config["init"]
        self.use_current_batch: bool = config["use_current_batch"]
        self.dtype: torch.dtype | None = config["dtype"]
        self._neutral = min(max(1.0, self.clip[0]), self.clip[1])

    def _config(self) -> dict[str, Any]:
        return {
            "beta_v": self.beta_v,
            "beta_r": self.beta_r,
            "eps": self.eps,
            "eps_mode": self.eps_mode,
            "clip": self.clip,
            "init": self.init,
            "use_current_batch": self.use_current_batch,
            "dtype": self.dtype,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"River({args})"

    # ------------------------------------------------------------------ read-only views
    @property
    def multiplier(self) -> torch.Tensor:
        """The current multiplier :math:`m`, a 0-d tensor (replaced, not updated in place)."""
        return self._multiplier

    @property
    def variance(self) -> torch.Tensor | None:
        r"""Smoothed roughness :math:`v_t` (:math:`\hat v_t` for ``"zero-debiased"``)."""
        return None if self._state is None else self._estimates(self._state)[0]

    @property
    def target(self) -> torch.Tensor | None:
        r"""Target roughness :math:`v^{\text{target}}_t` (bias-corrected if so configured)."""
        return None if self._state is None else self._estimates(self._state)[1]

    @property
    def num_accepted(self) -> torch.Tensor | None:
        """Number of batches that entered the EMAs (0-d int64 tensor)."""
        return None if self._state is None else self._state["step"]

    @property
    def num_skipped(self) -> torch.Tensor | None:
        """Number of batches skipped (fewer than 2 examples or a non-finite loss)."""
        return None if self._state is None else self._state["skipped"]

    # ------------------------------------------------------------------ the update
    def _new_state(self, losses: torch.Tensor) -> dict[str, torch.Tensor]:
        dtype = self.dtype or torch.promote_types(losses.dtype, torch.float32)
        zero = torch.zeros((), dtype=dtype, device=losses.device)
        count = torch.zeros((), dtype=torch.int64, device=losses.device)
        return {
            "v": zero,
            "r": zero.clone(),
            "step": count,
            "skipped": count.clone(),
            "shift": zero.clone(),
            "multiplier": torch.full((), self._neutral, dtype=dtype, device=losses.device),
        }

    def _estimates(self, state: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(v, target) as they enter the multiplier: bias-corrected for "zero-debiased"."""
        v, r = state["v"], state["r"]
        if self.init != "zero-debiased":
            return v, r
        t = state["step"].clamp_min(1).to(v.dtype)
        return v / (1.0 - torch.pow(self.beta_v, t)), r / (1.0 - torch.pow(self.beta_r, t))

    def _multiplier_of(self, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        r"""Clipped :math:`v^{\text{target}}/(v + \epsilon)`; the neutral value before data."""
        v, r = self._estimates(state)
        eps = self.eps * r if self.eps_mode == "relative" else self.eps
        denom = v + eps
        ok = (state["step"] > 0) & (denom > 0)
        m = torch.where(ok, r / torch.where(ok, denom, 1.0), 1.0)
        return m.clamp(self.clip[0], self.clip[1])

    def observe(self, per_example_losses: torch.Tensor) -> torch.Tensor:
        r"""Update the roughness estimates with one batch of per-example losses.

        Parameters
        ----------
        per_example_losses : torch.Tensor
            1-d, non-empty, floating: the losses of the batch's examples (e.g. from a loss
            with ``reduction="none"``). Detached internally. Must stay on one device.

        Returns
        -------
        torch.Tensor
            The new :attr:`multiplier` (0-d, on the losses' device).

        Raises
        ------
        ValueError
            If the losses are not a 1-d non-empty floating tensor, or are on another device
            than the state.
        """
        losses = per_example_losses
        if not isinstance(losses, torch.Tensor):
            raise ValueError(
                f"per_example_losses must be a torch.Tensor, got {type(losses).__name__}"
            )
        if losses.ndim != 1:
            raise ValueError(
                "per_example_losses must be 1-d (one loss per example, reduction='none'), "
                f"got shape {tuple(losses.shape)}"
            )
        if losses.numel() == 0:
            raise ValueError("per_example_losses must be non-empty, got 0 examples")
        if not losses.is_floating_point():
            raise ValueError(f"per_example_losses must be floating-point, got {losses.dtype}")
        if self._state is None:
            self._state = self._new_state(losses)
            self._next = self._state["multiplier"]
        state = self._state
        if losses.device != state["v"].device:
            raise ValueError(
                f"per_example_losses is on {losses.device}, River's state on "
                f"{state['v'].device}; keep one device"
            )
        losses = losses.detach()

        # Step 1: batch statistics.
        moments = _batch_moments(losses, state["shift"])
        var, mean = _variance_from_moments(moments, state["shift"])
        dtype = state["v"].dtype
        var, mean = var.to(dtype), mean.to(dtype)

        # Steps 2-3: the two EMAs, computed as if the batch were accepted.
        v_old, r_old, step = state["v"], state["r"], state["step"]
        if self.init == "first":
            first = step == 0
            v_new = torch.where(first, var, torch.lerp(v_old, var, 1.0 - self.beta_v))
            r_new = torch.where(first, v_new, torch.lerp(r_old, v_new, 1.0 - self.beta_r))
        elif self.init == "zero":
            v_new = torch.lerp(v_old, var, 1.0 - self.beta_v)
            r_new = torch.lerp(r_old, v_new, 1.0 - self.beta_r)
        else:  # zero-debiased: the target averages the bias-corrected v
            v_new = torch.lerp(v_old, var, 1.0 - self.beta_v)
            t = (step + 1).to(dtype)
            r_new = torch.lerp(r_old, v_new / (1.0 - torch.pow(self.beta_v, t)), 1.0 - self.beta_r)

        # Skip degenerate batches: fewer than 2 examples or anything non-finite.
        valid = (moments[0] >= 2) & torch.isfinite(var) & torch.isfinite(r_new)
        new_state = {
            "v": torch.where(valid, v_new, v_old),
            "r": torch.where(valid, r_new, r_old),
            "step": step + valid,
            "skipped": state["skipped"] + ~valid,
            "shift": torch.where(valid, mean, state["shift"]),
        }
        m_new = self._multiplier_of(new_state)
        new_state["multiplier"] = m_new if self.use_current_batch else self._next
        self._next = m_new
        self._state = new_state
        self._multiplier = new_state["multiplier"]
        return self._multiplier

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and state (tensors cloned); ``"state"`` is None before data.

        Saving it with :func:`torch.save` and restoring it with :meth:`load_state_dict`
        continues bit for bit.
        """
        state = None
        if self._state is not None:
            state = {k: self._state[k].detach().clone() for k in _STATE_KEYS}
        return {**self._config(), "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and state from :meth:`state_dict`'s output.

        Everything is validated before anything changes. The hyperparameters are taken from
        the dictionary (as ``torch.optim`` does for its parameter groups). The tensors keep
        their dtype; they are moved to the device of this River's state if it has one, and
        otherwise stay where they are (use ``torch.load(..., map_location=...)``).

        Raises
        ------
        ValueError
            If a key is missing, a hyperparameter is invalid, or a state tensor has the
            wrong shape, dtype or value.
        """
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        missing = [k for k in (*_CONFIG_KEYS, "state") if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict is missing keys {missing}")
        config = _check_config(*(state_dict[k] for k in _CONFIG_KEYS))
        raw = state_dict["state"]
        new_state: dict[str, torch.Tensor] | None = None
        if raw is not None:
            if not isinstance(raw, Mapping) or any(k not in raw for k in _STATE_KEYS):
                raise ValueError(f"state_dict['state'] must be None or hold keys {_STATE_KEYS}")
            tensors = {k: raw[k] for k in _STATE_KEYS}
            for key, value in tensors.items():
                if not isinstance(value, torch.Tensor) or value.ndim != 0:
                    raise ValueError(f"state_dict['state'][{key!r}] must be a 0-d tensor")
            floats = ("v", "r", "shift", "multiplier")
            dtype = tensors["v"].dtype
            if not dtype.is_floating_point or any(tensors[k].dtype != dtype for k in floats):
                raise ValueError(
                    "state_dict['state']: v, r, shift, multiplier need one float dtype"
                )
            if config["dtype"] is not None and dtype != config["dtype"]:
                raise ValueError(f"state_dict['state'] has dtype {dtype}, dtype={config['dtype']}")
            if any(tensors[k].dtype != torch.int64 for k in ("step", "skipped")):
                raise ValueError("state_dict['state']: step and skipped must be int64")
            # Loading is not in the training loop: reading values back is fine here.
            lo, hi = config["clip"]
            checks = {
                "v": lambda x: math.isfinite(x) and x >= 0,
                "r": lambda x: math.isfinite(x) and x >= 0,
                "shift": math.isfinite,
                "step": lambda x: x >= 0,
                "skipped": lambda x: x >= 0,
            }
            m = tensors["multiplier"]
            if not bool(torch.equal(m.clamp(lo, hi), m)):
                raise ValueError(
                    f"state_dict['state']['multiplier'] = {m.item()!r} is outside clip={config['clip']}"
                )
            for key, check in checks.items():
                if not check(tensors[key].item()):
                    raise ValueError(
                        f"state_dict['state'][{key!r}] = {tensors[key].item()!r} is invalid"
                    )
            device = self._state["v"].device if self._state is not None else tensors["v"].device
            new_state = {k: t.detach().to(device, copy=True) for k, t in tensors.items()}
        # Validated: now mutate.
        self._set_config(config)
        self._state = new_state
        if new_state is None:
            self._next = None
            self._multiplier = torch.tensor(self._neutral, dtype=torch.float32)
        else:
            self._next = self._multiplier_of(new_state)
            self._multiplier = new_state["multiplier"]
