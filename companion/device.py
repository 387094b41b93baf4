"""One device helper for every chapter: CUDA when present, then Apple's MPS, else the CPU."""

from __future__ import annotations

import os

import torch

__all__ = ["default_device"]


def default_device(prefer: str | None = None) -> torch.device:
    """Return the device the notebooks compute on.

    Parameters
    ----------
    prefer : str, optional
        Force a device (``"cpu"``, ``"cuda"``, ``"mps"``). Without it the environment
        variable ``COMPANION_DEVICE`` is honoured, then the first available of CUDA,
        MPS and the CPU is chosen.

    Returns
    -------
    torch.device

    Examples
    --------
    >>> default_device("cpu")
    device(type='cpu')
    """
    choice = prefer or os.environ.get("COMPANION_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
