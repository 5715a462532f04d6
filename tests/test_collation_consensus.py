"""Grouping methods on small hand-made skies: a double, a triple, a core-lobe source and two
unrelated neighbours (groups asserted exactly, for ``pyink`` and ``consensus``), the consensus
rules (isolation by majority, pair evidence, graph step), the proximity fallback and the
per-source uncertainty.

Geometry: 21 x 21 images and neurons at 1"/px, exact angles (``numrot=None``). A point ``x``"
east of an entry lands at column ``10 - x`` of its cutout, ``y``" north at row ``10 + y``; a
rotation by pi maps pixel ``(r, c)`` to ``(20 - r, 20 - c)``. Masks are painted by hand below at
the pixels these rules give (an independent expectation: no projection code is used to place
them).
"""

import astropy.units as u
import networkx as nx
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from somtorch.annotation import Annotation, AnnotationSet, LabelSet
from somtorch.collation import (
    Action,
    FilterSet,
    LabelResolve,
    Sorter,
    collate,
    consensus_graph,
    greedy_graph,
    group_sources,
)
from somtorch.errors import ConfigError

D = 21
C0 = SkyCoord(150 * u.deg, 2 * u.deg)
PI = np.pi


def _off(centre, east=0.0, north=0.0):
    return centre.spherical_offsets_by(east * u.arcsec, north * u.arcsec)


def _sq(r, c, h=1):
    return slice(max(r - h, 0), r + h + 1), slice(max(c - h, 0), c + h + 1)


def _ann(paint, labels=("link", "sidelobe", "host"), images=None):
    """paint = {neuron: [((rows, cols), label), ...]} on channel 0 of a 1-channel neuron;
    images = {neuron: (D, D) channel-0 image} (zeros otherwise)."""
    s = AnnotationSet(LabelSet(labels))
    for k, regions in paint.items():
        img = np.zeros((D, D), np.float32) if images is None or k not in images else images[k]
        a = Annotation(np.asarray(img, np.float32)[None])
        for (rs, cs), lab in regions:
            m = np.zeros((D, D), bool)
            m[rs, cs] = True
            a.add_mask(0, m, s.labels.value([lab]))
        s[k] = a
    return s


def _groups(G, n):
    H = nx.Graph(G)
    H.add_nodes_from(range(n))
    return sorted(sorted(c) for c in nx.connected_components(H))


RESOLVE = LabelResolve({"link": Action.LINK, "sidelobe": Action.ISOLATE, "host": Action.DATA_ATTACH})


def _sky():
    """Four sources, 2' apart (never in each other's 20" matching radius).

    0, 1: double, lobes 5" west and east of its centre; neuron 0, lobe 1 turned by pi.
    2, 3, 4: triple, core 2 with lobes 7" east (3) and west (4); core -> neuron 1, lobes ->
       neuron 2 (the west lobe turned by pi); the far lobe is outside a lobe's cutout.
    5, 6: core 5 with one lobe 6 6" north; core -> neuron 3, lobe -> neuron 4.
    7, 8: two unrelated compact sources 7" apart; both -> neuron 5 (LINK at the centre only).
    """
    c = [_off(C0, north=120 * i) for i in range(4)]
    pts = [_off(c[0], east=-5), _off(c[0], east=5),
           c[1], _off(c[1], east=7), _off(c[1], east=-7),
           c[2], _off(c[2], north=6),
           c[3], _off(c[3], east=7)]
    base = SkyCoord([p.ra for p in pts], [p.dec for p in pts])
    cen = (_sq(10, 10), "link")
    paint = {
        0: [cen, (_sq(10, 0), "link")],                       # partner 10" east of the west lobe
        1: [cen, (_sq(10, 3), "link"), (_sq(10, 17), "link")],
        2: [cen, (_sq(10, 17), "link")],                       # core 7" west of the east lobe
        3: [cen, (_sq(16, 10), "link")],
        4: [cen, (_sq(4, 10), "link")],
        5: [cen],
    }
    bmu = [0, 0, 1, 2, 2, 3, 4, 5, 5]
    angle = [0, PI, 0, 0, PI, 0, 0, 0, 0]
    return base, paint, bmu, angle


EXPECTED = [[0, 1], [2, 3, 4], [5, 6], [7], [8]]


