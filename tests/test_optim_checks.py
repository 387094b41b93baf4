"""Bad input refused with nothing changed: checked load_state_dict, paper decay, torch's flags.

Every test here failed on the optimizers before the validation layer: a silent NaN, a
loaded-then-failing state, an unclear error, or an argument torch accepts and we refused.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from pathlib import Path

import pytest
import torch

import companion.optim as co
from companion.lr_scheduler import ScheduledLR
from companion.optim.adam import AMSGRAD_VARIANTS, adam_reference
from companion.schedules import cosine, piecewise_constant

SETUPS = {
    "SGD": dict(lr=0.1, momentum=0.9),
    "Adam": dict(lr=0.01, weight_decay=0.1, amsgrad=True),
    "AdamW": dict(lr=0.01, decay="paper"),
    "AMSGrad": dict(lr=0.01, variant="corrected"),
}


def make(name, params, **kw):
    return getattr(co, name)(params, **{**SETUPS[name], **kw})


def make_params(seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in [(3, 2), (4,)]]


def set_grads(params, t):
    gen = torch.Generator().manual_seed(1000 + t)
    for p in params:
        p.grad = p.detach() + torch.randn(p.shape, generator=gen, dtype=p.dtype)


def snapshot(opt, params):
    return copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in params]


def assert_same(a, b):
    """Two (state_dict, params) snapshots are equal, tensors bit for bit."""
    (sa, pa), (sb, pb) = a, b
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for key in sa["state"][k]:
            assert torch.equal(sa["state"][k][key], sb["state"][k][key])
    assert all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))


# ------------------------------------------------------------------ load_state_dict
def _edit(name, group_edit=None, state_edit=None):
    def edit(sd):
        sd = copy.deepcopy(sd)
        if group_edit:
            sd["param_groups"][-1].update(group_edit)
        if state_edit:
            state_edit(sd)
        return sd

    return edit


def _bad_shape(sd):
    key = next(iter(sd["state"]))
    for name, value in sd["state"][key].items():
        if name != "step":
            sd["state"][key][name] = torch.zeros(7, dtype=value.dtype)


BAD = {
    "lr nan": (_edit("", {"lr": float("nan")}), ValueError, r"group 1: lr must be"),
    "lr string": (_edit("", {"lr": "0.1"}), TypeError, r"group 1: lr must be"),
    "maximize None": (_edit("", {"maximize": None}), TypeError, r"maximize must be True or"),
    "fused and foreach": (_edit("", {"fused": True, "foreach": True}), ValueError, r"foreach"),
    "capturable": (_edit("", {"capturable": True}), ValueError, r"capturable=True is not"),
    "state shape": (_edit("", state_edit=_bad_shape), ValueError, r"has shape \(7,\)"),
    "one group": (
        _edit("", state_edit=lambda sd: sd["param_groups"].pop()),
        ValueError,
        r"1 param groups",
    ),
}
BAD_ADAM = {
    "betas": (_edit("", {"betas": (1.5, 0.9)}), ValueError, r"betas\[0\] must be .* \[0, 1\)"),
    "eps": (_edit("", {"eps": -1.0}), ValueError, r"eps must be"),
}
BAD_SGD = {
    "momentum": (_edit("", {"momentum": -1.0}), ValueError, r"momentum must be"),
    "dampening": (_edit("", {"dampening": None}), TypeError, r"dampening must be"),
}
CASES = [(n, k) for n in SETUPS for k in BAD] + [
    (n, k) for n in SETUPS for k in (BAD_SGD if n == "SGD" else BAD_ADAM)
]


@pytest.mark.parametrize(("name", "case"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_load_state_dict_checks_everything_before_changing_anything(name, case):
    edit, error, match = {**BAD, **BAD_ADAM, **BAD_SGD}[case]
    params = make_params()
    opt = make(name, [{"params": params[:1]}, {"params": params[1:]}])
    for t in range(3):
        set_grads(params, t)
        opt.step()
    twin_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    twin = make(name, [{"params": twin_params[:1]}, {"params": twin_params[1:]}])
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    other = make_params(seed=5)  # another run, whose (edited) state is refused
    source = make(name, [{"params": other[:1]}, {"params": other[1:]}])
    set_grads(other, 9)
    source.step()
    before = snapshot(opt, params)
    with pytest.raises(error, match=match):
        opt.load_state_dict(edit(source.state_dict()))
    assert_same(snapshot(opt, params), before)
    for t in range(3, 8):  # and stepping continues as if nothing had been tried
        set_grads(params, t)
        set_grads(twin_params, t)
        opt.step()
        twin.step()
    assert all(torch.equal(a, b) for a, b in zip(params, twin_params, strict=True))


def test_a_torch_state_dict_still_loads_and_is_checked():
    params = make_params()
    theirs = torch.optim.AdamW(params, lr=0.01)
    set_grads(params, 0)
    theirs.step()
    ours = co.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params])
    ours.load_state_dict(theirs.state_dict())  # capturable/differentiable False: accepted
    bad = copy.deepcopy(theirs.state_dict())
    bad["param_groups"][0]["betas"] = (0.9, 1.0)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        ours.load_state_dict(bad)


# ---------------------------------------------------------------- AdamW, decay="paper"
def test_paper_decay_with_a_zero_tensor_lr_is_refused_not_nan():
    p = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match=r"alpha of decay='paper'.*> 0, got tensor\(0.0\)"):
        co.AdamW([p], lr=torch.tensor(0.0), decay="paper")
    opt = co.AdamW([p], lr=torch.tensor(0.1), decay="paper")
    opt.param_groups[0]["decay_base_lr"] = torch.tensor(0.0)  # alpha read inside the step
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match=r"alpha of decay='paper'"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3)) and not opt.state


def test_paper_decay_past_its_range_is_refused_naming_the_step_and_numbers():
    """AdamW(lr=1e-3, weight_decay=0.1, decay="paper") under cosine(1e-2) zeroed the model."""
    model = torch.nn.Linear(3, 2)
    opt = co.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, decay="paper")
    sched = ScheduledLR(opt, cosine(peak_lr=1e-2, total_steps=100))
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.ones(4, 3)).sum().backward()
    with pytest.raises(ValueError, match=r"at update t=0: .* 1 - 0.01\*0.1/0.001 = .* <= 0") as e:
        opt.step()
    assert "alpha/weight_decay = 0.01" in str(e.value)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))
    assert not opt.state and sched.last_epoch == 0


def test_paper_decay_refused_at_the_step_where_the_schedule_crosses_alpha_over_lambda():
    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = co.AdamW([p], lr=0.1, weight_decay=0.5, decay="paper")  # alpha/lambda = 0.2
    sched = ScheduledLR(opt, piecewise_constant([3], [0.1, 0.25]))
    for _ in range(3):
        p.grad = torch.ones(2, dtype=torch.float64)
        opt.step()
        sched.step()
    kept = p.detach().clone()
    with pytest.raises(ValueError, match=r"at update t=3: .*0.25\*0.5/0.1"):
        opt.step()
    assert torch.equal(p.detach(), kept) and opt.state[p]["step"].item() == 3


# ------------------------------------------------------------------ torch's flags
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_every_torch_argument_is_accepted_with_torchs_default(name):
    ours = inspect.signature(getattr(co, name).__init__).parameters
    theirs = inspect.signature(getattr(torch.optim, name).__init__).parameters
    for arg, p in theirs.items():
        assert arg in ours, arg
        assert ours[arg].kind == p.kind and ours[arg].default == p.default, arg
    positional = [a for a, p in theirs.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert [a for a, p in ours.items() if p.kind == p.POSITIONAL_OR_KEYWORD] == positional


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_capturable_and_differentiable_false_are_torchs_numbers(name):
    flags = (
        dict(differentiable=False)
        if name == "SGD"
        else dict(capturable=False, differentiable=False)
    )
    runs = []
    for cls in (getattr(torch.optim, name), getattr(co, name)):
        params = make_params()
        opt = cls(params, lr=0.01, **flags)
        for t in range(5):
            set_grads(params, t)
            opt.step()
        runs.append([p.detach() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


@pytest.mark.parametrize(
    ("name", "flag", "reason"),
    [
        ("SGD", "differentiable", "torch.no_grad"),
        ("Adam", "differentiable", "torch.no_grad"),
        ("AdamW", "differentiable", "torch.no_grad"),
        ("Adam", "capturable", "CUDA graph"),
        ("AdamW", "capturable", "CUDA graph"),
    ],
)
def test_capturable_and_differentiable_true_are_refused_with_the_reason(name, flag, reason):
    with pytest.raises(ValueError, match=rf"{flag}=True is not supported: .*{reason}"):
        getattr(co, name)(make_params(), lr=0.01, **{flag: True})
    with pytest.raises(TypeError, match=rf"{flag} must be True or False"):
        getattr(co, name)(make_params(), lr=0.01, **{flag: "yes"})


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_tensor_weight_decay_gives_torchs_numbers(foreach, nesterov, device):
    runs = []
    for cls in (torch.optim.SGD, co.SGD):
        params = [torch.nn.Parameter(p.detach().to(device)) for p in make_params()]
        wd = torch.tensor(0.125, dtype=torch.float64, device=device)
        opt = cls(params, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=wd,
                  foreach=foreach)  # fmt: skip
        for t in range(6):
            gen = torch.Generator().manual_seed(t)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(device)
            opt.step()
        runs.append([p.detach().cpu() for p in params])
    for a, b in zip(*runs, strict=True):
        if device.type == "cpu":  # read as a number on the CPU: torch's numbers exactly
            assert torch.equal(a, b)
        else:  # applied on the device, never read: the last bit may differ
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)


def test_sgd_fused_refuses_a_tensor_weight_decay():
    with pytest.raises(ValueError, match=r"fused=True is not available for SGD: .*number"):
        co.SGD(make_params(dtype=torch.float32), lr=0.1, weight_decay=torch.tensor(0.1), fused=True)


# -------------------------------------------------------------------- AMSGrad names
def test_the_kernel_and_the_class_share_the_book_s_variant_names():
    """The book's names, and the class's ``variant=X`` runs the kernel's ``amsgrad=X``.

    This checks the mapping between the two vocabularies only; each variant's arithmetic
    is checked against its definition in numpy in ``test_optim_variants.py``.
    """
    book = (Path(__file__).parents[1] / "book" / "sec63_adam.md").read_text()
    for variant in ('"paper"', '"torch"', '"corrected"'):
        assert variant in book
    assert set(AMSGRAD_VARIANTS) == {"paper", "torch", "corrected"}
    for variant in AMSGRAD_VARIANTS:
        a = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64))]
        opt = co.AMSGrad(a, lr=0.1, variant=variant, lr_decay="none", betas=(0.5, 0.9))
        w = torch.ones(3, dtype=torch.float64)
        m, v, vmax = (torch.zeros(3, dtype=torch.float64) for _ in range(3))
        t = torch.tensor(0.0)
        for k in range(5):
            g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) * (k + 1)
            a[0].grad = g.clone()
            opt.step()
            adam_reference([w], [g], [m], [v], [vmax], [t], lr=0.1, beta1=0.5, beta2=0.9,
                           eps=1e-8, amsgrad=variant)  # fmt: skip
        assert torch.equal(w, a[0].detach())


def test_the_kernel_refuses_a_bias_correction_that_contradicts_the_variant():
    w, g = torch.ones(1), torch.ones(1)
    m, v, vmax = (torch.zeros(1) for _ in range(3))
    with pytest.raises(ValueError, match=r"amsgrad='paper' fixes bias_correction=False"):
        adam_reference([w], [g], [m], [v], [vmax], [torch.tensor(0.0)], lr=0.1, beta1=0.9,
                       beta2=0.99, eps=1e-8, amsgrad="paper", bias_correction=True)  # fmt: skip


def test_no_warning_from_the_checks_in_normal_use():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params = make_params()
        for name in SETUPS:
            opt = make(name, params)
            set_grads(params, 0)
            opt.step()
            opt.load_state_dict(opt.state_dict())


@pytest.mark.parametrize("name", list(SETUPS))
def test_a_hyperparameter_edited_in_place_between_steps_is_checked(name):
    """The step re-checks what changed, a list's element included, before any change."""
    params = make_params()
    opt = make(name, params)
    set_grads(params, 0)
    opt.step()
    key, bad = ("momentum", -1.0) if name == "SGD" else ("betas", 1.5)
    if key == "betas":
        opt.param_groups[0]["betas"] = [0.9, 0.999]
        opt.step()
        opt.param_groups[0]["betas"][0] = bad  # in place
    else:
        opt.param_groups[0][key] = bad
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=key):
        opt.step()
    assert_same(snapshot(opt, params), before)
