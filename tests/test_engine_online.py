"""The online step (engine.online): the dense bank, the paths against each other, batch sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from somtorch.engine import Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
from somtorch.engine.online import DenseStep, ParityStep, online_step, step_kind
from somtorch.errors import ConfigError
from somtorch.geometry import Lattice
from somtorch.testing import run_if


def _som(d=12, c=1, numrot=8, flip=True, shape="quadratic", side=3, seed=1, **kw):
    geo = SOMGeometry(d, channels=c, numrot=numrot, flip=flip, distance_shape=shape)
    return RotationInvariantSOM(Lattice("cartesian", (side, side)), geo, init="random", seed=seed, **kw)


@pytest.mark.parametrize("numrot, flip, c, shape", [
    (1, True, 1, "quadratic"), (1, False, 1, "circular"), (4, True, 2, "quadratic"), (4, False, 1, "quadratic"),
    (8, True, 1, "circular"), (12, True, 2, "circular"), (36, False, 1, "quadratic"),
])
@pytest.mark.parametrize("native", ["1", "0"])
def test_dense_bank_rows_are_the_transformations_bit_for_bit(numrot, flip, c, shape, native, monkeypatch):
    """The update's sources are the transformations: the bank's rows (eager) or the base rotations
    with the variant table (compiled loop: base rotation, transpose, row and column reversal)."""
    monkeypatch.setenv("SOMTORCH_NATIVE", native)
    som = _som(d=11, c=c, numrot=numrot, flip=flip, shape=shape)
    imgs = torch.rand(3, c, 11, 11, generator=torch.Generator().manual_seed(numrot))
    st = DenseStep(som, som.factors(Neighbourhood()))
    st.prepare(imgs)
    ref = som.engine.transformer(imgs)  # (B, T, C, nd, nd): the reference expansion
    lo, hi = som.engine.window
    mask = som.engine.mask[lo:hi, lo:hi]
    for b in range(3):
        if st.native:
            got = []
            for i, side, rr, cr in st._variants.tolist():
                x = st.base[b, i].transpose(-1, -2) if side else st.base[b, i]
                got.append(x.flip([dim for dim, on in ((-2, rr), (-1, cr)) if on]))
            got = torch.stack(got)
        else:
            got = st.src[b] if st.whole else st.src[b].index_select(0, st._rows.view(-1)).view_as(ref[b])
        assert torch.equal(got, ref[b])
        win = ref[b][..., lo:hi, lo:hi]
        assert torch.equal(st.xf[b], win.reshape(som.num_transforms, -1))
        np.testing.assert_allclose(st.rnorm[b], (win * mask).square().sum((1, 2, 3)), rtol=1e-6)


@pytest.mark.parametrize("max_dist", [None, 1.5])
@pytest.mark.parametrize("numrot, c, shape", [(4, 1, "quadratic"), (8, 2, "circular"), (36, 1, "quadratic")])
def test_dense_and_parity_steps_train_alike(numrot, c, shape, max_dist):
    imgs = torch.rand(40, c, 12, 12, generator=torch.Generator().manual_seed(3))
    out = {}
    for step in ("dense", "parity"):
        som = _som(c=c, numrot=numrot, shape=shape)
        Trainer(som, Neighbourhood("gaussian", 1.1, 0.3, max_dist), metrics_sample=0, step=step).fit(imgs)
        out[step] = (som.weight.clone(), som.update_count.clone())
    np.testing.assert_allclose(out["dense"][0], out["parity"][0], rtol=0, atol=1e-5)
    assert torch.equal(out["dense"][1], out["parity"][1])


@pytest.mark.parametrize("step", ["dense", "parity"])
def test_result_does_not_depend_on_the_batch_size(step):
    imgs = torch.rand(23, 1, 12, 12, generator=torch.Generator().manual_seed(5))
    ws = []
    for batch in (1, 3, 7, 23):
        som = _som(numrot=12)
        Trainer(som, Neighbourhood(), metrics_sample=0, step=step, batch_size=batch).fit(imgs)
        ws.append(som.weight.clone())
    for w in ws[1:]:
        assert torch.equal(w, ws[0])


def test_pink_tie_break_through_the_dense_step_picks_pinks_lowest_index():
    """Zero-initialised SOM: every transformation of every neuron ties at first; PINK's exact
    arithmetic breaks the ties (lowest index), and the dense step must do the same."""
    imgs = torch.rand(12, 1, 10, 10, generator=torch.Generator().manual_seed(9))
    res = {}
    for arith, step in (("pink", "auto"), ("gemm", "dense"), ("gemm", "parity")):
        geo = SOMGeometry(10, numrot=8, convention="pink")
        som = RotationInvariantSOM(Lattice("cartesian", (2, 2)), geo, init="zero", rng="pink", arithmetic=arith)
        Trainer(som, Neighbourhood(), metrics_sample=0, step=step).fit(imgs)
        res[(arith, step)] = som
    ref = res[("pink", "auto")]
    for key in (("gemm", "dense"), ("gemm", "parity")):
        assert torch.equal(res[key].update_count, ref.update_count), key
        np.testing.assert_allclose(res[key].weight, ref.weight, rtol=0, atol=1e-6)


def test_auto_step_follows_the_bank_size():
    assert step_kind(_som(d=40, numrot=36)) == "dense"
    assert step_kind(RotationInvariantSOM(Lattice("cartesian", (2, 2)), SOMGeometry(64, numrot=360))) == "parity"
    assert step_kind(_som(arithmetic="pink")) == "exact"
    som = _som()
    assert isinstance(online_step(som, som.factors(Neighbourhood()), "parity"), ParityStep)
    with pytest.raises(ConfigError, match="step"):
        Trainer(som, step="fast")


@run_if(cuda=True)
@pytest.mark.parametrize("step", ["dense", "parity"])
def test_cuda_training_matches_cpu(step):
    imgs = torch.rand(30, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    out = {}
    for dev in ("cpu", "cuda"):
        som = _som(numrot=8, device=dev)
        Trainer(som, Neighbourhood(), metrics_sample=0, step=step).fit(imgs)
        out[dev] = (som.weight.cpu(), som.update_count.cpu())
    np.testing.assert_allclose(out["cuda"][0], out["cpu"][0], rtol=0, atol=1e-4)
    assert torch.equal(out["cuda"][1], out["cpu"][1])


@run_if(cuda=True)
def test_cuda_dense_step_never_synchronises_with_the_host():
    som = _som(numrot=8, device="cuda")
    st = DenseStep(som, som.factors(Neighbourhood()), cuda_graphs=False)
    st.prepare(torch.rand(6, 1, 12, 12, device="cuda"))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for b in range(6):
            best = st.step(b)
            som.update_count.index_add_(0, best.view(1), torch.ones(1, dtype=torch.int64, device="cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert int(som.update_count.sum()) == 6


@run_if(cuda=True)
def test_cuda_graph_replays_train_like_eager_launches():
    imgs = torch.rand(40, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    out = []
    for graphs in (False, True):
        som = _som(numrot=8, device="cuda")
        st = DenseStep(som, som.factors(Neighbourhood()), cuda_graphs=graphs)
        assert st.graphs == graphs
        for s0 in range(0, 40, 16):  # batches of 16, 16, 8: the last one shorter
            st.prepare(imgs[s0:s0 + 16].cuda())
            for b in range(min(16, 40 - s0)):
                som.update_count.index_add_(0, st.step(b).view(1), torch.ones(1, dtype=torch.int64, device="cuda"))
        out.append((som.weight.cpu(), som.update_count.cpu()))
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=0, atol=1e-6)
    assert torch.equal(out[1][1], out[0][1])


@pytest.mark.parametrize("numrot, side", [(36, 2), (4, 3)])
def test_prefetching_the_next_batch_changes_nothing(numrot, side):
    """Preparing batch j+1 on a second thread while batch j trains (Trainer(prefetch=True)) gives
    the same SOM and counts bit for bit, over several iterations with a short last batch, and
    the thread count is restored afterwards."""
    imgs = torch.rand(23, 1, 12, 12, generator=torch.Generator().manual_seed(11))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = []
        for prefetch in (False, True):
            som = _som(numrot=numrot, side=side)
            Trainer(som, Neighbourhood("gaussian", 1.1, 0.3), num_iter=2, metrics_sample=0, batch_size=5,
                    step="dense", prefetch=prefetch).fit(imgs)
            out.append((som.weight.detach().clone(), som.update_count.clone()))
            assert torch.get_num_threads() == 2
        assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    finally:
        torch.set_num_threads(threads)


def test_prefetch_auto_policy_and_errors_in_a_prefetched_batch():
    """auto prefetches only where a batch has at least as many transformations as neurons; a
    non-finite image in a later batch is reported as without prefetching."""
    from somtorch.errors import SomtorchError

    assert DenseStep(_som(numrot=36, side=2), _som(numrot=36, side=2).factors(Neighbourhood())).prefetch_pays
    assert not DenseStep(_som(numrot=4, side=5), _som(numrot=4, side=5).factors(Neighbourhood())).prefetch_pays
    imgs = torch.rand(12, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    imgs[9, 0, 3, 3] = float("nan")
    msgs = []
    for prefetch in (False, True):
        with pytest.raises(SomtorchError) as err:
            Trainer(_som(numrot=36, side=2), metrics_sample=0, batch_size=4, shuffle=False,
                    prefetch=prefetch).fit(imgs)
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1] and "9" in msgs[0]


@pytest.mark.parametrize("geo", [SOMGeometry(32, numrot=8, convention="pink"),
                                 SOMGeometry(40, 2, numrot=36, convention="pink"),
                                 SOMGeometry(20, numrot=16),
                                 SOMGeometry(12, numrot=8, interpolation="nearest", convention="pink"),
                                 SOMGeometry(21, numrot=4)])
def test_tie_rule_windows_of_one_image_are_the_batch_resolvers_bit_for_bit(geo):
    """The online step's tie rule samples one image's base rotations from a cached tap table; it
    must give exactly the PINK-exact windows the batch resolver samples."""
    from somtorch.engine.distance import TieResolver, _exact_windows

    som = RotationInvariantSOM(Lattice("cartesian", (2, 2)), geo, rng="pink")
    res = TieResolver(som.engine)
    k = max(geo.numrot // 4, 1)
    x = torch.randn(1, geo.channels, geo.image_dim, geo.image_dim, generator=torch.Generator().manual_seed(3)) * 10
    for pairs in (torch.arange(k), torch.tensor([k - 1, 0][:k])):
        b = _exact_windows(res._exact, x, pairs, k, som.engine.window)
        for use_numpy in (True, False):  # numpy on CPU; the torch form is the one CUDA runs
            a = res._windows_one(x[0], pairs, use_numpy=use_numpy)
            assert a.shape == b.shape and torch.equal(a, b)