def _fs(base, ann, bmu, angle, distance=None, seplimit=20):
    n = len(base)
    return FilterSet(base, None, ann, bmu=bmu, transform=(np.zeros(n, int), np.asarray(angle, float)),
                     distance=np.linspace(0.1, 0.9, n) if distance is None else distance, image_dim=D,
                     pixel_scale=1 * u.arcsec, seplimit=seplimit * u.arcsec, numrot=None)


@pytest.mark.parametrize("method, options", [("pyink", {}), ("consensus", {}),
                                             ("consensus", {"fallback": "extended"}),
                                             ("consensus", {"link_grow": 0.3})])
def test_hand_made_sky_grouped_exactly(method, options):
    base, paint, bmu, angle = _sky()
    ann = _ann(paint)
    fs = _fs(base, ann, bmu, angle)
    G = group_sources(fs, ann, RESOLVE, method=method, **options)
    assert _groups(G, len(base)) == EXPECTED
    cat = collate(G, fs, flux=np.arange(1.0, 10.0))
    assert cat["Components"].tolist() == ["0;1", "2;3;4", "5;6", "7", "8"]
    assert cat["Total_flux"].tolist() == [3.0, 12.0, 13.0, 8.0, 9.0]


def test_pyink_method_is_the_greedy_graph():
    base, paint, bmu, angle = _sky()
    ann = _ann(paint)
    fs = _fs(base, ann, bmu, angle)
    a = group_sources(fs, ann, RESOLVE, method="pyink", sort_mode="best_matching_first")
    b = greedy_graph(fs, ann, RESOLVE, Sorter(fs, mode="best_matching_first"))
    assert sorted(a.edges(data="src_idx")) == sorted(b.edges(data="src_idx"))


def test_consensus_representative_edges_and_uncertainty():
    base, paint, bmu, angle = _sky()
    ann = _ann(paint)
    fs = _fs(base, ann, bmu, angle)
    G = consensus_graph(fs, ann, RESOLVE)
    # the triple's representative is the core (its view has all three on LINK)
    assert {d["src_idx"] for a, b, d in G.edges(data=True) if 2 in (a, b)} == {2}
    assert G.nodes[2]["uncertainty"] == 0.0
    # the neighbours: each view puts the other inside its neuron, off LINK -> evidence against
    # pairing, nothing in favour: alone with no disagreeing evidence
    assert G.nodes[7]["uncertainty"] == 0.0
    cat = collate(G, fs)
    assert cat["Uncertainty"].tolist() == [0.0] * 5
    assert cat["Best_neuron"].tolist() == [0, 1, 3, 5, 5]


def test_consensus_isolation_needs_a_majority_not_one_view():
    """A sidelobe S 5" north of the double's west lobe: S's neuron marks both itself and the
    lobe as sidelobe. Greedy ISOLATE (S visited first) takes the lobe out of its source; the
    consensus isolates S (1 view against 0) but not the lobe (1 sidelobe view against 2 LINK
    views)."""
    w, e = _off(C0, east=-5), _off(C0, east=5)
    s = _off(w, north=5)
    base = SkyCoord([p.ra for p in (w, e, s)], [p.dec for p in (w, e, s)])
    ann = _ann({0: [(_sq(10, 10), "link"), (_sq(10, 0), "link")],
                6: [(_sq(10, 10), "sidelobe"), (_sq(5, 10), "sidelobe")]})
    fs = _fs(base, ann, [0, 0, 6], [0, PI, 0], distance=[0.5, 0.6, 0.1])
    greedy = group_sources(fs, ann, RESOLVE, method="pyink", sort_mode="best_matching_first")
    assert _groups(greedy, 3) == [[0], [1], [2]] and greedy.nodes[0]["isolated"] == "sidelobe"
    G = group_sources(fs, ann, RESOLVE, method="consensus")
    assert _groups(G, 3) == [[0, 1], [2]]
    assert G.nodes[2]["isolated"] == "sidelobe" and "isolated" not in G.nodes[0]
    assert _groups(group_sources(fs, ann, RESOLVE), 3) == [[0, 1], [2]]  # the default is the consensus
    cat = collate(G, fs)
    assert cat["Isolated"].tolist() == [False, True]


