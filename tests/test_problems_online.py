"""Section 6.3.3's online problem: the gradients, the Adam-family runner, the regret.

``adam_family_online`` is checked against ``companion.optim.Adam``/``AMSGrad`` (and
``torch.optim.Adam``) stepping a real tensor with the projection done by ``clamp_``,
in a loop written here; ``average_regret`` against the regret computed from its
definition; ``run_on_gradients`` against hand-written loops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import companion.optim as co
from companion.problems import adam_family_online, reddi_gradients, run_on_gradients
from companion.theory import average_regret

f64 = torch.float64


# ------------------------------------------------------------------------ reddi_gradients
def test_reddi_gradients_c3_pattern():
    g = reddi_gradients(9)
    expected = [3.0, -1.0, -1.0] * 3
    assert g.dtype == np.float64 and g.tolist() == expected


def test_reddi_gradients_paper_experiment():
    g = reddi_gradients(303, 101, period=101, scale=10)
    t = np.arange(1, 304)
    assert np.array_equal(g, np.where(t % 101 == 1, 1010.0, -10.0))
    assert g.sum() == 3 * (1010 - 100 * 10)  # +10 per period: w* = -1


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        (dict(T=0), ValueError, "T"),
        (dict(T=3.0), TypeError, "T"),
        (dict(T=True), TypeError, "T"),
        (dict(T=5, C=0.0), ValueError, "C"),
        (dict(T=5, C="3"), TypeError, "C"),
        (dict(T=5, C=float("nan")), ValueError, "C"),
        (dict(T=5, period=1), ValueError, "period"),
        (dict(T=5, scale=-1.0), ValueError, "scale"),
    ],
)
def test_reddi_gradients_rejects_bad_input(kwargs, error, name):
    with pytest.raises(error, match=name):
        reddi_gradients(**kwargs)


# -------------------------------------------------- the runner against the real optimizers
def optimizer_iterates(grads, method, lr, betas, eps, variant="paper", lr_decay="none"):
    """w_1..w_{T+1} from companion.optim stepping a one-element float64 tensor."""
    w = torch.nn.Parameter(torch.zeros(1, dtype=f64))
    if method == "adam":  # Adam has no lr_decay: alpha / sqrt(t) is set by hand
        opt = co.Adam([w], lr=lr, betas=betas, eps=eps)
    else:
        opt = co.AMSGrad([w], lr=lr, betas=betas, eps=eps, variant=variant, lr_decay=lr_decay)
    out = [0.0]
    for t, g in enumerate(grads.tolist(), start=1):
        if method == "adam" and lr_decay == "sqrt":
            opt.param_groups[0]["lr"] = lr / math.sqrt(t)
        w.grad = torch.tensor([g], dtype=f64)
        opt.step()
        with torch.no_grad():
            w.clamp_(-1.0, 1.0)
        out.append(w.item())
    return np.array(out)


PAPER_CONFIGS = [  # the six runs of the paper's experiment in section 6.3.3
    ("adam", 1e-3, "paper", "none"),
    ("amsgrad", 1e-3, "paper", "none"),
    ("adam", 0.1, "paper", "sqrt"),
    ("amsgrad", 0.1, "paper", "sqrt"),
    ("amsgrad", 1e-3, "torch", "none"),
    ("amsgrad", 1e-3, "corrected", "none"),
]


@pytest.mark.parametrize(("method", "lr", "variant", "lr_decay"), PAPER_CONFIGS)
def test_runner_matches_optimizers_on_the_paper_experiment(method, lr, variant, lr_decay):
    grads = reddi_gradients(2500, 101, period=101, scale=10)
    kw = dict(lr=lr, betas=(0.9, 0.99), eps=1e-8, variant=variant, lr_decay=lr_decay)
    ours = adam_family_online(grads, method, **kw)
    reference = optimizer_iterates(grads, method, **kw)
    assert ours.shape == (grads.size + 1,)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)
    assert np.abs(ours).max() > 1e-3  # the run moved: the comparison is not vacuous


@pytest.mark.parametrize(
    ("method", "variant", "betas"),
    [
        ("adam", "paper", (0.0, 0.1)),
        ("adam", "paper", (0.9, 0.999)),
        ("amsgrad", "paper", (0.0, 0.1)),
        ("amsgrad", "paper", (0.9, 0.999)),
        ("amsgrad", "torch", (0.0, 0.1)),
        ("amsgrad", "corrected", (0.0, 0.1)),
    ],
)
def test_runner_matches_optimizers_on_c3(method, variant, betas):
    grads = reddi_gradients(3000)
    kw = dict(lr=0.5, betas=betas, eps=0.0, variant=variant, lr_decay="sqrt")
    ours = adam_family_online(grads, method, **kw)
    np.testing.assert_allclose(ours, optimizer_iterates(grads, method, **kw), rtol=0, atol=1e-12)


def test_runner_matches_torch_adam_amsgrad():
    """variant="torch" with a constant step is torch.optim.Adam(amsgrad=True)."""
    grads = reddi_gradients(1500, 101, period=101, scale=10)
    w = torch.nn.Parameter(torch.zeros(1, dtype=f64))
    opt = torch.optim.Adam([w], lr=1e-3, betas=(0.9, 0.99), amsgrad=True)
    reference = [0.0]
    for g in grads:
        w.grad = torch.tensor([g], dtype=f64)
        opt.step()
        with torch.no_grad():
            w.clamp_(-1.0, 1.0)
        reference.append(w.item())
    ours = adam_family_online(grads, "amsgrad", lr=1e-3, betas=(0.9, 0.99), variant="torch")
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


def test_runner_reproduces_the_known_outcomes_on_c3():
    grads = reddi_gradients(30_000)
    kw = dict(lr=0.5, betas=(0.0, 0.1), eps=0.0, lr_decay="sqrt")
    adam = adam_family_online(grads, "adam", **kw)
    amsgrad = adam_family_online(grads, "amsgrad", **kw)
    assert adam[-1] == 1.0 and amsgrad[-1] < -0.99
    assert abs(average_regret(adam[:-1], grads)[-1] - 2 / 3) < 0.01
    assert average_regret(amsgrad[:-1], grads)[-1] < 0.01


def test_runner_starts_at_w1_and_stays_in_the_box():
    grads = np.array([-50.0, -50.0, 80.0, 80.0, 80.0])
    w = adam_family_online(grads, "adam", lr=1.5, betas=(0.0, 0.999), w1=0.5)
    assert w[0] == 0.5 and np.all(np.abs(w) <= 1.0)
    assert w[2] == 1.0 and w[-1] == -1.0  # clipped at both ends


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        (dict(method="sgd"), ValueError, "method"),
        (dict(method=1), TypeError, "method"),
        (dict(variant="optax"), ValueError, "variant"),
        (dict(lr_decay="cosine"), ValueError, "lr_decay"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr="0.1"), TypeError, "lr"),
        (dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
        (dict(betas=(-0.1, 0.9)), ValueError, r"betas\[0\]"),
        (dict(betas=0.9), TypeError, "betas"),
        (dict(eps=-1e-8), ValueError, "eps"),
        (dict(w1=1.5), ValueError, "w1"),
    ],
)
def test_runner_rejects_bad_input(kwargs, error, name):
    kw = dict(method="adam", lr=0.1) | kwargs
    with pytest.raises(error, match=name):
        adam_family_online(reddi_gradients(6), **kw)


@pytest.mark.parametrize(
    ("grads", "error"),
    [
        ([1.0, float("nan")], ValueError),
        ([], ValueError),
        ("abc", TypeError),
        ([[1.0]], ValueError),
    ],
)
def test_runner_rejects_bad_gradients(grads, error):
    with pytest.raises(error, match="grads"):
        adam_family_online(grads, "adam", lr=0.1)


def test_runner_refuses_zero_over_zero():
    with pytest.raises(ValueError, match="eps"):
        adam_family_online([0.0, 1.0], "amsgrad", lr=0.1, eps=0.0)


# --------------------------------------------------------------------------- average_regret
def regret_by_definition(played, grads, radius):
    """R(t)/t with the best fixed point found by comparing the two ends of [-r, r]."""
    out = []
    for t in range(1, len(grads) + 1):
        paid = sum(g * w for g, w in zip(grads[:t], played[:t], strict=True))
        best = min(sum(g * w for g in grads[:t]) for w in (-radius, radius))
        out.append((paid - best) / t)
    return np.array(out)


@pytest.mark.parametrize("radius", [1.0, 2.5])
def test_average_regret_against_definition(radius):
    rng = np.random.default_rng(3)
    grads = rng.normal(size=60) * 3
    played = rng.uniform(-radius, radius, size=60)
    np.testing.assert_allclose(
        average_regret(played, grads, radius),
        regret_by_definition(played, grads, radius),
        rtol=1e-12,
        atol=1e-12,
    )


def test_average_regret_of_the_best_point_is_zero_at_period_ends():
    grads = reddi_gradients(30)
    regret = average_regret(-np.ones(30), grads)
    assert np.allclose(regret[2::3], 0.0) and (regret >= -1e-15).all()


@pytest.mark.parametrize(
    ("played", "grads", "kwargs", "error", "name"),
    [
        ([0.0, 0.0], [1.0], {}, ValueError, "same length"),
        ([1.5], [1.0], {}, ValueError, "played"),
        ([0.0], [float("inf")], {}, ValueError, "grads"),
        ([0.0], [1.0], dict(radius=0.0), ValueError, "radius"),
        ([0.0], [1.0], dict(radius="1"), TypeError, "radius"),
        (["a"], [1.0], {}, TypeError, "played"),
    ],
)
def test_average_regret_rejects_bad_input(played, grads, kwargs, error, name):
    with pytest.raises(error, match=name):
        average_regret(played, grads, **kwargs)


# ------------------------------------------------------------------------- run_on_gradients
def test_run_on_gradients_matches_a_hand_loop_with_torch_adam():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(40, 3))
    w = torch.nn.Parameter(torch.ones(3, dtype=f64))
    opt = torch.optim.Adam([w], lr=0.05)
    expected = [w.detach().numpy().copy()]
    for g in grads:
        w.grad = torch.as_tensor(g)
        opt.step()
        expected.append(w.detach().numpy().copy())
    ours = run_on_gradients(lambda p: torch.optim.Adam(p, lr=0.05), grads, np.ones(3))
    assert ours.shape == (41, 3)
    np.testing.assert_array_equal(ours, np.array(expected))


def test_run_on_gradients_schedule_bounds_and_callback():
    grads = np.full(5, -1.0)
    seen = []
    path = run_on_gradients(
        lambda p: co.SGD(p, lr=1.0),
        grads,
        0.0,
        schedule=lambda t: 0.25 * (t + 1),  # lr of step t (0-based)
        bounds=(-1.0, 1.0),
        callback=lambda t, opt: seen.append((t, opt.param_groups[0]["lr"])),
    )
    # steps of 0.25, 0.5, 0.75, ... upward, clipped at 1
    np.testing.assert_allclose(path, [0.0, 0.25, 0.75, 1.0, 1.0, 1.0])
    assert [t for t, _ in seen] == [0, 1, 2, 3, 4]
    assert seen[0][1] == pytest.approx(0.5)  # after step 0, the lr of step 1 is in place


def test_run_on_gradients_matches_the_runner_on_c3():
    grads = reddi_gradients(900)
    path = run_on_gradients(
        lambda p: co.AMSGrad(p, lr=0.5, betas=(0.0, 0.1), eps=0.0), grads, 0.0, bounds=(-1, 1)
    )
    expected = adam_family_online(
        grads, "amsgrad", lr=0.5, betas=(0.0, 0.1), eps=0.0, lr_decay="sqrt"
    )
    np.testing.assert_allclose(path, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "name"),
    [
        (([1.0, 2.0], [0.0, 0.0]), {}, ValueError, "w0"),
        (([[1.0, 2.0]], 0.0), {}, ValueError, "w0"),
        (([1.0], 0.0), dict(bounds=(1.0, -1.0)), ValueError, "bounds"),
        (([1.0], 0.0), dict(bounds=1.0), TypeError, "bounds"),
        (([1.0], 0.0), dict(schedule=0.1), TypeError, "schedule"),
        (([1.0], 0.0), dict(callback="x"), TypeError, "callback"),
        (([float("nan")], 0.0), {}, ValueError, "grads"),
        ((np.zeros((2, 2, 2)), 0.0), {}, ValueError, "grads"),
    ],
)
def test_run_on_gradients_rejects_bad_input(args, kwargs, error, name):
    with pytest.raises(error, match=name):
        run_on_gradients(lambda p: co.SGD(p, lr=0.1), *args, **kwargs)
