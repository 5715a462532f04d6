import astropy.units as u
import networkx as nx
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from somtorch.annotation import Annotation, AnnotationSet, LabelSet
from somtorch.collation import (
    Action,
    FilterSet,
    Grouper,
    LabelResolve,
    Sorter,
    collate,
    greedy_graph,
    max_separation,
    write_source_catalogue,
)
from somtorch.errors import ConfigError, OutputExistsError

D = 21  # image and neuron side
CEN = SkyCoord(150 * u.deg, 2 * u.deg)


def _at(r, c, centre=CEN, d=D):
    """Sky position landing on image pixel (r, c) of a cutout centred on ``centre`` (1"/px)."""
    cc = (d - 1) / 2
    return centre.spherical_offsets_by((cc - c) * u.arcsec, (r - cc) * u.arcsec)


def _cat(points):
    sc = [_at(r, c) for r, c in points]
    return SkyCoord([s.ra for s in sc], [s.dec for s in sc])


def _ann(labels, paint, channels=1, d=D):
    """AnnotationSet: paint = {neuron: [(channel, rows slice, cols slice, [labels]), ...]}."""
    s = AnnotationSet(LabelSet(labels))
    for k, regions in paint.items():
        a = Annotation(np.zeros((channels, d, d), np.float32))
        for ch, rs, cs, labs in regions:
            m = np.zeros((d, d), bool)
            m[rs, cs] = True
            a.add_mask(ch, m, s.labels.value(labs))
        s[k] = a
    return s


B = slice(8, 13)  # rows/cols 8..12 around the centre 10


def _three(paint_extra=None, resolve=None, labels=("core", "lobe", "side", "bad")):
    # A (0) at the centre, B (1) 5" west -> col 15, C (2) 5" north -> row 15 (in A's frame)
    base = _cat([(10, 10), (10, 15), (15, 10)])
    paint = {0: [(0, B, B, ["core"]), (0, B, slice(13, 18), ["lobe"]), (0, slice(13, 18), B, ["side"])]}
    paint.update(paint_extra or {})
    ann = _ann(labels, paint)
    fs = FilterSet(base, None, ann, bmu=[0, 1, 2], transform=(np.zeros(3), np.zeros(3)),
                   distance=[0.1, 0.2, 0.3], image_dim=D, pixel_scale=1 * u.arcsec, seplimit=20 * u.arcsec,
                   numrot=None)
    g = greedy_graph(fs, ann, LabelResolve(resolve or {}), Sorter(fs))
    return fs, g


def _edges(g, a, b):
    return g.number_of_edges(a, b)


def test_filterset_projection_analytic_rotation_flip_and_bounds():
    # one subject, entries 5" west (image col +5) and 15" west (outside the 21 px neuron)
    base = SkyCoord([CEN.ra], [CEN.dec])
    match = SkyCoord([_at(10, 15).ra, _at(10, 25).ra, _at(10, 10).ra, _at(10, 200).ra],
                     [_at(10, 15).dec, _at(10, 25).dec, _at(10, 10).dec, _at(10, 200).dec])
    f = np.zeros((D, D), np.int64)
    f[15, 10] = 2   # 90 deg clockwise moves "5 px right" to "5 px down"
    f[5, 10] = 3    # ... and the flip reverses the rows
    ann = AnnotationSet(LabelSet(["a", "b"]), {0: Annotation(np.zeros((D, D)), base={0: f})})
    for flip, expect_rc, expect_val in [(0, (15, 10), 2), (1, (5, 10), 3)]:
        fs = FilterSet(base, match, ann, bmu=[0], transform=([flip], [np.pi / 2]), distance=[0.0], image_dim=D,
                       pixel_scale=1 * u.arcsec, seplimit=30 * u.arcsec)
        flt = fs[0][0]
        assert flt.src_idx.tolist() == [0, 1, 2]  # entry 3 is beyond seplimit
        np.testing.assert_allclose(flt.coords[0], expect_rc, atol=1e-6)
        assert flt.product_labels.tolist() == [expect_val, 0, 0]
        assert fs.pairs()["inside"].tolist() == [True, False, True]
        assert flt.coord_labels[0] == (("a",) if flip == 0 else ("b",))
        assert flt.coord_label_contains("a").tolist() == [flip == 0, False, False]


