"""Training through the Python API (:class:`somtorch.engine.Trainer`).

* PINK reproduction (``rng="pink"``): ``som_blobs64.bin`` and runs A, B, D of spec §9.2 within 1e-3
  (with the spec's per-neuron sums and best-match counts);
* interrupting (a stop after k images, or a SIGTERM) and resuming from the checkpoint gives
  exactly the SOM, counts and history of an uninterrupted run;
* the metrics history (QE, TE, change) against an independent numpy replay of the training;
* ``inter_store`` off / overwrite / keep: which files, when, with which SOM;
* neighbourhood functions against PINK's formulas and table (§5.4, §5.5);
* initialisation methods (§5.7).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from somtorch.engine import (
    Neighbourhood,
    RotationInvariantSOM,
    SOMGeometry,
    Trainer,
    neighbourhood_function,
    progress_ticks,
)
from somtorch.engine.data import ImageSource
from somtorch.errors import ConfigError, ShapeError
from somtorch.geometry import Lattice
from somtorch.io import read_images, read_som, write_som

DATA = Path(__file__).parent / "data"
F32 = np.float32


# --------------------------------------------------------------------------------------------
# PINK reproduction
# --------------------------------------------------------------------------------------------

SPEC_92 = {  # run: (numrot, init, per-neuron sums, best-match counts (rows = x))
    "A": (4, "zero", [99.77283, 80.17915, 31.21619, 80.17915, 60.85437, 21.56118, 31.21619, 21.56118, 6.63317],
          [[20, 0, 0], [0, 0, 0], [0, 0, 0]]),
    "B": (4, "random", [209.77232, 193.8206, 204.33212, 188.11475, 169.21423, 180.60358, 213.19967, 179.62058,
                        190.30452], [[0, 0, 0], [1, 11, 3], [0, 3, 2]]),
    "D": (8, "random", [187.87952, 167.95164, 190.17375, 165.61306, 145.51181, 168.9242, 201.53776, 168.77514,
                        192.61354], [[0, 0, 0], [0, 20, 0], [0, 0, 0]]),
}


@pytest.mark.parametrize("run", list(SPEC_92))
def test_spec_runs_a_b_d_reproduced(run):
    numrot, init, sums, counts = SPEC_92[run]
    imgs = read_images(DATA / "train20.bin")
    som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=numrot, convention="pink"), init=init,
                               seed=1, rng="pink")
    assert som.tie_break == "pink"  # the PINK reproduction mode breaks near-ties like PINK
    tr = Trainer(som, Neighbourhood("gaussian", 1.1, 0.2), metrics_sample=0)
    assert tr.rng == "pink" and tr.seed == 1 and tr.shuffle
    tr.fit(DATA / "train20.bin")
    gold, _ = read_som(DATA / f"som{run}.bin")
    diff = float((som.weight - gold).abs().max())
    assert diff < 1e-3, diff
    np.testing.assert_allclose(som.weight.sum(dim=(1, 2, 3)).numpy(), sums, rtol=1e-5)
    assert som.update_count.reshape(3, 3).tolist() == counts
    assert len(imgs) == 20


def test_blobs64_reproduced():
    """``Pink --train blobs64.bin ... -n 360 --init random --seed 3 --dist-func unitygaussian 1.5 0.1
    --num-iter 2 --input-shuffle-off`` (manifest.json)."""
    som = RotationInvariantSOM(Lattice("cartesian", (4, 4)), SOMGeometry(64, numrot=360, convention="pink"), init="random",
                               seed=3, rng="pink")
    assert (som.geometry.nd, som.geometry.ed) == (91, 45)
    Trainer(som, Neighbourhood("unitygaussian", 1.5, 0.1), num_iter=2, shuffle=False,
            metrics_sample=0).fit(DATA / "blobs64.bin")
    gold, _ = read_som(DATA / "som_blobs64.bin")
    diff = float((som.weight - gold).abs().max())
    assert diff < 1e-3, diff


@pytest.mark.parametrize("name,lattice,numrot,nb,seed,images", [
    ("som_hex5.bin", Lattice("hexagonal", (5,)), 8, ("mexicanHat", 1.2, 0.2), 5, "blobs24.bin"),
    ("som_two_channel.bin", Lattice("cartesian", (3, 3)), 8, ("gaussian", 1.1, 0.2), 9, "two_channel20.bin"),
])
def test_other_golden_trainings_reproduced(name, lattice, numrot, nb, seed, images):
    """manifest.json: hexagonal SOM with mexicanHat, and two-channel data (random init, shuffled)."""
    imgs = read_images(DATA / images)
    som = RotationInvariantSOM(lattice, SOMGeometry(imgs.shape[-1], imgs.shape[1], numrot=numrot, convention="pink"),
                               init="random", seed=seed, rng="pink")
    Trainer(som, Neighbourhood(*nb), metrics_sample=0).fit(imgs)
    gold, _ = read_som(DATA / name)
    assert gold.shape == som.weight.shape
    diff = float((som.weight - gold).abs().max())
    assert diff < 1e-3, diff


def test_pink_arithmetic_reproduces_run_a_bit_for_bit():
    som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4, convention="pink"), init="zero",
                               seed=1, rng="pink", arithmetic="pink")
    Trainer(som, metrics_sample=0).fit(DATA / "train20.bin")
    gold, _ = read_som(DATA / "somA.bin")
    assert torch.equal(som.weight, gold)
    w = som.weight[:, 0]
    assert [float(w[0, 11, 11]), float(w[4, 11, 11]), float(w[8, 0, 0]), float(w[8, 11, 11])] == [
        float(F32(v)) for v in (0.35918063, 0.23192981, 0, 0.026270876)]


# --------------------------------------------------------------------------------------------
# checkpoint and resume
# --------------------------------------------------------------------------------------------

def _small_som(seed=4, init="random", **kw):
    return RotationInvariantSOM(Lattice("cartesian", (3, 2)), SOMGeometry(10, numrot=8, convention="pink"), init=init,
                                seed=seed, **kw)


@pytest.fixture(scope="module")
def small_images():
    g = torch.Generator().manual_seed(11)
    return torch.rand(13, 1, 10, 10, generator=g)


def _trainer(som, tmp_path=None, **kw):
    args = dict(neighbourhood=Neighbourhood("unitygaussian", 1.4, 0.3), num_iter=3, shuffle=True,
                progress_steps=5, metrics_sample=6, batch_size=4)
    if tmp_path is not None:
        args["checkpoint_path"] = tmp_path / "ckpt.pt"
    args.update(kw)
    return Trainer(som, **args)


def _strip_time(records):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


@pytest.mark.parametrize("stop_after", [1, 13, 20, 38])
def test_resume_after_k_images_gives_the_uninterrupted_som(stop_after, small_images, tmp_path):
    ref = _small_som()
    ref_hist = _trainer(ref).fit(small_images)
    som = _small_som()
    tr = _trainer(som, tmp_path)
    tr.stop_after = stop_after
    with pytest.raises(KeyboardInterrupt, match=f"stopped after {stop_after} images"):
        tr.fit(small_images)
    assert not torch.equal(som.weight, ref.weight)
    # a fresh process: new SOM object (even with another init) and trainer, resumed from the file
    som2 = _small_som(init="zero")
    hist = _trainer(som2, tmp_path).fit(small_images, resume=True)
    assert torch.equal(som2.weight, ref.weight)
    assert torch.equal(som2.update_count, ref.update_count)
    assert _strip_time(hist.records) == _strip_time(ref_hist.records)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers can only be installed from the main thread")
def test_stop_request_by_signal_then_resume(small_images, tmp_path):
    ref = _small_som()
    _trainer(ref, batch_size=1).fit(small_images)
    som = _small_som()
    tr = _trainer(som, tmp_path, batch_size=1)
    calls = []
    orig = ImageSource.get

    def get(self, idx, device=None):
        calls.append(1)
        if len(calls) == 7:  # a SIGTERM arrives while the 7th image is being read
            os.kill(os.getpid(), signal.SIGTERM)
        return orig(self, idx, device)

    before = signal.getsignal(signal.SIGTERM)
    mp = pytest.MonkeyPatch()
    mp.setattr(ImageSource, "get", get)
    try:
        with pytest.raises(KeyboardInterrupt, match="checkpoint written"):
            tr.fit(small_images)
    finally:
        mp.undo()
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    st = Trainer.load_checkpoint(tmp_path / "ckpt.pt")
    assert 6 <= int(st["tick"]) < 39  # 6: the 7th image was read ahead while the 6th trained (prefetch)
    som2 = _small_som(init="zero")
    _trainer(som2, tmp_path, batch_size=1).fit(small_images, resume=True)
    assert torch.equal(som2.weight, ref.weight)


@pytest.mark.parametrize("change,field", [
    (dict(seed=5), "seed"), (dict(shuffle=False), "shuffle"), (dict(num_iter=2), "num_iter"),
    (dict(neighbourhood=Neighbourhood("unitygaussian", 1.0, 0.3)), "neighbourhood"), (dict(rng="pink"), "rng"),
])
def test_resume_with_other_settings_is_refused(change, field, small_images, tmp_path):
    tr = _trainer(_small_som(), tmp_path)
    tr.stop_after = 3
    with pytest.raises(KeyboardInterrupt):
        tr.fit(small_images)
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        _trainer(_small_som(), tmp_path, **change).fit(small_images, resume=True)
    with pytest.raises(ConfigError, match="weight shape"):
        other = RotationInvariantSOM(Lattice("cartesian", (2, 2)), SOMGeometry(10, numrot=8, convention="pink"), seed=4)
        _trainer(other, tmp_path).fit(small_images, resume=True)


def test_checkpoint_is_plain_tensors_and_json(small_images, tmp_path):
    som = _small_som()
    tr = _trainer(som, tmp_path, checkpoint_every=2)
    tr.stop_after = 5
    with pytest.raises(KeyboardInterrupt):
        tr.fit(small_images)
    st = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # no pickle of arbitrary objects
    assert int(st["tick"]) == 5 and int(st["iteration"]) == 0 and int(st["position"]) == 5
    meta = json.loads(st["meta_json"])
    assert meta["neighbourhood"] == ["unitygaussian", 1.4, 0.3, None] and meta["num_iter"] == 3
    assert torch.equal(st["weight"], som.weight)


def test_batch_size_does_not_change_training(small_images):
    a, b = _small_som(), _small_som()
    _trainer(a, batch_size=1).fit(small_images)
    _trainer(b, batch_size=13).fit(small_images)
    assert torch.equal(a.weight, b.weight)


# --------------------------------------------------------------------------------------------
# metrics history against an independent replay (numrot 1, no flip: plain L2 between images)
# --------------------------------------------------------------------------------------------

def _replay(images: np.ndarray, w0: np.ndarray, order: list[int], coords: np.ndarray, nb):
    """Weights after every tick, by the PINK update rule with the identity transform only."""
    w = w0.astype(F32).copy()
    states = [w.copy()]
    for idx in order:
        x = images[idx]
        d = ((w - x) ** 2).reshape(len(w), -1).sum(1)
        best = int(np.argmin(d))
        for i in range(len(w)):
            gd = math.dist(coords[best], coords[i])
            f = F32(nb[1] * math.exp(-0.5 * (gd / nb[0]) ** 2))  # unitygaussian
            w[i] = w[i] - (w[i] - x) * f
        states.append(w.copy())
    return states


def _metrics(w: np.ndarray, images: np.ndarray, coords: np.ndarray):
    d = np.sqrt(((images[:, None] - w[None]) ** 2).reshape(len(images), len(w), -1).sum(-1))
    order = np.argsort(d, axis=1)
    qe = d[np.arange(len(images)), order[:, 0]].mean()
    sep = [math.dist(coords[a], coords[b]) for a, b in order[:, :2]]
    te = float(np.mean([s > 1 + 1e-6 for s in sep]))
    return qe, te


def test_metrics_history_matches_replay():
    rng = np.random.default_rng(3)
    n, d = 9, 6
    images = rng.random((n, 1, d, d)).astype(F32)
    lat = Lattice("cartesian", (3, 3))
    w0 = rng.random((9, 1, d, d)).astype(F32)
    som = RotationInvariantSOM(lat, SOMGeometry(d, numrot=1, flip=False, convention="pink"), init=torch.from_numpy(w0))
    tr = Trainer(som, Neighbourhood("unitygaussian", 1.0, 0.5), num_iter=2, shuffle=False,
                 progress_steps=4, metrics_sample=n)
    hist = tr.fit(torch.from_numpy(images))
    ticks = progress_ticks(2 * n, 4)
    assert ticks == [5, 9, 13, 17] and [r["tick"] for r in hist.records] == ticks  # PINK's schedule
    states = _replay(images, w0, list(range(n)) * 2, lat.coords.numpy(), (1.0, 0.5))
    np.testing.assert_allclose(som.weight.numpy(), states[-1], atol=1e-6)
    prev = states[0]
    for rec in hist.records:
        w = states[rec["tick"]]
        qe, te = _metrics(w, images, lat.coords.numpy())
        assert rec["qe"] == pytest.approx(qe, rel=1e-5)
        assert rec["te"] == pytest.approx(te)
        change = np.linalg.norm((w - prev).ravel()) / np.linalg.norm(prev.ravel())
        assert rec["change"] == pytest.approx(change, rel=1e-4)
        assert rec["iteration"] == (rec["tick"] - 1) // n and rec["epoch"] == pytest.approx(rec["tick"] / n)
        prev = w
    # training converges on this data: QE decreases
    assert hist.records[-1]["qe"] < hist.records[0]["qe"]


def test_history_files(tmp_path, small_images):
    som = _small_som()
    hist = _trainer(som).fit(small_images)
    hist.save(tmp_path / "m.csv")
    hist.save(tmp_path / "m.json")
    df = hist.to_dataframe()
    assert list(df["tick"]) == progress_ticks(39, 5)
    assert {"qe", "te", "change", "epoch", "sigma", "damping"} <= set(df.columns)
    import pandas as pd

    back = pd.read_csv(tmp_path / "m.csv")
    np.testing.assert_allclose(back["qe"], df["qe"])
    assert json.loads((tmp_path / "m.json").read_text())[-1]["tick"] == 36


# --------------------------------------------------------------------------------------------
# inter-store
# --------------------------------------------------------------------------------------------

def _states_at(small_images, ticks, **kw):
    """SOM weights after each tick in ``ticks`` (by stopping a fresh run there)."""
    out = {}
    for t in ticks:
        som = _small_som()
        tr = _trainer(som, **kw)
        tr.stop_after = t
        tr.checkpoint_path = Path(os.devnull)  # stop_after only acts with a checkpoint path
        tr.save_checkpoint = lambda state: None
        with pytest.raises(KeyboardInterrupt):
            tr.fit(small_images)
        out[t] = som.weight.clone()
    return out


def test_inter_store_keep_and_overwrite(small_images, tmp_path):
    pts = progress_ticks(39, 5)  # PINK: sec 7, rem 4 -> first at 8, then every 7 (39 is not one)
    assert pts == [8, 15, 22, 29, 36]
    keep = tmp_path / "keep" / "res.som.bin"
    keep.parent.mkdir()
    som = _small_som()
    _trainer(som, inter_store="keep", inter_store_path=keep).fit(small_images)
    files = sorted(os.listdir(keep.parent))
    assert files == [f"res.som_{k}.bin" for k in range(len(pts))]
    states = _states_at(small_images, [t + 1 for t in pts])
    for k, t in enumerate(pts):  # written after the image that follows each progress point
        w, _ = read_som(keep.parent / f"res.som_{k}.bin")
        assert torch.equal(w, states[t + 1]), k
    ow = tmp_path / "ow.bin"
    som = _small_som()
    _trainer(som, inter_store="overwrite", inter_store_path=ow).fit(small_images)
    assert torch.equal(read_som(ow)[0], states[pts[-1] + 1])
    off = tmp_path / "off"
    off.mkdir()
    _trainer(_small_som(), inter_store="off", inter_store_path=off / "x.bin").fit(small_images)
    assert os.listdir(off) == []
    with pytest.raises(ConfigError, match="inter_store_path"):
        Trainer(_small_som(), inter_store="keep")
    with pytest.raises(ConfigError, match="inter_store"):
        Trainer(_small_som(), inter_store="sometimes", inter_store_path=ow)


# --------------------------------------------------------------------------------------------
# neighbourhood functions
# --------------------------------------------------------------------------------------------

def test_neighbourhood_functions_reproduce_pink_table():
    """Spec §5.4 table (σ=1.1, damping=0.2, float32), exactly."""
    x = [0.0, 1.0, math.sqrt(2.0), 2.0]
    table = {"gaussian": [0.072534963, 0.047982946, 0.031741425, 0.013890098],
             "unitygaussian": [0.2, 0.13230294, 0.087520346, 0.038299043],
             "mexicanHat": [0.16539238, 0.018988429, -0.047253732, -0.073028475]}
    xs = np.sqrt(np.asarray([0, 1, 2, 4], dtype=F32))
    for name, vals in table.items():
        got = neighbourhood_function(xs, name, 1.1, 0.2)
        assert got.dtype == np.float32
        assert got.tolist() == [float(F32(v)) for v in vals], name
        # and the textbook formulas in double precision
        s, dmp = 1.1, 0.2
        for xi, g in zip(x, got):
            if name == "gaussian":
                ref = dmp / (s * math.sqrt(2 * math.pi)) * math.exp(-0.5 * (xi / s) ** 2)
            elif name == "unitygaussian":
                ref = dmp * math.exp(-0.5 * (xi / s) ** 2)
            else:
                ref = 2 * dmp / (math.sqrt(3 * s) * math.pi ** 0.25) * (1 - xi ** 2 / s ** 2) * math.exp(-xi ** 2 / (2 * s ** 2))
            assert g == pytest.approx(ref, rel=1e-6)


def test_max_update_distance_is_strict_and_factors_follow_lattice():
    lat = Lattice("cartesian", (3, 3))
    f = Neighbourhood("unitygaussian", 1.0, 0.5, max_update_distance=1.0).factors(lat.distances())
    centre = f[4].reshape(3, 3)
    assert centre[1, 1] == pytest.approx(0.5) and int((centre != 0).sum()) == 1  # distance 1 excluded
    f = Neighbourhood("unitygaussian", 1.0, 0.5, max_update_distance=1.01).factors(lat.distances())
    assert int((f[4] != 0).sum()) == 5
    np.testing.assert_allclose(f[4, 1].item(), 0.5 * math.exp(-0.5), rtol=1e-6)
    # training moves only neurons inside the radius
    som = RotationInvariantSOM(lat, SOMGeometry(6, numrot=1, flip=False, convention="pink"), init="random", seed=2)
    w0 = som.weight.clone()
    Trainer(som, Neighbourhood("gaussian", 1.1, 0.2, max_update_distance=1.0), shuffle=False,
            metrics_sample=0).fit(torch.rand(1, 1, 6, 6))
    moved = (som.weight != w0).flatten(1).any(1)
    assert int(moved.sum()) == 1 and int(som.update_count.sum()) == 1 and bool(moved[som.update_count.argmax()])


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="mexicanHat", sigma=0.0), "sigma"),
    (dict(name="gaussian", sigma=-1.0), "sigma"),
    (dict(name="triangle"), "dist_func"),
    (dict(max_update_distance=0.0), "max_update_distance"),
])
def test_neighbourhood_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Neighbourhood(**kwargs)


# --------------------------------------------------------------------------------------------
# initialisation
# --------------------------------------------------------------------------------------------

def test_init_methods():
    lat, geo = Lattice("cartesian", (2, 2)), SOMGeometry(8, numrot=4, convention="pink")  # nd 12
    assert torch.count_nonzero(RotationInvariantSOM(lat, geo, init="zero").weight) == 0
    r1 = RotationInvariantSOM(lat, geo, init="random", seed=3).weight
    r2 = RotationInvariantSOM(lat, geo, init="random", seed=3).weight
    assert torch.equal(r1, r2) and float(r1.min()) >= 0 and float(r1.max()) < 1
    assert not torch.equal(r1, RotationInvariantSOM(lat, geo, init="random", seed=4).weight)
    # PINK's std::mt19937 fill: seed 1 gives 0.41702199, 0.99718481, 0.72032452, ... (§5.7)
    p = RotationInvariantSOM(lat, geo, init="random", seed=1, rng="pink").weight
    assert p.flatten()[:3].tolist() == [float(F32(v)) for v in (0.41702199, 0.99718481, 0.72032452)]
    gold_b = read_som(DATA / "somB.bin")[0]  # trained, so only its shape is reusable here
    assert gold_b.shape == (9, 1, 23, 23)
    # preferred direction: random plus a main diagonal of 1.0 (every channel)
    geo2 = SOMGeometry(8, channels=2, numrot=4, convention="pink")
    for rng in ("torch", "pink"):
        w = RotationInvariantSOM(lat, geo2, init="random_with_preferred_direction", seed=1, rng=rng).weight
        diag = torch.diagonal(w, dim1=-2, dim2=-1)
        assert bool((diag == 1).all()), rng
        off = w.clone()
        off[..., torch.arange(12), torch.arange(12)] = 0.5
        assert float(off.max()) < 1
    # the PINK fill underneath the diagonal is the plain random fill
    p2 = RotationInvariantSOM(lat, geo, init="random_with_preferred_direction", seed=1, rng="pink").weight
    mask = ~torch.eye(12, dtype=torch.bool)
    assert torch.equal(p2[..., mask], p[..., mask])


def test_init_from_tensor_and_file(tmp_path):
    lat, geo = Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4, convention="pink")
    gold, _ = read_som(DATA / "somA.bin")
    som = RotationInvariantSOM(lat, geo, init=DATA / "somA.bin")
    assert torch.equal(som.weight, gold)
    som2 = RotationInvariantSOM(lat, geo, init=gold[:, 0].numpy())  # (N, nd, nd) array
    assert torch.equal(som2.weight, gold)
    som.save_pink(tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes()[-4 * 23 * 23 * 9:] == (DATA / "somA.bin").read_bytes()[-4 * 23 * 23 * 9:]
    with pytest.raises(ShapeError):
        RotationInvariantSOM(lat, geo, init=torch.zeros(9, 1, 20, 20))
    write_som(tmp_path / "small.bin", torch.zeros(9, 1, 20, 20), (3, 3))
    with pytest.raises(Exception, match="neuron_shape|20"):
        RotationInvariantSOM(lat, geo, init=tmp_path / "small.bin")
    # continuing training from a file equals continuing the in-memory SOM
    imgs = read_images(DATA / "train20.bin")[:5]
    a = RotationInvariantSOM(lat, geo, init=DATA / "somB.bin", seed=1)
    b = RotationInvariantSOM(lat, geo, init=read_som(DATA / "somB.bin")[0], seed=1)
    for s in (a, b):
        Trainer(s, metrics_sample=0).fit(imgs)
    assert torch.equal(a.weight, b.weight)


def test_training_input_errors():
    som = _small_som()
    with pytest.raises(ShapeError, match="SOM expects"):
        Trainer(som).fit(torch.rand(3, 1, 12, 12))
    bad = torch.rand(3, 1, 10, 10)
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(ShapeError, match="non-finite"):
        Trainer(som, metrics_sample=0).fit(bad)
    with pytest.raises(ConfigError, match="num_iter"):
        Trainer(som, num_iter=0)


def test_finite_check_is_exact_about_overflowing_sums():
    """check_finite's one-reduction fast test: huge but finite pixels (their sum overflows to inf)
    pass, one inf or NaN among them is named."""
    from somtorch.engine.data import check_finite

    class _Src:
        path = "x.bin"

    huge = torch.full((4, 1, 6, 6), 3e38)
    assert not torch.isfinite(huge.sum())
    check_finite(huge, range(4), _Src(), "mapping")  # no error
    for bad in (float("inf"), float("-inf"), float("nan")):
        x = huge.clone()
        x[2, 0, 1, 1] = bad
        with pytest.raises(ShapeError, match=r"non-finite pixel values in image\(s\) \[2\] of x.bin"):
            check_finite(x, range(4), _Src(), "mapping")
