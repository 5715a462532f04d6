"""Scaling out with ``torch.distributed`` (launched by ``torchrun``): sharded mapping and
data-parallel batch training.

* :func:`init` / :func:`detect` -- process group from the launcher's environment (gloo on CPU,
  NCCL on CUDA), collectives with a timeout that fail with :class:`DistributedError`.
* :func:`map_to_files_sharded` -- every rank maps its shard of the image file and writes its rows
  of the PINK mapping/transform files in place; byte-identical to one process; resumable.
* :func:`fit_batch_distributed` -- data-parallel :class:`~somtorch.engine.batch.BatchTrainer`:
  per-neuron sums all-reduced each step.

Usage
-----
::

    torchrun --nproc_per_node=4 -m somtorch.map som=SOM.bin data=file data.path=IMG.bin hydra.run.dir=out
    torchrun --nproc_per_node=4 -m somtorch.pink --map IMG.bin map.bin SOM.bin --store-rot-flip tr.bin
    torchrun --nproc_per_node=4 -m somtorch.train runtime.mode=batch hydra.run.dir=run
"""

from somtorch.distributed.env import (
    DistEnv,
    DistributedError,
    all_reduce_flag,
    all_reduce_sum_,
    barrier,
    broadcast_bytes,
    broadcast_object,
    detect,
    device_for,
    init,
    is_distributed,
    shutdown,
)
from somtorch.distributed.mapping import (
    map_to_files_sharded,
    mapping_in_progress,
    row_runs,
    shard_rows,
)
from somtorch.distributed.training import fit_batch_distributed

__all__ = ["DistEnv", "DistributedError", "all_reduce_flag", "all_reduce_sum_", "barrier",
           "broadcast_bytes", "broadcast_object",
           "detect", "device_for", "init", "is_distributed", "shutdown", "map_to_files_sharded", "mapping_in_progress",
           "row_runs",
           "shard_rows", "fit_batch_distributed"]
