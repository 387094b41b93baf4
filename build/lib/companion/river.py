r"""The River multiplier: a learning-rate factor driven by the trend of the loss variance.

Section 6.5 of the chapter (overview in 6.2.2). The learning rate of step :math:`t` is a
time-based schedule times a multiplier computed from the spread of the per-example losses,

.. math:: \eta_t = \eta^{\text{global}}_t \, m_{t-2}

by default, in the recommended loop (``observe`` after the optimizer step, then the
scheduler's step); with ``use_current_batch=True`` the multiplier applied is
:math:`m_{t-1}`. Either way the rate of a step never depends on that step's own batch.

This is the book's *illustrative, unvalidated heuristic*, named after the river-valley
metaphor; it is not a published method. (The draft attributed it to arXiv:2410.05192, which is Wen et al.,
"Understanding Warmup-Stable-Decay Learning Rates: A River Valley Loss Landscape
Perspective" (2024): that paper explains WSD schedules with a river-valley landscape and
contains no such multiplier.) Its closest published relatives use the *gradient* variance
instead: vSGD (Schaul, Zhang & LeCun, 2013), M-SVAG (Balles & Hennig, 2018), the gradient
noise scale (McCandlish et al., 2018).

The multiplier reacts to the *trend* of the loss variance, not to its level: under any
constant variance :math:`m_t \to 1`; :math:`m_t < 1` while the variance rises and
:math:`m_t > 1` while it falls.

Under ``torch.distributed`` the statistics of a batch are all-reduced over the ranks
(``River(process_group="auto")``, the default), so every rank holds the same multiplier;
``process_group=None`` keeps them local (see :class:`River`, *Distributed training*).
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["River"]

# Whether this torch build has torch.distributed at all (a build-time constant).
_DIST = dist.is_available()

_INITS = ("first", "zero", "zero-debiased")
_EPS_MODES = ("relative", "absolute")
_STATE_KEYS = ("v", "r", "step", "multiplier")
_PENDING = 256  # batches whose acceptance River adds up at once (see River._accepted)
_CONFIG_KEYS = (
    "beta_v",
    "beta_r",
    "eps",
    "eps_mode",
    "clip",
    "init",
    "use_current_batch",
    "dtype",
)


def _batch_moments(
    losses: torch.Tensor, shift: torch.Tensor | None = None
) -> tuple[int, torch.Tensor, torch.Tensor]:
    r"""Count and shifted power sums of one batch: :math:`(N, \sum d_i, \sum d_i^2)`.

    With :math:`d_i = L_i - c`. Such sums add up across batches or devices (an all-reduce
    with ``SUM``) when every part uses the same shift :math:`c`, which is why the variance
    is computed from them. The default shift is the batch's first loss,
    :math:`c = L_1`: since :math:`(L_1 - \bar L)^2 \le N \operatorname{Var}`, the
    subtraction in :func:`_variance_from_moments` then loses at most a factor :math:`N` of
    relative precision, however large the losses are against their spread. The sums are
    accumulated in float64 (float32 on MPS, which has no float64).

    Parameters
    ----------
    losses : torch.Tensor
        1-d per-example losses.
    shift : torch.Tensor, optional
        0-d shift :math:`c` (on ``losses.device``); default ``losses[0]``.

    Returns
    -------
    tuple
        ``(N, sum, sum_of_squares)``: a Python int and two 0-d tensors on ``losses.device``.
    """
    x = losses.to(torch.float32 if losses.device.type == "mps" else torch.float64)
    d = x - (x[0] if shift is None else shift.to(x.dtype))
    return d.numel(), d.sum(), torch.dot(d, d)


def _variance_from_moments(
    count: int | torch.Tensor, total: torch.Tensor, total_sq: torch.Tensor
) -> torch.Tensor:
    r"""Population variance from :func:`_batch_moments`' output (it ignores the shift).

    .. math::
        \operatorname{Var} = \max\Bigl(0,\ \frac{\sum d_i^2}{N}
        - \Bigl(\frac{\sum d_i}{N}\Bigr)^2\Bigr)
    """
    if isinstance(count, int):  # the local case: two operations fewer
        return (
            torch.addcmul(total_sq, total, total, value=-1.0 / count)
            .mul_(1.0 / count)
            .clamp_min_(0.0)
        )
    mean = total / count
    return torch.addcmul(total_sq / count, mean, mean, value=-1.0).clamp_min_(0.0)


def _accumulation_dtype(device: torch.device) -> torch.dtype:
    """float64 for the batch statistics; float32 on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _batch_variance(losses: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    r"""Population variance of one batch from its shifted values, in ``acc`` (float64).

    .. math::
        \operatorname{Var} = \frac1N \sum_i \bigl(d_i - \bar d\bigr)^2,
        \qquad d_i = L_i - L_1 .

    Since :math:`|d_i| \le 2\sqrt{N \operatorname{Var}}`, the rounding of the shift (a
    relative error of at most half an ulp of float64 per :math:`d_i`, none where
    :math:`L_1/2 \le L_i \le 2 L_1`) moves the variance by a few :math:`\sqrt N` ulps
    at most, however large the losses are against their spread; :func:`torch.var_mean`
    then centres the :math:`d_i` on their own mean (it accumulates in ``acc``). Four
    operations (three for float64 losses), against eight for :func:`_batch_moments` and
    :func:`_variance_from_moments`, whose sums the distributed path needs.

    Parameters
    ----------
    losses : torch.Tensor
        1-d per-example losses with at least one element (not requiring grad).
    acc : torch.dtype
        Accumulation dtype, from :func:`_accumulation_dtype`.

    Returns
    -------
    torch.Tensor
        0-d ``acc`` tensor on ``losses.device``.
    """
    x = losses if losses.dtype == acc else losses.to(acc)
    return torch.var_mean(x - x[0], correction=0)[0]


@lru_cache(maxsize=1)
def _cpu_var_mean_accumulates_float32_in_float64() -> bool:
    r"""Whether :func:`torch.var_mean` of float32 on the CPU is as accurate as in float64.

    ATen's CPU kernel runs Welford's recurrence with float64 accumulators for float32
    input, so the result is the variance rounded to float32 (to within about an ulp):
    River then skips the conversion and the shift of :func:`_batch_variance` (four
    operations of five). That is an implementation detail, not a documented promise, so
    it is checked once per process, on losses like an untrained classifier's (all about
    :math:`\log 10`, spread :math:`10^{-6}`), where float32 accumulators err by percents.
    """
    x = (math.log(10.0) + 1e-6 * torch.linspace(-1.0, 1.0, 64, dtype=torch.float64)).float()
    got = torch.var_mean(x, correction=0)[0].item()
    want = _batch_variance(x, torch.float64).item()
    return abs(got - want) <= 1e-6 * want


class _Constants:
    """A River's hyperparameters as 0-d tensors on its state's device and dtype.

    Built once, when the state is created or loaded: an operation with a Python number
    wraps the number into a tensor on every call, which costs as much again as the
    operation itself. For ``init="first"`` it also holds the EMA rates of the next
    update, a 2-vector updated in place (and read through two views): ``[1, 1]`` until
    the first batch is accepted, then ``[1 - beta_v, 1 - beta_r]``; it follows from the
    number of accepted batches, so it is not part of the state dict.
    """

    __slots__ = (
        "acc",
        "debias",
        "direct",
        "dtype",
        "eps",
        "hi",
        "inf",
        "lo",
        "log_betas",
        "neutral",
        "rates",
        "relative",
        "weights",
        "wr",
        "wv",
        "zero",
    )

    def __init__(
        self,
        cfg: Mapping[str, Any],
        neutral: float,
        dtype: torch.dtype,
        device: torch.device,
        accepted_any: bool,
    ) -> None:
        def tensor(value: Any) -> torch.Tensor:
            return torch.tensor(value, dtype=dtype, device=device)

        a, b = 1.0 - cfg["beta_v"], 1.0 - cfg["beta_r"]
        self.dtype = dtype
        self.acc = _accumulation_dtype(device)
        # The loss dtype whose variance torch.var_mean gives directly (None: no such).
        self.direct = (
            torch.float32
            if dtype == torch.float32
            and device.type == "cpu"
            and _cpu_var_mean_accumulates_float32_in_float64()
            else None
        )
        self.relative = cfg["eps_mode"] == "relative"
        self.eps = cfg["eps"] if self.relative else tensor(cfg["eps"])
        self.inf, self.zero, self.neutral = tensor(math.inf), tensor(0.0), tensor(neutral)
        self.lo, self.hi = tensor(cfg["clip"][0]), tensor(cfg["clip"][1])
        self.debias = cfg["init"] == "zero-debiased"
        self.log_betas = (
            tensor([math.log(cfg["beta_v"]), math.log(cfg["beta_r"])]) if self.debias else None
        )
        if cfg["init"] == "first":
            self.rates = tensor([a, b])
            self.weights = tensor([a, b] if accepted_any else [1.0, 1.0])
            self.wv, self.wr = self.weights[0], self.weights[1]  # views: follow in place
        else:
            self.rates = self.weights = None
            self.wv, self.wr = tensor(a), tensor(b)


# ---------------------------------------------------------------------- across processes
# River under torch.distributed reduces the batch statistics of all ranks with two small
# all-reduces (SUM) of float64 vectors of fixed length, so the collectives match on every
# rank whatever the ranks pass:
#
#   A = [sum_i L_i, N_k, c, c^2, e, e^2, bad]   (c, e: codes of the dtype and device type)
#   B = [sum_i (L_i - mu), sum_i (L_i - mu)^2]  with mu = A[0] / A[1] after the reduction
#
# B is the corrected two-pass formula around the exact global mean mu (Chan, Golub &
# LeVeque, 1983): every rank uses the same shift, and the variance is as accurate as that
# of a single process on the whole batch. The descriptor entries detect ranks whose losses
# differ in dtype or device type: with W ranks, W * sum(c^2) == sum(c)^2 holds exactly
# (integers < 2^53) if and only if all c are equal, and every rank reaches the same verdict.


@lru_cache(maxsize=64)
def _code(name: str) -> int:
    """A small deterministic code (1 ... 1021) of a dtype or device-type name."""
    return zlib.crc32(name.encode()) % 1021 + 1


def _check_process_group(process_group: Any) -> Any:
    """``"auto"``, ``None`` or a ``torch.distributed.ProcessGroup``; anything else raises."""
    if process_group is None or (isinstance(process_group, str) and process_group == "auto"):
        return process_group
    if _DIST and isinstance(process_group, dist.ProcessGroup):
        return process_group
    if (
        _DIST
        and isinstance(process_group, int)
        and process_group == dist.GroupMember.NON_GROUP_MEMBER
    ):
        raise ValueError(
            "process_group: this rank is not a member of the group (new_group returned "
            "GroupMember.NON_GROUP_MEMBER); give such ranks process_group=None"
        )
    raise ValueError(
        "process_group must be 'auto', None or a torch.distributed.ProcessGroup, "
        f"got {process_group!r}"
    )


def _device_types(group: Any) -> tuple[str, ...]:
    """Device types the group's backends reduce on, e.g. ``("cpu", "cuda")`` for gloo."""
    config = dist.get_backend_config(group)  # e.g. "cpu:gloo,cuda:nccl"
    return tuple(part.split(":")[0].strip() for part in config.split(",") if ":" in part)


def _reduction_device(types: tuple[str, ...], device: torch.device) -> torch.device:
    """The losses' device if the group reduces there, else the CPU or the group's device."""
    if device.type in types:
        return device
    if "cpu" in types or not types:
        return torch.device("cpu")
    if types[0] == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(types[0])


def _descriptor_problem(a: Sequence[float], world: int) -> str | None:
    """What the summed descriptor of vector A says is wrong (``None``: nothing)."""
    if a[6] > 0:  # such ranks send no descriptor
        return f"{int(a[6])} rank(s) passed invalid per_example_losses (see their error)"
    wrong = []
    if world * a[3] != a[2] * a[2]:
        wrong.append("the ranks' per_example_losses have different dtypes")
    if world * a[5] != a[4] * a[4]:
        wrong.append("the ranks' per_example_losses are on different device types")
    return "; ".join(wrong) or None


def _losses_problem(losses: Any, device: torch.device | None, allow_empty: bool) -> str | None:
    """Why ``losses`` cannot be observed (``None``: they can), checked on the host."""
    if not isinstance(losses, torch.Tensor):
        return f"per_example_losses must be a torch.Tensor, got {type(losses).__name__}"
    if losses.ndim != 1:
        return (
            "per_example_losses must be 1-d (one loss per example, reduction='none'), "
            f"got shape {tuple(losses.shape)}"
        )
    if losses.numel() == 0 and not allow_empty:
        return "per_example_losses must be non-empty, got 0 examples"
    if not losses.is_floating_point():
        return f"per_example_losses must be floating-point, got {losses.dtype}"
    if device is not None and losses.device != device:
        return (
            f"per_example_losses is on {losses.device}, River's state on {device}; keep one device"
        )
    return None


def _check_beta(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


def _check_config(
    beta_v: Any,
    beta_r: Any,
    eps: Any,
    eps_mode: Any,
    clip: Any,
    init: Any,
    use_current_batch: Any,
    dtype: Any,
) -> dict[str, Any]:
    """Validate the hyperparameters; return them normalised (floats, a tuple clip)."""
    beta_v = _check_beta("beta_v", beta_v)
    beta_r = _check_beta("beta_r", beta_r)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise ValueError(f"eps must be a positive finite float, got {eps!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0.0):
        raise ValueError(f"eps must be a positive finite float (eps > 0), got {eps!r}")
    if eps_mode not in _EPS_MODES:
        raise ValueError(f"eps_mode must be one of {_EPS_MODES}, got {eps_mode!r}")
    if (
        isinstance(clip, (str, bytes))
        or not isinstance(clip, Sequence)
        or len(clip) != 2
        or any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in clip)
    ):
        raise ValueError(f"clip must be a pair (m_min, m_max) of floats, got {clip!r}")
    m_min, m_max = float(clip[0]), float(clip[1])
    if not (math.isfinite(m_min) and math.isfinite(m_max)):
        raise ValueError(f"clip must be finite: 0 < m_min <= m_max < inf, got {clip!r}")
    if m_min <= 0.0:
        raise ValueError(f"clip's m_min must be > 0 (0 < m_min <= m_max), got {clip!r}")
    if m_min > m_max:
        raise ValueError(f"clip needs m_min <= m_max (0 < m_min <= m_max), got {clip!r}")
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    if not isinstance(use_current_batch, bool):
        raise ValueError(f"use_current_batch must be a bool, got {use_current_batch!r}")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be None or a floating torch.dtype, got {dtype!r}")
    return {
        "beta_v": beta_v,
        "beta_r": beta_r,
        "eps": eps,
        "eps_mode": eps_mode,
        "clip": (m_min, m_max),
        "init": init,
        "use_current_batch": use_current_batch,
        "dtype": dtype,
    }


class River:
    r"""Landscape-aware learning-rate multiplier from the per-example loss variance.

    Section 6.5 (overview in 6.2.2). Each call of :meth:`observe` with the per-example
    losses :math:`L_t(i),\ i \in B_t,\ |B_t| = N` of an accepted batch (index :math:`t`
    counts accepted batches, :math:`t = 1, 2, \dots`) runs the four steps:

    1. instantaneous roughness, the population variance (divisor :math:`N`, as the draft):

       .. math::
           \bar L_t = \frac1N \sum_{i \in B_t} L_t(i), \qquad
           \operatorname{Var}_t = \frac1N \sum_{i \in B_t} \bigl(L_t(i) - \bar L_t\bigr)^2 ;

    2. smoothed roughness, an EMA with rate :math:`\beta_v`:

       .. math:: v_t = \beta_v v_{t-1} + (1 - \beta_v) \operatorname{Var}_t ;

    3. target roughness, a slower EMA of :math:`v_t` with rate :math:`\beta_r`, and the
       clipped multiplier:

       .. math::
           v^{\text{target}}_t = \beta_r v^{\text{target}}_{t-1} + (1 - \beta_r) v_t,
           \qquad
           m_t = \operatorname{clip}\Bigl(\frac{v^{\text{target}}_t}
           {v_t + \epsilon\, v^{\text{target}}_t},\ m_{\min},\ m_{\max}\Bigr)

       with the default relative :math:`\epsilon` (``eps_mode="absolute"``, the draft's
       form, has :math:`v_t + \epsilon` in the denominator);

    4. the learning rate :math:`\eta = \eta^{\text{global}}\, m` of the next step is set by the
       scheduler (:class:`companion.lr_scheduler.ScheduledLR` with ``multiplier=river``),
       which reads :attr:`multiplier`.

    This is the book's illustrative, unvalidated heuristic, not a published method (see the module
    docstring: arXiv:2410.05192 is Wen et al.'s river-valley paper on WSD, which contains no
    such multiplier). It follows the *trend* of the variance: for a constant variance,
    whatever its level, :math:`m_t \to 1`.

    Parameters
    ----------
    beta_v : float, default 0.99
        Rate of the fast EMA, in (0, 1).
    beta_r : float, default 0.999
        Rate of the target EMA, in (0, 1). The draft leaves it open; ``beta_r > beta_v``
        is expected (the target is then the slower average) but not enforced.
    eps : float, default 1e-8
        :math:`\epsilon > 0`, see ``eps_mode``.
    eps_mode : {"relative", "absolute"}, default "relative"
        ``"relative"``: :math:`\epsilon_t = \epsilon\, v^{\text{target}}_t`, so
        :math:`m_t = 1 / (v_t / v^{\text{target}}_t + \epsilon)` does not depend on the
        scale of the loss and never exceeds :math:`1/\epsilon`. ``"absolute"``: the draft's
        constant :math:`\epsilon`, in squared loss units.
    clip : tuple of float, default (0.1, 10.0)
        :math:`(m_{\min}, m_{\max})` with :math:`0 < m_{\min} \le m_{\max} < \infty`.
    init : {"first", "zero", "zero-debiased"}, default "first"
        How both EMAs start (the draft leaves it open):

        * ``"first"``: :math:`v_1 = \operatorname{Var}_1`,
          :math:`v^{\text{target}}_1 = v_1`, hence :math:`m_1 = 1/(1+\epsilon)`;
        * ``"zero"``: :math:`v_0 = v^{\text{target}}_0 = 0`, no correction; gives
          :math:`m_1 \approx 1 - \beta_r` (clipped), a data-independent warmup with time
          constant about :math:`1/(1-\beta_r)` steps;
        * ``"zero-debiased"``: zero start with Adam's bias correction,
          :math:`\hat v_t = v_t/(1-\beta_v^t)`, the target is the EMA of
          :math:`\hat v_t` and is read as :math:`\hat v^{\text{target}}_t =
          v^{\text{target}}_t/(1-\beta_r^t)`, and :math:`m_t` uses the corrected pair;
          :math:`m_1 = 1/(1+\epsilon)` as with ``"first"``.
    use_current_batch : bool, default False
        Whether the multiplier that :meth:`observe` leaves in :attr:`multiplier` already
        includes the batch just observed. ``False`` (default): after observing batch
        :math:`t` the multiplier is :math:`m_{t-1}` (from :math:`v_{t-1}` and
        :math:`v^{\text{target}}_{t-1}`), so it never depends on the losses it was just
        given — the learning rate of a step is independent of that step's batch even if
        ``observe`` is called before ``optimizer.step()`` (the draft's correlation between
        :math:`\eta_t` and :math:`g_t`, section 6.5). In the recommended loop below this
        costs one extra step of lag, negligible next to the EMA's :math:`1/(1-\beta_v)`.
        ``True``: the multiplier is :math:`m_t`; in the recommended loop it is still only
        used from the next step on.
    dtype : torch.dtype, optional
        Floating dtype of the state. Default: the losses' dtype promoted to at least
        float32 (float32 for half, bfloat16 and float32 losses; float64 for float64).
    process_group : "auto", None or torch.distributed.ProcessGroup, default "auto"
        Over which processes a batch's statistics are reduced (see *Distributed
        training* below). ``"auto"``: the default group whenever ``torch.distributed``
        is initialised with two or more processes, else none. A ``ProcessGroup``: that
        group. ``None``: never reduce; each process uses only its own losses. Not part
        of :meth:`state_dict`.

    Notes
    -----
    *State and devices.* The state (:math:`v`, :math:`v^{\text{target}}`, the number of
    accepted batches and the multiplier, all 0-d tensors) is created on the first
    :meth:`observe`, on the losses' device, and never leaves it: no operation reads a value
    back to the host, so a CUDA training loop is not synchronised. The batch variance is
    that of :math:`L_t(i) - L_t(1)`, computed in float64 (float32 on MPS): shifting by
    one of the batch's own losses keeps it accurate even when all losses are nearly
    equal (an untrained classifier's :math:`\approx \log K`). Float32 losses on the CPU
    skip the shift and the conversion, since :func:`torch.var_mean` accumulates them in
    float64 there (checked once per process); their variance is the exact one rounded
    to float32, to within about an ulp.

    *Distributed training.* Under ``torch.distributed`` each process (rank) sees only its
    shard of the batch; a River fed only those losses would give every rank its own
    multiplier, hence its own learning rate, and the replicas of a
    ``DistributedDataParallel`` model would drift apart silently. So, with a process
    group of :math:`W \ge 2` ranks, :meth:`observe` takes the batch to be the union of
    the shards :math:`B = \bigcup_k B^{(k)}` and reduces its statistics with two
    all-reduces (``SUM``) of small float64 vectors, never an all-gather of the losses:

    .. math::
        N = \sum_k |B^{(k)}|, \quad
        \mu = \frac1N \sum_k \sum_{i \in B^{(k)}} L_i, \quad
        \operatorname{Var}_t = \frac1N \Bigl(\sum_k \sum_{i \in B^{(k)}} d_i^2
        - \frac1N \Bigl(\sum_k \sum_{i \in B^{(k)}} d_i\Bigr)^2\Bigr),
        \quad d_i = L_i - \mu .

    The shift is the global mean :math:`\mu` from the first all-reduce, the same on
    every rank (the corrected two-pass formula of Chan, Golub & LeVeque): the variance is
    as accurate as one process's on the whole batch, far from zero too. Every rank then
    holds the bit-identical multiplier, equal to that of one process that observes the
    whole batch (to rounding, about :math:`10^{-16}` relative in float64). The size-1
    skip and the non-finite skip are decided on the whole batch, alike on all ranks; a
    rank may pass an empty shard. The state stays global, so a :meth:`state_dict` saved
    on :math:`W` ranks loads on any number of processes, one included.

    Every rank must call :meth:`observe` equally often, with losses of one dtype on one
    device type (as DDP requires of the model). The first all-reduce also carries codes
    of each rank's dtype and device type and a flag for invalid input, so a rank that
    differs or passes invalid losses makes :meth:`observe` raise ``ValueError`` on every
    rank, not hang. The verdict is read on the host where that is free (reduction on the
    CPU, e.g. gloo) and otherwise on the first call and whenever a rank's dtype or device
    changes: that single read synchronises the host once; later calls enqueue their
    collectives without waiting for the device. The reduction runs on the losses' device
    when the group's backend serves it (CUDA for NCCL, CPU or CUDA for gloo), else on
    the CPU. Cost: two collectives of 7 and 2 numbers per call (tens of microseconds on
    NCCL, a few hundred on gloo over TCP). ``process_group=None`` turns all of this off.

    *Degenerate batches.* A batch with fewer than two examples (its variance, 0, says
    nothing about spread) or with a non-finite loss is *skipped*: the EMAs and the count
    of accepted batches keep their values (chosen with :func:`torch.where` for the
    non-finite case, so no host branch on data) and :attr:`num_skipped` grows by one. The
    multiplier always stays finite and inside ``clip``. While :math:`v^{\text{target}}_t
    = 0` (before the first accepted batch, or after zero-variance batches only) the
    multiplier is 1 (clipped into ``clip``); before the first :meth:`observe` it is that
    value as a 0-d float32 tensor on the CPU.

    *Interpolation.* When the model fits the batch exactly, :math:`v_t \to 0` and
    :math:`m_t` sits at :math:`m_{\max}` and undoes the schedule's anneal (section 6.5):
    the clip range matters.

    *Cost.* :meth:`observe` is about a dozen operations on 0-d tensors (twenty with
    ``"zero-debiased"``), with no Python number among their arguments: some 15
    microseconds of dispatch per call on a CPU, 30 to 40 inside a training step,
    independent of the model; noticeable on a tiny model, negligible on a real one
    (``python -m companion.benchmarks.river``).

    The recommended loop (the learning rate of step :math:`t` never sees batch :math:`t`)::

        losses = loss_fn(model(x), y, reduction="none")
        losses.mean().backward()
        optimizer.step(); optimizer.zero_grad()
        river.observe(losses.detach())
        scheduler.step()               # next lr = s(t + 1) * river.multiplier

    Examples
    --------
    >>> import torch
    >>> river = River(beta_v=0.9, beta_r=0.99, use_current_batch=True)
    >>> _ = river.observe(torch.tensor([0.0, 2.0]))   # Var = 1: v = 1, target = 1
    >>> round(float(river.multiplier), 6)
    1.0
    >>> _ = river.observe(torch.tensor([0.0, 4.0]))   # Var = 4: v = 1.3, target = 1.003
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
        config = _check_config(beta_v, beta_r, eps, eps_mode, clip, init, use_current_batch, dtype)
        self._process_group = _check_process_group(process_group)
        self._set_config(config)
        self._verified: tuple[torch.dtype, torch.device] | None = None  # checked across ranks
        # The state (None before the first observe): 0-d tensors on the losses' device,
        # replaced (never updated in place) by every update.
        self._v: torch.Tensor | None = None  # v_t (raw: not bias-corrected)
        self._r: torch.Tensor | None = None  # v^target_t (raw)
        self._step: torch.Tensor | None = None  # accepted batches (int64) ...
        self._pending: list[torch.Tensor] = []  # ... but these verdicts (see _accepted)
        self._next: torch.Tensor | None = None  # m of the current state (for past mode)
        self._k: _Constants | None = None  # hyperparameters as tensors on that device
        self._device: torch.device | None = None
        self._observed = 0  # calls of observe (host-side count)
        self._multiplier = torch.tensor(self._neutral, dtype=torch.float32)

    # ------------------------------------------------------------------ configuration
    def _set_config(self, config: Mapping[str, Any]) -> None:
        self._cfg = dict(config)
        lo, hi = self._cfg["clip"]
        self._neutral = min(max(1.0, lo), hi)

    def _config(self) -> dict[str, Any]:
        return dict(self._cfg)

    # Read-only: a River's hyperparameters change only through load_state_dict.
    beta_v = property(lambda self: self._cfg["beta_v"], doc="Rate of the fast EMA.")
    beta_r = property(lambda self: self._cfg["beta_r"], doc="Rate of the target EMA.")
    eps = property(lambda self: self._cfg["eps"], doc="The epsilon of the denominator.")
    eps_mode = property(lambda self: self._cfg["eps_mode"], doc='"relative" or "absolute".')
    clip = property(lambda self: self._cfg["clip"], doc="(m_min, m_max).")
    init = property(lambda self: self._cfg["init"], doc="Initialisation of both EMAs.")
    use_current_batch = property(
        lambda self: self._cfg["use_current_batch"], doc="Whether m includes the last batch."
    )
    dtype = property(lambda self: self._cfg["dtype"], doc="State dtype (None: from the losses).")

    @property
    def process_group(self) -> Any:
        """``"auto"``, ``None`` or the ``ProcessGroup`` the batch statistics are reduced over."""
        return self._process_group

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
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        group = self._process_group
        if group is None or isinstance(group, str):
            args += f", process_group={group!r}"
        else:
            args += f", process_group=<{type(group).__name__}>"
        return f"River({args})"

    # ------------------------------------------------------------------ read-only views
    @property
    def multiplier(self) -> torch.Tensor:
        """The current multiplier :math:`m`, a 0-d tensor (replaced, not updated in place)."""
        return self._multiplier

    @property
    def variance(self) -> torch.Tensor | None:
        r"""Smoothed roughness :math:`v_t` (:math:`\hat v_t` for ``"zero-debiased"``)."""
        if self._v is None:
            return None
        return self._estimates(self._v, self._r, self._accepted())[0]

    @property
    def target(self) -> torch.Tensor | None:
        r"""Target roughness :math:`v^{\text{target}}_t` (bias-corrected if so configured)."""
        if self._v is None:
            return None
        return self._estimates(self._v, self._r, self._accepted())[1]

    @property
    def num_accepted(self) -> torch.Tensor | None:
        """Number of batches that entered the EMAs (0-d int64 tensor)."""
        return self._accepted()

    @property
    def num_skipped(self) -> torch.Tensor | int:
        """Number of batches skipped (fewer than 2 examples or a non-finite loss)."""
        return 0 if self._step is None else self._observed - self._accepted()

    def _accepted(self) -> torch.Tensor | None:
        """The number of accepted batches (0-d int64), with the pending verdicts added.

        :meth:`_update` appends each batch's verdict (a 0-d bool tensor) to a list and adds
        the list up only every :data:`_PENDING` batches or when the count is read: one
        operation per batch fewer (an int64 + bool addition is among the dearest), and
        still no host synchronisation. (``"zero-debiased"`` needs the count every batch
        and adds it at once.)
        """
        if self._pending:
            self._step = self._step + torch.stack(self._pending).sum()
            self._pending = []
        return self._step

    # ------------------------------------------------------------------ the formula
    def _corrections(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        r"""Adam's bias corrections :math:`(1 - \beta_v^t,\ 1 - \beta_r^t)` at step ``t``.

        Computed as :math:`-\operatorname{expm1}(t \log\beta)`, accurate even where
        :math:`\beta^t` is close to 1; both in one vector (four operations).
        """
        return torch.expm1(t * self._k.log_betas).neg().unbind()

    def _estimates(
        self, v: torch.Tensor, r: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(v, target) as they enter the multiplier: bias-corrected for "zero-debiased"."""
        if not self._k.debias:
            return v, r
        # (the same operations as _update at step + 1, so bit-identical)
        cv, cr = self._corrections(t.clamp_min(1))
        return torch.div(v, cv), torch.div(r, cr)

    def _formula(self, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        r"""Clipped :math:`r/(v + \epsilon)`; 1 (clipped) where :math:`r = 0`.

        With ``eps_mode="relative"`` the quotient :math:`r/(v + \epsilon r)` is 0/0, a
        NaN, exactly where :math:`r = v = 0`, which :func:`torch.nan_to_num` turns into
        the neutral value: one operation instead of a test and a selection. (A state
        with :math:`r = 0 < v` gives :math:`m_{\min}`; River reaches none, short of an
        underflow of the target below the smallest subnormal.)
        """
        k = self._k
        if k.relative:
            q = torch.nan_to_num(torch.div(r, torch.add(v, r, alpha=k.eps)), nan=self._neutral)
            return torch.clamp(q, k.lo, k.hi)
        m = torch.clamp(torch.div(r, torch.add(v, k.eps)), k.lo, k.hi)
        return torch.where(r > k.zero, m, k.neutral)

    # ------------------------------------------------------------------ the update
    def observe(self, per_example_losses: torch.Tensor) -> torch.Tensor:
        r"""Update the roughness estimates with one batch of per-example losses.

        Under a process group (see the class's *Distributed training* notes) the batch is
        the union of every rank's losses: each rank passes its own shard and all ranks get
        the same multiplier.

        Parameters
        ----------
        per_example_losses : torch.Tensor
            1-d, floating: the losses of the batch's examples (e.g. from a loss with
            ``reduction="none"``). Detached internally. Must stay on one device. Non-empty
            without a process group; under one a rank may pass an empty shard.

        Returns
        -------
        torch.Tensor
            The new :attr:`multiplier` (0-d, on the losses' device), the factor for the
            next step: :math:`m_{t-1}` by default, :math:`m_t` with
            ``use_current_batch=True`` (batch :math:`t` being the one just observed).

        Raises
        ------
        ValueError
            If the losses are not a 1-d non-empty floating tensor, or are on another device
            than the state; under a process group also, on every rank, if the ranks pass
            losses of different dtypes or device types, or if any rank's losses are invalid.
        """
        if self._process_group is not None:
            group = self._active_group()
            if group is not None:
                return self._observe_across(per_example_losses, group)
        losses = per_example_losses
        problem = _losses_problem(losses, self._device, allow_empty=False)
        if problem is not None:
            raise ValueError(problem)
        if self._v is None:
            self._init_state(losses.dtype, losses.device)
        self._observed += 1
        if losses.shape[0] < 2:  # shape is host metadata: no synchronisation
            self._multiplier = self._next
            return self._next
        if losses.requires_grad:
            losses = losses.detach()
        # Step 1: instantaneous roughness.
        k = self._k
        if losses.dtype == k.direct:
            var = torch.var_mean(losses, correction=0)[0]
        else:
            var = _batch_variance(losses, k.acc)
            if var.dtype != k.dtype:
                var = var.to(k.dtype)
        return self._update(var)

    # ------------------------------------------------------------------ the update, parts
    def _init_state(self, loss_dtype: torch.dtype, device: torch.device) -> None:
        dtype = self.dtype or torch.promote_types(loss_dtype, torch.float32)
        self._k = _Constants(self._cfg, self._neutral, dtype, device, accepted_any=False)
        self._v = torch.zeros((), dtype=dtype, device=device)
        self._r = torch.zeros((), dtype=dtype, device=device)
        self._step = torch.zeros((), dtype=torch.int64, device=device)
        self._pending = []
        self._next = torch.full((), self._neutral, dtype=dtype, device=device)
        self._device = self._v.device

    def _update(self, var: torch.Tensor, accept: torch.Tensor | None = None) -> torch.Tensor:
        """Steps 2-3 for a batch of variance ``var`` (0-d, the state's dtype and device).

        The batch is kept only where ``accept`` (a 0-d bool tensor, default true) holds and
        its variance is finite (a non-finite loss, or a variance beyond the state's dtype,
        makes it NaN or +inf); otherwise the state and the multiplier keep their values,
        chosen on the device: no host branch on data. Nine to eleven operations on 0-d
        tensors (twenty for ``"zero-debiased"``); each costs a launch, so they are few and
        take no Python numbers (see :class:`_Constants`).
        """
        k = self._k
        v, r = self._v, self._r
        valid = var < k.inf  # var >= 0: false exactly for NaN and +inf
        if accept is not None:
            valid = valid & accept
        if k.debias:
            step = self._step
            self._v, self._r, m_next, valid = self._update_debiased(v, r, step, var, valid)
            self._step = step + valid
        else:
            # A skipped batch enters as variance v with the target's rate 0, so both EMAs
            # keep their values exactly (lerp(v, v, w) == v, lerp(r, v, 0) == r) and the
            # multiplier, recomputed by the same operations from the same state, too.
            # With init="first" the rates are 1 until a batch is accepted: lerp(x, y, 1) == y.
            var = torch.where(valid, var, v)
            v = torch.lerp(v, var, k.wv)  # step 2
            r = torch.lerp(r, v, torch.where(valid, k.wr, k.zero))  # step 3
            self._v, self._r, m_next = v, r, self._formula(v, r)
            if k.weights is not None:  # init="first": rates 1 -> 1 - beta once accepted
                torch.where(valid, k.rates, k.weights, out=k.weights)
            self._pending.append(valid)  # added to the count later (see _accepted)
            if len(self._pending) >= _PENDING:
                self._accepted()
        m = m_next if self._cfg["use_current_batch"] else self._next
        self._multiplier, self._next = m, m_next
        return m

    def _update_debiased(
        self,
        v: torch.Tensor,
        r: torch.Tensor,
        step: torch.Tensor,
        var: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Steps 2-3 with ``init="zero-debiased"``: the new ``(v, r, m, valid)``.

        Computed as if the batch were accepted, then selected with ``valid`` and with the
        finiteness of the corrected target (which a variance near the dtype's largest
        value could overflow). The corrections at step ``t + 1`` are the operations
        of :meth:`_estimates`, so the multiplier is bit-identical to a reloaded one's.
        """
        k = self._k
        cv, cr = self._corrections(step + 1)
        v_new = torch.lerp(v, var, k.wv)
        v_est = torch.div(v_new, cv)  # the target averages the bias-corrected v
        r_new = torch.lerp(r, v_est, k.wr)
        r_est = torch.div(r_new, cr)
        valid = valid & (r_est < k.inf)
        return (
            torch.where(valid, v_new, v),  # v and r stay raw (not bias-corrected)
            torch.where(valid, r_new, r),
            torch.where(valid, self._formula(v_est, r_est), self._next),
            valid,
        )

    # ------------------------------------------------------------------ across processes
    def _active_group(self) -> Any:
        """The process group to reduce over now, or ``None`` for local statistics.

        ``None`` also for a group of one process: there is nothing to reduce.
        """
        spec = self._process_group
        if spec is None:
            return None
        if isinstance(spec, str):  # "auto": the default group, once there is one
            if not (_DIST and dist.is_initialized()):
                return None
            spec = dist.group.WORLD
        return spec if dist.get_world_size(spec) > 1 else None

    def _observe_across(self, losses: Any, group: Any) -> torch.Tensor:
        """:meth:`observe` under a process group of two or more ranks (see the notes)."""
        world = dist.get_world_size(group)
        problem = _losses_problem(losses, self._device, allow_empty=True)
        types = _device_types(group)
        if problem is None:
            desc = (losses.dtype, losses.device)
            device = _reduction_device(types, losses.device)
            x = losses.detach().to(device=device, dtype=torch.float64)
            c, e = _code(str(losses.dtype)), _code(losses.device.type)
            head = (x.numel(), c, c * c, e, e * e, 0)
        else:  # take part in the collectives, flagged, then raise: no rank is left waiting
            desc = self._verified or (None, torch.device("cpu"))
            device = _reduction_device(types, desc[1])
            x = torch.zeros(0, dtype=torch.float64, device=device)
            head = (0, 0, 0, 0, 0, 1)
        # A = [sum L, N, c, c^2, e, e^2, bad]; a non-blocking copy of host values: no sync.
        a = torch.cat(
            [x.sum().reshape(1), torch.tensor(head, dtype=x.dtype).to(device, non_blocking=True)]
        )
        dist.all_reduce(a, group=group)
        # The verdict is read on the host where that is free (CPU), and otherwise on the
        # first call and whenever this rank's dtype or device changed (one synchronisation).
        if device.type == "cpu" or self._verified is None or desc != self._verified:
            found = _descriptor_problem(a.tolist(), world)
            if problem is not None:
                raise ValueError(problem)
            if found is not None:
                raise ValueError(
                    f"River over a process group of {world} ranks: {found}. This rank passed "
                    f"{losses.dtype} losses on {losses.device}; every rank must pass the same "
                    "dtype on the same device type (or use River(process_group=None))"
                )
            self._verified = desc
        # B = [sum d, sum d^2] with d = L - mu around the global mean: one shift on all ranks.
        d = x - a[0] / a[1]
        b = torch.stack([d.sum(), torch.dot(d, d)])
        dist.all_reduce(b, group=group)
        if problem is not None:
            raise ValueError(problem)
        if self._v is None:
            self._init_state(losses.dtype, losses.device)
        v = self._v
        var = _variance_from_moments(a[1], b[0], b[1]).to(device=v.device, dtype=v.dtype)
        # Skip the batch on every rank alike: fewer than 2 examples in all, or a descriptor
        # mismatch that this rank did not read (the mismatching rank raises).
        accept = (a[1] >= 2) & (a[3] * world == a[2] * a[2]) & (a[5] * world == a[4] * a[4])
        accept = (accept & (a[6] == 0)).to(v.device)
        self._observed += 1
        return self._update(var, accept)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and state (tensors cloned); ``"state"`` is None before data.

        Saving it with :func:`torch.save` and restoring it with :meth:`load_state_dict`
        continues bit for bit.
        """
        state = None
        if self._v is not None:
            tensors = (self._v, self._r, self._accepted(), self._multiplier)
            state = {k: t.detach().clone() for k, t in zip(_STATE_KEYS, tensors, strict=True)}
            state["observed"] = self._observed
        return {**self._config(), "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and state from :meth:`state_dict`'s output.

        Everything is validated before anything changes. The hyperparameters are taken from
        the dictionary (as ``torch.optim`` does for its parameter groups). The tensors keep
        their dtype; they are moved to the device of this River's state if it has one, and
        otherwise stay where they are (use ``torch.load(..., map_location=...)``).

        Raises
        ------
        ValueError
            If a key is missing, a hyperparameter is invalid, or a state entry has the
            wrong type, shape, dtype or value.
        """
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        missing = [k for k in (*_CONFIG_KEYS, "state") if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict is missing keys {missing}")
        config = _check_config(*(state_dict[k] for k in _CONFIG_KEYS))
        raw = state_dict["state"]
        new_state: dict[str, torch.Tensor] | None = None
        observed = 0
        if raw is not None:
            if not isinstance(raw, Mapping) or any(
                k not in raw for k in (*_STATE_KEYS, "observed")
            ):
                raise ValueError(
                    f"state_dict['state'] must be None or hold keys {(*_STATE_KEYS, 'observed')}"
                )
            tensors = {k: raw[k] for k in _STATE_KEYS}
            for key, value in tensors.items():
                if not isinstance(value, torch.Tensor) or value.ndim != 0:
                    raise ValueError(f"state_dict['state'][{key!r}] must be a 0-d tensor")
            dtype = tensors["v"].dtype
            if not dtype.is_floating_point or any(
                tensors[k].dtype != dtype for k in ("r", "multiplier")
            ):
                raise ValueError("state_dict['state']: v, r and multiplier need one floating dtype")
            if config["dtype"] is not None and dtype != config["dtype"]:
                raise ValueError(
                    f"state_dict['state'] has dtype {dtype}, but dtype={config['dtype']}"
                )
            if tensors["step"].dtype != torch.int64:
                raise ValueError("state_dict['state']['step'] must be an int64 tensor")
            observed = raw["observed"]
            if isinstance(observed, bool) or not isinstance(observed, int):
                raise ValueError("state_dict['state']['observed'] must be an int")
            # Loading is not in the training loop: reading values back is fine here.
            v, r, step = (tensors[k].item() for k in ("v", "r", "step"))
            m = tensors["multiplier"]
            lo, hi = config["clip"]
            problems = {
                "v": not (math.isfinite(v) and v >= 0),
                "r": not (math.isfinite(r) and r >= 0),
                "step": not 0 <= step <= observed,
                "multiplier": not bool(torch.equal(m.clamp(lo, hi), m)),
            }
            bad = [k for k, problem in problems.items() if problem]
            if bad:
                raise ValueError(
                    f"state_dict['state'] has invalid {bad} (need v, r finite >= 0, "
                    f"0 <= step <= observed, multiplier within clip={config['clip']})"
                )
            device = self._device if self._device is not None else m.device
            new_state = {k: t.detach().to(device, copy=True) for k, t in tensors.items()}
        # Validated: now mutate.
        self._set_config(config)
        self._observed = observed
        if new_state is None:
            self._v = self._r = self._step = self._next = self._k = self._device = None
            self._pending = []
            self._multiplier = torch.tensor(self._neutral, dtype=torch.float32)
        else:
            self._v, self._r, self._step = new_state["v"], new_state["r"], new_state["step"]
            self._pending = []
            self._k = _Constants(self._cfg, self._neutral, dtype, device, accepted_any=step > 0)
            self._device = self._v.device
            self._next = self._formula(*self._estimates(self._v, self._r, self._step))
            self._multiplier = new_state["multiplier"]
