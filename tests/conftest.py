"""Shared fixtures: every test that can run on CUDA is parametrised over the devices."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _device_params():
    params = [pytest.param("cpu", id="cpu")]
    params.append(
        pytest.param(
            "cuda",
            id="cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        )
    )
    return params


@pytest.fixture(params=_device_params())
def device(request) -> torch.device:
    """A torch device: the CPU always, CUDA when a GPU is present (skipped otherwise)."""
    return torch.device(request.param)
