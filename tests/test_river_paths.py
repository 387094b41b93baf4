"""River's two representations of its state: Python floats (CPU) and 0-d tensors (devices).

On the CPU River keeps float32/float64 state as Python floats rounded to the dtype; on an accelerator (and for
other dtypes) as 0-d tensors, updated with no host branch on data. The ``tensor_path``
fixture forces the second one on the CPU, so the update that an accelerator runs is
tested here without one, against the float64 reference of ``tests/test_river.py``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import companion._river_state as river_module
from companion.lr_scheduler import ScheduledLR
from companion.river import River

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the reference of test_river
from test_river import INITS, random_batches, reference, run  # noqa: E402


@pytest.fixture
def tensor_path(monkeypatch):
    """Rivers created (or loaded) inside keep their state as 0-d tensors, even on the CPU."""
    monkeypatch.setattr(river_module, "HOST_SCALARS", {})


def poisoned(batches):
    """The batches with a NaN batch, a batch of one and an infinite loss among them."""
    out = list(batches)
    out[3] = torch.tensor([1.0, math.nan], dtype=out[0].dtype)
    out[5] = torch.tensor([2.0], dtype=out[0].dtype)
    out[8] = torch.tensor([1.0, math.inf, 3.0], dtype=out[0].dtype)
    return out


def state_is_tensors(river):
    return all(isinstance(x, torch.Tensor) for x in (river._v, river._r, river._multiplier))


@pytest.mark.parametrize("eps_mode", ["relative", "absolute"])
@pytest.mark.parametrize("use_current_batch", [False, True])
@pytest.mark.parametrize("init", INITS)
def test_tensor_path_matches_reference(tensor_path, init, use_current_batch, eps_mode):
    kw = dict(beta_v=0.9, beta_r=0.97, eps=1e-3, eps_mode=eps_mode, clip=(0.05, 20.0),
              init=init, use_current_batch=use_current_batch)  # fmt: skip
    batches = poisoned(random_batches(40, seed=31, scale=2.0))
    river = River(dtype=torch.float64, **kw)
    got = run(river, batches)
    assert state_is_tensors(river)
    want, (v, r) = reference(batches, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert float(river.variance) == pytest.approx(v, rel=1e-12)
    assert float(river.target) == pytest.approx(r, rel=1e-12)
    assert int(river.num_accepted) == 37 and int(river.num_skipped) == 3


@pytest.mark.parametrize("use_current_batch", [False, True])
@pytest.mark.parametrize("init", INITS)
def test_float32_paths_agree(monkeypatch, init, use_current_batch):
    """float64 arithmetic rounded to float32, and float32 tensors: the same to the last bits."""
    kw = dict(init=init, use_current_batch=use_current_batch, beta_v=0.9, beta_r=0.99)
    batches = poisoned(random_batches(300, n=16, seed=32, dtype=torch.float32))
    host = River(**kw)
    m_host = run(host, batches)
    assert not state_is_tensors(host)
    monkeypatch.setattr(river_module, "HOST_SCALARS", {})
    device = River(**kw)
    m_device = run(device, batches)
    assert state_is_tensors(device)
    np.testing.assert_allclose(m_device, m_host, rtol=4e-7)
    for name in ("variance", "target"):
        a, b = getattr(host, name), getattr(device, name)
        assert a.dtype == b.dtype == torch.float32
        assert float(a) == pytest.approx(float(b), rel=4e-7)
    assert int(host.num_accepted) == int(device.num_accepted) == 297


@pytest.mark.parametrize("init", INITS)
def test_tensor_path_resumes_bit_for_bit(tensor_path, tmp_path, init):
    kw = dict(init=init, beta_v=0.9, beta_r=0.99)
    batches = poisoned(random_batches(40, seed=33, dtype=torch.float32))
    whole = River(**kw)
    m_whole = [whole.observe(b) for b in batches]
    first = River(**kw)
    for b in batches[:20]:
        first.observe(b)
    torch.save(first.state_dict(), tmp_path / "river.pt")
    resumed = River()
    resumed.load_state_dict(torch.load(tmp_path / "river.pt"))
    assert state_is_tensors(resumed)
    assert all(
        torch.equal(resumed.observe(b), m) for b, m in zip(batches[20:], m_whole[20:], strict=True)
    )
    a, b = whole.state_dict()["state"], resumed.state_dict()["state"]
    assert all(torch.equal(a[k], b[k]) for k in ("v", "r", "step", "multiplier", "weights"))


@pytest.mark.parametrize("init", INITS)
def test_state_dict_moves_between_the_representations(monkeypatch, init):
    """A CPU River's state dict loads into a River whose state is tensors, and back."""
    kw = dict(init=init, beta_v=0.9, beta_r=0.99)
    batches = poisoned(random_batches(40, seed=34, dtype=torch.float32))
    whole = River(**kw)
    want = run(whole, batches)
    host = River(**kw)
    run(host, batches[:20])
    saved = host.state_dict()
    monkeypatch.setattr(river_module, "HOST_SCALARS", {})
    device = River()
    device.load_state_dict(saved)
    assert state_is_tensors(device)
    assert torch.equal(device.multiplier, host.multiplier)
    np.testing.assert_allclose(run(device, batches[20:]), want[20:], rtol=4e-7)
    monkeypatch.undo()
    back = River()
    back.load_state_dict(device.state_dict())
    assert not state_is_tensors(back)
    a, b = device.state_dict()["state"], back.state_dict()["state"]
    assert all(torch.equal(a[k], b[k]) for k in ("v", "r", "step", "multiplier", "weights"))
    assert a["observed"] == b["observed"] == 40


