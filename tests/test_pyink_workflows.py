"""PYINK's example workflows through somtorch.pyink: annotation with save=/results=, collation
with Sorter/Grouper/greedy_graph (the spec's worked example, §9.7), sky paths, and a PYINK-style
script run from another folder with only the import changed."""

import itertools
import math
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import types

import astropy.units as u
import networkx as nx
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

import somtorch.pyink as pu
from somtorch.errors import FileFormatError, ShapeError
from somtorch.io import write_mapping, write_transforms

DATA = os.path.join(os.path.dirname(__file__), "data")
ND = 21
CN = (ND - 1) // 2


def _som(tmp_path, shape=(1, 3), channels=1, name="som.bin"):
    p = tmp_path / name
    rng = np.random.default_rng(0)
    with pu.SOMWriter(p, shape, (channels, ND, ND) if channels > 1 else (ND, ND)) as w:
        for _ in range(int(np.prod(shape))):
            w.add(rng.random((channels, ND, ND) if channels > 1 else (ND, ND)).astype(np.float32))
    return p


# ------------------------------------------------------------------------------ annotation


def test_annotation_session_save_and_results(tmp_path):
    som = _som(tmp_path)
    a = pu.Annotator(som, save=True)
    assert a.save_path == f"{som}.results.pkl" and len(a.results) == 0
    a.add_label("core")
    a.add_label("lobe")
    ann = a.annotate_neuron((0, 1), update=True, labeling=True, block=False)
    a.set_active(["core"])
    peak = np.unravel_index(np.argmax(a.neurons[1, 0]), (ND, ND))
    assert a.click(0, *peak) is not None
    a.key("n")  # finishes the single-neuron window: nothing saved (PYINK saves explicitly)
    assert not os.path.exists(a.save_path)
    assert (0, 1) in a.results and a.results[(0, 1)] is ann
    assert set(ann.filter_contains()) == {"core"} and ann.resolve_label(2) == ("core",)
    # in-place edits and assignments of filters persist (PYINK's usual scripting)
    ann.filters[0][0:2, 0:2] = 3
    assert (ann.filter(0)[0:2, 0:2] == 3).all() and ann.filters[0][0, 0] == 3
    f = np.zeros((ND, ND), int)
    f[5, 5] = 6
    ann.filters[0] = f
    f[6, 6] = 2  # the stored array is the one assigned, as PYINK's dict
    assert ann.filter(0)[5, 5] == 6 and ann.filter(0)[6, 6] == 2
    with pytest.raises(ShapeError):
        ann.filters[0] = np.zeros((3, 3))
    with pytest.raises(AttributeError):
        ann.clicks[0].append([1, 1, 1, 2.0])  # read-only view: raises, never silently lost
    assert a.unique_labels() == ["core", "lobe"] and a.unique_labels(False) == [("core", 2), ("lobe", 3)]
    path = a.save_annotation_results()
    assert path == f"{som}.results.pkl" and os.path.exists(path)
    b = pu.Annotator(som, results=True, save=False)
    assert list(b.results) == [(0, 1)]
    np.testing.assert_array_equal(b.results[(0, 1)].filters[0], ann.filter(0))
    assert b.results[(0, 1)].labels == (("core", 2), ("lobe", 3))
    assert len(b.results[(0, 1)].clicks[0]) == 1  # the click history survives the round trip
    # results= forms
    with pytest.warns(UserWarning, match="starting empty"):
        assert len(pu.Annotator(som, results=str(tmp_path / "none.pkl")).results) == 0
    c = pu.Annotator(som, results={(0, 2): b.results[(0, 1)]}, save=None)
    assert list(c.results) == [(0, 2)]
    with pytest.raises(ValueError):
        pu.Annotator(som, results=42)


