"""Runnable examples: ``python -m companion.examples.<name>`` (see each module's docstring).

* :mod:`companion.examples.digits_ddp` -- the digits MLP on several processes with
  ``torch.distributed`` (DDP, optionally ZeroRedundancyOptimizer, or FSDP2's
  ``fully_shard``), companion AdamW, a cosine :class:`~companion.lr_scheduler.ScheduledLR`
  and a :class:`~companion.river.River` whose multiplier is the same on every rank.
* :mod:`companion.examples.launch` -- runs that example on several CPU processes from
  Python and returns its figures (the *Training at scale* page uses it).
"""
