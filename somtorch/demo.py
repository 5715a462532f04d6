"""The end-to-end demo: the cookbook's VLASS sidelobe workflow (§8) on the built-in synthetic sky.

``python -m somtorch.demo`` (what ``make demo`` runs) does, with no download:

1. **Sky.** Generate a deterministic VLASS-QuickLook-like sky (:mod:`somtorch.datasets`) and
   write its component catalogue (``catalogue.csv``; the hidden truth goes to ``truth.csv``).
2. **Selection.** Components with ``Peak_to_ring < 3`` and ``S_Code != 'E'`` are the ones the
   sidelobe SOM is about (cookbook §8: sidelobes have low peak-to-ring ratios); only they are
   imaged, trained on and mapped. The others keep ``P_sidelobe = -1`` in the final catalogue.
3. **Preprocessing.** 150×150 FITS cutouts (0.6″ pixels, WCS and beam keywords) centred on
   each component go through a :func:`somtorch.data.run_preprocessing` run with the cookbook
   recipe (noise rms, drop pixels below 2σ, log10, min-max), a central crop and area
   resampling to ``image_size`` pixels; it writes a PINK image binary with a JSON records
   sidecar linking each image to its ``Component_name`` (entries that fail are skipped and
   reported, and keep nulls in the final catalogue).
4. **Training** through the Hydra entry point, ``python -m somtorch.train`` with a fast
   multi-stage schedule (``somtorch/configs/schedule/demo_sidelobe.yaml``: broad neighbourhood and few
   rotations first, then narrower and more rotations), on a 10×10 SOM.
5. **Mapping** with ``python -m somtorch.map`` (mapping + transform files, best-match table).
6. **Knowledge transfer** (cookbook §6.2): a random labelled subset (``label_fraction`` of the
   imaged components, with their true ``Is_sidelobe``) gives per-neuron sidelobe counts;
   ``P_sidelobe`` of a neuron is the fraction of its labelled matches that are sidelobes
   (``-1`` for neurons with fewer than ``min_labelled`` labelled matches).
7. **Catalogue.** Left join on ``Component_name`` of ``Best_neuron``, ``Best_neuron_y/x``,
   ``Neuron_dist`` and ``P_sidelobe`` onto the original catalogue (CSV and FITS table).
8. **Plots** (SOM mosaic, best-match counts, label fractions per neuron, training curves,
   images matched to the most and least sidelobe-like neurons, in their neuron's frame) and a **quality report** against the
   hidden truth (``report.json``): neuron purity by morphology and by sidelobe/real, and
   sidelobe precision / recall / ROC AUC on the held-out (unlabelled) components.

Everything lands in a new folder ``demo_output/run-<timestamp>/`` (never overwriting an
earlier run); the last lines printed say where. Same seed, same machine: same results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["run_demo", "sidelobe_report", "roc_auc", "main"]

TRUTH_COLUMNS = ("Component_id", "Source_id", "Parent_source_id", "Morph_class", "Role",
                 "Is_sidelobe", "True_peak_flux", "True_total_flux")


def _say(msg: str) -> None:
    print(msg, flush=True)


def roc_auc(score, truth) -> float:
    """Area under the ROC curve (Mann–Whitney U with average ranks for ties); NaN if one class is empty."""
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    n1, n0 = int(t.sum()), int((~t).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = pd.Series(s).rank(method="average").to_numpy()
    return float((r[t].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def sidelobe_report(bmu, morph, is_sidelobe, p_sidelobe, heldout, num_neurons: int,
                   threshold: float = 0.5) -> dict:
    """Quality of a SOM-based sidelobe classification against the truth.

    Parameters
    ----------
    bmu : ``(n,)`` best-matching neuron of each mapped component.
    morph : ``(n,)`` true morphology class; ``is_sidelobe`` ``(n,)`` bool truth.
    p_sidelobe : ``(n,)`` per-component P_sidelobe (its neuron's value; negative = undefined).
    heldout : ``(n,)`` bool, components not used for the knowledge transfer.

    Returns a dict with ``purity_morphology`` / ``purity_sidelobe`` (count-weighted mean over
    neurons of the majority-class fraction of *all* mapped components), ``coverage`` (held-out
    components whose neuron has a defined P_sidelobe), and on those: ``precision``, ``recall``
    (P_sidelobe >= threshold predicts a sidelobe), ``roc_auc`` and the base rate.
    """
    from somtorch.analysis import neuron_purity

    bmu = np.asarray(bmu, dtype=np.int64)
    morph = np.asarray(morph, dtype=object)
    sl = np.asarray(is_sidelobe, dtype=bool)
    p = np.asarray(p_sidelobe, dtype=np.float64)
    held = np.asarray(heldout, dtype=bool)

    ok = held & (p >= 0)
    pred = p[ok] >= threshold
    truth = sl[ok]
    tp = int((pred & truth).sum())
    out = {
        "n_mapped": int(len(bmu)), "n_neurons": int(num_neurons),
        "n_neurons_used": int(len(np.unique(bmu))),
        "purity_morphology": neuron_purity(bmu, morph), "purity_sidelobe": neuron_purity(bmu, sl),
        "n_heldout": int(held.sum()), "coverage": float(ok.sum() / max(held.sum(), 1)),
        "threshold": float(threshold),
        "sidelobe_base_rate": float(truth.mean()) if truth.size else float("nan"),
        "precision": float(tp / pred.sum()) if pred.sum() else float("nan"),
        "recall": float(tp / truth.sum()) if truth.sum() else float("nan"),
        "roc_auc": roc_auc(p[ok], truth),
    }
    return out


def _run(cmd: list[str], log_path: Path) -> None:
    """Run a CLI step, teeing its output to a log; a failure stops the demo with the log's tail."""
    env = dict(os.environ)
    env.setdefault("HYDRA_FULL_ERROR", "1")
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = "".join(open(log_path).readlines()[-25:])
        raise RuntimeError(f"step failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"--- last lines of {log_path} ---\n{tail}")


def _write_table(df: pd.DataFrame, path: Path) -> None:
    """CSV or FITS table (by suffix), atomically; object columns become strings in FITS."""
    from somtorch.io import atomic_output

    if path.suffix == ".csv":
        with atomic_output(path, mode="w") as f:
            df.to_csv(f, index=False)
        return
    from astropy.table import Table

    t = df.copy()
    for c in t.columns:
        if t[c].dtype == object:
            t[c] = t[c].astype(str)
    with atomic_output(path) as f:
        Table.from_pandas(t).write(f, format="fits")


def run_demo(out_dir=None, n_sources: int = 2400, seed: int = 0, image_size: int = 40,
             crop: int = 120, label_fraction: float = 0.3, min_labelled: int = 2,
             schedule: str = "demo_sidelobe", extra_train_overrides=()) -> dict:
    """Run the whole demo (see the module docstring); returns the quality report dict."""
    from somtorch.analysis import catalogue_columns, merge_catalogue, transfer_labels
    from somtorch.cli.common import read_json
    from somtorch.data import PreprocessConfig, run_preprocessing
    from somtorch.datasets import SkyConfig, generate_sky, write_fits_cutouts
    from somtorch.geometry import Lattice
    from somtorch.io import read_mapping, read_records, read_som
    from somtorch.plotting import plot_bmu_counts

    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir else Path("demo_output") / time.strftime("run-%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        from somtorch.errors import OutputExistsError

        raise OutputExistsError(f"{out}: exists and is not empty; choose another --out")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _say(f"somtorch demo -> {out}")

    # 1. sky + catalogue
    _say(f"[1/7] generating the synthetic sky ({n_sources} sources, seed {seed})")
    sky = generate_sky(SkyConfig(n_sources=n_sources, seed=seed))
    full = sky.catalogue.reset_index(drop=True)
    public = full.drop(columns=[c for c in TRUTH_COLUMNS if c in full.columns])
    _write_table(public, out / "catalogue.csv")
    _write_table(full[["Component_name", *[c for c in TRUTH_COLUMNS if c in full.columns]]],
                 out / "truth.csv")
    applicable = (full.Peak_to_ring < 3.0) & (full.S_Code != "E")
    sel = np.flatnonzero(applicable.to_numpy())
    _say(f"      {len(full)} catalogued components; {len(sel)} with Peak_to_ring < 3 "
         f"({full.Is_sidelobe.to_numpy()[sel].mean():.0%} of them sidelobes)")

    # 2-3. FITS cutouts, preprocessing run -> image binary + records
    _say(f"[2/7] writing {len(sel)} FITS cutouts and preprocessing them (cookbook recipe, crop {crop}, "
         f"{image_size}x{image_size})")
    write_fits_cutouts(sky, out / "cutouts", indices=sel, catalogue_name="selected.csv")
    img_path = out / "images.bin"
    recipe = [{"name": "rms", "mode": "mad", "clip_rounds": 2, "ignore_zeros": True},
              {"name": "snr_clip", "snr": 2.0, "mode": "drop"}, "log", "minmax",
              {"name": "crop", "size": int(crop)}, {"name": "resize", "size": int(image_size)}, "minmax"]
    prep = run_preprocessing(PreprocessConfig(
        catalogue=str(out / "cutouts" / "selected.csv"), output=str(img_path),
        id_column="Component_name", recipe=recipe, workers=1, progress=False,
        comment="somtorch demo: synthetic VLASS sidelobe candidates"))
    _say(f"      written {prep['written']}, skipped {prep['skipped']} "
         f"{prep['skipped_by_reason'] or ''}")
    recs = read_records(img_path)
    names = np.asarray([r["Component_name"] for r in recs], dtype=object)
    row_of = pd.Series(np.arange(len(full)), index=full.Component_name.to_numpy())
    sel = row_of.loc[names].to_numpy()  # catalogue rows of the written images, in image order

    # 4. training through Hydra
    _say(f"[3/7] training: python -m somtorch.train schedule={schedule} (log: train.log)")
    train_dir = out / "train"
    _run([sys.executable, "-m", "somtorch.train", "data=file", f"data.path={img_path}",
          f"schedule={schedule}", f"som.seed={seed + 1234}", "metrics_sample=128",
          # one thread: online training is a chain of small steps that a second, descheduled
          # thread only stalls on a busy 2-core machine (benchmarks/RESULTS.md)
          "runtime.threads=1", f"hydra.run.dir={train_dir}",
          *extra_train_overrides], out / "train.log")
    summary = read_json(train_dir / "summary.json")

    # 5. mapping through Hydra
    _say("[4/7] mapping: python -m somtorch.map (log: map.log)")
    map_dir = out / "map"
    _run([sys.executable, "-m", "somtorch.map", f"run_dir={train_dir}", "data=file",
          f"data.path={img_path}", f"hydra.run.dir={map_dir}"], out / "map.log")
    dist, _ = read_mapping(map_dir / "mapping.bin")
    dist = dist.numpy()
    bmu = dist.argmin(axis=1)
    ndist = dist[np.arange(len(bmu)), bmu]
    weights, som_header = read_som(summary["final_som"])
    som_cfg = read_json(Path(summary["final_som"]).with_name("som_config.json"))
    lc = som_cfg["lattice"]
    lat = Lattice(lc.get("layout", "cartesian"), tuple(lc["shape"]), periodic=bool(lc.get("periodic", False)))

    # 6. knowledge transfer from a labelled subset
    _say(f"[5/7] knowledge transfer from a labelled {label_fraction:.0%} subset")
    rng = np.random.default_rng(seed + 7)
    labelled = rng.random(len(sel)) < label_fraction
    truth_sl = full.Is_sidelobe.to_numpy()[sel].astype(bool)
    kt = transfer_labels(bmu[labelled], np.where(truth_sl[labelled], "sidelobe", "real"),
                         lat.num_neurons, coords=lat.coords.numpy(), classes=["real", "sidelobe"],
                         min_count=min_labelled)
    p_neuron = kt.probability("sidelobe").to_numpy()
    p_neuron = np.where(kt.totals.to_numpy() >= min_labelled, p_neuron, np.nan)
    from somtorch.io import atomic_output

    with atomic_output(out / "neuron_labels.csv", mode="w") as f:
        kt.table().to_csv(f)

    # 7. final catalogue
    _say("[6/7] writing the final catalogue (left join on Component_name)")
    cols = catalogue_columns(bmu, ndist, lat.coords.numpy(), layout=lat.layout,
                             neuron_values={"P_sidelobe": p_neuron})
    cols.insert(0, "Component_name", full.Component_name.to_numpy()[sel])
    final = merge_catalogue(public, cols, key="Component_name")
    final["P_sidelobe"] = final["P_sidelobe"].fillna(-1.0)  # not applicable: -1 (cookbook §8.2)
    _write_table(final, out / "catalogue_final.csv")
    _write_table(final, out / "catalogue_final.fits")

    # plots
    _say("[7/7] plots and quality report")
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    from somtorch.io import ImageReader, Mapping, Transform
    from somtorch.plotting import (
        plot_label_fractions,
        plot_neuron_matches,
        plot_som_mosaic,
        plot_training_curves,
    )

    plot_som_mosaic(weights, lat, path=plots / "som_mosaic.png", cmap="inferno",
                    counts=np.bincount(bmu, minlength=lat.num_neurons), title="final SOM")
    plot_bmu_counts(np.bincount(bmu, minlength=lat.num_neurons), lat, path=plots / "bmu_counts.png")
    plot_label_fractions(kt, lat, path=plots / "label_fractions.png",
                         title="label fractions per neuron (labelled subset)")
    hist = []
    for st in summary.get("stages", []):
        mp = Path(st.get("files", {}).get("metrics_csv", "") or "")
        if mp.is_file():
            df = pd.read_csv(mp)
            df["stage"] = st["name"]
            hist.append(df)
    if hist:
        plot_training_curves(pd.concat(hist, ignore_index=True), path=plots / "training_curves.png")
    counts = np.bincount(bmu, minlength=lat.num_neurons)
    order = np.argsort(np.nan_to_num(p_neuron, nan=-1.0), kind="stable")
    usable = [n for n in order if counts[n] >= 4 and np.isfinite(p_neuron[n])]
    mapping, transform = Mapping(map_dir / "mapping.bin"), Transform(map_dir / "transform.bin")
    reader = ImageReader(img_path)
    for tag, n in (("sidelobe_like", usable[-1] if usable else None),
                   ("real_like", usable[0] if usable else None)):
        if n is None:
            continue
        key = tuple(int(v) for v in lat.coords[n].tolist())
        plot_neuron_matches(reader, mapping, int(n), transform=transform, n=16, ncols=8,
                            numrot=int(som_cfg["geometry"]["numrot"]),
                            title=f"neuron {key}: P_sidelobe = {p_neuron[n]:.2f} ({counts[n]} matches)",
                            path=plots / f"neuron_matches_{tag}.png")
    report = sidelobe_report(bmu, full.Morph_class.to_numpy()[sel], truth_sl,
                            np.nan_to_num(p_neuron[bmu], nan=-1.0), ~labelled, lat.num_neurons)
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    report["final_som"] = summary["final_som"]
    report["train_final_metrics"] = summary.get("final_metrics")
    with atomic_output(out / "report.json", mode="w") as f:
        json.dump(report, f, indent=2, default=float)

    _say("")
    _say("quality report (against the hidden truth):")
    _say(f"  mapped components         {report['n_mapped']} on {report['n_neurons_used']}/"
         f"{report['n_neurons']} neurons")
    _say(f"  neuron purity (morphology) {report['purity_morphology']:.3f}")
    _say(f"  neuron purity (sidelobe)   {report['purity_sidelobe']:.3f}")
    _say(f"  held-out coverage          {report['coverage']:.3f}  (base rate "
         f"{report['sidelobe_base_rate']:.3f})")
    _say(f"  sidelobe precision @0.5    {report['precision']:.3f}")
    _say(f"  sidelobe recall @0.5       {report['recall']:.3f}")
    _say(f"  sidelobe ROC AUC           {report['roc_auc']:.3f}")
    _say("")
    _say(f"outputs in {out}:")
    for name in ("catalogue.csv", "truth.csv", "images.bin", "train/", "map/", "neuron_labels.csv",
                 "catalogue_final.csv", "catalogue_final.fits", "plots/", "report.json"):
        _say(f"  {name}")
    _say(f"done in {report['elapsed_s']:.0f} s")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m somtorch.demo", description=__doc__.splitlines()[0],
                                 epilog="Components with Peak_to_ring >= 3 or S_Code E get P_sidelobe = -1; a neuron "
                                        "needs >= 2 labelled matches for a P_sidelobe. Outputs go to a new folder; "
                                        "an existing non-empty --out is refused.")
    ap.add_argument("--out", default=None, help="output folder (default demo_output/run-<timestamp>)")
    ap.add_argument("--n-sources", type=int, default=2400, help="sources in the synthetic sky")
    ap.add_argument("--seed", type=int, default=0,
                    help="sky seed (the SOM seed is seed + 1234, the labelled subset seed + 7)")
    ap.add_argument("--image-size", type=int, default=40,
                    help="side of the training images in pixels, after cropping and area resampling")
    ap.add_argument("--crop", type=int, default=120,
                    help="central crop of the 150x150 cutouts, in 0.6-arcsec pixels, before resampling")
    ap.add_argument("--label-fraction", type=float, default=0.3,
                    help="fraction of the imaged components whose truth label is used for the "
                         "knowledge transfer; the rest is held out for the report")
    ap.add_argument("--schedule", default="demo_sidelobe", help="a schedule of somtorch/configs/schedule/ (or of --config-dir)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for somtorch.train")
    a = ap.parse_args(argv)
    try:
        run_demo(a.out, n_sources=a.n_sources, seed=a.seed, image_size=a.image_size, crop=a.crop,
                 label_fraction=a.label_fraction, schedule=a.schedule,
                 extra_train_overrides=a.overrides)
    except (RuntimeError, FileExistsError) as e:
        print(f"somtorch.demo: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
