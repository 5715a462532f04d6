"""Grouping components into sources on the built-in synthetic sky (radio + IR), end to end.

Pipeline: synthetic sky with multi-component sources, sidelobes and IR hosts -> two-channel
cutouts (radio, IR) preprocessed as in the demo -> rotation/flip-invariant SOM trained with the
engine -> mapping (best neuron and transform per component) -> neurons annotated
*programmatically from the truth* through the annotation API (:func:`annotate_from_truth`:
``link`` where components of the subject's own source land, ``sidelobe`` where artefacts land,
``host`` where the IR host lands) -> :class:`FilterSet` -> grouping (LINK / ISOLATE /
DATA_ATTACH) with ``--method`` (default ``consensus``, as :func:`somtorch.collation.group_sources`:
every component's view votes, :func:`somtorch.collation.consensus_graph`; ``pyink``: PYINK's
greedy graph in ``largest_first`` order) -> source catalogue.

Scores:

* *exact grouping*: fraction of real sources whose set of catalogued components is exactly one
  group (all sources, sources with >= 2 catalogued components, single-component sources);
* *sidelobes alone*: fraction of sidelobe artefacts left in a group of their own;
* *host accuracy*: among exactly grouped sources that have an IR host, the fraction whose group
  has exactly that host as its only candidate (and: the host is among the candidates).

Two annotation settings: ``all`` (every component's view votes: an upper bound, the masks have
seen the evaluated components), and ``held-out`` (only a random half of the components vote;
scores are over sources whose components all lie in the other half). A baseline leaves every
component alone (exact grouping = fraction of single-component sources).

``--breakdown`` adds the failure study: one row per wrongly grouped source (morphology, number
of components, largest separation, flux ratio, split / merge, the cause, the neuron of its
brightest component and that neuron's link-label purity) and tables aggregating them.
``--seeds 101 102 ...`` runs several seeds and prints mean, min and max of every score.
``--cache DIR`` keeps the sky, SOM and mapping of a (seed, size, SOM) so that re-runs only redo
the collation. ``--option KEY=VALUE`` passes options to the method
(:func:`somtorch.collation.consensus_graph`); ``views=N`` (bench option, consensus only,
default 3) lets every component vote through its N best-matching neurons (``extra_views``);
``--option fallback=extended`` is the held-out recommendation (RESULTS.md, issue 18 round 3).

Usage::

    python benchmarks/bench_collation.py [--n-sources 500] [--som 6] [--seed 0] [--method consensus|pyink]
        [--breakdown] [--seeds S1 S2 ...] [--cache DIR] [--record]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

# ---------------------------------------------------------------------------- sky, SOM, mapping

def prepare(n_sources: int = 500, som_side: int = 6, seed: int = 0, image_size: int = 40, crop: int = 120,
            numrot: int = 36, epochs=(2, 2, 2), cache: str | None = None) -> dict:
    """Sky, cutouts, trained SOM and mapping: everything the collation step consumes."""
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord

    from somtorch.datasets import SkyConfig, generate_sky

    t0 = time.perf_counter()
    sky = generate_sky(SkyConfig(n_sources=n_sources, seed=seed, with_ir=True))
    cat = sky.catalogue.reset_index(drop=True)
    key = f"n{n_sources}_som{som_side}_s{seed}_i{image_size}_c{crop}_r{numrot}_e{'-'.join(map(str, epochs))}"
    path = os.path.join(cache, key + ".npz") if cache else None
    timing = {}
    if path and os.path.exists(path) and "top_n" in np.load(path).files:
        z = np.load(path)
        bmu, flip, angle, dist, weights = z["bmu"], z["flip"], z["angle"], z["dist"], z["weights"]
        top = {k: z[k] for k in ("top_n", "top_flip", "top_angle", "top_dist")}
        timing["cached"] = True
    else:
        import torch

        from somtorch.datasets import preprocess_cutouts, render_cutouts
        from somtorch.engine import (
            Mapper,
            Neighbourhood,
            RotationInvariantSOM,
            SOMGeometry,
            Trainer,
        )
        from somtorch.geometry import Lattice

        cube = render_cutouts(sky, channels=("radio", "ir"))
        radio = preprocess_cutouts(cube[:, 0], snr=2.0, log=True, crop=crop, image_size=image_size)
        ir = preprocess_cutouts(cube[:, 1], snr=2.0, log=False, crop=crop, image_size=image_size)
        images = torch.from_numpy(np.stack([radio, ir], axis=1))
        timing["cutouts_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        geom = SOMGeometry(image_size, channels=2, numrot=numrot, distance_shape="circular")
        som = RotationInvariantSOM(Lattice("cartesian", (som_side, som_side)), geom, init="random", seed=seed + 1)
        for sigma, damping, n_iter in zip((2.0, 1.2, 0.7), (0.3, 0.1, 0.05), epochs):
            Trainer(som, Neighbourhood("unitygaussian", sigma, damping), num_iter=n_iter, seed=seed + 2,
                    metrics_sample=0, handle_signals=False).fit(images)
        res = Mapper(som).map(images)
        bmu = res.bmu.numpy()
        k = torch.arange(len(bmu))
        flip = res.flip[k, res.bmu].numpy().astype(np.int64)
        angle = res.angle[k, res.bmu].numpy().astype(np.float64)
        dist = res.distances[k, res.bmu].numpy()
        weights = som.weight.detach().cpu().numpy().reshape(som.num_neurons, *geom.neuron_shape)
        # the three best neurons of every component, with their exact transforms
        tn = torch.argsort(res.distances, dim=1)[:, :3]
        top = {"top_n": tn.numpy(), "top_flip": torch.gather(res.flip, 1, tn).numpy().astype(np.int64),
               "top_angle": torch.gather(res.angle, 1, tn).numpy().astype(np.float64),
               "top_dist": torch.gather(res.distances, 1, tn).numpy()}
        timing["train_map_s"] = time.perf_counter() - t1
        if path:
            os.makedirs(cache, exist_ok=True)
            np.savez(path, bmu=bmu, flip=flip, angle=angle, dist=dist, weights=weights, **top)

    base = SkyCoord(cat.RA.to_numpy() * u.deg, cat.DEC.to_numpy() * u.deg)
    src = sky.sources.set_index("Source_id")
    side = cat.Is_sidelobe.to_numpy().astype(bool)
    sid = cat.Source_id.to_numpy()
    hosted = src[src.Has_host.astype(bool)]
    hosts = SkyCoord(hosted.Host_RA.to_numpy() * u.deg, hosted.Host_DEC.to_numpy() * u.deg)
    host_index = {s: i for i, s in enumerate(hosted.index)}
    host_of = np.array([-1 if side[j] else host_index.get(sid[j], -1) for j in range(len(cat))])
    scale = sky.config.pixel_scale_arcsec * crop / image_size
    common = dict(bmu=bmu, transform=(flip, angle), image_dim=image_size, pixel_scale=scale * u.arcsec,
                  seplimit=0.5 * image_size * scale * np.sqrt(2) * u.arcsec, numrot=numrot)
    true_groups: dict = {}
    for j in np.flatnonzero(~side):
        true_groups.setdefault(sid[j], set()).add(int(j))
    rng = np.random.default_rng(seed + 11)
    half = rng.random(len(cat)) < 0.5
    return dict(cat=cat, base=base, side=side, sid=sid, hosts=hosts, host_index=host_index, host_of=host_of,
                common=common, weights=weights, dist=dist, top=top, true_groups=true_groups, half=half, scale=scale,
                timing=timing, n_sources=n_sources, som=f"{som_side}x{som_side}", image_size=image_size,
                numrot=numrot, seed=seed, prepare_s=time.perf_counter() - t0)


# ---------------------------------------------------------------------------- collation + scores

def collate_setting(ctx: dict, subjects, method: str = "consensus", radius: float = 1.5, **method_kw):
    """Annotation from the truth of ``subjects`` (None: all), FilterSet, grouping. Returns
    ``(graph, groups, annotation, filterset, seconds of the grouping step)``."""
    import numpy as np

    from somtorch.collation import (
        Action,
        FilterSet,
        LabelResolve,
        annotate_from_truth,
        group_sources,
    )

    ann = annotate_from_truth(ctx["weights"], ctx["base"], ctx["sid"], sidelobe=ctx["side"], hosts=ctx["hosts"],
                              host_of=ctx["host_of"], radius=radius, subjects=subjects, **ctx["common"])
    fs = FilterSet(ctx["base"], (None, ctx["hosts"]), ann, distance=ctx["dist"], **ctx["common"])
    resolve = LabelResolve({"link": Action.LINK, "sidelobe": Action.ISOLATE, "host": Action.DATA_ATTACH})
    t = time.perf_counter()
    kw = dict(method_kw)
    views = int(kw.pop("views", 3 if method == "consensus" else 1))
    if views > 1:  # the 2nd, 3rd ... best neurons' views, each through its own exact transform
        top = ctx["top"]
        extra = []
        for r in range(1, views):
            c = dict(ctx["common"], bmu=top["top_n"][:, r], transform=(top["top_flip"][:, r], top["top_angle"][:, r]))
            extra.append(FilterSet(ctx["base"], None, ann, distance=top["top_dist"][:, r], **c))
        kw["extra_views"] = extra
    if method == "pyink":
        kw.setdefault("sort_mode", "largest_first")
    graph = group_sources(fs, ann, resolve, method=method, flux=ctx["cat"].Total_flux.to_numpy(), **kw)
    seconds = time.perf_counter() - t
    import networkx as nx

    Gn = nx.Graph(graph)
    Gn.add_nodes_from(range(len(ctx["cat"])))
    groups = [c for c in nx.connected_components(Gn) if any(isinstance(n, (int, np.integer)) for n in c)]
    return graph, groups, ann, fs, seconds


def _neuron_purity(ctx, fs, ann):
    """Per neuron: precision and recall of the ``link`` label over all projected pairs (truth of
    every entry, whichever entries voted)."""
    import numpy as np

    p = fs.pairs(0)
    sid, side = ctx["sid"], ctx["side"]
    off = p["base"] != p["match"]
    same = (sid[p["base"]] == sid[p["match"]]) & ~side[p["match"]] & ~side[p["base"]]
    on = fs_link(fs, ann, p["value"])
    k = fs.bmu[p["base"]]
    n = fs.filters.shape[0]
    tp = np.bincount(k, on & same & off, n)
    fp = np.bincount(k, on & ~same & off, n)
    fn = np.bincount(k, ~on & same & off, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fp), tp / (tp + fn)


def fs_link(fs, ann, values):
    import numpy as np

    pr = ann.labels.prime("link")
    v = np.asarray(values)
    return (v > 1) & (v % pr == 0)


def score(ctx: dict, subjects, graph, groups, ann, fs, breakdown: bool = False) -> tuple[dict, list]:
    import numpy as np

    side, true_groups, host_index = ctx["side"], ctx["true_groups"], ctx["host_index"]
    member = {}
    for gi, g in enumerate(groups):
        for n in g:
            if isinstance(n, (int, np.integer)):
                member[int(n)] = gi
    from somtorch.collation import collate

    cat_out = collate(graph, fs, flux=ctx["cat"].Total_flux.to_numpy(), host_labels=["host"])
    by_first = {int(r.Components.split(";")[0]): r for r in cat_out.itertuples()}
    eval_src = [s for s, comps in true_groups.items() if subjects is None or not subjects[list(comps)].any()]
    exact = exact_multi = n_multi = host_ok = host_in = n_host = exact_single = 0
    failed = []
    for s in eval_src:
        comps = true_groups[s]
        g = {n for n in groups[member[next(iter(comps))]] if isinstance(n, (int, np.integer))}
        ok = g == comps
        exact += ok
        if len(comps) > 1:
            n_multi += 1
            exact_multi += ok
        else:
            exact_single += ok
        if not ok:
            failed.append(s)
        if ok and s in host_index:
            n_host += 1
            row = by_first[min(comps)]
            cands = [h for h in row.Host_candidates.split(";") if h]
            want = f"1:{host_index[s]}"
            host_ok += cands == [want]
            host_in += want in cands
    sl = np.flatnonzero(side if subjects is None else side & ~subjects)
    alone = np.mean([len({n for n in groups[member[int(j)]] if isinstance(n, (int, np.integer))}) == 1 for j in sl])
    single_frac = np.mean([len(true_groups[s]) == 1 for s in eval_src])
    n_single = len(eval_src) - n_multi
    out = {
        "sources_evaluated": len(eval_src), "multi_component_sources": n_multi,
        "exact_grouping": exact / len(eval_src), "exact_grouping_multi": exact_multi / max(n_multi, 1),
        "exact_grouping_single": exact_single / max(n_single, 1),
        "baseline_all_alone": float(single_frac), "sidelobes_alone": float(alone),
        "host_sources": n_host, "host_exact": host_ok / max(n_host, 1), "host_among": host_in / max(n_host, 1),
        "annotated_neurons": len(ann.annotated()),
    }
    rows = _breakdown_rows(ctx, failed, member, groups, graph, ann, fs) if breakdown else []
    return out, rows


def _view_label(fs, ann, i, j):
    """Label of entry j in entry i's view: link / sidelobe / none / outside / unannotated."""
    p = fs._pairs[0]
    s, e = p["starts"][i], p["starts"][i + 1]
    hit = np.flatnonzero(p["match"][s:e] == j) if e > s else []
    if len(hit) == 0:
        return "outside"
    if not fs.annotated[fs.bmu[i]]:
        return "unannotated"
    q = s + hit[0]
    if not p["inside"][q]:
        return "outside"
    v = int(p["value"][q])
    if v > 1 and v % ann.labels.prime("link") == 0:
        return "link"
    if v > 1 and v % ann.labels.prime("sidelobe") == 0:
        return "sidelobe"
    return "none"


