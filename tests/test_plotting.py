"""Plots render headless, have the expected panels/patches, and save atomically without clobbering."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backend_bases import KeyEvent  # noqa: E402
from matplotlib.patches import RegularPolygon  # noqa: E402

from somtorch.analysis import SOMSampler, neuron_distance_stats, pink_spatial_transform  # noqa: E402
from somtorch.errors import OutputExistsError, ShapeError  # noqa: E402
from somtorch.geometry import Lattice  # noqa: E402
from somtorch.io import ImageReader, SOMSet  # noqa: E402
from somtorch.plotting import (  # noqa: E402
    SOMExplorer,
    plot_bmu_counts,
    plot_distance_stats,
    plot_image,
    plot_label_fractions,
    plot_neuron,
    plot_neuron_map,
    plot_neuron_matches,
    plot_som,
    plot_som_mosaic,
    plot_training_curves,
    plot_u_matrix,
)

DATA = Path(__file__).parent / "data"


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def _map_axes(fig):
    return [a for a in fig.axes if a.collections and a.get_label() != "<colorbar>"]


@pytest.fixture(scope="module")
def hexset():
    return SOMSet(DATA / "som_hex5.bin", DATA / "map_hex5.bin", DATA / "rf_hex5.bin")


@pytest.fixture(scope="module")
def cartset():
    return SOMSet(DATA / "som_blobs64.bin", DATA / "map_blobs64.bin", DATA / "rf_blobs64.bin")


def test_cartesian_mosaic_grid_indices_and_atomic_save(tmp_path):
    w = np.random.default_rng(0).random((6, 2, 8, 8)).astype(np.float32)
    lat = Lattice("cartesian", (2, 3))
    fig = plot_som_mosaic(w, lat, channel=1, show_index=True, counts=np.arange(6), title="mosaic")
    ax = fig.axes[0]
    assert len(ax.images) == 6
    assert len(ax.lines) == (3 + 1) + (2 + 1)  # grid lines between and around neurons
    texts = [t.get_text() for t in ax.texts]
    assert {"0,0", "0,2", "1,2"} <= set(texts) and "5" in texts
    # neuron (1, 2) = flat 5 is drawn in row 1, column 2
    ext = [im.get_extent() for im in ax.images]
    assert [float(v) for v in ext[5]] == [2.0, 3.0, 2.0, 1.0]
    out = tmp_path / "sub" / "mosaic.png"
    plot_som_mosaic(w, lat, path=out)
    assert out.exists() and out.stat().st_size > 0
    with pytest.raises(OutputExistsError):
        plot_som_mosaic(w, lat, path=out)
    plot_som_mosaic(w, lat, path=out, overwrite=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mosaic.png"]  # no temporary left
    with pytest.raises(ShapeError):
        plot_som_mosaic(w[:5], lat)


def test_hexagonal_mosaic_is_a_hex_grid(hexset):
    fig = plot_som_mosaic(hexset.som, show_index=True)
    ax = fig.axes[0]
    n = hexset.som.num_neurons
    assert n == 19 and len(ax.images) == n
    assert sum(isinstance(p, RegularPolygon) for p in ax.patches) == n
    assert all(im.get_clip_path() is not None for im in ax.images)
    fig2 = plot_som(hexset.som, trim=24)
    assert len(fig2.axes) == 1 and len(fig2.axes[0].images) == n


def test_per_channel_mosaic_and_single_neuron():
    w = np.random.default_rng(1).random((4, 3, 10, 10)).astype(np.float32)
    lat = Lattice("cartesian", (2, 2))
    fig = plot_som(w, lat)
    assert len(_image_axes(fig)) == 3 and [a.get_title() for a in fig.axes] == ["channel 0", "channel 1", "channel 2"]
    fig = plot_neuron(w, (1, 0), lat, trim=6)
    axes = _image_axes(fig)
    assert len(axes) == 3
    np.testing.assert_array_equal(axes[2].images[0].get_array(), w[2, 2, 2:8, 2:8])
    assert len({a.images[0].get_cmap().name for a in axes}) == 3  # colour maps cycle per channel


def _key(fig, key):
    fig.canvas.callbacks.process("key_press_event", KeyEvent("key_press_event", fig.canvas, key))


def test_explorer_arrow_keys_cartesian_and_hex(hexset):
    w = np.arange(12 * 4, dtype=np.float32).reshape(12, 1, 2, 2)
    ex = SOMExplorer(w, Lattice("cartesian", (3, 4)), start=(1, 1), interactive=False)
    assert ex.key == (1, 1)
    _key(ex.fig, "right")
    assert ex.key == (1, 2)
    np.testing.assert_array_equal(ex.images[0].get_array(), w[6, 0])
    for _ in range(5):
        _key(ex.fig, "down")
    assert ex.key == (2, 2)  # clamped at the edge
    _key(ex.fig, "home")
    assert ex.key == (1, 1)
    assert len(ex.axes[0].images) == 1  # updated in place, not drawn on top
    exp = SOMExplorer(w, Lattice("cartesian", (3, 4), periodic=True), start=(0, 0), interactive=False)
    _key(exp.fig, "up")
    _key(exp.fig, "left")
    assert exp.key == (2, 3)  # wrapped
    # hexagonal: left/right along the row, up/down to the nearest neuron of the next row
    hx = SOMExplorer(hexset.som, start=9, interactive=False)  # centre neuron (2, 2)
    _key(hx.fig, "right")
    assert hx.key == (10,)
    _key(hx.fig, "up")
    lat = Lattice("hexagonal", (5,))
    q, r = lat.coords.numpy()[hx.index]
    assert r == 1 and abs((q + r / 2) - (3 + 2 / 2)) <= 0.5
    with pytest.raises(ValueError):
        hx.move("sideways")


def test_plot_image_with_bmu_in_image_frame(hexset):
    imgs = ImageReader(DATA / "blobs24.bin")
    fig = plot_image(imgs, 3, somset=hexset, numrot=8, mark=(11.5, 11.5))
    axes = _image_axes(fig)
    assert len(axes) == 2 * imgs.data.shape[1]
    k = hexset.mapping.key_to_index(tuple(np.atleast_1d(hexset.mapping.bmu(3))))
    rec = hexset.transform.flat.reshape(len(hexset.transform), -1)[3, k]
    expect = pink_spatial_transform(hexset.som.weights.numpy()[k], rec, reverse=True, numrot=8, image_dim=24)
    np.testing.assert_allclose(axes[1].images[0].get_array(), expect[0])
    assert axes[0].get_title().startswith("index = 3")
    assert len(axes[0].lines) == 4  # the cross-hair
    fig2 = plot_image(imgs, 3, somset=hexset, numrot=8, apply_transform=True)
    assert _image_axes(fig2)[0].images[0].get_array().shape == hexset.som.weights.shape[-2:]
    fig3 = plot_image(imgs, seed=1)  # image alone
    assert len(_image_axes(fig3)) == 1


def test_plot_neuron_matches_grid(cartset, tmp_path):
    imgs = ImageReader(DATA / "blobs64.bin")
    m = cartset.mapping
    counts = m.bmu_counts().reshape(-1)
    k = int(np.argmax(counts))
    key = m.index_to_key(k)
    fig = plot_neuron_matches(imgs, m, key, transform=cartset.transform, n=5, ncols=3, path=tmp_path / "g.png")
    axes = _image_axes(fig)
    assert len(axes) == min(5, int(counts[k]))
    assert all(len(a.lines) == 4 for a in axes)
    best = m.images_with_bmu(key)
    d = m.flat[best, k]
    assert axes[0].get_title() == str(int(best[np.argmin(d)]))
    assert (tmp_path / "g.png").exists()
    empty = int(np.flatnonzero(counts == 0)[0]) if (counts == 0).any() else None
    if empty is not None:
        assert len(_image_axes(plot_neuron_matches(imgs, m, m.index_to_key(empty)))) == 0


def test_heat_maps_hex_aware(hexset, cartset):
    m = hexset.mapping
    fig = plot_bmu_counts(m)
    coll = fig.axes[0].collections[0]
    assert len(coll.get_paths()) == 19
    np.testing.assert_array_equal(np.asarray(coll.get_array()), m.bmu_counts().reshape(-1))
    vals = np.arange(19, dtype=float)
    vals[4] = np.nan
    fig = plot_neuron_map(vals, Lattice("hexagonal", (5,)), highlight=[0, 3])
    assert np.ma.is_masked(fig.axes[0].collections[0].get_array()[4])
    st = neuron_distance_stats(cartset.mapping)
    fig = plot_distance_stats(st, Lattice("cartesian", (4, 4)))
    assert len(_map_axes(fig)) == 3
    assert len(_map_axes(plot_distance_stats(m, None))) == 3
    fr = {"a": np.linspace(0, 1, 16), "b": np.ones(16), "c": np.zeros(16)}
    fig = plot_label_fractions(fr, Lattice("cartesian", (4, 4)), ncols=2)
    assert [a.get_title() for a in _map_axes(fig)] == ["a", "b", "c"]
    fig = plot_u_matrix(hexset.som)
    assert len(fig.axes[0].collections[0].get_paths()) == 19


def test_training_curves_from_trainer_files(tmp_path):
    from somtorch.engine import TrainingHistory

    h = TrainingHistory()
    for k in range(1, 5):
        h.append({"stage": "s1", "iteration": 0, "tick": k * 10, "epoch": k / 4, "qe": 1.0 / k, "te": 0.1,
                  "change": 0.5 / k})
    h.save(tmp_path / "metrics.csv")
    h.save(tmp_path / "metrics.json")
    for src in (tmp_path / "metrics.csv", tmp_path / "metrics.json", h):
        fig = plot_training_curves(src)
        assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 1
        np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [1, 0.5, 1 / 3, 0.25])
    import pandas as pd

    conv = pd.DataFrame({"step": [0, 1, 2], "qe": [3.0, 2.0, 1.0], "te": [0.5, 0.2, 0.1], "change": [np.nan, .3, .1]})
    fig = plot_training_curves(conv, path=tmp_path / "c.svg")
    assert fig.axes[0].get_xlabel() == "step" and (tmp_path / "c.svg").exists()


def test_sampler_visualize():
    s = SOMSampler(Lattice("cartesian", (6, 6)), 4, method="kmeans")
    fig = s.visualize()
    arr = np.asarray(fig.axes[0].collections[0].get_array())
    assert arr.sum() == 4 and set(np.flatnonzero(arr)) == set(s.indices)


def test_label_fractions_from_counts_and_knowledge_transfer():
    from somtorch.analysis import transfer_labels

    lat = Lattice("hexagonal", (3,))
    counts = {"a": np.array([2, 0, 1, 0, 0, 0, 3]), "b": np.array([2, 0, 3, 0, 0, 0, 0])}
    fig = plot_label_fractions(counts, lat, from_counts=True)
    axes = _map_axes(fig)
    assert [a.get_title() for a in axes] == ["a", "b"]
    a = np.ma.filled(np.asarray(axes[0].collections[0].get_array(), dtype=float), np.nan)
    np.testing.assert_allclose(a[[0, 2, 6]], [0.5, 0.25, 1.0])
    assert np.isnan(a[1]) and len(axes[0].collections[0].get_paths()) == 7
    kt = transfer_labels(np.array([0, 0, 2, 6]), np.array(["x", "y", "x", "x"]), num_neurons=7)
    fig = plot_label_fractions(kt, lat)
    assert [a.get_title() for a in _map_axes(fig)] == ["x", "y"]


def test_cartesian_heat_maps_have_labelled_axes(hexset):
    fig = plot_neuron_map(np.arange(12.0), Lattice("cartesian", (3, 4)))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("col", "row")
    # neuron 6 of a 3x4 lattice is row 1, col 2 (PINK order): its cell is at tick (2, 1)
    assert ax.texts[6].get_position() == (2.5, 1.5)
    assert [t.get_text() for t in plot_bmu_counts(np.arange(5), Lattice("cartesian", (5,))).axes[0].get_xticklabels()] \
        == ["0", "1", "2", "3", "4"]
    assert plot_bmu_counts(hexset.mapping).axes[0].get_xticks().size == 0  # hex cells have no grid ticks


def test_no_two_module_import_circles():
    import ast
    import importlib

    def imports(mod):
        src = Path(importlib.import_module(mod).__file__).read_text()
        return {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom) and n.module}

    for a, b in (("somtorch.plotting.maps", "somtorch.plotting.som"), ("somtorch.io.binwrap", "somtorch.io.results"),
                 ("somtorch.datasets._catalogue", "somtorch.datasets.synthetic")):
        assert not (b in imports(a) and a in imports(b)), (a, b)
