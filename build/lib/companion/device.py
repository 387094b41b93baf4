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

    Raises
    ------
    ValueError
        ``prefer`` or ``COMPANION_DEVICE`` names a device that this machine does not have
        (``cuda:7`` on a machine with fewer GPUs, ``mps`` off Apple silicon) or no device
        at all -- at once, rather than far from the cause.

    Examples
    --------
    >>> default_device("cpu")
    device(type='cpu')
    """
    if prefer is not None:
        return _available("prefer", prefer)
    choice = os.environ.get("COMPANION_DEVICE")
    if choice:
        return _available("COMPANION_DEVICE", choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _available(name: str, choice: str) -> torch.device:
    """``torch.device(choice)``, checked to exist on this machine."""
    if not isinstance(choice, str):
        raise TypeError(f"{name} must be a device string such as 'cpu' or 'cuda:0', got {choice!r}")
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a device string such as 'cpu', 'cuda' or 'cuda:0', got {choice!r}"
        ) from error
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise ValueError(
                f"{name}={choice!r} names a CUDA device this machine does not have "
                f"({count} CUDA device{'s' if count != 1 else ''} available)"
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{name}={choice!r}: Apple's MPS is not available on this machine")
    elif device.type not in ("cpu", "meta"):
        module = getattr(torch, device.type, None)
        if module is None or not getattr(module, "is_available", lambda: False)():
            raise ValueError(f"{name}={choice!r}: no {device.type} device on this machine")
    return device
