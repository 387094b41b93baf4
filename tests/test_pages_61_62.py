"""Helpers of sections 6.1 and 6.2, checked against independent computations."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import numpy as np
import pytest

from companion import problems
from companion.problems import quadratic_gd_losses, quadratic_gd_steps


def _loop(h, lrs, w0, t_max):
    """Plain gradient descent, one step at a time: f(w_t)/f(w_0) for t = 0..t_max."""
    w = np.array(w0, dtype=float)
    f0 = 0.5 * np.sum(h * w**2)
    out = [1.0]
    for _ in range(t_max):
        w = w - lrs * (h * w)
        out.append(0.5 * np.sum(h * w**2) / f0)
    return np.array(out)


@pytest.mark.parametrize("per_coordinate", [False, True])
def test_losses_match_a_plain_gradient_descent_loop(per_coordinate):
    rng = np.random.default_rng(1)
    h = np.logspace(0, 2, 7)
    w0 = rng.normal(size=7)
    lrs = rng.uniform(0.5, 1.5, 7) / h if per_coordinate else 1.5 / h.max()
    expected = _loop(h, lrs, w0, 60)
    got = quadratic_gd_losses(h, lrs, w0, np.arange(61))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-300)


def test_losses_agree_with_the_step_count():
    h = np.logspace(0, 3, 20)
    w0 = np.ones(20)
    n = quadratic_gd_steps(h, 1 / h.max(), w0, 1e-6 * 0.5 * h.sum(), 20_000)
    before, at = quadratic_gd_losses(h, 1 / h.max(), w0, [n - 1, n])
    assert before > 1e-6 >= at


def test_exact_rates_solve_in_one_step_and_shapes_follow_steps():
    h = np.array([1.0, 10.0, 100.0])
    assert quadratic_gd_losses(h, 1 / h, np.ones(3), 1) < 1e-30
    assert np.shape(quadratic_gd_losses(h, 0.01, np.ones(3), 0)) == ()
    assert quadratic_gd_losses(h, 0.01, np.ones(3), [[0, 1], [2, 3]]).shape == (2, 2)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (([1.0, -1.0], 0.1, [1, 1], [0]), ValueError, "curvatures"),
        (([1.0, 2.0], -0.1, [1, 1], [0]), ValueError, "lrs"),
        (([1.0, 2.0], [0.1, 0.1, 0.1], [1, 1], [0]), ValueError, "lrs"),
        (([1.0, 2.0], 0.1, [1, 1, 1], [0]), ValueError, "w0"),
        (([1.0, 2.0], 0.1, [0, 0], [0]), ValueError, "w0"),
        (([1.0, 2.0], 0.1, [1, 1], [-1]), ValueError, "steps"),
        (([1.0, 2.0], 0.1, [1, 1], [0.5]), TypeError, "steps"),
        (([1.0, 2.0], "0.1", [1, 1], [0]), TypeError, "lrs"),
    ],
)
def test_bad_arguments_name_the_argument(args, error, match):
    with pytest.raises(error, match=match):
        quadratic_gd_losses(*args)


@pytest.mark.parametrize("name", [m.name for m in pkgutil.iter_modules(problems.__path__)])
def test_docstring_examples(name):
    """Every module of ``companion.problems`` has examples, and they pass (the package
    itself only re-exports: ``doctest.testmod(problems)`` finds none)."""
    if name == "_data":  # its examples load scikit-learn's digits (the book's extra)
        pytest.importorskip("sklearn")
    module = importlib.import_module(f"{problems.__name__}.{name}")
    failed, attempted = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failed == 0
