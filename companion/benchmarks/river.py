"""Per-step overhead of the River multiplier on a small training loop (section 6.5).

Run ``python -m companion.benchmarks.river`` (``--quick`` for a short run). It trains the
same MLP (64-128-10 by default) on scikit-learn's digits, batch 64, AdamW, twice side by
side: once with :class:`companion.lr_scheduler.ScheduledLR` driving a cosine schedule,
once with the same scheduler times a :class:`companion.river.River` fed with the
per-example losses (the loop of DESIGN.md). Each step is forward, per-example loss,
backward, ``optimizer.step()``, ``zero_grad()``, [``river.observe``], ``scheduler.step()``.
The River runs with ``clip=(1, 1)``: all its operations execute, but the learning rates,
hence the weights and the cost of every other operation, stay those of the plain run (a
River that changes the trajectory changes the cost of the other operations as well, and
that is not the River's own cost).

The two runs alternate in rounds (so drift of the machine hits both alike); it prints the
median time per step of each, the overhead in percent (target < 2 %) and the time of one
``observe`` call on its own. ``--hidden`` and ``--batch-size`` show how the fixed cost of
``observe`` (a few dozen scalar tensor operations) shrinks against a larger step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from companion.device import default_device
from companion.lr_scheduler import ScheduledLR
from companion.river import River
from companion.schedules import cosine

TARGET = 0.02


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Run:
    """One model, optimizer, scheduler (and River) that keeps training across rounds."""

    def __init__(self, data, hidden: int, total_steps: int, river: bool, device) -> None:
        torch.manual_seed(0)
        self.x, self.y, self.batches = data
        self.model = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
        ).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        # clip=(1, 1): every operation of River runs, but m = 1 keeps the training (and so the
        # cost of the other steps, which depends on the weights) identical to the plain run.
        self.river = River(clip=(1.0, 1.0)) if river else None
        self.sched = ScheduledLR(self.opt, cosine(1e-3, total_steps), multiplier=self.river)
        self.t = 0

    def steps(self, n: int) -> None:
        model, opt, sched, river = self.model, self.opt, self.sched, self.river
        for _ in range(n):
            idx = self.batches[self.t % len(self.batches)]
            losses = torch.nn.functional.cross_entropy(
                model(self.x[idx]), self.y[idx], reduction="none"
            )
            losses.mean().backward()
            opt.step()
            opt.zero_grad()
            if river is not None:
                river.observe(losses.detach())
            sched.step()
            self.t += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per round and run")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (median kept)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 300 steps")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.rounds = 300, 3
    from sklearn.datasets import load_digits  # only the benchmark needs scikit-learn

    device = default_device(args.device)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32, device=device)
    y = torch.tensor(digits.target, dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(0)
    n_batches = len(x) // args.batch_size
    batches = torch.randperm(len(x), generator=gen)[: n_batches * args.batch_size]
    batches = list(batches.view(n_batches, args.batch_size).to(device).unbind(0))
    data = (x, y, batches)

    total = args.steps * (args.rounds + 1) + 1
    runs = {
        "plain": _Run(data, args.hidden, total, False, device),
        "river": _Run(data, args.hidden, total, True, device),
    }
    for run in runs.values():  # warm-up (allocator, caches, lazy state)
        run.steps(min(200, args.steps))
    _sync(device)
    per_step: dict[str, list[float]] = {name: [] for name in runs}
    for k in range(args.rounds):
        order = list(runs) if k % 2 == 0 else list(reversed(runs))
        for name in order:
            t0 = time.perf_counter()
            runs[name].steps(args.steps)
            _sync(device)
            per_step[name].append((time.perf_counter() - t0) / args.steps)

    plain = statistics.median(per_step["plain"])
    river = statistics.median(per_step["river"])
    overhead = river / plain - 1.0

    # observe on its own, on a fixed batch of losses.
    probe = River()
    losses = torch.rand(args.batch_size, device=device)
    for _ in range(200):
        probe.observe(losses)
    _sync(device)
    n_obs = 20 * args.steps
    t0 = time.perf_counter()
    for _ in range(n_obs):
        probe.observe(losses)
    _sync(device)
    observe = (time.perf_counter() - t0) / n_obs

    accepted = int(runs["river"].river.num_accepted)
    print(
        f"digits MLP 64-{args.hidden}-10, batch {args.batch_size}, AdamW + ScheduledLR(cosine), "
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{args.rounds} rounds x {args.steps} steps, median time per step:")
    print(f"  plain schedule        {plain * 1e6:9.1f} us")
    print(f"  schedule x River      {river * 1e6:9.1f} us   ({accepted} batches observed)")
    print(f"  overhead              {overhead * 100:9.2f} %   (target < {TARGET * 100:.0f} %: "
          f"{'met' if overhead < TARGET else 'NOT met'})")  # fmt: skip
    print(f"  River.observe alone   {observe * 1e6:9.1f} us per call")


if __name__ == "__main__":
    main()
