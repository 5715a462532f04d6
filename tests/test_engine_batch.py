"""Batch SOM training (somtorch.engine.batch) against slow references and online training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from somtorch.engine import Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
from somtorch.engine.batch import BatchTrainer, apply_batch_update, batch_sums, split_step
from somtorch.errors import ConfigError
from somtorch.geometry import Lattice


def _som(shape=(3, 3), numrot=4, seed=2, layout="cartesian"):
    return RotationInvariantSOM(Lattice(layout, shape), SOMGeometry(12, numrot=numrot), init="random", seed=seed)


def _x(n=24, seed=0):
    return torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


def _reference_sums(som, x, factors):
    """Plain loops: every image, every neuron's own best transformation, factor of the BMU."""
    n = som.num_neurons
    S = np.zeros((n,) + tuple(som.weight.shape[1:]))
    F = np.zeros(n)
    hits = np.zeros(n)
    allt = som.engine.transformer(x)  # (B, T, C, nd, nd): every transformation, full size
    for b in range(len(x)):
        dsq = som.sq_distances(x[b:b + 1])[0]  # (T, N)
        dmin = dsq.min(0).values
        best = int(torch.argmin(dmin))
        hits[best] += 1
        for i in range(n):
            t = int(torch.nonzero(dsq[:, i] == dmin[i])[0])  # lowest index on ties
            f = float(factors[best, i])
            S[i] += f * allt[b, t].double().numpy()
            F[i] += f
    return S, F, hits


@pytest.mark.parametrize("layout,shape,numrot", [("cartesian", (3, 3), 4), ("hexagonal", (3,), 8)])
def test_batch_sums_match_reference(layout, shape, numrot):
    som = _som(shape, numrot, layout=layout)
    x = _x(10)
    f = som.factors(Neighbourhood("gaussian", 1.0, 0.5))
    S, F, hits = batch_sums(som, x, f, chunk=3)
    rS, rF, rh = _reference_sums(som, x, f)
    np.testing.assert_allclose(S.numpy(), rS, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(F.numpy(), rF, rtol=1e-12)
    assert hits.numpy().tolist() == rh.tolist()


def test_update_rule_mean_and_partial():
    w = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    S = torch.tensor([[6.0, 2.0], [0.5, 0.5]], dtype=torch.float64)
    F = torch.tensor([2.0, 0.5], dtype=torch.float64)
    apply_batch_update(w, S, F)
    # F >= 1: the weighted mean S/F; F < 1: w + S - F w (summed online updates)
    assert w.tolist() == [[3.0, 1.0], [1.5, 0.5]]


def test_step_of_one_image_is_online_training():
    """step_size=1, factors <= 1: every step is PINK's online update (up to float rounding)."""
    nb = Neighbourhood("gaussian", 1.1, 0.3)
    x = _x(20)
    a, b = _som(), _som()
    Trainer(a, nb, num_iter=2, seed=5, metrics_sample=0).fit(x)
    BatchTrainer(b, nb, num_iter=2, seed=5, step_size=1, metrics_sample=0).fit(x)
    np.testing.assert_allclose(b.weight.numpy(), a.weight.numpy(), atol=2e-5)
    assert torch.equal(a.update_count, b.update_count)


def test_full_batch_unity_kernel_is_weighted_mean():
    """One step over all images with F >= 1 everywhere: w_i = sum f X / sum f (Kohonen batch map)."""
    som = _som()
    nb = Neighbourhood("unitygaussian", 3.0, 1.0)
    x = _x(16)
    f = som.factors(nb)
    rS, rF, _ = _reference_sums(som, x, f)
    assert (rF >= 1).all()
    BatchTrainer(som, nb, num_iter=1, step_size=16, shuffle=False, metrics_sample=0).fit(x)
    np.testing.assert_allclose(som.weight.numpy(), rS / rF[:, None, None, None], rtol=1e-5, atol=1e-6)


def test_split_step_partitions():
    for k in range(0, 9):
        for ws in (1, 2, 3):
            parts = [list(range(k))[split_step(k, ws, r)] for r in range(ws)]
            assert sum(parts, []) == list(range(k))


def test_batch_resume_equals_uninterrupted(tmp_path):
    nb = Neighbourhood("gaussian", 1.1, 0.3)
    x = _x(30)
    ref = _som()
    hist = BatchTrainer(ref, nb, num_iter=2, step_size=7, metrics_sample=8).fit(x)
    som = _som()
    tr = BatchTrainer(som, nb, num_iter=2, step_size=7, metrics_sample=8, checkpoint_path=tmp_path / "c.pt")
    tr.stop_after = 30
    with pytest.raises(KeyboardInterrupt, match="checkpoint written"):
        tr.fit(x)
    som2 = _som()
    tr2 = BatchTrainer(som2, nb, num_iter=2, step_size=7, metrics_sample=8, checkpoint_path=tmp_path / "c.pt")
    hist2 = tr2.fit(x, resume=True)
    assert torch.equal(som2.weight, ref.weight)
    assert torch.equal(som2.update_count, ref.update_count)
    assert [r["tick"] for r in hist2.records] == [r["tick"] for r in hist.records]
    # an online checkpoint is refused by batch mode (and vice versa it would differ)
    tr3 = BatchTrainer(_som(), nb, num_iter=2, step_size=5, checkpoint_path=tmp_path / "c.pt")
    with pytest.raises(ConfigError, match="step_size"):
        tr3.fit(x, resume=True)


def test_batch_training_improves_quantization():
    som = _som()
    x = _x(40)
    d0 = som(x)[0].min(1).values.mean()
    BatchTrainer(som, Neighbourhood("gaussian", 1.1, 0.3), num_iter=3, step_size=8, metrics_sample=0).fit(x)
    assert som(x)[0].min(1).values.mean() < 0.8 * d0