def test_annotate_neuron_update_false_leaves_results_alone(tmp_path):
    som = _som(tmp_path)
    a = pu.Annotator(som, save=False)
    cb, ann = a.annotate_neuron((0, 0), return_callback=True, block=False)
    assert cb is a and cb.sigma == 2 and cb.last_index == 0
    a.click(0, *np.unravel_index(np.argmax(a.neurons[0, 0]), (ND, ND)))
    a.key("q")
    assert (0, 0) not in a.results and ann.annotated


def test_interactive_annotate_saves_after_every_move(tmp_path):
    som = _som(tmp_path)
    out = tmp_path / "session.results.pkl"
    a = pu.Annotator(som, save=str(out))
    a.interactive_annotate(block=False)
    a.click(0, *np.unravel_index(np.argmax(a.neurons[0, 0]), (ND, ND)))
    a.key("n")
    assert out.exists() and list(pu.Annotator(som, results=str(out)).results) == [(0, 0)]
    a.key("q")
    assert a.finished


def _fake_pyink_module():
    pkg, mod = types.ModuleType("pyink"), types.ModuleType("pyink.annotator")

    class Annotation:
        labels = []

        def __setstate__(self, state):
            Annotation.labels = state.pop("labels")
            self.__dict__.update(state)

        def __getstate__(self):
            d = dict(self.__dict__)
            d["labels"] = list(Annotation.labels)
            return d

    Annotation.__module__, Annotation.__qualname__ = "pyink.annotator", "Annotation"
    mod.Annotation, pkg.annotator = Annotation, mod
    return pkg, mod


def test_results_file_is_pyinks_format_both_ways(tmp_path, monkeypatch):
    som = _som(tmp_path, shape=(2, 2), channels=2)
    pkg, mod = _fake_pyink_module()
    monkeypatch.setitem(sys.modules, "pyink", pkg)
    monkeypatch.setitem(sys.modules, "pyink.annotator", mod)
    # a file as PYINK writes it
    st = mod.Annotation()
    st.neuron = np.ones((2, ND, ND), np.float32)
    st.clicks = {0: [[3.0, 4.0, 6, 2.0]]}
    st.filters = {np.int64(0): np.zeros((ND, ND), int), np.int64(1): np.zeros((ND, ND), int)}
    st.filters[np.int64(0)][2:5, 2:5] = 6
    st.lasso_filters = {1: [np.ones((ND, ND), int)]}
    mod.Annotation.labels = [("core", 2), ("lobe", 3)]
    with open(tmp_path / "pyink.results.pkl", "wb") as fh:
        pickle.dump({(np.int64(1), np.int64(0)): st}, fh)
    monkeypatch.delitem(sys.modules, "pyink.annotator")  # our reader needs no pyink at all
    monkeypatch.delitem(sys.modules, "pyink")
    a = pu.Annotator(som, results=str(tmp_path / "pyink.results.pkl"), save=False)
    ann = a.results[(1, 0)]
    assert ann.filters[0].sum() == 54 and ann.filter_contains(0) == ["core", "lobe"]
    assert ann.clicks[0] == ((3.0, 4.0, 6.0, 2.0),) and len(ann.lasso_filters[1]) == 1
    # written back: PYINK's own unpickler reads it (with its Annotation class)
    a.save_annotation_results(tmp_path / "back.results.pkl")
    monkeypatch.setitem(sys.modules, "pyink", pkg)
    monkeypatch.setitem(sys.modules, "pyink.annotator", mod)
    with open(tmp_path / "back.results.pkl", "rb") as fh:
        back = pickle.load(fh)
    (key, obj), = back.items()
    assert key == (1, 0) and isinstance(obj, mod.Annotation) and mod.Annotation.labels == [("core", 2), ("lobe", 3)]
    assert obj.filters[np.int64(0)].sum() == 54 and obj.clicks[0] == [[3.0, 4.0, 6, 2.0]]
    assert obj.neuron.shape == (2, ND, ND) and len(obj.lasso_filters[1]) == 1


