"""companion under torch.distributed: DDP, ZeroRedundancyOptimizer, and River across ranks.

Every test starts two worker processes -- this file run as a script, with the environment
``torchrun`` would give them (RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free port) -- and
compares what they computed against one process that sees the whole batches, computed here
in the test with the same functions. Workers use the gloo backend on the CPU (always), NCCL
on two GPUs when there are two, and gloo on a GPU when there is one.

Nothing can hang: each worker has a hard deadline (killed when it passes, the test fails),
a worker that fails gets the others killed at once, the collectives time out, and every
worker destroys its process group in ``finally``.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn import functional as F

from companion.lr_scheduler import ScheduledLR
from companion.optim import SGD, Adam, AdamW, AMSGrad
from companion.problems import mlp
from companion.river import River
from companion.schedules import cosine

WORLD = 2
LAUNCH_TIMEOUT = 150.0  # s, hard limit on each launch (the workers need ~5 s unloaded)
COLLECTIVE_TIMEOUT = 60.0  # s, a collective that waits longer raises in the worker
REPO = Path(__file__).resolve().parents[1]

STEPS, BATCH, FEATURES, HIDDEN, CLASSES = 50, 32, 16, 32, 4
LR, WEIGHT_DECAY = 1e-2, 1e-2

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")


# =========================================================================== the problem
def make_data(steps: int = STEPS, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` float64 batches ``(x, y)`` of BATCH examples (the same in every process)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, BATCH, FEATURES, generator=gen, dtype=torch.float64)
    w = torch.randn(FEATURES, CLASSES, generator=gen, dtype=torch.float64)
    y = x @ w + 0.5 * torch.randn(steps, BATCH, CLASSES, generator=gen, dtype=torch.float64)
    return list(zip(x.unbind(0), y.argmax(-1).unbind(0), strict=True))


def make_model(device: torch.device | str = "cpu") -> torch.nn.Module:
    return mlp(FEATURES, HIDDEN, CLASSES, seed=1, device=device, dtype=torch.float64)


def shard(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous part of a batch (equal parts: DDP's mean is the batch mean)."""
    return t.tensor_split(world)[rank]


def train(model, optimizer, scheduler, rivers, data, steps, rank=0, world=1, record=None):
    """The loop of section 6.5 on this rank's shard of every batch of ``steps``.

    ``rivers[0]`` (if any) drives ``scheduler``; every River observes the shard's losses.
    ``record`` collects, per step, each River's multiplier and the shard's losses.
    """
    device = next(model.parameters()).device
    for t in steps:
        x, y = (shard(a, rank, world).to(device) for a in data[t])
        losses = F.cross_entropy(model(x), y, reduction="none")
        losses.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for river in rivers:
            river.observe(losses.detach())
        scheduler.step()
        if record is not None:
            record.setdefault("losses", []).append(losses.detach().cpu())
            for i, river in enumerate(rivers):
                record.setdefault(f"m{i}", []).append(river.multiplier.detach().cpu())


def params_of(model: torch.nn.Module) -> list[torch.Tensor]:
    module = getattr(model, "module", model)
    return [p.detach().cpu().clone() for p in module.parameters()]


def assert_close(got, want, rel, what):
    """Every tensor of ``got`` within ``rel`` of ``want``, relative to ``want``'s largest entry."""
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        scale = w.abs().max().clamp_min(1e-300)
        err = float((g.double() - w.double()).abs().max() / scale)
        assert err <= rel, f"{what}[{i}]: relative error {err:.3g} > {rel:g}"


def reference_run(optimizer_class=AdamW, steps=STEPS, river=False, **kwargs):
    """One process on the full batches: the figures the workers must reproduce."""
    model = make_model()
    opt = optimizer_class(model.parameters(), **kwargs)
    riv = [River(process_group=None)] if river else []
    sched = ScheduledLR(opt, cosine(kwargs["lr"], STEPS), multiplier=riv[0] if riv else None)
    record: dict = {}
    train(model, opt, sched, riv, make_data(), range(steps), record=record)
    return model, opt, record


