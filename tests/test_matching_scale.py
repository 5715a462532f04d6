"""Scale-invariant matching (:mod:`somtorch.engine.scale`) and frames with a zoom factor.

The sources are rendered analytically (sums of elliptical Gaussians: a radio double, a triple and
an extended "galaxy"), so a copy ``s`` times smaller is an independent rendering, not the zoom
function under test. A rescaled copy must map to its own neuron with the right factor, with exact
and approximate matching; the factor goes to a ``.npy`` sidecar while the PINK files stay PINK's.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from somtorch.analysis.frames import (
    image_to_neuron_coords,
    neuron_to_image_coords,
    pink_spatial_transform,
)
from somtorch.engine import (
    ApproxMapper,
    Mapper,
    RotationInvariantSOM,
    ScaleMapper,
    SOMGeometry,
    scale_factors,
    zoom_images,
)
from somtorch.engine.scale import check_scales, read_scales, scale_sidecar_path
from somtorch.errors import ConfigError
from somtorch.geometry import Lattice
from somtorch.io import read_transforms, write_images
from somtorch.testing import run_module

# (row offset, col offset, sigma_major, sigma_minor, position angle rad, amplitude) in pixels
SOURCES = {
    "double": [(0.0, -7.0, 2.0, 1.3, 0.3, 1.0), (0.0, 8.0, 1.8, 1.5, 0.0, 0.7), (0.0, 0.0, 1.0, 1.0, 0.0, 0.3)],
    "triple": [(-6.0, -3.0, 1.5, 1.5, 0.0, 0.8), (5.0, 4.0, 2.5, 1.2, 0.8, 1.0), (0.0, 0.0, 1.2, 1.2, 0.0, 0.6)],
    "galaxy": [(0.0, 0.0, 5.0, 2.2, 1.1, 1.0), (1.0, 2.0, 1.2, 1.2, 0.0, 0.5)],
    "bent": [(-3.0, -6.0, 2.0, 1.0, -0.6, 0.9), (-3.0, 6.0, 2.0, 1.0, 0.6, 0.9), (2.0, 0.0, 1.3, 1.3, 0.0, 1.0)],
}


def render(name: str, side: int, size: float = 1.0, angle: float = 0.0) -> torch.Tensor:
    """``(1, side, side)`` rendering of a source with every length times ``size``, turned
    clockwise on screen by ``angle`` (radians) about the centre ``(side-1)/2``."""
    c = (side - 1) / 2.0
    r, q = np.meshgrid(np.arange(side) - c, np.arange(side) - c, indexing="ij")
    out = np.zeros((side, side))
    ca, sa = math.cos(angle), math.sin(angle)
    for dr, dc, smaj, smin, pa, amp in SOURCES[name]:
        # clockwise on screen (row axis down): (r, c) -> (r cos + c sin, -r sin + c cos)... rotate the centre
        rr, cc = size * (dr * ca + dc * sa), size * (-dr * sa + dc * ca)
        th = pa - angle
        u = (r - rr) * math.cos(th) + (q - cc) * math.sin(th)
        v = -(r - rr) * math.sin(th) + (q - cc) * math.cos(th)
        out += amp * np.exp(-0.5 * ((u / (size * smin)) ** 2 + (v / (size * smaj)) ** 2))
    return torch.from_numpy(out.astype(np.float32))[None]


@pytest.fixture(scope="module")
def som():
    geo = SOMGeometry(40, numrot=72)
    neurons = torch.stack([render(n, geo.nd) for n in SOURCES])
    return RotationInvariantSOM(Lattice("cartesian", (2, 2)), geo, init=neurons)


def test_scale_factors_and_checks():
    assert scale_factors() == (1.0, 0.894427, 1.118034, 0.8, 1.25)
    assert scale_factors(3, 1.5) == (1.0, 0.666667, 1.5)
    assert check_scales(None) is None and check_scales([1, 0.8]) == (1.0, 0.8)
    for bad in ([0.8, 0.8], [0.0], [float("nan")], [-1.0]):
        with pytest.raises(ConfigError):
            check_scales(bad)


def test_zoom_enlarges_about_the_centre():
    for name in ("galaxy", "double"):
        x = render(name, 41)[None]  # odd side: the centre is a pixel
        z = zoom_images(x, 1.25)
        err = {s: float((z - render(name, 41, size=s)[None]).abs().max()) for s in (1.25, 1.0, 0.8)}
        # the analytic rendering at 1.25x, to bilinear interpolation error (~5 % of the peak next to
        # the 1.2-pixel components); not the unzoomed or the shrunk source
        assert err[1.25] < 0.07 and err[1.0] > 0.3 and err[0.8] > 0.5
        assert torch.equal(zoom_images(x, 1.0), x)


@pytest.mark.parametrize("name,angle", [("double", 0.7), ("triple", 2.0), ("galaxy", 4.0), ("bent", 5.5)])
@pytest.mark.parametrize("true_scale", [1.25, 0.8])
def test_a_rescaled_copy_maps_to_its_neuron_with_the_right_scale(som, name, angle, true_scale):
    # the copy is 1/true_scale the size: zooming it by true_scale restores the neuron's pattern
    x = render(name, 40, size=1.0 / true_scale, angle=angle)[None]
    want = list(SOURCES).index(name)
    for mapper in (ScaleMapper(som), ApproxMapper(som, scales=scale_factors())):
        res = mapper.map(x)
        assert int(res.bmu[0]) == want
        assert float(res.scale[0, want]) == pytest.approx(true_scale)
    # without the search the best factor is not available, and the match is worse
    plain = Mapper(som).map(x)
    assert float(plain.distances[0, want]) > float(ScaleMapper(som).map(x).distances[0, want])


def test_scale_one_only_is_the_plain_mapping(som):
    x = torch.stack([render(n, 40, size=0.9, angle=1.0) for n in SOURCES])
    ref = Mapper(som).map(x)
    res = ScaleMapper(som, scales=[1.0]).map(x)
    torch.testing.assert_close(res.distances, ref.distances)
    assert torch.equal(res.transform_index, ref.transform_index) and bool((res.scale == 1.0).all())


def test_sidecar_beside_pink_files(som, tmp_path):
    x = torch.stack([render(n, 40, size=s, angle=a) for n, s, a in
                     (("double", 0.8, 0.3), ("triple", 1.2, 1.0), ("galaxy", 1.0, 2.0))])
    write_images(tmp_path / "x.bin", x)
    for cls in (ScaleMapper, ApproxMapper):
        m = cls(som, scales=scale_factors())
        res = m.map(tmp_path / "x.bin")
        info = m.map_to_files(tmp_path / "x.bin", tmp_path / f"{cls.__name__}.map", tmp_path / f"{cls.__name__}.rf")
        side = scale_sidecar_path(tmp_path / f"{cls.__name__}.rf")
        assert info["scale"] == str(side)
        np.testing.assert_array_equal(read_scales(side), res.scale.numpy())
        flip, angle, _ = read_transforms(tmp_path / f"{cls.__name__}.rf")  # still a PINK transform file
        assert torch.equal(torch.as_tensor(np.asarray(flip)).reshape(3, -1).long(), res.flip.long())
        assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(Exception, match="exists"):
        ScaleMapper(som).map_to_files(tmp_path / "x.bin", tmp_path / "o.map", tmp_path / "ScaleMapper.rf")


def test_frames_with_scale_follow_the_source(som):
    """A compact blob at image pixel p appears, after zoom + rotation, at the predicted neuron pixel."""
    d, nd = 40, som.geometry.nd
    p = np.array([12.0, 25.0])
    r, c = np.meshgrid(np.arange(d), np.arange(d), indexing="ij")
    img = np.exp(-((r - p[0]) ** 2 + (c - p[1]) ** 2) / (2 * 1.2 ** 2)).astype(np.float32)
    for scale, flip, deg in ((1.25, 0, 35), (0.8, 1, 200)):
        tf = (flip, np.float32(math.radians(deg)))
        out = pink_spatial_transform(img, tf, numrot=None, neuron_dim=nd, scale=scale)
        rr, cc = np.meshgrid(np.arange(nd), np.arange(nd), indexing="ij")
        w = np.clip(out, 0, None) ** 4
        centroid = np.array([(w * rr).sum(), (w * cc).sum()]) / w.sum()
        pred = image_to_neuron_coords(p, tf, d, nd, numrot=None, scale=scale)
        assert np.abs(centroid - pred).max() < 0.3
        back = neuron_to_image_coords(pred, tf, d, nd, numrot=None, scale=scale)
        np.testing.assert_allclose(back, p, atol=1e-9)
        # inverse transform puts the blob back where it was (zoom undone)
        inv = pink_spatial_transform(out, tf, reverse=True, numrot=None, image_dim=d, scale=scale)
        w = np.clip(inv, 0, None) ** 4
        np.testing.assert_allclose(np.array([(w * r).sum(), (w * c).sum()]) / w.sum(), p, atol=0.3)


def test_hydra_map_with_scales_writes_the_sidecar_and_bmu_column(som, tmp_path):
    import pandas as pd

    som.save_pink(tmp_path / "som.bin")
    (tmp_path / "som_config.json").write_text(json.dumps(som.config_dict()))
    x = torch.stack([render(n, 40, size=1 / 1.25, angle=0.5 + i) for i, n in enumerate(SOURCES)])
    write_images(tmp_path / "x.bin", x)
    out = tmp_path / "map"
    rc = run_module("map", [f"som={tmp_path / 'som.bin'}", "data=file", f"data.path={tmp_path / 'x.bin'}",
                      "runtime=cpu", "plots=false", "scales=[1.0,0.8,1.25]", f"hydra.run.dir={out}"])
    assert rc == 0
    bmu = pd.read_csv(out / "bmu.csv")
    assert bmu["bmu"].tolist() == [0, 1, 2, 3] and np.allclose(bmu["scale"], 1.25)
    assert read_scales(out / "transform.bin.scale.npy").shape == (4, 4)


def test_pink_scales_option(som, tmp_path):
    from somtorch.cli.pink_args import PinkError, parse_args

    assert parse_args(["--scales", "1,0.8,1.25"]).scales == [1.0, 0.8, 1.25]
    assert parse_args(["--fast"]).matching == "approximate"
    with pytest.raises(PinkError):
        parse_args(["--scales", "1,abc"])