def test_filterset_wcs_matches_pixel_scale():
    from astropy.wcs import WCS

    base = _cat([(10, 10), (10, 16)])
    w = []
    for s in base:
        wc = WCS(naxis=2)
        wc.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wc.wcs.crval = [s.ra.deg, s.dec.deg]
        wc.wcs.crpix = [(D + 1) / 2, (D + 1) / 2]
        wc.wcs.cdelt = [-1 / 3600, 1 / 3600]
        w.append(wc)
    ann = _ann(["x"], {0: [(0, B, B, ["x"])]})
    kw = dict(bmu=[0, 0], transform=([0, 1], [0.3, 1.2]), image_dim=D, seplimit=20 * u.arcsec, numrot=None)
    a = FilterSet(base, None, ann, pixel_scale=1 * u.arcsec, **kw).pairs()
    b = FilterSet(base, None, ann, wcs=w, **kw).pairs()
    np.testing.assert_allclose(a["rc"], b["rc"], atol=2e-3)
    assert a["match"].tolist() == b["match"].tolist()


def test_filterset_several_catalogues_and_image_mask():
    base = _cat([(10, 10)])
    ir = _cat([(10, 10), (3, 3)])
    ann = _ann(["core", "host"], {0: [(0, B, B, ["core"]), (1, slice(9, 12), slice(9, 12), ["host"])]}, channels=2)
    fs = FilterSet(base, (None, ir), ann, bmu=[0], transform=([0], [0.0]), image_dim=D,
                   pixel_scale=1 * u.arcsec, seplimit=20 * u.arcsec, numrot=None)
    ch0, ch1 = fs[0]
    assert ch0.nodes == [0] and ch1.nodes == [(1, 0), (1, 1)]
    assert ch1.coord_label_contains("host").tolist() == [True, False]
    m = fs.image_mask(0, "core")
    assert m.sum() == 25 and m[B, B].all()
    with pytest.raises(ConfigError):
        Sorter(fs, mode="nope")


def test_link_and_claimed_subjects():
    fs, g = _three(resolve={"core": Action.LINK, "lobe": Action.LINK})
    assert _edges(g, 0, 1) == 1 and _edges(g, 0, 2) == 0
    e = next(iter(g.get_edge_data(0, 1).values()))
    assert e["src_idx"] == 0 and e["count"] == 0 and e["neuron"] == 0
    # B was claimed by A: it never acts as a subject (no self-loop from B); C does
    assert _edges(g, 1, 1) == 0 and _edges(g, 2, 2) == 1
    assert sorted(map(sorted, nx.connected_components(g))) == [[0, 1], [2]]


def test_unlink_removes_earlier_edges():
    # C (subject of neuron 2) sees B 5" west and 5" south: its frame puts B at (5, 15) -> "bad"
    extra = {2: [(0, slice(3, 8), slice(13, 18), ["bad"])]}
    _, g = _three(extra, {"core": Action.LINK, "lobe": Action.LINK, "bad": Action.UNLINK})
    assert _edges(g, 0, 1) == 0 and 1 in g and _edges(g, 0, 0) == 1 and _edges(g, 2, 2) == 1


def test_isolate_removes_edges_blocks_links_and_subjects():
    # C lies on "side" (ISOLATE) and also "lobe" (LINK): isolation wins
    extra = {0: [(0, B, B, ["core"]), (0, B, slice(13, 18), ["lobe"]), (0, slice(13, 18), B, ["side", "lobe"])]}
    _, g = _three(extra, {"core": Action.LINK, "lobe": Action.LINK, "side": Action.ISOLATE})
    assert g.nodes[2]["isolated"] == "side" and g.degree(2) == 0
    assert _edges(g, 0, 1) == 1


def test_node_attach_does_not_block_subject():
    _, g = _three(resolve={"core": Action.LINK, "side": Action.NODE_ATTACH})
    assert g.nodes[2]["side"] is True and _edges(g, 2, 2) == 1 and _edges(g, 0, 2) == 0


@pytest.mark.parametrize("action,key,value", [(Action.TRUE_ATTACH, "lobe", True),
                                              (Action.FALSE_ATTACH, "lobe", False),
                                              (Action.FLAG, "Flagged", True),
                                              (Action.RESOLVE, "Resolve", True),
                                              (Action.DATA_ATTACH, "lobe", [1])])
