"""The torch optimizer face of companion.optim: checks, state_dict, resume, GradScaler, tensor lr."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import companion.optim as co
from companion.optim._base import Kernels

SETUPS = {
    "SGD": dict(lr=0.1, momentum=0.9),
    "Adam": dict(lr=0.01, weight_decay=0.1, amsgrad=True),
    "AdamW": dict(lr=0.01, decay="paper"),
    "AMSGrad": dict(lr=0.01, variant="corrected"),
}
ALL = {
    name: (lambda params, _name=name, **kw: getattr(co, _name)(params, **{**SETUPS[_name], **kw}))
    for name in SETUPS
}


def make_params(dtype=torch.float64, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(3, 2), (4,), ()]
    return [
        torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype).to(device)) for s in shapes
    ]


def set_grads(params, t):
    gen = torch.Generator().manual_seed(1000 + t)
    for p in params:
        p.grad = p.detach() + torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: co.Adam(p, lr=-1e-3), r"lr must be a finite real number >= 0, got -0.001"),
        (lambda p: co.AdamW(p, lr=float("nan")), r"lr must be a finite real number >= 0, got nan"),
        (lambda p: co.SGD(p, lr=float("inf")), r"lr must be a finite real number >= 0, got inf"),
        (lambda p: co.Adam(p, lr=torch.tensor(-0.1)), r"lr must be a finite real number >= 0"),
        (lambda p: co.Adam(p, betas=(1.0, 0.999)), r"betas\[0\] must be .* in \[0, 1\), got 1.0"),
        (lambda p: co.AdamW(p, betas=(0.9, -0.1)), r"betas\[1\] must be .* in \[0, 1\)"),
        (lambda p: co.AMSGrad(p, betas=(0.9, 1.5)), r"betas\[1\] must be .* in \[0, 1\)"),
        (lambda p: co.Adam(p, eps=-1e-8), r"eps must be a finite real number >= 0"),
        (lambda p: co.AdamW(p, weight_decay=-0.01), r"weight_decay must be a finite real number"),
        (lambda p: co.SGD(p, lr=0.1, weight_decay=-1), r"weight_decay must be .* >= 0, got -1"),
        (lambda p: co.SGD(p, lr=0.1, momentum=-0.5), r"momentum must be .* >= 0, got -0.5"),
        (lambda p: co.SGD(p, lr=0.1, dampening=1.5), r"dampening must be .* in \[0, 1\], got 1.5"),
        (lambda p: co.SGD(p, lr=0.1, nesterov=True), r"nesterov=True needs momentum > 0"),
        (
            lambda p: co.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
            r"nesterov=True needs momentum > 0 and dampening = 0",
        ),
        (lambda p: co.AdamW(p, decay="loshchilov"), r"decay must be one of 'torch', 'paper'"),
        (lambda p: co.AMSGrad(p, variant="optax"), r"variant must be one of"),
        (lambda p: co.AMSGrad(p, lr_decay="cosine"), r"lr_decay must be one of 'sqrt', 'none'"),
        (lambda p: co.Adam(p, foreach=True, fused=True), r"foreach=True and fused=True"),
        (lambda p: co.SGD(p, lr=0.1, weight_decay=torch.tensor(-0.1)), r"weight_decay must"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make([torch.nn.Parameter(torch.ones(2))])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: co.Adam(p, lr=torch.ones(2)), r"lr must be .* or a one-element real tensor"),
        (lambda p: co.Adam(p, lr="0.1"), r"lr must be a finite real number >= 0, got '0.1'"),
        (lambda p: co.AdamW(p, lr=True), r"lr must be a finite real number >= 0, got True"),
        (lambda p: co.AdamW(p, betas=0.9), r"betas must be a pair of real numbers, got 0.9"),
        (lambda p: co.AdamW(p, betas=("x", 0.9)), r"betas\[0\] must be .*, got 'x'"),
        (lambda p: co.Adam(p, betas=(0.9, None)), r"betas\[1\] must be .*, got None"),
        (lambda p: co.Adam(p, eps="1e-8"), r"eps must be a finite real number >= 0"),
        (lambda p: co.SGD(p, lr=0.1, dampening=None), r"dampening must be .*, got None"),
        (lambda p: co.SGD(p, lr=0.1, momentum="0.9"), r"momentum must be .*, got '0.9'"),
        (lambda p: co.SGD(p, lr=0.1, nesterov=1), r"nesterov must be True or False, got 1"),
        (lambda p: co.Adam(p, amsgrad="yes"), r"amsgrad must be True or False, got 'yes'"),
        (lambda p: co.Adam(p, maximize=None), r"maximize must be True or False, got None"),
        (lambda p: co.AdamW(p, foreach="no"), r"foreach must be one of None, False, True"),
        (lambda p: co.AdamW(p, decay=1), r"decay must be one of 'torch', 'paper', got 1"),
    ],
)
def test_wrong_types_raise_type_error_naming_the_argument(make, match):
    with pytest.raises(TypeError, match=match):
        make([torch.nn.Parameter(torch.ones(2))])


@pytest.mark.parametrize("name", list(ALL))
def test_numpy_scalars_are_numbers(name):
    """As torch accepts them: lr, betas, eps, momentum as numpy scalars give the float run."""
    numpy_kw = {
        "SGD": dict(lr=np.float32(0.125), momentum=np.float64(0.5), dampening=np.float32(0)),
        "Adam": dict(lr=np.float32(0.125), betas=(np.float32(0.5), np.float64(0.75))),
        "AdamW": dict(lr=np.float32(0.125), eps=np.float32(2**-20), weight_decay=np.int64(0)),
        "AMSGrad": dict(lr=np.float64(0.125), betas=np.array([0.5, 0.75], dtype=np.float32)),
    }[name]
    plain_kw = {k: tuple(map(float, v)) if np.ndim(v) else float(v) for k, v in numpy_kw.items()}
    runs = []
    for kw in (numpy_kw, plain_kw):
        params = make_params()
        opt = ALL[name](params, **kw)
        for t in range(5):
            set_grads(params, t)
            opt.step()
        runs.append([p.detach() for p in params])
        assert not any(isinstance(v, np.generic) for v in opt.param_groups[0].values())
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def test_bad_param_group_is_rejected_and_not_added():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = co.AdamW([p])
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        opt.add_param_group({"params": [q], "betas": (1.2, 0.9)})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [q], "lr": 0.5})
    group = opt.param_groups[1]
    assert group["betas"] == (0.9, 0.999) and group["decay"] == "torch"
    assert group["decay_base_lr"] == 0.5


@pytest.mark.parametrize("name", list(ALL))
def test_failed_step_leaves_every_parameter_untouched(name):
    """A bad value written into the second group after construction: nothing changes."""
    params = make_params()
    opt = ALL[name]([{"params": params[:2]}, {"params": params[2:]}])
    set_grads(params, 0)
    opt.step()
    before = [p.detach().clone() for p in params]
    state_before = copy.deepcopy(opt.state_dict())
    opt.param_groups[1]["lr"] = -0.5
    set_grads(params, 1)
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, params, strict=True))
    _assert_state_equal(opt.state_dict(), state_before, groups=False)


@pytest.mark.parametrize("name", list(ALL))
def test_sparse_gradient_is_refused_by_name_before_anything_changes(name):
    dense = torch.nn.Parameter(torch.ones(3))
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = ALL[name]([{"params": [dense]}, {"params": emb.parameters()}])
    dense.grad = torch.ones(3)
    emb(torch.tensor([1, 3])).sum().backward()
    assert emb.weight.grad.is_sparse
    w0 = emb.weight.detach().clone()
    with pytest.raises(RuntimeError, match=rf"companion\.optim\.{name} does not support sparse"):
        opt.step()
    assert torch.equal(dense.detach(), torch.ones(3)) and torch.equal(emb.weight.detach(), w0)
    assert len(opt.state) == 0


# ----------------------------------------------------------------- state_dict and resume
def _assert_state_equal(a, b, groups=True):
    assert not groups or a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        sa, sb = a["state"][k], b["state"][k]
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(ALL))
def test_resume_from_a_state_dict_is_bit_for_bit(name, foreach, device):
    params = make_params(device=device)
    opt = ALL[name](params, foreach=foreach)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    for t in range(6):
        set_grads(params, t)
        opt.step()
        sched.step()
    saved = copy.deepcopy(
        {
            "params": [p.detach() for p in params],
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
        }
    )
    for t in range(6, 15):
        set_grads(params, t)
        opt.step()
        sched.step()

    fresh = [torch.nn.Parameter(p.clone()) for p in saved["params"]]
    opt2 = ALL[name](fresh, foreach=foreach, lr=123.0)  # the saved hyperparameters win
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=4, gamma=0.5)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    for t in range(6, 15):
        set_grads(fresh, t)
        opt2.step()
        sched2.step()
    for a, b in zip(params, fresh, strict=True):
        assert torch.equal(a.detach(), b.detach())


def test_state_keys_match_torch():
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    ours, theirs = co.Adam([p], amsgrad=True), torch.optim.Adam([q], amsgrad=True)
    for param, opt in ((p, ours), (q, theirs)):
        param.grad = torch.ones(3)
        opt.step()
    s_ours, s_theirs = ours.state_dict()["state"][0], theirs.state_dict()["state"][0]
    assert s_ours.keys() == s_theirs.keys() == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert s_ours["step"].dtype == s_theirs["step"].dtype and s_ours["step"].device.type == "cpu"
    for key in s_ours:
        assert torch.equal(s_ours[key], s_theirs[key])


PAIRS = [
    (
        lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True),
        lambda p: co.Adam(p, lr=0.01, amsgrad=True),
    ),
    (lambda p: torch.optim.AdamW(p, lr=0.01), lambda p: co.AdamW(p, lr=0.01)),
    (
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda p: co.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    ),
    (lambda p: torch.optim.AdamW(p, lr=0.01, fused=True), lambda p: co.AdamW(p, lr=0.01)),
]


@pytest.mark.parametrize("direction", ["torch->companion", "companion->torch"])
@pytest.mark.parametrize("pair", range(len(PAIRS)), ids=["adam", "adamw", "sgd", "fused->plain"])
def test_state_dict_moves_between_torch_and_companion(pair, direction):
    make_a, make_b = PAIRS[pair]
    if direction == "companion->torch":
        make_a, make_b = make_b, make_a
    dtype = torch.float32 if pair == 3 else torch.float64
    params = make_params(dtype=dtype)
    opt = make_a(params)
    for t in range(5):
        set_grads(params, t)
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    fresh = [torch.nn.Parameter(p.detach().clone()) for p in params]
    other = make_b(fresh)
    other.load_state_dict(saved)
    for t in range(5, 12):
        set_grads(params, t)
        set_grads(fresh, t)
        opt.step()
        other.step()
    tol = 1e-6 if pair == 3 else 0.0  # fused vs unfused kernels round differently
    for a, b in zip(params, fresh, strict=True):
        torch.testing.assert_close(b.detach(), a.detach(), rtol=tol, atol=tol)


def test_loading_a_fused_state_into_an_unfused_optimizer_keeps_steps_on_the_cpu():
    params = make_params(dtype=torch.float32)
    opt = co.AdamW(params, fused=True)
    set_grads(params, 0)
    opt.step()
    other = co.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params], fused=False)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["fused"] is True  # the saved options win, as in torch
    other.param_groups[0]["fused"] = False
    other.load_state_dict(other.state_dict())
    assert all(s["step"].device.type == "cpu" for s in other.state.values())


# ---------------------------------------------------------------------------- the API
def test_step_runs_the_closure_with_gradients_enabled():
    w = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
    opt = co.AdamW([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    torch.testing.assert_close(
        w.detach(), torch.tensor([2.0 * (1 - 1e-3) - 0.1, -(1 - 1e-3) + 0.1])
    )
    opt.zero_grad()
    assert w.grad is None


def test_parameters_without_gradients_are_skipped():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = co.Adam([p, q], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.equal(q.detach(), torch.ones(2)) and q not in opt.state
    assert torch.allclose(p.detach(), torch.full((2,), 0.9)) and p in opt.state  # Adam: -lr


@pytest.mark.parametrize("name", list(ALL))
def test_one_choice_of_path_for_every_family(name, monkeypatch):
    """fused / multi-tensor / reference: the same rule for SGD and the Adam family."""
    cls = getattr(co, name)
    calls = []
    real = cls.kernels

    def spy(label, fn):
        return lambda *a, **k: calls.append(label) or fn(*a, **k)

    monkeypatch.setattr(
        cls,
        "kernels",
        Kernels(spy("ref", real.reference), spy("mt", real.multi_tensor), spy("fused", real.fused)),
    )
    fused_ok = name != "AMSGrad"  # AMSGrad's default variant has no fused kernel
    flags = [dict(foreach=None), dict(foreach=True), dict(foreach=False)]
    flags += [dict(fused=True)] if fused_ok else []
    for kw in flags:
        p = torch.nn.Parameter(torch.ones(2))
        p.grad = torch.ones(2)
        ALL[name]([p], **kw).step()
    # CPU tensors: torch's default is the for-loop
    assert calls == ["ref", "mt", "ref"] + (["fused"] if fused_ok else [])


def test_step_hooks_and_zero_grad_come_from_torch():
    p = torch.nn.Parameter(torch.ones(2))
    opt = co.SGD([p], lr=0.5)
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append("post"))
    p.grad = torch.ones(2)
    opt.step()
    assert seen == ["pre", "post"] and torch.equal(p.detach(), torch.full((2,), 0.5))
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(2))


def test_works_with_torch_schedulers_and_records_initial_lr_once():
    p = torch.nn.Parameter(torch.ones(2))
    opt = co.AdamW([p], lr=0.1, decay="paper")
    assert "initial_lr" not in opt.param_groups[0]  # we do not write torch's key
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    assert opt.param_groups[0]["initial_lr"] == 0.1
    for _ in range(3):
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 3 / 10)))


# -------------------------------------------------------------------------- tensor lr
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(ALL))
def test_tensor_lr_gives_the_float_lr_numbers(name, foreach, device):
    lr = 2.0**-7
    runs = []
    for value in (lr, torch.tensor(lr, dtype=torch.float64, device=device)):
        params = make_params(device=device)
        opt = ALL[name](params, foreach=foreach, lr=value)
        for t in range(20):
            set_grads(params, t)
            opt.step()
        runs.append([p.detach() for p in params])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "make",
    [
        lambda p, lr: co.Adam(p, lr=lr, weight_decay=0.1, fused=True),
        lambda p, lr: co.AdamW(p, lr=lr, amsgrad=True, fused=True),
        lambda p, lr: co.SGD(p, lr=lr, momentum=0.9, nesterov=True, fused=True),
    ],
    ids=["adam", "adamw", "sgd"],
)
def test_tensor_lr_on_the_fused_path(make, device):
    lr = 2.0**-7
    runs = []
    for value in (lr, torch.tensor(lr, device=device)):
        params = make_params(dtype=torch.float32, device=device)
        opt = make(params, value)
        for t in range(10):
            set_grads(params, t)
            opt.step()
        runs.append([p.detach() for p in params])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(ALL))
def test_tensor_lr_written_in_place_takes_effect(name):
    lr = torch.tensor(0.01)
    params = make_params(dtype=torch.float32)
    opt = ALL[name](params, lr=lr)
    start = [p.detach().clone() for p in params]
    set_grads(params, 0)
    opt.step()
    assert all(not torch.equal(a, b.detach()) for a, b in zip(start, params, strict=True))
    lr.fill_(0.0)  # what a scheduler writing a tensor lr does
    before = [p.detach().clone() for p in params]
    set_grads(params, 1)
    opt.step()
    # (for AdamW, decay="paper": η_t = lr/α = 0 stops the decay too)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, params, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(ALL))
def test_no_host_sync_in_step_on_cuda(name, foreach):
    params = make_params(dtype=torch.float32, device="cuda")
    lr = torch.tensor(0.01, device="cuda")
    opt = ALL[name](params, foreach=foreach, lr=lr)
    set_grads(params, 0)
    opt.step()  # lazy state init may allocate
    set_grads(params, 1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --------------------------------------------------------------------------- GradScaler
def _scaler_run(make, scaler_scale, steps=6, inf_at=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = make(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=scaler_scale, enabled=scaler_scale is not None)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=gen), torch.randn(32, 1, generator=gen)
    skipped = []
    for t in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        scaler.scale(loss).backward()
        if t == inf_at:
            next(model.parameters()).grad[0, 0] = float("inf")
            snapshot = [p.detach().clone() for p in model.parameters()]
            state_before = copy.deepcopy(opt.state_dict())
        scaler.step(opt)
        scale_before = scaler.get_scale()
        scaler.update()
        if t == inf_at:
            skipped.append(
                all(
                    torch.equal(a, b.detach())
                    for a, b in zip(snapshot, model.parameters(), strict=True)
                )
            )
            try:  # the optimizer state (steps, moments, momentum buffers) did not change
                _assert_state_equal(opt.state_dict(), state_before)
                skipped.append(True)
            except AssertionError:
                skipped.append(False)
            skipped.append(scaler.get_scale() == scale_before / 2)
    return [p.detach().clone() for p in model.parameters()], skipped


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: co.AdamW(ps, lr=0.01),
        lambda ps: co.AdamW(ps, lr=0.01, fused=True),
        lambda ps: co.Adam(ps, lr=0.01, foreach=True),
        lambda ps: co.SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: co.SGD(ps, lr=0.1, momentum=0.9, fused=True),
        lambda ps: co.AMSGrad(ps, lr=0.01),
    ],
    ids=["adamw", "adamw-fused", "adam-foreach", "sgd", "sgd-fused", "amsgrad"],
)
def test_grad_scaler_unscales_and_skips_inf_steps(make):
    plain, _ = _scaler_run(make, None)
    scaled, _ = _scaler_run(make, 2.0**12)  # a power of two: unscaling is exact
    assert all(torch.equal(a, b) for a, b in zip(plain, scaled, strict=True))
    _, skipped = _scaler_run(make, 2.0**12, inf_at=3)
    assert skipped == [True, True, True]


def test_grad_scaler_same_numbers_as_torch():
    ours, _ = _scaler_run(lambda ps: co.AdamW(ps, lr=0.01, fused=True), 2.0**12, inf_at=2)
    theirs, _ = _scaler_run(
        lambda ps: torch.optim.AdamW(ps, lr=0.01, fused=True), 2.0**12, inf_at=2
    )
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
