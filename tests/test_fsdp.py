"""companion under FSDP2 (``torch.distributed.fsdp.fully_shard``): parameters are DTensors.

Two worker processes -- this file run as a script, started by the launcher of
``tests/test_distributed.py`` (gloo on the CPU, a hard deadline, the others killed when one
fails) -- shard an MLP with ``fully_shard`` (each linear layer, then the model) and train it
with companion's AdamW (reference and multi-tensor paths, both decay conventions, a float
and a tensor learning rate), AMSGrad (both paths), a cosine ``ScheduledLR`` and a ``River``
multiplier (``process_group="auto"``). Each run is compared with one process that trains
the same model on the whole batches, computed here in the test: the parameters agree to
rounding, and River's multiplier is bit-identical on both ranks at every step and equal to
the one process's. One model has an odd width, so FSDP2 pads its shards.
"""

from __future__ import annotations

import sys
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers of test_distributed
from test_distributed import (  # noqa: E402
    CLASSES,
    COLLECTIVE_TIMEOUT,
    FEATURES,
    HIDDEN,
    LR,
    STEPS,
    WEIGHT_DECAY,
    WORLD,
    launch,
    make_data,
    train,
)

from companion.lr_scheduler import ScheduledLR  # noqa: E402
from companion.optim import AdamW, AMSGrad  # noqa: E402
from companion.problems import mlp  # noqa: E402
from companion.river import River  # noqa: E402
from companion.schedules import cosine  # noqa: E402

TOLERANCE = 1e-12  # absolute, float64: "to rounding" (measured: below 1e-15)

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")

# name -> (optimizer class, its arguments, hidden width, tensor lr?)
CASES = {
    "adamw": (AdamW, {"weight_decay": WEIGHT_DECAY, "foreach": False}, HIDDEN, False),
    "adamw-foreach": (AdamW, {"weight_decay": WEIGHT_DECAY, "foreach": True}, HIDDEN, False),
    "adamw-paper": (AdamW, {"weight_decay": 0.1, "decay": "paper", "foreach": False}, HIDDEN, False),
    "adamw-tensor-lr": (AdamW, {"weight_decay": WEIGHT_DECAY, "foreach": False}, HIDDEN, True),
    "adamw-foreach-tensor-lr": (AdamW, {"weight_decay": WEIGHT_DECAY, "foreach": True}, HIDDEN, True),
    "adamw-odd-width": (AdamW, {"weight_decay": WEIGHT_DECAY, "foreach": True}, 33, False),
    "amsgrad": (AMSGrad, {"foreach": False}, HIDDEN, False),
    "amsgrad-foreach": (AMSGrad, {"foreach": True}, HIDDEN, False),
}  # fmt: skip


def build(name: str, device: torch.device, mesh=None):
    """Model, optimizer, scheduler and River of a case; ``mesh``: shard with FSDP2 first."""
    cls, kwargs, hidden, tensor_lr = CASES[name]
    model = mlp(FEATURES, hidden, CLASSES, seed=1, device=device, dtype=torch.float64)
    if mesh is not None:
        from torch.distributed.fsdp import fully_shard

        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)  # the optimizer must see the DTensor parameters
    lr = torch.tensor(LR, dtype=torch.float64, device=device) if tensor_lr else LR
    optimizer = cls(model.parameters(), lr=lr, **kwargs)
    river = River() if mesh is not None else River(process_group=None)
    scheduler = ScheduledLR(optimizer, cosine(LR, STEPS), multiplier=river)
    return model, optimizer, scheduler, river


