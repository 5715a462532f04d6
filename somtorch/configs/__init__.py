"""Hydra configuration of the command-line programs (installed with the package).

``train.yaml``, ``map.yaml`` and ``preprocess.yaml`` are the primary configs of
:mod:`somtorch.train`, :mod:`somtorch.map` and :mod:`somtorch.preprocess`; the folders are their
config groups (``som``, ``data``, ``schedule``, ``stage``, ``runtime``, ``recipe``). Hydra finds
them on its package search path (``pkg://somtorch.configs``), so the programs work from any folder
of an installed wheel. Add your own groups with Hydra's ``--config-dir=<folder>`` (for example a
``<folder>/schedule/my_schedule.yaml`` used as ``schedule=my_schedule``).
"""

from somtorch.cli.schema import register as _register

# the typed schemas named first in the primary configs' defaults lists (train_schema, ...): any
# way of loading these configs (hydra.main, the compose API) imports this package first
_register()