@pytest.mark.parametrize("evidence, expected", [
    # a-b +2, b-c +1, a-c -2: merging c into {a, b} would sum 1 - 2 < 0 -> the chain is cut
    ({(0, 1): 2.0, (1, 2): 1.0, (0, 2): -2.0}, [[0, 1], [2]]),
    # a-b +2, b-c +2, a-c -1: 2 - 1 > 0 -> one group
    ({(0, 1): 2.0, (1, 2): 2.0, (0, 2): -1.0}, [[0, 1, 2]]),
    # the strongest pair goes first: b-c +3 beats a-b +2, then a joins only if 2 - 3 > 0 (no)
    ({(0, 1): 2.0, (1, 2): 3.0, (0, 2): -3.0}, [[0], [1, 2]]),
    # isolated entries take part in nothing; zero evidence never merges
    ({(0, 1): 0.0, (1, 2): 5.0, (2, 3): 1.0}, [[0], [1], [2, 3]]),
])
def test_graph_step_resolves_chains_by_summed_evidence(evidence, expected):
    from somtorch.collation.consensus import _clusters

    n = 1 + max(max(k) for k in evidence)
    label = _clusters(n, evidence, exclude={1} if expected == [[0], [1], [2, 3]] else set())
    got = {}
    for j, lab in enumerate(label):
        got.setdefault(lab, []).append(j)
    assert sorted(got.values()) == expected


def test_proximity_fallback_pairs_lobes_beyond_each_others_view():
    """Two lobes 60" apart (each outside the other's 20" matching radius) whose neuron marks a
    partner at the eastern edge; the west lobe sees it as is, the east lobe turned by pi: they
    point at each other and are paired. A third entry 50" north of the west lobe points east
    too, at nobody: it stays alone."""
    a, b = C0, _off(C0, east=60)
    c = _off(C0, north=50)
    base = SkyCoord([p.ra for p in (a, b, c)], [p.dec for p in (a, b, c)])
    ann = _ann({7: [(_sq(10, 10), "link"), (_sq(10, 1), "link")]})
    fs = _fs(base, ann, [7, 7, 7], [0, PI, 0])
    assert _groups(consensus_graph(fs, ann, RESOLVE), 3) == [[0], [1], [2]]
    G = consensus_graph(fs, ann, RESOLVE, fallback="proximity", fallback_radius=90 * u.arcsec)
    assert _groups(G, 3) == [[0, 1], [2]]
    assert G.nodes[0]["uncertainty"] == 0.5 and np.isnan(G.nodes[2]["uncertainty"])
    # too far for the radius: no pairing
    G = consensus_graph(fs, ann, RESOLVE, fallback="proximity", fallback_radius=50 * u.arcsec)
    assert _groups(G, 3) == [[0], [1], [2]]


def test_proximity_fallback_one_side_may_point_less_precisely():
    """As above, but the east lobe's transform is off by 45 degrees: its far LINK pixels
    (within ~7 degrees of due east in the neuron) miss the west lobe by 38-52 degrees. Paired
    with the default looser angle for one side (60), not when both must be within 20."""
    a, b = C0, _off(C0, east=60)
    base = SkyCoord([a.ra, b.ra], [a.dec, b.dec])
    ann = _ann({7: [(_sq(10, 10), "link"), (_sq(10, 1), "link")]})
    fs = _fs(base, ann, [7, 7], [0, PI + np.radians(45)])
    kw = dict(fallback="proximity", fallback_radius=90 * u.arcsec)
    assert _groups(consensus_graph(fs, ann, RESOLVE, **kw), 2) == [[0, 1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, fallback_angle_other=20, **kw), 2) == [[0], [1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, fallback_angle_other=30, **kw), 2) == [[0], [1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, fallback_angle_other=39, **kw), 2) == [[0, 1]]


def _coords(*pts):
    return SkyCoord([p.ra for p in pts], [p.dec for p in pts])


