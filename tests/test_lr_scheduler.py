"""companion.lr_scheduler.ScheduledLR: driving torch optimizers, multipliers, resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from companion.lr_scheduler import ScheduledLR
from companion.schedules import constant, cosine, linear_warmup, piecewise_constant, wsd

SCHED = cosine(0.1, total_steps=40, final_lr=0.001, warmup_steps=5)


class FakeRiver:
    """A stateful multiplier with the River's face: observe(losses), .multiplier, state."""

    def __init__(self, device="cpu"):
        self.ema = torch.zeros((), device=device)
        self.count = torch.zeros((), device=device, dtype=torch.int64)

    def observe(self, losses):
        self.ema.mul_(0.8).add_(0.2 * losses.var())
        self.count.add_(1)

    @property
    def multiplier(self):
        return 1.0 / (1.0 + self.ema) + 0.01 * self.count

    def state_dict(self):
        return {"ema": self.ema.clone(), "count": self.count.clone()}

    def load_state_dict(self, state):
        self.ema.copy_(state["ema"])
        self.count.copy_(state["count"])


class FloatMultiplier:
    """A multiplier that is a plain float and has no state."""

    def __init__(self):
        self.multiplier = 1.0


def lr_of(group):
    lr = group["lr"]
    return float(lr) if isinstance(lr, torch.Tensor) else lr


@contextmanager
def no_host_sync(device):
    """Fail on any device-to-host read (and, on CUDA, on any synchronisation).

    On the CPU a read is no synchronisation, and ScheduledLR reads a CPU multiplier to
    check it (free): the guard is for accelerators only.
    """
    if device.type == "cpu":
        yield
        return
    names = ("item", "__float__", "__int__", "__bool__", "tolist", "numpy")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync inside scheduler.step()")

    for n in names:
        setattr(torch.Tensor, n, forbidden)
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")


# ----------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    "s",
    [SCHED, piecewise_constant([10, 20], [0.1, 0.02, 0.004]), wsd(0.1, 40, 4, 10, "1-sqrt")],
    ids=repr,
)
def test_sets_schedule_at_every_step(s):
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = ScheduledLR(opt, s)
    seen = []
    for _ in range(45):
        seen.append(opt.param_groups[0]["lr"])
        assert sched.get_last_lr() == [seen[-1]]
        p.grad = torch.ones(3)
        opt.step()
        sched.step()
    assert seen == [s(t) for t in range(45)]  # exactly, step 0 included
    assert sched.last_epoch == 45


def test_param_groups_keep_their_ratio():
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    opt = torch.optim.SGD(
        [{"params": [a]}, {"params": [b], "lr": 0.05}, {"params": [c], "lr": 0.3}], lr=0.1
    )
    sched = ScheduledLR(opt, SCHED)
    for t in range(42):
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs == [SCHED(t) * 1.0, SCHED(t) * 0.5, SCHED(t) * (0.3 / 0.1)]
        assert sched.get_last_lr() == lrs
        opt.step()
        sched.step()
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.05, 0.3]


def test_the_optimizer_uses_the_scheduled_lr():
    # plain SGD: w_{t+1} = w_t - s(t) g
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = ScheduledLR(opt, linear_warmup(0.5, 4))
    w = 0.0
    for t in range(8):
        p.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        sched.step()
        w -= linear_warmup(0.5, 4)(t)
        assert p.item() == pytest.approx(w, abs=1e-15)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.Adam(ps, lr=1e-3),
        lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.1),
        lambda ps: torch.optim.RMSprop(ps, lr=1e-3),
        lambda ps: torch.optim.Adagrad(ps, lr=1e-3),
    ],
    ids=["Adam", "AdamW", "RMSprop", "Adagrad"],
)
def test_drives_torch_optimizers_like_lambda_lr(make):
    """Same trajectory as torch's LambdaLR with factor s(t) / base lr."""
    s = cosine(1e-3, 30, warmup_steps=3)

    def train(sched_factory):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(5))
        opt = make([p])
        sched = sched_factory(opt)
        for _ in range(30):
            p.grad = torch.sin(p.detach() * 3)
            opt.step()
            sched.step()
        return p.detach()

    ours = train(lambda o: ScheduledLR(o, s))
    theirs = train(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: s(t) / 1e-3))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_drives_companion_optimizers():
    import companion.optim as optim

    p = torch.nn.Parameter(torch.ones(4))
    opt = optim.AdamW([p], lr=0.01)
    sched = ScheduledLR(opt, cosine(0.01, 10))
    for t in range(12):
        assert opt.param_groups[0]["lr"] == cosine(0.01, 10)(t)
        p.grad = torch.ones(4)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["initial_lr"] == 0.01