def _breakdown_rows(ctx, failed, member, groups, graph, ann, fs) -> list[dict]:
    """One row per wrongly grouped source: what went wrong and why (module docstring)."""
    cat, side, true_groups = ctx["cat"], ctx["side"], ctx["true_groups"]
    xyz = np.column_stack([np.cos(ctx["base"].dec.rad) * np.cos(ctx["base"].ra.rad),
                           np.cos(ctx["base"].dec.rad) * np.sin(ctx["base"].ra.rad), np.sin(ctx["base"].dec.rad)])
    purity, recall = _neuron_purity(ctx, fs, ann)
    flux = cat.Total_flux.to_numpy()
    acted = {int(d["src_idx"]) for _, _, d in graph.edges(data=True) if "src_idx" in d}
    isolated = {n for n, d in graph.nodes(data=True) if "isolated" in d}
    rows = []
    for s in failed:
        comps = sorted(true_groups[s])
        gids = sorted({member[c] for c in comps})
        got = set().union(*[{n for n in groups[g] if isinstance(n, (int, np.integer))} for g in gids])
        foreign = sorted(got - set(comps))
        split, merge = len(gids) > 1, bool(foreign)
        kind = "split+merge" if split and merge else ("split" if split else "merge")
        c = np.asarray(comps)
        sep = 0.0
        if len(c) > 1:
            d = xyz[c][:, None] - xyz[c][None]
            sep = float(np.degrees(2 * np.arcsin(np.linalg.norm(d, axis=-1).max() / 2)) * 3600)
        f = flux[c]
        bright = int(c[np.argmax(f)])
        k = int(fs.bmu[bright])
        # cause
        cause = ""
        if split:
            cross = [(a, b) for a in comps for b in comps if a != b and member[a] != member[b]]
            views = {(a, b): _view_label(fs, ann, a, b) for a, b in cross}
            third = [v for v in comps]
            linked_somewhere = any(_view_label(fs, ann, v, a) == "link" and _view_label(fs, ann, v, b) == "link"
                                   for a, b in cross for v in third) or any(x == "link" for x in views.values())
            if any(a in isolated for a in comps):
                cause = "isolated (sidelobe label)"
            elif linked_somewhere:
                cause = "view links, not acted on"
            elif all(x == "outside" for x in views.values()):
                cause = "beyond view"
            elif any(x == "unannotated" for x in views.values()):
                cause = "neuron unannotated"
            else:
                cause = "mask misses"
        if merge:
            fk = ["sidelobe" if side[j] else "other source" for j in foreign]
            mcause = "merged " + "/".join(sorted(set(fk)))
            cause = f"{cause}; {mcause}" if cause else mcause
        rows.append({
            "source": int(s), "morph": str(cat.Morph_class.iloc[comps[0]]), "n_comp": len(comps),
            "sep_arcsec": sep, "flux_ratio": float(f.max() / max(f.min(), 1e-9)), "total_flux": float(f.sum()),
            "error": kind, "cause": cause, "neuron": k, "purity": float(purity[k]), "recall": float(recall[k]),
            "acted": int(sum(int(x) in acted for x in comps)), "n_groups": len(gids), "n_foreign": len(foreign),
        })
    return rows