def test_extended_fallback_completes_a_triple_through_a_fallback_pair():
    """Lobe W, core C 60" east, lobe E 120" east: beyond each other's 20" view. W's neuron
    points east, E's (turned by pi) west, C's both ways. C-E is the cheaper pair (equal
    fluxes), W-C costs more (flux 1 vs 2): "proximity" pairs C-E and leaves W alone;
    "extended" lets W join the pair that the fallback made through C, which points back."""
    base = _coords(C0, _off(C0, east=60), _off(C0, east=120))
    ann = _ann({7: [(_sq(10, 10), "link"), (_sq(10, 1), "link")],
                8: [(_sq(10, 10), "link"), (_sq(10, 1), "link"), (_sq(10, 19), "link")]})
    fs = _fs(base, ann, [7, 8, 7], [0, 0, PI])
    kw = dict(fallback_radius=90 * u.arcsec, flux=[1.0, 2.0, 2.0])
    assert _groups(consensus_graph(fs, ann, RESOLVE, **kw), 3) == [[0], [1, 2]]
    G = consensus_graph(fs, ann, RESOLVE, fallback="extended", **kw)
    assert _groups(G, 3) == [[0, 1, 2]]
    assert G.nodes[0]["uncertainty"] == 0.5
    # the same without the join step of the mode: the pair only
    assert _groups(consensus_graph(fs, ann, RESOLVE, fallback="extended", fallback_groups=False, **kw), 3) == \
        [[0], [1, 2]]


def test_extended_fallback_one_sided_pair_and_its_flux_limit():
    """Entry 0's neuron marks a partner 10 px east (pixel (10, 0)); entry 1 lies 12" east and
    1" north -- outside 0's neuron (column -2), 0 outside 1's -- so no view votes. Entry 1's
    neuron (centre LINK only) expects no partner: only the one-sided test pairs them (0 points
    within 5 degrees, at 1.2x the pixel's radius), and only while the fluxes differ by <= 4x."""
    base = _coords(C0, _off(C0, east=12, north=1))
    ann = _ann({7: [(_sq(10, 10), "link"), (_sq(10, 0, 0), "link")], 5: [(_sq(10, 10), "link")]})
    fs = _fs(base, ann, [7, 5], [0, 0])
    assert _groups(consensus_graph(fs, ann, RESOLVE, flux=[1.0, 3.0]), 2) == [[0], [1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, fallback="extended", flux=[1.0, 3.0]), 2) == [[0, 1]]
    # group_sources' default: the consensus with the proximity fallback; "extended" and "pyink" by name
    assert _groups(group_sources(fs, ann, RESOLVE, flux=[1.0, 3.0]), 2) == [[0], [1]]
    assert _groups(group_sources(fs, ann, RESOLVE, flux=[1.0, 3.0], fallback="extended"), 2) == [[0, 1]]
    assert _groups(group_sources(fs, ann, RESOLVE, method="pyink"), 2) == [[0], [1]]
    # an artefact-like flux ratio (10x): not paired; nor with the one-sided test off
    assert _groups(consensus_graph(fs, ann, RESOLVE, fallback="extended", flux=[10.0, 1.0]), 2) == [[0], [1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, fallback="extended", fallback_one_sided=0,
                                   flux=[1.0, 3.0]), 2) == [[0], [1]]
    # the far pixel at a different distance (radius 5 px, 12 px away): not "expected there"
    ann5 = _ann({7: [(_sq(10, 10), "link"), (_sq(10, 5, 0), "link")], 5: [(_sq(10, 10), "link")]})
    fs5 = _fs(base, ann5, [7, 5], [0, 0])
    assert _groups(consensus_graph(fs5, ann5, RESOLVE, fallback="extended", fallback_far=0.4,
                                   flux=[1.0, 3.0]), 2) == [[0], [1]]


def test_extended_fallback_points_through_the_other_views():
    """Two lobes 60" apart whose best views point at each other except that lobe 1's best
    transform is off by 90 degrees; its 2nd-best view (same neuron, transform pi) points
    right. "proximity" (best views; one side within 60 degrees) leaves them apart, "extended"
    (directions also through ``extra_views``) pairs them."""
    base = _coords(C0, _off(C0, east=60))
    ann = _ann({7: [(_sq(10, 10), "link"), (_sq(10, 1), "link")]})
    fs = _fs(base, ann, [7, 7], [0, PI + PI / 2])
    second = _fs(base, ann, [7, 7], [0, PI])
    kw = dict(fallback_radius=90 * u.arcsec, extra_views=[second])
    assert _groups(consensus_graph(fs, ann, RESOLVE, **kw), 2) == [[0], [1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, fallback="extended", **kw), 2) == [[0, 1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, fallback="extended", fallback_views="best", **kw), 2) == \
        [[0], [1]]
    # lobe 1's best neuron (5) marks no far partner: with "directions" the best view decides
    # that lobe 1 expects none (and 60" is no one-sided distance for a 9 px pixel); "all" lets
    # the 2nd view decide
    ann2 = _ann({7: [(_sq(10, 10), "link"), (_sq(10, 1), "link")], 5: [(_sq(10, 10), "link")]})
    fs2 = _fs(base, ann2, [7, 5], [0, 0])
    kw2 = dict(fallback_radius=90 * u.arcsec, extra_views=[_fs(base, ann2, [7, 7], [0, PI])])
    assert _groups(consensus_graph(fs2, ann2, RESOLVE, fallback="extended", **kw2), 2) == [[0], [1]]
    assert _groups(consensus_graph(fs2, ann2, RESOLVE, fallback="extended", fallback_views="all", **kw2), 2) == \
        [[0, 1]]