def test_step_epoch_jumps_in_closed_form():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = ScheduledLR(opt, SCHED)
    sched.step(33)
    assert opt.param_groups[0]["lr"] == SCHED(33) and sched.last_epoch == 33
    sched.step()
    assert opt.param_groups[0]["lr"] == SCHED(34)
    with pytest.raises(ValueError, match=r"epoch must be an integer in \[0, 9007199254740992\]"):
        sched.step(-1)


def test_no_warnings_in_normal_use(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([p], lr=0.1)
        sched = ScheduledLR(opt, SCHED, FakeRiver())
        assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
        sched.step()  # before any optimizer.step(): the closed form skips nothing
        for _ in range(3):
            p.grad = torch.ones(2)
            opt.step()
            sched.multiplier.observe(torch.randn(8))
            sched.step()
        sched.get_last_lr()
        sched.get_lr()
        torch.save(sched.state_dict(), tmp_path / "s.pt")
        sched.load_state_dict(torch.load(tmp_path / "s.pt"))
        repr(sched)


# ----------------------------------------------------------------------------- multiplier


def test_float_multiplier_multiplies_after_construction():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.025}], lr=0.1)
    mult = FloatMultiplier()
    mult.multiplier = 3.0
    sched = ScheduledLR(opt, SCHED, mult)
    assert [g["lr"] for g in opt.param_groups] == [SCHED(0), SCHED(0) * 0.25]  # s(0) x ratio
    for k in range(1, 20):
        mult.multiplier = 0.5 + 0.1 * k
        opt.step()
        sched.step()
        m = mult.multiplier
        assert [g["lr"] for g in opt.param_groups] == [SCHED(k) * 1.0 * m, SCHED(k) * 0.25 * m]


def test_tensor_multiplier_with_float_lr_writes_floats():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    river = FakeRiver()
    sched = ScheduledLR(opt, SCHED, river)
    river.observe(torch.tensor([1.0, 2.0, 4.0]))
    sched.step()
    lr = opt.param_groups[0]["lr"]
    assert type(lr) is float
    assert lr == pytest.approx(SCHED(1) * float(river.multiplier), rel=1e-6)


def test_tensor_lr_and_multiplier_without_host_sync(device):
    a = torch.nn.Parameter(torch.zeros(3, device=device))
    b = torch.nn.Parameter(torch.zeros(3, device=device))
    lr = torch.tensor(0.1, device=device)
    opt = torch.optim.SGD(
        [{"params": [a]}, {"params": [b], "lr": torch.tensor(0.05, device=device)}], lr=lr
    )
    river = FakeRiver(device)
    sched = ScheduledLR(opt, SCHED, river)
    tensors = [g["lr"] for g in opt.param_groups]
    assert [float(x) for x in tensors] == pytest.approx([SCHED(0), SCHED(0) / 2], rel=1e-6)
    gen = torch.Generator(device="cpu").manual_seed(0)
    moved = 0.0  # what a should have moved by: minus the sum of the lrs it was stepped with
    for k in range(1, 25):
        losses = torch.rand(16, generator=gen).to(device) * k
        a.grad = torch.ones(3, device=device)
        b.grad = torch.ones(3, device=device)
        moved -= float(opt.param_groups[0]["lr"])
        opt.step()
        river.observe(losses)
        with no_host_sync(device):
            sched.step()
            last = sched.get_last_lr()
        m = float(river.multiplier)
        assert all(g["lr"] is t for g, t in zip(opt.param_groups, tensors, strict=True))
        got = [float(g["lr"]) for g in opt.param_groups]
        assert got == pytest.approx([SCHED(k) * m, SCHED(k) * 0.5 * m], rel=1e-6)
        assert all(
            isinstance(x, torch.Tensor) and x is not t for x, t in zip(last, tensors, strict=True)
        )
    assert a.detach().cpu().tolist() == pytest.approx([moved] * 3, rel=1e-5)