def test_edge_attach_actions_depend_on_mask(action, key, value):
    _, g = _three(resolve={"core": Action.LINK, "lobe": action})
    a_edges = [d for _, _, d in g.edges(data=True) if d["src_idx"] == 0]
    c_edges = [d for _, _, d in g.edges(data=True) if d["src_idx"] == 2]
    assert a_edges and all(d[key] == value for d in a_edges)
    assert c_edges and all(key not in d for d in c_edges)  # C's neuron has no lobe: untouched
    if action is Action.DATA_ATTACH:
        assert _edges(g, 0, 1) == 0  # attaching does not link


def test_pass_does_nothing():
    _, g = _three(resolve={lab: Action.PASS for lab in ("core", "lobe", "side")})
    assert sorted(g.edges()) == [(0, 0), (1, 1), (2, 2)]
    assert LabelResolve({"a": Action.LINK})["unknown"] is Action.PASS
    assert LabelResolve({"a": Action.LINK}).get("unknown") is None


def test_sorters_no_duplicates_empty_filters_and_custom_mode():
    base = _cat([(10, 10), (10, 12), (10, 14), (12, 10)])
    ann = _ann(["x"], {0: [(0, slice(10, 11), slice(2, 19), ["x"])], 1: [(0, B, B, ["x"])], 2: []})
    fs = FilterSet(base, None, ann, bmu=[1, 0, 2, 0], transform=(np.zeros(4), np.zeros(4)),
                   distance=[0.5, 0.4, 0.1, 0.2], image_dim=D, pixel_scale=1 * u.arcsec, numrot=None)
    assert Sorter(fs).order.tolist() == [2, 3, 1, 0]
    # neuron 0 (a 17 px line) before neuron 1 (5x5 box); neuron 2 is empty (no crash, unannotated)
    s = Sorter(fs, mode="largest_first")
    assert s.order.tolist() == [3, 1, 0, 2] and len(s) == 4 and list(s) == list(s)
    assert Sorter(fs, mode="largest_first", include_unannotated=False).order.tolist() == [3, 1, 0]
    assert max_separation(np.zeros((3, 3))) == -1.0
    line = np.zeros((200, 200), bool)
    line[5, 10:190] = True
    assert max_separation(line) == 179.0
    disk = np.hypot(*np.mgrid[-50:51, -50:51]) <= 40
    assert max_separation(disk) == pytest.approx(80.0)

    @Sorter.register("by_index_desc")
    def _desc(filterset, **kw):
        return np.arange(len(filterset))[::-1]

    assert Sorter(fs, mode="by_index_desc").order.tolist() == [3, 2, 1, 0]
    ann2 = _ann(["x"], {0: [(0, B, B, ["x"])], 1: [(0, B, slice(5, 16), ["x"])], 2: []}, channels=2)
    fs2 = FilterSet(base, None, ann2, bmu=[1, 0, 2, 0], transform=(np.zeros(4), np.zeros(4)),
                    distance=[0.5, 0.4, 0.1, 0.2], image_dim=D, pixel_scale=1 * u.arcsec, numrot=None)
    # area ratio channel 0 / channel 1: both empty in channel 1 -> ratio 1; neuron 1 has 55 px
    assert Sorter(fs2, mode="area_ratio", filter1=0, filter2=1).order.tolist() == [3, 1, 0, 2]


