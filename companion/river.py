r"""The River multiplier: a learning-rate factor driven by the trend of the loss variance.

Section 6.5 (overview in 6.2.3): the book's illustrative, unvalidated heuristic, not a
published method. The learning rate of update :math:`t` is a schedule times the multiplier,
:math:`\eta_t = s(t)\,\rho_{t-2}` in the default loop. The reduction of the batch
statistics over the ranks of ``torch.distributed`` lives in :mod:`companion._river_dist`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

from companion import _river_checks, _river_dist, _river_state

__all__ = ["River"]


class River:
    r"""Learning-rate multiplier from the trend of the per-example loss variance (6.5).

    For each accepted batch :math:`B_t` (:math:`t = 0, 1, \dots` counts accepted batches)
    of :math:`N` per-example losses :math:`\ell_i`, :meth:`observe` computes

    .. math::
        V_t &= \frac1N \sum_{i \in B_t} \bigl(\ell_i - \bar\ell\bigr)^2, \\
        u_t &= \beta_v\, u_{t-1} + (1 - \beta_v)\, V_t, \qquad
        r_t = \beta_r\, r_{t-1} + (1 - \beta_r)\, u_t, \\
        \rho_t &= \operatorname{clip}\Bigl(\frac{r_t}{u_t + \epsilon\, r_t},\
        \rho_{\min},\ \rho_{\max}\Bigr)

    (``eps_mode="absolute"``: :math:`u_t + \epsilon` in the denominator). Under a constant
    variance, whatever its level, :math:`\rho_t \to 1`; :math:`\rho_t < 1` while the
    variance rises and :math:`\rho_t > 1` while it falls. A batch with fewer than two
    examples or a non-finite loss is skipped (nothing changes); until a batch is accepted
    the multiplier is 1 (clipped). Under ``torch.distributed`` the batch is the union of
    the ranks' shards, so every rank holds the same multiplier. The state lives on the
    losses' device; on an accelerator no value is read back to the host.

    Parameters
    ----------
    beta_v : float, default 0.99
        :math:`\beta_v \in (0, 1)`, the rate of the fast average :math:`u_t`.
    beta_r : float, default 0.999
        :math:`\beta_r \in (0, 1)`, the rate of the slow reference :math:`r_t`.
    eps : float, default 1e-8
        :math:`\epsilon > 0`.
    eps_mode : {"relative", "absolute"}, default "relative"
        :math:`\epsilon r_t` (scale-free, :math:`\rho_t \le 1/\epsilon`) or :math:`\epsilon`.
    clip : pair of float, default (0.1, 10.0)
        :math:`(\rho_{\min}, \rho_{\max})`, :math:`0 < \rho_{\min} \le \rho_{\max} < \infty`.
    init : {"first", "zero", "zero-debiased"}, default "first"
        ``"first"``: :math:`u_0 = r_0 = V_0`. ``"zero"``: :math:`u_{-1} = r_{-1} = 0`.
        ``"zero-debiased"``: zero start with Adam's correction,
        :math:`\hat u_t = u_t / (1 - \beta_v^{t+1})`, :math:`r_t` averages :math:`\hat u_t`
        and :math:`\hat r_t = r_t / (1 - \beta_r^{t+1})`; :attr:`variance` and
        :attr:`target` are then the corrected values.
    use_current_batch : bool, default False
        ``False``: after observing :math:`B_t` the multiplier is :math:`\rho_{t-1}`, so
        it never depends on the batch just observed. ``True``: :math:`\rho_t`.
    dtype : torch.dtype, optional
        Dtype of the state; default the losses' dtype promoted to at least float32.
    process_group : "auto", None or torch.distributed.ProcessGroup, default "auto"
        Reduce the batch statistics over this group (``"auto"``: the default group once
        ``torch.distributed`` is initialised with two processes or more; ``None``: never).

    Examples
    --------
    The loop of the book (the learning rate of update :math:`t` never sees :math:`B_t`)::

        losses = loss_fn(model(x), y, reduction="none")
        losses.mean().backward()
        optimizer.step(); optimizer.zero_grad()
        river.observe(losses.detach())
        scheduler.step()            # ScheduledLR(..., multiplier=river): s(t + 1) * rho

    The same loop, faster: one kernel gives the mean to ``backward`` and :math:`V_t` to
    River (:meth:`observe_variance`), so River computes no statistic of its own::

        variance, loss = torch.var_mean(losses, correction=0)
        loss.backward()
        optimizer.step(); optimizer.zero_grad()
        river.observe_variance(variance)
        scheduler.step()

    >>> import torch
    >>> river = River(beta_v=0.9, beta_r=0.99, use_current_batch=True)
    >>> _ = river.observe(torch.tensor([0.0, 2.0]))   # V_0 = 1: u_0 = r_0 = 1
    >>> round(float(river.multiplier), 6)
    1.0
    >>> _ = river.observe(torch.tensor([0.0, 4.0]))   # V_1 = 4: u_1 = 1.3, r_1 = 1.003
    >>> round(float(river.multiplier), 4)              # 1.003 / 1.3: the variance rose
    0.7715
    """

    def __init__(
        self,
        beta_v: float = 0.99,
        beta_r: float = 0.999,
        eps: float = 1e-8,
        eps_mode: str = "relative",
        clip: tuple[float, float] = (0.1, 10.0),
        init: str = "first",
        use_current_batch: bool = False,
        dtype: torch.dtype | None = None,
        process_group: Any = "auto",
    ) -> None:
        given = locals()
        self._cfg = _river_checks.check_config({k: given[k] for k in _river_checks.CONFIG_KEYS})
        self._process_group = _river_dist.check_process_group(process_group)
        self._verified: tuple[torch.dtype, torch.device] | None = None  # agreed across ranks
        self._clear()

    def _clear(self) -> None:
        """No state: before the first batch."""
        # u_t, r_t (corrected for "zero-debiased"), the weights (w_u, w_r) of the next
        # batch, rho of the state and the rho to apply: values of the state's kind (see
        # _river_state.StateOps), replaced at each update. The accepted count: an int on the host; on
        # a device a 0-d int64 tensor and the verdicts (bool) not yet added to it.
        self._v = self._r = self._wv = self._wr = self._next = None
        self._step: Any = None
        self._pending: list[torch.Tensor] = []
        self._k: _river_state.StateOps | None = None
        self._device: torch.device | None = None
        self._observed = 0  # calls of observe (host-side count)
        lo, hi = self._cfg["clip"]
        self._multiplier: Any = torch.tensor(min(max(1.0, lo), hi), dtype=torch.float32)

    # ------------------------------------------------------------------ configuration
    # Read-only: the hyperparameters change only through load_state_dict.
    beta_v = property(
        lambda self: self._cfg["beta_v"], doc=r"The rate :math:`\beta_v` of :math:`u_t`."
    )
    beta_r = property(
        lambda self: self._cfg["beta_r"], doc=r"The rate :math:`\beta_r` of :math:`r_t`."
    )
    eps = property(lambda self: self._cfg["eps"], doc=r"The :math:`\epsilon` of the denominator.")
    eps_mode = property(lambda self: self._cfg["eps_mode"], doc='"relative" or "absolute".')
    clip = property(lambda self: self._cfg["clip"], doc=r":math:`(\rho_{\min}, \rho_{\max})`.")
    init = property(lambda self: self._cfg["init"], doc="How both averages start.")
    use_current_batch = property(
        lambda self: self._cfg["use_current_batch"],
        doc=r"Whether :math:`\rho_t` (not :math:`\rho_{t-1}`) is applied.",
    )
    dtype = property(
        lambda self: self._cfg["dtype"], doc="The state's dtype, or None for the losses'."
    )
    process_group = property(lambda self: self._process_group, doc="'auto', None or a group.")

    def __deepcopy__(self, memo: dict[int, Any]) -> River:
        """A deep copy that shares the process group (a group cannot be copied)."""
        group = self._process_group
        if group is not None and not isinstance(group, str):
            memo[id(group)] = group
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._cfg.items())
        group = self._process_group
        shown = repr(group) if group is None or isinstance(group, str) else "<ProcessGroup>"
        return f"River({args}, process_group={shown})"

    # ------------------------------------------------------------------ read-only values
    # New tensors: a caller's in-place edit never reaches the state (no host sync).
    @property
    def multiplier(self) -> torch.Tensor:
        r"""The multiplier :math:`\rho` to apply now, a 0-d tensor (a copy)."""
        k = self._k
        return self._multiplier.clone() if k is None else k.export(self._multiplier)

    def multiplier_float(self) -> float | None:
        r""":attr:`multiplier` as a Python float where reading it is free (state on the CPU).

        ``None`` where the state lives on an accelerator: reading would wait for it.
        """
        k = self._k
        if k is not None and k.host:  # the state's own float
            return self._multiplier
        return float(self._multiplier) if k is None or k.cpu else None

    @property
    def variance(self) -> torch.Tensor | None:
        r""":math:`u_t` (:math:`\hat u_t` for ``"zero-debiased"``); a copy, None before data."""
        return None if self._k is None else self._k.export(self._v)

    @property
    def target(self) -> torch.Tensor | None:
        r""":math:`r_t` (:math:`\hat r_t` for ``"zero-debiased"``); a copy, None before data."""
        return None if self._k is None else self._k.export(self._r)

    @property
    def num_accepted(self) -> torch.Tensor | None:
        """Number of batches that entered the averages (0-d int64 tensor, a copy)."""
        if self._k is None:
            return None
        n = self._accepted()
        return n.clone() if isinstance(n, torch.Tensor) else torch.tensor(n)

    @property
    def num_skipped(self) -> torch.Tensor | int:
        """Number of batches skipped (fewer than 2 examples or a non-finite loss)."""
        return 0 if self._k is None else self._observed - self._accepted()

    def _accepted(self) -> torch.Tensor | int:
        """The accepted count; on a device the verdicts are added up when read or every 256."""
        if self._pending:
            self._step = self._step + torch.stack(self._pending).sum()
            self._pending = []
        return self._step

    # ------------------------------------------------------------------ the update
    def observe(self, per_example_losses: torch.Tensor) -> torch.Tensor:
        r"""Update the averages with batch :math:`B_t`; return the multiplier to apply next.

        Parameters
        ----------
        per_example_losses : torch.Tensor
            1-d, floating: the losses of the batch's examples (``reduction="none"``), on
            one device throughout. Under a process group each rank passes its own shard,
            which may be empty.

        Returns
        -------
        torch.Tensor
            A copy of :attr:`multiplier`: :math:`\rho_{t-1}`, or :math:`\rho_t` with
            ``use_current_batch=True`` (0-d, on the losses' device).

        Raises
        ------
        TypeError
            If the losses are not a floating-point tensor.
        ValueError
            If they are not 1-d and non-empty, or are on another device than the state;
            under a process group, on every rank, if the ranks' dtypes or device types
            differ or any rank's losses are invalid.
        """
        losses = per_example_losses
        k = self._k
        # The common case: a state of Python floats; losses of its dtype on the CPU, 1-d, of
        # 2 examples or more, with no graph; no ranks. V_t, read, is then a state value.
        if (
            k is not None
            and k.host
            and losses.__class__ is torch.Tensor
            and losses.dtype is k.dtype
            and losses.is_cpu
            and len(shape := losses.shape) == 1
            and shape[0] > 1
            and not losses.requires_grad
            and _river_dist.is_local(self._process_group)
        ):
            self._observed += 1
            return self._take(k, k.variance(losses).item(), None)
        var, accept = None, None
        group = _river_dist.active_group(self._process_group)
        problem = _river_checks.losses_problem(losses, self._device, allow_empty=group is not None)
        if group is not None:
            var, accept, self._verified = _river_dist.reduced_variance(
                losses, problem, group, self._verified
            )
        elif problem is not None:
            raise problem
        if k is None:
            self._init_state(losses.dtype, losses.device)
            k = self._k
        self._observed += 1
        if var is None:  # not reduced over ranks
            if losses.shape[0] < 2:  # host metadata: skipped without a synchronisation
                self._multiplier = self._next
                return k.export(self._next)
            var = _river_state.batch_variance(losses, k.dtype)
        return self._take(k, k.load(var), accept)

    def observe_variance(self, batch_variance: torch.Tensor) -> torch.Tensor:
        r"""Update the averages with :math:`V_t`, the variance of batch :math:`B_t`, as given.

        For a loop that reduces its losses with :func:`torch.var_mean`, one kernel that
        gives both the mean to ``backward`` and :math:`V_t` (the faster loop of the
        class's Examples): River then computes no statistic of its own. Given the variance
        :meth:`observe` computes (``torch.var_mean(losses, correction=0)[0]`` for float32
        losses on the CPU), the two agree bit for bit.

        Parameters
        ----------
        batch_variance : torch.Tensor
            0-d, floating: :math:`V_t` (``correction=0``) of a batch of two examples or
            more, on the state's device. NaN or infinite (a non-finite loss) skips the
            batch, as in :meth:`observe`.

        Returns
        -------
        torch.Tensor
            As :meth:`observe`.

        Raises
        ------
        TypeError
            If it is not a floating-point tensor.
        ValueError
            If it is not 0-d, or is on another device than the state. If it is negative
            and on the CPU (on an accelerator, where reading it would wait, a negative
            value is skipped instead). If called under a process group: the ranks'
            variances cannot be combined without their means; use :meth:`observe`.
        """
        var = batch_variance
        if not isinstance(var, torch.Tensor) or not var.is_floating_point() or var.is_meta:
            what = var.dtype if isinstance(var, torch.Tensor) else type(var).__name__
            what = "a meta tensor (no value)" if getattr(var, "is_meta", False) else what
            raise TypeError(f"batch_variance must be a floating-point tensor, got {what}")
        if var.dim() != 0:
            raise ValueError(f"batch_variance must be 0-d, got shape {tuple(var.shape)}")
        if self._device is not None and var.device != self._device:
            raise ValueError(
                f"batch_variance is on {var.device}, River's state on {self._device}; keep one"
            )
        if not _river_dist.is_local(self._process_group) and _river_dist.active_group(
            self._process_group
        ):
            raise ValueError(
                "batch_variance: under a process group River reduces the losses of every "
                "rank itself; call observe(per_example_losses) instead"
            )
        value = var.item() if var.is_cpu else None  # read where reading is free
        if value is not None and value < 0:
            raise ValueError(f"batch_variance must be >= 0 (or NaN/inf: skipped), got {value}")
        if self._k is None:
            self._init_state(var.dtype, var.device)
        k = self._k
        self._observed += 1
        if k.host:  # a host state lives on the CPU: value was read
            return self._take(k, k.fit(value), None)
        return self._take(k, k.load(var.detach()), None)

    def _take(self, k: _river_state.StateOps, var: Any, accept: torch.Tensor | None) -> Any:
        """Average in ``var`` (a value of the state's kind); the multiplier to apply, a copy."""
        if self._cfg["use_current_batch"]:
            return k.export(self._update(var, accept))
        out = k.export(self._next)  # rho_{t-1}: known before the update
        self._update(var, accept)
        return out

    def _init_state(self, loss_dtype: torch.dtype, device: torch.device) -> None:
        dtype = self._cfg["dtype"] or torch.promote_types(loss_dtype, torch.float32)
        k = _river_state.StateOps(self._cfg, dtype, device)
        self._adopt(k, k.zero, k.zero, 0, k.start, k.multiplier(k.zero, k.zero))

    def _adopt(
        self, k: _river_state.StateOps, v: Any, r: Any, step: Any, weights: Any, applied: Any
    ) -> None:
        """Take a state (values of ``k``'s kind; ``step`` an int or a 0-d int64 tensor)."""
        self._k, self._device = k, k.device
        self._v, self._r, (self._wv, self._wr) = v, r, weights
        if not k.host and not isinstance(step, torch.Tensor):
            step = torch.tensor(step, dtype=torch.int64, device=k.device)
        self._step = step
        self._multiplier = applied
        # The multiplier of the current state: applied next in "past" mode.
        self._next = applied if self._cfg["use_current_batch"] else k.multiplier(v, r)

    def _update(self, var: Any, accept: torch.Tensor | None) -> Any:
        """Average in a batch of variance ``var`` (a value of the state's kind); return
        the multiplier to apply now (a value of the state's kind).

        The batch is kept where ``accept`` (default true) holds and ``var`` is finite, >= 0;
        otherwise every value stays exactly as it was: on the host by a branch, on a device
        by ``where`` there (the new values are computed either way), so that no value is
        read back.
        """
        k = self._k
        valid = (var >= k.zero) & (var < k.inf)  # false for NaN, +inf and a negative var
        if accept is not None:
            valid = valid & (bool(accept) if k.host else accept)
        if k.host:  # a branch on a host value is free
            if not valid:  # skipped: the state, hence the multiplier, stays as it was
                self._multiplier = self._next
                return self._next
            self._step += 1
        v0, r0, wv, wr = old = self._v, self._r, self._wv, self._wr
        v = k.mix(v0, var, wv)
        r = k.mix(r0, v, wr)
        if k.debiased:  # Adam's correction: 1 / (1 + beta / w) per batch
            new = (v, r, k.fit(wv / (wv + k.beta_v)), k.fit(wr / (wr + k.beta_r)))
        else:
            new = (v, r, k.rate_v, k.rate_r)
        if not k.host:  # on a device: the new values or (skipped) the old ones, chosen there
            new = tuple(map(torch.where, (valid,) * 4, new, old))
            self._pending.append(valid)  # counted later (see _accepted)
            if len(self._pending) >= 256:
                self._accepted()
        v, r, self._wv, self._wr = new
        self._v, self._r = v, r
        m = k.multiplier(v, r)  # rho_t
        if self._cfg["use_current_batch"]:
            self._next = m
        else:  # rho_{t-1} is applied, rho_t kept for the next batch
            self._next, m = m, self._next
        self._multiplier = m
        return m

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and state (tensors cloned); ``"state"`` is None before data.

        Restored by :meth:`load_state_dict`, a River continues bit for bit.
        """
        state = None
        k = self._k
        if k is not None:
            step = self._accepted()
            state = {
                "v": k.export(self._v),
                "r": k.export(self._r),
                "step": step.clone() if isinstance(step, torch.Tensor) else torch.tensor(step),
                "multiplier": k.export(self._multiplier),
                "weights": torch.stack([k.export(self._wv), k.export(self._wr)]),
                "observed": self._observed,
            }
        return {**self._cfg, "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and state from :meth:`state_dict`'s output.

        Everything is validated before anything changes. The tensors keep their dtype and
        move to the device of this River's state if it has one.

        Raises ``TypeError`` for a wrong type (of ``state_dict``, of a hyperparameter) and
        ``ValueError`` for a missing key or a wrong value, shape or dtype.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        missing = [k for k in (*_river_checks.CONFIG_KEYS, "state") if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict is missing keys {missing}")
        config = _river_checks.check_config(state_dict)
        raw = state_dict["state"]
        state = None if raw is None else _river_checks.checked_state(raw, config, self._device)
        # Validated: now mutate.
        self._cfg = config
        self._clear()
        if state is not None:
            k = _river_state.StateOps(config, state["v"].dtype, state["v"].device)
            weights = tuple(k.load(w) for w in state["weights"].unbind())
            step = state["step"].item() if k.host else state["step"]
            v, r, applied = (k.load(state[key]) for key in ("v", "r", "multiplier"))
            self._adopt(k, v, r, step, weights, applied)
            self._observed = int(raw["observed"])
