"""Tests of companion.river.River against an independent float64 reference written here."""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from companion.river import River

INITS = ("first", "zero", "zero-debiased")


# --------------------------------------------------------------------------- reference
def exact_variance(x):
    """Population variance of the float values ``x``, in exact rational arithmetic.

    (A float two-pass formula is not exact: for ``[0.003] * 3`` its mean rounds and it
    gives 1.9e-37 instead of 0, which flips the multiplier's ``target == 0`` case.)
    """
    values = [Fraction(float(v)) for v in x]
    mean = sum(values) / len(values)
    return float(sum((v - mean) ** 2 for v in values) / len(values))


def reference(batches, beta_v=0.99, beta_r=0.999, eps=1e-8, eps_mode="relative",
              clip=(0.1, 10.0), init="first", use_current_batch=False):  # fmt: skip
    """The four steps of section 6.5 in plain Python floats, as River documents them.

    Returns the multiplier after each batch and the final (v, target) as River reports them.
    """
    lo, hi = clip
    neutral = min(max(1.0, lo), hi)
    v = r = 0.0
    t = 0
    m_cur = neutral  # multiplier of the current state
    out = []
    vh = rh = 0.0
    for batch in batches:
        x = np.asarray(batch, dtype=np.float64)
        m_prev = m_cur
        if x.size >= 2 and np.all(np.isfinite(x)):
            var = exact_variance(x)
            t += 1
            if init == "first":
                v = var if t == 1 else beta_v * v + (1 - beta_v) * var
                r = v if t == 1 else beta_r * r + (1 - beta_r) * v
                vh, rh = v, r
            elif init == "zero":
                v = beta_v * v + (1 - beta_v) * var
                r = beta_r * r + (1 - beta_r) * v
                vh, rh = v, r
            else:
                v = beta_v * v + (1 - beta_v) * var
                vh = v / (1 - beta_v**t)
                r = beta_r * r + (1 - beta_r) * vh
                rh = r / (1 - beta_r**t)
            e = eps * rh if eps_mode == "relative" else eps
            m_cur = neutral if rh == 0 else min(max(rh / (vh + e), lo), hi)
        out.append(m_cur if use_current_batch else m_prev)
    return out, (vh, rh)


def batch_with_variance(var, n=16, mean=2.3, dtype=torch.float64):
    """A batch whose population variance is exactly ``var`` (up to rounding)."""
    z = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    z = (z - z.mean()) / z.std(correction=0)
    return (mean + math.sqrt(var) * z).to(dtype)


def run(river, batches):
    return [float(river.observe(b)) for b in batches]


