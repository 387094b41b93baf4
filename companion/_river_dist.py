r"""River under ``torch.distributed``: the batch statistics reduced over the ranks (6.5).

Each rank passes only its shard :math:`B_t^{(k)}` of batch :math:`B_t`. So that every rank
holds the same multiplier, :class:`companion.river.River` takes the batch to be the union of
the shards and reduces its statistics with two all-reduces (``SUM``) of float64 vectors of
fixed length, never an all-gather of the losses:

.. math::
    A = \Bigl[\sum_i \ell_i,\ N_k,\ c,\ c^2,\ e,\ e^2,\ \text{bad}\Bigr], \qquad
    B = \Bigl[\sum_i d_i,\ \sum_i d_i^2\Bigr], \quad d_i = \ell_i - \mu,\ \mu = A_0 / A_1,

and :math:`V_t = B_1 / N - (B_0 / N)^2` with :math:`N = A_1`: the corrected two-pass
formula around the exact global mean (Chan, Golub & LeVeque, 1983), as accurate as one
process on the whole batch. :math:`c` and :math:`e` are codes of each rank's loss dtype and
device type: with :math:`W` ranks, :math:`W \sum c^2 = (\sum c)^2` holds exactly if and only
if all codes are equal, so ranks that differ (or pass invalid losses, ``bad``) make every
rank raise instead of hanging.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
import torch.distributed as dist

# Whether this torch build has torch.distributed at all (a build-time constant).
AVAILABLE = dist.is_available()


@lru_cache(maxsize=64)
def code(name: str) -> int:
    """A small deterministic code (1 ... 1021) of a dtype or device-type name."""
    return zlib.crc32(name.encode()) % 1021 + 1


def check_process_group(process_group: Any) -> Any:
    """``"auto"``, ``None`` or a ``torch.distributed.ProcessGroup``; anything else raises."""
    if process_group is None or (isinstance(process_group, str) and process_group == "auto"):
        return process_group
    if AVAILABLE and isinstance(process_group, dist.ProcessGroup):
        return process_group
    if (
        AVAILABLE
        and isinstance(process_group, int)
        and process_group == dist.GroupMember.NON_GROUP_MEMBER
    ):
        raise ValueError(
            "process_group: this rank is not a member of the group (new_group returned "
            "GroupMember.NON_GROUP_MEMBER); give such ranks process_group=None"
        )
    error = ValueError if isinstance(process_group, str) else TypeError
    raise error(
        "process_group must be 'auto', None or a torch.distributed.ProcessGroup, "
        f"got {process_group!r}"
    )


# Where torch keeps the default group: ``dist.is_initialized()`` reads this slot through
# two properties, microseconds on the cold caches right after an optimizer step, at every
# observe. Read directly where this torch has it (checked at import; else the public call).
_WORLD = getattr(getattr(dist, "distributed_c10d", None), "_world", None) if AVAILABLE else None
_DIRECT = _WORLD is not None and hasattr(_WORLD, "_default_pg")


def is_local(spec: Any) -> bool:
    """Whether ``spec`` reduces over no other rank now, told cheaply (no group: ``None``,
    or ``"auto"`` before ``torch.distributed`` is initialised)."""
    if spec is None:
        return True
    if spec.__class__ is not str:
        return False
    return _WORLD._default_pg is None if _DIRECT else not (AVAILABLE and dist.is_initialized())


def active_group(spec: Any) -> Any:
    """The group to reduce over now, or ``None`` (no group, or a group of one process)."""
    if spec is None:
        return None
    if isinstance(spec, str):  # "auto": the default group, once there is one
        if not (AVAILABLE and dist.is_initialized()):
            return None
        spec = dist.group.WORLD
    return spec if dist.get_world_size(spec) > 1 else None


def _device_types(group: Any) -> tuple[str, ...]:
    """Device types the group's backends reduce on, e.g. ``("cpu", "cuda")`` for gloo."""
    config = dist.get_backend_config(group)  # e.g. "cpu:gloo,cuda:nccl"
    return tuple(part.split(":")[0].strip() for part in config.split(",") if ":" in part)


