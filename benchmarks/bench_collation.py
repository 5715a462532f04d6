"""Grouping components into sources on the built-in synthetic sky (radio + IR), end to end.

Pipeline: synthetic sky with multi-component sources, sidelobes and IR hosts -> two-channel
cutouts (radio, IR) preprocessed as in the demo -> rotation/flip-invariant SOM trained with the
engine -> mapping (best neuron and transform per component) -> neurons annotated
*programmatically from the truth* through the annotation API (:func:`annotate_from_truth`:
``link`` where components of the subject's own source land, ``sidelobe`` where artefacts land,
``host`` where the IR host lands) -> :class:`FilterSet` -> greedy grouping (LINK / ISOLATE /
DATA_ATTACH) -> source catalogue.

Scores:

* *exact grouping*: fraction of real sources whose set of catalogued components is exactly one
  group (all sources, and sources with >= 2 catalogued components);
* *sidelobes alone*: fraction of sidelobe artefacts left in a group of their own;
* *host accuracy*: among exactly grouped sources that have an IR host, the fraction whose group
  has exactly that host as its only candidate (and: the host is among the candidates).

Two annotation settings: ``all`` (every component's view votes: an upper bound, the masks have
seen the evaluated components), and ``held-out`` (only a random half of the components vote;
scores are over sources whose components all lie in the other half). A baseline leaves every
component alone (exact grouping = fraction of single-component sources).

Usage::

    python benchmarks/bench_collation.py [--n-sources 500] [--som 6] [--seed 0] [--record]
"""

from __future__ import annotations

import argparse
import platform
import time


def run(n_sources: int = 500, som_side: int = 6, seed: int = 0, image_size: int = 40, crop: int = 120,
        numrot: int = 36, epochs=(2, 2, 2), radius: float = 1.5) -> dict:
    import astropy.units as u
    import numpy as np
    import torch
    from astropy.coordinates import SkyCoord

    from somtorch.collation import (
        Action,
        FilterSet,
        Grouper,
        LabelResolve,
        Sorter,
        annotate_from_truth,
    )
    from somtorch.datasets import SkyConfig, generate_sky, preprocess_cutouts, render_cutouts
    from somtorch.engine import Mapper, Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
    from somtorch.geometry import Lattice

    t0 = time.perf_counter()
    timing = {}
    sky = generate_sky(SkyConfig(n_sources=n_sources, seed=seed, with_ir=True))
    cat = sky.catalogue.reset_index(drop=True)
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
    timing["train_map_s"] = time.perf_counter() - t1

    # truth
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
    weights = som.weight.detach().cpu().numpy().reshape(som.num_neurons, *geom.neuron_shape)
    resolve = LabelResolve({"link": Action.LINK, "sidelobe": Action.ISOLATE, "host": Action.DATA_ATTACH})

    rng = np.random.default_rng(seed + 11)
    half = rng.random(len(cat)) < 0.5
    out = {"n_sources": int(n_sources), "n_components": int(len(cat)), "n_sidelobes": int(side.sum()),
           "som": f"{som_side}x{som_side}", "image_size": image_size, "numrot": numrot,
           "pixel_scale_arcsec": scale}
    true_groups = {}
    for j in np.flatnonzero(~side):
        true_groups.setdefault(sid[j], set()).add(int(j))
    for setting, subjects in (("all", None), ("held-out", half)):
        t2 = time.perf_counter()
        ann = annotate_from_truth(weights, base, sid, sidelobe=side, hosts=hosts, host_of=host_of,
                                  radius=radius, subjects=subjects, **common)
        fs = FilterSet(base, (None, hosts), ann, distance=dist, **common)
        grp = Grouper(fs, ann, resolve, Sorter(fs, mode="largest_first"))
        groups = grp.groups()
        member = {}
        for gi, g in enumerate(groups):
            for n in g:
                if isinstance(n, int):
                    member[n] = gi
        cat_out = grp.collate(flux=cat.Total_flux.to_numpy(), host_labels=["host"])
        by_first = {int(r.Components.split(";")[0]): r for r in cat_out.itertuples()}
        eval_src = [s for s, comps in true_groups.items()
                    if subjects is None or not subjects[list(comps)].any()]
        exact, exact_multi, n_multi, host_ok, host_in, n_host = 0, 0, 0, 0, 0, 0
        for s in eval_src:
            comps = true_groups[s]
            g = {n for n in groups[member[next(iter(comps))]] if isinstance(n, int)}
            ok = g == comps
            exact += ok
            if len(comps) > 1:
                n_multi += 1
                exact_multi += ok
            if ok and s in host_index:
                n_host += 1
                row = by_first[min(comps)]
                cands = [h for h in row.Host_candidates.split(";") if h]
                want = f"1:{host_index[s]}"
                host_ok += cands == [want]
                host_in += want in cands
        sl = np.flatnonzero(side if subjects is None else side & ~subjects)
        alone = np.mean([len({n for n in groups[member[int(j)]] if isinstance(n, int)}) == 1 for j in sl])
        single_frac = np.mean([len(true_groups[s]) == 1 for s in eval_src])
        out[setting] = {
            "sources_evaluated": len(eval_src), "multi_component_sources": n_multi,
            "exact_grouping": exact / len(eval_src), "exact_grouping_multi": exact_multi / max(n_multi, 1),
            "baseline_all_alone": float(single_frac), "sidelobes_alone": float(alone),
            "host_sources": n_host, "host_exact": host_ok / max(n_host, 1), "host_among": host_in / max(n_host, 1),
            "annotated_neurons": len(ann.annotated()), "seconds": time.perf_counter() - t2,
        }
    out["timing"] = timing
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
        "LINK / ISOLATE / DATA_ATTACH, largest_first. Machine: "
        f"{platform.machine()}, {platform.system()}; total {r['total_s']:.0f} s.",
        "",
        "| annotation | sources scored | exact grouping | exact (>= 2 comp.) | baseline (all alone) "
        "| sidelobes alone | host exact | host among candidates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in ("all", "held-out"):
        x = r[s]
        lines.append(f"| {s} | {x['sources_evaluated']} | {x['exact_grouping']:.3f} | "
                     f"{x['exact_grouping_multi']:.3f} ({x['multi_component_sources']}) | "
                     f"{x['baseline_all_alone']:.3f} | {x['sidelobes_alone']:.3f} | {x['host_exact']:.3f} "
                     f"({x['host_sources']}) | {x['host_among']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import json

    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-sources", type=int, default=500)
    p.add_argument("--som", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    r = run(n_sources=a.n_sources, som_side=a.som, seed=a.seed)
    print(json.dumps(r, indent=1))
    md = _markdown(r)
    print(md)
    if a.record:
        import os
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        with open(path, "a") as fh:
            fh.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