def random_batches(count, n=32, seed=0, dtype=torch.float64, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return [
        (scale * torch.randn(n, generator=gen, dtype=torch.float64)).exp().to(dtype)
        for _ in range(count)
    ]


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("use_current_batch", [False, True])
@pytest.mark.parametrize("eps_mode", ["relative", "absolute"])
def test_matches_reference_float64(init, use_current_batch, eps_mode):
    kw = dict(beta_v=0.9, beta_r=0.97, eps=1e-3, eps_mode=eps_mode, clip=(0.05, 20.0))
    kw.update(init=init, use_current_batch=use_current_batch)
    batches = random_batches(120, seed=1)
    river = River(**kw)
    got = run(river, batches)
    want, (vh, rh) = reference(batches, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert river.multiplier.dtype == torch.float64
    assert float(river.variance) == pytest.approx(vh, rel=1e-12)
    assert float(river.target) == pytest.approx(rh, rel=1e-12)
    assert int(river.num_accepted) == 120 and int(river.num_skipped) == 0


@pytest.mark.parametrize("init", INITS)
def test_first_values_of_each_init(init):
    """m after the first three batches, against the hand-written recursion (float32 state)."""
    batches = [batch_with_variance(v, dtype=torch.float32) for v in (0.5, 2.0, 1.0)]
    got = run(River(init=init, use_current_batch=True), batches)
    want, _ = reference(batches, init=init, use_current_batch=True)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The documented first values: m_1 = 1 for "first" and "zero-debiased",
    # m_1 = clip((1 - beta_r)(1 - beta_v)Var / ((1 - beta_v)Var)) = clip(0.001) = 0.1 for "zero".
    assert got[0] == pytest.approx({"first": 1.0, "zero": 0.1, "zero-debiased": 1.0}[init])


def test_first_values_explicit():
    """Two batches, every number worked out by hand (beta_v = 0.9, beta_r = 0.99)."""
    river = River(beta_v=0.9, beta_r=0.99, use_current_batch=True, dtype=torch.float64)
    river.observe(torch.tensor([0.0, 2.0]))  # Var = 1 -> v = 1, target = 1
    assert float(river.multiplier) == pytest.approx(1 / (1 + 1e-8), rel=1e-15)
    river.observe(torch.tensor([0.0, 4.0]))  # Var = 4 -> v = 1.3, target = 0.99 + 0.013
    assert float(river.variance) == pytest.approx(1.3, rel=1e-15)
    assert float(river.target) == pytest.approx(1.003, rel=1e-15)
    assert float(river.multiplier) == pytest.approx(1.003 / (1.3 + 1.003e-8), rel=1e-14)


# --------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("init", INITS)
def test_constant_variance_gives_one_at_any_level(init):
    """Section 6.5: the multiplier follows the trend, not the level: 100 and 0.01 give m -> 1."""
    gen = torch.Generator().manual_seed(3)
    noise = [torch.randn(64, generator=gen, dtype=torch.float64) for _ in range(6000)]
    runs = {}
    for level in (100.0, 0.01):
        river = River(init=init, dtype=torch.float64)
        runs[level] = np.array([float(river.observe(5.0 + math.sqrt(level) * z)) for z in noise])
    for level, ms in runs.items():
        tail = ms[-1000:]
        assert abs(tail.mean() - 1.0) < 0.02, (level, tail.mean())
        assert np.all(np.abs(tail - 1.0) < 0.1), level
    # eps_mode="relative" makes m scale-free: both levels give the same sequence.
    np.testing.assert_allclose(runs[100.0], runs[0.01], rtol=1e-9)


def test_constant_variance_exact_one_with_first_and_debiased_init():
    batches = [batch_with_variance(0.25)] * 50
    for init in ("first", "zero-debiased"):
        got = run(River(init=init, use_current_batch=True), batches)
        np.testing.assert_allclose(got, 1.0, rtol=1e-6)


def test_zero_init_is_a_data_independent_warmup():
    """Section 6.5: zero init without correction ramps m up with time constant 1/(1 - beta_r)."""
    batches = [batch_with_variance(4.0)] * 3000
    ms = np.array(run(River(init="zero", use_current_batch=True), batches))
    assert ms[0] == pytest.approx(0.1)  # clipped from about 1 - beta_r
    assert np.all(np.diff(ms) >= -1e-6)  # nondecreasing
    assert 0.9 < ms[-1] < 1.0  # about 1 - exp(-3) after 3 time constants


@pytest.mark.parametrize("init", INITS)
def test_rising_variance_gives_m_below_one(init):
    batches = [batch_with_variance(0.01 * 1.01**t) for t in range(400)]
    ms = np.array(run(River(init=init, use_current_batch=True), batches))
    assert np.all(ms[1:] < 1.0)
    assert ms[-1] < 0.9  # a sustained rise keeps m well below 1


@pytest.mark.parametrize("init", ["first", "zero-debiased"])
def test_falling_variance_gives_m_above_one(init):
    batches = [batch_with_variance(100.0 * 0.99**t) for t in range(400)]
    ms = np.array(run(River(init=init, use_current_batch=True), batches))
    assert np.all(ms[1:] > 1.0)
    assert ms[-1] > 1.1


def test_clip_is_respected_and_reached():
    levels = [1.0] * 50 + [1e6] * 50 + [1e-6] * 200
    batches = [batch_with_variance(v) for v in levels]
    river = River(beta_v=0.5, beta_r=0.9, clip=(0.5, 2.0), use_current_batch=True)
    ms = np.array(run(river, batches))
    lo, hi = np.float32(0.5), np.float32(2.0)
    assert np.all((ms >= lo) & (ms <= hi))
    assert ms.min() == lo and ms.max() == hi
    want, _ = reference(batches, beta_v=0.5, beta_r=0.9, clip=(0.5, 2.0), use_current_batch=True)
    np.testing.assert_allclose(ms, want, rtol=1e-5)


def test_interpolation_drives_m_to_its_maximum():
    """Section 6.5: when the losses stop spreading, v -> 0 and m sits at m_max."""
    batches = [batch_with_variance(1.0)] * 20 + [torch.full((16,), 0.5, dtype=torch.float64)] * 2000
    ms = run(River(use_current_batch=True), batches)
    assert ms[-1] == pytest.approx(10.0)


# --------------------------------------------------------------------------- degenerate
def state_tensors(river):
    sd = river.state_dict()["state"]
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor) and k != "multiplier"}


@pytest.mark.parametrize("use_current_batch", [False, True])
def test_batch_of_size_one_is_skipped(use_current_batch):
    batches = random_batches(5)
    river = River(use_current_batch=use_current_batch)
    run(river, batches)
    before = state_tensors(river)
    m = river.observe(torch.tensor([3.0], dtype=torch.float64))
    assert torch.isfinite(m)
    after = state_tensors(river)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert int(river.num_skipped) == 1 and int(river.num_accepted) == 5
    # The multiplier is that of the unchanged state.
    want, _ = reference(batches, use_current_batch=True)
    assert float(m) == pytest.approx(want[-1], rel=1e-12)


def test_only_size_one_batches_give_the_neutral_multiplier():
    river = River(clip=(0.1, 10.0))
    for x in (1.0, 5.0, -2.0):
        assert float(river.observe(torch.tensor([x]))) == 1.0
    assert river.multiplier.dtype == torch.float32
    river = River(clip=(2.0, 3.0))  # 1 clipped into the range
    assert float(river.multiplier) == 2.0
    assert float(river.observe(torch.tensor([1.0]))) == 2.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("use_current_batch", [False, True])
@pytest.mark.parametrize("init", INITS)
def test_non_finite_batch_is_skipped(bad, use_current_batch, init):
    batches = random_batches(6, seed=4)
    poisoned = batches[:3] + [torch.tensor([1.0, bad, 2.0], dtype=torch.float64)] + batches[3:]
    clean, dirty = (
        River(init=init, use_current_batch=use_current_batch),
        River(init=init, use_current_batch=use_current_batch),
    )
    m_clean = run(clean, batches)
    m_dirty = run(dirty, poisoned)
    assert all(math.isfinite(m) for m in m_dirty)
    # Skipping the bad batch leaves the same state and the same final multiplier.
    a, b = state_tensors(clean), state_tensors(dirty)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert m_dirty[-1] == m_clean[-1]
    assert int(dirty.num_skipped) == 1
    # The multiplier after the bad batch is that of the state before it.
    want, _ = reference(batches[:3], init=init, use_current_batch=True)
    assert m_dirty[3] == pytest.approx(want[-1], rel=1e-12)


