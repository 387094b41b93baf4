"""A refused optimizer state dict, or a refused step, changes nothing.

Each case here was accepted before (the state dict loaded, or the step started) and then
failed at the next ``step()`` -- after the optimizer, or some parameters, had changed --
or made the parameters NaN.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from companion.optim import SGD, Adam, AdamW, AMSGrad

FAMILIES = {
    "SGD": lambda ps: SGD(ps, lr=0.1, momentum=0.9),
    "Adam": lambda ps: Adam(ps, lr=0.1),
    "AdamW": lambda ps: AdamW(ps, lr=0.1),
    "AMSGrad": lambda ps: AMSGrad(ps, lr=0.1),
}
MOMENT = {"SGD": "momentum_buffer", "Adam": "exp_avg", "AdamW": "exp_avg", "AMSGrad": "exp_avg"}


def _trained(family: str) -> tuple[torch.optim.Optimizer, list[torch.nn.Parameter]]:
    """An optimizer of two groups after two steps (every state made)."""
    ps = [torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0])) for _ in range(2)]
    opt = FAMILIES[family]([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.05}])
    for _ in range(2):
        for p in ps:
            p.grad = torch.tensor([0.5, -0.25, 1.0])
        opt.step()
    return opt, ps


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _edits(family: str) -> dict[str, tuple]:
    """name: (edit of the saved dict, exception type, words the message must hold)."""
    moment = MOMENT[family]
    edits = {
        "not a dict": (lambda sd: sd["state"].__setitem__(0, 5), TypeError, "state 0"),
        "moment NaN": (
            lambda sd: sd["state"][0][moment].fill_(math.nan),
            ValueError,
            f"{moment} must be finite",
        ),
        "moment 0-d": (
            lambda sd: sd["state"][0].__setitem__(moment, torch.tensor(0.0)),
            ValueError,
            "shape ()",
        ),
        "moment a string": (
            lambda sd: sd["state"][0].__setitem__(moment, "x"),
            TypeError,
            f"{moment} must be a tensor",
        ),
        "moment of ints": (
            lambda sd: sd["state"][0].__setitem__(moment, torch.zeros(3, dtype=torch.int64)),
            TypeError,
            "floating-point",
        ),
        "params not ids": (
            lambda sd: sd["param_groups"][1].__setitem__("params", 5),
            TypeError,
            "parameter ids",
        ),
    }
    if family != "SGD":
        edits |= {
            "step None": (lambda sd: sd["state"][0].__setitem__("step", None), TypeError, "step"),
            "step negative": (
                lambda sd: sd["state"][0].__setitem__("step", torch.tensor(-1.0)),
                ValueError,
                "step",
            ),
            "step NaN": (
                lambda sd: sd["state"][0].__setitem__("step", torch.tensor(math.nan)),
                ValueError,
                "step",
            ),
            "step 2.5": (lambda sd: sd["state"][0].__setitem__("step", 2.5), ValueError, "whole"),
            "step True": (lambda sd: sd["state"][0].__setitem__("step", True), TypeError, "step"),
            "exp_avg_sq negative": (
                lambda sd: sd["state"][1]["exp_avg_sq"].fill_(-1.0),
                ValueError,
                "exp_avg_sq must be >= 0",
            ),
            "exp_avg missing": (
                lambda sd: sd["state"][0].pop("exp_avg"),
                ValueError,
                "lacks 'exp_avg'",
            ),
        }
    return edits


CASES = [(family, name) for family in FAMILIES for name in _edits(family)]


@pytest.mark.parametrize(("family", "case"), CASES, ids=[f"{f}-{c}" for f, c in CASES])
def test_a_refused_state_dict_changes_nothing(family: str, case: str) -> None:
    edit, error, words = _edits(family)[case]
    opt, ps = _trained(family)
    saved = copy.deepcopy(opt.state_dict())
    saved["param_groups"][0]["lr"] = 0.5  # a change that a partial load would show
    edit(saved)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(error, match=words):
        opt.load_state_dict(saved)
    assert _same(opt.state_dict(), before)
    assert opt.param_groups[0]["lr"] == 0.1
    for p in ps:  # and the optimizer still steps
        p.grad = torch.ones(3)
    opt.step()
    assert all(torch.isfinite(p).all() for p in ps)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_valid_state_dict_still_loads_and_continues_bit_for_bit(family: str) -> None:
    opt, ps = _trained(family)
    twin, twin_ps = _trained(family)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    for _ in range(3):
        for p in (*ps, *twin_ps):
            p.grad = torch.tensor([0.25, 1.0, -0.5])
        opt.step()
        twin.step()
    for p, q in zip(ps, twin_ps, strict=True):
        assert torch.equal(p, q)


def test_sgd_loads_a_missing_or_none_momentum_buffer() -> None:
    opt, _ = _trained("SGD")
    saved = copy.deepcopy(opt.state_dict())
    saved["state"][0]["momentum_buffer"] = None  # "not made yet", as torch.optim writes it
    saved["state"][1] = {}
    opt.load_state_dict(saved)
    assert opt.state_dict()["state"][0]["momentum_buffer"] is None


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "bad_lr",
    [torch.tensor(0.1, device="meta"), torch.tensor(1)],
    ids=["meta tensor", "int tensor"],
)
def test_a_step_refused_for_a_group_lr_changes_no_parameter(family: str, bad_lr) -> None:
    opt, ps = _trained(family)
    opt.param_groups[1]["lr"] = bad_lr  # set by hand after construction
    before = [p.detach().clone() for p in ps]
    with pytest.raises(TypeError, match="lr"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(ps, before, strict=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_fraction_lr_is_a_number(family: str) -> None:
    # torch's in-place operations take no Fraction: it was checked, then failed midway.
    opt, ps = _trained(family)
    twin, twin_ps = _trained(family)
    opt.param_groups[1]["lr"] = Fraction(1, 20)
    twin.param_groups[1]["lr"] = 0.05
    for p in (*ps, *twin_ps):
        p.grad = torch.ones(3)
    opt.step()
    twin.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, twin_ps, strict=True))
    assert Adam([torch.nn.Parameter(torch.ones(1))], lr=Fraction(1, 10)).defaults["lr"] == 0.1


def test_betas_set_as_an_array_are_a_pair() -> None:
    opt, ps = _trained("Adam")
    twin, twin_ps = _trained("Adam")
    opt.param_groups[0]["betas"] = np.array([0.8, 0.99])
    twin.param_groups[0]["betas"] = (0.8, 0.99)
    for p in (*ps, *twin_ps):
        p.grad = torch.ones(3)
    opt.step()
    twin.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, twin_ps, strict=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_state_of_no_parameter_is_refused(family: str) -> None:
    opt, _ = _trained(family)
    saved = copy.deepcopy(opt.state_dict())
    saved["state"][99] = {}
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match="state_dict state 99 belongs to no parameter"):
        opt.load_state_dict(saved)
    assert _same(opt.state_dict(), before)
