"""The variants torch.optim lacks, against independent implementations written here.

* AdamW ``decay="paper"``: Loshchilov & Hutter's Algorithm 2, and its equivalence with
  ``decay="torch"`` at λ_torch = λ_paper/α.
* AMSGrad: Reddi et al.'s Algorithm 2 (``variant="paper"``), the optax variant
  (``"corrected"``) and PyTorch's (``"torch"``); Reddi et al.'s online problem.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import companion.optim as co

T = 200
C = np.array([0.5, 1.0, 2.0, 4.0])  # gradient g = C θ + noise


def _noise(seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((T, C.size))


def run_companion(make, steps=T, lr_at=None, dtype=torch.float64, device="cpu"):
    """Our optimizer on θ (4 scalars in one tensor); returns θ after every step."""
    theta = torch.nn.Parameter(torch.linspace(-1.0, 2.0, C.size, dtype=dtype, device=device))
    opt, sched = make([theta])
    noise = torch.as_tensor(_noise(), dtype=dtype, device=device)
    c = torch.as_tensor(C, dtype=dtype, device=device)
    out = []
    for t in range(steps):
        if lr_at is not None:
            opt.param_groups[0]["lr"] = lr_at(t)
        theta.grad = c * theta.detach() + noise[t]
        opt.step()
        if sched is not None:
            sched.step()
        out.append(theta.detach().cpu().double().numpy().copy())
    return np.array(out)


# ------------------------------------------------------------------ AdamW, paper convention
def adamw_algorithm2(alpha, lam, eta, betas=(0.9, 0.999), eps=1e-8, steps=T):
    """Loshchilov & Hutter (2019), Algorithm 2, in numpy; ``eta(t)`` for t = 1, 2, ..."""
    b1, b2 = betas
    theta = np.linspace(-1.0, 2.0, C.size)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    noise = _noise()
    out = []
    for t in range(1, steps + 1):
        g = C * theta + noise[t - 1]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        theta = theta - eta(t) * (alpha * m_hat / (np.sqrt(v_hat) + eps) + lam * theta)
        out.append(theta.copy())
    return np.array(out)


def cosine_multiplier(k: int) -> float:
    """A schedule multiplier for step k = 0, 1, ...: cosine from 1 to 0.1 over T steps."""
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / T))


@pytest.mark.parametrize("foreach", [False, True])
def test_adamw_paper_is_algorithm_2_under_a_schedule(foreach):
    alpha, lam = 0.05, 0.3

    def make(p):
        opt = co.AdamW(p, lr=alpha, weight_decay=lam, decay="paper", foreach=foreach)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, cosine_multiplier)

    ours = run_companion(make)
    ref = adamw_algorithm2(alpha, lam, eta=lambda t: cosine_multiplier(t - 1))
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    # and it is not the torch convention (the decay there would be α times smaller)
    torch_conv = run_companion(
        lambda p: (
            opt := co.AdamW(p, lr=alpha, weight_decay=lam, foreach=foreach),
            torch.optim.lr_scheduler.LambdaLR(opt, cosine_multiplier),
        )
    )
    assert np.abs(torch_conv[-1] - ref[-1]).max() > 1e-2


def test_adamw_paper_without_scheduler_uses_the_creation_lr_as_alpha():
    """No scheduler: α is the lr the group was created with; a manual change of lr is η·α."""
    alpha, lam = 0.02, 0.5
    lr_at = lambda t: alpha * (1.0 if t < 100 else 0.25)  # noqa: E731
    ours = run_companion(
        lambda p: (co.AdamW(p, lr=alpha, weight_decay=lam, decay="paper"), None), lr_at=lr_at
    )
    ref = adamw_algorithm2(alpha, lam, eta=lambda t: lr_at(t - 1) / alpha)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", [dict(foreach=False), dict(foreach=True), dict(fused=True)])
def test_adamw_paper_equals_torch_convention_with_rescaled_decay(path):
    """Two groups with different α: decay="paper" with λ ≡ decay="torch" with λ/α, per group."""
    lam = 0.4
    alphas = (0.01, 0.003)

    def trajectory(decay, lams):
        gen = torch.Generator().manual_seed(5)
        ps = [torch.nn.Parameter(torch.randn(3, 2, generator=gen)) for _ in alphas]
        groups = [
            {"params": [p], "lr": a, "weight_decay": wd}
            for p, a, wd in zip(ps, alphas, lams, strict=True)
        ]
        opt = co.AdamW(groups, decay=decay, **path)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
        for _ in range(60):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen) + p.detach()
            opt.step()
            sched.step()
        return [p.detach() for p in ps]

    paper = trajectory("paper", (lam, lam))
    torch_conv = trajectory("torch", tuple(lam / a for a in alphas))
    for a, b in zip(paper, torch_conv, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


def test_adamw_paper_with_tensor_lr_matches_float_lr(device):
    """A tensor lr (ScheduledLR writes one) makes α a tensor: same numbers, no host read."""
    alpha, lam = 2.0**-6, 0.25

    def make(lr):
        def _make(p):
            opt = co.AdamW(p, lr=lr, weight_decay=lam, decay="paper")
            return opt, torch.optim.lr_scheduler.LambdaLR(opt, cosine_multiplier)

        return _make

    as_float = run_companion(make(alpha), steps=50, device=device)
    lr = torch.tensor(alpha, dtype=torch.float64, device=device)
    as_tensor = run_companion(make(lr), steps=50, device=device)
    np.testing.assert_allclose(as_tensor, as_float, rtol=1e-12, atol=1e-14)


def test_adamw_paper_decay_needs_a_positive_alpha():
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=r"alpha of decay=.paper.* must be .* > 0"):
        co.AdamW([p], lr=0.0, decay="paper")
    opt = co.AdamW([p], lr=0.1, decay="paper")
    opt.param_groups[0]["initial_lr"] = 0.0  # e.g. a scheduler built on a zero lr
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match=r"alpha of decay=.paper.* must be .* > 0"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(2)) and not opt.state


# ------------------------------------------------------------------------------- AMSGrad
def amsgrad_reference(variant, lr, lr_decay, betas=(0.9, 0.99), eps=1e-8, wd=0.0, steps=T):
    """The three AMSGrad variants, written from their definitions, in numpy."""
    b1, b2 = betas
    theta = np.linspace(-1.0, 2.0, C.size)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    v_max = np.zeros_like(theta)
    noise = _noise()
    out = []
    for t in range(1, steps + 1):
        g = C * theta + noise[t - 1] + wd * theta
        a_t = lr / math.sqrt(t) if lr_decay == "sqrt" else lr
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if variant == "paper":  # Reddi et al., Algorithm 2: no bias correction
            v_max = np.maximum(v_max, v)
            step = a_t * m / (np.sqrt(v_max) + eps)
        elif variant == "torch":  # max of raw v, then bias-corrected
            v_max = np.maximum(v_max, v)
            step = a_t * (m / (1 - b1**t)) / (np.sqrt(v_max / (1 - b2**t)) + eps)
        else:  # "corrected": max of the bias-corrected v
            v_max = np.maximum(v_max, v / (1 - b2**t))
            step = a_t * (m / (1 - b1**t)) / (np.sqrt(v_max) + eps)
        theta = theta - step
        out.append(theta.copy())
    return np.array(out)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("lr_decay", ["sqrt", "none"])
@pytest.mark.parametrize("variant", ["paper", "torch", "corrected"])
def test_amsgrad_variants_match_their_definitions(variant, lr_decay, foreach):
    kw = dict(lr=0.05, betas=(0.9, 0.99), weight_decay=0.1)
    ours = run_companion(
        lambda p: (
            co.AMSGrad(p, **kw, variant=variant, lr_decay=lr_decay, foreach=foreach),
            None,
        )
    )
    ref = amsgrad_reference(variant, 0.05, lr_decay, wd=0.1)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


def test_amsgrad_variants_differ():
    """The three variants are three different algorithms on the same data."""
    finals = {
        v: run_companion(lambda p, v=v: (co.AMSGrad(p, lr=0.05, variant=v), None), steps=50)[-1]
        for v in ("paper", "torch", "corrected")
    }
    assert np.abs(finals["paper"] - finals["torch"]).max() > 1e-3
    assert np.abs(finals["torch"] - finals["corrected"]).max() > 1e-6


@pytest.mark.parametrize("path", [dict(foreach=False), dict(foreach=True), dict(fused=True)])
def test_amsgrad_torch_variant_is_torch_adam_amsgrad(path):
    make_ours = lambda p: (  # noqa: E731
        co.AMSGrad(p, lr=0.05, variant="torch", lr_decay="none", **path),
        None,
    )
    make_torch = lambda p: (torch.optim.Adam(p, lr=0.05, amsgrad=True, **path), None)  # noqa: E731
    dtype = torch.float32 if path.get("fused") else torch.float64
    ours = run_companion(make_ours, dtype=dtype)
    ref = run_companion(make_torch, dtype=dtype)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=0)


def test_amsgrad_paper_second_moment_never_decreases():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = co.AMSGrad([p], lr=0.1, betas=(0.0, 0.5))
    previous = torch.zeros(3, dtype=torch.float64)
    for g in ([5.0, 1.0, 0.0], [0.1, 2.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.1, 0.0]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        current = opt.state[p]["max_exp_avg_sq"].clone()
        assert torch.all(current >= previous)
        previous = current
    assert previous[0] == pytest.approx(0.5 * 25.0)  # the largest v seen, not the last


@pytest.mark.parametrize(
    "kw",
    [dict(variant="paper"), dict(variant="corrected"), dict(variant="torch", lr_decay="sqrt")],
)
def test_amsgrad_fused_only_where_torch_has_the_same_kernel(kw):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="fused"):
        co.AMSGrad([p], fused=True, **kw)


# ------------------------------------------------------------- Reddi et al.'s online problem
def reddi(make, steps, lr_at=None):
    """f_t(w) = 3w if t mod 3 = 1 else -w on [-1, 1]; returns (w_T, average regret).

    The problem and the runner are the book's (companion.problems, section 6.3.3); the
    optimizer under test is stepped on a real tensor by the runner.
    """
    from companion.problems import reddi_gradients, run_on_gradients
    from companion.theory import average_regret

    grads = reddi_gradients(steps)
    schedule = None if lr_at is None else (lambda t: lr_at(t + 1))  # rounds count from 1
    path = run_on_gradients(make, grads, 1.0, schedule=schedule, bounds=(-1.0, 1.0))
    return float(path[-1]), float(average_regret(path[:-1], grads)[-1])


def test_reddi_problem_amsgrad_converges_and_adam_does_not():
    steps = 30_000
    betas = (0.0, 0.1)
    x_ams, regret_ams = reddi(lambda p: co.AMSGrad(p, lr=0.5, betas=betas), steps)
    x_adam, regret_adam = reddi(
        lambda p: co.Adam(p, lr=0.5, betas=betas), steps, lr_at=lambda t: 0.5 / math.sqrt(t)
    )
    assert x_ams < -0.9 and regret_ams < 0.01
    assert x_adam > 0.9 and abs(regret_adam - 2 / 3) < 0.01


@pytest.mark.parametrize("variant", ["torch", "corrected"])
def test_reddi_problem_other_amsgrad_variants_reach_minus_one(variant):
    x, regret = reddi(lambda p: co.AMSGrad(p, lr=0.5, betas=(0.0, 0.1), variant=variant), 3_000)
    assert x < -0.9 and regret < 0.05