def test_hostile_results_pickle_refused(tmp_path):
    som = _som(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.remove, (str(som),))

    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({(0, 0): Evil()}, fh)
    with pytest.raises(FileFormatError, match="evil.pkl"):
        pu.Annotator(som, results=str(tmp_path / "evil.pkl"))
    assert som.exists()


# ------------------------------------------------------------------------------ collation


def _worked_example(tmp_path, b_angle=math.pi / 2):
    """Spec §9.7: A (0), B (1, 4" east of A), C (2, 4" north of A), D (3, far, un-annotated
    neuron); base = match catalogue; pixel scale 1"."""
    som = _som(tmp_path, shape=(1, 3))
    A = SkyCoord(150 * u.deg, 30 * u.deg)
    B = A.spherical_offsets_by(4 * u.arcsec, 0 * u.arcsec)
    C = A.spherical_offsets_by(0 * u.arcsec, 4 * u.arcsec)
    D = A.spherical_offsets_by(0 * u.arcsec, 600 * u.arcsec)
    cat = SkyCoord([A, B, C, D])
    # distances: A -> (0,0) best of all, B -> (0,1), C -> (0,0), D -> (0,2)
    dist = np.full((4, 3), 9.0, np.float32)
    dist[0, 0], dist[1, 1], dist[2, 0], dist[3, 2] = 0.1, 0.2, 0.3, 0.4
    write_mapping(tmp_path / "map.bin", dist, (1, 3))
    angle = np.zeros((4, 3), np.float32)
    angle[1, 1] = b_angle
    write_transforms(tmp_path / "tf.bin", np.zeros((4, 3), np.int8), angle, (1, 3))
    ss = pu.SOMSet(som, tmp_path / "map.bin", tmp_path / "tf.bin")
    ann = pu.Annotator(ss.som, save=False)
    ann.results.labels.add("core")
    ann.results.labels.add("lobe")
    disc = (np.add.outer((np.arange(ND) - CN) ** 2, (np.arange(ND) - CN) ** 2) <= 4).astype(int)
    a0 = pu.Annotation(ss.som[0, 0])
    a1 = pu.Annotation(ss.som[0, 1])
    ann.results[(0, 0)] = a0
    ann.results[(0, 1)] = a1
    a0.filters[0] = 2 * disc
    # A seen from B: offset (x, y) = (+4, 0) pixels (RA grows to the east = left), rotated by
    # R(+angle) in (col, row): angle pi/2 -> (0, +4), i.e. row CN + 4, column CN
    x, y = 4 * math.cos(b_angle), 4 * math.sin(b_angle)
    lobe = np.zeros((ND, ND), int)
    r, c = int(round(CN + y)), int(round(CN + x))
    lobe[r - 1:r + 2, c - 1:c + 2] = 3
    a1.filters[0] = 2 * disc + lobe
    return ss, ann, cat


def test_coordinate_transformer_follows_the_spec_formula():
    A = SkyCoord(150 * u.deg, 30 * u.deg)
    pts = SkyCoord([A.spherical_offsets_by(dx * u.arcsec, dy * u.arcsec) for dx, dy in [(4, 0), (0, 6), (-3, 2)]])
    for flip, theta in [(0, 0.0), (0, 1.1), (1, 2.5)]:
        ct = pu.CoordinateTransformer(A, pts, (flip, theta), pixel_scale=2 * u.arcsec, src_idx=[5, 6, 7])
        off = ct.coords["offsets-pixel"].to_value(u.pix)
        np.testing.assert_allclose(off, [[-2, 0], [0, 3], [1.5, 1]], atol=1e-6)
        x = off[:, 0] * math.cos(theta) - off[:, 1] * math.sin(theta)
        y = off[:, 0] * math.sin(theta) + off[:, 1] * math.cos(theta)
        y = -y if flip == 1 else y
        np.testing.assert_allclose(ct.coords["offsets-neuron"].to_value(u.pix), np.stack([x, y], 1), atol=1e-5)
        assert list(ct.src_idx) == [5, 6, 7]


