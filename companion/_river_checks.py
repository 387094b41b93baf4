r"""What :class:`companion.river.River` accepts: hyperparameters, losses, a state dict (6.5).

Each check names the argument, the allowed range and the value received, and runs before
anything changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from companion import _river_state
from companion._validation import check_choice, check_flag, check_integer, check_pair, check_real

EPS_MODES = ("relative", "absolute")
STATE_KEYS = ("v", "r", "step", "multiplier", "weights")
CONFIG_KEYS = ("beta_v", "beta_r", "eps", "eps_mode", "clip", "init", "use_current_batch",
                "dtype")  # fmt: skip


def check_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the hyperparameters (see :class:`River`); return them normalised."""
    out = {name: check_real(name, cfg[name], low=0, high=1, low_open=True, high_open=True)
           for name in ("beta_v", "beta_r")}  # fmt: skip
    out["eps"] = check_real("eps", cfg["eps"], low=0, low_open=True)
    out["eps_mode"] = check_choice("eps_mode", cfg["eps_mode"], EPS_MODES)
    lo, hi = check_pair("clip", cfg["clip"], low=0, low_open=True, allow_tensor=False)
    if lo > hi:
        raise ValueError(f"clip must be a pair with 0 < clip[0] <= clip[1], got {(lo, hi)!r}")
    out["clip"] = (lo, hi)
    out["init"] = check_choice("init", cfg["init"], tuple(_river_state.INITS))
    out["use_current_batch"] = check_flag("use_current_batch", cfg["use_current_batch"])
    dtype = out["dtype"] = cfg["dtype"]
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        error = ValueError if isinstance(dtype, torch.dtype) else TypeError
        raise error(f"dtype must be None or a floating torch.dtype, got {dtype!r}")
    return out


def losses_problem(losses: Any, device: torch.device | None, allow_empty: bool) -> Exception | None:
    """Why ``losses`` cannot be observed (``None``: they can), checked on the host."""
    if not isinstance(losses, torch.Tensor):
        return TypeError(f"per_example_losses must be a torch.Tensor, got {type(losses).__name__}")
    if not losses.is_floating_point() or losses.is_meta:
        what = "a meta tensor (no values)" if losses.is_meta else losses.dtype
        return TypeError(f"per_example_losses must be floating-point with values, got {what}")
    if losses.ndim != 1:
        return ValueError(
            "per_example_losses must be 1-d (one loss per example, reduction='none'), "
            f"got shape {tuple(losses.shape)}"
        )
    if losses.numel() == 0 and not allow_empty:
        return ValueError("per_example_losses must be non-empty, got 0 examples")
    if device is not None and losses.device != device:
        return ValueError(
            f"per_example_losses is on {losses.device}, River's state on {device}; keep one device"
        )
    return None


def checked_state(raw: Any, config: Mapping[str, Any], device: Any) -> dict[str, torch.Tensor]:
    """The state entries of a state dict, validated and moved to this River's device."""
    keys = (*STATE_KEYS, "observed")
    if not isinstance(raw, Mapping) or any(k not in raw for k in keys):
        raise ValueError(f"state_dict['state'] must be None or hold keys {keys}")
    shapes = {"weights": (2,)}
    for key in STATE_KEYS:
        value = raw[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shapes.get(key, ()):
            raise ValueError(
                f"state_dict['state'][{key!r}] must be a tensor of shape {shapes.get(key, ())}"
            )
    if any(raw[key].is_meta for key in STATE_KEYS):
        raise ValueError("state_dict['state'] holds meta tensors, which have no values")
    dtype = raw["v"].dtype
    if not dtype.is_floating_point or any(
        raw[k].dtype != dtype for k in ("r", "multiplier", "weights")
    ):
        raise ValueError("state_dict['state']: v, r, multiplier, weights need one floating dtype")
    if config["dtype"] is not None and dtype != config["dtype"]:
        raise ValueError(f"state_dict['state'] has dtype {dtype}, but dtype={config['dtype']}")
    if raw["step"].dtype != torch.int64:
        raise ValueError("state_dict['state']['step'] must be an int64 tensor")
    observed = check_integer("state_dict['state']['observed']", raw["observed"], low=0)
    # Loading is not in the training loop: reading values back is fine here.
    v, r, step = (raw[k].item() for k in ("v", "r", "step"))
    m, w = raw["multiplier"], raw["weights"]
    lo, hi = config["clip"]
    problems = {
        "v": not (math.isfinite(v) and v >= 0),
        "r": not (math.isfinite(r) and r >= 0),
        "step": not 0 <= step <= observed,
        "multiplier": not bool(torch.equal(m.clamp(lo, hi), m)),
        "weights": not bool(((w > 0) & (w <= 1)).all()),
    }
    bad = [k for k, problem in problems.items() if problem]
    if bad:
        raise ValueError(
            f"state_dict['state'] has invalid {bad} (need v, r finite >= 0, 0 <= step <= "
            f"observed, multiplier within clip={config['clip']}, weights in (0, 1])"
        )
    device = device if device is not None else m.device
    return {k: raw[k].detach().to(device, copy=True) for k in STATE_KEYS}