def _double_source_case():
    """A double radio source (two lobes 12" apart), an IR host between them, a far single source."""
    d = 31
    mid = CEN
    lobe_w = mid.spherical_offsets_by(-6 * u.arcsec, 0 * u.arcsec)   # 6" west
    lobe_e = mid.spherical_offsets_by(6 * u.arcsec, 0 * u.arcsec)    # 6" east
    far = mid.spherical_offsets_by(0 * u.arcsec, 90 * u.arcsec)
    base = SkyCoord([lobe_w.ra, lobe_e.ra, far.ra], [lobe_w.dec, lobe_e.dec, far.dec])
    ir = SkyCoord([mid.ra, far.ra], [mid.dec, far.dec])
    # neuron 0: a double seen from its western lobe at the centre (15, 15): the other lobe lies
    # 12 px to the left (east), the host 6 px to the left. neuron 1: a compact source.
    s = AnnotationSet(LabelSet(["lobe", "host", "compact"]))
    a = Annotation(np.zeros((2, d, d), np.float32))
    m = np.zeros((d, d), bool)
    m[12:19, 12:19] = True
    a.add_mask(0, m, s.labels.value(["lobe"]))
    a.add_mask(0, np.roll(m, -12, axis=1), s.labels.value(["lobe"]))
    h = np.zeros((d, d), bool)
    h[13:18, 7:12] = True
    a.add_mask(1, h, s.labels.value(["host"]))
    s[0] = a
    b = Annotation(np.zeros((2, d, d), np.float32))
    b.add_mask(0, m, s.labels.value(["compact"]))
    b.add_mask(1, m, s.labels.value(["host"]))
    s[1] = b
    # the eastern lobe matches neuron 0 rotated by 180 degrees
    fs = FilterSet(base, (None, ir), s, bmu=[0, 0, 1], transform=([0, 0, 0], [0.0, np.pi, 0.0]),
                   distance=[0.3, 0.2, 0.1], image_dim=d, pixel_scale=1 * u.arcsec, seplimit=40 * u.arcsec,
                   numrot=None)
    return fs, s


def test_double_source_grouped_into_one_and_collated(tmp_path):
    fs, s = _double_source_case()
    resolve = LabelResolve({"lobe": Action.LINK, "compact": Action.LINK, "host": Action.DATA_ATTACH})
    stats = []
    grp = Grouper(fs, s, resolve, Sorter(fs, mode="largest_first"),
                  src_stats_fn=lambda i: stats.append(i) or {"stat": i * 10}, progress=False)
    assert grp.groups() == [{0, 1}, {2}]
    assert sorted(stats) == [1, 2]  # lobe 1 is visited first (best match in neuron 0), claims lobe 0
    cat = grp.collate(flux=[10.0, 30.0, 5.0], names=["W", "E", "F"], host_labels=["host"])
    assert cat["N_components"].tolist() == [2, 1] and cat["Components"].tolist() == ["W;E", "F"]
    assert cat["Total_flux"].tolist() == [40.0, 5.0]
    assert cat["Host_candidates"].tolist() == ["1:0", "1:1"]
    assert cat["Best_neuron"].tolist() == [0, 1] and cat["Subject"].tolist() == [1, 2]
    # flux-weighted position: 3/4 of the way to the eastern lobe = 3" east of the middle
    pos = SkyCoord(cat["RA"][0] * u.deg, cat["DEC"][0] * u.deg)
    expect = CEN.spherical_offsets_by(3 * u.arcsec, 0 * u.arcsec)
    assert pos.separation(expect).arcsec < 0.01
    p = write_source_catalogue(cat, tmp_path / "src.csv")
    with pytest.raises(OutputExistsError):
        write_source_catalogue(cat, p)
    from astropy.table import Table
    write_source_catalogue(cat, tmp_path / "src.fits")
    t = Table.read(tmp_path / "src.fits")
    assert list(t["N_components"]) == [2, 1] and list(t["Components"]) == ["W;E", "F"]


def test_collate_unvisited_entries_are_single_sources():
    fs, s = _double_source_case()
    g = greedy_graph(fs, s, LabelResolve({"lobe": Action.LINK}), [1])
    cat = collate(g, fs)
    assert cat["Components"].tolist() == ["0;1", "2"] and np.isnan(cat["Total_flux"]).all()


