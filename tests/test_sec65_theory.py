"""companion.theory's River trend formula (section 6.5) against simulations written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion.river import River
from companion.theory import river_trend_multiplier, river_trend_rate


def exact_variance_batches(variances, n=8, center=3.0):
    """Batches whose population variance is exactly ``variances[t]``: c ± sqrt(V_t)."""
    signs = torch.tensor([1.0, -1.0] * (n // 2), dtype=torch.float64)
    return [center + math.sqrt(v) * signs for v in variances]


def ema_ratio(variances, beta_v, beta_r):
    """r_t / u_t of the two plain EMAs (zero start), written from their definitions."""
    u = r = 0.0
    for v in variances:
        u = beta_v * u + (1 - beta_v) * v
        r = beta_r * r + (1 - beta_r) * u
    return r / u


@pytest.mark.parametrize("g", [0.0023, 0.001, 0.0, -0.0003, -0.0006])
@pytest.mark.parametrize("beta_v", [0.9, 0.99])
def test_formula_matches_plain_emas_of_a_geometric_sequence(g, beta_v):
    T = 60_000
    variances = 1e-3 * np.exp(g * np.arange(T))
    assert ema_ratio(variances, beta_v, 0.999) == pytest.approx(river_trend_multiplier(g), rel=1e-6)


@pytest.mark.parametrize(("g", "steps"), [(0.0023, 8000), (-0.0003, 25_000), (0.0, 20_000)])
@pytest.mark.parametrize("beta_v", [0.9, 0.99])
def test_river_converges_to_the_formula(g, steps, beta_v):
    """River itself, fed batches whose variance is exactly 5 exp(g t), unclipped."""
    river = River(beta_v=beta_v, use_current_batch=True, clip=(1e-6, 1e6), dtype=torch.float64)
    variances = 5.0 * np.exp(g * np.arange(steps))
    for batch in exact_variance_batches(variances):
        rho = float(river.observe(batch))
    assert rho == pytest.approx(river_trend_multiplier(g, eps=1e-8), rel=1e-5)
    assert float(river.target / river.variance) == pytest.approx(
        river_trend_multiplier(g), rel=1e-5
    )


def test_level_does_not_matter_and_a_fast_fall_reaches_the_clip():
    rates = [river_trend_multiplier(g) for g in (-0.0005, 0.0, 0.0005)]
    assert rates[0] > 1 and rates[1] == pytest.approx(1.0) and rates[2] < 1
    # Below the critical rate ln(beta_r) there is no stationary value: River hits its clip.
    g = 1.5 * math.log(0.999)
    with pytest.raises(ValueError, match=r"ln\(beta_r\)"):
        river_trend_multiplier(g)
    river = River(use_current_batch=True, dtype=torch.float64)
    batches = exact_variance_batches(np.exp(g * np.arange(6000)))
    rho = [float(river.observe(b)) for b in batches]
    assert rho[-1] == 10.0 and max(rho[:100]) < 10.0


@pytest.mark.parametrize("beta_r", [0.9, 0.99, 0.999])
def test_eps_and_vectorisation(beta_r):
    g = np.array([[-0.0005, 0.0], [0.01, 0.1]])
    q = (1 - beta_r) / (1 - beta_r * np.exp(-g))
    got = river_trend_multiplier(g, beta_r=beta_r, eps=0.05)
    assert got.shape == g.shape
    np.testing.assert_allclose(got, q / (1 + 0.05 * q), rtol=1e-14)
    assert isinstance(river_trend_multiplier(0.01, beta_r), float)
    assert river_trend_multiplier(0.0, beta_r, eps=1e-8) == pytest.approx(1 / (1 + 1e-8), rel=1e-15)


@pytest.mark.parametrize("beta_r", [0.9, 0.999])
@pytest.mark.parametrize("rho", [0.2, 0.5, 1.0, 2.0, 10.0, 1e6])
def test_rate_inverts_the_multiplier(beta_r, rho):
    if rho <= 1 - beta_r:
        pytest.skip("below the range of the multiplier")
    g = river_trend_rate(rho, beta_r)
    assert river_trend_multiplier(g, beta_r) == pytest.approx(rho, rel=1e-7)


def test_rate_limits():
    assert river_trend_rate(math.inf) == math.log(0.999)
    assert river_trend_rate(1.0) == pytest.approx(0.0, abs=1e-15)
    halving = math.log(2) / -river_trend_rate(10.0)
    assert 765 < halving < 775  # section 6.5: halving every ~770 steps holds the clip


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: river_trend_multiplier("0.1"), TypeError, "g must be"),
        (lambda: river_trend_multiplier(True), TypeError, "g must be"),
        (lambda: river_trend_multiplier([0.1, math.nan]), ValueError, r"g\[1\]"),
        (lambda: river_trend_multiplier(0.1, beta_r=1.0), ValueError, r"beta_r .*\(0.0, 1.0\)"),
        (lambda: river_trend_multiplier(0.1, eps=-1.0), ValueError, "eps"),
        (lambda: river_trend_rate(0.001), ValueError, "multiplier must be"),
        (lambda: river_trend_rate(math.nan), ValueError, "multiplier must be"),
        (lambda: river_trend_rate(None), TypeError, "multiplier must be"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