def one_process(name: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The parameters and the multipliers of one process on the whole batches."""
    model, optimizer, scheduler, river = build(name, torch.device("cpu"))
    record: dict = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost time on a busy machine
    try:
        train(model, optimizer, scheduler, [river], make_data(), range(STEPS), record=record)
    finally:
        torch.set_num_threads(threads)
    return [p.detach().clone() for p in model.parameters()], torch.stack(record["m0"])


# =========================================================================== the worker
def scenario_fsdp(rank: int, world: int, device: torch.device, out: dict, outdir: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    mesh = init_device_mesh(device.type, (world,))
    data = make_data()
    for name in CASES:
        model, optimizer, scheduler, river = build(name, device, mesh)
        params = list(model.parameters())
        record: dict = {}
        train(model, optimizer, scheduler, [river], data, range(STEPS), rank, world, record)
        ms = torch.stack(record["m0"])
        gathered = [torch.empty_like(ms) for _ in range(world)]
        dist.all_gather(gathered, ms)  # every rank's multipliers, at every step
        state = optimizer.state[params[0]]
        out[name] = {
            "params": [p.full_tensor().detach().cpu() for p in params],  # a collective
            "multipliers": torch.stack(gathered).cpu(),
            "sharded": all(isinstance(p, DTensor) and p.placements == (Shard(0),) for p in params),
            "local_numel": sum(p.to_local().numel() for p in params),
            "numel": sum(p.numel() for p in params),
            "state_sharded": isinstance(state["exp_avg"], DTensor),
            "lr_is_tensor": isinstance(optimizer.param_groups[0]["lr"], torch.Tensor),
        }

    # The digits example with --fsdp, in this process group (torchrun's path of main()).
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return
    from companion.examples.digits_ddp import main

    saved = Path(outdir) / "digits_fsdp.pt"
    figures = main([*DIGITS_ARGS, "--fsdp", "--device", "cpu", "--quiet", "--save", str(saved)])
    out["digits"] = {k: v for k, v in figures.items() if k != "model"}


DIGITS_ARGS = ["--epochs", "1", "--dtype", "float64"]


def worker(outdir: str) -> None:
    """One rank (RANK/WORLD_SIZE/MASTER_* come from the launcher's environment)."""
    torch.set_num_threads(1)
    out: dict = {}
    dist.init_process_group("gloo", timeout=timedelta(seconds=COLLECTIVE_TIMEOUT))
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        scenario_fsdp(rank, world, torch.device("cpu"), out, outdir)
    except BaseException:
        out["error"] = traceback.format_exc()
        raise
    finally:
        torch.save(out, Path(outdir) / f"rank{rank}.pt")
        dist.destroy_process_group()


# =========================================================================== the tests
@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """What each of the two ranks computed (one launch for every case)."""
    tmp = tmp_path_factory.mktemp("fsdp")
    launch([__file__, "worker", str(tmp)], tmp)
    outs = [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for out in outs:
        out["folder"] = tmp
    return outs


@pytest.mark.parametrize("name", list(CASES))
def test_fsdp2_equals_one_process(ranks, name):
    """fully_shard + companion optimizer + ScheduledLR x River = one process, to rounding."""
    want_params, want_m = one_process(name)
    for r, out in enumerate(ranks):
        got = out[name]
        assert got["sharded"] and got["state_sharded"], f"rank {r}: not sharded by FSDP2"
        assert got["local_numel"] < got["numel"]  # each rank holds a part only
        assert got["lr_is_tensor"] == CASES[name][3]
        if CASES[name][2] % WORLD:  # an odd width: FSDP2 pads, the shards differ in size
            assert ranks[0][name]["local_numel"] != ranks[1][name]["local_numel"]
        for i, (g, w) in enumerate(zip(got["params"], want_params, strict=True)):
            diff = float((g - w.detach()).abs().max())
            assert diff <= TOLERANCE, f"rank {r} {name}: parameter {i} differs by {diff:.3g}"
        # River: bit-identical on both ranks at every step, = the one process's multiplier
        m = got["multipliers"]
        assert torch.equal(m[0], m[1]), f"{name}: the ranks' multipliers differ"
        assert len(set(want_m.tolist())) > 10  # the multiplier really moves
        diff = float((m[0] - want_m).abs().max())
        assert diff <= TOLERANCE, f"{name}: multiplier differs from one process by {diff:.3g}"


def test_fsdp2_moves_the_parameters(ranks):
    """The trained parameters are far from the initial ones (so the comparison means something)."""
    initial = list(mlp(FEATURES, HIDDEN, CLASSES, seed=1, dtype=torch.float64).parameters())
    moved = max(
        float((g - w.detach()).abs().max())
        for g, w in zip(ranks[0]["adamw"]["params"], initial, strict=True)
    )
    assert moved > 1e-3


def test_digits_example_with_fsdp_equals_one_process(ranks, tmp_path_factory):
    """``digits_ddp --fsdp`` on two processes: the figures and parameters of one process."""
    pytest.importorskip("sklearn")
    from companion.examples.digits_ddp import main, max_difference

    single = main([*DIGITS_ARGS, "--device", "cpu", "--quiet"])
    for out in ranks:
        fsdp = out["digits"]
        assert fsdp["world_size"] == 2 and fsdp["parallelism"] == "fsdp"
        assert fsdp["multiplier_spread"] == 0.0 and fsdp["parameter_spread"] is None
        assert abs(fsdp["multiplier"] - single["multiplier"]) <= TOLERANCE
        assert abs(fsdp["test_loss"] - single["test_loss"]) <= TOLERANCE
    saved = torch.load(ranks[0]["folder"] / "digits_fsdp.pt", weights_only=True)
    assert max_difference(saved, single["model"].state_dict()) <= TOLERANCE
    with pytest.raises(ValueError, match="--fsdp needs 2 or more processes"):
        main([*DIGITS_ARGS, "--device", "cpu", "--quiet", "--fsdp"])


def test_launch_checks_its_arguments():
    from companion.examples.launch import launch as launch_example

    with pytest.raises(ValueError, match="nproc"):
        launch_example(0, [[]])
    with pytest.raises(TypeError, match="nproc"):
        launch_example(2.0, [[]])
    with pytest.raises(TypeError, match="runs"):
        launch_example(2, ["--fsdp"])
    with pytest.raises(ValueError, match="timeout"):
        launch_example(2, [[]], timeout=0)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "worker":
    worker(sys.argv[2])
