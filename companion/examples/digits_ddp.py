r"""The digits MLP trained on several processes: DDP, companion AdamW, cosine schedule, River.

Two CPU processes (gloo), or one process per GPU (NCCL) with ``--nproc_per_node`` GPUs::

    torchrun --nproc_per_node 2 -m companion.examples.digits_ddp

One process, the same figures (no ``torch.distributed`` at all)::

    python -m companion.examples.digits_ddp

Each rank trains on its contiguous share of every batch of ``--batch-size`` examples (the
global batch: the same examples, in the same order, as one process would use).
``DistributedDataParallel`` averages the gradients over the ranks, so with equal shares
every rank applies the gradient of the whole batch; the companion optimizers and
:class:`~companion.lr_scheduler.ScheduledLR` need no change for that. The one thing that
does change is the :class:`~companion.river.River` multiplier: it is computed from the
spread of the per-example losses of the *whole* batch, so it all-reduces the count, sum
and sum of squares of the losses over the ranks (``process_group="auto"``, the default).
``--local-river`` turns that off (``process_group=None``): each rank then follows the
variance of its own half, gets its own learning rate, and the replicas drift apart -- the
script prints by how much.

``--fsdp`` shards the parameters themselves instead, with FSDP2
(:func:`torch.distributed.fsdp.fully_shard` on each linear layer and on the model): every
parameter becomes a ``DTensor`` of which each rank holds one slice, and the optimizer
updates its slices only. The companion optimizers work element by element, so nothing
changes for them either.

Options: ``--epochs``, ``--batch-size`` (global, a multiple of the number of ranks),
``--lr``, ``--hidden``, ``--dtype {float32,float64}``, ``--device``, ``--zero`` (shard the
optimizer state with :class:`torch.distributed.optim.ZeroRedundancyOptimizer`), ``--fsdp``,
``--local-river``, ``--save PATH`` (rank 0 saves the trained model's full ``state_dict``),
``--json PATH`` (rank 0 writes the figures), ``--quiet``. Needs scikit-learn for the data
(``pip install companion[book]``).

:func:`companion.examples.launch.launch` starts the example on several CPU processes from
Python (with ``python -m torch.distributed.run``) and returns the figures.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn import functional as F

from companion.lr_scheduler import ScheduledLR
from companion.optim import AdamW
from companion.problems import digits, mlp
from companion.river import River
from companion.schedules import cosine
from companion.training import evaluate

__all__ = ["main", "max_difference"]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m companion.examples.digits_ddp",
        description="The digits MLP on one or several processes (torchrun).",
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--lr", type=float, default=1e-2, help="peak learning rate")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK or cpu")
    sharding = parser.add_mutually_exclusive_group()
    sharding.add_argument("--zero", action="store_true", help="ZeroRedundancyOptimizer(AdamW)")
    sharding.add_argument("--fsdp", action="store_true", help="FSDP2: fully_shard the model")
    parser.add_argument("--local-river", action="store_true", help="River(process_group=None)")
    parser.add_argument("--save", default=None, help="rank 0 saves the model's state_dict here")
    parser.add_argument("--json", default=None, help="rank 0 writes the figures here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be >= 1")
    return args


def _max_spread(tensors: list[torch.Tensor], world: int) -> float:
    """Largest difference between any rank's copy of ``tensors`` and rank 0's."""
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    if world == 1:
        return 0.0
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    spread = (flat - reference).abs().max()
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    return float(spread)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, evaluate, print a summary on rank 0 and return the figures (every rank).

    Starts (and afterwards destroys) the default process group when launched by
    ``torchrun`` (``WORLD_SIZE`` in the environment) and none exists yet; otherwise uses
    the existing group, or runs as one process.

    Parameters
    ----------
    argv : list of str, optional
        The command-line options (default: ``sys.argv[1:]``).

    Returns
    -------
    dict
        ``world_size``, ``parallelism`` ("none", "ddp", "zero" or "fsdp"), ``local_river``,
        ``dtype``, ``steps``, ``batch_size``, ``test_loss``, ``test_accuracy``,
        ``multiplier`` (River's final one), ``multipliers`` (every rank's multiplier after
        every step), ``multiplier_spread`` and ``parameter_spread`` (the largest difference
        between ranks; ``None`` for the parameters under FSDP, which keeps one copy), and
        ``model`` (this rank's trained model).
    """
    args = _parse(argv)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device is not None:
        device = torch.device(args.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank if launched else 0)
    else:
        device = torch.device("cpu")
    own_group = launched and not dist.is_initialized()
    if own_group:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(args, device)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if args.batch_size % world:
        raise ValueError(f"--batch-size must be a multiple of the {world} ranks")
    dtype = getattr(torch, args.dtype)
    data = digits(seed=0, device=device, dtype=dtype)
    n = data.x_train.shape[0]
    steps_per_epoch = n // args.batch_size  # whole batches only: equal shares on every rank
    total = args.epochs * steps_per_epoch

    model = mlp(
        data.num_features, args.hidden, data.num_classes, seed=0, device=device, dtype=dtype
    )
    net = model
    if args.fsdp:
        _fully_shard(model, device, world)  # in place: the parameters become DTensors
    elif world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if args.zero:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        optimizer = ZeroRedundancyOptimizer(
            net.parameters(), optimizer_class=AdamW, lr=args.lr, weight_decay=1e-2
        )
    else:
        optimizer = AdamW(net.parameters(), lr=args.lr, weight_decay=1e-2)
    river = River(process_group=None if args.local_river else "auto")
    schedule = cosine(args.lr, total, warmup_steps=total // 10)
    scheduler = ScheduledLR(optimizer, schedule, multiplier=river)

    generator = torch.Generator().manual_seed(0)  # the same batches on every rank
    history: list[torch.Tensor] = []
    net.train()
    for _ in range(args.epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for step in range(steps_per_epoch):
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            mine = batch.tensor_split(world)[rank]  # this rank's share of the batch
            losses = F.cross_entropy(net(data.x_train[mine]), data.y_train[mine], reduction="none")
            losses.mean().backward()  # DDP, FSDP: the gradient is averaged over the ranks
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            river.observe(losses.detach())  # all-reduces the statistics over the ranks
            scheduler.step()
            history.append(river.multiplier.detach().clone())  # no host sync in the loop

    test_loss, test_accuracy = evaluate(model, data.x_test, data.y_test)
    full = _full_state_dict(model)  # every rank takes part in gathering FSDP's shards
    result = {
        "world_size": world,
        "parallelism": "fsdp"
        if args.fsdp
        else "zero"
        if args.zero
        else "ddp"
        if world > 1
        else "none",
        "local_river": bool(args.local_river),
        "dtype": args.dtype,
        "steps": total,
        "batch_size": args.batch_size,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "multiplier": float(river.multiplier),
        "multiplier_spread": _max_spread([river.multiplier], world),
        "multipliers": _every_rank(torch.stack(history), world),
        # FSDP keeps one copy of each parameter, sliced over the ranks: nothing to compare
        "parameter_spread": None if args.fsdp else _max_spread(list(model.parameters()), world),
        "model": model,
    }
    if rank == 0:
        if args.save:
            torch.save(full, args.save)
        if args.json:
            figures = {k: v for k, v in result.items() if k != "model"}
            Path(args.json).write_text(json.dumps(figures, indent=1))
        if not args.quiet:
            print(_summary(result, device, args), flush=True)
    return result


def _summary(result: dict[str, Any], device: torch.device, args: argparse.Namespace) -> str:
    world = result["world_size"]
    mode = "local statistics" if args.local_river or world == 1 else "reduced statistics"
    optimizer = {"zero": "ZeRO(AdamW)", "fsdp": "FSDP2 + AdamW"}.get(result["parallelism"], "AdamW")
    spread = result["parameter_spread"]
    params = "sharded (one copy)" if spread is None else f"{spread:.3g}"
    return (
        f"{world} process(es) on {device}, {result['steps']} steps of batch {args.batch_size}, "
        f"{optimizer}, cosine x River ({mode})\n"
        f"test loss {result['test_loss']:.4f}, test accuracy {result['test_accuracy']:.4f}, "
        f"final River multiplier {result['multiplier']:.6f}\n"
        f"largest difference between ranks: multiplier "
        f"{result['multiplier_spread']:.3g}, parameters {params}"
    )


def _every_rank(values: torch.Tensor, world: int) -> list[list[float]]:
    """``values`` of every rank, rank by rank (an all-gather), as Python floats."""
    values = values.double()
    parts = [values] if world == 1 else [torch.empty_like(values) for _ in range(world)]
    if world > 1:
        dist.all_gather(parts, values)
    return [part.cpu().tolist() for part in parts]


def _fully_shard(model: torch.nn.Module, device: torch.device, world: int) -> None:
    """FSDP2: shard each linear layer, then the model (for what is left), over all ranks."""
    if world < 2:
        raise ValueError(
            f"--fsdp needs 2 or more processes (start with torchrun), got {world} process"
        )
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world,))
    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's ``state_dict`` on the CPU, FSDP's ``DTensor`` slices gathered (collective)."""
    out = {}
    for key, value in model.state_dict().items():
        if hasattr(value, "full_tensor"):  # a DTensor
            value = value.full_tensor()
        out[key] = value.detach().cpu().clone()
    return out


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two ``state_dict`` with the same keys."""
    if a.keys() != b.keys():
        raise ValueError(f"the state_dicts have different keys: {sorted(a)} and {sorted(b)}")
    return max(
        float((a[k].detach().cpu().double() - b[k].detach().cpu().double()).abs().max()) for k in a
    )


if __name__ == "__main__":
    main()
