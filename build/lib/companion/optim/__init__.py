"""Drop-in ``torch.optim`` optimizers of the chapter (section 6.3 and the SGD baseline).

* :class:`SGD` -- momentum, dampening, Nesterov, L2 weight decay;
* :class:`Adam` -- weight decay as L2 coupled into the gradient ("Adam with L2");
* :class:`AdamW` -- decoupled decay, ``decay="torch"`` (PyTorch's) or ``decay="paper"``
  (Loshchilov & Hutter's Algorithm 2);
* :class:`AMSGrad` -- Reddi et al.'s Algorithm 2, and the PyTorch and optax variants.

One update kernel per family (:mod:`companion.optim.sgd`, :mod:`companion.optim.adam`),
each with a readable reference path and a multi-tensor path; ``fused=True`` calls
PyTorch's fused kernel where it computes exactly the same update. State keys match
``torch.optim``'s, so their ``state_dict`` load into each other.
"""

from __future__ import annotations

from .adam import Adam, AdamW
from .amsgrad import AMSGrad
from .sgd import SGD

__all__ = ["SGD", "AMSGrad", "Adam", "AdamW"]
