"""Measure how far somtorch's native defaults are from PYINK's numbers (``somtorch.pyink``).

Run ``python -m somtorch.pyink.differences [n] [seed]``: it renders ``n`` synthetic 150x150
radio cutouts (:func:`somtorch.datasets.images.render_sample`, VLASS-like, Jy/beam) and ``n``
pure-noise images, applies each PYINK function and its native counterpart, and prints one line
per difference. The README's "Coming from PYINK" table and the docstrings quote its output.
"""

from __future__ import annotations

import sys

import numpy as np


def _islands_image(data, noise, islands):
    img = np.zeros(data.shape, np.float32)
    for m in islands:
        v = np.log10(np.clip(data[m], 1e-30, None))
        img[m] = (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else 1.0
    return img


def measure(n: int = 200, seed: int = 0) -> dict:
    """Differences between native defaults and PYINK's numbers, as a dict of summary numbers."""
    from somtorch import preprocessing as native
    from somtorch.analysis import frames
    from somtorch.datasets.images import render_sample
    from somtorch.pyink import preprocessing as pyink
    from somtorch.pyink.utils import pink_spatial_transform

    cube, _ = render_sample(n, seed, 150)
    rng = np.random.default_rng(seed)
    out: dict = {}
    r_src = [native.rms_estimate(c[c != 0]) / pyink.rms_estimate(c[c != 0]) - 1 for c in cube]
    noise = rng.normal(0.0, 1.0, (n, 150, 150))
    nat_noise = np.array([native.rms_estimate(x) for x in noise])
    pk_noise = np.array([pyink.rms_estimate(x) for x in noise])
    out["rms_source_median_pct"] = 100 * float(np.median(r_src))
    out["rms_noise_median_pct"] = 100 * float(np.median(nat_noise / pk_noise - 1))
    out["rms_noise_bias_native_pct"] = 100 * float(np.median(nat_noise) - 1)
    out["rms_noise_bias_pyink_pct"] = 100 * float(np.median(pk_noise) - 1)
    out["rms_within_1e-3"] = int(np.sum(np.abs(np.asarray(r_src)) < 1e-3))

    isl_diff = border = size = 0
    hull_px, smooth_px, tf_rel = [], [], []
    for k, c in enumerate(cube):
        sig = pyink.rms_estimate(c[c != 0])
        t = 3 * sig
        p = list(pyink.island_segmentation(c, t))
        q = native.island_segmentation(c, t)
        key = lambda ms: sorted(tuple(np.flatnonzero(m)) for m in ms)  # noqa: E731
        if key(p) != key(q):
            isl_diff += 1
            if key(native.island_segmentation(c, t, border="reflect")) != key(q):
                border += 1
            if key(native.island_segmentation(c, t, strict_size=True)) != key(q):
                size += 1
        img = _islands_image(c, sig, p)
        if img.any():
            hull_px.append(int(pyink.convex_hull(img).sum()) - int(native.convex_hull(img).sum()))
            smooth_px.append(int(pyink.convex_hull_smoothed(img, 2.0, 0.3).sum())
                             - int(native.convex_hull_smoothed(img, 2.0, threshold=0.3).sum()))
        flip, angle = int(k % 2), float(np.deg2rad(rng.integers(1, 360)))
        x = c.astype(np.float32)
        cub = pink_spatial_transform(x, (flip, angle))
        bil = frames.pink_spatial_transform(x, (flip, np.float32(angle)), numrot=None)
        tf_rel.append(float(np.abs(cub - bil).max() / max(np.abs(x).max(), 1e-30)))
    out["islands_cutouts_differing"] = isl_diff
    out["islands_by_border"] = border
    out["islands_by_size_rule"] = size
    out["hull_extra_px_median"] = float(np.median(hull_px)) if hull_px else 0.0
    out["hull_smoothed_t0.3_px_median"] = float(np.median(smooth_px)) if smooth_px else 0.0
    out["transform_max_rel_median_pct"] = 100 * float(np.median(tf_rel))
    out["transform_max_rel_max_pct"] = 100 * float(np.max(tf_rel))
    out["trim_213"] = (frames.default_trim_side(213), int(np.floor(213 / np.sqrt(2))))
    out["n"] = n
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else 200
    seed = int(argv[1]) if len(argv) > 1 else 0
    for k, v in measure(n, seed).items():
        print(f"{k:34s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