def test_non_finite_first_batch_then_normal():
    river = River(use_current_batch=True)
    assert float(river.observe(torch.tensor([math.nan, 1.0], dtype=torch.float64))) == 1.0
    batches = random_batches(4, seed=5)
    got = run(river, batches)
    want, _ = reference(batches, use_current_batch=True)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_float32_variance_overflow_is_skipped():
    river = River(use_current_batch=True)  # float32 state
    run(river, [batch_with_variance(1.0, dtype=torch.float32)] * 3)
    before = state_tensors(river)
    m = river.observe(torch.tensor([0.0, 1e30]))  # Var = 2.5e59: not a float32
    assert torch.isfinite(m)
    after = state_tensors(river)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_nearly_equal_losses_keep_their_variance():
    """float64 accumulation: an untrained classifier's losses, all about log 10."""
    base = math.log(10.0)
    x = base + 1e-6 * torch.linspace(-1, 1, 64, dtype=torch.float64)
    river = River(use_current_batch=True, dtype=torch.float64)
    river.observe(x.to(torch.float32))
    want = float(np.var(x.to(torch.float32).double().numpy()))
    assert float(river.variance) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e8])
def test_variance_is_accurate_far_from_zero(offset):
    """Shifted float64 sums: tiny spread on a large offset keeps its relative accuracy."""
    x = offset + 1e-4 * torch.linspace(-1, 1, 64, dtype=torch.float64) ** 3
    river = River(use_current_batch=True, dtype=torch.float64)
    river.observe(x)
    want = float(np.var(x.numpy()))
    assert float(river.variance) == pytest.approx(want, rel=1e-9)


def adversarial_float32_batches():
    """float32 batches whose variance is hard: tiny spreads on large values, one-ulp steps."""
    gen = torch.Generator().manual_seed(12)
    out = [
        (math.log(10.0) + 1e-6 * torch.linspace(-1, 1, 64, dtype=torch.float64)).float(),
        (1e4 + 1e-3 * torch.randn(512, generator=gen, dtype=torch.float64)).float(),
        (3e6 + torch.randn(100, generator=gen, dtype=torch.float64)).float(),
        torch.rand(64, generator=gen) * 1e-30,
        torch.randn(2000, generator=gen).exp(),
    ]
    base = torch.full((4096,), 1e4)
    up = base
    for _ in range(5):
        up = torch.nextafter(up, torch.tensor(math.inf))
    out.append(torch.where(torch.rand(4096, generator=gen) < 0.3, up, base))  # 5-ulp steps
    return out


@pytest.mark.parametrize("index", range(6))
def test_float32_variance_is_the_exact_one_rounded(device, index):
    """float32 losses, float32 state: Var_1 is the exact variance to within an ulp of float32."""
    x = adversarial_float32_batches()[index]
    river = River()
    river.observe(x.to(device))
    want = np.float32(exact_variance(x))
    got = river.variance.cpu().numpy()
    assert river.variance.dtype == torch.float32
    assert abs(float(got) - float(want)) <= float(np.spacing(want)), (got, want)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        # Multiples of 1e-3 up to 1e6: spreads from 1e-3 to 1e6, and no subnormal variance.
        st.lists(st.integers(-(10**9), 10**9).map(lambda k: k * 1e-3), min_size=1, max_size=12),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(INITS),
)
@example(batches=[[0.003, 0.003, 0.003]], init="first")  # equal losses: variance exactly 0
def test_property_finite_inside_clip_and_equal_to_reference(batches, init):
    tensors = [torch.tensor(b, dtype=torch.float64) for b in batches]
    river = River(init=init, beta_v=0.8, beta_r=0.95, clip=(0.25, 4.0), use_current_batch=True)
    got = run(river, tensors)
    assert all(0.25 <= m <= 4.0 for m in got)
    want, _ = reference(tensors, init=init, beta_v=0.8, beta_r=0.95, clip=(0.25, 4.0),
                        use_current_batch=True)  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- past vs current
@pytest.mark.parametrize("init", INITS)
def test_past_mode_lags_current_mode_by_one_batch(init):
    batches = random_batches(30, seed=6)
    past = run(River(init=init), batches)
    current = run(River(init=init, use_current_batch=True), batches)
    assert past[0] == 1.0
    assert past[1:] == current[:-1]


@pytest.mark.parametrize("use_current_batch", [False, True])
def test_past_mode_multiplier_ignores_the_batch_just_observed(use_current_batch):
    history = random_batches(10, seed=7)
    a, b = River(use_current_batch=use_current_batch), River(use_current_batch=use_current_batch)
    run(a, history)
    run(b, history)
    m_a = float(a.observe(batch_with_variance(0.01)))
    m_b = float(b.observe(batch_with_variance(100.0)))
    assert (m_a == m_b) is (not use_current_batch)


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("use_current_batch", [False, True])
def test_resume_through_torch_save_is_bit_exact(tmp_path, init, use_current_batch):
    kw = dict(init=init, use_current_batch=use_current_batch, beta_v=0.9, beta_r=0.99)
    batches = random_batches(60, seed=8, dtype=torch.float32)
    batches[20] = torch.tensor([1.0, math.nan])  # a skipped batch in the history
    batches[25] = torch.tensor([1.0])
    whole = River(**kw)
    m_whole = [whole.observe(b) for b in batches]

    first = River(**kw)
    for b in batches[:30]:
        first.observe(b)
    torch.save(first.state_dict(), tmp_path / "river.pt")
    resumed = River()  # other hyperparameters: the state dict carries them
    resumed.load_state_dict(torch.load(tmp_path / "river.pt"))
    assert resumed.init == init and resumed.beta_v == 0.9
    assert torch.equal(resumed.multiplier, m_whole[29])
    m_resumed = [resumed.observe(b) for b in batches[30:]]
    for x, y in zip(m_whole[30:], m_resumed, strict=True):
        assert torch.equal(x, y)
    assert int(resumed.num_skipped) == 2
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in ("v", "r", "step"))


