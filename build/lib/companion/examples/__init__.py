"""Runnable examples: ``python -m companion.examples.<name>`` (see each module's docstring).

* :mod:`companion.examples.digits_ddp` -- the digits MLP on several processes with
  ``torch.distributed`` (DDP, optionally ZeroRedundancyOptimizer), companion AdamW, a cosine
  :class:`~companion.lr_scheduler.ScheduledLR` and a :class:`~companion.river.River`
  whose multiplier is the same on every rank.
"""