def test_collation_worked_example(tmp_path):
    ss, ann, cat = _worked_example(tmp_path)
    fs = pu.FilterSet(cat, (cat,), ann, ss, seplimit=10 * u.arcsec, pixel_scale=1 * u.arcsec)
    fb = fs[1][0]
    # C (5.7" from B) is matched too; seen from B it lands at (x, y) = R(pi/2)(4, 4) = (-4, 4): unlabelled
    assert list(fb.coords.src_idx) == [0, 1, 2]
    assert list(fb.product_labels) == [3, 2, 0] and fb.coord_labels == [("lobe",), ("core",), ()]
    assert list(fb.coord_label_contains("lobe")) == [True, False, False]
    assert list(fb.coord_label_contains(2)) == [False, True, False]
    assert list(fs.filters[0][1].product_labels) == [3, 2, 0]
    assert list(fs[3][0].product_labels) == [0]  # un-annotated neuron: 0 (PYINK: KeyError)
    own = pu.Filter(fb.coords, ann.results[(0, 1)], 0)  # PYINK's constructor reads the same pixels
    assert list(own.product_labels) == [3, 2, 0] and own.coord_labels == fb.coord_labels
    fig, ax = fb.plot()
    assert len(ax.collections) == 3
    resolve = pu.LabelResolve({"core": pu.Action.LINK, "lobe": pu.Action.LINK})
    sorter = pu.Sorter(ss)
    assert list(sorter) == [0, 1, 2, 3] and list(sorter) == [0, 1, 2, 3] and len(sorter) == 4
    g = pu.greedy_graph(fs, ann, resolve, sorter, src_stats_fn=lambda i: {"neuron_of": i * 10})
    comps = sorted(sorted(c) for c in nx.connected_components(g))
    assert comps == [[0, 1], [2], [3]]
    (ab,) = [d for a, b, d in g.edges(data=True) if {a, b} == {0, 1}]
    assert ab["count"] == 1 and ab["src_idx"] == 1 and ab["neuron_of"] == 10
    grouper = pu.Grouper(fs, ann, resolve, pu.Sorter(ss, ann, mode="largest_first"))
    assert sorted(sorted(c) for c in nx.connected_components(grouper.graph)) == [[0, 1], [2], [3]]
    lf = pu.Sorter(ss, ann, mode="largest_first")
    assert list(lf.order) == [1, 0, 2, 3]  # neuron (0,1) spans more; un-annotated D last, once each
    ar = pu.Sorter(ss, ann, 0, 0, mode="area_ratio")
    assert sorted(ar.order) == [0, 1, 2, 3]
    with pytest.raises(NotImplementedError):
        pu.Sorter(ss, mode="smallest_first")
    # the lobe label on PASS: nothing links
    g2 = pu.greedy_graph(fs, ann, pu.LabelResolve({"core": pu.Action.LINK}), pu.Sorter(ss))
    assert sorted(sorted(c) for c in nx.connected_components(g2)) == [[0], [1], [2], [3]]


def test_collation_with_a_wcs_gives_the_same_pixels(tmp_path):
    from astropy.wcs import WCS

    ss, ann, cat = _worked_example(tmp_path, b_angle=0.0)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150, 30]
    w.wcs.crpix = [50, 50]
    w.wcs.cdelt = [-1 / 3600, 1 / 3600]
    fs = pu.FilterSet(cat, cat, ann, ss, seplimit=10 * u.arcsec, wcs=w)
    assert list(fs[1][0].product_labels) == [3, 2, 0]


# ------------------------------------------------------------------------------ sky paths


