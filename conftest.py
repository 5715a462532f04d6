"""Repository-wide pytest configuration.

* ``slow`` tests run only with ``SOMTORCH_SLOW=1`` (``make test-slow``) or when selected with ``-m slow``.
* GPU-only tests use :func:`somtorch.testing.run_if` and skip with a readable reason on CPU.
"""

import os

import matplotlib
import pytest

matplotlib.use("Agg")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SOMTORCH_SLOW") == "1":
        return
    markexpr = config.getoption("-m") or ""
    if "slow" in markexpr:
        return
    skip = pytest.mark.skip(reason="slow test: run with SOMTORCH_SLOW=1 (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
