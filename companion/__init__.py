"""companion: the code of the chapter *6 More advanced optimization ideas*.

Layers (a lower layer never imports a higher one):

1. :mod:`companion.schedules` -- closed-form learning-rate schedules (numpy only).
2. :mod:`companion.theory` -- the chapter's formulas as functions (numpy only).
3. :mod:`companion.optim` -- drop-in ``torch.optim`` optimizers (SGD, Adam, AdamW, AMSGrad).
4. :mod:`companion.river` -- the landscape-aware learning-rate multiplier of section 6.5.
5. :mod:`companion.lr_scheduler` -- :class:`ScheduledLR`, which drives any torch optimizer
   from a schedule (optionally times a multiplier).
6. :mod:`companion.problems`, :mod:`companion.training`, :mod:`companion.plotting`,
   :mod:`companion.formatting` -- what the notebooks need (toy objectives, data, a
   training loop, a plot style, numbers written as the text prints them).

Beside them, :mod:`companion.device` picks the default device (torch only; no layer
depends on it).

Submodules are imported on first use, so ``import companion`` stays light and
``companion.plotting`` (which needs matplotlib) is only loaded when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "device",
    "schedules",
    "theory",
    "optim",
    "river",
    "lr_scheduler",
    "problems",
    "training",
    "plotting",
)
_EXPORTS = {"ScheduledLR": "lr_scheduler", "River": "river", "default_device": "device"}

__all__ = [*_SUBMODULES, *_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"companion.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"companion.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'companion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
