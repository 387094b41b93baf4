"""Step time of companion's AdamW against torch.optim.AdamW, path by path.

Run ``python -m companion.benchmarks.optim`` (add ``--quick`` for a smaller problem).
On the same parameters (AdamW, 10M float32 parameters in 100 tensors by default) it
times one optimizer step of

* companion: reference (``foreach=False``), multi-tensor (``foreach=True``), fused;
* torch: for-loop (``foreach=False``), foreach (``foreach=True``), fused;

on the CPU and, when present, on CUDA, and prints the ratios and the effective memory
bandwidth as a fraction of a measured copy bandwidth.

Bytes-moved model: an AdamW step must read the parameter, its gradient and the two
moments and write back the parameter and the two moments, i.e. ``7 * 4 = 28`` bytes
per float32 parameter; the copy bandwidth counts ``2 * 4`` bytes (read + write) per
element of ``dst.copy_(src)`` (the STREAM convention). The fraction says how close a
path comes to streaming its data through memory once; the unfused paths make several
passes, so theirs is low. On a CPU it can pass 100%: writing ``dst`` first reads it into
the cache (write-allocate), a cost the in-place optimizer update does not pay.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

import companion.optim as co

BYTES_PER_PARAM = 28  # read θ, g, m, v; write θ, m, v (float32)
TARGETS = {"reference": 1.2, "multi-tensor": 1.2, "fastest": 1.1}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    """Seconds per call of ``fn``, over ``reps`` back-to-back calls."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / reps


def bench(n_params: int, n_tensors: int, device: torch.device, steps: int, rounds: int) -> dict:
    """Seconds per AdamW step for each of the six paths, and the copy bandwidth.

    Every path, and a ``dst.copy_(src)`` of at least 64 MB (memory, not cache), is timed
    ``rounds`` times (``steps`` calls each), all interleaved so that other work on the
    machine hits them alike; the best round counts, the estimate least disturbed by it.
    Returns ``{(library, path): seconds, ..., "copy_bw": bytes per second}``.
    """
    gen = torch.Generator().manual_seed(0)
    size = n_params // n_tensors
    params = [
        torch.nn.Parameter(torch.randn(size, generator=gen).to(device)) for _ in range(n_tensors)
    ]
    for p in params:
        p.grad = torch.randn(size, generator=gen).to(device)
    kw = dict(lr=1e-4, weight_decay=1e-2)
    makers = {
        ("companion", "reference"): lambda: co.AdamW(params, foreach=False, **kw),
        ("companion", "multi-tensor"): lambda: co.AdamW(params, foreach=True, **kw),
        ("companion", "fused"): lambda: co.AdamW(params, fused=True, **kw),
        ("torch", "reference"): lambda: torch.optim.AdamW(params, foreach=False, **kw),
        ("torch", "multi-tensor"): lambda: torch.optim.AdamW(params, foreach=True, **kw),
        ("torch", "fused"): lambda: torch.optim.AdamW(params, fused=True, **kw),
    }
    fns = {k: make().step for k, make in makers.items()}
    n_copy = max(n_params, 16_000_000)
    src = torch.rand(n_copy, device=device)
    dst = torch.empty_like(src)
    fns["copy"] = lambda: dst.copy_(src)
    for fn in fns.values():  # allocate the state, touch every page
        for _ in range(2):
            fn()
    times: dict = {k: [] for k in fns}
    keys = list(fns)
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[k].append(_time(fns[k], device, steps))
    best = {k: min(v) for k, v in times.items()}
    best["copy_bw"] = 2 * 4 * n_copy / best.pop("copy")
    return best


def report(n_params: int, n_tensors: int, device: torch.device, steps: int, rounds: int) -> str:
    """Run the benchmark on ``device`` and format the table."""
    t = bench(n_params, n_tensors, device, steps, rounds)
    bw = t.pop("copy_bw")
    where = f"{device.type}"
    if device.type == "cpu":
        where += f" ({torch.get_num_threads()} threads)"
    else:
        where += f" ({torch.cuda.get_device_name(device)})"
    lines = [
        f"AdamW step: {n_params:,} float32 parameters in {n_tensors} tensors on {where}, "
        f"torch {torch.__version__}; best of {rounds} rounds of {steps} steps",
        f"copy bandwidth {bw / 1e9:.1f} GB/s; model: {BYTES_PER_PARAM} B moved per parameter "
        "per step (read θ, g, m, v; write θ, m, v)",
        "",
        f"{'path':<14}{'companion ms':>13}{'torch ms':>10}{'ratio':>7}{'target':>8}"
        f"{'companion BW':>14}{'torch BW':>10}",
    ]

    def frac(sec: float) -> str:
        return f"{BYTES_PER_PARAM * n_params / sec / bw:.0%}"

    rows = [("reference", "reference"), ("multi-tensor", "multi-tensor"), ("fused", "fused")]
    for label, path in rows:
        ours, theirs = t[("companion", path)], t[("torch", path)]
        target = TARGETS.get(label)
        lines.append(
            f"{label:<14}{ours * 1e3:>13.2f}{theirs * 1e3:>10.2f}{ours / theirs:>7.2f}"
            f"{'<= ' + format(target, '.1f') if target else '':>8}{frac(ours):>14}{frac(theirs):>10}"
        )
    best_ours = min((v, k[1]) for k, v in t.items() if k[0] == "companion")
    best_torch = min((v, k[1]) for k, v in t.items() if k[0] == "torch")
    lines.append(
        f"{'fastest':<14}{best_ours[0] * 1e3:>13.2f}{best_torch[0] * 1e3:>10.2f}"
        f"{best_ours[0] / best_torch[0]:>7.2f}{'<= 1.1':>8}{frac(best_ours[0]):>14}"
        f"{frac(best_torch[0]):>10}   (companion {best_ours[1]}, torch {best_torch[1]})"
    )
    verdict = []
    for label, path in (("reference", "reference"), ("multi-tensor", "multi-tensor")):
        ratio = t[("companion", path)] / t[("torch", path)]
        verdict.append(f"{label} {'ok' if ratio <= TARGETS[label] else 'MISSED'}")
    ratio = best_ours[0] / best_torch[0]
    verdict.append(f"fastest {'ok' if ratio <= TARGETS['fastest'] else 'MISSED'}")
    lines.append("targets: " + ", ".join(verdict))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M parameters, fewer repeats")
    parser.add_argument("--params", type=int, default=None, help="number of parameters")
    parser.add_argument("--tensors", type=int, default=100, help="number of tensors")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--steps", type=int, default=None, help="steps per timing")
    parser.add_argument("--rounds", type=int, default=None, help="timings per path (median)")
    args = parser.parse_args(argv)
    n = args.params or (1_000_000 if args.quick else 10_000_000)
    steps = args.steps or (5 if args.quick else 10)
    rounds = args.rounds or (9 if args.quick else 11)
    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for dev in devices:
        print(report(n, args.tensors, dev, steps, rounds))
        print()


if __name__ == "__main__":
    main()
