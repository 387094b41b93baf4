"""Parameter groups with and without weight decay, as large-model recipes build them.

nanoGPT, timm and Hugging Face's ``Trainer`` all exempt biases and normalisation
weights from weight decay (section 6.3.2: decay shrinks weights towards zero, which for
a bias or a norm's scale only fights the data). :func:`param_groups` builds the two
groups for any optimizer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from companion._validation import check_flag, check_real

__all__ = ["param_groups"]

NoDecay = Callable[[str, nn.Parameter], bool] | Iterable[str] | None


def _matcher(no_decay: NoDecay) -> Callable[[str, nn.Parameter], bool]:
    """``no_decay`` as a predicate ``(name, parameter) -> bool``."""
    if no_decay is None:
        return lambda name, p: False
    if callable(no_decay):
        try:
            inspect.signature(no_decay).bind("name", None)
        except TypeError as err:  # a predicate of the wrong arity
            raise TypeError(
                f"no_decay must be a predicate f(name, parameter) -> bool: {err}"
            ) from None
        except ValueError:  # no signature to inspect (some builtins): take it as it is
            pass
        return no_decay
    if isinstance(no_decay, (str, bytes)) or not isinstance(no_decay, Iterable):
        raise TypeError(
            "no_decay must be None, a predicate f(name, parameter) -> bool or a list of "
            f"parameter names, got {no_decay!r}"
        )
    names = tuple(no_decay)
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"no_decay[{i}] must be a parameter name (a str), got {name!r}")
    return lambda name, p: any(name == s or name.endswith("." + s) for s in names)


def param_groups(
    model: nn.Module,
    weight_decay: float,
    no_decay: NoDecay = None,
    *,
    no_decay_embeddings: bool = False,
) -> list[dict[str, Any]]:
    r"""Two parameter groups: ``weight_decay`` for the weight matrices, ``0`` for the rest.

    A trainable parameter goes to the no-decay group when

    * it has at most one dimension -- biases, the scales and shifts of ``LayerNorm``,
      ``BatchNorm``, ``GroupNorm`` and ``RMSNorm`` (nanoGPT's rule: ``p.dim() < 2``);
    * ``no_decay_embeddings=True`` and it is the weight of an ``nn.Embedding`` or
      ``nn.EmbeddingBag`` (also where it is tied to another layer, e.g. an output
      projection);
    * ``no_decay`` selects it: a list of names, each matching a parameter's full name
      or its last components (``"bias"``, ``"pos_embed"``, ``"encoder.cls_token"``, as
      timm's ``no_weight_decay`` list), or a predicate ``no_decay(name, parameter)``.

    Everything else (the matrices and convolution kernels) decays. A parameter shared
    by several modules is listed once, under the name ``model.named_parameters()``
    gives it; frozen parameters (``requires_grad=False``) are left out, as the recipes
    do.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose parameters to split.
    weight_decay : float
        :math:`\lambda \ge 0` of the decaying group.
    no_decay : list of str or callable, optional
        Further parameters to exempt (above).
    no_decay_embeddings : bool
        Exempt embedding tables too (default ``False``: they decay, as in nanoGPT).

    Returns
    -------
    list of dict
        ``[{"params": [...], "weight_decay": weight_decay}, {"params": [...],
        "weight_decay": 0.0}]``, in the model's parameter order; both groups are always
        present (either may be empty), ready for any ``torch.optim`` or
        :mod:`companion.optim` optimizer.

    Examples
    --------
    >>> import torch
    >>> from companion.optim import AdamW, param_groups
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8))
    >>> groups = param_groups(model, weight_decay=0.1)
    >>> [len(g["params"]) for g in groups]  # the weight; bias, LN scale, LN shift
    [1, 3]
    >>> optimizer = AdamW(groups, lr=1e-3)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    lam = check_real("weight_decay", weight_decay, low=0)
    exempt_by_name = _matcher(no_decay)
    embeddings = set()
    if check_flag("no_decay_embeddings", no_decay_embeddings):
        for module in model.modules():
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
                embeddings.add(id(module.weight))
    decay: list[torch.nn.Parameter] = []
    exempt: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():  # shared parameters come once
        if not p.requires_grad:
            continue
        if p.dim() < 2 or id(p) in embeddings or exempt_by_name(name, p):
            exempt.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": lam}, {"params": exempt, "weight_decay": 0.0}]
