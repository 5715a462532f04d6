"""Notebook 06 (fast approximate and scale-invariant matching): committed executed, and it runs.

The committed notebook must carry the outputs of a complete run (every code cell, in order, no
errors, figures, under 1.5 MB). Run at tiny size (``SOMTORCH_NB_SMALL=1``, slow suite), it must
write the speed/accuracy table with sensible values and its figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

NB = Path(__file__).resolve().parents[1] / "notebooks" / "06_fast_matching.ipynb"


def test_committed_notebook_is_executed_and_small():
    assert NB.stat().st_size < 1_500_000
    nb = nbformat.read(NB, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    figures = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert figures >= 4
    assert nb.cells[0].cell_type == "markdown" and "cookbook" in nb.cells[0].source.lower()


@pytest.mark.slow
@pytest.mark.notebook
def test_notebook_runs_at_tiny_size(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    kdir = tmp_path / "jupyter" / "kernels" / "somtorch-nbtest"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "somtorch notebook test", "language": "python"}))
    for k, v in {"JUPYTER_PATH": tmp_path / "jupyter", "JUPYTER_PLATFORM_DIRS": "1",
                 "JUPYTER_RUNTIME_DIR": tmp_path / "runtime", "IPYTHONDIR": tmp_path / "ipython",
                 "SOMTORCH_NB_SMALL": "1", "SOMTORCH_NB_OUT": tmp_path / "out",
                 "SOMTORCH_CACHE_DIR": tmp_path / "cache", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(k, str(v))
    nb = nbformat.read(NB, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="somtorch-nbtest",
                   resources={"metadata": {"path": str(NB.parent)}}).execute()
    out = tmp_path / "out" / "06_fast_matching"
    curve = pd.read_csv(out / "speed_accuracy.csv")
    assert list(curve.columns[:4]) == ["search", "coarse", "refine", "bases"]
    assert set(curve["search"]) == {"bisect", "surrogate", "polar"}
    assert curve["bmu_agreement"].between(0, 1).all() and (curve["speedup"] > 0).all()
    assert (curve["bases"] >= curve["coarse"]).all() and (curve["bases"] <= 90).all()
    for png in ("speed_accuracy.png", "exact_vs_polar.png", "scale_match.png", "scale_speed.png"):
        assert (out / png).stat().st_size > 1000
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream")
    assert "scale search:    best neuron 0" in text and "approximate:     best neuron 0 factor 1.25" in text
