"""companion.schedules against independent formulas, and its properties (torch and the other
peers: test_schedules_peers.py; inputs, repr and bad arguments: test_schedules_input.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import schedules as S
from companion.schedules import (
    constant,
    cosine,
    exponential,
    inverse_sqrt,
    join,
    linear_warmup,
    one_cycle,
    piecewise_constant,
    polynomial,
    sgdr,
    wsd,
)

PROP = settings(max_examples=60, deadline=None, derandomize=True)


# ----------------------------------------------------------------------------- references
# Plain-Python formulas, written from the definitions, one step at a time.


def ref_warmup(t, peak, W, init=0.0):
    return init + (peak - init) * min(t + 1, W) / W


def ref_ramp(t, peak, W, init=0.0, shape="linear"):
    q = (t + 1) / W
    r = q if shape == "linear" else (1 - math.cos(math.pi * q)) / 2
    return init + (peak - init) * r


def ref_cosine(t, peak, T, final=0.0, W=0, init=0.0, shape="linear"):
    if t < W:
        return ref_ramp(t, peak, W, init, shape)
    if t >= T:
        return final
    return final + (peak - final) * (1 + math.cos(math.pi * (t - W) / (T - W))) / 2


def ref_piecewise(t, boundaries, values):
    return values[sum(1 for b in boundaries if b <= t)]


def ref_cycle(t, C, m):
    """(k, start, length) by walking the cycles one by one."""
    k, start, length = 0, 0, C
    while t >= start + length:
        start += length
        length *= m
        k += 1
    return k, start, length


def ref_sgdr(t, peak, C, m=1, final=0.0, decay=1.0):
    k, start, length = ref_cycle(t, C, m)
    p = max(peak * decay**k, final)
    return final + (p - final) * (1 + math.cos(math.pi * (t - start) / length)) / 2


WSD_F = {
    "linear": lambda p: 1 - p,
    "cosine": lambda p: (1 + math.cos(math.pi * p)) / 2,
    "1-sqrt": lambda p: 1 - math.sqrt(p),
    "1-square": lambda p: 1 - p**2,
}


def ref_wsd(t, peak, T, W, D, shape="linear", final=0.0, init=0.0, warmup="linear"):
    if t < W:
        return ref_ramp(t, peak, W, init, warmup)
    if t < T - D:
        return peak
    if t >= T:
        return final
    p = (t - (T - D)) / D
    if shape == "exp":
        return peak * (final / peak) ** p
    return final + (peak - final) * WSD_F[shape](p)


def run(s, n):
    return s(np.arange(n))


def close(actual, expected):
    np.testing.assert_allclose(actual, np.asarray(expected, dtype=float), rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- formulas


def test_constant():
    close(run(constant(0.3), 50), [0.3] * 50)


@pytest.mark.parametrize(("peak", "W", "init"), [(1.0, 1, 0.0), (0.1, 7, 0.0), (0.5, 10, 0.05)])
def test_linear_warmup_matches_formula(peak, W, init):
    s = linear_warmup(peak, W, init_lr=init)
    close(run(s, 3 * W + 5), [ref_warmup(t, peak, W, init) for t in range(3 * W + 5)])
    assert s(0) > 0 and s(W - 1) == peak and s(10 * W) == peak


@pytest.mark.parametrize(
    ("peak", "T", "final", "W"),
    [
        (0.1, 100, 0.0, 0),
        (1.0, 1, 0.0, 0),
        (0.3, 37, 0.01, 5),
        (2.0, 10, 0.5, 10),
        (1.0, 500, 0.0, 50),
    ],
)
def test_cosine_matches_formula(peak, T, final, W):
    s = cosine(peak, T, final_lr=final, warmup_steps=W)
    close(run(s, T + 20), [ref_cosine(t, peak, T, final, W) for t in range(T + 20)])
    assert s(T) == final and s(T + 10**9) == final


def test_cosine_is_the_books_formula_zero_based():
    # eta_t = eta_peak/2 (1 + cos(t pi / T)), t = 0..T-1: no update wasted on eta = 0 (6.4).
    s = cosine(0.1, 100)
    t = np.arange(100)
    close(s(t), 0.05 * (1 + np.cos(t * np.pi / 100)))
    assert s(99) > 0


@pytest.mark.parametrize("shape", ["linear", "cosine"])
@pytest.mark.parametrize(("W", "init"), [(1, 0.0), (10, 0.0), (10, 0.02), (40, 0.1)])
def test_cosine_and_wsd_warmups_start_from_init_lr(shape, W, init):
    peak, T = 0.3, 100
    s = cosine(peak, T, final_lr=0.01, warmup_steps=W, init_lr=init, warmup_shape=shape)
    close(run(s, T + 5), [ref_cosine(t, peak, T, 0.01, W, init, shape) for t in range(T + 5)])
    w = wsd(peak, T, W, 30, shape="1-sqrt", final_lr=0.01, init_lr=init, warmup_shape=shape)
    want = [ref_wsd(t, peak, T, W, 30, "1-sqrt", 0.01, init, shape) for t in range(T + 5)]
    close(run(w, T + 5), want)
    for x in (s, w):
        assert x(0) > init and x(W - 1) == peak  # lr(0) > init_lr: the (t + 1)/W convention
        assert np.all(np.diff(run(x, W)) > 0)


def test_the_warmup_is_composed_not_copied():
    # every warmup is linear_warmup's ramp joined to the decay (as optax composes them)
    peak, T, W = 0.3, 200, 16
    ramp = linear_warmup(peak, W, init_lr=0.05)
    for s, decay in [
        (cosine(peak, T, 0.01, W, init_lr=0.05), cosine(peak, T - W, 0.01)),
        (
            wsd(peak, T, W, 40, "cosine", 0.01, init_lr=0.05),
            wsd(peak, T - W, 0, 40, "cosine", 0.01),
        ),
    ]:
        assert np.array_equal(run(s, T + 9), run(join([ramp, decay], [W]), T + 9))
    assert np.array_equal(
        run(polynomial(peak, T, 2.0, 0.01, W), T + 9),
        run(join([linear_warmup(peak, W), polynomial(peak, T - W, 2.0, 0.01)], [W]), T + 9),
    )
    assert np.array_equal(
        run(exponential(peak, 0.9, 3, True, 0.01, W), T + 9),
        run(join([linear_warmup(peak, W), exponential(peak, 0.9, 3, True, 0.01)], [W]), T + 9),
    )


@pytest.mark.parametrize(
    ("b", "v"), [([50], [0.1, 0.025]), ([], [0.7]), ([1, 2, 10], [4.0, 3.0, 2.0, 1.0])]
)
def test_piecewise_constant_matches_formula(b, v):
    s = piecewise_constant(b, v)
    close(run(s, 120), [ref_piecewise(t, b, v) for t in range(120)])


@pytest.mark.parametrize(
    ("peak", "C", "m", "final", "decay"),
    [(1.0, 10, 1, 0.0, 1.0), (0.1, 7, 2, 0.001, 1.0), (1.0, 3, 3, 0.1, 0.5), (1.0, 1, 1, 0.0, 0.9)],
)
def test_sgdr_matches_formula(peak, C, m, final, decay):
    s = sgdr(peak, C, cycle_mult=m, final_lr=final, peak_decay=decay)
    close(run(s, 400), [ref_sgdr(t, peak, C, m, final, decay) for t in range(400)])


def test_sgdr_far_steps_use_exact_cycle_index():
    # Large steps and steps right at cycle starts (where a float log could be off by one).
    for m in (2, 3, 5):
        C = 7
        starts = [C * (m**k - 1) // (m - 1) for k in range(1, 18)]
        steps = sorted({x + d for x in starts for d in (-1, 0, 1)})
        s = sgdr(1.0, C, cycle_mult=m)
        close(s(np.array(steps)), [ref_sgdr(t, 1.0, C, m) for t in steps])
        assert all(s(x) == 1.0 for x in starts)


@pytest.mark.parametrize("shape", S.WSD_SHAPES)
@pytest.mark.parametrize(
    ("T", "W", "D", "final"), [(100, 10, 20, 0.01), (50, 0, 50, 0.2), (30, 5, 1, 0.1)]
)
def test_wsd_matches_formula(shape, T, W, D, final):
    peak = 0.5
    s = wsd(peak, T, W, D, shape=shape, final_lr=final)
    close(run(s, T + 10), [ref_wsd(t, peak, T, W, D, shape, final) for t in range(T + 10)])
    assert s(T - D) == peak and s(T) == final  # final_lr honoured by every shape


def test_wsd_without_decay_phase():
    s = wsd(1.0, 10, 3, 0, final_lr=0.25)
    close(run(s, 12), [1 / 3, 2 / 3] + [1.0] * 8 + [0.25] * 2)


def test_join_restarts_each_piece():
    a, b, c = linear_warmup(1.0, 5), cosine(1.0, 20, final_lr=0.1), constant(0.05)
    s = join([a, b, c], [5, 25])
    expected = [a(t) if t < 5 else b(t - 5) if t < 25 else c(t - 25) for t in range(40)]
    close(run(s, 40), expected)
    # warmup + cosine joined equals the cosine schedule with that warmup, exactly
    w = join([linear_warmup(0.3, 8), cosine(0.3, 92)], [8])
    assert np.array_equal(run(w, 120), run(cosine(0.3, 100, warmup_steps=8), 120))


def test_two_stage_strategy_of_section_64():
    lrs = run(piecewise_constant([50], [0.1, 0.025]), 100)
    assert math.fsum(lrs) == 6.25 and math.isclose(math.fsum(lrs**2), 0.53125, rel_tol=1e-14)


# ----------------------------------------------------------------------------- properties


def ramp_slope(peak, init, W, shape):
    """The largest step-to-step change of a warmup (0 without one)."""
    if W == 0:
        return 0.0
    return (peak - init) / W * (math.pi / 2 if shape == "cosine" else 1.0)


@st.composite
def cases(draw):
    """A random schedule with what the properties need to know about it.

    Returns (s, horizon, lo, hi, up, down, jump, keys): values lie in [0, hi], and in
    [lo, hi] after the warmup (a warmup may start below ``final_lr``); the
    schedule is non-decreasing on each (a, b) of ``up`` and non-increasing on each of
    ``down`` (steps a..b-1); |s(t+1) - s(t)| <= jump(t) where finite; ``keys`` are
    steps worth checking (phase edges).
    """
    kind = draw(
        st.sampled_from(
            ["warmup", "cosine", "piecewise", "sgdr", "wsd", "poly", "exp", "isqrt", "onecycle"]
        )
    )
    peak = draw(st.floats(1e-6, 10.0))
    final = peak * draw(st.floats(0.0, 1.0))
    inf = math.inf
    if kind in ("poly", "exp", "isqrt"):
        W, T = draw(st.integers(0, 200)), math.inf
        if kind == "poly":
            T = draw(st.integers(max(W, 1), 2000))
            s = polynomial(peak, T, draw(st.floats(0.1, 5.0)), final, min(W, T))
        elif kind == "exp":
            rate, k = draw(st.floats(0.5, 1.0)), draw(st.integers(1, 50))
            s = exponential(peak, rate, k, draw(st.booleans()), final, W)
        else:
            s, final = inverse_sqrt(peak, W, timescale=draw(st.integers(1, 500))), 0.0
        horizon = W + 2000
        up, down = [(0, min(W + 1, T))], [(max(W - 1, 0), horizon)]
        return s, horizon, final, peak, up, down, lambda t: inf, [W - 1, W]
    if kind == "onecycle":
        T = draw(st.integers(1, 2000))
        three = draw(st.booleans())
        pct = draw(st.floats(0.0, 0.5 if three else 1.0))
        div, final_div = draw(st.floats(1.0, 100.0)), draw(st.floats(1.0, 1e4))
        s = one_cycle(peak, T, pct, draw(st.sampled_from(["cos", "linear"])), div, final_div, three)
        low = peak / div / final_div
        top = math.floor(pct * T - 1) + 1  # the rise holds the steps t <= pct * T - 1
        up, down = [(0, max(top, 0))], [(max(top, 0), T + 10)]
        return s, T + 10, low * (1 - 1e-15), peak, up, down, lambda t: inf, [top - 1, top, T]
    if kind == "warmup":
        W = draw(st.integers(1, 500))
        init = draw(st.floats(0.0, 1.0)) * peak
        s = linear_warmup(peak, W, init_lr=init)
        up, down = [(0, W + 1)], [(W - 1, 2 * W + 5)]  # rises, then stays at the peak
        return s, 2 * W + 5, init, peak, up, down, lambda t: (peak - init) / W, [W - 1]
    if kind == "cosine":
        T = draw(st.integers(1, 2000))
        W = draw(st.integers(0, T))
        init, warm = draw(st.floats(0.0, 1.0)) * peak, draw(st.sampled_from(S.WARMUP_SHAPES))
        s = cosine(peak, T, final_lr=final, warmup_steps=W, init_lr=init, warmup_shape=warm)
        slope = max(
            ramp_slope(peak, init, W, warm),
            (peak - final) * math.pi / (2 * (T - W)) if T > W else 0,
        )

        def jump(t):
            return inf if (W == T and t == T - 1) else slope

        return (
            s,
            T + 10,
            final,
            peak,
            [(0, min(W + 1, T))],
            [(max(W - 1, 0), T + 10)],
            jump,
            [W, T - 1, T],
        )
    if kind == "piecewise":
        n = draw(st.integers(0, 6))
        b = sorted(draw(st.sets(st.integers(1, 300), min_size=n, max_size=n)))
        v = sorted((draw(st.floats(0.0, 10.0)) for _ in range(len(b) + 1)), reverse=True)
        s = piecewise_constant(b, v)
        return s, 320, min(v), max(v), [], [(0, 320)], lambda t: inf, b
    if kind == "sgdr":
        C = draw(st.integers(1, 60))
        m = draw(st.integers(1, 3))
        decay = draw(st.floats(0.0, 1.0))
        s = sgdr(peak, C, cycle_mult=m, final_lr=final, peak_decay=decay)
        horizon = 400
        starts = sorted({ref_cycle(t, C, m)[1] for t in range(horizon)} | {horizon})
        down = list(zip(starts[:-1], starts[1:], strict=True))
        restarts = set(starts)

        def jump(t):
            return inf if t + 1 in restarts else (peak - final) * math.pi / (2 * C)

        return s, horizon, final, peak, [], down, jump, starts[:-1]
    T = draw(st.integers(1, 2000))
    W = draw(st.integers(0, T))
    D = draw(st.integers(0, T - W))
    shape = draw(st.sampled_from(S.WSD_SHAPES))
    if shape == "exp":
        final = peak * draw(st.floats(1e-3, 1.0))
    init, warm = draw(st.floats(0.0, 1.0)) * peak, draw(st.sampled_from(S.WARMUP_SHAPES))
    s = wsd(peak, T, W, D, shape=shape, final_lr=final, init_lr=init, warmup_shape=warm)
    gap = peak - final
    if D:
        decay = {
            "linear": gap / D,
            "cosine": gap * math.pi / (2 * D),
            "1-sqrt": gap / math.sqrt(D),
            "1-square": 2 * gap / D,
            "exp": peak * abs(math.log(final / peak)) / D if shape == "exp" else 0.0,
        }[shape]
    else:
        decay = 0.0
    slope = max(ramp_slope(peak, init, W, warm), decay)

    def jump(t):
        return inf if (D == 0 and t == T - 1) else slope

    keys = [W - 1, W, T - D - 1, T - D, T - 1, T]
    return s, T + 10, final, peak, [(0, min(W + 1, T))], [(max(W - 1, 0), T + 10)], jump, keys


@PROP
@given(cases())
def test_values_stay_between_final_and_peak(case):
    s, horizon, lo, hi, up, *_ = case
    lrs = run(s, horizon)
    warm = up[0][1] - 1 if up else 0  # first step after the warmup
    assert np.all(lrs >= 0) and np.all(lrs <= hi)
    assert np.all(lrs[warm:] >= lo)
    assert np.all(np.isfinite(lrs))


@PROP
@given(cases())
def test_monotone_in_warmup_and_decay_phases(case):
    s, horizon, _, _, up, down, *_ = case
    lrs = run(s, horizon)
    for a, b in up:
        assert np.all(np.diff(lrs[a:b]) >= 0), (a, b)
    for a, b in down:
        assert np.all(np.diff(lrs[a:b]) <= 0), (a, b)


@PROP
@given(cases())
def test_continuous_where_the_definition_is(case):
    s, horizon, _, _, _, _, jump, _ = case
    lrs = run(s, horizon)
    for t, d in enumerate(np.abs(np.diff(lrs))):
        assert d <= jump(t) * (1 + 1e-9) + 1e-15, (t, d, jump(t))


@PROP
@given(cases(), st.lists(st.integers(0, 10**7), max_size=20))
def test_vectorised_equals_scalar_exactly(case, extra):
    s, horizon, *_, keys = case
    steps = sorted({k for k in keys if k >= 0} | set(extra) | set(range(0, horizon, 37)) | {0})
    vec = s(np.array(steps))
    scal = [s(t) for t in steps]
    assert all(type(x) is float for x in scal)
    assert np.array_equal(vec, np.array(scal))