def test_bfloat16_state_uses_tensors_on_the_cpu():
    river = River(dtype=torch.bfloat16, use_current_batch=True)
    m = river.observe(torch.tensor([0.0, 2.0]))
    assert state_is_tensors(river) and m.dtype == torch.bfloat16
    assert float(m) == 1.0 and river.multiplier_float() == 1.0  # read: it is on the CPU


@pytest.mark.parametrize("tensors", [False, True])
def test_multiplier_float_is_the_multiplier_on_the_cpu(monkeypatch, tensors):
    if tensors:
        monkeypatch.setattr(river_module, "HOST_SCALARS", {})
    river = River(clip=(2.0, 5.0))
    assert river.multiplier_float() == 2.0  # before any batch: the clipped neutral value
    river.observe(torch.rand(8))
    assert state_is_tensors(river) is tensors
    assert river.multiplier_float() == float(river.multiplier)


def test_multiplier_float_of_a_cpu_river_is_its_multiplier():
    river = River(beta_v=0.5, beta_r=0.9, use_current_batch=True)
    for b in random_batches(10, seed=35, dtype=torch.float32):
        m = river.observe(b)
        value = river.multiplier_float()
        assert type(value) is float and value == float(m) == float(river.multiplier)


class _Probe:
    """A multiplier with both ways to read it; counts which one is used."""

    def __init__(self, value, tensor):
        self.value, self.tensor, self.reads = value, tensor, []

    def multiplier_float(self):
        self.reads.append("float")
        return self.value

    @property
    def multiplier(self):
        self.reads.append("tensor")
        return self.tensor


def test_scheduled_lr_reads_multiplier_float_first():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    probe = _Probe(2.0, torch.tensor(3.0))
    sched = ScheduledLR(opt, lambda t: 0.1, multiplier=probe)
    probe.reads.clear()  # (the constructor checks that the attribute exists)
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2) and probe.reads == ["float"]
    probe.value = None  # not free to read: the tensor is used
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.3) and probe.reads[1:] == [
        "float",
        "tensor",
    ]
    probe.value = math.nan  # checked like any number
    with pytest.raises(ValueError, match="multiplier"):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.3)