def test_fallback_pair_projection_matches_one_by_one():
    from somtorch.collation.fallback import to_neuron, to_neuron_pairs

    base, paint, bmu, angle = _sky()
    fs = _fs(base, _ann(paint), bmu, angle)
    a, b = np.array([0, 1, 2, 4, 8]), np.array([1, 0, 4, 2, 7])
    one = np.array([to_neuron(fs, i, base[j:j + 1])[0] for i, j in zip(a, b)])
    assert np.array_equal(to_neuron_pairs(fs, a, b), one)
    # lobe 1 (turned by pi) sees lobe 0, 10" west, at column 0 of its neuron: (10, 0)
    assert np.allclose(one[1], [10, 0], atol=1e-9)


def test_extended_fallback_leaves_unrelated_neighbours_apart():
    """Two compact sources 30" apart (outside each other's view) whose neurons have LINK at the
    centre only: neither expects a partner, nothing pairs them -- nor a source 12" from an
    entry whose neuron points elsewhere (north, 90 degrees off)."""
    base = _coords(C0, _off(C0, east=30), _off(C0, north=120), _off(C0, north=120, east=12))
    ann = _ann({5: [(_sq(10, 10), "link")], 7: [(_sq(10, 10), "link"), (_sq(20, 10, 0), "link")]})
    fs = _fs(base, ann, [5, 5, 7, 5], [0, 0, 0, 0])
    G = consensus_graph(fs, ann, RESOLVE, fallback="extended", fallback_radius=90 * u.arcsec,
                        flux=[1.0, 1.0, 1.0, 1.0])
    assert _groups(G, 4) == [[0], [1], [2], [3]]


def _bar(c0, c1, rows=(9, 10, 11), value=1.0):
    img = np.zeros((D, D), np.float32)
    img[rows[0]:rows[-1] + 1, c0:c1 + 1] = value
    return img


def test_link_grow_groups_a_partner_on_the_neuron_emission():
    """A double, lobes 6" apart: each view puts the partner at pixel (10, 4), 5 px from the only
    LINK pixels (the centre disk). The neuron's emission is one bar over rows 9-11, columns
    2-12 covering both: painted masks leave the lobes apart (-0.5 per view); grown over the
    bar (any seed) they are grouped. With off-centre seeds the centre-only mask does not grow."""
    base = _coords(_off(C0, east=-3), _off(C0, east=3))
    paint = {0: [(_sq(10, 10), "link")]}
    ann = _ann(paint, images={0: _bar(2, 12)})
    fs = _fs(base, ann, [0, 0], [0, PI])
    assert _groups(consensus_graph(fs, ann, RESOLVE), 2) == [[0], [1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, link_grow=0.5), 2) == [[0, 1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, link_grow=0.5, link_grow_seed="offcentre"), 2) == [[0], [1]]
    assert _groups(consensus_graph(fs, ann, RESOLVE, link_grow=1.0, link_grow_mode="sigma"), 2) == [[0, 1]]
    # the bar too faint for the threshold (peak elsewhere): no growth
    img = _bar(2, 12, value=0.2)
    img[0, 20] = 1.0
    ann_faint = _ann(paint, images={0: img})
    assert _groups(consensus_graph(_fs(base, ann_faint, [0, 0], [0, PI]), ann_faint, RESOLVE, link_grow=0.5), 2) \
        == [[0], [1]]


