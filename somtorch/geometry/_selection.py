"""Per-image selection of full-size transformations (:class:`~somtorch.geometry.PinkTransformer`'s
``select`` and ``select_sources``): only the base rotations that the requested transformations need
are interpolated, each once, and every dihedral variant is a flip of a base rotation or of its
transpose (:func:`~somtorch.geometry.transforms.dihedral_split`). Used by the online steps' updates;
bit-identical to the transformer's full expansion (tested in ``tests/test_geometry.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from somtorch.errors import ShapeError

__all__ = ["PerImageSelection"]


def _sample_one(image, bank, sel, out, dst) -> bool:
    if image.device.type != "cpu" or image.dtype != torch.float32:
        return False
    from somtorch.geometry._sampler import sample_one

    return sample_one(image, bank, sel, out, dst)


def _transforms():
    from somtorch.geometry import transforms  # the host class's module (imports this one)

    return transforms


class PerImageSelection:
    """Mixin of :class:`~somtorch.geometry.PinkTransformer`: the per-image selection methods."""

    def select(self, images: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Full-size transforms ``X_{t[m]}`` of ONE image: ``images (C, d, d)``, ``t (M,)`` -> ``(M, C, nd, nd)``.

        Only the base rotations that are needed are interpolated. Every dihedral variant of a base
        rotation ``B`` is a flip of ``B`` or of its transpose ``B^T`` (:func:`dihedral_split`):
        ``B^T`` is sampled on the transposed grid (the same coordinates) when ``B`` itself is not
        needed and copied from ``B`` otherwise; column-reversed copies of these are made once, and
        one gather of pixel rows (reversed where rows are reversed) builds every neuron's
        transform. Values are bit-identical to :meth:`forward`.
        """
        if images.ndim != 3:
            raise ShapeError(f"select expects one image (C, d, d); got {tuple(images.shape)}")
        dev = images.device
        bank, row, g = self._sources(images, t)
        if not g.any():
            return bank.index_select(0, torch.from_numpy(row).to(dev))
        bank = bank.contiguous()
        if (g & 2).any():  # columns reversed: each bank entry that needs it once, appended
            cr_rows, cr_inv = np.unique(row[(g & 2) > 0], return_inverse=True)
            flipped = torch.flip(bank.index_select(0, torch.from_numpy(cr_rows).to(dev)), dims=(-1,))
            row = row.copy()
            row[(g & 2) > 0] = len(bank) + cr_inv
            bank = torch.cat([bank, flipped])
        # one gather of whole pixel rows puts every neuron's transform in place, in reverse row
        # order where rows are reversed (index_copy_ is slow on CPU: no per-group scatter)
        nb, c, nd = bank.shape[0], bank.shape[1], bank.shape[-1]
        r = np.arange(nd)
        rows_in = np.where((g & 1)[:, None].astype(bool), nd - 1 - r, r)  # (M, nd)
        ridx = ((row[:, None] * c + np.arange(c))[:, :, None] * nd + rows_in[:, None, :]).reshape(-1)
        out = bank.view(nb * c * nd, nd).index_select(0, torch.from_numpy(ridx).to(dev))
        return out.view(len(row), c, nd, nd)

    def _sources(self, images: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """The sampling plan of :meth:`select`: the full-size base rotations ``(K, C, nd, nd)`` that
        the transforms ``t (M,)`` of ONE image need -- each needed base once, sampled on the
        transposed grid where only its transpose is needed, with a transposed copy appended where
        both are -- and per transform its entry ``(M,)`` and flip code ``g (M,)`` (bit 0: rows
        reversed, bit 1: columns reversed)."""
        T = _transforms()
        # bookkeeping on at most a few hundred integers: numpy, not tensor ops
        tn = t.detach().cpu().numpy().astype(np.int64)
        f, s = np.divmod(tn, self.numrot)
        j, i = np.divmod(s, self._k)
        split = T._SPLIT[j + 4 * f]
        side, g = split[:, 0], split[:, 1]
        bases, inv = np.unique(i, return_inverse=True)
        need = np.zeros((len(bases), 2), dtype=bool)
        need[inv, side] = True
        only_t = need[:, 1] & ~need[:, 0]
        both = np.flatnonzero(need[:, 0] & need[:, 1])
        bank = self._base_full(images, bases.tolist(), only_t.tolist(), transpose_copies=both.tolist())
        row = inv.reshape(-1).copy()
        if len(both):
            extra = np.full(len(bases), -1)
            extra[both] = len(bases) + np.arange(len(both))
            tr_rows = (side == 1) & (extra[row] >= 0)
            row[tr_rows] = extra[row[tr_rows]]
        return bank, row, g

    def select_sources(self, images: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`select` assembles, unassembled: the full-size base rotations that the transforms
        ``t (M,)`` of ONE image ``(C, d, d)`` need, ``(K, C, nd, nd)`` (transposed ones sampled on
        the transposed grid, as :meth:`select` does), and per transform the int64 row
        ``(entry, 0, reverse rows, reverse columns)``, ``(M, 4)``: ``X_{t[m]}`` is entry ``v[0]``
        with its rows reversed if ``v[2]`` and its columns if ``v[3]`` (bit-identical to
        :meth:`select`; read this way, row by row, by the compiled update of
        :mod:`somtorch.engine._native`). The second column (transpose) is always 0."""
        if images.ndim != 3:
            raise ShapeError(f"select_sources expects one image (C, d, d); got {tuple(images.shape)}")
        bank, row, g = self._sources(images, t)
        variants = np.stack([row, np.zeros_like(row), g & 1, (g >> 1) & 1], axis=1)
        return bank.contiguous(), torch.from_numpy(np.ascontiguousarray(variants, dtype=np.int64))

    def _grid_bank(self, device, dtype):
        """Full-size grids of rotations 1..k-1, then the same grids transposed (rows <-> columns)."""
        key = ("bank", str(device), dtype)
        bank = self._grid_cache.get(key)
        if bank is None:
            nd = self.neuron_dim
            g = self._grid(0, nd, device, dtype)
            if isinstance(g, tuple):  # exact taps: (4, k-1, nd, nd) indices and weights
                bank = tuple(torch.cat([a, a.transpose(-2, -1)], dim=1).contiguous() for a in g)
            else:
                g = g.reshape(self._k - 1, nd, nd, 2)
                bank = torch.cat([g, g.transpose(1, 2)]).contiguous()
            self._grid_cache[key] = bank
        return bank

    def _base_full(self, image: torch.Tensor, which: list, transposed: list | None = None,
                   transpose_copies: list = ()) -> torch.Tensor:
        """``(U + E, C, nd, nd)``: full-size base orientations ``which`` (entries where
        ``transposed`` is true sampled transposed, rows <-> columns), then the transposes of the
        entries at positions ``transpose_copies`` (``E`` of them)."""
        T = _transforms()
        img = self._check(image.unsqueeze(0))
        nd = self.neuron_dim
        c, d = img.shape[1], img.shape[-1]
        tr_l = [False] * len(which) if transposed is None else transposed
        out = img.new_empty((len(which) + len(transpose_copies), c, nd, nd))
        rot_pos = [p for p, w in enumerate(which) if w != 0]
        if len(rot_pos) < len(which):
            b0 = T.pad_or_crop(img[0], nd)
            for p0 in (p for p, w in enumerate(which) if w == 0):
                out[p0].copy_(b0.transpose(-2, -1) if tr_l[p0] else b0)
        if rot_pos:
            km1 = self._k - 1
            sel = torch.tensor([which[p] - 1 + (km1 if tr_l[p] else 0) for p in rot_pos], device=img.device)
            bank = self._grid_bank(img.device, img.dtype)
            if isinstance(bank, tuple):
                idx, wt = bank[0][:, sel], bank[1][:, sel]
                taps = img.reshape(c, d * d)[:, idx.reshape(-1)].reshape(c, idx.shape[0], len(rot_pos), nd, nd)
                rot = T._combine_taps(wt, taps.transpose(0, 1)).transpose(0, 1)
            elif self.interpolation == "bilinear" and _sample_one(img[0].contiguous(), bank, sel, out,
                                                                  [p * c * nd * nd for p in rot_pos]):
                # the compiled one-image loop: straight from the grid bank into place (no copies)
                rot = None
            else:
                # one batch entry per rotation: CPU grid_sample parallelises over the batch only
                sub = bank.index_select(0, sel)
                rot = T._grid_sample(img.expand(len(rot_pos), c, d, d), sub, self.interpolation)
            if rot is not None:  # (the compiled loop wrote into out already)
                if len(rot_pos) == len(out):
                    return rot
                if rot_pos == list(range(rot_pos[0], rot_pos[0] + len(rot_pos))):  # base 0 first
                    out[rot_pos[0]:rot_pos[0] + len(rot_pos)].copy_(rot)
                else:
                    out[rot_pos] = rot
        if len(transpose_copies):  # one batched transposed copy
            src = out.index_select(0, torch.tensor(list(transpose_copies), device=img.device))
            out[len(which):].copy_(src.transpose(-2, -1))
        return out
