"""somtorch.data.catalogue: reading catalogues and the cookbook §8.2 join back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from somtorch.data import MissingFileError, annotate_catalogue, mapping_columns, read_catalogue
from somtorch.errors import ConfigError, FileFormatError, ShapeError
from somtorch.io import Mapping, write_mapping


def _cat(n=6):
    return pd.DataFrame({"Component_name": [f"c{k}" for k in range(n)],
                         "Peak_to_ring": [1.0, 1.5, 2.0, 3.5, 2.5, 1.2][:n], "S_Code": list("SMCSSE")[:n]})


def test_read_csv_fits_and_ecsv_tables(tmp_path):
    cat = _cat()
    cat.to_csv(tmp_path / "c.csv", index=False)
    t = Table.from_pandas(cat)
    t["vec"] = np.zeros((len(cat), 3))  # multidimensional: dropped
    t.write(tmp_path / "c.fits")
    t.write(tmp_path / "c.ecsv")
    for name in ("c.csv", "c.fits", "c.ecsv"):
        df = read_catalogue(tmp_path / name, id_column="Component_name")
        assert list(df.columns) == list(cat.columns), name
        assert list(df.Component_name) == list(cat.Component_name), name  # str, not bytes
        np.testing.assert_allclose(df.Peak_to_ring, cat.Peak_to_ring)


def test_catalogue_errors_are_typed(tmp_path):
    with pytest.raises(MissingFileError, match="nope.csv"):
        read_catalogue(tmp_path / "nope.csv")
    (tmp_path / "bad.fits").write_bytes(b"garbage" * 100)
    with pytest.raises(FileFormatError, match="bad.fits"):
        read_catalogue(tmp_path / "bad.fits")
    cat = _cat()
    cat.loc[3, "Component_name"] = "c1"
    cat.to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ConfigError, match="'c1'.*unique"):
        read_catalogue(tmp_path / "dup.csv", id_column="Component_name")
    with pytest.raises(ConfigError, match="Name"):
        read_catalogue(tmp_path / "dup.csv", id_column="Name")


def _mapping(tmp_path, best):
    """A (3, 4) mapping whose image i has its minimum at flat neuron best[i], distance 0.1(i+1)."""
    rng = np.random.default_rng(0)
    d = rng.uniform(5, 10, (len(best), 12)).astype(np.float32)
    for i, k in enumerate(best):
        d[i, k] = 0.1 * (i + 1)
    write_mapping(tmp_path / "map.bin", d, (3, 4))
    return Mapping(tmp_path / "map.bin")


def test_join_keeps_every_row_and_nulls_for_failed_ones(tmp_path):
    cat = _cat()
    rows = [0, 2, 3, 5]  # rows 1 and 4 failed preprocessing
    records = [{"index": i, "row": r, "Component_name": f"c{r}"} for i, r in enumerate(rows)]
    best = [5, 0, 11, 7]
    m = _mapping(tmp_path, best)
    p = np.arange(12, dtype=float).reshape(3, 4) / 12
    p[1, 3] = np.nan  # neuron 7 has no estimate
    sub = cat.iloc[rows]
    ok = ((sub.Peak_to_ring < 3) & (sub.S_Code != "E")).to_numpy()
    cols = mapping_columns(m, records, "Component_name", neuron_values={"P_sidelobe": p}, applicable=ok)
    assert list(cols.columns) == ["Component_name", "Best_neuron", "Best_neuron_y", "Best_neuron_x",
                                  "Neuron_dist", "P_sidelobe"]
    np.testing.assert_array_equal(cols.Best_neuron_y, [k // 4 for k in best])
    np.testing.assert_array_equal(cols.Best_neuron_x, [k % 4 for k in best])
    np.testing.assert_allclose(cols.Neuron_dist, [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    out = annotate_catalogue(cat, cols, "Component_name")
    assert len(out) == len(cat)
    pd.testing.assert_frame_equal(out[cat.columns], cat)  # original rows, order and values kept
    failed = out.Component_name.isin(["c1", "c4"])
    assert out.loc[failed, ["Best_neuron_y", "Best_neuron_x", "Neuron_dist", "P_sidelobe"]].isna().all().all()
    got = out.set_index("Component_name").P_sidelobe
    assert got["c0"] == pytest.approx(5 / 12) and got["c2"] == pytest.approx(0.0)
    assert got["c3"] == -1.0  # Peak_to_ring >= 3: not applicable
    assert got["c5"] == -1.0  # S_Code E, and its neuron has no estimate
    # ids read back from JSON as strings join onto integer ids
    icat = pd.DataFrame({"id": [10, 11, 12], "x": [1.0, 2.0, 3.0]})
    j = annotate_catalogue(icat, pd.DataFrame({"id": ["12", "10"], "Neuron_dist": [0.5, 0.7]}), "id")
    assert list(j.id) == [10, 11, 12] and np.isnan(j.Neuron_dist[1]) and j.Neuron_dist[2] == 0.5


def test_join_refuses_bad_inputs(tmp_path):
    cat = _cat(3)
    with pytest.raises(ShapeError, match="not in the catalogue"):
        annotate_catalogue(cat, pd.DataFrame({"Component_name": ["zz"], "Neuron_dist": [1.0]}),
                           "Component_name")
    with pytest.raises(ShapeError, match="not unique"):
        annotate_catalogue(cat, pd.DataFrame({"Component_name": ["c0", "c0"], "Neuron_dist": [1.0, 2.0]}),
                           "Component_name")
    with pytest.raises(ShapeError, match="already exist"):
        annotate_catalogue(cat, pd.DataFrame({"Component_name": ["c0"], "S_Code": ["S"]}), "Component_name")
    m = _mapping(tmp_path, [0, 1])
    with pytest.raises(ShapeError, match="3 records for 2"):
        mapping_columns(m, ["c0", "c1", "c2"], "Component_name")
