"""companion.optim against torch.optim: the same gradient sequence, the same trajectory.

Two param groups of different lr; a matrix, a vector, a scalar and a 3-d tensor; 300
steps whose gradients depend on the parameters (g = c·θ + noise), so a wrong update
feeds back. Reference and multi-tensor paths both; fused against torch's fused.
"""

from __future__ import annotations

import functools

import pytest
import torch

import companion.optim as co

STEPS = 300
SHAPES = [(4, 3), (5,), (), (2, 3, 2)]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@functools.lru_cache(maxsize=8)
def _noise(dtype: torch.dtype, device: str) -> tuple[tuple[torch.Tensor, ...], ...]:
    gen = torch.Generator().manual_seed(1234)
    return tuple(
        tuple(torch.randn(s, generator=gen, dtype=dtype).to(device) for s in SHAPES)
        for _ in range(STEPS)
    )


def trajectory(make, dtype, device, checkpoints=(1, 10, 100, STEPS)):
    """Snapshots of all parameters at the start and after ``checkpoints`` steps."""
    gen = torch.Generator().manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype).to(device)) for s in SHAPES
    ]
    opt = make([{"params": params[:2]}, {"params": params[2:], "lr": 0.003}])
    noise = _noise(dtype, str(device))
    snaps = [[p.detach().clone() for p in params]]
    for t in range(STEPS):
        for i, p in enumerate(params):
            p.grad = 0.5 * (i + 1) * p.detach() + noise[t][i]
        opt.step()
        if t + 1 in checkpoints:
            snaps.append([p.detach().clone() for p in params])
    return snaps


def max_rel_err(a, b) -> float:
    return max(
        ((x - y).abs().max() / y.abs().max().clamp_min(1e-300)).item()
        for sa, sb in zip(a, b, strict=True)
        for x, y in zip(sa, sb, strict=True)
    )


CASES = {
    "sgd-plain": dict(name="SGD", kw=dict(lr=0.01)),
    "sgd-momentum-nesterov-l2": dict(
        name="SGD", kw=dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1)
    ),
    "sgd-dampening-maximize": dict(
        name="SGD", kw=dict(lr=0.01, momentum=0.8, dampening=0.3, maximize=True)
    ),
    "adam-default": dict(name="Adam", kw=dict(lr=0.01)),
    "adam-l2": dict(name="Adam", kw=dict(lr=0.01, weight_decay=0.1)),
    "adam-amsgrad": dict(name="Adam", kw=dict(lr=0.01, amsgrad=True)),
    "adam-maximize": dict(name="Adam", kw=dict(lr=0.01, maximize=True, betas=(0.8, 0.99))),
    "adamw-default": dict(name="AdamW", kw=dict(lr=0.01)),
    "adamw-amsgrad": dict(name="AdamW", kw=dict(lr=0.01, weight_decay=0.05, amsgrad=True)),
    "adamw-decay-torch": dict(
        name="AdamW", kw=dict(lr=0.01, weight_decay=0.1, eps=1e-6), ours=dict(decay="torch")
    ),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("foreach", [False, True], ids=["reference", "multi-tensor"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(case, foreach, dtype, device):
    spec = CASES[case]
    ours_cls, torch_cls = getattr(co, spec["name"]), getattr(torch.optim, spec["name"])
    kw = dict(spec["kw"], foreach=foreach)
    ours = trajectory(lambda p: ours_cls(p, **kw, **spec.get("ours", {})), dtype, device)
    ref = trajectory(lambda p: torch_cls(p, **kw), dtype, device)
    assert max_rel_err(ours, ref) <= (0.0 if device.type == "cpu" else TOL[dtype])  # CPU: bitwise
    assert max_rel_err(ref[-1:], ref[:1]) > 1e-2  # the parameters really moved


@pytest.mark.parametrize(
    "case", ["sgd-momentum-nesterov-l2", "adam-l2", "adam-amsgrad", "adamw-amsgrad"]
)
def test_fused_matches_torch_fused(case, device):
    spec = CASES[case]
    ours_cls, torch_cls = getattr(co, spec["name"]), getattr(torch.optim, spec["name"])
    kw = dict(spec["kw"], fused=True)
    ours = trajectory(lambda p: ours_cls(p, **kw), torch.float32, device)
    ref = trajectory(lambda p: torch_cls(p, **kw), torch.float32, device)
    assert max_rel_err(ours, ref) <= (0.0 if device.type == "cpu" else TOL[torch.float32])


def test_paths_agree_with_each_other(device):
    """Reference, multi-tensor and fused paths of companion give the same AdamW trajectory."""
    runs = [
        trajectory(lambda p, k=k: co.AdamW(p, lr=0.01, **k), torch.float32, device)
        for k in (dict(foreach=False), dict(foreach=True), dict(fused=True))
    ]
    assert max_rel_err(runs[1], runs[0]) <= 1e-6
    assert max_rel_err(runs[2], runs[0]) <= 1e-5


def test_complex_parameters_match_torch():
    gen = torch.Generator().manual_seed(3)
    z0 = torch.randn(4, dtype=torch.complex128, generator=gen)
    grads = [torch.randn(4, dtype=torch.complex128, generator=gen) for _ in range(20)]
    out = []
    for cls in (co.AdamW, torch.optim.AdamW):
        z = torch.nn.Parameter(z0.clone())
        opt = cls([z], lr=0.05, amsgrad=True)
        for g in grads:
            z.grad = g + 0.1 * z.detach()
            opt.step()
        out.append(z.detach())
    torch.testing.assert_close(out[0], out[1], rtol=1e-12, atol=0)
