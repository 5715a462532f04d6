import os
import pickle
import sys
import types
from collections import defaultdict

import numpy as np
import pytest

from somtorch.annotation import (
    Annotation,
    AnnotationSet,
    LabelSet,
    area_ratio,
    decode_value,
    import_pyink_results,
    lasso_mask,
    seed_fill,
    valid_region,
)
from somtorch.errors import ConfigError, FileFormatError, OutputExistsError, PickleNotAllowedError


def _two_blobs(h=20, w=20):
    img = np.zeros((h, w), np.float32)
    img[3:7, 3:7] = 10.0      # blob A
    img[12:16, 12:17] = 8.0   # blob B
    img[6, 7] = 10.0          # diagonal neighbour of A's corner? no: (6,7) touches (6,6) -> part of A
    return img


def test_label_primes_and_decoding():
    ls = LabelSet()
    assert [ls.add(n) for n in ["core", "lobe", "host"]] == [2, 3, 5]
    assert ls.add("lobe") == 3 and len(ls) == 3
    assert ls.value([]) == 1 and ls.value(["host", "core"]) == 10
    assert ls.decode(30) == ("core", "lobe", "host") and ls.decode(0) == () and ls.decode(1) == ()
    with pytest.raises(ConfigError):
        ls.decode(1, pedantic=True)
    with pytest.raises(ConfigError):
        ls.decode(7)  # prime of a 4th label that does not exist
    assert decode_value(2 * 3 * 71) == (2, 3, 71)
    big = LabelSet([f"l{i}" for i in range(20)])
    with pytest.raises(ConfigError):
        big.add("one too many")


def test_valid_region_and_area_ratio_fix_zero_quirk():
    f = np.array([[0, 1, 2], [3, 6, 0]])
    assert valid_region(f).tolist() == [[False, True, True], [True, True, False]]
    # PYINK would count the 0 pixels as "including" prime 2; we do not
    assert valid_region(f, 2).tolist() == [[False, False, True], [False, True, False]]
    assert valid_region(f, [2, 3], 3).tolist() == [[False, False, True], [False, False, False]]
    assert area_ratio(f, f, 2) == 1.0
    assert area_ratio(f, np.zeros_like(f), 2) == 1.0  # empty denominator -> ratio 1
    assert area_ratio(f, np.where(f == 6, 6, 0), 3) == 2.0


def test_seed_fill_threshold_and_connectivity():
    img = _two_blobs()
    m = seed_fill(img, 4, 4, 2.0)
    assert m.sum() == 17 and m[6, 7] and not m[13, 13]
    # threshold is sigma * std: with a huge sigma nothing is above it
    assert not seed_fill(img, 4, 4, 100.0).any()
    # click below the threshold selects nothing (PYINK flooded the background)
    assert not seed_fill(img, 0, 0, 2.0).any()
    # 8-connectivity: a diagonal pixel joins the region
    img2 = np.zeros((5, 5))
    img2[1, 1] = img2[2, 2] = 1.0
    assert seed_fill(img2, 1, 1, 0.5).sum() == 2


def test_lasso_mask_pixel_centres():
    m = lasso_mask((6, 6), [(0.5, 0.5), (3.5, 0.5), (3.5, 2.5), (0.5, 2.5)])  # (x, y)
    assert m.sum() == 6 and m[1:3, 1:4].all()


def test_annotation_overlap_keeps_both_labels_and_undo():
    ls = LabelSet(["core", "lobe"])
    a = Annotation(_two_blobs())
    a.add_click(0, 4, 4, ls.value(["core"]))
    box = [(2.5, 2.5), (5.5, 2.5), (5.5, 5.5), (2.5, 5.5)]  # covers rows/cols 3..5
    a.add_lasso(0, box, ls.value(["lobe"]))
    f = a.filter(0)
    assert f[4, 4] == 6 and f[6, 6] == 2 and f[13, 13] == 0
    assert ls.decode(f[4, 4]) == ("core", "lobe")
    ov = a.overlap(0)
    assert ov.sum() == 9 and ov[3:6, 3:6].all()
    # same label twice is not an overlap and stays square-free
    a.add_mask(0, f == 2, ls.value(["core"]))
    assert a.filter(0).max() == 6 and a.overlap(0).sum() == 9
    a.undo()
    r = a.undo()  # the lasso can be undone
    assert r.kind == "lasso" and a.filter(0)[4, 4] == 2 and not a.overlap(0).any()
    # resigma keeps other regions
    a.add_lasso(0, [(11.5, 11.5), (13.5, 11.5), (13.5, 13.5)], 1)
    assert a.resigma_last_click(0, 100.0) is None  # nothing above threshold: unchanged
    assert a.resigma_last_click(0, 1.0).sigma == 1.0 and a.filter(0)[12, 12] == 1