def test_tensor_lr_with_adam(device):
    kw = {"capturable": True} if device.type == "cuda" else {"foreach": False}
    p = torch.nn.Parameter(torch.ones(4, device=device))
    opt = torch.optim.Adam([p], lr=torch.tensor(0.01, device=device), **kw)
    river = FakeRiver(device)
    sched = ScheduledLR(opt, cosine(0.01, 20), river)
    for k in range(1, 21):
        p.grad = torch.ones(4, device=device)
        opt.step()
        river.observe(torch.arange(4.0, device=device) * k)
        sched.step()
        want = cosine(0.01, 20)(k) * float(river.multiplier)
        assert float(opt.param_groups[0]["lr"]) == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert torch.isfinite(p).all()


def test_with_the_river(tmp_path):
    import companion.river as river_mod

    def make():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=torch.tensor(0.1))
        river = river_mod.River()
        return opt, river, ScheduledLR(opt, SCHED, river)

    def steps(opt, river, sched, ks):
        out = []
        for k in ks:
            opt.step()
            gen = torch.Generator().manual_seed(k)
            river.observe(torch.rand(32, generator=gen) * (1 + k))
            sched.step()
            want = SCHED(k) * float(river.multiplier)
            out.append(float(opt.param_groups[0]["lr"]))
            assert out[-1] == pytest.approx(want, rel=1e-6)
        return out

    full = steps(*make(), range(1, 25))
    opt, river, sched = make()
    steps(opt, river, sched, range(1, 11))
    torch.save(sched.state_dict(), tmp_path / "s.pt")  # holds the River's state
    opt, river, sched = make()
    sched.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert steps(opt, river, sched, range(11, 25)) == full[10:]


# ----------------------------------------------------------------------------- resume


def build(device="cpu"):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1).to(device)
    opt = torch.optim.SGD(
        [{"params": [model.weight]}, {"params": [model.bias], "lr": 0.05}], lr=0.1, momentum=0.9
    )
    river = FakeRiver(device)
    return model, opt, river, ScheduledLR(opt, SCHED, river)


def train(model, opt, river, sched, steps, start):
    """Run steps start..start+steps-1 on data that depends only on the step index."""
    lrs = []
    for t in range(start, start + steps):
        lrs.append([lr_of(g) for g in opt.param_groups])
        gen = torch.Generator().manual_seed(t)
        x, y = torch.randn(8, 4, generator=gen), torch.randn(8, 1, generator=gen)
        x, y = x.to(model.weight.device), y.to(model.weight.device)
        losses = ((model(x) - y) ** 2).squeeze(1)
        opt.zero_grad()
        losses.mean().backward()
        opt.step()
        river.observe(losses.detach())
        sched.step()
    return lrs


def checkpoint(model, opt, sched):
    return {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}


def test_state_dict_is_step_count_and_multiplier_state(tmp_path):
    model, opt, river, sched = build()
    train(model, opt, river, sched, 7, 0)
    state = sched.state_dict()
    assert state["last_epoch"] == 7
    assert set(state["multiplier"]) == {"ema", "count"} and int(state["multiplier"]["count"]) == 7
    assert not any(callable(v) for v in state.values())
    torch.save(state, tmp_path / "sched.pt")
    loaded = torch.load(tmp_path / "sched.pt", weights_only=True)
    assert loaded["last_epoch"] == 7


@pytest.mark.parametrize("sched_first", [True, False])
def test_resume_continues_exactly(sched_first):
    model, opt, river, sched = build()
    full = train(model, opt, river, sched, 30, 0)
    final = model.weight.detach().clone()

    model, opt, river, sched = build()
    first = train(model, opt, river, sched, 12, 0)
    ckpt = checkpoint(model, opt, sched)
    model, opt, river, sched = build()  # fresh objects, lr back at s(0)
    model.load_state_dict(ckpt["model"])
    if sched_first:
        sched.load_state_dict(ckpt["sched"])  # restores the river too
        opt.load_state_dict(ckpt["opt"])
    else:
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
    rest = train(model, opt, river, sched, 18, 12)
    assert first + rest == full
    assert torch.equal(model.weight.detach(), final)


def test_resume_without_optimizer_state_still_sets_the_lr():
    model, opt, river, sched = build()
    train(model, opt, river, sched, 9, 0)
    want = [g["lr"] for g in opt.param_groups]
    state = sched.state_dict()
    _, opt2, _, sched2 = build()
    sched2.load_state_dict(state)
    assert [g["lr"] for g in opt2.param_groups] == want
    assert sched2.last_epoch == 9