@pytest.mark.parametrize("init", INITS)
def test_long_run_counts_and_resumes_exactly(tmp_path, init):
    """Hundreds of batches with skips: counts, reference values and a bit-exact resume."""
    kw = dict(init=init, beta_v=0.9, beta_r=0.99, use_current_batch=True)
    batches = random_batches(700, n=8, seed=13, dtype=torch.float32)
    for i in range(0, 700, 37):
        batches[i] = torch.tensor([1.0, math.nan])
    for i in range(5, 700, 101):
        batches[i] = torch.tensor([2.0])
    good = [b for b in batches if b.numel() >= 2 and bool(torch.isfinite(b).all())]
    whole = River(**kw)
    m_whole = [whole.observe(b) for b in batches]
    assert int(whole.num_accepted) == len(good)
    assert int(whole.num_skipped) == len(batches) - len(good)
    want, _ = reference(batches, **kw)
    np.testing.assert_allclose([float(m) for m in m_whole], want, rtol=1e-5)

    first = River(**kw)
    for b in batches[:333]:
        first.observe(b)
    torch.save(first.state_dict(), tmp_path / "river.pt")
    assert int(first.state_dict()["state"]["step"]) == sum(
        b.numel() >= 2 and bool(torch.isfinite(b).all()) for b in batches[:333]
    )
    resumed = River()
    resumed.load_state_dict(torch.load(tmp_path / "river.pt"))
    for x, b in zip(m_whole[333:], batches[333:], strict=True):
        assert torch.equal(resumed.observe(b), x)
    a, b = whole.state_dict()["state"], resumed.state_dict()["state"]
    assert all(torch.equal(a[k], b[k]) for k in ("v", "r", "step", "multiplier"))


@pytest.mark.parametrize("init", INITS)
def test_deepcopy_continues_alike_and_apart(init):
    """A deep copy (taken before any batch is accepted) shares no state with its original."""
    import copy

    batches = random_batches(8, seed=14)
    river = River(init=init, use_current_batch=True)
    river.observe(torch.tensor([1.0, math.nan], dtype=torch.float64))  # skipped
    twin = copy.deepcopy(river)
    for b in batches[:4]:
        river.observe(b)  # the original accepts batches; the twin has not yet
    got = run(twin, batches)
    want, _ = reference(batches, init=init, use_current_batch=True)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert int(twin.num_accepted) == 8 and int(river.num_accepted) == 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_a_pickled_river_continues_bit_for_bit(dtype):
    """``torch.save`` of a whole River (pickle): its operations pickle by reference."""
    import pickle

    batches = random_batches(12, seed=15)
    river = River(dtype=dtype)
    for b in batches[:6]:
        river.observe(b)
    twin = pickle.loads(pickle.dumps(river))
    for b in batches[6:]:
        assert torch.equal(twin.observe(b), river.observe(b))
    assert torch.equal(twin.variance, river.variance)


def test_state_dict_before_any_observation_round_trips():
    river = River(beta_v=0.5, dtype=torch.float64)
    other = River()
    other.load_state_dict(river.state_dict())
    assert other.beta_v == 0.5 and other.dtype == torch.float64
    assert float(other.multiplier) == 1.0
    other.observe(torch.tensor([1.0, 2.0]))
    assert other.multiplier.dtype == torch.float64


def test_state_dict_is_a_snapshot():
    river = River()
    river.observe(torch.tensor([1.0, 2.0]))
    sd = river.state_dict()
    v = sd["state"]["v"].clone()
    river.observe(torch.tensor([1.0, 9.0]))
    assert torch.equal(sd["state"]["v"], v)


@pytest.mark.parametrize(
    ("mutate", "word"),
    [
        (lambda sd: sd.pop("beta_r"), "missing"),
        (lambda sd: sd.update(beta_v=1.0), "beta_v"),
        (lambda sd: sd.update(clip=(2.0, 1.0)), "clip"),
        (lambda sd: sd["state"].update(v=torch.tensor(-1.0)), "'v'"),
        (lambda sd: sd["state"].update(r=torch.tensor(math.nan)), "'r'"),
        (lambda sd: sd["state"].update(multiplier=torch.tensor(50.0)), "multiplier"),
        (lambda sd: sd["state"].update(step=torch.tensor(99)), "step"),
        (lambda sd: sd["state"].update(step=torch.tensor(1.0)), "step"),
        (lambda sd: sd["state"].update(v=torch.zeros(2)), "'v'"),
        (lambda sd: sd["state"].update(r=torch.tensor(1.0, dtype=torch.float64)), "dtype"),
        (lambda sd: sd["state"].pop("observed"), "observed"),
        (lambda sd: sd.update(state="nonsense"), "state"),
        (lambda sd: sd["state"].update(weights=torch.tensor([0.0, 0.5])), "weights"),
        (lambda sd: sd["state"].pop("weights"), "weights"),
    ],
)
def test_load_state_dict_validates_before_mutating(mutate, word):
    source = River()
    run(source, random_batches(3, dtype=torch.float32))
    sd = source.state_dict()
    mutate(sd)
    target = River(beta_v=0.7)
    run(target, random_batches(2, seed=9, dtype=torch.float32))
    before = target.state_dict()
    with pytest.raises(ValueError, match=word):
        target.load_state_dict(sd)
    after = target.state_dict()
    assert after["beta_v"] == 0.7
    assert all(torch.equal(before["state"][k], after["state"][k]) for k in ("v", "r", "step"))
    assert torch.equal(before["state"]["multiplier"], target.multiplier)


