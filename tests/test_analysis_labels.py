import numpy as np
import pandas as pd
import pytest

from somtorch.analysis.labels import catalogue_columns, merge_catalogue, transfer_labels
from somtorch.errors import ShapeError
from somtorch.geometry import Lattice


def test_counts_fractions_and_balance_by_hand():
    # neuron 0: 3 real, 1 sidelobe; neuron 1: 1 real, 1 sidelobe; neuron 2: nothing
    bmu = [0, 0, 0, 0, 1, 1]
    lab = ["real", "real", "real", "side", "real", "side"]
    kt = transfer_labels(bmu, lab, 3, min_count=2, margin=0.1)
    assert kt.counts.loc[0].tolist() == [3, 1] and kt.counts.loc[1].tolist() == [1, 1]
    assert kt.counts.loc[2].tolist() == [0, 0]
    assert kt.probability("side").iloc[0] == pytest.approx(0.25)
    assert np.isnan(kt.probability("side").iloc[2])
    # class totals: real 4, side 2 -> neuron 1 balanced: (1/4)/(1/4+1/2) = 1/3 real
    fb = kt.fractions(balanced=True)
    assert fb.loc[1, "real"] == pytest.approx(1 / 3)
    assert kt.majority().tolist() == ["real", "side", None]
    # neuron 0 balanced real = (3/4)/(3/4+1/2) = 0.6 vs 0.4 -> gap 0.2 > 0.1 -> not ambiguous
    assert kt.ambiguous().tolist() == [False, False, True]
    t = kt.table()
    assert t.loc[0, "count_real"] == 3 and t.loc[2, "n_labelled"] == 0


def test_nan_labels_ignored_and_bad_input():
    kt = transfer_labels([0, 1, 1], ["a", None, "b"], 2)
    assert kt.counts.to_numpy().sum() == 2
    with pytest.raises(ShapeError):
        transfer_labels([0, 5], ["a", "b"], 2)
    with pytest.raises(ShapeError):
        transfer_labels([0], ["a", "b"], 2)


def test_catalogue_columns_cartesian_coords_follow_pink_order():
    lat = Lattice("cartesian", (3, 2))  # neuron i -> (i // 2, i % 2)
    coords = lat.coords.numpy()
    cols = catalogue_columns([5, 2], [1.5, 2.5], coords, neuron_values={"P_sidelobe": np.arange(6) / 10},
                             applicable=[True, False])
    assert cols["Best_neuron_y"].tolist() == [2, 1] and cols["Best_neuron_x"].tolist() == [1, 0]
    assert cols["P_sidelobe"].tolist() == [0.5, -1.0]


def test_merge_catalogue_left_join_keeps_failed_rows_null():
    orig = pd.DataFrame({"Component_name": ["a", "b", "c"], "flux": [1, 2, 3]})
    new = pd.DataFrame({"Component_name": ["a", "c"], "P_sidelobe": [0.1, 0.9]})
    out = merge_catalogue(orig, new, "Component_name")
    assert len(out) == 3 and np.isnan(out.loc[1, "P_sidelobe"]) and out.loc[2, "P_sidelobe"] == 0.9
    with pytest.raises(ShapeError):
        merge_catalogue(orig, pd.concat([new, new]), "Component_name")