# =========================================================================== the workers
VARIANTS = {
    "adamw": (AdamW, {"lr": LR, "weight_decay": WEIGHT_DECAY}),
    "adamw-paper": (AdamW, {"lr": LR, "weight_decay": WEIGHT_DECAY, "decay": "paper"}),
    "sgd": (SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    "adam": (Adam, {"lr": LR, "weight_decay": 1e-3}),
    "amsgrad": (AMSGrad, {"lr": LR}),
}
VARIANT_STEPS = 10


def _ddp(model, device):
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _zero(model, optimizer_class, **kwargs):
    from torch.distributed.optim import ZeroRedundancyOptimizer

    return ZeroRedundancyOptimizer(model.parameters(), optimizer_class=optimizer_class, **kwargs)


def scenario_optim(rank, world, device, out, tmp):
    """DDP with companion AdamW; ZeRO with each companion optimizer; ZeRO's checkpoint."""
    data = make_data()
    steps = range(STEPS)
    # DDP + AdamW + cosine ScheduledLR.
    model = _ddp(make_model(device), device)
    opt = AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    train(model, opt, ScheduledLR(opt, cosine(LR, STEPS)), [], data, steps, rank, world)
    out["ddp_adamw"] = params_of(model)

    # ZeRO wrapping every optimizer (fewer steps for the variants).
    for name, (cls, kwargs) in VARIANTS.items():
        n = STEPS if name == "adamw" else VARIANT_STEPS
        model = _ddp(make_model(device), device)
        zero = _zero(model, cls, **kwargs)
        sched = ScheduledLR(zero, cosine(kwargs["lr"], STEPS))
        train(model, zero, sched, [], data, range(n), rank, world)
        out[f"zero_{name}"] = params_of(model)

    # ZeRO + AdamW interrupted at step 25: consolidate -> save -> load -> continue.
    def fresh():
        model = _ddp(make_model(device), device)
        zero = _zero(model, AdamW, lr=LR, weight_decay=WEIGHT_DECAY)
        return model, zero, ScheduledLR(zero, cosine(LR, STEPS))

    model, zero, sched = fresh()
    train(model, zero, sched, [], data, range(25), rank, world)
    zero.consolidate_state_dict(to=0)
    path = Path(tmp) / "zero_checkpoint.pt"
    if rank == 0:
        checkpoint = {
            "model": model.module.state_dict(),
            "optimizer": zero.state_dict(),
            "scheduler": sched.state_dict(),
        }
        torch.save(checkpoint, path)
        out["zero_consolidated_state"] = {
            i: {k: v.cpu() for k, v in s.items()}
            for i, s in checkpoint["optimizer"]["state"].items()
        }
    dist.barrier()
    model, zero, sched = fresh()
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    model.module.load_state_dict(checkpoint["model"])
    zero.load_state_dict(checkpoint["optimizer"])
    sched.load_state_dict(checkpoint["scheduler"])
    train(model, zero, sched, [], data, range(25, STEPS), rank, world)
    out["zero_resumed"] = params_of(model)


def scenario_river(rank, world, device, out, tmp):
    """River in the DDP loop: auto, explicit group, local; its state across world sizes."""
    data = make_data()
    group = dist.new_group(list(range(world)))
    model = _ddp(make_model(device), device)
    opt = AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    auto, explicit, local = River(), River(process_group=group), River(process_group=None)
    sched = ScheduledLR(opt, cosine(LR, STEPS), multiplier=auto)
    record: dict = {}
    # A River that starts as a single process on the whole batches (fed the gathered shards)
    # and continues under the group after step 25, from the single process's state_dict.
    whole, joined = River(process_group=None), River()
    gathered_m, equal_every_step = [], True
    for t in range(STEPS):
        train(model, opt, sched, [auto, explicit, local], data, [t], rank, world, record)
        m = auto.multiplier
        parts = [torch.empty_like(m) for _ in range(world)]
        dist.all_gather(parts, m)
        gathered_m.append(torch.stack(parts).cpu())
        equal_every_step &= all(torch.equal(p, m) for p in parts)
        mine = record["losses"][-1].to(device)
        shards = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(shards, mine)
        if t < 25:
            whole.observe(torch.cat(shards))
        else:
            if t == 25:
                joined.load_state_dict(whole.state_dict())
            joined.observe(mine)
            record.setdefault("joined", []).append(joined.multiplier.cpu())
        if t == 24 and rank == 0:
            out["auto_state_at_25"] = auto.state_dict()
    out["params"] = params_of(model)
    out["auto"] = torch.stack(record["m0"])
    out["explicit"] = torch.stack(record["m1"])
    out["local"] = torch.stack(record["m2"])
    out["joined"] = torch.stack(record["joined"])
    out["gathered"] = torch.stack(gathered_m)
    out["equal_every_step"] = equal_every_step
    out["auto_dtype"] = str(auto.multiplier.dtype)
    out["auto_device"] = str(auto.multiplier.device)

    # Global statistics decide the size-1 skip and the non-finite skip on every rank.
    river = River(beta_v=0.5, beta_r=0.8, use_current_batch=True)
    ms, skipped = [], []
    for pair in EDGE_SHARDS:
        river.observe(torch.tensor(pair[rank], dtype=torch.float64, device=device))
        ms.append(river.multiplier.cpu())
        skipped.append(int(river.num_skipped))
    out["edge_m"] = torch.stack(ms)
    out["edge_skipped"] = skipped

    if device.type == "cuda" and dist.get_backend() == "nccl":
        # After its first call (which checks the ranks' dtypes once), observe never makes
        # the host wait for the GPU: the reduction is enqueued like DDP's.
        probe = River()
        probe.observe(torch.rand(8, device=device))
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(5):
                probe.observe(torch.rand(8, device=device))
        finally:
            torch.cuda.set_sync_debug_mode(0)
        out["no_sync_checked"] = True


# Per step: (rank 0's shard, rank 1's shard). Empty shards, one-example batches in all,
# a non-finite loss on one rank only, and losses far from zero against their spread.
EDGE_SHARDS = [
    ([1.0, 2.0], [4.0]),
    ([0.5], [3.0]),  # 2 examples in all: accepted although each rank has one
    ([], [2.0]),  # 1 example in all: skipped on both ranks
    ([2.0, 2.5], [math.inf, 1.0]),  # non-finite on rank 1: skipped on both ranks
    ([], []),  # no example at all: skipped
    ([1e4 + 0.25, 1e4 - 0.5, 1e4], [1e4 + 0.125, 1e4 - 0.375]),
    ([3.0, 1.0, 2.0, 0.0], []),
]


def scenario_river_bad(rank, world, device, out, tmp):
    """Bad input on some ranks: a clear ValueError on every rank, then the group still works."""
    river = River()
    messages = {}

    def attempt(name, losses):
        try:
            river.observe(losses)
        except ValueError as err:
            messages[name] = str(err)
        else:
            messages[name] = None

    dtype = torch.float32 if rank == 0 else torch.float64
    attempt("dtype", torch.rand(8, device=device).to(dtype))
    attempt("shape", torch.rand(4, device=device).reshape((4,) if rank == 0 else (2, 2)))
    if torch.cuda.is_available():
        other = device if rank == 0 else torch.device("cpu" if device.type == "cuda" else "cuda")
        attempt("device", torch.rand(8, device=other))
    out["messages"] = messages
    out["num_accepted_after_errors"] = river.num_accepted
    # The group is still in step: a collective and the same River work afterwards.
    t = torch.full((1,), float(rank + 1), device=device)
    dist.all_reduce(t)
    out["sum"] = float(t)
    m = river.observe(torch.rand(8, dtype=torch.float64, device=device) * (rank + 1))
    parts = [torch.empty_like(m) for _ in range(world)]
    dist.all_gather(parts, m)
    out["after"] = [p.cpu() for p in parts]
    out["num_accepted_after"] = int(river.num_accepted)
    # A group this rank is not a member of.
    sub = dist.new_group([0])
    try:
        River(process_group=sub)
        out["non_member"] = None
    except ValueError as err:
        out["non_member"] = str(err)


SCENARIOS = {"optim": scenario_optim, "river": scenario_river, "river_bad": scenario_river_bad}


def worker(scenario: str, backend: str, device_kind: str, outdir: str) -> None:
    """Run one scenario on this rank (RANK/WORLD_SIZE/MASTER_* come from the environment)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    device = torch.device("cpu")
    if device_kind == "cuda":  # NCCL: one GPU per rank; gloo: share the first GPU
        device = torch.device("cuda", rank if backend == "nccl" else 0)
        torch.cuda.set_device(device)
    out: dict = {}
    dist.init_process_group(backend, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT))
    try:
        SCENARIOS[scenario](rank, world, device, out, outdir)
    except BaseException:
        out["error"] = traceback.format_exc()
        raise
    finally:
        torch.save(out, Path(outdir) / f"rank{rank}.pt")
        dist.destroy_process_group()


# =========================================================================== the launcher
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback() -> str | None:
    names = {name for _, name in socket.if_nameindex()} if hasattr(socket, "if_nameindex") else ()
    return next((n for n in ("lo", "lo0") if n in names), None)


def launch(args: list[str], logdir: Path, timeout: float = LAUNCH_TIMEOUT) -> None:
    """Run ``python *args`` as WORLD ranks on 127.0.0.1; fail the test on error or timeout.

    Each process gets a hard deadline; when one fails the others are killed at once.
    """
    port = _free_port()
    procs, logs = [], []
    for rank in range(WORLD):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
            "LOCAL_WORLD_SIZE": str(WORLD),
            "OMP_NUM_THREADS": "1",
        }
        if _loopback():
            env["GLOO_SOCKET_IFNAME"] = _loopback()
        log = logdir / f"rank{rank}.log"
        logs.append(log)
        with open(log, "w") as fh:
            procs.append(
                subprocess.Popen(
                    [sys.executable, *args], env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT
                )
            )
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
    finally:
        killed = [p for p in procs if p.poll() is None]
        for p in killed:
            p.kill()
            p.wait()
    report = "\n".join(f"--- rank {r} (exit {p.returncode}):\n{logs[r].read_text()[-4000:]}"
                       for r, p in enumerate(procs))  # fmt: skip
    if killed and time.monotonic() > deadline:
        pytest.fail(f"workers still running after {timeout:.0f} s: killed\n{report}")
    if any(p.returncode != 0 for p in procs):
        pytest.fail(f"a worker failed\n{report}")


BACKENDS = [
    pytest.param("gloo", "cpu", id="gloo-cpu"),
    pytest.param(
        "nccl",
        "cuda",
        id="nccl-cuda",
        marks=pytest.mark.skipif(
            not (torch.cuda.is_available() and torch.cuda.device_count() >= 2)
            or not dist.is_nccl_available(),
            reason="needs 2 CUDA GPUs and NCCL",
        ),
    ),
    pytest.param(
        "gloo",
        "cuda",
        id="gloo-cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ),
]


def run_scenario(scenario, backend, device_kind, tmp_path) -> list[dict]:
    launch([__file__, "worker", scenario, backend, device_kind, str(tmp_path)], tmp_path)
    return [
        torch.load(tmp_path / f"rank{r}.pt", map_location="cpu", weights_only=True)
        for r in range(WORLD)
    ]


# =========================================================================== the tests
@pytest.mark.parametrize(("backend", "device_kind"), BACKENDS)
def test_ddp_and_zero_match_one_process(backend, device_kind, tmp_path):
    """Companion optimizers + ScheduledLR under DDP and ZeRO = one process on whole batches."""
    ranks = run_scenario("optim", backend, device_kind, tmp_path)
    model, opt, _ = reference_run(AdamW, lr=LR, weight_decay=WEIGHT_DECAY)
    want = params_of(model)
    for r, out in enumerate(ranks):
        assert_close(out["ddp_adamw"], want, 1e-6, f"rank {r} DDP + AdamW")
        assert_close(out["zero_adamw"], want, 1e-6, f"rank {r} ZeRO(AdamW)")
        # consolidate -> save -> load -> continue is the uninterrupted run, bit for bit
        for got, full in zip(out["zero_resumed"], out["zero_adamw"], strict=True):
            assert torch.equal(got, full), f"rank {r}: resumed ZeRO run differs"
        for name, (cls, kwargs) in VARIANTS.items():
            if name == "adamw":
                continue
            ref, _, _ = reference_run(cls, steps=VARIANT_STEPS, **kwargs)
            assert_close(out[f"zero_{name}"], params_of(ref), 1e-6, f"rank {r} ZeRO({name})")
    # The consolidated state is the whole optimizer state of one process at step 25.
    _, opt25, _ = reference_run(AdamW, steps=25, lr=LR, weight_decay=WEIGHT_DECAY)
    state = opt25.state_dict()["state"]
    consolidated = ranks[0]["zero_consolidated_state"]
    assert sorted(consolidated) == sorted(state)
    for i in state:
        for key in ("exp_avg", "exp_avg_sq"):
            assert_close([consolidated[i][key]], [state[i][key]], 1e-6, f"state[{i}][{key}]")
        assert float(consolidated[i]["step"]) == 25.0


@pytest.mark.parametrize(("backend", "device_kind"), BACKENDS)
def test_river_multiplier_is_the_same_on_every_rank(backend, device_kind, tmp_path):
    """River reduces its statistics: bit-identical on all ranks, = one process on the batch."""
    ranks = run_scenario("river", backend, device_kind, tmp_path)
    model, _, record = reference_run(AdamW, river=True, lr=LR, weight_decay=WEIGHT_DECAY)
    want = torch.stack(record["m0"])
    assert want.dtype == torch.float64 and len(set(want.tolist())) > 10  # m really moves
    r0, r1 = ranks
    assert r0["equal_every_step"] and r1["equal_every_step"]
    if backend == "nccl":
        assert r0["no_sync_checked"] and r1["no_sync_checked"]
    for out in ranks:
        # compared bitwise across ranks, at every step (all_gather in the workers)
        assert torch.equal(out["gathered"][:, 0], out["gathered"][:, 1])
        assert torch.equal(out["auto"], r0["auto"]) and torch.equal(out["explicit"], r0["auto"])
        assert out["auto_dtype"] == "torch.float64" and out["auto_device"].startswith(device_kind)
        assert_close([out["auto"]], [want], 1e-12, "multipliers vs one process")
        assert_close(out["params"], params_of(model), 1e-6, "parameters vs one process")
        # state_dict from one process -> continued on two ranks
        assert_close([out["joined"]], [want[25:]], 1e-12, "joined multipliers")
    # The local statistics (process_group=None) differ between the ranks: the drift that
    # the reduction prevents.
    assert not torch.equal(r0["local"], r1["local"])
    # state_dict saved on two ranks -> continued in one process on the whole batches.
    river = River(process_group=None)
    river.load_state_dict(r0["auto_state_at_25"])
    continued = [river.observe(losses).clone() for losses in record["losses"][25:]]
    assert_close([torch.stack(continued)], [want[25:]], 1e-12, "continued in one process")

    # Size-1, empty and non-finite shards are skipped or accepted by the whole batch.
    ref = River(beta_v=0.5, beta_r=0.8, use_current_batch=True, process_group=None)
    edge_m, skipped, empty = [], [], 0
    for a, b in EDGE_SHARDS:
        batch = torch.tensor(a + b, dtype=torch.float64)
        if batch.numel():
            ref.observe(batch)
        else:
            empty += 1  # one process cannot observe an empty batch: count it as skipped
        edge_m.append(ref.multiplier.clone())
        skipped.append(int(ref.num_skipped) + empty)
    assert r0["edge_skipped"] == r1["edge_skipped"] == skipped == [0, 0, 1, 2, 3, 3, 3]
    assert torch.equal(r0["edge_m"], r1["edge_m"])
    assert_close([r0["edge_m"]], [torch.stack(edge_m)], 1e-12, "edge multipliers")


@pytest.mark.parametrize(("backend", "device_kind"), BACKENDS)
def test_river_bad_input_raises_on_every_rank(backend, device_kind, tmp_path):
    """Different dtypes (or devices, or one rank's bad shard): ValueError everywhere, no hang."""
    r0, r1 = run_scenario("river_bad", backend, device_kind, tmp_path)
    for out in (r0, r1):
        assert "different dtypes" in out["messages"]["dtype"]
        assert out["num_accepted_after_errors"] is None  # nothing changed
        assert out["sum"] == 3.0
        assert torch.equal(out["after"][0], out["after"][1])
        assert out["num_accepted_after"] == 1
    assert "torch.float32" in r0["messages"]["dtype"] and "torch.float64" in r1["messages"]["dtype"]
    assert "1 rank(s) passed invalid" in r0["messages"]["shape"]
    assert "must be 1-d" in r1["messages"]["shape"]
    if "device" in r0["messages"]:
        assert all("different device types" in out["messages"]["device"] for out in (r0, r1))
    assert "not a member" in r1["non_member"] and r0["non_member"] is None


def test_digits_example_under_two_processes_equals_one_process(tmp_path):
    """``companion.examples.digits_ddp`` as torchrun starts it: the one-process figures."""
    pytest.importorskip("sklearn")
    from companion.examples import digits_ddp

    args = ["--epochs", "1", "--dtype", "float64", "--device", "cpu"]
    launch(
        ["-m", "companion.examples.digits_ddp", *args, "--save", str(tmp_path / "m.pt")], tmp_path
    )
    summary = (tmp_path / "rank0.log").read_text()
    assert "2 process(es) on cpu" in summary
    assert "largest difference between ranks: multiplier 0, parameters 0" in summary
    single = digits_ddp.main([*args, "--quiet"])
    assert single["world_size"] == 1 and single["test_accuracy"] > 0.8
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    want = single["model"].state_dict()
    assert_close([saved[k] for k in want], list(want.values()), 1e-6, "digits_ddp parameters")


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "worker":
    worker(*sys.argv[2:])
