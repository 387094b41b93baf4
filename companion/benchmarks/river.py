"""Per-step overhead of the River multiplier on a small training loop (section 6.5).

Run ``python -m companion.benchmarks.river`` (``--quick`` for a short run). It trains an
MLP on scikit-learn's digits with AdamW and :class:`companion.lr_scheduler.ScheduledLR`
driving a cosine schedule, in blocks of steps of five kinds, on one training loop:

* ``plain``: the schedule alone;
* ``const m``: the schedule times a fixed 0-d tensor (what :class:`ScheduledLR` costs to
  read a tensor multiplier; a River whose state is on the CPU is read as a float, through
  ``River.multiplier_float``);
* ``observe``: the schedule times a :class:`companion.river.River` fed with the
  per-example losses (the loop of section 6.5);
* ``observe_variance``: the same River, fed the batch variance that
  ``torch.var_mean(losses, correction=0)`` gives along with the mean for ``backward``
  (the faster loop of River's Examples: River computes no statistic of its own);
* ``floor``: no multiplier, and in River's slot only what any multiplier fed by the
  losses must do, River or not (:func:`floor_work`): one ``torch.var_mean`` of the
  losses read with ``.item()``, and a new 0-d tensor handed back. Right after an
  optimizer step these few operations run on cold caches, at several times their cost in
  a tight loop: the floor shows how much of a target is left for River's own work.

Each step is forward, per-example loss, its mean (or ``var_mean``), backward,
``optimizer.step()``, ``zero_grad()``, [River's call, or the floor's work],
``scheduler.step()``. The River
runs with ``clip=(1, 1)``: all its operations execute, but the learning rates, hence the
weights and the cost of every other operation, stay those of the plain steps (a River that
changes the trajectory changes the cost of the other operations as well, and that is not
the River's own cost). So the kinds can share one model, optimizer and heap: only the
multiplier's work differs between them (``var_mean``'s mean may differ from ``mean()``'s
in the last bit; the cost of no other operation depends on that). (Separate training runs,
one per kind, differ by their memory layout as well; on the 64-1024-10 configuration that
alone moved a run's step by 2 % either way, as much as the target.)

Two configurations by default: the issue's 64-128-10 MLP with batch 64 (a step of a few
hundred microseconds, where the fixed cost of ``observe`` shows) and 64-1024-10 with batch
512 (a step of a few milliseconds); ``--hidden`` and ``--batch-size`` run one of your own.
Each round runs, for every kind but ``plain``, one block of it (about 30 ms) next to one
block of plain steps (:func:`round_order`: the pairs in a rotating order, the plain block
first in every other pair), and the kind's overhead in that round is against the plain
block of its own pair, so drift of a shared machine, which moves whole blocks, hits both
alike. The table gives, per kind, the median over rounds of the block's median step; the
overhead over ``plain`` of each River loop (and of the floor): the median over rounds,
with a 95 % confidence interval of that median (targets: 10 % and 2 %; the verdict is
"met" only when the whole interval is below the target, "NOT met" when it is all above,
otherwise "unresolved"); the time of River's call (the floor's work) itself inside its
steps (its median, and its share of the plain step); and the minor page faults per step
of each kind. Last, ``observe`` on its own: the median
over rounds of 5,000 calls on a fixed batch of float32 losses.

Page faults: glibc's ``malloc`` hands freed memory back to the system when the top of its
heap grows past a threshold, and the next step's activations fault it in again, page by
page -- hundreds to thousands of faults a step on the 64-1024-10 configuration, a large,
random share of the step that depends on the heap's layout, so on the history of every
allocation in the process: a few small tensors more or less in a step (River's, or the
constant multiplier's) can move it by several percent either way. So by default the
tables are printed twice: with ``malloc`` as it is, then with freed memory kept in the
process (``mallopt``; glibc only, and for the rest of the process), where no step faults
and the overhead is the multiplier's own work. ``--allocator`` runs one of the two.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import math
import statistics
import time
import timeit
from typing import Any

import torch

from companion.device import default_device
from companion.lr_scheduler import ScheduledLR
from companion.river import River
from companion.schedules import cosine

TARGETS = {128: 0.10, 1024: 0.02}  # River's overhead per hidden width (default configs)
TARGET = 0.02  # any other configuration
CONFIGS = ((128, 64), (1024, 512))  # (hidden width, batch size)
ROUND_SECONDS = 0.03  # length of a block when --steps is not given


def _faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory (no trimming, no mmap for <= 32 MiB)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, 2**30)) and bool(mallopt(m_mmap_threshold, 2**25))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Constant:
    """A multiplier that never changes: a 0-d tensor, as River's."""

    def __init__(self, device: torch.device) -> None:
        self.multiplier = torch.tensor(1.0, device=device)