# --------------------------------------------------------------------------- devices, dtypes
def test_multiplier_lives_on_the_losses_device(device):
    river = River()
    assert river.multiplier.device == torch.device("cpu")
    assert river.multiplier.ndim == 0 and float(river.multiplier) == 1.0
    losses = torch.rand(32, device=device)
    m = river.observe(losses)
    assert m.device.type == device.type and m.ndim == 0
    assert river.multiplier.device.type == device.type
    assert river.variance.device.type == device.type
    want, _ = reference([losses.cpu(), 2 * losses.cpu()], use_current_batch=True)
    river = River(use_current_batch=True)
    river.observe(losses)
    assert float(river.observe(2 * losses)) == pytest.approx(want[-1], rel=1e-5)


@pytest.mark.parametrize(
    ("loss_dtype", "state_dtype"),
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_state_dtype_is_at_least_float32(loss_dtype, state_dtype):
    river = River()
    river.observe(torch.rand(8).to(loss_dtype))
    assert river.multiplier.dtype == state_dtype
    forced = River(dtype=torch.float64)
    forced.observe(torch.rand(8).to(loss_dtype))
    assert forced.multiplier.dtype == torch.float64


def test_losses_that_require_grad_are_detached():
    w = torch.ones(4, requires_grad=True)
    river = River()
    m = river.observe(w * torch.arange(4.0))
    assert not m.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("init", INITS)
def test_observe_never_synchronises_cuda(init):
    losses = [torch.rand(64, device="cuda") for _ in range(5)]
    losses[2] = torch.tensor([1.0, math.nan], device="cuda")
    losses[3] = torch.tensor([1.0], device="cuda")
    river = River(init=init)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x in losses:
            river.observe(x)
            _ = river.multiplier * 0.1  # what a scheduler does with it
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert river.multiplier.is_cuda


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"beta_v": 0.0}, ValueError, "beta_v must be a finite real number in (0, 1), got 0.0"),
        ({"beta_v": 1.0}, ValueError, "beta_v"),
        ({"beta_v": 1.5}, ValueError, "beta_v"),
        ({"beta_v": math.nan}, ValueError, "beta_v"),
        ({"beta_v": "0.9"}, TypeError, "beta_v must be a finite real number in (0, 1), got '0.9'"),
        ({"beta_v": np.True_}, TypeError, "beta_v"),
        ({"beta_r": -0.1}, ValueError, "beta_r"),
        ({"beta_r": 1.0}, ValueError, "beta_r"),
        ({"beta_r": True}, TypeError, "beta_r must be a finite real number in (0, 1), got True"),
        ({"beta_r": torch.tensor(0.9)}, TypeError, "beta_r"),
        ({"eps": 0.0}, ValueError, "eps must be a finite real number > 0, got 0.0"),
        ({"eps": -1e-8}, ValueError, "eps"),
        ({"eps": math.inf}, ValueError, "eps"),
        ({"eps": math.nan}, ValueError, "eps"),
        ({"eps": False}, TypeError, "eps"),
        ({"eps_mode": "scaled"}, ValueError, "eps_mode must be one of 'relative', 'absolute'"),
        ({"eps_mode": 1}, TypeError, "eps_mode"),
        ({"clip": (2.0, 1.0)}, ValueError, r"clip must be a pair with 0 < clip[0] <= clip[1]"),
        ({"clip": (0.0, 1.0)}, ValueError, "clip[0] must be a finite real number > 0, got 0.0"),
        ({"clip": (-1.0, 1.0)}, ValueError, "clip[0]"),
        ({"clip": (0.1, math.inf)}, ValueError, "clip[1]"),
        ({"clip": (0.1, True)}, TypeError, "clip[1]"),
        ({"clip": (0.1,)}, ValueError, "clip must be a pair of real numbers, got 1 values"),
        ({"clip": "ab"}, TypeError, "clip"),
        ({"clip": 1.0}, TypeError, "clip"),
        ({"init": "ones"}, ValueError, "init must be one of 'first', 'zero', 'zero-debiased'"),
        ({"use_current_batch": "yes"}, TypeError, "use_current_batch must be True or False"),
        ({"use_current_batch": 1}, TypeError, "use_current_batch"),
        ({"dtype": torch.int64}, ValueError, "dtype must be None or a floating torch.dtype"),
        ({"dtype": "float32"}, TypeError, "dtype"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, error, name):
    with pytest.raises(error) as info:
        River(**kwargs)
    assert name in str(info.value)


def test_numpy_scalars_are_numbers():
    """numpy scalars are accepted wherever a float is, and give the float's River."""
    kw = dict(beta_v=np.float32(0.5), beta_r=np.float64(0.9), eps=np.float32(1e-3),
              clip=(np.float64(0.2), np.int64(5)))  # fmt: skip
    river = River(**kw)
    assert river.beta_r == 0.9 and river.clip == (0.2, 5.0)
    assert all(type(x) is float for x in (river.beta_v, river.beta_r, river.eps, *river.clip))
    batches = random_batches(20, seed=21)
    want, _ = reference(batches, beta_v=float(np.float32(0.5)), beta_r=0.9,
                        eps=float(np.float32(1e-3)), clip=(0.2, 5.0))  # fmt: skip
    np.testing.assert_allclose(run(river, batches), want, rtol=1e-12)


