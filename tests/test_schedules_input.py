"""Every schedule of companion.schedules: the same values from every input path, a readable
repr, the steps it accepts, and every bad argument answered (TypeError for a wrong type,
ValueError for a wrong value; the message names the argument, its range and the value)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

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

ALL = [
    constant(0.1),
    linear_warmup(0.1, 13, init_lr=0.01),
    cosine(0.1, 1000, final_lr=0.001, warmup_steps=30),
    cosine(0.1, 1000, warmup_steps=30, init_lr=0.01, warmup_shape="cosine"),
    piecewise_constant([50, 90], [0.1, 0.025, 0.001]),
    sgdr(0.1, 17, cycle_mult=2, final_lr=0.001, peak_decay=0.8),
    *(wsd(0.1, 1000, 20, 200, shape=sh, final_lr=0.001) for sh in S.WSD_SHAPES),
    wsd(0.1, 1000, 20, 200, init_lr=0.001, warmup_shape="cosine"),
    join([linear_warmup(0.1, 10), cosine(0.1, 500), constant(0.003)], [10, 510]),
    polynomial(0.1, 1000, power=2.0, final_lr=0.001, warmup_steps=25),
    exponential(0.1, 0.99, decay_steps=3, staircase=True, final_lr=0.001, warmup_steps=25),
    exponential(0.1, 0.999),
    inverse_sqrt(0.1, 40),
    inverse_sqrt(0.1, 0, timescale=100),
    one_cycle(0.1, 1000),
    one_cycle(0.1, 999, pct_start=0.25, anneal="linear", div_factor=10.0, three_phase=True),
]
NAMES = {n for n in S.__all__ if n[0].islower()}


@pytest.mark.parametrize("s", ALL, ids=repr)
def test_whole_run_vectorised_equals_scalar(s):
    T = 1100
    assert np.array_equal(s(np.arange(T)), np.array([s(t) for t in range(T)]))


@pytest.mark.parametrize("s", ALL, ids=repr)
def test_long_arrays_are_evaluated_in_chunks_exactly(s):
    n = 150_000  # more than two chunks
    big = s(np.arange(n))
    edges = [0, 1, 65535, 65536, 65537, 131071, 131072, n - 1]
    picks = sorted(set(edges) | set(np.random.default_rng(1).integers(0, n, 200).tolist()))
    assert np.array_equal(big[picks], np.array([s(t) for t in picks]))
    reversed_ = s(np.arange(n)[::-1].copy())  # unsorted chunks take the mask path
    assert np.array_equal(reversed_[::-1], big)


@pytest.mark.parametrize("s", ALL, ids=repr)
def test_unsorted_and_repeated_steps(s):
    # sorted input takes slices, unsorted input takes masks: same values, bit for bit
    rng = np.random.default_rng(0)
    t = np.concatenate([np.arange(1100), rng.integers(0, 5000, 300), [10**9, 0, 0]])
    order = rng.permutation(t.size)
    assert np.array_equal(s(t[order]), s(np.sort(t))[np.argsort(np.argsort(t[order]))])
    assert np.array_equal(s(t[order]), np.array([s(int(x)) for x in t[order]]))


@pytest.mark.parametrize("s", ALL, ids=repr)
def test_inputs_and_outputs(s):
    assert type(s(np.int64(5))) is float and type(s(5)) is float
    grid = np.arange(12, dtype=np.int32).reshape(3, 4)
    out = s(grid)
    assert out.shape == (3, 4) and out.dtype == np.float64
    assert np.array_equal(out.ravel(), s(np.arange(12)))
    assert np.array_equal(s([1, 2, 3]), s(np.arange(1, 4)))
    assert s(np.array([], dtype=np.int64)).shape == (0,)
    empty = s([])  # an empty sequence is an empty array of rates, not an error
    assert isinstance(empty, np.ndarray) and empty.shape == (0,) and empty.dtype == np.float64
    assert type(s(np.uint64(5))) is float and s(np.uint64(5)) == s(5)
    assert s(torch.arange(3)).tolist() == s(np.arange(3)).tolist()
    for bad in (-1, np.array([3, -2]), 2**63, 2**53 + 1, np.array([2**64 - 1], dtype=np.uint64)):
        with pytest.raises(
            ValueError, match=r"^step must be an integer in \[0, 9007199254740992\]"
        ):
            s(bad)
    for bad in (1.5, np.array([0.0, 1.0]), "3", None, True, [1, 2.0], np.array([True])):
        with pytest.raises(TypeError, match=r"^step must be an integer"):
            s(bad)


def test_huge_and_wrapping_steps_are_named_in_the_message():
    s = cosine(0.1, 100)
    # was OverflowError (Python int too large to convert to C long)
    with pytest.raises(ValueError, match=r"got 9223372036854775808$"):
        s(2**63)
    # a uint64 array used to wrap around to a negative number in the message
    with pytest.raises(ValueError, match=r"got values in \[5, 18446744073709551615\]$"):
        s(np.array([5, 2**64 - 1], dtype=np.uint64))
    assert s(2**53) == 0.0 and s(np.array([2**53], dtype=np.uint64))[0] == 0.0


@pytest.mark.parametrize("s", ALL, ids=repr)
def test_repr_is_readable_and_round_trips(s):
    text = repr(s)
    assert text.split("(")[0] in NAMES
    assert "object at" not in text
    assert eval(text, vars(S)) == s  # noqa: S307 - a repr of our own
    with pytest.raises(AttributeError):
        s.foo = 1  # frozen


# ----------------------------------------------------------------------------- bad input


def test_numpy_scalars_are_numbers():
    s = cosine(np.float32(0.5), np.int64(100), final_lr=np.float64(0.0), warmup_steps=np.int32(5))
    assert s == cosine(0.5, 100, warmup_steps=5)
    assert one_cycle(np.float64(0.1), np.int16(50), pct_start=np.float32(0.25)) == one_cycle(
        0.1, 50, pct_start=0.25
    )


V, T = ValueError, TypeError
nan, inf = float("nan"), float("inf")
BAD = [
    (lambda: constant(-0.1), V, r"^lr must be a finite real number >= 0, got -0\.1$"),
    (lambda: constant(nan), V, r"^lr must be a finite real number >= 0, got nan$"),
    (lambda: constant("0.1"), T, r"^lr must be a finite real number >= 0, got '0\.1'$"),
    (lambda: constant(True), T, r"^lr must be a finite real number >= 0, got True$"),
    (lambda: constant(None), T, r"^lr must be"),
    (lambda: cosine(inf, 10), V, r"^peak_lr must be a finite real number >= 0, got inf$"),
    (lambda: cosine(0.1, 10, final_lr=-1e-3), V, r"^final_lr must be .* in \[0, peak_lr=0\.1\]"),
    (
        lambda: cosine(0.1, 10, final_lr=0.2),
        V,
        r"^final_lr must be .* in \[0, peak_lr=0\.1\], got 0\.2",
    ),
    (lambda: cosine(0.1, 0), V, r"^total_steps must be an integer >= 1, got 0$"),
    (lambda: cosine(0.1, -5), V, r"^total_steps must be an integer >= 1, got -5$"),
    (lambda: cosine(0.1, 10.0), T, r"^total_steps must be an integer >= 1, got 10\.0$"),
    (
        lambda: cosine(0.1, 10, warmup_steps=11),
        V,
        r"^warmup_steps must be an integer in \[0, total_steps=10\], got 11$",
    ),
    (
        lambda: cosine(0.1, 10, warmup_steps=-1),
        V,
        r"^warmup_steps must be an integer in \[0, total_steps=10\]",
    ),
    (lambda: cosine(0.1, 10, warmup_steps=True), T, r"^warmup_steps must be an integer"),
    (
        lambda: cosine(0.1, 10, init_lr=0.2),
        V,
        r"^init_lr must be .* in \[0, peak_lr=0\.1\], got 0\.2$",
    ),
    (
        lambda: cosine(0.1, 10, warmup_shape="sqrt"),
        V,
        r"^warmup_shape must be one of 'linear', 'cosine', got 'sqrt'$",
    ),
    (lambda: cosine(0.1, 10, warmup_shape=1), T, r"^warmup_shape must be one of"),
    (lambda: linear_warmup(0.1, 0), V, r"^warmup_steps must be an integer >= 1, got 0$"),
    (lambda: linear_warmup(0.1, 5, init_lr=nan), V, r"^init_lr must be"),
    (lambda: linear_warmup(0.1, 5, init_lr=0.5), V, r"^init_lr must be .* in \[0, peak_lr=0\.1\]"),
    (lambda: wsd(0.1, 0, 0, 0), V, r"^total_steps must be an integer >= 1"),
    (lambda: wsd(0.1, 10, 11, 0), V, r"^warmup_steps must be an integer in \[0, total_steps=10\]"),
    (
        lambda: wsd(0.1, 10, 5, 6),
        V,
        r"^warmup_steps \+ decay_steps must be <= total_steps=10, got 5 \+ 6 = 11$",
    ),
    (lambda: wsd(0.1, 10, 2, -1), V, r"^decay_steps must be an integer >= 0, got -1$"),
    (
        lambda: wsd(0.1, 10, 2, 3, shape="step"),
        V,
        r"^shape must be one of 'linear', .*, got 'step'$",
    ),
    (lambda: wsd(0.1, 10, 2, 3, shape=3), T, r"^shape must be one of"),
    (lambda: wsd(0.1, 10, 2, 3, shape="exp"), V, r"^final_lr must be > 0"),
    (lambda: wsd(0.1, 10, 2, 3, final_lr=0.5), V, r"^final_lr must be .* in \[0, peak_lr=0\.1\]"),
    (lambda: wsd(0.1, 10, 2, 3, warmup_shape="exp"), V, r"^warmup_shape must be one of"),
    (lambda: wsd(0.1, 10, 2, 3, init_lr=-1.0), V, r"^init_lr must be"),
    (lambda: piecewise_constant([5, 5], [1, 2, 3]), V, r"^boundaries must be strictly increasing"),
    (lambda: piecewise_constant([5, 3], [1, 2, 3]), V, r"^boundaries must be strictly increasing"),
    (
        lambda: piecewise_constant([0], [1, 2]),
        V,
        r"^boundaries\[0\] must be an integer >= 1, got 0$",
    ),
    (lambda: piecewise_constant([2.5], [1, 2]), T, r"^boundaries\[0\] must be an integer >= 1"),
    (
        lambda: piecewise_constant([5], [1.0]),
        V,
        r"^values must have len\(boundaries\) \+ 1 = 2 entries, got 1$",
    ),
    (
        lambda: piecewise_constant([5], [1.0, -2.0]),
        V,
        r"^values\[1\] must be a finite real number >= 0",
    ),
    (lambda: piecewise_constant([5], [1.0, "x"]), T, r"^values\[1\] must be a finite real number"),
    (lambda: piecewise_constant([5], "ab"), T, r"^values must be a sequence"),
    (lambda: piecewise_constant(5, [1.0]), T, r"^boundaries must be a sequence"),
    (lambda: sgdr(0.1, 0), V, r"^cycle_steps must be an integer in \[1, 9007199254740992\]"),
    (
        lambda: sgdr(0.1, 10, cycle_mult=0),
        V,
        r"^cycle_mult must be an integer >= 1",
    ),
    (
        lambda: sgdr(0.1, 10, cycle_mult=1.5),
        T,
        r"^cycle_mult must be an integer >= 1",
    ),
    (
        lambda: sgdr(0.1, 10, peak_decay=1.5),
        V,
        r"^peak_decay must be a finite real number in \[0, 1\], got 1\.5$",
    ),
    (lambda: sgdr(0.1, 10, peak_decay="1"), T, r"^peak_decay must be"),
    (lambda: sgdr(0.1, 10, final_lr=1.0), V, r"^final_lr must be .* in \[0, peak_lr=0\.1\]"),
    (lambda: join([constant(1.0)], [5]), V, r"^schedules must have len\(boundaries\) \+ 1 = 2"),
    (lambda: join([constant(1.0), lambda t: 1.0], [5]), T, r"^schedules\[1\] must be a companion"),
    (lambda: join([constant(1.0)] * 3, [5, 2]), V, r"^boundaries must be strictly increasing"),
    (lambda: join(constant(1.0), [5]), T, r"^schedules must be a sequence"),
    (
        lambda: polynomial(0.1, 10, power=0.0),
        V,
        r"^power must be a finite real number > 0, got 0\.0$",
    ),
    (lambda: polynomial(0.1, 10, power=True), T, r"^power must be"),
    (lambda: polynomial(0.1, 10, final_lr=0.2), V, r"^final_lr must be .* in \[0, peak_lr=0\.1\]"),
    (
        lambda: polynomial(0.1, 10, warmup_steps=11),
        V,
        r"^warmup_steps must be an integer in \[0, total_steps=10\]",
    ),
    (
        lambda: exponential(0.1, 0.0),
        V,
        r"^decay_rate must be a finite real number in \(0, 1\], got 0\.0$",
    ),
    (lambda: exponential(0.1, 1.5), V, r"^decay_rate must be a finite real number in \(0, 1\]"),
    (lambda: exponential(0.1, 0.9, decay_steps=0), V, r"^decay_steps must be an integer >= 1"),
    (lambda: exponential(0.1, 0.9, staircase=1), T, r"^staircase must be True or False, got 1$"),
    (
        lambda: exponential(0.1, 0.9, final_lr=0.2),
        V,
        r"^final_lr must be .* in \[0, peak_lr=0\.1\]",
    ),
    (lambda: exponential(0.1, 0.9, warmup_steps=-1), V, r"^warmup_steps must be an integer >= 0"),
    (lambda: inverse_sqrt(0.1, 0), V, r"^timescale must be given"),
    (lambda: inverse_sqrt(0.1, 10, timescale=0), V, r"^timescale must be an integer >= 1, got 0$"),
    (lambda: inverse_sqrt(0.1, 10, timescale=2.5), T, r"^timescale must be an integer >= 1"),
    (lambda: inverse_sqrt(-0.1, 10), V, r"^peak_lr must be a finite real number >= 0"),
    (lambda: one_cycle(0.1, 0), V, r"^total_steps must be an integer >= 1"),
    (
        lambda: one_cycle(0.1, 100, pct_start=1.5),
        V,
        r"^pct_start must be a finite real number in \[0, 1\], got 1\.5$",
    ),
    (
        lambda: one_cycle(0.1, 100, pct_start=0.6, three_phase=True),
        V,
        r"^pct_start must be in \[0, 0\.5\] when three_phase=True",
    ),
    (
        lambda: one_cycle(0.1, 100, anneal="cosine"),
        V,
        r"^anneal must be one of 'cos', 'linear', got 'cosine'$",
    ),
    (
        lambda: one_cycle(0.1, 100, div_factor=0),
        V,
        r"^div_factor must be a finite real number > 0, got 0$",
    ),
    (lambda: one_cycle(0.1, 100, final_div_factor=nan), V, r"^final_div_factor must be"),
    (lambda: one_cycle(0.1, 100, three_phase="yes"), T, r"^three_phase must be True or False"),
]


@pytest.mark.parametrize(("make", "error", "match"), BAD)
def test_bad_input_raises_naming_argument_range_and_value(make, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(error, match=match) as info:
            make()
    assert type(info.value) is error