def _md(t) -> str:
    """A DataFrame as a markdown table (index included; no tabulate dependency)."""
    idx = t.index.name or ""
    head = "| " + " | ".join([str(idx)] + [str(c) for c in t.columns]) + " |"
    lines = [head, "|" + "---|" * (len(t.columns) + 1)]
    for i, row in t.iterrows():
        lines.append("| " + " | ".join([str(i)] + [str(v) for v in row.tolist()]) + " |")
    return "\n".join(lines)


def breakdown_tables(rows: list[dict]) -> str:
    """Markdown tables aggregating failure rows (from one or several runs)."""
    import pandas as pd

    if not rows:
        return "(no failures)\n"
    df = pd.DataFrame(rows)
    df["multi"] = np.where(df.n_comp > 1, ">=2 comp.", "single")
    out = []

    def table(title, g):
        out.append(f"\n**{title}**\n")
        out.append(_md(df.groupby(g).size().unstack(fill_value=0)))

    table("Failures by morphology and error", ["morph", "error"])
    table("Failures by cause (multi- vs single-component)", ["cause", "multi"])
    m = df[df.n_comp > 1].copy()
    if len(m):
        m["sep bin (arcsec)"] = pd.cut(m.sep_arcsec, [0, 15, 30, 45, 60, 1e9],
                                       labels=["<15", "15-30", "30-45", "45-60", ">60"])
        m["flux ratio bin"] = pd.cut(m.flux_ratio, [1, 2, 5, 20, 1e12], labels=["<2", "2-5", "5-20", ">20"],
                                     include_lowest=True)
        m["purity bin"] = pd.cut(m.purity.fillna(-1), [-2, -0.5, 0.5, 0.8, 0.95, 1.0],
                                 labels=["none", "<0.5", "0.5-0.8", "0.8-0.95", ">=0.95"])
        for col in ("sep bin (arcsec)", "flux ratio bin", "purity bin"):
            out.append(f"\n**Multi-component failures by {col}**\n")
            out.append(_md(m.groupby([col, "error"], observed=False).size().unstack(fill_value=0)))
    return "\n".join(out) + "\n"