@pytest.mark.parametrize(
    ("losses", "error"),
    [
        (torch.ones(4, 2), ValueError),
        (torch.tensor(1.0), ValueError),
        (torch.ones(0), ValueError),
        (torch.arange(4), TypeError),
        ([1.0, 2.0], TypeError),
    ],
)
def test_bad_losses_raise_and_leave_the_state_alone(losses, error):
    river = River()
    run(river, random_batches(3, dtype=torch.float32))
    before = river.state_dict()
    with pytest.raises(error, match="per_example_losses"):
        river.observe(losses)
    after = river.state_dict()
    for key, value in before["state"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, after["state"][key]), key
        else:
            assert value == after["state"][key], key


def test_the_quick_path_and_the_checked_path_agree():
    """observe's quick path (float losses of the state's dtype on the CPU, told by a few
    attribute reads) gives what the fully checked path gives, bit for bit."""

    class Losses(torch.Tensor):  # not exactly a torch.Tensor: always the checked path
        pass

    batches = random_batches(30, seed=23, dtype=torch.float32)
    batches[7] = batches[7][:1]  # one example: skipped on both paths
    batches[11] = batches[11].clone().requires_grad_()  # detached on both paths
    quick, checked = River(), River()
    for b in batches:
        assert torch.equal(quick.observe(b), checked.observe(b.as_subclass(Losses)))
    assert quick.state_dict()["state"]["observed"] == 30
    for key, value in quick.state_dict()["state"].items():
        assert torch.equal(
            torch.as_tensor(value), torch.as_tensor(checked.state_dict()["state"][key])
        )


# --------------------------------------------------------------------------- no aliasing
@pytest.mark.parametrize("use_current_batch", [False, True])
@pytest.mark.parametrize("init", INITS)
def test_values_handed_out_do_not_alias_the_state(init, use_current_batch):
    """Editing a returned tensor in place changes nothing in the River."""
    kw = dict(init=init, use_current_batch=use_current_batch, clip=(0.1, 10.0))
    batches = random_batches(12, seed=22, dtype=torch.float32)
    clean, river = River(**kw), River(**kw)
    for b in batches[:6]:
        clean.observe(b)
        m = river.observe(b)
        m *= 50  # the multiplier would be 49.4, outside clip
        for value in (river.multiplier, river.variance, river.target, river.num_accepted):
            value.mul_(7)
        assert torch.equal(river.multiplier, clean.multiplier)
    for name in ("variance", "target", "num_accepted"):
        assert torch.equal(getattr(river, name), getattr(clean, name)), name
    for b in batches[6:]:  # and the future is unchanged too
        assert torch.equal(river.observe(b), clean.observe(b))
    assert 0.1 <= float(river.multiplier) <= 10.0


def test_multiplier_before_any_batch_is_a_copy():
    river = River()
    river.multiplier.fill_(50.0)
    assert float(river.multiplier) == 1.0
    m = river.observe(torch.tensor([2.0]))  # skipped (one example): still the neutral value
    m.fill_(50.0)
    assert float(river.multiplier) == 1.0


def test_state_dict_does_not_alias_the_state():
    river = River()
    run(river, random_batches(3))
    sd = river.state_dict()
    for value in sd["state"].values():
        if isinstance(value, torch.Tensor):
            value.fill_(123)
    clean = River()
    run(clean, random_batches(3))
    assert torch.equal(river.variance, clean.variance) and torch.equal(
        river.observe(random_batches(1, seed=5)[0]), clean.observe(random_batches(1, seed=5)[0])
    )


def test_hyperparameters_are_read_only():
    river = River(beta_v=0.9)
    with pytest.raises(AttributeError):
        river.beta_v = 0.5
    assert river.beta_v == 0.9 and river.clip == (0.1, 10.0) and river.init == "first"


def test_repr_names_the_hyperparameters():
    text = repr(River(beta_v=0.9, clip=(0.2, 5.0)))
    assert text.startswith("River(") and "beta_v=0.9" in text and "clip=(0.2, 5.0)" in text


