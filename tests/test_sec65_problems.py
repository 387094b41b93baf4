"""companion.problems' helpers of section 6.5 against independent loops written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from companion.problems import (
    LeastSquares,
    least_squares,
    loss_spread_and_gradient_noise,
    mlp,
    river_on_script,
    sgd_least_squares,
)
from companion.river import River
from companion.schedules import constant, cosine


class Tape:
    """A stand-in for a River that records what it is fed and returns a running count."""

    def __init__(self):
        self.batches = []

    def observe(self, losses):
        self.batches.append(losses.clone())
        return torch.tensor(float(len(self.batches)))


def normal(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------- river_on_script
def test_script_batches_are_rescaled_draws():
    z = normal((5, 6))
    variances = np.array([0.0, 1.0, 4.0, 9.0, 0.25])
    tape = Tape()
    out = river_on_script(tape, variances, z, center=-1.0)
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0, 4.0, 5.0])
    for t, batch in enumerate(tape.batches):
        torch.testing.assert_close(batch, -1.0 + np.sqrt(variances[t]) * z[t], rtol=0, atol=0)


def test_script_with_river_equals_the_loop_and_ignores_the_level():
    z = normal((300, 64), seed=1)
    variances = 0.5 * np.exp(-0.002 * np.arange(300))
    out = river_on_script(River(use_current_batch=True), variances, z)
    river = River(use_current_batch=True)
    by_hand = [
        float(river.observe(2.0 + float(np.sqrt(v)) * z[t])) for t, v in enumerate(variances)
    ]
    np.testing.assert_allclose(out, by_hand, rtol=1e-12)
    assert out[0] == pytest.approx(1.0) and out[-1] > 1.0  # a falling variance lifts it
    high = river_on_script(River(use_current_batch=True), np.full(300, 100.0), z)
    low = river_on_script(River(use_current_batch=True), np.full(300, 0.01), z)
    np.testing.assert_allclose(high, low, rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((object(), [1.0], normal((1, 2))), TypeError, "observe"),
        ((Tape(), [1.0, -1.0], normal((2, 2))), ValueError, r"variances\[1\]"),
        ((Tape(), [1.0], np.ones((1, 2))), TypeError, "noise must be"),
        ((Tape(), [1.0, 2.0], normal((3, 2))), ValueError, r"shape \(T=2"),
        ((Tape(), [1.0], normal((1, 1))), ValueError, "N >= 2"),
    ],
)
def test_script_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        river_on_script(*args)


# --------------------------------------------------------------------------- least squares
def test_least_squares_problem():
    a, b = least_squares(40, 5, noise=0.3, seed=3), least_squares(40, 5, noise=0.3, seed=3)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y) and a.X.dtype == torch.float64
    X, y = a.X.numpy(), a.y.numpy()
    w = np.linalg.solve(X.T @ X, X.T @ y)  # normal equations, independently of lstsq
    assert a.minimum == pytest.approx(0.5 * np.mean((X @ w - y) ** 2), rel=1e-10)
    assert least_squares(40, 5, seed=3).minimum < 1e-25  # no noise: interpolation
    w0 = torch.ones(5, dtype=torch.float64)
    assert a.loss(w0) == pytest.approx(0.5 * np.mean((X @ np.ones(5) - y) ** 2), rel=1e-14)
    torch.testing.assert_close(
        a.losses(w0, torch.tensor([2, 7])), 0.5 * (a.X[[2, 7]] @ w0 - a.y[[2, 7]]) ** 2
    )


def sgd_by_hand(problem, schedule, steps, batch_size, river=None, seed=1):
    """Plain SGD in numpy; the rate of step t is s(t) times what the River returned after t-1."""
    g = torch.Generator().manual_seed(seed)
    X, y = problem.X.numpy(), problem.y.numpy()
    w = np.zeros(X.shape[1])
    multiplier, lrs, losses_t, variances = 1.0, [], [0.5 * np.mean((X @ w - y) ** 2)], []
    for t in range(steps):
        batch = torch.randint(0, X.shape[0], (batch_size,), generator=g).numpy()
        residual = X[batch] @ w - y[batch]
        losses = 0.5 * residual**2
        eta = schedule(t) * multiplier
        w = w - eta * X[batch].T @ residual / batch_size
        if river is not None:
            multiplier = float(river.observe(torch.as_tensor(losses)))
        lrs.append(eta)
        variances.append(np.var(losses))
        losses_t.append(0.5 * np.mean((X @ w - y) ** 2))
    return np.array(lrs), np.array(losses_t), np.array(variances)


@pytest.mark.parametrize("with_river", [False, True])
def test_sgd_least_squares_equals_a_numpy_loop(with_river):
    problem = least_squares(64, 8, noise=0.5, seed=2)
    schedule = cosine(0.05, 300)
    run = sgd_least_squares(
        problem, schedule, steps=300, batch_size=4, river=River() if with_river else None
    )
    lrs, losses, variances = sgd_by_hand(
        problem, schedule, 300, 4, river=River() if with_river else None
    )
    np.testing.assert_allclose(run.lr, lrs, rtol=1e-12)
    np.testing.assert_allclose(run.loss, losses, rtol=1e-9)
    np.testing.assert_allclose(run.batch_variance, variances, rtol=1e-9)
    assert run.loss.shape == (301,) and run.lr.shape == run.batch_variance.shape == (300,)
    if with_river:  # the multiplier moved the rate, from step 2 on (the lag of two)
        ratio = run.lr / schedule(np.arange(300))
        assert ratio[0] == ratio[1] == 1.0 and np.ptp(ratio[2:]) > 0.1


def test_sgd_least_squares_emits_no_warning(recwarn):
    sgd_least_squares(least_squares(16, 2), constant(0.1), steps=3, batch_size=2)
    assert not recwarn.list


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"problem": (1, 2)}, TypeError, "LeastSquares"),
        ({"schedule": 0.1}, TypeError, "schedule must be callable"),
        ({"steps": 0}, ValueError, "steps must be an integer >= 1"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an integer"),
    ],
)
def test_sgd_least_squares_bad_arguments(kwargs, error, match):
    call = {"problem": least_squares(8, 2), "schedule": constant(0.1), "steps": 2, "batch_size": 2}
    call.update(kwargs)
    problem, schedule = call.pop("problem"), call.pop("schedule")
    with pytest.raises(error, match=match):
        sgd_least_squares(problem, schedule, **call)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0, 2), ValueError),
        ((4, 2, -0.1), ValueError),
        ((4.0, 2), TypeError),
        ((4, 2, 0.0, 1.5), TypeError),
    ],
)
def test_least_squares_bad_arguments(args, error):
    with pytest.raises(error):
        least_squares(*args)


# ------------------------------------------------------------------ loss spread, grad noise
@pytest.mark.parametrize("kind", ["cross_entropy", "mse"])
def test_spread_and_noise_equal_a_per_example_autograd_loop(kind):
    model = mlp(5, 7, 3, seed=4, dtype=torch.float64)
    x = normal((12, 5), seed=5)
    if kind == "cross_entropy":
        y, loss_fn = torch.arange(12) % 3, None
        per_example = [F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]) for i in range(12)]
    else:
        y, loss_fn = normal((12, 3), seed=6), F.mse_loss
        per_example = [F.mse_loss(model(x[i : i + 1]), y[i : i + 1]) for i in range(12)]
    before = [p.detach().clone() for p in model.parameters()]
    spread, noise = loss_spread_and_gradient_noise(model, x, y, loss_fn)
    grads = [
        torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])
        for loss in per_example
    ]
    G = torch.stack(grads)
    want_noise = float(((G - G.mean(0)) ** 2).sum(1).mean())
    want_spread = float(np.var([v.item() for v in per_example]))
    assert spread == pytest.approx(want_spread, rel=1e-10)
    assert noise == pytest.approx(want_noise, rel=1e-10)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_constant_offset_changes_the_spread_not_the_gradients():
    """Section 6.5's point, on the helper: add c to one loss; sigma^2 stays, the spread grows."""
    model = mlp(5, 7, 3, seed=4, dtype=torch.float64)
    x, y = normal((12, 5), seed=5), torch.arange(12) % 3
    offset = torch.zeros(12, dtype=torch.float64)
    offset[0] = 1.0

    def shifted(outputs, targets, reduction="mean"):
        losses = F.cross_entropy(outputs, targets, reduction="none")
        if reduction == "none":
            return losses + offset
        return losses.mean()  # a constant per example leaves every gradient unchanged

    spread, noise = loss_spread_and_gradient_noise(model, x, y)
    spread_shifted, noise_shifted = loss_spread_and_gradient_noise(model, x, y, shifted)
    assert noise_shifted == noise and spread_shifted > spread


def test_spread_bad_arguments():
    model = mlp(2, 3, 2)
    with pytest.raises(TypeError, match="model must be"):
        loss_spread_and_gradient_noise(lambda v: v, torch.ones(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="same number"):
        loss_spread_and_gradient_noise(model, torch.ones(3, 2), torch.zeros(2, dtype=torch.long))
    assert isinstance(least_squares(4, 2), LeastSquares)
