"""Time to evaluate each schedule on 1,000,000 steps: vectorised against a Python loop.

Run ``python -m companion.benchmarks.schedules`` (``--quick`` for a smaller loop).
For every schedule of :mod:`companion.schedules` it prints

* the time of one vectorised call ``s(np.arange(N))`` (best of several rounds);
* the time of the Python loop ``[s(t) for t in range(N)]``, measured on a shorter run
  (100,000 steps by default) and scaled linearly to ``N`` (the output says so);
* their ratio, and whether the vectorised time meets the target (< 20 ms).

It also checks that the two paths agree exactly on the measured steps. Last, the cost of
one ``step()`` of :class:`companion.lr_scheduler.ScheduledLR` driving a cosine schedule
(what a training loop pays per step), against torch's ``CosineAnnealingLR`` and a
``LambdaLR`` with the same cosine, on a one-parameter optimizer (median of rounds).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from companion import schedules as S

TARGET_S = 0.020


def cases(n: int) -> list[tuple[str, S.Schedule]]:
    """One schedule of each kind, sized for an ``n``-step run."""
    w, d = n // 100, n // 5
    return [
        ("constant", S.constant(0.1)),
        ("linear_warmup", S.linear_warmup(0.1, w)),
        ("cosine", S.cosine(0.1, n, final_lr=1e-4, warmup_steps=w)),
        ("piecewise_constant", S.piecewise_constant([n // 2, 3 * n // 4], [0.1, 0.01, 0.001])),
        ("sgdr", S.sgdr(0.1, n // 31, cycle_mult=2, final_lr=1e-4, peak_decay=0.9)),
        *((f"wsd[{sh}]", S.wsd(0.1, n, w, d, shape=sh, final_lr=1e-4)) for sh in S.WSD_SHAPES),
        (
            "join",
            S.join(
                [S.linear_warmup(0.1, w), S.cosine(0.1, n // 2), S.constant(1e-4)], [w, w + n // 2]
            ),
        ),
        ("polynomial", S.polynomial(0.1, n, power=2.0, final_lr=1e-4, warmup_steps=w)),
        ("exponential", S.exponential(0.1, 0.99999, final_lr=1e-4, warmup_steps=w)),
        ("inverse_sqrt", S.inverse_sqrt(0.1, w)),
        ("one_cycle", S.one_cycle(0.1, n)),
        ("one_cycle[3-phase]", S.one_cycle(0.1, n, anneal="linear", three_phase=True)),
    ]


def best_of(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def scheduler_step_times(steps: int, rounds: int) -> dict[str, float]:
    """Median time (seconds) of one ``step()`` of ScheduledLR and two torch schedulers.

    All three follow the cosine from 0.1 to 0 over ``steps`` steps; each round builds a
    fresh optimizer and scheduler and times ``steps`` calls of ``step()``.
    """
    from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR

    from companion.lr_scheduler import ScheduledLR

    def cos_factor(t: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))

    makers = {
        "ScheduledLR(cosine)": lambda opt: ScheduledLR(opt, S.cosine(0.1, steps)),
        "torch CosineAnnealingLR": lambda opt: CosineAnnealingLR(opt, T_max=steps),
        "torch LambdaLR(cosine)": lambda opt: LambdaLR(opt, cos_factor),
    }
    times: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(rounds):
        for name, make in makers.items():
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
            sched = make(opt)
            opt.step()  # (no gradient: nothing moves) so torch's order check stays quiet
            t0 = time.perf_counter()
            for _ in range(steps):
                sched.step()
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="vectorised run length")
    parser.add_argument("--loop-steps", type=int, default=100_000, help="Python loop length")
    parser.add_argument("--rounds", type=int, default=15, help="vectorised rounds (best kept)")
    parser.add_argument(
        "--scheduler-steps", type=int, default=20_000, help="scheduler.step() calls per round"
    )
    parser.add_argument("--quick", action="store_true", help="loop over 10,000 steps only")
    args = parser.parse_args(argv)
    n, n_loop = args.steps, (10_000 if args.quick else args.loop_steps)
    steps = np.arange(n)
    scale = n / n_loop

    print(f"{n:,} steps, vectorised (best of {args.rounds}) vs a Python loop of s(t) over")
    print(f"{n_loop:,} steps, scaled x{scale:g} to {n:,} steps (numpy {np.__version__}).")
    print(f"Target: vectorised < {TARGET_S * 1e3:.0f} ms per schedule.\n")
    header = f"{'schedule':<20} {'vectorised':>11} {'loop (scaled)':>14} {'ratio':>8}  target"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, s in cases(n):
        s(steps[:10])  # warm up
        vec = best_of(lambda s=s: s(steps), args.rounds)
        t0 = time.perf_counter()
        loop_values = [s(t) for t in range(n_loop)]
        loop = (time.perf_counter() - t0) * scale
        if not np.array_equal(np.array(loop_values), s(steps[:n_loop])):
            raise AssertionError(f"{name}: vectorised and scalar paths differ")
        worst = max(worst, vec)
        ok = "ok" if vec < TARGET_S else "MISSED"
        print(f"{name:<20} {vec * 1e3:>8.2f} ms {loop:>12.2f} s {loop / vec:>7.0f}x  {ok}")
    x = steps * (np.pi / n)
    floor = best_of(lambda: np.cos(x), args.rounds)
    print(f"\nslowest vectorised: {worst * 1e3:.2f} ms")
    print(f"for scale: a single np.cos over {n:,} float64 takes {floor * 1e3:.2f} ms here; the")
    print("cosine-shaped schedules evaluate one cosine per step (in cache-sized chunks).")
    n_sched = min(args.scheduler_steps, 2_000) if args.quick else args.scheduler_steps
    print(f"\nscheduler.step() over {n_sched:,} steps (median of 5 rounds), ratio to the best:")
    step_times = scheduler_step_times(n_sched, 5)
    best = min(step_times.values())
    for name, t in step_times.items():
        print(f"{name:<24} {t * 1e6:8.2f} us per step {t / best:6.2f}x")


if __name__ == "__main__":
    main()