def test_annotate_from_truth_drives_grouping():
    from somtorch.collation import annotate_from_truth

    d = 31
    w_ = CEN.spherical_offsets_by(-6 * u.arcsec, 0 * u.arcsec)
    e_ = CEN.spherical_offsets_by(6 * u.arcsec, 0 * u.arcsec)
    s_ = w_.spherical_offsets_by(0 * u.arcsec, 8 * u.arcsec)     # sidelobe 8" north of W
    f_ = CEN.spherical_offsets_by(0 * u.arcsec, 90 * u.arcsec)
    base = SkyCoord([p.ra for p in (w_, e_, f_, s_)], [p.dec for p in (w_, e_, f_, s_)])
    ir = SkyCoord([CEN.ra, f_.ra], [CEN.dec, f_.dec])
    kw = dict(bmu=[0, 0, 1, 2], transform=([0, 0, 0, 0], [0.0, np.pi, 0.0, 0.0]), image_dim=d,
              pixel_scale=1 * u.arcsec, seplimit=40 * u.arcsec, numrot=None)
    ann = annotate_from_truth(np.zeros((3, 2, d, d), np.float32), base, [0, 0, 1, 0], sidelobe=[0, 0, 0, 1],
                              hosts=ir, host_of=[0, 0, 1, -1], radius=1.0, **kw)
    assert ann.labels.names == ["link", "host", "sidelobe"]
    f0 = ann[0].filter(0)
    assert f0[15, 15] == 2 and f0[15, 3] == 2 and f0[23, 15] == 5 and f0[7, 3] == 5
    assert ann[0].filter(1)[15, 9] == 3 and ann[0].filter(1)[15, 15] == 0
    assert ann[0].regions[0].kind == "mask"  # painted through the annotation API
    fs = FilterSet(base, (None, ir), ann, distance=[0.3, 0.2, 0.1, 0.4], **kw)
    resolve = LabelResolve({"link": Action.LINK, "host": Action.DATA_ATTACH, "sidelobe": Action.ISOLATE})
    grp = Grouper(fs, ann, resolve, Sorter(fs))
    assert grp.groups() == [{0, 1}, {2}, {3}]
    assert grp.graph.nodes[3]["isolated"] == "sidelobe"
    cat = grp.collate(host_labels=["host"])
    assert cat["Host_candidates"].tolist() == ["1:0", "1:1", ""] and cat["Isolated"].tolist() == [False, False, True]


def test_lone_linked_entry_stays_a_subject():
    # A's neuron marks only B (not A itself) with LINK: no edge, and B must still act as a subject
    base = _cat([(10, 10), (10, 15)])
    ann = _ann(["lobe"], {0: [(0, B, slice(13, 18), ["lobe"])]})
    fs = FilterSet(base, None, ann, bmu=[0, 1], transform=(np.zeros(2), np.zeros(2)), distance=[0.1, 0.2],
                   image_dim=D, pixel_scale=1 * u.arcsec, numrot=None)
    g = greedy_graph(fs, ann, LabelResolve({"lobe": Action.LINK}), Sorter(fs))
    assert sorted(g.edges()) == [(0, 0), (1, 1)]


def test_filterset_from_somset_files(tmp_path):
    from somtorch.io.binwrap import SOMSet
    from somtorch.io.pink import write_mapping, write_som, write_transforms

    # 2 images, 2x1 SOM; image 0 -> neuron 1 (flipped, 90 deg), image 1 -> neuron 0
    write_som(tmp_path / "som.bin", np.zeros((2, 1, D, D), np.float32), (2, 1))
    write_mapping(tmp_path / "map.bin", np.array([[5.0, 1.0], [0.5, 3.0]], np.float32), (2, 1))
    flip = np.array([[0, 1], [0, 0]], np.int8)
    angle = np.array([[0.0, np.pi / 2], [0.0, 0.0]], np.float32)
    write_transforms(tmp_path / "tr.bin", flip, angle, (2, 1))
    ss = SOMSet(tmp_path / "som.bin", tmp_path / "map.bin", tmp_path / "tr.bin")
    base = _cat([(10, 10), (10, 15)])
    ann = _ann(["x"], {1: [(0, slice(5, 6), slice(10, 11), ["x"])]})
    fs = FilterSet(base, None, ann, ss, image_dim=D, pixel_scale=1 * u.arcsec)
    assert fs.bmu.tolist() == [1, 0] and fs.distance.tolist() == [1.0, 0.5]
    assert fs.flip.tolist() == [1, 0] and fs.angle[0] == pytest.approx(np.pi / 2)
    # image 1 sits 5 px right of image 0's centre: 90 deg clockwise -> below, flip -> above (row 5)
    assert fs[0][0].product_labels.tolist() == [0, 2]
    assert Sorter(fs).order.tolist() == [1, 0]


def test_filter_plot_returns_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs, _ = _three(resolve={"core": Action.LINK})
    fig = fs[0][0].plot()
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["core", "lobe", "side"]
    plt.close(fig)