def test_save_reload_versions_and_interrupted_save(tmp_path, monkeypatch):
    ls = LabelSet(["core", "lobe"])
    s = AnnotationSet(ls)
    a = Annotation(np.stack([_two_blobs(), _two_blobs().T]))
    a.add_click(0, 4, 4, 2)
    a.add_lasso(1, [(2.5, 2.5), (8.5, 2.5), (8.5, 8.5)], 6)
    s[3] = a
    p = tmp_path / "som.annotations.npz"
    s.save(p)
    back = AnnotationSet.load(p)
    assert back.labels.names == ["core", "lobe"] and list(back) == [3]
    np.testing.assert_array_equal(back[3].filter_stack(), a.filter_stack())
    assert [r.kind for r in back[3].regions] == ["click", "lasso"] and back[3].regions[0].sigma == 2.0
    assert back.unique_labels() == ["core", "lobe"]
    with pytest.raises(OutputExistsError):
        s.save(p, overwrite=False)
    # second save keeps the first as a version
    s[3].undo()
    s.save(p, keep=2)
    assert os.path.exists(tmp_path / "som.annotations.v0001.npz")
    # a crash in the middle of a save leaves the previous file intact
    before = p.read_bytes()
    s[3].clear()

    def boom(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(KeyboardInterrupt):
        s.save(p)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert len(AnnotationSet.load(p)[3].regions) == 1
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    for _ in range(3):
        s.save(p, keep=2)
    assert sorted(f for f in os.listdir(tmp_path) if ".v0" in f) == ["som.annotations.v0004.npz",
                                                                     "som.annotations.v0005.npz"]


def test_load_rejects_foreign_files(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(FileFormatError):
        AnnotationSet.load(tmp_path / "x.npz")
    (tmp_path / "y.npz").write_bytes(b"junk")
    with pytest.raises(FileFormatError):
        AnnotationSet.load(tmp_path / "y.npz")


def _fake_pyink_pickle(path):
    """Write a results.pkl the way PYINK does (a dict of pyink.annotator.Annotation)."""
    mod = types.ModuleType("pyink.annotator")
    pkg = types.ModuleType("pyink")

    class Annotation_:
        labels = [("core", 2), ("lobe", 3)]

        def __init__(self, neuron):
            self.neuron = neuron
            self.clicks = defaultdict(list)
            self.filters = {np.int64(0): np.zeros(neuron.shape[1:], dtype=int)}
            self.lasso_filters = defaultdict(list)

        def __getstate__(self):
            d = dict(self.__dict__)
            d["labels"] = list(Annotation_.labels)
            return d

    Annotation_.__name__ = Annotation_.__qualname__ = "Annotation"
    Annotation_.__module__ = "pyink.annotator"
    mod.Annotation = Annotation_
    pkg.annotator = mod
    sys.modules["pyink"], sys.modules["pyink.annotator"] = pkg, mod
    try:
        a = Annotation_(np.ones((1, 6, 6)))
        a.filters[np.int64(0)][1:3, 1:3] = 6
        a.clicks[0].append([1, 1, 6, 2.0])
        with open(path, "wb") as fh:
            pickle.dump({(np.int64(1), np.int64(0)): a}, fh)
    finally:
        del sys.modules["pyink"], sys.modules["pyink.annotator"]


def test_import_pyink_results_opt_in(tmp_path):
    p = tmp_path / "som.results.pkl"
    _fake_pyink_pickle(p)
    with pytest.raises(PickleNotAllowedError):
        import_pyink_results(p)
    s = import_pyink_results(p, key_to_index=lambda k: k[0] * 3 + k[1], allow_pickle=True)
    assert list(s) == [3] and s.labels.names == ["core", "lobe"]
    assert s[3].filter(0)[1, 1] == 6 and s[3].filter(0).sum() == 24
    assert s.unique_labels() == ["core", "lobe"]
    # a pickle that calls anything else is refused
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({0: Evil()}, fh)
    with pytest.raises(FileFormatError):
        import_pyink_results(tmp_path / "evil.pkl", allow_pickle=True)


def test_too_many_labels_on_one_pixel_raises_instead_of_overflowing():
    from somtorch.annotation import PRIMES
    from somtorch.errors import ShapeError

    a = Annotation(np.ones((4, 4)))
    m = np.ones((4, 4), bool)
    v = 1
    for p in PRIMES[:15]:
        v *= p
    a.add_mask(0, m, v)
    assert a.filter(0)[0, 0] == v
    a.add_mask(0, m, PRIMES[15])
    with pytest.raises(ShapeError):
        a.filter(0)
