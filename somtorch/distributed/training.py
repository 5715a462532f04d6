"""Data-parallel batch training: :class:`~somtorch.engine.batch.BatchTrainer` over the ranks.

Convention
----------
Every rank holds the full SOM and the same shuffled order; each step's images are split into
contiguous parts (:func:`~somtorch.engine.batch.split_step`), every rank accumulates the
per-neuron sums of its part, the sums are all-reduced (float64) and every rank applies the same
update, so all ranks keep identical weights. The result equals single-process batch training up
to float summation order. Online (PINK) training is sequential by nature and is not distributed.

Faults: a stop request on any rank stops every rank after the same step; rank 0 alone writes the
checkpoint (one file, replaced atomically) and hands it to every rank on resume, so a run can be
resumed with the same or another number of processes (see
:class:`~somtorch.engine.batch.BatchTrainer`). A rank that dies or hangs makes the others fail
within the collective timeout with a :class:`~somtorch.distributed.DistributedError` naming it.
"""

from __future__ import annotations

from somtorch.distributed.env import all_reduce_sum_, broadcast_bytes, detect

__all__ = ["fit_batch_distributed", "make_batch_trainer"]


def make_batch_trainer(som, neighbourhood=None, num_iter: int = 1, step_size: int = 256, **kwargs):
    """A :class:`~somtorch.engine.batch.BatchTrainer` wired to the current process group
    (a plain single-process one when there is none)."""
    from somtorch.engine.batch import BatchTrainer

    env = detect()
    return BatchTrainer(som, neighbourhood, num_iter, step_size=step_size,
                        reduce=all_reduce_sum_ if env.distributed else None,
                        share=broadcast_bytes if env.distributed else None,
                        rank=env.rank, world_size=env.world_size, **kwargs)


def fit_batch_distributed(som, data, neighbourhood=None, num_iter: int = 1, step_size: int = 256,
                          resume: bool = False, **kwargs):
    """Train ``som`` in batch mode on ``data`` over all ranks; returns the training history.

    Call :func:`somtorch.distributed.init` first (under ``torchrun``); every rank must call this
    with the same arguments. Extra keyword arguments go to the trainer.
    """
    trainer = make_batch_trainer(som, neighbourhood, num_iter, step_size, **kwargs)
    return trainer.fit(data, resume=resume)
