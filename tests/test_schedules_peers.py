"""companion.schedules against the libraries practitioners come from.

torch's schedulers are driven on a real optimizer and read back with ``get_last_lr()``;
optax's ``polynomial_schedule`` / ``exponential_decay`` and Hugging Face's
``get_inverse_sqrt_schedule`` are not installed, so their formulas are written out below
from their published source, in plain Python floats, one step at a time. Agreement is
to rounding: our closed forms use numpy's ``power`` (which may differ from C's ``pow`` in
the last bit) and torch's ``PolynomialLR``/``ExponentialLR`` multiply the previous rate
step by step, so they drift from the closed form by a few units in the last place.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion.schedules import (
    cosine,
    exponential,
    inverse_sqrt,
    linear_warmup,
    one_cycle,
    piecewise_constant,
    polynomial,
    sgdr,
)

ULP = np.finfo(np.float64).eps  # 2.2e-16


def torch_lrs(make, n, lr):
    """``get_last_lr()`` of torch's scheduler before each of the first ``n`` updates."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return np.array(out)


def torch_closed(make, n, lr):
    """torch's closed form (``_get_closed_form_lr``) at the steps 0..n-1."""
    p = torch.nn.Parameter(torch.zeros(1))
    sched = make(torch.optim.SGD([p], lr=lr))
    out = []
    for t in range(n):
        sched.last_epoch = t
        out.append(sched._get_closed_form_lr()[0])
    return np.array(out)


def run(s, n):
    return s(np.arange(n))


def assert_close(ours, theirs, rel):
    """Equal to ``rel`` relative to the peak (the values span many orders of magnitude)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    scale = np.max(np.abs(theirs))
    np.testing.assert_array_less(np.abs(ours - theirs), rel * scale + 1e-300)


# ----------------------------------------------------------------------------- torch's closed forms


@pytest.mark.parametrize(("T", "eta_min"), [(1, 0.0), (7, 0.0), (100, 0.01), (1000, 0.0)])
def test_cosine_vs_torch_cosine_annealing(T, eta_min):
    peak = 0.1
    ours = run(cosine(peak, T, final_lr=eta_min), T + 1)
    chained = torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T, eta_min), T + 1, peak
    )
    np.testing.assert_allclose(ours, chained, rtol=1e-9, atol=1e-14)
    closed = torch_closed(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T, eta_min), T + 1, peak
    )
    assert_close(ours, closed, 2 * ULP)


def test_piecewise_vs_torch_multistep():
    lr, gamma, milestones = 0.1, 0.1, [30, 60, 80]
    ours = run(piecewise_constant(milestones, [lr * gamma**i for i in range(4)]), 120)
    theirs = torch_lrs(
        lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma), 120, lr
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    # section 6.4's two-stage strategy is MultiStepLR with gamma = 1/4, exactly
    theirs = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [50], 0.25), 100, 0.1)
    assert np.array_equal(run(piecewise_constant([50], [0.1, 0.025]), 100), theirs)


@pytest.mark.parametrize("W", [2, 5, 50])
def test_linear_warmup_vs_torch_linear_lr(W):
    peak = 0.3
    ours = run(linear_warmup(peak, W), 3 * W)
    theirs = torch_lrs(
        lambda o: torch.optim.lr_scheduler.LinearLR(o, 1 / W, 1.0, total_iters=W - 1), 3 * W, peak
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize(("C", "m", "eta_min"), [(10, 1, 0.0), (5, 2, 0.01), (3, 3, 0.0)])
def test_sgdr_vs_torch_warm_restarts(C, m, eta_min):
    peak = 0.2
    ours = run(sgdr(peak, C, cycle_mult=m, final_lr=eta_min), 300)
    theirs = torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, C, m, eta_min), 300, peak
    )
    assert_close(ours, theirs, 2 * ULP)  # torch's closed form, evaluated at every step


# ----------------------------------------------------------------------------- peers' formulas


def optax_polynomial(count, init_value, end_value, power, transition_steps, transition_begin=0):
    """optax.polynomial_schedule (optax/schedules/_schedule.py)."""
    count = min(max(count - transition_begin, 0), transition_steps)
    frac = 1 - count / transition_steps
    return (init_value - end_value) * (frac**power) + end_value


def optax_exponential(
    count, init_value, transition_steps, decay_rate, staircase=False, end_value=None
):
    """optax.exponential_decay with transition_begin=0 (optax/schedules/_schedule.py)."""
    p = count / transition_steps
    if staircase:
        p = math.floor(p)
    value = init_value if count <= 0 else init_value * decay_rate**p
    if end_value is not None:
        value = max(value, end_value) if decay_rate < 1.0 else min(value, end_value)
    return value


def hf_inverse_sqrt(step, base_lr, num_warmup_steps, timescale=None):
    """transformers.get_inverse_sqrt_schedule: LambdaLR's base_lr * lr_lambda(step)."""
    if timescale is None:
        timescale = num_warmup_steps or 10_000
    if step < num_warmup_steps:
        return base_lr * (float(step) / float(max(1, num_warmup_steps)))
    shift = timescale - num_warmup_steps
    return base_lr * (1.0 / math.sqrt((step + shift) / timescale))