KINDS = ("plain", "const", "river", "river_var", "floor")
RIVER_KINDS = {"river": "observe", "river_var": "observe_variance"}  # the two River loops
ROWS = {**RIVER_KINDS, "floor": "floor"}  # the kinds with a row: a slot and an overhead


def floor_work(losses: torch.Tensor) -> torch.Tensor:
    """The least any multiplier fed by the losses does per step, River's included: one
    reduction of the losses read on the host, and a new 0-d tensor handed back."""
    return torch.scalar_tensor(torch.var_mean(losses, correction=0)[0].item())


class _Loop:
    """One model, optimizer and scheduler, trained in blocks of steps of the five kinds.

    ``plain`` blocks run the schedule alone, ``const`` blocks multiply it by a fixed 0-d
    tensor, ``river`` and ``river_var`` blocks by a River that observes each batch, and
    ``floor`` blocks do :func:`floor_work` where River would be called. The River runs with
    ``clip=(1, 1)``: all its operations execute, but every learning rate, hence the
    trajectory, is the plain run's, so the blocks differ only by the multiplier's work.
    One process, one model, one heap: the kinds share the memory layout, which separate
    runs would not (its effect on the step, through the allocator and the caches, is
    larger than River's cost).
    """

    def __init__(self, data, hidden: int, device: torch.device) -> None:
        torch.manual_seed(0)
        self.x, self.y, self.batches = data
        self.model = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
        ).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.river = River(clip=(1.0, 1.0))
        self.multipliers = {
            "plain": None, "const": _Constant(device), "river": self.river,
            "river_var": self.river, "floor": None,
        }  # fmt: skip
        self.sched = ScheduledLR(self.opt, cosine(1e-3, 10**9))  # a horizon beyond any run
        self.t = 0

    def steps(self, n: int, kind: str) -> tuple[list[float], list[float]]:
        """``n`` training steps of the given kind.

        Returns the host time of each step and of its multiplier slot (the call of
        ``observe`` in a River step; the clock is read in every kind alike), in seconds.
        """
        model, opt, sched = self.model, self.opt, self.sched
        sched.multiplier = self.multipliers[kind]
        river = self.river if kind in RIVER_KINDS else None
        var_mean, floor = kind == "river_var", kind == "floor"
        clock = time.perf_counter
        steps, slots = [], []
        for _ in range(n):
            t0 = clock()
            idx = self.batches[self.t % len(self.batches)]
            losses = torch.nn.functional.cross_entropy(
                model(self.x[idx]), self.y[idx], reduction="none"
            )
            if var_mean:  # one kernel: the mean for backward, the variance for River
                variance, loss = torch.var_mean(losses, correction=0)
            else:
                loss = losses.mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            t1 = clock()
            if var_mean:
                river.observe_variance(variance)
            elif river is not None:
                river.observe(losses.detach())
            elif floor:
                floor_work(losses.detach())
            slots.append(clock() - t1)
            sched.step()
            self.t += 1
            steps.append(clock() - t0)
        return steps, slots