def run(n_sources: int = 500, som_side: int = 6, seed: int = 0, image_size: int = 40, crop: int = 120,
        numrot: int = 36, epochs=(2, 2, 2), radius: float = 1.5, method: str = "consensus", breakdown: bool = False,
        cache: str | None = None, **method_kw) -> dict:
    t0 = time.perf_counter()
    ctx = prepare(n_sources, som_side, seed, image_size, crop, numrot, epochs, cache)
    out = {"n_sources": int(n_sources), "n_components": int(len(ctx["cat"])), "n_sidelobes": int(ctx["side"].sum()),
           "som": ctx["som"], "image_size": image_size, "numrot": numrot, "pixel_scale_arcsec": ctx["scale"],
           "seed": seed, "method": method}
    for setting, subjects in (("all", None), ("held-out", ctx["half"])):
        t2 = time.perf_counter()
        graph, groups, ann, fs, secs = collate_setting(ctx, subjects, method, radius, **method_kw)
        res, rows = score(ctx, subjects, graph, groups, ann, fs, breakdown)
        res["grouping_s"] = secs
        res["seconds"] = time.perf_counter() - t2
        out[setting] = res
        if breakdown:
            out[setting]["failures"] = rows
    out["timing"] = ctx["timing"]
    out["total_s"] = time.perf_counter() - t0
    return out


