"""companion.theory: the worked example of sections 6.2/6.4, the last-iterate values of 6.4,
independent checks, and bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from companion.schedules import cosine, piecewise_constant
from companion.theory import (
    best_constant_lr,
    cosine_early_approx,
    cosine_late_approx,
    min_warmup_steps,
    noisy_quadratic_second_moment,
    sgd_bound,
    stationary_second_moment,
)

# Section 6.4's worked example: T = 100, Delta = 100, L = 1, sigma^2 = 2 (L sigma^2 / 2 = 1).
EX = {"delta": 100.0, "L": 1.0, "sigma2": 2.0}
CONST_01 = [0.1] * 100
CONST_0025 = [0.025] * 100
TWO_STAGE = piecewise_constant([50], [0.1, 0.025])(np.arange(100))


def exact_bound(lrs):
    """Lemma 6.2.1 in exact rational arithmetic on the decimal rates."""
    lrs = [Fraction(str(x)) for x in lrs]
    return (100 + sum(x * x for x in lrs)) / sum(lrs)


@pytest.mark.parametrize(
    ("lrs", "value"), [(CONST_01, 10.1), (CONST_0025, 40.025), (TWO_STAGE, 16.085)]
)
def test_worked_example(lrs, value):
    got = sgd_bound(lrs, **EX)
    assert got == value  # the float nearest the exact value
    assert exact_bound(lrs) == Fraction(str(value))  # 16.085 = 3217/200 exactly


def test_worked_example_sums():
    assert math.fsum(TWO_STAGE) == 6.25
    assert exact_bound(TWO_STAGE) == (100 + Fraction(17, 32)) / Fraction(25, 4)
    assert math.isclose(math.fsum(np.square(TWO_STAGE)), 0.53125, rel_tol=1e-15)
    # by this bound the two-stage schedule is worse than constant 0.1 (6.4)
    assert sgd_bound(TWO_STAGE, **EX) > sgd_bound(CONST_01, **EX)


def test_bound_ignores_order_and_general_formula():
    rng = np.random.default_rng(0)
    lrs = rng.uniform(0, 0.2, 257)
    want = (3.0 + 5.0 * 0.7 / 2 * np.sum(lrs**2)) / np.sum(lrs)
    assert sgd_bound(lrs, delta=3.0, L=5.0, sigma2=0.7) == pytest.approx(want, rel=1e-13)
    assert sgd_bound(lrs[::-1], delta=3.0, L=5.0, sigma2=0.7) == pytest.approx(want, rel=1e-13)


def test_best_constant_lr_of_the_example():
    lr, bound = best_constant_lr(T=100, **EX)
    assert (lr, bound) == (1.0, 2.0)
    assert sgd_bound([lr] * 100, **EX) == pytest.approx(bound, rel=1e-14)


@pytest.mark.parametrize(("delta", "L", "sigma2", "T"), [(1.0, 1.0, 1.0, 1), (7.0, 3.0, 0.2, 1000)])
def test_best_constant_lr_minimises_the_bound(delta, L, sigma2, T):
    lr, bound = best_constant_lr(delta, L, sigma2, T)
    grid = lr * np.linspace(0.2, 5.0, 2001)
    values = [delta / (T * x) + L * sigma2 * x / 2 for x in grid]
    assert min(values) >= bound * (1 - 1e-12)
    assert grid[int(np.argmin(values))] == pytest.approx(lr, rel=5e-3)
    # no non-constant schedule does better (sum eta^2 >= (sum eta)^2 / T)
    rng = np.random.default_rng(1)
    for _ in range(20):
        lrs = rng.uniform(0, 2 * lr, T)
        assert sgd_bound(lrs, delta, L, sigma2) >= bound * (1 - 1e-12)


@pytest.mark.parametrize(
    ("peak", "L0"), [(1.0, 10.0), (0.1, 7.3), (3.0, 0.5), (0.0, 1.0), (2.0, 3.0)]
)
def test_min_warmup_steps_is_the_smallest_stable_first_step(peak, L0):
    W = min_warmup_steps(peak, L0)
    assert isinstance(W, int) and W >= 1
    assert peak / W < 2 / L0  # the first warmup rate is stable
    assert W == 1 or not peak / (W - 1) < 2 / L0  # one step shorter is not


def test_min_warmup_steps_example():
    assert min_warmup_steps(1.0, 10.0) == 6  # T_w > 5, strictly


def test_cosine_taylor_approximations():
    T, peak = 1000, 0.3
    exact = cosine(peak, T)
    t = np.arange(1, 60)
    early = cosine_early_approx(peak, t, T)
    err = np.abs(early - exact(t))
    # error of order (t/T)^4: below pi^4/48 peak (t/T)^4, and far below the quadratic term
    assert np.all(err <= math.pi**4 / 48 * peak * (t / T) ** 4 * (1 + 1e-6) + 1e-15)
    assert np.all(err < 0.01 * peak * math.pi**2 * t**2 / (4 * T**2))
    k = np.arange(1, 60)
    late = cosine_late_approx(peak, k, T)
    exact_late = exact(T - k)
    assert np.all(np.abs(late - exact_late) <= math.pi**4 / 48 * peak * (k / T) ** 4 + 1e-15)
    assert np.allclose(late / exact_late, 1.0, atol=3e-3)
    # the book's formulas (eq-64-cos-early, eq-64-cos-late), written out
    assert cosine_early_approx(1.0, 10, 100) == pytest.approx(1 - math.pi**2 * 100 / 40000)
    assert cosine_late_approx(2.0, 5, 50) == pytest.approx(2.0 * math.pi**2 / 4 * 0.01)
    assert isinstance(cosine_late_approx(1.0, 3, 10), float)


# ----------------------------------------------------------------------------- noisy quadratic


def by_products(lrs, lam, sigma2, w1):
    """E w_{T+1}^2 = prod (1 - eta lam)^2 w1^2 + sigma^2 sum eta_t^2 prod_{s>t} (1 - eta_s lam)^2."""
    lrs = [float(x) for x in lrs]
    a = [(1 - e * lam) ** 2 for e in lrs]
    total = math.prod(a) * w1**2
    for t, e in enumerate(lrs):
        total += sigma2 * e * e * math.prod(a[t + 1 :])
    return total


def monte_carlo(lrs, lam, sigma2, w1, n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    w = np.full(n, w1, dtype=np.float64)
    for e in lrs:
        g = lam * w + math.sqrt(sigma2) * rng.standard_normal(n)
        w = w - e * g
    w2 = w * w
    return w2.mean(), w2.std() / math.sqrt(n)


STEP = [0.1] * 50 + [0.025] * 50
COS_ONE_BASED = 0.05 * (1 + np.cos(np.arange(1, 101) * np.pi / 100))  # t = 1..T, eta_T = 0
COS_OURS = cosine(0.1, 100)(np.arange(100))  # t = 0..T-1
LAST_ITERATE = [
    ("constant 0.1", [0.1] * 100, 0.0526),
    ("cosine t=1..T", COS_ONE_BASED, 0.0190),
    ("cosine t=0..T-1", COS_OURS, 0.0183),
    ("step reversed", STEP[::-1], 0.0528),
]


@pytest.mark.parametrize(("name", "lrs", "value"), LAST_ITERATE, ids=[e[0] for e in LAST_ITERATE])
def test_noisy_quadratic_values_of_section_64(name, lrs, value):
    got = noisy_quadratic_second_moment(lrs, 1.0, 1.0, 10.0)
    assert round(got, 4) == value
    assert got == pytest.approx(by_products(lrs, 1.0, 1.0, 10.0), rel=1e-12)


def test_noisy_quadratic_step_schedule():
    # 0.016048: 0.0160 to four places (an older text said 0.0161), 0.01605 to five.
    got = noisy_quadratic_second_moment(STEP, 1.0, 1.0, 10.0)
    assert got == pytest.approx(0.0160479, abs=1e-7)
    assert abs(got - 0.0161) < 6e-5
    assert got == pytest.approx(by_products(STEP, 1.0, 1.0, 10.0), rel=1e-12)
    # order matters for the last iterate, unlike for the lemma's bound
    reverse = noisy_quadratic_second_moment(STEP[::-1], 1.0, 1.0, 10.0)
    assert reverse > 3 * got
    assert sgd_bound(STEP, **EX) == sgd_bound(STEP[::-1], **EX)


@pytest.mark.parametrize(
    ("lrs", "lam", "sigma2", "w1"), [(STEP, 1.0, 1.0, 10.0), (COS_OURS, 2.5, 0.3, -1.0)]
)
def test_noisy_quadratic_against_monte_carlo(lrs, lam, sigma2, w1):
    mean, se = monte_carlo(lrs, lam, sigma2, w1)
    assert abs(noisy_quadratic_second_moment(lrs, lam, sigma2, w1) - mean) < 4 * se


def test_noisy_quadratic_path_and_edge_cases():
    path = noisy_quadratic_second_moment([0.1, 0.2, 0.3], 2.0, 0.5, 3.0, full=True)
    assert path.shape == (4,) and path[0] == 9.0
    for k in range(4):
        assert path[k] == pytest.approx(by_products([0.1, 0.2, 0.3][:k], 2.0, 0.5, 3.0))
    assert noisy_quadratic_second_moment([], 1.0, 1.0, 4.0) == 16.0


def test_stationary_second_moment():
    for eta, lam, sigma2 in [(0.1, 1.0, 1.0), (0.5, 3.0, 0.2), (1.9, 1.0, 1.0)]:
        want = eta * sigma2 / (lam * (2 - eta * lam))
        assert stationary_second_moment(eta, lam, sigma2) == pytest.approx(want, rel=1e-14)
        # it is the limit of the exact recursion
        limit = noisy_quadratic_second_moment([eta] * 20_000, lam, sigma2, 5.0)
        assert limit == pytest.approx(want, rel=1e-9)
    # squared radius ~ eta for small eta: halving eta about halves it
    r = stationary_second_moment(0.002, 1.0, 1.0) / stationary_second_moment(0.001, 1.0, 1.0)
    assert r == pytest.approx(2.0, rel=1e-3)


V, T = ValueError, TypeError
nan = float("nan")
BAD = [
    (lambda: sgd_bound([], 1.0, 1.0, 1.0), V, r"^lrs must be a non-empty sequence"),
    (lambda: sgd_bound([0.1, -0.1], 1.0, 1.0, 1.0), V, r"^lrs must be .*; lrs\[1\] is -0\.1$"),
    (lambda: sgd_bound([0.1, nan], 1.0, 1.0, 1.0), V, r"^lrs must be .*; lrs\[1\] is nan$"),
    (lambda: sgd_bound([0.0, 0.0], 1.0, 1.0, 1.0), V, r"^lrs must not all be 0"),
    # bools are not learning rates (the old code returned 1.5 / 101.0 for these)
    (lambda: sgd_bound([True, False], 1.0, 1.0, 1.0), T, r"^lrs must be .*; lrs\[0\] is True$"),
    (lambda: sgd_bound(np.array([True, False]), 1.0, 1.0, 1.0), T, r"^lrs must be .*dtype bool"),
    # numpy's "could not convert string to float" did not name lrs
    (lambda: sgd_bound(["a"], 1.0, 1.0, 1.0), T, r"^lrs must be .*; lrs\[0\] is 'a'$"),
    (lambda: sgd_bound(0.1, 1.0, 1.0, 1.0), T, r"^lrs must be a sequence"),
    (lambda: sgd_bound([[0.1]], 1.0, 1.0, 1.0), V, r"^lrs must be a 1-d sequence"),
    (
        lambda: sgd_bound([0.1], -1.0, 1.0, 1.0),
        V,
        r"^delta must be a finite real number >= 0, got -1\.0$",
    ),
    (lambda: sgd_bound([0.1], 1.0, 0.0, 1.0), V, r"^L must be a finite real number > 0, got 0\.0$"),
    (
        lambda: sgd_bound([0.1], 1.0, True, 1.0),
        T,
        r"^L must be a finite real number > 0, got True$",
    ),
    (lambda: sgd_bound([0.1], 1.0, 1.0, float("inf")), V, r"^sigma2 must be a finite real number"),
    (lambda: sgd_bound([0.1], "1", 1.0, 1.0), T, r"^delta must be"),
    (lambda: best_constant_lr(1.0, 1.0, 1.0, 0), V, r"^T must be an integer >= 1, got 0$"),
    (lambda: best_constant_lr(1.0, 1.0, 1.0, 10.0), T, r"^T must be an integer >= 1, got 10\.0$"),
    (lambda: best_constant_lr(0.0, 1.0, 1.0, 10), V, r"^delta must be a finite real number > 0"),
    (lambda: best_constant_lr(1.0, 1.0, 0.0, 10), V, r"^sigma2 must be a finite real number > 0"),
    (lambda: min_warmup_steps(-1.0, 1.0), V, r"^peak_lr must be a finite real number >= 0"),
    (lambda: min_warmup_steps(1.0, nan), V, r"^L0 must be a finite real number >= 0, got nan$"),
    (lambda: min_warmup_steps(1.0, None), T, r"^L0 must be"),
    (lambda: cosine_early_approx(1.0, 3, 0), V, r"^total_steps must be an integer >= 1"),
    (lambda: cosine_early_approx(1.0, 3, 10.0), T, r"^total_steps must be an integer >= 1"),
    # a missing or NaN step used to return nan
    (
        lambda: cosine_early_approx(1.0, None, 100),
        T,
        r"^t must be a sequence of finite real numbers >= 0, got None$",
    ),
    (
        lambda: cosine_early_approx(1.0, nan, 100),
        V,
        r"^t must be a finite real number >= 0, got nan$",
    ),
    (lambda: cosine_early_approx(1.0, [1.0, nan], 100), V, r"^t must be .*; t\[1\] is nan$"),
    (
        lambda: cosine_early_approx(1.0, -1, 100),
        V,
        r"^t must be a finite real number >= 0, got -1$",
    ),
    (
        lambda: cosine_late_approx(1.0, None, 100),
        T,
        r"^k must be a sequence of finite real numbers >= 0, got None$",
    ),
    (
        lambda: cosine_late_approx(1.0, nan, 100),
        V,
        r"^k must be a finite real number >= 0, got nan$",
    ),
    (lambda: cosine_late_approx(1.0, "3", 100), T, r"^k must be"),
    (lambda: cosine_late_approx(-1.0, 3, 10), V, r"^peak_lr must be"),
    (
        lambda: noisy_quadratic_second_moment([-0.1], 1.0, 1.0, 1.0),
        V,
        r"^lrs must be .*; lrs\[0\] is -0\.1$",
    ),
    (lambda: noisy_quadratic_second_moment([True], 1.0, 1.0, 1.0), T, r"^lrs must be"),
    (lambda: noisy_quadratic_second_moment([0.1], -1.0, 1.0, 1.0), V, r"^curvature must be"),
    (
        lambda: noisy_quadratic_second_moment([0.1], 1.0, 1.0, nan),
        V,
        r"^w0 must be a finite real number, got nan$",
    ),
    (lambda: noisy_quadratic_second_moment([0.1], 1.0, 1.0, None), T, r"^w0 must be"),
    (
        lambda: noisy_quadratic_second_moment([0.1], 1.0, 1.0, 1.0, full=1),
        T,
        r"^full must be True or False",
    ),
    (lambda: stationary_second_moment(2.0, 1.0, 1.0), V, r"^lr \* curvature must be in \(0, 2\)"),
    (lambda: stationary_second_moment(0.0, 1.0, 1.0), V, r"^lr must be a finite real number > 0"),
    (
        lambda: stationary_second_moment(0.1, 0.0, 1.0),
        V,
        r"^curvature must be a finite real number > 0",
    ),
    (lambda: stationary_second_moment(0.1, 1.0, [1.0]), T, r"^sigma2 must be"),
]


@pytest.mark.parametrize(("make", "error", "match"), BAD)
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match) as info:
        make()
    assert type(info.value) is error


def test_numpy_scalars_and_arrays_are_numbers():
    assert sgd_bound(np.array([0.1] * 100), np.float32(100.0), np.int64(1), 2) == 10.1
    assert best_constant_lr(np.float64(100.0), 1, np.float32(2.0), np.int32(100)) == (1.0, 2.0)
    assert cosine_early_approx(1.0, np.int64(10), 100) == cosine_early_approx(1.0, 10, 100)
    assert cosine_late_approx(1.0, np.array(10), 100) == cosine_late_approx(1.0, 10.0, 100)
    assert cosine_early_approx(1.0, [], 100).shape == (0,)