def test_link_grow_leaves_a_neighbour_off_the_emission_apart():
    """Two unrelated compact sources 6" apart, both on a neuron whose emission is a compact
    blob at the centre (rows/cols 8-12): growth stays on the blob, the neighbour at (10, 4)
    is off it -- not merged."""
    base = _coords(_off(C0, east=-3), _off(C0, east=3))
    blob = np.zeros((D, D), np.float32)
    blob[8:13, 8:13] = 1.0
    ann = _ann({0: [(_sq(10, 10), "link")]}, images={0: blob})
    fs = _fs(base, ann, [0, 0], [0, PI])
    assert _groups(consensus_graph(fs, ann, RESOLVE, link_grow=0.1), 2) == [[0], [1]]


def test_grow_link_masks_islands_seeds_and_blocked_labels():
    from somtorch.collation.linkmask import grow_link_masks

    img = _bar(4, 12) + _bar(16, 19, rows=(2, 3, 4))  # island A (centre, cols 4-12), island B
    s = AnnotationSet(LabelSet(["link", "sidelobe"]))
    a = Annotation(img[None])
    link, side = np.zeros((D, D), bool), np.zeros((D, D), bool)
    link[10, 10] = link[3, 17] = True  # centre seed and an off-centre seed on B
    side[3, 19] = True                 # a sidelobe pixel on B
    a.add_mask(0, link, s.labels.value(["link"]))
    a.add_mask(0, side, s.labels.value(["sidelobe"]))
    s[0] = a
    fs = _fs(_coords(C0), s, [0], [0])
    lp, sp = [s.labels.prime("link")], [s.labels.prime("sidelobe")]
    island_a, island_b = _bar(4, 12) > 0, _bar(16, 19, rows=(2, 3, 4)) > 0
    blocked = island_b.copy()
    blocked[3, 19] = False
    g = grow_link_masks(fs, s, lp, sp, 0.5)[0]
    assert (g == (island_a | blocked)).all()
    g = grow_link_masks(fs, s, lp, sp, 0.5, seed="offcentre")[0]
    assert (g == (blocked | link)).all()
    with pytest.raises(ConfigError, match="link_grow_mode"):
        grow_link_masks(fs, s, lp, sp, 0.5, mode="median")
    with pytest.raises(ConfigError, match="link_grow"):
        grow_link_masks(fs, s, lp, sp, -1.0)


def test_data_attach_by_vote_of_member_views():
    """Host catalogue on channel 1: the double's two views both put IR source 0 on 'host',
    only the west lobe's view also puts IR source 1 there: the group's host is 0."""
    w, e = _off(C0, east=-5), _off(C0, east=5)
    base = SkyCoord([w.ra, e.ra], [w.dec, e.dec])
    ir = SkyCoord([C0.ra, _off(w, north=3).ra], [C0.dec, _off(w, north=3).dec])
    s = AnnotationSet(LabelSet(["link", "sidelobe", "host"]))
    a = Annotation(np.zeros((2, D, D), np.float32))
    for ch, (rs, cs), lab in ((0, _sq(10, 10), "link"), (0, _sq(10, 0), "link"), (1, _sq(10, 5), "host"),
                              (1, _sq(13, 10), "host")):
        m = np.zeros((D, D), bool)
        m[rs, cs] = True
        a.add_mask(ch, m, s.labels.value([lab]))
    s[0] = a
    fs = FilterSet(base, (None, ir), s, bmu=[0, 0], transform=([0, 0], [0.0, PI]), distance=[0.1, 0.2],
                   image_dim=D, pixel_scale=1 * u.arcsec, seplimit=20 * u.arcsec, numrot=None)
    G = consensus_graph(fs, s, RESOLVE)
    cat = collate(G, fs, host_labels=["host"])
    assert cat["Components"].tolist() == ["0;1"] and cat["Host_candidates"].tolist() == ["1:0"]