# ----------------------------------------------------------------------------- polynomial


@pytest.mark.parametrize(("T", "power"), [(1, 1.0), (10, 1.0), (100, 2.0), (37, 0.5), (1000, 3.0)])
def test_polynomial_equals_torch_polynomial_lr(T, power):
    peak = 0.1
    ours = polynomial(peak, T, power=power)(np.arange(T + 5))
    theirs = torch_lrs(
        lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=T, power=power), T + 5, peak
    )
    assert_close(ours, theirs, 64 * ULP)  # torch's recursion drifts a little
    assert np.all(ours[T:] == 0.0)
    # torch's closed form: the same operations but for numpy's pow
    closed = torch_closed(
        lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=T, power=power), T + 5, peak
    )
    assert_close(ours, closed, 2 * ULP)


@pytest.mark.parametrize(
    ("T", "power", "final"), [(10, 1.0, 0.0), (100, 2.0, 0.01), (37, 0.5, 0.05), (500, 3.0, 1e-4)]
)
def test_polynomial_equals_optax_polynomial_schedule(T, power, final):
    peak = 0.1
    ours = polynomial(peak, T, power=power, final_lr=final)(np.arange(T + 5))
    theirs = [optax_polynomial(t, peak, final, power, T) for t in range(T + 5)]
    assert_close(ours, theirs, 2 * ULP)


def test_polynomial_with_warmup_and_floor_matches_its_formula():
    peak, T, W, k, final = 0.3, 60, 8, 2.0, 0.01
    ours = polynomial(peak, T, power=k, final_lr=final, warmup_steps=W)(np.arange(T + 5))
    want = [
        peak * (t + 1) / W
        if t < W
        else final + (peak - final) * (1 - (t - W) / (T - W)) ** k
        if t < T
        else final
        for t in range(T + 5)
    ]
    assert_close(ours, want, 4 * ULP)
    assert ours[0] == peak / W and ours[W - 1] == peak and ours[W] == peak


# ----------------------------------------------------------------------------- exponential


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99, 0.999])
def test_exponential_equals_torch_exponential_lr(gamma):
    peak, n = 0.1, 300
    ours = exponential(peak, gamma)(np.arange(n))
    theirs = torch_lrs(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma), n, peak)
    # torch multiplies by gamma once per step: up to ~t/2 ulp of drift after t steps
    np.testing.assert_allclose(ours, theirs, rtol=n * ULP, atol=0)
    closed = torch_closed(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma), n, peak)
    np.testing.assert_allclose(ours, closed, rtol=2 * ULP, atol=0)


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize(("k", "gamma", "final"), [(1, 0.9, 0.0), (7, 0.5, 0.0), (10, 0.8, 0.02)])
def test_exponential_equals_optax_exponential_decay(staircase, k, gamma, final):
    peak, n = 0.1, 200
    ours = exponential(peak, gamma, decay_steps=k, staircase=staircase, final_lr=final)
    end = final if final > 0 else None
    theirs = [optax_exponential(t, peak, k, gamma, staircase, end) for t in range(n)]
    np.testing.assert_allclose(ours(np.arange(n)), theirs, rtol=2 * ULP, atol=0)
    if final > 0:
        assert ours(10**6) == final  # never below final_lr