def _digits(batch_size: int, device: torch.device):
    from sklearn.datasets import load_digits  # only the benchmark needs scikit-learn

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32, device=device)
    y = torch.tensor(digits.target, dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(0)
    n_batches = len(x) // batch_size
    batches = torch.randperm(len(x), generator=gen)[: n_batches * batch_size]
    batches = list(batches.view(n_batches, batch_size).to(device).unbind(0))
    return x, y, batches


def measure_step(
    hidden: int, batch_size: int, steps: int | None, rounds: int, device: torch.device
) -> dict[str, Any]:
    """Median time per training step (seconds) of the blocks of each kind.

    Each round runs, for every kind but ``plain``, a block of ``steps`` steps of it and
    one of plain steps (:func:`round_order`), on the same training loop; on the CPU a
    block counts as its median step (robust to a preempted step), on an accelerator as
    its time over its steps (the host runs ahead of the device). Also returned, for each
    kind ``k`` but ``"plain"``: ``k + ":overhead"``, the median over rounds of its relative
    overhead over the plain block of its pair, with ``k + ":low"`` and ``k + ":high"``, a
    distribution-free 95 % confidence interval of that median (:func:`median_interval`);
    for each kind of :data:`ROWS` (``"river"``, ``"river_var"``, ``"floor"``),
    ``k + ":observe"``: the median time of River's call (the floor's work) inside its
    steps; ``"faults"``: each kind's median minor page faults per step; ``"steps"``: the
    steps per block.
    """
    loop = _Loop(_digits(batch_size, device), hidden, device)
    warm = 50
    t0 = time.perf_counter()
    for kind in KINDS:  # warm-up (allocator, caches, lazy state)
        loop.steps(warm, kind)
    _sync(device)
    if steps is None:  # blocks of about ROUND_SECONDS
        per_step = (time.perf_counter() - t0) / (warm * len(KINDS))
        steps = max(5, int(ROUND_SECONDS / per_step))
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    faults: dict[str, list[float]] = {kind: [] for kind in KINDS}
    ratios: dict[str, list[float]] = {kind: [] for kind in KINDS[1:]}
    observe: dict[str, list[float]] = {kind: [] for kind in ROWS}
    for k in range(rounds):
        for pair in round_order(k):
            block = {}
            for kind in pair:
                f0, t0 = _faults(), time.perf_counter()
                per_step, slots = loop.steps(steps, kind)
                _sync(device)
                if device.type == "cpu":
                    block[kind] = statistics.median(per_step)
                else:
                    block[kind] = (time.perf_counter() - t0) / steps
                times[kind].append(block[kind])
                faults[kind].append((_faults() - f0) / steps)
                if kind in ROWS:
                    observe[kind].extend(slots)
            # The overhead against the plain block next to it: drift of a shared machine
            # moves both alike. Then the median over rounds.
            (kind,) = set(pair) - {"plain"}
            ratios[kind].append(block[kind] / block["plain"] - 1.0)
    out: dict[str, Any] = {kind: statistics.median(ts) for kind, ts in times.items()}
    for kind in ratios:
        out[kind + ":overhead"] = statistics.median(ratios[kind])
        out[kind + ":low"], out[kind + ":high"] = median_interval(ratios[kind])
    for kind in ROWS:
        out[kind + ":observe"] = statistics.median(observe[kind])
    out["faults"] = {kind: statistics.median(fs) for kind, fs in faults.items()}
    out["steps"] = steps
    return out


def round_order(k: int) -> list[tuple[str, str]]:
    """The blocks of round ``k``: each kind but ``plain`` once, paired with a plain block.

    The pairs come in an order rotated by one each round, and the plain block goes first
    in every other pair, the other way round once the rotation has come full circle: each
    kind takes every position, both before and after its plain block.
    """
    others = KINDS[1:]
    shift, turn = k % len(others), k // len(others)
    rotated = others[shift:] + others[:shift]
    return [
        ("plain", kind) if (j + turn) % 2 == 0 else (kind, "plain")
        for j, kind in enumerate(rotated)
    ]


def median_interval(values: list[float], z: float = 1.96) -> tuple[float, float]:
    r"""A distribution-free confidence interval of the median (95 % for ``z = 1.96``).

    The order statistics of ranks :math:`n/2 \mp z\sqrt n/2` (the normal approximation
    of the Binomial(:math:`n`, 1/2) count of values below the median); the whole range
    when there are too few values for that.
    """
    ordered = sorted(values)
    n = len(ordered)
    half = z * math.sqrt(n) / 2
    return ordered[max(0, math.floor(n / 2 - half))], ordered[
        min(n - 1, math.ceil(n / 2 + half) - 1)
    ]


def verdict(low: float, high: float, target: float) -> str:
    """Whether the interval ``[low, high]`` of the overhead meets ``target``."""
    if high <= target:
        return "met"
    if low > target:
        return "NOT met"
    return "unresolved, run more --rounds"


def measure_observe(batch_size: int, rounds: int, device: torch.device, calls: int = 5000) -> float:
    """Median time (seconds) of one ``River().observe`` on float32 losses of a batch."""
    river = River()
    losses = torch.rand(batch_size, generator=torch.Generator().manual_seed(0)).to(device)
    for _ in range(200):
        river.observe(losses)
    _sync(device)
    times = []
    for _ in range(rounds):
        t = timeit.timeit(lambda: river.observe(losses), number=calls)
        _sync(device)
        times.append(t / calls)
    return statistics.median(times)


def _table(configs, args, device: torch.device, allocator: str) -> None:
    """Measure each configuration and print its rows (one table per allocator mode)."""
    print(f"\n{allocator}:")
    print(
        f"{'MLP':>11s} {'batch':>5s} {'steps':>6s} {'plain':>8s} {'const m':>8s} "
        f"{'River call':>16s} {'River':>8s} {'River overhead':>22s} {'call in loop':>15s} "
        f"{'faults/step':>19s}"
    )
    print(f"{'':>11s} {'':>5s} {'/block':>6s} {'us/step':>8s} {'us/step':>8s} {'':>16s} "
          f"{'us/step':>8s} {'% [95% interval]':>22s} {'us (% plain)':>15s} "
          f"{'plain/const/River':>19s}")  # fmt: skip
    for hidden, batch in configs:
        t = measure_step(hidden, batch, args.steps, args.rounds, device)
        target = TARGETS.get(hidden, TARGET)
        head = (
            f"{f'64-{hidden}-10':>11s} {batch:5d} {t['steps']:6d} {t['plain'] * 1e6:8.1f} "
            f"{t['const'] * 1e6:8.1f}"
        )
        for kind, call in ROWS.items():
            low, high = t[kind + ":low"], t[kind + ":high"]
            overhead = f"{100 * t[kind + ':overhead']:.2f} [{100 * low:.2f}, {100 * high:.2f}]"
            inside = t[kind + ":observe"]
            call_time = f"{inside * 1e6:.1f} ({100 * inside / t['plain']:.2f})"
            faults = "/".join(f"{t['faults'][k]:.0f}" for k in ("plain", "const", kind))
            print(
                f"{head} {call:>16s} {t[kind] * 1e6:8.1f} {overhead:>22s} "
                f"{call_time:>15s} {faults:>19s}  "
                + (
                    f"(target <= {target * 100:.0f} %: {verdict(low, high, target)})"
                    if kind in RIVER_KINDS
                    else "(no River: var_mean, .item(), a new 0-d tensor)"
                )
            )
            head = " " * len(head)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="steps per block")
    parser.add_argument("--rounds", type=int, default=201, help="rounds (median kept)")
    parser.add_argument("--hidden", type=int, default=None, help="run only this width ...")
    parser.add_argument("--batch-size", type=int, default=None, help="... and batch size")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="5 rounds of 20 steps")
    parser.add_argument(
        "--allocator",
        choices=("default", "kept", "both"),
        default="both",
        help="glibc's malloc as it is, with freed memory kept (mallopt), or one after the other",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.rounds = 20, 5
    configs = CONFIGS
    if args.hidden is not None or args.batch_size is not None:
        configs = ((args.hidden or CONFIGS[0][0], args.batch_size or CONFIGS[0][1]),)
    device = default_device(args.device)

    print(
        f"digits MLP, AdamW + ScheduledLR(cosine), device {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.rounds} rounds of one block per kind, each next to a plain block"
    )
    if args.allocator in ("default", "both"):
        _table(configs, args, device, "malloc as it is (glibc: freed memory trimmed)")
    if args.allocator in ("kept", "both"):  # mallopt lasts for the process: after the above
        if keep_freed_memory():
            _table(configs, args, device, "freed memory kept (mallopt: no trimming)")
        else:
            print("\nfreed memory kept: unavailable here (no glibc mallopt)")
    for batch in sorted({b for _, b in configs}):
        observe = measure_observe(batch, args.rounds, device)
        print(
            f"River.observe alone, float32 losses, batch {batch}: {observe * 1e6:.1f} us per call"
        )


if __name__ == "__main__":
    main()
