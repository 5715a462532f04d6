"""The end-to-end demo (``python -m somtorch.demo``) and its quality report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from somtorch.demo import main, roc_auc, sidelobe_report


def _auc_pairs(score, truth) -> float:
    """Reference: the fraction of (positive, negative) pairs ranked correctly, ties count 1/2."""
    pos = [s for s, t in zip(score, truth) if t]
    neg = [s for s, t in zip(score, truth) if not t]
    good = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return good / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_pair_counting(seed):
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 6, 40) / 5.0  # many ties
    truth = rng.random(40) < 0.4
    assert roc_auc(score, truth) == pytest.approx(_auc_pairs(score, truth), abs=1e-12)


def test_roc_auc_edge_cases():
    assert roc_auc([0.1, 0.9], [False, True]) == 1.0
    assert roc_auc([0.9, 0.1], [False, True]) == 0.0
    assert np.isnan(roc_auc([0.5, 0.5], [True, True]))


def test_sidelobe_report_on_a_constructed_case():
    # neuron 0: 3 sidelobes + 1 real (compact); neuron 1: 4 real (2 double, 2 compact)
    bmu = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    sl = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    morph = np.array(["sidelobe"] * 3 + ["compact", "double", "double", "compact", "compact"])
    p = np.array([0.75] * 4 + [0.0] * 4)
    held = np.array([1, 1, 0, 1, 1, 0, 1, 1], bool)
    r = sidelobe_report(bmu, morph, sl, p, held, num_neurons=4)
    assert r["purity_sidelobe"] == pytest.approx(7 / 8)
    assert r["purity_morphology"] == pytest.approx((3 + 2) / 8)  # ties in neuron 1 pick 2
    assert r["n_neurons_used"] == 2 and r["n_heldout"] == 6 and r["coverage"] == 1.0
    # held out: neuron 0 -> rows 0, 1 (sidelobe), 3 (real) predicted sidelobe; neuron 1 -> real
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(1.0)
    assert r["roc_auc"] == pytest.approx(_auc_pairs(p[held], sl[held]))


def test_sidelobe_report_undefined_probabilities_reduce_coverage():
    r = sidelobe_report([0, 1], ["a", "b"], [True, False], [-1.0, 0.2], [True, True], num_neurons=2)
    assert r["coverage"] == 0.5 and np.isnan(r["recall"])


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["--out", str(out), "--n-sources", "260", "--image-size", "24", "--crop", "96",
               "--schedule", "demo", "schedule.stages.stage1.num_iter=1",
               "schedule.stages.stage2.num_iter=1", "metrics_sample=32", "plots=false"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "quality report" in text and str(out) in text
    cat = pd.read_csv(out / "catalogue.csv")
    final = pd.read_csv(out / "catalogue_final.csv")
    truth = pd.read_csv(out / "truth.csv")
    # left join: every original row, in order, with the original columns untouched
    assert len(final) == len(cat) == len(truth)
    pd.testing.assert_frame_equal(final[cat.columns], cat)
    assert "Is_sidelobe" not in cat.columns  # truth is kept apart
    applicable = (cat.Peak_to_ring < 3) & (cat.S_Code != "E")
    assert final.loc[applicable, "Best_neuron"].notna().all()
    assert final.loc[~applicable, "Best_neuron"].isna().all()
    assert (final.loc[~applicable, "P_sidelobe"] == -1).all()
    p = final.loc[applicable, "P_sidelobe"]
    assert ((p == -1) | ((p >= 0) & (p <= 1))).all()
    assert (final.loc[applicable, "Neuron_dist"] >= 0).all()
    # the map's best matches agree with the catalogue columns
    bmu = pd.read_csv(out / "map" / "bmu.csv")
    assert (final.loc[applicable, "Best_neuron"].to_numpy() == bmu["bmu"].to_numpy()).all()
    from astropy.table import Table

    assert len(Table.read(out / "catalogue_final.fits")) == len(cat)
    rep = json.loads((out / "report.json").read_text())
    assert 0 <= rep["purity_sidelobe"] <= 1 and rep["n_mapped"] == int(applicable.sum())
    for name in ("som_mosaic.png", "bmu_counts.png", "label_fractions.png",
                 "neuron_matches_sidelobe_like.png", "neuron_matches_real_like.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    # never overwrite an earlier run
    assert main(["--out", str(out)]) == 1