def test_resume_after_process_restart(tmp_path):
    model, opt, river, sched = build()
    full = train(model, opt, river, sched, 30, 0)
    model, opt, river, sched = build()
    train(model, opt, river, sched, 12, 0)
    torch.save(checkpoint(model, opt, sched), tmp_path / "ckpt.pt")
    script = f"""
import json, sys, torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_lr_scheduler as T
model, opt, river, sched = T.build()
ckpt = torch.load({str(tmp_path / "ckpt.pt")!r})  # weights_only: plain values and tensors
model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["opt"])
sched.load_state_dict(ckpt["sched"])
print(json.dumps(T.train(model, opt, river, sched, 18, 12)))
"""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == full[12:]


def test_load_state_dict_checks_before_changing_anything():
    model, opt, river, sched = build()
    train(model, opt, river, sched, 5, 0)
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    plain = ScheduledLR(opt2, SCHED)
    with pytest.raises(ValueError, match="multiplier"):
        plain.load_state_dict(state)
    with pytest.raises(ValueError, match="missing"):
        plain.load_state_dict({"last_epoch": 3})
    assert plain.last_epoch == 0 and opt2.param_groups[0]["lr"] == SCHED(0)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"optimizer": "sgd"}, TypeError, "optimizer must be a torch Optimizer, got str"),
        ({"schedule": 0.1}, TypeError, "schedule must be callable"),
        ({"multiplier": object()}, TypeError, "multiplier must have a 'multiplier' attribute"),
        ({"base_lr": 0.0}, ValueError, r'optimizer.defaults\["lr"\] must be .* > 0, got 0.0'),
        ({"schedule": lambda t: "x"}, TypeError, r"schedule's value at step t=0 must be"),
        ({"schedule": lambda t: math.nan}, ValueError, r"value at step t=0 .* >= 0, got nan"),
        ({"schedule": lambda t: -0.1}, ValueError, r"value at step t=0 .* >= 0, got -0.1"),
    ],
)
def test_bad_input_leaves_the_optimizer_untouched(kwargs, error, match):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=kwargs.pop("base_lr", 0.1))
    step_fn = opt.step
    args = {"optimizer": opt, "schedule": SCHED, **kwargs}
    with pytest.raises(error, match=match):
        ScheduledLR(**args)
    assert "initial_lr" not in opt.param_groups[0]
    assert opt.step == step_fn and not hasattr(opt.step, "_wrapped_by_lr_sched")


def test_constant_schedule_with_float_groups_is_identity():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = ScheduledLR(opt, constant(0.1))
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.1 and math.isfinite(sched.get_last_lr()[0])
    assert repr(sched).startswith("ScheduledLR(constant(lr=0.1), step=5")
    assert np.isclose(sched.get_lr()[0], 0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_float_lr_of_a_companion_optimizer_becomes_a_device_tensor_without_sync():
    from companion.optim import AdamW
    from companion.river import River

    device = torch.device("cuda")
    p = torch.nn.Parameter(torch.zeros(4, device=device))
    opt = AdamW([p], lr=0.1)
    river = River()
    sched = ScheduledLR(opt, SCHED, multiplier=river)
    gen = torch.Generator(device="cpu").manual_seed(0)
    expected = []
    for t in range(20):
        losses = torch.rand(16, generator=gen).to(device) * (1 + t)
        p.grad = torch.ones_like(p)
        opt.step()
        river.observe(losses)
        with no_host_sync(device):
            sched.step()
        lr = opt.param_groups[0]["lr"]
        assert isinstance(lr, torch.Tensor) and lr.device.type == "cuda"
        expected.append(SCHED(t + 1) * river.multiplier.item())
        assert lr.item() == pytest.approx(expected[-1], rel=1e-6)


def test_float_lr_stays_a_float_with_a_cpu_multiplier():
    from companion.optim import AdamW
    from companion.river import River

    p = torch.nn.Parameter(torch.zeros(4))
    opt = AdamW([p], lr=0.1)
    river = River()
    sched = ScheduledLR(opt, SCHED, multiplier=river)
    for t in range(5):
        p.grad = torch.ones_like(p)
        opt.step()
        river.observe(torch.arange(8.0) * (t + 1))
        sched.step()
        assert isinstance(opt.param_groups[0]["lr"], float)
        assert opt.param_groups[0]["lr"] == SCHED(t + 1) * float(river.multiplier)
