"""minmax, transfer functions, SNR clipping, island normalisation, channel weights, reweight."""

import json
import os
import struct

import numpy as np
import pytest
import torch

from somtorch.errors import ConfigError, NonFiniteError, OutputExistsError, ShapeError
from somtorch.preprocessing import (
    AsinhTransfer,
    ChannelWeighting,
    LogTransfer,
    MinMax,
    PowerTransfer,
    SNRClip,
    SqrtTransfer,
    apply_channel_weights,
    asinh_transfer,
    channel_weights,
    log_transfer,
    minmax,
    normalise_islands,
    power_transfer,
    reweight,
    snr_clip,
    snr_mask,
    sqrt_transfer,
)
from somtorch.testing import available_devices

# ----------------------------------------------------------------------------------------- minmax


def test_minmax_whole_array():
    x = np.array([[1.0, 3.0], [5.0, 9.0]])
    np.testing.assert_allclose(minmax(x), (x - 1) / 8)


def test_minmax_with_mask_scales_everything_with_the_masked_range():
    x = np.array([1.0, 2.0, 4.0, 10.0])
    m = np.array([False, True, True, False])
    np.testing.assert_allclose(minmax(x, m), (x - 2) / 2)  # PYINK: out-of-mask pixels scaled too
    np.testing.assert_allclose(minmax(x, m, fill=0.0), [0.0, 0.0, 1.0, 0.0])


def test_minmax_nan_aware():
    x = np.array([np.nan, 2.0, 4.0, np.inf, 3.0])
    out = minmax(x)
    assert np.isnan(out[0]) and np.isinf(out[3])
    np.testing.assert_allclose(out[[1, 2, 4]], [0.0, 1.0, 0.5])


def test_pyink_bug_minmax_constant_divides_by_zero():
    out = minmax(np.full((3, 3), 7.0))
    assert np.all(out == 0.0)


def test_pyink_bug_minmax_mask_only_has_to_broadcast():
    stack = np.arange(2 * 3 * 3, dtype=float).reshape(2, 3, 3)
    m = np.zeros((3, 3), bool)
    m[0, :2] = True
    out = minmax(stack, m, dim=(-2, -1), fill=-1.0)
    np.testing.assert_allclose(out[:, 0, :2], [[0.0, 1.0], [0.0, 1.0]])
    assert np.all(out[:, 1:] == -1)
    with pytest.raises(ShapeError):
        minmax(stack, np.ones((2, 2), bool))


def test_minmax_empty_selection_policies():
    x = np.array([[np.nan, np.nan], [1.0, 3.0]])
    with pytest.raises(NonFiniteError):
        minmax(x, dim=-1)
    out = minmax(x, dim=-1, on_empty="zero")
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.0, 1.0]])
    assert np.isnan(minmax(x, dim=-1, on_empty="nan")[0]).all()
    with pytest.raises(ConfigError):
        minmax(x, on_empty="ignore")


@pytest.mark.parametrize("device", available_devices())
def test_minmax_batched_torch_per_image(device):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 2, 8, 8, generator=g) * torch.arange(1, 9).reshape(4, 2, 1, 1)).to(device)
    out = MinMax()(x)
    assert out.device == x.device and out.dtype == x.dtype
    flat = out.reshape(8, -1)
    torch.testing.assert_close(flat.amin(1), torch.zeros(8, device=device))
    torch.testing.assert_close(flat.amax(1), torch.ones(8, device=device))
    assert minmax(torch.tensor([1, 2, 3])).dtype == torch.float32  # ints are promoted


# ------------------------------------------------------------------------------ transfer functions

X = np.array([0.01, 0.5, 1.0, 2.0, 100.0])


def test_transfer_functions_match_numpy_formulas():
    np.testing.assert_allclose(log_transfer(X), np.log10(X))
    np.testing.assert_allclose(log_transfer(X, base=np.e), np.log(X))
    np.testing.assert_allclose(log_transfer(X, 2.0, offset=1.0), np.log2(X + 1))
    np.testing.assert_allclose(asinh_transfer(X, softening=0.1), np.arcsinh(X / 0.1))
    np.testing.assert_allclose(asinh_transfer(-X), -np.arcsinh(X))
    np.testing.assert_allclose(sqrt_transfer(X), np.sqrt(X))
    np.testing.assert_allclose(power_transfer(X, 0.3), X**0.3)
    np.testing.assert_allclose(power_transfer(X, 2), X**2)


