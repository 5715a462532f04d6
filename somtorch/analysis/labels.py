"""Knowledge transfer: neuron labels from a labelled sample, and labels back into catalogues.

Convention
----------
* Neuron ``n`` has lattice coordinates :attr:`somtorch.geometry.Lattice.coords` ``[n]``. In
  catalogues, ``Best_neuron_y`` is the first lattice coordinate (PYINK's "row", ``n // H`` on a
  ``W x H`` grid) and ``Best_neuron_x`` the second (``n % H``), as the cookbook (§8.2) writes them
  from ``Mapping.bmu()``. Hexagonal lattices use axial ``(q, r)``: ``Best_neuron_y = r``,
  ``Best_neuron_x = q``. ``Best_neuron`` holds the flat PINK neuron index.
* Raw fractions ``count_k(n) / total(n)`` estimate the probability of label ``k`` for a new entry
  matched to ``n`` when the labelled sample is representative of the catalogue. Class-balanced
  fractions first divide each count by its class total ``N_k`` and renormalise per neuron; they
  answer "which class does this neuron prefer" independently of class sizes (cookbook §6.2: a
  50/50 split is ambiguous once class totals are taken into account).
* A neuron is ``ambiguous`` when it has fewer than ``min_count`` labelled entries or the top two
  class-balanced fractions differ by less than ``margin``.
* Missing values: neurons without labelled entries get NaN fractions and probability ``null``
  (default -1, the cookbook's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from somtorch.errors import ShapeError

__all__ = ["KnowledgeTransfer", "transfer_labels", "catalogue_columns", "merge_catalogue"]


@dataclass
class KnowledgeTransfer:
    """Per-neuron label statistics of a labelled sample.

    Attributes
    ----------
    counts : DataFrame ``(N, K)`` of label counts per neuron (index: neuron, columns: labels).
    coords : ndarray ``(N, k)`` lattice coordinates.
    """

    counts: pd.DataFrame
    coords: np.ndarray
    min_count: int = 3
    margin: float = 0.2

    @property
    def labels(self) -> list:
        return list(self.counts.columns)

    @property
    def totals(self) -> pd.Series:
        return self.counts.sum(axis=1)

    def fractions(self, balanced: bool = False) -> pd.DataFrame:
        """Label fractions per neuron (raw, or class-balanced; NaN where a neuron has no entries)."""
        c = self.counts.astype(float)
        if balanced:
            class_tot = c.sum(axis=0).replace(0, np.nan)
            c = c / class_tot
        tot = c.sum(axis=1).replace(0, np.nan)
        return c.div(tot, axis=0)

    def probability(self, label) -> pd.Series:
        """Raw fraction of ``label`` per neuron (NaN where no entries)."""
        if label not in self.counts.columns:
            raise ShapeError(f"label {label!r} not among the labels {self.labels}")
        return self.fractions()[label]

    def majority(self) -> pd.Series:
        """Label with the largest class-balanced fraction (None where no entries)."""
        fb = self.fractions(balanced=True).to_numpy()
        has = self.totals.to_numpy() > 0
        out = np.full(len(fb), None, dtype=object)
        if fb.shape[1] and has.any():
            best = np.argmax(np.nan_to_num(fb[has], nan=-1.0), axis=1)
            out[has] = np.asarray(self.labels, dtype=object)[best]
        return pd.Series(out, index=self.counts.index, dtype=object)

    def ambiguous(self) -> pd.Series:
        fb = self.fractions(balanced=True).fillna(0).to_numpy()
        top = np.sort(fb, axis=1)[:, ::-1]
        gap = top[:, 0] - (top[:, 1] if top.shape[1] > 1 else 0)
        return pd.Series((self.totals.to_numpy() < self.min_count) | (gap < self.margin), index=self.counts.index)

    def table(self) -> pd.DataFrame:
        """One row per neuron: coordinates, counts, raw and balanced fractions, majority, ambiguity."""
        df = pd.DataFrame(index=self.counts.index)
        df.index.name = "neuron"
        for i in range(self.coords.shape[1]):
            df[f"coord_{i}"] = self.coords[:, i]
        df["n_labelled"] = self.totals
        fr, fb = self.fractions(), self.fractions(balanced=True)
        for lab in self.labels:
            df[f"count_{lab}"] = self.counts[lab]
            df[f"frac_{lab}"] = fr[lab]
            df[f"balanced_frac_{lab}"] = fb[lab]
        df["majority"] = self.majority()
        df["ambiguous"] = self.ambiguous()
        return df


def transfer_labels(bmu, labels, num_neurons: int, coords=None, classes=None, min_count: int = 3,
                    margin: float = 0.2) -> KnowledgeTransfer:
    """Count labels per best-matching neuron (cookbook §6.2, PYINK ``Mapping.map_labels``).

    Parameters
    ----------
    bmu : array ``(n,)`` of flat neuron indices for the labelled entries.
    labels : array ``(n,)`` of labels (any hashable; NaN/None entries are ignored).
    num_neurons : int
    coords : array ``(N, k)``, optional lattice coordinates (default: the flat index).
    classes : list, optional label order (default: sorted unique labels).
    """
    bmu = np.asarray(bmu).astype(np.int64)
    lab = pd.Series(np.asarray(labels, dtype=object))
    if len(bmu) != len(lab):
        raise ShapeError(f"bmu has {len(bmu)} entries but labels has {len(lab)}")
    keep = lab.notna().to_numpy()
    bmu, lab = bmu[keep], lab[keep]
    if len(bmu) and (bmu.min() < 0 or bmu.max() >= num_neurons):
        raise ShapeError(f"bmu indices must lie in [0, {num_neurons}); found {bmu.min()}..{bmu.max()}")
    classes = sorted(lab.unique().tolist(), key=str) if classes is None else list(classes)
    counts = np.zeros((num_neurons, len(classes)), dtype=np.int64)
    for j, c in enumerate(classes):
        counts[:, j] = np.bincount(bmu[(lab == c).to_numpy()], minlength=num_neurons)
    cdf = pd.DataFrame(counts, columns=classes, index=pd.RangeIndex(num_neurons, name="neuron"))
    co = np.arange(num_neurons)[:, None] if coords is None else np.asarray(coords)
    return KnowledgeTransfer(cdf, co, min_count, margin)


def catalogue_columns(bmu, dist, coords, layout: str = "cartesian", neuron_values: dict | None = None,
                      applicable=None, null: float = -1.0) -> pd.DataFrame:
    """Columns to add to a catalogue: ``Best_neuron``, ``Best_neuron_y/x``, ``Neuron_dist`` and one
    column per entry of ``neuron_values`` (name -> per-neuron array), ``null`` where a neuron value
    is NaN or the row is not ``applicable`` (cookbook §8.2: -1 for Peak_to_ring >= 3 or S_Code 'E')."""
    bmu = np.asarray(bmu).astype(np.int64)
    coords = np.asarray(coords)
    c = coords[bmu]
    out = pd.DataFrame({"Best_neuron": bmu})
    if layout == "hexagonal":
        out["Best_neuron_y"], out["Best_neuron_x"] = c[:, 1], c[:, 0]
    else:
        out["Best_neuron_y"] = c[:, 0]
        out["Best_neuron_x"] = c[:, 1] if c.shape[1] > 1 else 0
    out["Neuron_dist"] = np.asarray(dist, dtype=np.float64)
    ok = np.ones(len(bmu), dtype=bool) if applicable is None else np.asarray(applicable, dtype=bool)
    for name, values in (neuron_values or {}).items():
        v = np.asarray(values, dtype=np.float64)[bmu]
        v = np.where(ok & np.isfinite(v), v, null)
        out[name] = v
    return out


def merge_catalogue(original: pd.DataFrame, new_columns: pd.DataFrame, key: str) -> pd.DataFrame:
    """Left-join new columns onto the original catalogue on a unique id (cookbook §8.2).

    Rows that failed preprocessing keep nulls. Raises if ``key`` is not unique in either table.
    """
    for name, df in (("original", original), ("new", new_columns)):
        if key not in df.columns:
            raise ShapeError(f"key column {key!r} missing from the {name} table")
        if df[key].duplicated().any():
            dup = df[key][df[key].duplicated()].iloc[0]
            raise ShapeError(f"key column {key!r} is not unique in the {name} table (e.g. {dup!r})")
    clash = [c for c in new_columns.columns if c != key and c in original.columns]
    if clash:
        raise ShapeError(f"columns {clash} already exist in the original catalogue")
    return original.merge(new_columns, on=key, how="left", validate="one_to_one")
