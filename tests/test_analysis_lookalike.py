"""Look-alike search with template SOMs (cookbook §5.5)."""

import numpy as np
import pytest
import torch

from somtorch.analysis.lookalike import find_lookalikes, template_neurons, write_template_som
from somtorch.errors import ShapeError
from somtorch.io import SOM

torch.set_num_threads(1)


def test_rotated_and_mirrored_copies_are_found_first(tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:16, 0:16]
    tmpl = (np.exp(-((y - 5) ** 2 + (x - 9) ** 2) / 4.0) + 0.6 * np.exp(-((y - 10) ** 2 + (x - 6) ** 2) / 3.0))
    tmpl = tmpl.astype(np.float32)
    others = rng.random((6, 1, 16, 16)).astype(np.float32) * 0.5
    rot = np.rot90(tmpl, -1).copy()           # clockwise quarter turn
    mir = np.flipud(tmpl).copy()
    imgs = np.concatenate([others[:3], rot[None, None], others[3:], mir[None, None]])
    df = find_lookalikes(tmpl, torch.from_numpy(imgs), numrot=4)
    assert df["image"].tolist()[:2] in ([3, 7], [7, 3])
    # ~0 up to the GEMM path's float32 cancellation (sqrt of ~1e-6)
    assert df["distance"].iloc[:2].max() < 1e-2 and df["distance"].iloc[2] > 0.5
    r = df.set_index("image")
    # rot = rotate_cw(tmpl, 90) -> rotating rot by 270 deg clockwise gives the template back
    assert r.loc[3, "flip"] == 0 and r.loc[3, "angle"] == pytest.approx(3 * np.pi / 2, abs=1e-5)
    assert r.loc[7, "flip"] == 1 and r.loc[7, "angle"] == pytest.approx(0.0)
    assert len(find_lookalikes(tmpl, torch.from_numpy(imgs), numrot=4, top=3)) == 3
    # two templates: each image reports its closer one
    df2 = find_lookalikes(np.stack([tmpl[None], others[0]]), torch.from_numpy(imgs), numrot=4)
    assert df2.set_index("image").loc[0, "template"] == 1


def test_template_som_file(tmp_path):
    t = np.ones((5, 5), np.float32)
    n = template_neurons(t, numrot=4)
    assert n.shape == (2, 1, 7, 7) and n[1].sum() == 0 and n[0].sum() == 25  # native: 5 px -> 7
    p = tmp_path / "tmpl.som"
    write_template_som(p, t, numrot=4)
    s = SOM(p)
    assert s.num_neurons == 2 and s.header.som_dims == (2,)
    np.testing.assert_array_equal(s.weights.numpy(), n)
    with pytest.raises(ShapeError):
        template_neurons(np.zeros((2, 3, 4, 5)))