def test_transfer_functions_out_of_domain_values():
    x = np.array([-1.0, 0.0, 4.0, np.nan])
    out = log_transfer(x)
    assert np.isnan(out[[0, 1, 3]]).all() and out[2] == pytest.approx(np.log10(4))
    assert log_transfer(x, nonpositive=-5.0)[:2].tolist() == [-5.0, -5.0]
    assert np.isnan(sqrt_transfer(x)[0]) and sqrt_transfer(x)[1] == 0.0
    assert power_transfer(x, 0.5, negative=0.0)[0] == 0.0
    with pytest.raises(ConfigError):
        log_transfer(x, base=1.0)
    with pytest.raises(ConfigError):
        asinh_transfer(x, softening=0.0)


@pytest.mark.parametrize("device", available_devices())
def test_transfer_modules_torch(device):
    t = torch.from_numpy(X).to(device)
    for mod, ref in [(LogTransfer(), np.log10(X)), (AsinhTransfer(2.0), np.arcsinh(X / 2)),
                     (SqrtTransfer(), np.sqrt(X)), (PowerTransfer(1.5), X**1.5)]:
        out = mod(t)
        assert isinstance(out, torch.Tensor) and out.device == t.device
        np.testing.assert_allclose(out.cpu().numpy(), ref)
    seq = torch.nn.Sequential(LogTransfer(), MinMax(dim=None))
    np.testing.assert_allclose(seq(t).cpu().numpy(), minmax(np.log10(X)))


# ------------------------------------------------------------------------------------ SNR clipping


def test_snr_clip_with_given_rms_matches_cookbook_rule():
    x = np.array([[0.5, 1.0, 1.9], [2.0, 3.0, -4.0]])
    assert snr_mask(x, rms=1.0, snr=2.0).tolist() == [[False, False, False], [True, True, False]]
    np.testing.assert_allclose(snr_clip(x, 1.0, 2.0), [[0, 0, 0], [2.0, 3.0, 0]])
    np.testing.assert_allclose(snr_clip(x, 0.5, 2.0, fill=-1), [[-1, 1.0, 1.9], [2.0, 3.0, -1]])


def test_snr_clip_batched_per_image_rms_and_estimated_rms():
    rng = np.random.default_rng(0)
    sig = np.array([1.0, 5.0])
    stack = rng.normal(0, 1, (2, 150, 150)) * sig[:, None, None]
    stack[:, 70:80, 70:80] += 50.0
    m = snr_mask(torch.from_numpy(stack), rms=torch.tensor(sig), snr=3.0)
    assert isinstance(m, torch.Tensor) and m.shape == stack.shape
    assert m[:, 70:80, 70:80].all()
    frac = m.float().mean(dim=(1, 2)) - 100 / 150**2  # noise pixels above 3 sigma ~ 0.13%
    assert (frac < 0.004).all()
    est = snr_mask(stack, snr=3.0)  # rms estimated per image
    assert est.sum() == pytest.approx(m.sum().item(), rel=0.1)
    out = SNRClip(snr=3.0)(torch.from_numpy(stack), torch.tensor(sig))
    assert (out[m] == torch.from_numpy(stack)[m]).all() and (out[~m] == 0).all()
    with pytest.raises(ShapeError):
        snr_mask(stack, rms=np.ones((2, 2, 2)))


# -------------------------------------------------------------------------------- island normalise


def test_normalise_islands_each_island_on_its_own_scale():
    img = np.zeros((30, 30))
    img[2:8, 2:8] = np.linspace(10, 1000, 36).reshape(6, 6)
    img[15:25, 15:20] = np.linspace(2, 4, 50).reshape(10, 5)
    img[28, 28] = 100.0  # a 1-pixel island, dropped
    out = normalise_islands(img, threshold=0.5, transfer="log")
    a, b = out[2:8, 2:8], out[15:25, 15:20]
    assert a.min() == 0 and a.max() == 1 and b.min() == 0 and b.max() == 1
    np.testing.assert_allclose(a, minmax(np.log10(img[2:8, 2:8])))
    assert out[28, 28] == 0 and out.sum() == pytest.approx(a.sum() + b.sum())
    lin = normalise_islands(torch.from_numpy(img), 0.5, transfer=None, fill=-1.0)
    assert isinstance(lin, torch.Tensor) and lin[0, 0] == -1
    with pytest.raises(ConfigError):
        normalise_islands(img, 0.5, transfer="cube")


# --------------------------------------------------------------------------------- channel weights


def _two_channel(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (51, 2, 16, 16))
    x[:, 1] *= 7.0  # channel 1 is 7 times brighter
    return x


def test_channel_weights_equalise_median_pixel_sums():
    x = _two_channel()
    w = channel_weights(x)
    assert w.shape == (2,) and w.sum() == pytest.approx(1.0)
    assert w[0] / w[1] == pytest.approx(7.0, rel=0.05)
    med = np.median(apply_channel_weights(x, w).sum(axis=(-2, -1)), axis=0)
    assert med[0] == pytest.approx(med[1])
    sums = x.sum(axis=(-2, -1))
    np.testing.assert_allclose(channel_weights(x, normalise="none"), 1 / np.median(sums, 0))
    assert channel_weights(x, normalise="first")[0] == pytest.approx(1.0)


