"""companion.optim.param_groups: the no-decay groups of nanoGPT, timm and Hugging Face."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import companion.optim as co
from companion.optim import param_groups


class Tiny(nn.Module):
    """Embedding, Linear, LayerNorm, BatchNorm, an output layer tied to the embedding."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.fc = nn.Linear(6, 6)
        self.ln = nn.LayerNorm(6)
        self.bn = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.emb.weight  # tied, as in GPT-2
        self.frozen = nn.Linear(6, 6)
        self.frozen.requires_grad_(False)

    def forward(self, idx):
        h = self.bn(self.ln(torch.relu(self.fc(self.emb(idx)))))
        return self.head(h)


def ids(params):
    return [id(p) for p in params]


def test_default_split_is_by_dimension_and_shared_parameters_come_once():
    m = Tiny()
    decay, no_decay = param_groups(m, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert ids(decay["params"]) == ids([m.emb.weight, m.fc.weight])  # tied: once
    assert ids(no_decay["params"]) == ids(
        [m.fc.bias, m.ln.weight, m.ln.bias, m.bn.weight, m.bn.bias]
    )
    every = decay["params"] + no_decay["params"]
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert len(every) == len(set(ids(every))) == len(trainable)  # frozen ones left out


def test_embeddings_on_request_even_when_tied():
    m = Tiny()
    decay, no_decay = param_groups(m, 0.1, no_decay_embeddings=True)
    assert ids(decay["params"]) == ids([m.fc.weight])
    assert id(m.emb.weight) in ids(no_decay["params"])  # also head.weight: the same tensor


@pytest.mark.parametrize(
    "no_decay",
    [["fc.weight"], ["weight"], lambda name, p: name.startswith("fc.")],
    ids=["full name", "last component", "predicate"],
)
def test_no_decay_names_or_predicate(no_decay):
    m = Tiny()
    decay, _ = param_groups(m, 0.1, no_decay=no_decay)
    if callable(no_decay):
        assert ids(decay["params"]) == ids([m.emb.weight])
    elif no_decay == ["weight"]:
        assert decay["params"] == []
    else:
        assert ids(decay["params"]) == ids([m.emb.weight])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(model="model", weight_decay=0.1), TypeError, "model must be a torch.nn.Module"),
        (dict(weight_decay=-0.1), ValueError, r"weight_decay must be .* >= 0, got -0.1"),
        (dict(weight_decay="0.1"), TypeError, r"weight_decay must be"),
        (dict(weight_decay=0.1, no_decay="bias"), TypeError, r"no_decay must be None"),
        (dict(weight_decay=0.1, no_decay=[1]), TypeError, r"no_decay\[0\] must be"),
        (dict(weight_decay=0.1, no_decay_embeddings=1), TypeError, r"no_decay_embeddings"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs.setdefault("model", Tiny())
    with pytest.raises(error, match=match):
        param_groups(**kwargs)


@pytest.mark.parametrize("cls", ["AdamW", "SGD"])
def test_the_groups_train_alike_with_ours_and_torchs(cls):
    """The same groups, our optimizer and torch's: the same weights, bit for bit."""
    kw = dict(lr=0.01) if cls == "AdamW" else dict(lr=0.05, momentum=0.9)
    finals = []
    for module in (co, torch.optim):
        torch.manual_seed(0)
        m = Tiny().double()
        opt = getattr(module, cls)(param_groups(m, 0.1), **kw)
        gen = torch.Generator().manual_seed(1)
        for _ in range(5):
            idx = torch.randint(0, 10, (8,), generator=gen)
            loss = nn.functional.cross_entropy(m(idx), idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
        finals.append([p.detach().clone() for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*finals, strict=True))


def test_biases_do_not_decay():
    """With zero gradients only decay moves a weight: the no-decay group stays put."""
    m = nn.Linear(3, 3)
    opt = co.AdamW(param_groups(m, 0.5), lr=0.1)
    w0, b0 = m.weight.detach().clone(), m.bias.detach().clone()
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(m.bias.detach(), b0)
    torch.testing.assert_close(m.weight.detach(), w0 * (1 - 0.1 * 0.5))