def test_scheduled_lr_gives_the_same_rates_on_both_representations(monkeypatch):
    batches = random_batches(30, seed=36, dtype=torch.float32)

    def lrs():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        river = River(beta_v=0.8, beta_r=0.95)
        sched = ScheduledLR(opt, lambda t: 0.1 / (1 + t), multiplier=river)
        out = []
        for b in batches:
            river.observe(b)
            sched.step()
            out.append(opt.param_groups[0]["lr"])
        return out

    host = lrs()
    monkeypatch.setattr(river_module, "HOST_SCALARS", {})
    np.testing.assert_allclose(lrs(), host, rtol=4e-7)


def test_float64_values_beyond_float32_load_as_infinite():
    """A float64 variance (as reduced over ranks) too large for a float32 state: skipped."""
    from companion._river_state import HOST_SCALARS

    fit = HOST_SCALARS[torch.float32]
    assert fit(2.5e59) == math.inf and fit(-1e300) == -math.inf
    assert fit(0.1) == float(torch.tensor(0.1, dtype=torch.float32))
    river = River(use_current_batch=True)
    river.observe(torch.tensor([1.0, 2.0]))
    before = river.state_dict()["state"]
    river._update(river._k.load(torch.tensor(2.5e59, dtype=torch.float64)), None)
    after = river.state_dict()["state"]
    assert all(torch.equal(before[k], after[k]) for k in ("v", "r", "step", "weights"))


def _struct_round32(x: float) -> float:
    """The reference: float32 rounding by the C library (``struct``), inf beyond its range."""
    import struct

    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (
        a == b and math.copysign(1, a) == math.copysign(1, b)
    )


def test_float32_rounding_of_the_host_state_matches_the_c_library():
    """The host state's float32 rounding (Veltkamp's splitting in float32's normal range,
    ``struct`` elsewhere) equals ``struct``'s on every kind of double: random bit patterns
    (NaNs, infinities, subnormals, every exponent), the edges of the range, and ties, the
    doubles halfway between two float32 neighbours, which go to the even one."""
    from companion._river_state import HOST_SCALARS

    fit = HOST_SCALARS[torch.float32]
    rng = np.random.default_rng(0)
    doubles = rng.integers(0, 2**64, 200_000, dtype=np.uint64).view(np.float64).tolist()
    near = np.exp(rng.uniform(-95.0, 95.0, 100_000)) * rng.choice([-1.0, 1.0], 100_000)
    low, high = 2.0**-126, 2.0**127
    edges = [low, -low, high, -high, math.nextafter(low, 0), math.nextafter(high, 0)]
    edges += [3.4028234663852886e38, 3.4028235677973366e38, 1e-45, 0.0, -0.0]
    edges += [math.nan, math.inf, -math.inf, math.nextafter(high, math.inf)]
    for x in doubles + near.tolist() + edges:
        assert _same_float(fit(x), _struct_round32(x)), x
    # Ties: a float32 and its upper neighbour, their mean (exact in float64).
    lower = (rng.uniform(1.0, 2.0, 50_000) * 2.0 ** rng.integers(-125, 127, 50_000)).astype(
        np.float32
    )
    upper = np.nextafter(lower, np.float32(np.inf))
    for a, b in zip(lower.tolist(), upper.tolist(), strict=True):
        tie = (a + b) / 2
        assert fit(tie) == _struct_round32(tie) and fit(-tie) == -fit(tie), tie
        even = a if struct_bits(a) % 2 == 0 else b
        assert fit(tie) == even


def struct_bits(x: float) -> int:
    """The bits of float32 ``x`` as an integer (its last bit tells odd from even)."""
    import struct

    return struct.unpack("<I", struct.pack("<f", x))[0]


def test_host_clamp_is_torch_clamp():
    """The host state's clamp gives torch.clamp's value, NaN and infinities included."""
    from companion._river_state import _host_clamp

    values = [math.nan, -math.inf, -1.0, 0.0, 0.1, 0.5, 1.0, 9.99, 10.0, 10.5, math.inf]
    for lo, hi in ((0.1, 10.0), (1.0, 1.0), (0.5, 2.0)):
        for x in values:
            expected = float(torch.clamp(torch.tensor(x, dtype=torch.float64), lo, hi))
            assert _same_float(_host_clamp(x, lo, hi), expected), (x, lo, hi)