def _markdown(r: dict) -> str:
    lines = [
        "",
        "## Collation on the synthetic sky (benchmarks/bench_collation.py)",
        "",
        f"{r['n_sources']} sources, {r['n_components']} catalogued components ({r['n_sidelobes']} sidelobes); "
        f"radio + IR cutouts {r['image_size']} px ({r['pixel_scale_arcsec']:.2f}\"/px); SOM {r['som']}, "
        f"numrot {r['numrot']} + flip; neurons annotated from the truth through the annotation API; "
        f"LINK / ISOLATE / DATA_ATTACH, method {r['method']}. Machine: "
        f"{platform.machine()}, {platform.system()}; total {r['total_s']:.0f} s.",
        "",
        "| annotation | sources scored | exact grouping | exact (>= 2 comp.) | exact (single) | baseline (all alone) "
        "| sidelobes alone | host exact | host among candidates |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in ("all", "held-out"):
        x = r[s]
        lines.append(f"| {s} | {x['sources_evaluated']} | {x['exact_grouping']:.3f} | "
                     f"{x['exact_grouping_multi']:.3f} ({x['multi_component_sources']}) | "
                     f"{x['exact_grouping_single']:.3f} | "
                     f"{x['baseline_all_alone']:.3f} | {x['sidelobes_alone']:.3f} | {x['host_exact']:.3f} "
                     f"({x['host_sources']}) | {x['host_among']:.3f} |")
    return "\n".join(lines) + "\n"


_KEYS = ("exact_grouping_multi", "exact_grouping_single", "exact_grouping", "sidelobes_alone", "host_exact",
         "grouping_s")


def _seeds_markdown(runs: list[dict]) -> str:
    r0 = runs[0]
    lines = [f"method {r0['method']}, {r0['n_sources']} sources, SOM {r0['som']}, seeds "
             f"{', '.join(str(r['seed']) for r in runs)}", "",
             "| annotation | " + " | ".join(_KEYS) + " |", "|---|" + "---|" * len(_KEYS)]
    for s in ("all", "held-out"):
        cells = []
        for k in _KEYS:
            v = np.array([r[s][k] for r in runs])
            cells.append(f"{v.mean():.3f} [{v.min():.3f}, {v.max():.3f}]")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| seed | " + " | ".join(f"{s} multi" for s in ("all", "held-out")) + " | all single | held-out "
                 "single | held-out multi count |")
    lines.append("|---|---|---|---|---|---|")
    for r in runs:
        lines.append(f"| {r['seed']} | {r['all']['exact_grouping_multi']:.3f} | "
                     f"{r['held-out']['exact_grouping_multi']:.3f} | {r['all']['exact_grouping_single']:.3f} | "
                     f"{r['held-out']['exact_grouping_single']:.3f} | {r['held-out']['multi_component_sources']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import json

    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-sources", type=int, default=500)
    p.add_argument("--som", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="*", help="several seeds: mean [min, max] of every score")
    p.add_argument("--method", default="consensus", help="grouping method (somtorch.collation.group_sources)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option (repeatable; value parsed as JSON if it can be)")
    p.add_argument("--breakdown", action="store_true", help="failure study: rows and tables")
    p.add_argument("--cache", default=None, help="folder caching sky/SOM/mapping per seed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    kw = {}
    for o in a.option:
        k, _, v = o.partition("=")
        try:
            kw[k] = json.loads(v)
        except json.JSONDecodeError:
            kw[k] = v
    seeds = a.seeds or [a.seed]
    runs = [run(n_sources=a.n_sources, som_side=a.som, seed=s, method=a.method, breakdown=a.breakdown,
                cache=a.cache, **kw) for s in seeds]
    if len(runs) == 1:
        r = {k: ({kk: vv for kk, vv in v.items() if kk != "failures"} if isinstance(v, dict) else v)
             for k, v in runs[0].items()}
        print(json.dumps(r, indent=1))
        md = _markdown(runs[0])
    else:
        md = _seeds_markdown(runs)
    print(md)
    if a.breakdown:
        for s in ("all", "held-out"):
            rows = [dict(x, seed=r["seed"]) for r in runs for x in r[s]["failures"]]
            print(f"\n### Failure study, annotation '{s}' ({len(rows)} wrongly grouped sources)\n")
            print(breakdown_tables(rows))
            if len(runs) == 1:
                import pandas as pd
                if rows:
                    print(pd.DataFrame(rows).sort_values(["n_comp", "sep_arcsec"]).to_string(
                        float_format=lambda x: f"{x:.2f}"))
    if a.record:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        with open(path, "a") as fh:
            fh.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