def _brute(seps, s, e):
    nodes = sorted({k for p in seps for k in p} - {s, e})
    best = None
    for perm in itertools.permutations(nodes):
        path = (s,) + perm + (e,)
        length = sum(seps[(a, b)].to_value(u.deg) for a, b in zip(path[:-1], path[1:]))
        if best is None or length < best[1] - 1e-15:
            best = (path, length)
    return best


def test_sky_paths_against_brute_force():
    rng = np.random.default_rng(4)
    pos = SkyCoord((150 + rng.uniform(0, 0.01, 7)) * u.deg, (30 + rng.uniform(0, 0.01, 7)) * u.deg)
    seps = pu.create_separation_set(pos)
    assert len(seps) == 42 and seps[(1, 3)] == pos[1].separation(pos[3])
    key, dmax = pu.maximum_distance(seps)
    flat = pos[:, None].separation(pos[None, :]).deg
    assert dmax.to_value(u.deg) == pytest.approx(flat.max()) and flat[key] == pytest.approx(flat.max())
    before = dict(seps)
    path, length = pu.shortest_path_between(seps, key)
    assert seps == before  # not modified (PYINK converted the values in place)
    ref_path, ref_len = _brute(seps, *key)
    assert length.to_value(u.deg) == pytest.approx(ref_len, rel=1e-12) and sorted(path) == list(range(7))
    sp = pu.SkyPath(pos, idxs=[10, 11, 12, 13, 14, 15, 16])
    assert sp.shortest_path[1].to_value(u.deg) == pytest.approx(ref_len, rel=1e-12)
    assert sp.curliness == pytest.approx(ref_len / flat.max()) and sp.curliness >= 1
    assert set(sp.maximum_distance[0]) == {10 + key[0], 10 + key[1]}
    assert sp.shortest_path_positions[0].separation(pos[sp.shortest_path[0][0] - 10]).arcsec < 1e-9
    assert sp.maximum_position_angle == pos[key[0]].position_angle(pos[key[1]]) or \
        sp.maximum_position_angle == pos[key[1]].position_angle(pos[key[0]])
    one = pu.SkyPath(pos[:1])
    assert one.curliness == 0 and one.shortest_path[1] == 0 * u.arcsec
    assert pu.shortest_path_between(pu.create_separation_set(pos[:2]), (0, 1))[0] == (0, 1)


def test_sky_path_many_points_warns_and_visits_all():
    rng = np.random.default_rng(5)
    pos = SkyCoord((150 + rng.uniform(0, 0.01, 16)) * u.deg, (30 + rng.uniform(0, 0.01, 16)) * u.deg)
    seps = pu.create_separation_set(pos)
    with pytest.warns(RuntimeWarning, match="2-opt"):
        path, length = pu.shortest_path_between(seps, (0, 15))
    assert sorted(path) == list(range(16)) and path[0] == 0 and path[-1] == 15


def test_sky_path_plots_on_wcs_axes():
    import matplotlib.pyplot as plt
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150, 30]
    w.wcs.cdelt = [-1 / 3600, 1 / 3600]
    fig = plt.figure()
    ax = fig.add_subplot(1, 1, 1, projection=w)
    pos = SkyCoord([150, 150.001, 150.002] * u.deg, [30, 30.001, 30.0] * u.deg)
    sp = pu.SkyPath(pos)
    assert len(sp.plot_shortest_path(ax, "r-")) == 1 and len(sp.plot_maximum_distance(ax)) == 1
    plt.close(fig)


# ------------------------------------------------------------------------------ a PYINK script

