"""Inputs at the edges of what a number, a tensor or a step can be: each gets a clear
error naming the argument (and changes nothing), or works as the same value would.

Each case failed before with a raw Python, numpy or torch error, or was accepted and went
wrong later.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from companion import schedules, theory
from companion.formatting import textbook_number
from companion.lr_scheduler import ScheduledLR
from companion.optim import SGD, AdamW
from companion.river import River

HUGE = 10**400  # an int beyond float64's range


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: SGD([torch.nn.Parameter(torch.ones(1))], lr=HUGE), "lr"),
        (lambda: AdamW([torch.nn.Parameter(torch.ones(1))], eps=HUGE), "eps"),
        (lambda: schedules.cosine(HUGE, 10), "peak_lr"),
        (lambda: River(eps=HUGE), "eps"),
        (lambda: theory.sgd_bound([0.1], HUGE, 1.0, 1.0), "delta"),
    ],
)
def test_an_integer_beyond_float_range_is_a_value_error_naming_the_argument(call, name) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a finite real number"):
        call()


def test_a_meta_tensor_is_not_a_number() -> None:
    meta = torch.tensor(0.1, device="meta")
    with pytest.raises(TypeError, match="^lr must be .* a tensor with a value, got a meta tensor"):
        SGD([torch.nn.Parameter(torch.ones(1))], lr=meta)
    with pytest.raises(TypeError, match="^step must hold values, got a meta tensor"):
        schedules.cosine(1.0, 10)(torch.tensor([1], device="meta"))


def test_numpy_strings_are_the_strings_they_hold() -> None:
    steps = np.arange(12)
    for make, option in (
        (lambda v: schedules.cosine(1.0, 10, warmup_steps=3, warmup_shape=v), "cosine"),
        (lambda v: schedules.wsd(1.0, 10, warmup_steps=2, decay_steps=3, shape=v), "1-sqrt"),
        (lambda v: schedules.one_cycle(1.0, 10, anneal=v), "linear"),
    ):
        assert np.array_equal(make(np.str_(option))(steps), make(option)(steps))


def test_bfloat16_arrays_are_read_as_float32() -> None:
    lrs = torch.tensor([0.1, 0.2], dtype=torch.bfloat16)
    assert theory.sgd_bound(lrs, 1.0, 1.0, 1.0) == theory.sgd_bound(lrs.float(), 1.0, 1.0, 1.0)
    with pytest.raises(TypeError, match=r"^step must be an integer .*; step\[0\] is 1.0"):
        schedules.cosine(1.0, 10)(torch.tensor([1.0], dtype=torch.bfloat16))


def test_one_cycle_refuses_factors_that_make_a_rate_infinite() -> None:
    for kwargs in (dict(div_factor=1e-320), dict(final_div_factor=1e-320)):
        with pytest.raises(ValueError, match="make a rate infinite"):
            schedules.one_cycle(1.0, 10, **kwargs)
    with pytest.raises(ValueError, match="make a rate infinite"):
        schedules.one_cycle(1e308, 10, div_factor=0.1)


def test_sgdr_with_a_huge_cycle_mult_evaluates_and_a_huge_cycle_is_refused() -> None:
    s = schedules.sgdr(1.0, 3, cycle_mult=10**15)  # the second cycle is longer than int64
    values = s([0, 1, 3, 4, 2**53])
    assert values[0] == values[2] == 1.0 and values[1] == pytest.approx(0.75)
    assert 0.999 < values[-1] <= 1.0  # 2**53 steps into a cycle of 3 * 10**15
    with pytest.raises(
        ValueError, match=r"^cycle_steps must be an integer in \[1, 9007199254740992\]"
    ):
        schedules.sgdr(1.0, 2**70)


def _torch_sgd(lr) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=lr)


@pytest.mark.parametrize(
    "lr",
    [torch.tensor(1), torch.tensor(0.5, requires_grad=True)],
    ids=["int tensor", "tensor requiring grad"],
)
def test_scheduled_lr_refuses_an_lr_tensor_it_cannot_write_and_changes_nothing(lr) -> None:
    opt = _torch_sgd(lr)
    with pytest.raises(TypeError, match=r"^param_groups\[0\]'s lr must be a number or a floating"):
        ScheduledLR(opt, schedules.cosine(1.0, 10))
    assert "initial_lr" not in opt.param_groups[0]
    assert opt.param_groups[0]["lr"] is lr


def test_scheduled_lr_hands_out_copies_of_its_last_rates() -> None:
    opt = _torch_sgd(torch.tensor(0.5))
    sched = ScheduledLR(opt, schedules.cosine(1.0, 10))
    sched.step()
    first = sched.get_last_lr()
    first[0].fill_(123.0)
    first.append(7.0)
    again = sched.get_last_lr()
    assert len(again) == 1 and float(again[0]) == pytest.approx(schedules.cosine(1.0, 10)(1))


def test_scheduled_lr_stops_at_the_last_step_a_schedule_takes() -> None:
    opt = _torch_sgd(0.1)
    sched = ScheduledLR(opt, schedules.constant(1.0))
    sched.step(2**53)
    with pytest.raises(ValueError, match="at step 9007199254740992, the last a schedule takes"):
        sched.step()
    assert sched.last_epoch == 2**53
    with pytest.raises(ValueError, match=r"^epoch must be an integer in \[0, 9007199254740992\]"):
        sched.step(2**53 + 1)
    saved = sched.state_dict() | {"last_epoch": 2**60}
    with pytest.raises(ValueError, match=r"^state_dict\['last_epoch'\] must be"):
        sched.load_state_dict(saved)


def test_a_river_state_with_a_numpy_count_loads_and_continues() -> None:
    river = River()
    batches = [torch.tensor([1.0, 2.0, 4.0]) * (k + 1) for k in range(6)]
    for b in batches[:3]:
        river.observe(b)
    saved = copy.deepcopy(river.state_dict())
    saved["state"]["observed"] = np.int64(saved["state"]["observed"])
    twin = River()
    twin.load_state_dict(saved)
    assert type(twin.state_dict()["state"]["observed"]) is int
    for b in batches[3:]:
        assert torch.equal(twin.observe(b), river.observe(b))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (dict(spec=".2q"), ValueError, r"^spec='\.2q' is not a format spec for a float"),
        (dict(spec=5), TypeError, r"^spec must be a format spec"),
        (dict(digits=10**10), ValueError, r"^digits must be an integer in \[1, 17\]"),
        (dict(small="a"), TypeError, r"^small must be a finite real number > 0"),
        (dict(small=math.nan), ValueError, r"^small must be"),
        (dict(large=0), ValueError, r"^large must be a finite real number > 0.001"),
    ],
)
def test_textbook_number_names_a_bad_option(kwargs, error, words) -> None:
    with pytest.raises(error, match=words):
        textbook_number(0.5, **kwargs)


def test_river_refuses_meta_losses_and_a_meta_state_with_nothing_changed() -> None:
    river = River()
    river.observe(torch.tensor([1.0, 2.0, 4.0]))
    before = copy.deepcopy(river.state_dict())
    with pytest.raises(TypeError, match="^per_example_losses must be floating-point with values"):
        river.observe(torch.ones(3, device="meta"))
    saved = copy.deepcopy(before)
    saved["state"]["v"] = torch.tensor(1.0, device="meta")
    with pytest.raises(ValueError, match="meta tensors, which have no values"):
        river.load_state_dict(saved)
    after = river.state_dict()
    assert after["state"]["observed"] == before["state"]["observed"] == 1
    assert all(torch.equal(after["state"][k], before["state"][k]) for k in ("v", "r", "multiplier"))


def test_optimizer_params_and_no_decay_of_the_wrong_kind_are_named() -> None:
    from companion.optim import param_groups

    with pytest.raises(TypeError, match="^params must be an iterable of tensors"):
        SGD(5, lr=0.1)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"^no_decay must be a predicate f\(name, parameter\)"):
        param_groups(model, 0.1, no_decay=lambda name: name.endswith("bias"))


def test_the_notebook_helpers_name_a_bad_argument() -> None:
    pytest.importorskip("sklearn")  # digits() loads scikit-learn's data set
    from companion.problems import TiltedDoubleWell, digits, least_squares, mlp
    from companion.training import evaluate

    cases = [
        (lambda: digits(test_fraction=1e-6), ValueError, "leaves 0 of 1797 examples"),
        (lambda: digits(seed=True), TypeError, "^seed must be an integer"),
        (lambda: digits(dtype=torch.int32), TypeError, "^dtype must be a floating"),
        (lambda: digits(device="gpu"), ValueError, "^device must name a torch device"),
        (lambda: mlp(4, 3, 2, depth=True), TypeError, "^depth must be an integer"),
        (lambda: mlp(0, 3, 2), ValueError, "^in_features must be an integer >= 1"),
        (lambda: mlp(4, 3, 2, seed=1.5), TypeError, "^seed must be an integer"),
        (lambda: least_squares(8, 2, seed=-1), ValueError, "^seed must be an integer in"),
        (lambda: TiltedDoubleWell().value(None), TypeError, "^w must be"),
        (lambda: TiltedDoubleWell().grad(True), TypeError, "^w must be"),
        (
            lambda: evaluate(mlp(64, 3, 10), torch.zeros(0, 64), torch.zeros(0, dtype=torch.long)),
            ValueError,
            "^y must hold at least one",
        ),
    ]
    for call, error, words in cases:
        with pytest.raises(error, match=words):
            call()
    assert TiltedDoubleWell().value(0.5) == pytest.approx(0.7125)


def test_glue_number_names_a_key_that_is_not_a_string() -> None:
    from companion.formatting import glue_number

    with pytest.raises(TypeError, match="^name must be a non-empty str"):
        glue_number(5, 0.1)
