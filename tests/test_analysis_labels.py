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


# ---------------------------------------------------------------- evidence, tables, routes

from somtorch.analysis.labels import (  # noqa: E402
    inspection_table,
    join_neuron_table,
    knn_predict,
    label_evidence,
    read_neuron_table,
    train_distance_classifier,
    write_neuron_table,
)
from somtorch.errors import FileFormatError, OutputExistsError  # noqa: E402


def test_label_evidence_analytic_fractions():
    # neuron 0: 6 side of 8; neuron 1: 1 side of 4; class totals side 7, real 5
    bmu = [0] * 8 + [1] * 4
    lab = ["side"] * 6 + ["real"] * 2 + ["side"] + ["real"] * 3
    kt = transfer_labels(bmu, lab, 3)
    ev = label_evidence(kt, "side", name="sidelobe")
    assert ev.loc[0, "P_sidelobe"] == pytest.approx(6 / 8)
    assert ev.loc[1, "P_sidelobe"] == pytest.approx(1 / 4)
    assert ev["count_sidelobe"].tolist() == [6, 1, 0] and ev["n_labelled"].tolist() == [8, 4, 0]
    b0 = (6 / 7) / (6 / 7 + 2 / 5)
    assert ev.loc[0, "balanced_P_sidelobe"] == pytest.approx(b0)
    assert np.isnan(ev.loc[2, "P_sidelobe"]) and bool(ev.loc[2, "ambiguous"])


def test_inspection_table_mean_of_inspectors():
    t = inspection_table([[55, 10, 0], [45, 20, 0]], [100, 100, 0])
    assert t["P_sidelobe"].iloc[:2].tolist() == pytest.approx([0.5, 0.15])
    assert np.isnan(t["P_sidelobe"].iloc[2])
    assert t["std_sidelobe"].iloc[0] == pytest.approx(np.std([55, 45], ddof=1))
    with pytest.raises(ShapeError):
        inspection_table([5], [3])


def test_neuron_table_roundtrip_and_join(tmp_path):
    lat = Lattice("cartesian", (3, 2))
    coords = lat.coords.numpy()
    table = inspection_table([50, 0, 10, 100, 20, 30], 100)
    p = tmp_path / "neuron_info.csv"
    write_neuron_table(table, p, coords=coords)
    with pytest.raises(OutputExistsError):
        write_neuron_table(table, p)
    back = read_neuron_table(p)
    assert back["P_sidelobe"].tolist() == pytest.approx(table["P_sidelobe"].tolist())
    # cookbook's neuron_info.csv: bmu_y, bmu_x, P_sidelobe only
    pd.DataFrame({"bmu_y": [2, 0], "bmu_x": [1, 1], "P_sidelobe": [0.3, 0.0]}).to_csv(tmp_path / "b.csv", index=False)
    t2 = read_neuron_table(tmp_path / "b.csv", coords=coords)
    assert t2.index.tolist() == [5, 1]
    with pytest.raises(FileFormatError):
        read_neuron_table(tmp_path / "b.csv")
    cols = join_neuron_table([5, 1, 3, 0], t2, applicable=[True, True, True, False])
    # neuron 3 is not in the table -> null; entry 3 not applicable -> null
    assert cols["P_sidelobe"].tolist() == [0.3, 0.0, -1.0, -1.0]


def _separable(n_per=60, n_neurons=12, seed=0):
    # class A sits close to neurons 0..5, class B close to neurons 6..11, plus noise
    rng = np.random.default_rng(seed)
    base = np.full((2, n_neurons), 10.0)
    base[0, :6] = 4.0
    base[1, 6:] = 4.0
    x = np.concatenate([base[0] + rng.normal(0, 1.5, (n_per, n_neurons)),
                        base[1] + rng.normal(0, 1.5, (n_per, n_neurons))])
    y = np.array(["A"] * n_per + ["B"] * n_per, dtype=object)
    return x, y


def test_distance_classifier_beats_chance_on_separable_case():
    x, y = _separable()
    clf, rep = train_distance_classifier(x, y, test_fraction=0.3, seed=1, epochs=150)
    assert rep.n_test == 36 and rep.n_train == 84 and rep.chance == pytest.approx(0.5)
    assert rep.accuracy >= 0.9 and rep.knn_accuracy >= 0.9
    proba = clf.predict_proba(x[:3])
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1)


def test_distance_classifier_chance_on_random_labels():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 8))
    y = rng.choice(["A", "B"], size=200)
    _, rep = train_distance_classifier(x, y, seed=0, epochs=60)
    assert abs(rep.accuracy - 0.5) < 0.2 and abs(rep.knn_accuracy - 0.5) < 0.2


def test_knn_by_hand():
    tr = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    lab = ["a", "a", "b", "b"]
    assert knn_predict(tr, lab, [[0.05, 0.0], [4.9, 5.2]], k=1).tolist() == ["a", "b"]


def test_knowledge_transfer_csv_roundtrip(tmp_path):
    kt = transfer_labels([0, 0, 1], ["a", "b", "a"], 3)
    kt.write_csv(tmp_path / "kt.csv")
    back = read_neuron_table(tmp_path / "kt.csv")
    assert back["count_a"].tolist() == [1, 1, 0] and back["frac_b"].iloc[0] == pytest.approx(0.5)
    assert back.index.tolist() == [0, 1, 2]