SCRIPT = '''
import numpy as np
import somtorch.pyink as pu          # the only change: was "import pyink as pu"

rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:64, 0:64]
written = 0
with pu.ImageWriter("cutouts.bin", 0, (64, 64), clobber=True) as imgs:
    for i in range(6):
        data = rng.normal(0, 1e-4, (64, 64)) + 5e-3 * np.exp(-((yy - 32) ** 2 + (xx - 30 - i) ** 2) / 18.0)
        noise = pu.rms_estimate(data[data != 0], mode="mad", clip_rounds=2)
        img = np.zeros_like(data)
        for island in pu.island_segmentation(data, 3 * noise):
            img[island] = pu.minmax(np.log10(data[island]))
        mask = pu.circular_mask(img, radius=30)
        imgs.add((img * mask).astype(np.float32), attributes=i)
        written += 1

reader = pu.ImageReader("cutouts.bin")
print("images", reader.data.shape, "records", reader.records, "header", reader.header)

som = pu.SOM("somA.bin")
mapping = pu.Mapping("mapA.bin")
transform = pu.Transform("rfA.bin")
somset = pu.SOMSet(som, mapping, transform)
print("som", som.som_shape, som.neuron_shape, som[0, 0].shape)
bmu = mapping.bmu()
print("coherence", mapping.coherence(), "counts", int(mapping.bmu_counts().sum()))
neuron = pu.trim_neuron(som[tuple(bmu[0])][0], 16)
print("trimmed", neuron.shape)

annotator = pu.Annotator(som, save=True)
ann = pu.Annotation(som[0, 0])
ann.filters[0][8:14, 8:14] = 1
annotator.results[(0, 0)] = ann
annotator.save_annotation_results()
again = pu.Annotator("somA.bin", results=True)
print("annotated", list(again.results), int((again.results[(0, 0)].filters[0] > 0).sum()))
sorter = pu.Sorter(somset)
print("first", sorter[0], "n", len(sorter))
'''


def test_pyink_script_runs_from_another_folder(tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    for f in ("somA.bin", "mapA.bin", "rfA.bin"):
        shutil.copyfile(os.path.join(DATA, f), work / f)
    (work / "script.py").write_text(textwrap.dedent(SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MPLBACKEND"] = "Agg"
    res = subprocess.run([sys.executable, "script.py"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "images (6, 1, 64, 64) records [0, 1, 2, 3, 4, 5] header (2, 0, 0, 6, 0, 2, (64, 64))" in out
    assert "som (3, 3, 1) (1, 23, 23) (1, 23, 23)" in out
    assert "counts 20" in out and "trimmed (16, 16)" in out
    assert "annotated [(0, 0)] 36" in out and "n 20" in out
    assert (work / "somA.bin.results.pkl").exists() and (work / "cutouts.bin.records.pkl").exists()


def test_plot_image_and_sampler_on_golden_files():
    import matplotlib.pyplot as plt

    ss = pu.SOMSet(os.path.join(DATA, "somA.bin"), os.path.join(DATA, "mapA.bin"), os.path.join(DATA, "rfA.bin"))
    imgs = pu.ImageReader(os.path.join(DATA, "train20.bin"))
    fig = pu.plot_image(imgs, idx=3, somset=ss, apply_transform=True, show_bmu=True, transform_neuron=True)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "index = 3"
    assert fig.axes[1].images[0].get_array().shape == (16, 16)  # BMU trimmed to the image
    with pytest.raises(ValueError):
        pu.plot_image(imgs, idx=0, show_bmu=True)
    plt.close("all")
    s = pu.SOMSampler(ss.som, 3, method="random", min_dist=1)
    assert s.num_points == 3 and all(isinstance(p, tuple) for p in s.points)
    assert all(s.min_distance(p, [i for i in s.indices if i != s._key_index(p)]) > 1 for p in s.points)
    k = pu.SOMSampler(ss.som, 2)
    assert k.points == pu.SOMSampler(ss.som, 2).points  # seeded (PYINK was not)
    assert pu.SOMSampler(ss.som, 1, mapping=ss.mapping).points == [tuple(ss.mapping.bmu()[0])]  # weighted
    k.add_point((2, 2))
    assert (2, 2) in k.points and len(k.random_neuron()) == 2
    with pytest.raises(KeyError):
        pu.SOMSampler(ss.som, 2, method="grid")
