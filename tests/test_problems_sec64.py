"""The scripted problems of section 6.4 (companion.problems), against independent references.

Each reference is written here from the formula the book states (a loop, a closed form, a
fixed point), never by calling the function under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from companion.problems import (
    TiltedDoubleWell,
    falling_sharpness,
    noise_ball_second_moment,
    noisy_quadratic_sgd,
    scripted_quadratic_path,
)

# ----------------------------------------------------------------------------- sharpness


def test_falling_sharpness_matches_the_formula():
    steps = np.arange(50)
    got = falling_sharpness(steps, S0=200.0, tau=4.0, S_min=30.0)
    want = [max(200.0 / (1 + t / 4.0), 30.0) for t in range(50)]
    np.testing.assert_allclose(got, want, rtol=0, atol=0)


def test_falling_sharpness_tau_one_is_one_over_t_plus_one():
    steps = np.arange(1000)
    np.testing.assert_allclose(falling_sharpness(steps, 7.0, 1.0), 7.0 / (steps + 1), rtol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"S0": 0.0}, ValueError, "S0 must be a finite real number > 0, got 0.0"),
        ({"tau": -1.0}, ValueError, "tau must be a finite real number > 0"),
        ({"S_min": -0.5}, ValueError, "S_min must be a finite real number >= 0"),
        ({"tau": "2"}, TypeError, "tau must be"),
        ({"S0": True}, TypeError, "S0 must be"),
    ],
)
def test_falling_sharpness_rejects_bad_arguments(kwargs, error, match):
    args = {"S0": 1.0, "tau": 1.0, "S_min": 0.0} | kwargs
    with pytest.raises(error, match=match):
        falling_sharpness(np.arange(3), **args)


def test_falling_sharpness_rejects_negative_steps():
    with pytest.raises(ValueError, match=r"steps\[1\] is -1.0"):
        falling_sharpness([0, -1], 1.0, 1.0)


# ------------------------------------------------------------------ scripted quadratic


def test_scripted_quadratic_path_matches_a_loop():
    rng = np.random.default_rng(0)
    lrs, curv = rng.uniform(0, 0.5, 40), rng.uniform(0, 5, 40)
    w, want = -1.5, [-1.5]
    for eta, h in zip(lrs, curv, strict=True):
        w = w - eta * (h * w)  # gradient step on h w^2 / 2
        want.append(w)
    np.testing.assert_allclose(scripted_quadratic_path(lrs, curv, w0=-1.5), want, rtol=1e-13)


def test_scripted_quadratic_path_constant_case_is_geometric():
    path = scripted_quadratic_path(np.full(10, 0.3), np.full(10, 2.0), w0=3.0)
    np.testing.assert_allclose(path, 3.0 * 0.4 ** np.arange(11), rtol=1e-14)


def test_scripted_quadratic_path_stability_threshold_is_the_product():
    # eta * h just above 2 grows, just below 2 shrinks, whatever eta and h separately are.
    for eta, h in [(1.0, 2.01), (0.01, 201.0)]:
        assert abs(scripted_quadratic_path(np.full(500, eta), np.full(500, h))[-1]) > 1
    for eta, h in [(1.0, 1.99), (0.01, 199.0)]:
        assert abs(scripted_quadratic_path(np.full(500, eta), np.full(500, h))[-1]) < 1


def test_scripted_quadratic_path_overflows_quietly():
    with np.errstate(all="raise"):
        path = scripted_quadratic_path(np.full(400, 1.0), np.full(400, 100.0))
    assert np.isinf(path[-1])


def test_scripted_quadratic_path_rejects_mismatched_lengths_and_bad_rates():
    with pytest.raises(ValueError, match="one entry per rate"):
        scripted_quadratic_path([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match=r"lrs\[0\] is -0.1"):
        scripted_quadratic_path([-0.1], [1.0])
    with pytest.raises(TypeError, match="w0 must be"):
        scripted_quadratic_path([0.1], [1.0], w0="1")


# ------------------------------------------------------------------- noisy quadratic


def _exact_second_moment(lrs, h, sigma2, w0):
    """E w_T^2 from the closed form (6.4): product of contractions plus damped noise."""
    lrs = list(lrs)
    total = w0**2 * math.prod((1 - eta * h) ** 2 for eta in lrs)
    for t, eta in enumerate(lrs):
        total += sigma2 * eta**2 * math.prod((1 - e * h) ** 2 for e in lrs[t + 1 :])
    return total


@pytest.mark.parametrize("order", ["decay", "reversed"])
def test_noisy_quadratic_sgd_matches_the_exact_second_moment(order):
    lrs = np.r_[np.full(50, 0.1), np.full(50, 0.025)]
    if order == "reversed":
        lrs = lrs[::-1]
    w = noisy_quadratic_sgd(lrs, 1.0, 2.0, 10.0, chains=40_000, seed=3)
    want = _exact_second_moment(lrs, 1.0, 2.0, 10.0)
    # the standard error of a mean of w^2 over 40,000 Gaussian chains is about 0.7%
    assert np.mean(w**2) == pytest.approx(want, rel=0.03)
    assert abs(np.mean(w)) < 4 * math.sqrt(want / 40_000) + 10 * math.prod(1 - e for e in lrs)


def test_noisy_quadratic_sgd_without_noise_is_deterministic_and_seeded():
    w = noisy_quadratic_sgd([0.3, 0.25], 2.0, 0.0, 3.0, chains=4)
    np.testing.assert_allclose(w, np.full(4, 3.0 * (1 - 0.3 * 2.0) * (1 - 0.25 * 2.0)))  # 0.6
    a = noisy_quadratic_sgd(np.full(20, 0.1), 1.0, 1.0, 0.0, chains=5, seed=9)
    b = noisy_quadratic_sgd(np.full(20, 0.1), 1.0, 1.0, 0.0, chains=5, seed=9)
    c = noisy_quadratic_sgd(np.full(20, 0.1), 1.0, 1.0, 0.0, chains=5, seed=10)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and np.all(a != 0)  # the seed draws the noise


def test_noise_ball_second_moment_matches_the_fixed_point():
    h, sigma2 = 1.0, 2.0
    rates = np.array([0.01, 0.1, 0.5, 1.5])
    got = noise_ball_second_moment(rates, h, sigma2, chains=2000, burn_in=1500, keep=2000, seed=1)
    want = rates * sigma2 / (h * (2 - rates * h))  # fixed point of m = (1-eta h)^2 m + eta^2 s
    np.testing.assert_allclose(got, want, rtol=0.04)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rates": [0.5, 2.0]}, ValueError, r"rates \* curvature must lie in \(0, 2\)"),
        ({"rates": [0.0]}, ValueError, r"rates\[0\] is 0.0"),
        ({"curvature": 0.0}, ValueError, "must lie in"),
        ({"chains": 0}, ValueError, "chains must be an integer >= 1, got 0"),
        ({"chains": 2.0}, TypeError, "chains must be an integer"),
        ({"keep": 0}, ValueError, "keep must be an integer >= 1"),
        ({"burn_in": -1}, ValueError, "burn_in must be an integer >= 0"),
        ({"sigma2": -1.0}, ValueError, "sigma2 must be a finite real number >= 0"),
        ({"seed": -3}, ValueError, "seed must be an integer >= 0"),
    ],
)
def test_noise_ball_second_moment_rejects_bad_arguments(kwargs, error, match):
    args = {"rates": [0.1], "curvature": 1.0, "sigma2": 1.0, "chains": 2, "burn_in": 1}
    args |= {"keep": 1} | kwargs
    with pytest.raises(error, match=match):
        noise_ball_second_moment(**args)


# ------------------------------------------------------------------------ double well


def test_double_well_points_are_its_stationary_points():
    well = TiltedDoubleWell(0.3)
    for w in (well.shallow, well.barrier, well.deep):
        assert abs(4 * w**3 - 4 * w + 0.3) < 1e-12
    assert well.deep < well.barrier < well.shallow
    assert well.curvature(well.shallow) > 0 and well.curvature(well.deep) > 0
    assert well.curvature(well.barrier) < 0
    assert well.value(well.deep) < well.value(well.shallow)
    # the numbers section 6.4 states
    assert well.value(well.shallow) == pytest.approx(0.29, abs=0.005)
    assert well.value(well.deep) == pytest.approx(-0.31, abs=0.005)


def test_double_well_gradient_and_curvature_are_derivatives():
    well, w, eps = TiltedDoubleWell(0.7), np.linspace(-2, 2, 9), 1e-6
    np.testing.assert_allclose(
        well.grad(w), (well.value(w + eps) - well.value(w - eps)) / (2 * eps), atol=1e-6
    )
    np.testing.assert_allclose(
        well.curvature(w), (well.grad(w + eps) - well.grad(w - eps)) / (2 * eps), atol=1e-6
    )


def test_double_well_sgd_matches_a_loop_with_the_same_noise():
    well, lrs = TiltedDoubleWell(0.3), np.full(200, 0.05)
    w, deep = well.sgd(lrs, chains=300, noise_std=3.0, seed=11)
    rng, x = np.random.default_rng(11), np.full(300, well.shallow)
    want = [0.0]
    for eta in lrs:
        x = x - eta * (4 * x * (x * x - 1) + 0.3 + 3.0 * rng.standard_normal(300))
        want.append(np.mean(x < well.barrier))
    np.testing.assert_allclose(w, x, rtol=1e-12)
    np.testing.assert_allclose(deep, want)
    assert deep[-1] > 0, "rate 0.05 with noise 3 escapes"


def test_double_well_sgd_without_noise_stays_in_the_shallow_minimum():
    w, deep = TiltedDoubleWell(0.3).sgd(np.full(100, 0.05), chains=3, noise_std=0.0)
    np.testing.assert_allclose(w, TiltedDoubleWell(0.3).shallow, atol=1e-12)
    assert not deep.any()


@pytest.mark.parametrize("tilt", [0.0, -0.1, 8 / (3 * math.sqrt(3)), 2.0])
def test_double_well_rejects_tilts_without_two_basins(tilt):
    with pytest.raises(ValueError, match="tilt must be a finite real number in"):
        TiltedDoubleWell(tilt)


def test_double_well_sgd_rejects_bad_arguments():
    well = TiltedDoubleWell()
    with pytest.raises(ValueError, match="noise_std must be a finite real number >= 0"):
        well.sgd([0.1], chains=1, noise_std=-1.0)
    with pytest.raises(TypeError, match="chains must be an integer"):
        well.sgd([0.1], chains=None, noise_std=1.0)