def test_bad_options_name_the_field():
    base, paint, bmu, angle = _sky()
    ann = _ann(paint)
    fs = _fs(base, ann, bmu, angle)
    with pytest.raises(ConfigError, match="method"):
        group_sources(fs, ann, RESOLVE, method="magic")
    with pytest.raises(ConfigError, match="options"):
        group_sources(fs, ann, RESOLVE, method="pyink", tolerance=1.0)
    with pytest.raises(ConfigError, match="weighting"):
        consensus_graph(fs, ann, RESOLVE, weighting="cosine")
    with pytest.raises(ConfigError, match="fallback"):
        consensus_graph(fs, ann, RESOLVE, fallback="nearest")
    with pytest.raises(ConfigError, match="fallback_groups"):
        consensus_graph(fs, ann, RESOLVE, fallback="extended", fallback_groups="some")
    with pytest.raises(ConfigError, match="fallback_views"):
        consensus_graph(fs, ann, RESOLVE, fallback_views="any")


def test_filterset_rank_uses_the_nth_best_neuron_and_its_transform(tmp_path):
    from somtorch.io.binwrap import SOMSet
    from somtorch.io.pink import write_mapping, write_som, write_transforms

    # 2 images, 2x1 SOM; image 0: best neuron 1 (flip, pi/2), 2nd best neuron 0 (no transform);
    # image 1: best neuron 0 (no transform), 2nd best neuron 1
    write_som(tmp_path / "som.bin", np.zeros((2, 1, D, D), np.float32), (2, 1))
    write_mapping(tmp_path / "map.bin", np.array([[5.0, 1.0], [0.5, 3.0]], np.float32), (2, 1))
    flip = np.array([[0, 1], [0, 0]], np.int8)
    angle = np.array([[0.0, np.pi / 2], [0.0, 0.0]], np.float32)
    write_transforms(tmp_path / "tr.bin", flip, angle, (2, 1))
    ss = SOMSet(tmp_path / "som.bin", tmp_path / "map.bin", tmp_path / "tr.bin")
    base = SkyCoord([C0.ra, _off(C0, east=-5).ra], [C0.dec, _off(C0, east=-5).dec])
    ann = _ann({0: [(_sq(10, 10, 0), "link"), (_sq(10, 15, 0), "link")]})  # neuron 1 not annotated
    fs1 = FilterSet(base, None, ann, ss, image_dim=D, pixel_scale=1 * u.arcsec, numrot=None, rank=1)
    assert fs1.bmu.tolist() == [0, 1] and fs1.distance.tolist() == [5.0, 3.0]
    assert fs1.flip.tolist() == [0, 0] and fs1.angle.tolist() == [0.0, 0.0]
    # image 1 is 5" west of image 0: column 15 of image 0's cutout, LINK in neuron 0
    assert fs1[0][0].product_labels.tolist() == [2, 2]
    fs0 = FilterSet(base, None, ann, ss, image_dim=D, pixel_scale=1 * u.arcsec, numrot=None)
    assert fs0.bmu.tolist() == [1, 0]
    # best views only: image 1's view (neuron 0) has image 0 at column 5, off LINK: -0.5
    only = consensus_graph(fs0, ann, RESOLVE, fallback=None)
    assert _groups(only, 2) == [[0], [1]]
    # image 0's 2nd-best view (neuron 0) puts both on LINK: +1 x extra_weight
    both = consensus_graph(fs0, ann, RESOLVE, fallback=None, extra_views=[fs1], extra_weight=1.0)
    assert _groups(both, 2) == [[0, 1]]
    weak = consensus_graph(fs0, ann, RESOLVE, fallback=None, extra_views=[fs1], extra_weight=0.25)
    assert _groups(weak, 2) == [[0], [1]]


@pytest.mark.slow
def test_synthetic_sky_consensus_beats_greedy_on_multi_component_sources():
    """End to end on a small synthetic sky (benchmarks/bench_collation.py, fixed seed): the
    consensus groups more multi-component sources exactly than PYINK's greedy graph, with the
    single-component sources still >= 0.94 (issue 18's floor)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "bench_collation.py"
    spec = importlib.util.spec_from_file_location("bench_collation", path)
    bc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bc)
    ctx = bc.prepare(n_sources=400, som_side=5, seed=3)
    res = {}
    for method in ("pyink", "consensus"):
        g, groups, ann, fs, _ = bc.collate_setting(ctx, None, method)
        res[method], _ = bc.score(ctx, None, g, groups, ann, fs)
    assert res["consensus"]["exact_grouping_multi"] > res["pyink"]["exact_grouping_multi"]
    assert res["consensus"]["exact_grouping_single"] >= 0.94