def test_exponential_warmup_then_decay():
    peak, W = 1.0, 4
    s = exponential(peak, 0.5, decay_steps=2, warmup_steps=W)
    want = [0.25, 0.5, 0.75, 1.0, 1.0, 0.5**0.5, 0.5, 0.5**1.5]
    np.testing.assert_allclose(s(np.arange(8)), want, rtol=2 * ULP)


# ----------------------------------------------------------------------------- inverse sqrt


@pytest.mark.parametrize(("W", "tau"), [(1, None), (10, None), (100, None), (10, 50), (0, 7)])
def test_inverse_sqrt_equals_hugging_face_after_warmup(W, tau):
    peak, n = 0.1, 3000
    ours = inverse_sqrt(peak, W, timescale=tau)(np.arange(n))
    theirs = np.array([hf_inverse_sqrt(t, peak, W, tau) for t in range(n)])
    assert np.array_equal(ours[W:], theirs[W:])  # the same operations: bit for bit
    # the convention difference: our warmup is one step ahead of theirs
    assert np.array_equal(ours[: max(W - 1, 0)], theirs[1:W])
    if W:
        assert ours[0] == pytest.approx(peak / W, rel=ULP) and theirs[0] == 0.0


def test_inverse_sqrt_formula():
    peak, W, tau = 2.0, 5, 20
    s = inverse_sqrt(peak, W, timescale=tau)
    t = np.arange(W, 400)
    np.testing.assert_allclose(s(t), peak * np.sqrt(tau / (t - W + tau)), rtol=4 * ULP)
    # the rate halves when t - W + tau quadruples
    assert s(W + 3 * tau) == pytest.approx(peak / 2, rel=1e-15)


# ----------------------------------------------------------------------------- one-cycle

ONE_CYCLE = [
    (100, 0.3, 25.0, 1e4),
    (100, 0.25, 10.0, 100.0),
    (37, 0.1, 5.0, 1e3),
    (37, 0.45, 1.0, 2.0),
    (1000, 0.05, 25.0, 1e4),
    (7, 0.5, 3.0, 10.0),
]


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize(("T", "pct", "div", "final_div"), ONE_CYCLE)
def test_one_cycle_equals_torch_one_cycle_lr(T, pct, div, final_div, anneal, three_phase):
    peak = 0.1
    ours = one_cycle(peak, T, pct, anneal, div, final_div, three_phase)(np.arange(T))
    theirs = torch_lrs(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o,
            max_lr=peak,
            total_steps=T,
            pct_start=pct,
            anneal_strategy=anneal,
            cycle_momentum=False,
            div_factor=div,
            final_div_factor=final_div,
            three_phase=three_phase,
        ),
        T,
        peak,
    )
    assert_close(ours, theirs, 2 * ULP)
    assert ours[0] == pytest.approx(peak / div, rel=2 * ULP)


def test_one_cycle_after_the_end_and_a_first_phase_of_length_zero():
    s = one_cycle(1.0, 10, pct_start=0.1, div_factor=4.0, final_div_factor=10.0)
    # pct_start * total_steps = 1: torch divides by zero at step 0; we start at the peak
    assert s(0) == 1.0
    assert s(10) == s(10**9) == 1.0 / 4.0 / 10.0  # the floor, after the last step
    lrs = s(np.arange(10))
    assert np.all(np.diff(lrs) <= 0) and lrs[-1] == pytest.approx(0.025, rel=1e-15)
