"""The validation layer: what is a number, which error for which mistake, one message format."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from companion._validation import (
    check_choice,
    check_flag,
    check_integer,
    check_pair,
    check_real,
    check_real_array,
    check_steps,
)

REALS = [0.5, 1, np.float32(0.5), np.float64(0.5), np.int64(3), Fraction(1, 2)]


@pytest.mark.parametrize("value", REALS, ids=repr)
def test_every_real_scalar_is_a_number(value):
    out = check_real("x", value, low=0)
    assert isinstance(out, float) and out == float(value)


@pytest.mark.parametrize(
    "value",
    [True, np.True_, "0.1", None, 1j, [0.1], object()],
    ids=["True", "np.True_", "str", "None", "complex", "list", "object"],
)
def test_non_numbers_are_a_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^lr must be a finite real number >= 0, got"):
        check_real("lr", value, low=0)


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf, -math.inf, np.float32("nan")])
def test_out_of_range_is_a_value_error_with_range_and_value(value):
    with pytest.raises(ValueError, match=r"^lr must be a finite real number >= 0, got "):
        check_real("lr", value, low=0)


def test_numpy_scalars_are_shown_as_plain_numbers():
    with pytest.raises(ValueError, match=r"got -0\.5$"):
        check_real("eps", np.float64(-0.5), low=0, low_open=True)


def test_open_and_closed_bounds_are_written_as_intervals():
    with pytest.raises(
        ValueError, match=r"betas\[1\] must be a finite real number in \[0, 1\), got 1\.0"
    ):
        check_real("betas[1]", 1.0, low=0, high=1, high_open=True)
    assert check_real("b", 0.0, low=0, high=1, high_open=True) == 0.0
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        check_real("b", 0.0, low=0, high=1, low_open=True)


def test_tensors_only_where_allowed_and_only_one_element():
    with pytest.raises(TypeError, match="not a tensor"):
        check_real("lr", torch.tensor(0.1), low=0)
    t = torch.tensor(0.1)
    assert check_real("lr", t, low=0, allow_tensor=True) is t
    with pytest.raises(TypeError, match="one-element real tensor"):
        check_real("lr", torch.ones(2), allow_tensor=True)
    with pytest.raises(TypeError, match="one-element real tensor"):
        check_real("lr", torch.tensor(True), allow_tensor=True)
    with pytest.raises(ValueError, match=r"got tensor\(nan\)"):
        check_real("lr", torch.tensor(float("nan")), allow_tensor=True)
    # read_tensor=False checks the shape only (no host synchronisation on an accelerator)
    bad = torch.tensor(-1.0)
    assert check_real("lr", bad, low=0, allow_tensor=True, read_tensor=False) is bad


def test_integers_refuse_floats_and_bools_and_name_the_bound():
    assert check_integer("n", np.int32(4), low=1) == 4
    for value in (2.0, True, "3", None):
        with pytest.raises(TypeError, match=r"^n must be an integer >= 1, got"):
            check_integer("n", value, low=1)
    with pytest.raises(ValueError, match=r"in \[0, total_steps=10\], got 11"):
        check_integer("warmup_steps", 11, low=0, high=10, high_name="total_steps")


def test_flag_and_choice():
    assert check_flag("nesterov", np.True_) is True
    with pytest.raises(TypeError, match="nesterov must be True or False, got 1"):
        check_flag("nesterov", 1)
    assert check_choice("decay", "paper", ("torch", "paper")) == "paper"
    with pytest.raises(ValueError, match=r"decay must be one of 'torch', 'paper', got 'papr'"):
        check_choice("decay", "papr", ("torch", "paper"))
    with pytest.raises(TypeError, match="decay must be one of"):
        check_choice("decay", 3, ("torch", "paper"))


def test_pairs_name_the_element():
    assert check_pair("betas", (np.float32(0.5), 0.25), low=0, high=1) == (0.5, 0.25)
    with pytest.raises(TypeError, match=r"^betas must be a pair of real numbers, got 0\.9"):
        check_pair("betas", 0.9)
    with pytest.raises(TypeError, match=r"^betas\[0\] must be"):
        check_pair("betas", ("x", 0.9))
    with pytest.raises(ValueError, match=r"^betas must be a pair of real numbers, got 3 values"):
        check_pair("betas", (0.1, 0.2, 0.3))


def test_arrays_refuse_bools_and_strings_and_name_the_index():
    np.testing.assert_array_equal(check_real_array("lrs", [1, 0.5], low=0), [1.0, 0.5])
    with pytest.raises(TypeError, match=r"lrs\[0\] is True"):
        check_real_array("lrs", [True, False], low=0)
    with pytest.raises(TypeError, match=r"lrs\[0\] is 'a'"):
        check_real_array("lrs", ["a"], low=0)
    with pytest.raises(ValueError, match=r"lrs\[1\] is nan"):
        check_real_array("lrs", [0.1, float("nan")], low=0)
    with pytest.raises(TypeError, match="dtype bool"):
        check_real_array("lrs", np.array([True]), low=0)


def test_steps_never_overflow_or_wrap():
    assert check_steps(np.uint64(5)) == 5
    assert check_steps([]).shape == (0,)
    with pytest.raises(ValueError, match=str(2**63)):
        check_steps(2**63)
    with pytest.raises(ValueError, match=r"got values in \[0, 18446744073709551615\]"):
        check_steps(np.array([0, 2**64 - 1], dtype=np.uint64))
    with pytest.raises(ValueError, match=r"got -1"):
        check_steps(-1)
    with pytest.raises(TypeError, match=r"step\[1\] is 1\.5"):
        check_steps([1, 1.5])
    with pytest.raises(TypeError):
        check_steps(True)


def test_a_real_bound_can_be_named():
    assert check_real("final_lr", 0.05, low=0, high=0.1, high_name="peak_lr") == 0.05
    with pytest.raises(
        ValueError,
        match=r"^final_lr must be a finite real number in \[0, peak_lr=0\.1\], got 0\.2$",
    ):
        check_real("final_lr", 0.2, low=0, high=0.1, high_name="peak_lr")
