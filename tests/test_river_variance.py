"""River.observe_variance: the batch variance given by a loop that reduces with var_mean."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import companion._river_state as river_state
from companion import _river_dist
from companion.river import River

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the batches of test_river
from test_river import INITS, exact_variance, random_batches, reference  # noqa: E402


def state_of(river):
    return {k: v for k, v in river.state_dict()["state"].items()}


def same_state(a, b):
    sa, sb = state_of(a), state_of(b)
    return sa.keys() == sb.keys() and all(
        torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])) for k in sa
    )


@pytest.mark.parametrize("use_current_batch", [False, True])
@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_given_variance_matches_observe_bit_for_bit(init, use_current_batch, dtype):
    """Given the variance observe computes, the multipliers and the state are the same."""
    kw = dict(init=init, use_current_batch=use_current_batch, beta_v=0.8, beta_r=0.95)
    batches = random_batches(25, seed=41, dtype=dtype, scale=1.5)
    batches[6] = batches[6].clone()
    batches[6][3] = math.nan  # a non-finite loss: skipped on both sides
    by_losses, by_variance = River(**kw), River(**kw)
    for b in batches:
        m = by_losses.observe(b)
        assert torch.equal(by_variance.observe_variance(river_state.batch_variance(b, dtype)), m)
    assert int(by_variance.num_skipped) == 1 and same_state(by_losses, by_variance)


@pytest.mark.parametrize("use_current_batch", [False, True])
@pytest.mark.parametrize("init", INITS)
def test_given_variance_follows_the_reference(init, use_current_batch):
    """Fed exact variances, the multipliers are section 6.5's, computed independently."""
    kw = dict(init=init, use_current_batch=use_current_batch, beta_v=0.8, beta_r=0.95)
    batches = random_batches(25, seed=42, scale=1.5)
    batches[6] = batches[6].clone()
    batches[6][3] = math.nan  # a non-finite loss: its variance is NaN, skipped
    river = River(**kw)
    variances = [exact_variance(b) if torch.isfinite(b).all() else math.nan for b in batches]
    got = [float(river.observe_variance(torch.tensor(x, dtype=torch.float64))) for x in variances]
    want, (v, r) = reference(batches, **kw)
    assert got == pytest.approx(want, rel=1e-12)
    assert float(river.variance) == pytest.approx(v, rel=1e-12)
    assert float(river.target) == pytest.approx(r, rel=1e-12)
    assert int(river.num_skipped) == 1


def test_the_var_mean_loop_trains_as_the_observe_loop():
    """The loop of River's Examples: var_mean's mean goes to backward, its variance to River."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    rivers = []
    for use_var_mean in (False, True):
        torch.manual_seed(1)
        model = torch.nn.Linear(5, 3)
        river = River(beta_v=0.9, beta_r=0.99)
        for i in range(8):
            losses = torch.nn.functional.cross_entropy(
                model(x[8 * i : 8 * i + 8]), y[8 * i : 8 * i + 8], reduction="none"
            )
            if use_var_mean:
                variance, loss = torch.var_mean(losses, correction=0)
                loss.backward()
                river.observe_variance(variance)  # requires grad: read all the same
            else:
                losses.mean().backward()
                river.observe(losses.detach())
            model.weight.grad = None  # the weights stay put: the same losses both ways
            model.bias.grad = None
        rivers.append(river)
    assert same_state(*rivers) and int(rivers[1].num_accepted) == 8


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([0.5], TypeError, "floating-point tensor, got list"),
        (torch.tensor(2), TypeError, "floating-point tensor, got torch.int64"),
        (torch.ones(2), ValueError, "0-d, got shape"),
        (torch.tensor(-0.25), ValueError, r">= 0 \(or NaN/inf: skipped\), got -0.25"),
        (torch.tensor(1.0, device="meta"), TypeError, r"got a meta tensor \(no value\)"),
    ],
)
def test_bad_variance_is_refused_with_nothing_changed(value, error, match):
    river = River()
    river.observe_variance(torch.tensor(0.5))
    before = state_of(river)
    with pytest.raises(error, match=match):
        river.observe_variance(value)
    after = state_of(river)
    assert all(torch.equal(torch.as_tensor(before[k]), torch.as_tensor(after[k])) for k in before)


def test_a_negative_variance_is_skipped_on_the_tensor_path(monkeypatch):
    """Where reading the value would wait for a device it is not read: the batch is skipped."""
    monkeypatch.setattr(river_state, "HOST_SCALARS", {})
    river, clean = River(use_current_batch=True), River(use_current_batch=True)
    for r in (river, clean):
        r.observe_variance(torch.tensor(0.5))
    assert isinstance(river._v, torch.Tensor)
    # On the CPU the value is read, and refused; on a device it reaches the update
    # unread, as here:
    m = river._take(river._k, river._k.load(torch.tensor(-1.0)), None)
    assert torch.equal(m, clean.multiplier) and int(river.num_accepted) == 1
    assert torch.equal(river.variance, clean.variance) and torch.equal(river.target, clean.target)


def test_under_a_process_group_observe_is_required(monkeypatch):
    monkeypatch.setattr(_river_dist, "is_local", lambda spec: False)
    monkeypatch.setattr(_river_dist, "active_group", lambda spec: "a group of 2 ranks")
    river = River()
    with pytest.raises(ValueError, match=r"call observe\(per_example_losses\) instead"):
        river.observe_variance(torch.tensor(0.5))
    assert river.state_dict()["state"] is None


def test_the_first_variance_sets_the_state_dtype():
    river = River()
    river.observe_variance(torch.tensor(0.5, dtype=torch.float64))
    assert river.state_dict()["state"]["v"].dtype == torch.float64
    assert float(river.variance) == 0.5 and int(river.num_accepted) == 1


def test_a_bad_first_variance_leaves_no_state():
    river = River()
    with pytest.raises(ValueError, match="got -1.0"):
        river.observe_variance(torch.tensor(-1.0))
    assert river.state_dict()["state"] is None and river.num_skipped == 0
