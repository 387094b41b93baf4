"""ScheduledLR refuses bad values with nothing changed; groups added later; two-rates warning."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch

from companion.lr_scheduler import BLOCK_STEPS, ScheduledLR
from companion.optim import AdamW
from companion.schedules import Schedule, constant, cosine, linear_warmup

SCHED = cosine(0.1, total_steps=40, warmup_steps=5)


class Mult:
    """A multiplier with state: ``multiplier = 1 / (1 + ema)``."""

    def __init__(self, ema=0.0, tensor=True):
        self.ema = torch.tensor(ema) if tensor else ema
        self.tensor = tensor

    @property
    def multiplier(self):
        return 1.0 / (1.0 + self.ema)

    def state_dict(self):
        return {"ema": self.ema.clone() if self.tensor else self.ema}

    def load_state_dict(self, state):
        ema = state["ema"]
        if self.tensor and not torch.is_tensor(ema):
            raise TypeError(f"ema must be a tensor, got {ema!r}")
        self.ema = ema.clone() if self.tensor else ema


def sgd(lr=0.1, *extra):
    p = torch.nn.Parameter(torch.ones(2))
    groups = [{"params": [p]}] + [
        {"params": [torch.nn.Parameter(torch.ones(2))], "lr": e} for e in extra
    ]
    return torch.optim.SGD(groups, lr=lr)


def frozen(sched):
    opt = sched.optimizer
    return (
        [g["lr"] for g in opt.param_groups],
        sched.last_epoch,
        sched._step_count,
        list(sched.get_last_lr()),
    )


# ------------------------------------------------------------- values from the schedule
@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.01])
def test_a_bad_schedule_value_is_refused_naming_the_step(bad):
    opt = sgd()
    sched = ScheduledLR(opt, lambda t: bad if t == 3 else 0.1 / (1 + t))
    sched.step()
    sched.step()
    kept = frozen(sched)
    with pytest.raises(ValueError, match=rf"schedule's value at step t=3 .* >= 0, got {bad}"):
        sched.step()
    assert frozen(sched) == kept  # the lr, the step count and last lr as they were
    with pytest.raises(ValueError, match="t=3"):
        sched.step(3)
    sched.step(4)  # the closed form can move on past the bad step
    assert opt.param_groups[0]["lr"] == 0.1 / 5


@pytest.mark.parametrize(
    "value", [math.nan, -1.0, torch.tensor(math.nan), torch.tensor(-2.0), torch.tensor(math.inf)]
)
def test_a_bad_multiplier_is_refused_naming_the_step(value):
    class Fixed:
        multiplier = 1.0

    m = Fixed()
    opt = sgd(0.1, 0.05)
    sched = ScheduledLR(opt, SCHED, multiplier=m)
    sched.step()
    kept = frozen(sched)
    m.multiplier = value
    with pytest.raises(ValueError, match=r"the multiplier at step t=2 must be .* >= 0"):
        sched.step()
    assert frozen(sched) == kept
    assert all(math.isfinite(g["lr"]) for g in opt.param_groups)


def test_a_bad_tensor_multiplier_with_a_tensor_lr_is_refused_on_the_cpu():
    lr = torch.tensor(0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=lr)
    m = Mult()
    sched = ScheduledLR(opt, SCHED, multiplier=m)
    sched.step()
    before = lr.clone()
    m.ema = torch.tensor(-1.0)  # 1 / 0 = inf
    with pytest.raises(ValueError, match=r"multiplier at step t=2 .* got tensor\(inf\)"):
        sched.step()
    assert torch.equal(lr, before) and opt.param_groups[0]["lr"] is lr


# ------------------------------------------------------------------ load_state_dict
@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (
            dict(last_epoch=-1),
            ValueError,
            r"last_epoch'\] must be an integer in \[0, 9007199254740992\], got -1",
        ),
        (dict(last_epoch=2.0), TypeError, r"last_epoch'\] must be an integer"),
        (dict(_step_count="3"), TypeError, r"_step_count'\] must be an integer"),
        (dict(multiplied=None), TypeError, r"multiplied'\] must be True or False"),
        (dict(last_epoch=50), ValueError, r"schedule's value at step t=50"),
        (dict(multiplier={"ema": 0.5}), TypeError, r"ema must be a tensor"),
        (dict(multiplier={"ema": torch.tensor(-1.0)}), ValueError, r"multiplier at step t=7"),
    ],
)
def test_load_state_dict_refuses_with_nothing_changed(edit, error, match):
    def schedule(t):
        return 0.1 if t < 45 else math.nan

    opt, m = sgd(0.1, 0.05), Mult()
    sched = ScheduledLR(opt, schedule, multiplier=m)
    for k in range(4):
        m.ema = torch.tensor(0.1 * k)
        sched.step()
    saved = {**sched.state_dict(), "last_epoch": 7, "_step_count": 8}
    kept, kept_m = frozen(sched), copy.deepcopy(m.state_dict())
    with pytest.raises(error, match=match):
        sched.load_state_dict({**saved, **edit})
    assert frozen(sched) == kept
    assert torch.equal(m.state_dict()["ema"], kept_m["ema"])  # restored where it had loaded
    sched.load_state_dict(saved)  # the good dict still loads
    assert sched.last_epoch == 7


# ------------------------------------------------------------------ add_param_group
def test_a_group_added_later_takes_its_ratio_from_its_own_lr():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([a], lr=0.1)
    sched = ScheduledLR(opt, SCHED)
    sched.step()
    opt.add_param_group({"params": [b], "lr": 0.025})
    assert opt.param_groups[1]["lr"] == 0.025  # until the next step
    for t in range(2, 10):
        sched.step()
        assert [g["lr"] for g in opt.param_groups] == [SCHED(t), SCHED(t) * 0.25]
    assert opt.param_groups[1]["initial_lr"] == 0.025
    # the same as a scheduler that had both groups from the start
    opt2 = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.025}], lr=0.1)
    sched2 = ScheduledLR(opt2, SCHED)
    sched2.step(9)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


def test_a_group_added_later_with_a_bad_lr_is_refused_by_name():
    opt = sgd()
    sched = ScheduledLR(opt, SCHED)
    opt.param_groups.append({"params": [], "lr": math.nan})  # torch.optim does not check
    kept = sched.last_epoch
    with pytest.raises(ValueError, match=r"param_groups\[1\]'s initial lr .* got nan"):
        sched.step()
    assert sched.last_epoch == kept and "initial_lr" not in opt.param_groups[1]


# --------------------------------------------------------------- two learning rates
@pytest.mark.parametrize(
    ("lr", "schedule"),
    [
        (1e-3, cosine(peak_lr=0.1, total_steps=100)),  # the trap: trains at 0.1
        (0.1, constant(1e-3)),
        (1e-3, linear_warmup(0.1, 10)),  # starts at 0 but peaks at 0.1
        (1e-4, lambda t: 0.01),
    ],
)
def test_two_learning_rates_that_disagree_warn(lr, schedule):
    opt = AdamW([torch.nn.Parameter(torch.ones(2))], lr=lr)
    with pytest.warns(UserWarning, match=r"the optimizer's lr .* differ by a factor"):
        ScheduledLR(opt, schedule)


@pytest.mark.parametrize(
    ("lr", "schedule"),
    [
        (1e-3, cosine(peak_lr=1e-3, total_steps=1000, warmup_steps=50)),  # the README's
        (3e-4, cosine(peak_lr=3e-4, total_steps=10_000, warmup_steps=500)),  # intro
        (0.1, cosine(peak_lr=0.1, total_steps=300, warmup_steps=30)),  # 6.2
        (1e-3, lambda t: 1e-3 * cosine(1.0, total_steps=1000)(t)),  # 6.3.2
        (0.3, constant(0.3)),  # 6.5's least squares: lr = max(s(0), 1e-3)
        (1e-3, constant(1e-4)),  # within the factor
        (1.0, cosine(peak_lr=3e-4, total_steps=10)),  # pure ratios
        (1e-3, lambda t: 0.0),  # nothing to compare with
    ],
)
def test_agreeing_learning_rates_do_not_warn(lr, schedule):
    opt = AdamW([torch.nn.Parameter(torch.ones(2))], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ScheduledLR(opt, schedule)


# ------------------------------------------------------- schedule values a block at a time
class _Spiky(Schedule):
    """A companion schedule (array code) with a bad value at one step, or refusing arrays
    that reach past ``limit`` (as a user's subclass might)."""

    def __init__(self, bad_step=None, bad=math.nan, limit=None):
        object.__setattr__(self, "bad_step", bad_step)
        object.__setattr__(self, "bad", bad)
        object.__setattr__(self, "limit", limit)

    def _evaluate(self, t):
        if self.limit is not None and t.max() > self.limit:
            raise ValueError(f"steps beyond {self.limit}")
        return np.where(t == self.bad_step, self.bad, 0.1 / (1.0 + t))


def _lrs_over(sched, steps):
    out = []
    for _ in range(steps):
        sched.step()
        out.append(sched.optimizer.param_groups[0]["lr"])
    return out


def test_block_values_are_the_scalar_values_across_blocks_and_jumps():
    s = cosine(0.1, total_steps=700, warmup_steps=37, final_lr=1e-3)
    sched = ScheduledLR(sgd(), s)
    n = 2 * BLOCK_STEPS + 30
    assert _lrs_over(sched, n) == [s(t) for t in range(1, n + 1)]  # bit for bit
    for t in (BLOCK_STEPS - 1, 5, 3 * BLOCK_STEPS + 7, 2**53):  # backwards, forwards, the end
        sched.step(t)
        assert sched.optimizer.param_groups[0]["lr"] == s(t)


def test_a_reassigned_schedule_is_the_one_used():
    sched = ScheduledLR(sgd(), SCHED)
    _lrs_over(sched, 3)
    sched.schedule = constant(0.05)
    sched.step()
    assert sched.optimizer.param_groups[0]["lr"] == 0.05


def test_a_bad_value_later_in_the_block_is_refused_only_at_its_step():
    sched = ScheduledLR(sgd(), _Spiky(bad_step=BLOCK_STEPS + 9))
    lrs = _lrs_over(sched, BLOCK_STEPS + 8)
    assert lrs[-1] == 0.1 / (BLOCK_STEPS + 9)
    kept = frozen(sched)
    with pytest.raises(ValueError, match=rf"at step t={BLOCK_STEPS + 9} .* got nan"):
        sched.step()
    assert frozen(sched) == kept
    sched.step(BLOCK_STEPS + 10)
    assert sched.optimizer.param_groups[0]["lr"] == 0.1 / (BLOCK_STEPS + 11)


def test_a_schedule_that_refuses_a_later_step_still_runs_up_to_it():
    sched = ScheduledLR(sgd(), _Spiky(limit=10))
    assert _lrs_over(sched, 10) == [0.1 / (1 + t) for t in range(1, 11)]
    with pytest.raises(ValueError, match="beyond 10"):
        sched.step()


def test_a_plain_callable_is_called_at_every_step():
    calls = []
    sched = ScheduledLR(sgd(), lambda t: calls.append(t) or 0.1)
    _lrs_over(sched, 5)
    assert calls[-5:] == [1, 2, 3, 4, 5]


def test_the_scheduler_benchmark_runs_and_agrees_with_torch(capsys):
    """``python -m companion.benchmarks.schedules`` on a tiny run: every row printed.

    The figures are timings, which no test checks; what is checked is that the three
    schedulers are compared and that the vectorised and scalar paths agreed (it raises
    otherwise).
    """
    from companion.benchmarks import schedules as bench

    bench.main(["--steps", "2000", "--loop-steps", "200", "--rounds", "1",
                "--scheduler-steps", "50"])  # fmt: skip
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "us per step" in line]
    assert [r.split("  ")[0].strip() for r in rows] == [
        "ScheduledLR(cosine)", "torch CosineAnnealingLR", "torch LambdaLR(cosine)"
    ]  # fmt: skip
    assert min(float(r.split()[-1].rstrip("x")) for r in rows) == 1.0


def test_a_copied_or_pickled_scheduler_continues_exactly():
    """The block of values travels with a copy (or a pickle) and stays its own."""
    import pickle

    s = cosine(0.1, total_steps=600, warmup_steps=20)
    sched = ScheduledLR(sgd(), s)
    _lrs_over(sched, 300)
    for twin in (copy.deepcopy(sched), pickle.loads(pickle.dumps(sched))):
        assert _lrs_over(twin, 250) == [s(t) for t in range(301, 551)]
    assert _lrs_over(sched, 2) == [s(301), s(302)]  # the original did not move