def _reduction_device(types: tuple[str, ...], device: torch.device) -> torch.device:
    """The losses' device if the group reduces there, else the CPU or the group's device."""
    if device.type in types:
        return device
    if "cpu" in types or not types:
        return torch.device("cpu")
    if types[0] == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(types[0])


def _descriptor_problem(a: Sequence[float], world: int) -> str | None:
    """What the summed descriptor of vector A says is wrong (``None``: nothing)."""
    if a[6] > 0:  # such ranks send no descriptor
        return f"{int(a[6])} rank(s) passed invalid per_example_losses (see their error)"
    wrong = []
    if world * a[3] != a[2] * a[2]:
        wrong.append("the ranks' per_example_losses have different dtypes")
    if world * a[5] != a[4] * a[4]:
        wrong.append("the ranks' per_example_losses are on different device types")
    return "; ".join(wrong) or None


def reduced_variance(
    losses: Any,
    problem: Exception | None,
    group: Any,
    verified: tuple[torch.dtype, torch.device] | None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.dtype, torch.device]]:
    """:math:`V_t` of the union of the ranks' shards, and whether to accept the batch.

    ``problem`` is this rank's own verdict on its losses (``None``: valid); such a rank
    still takes part in both collectives, flagged, then raises it, so no rank is left
    waiting. ``verified`` is the (dtype, device) whose agreement across ranks was last
    read on the host: the verdict is read where that is free (reduction on the CPU) and
    otherwise only when it changes (one synchronisation), so later calls enqueue their
    collectives without waiting for the device.

    Returns
    -------
    tuple
        ``(variance, accept, verified)``: a 0-d float64 tensor and a 0-d bool tensor (the
        batch has two examples or more in all and the ranks agree), on the reduction device.
    """
    world = dist.get_world_size(group)
    types = _device_types(group)
    if problem is None:
        desc = (losses.dtype, losses.device)
        device = _reduction_device(types, losses.device)
        x = losses.detach().to(device=device, dtype=torch.float64)
        c, e = code(str(losses.dtype)), code(losses.device.type)
        head = (x.numel(), c, c * c, e, e * e, 0)
    else:
        desc = verified or (None, torch.device("cpu"))
        device = _reduction_device(types, desc[1])
        x = torch.zeros(0, dtype=torch.float64, device=device)
        head = (0, 0, 0, 0, 0, 1)
    # A = [sum l, N, c, c^2, e, e^2, bad]; a non-blocking copy of host values: no sync.
    a = torch.cat(
        [x.sum().reshape(1), torch.tensor(head, dtype=x.dtype).to(device, non_blocking=True)]
    )
    dist.all_reduce(a, group=group)
    if device.type == "cpu" or verified is None or desc != verified:
        found = _descriptor_problem(a.tolist(), world)
        if problem is not None:
            raise problem
        if found is not None:
            raise ValueError(
                f"River over a process group of {world} ranks: {found}. This rank passed "
                f"{losses.dtype} losses on {losses.device}; every rank must pass the same "
                "dtype on the same device type (or use River(process_group=None))"
            )
        verified = desc
    d = x - a[0] / a[1]  # around the global mean: one shift on all ranks
    b = torch.stack([d.sum(), torch.dot(d, d)])
    dist.all_reduce(b, group=group)
    if problem is not None:
        raise problem
    mean = b[0] / a[1]
    variance = torch.addcmul(b[1] / a[1], mean, mean, value=-1.0).clamp_min_(0.0)
    # Skip on every rank alike: fewer than 2 examples in all, or a descriptor mismatch
    # that this rank did not read (the mismatching rank raises).
    accept = (a[1] >= 2) & (a[3] * world == a[2] * a[2]) & (a[5] * world == a[4] * a[4])
    return variance, accept & (a[6] == 0), verified