# --------------------------------------------------------------------------- scheduler
def test_plugs_into_scheduled_lr():
    """lr after scheduler.step() at step t is s(t) * m, in the training loop of section 6.5."""
    import companion.lr_scheduler as lr_scheduler

    def schedule(t):
        return 0.1 * 0.5 ** (t // 5)

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    river = River(beta_v=0.5, beta_r=0.9, use_current_batch=True)
    sched = lr_scheduler.ScheduledLR(opt, schedule, multiplier=river)
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(schedule(0))
    x, y = torch.randn(40, 3), torch.randn(40, 1)
    lrs = []
    for t in range(15):
        xb, yb = x[t % 4 * 10 : t % 4 * 10 + 10], y[t % 4 * 10 : t % 4 * 10 + 10]
        losses = torch.nn.functional.mse_loss(model(xb), yb, reduction="none").squeeze(1)
        losses.mean().backward()
        opt.step()
        opt.zero_grad()
        river.observe(losses.detach())
        sched.step()
        lr = float(opt.param_groups[0]["lr"])
        assert lr == pytest.approx(schedule(t + 1) * float(river.multiplier), rel=1e-6)
        lrs.append(lr)
    assert len({round(m, 9) for m in lrs}) > 3  # the multiplier really varies


def test_resume_through_scheduled_lr_state_dict(tmp_path):
    """ScheduledLR carries River's state: a reloaded pair continues with the same lrs."""
    import companion.lr_scheduler as lr_scheduler

    batches = random_batches(40, seed=10, dtype=torch.float32)

    def make():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        river = River(beta_v=0.8, beta_r=0.95, init="zero-debiased")
        return opt, river, lr_scheduler.ScheduledLR(opt, lambda t: 0.1 / (1 + t), river)

    def steps(opt, river, sched, part):
        lrs = []
        for b in part:
            river.observe(b)
            sched.step()
            lrs.append(float(opt.param_groups[0]["lr"]))
        return lrs

    whole = steps(*make(), batches)
    opt, river, sched = make()
    first = steps(opt, river, sched, batches[:25])
    torch.save(sched.state_dict(), tmp_path / "sched.pt")
    opt2, river2, sched2 = make()
    river2.observe(batches[-1])  # some unrelated history, overwritten by the load
    sched2.load_state_dict(torch.load(tmp_path / "sched.pt", weights_only=True))
    assert first + steps(opt2, river2, sched2, batches[25:]) == whole


# --------------------------------------------------------------------------- process groups
# (the runs on several processes are in tests/test_distributed.py)
@pytest.mark.parametrize(
    ("bad", "error"),
    [("world", ValueError), ("", ValueError), (0, TypeError), (1.0, TypeError),
     (object(), TypeError), (torch.device("cpu"), TypeError)],
)  # fmt: skip
def test_bad_process_group_raises(bad, error):
    with pytest.raises(error, match="process_group"):
        River(process_group=bad)


def test_process_group_is_read_only_and_not_in_the_state_dict():
    river = River()
    assert river.process_group == "auto" and River(process_group=None).process_group is None
    with pytest.raises(AttributeError):
        river.process_group = None
    river.observe(torch.rand(8))
    assert not any("group" in key for key in river.state_dict())
    assert "process_group='auto'" in repr(river)
    assert "process_group=None" in repr(River(process_group=None))


def test_auto_without_torch_distributed_is_the_local_river(monkeypatch):
    """Not initialised: "auto" never calls into torch.distributed beyond is_initialized()."""
    import torch.distributed as dist

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.distributed used without a process group")

    for name in ("get_world_size", "all_reduce", "get_backend_config"):
        monkeypatch.setattr(dist, name, forbidden)
    batches = random_batches(12, seed=3)
    auto, local = River(), River(process_group=None)
    for b in batches:
        assert torch.equal(auto.observe(b), local.observe(b))


def test_is_local_without_the_direct_probe(monkeypatch):
    """Where torch lacks the default group's slot, is_local asks dist.is_initialized()."""
    import torch.distributed as dist

    from companion import _river_dist

    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    assert _river_dist._DIRECT  # this torch has it: the probe is what runs here
    monkeypatch.setattr(_river_dist, "_DIRECT", False)
    for initialised in (False, True):
        monkeypatch.setattr(dist, "is_initialized", lambda flag=initialised: flag)
        assert _river_dist.is_local("auto") is not initialised
        assert _river_dist.is_local(None)


def test_dtype_and_device_codes_do_not_collide():
    """The descriptor that catches ranks with different dtypes tells every dtype apart."""
    from companion._river_dist import code

    dtypes = {v for v in vars(torch).values() if isinstance(v, torch.dtype)}
    codes = {code(str(d)) for d in dtypes}
    assert len(codes) == len(dtypes) and all(1 <= c <= 1021 for c in codes)
    kinds = ["cpu", "cuda", "mps", "xpu", "hpu", "xla", "meta", "mtia", "privateuseone"]
    assert len({code(k) for k in kinds}) == len(kinds)


def test_explicit_process_group_of_one_process_is_local_and_deep_copies():
    """A group of one process has nothing to reduce; a deep copy shares the group."""
    import copy

    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    from companion import _river_dist

    assert not dist.is_initialized()
    assert _river_dist.is_local("auto") and _river_dist.is_local(None)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        # "auto" reads the default group's slot directly: it sees the group at once.
        assert not _river_dist.is_local("auto") and _river_dist.is_local(None)
        group = dist.new_group([0])
        assert not _river_dist.is_local(group)
        river, local = River(process_group=group), River(process_group=None)
        batches = random_batches(6, seed=4)
        for b in batches[:3]:
            assert torch.equal(river.observe(b), local.observe(b))
        twin = copy.deepcopy(river)
        assert twin.process_group is group and "process_group=<" in repr(twin)
        for b in batches[3:]:
            assert torch.equal(twin.observe(b), local.observe(b))
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- benchmark
def test_benchmark_runs_and_reports_the_overhead():
    """``python -m companion.benchmarks.river`` on a tiny configuration: the table's rows.

    Only the structure is checked: the figures are timings, which no test may depend on.
    In a process of its own: the second table changes that process's ``malloc``.
    """
    pytest.importorskip("sklearn")
    args = ["--hidden", "16", "--batch-size", "8", "--steps", "3", "--rounds", "2"]
    run_ = subprocess.run(
        [sys.executable, "-m", "companion.benchmarks.river", *args],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    out = run_.stdout
    assert "2 rounds of one block per kind, each next to a plain block" in out
    assert "malloc as it is" in out
    lines = out.splitlines()
    firsts = [i for i, line in enumerate(lines) if line.strip().startswith("64-16-10")]
    kept = "unavailable here" not in out  # glibc: both tables; elsewhere the first only
    assert len(firsts) == (2 if kept else 1)
    assert ("freed memory kept (mallopt" in out) == kept
    for i in firsts:
        head = lines[i].split()
        assert head[1:3] == ["8", "3"]
        plain, const = float(head[3]), float(head[4])
        assert min(plain, const) > 0
        rows = ((lines[i], "observe"), (lines[i + 1], "observe_variance"), (lines[i + 2], "floor"))
        for line, call in rows:
            fields = line.split()[5:] if line is lines[i] else line.split()
            assert fields[0] == call
            with_river, overhead = float(fields[1]), float(fields[2])
            assert with_river > 0 and math.isfinite(overhead)
            low, high = (float(f.strip("[],")) for f in fields[3:5])
            assert low <= overhead <= high
            inside, share = float(fields[5]), float(fields[6].strip("()"))
            assert inside > 0  # (a median of calls, not comparable with the medians of blocks)
            # The share is printed from the unrounded times: only their 0.1 us rounding
            # and its own 0.01 separate it from the ratio of the printed times.
            slack = 100 * (0.05 / plain + 0.05 * inside / plain**2) + 0.005 + 1e-9
            assert share == pytest.approx(100 * inside / plain, abs=slack)
            assert len(fields[7].split("/")) == 3
            # A target for River's loops; the floor has none (it is not River).
            assert ("(target <= 2 %:" in line) == (call != "floor")
            assert ("(no River: var_mean, .item(), a new 0-d tensor)" in line) == (call == "floor")
    assert "River.observe alone, float32 losses, batch 8:" in out


def test_benchmark_kinds_share_one_trajectory():
    """The premise of the benchmark: blocks of every kind train exactly as plain steps.

    River runs with clip=(1, 1), so the learning rates, hence the weights, are the plain
    run's, and the kinds differ only by the multiplier's work.
    """
    from companion.benchmarks import river as bench

    def data():
        gen = torch.Generator().manual_seed(3)
        x, y = torch.randn(40, 64, generator=gen), torch.randint(0, 10, (40,), generator=gen)
        return x, y, list(torch.arange(40).view(5, 8).unbind(0))

    cpu = torch.device("cpu")
    mixed, plain = bench._Loop(data(), 16, cpu), bench._Loop(data(), 16, cpu)
    for kind in ("river", "const", "plain", "floor", "river", "const"):
        steps, slots = mixed.steps(4, kind)
        assert len(steps) == len(slots) == 4
        assert all(0 <= a < b for a, b in zip(slots, steps, strict=True))
    plain.steps(24, "plain")
    assert int(mixed.river.num_accepted) == 8
    for a, b in zip(mixed.model.parameters(), plain.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # var_mean's mean may differ from mean() in the last bit, so these steps only agree
    # closely; the cost of every other operation does not depend on it.
    mixed.steps(4, "river_var")
    plain.steps(4, "plain")
    assert int(mixed.river.num_accepted) == 12
    for a, b in zip(mixed.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_benchmark_pairs_every_kind_with_a_plain_block():
    """Each round: every other kind once, next to a plain block; no kind always first."""
    from companion.benchmarks import river as bench

    others = set(bench.KINDS) - {"plain"}
    seen_first: dict[str, set[bool]] = {kind: set() for kind in others}
    positions: dict[str, set[int]] = {kind: set() for kind in others}
    for k in range(2 * len(others)):
        pairs = bench.round_order(k)
        assert len(pairs) == len(others)
        assert {kind for pair in pairs for kind in pair} - {"plain"} == others
        for j, pair in enumerate(pairs):
            assert len(pair) == 2 and pair.count("plain") == 1
            (kind,) = set(pair) - {"plain"}
            seen_first[kind].add(pair[0] == "plain")
            positions[kind].add(j)
    assert all(both == {True, False} for both in seen_first.values())
    assert all(p == set(range(len(others))) for p in positions.values())


def test_benchmark_statistics():
    """The interval of the median: order statistics that cover it; the verdict uses it all."""
    from companion.benchmarks import river as bench

    values = [0.01 * i for i in range(101)]  # median 0.5
    assert bench.median_interval(values) == (0.40, 0.60)  # ranks 41 and 61 of 101: ~95 %
    assert bench.median_interval([0.3]) == (0.3, 0.3)
    assert bench.median_interval([0.2, 0.1]) == (0.1, 0.2)  # too few values: the range
    # Coverage, measured: the interval holds the true median of N(0, 1) about 95 % of
    # the time (a fixed seed, so the count is exact).
    gen = torch.Generator().manual_seed(0)
    samples = torch.randn(2000, 101, generator=gen).tolist()
    covered = sum(lo <= 0 <= hi for lo, hi in map(bench.median_interval, samples))
    assert 0.93 <= covered / 2000 <= 0.97
    assert bench.verdict(0.005, 0.019, 0.02) == "met"
    assert bench.verdict(0.021, 0.05, 0.02) == "NOT met"
    assert bench.verdict(0.01, 0.03, 0.02).startswith("unresolved")


def test_benchmark_floor_work_is_var_mean_read_and_a_new_tensor():
    """The floor does what every River call must: the batch variance read on the host
    (as River computes it, bit for bit) and a new 0-d tensor out, never the losses."""
    from companion.benchmarks import river as bench

    losses = torch.tensor([0.5, 1.5, 4.0, 2.0])
    before = losses.clone()
    out = bench.floor_work(losses)
    assert out.dim() == 0 and out.dtype == torch.float32
    assert float(out) == float(torch.var_mean(losses, correction=0)[0])
    assert torch.equal(losses, before)
    river = River(use_current_batch=True)
    river.observe(losses)
    assert float(river.variance) == float(out)  # init "first": u_0 = V_0
