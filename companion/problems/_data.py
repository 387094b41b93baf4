"""The digits data set and the small MLP of the chapters' training experiments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from companion._validation import check_integer, check_real

__all__ = ["Split", "digits", "mlp"]


@dataclass(frozen=True)
class Split:
    """A train/test split of a classification data set, as tensors on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_test]).max()) + 1


def digits(
    seed: int = 0,
    test_fraction: float = 0.25,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Split:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes; no download).

    Pixels are scaled to [0, 1] and standardised with the *training* set's mean and
    standard deviation. The split is stratified-free but seeded: the same ``seed``
    always gives the same split.

    Parameters
    ----------
    seed : int
        Seed of the shuffle that makes the split.
    test_fraction : float
        Share of the examples held out, in (0, 1).
    device, dtype
        Where and how the tensors are stored.

    Examples
    --------
    >>> split = digits(seed=0)
    >>> split.x_train.shape, split.x_test.shape, split.num_classes
    (torch.Size([1348, 64]), torch.Size([449, 64]), 10)
    """
    seed = check_integer("seed", seed, low=0)
    test_fraction = check_real(
        "test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True
    )
    dtype = _floating_dtype(dtype)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must name a torch device ('cpu', 'cuda:0', ...), got {device!r}"
        ) from None
    from sklearn.datasets import load_digits  # the book's extra, not a runtime dependency

    data = load_digits()
    x = data.data.astype(np.float64) / 16.0
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    if not 0 < n_test < len(y):
        raise ValueError(
            f"test_fraction={test_fraction} leaves {n_test} of {len(y)} examples for the test "
            "set: both sets must be non-empty"
        )
    test, train = order[:n_test], order[n_test:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0) + 1e-6
    x = (x - mean) / std

    def to(a: np.ndarray, kind: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(a, dtype=kind, device=device)

    return Split(
        to(x[train], dtype), to(y[train], torch.long), to(x[test], dtype), to(y[test], torch.long)
    )


def _floating_dtype(dtype: Any) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


def mlp(
    in_features: int,
    hidden: int,
    out_features: int,
    depth: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A seeded multilayer perceptron with ``depth`` hidden ReLU layers of width ``hidden``.

    Examples
    --------
    >>> model = mlp(64, 32, 10, seed=0)
    >>> sum(p.numel() for p in model.parameters())
    2410
    """
    in_features = check_integer("in_features", in_features, low=1)
    hidden = check_integer("hidden", hidden, low=1)
    out_features = check_integer("out_features", out_features, low=1)
    depth = check_integer("depth", depth, low=1)
    seed = check_integer("seed", seed, low=0, high=2**64 - 1)  # a torch seed
    dtype = _floating_dtype(dtype)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        model = nn.Sequential(*layers)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.to(device=device, dtype=dtype)