def test_channel_weights_with_old_weights_recovers_unweighted_answer():
    x = _two_channel(1)
    w = channel_weights(x)
    weighted = apply_channel_weights(x, [0.95, 0.05])
    np.testing.assert_allclose(channel_weights(weighted, old_weights=[0.95, 0.05]), w)


def test_channel_weights_errors_and_even_count_median():
    x = np.ones((4, 2, 2, 2))
    x[:, 0] *= np.array([1, 2, 3, 10.0])[:, None, None]
    # numpy-style median of sums [4, 8, 12, 40] is 10 (mean of the middle two)
    assert channel_weights(x, normalise="none")[0] == pytest.approx(1 / 10)
    with pytest.raises(ShapeError):
        channel_weights(np.ones((4, 2, 2)))
    with pytest.raises(NonFiniteError):
        channel_weights(np.zeros((3, 1, 2, 2)))
    with pytest.raises(ShapeError):
        apply_channel_weights(np.ones((3, 2, 2, 2)), [1.0])


@pytest.mark.parametrize("device", available_devices())
def test_channel_weighting_torch_device(device):
    x = torch.from_numpy(_two_channel()).to(device)
    w = channel_weights(x)
    assert isinstance(w, torch.Tensor) and w.device == x.device
    mod = ChannelWeighting([0.5, 2.0]).to(device)
    out = mod(x.float())
    torch.testing.assert_close(out[:, 1], x[:, 1].float() * 2.0)
    assert apply_channel_weights(x[0], [1.0, 0.0])[1].abs().sum() == 0  # single (C, H, W)


# ----------------------------------------------------------------------------------------- reweight


def _io():
    io = pytest.importorskip("somtorch.io")
    if not (hasattr(io, "read_images") and hasattr(io, "write_images")):
        pytest.skip("somtorch.io does not provide read_images/write_images yet (written concurrently)")
    return io


def _write_pink_images(path, images, rank):
    """Minimal PINK image binary writer (format from the spec, §2.2), independent of somtorch.io."""
    images = np.asarray(images, dtype="<f4")
    n = images.shape[0]
    dims = images.shape[1:] if rank == 3 else images.shape[2:]
    with open(path, "wb") as fh:
        fh.write(struct.pack("<6i", 2, 0, 0, n, 0, rank) + struct.pack(f"<{rank}i", *dims))
        fh.write(images.tobytes())


def test_reweight_two_channel_and_records_sidecar(tmp_path):
    io = _io()
    x = _two_channel().astype(np.float32)
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    _write_pink_images(src, x, rank=3)
    (tmp_path / "in.bin.records.json").write_text(json.dumps({"records": list(range(51))}))
    assert reweight(src, dst, [0.95, 0.05], [0.5, 0.5]) == os.fspath(dst)
    got = np.asarray(io.read_images(dst))
    np.testing.assert_allclose(got[:, 0], x[:, 0] * 0.5 / 0.95, rtol=1e-6)
    np.testing.assert_allclose(got[:, 1], x[:, 1] * 0.5 / 0.05, rtol=1e-6)
    assert json.loads((tmp_path / "out.bin.records.json").read_text())["records"][-1] == 50
    with pytest.raises(OutputExistsError):
        reweight(src, dst, [0.95, 0.05], [0.5, 0.5])
    reweight(src, dst, [1, 1], [1, 1], overwrite=True)
    np.testing.assert_allclose(np.asarray(io.read_images(dst)), x)


def test_pyink_bug_reweight_single_channel_without_records(tmp_path):
    io = _io()
    x = np.random.default_rng(0).uniform(0, 1, (5, 1, 8, 8)).astype(np.float32)
    src = tmp_path / "rank2.bin"
    _write_pink_images(src, x, rank=2)
    reweight(os.fspath(src), tmp_path / "o.bin", [1.0], [3.0])
    got = np.asarray(io.read_images(tmp_path / "o.bin")).reshape(5, 1, 8, 8)
    np.testing.assert_allclose(got, 3 * x, rtol=1e-6)
    assert not (tmp_path / "o.bin.records.json").exists()
    if hasattr(io, "read_images_header"):
        assert len(io.read_images_header(tmp_path / "o.bin").img_shape) == 2  # rank kept
    with pytest.raises(ShapeError):
        reweight(src, tmp_path / "p.bin", [1.0, 1.0], [1.0, 1.0])
