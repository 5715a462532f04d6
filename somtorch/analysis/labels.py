"""Knowledge transfer: neuron labels from a labelled sample, and labels back into catalogues.

The three routes of cookbook §8.2 from a SOM to per-component labels:

1. visual inspection per neuron -> :func:`inspection_table` (counts of flagged images per neuron);
2. label fractions of a labelled sample -> :func:`transfer_labels` / :func:`label_evidence`;
3. a classifier on the distance vector to all neurons -> :func:`train_distance_classifier`
   (:class:`DistanceClassifier`, a small torch model, with :func:`knn_predict` as baseline).

Neuron tables are CSV files keyed by the flat neuron index (:func:`write_neuron_table`,
:func:`read_neuron_table`) and join catalogues through the best-matching neuron
(:func:`join_neuron_table`, :func:`catalogue_columns`, :func:`merge_catalogue`).

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

__all__ = ["KnowledgeTransfer", "transfer_labels", "catalogue_columns", "merge_catalogue", "label_evidence",
           "inspection_table", "write_neuron_table", "read_neuron_table", "join_neuron_table",
           "DistanceClassifier", "knn_predict", "ClassifierReport", "train_distance_classifier"]


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

    def write_csv(self, path, overwrite: bool = False) -> str:
        """Write :meth:`table` as a neuron table CSV (:func:`write_neuron_table`)."""
        return write_neuron_table(self.table(), path, overwrite=overwrite)


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


# --------------------------------------------------------------------------------------------
# per-neuron evidence, neuron label tables (CSV) and the join to catalogues
# --------------------------------------------------------------------------------------------

def label_evidence(kt: KnowledgeTransfer, label, name: str | None = None) -> pd.DataFrame:
    """Per-neuron probability of ``label`` with the counts behind it (cookbook §8.2, route 2).

    Returns a table indexed by neuron with columns ``P_<name>`` (raw fraction, NaN where the neuron
    has no labelled entries), ``count_<name>`` (entries with that label), ``n_labelled`` (all
    labelled entries), ``balanced_P_<name>`` (class-balanced fraction), ``majority`` and
    ``ambiguous`` -- so a user can judge how much evidence each probability rests on.
    """
    name = str(label) if name is None else name
    p = kt.probability(label)
    out = pd.DataFrame(index=kt.counts.index)
    out[f"P_{name}"] = p
    out[f"count_{name}"] = kt.counts[label]
    out["n_labelled"] = kt.totals
    out[f"balanced_P_{name}"] = kt.fractions(balanced=True)[label]
    out["majority"] = kt.majority()
    out["ambiguous"] = kt.ambiguous()
    return out


def inspection_table(n_flagged, n_inspected, label: str = "sidelobe", neurons=None) -> pd.DataFrame:
    """Visual-inspection route (cookbook §8.2, route 1): per-neuron probability from counts.

    Each neuron was shown with ``n_inspected`` random matched images and one or several inspectors
    counted ``n_flagged`` of them as ``label`` (e.g. false positives). With several inspectors pass
    ``n_flagged`` of shape ``(n_inspectors, N)``: the mean count is used, as in the cookbook, and
    the spread is kept in ``std_<label>``.

    Returns a table indexed by neuron with ``P_<label> = mean(n_flagged) / n_inspected`` (NaN where
    nothing was inspected), ``count_<label>`` (mean count), ``n_inspected`` and ``std_<label>``.
    """
    f = np.atleast_2d(np.asarray(n_flagged, dtype=np.float64))
    n = np.asarray(n_inspected, dtype=np.float64)
    n = np.broadcast_to(n, f.shape[1:]) if n.ndim == 0 else n
    if n.shape != f.shape[1:]:
        raise ShapeError(f"n_inspected has shape {n.shape}, expected {f.shape[1:]} (one per neuron)")
    if (f < 0).any() or (f > n).any():
        raise ShapeError("n_flagged must lie in [0, n_inspected] for every neuron and inspector")
    mean = f.mean(axis=0)
    idx = pd.RangeIndex(len(mean), name="neuron") if neurons is None else pd.Index(neurons, name="neuron")
    out = pd.DataFrame(index=idx)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[f"P_{label}"] = np.where(n > 0, mean / np.where(n > 0, n, 1), np.nan)
    out[f"count_{label}"] = mean
    out["n_inspected"] = n.astype(np.int64)
    out[f"std_{label}"] = f.std(axis=0, ddof=1) if f.shape[0] > 1 else 0.0
    return out


def write_neuron_table(table: pd.DataFrame, path, coords=None, overwrite: bool = False) -> str:
    """Write a neuron label table as CSV keyed by the flat neuron index (column ``neuron``).

    With ``coords`` (``(N, k)`` lattice coordinates), columns ``bmu_y``/``bmu_x`` (first/second
    lattice coordinate, the cookbook's ``neuron_info.csv`` names) are added. Written atomically;
    an existing file is kept unless ``overwrite``.
    """
    from somtorch.io.atomic import atomic_output

    df = table.copy()
    df.index = pd.Index(np.asarray(df.index, dtype=np.int64), name="neuron")
    if coords is not None:
        c = np.asarray(coords)[df.index.to_numpy()]
        df.insert(0, "bmu_y", c[:, 0])
        df.insert(1, "bmu_x", c[:, 1] if c.shape[1] > 1 else 0)
    with atomic_output(path, overwrite=overwrite, mode="w") as fh:
        df.to_csv(fh)
    return str(path)


def read_neuron_table(path, coords=None) -> pd.DataFrame:
    """Read a neuron label table (CSV) into a DataFrame indexed by the flat neuron index.

    The key is a ``neuron`` column, or ``bmu_y``/``bmu_x`` lattice coordinates (cookbook §8.2,
    ``neuron_info.csv``) translated through ``coords`` (``(N, 2)``, required in that case).
    Raises :class:`~somtorch.errors.FileFormatError` naming the file and column otherwise, and on
    duplicate neurons.
    """
    from somtorch.errors import FileFormatError

    df = pd.read_csv(path)
    if "neuron" in df.columns:
        key = df["neuron"].to_numpy()
        if not np.issubdtype(key.dtype, np.integer):
            raise FileFormatError(path, "neuron", str(key.dtype), "integer neuron indices")
        df = df.drop(columns="neuron")
    elif {"bmu_y", "bmu_x"} <= set(df.columns):
        if coords is None:
            raise FileFormatError(path, "neuron", None, "a 'neuron' column",
                                  "bmu_y/bmu_x need the lattice coords to find the neuron index")
        c = np.asarray(coords)
        lut = {(int(a), int(b) if c.shape[1] > 1 else 0): i
               for i, (a, b) in enumerate(np.column_stack([c[:, 0], c[:, 1] if c.shape[1] > 1 else np.zeros(len(c))]))}
        try:
            key = np.array([lut[(int(y), int(x))] for y, x in zip(df["bmu_y"], df["bmu_x"])], dtype=np.int64)
        except KeyError as e:
            raise FileFormatError(path, "bmu_y/bmu_x", e.args[0], "coordinates of a lattice neuron") from None
    else:
        raise FileFormatError(path, "neuron", list(df.columns), "a 'neuron' or 'bmu_y'/'bmu_x' column")
    df.index = pd.Index(key.astype(np.int64), name="neuron")
    if df.index.duplicated().any():
        raise FileFormatError(path, "neuron", int(df.index[df.index.duplicated()][0]), "unique neurons")
    return df


def join_neuron_table(bmu, table: pd.DataFrame, columns=None, applicable=None, null=-1.0) -> pd.DataFrame:
    """Catalogue columns from a neuron table through each entry's best-matching neuron.

    ``bmu`` holds flat neuron indices (one per catalogue entry). Entries whose neuron is missing
    from the table, or that are not ``applicable``, get ``null`` in numeric columns and ``None``
    in others (cookbook §8.2: ``P_sidelobe = -1``).
    """
    bmu = np.asarray(bmu).astype(np.int64)
    cols = list(table.columns) if columns is None else list(columns)
    t = table[cols].reindex(bmu)
    ok = np.ones(len(bmu), dtype=bool) if applicable is None else np.asarray(applicable, dtype=bool)
    out = pd.DataFrame(index=pd.RangeIndex(len(bmu)))
    for c in cols:
        v = t[c].to_numpy()
        if np.issubdtype(v.dtype, np.number) and v.dtype != bool:
            v = v.astype(np.float64)
            out[c] = np.where(ok & np.isfinite(v), v, null)
        else:
            v = v.astype(object)
            v[~ok | pd.isna(v)] = None
            out[c] = v
    return out


# --------------------------------------------------------------------------------------------
# route 3: a classifier on the distance vector to all neurons
# --------------------------------------------------------------------------------------------

def _as_features(distances) -> np.ndarray:
    if hasattr(distances, "flat") and hasattr(distances, "bmu_ed"):  # a somtorch.io.Mapping
        distances = distances.flat
    x = distances.detach().cpu().numpy() if hasattr(distances, "detach") else np.asarray(distances)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeError(f"distances must be (n_entries, n_neurons), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ShapeError("distances contain NaN or inf (masked neurons?); replace them first")
    return x


class DistanceClassifier:
    """Small torch classifier on the Euclidean distances of an entry to every neuron (route 3).

    A two-layer perceptron (``n_neurons -> hidden -> n_classes``, ReLU) trained full-batch with
    Adam on cross-entropy. Features are standardised per neuron with the training mean and
    standard deviation. Training is deterministic for a given ``seed`` (CPU).

    Convention
    ----------
    ``distances`` rows are catalogue entries and columns neurons in PINK order, i.e. the rows of
    :attr:`somtorch.io.Mapping.flat`. ``classes_`` is the sorted list of labels seen in ``fit``;
    probability columns follow it.
    """

    def __init__(self, hidden: int = 32, epochs: int = 300, lr: float = 1e-2,
                 weight_decay: float = 1e-4, seed: int = 0):
        self.hidden, self.epochs, self.lr = int(hidden), int(epochs), float(lr)
        self.weight_decay, self.seed = float(weight_decay), int(seed)
        self.model = None
        self.classes_: list = []

    def _prep(self, x: np.ndarray):
        import torch
        return torch.as_tensor((x - self.mean_) / self.std_, dtype=torch.float32)

    def fit(self, distances, labels) -> DistanceClassifier:
        import torch
        x = _as_features(distances)
        lab = np.asarray(labels, dtype=object)
        if len(lab) != len(x):
            raise ShapeError(f"{len(lab)} labels for {len(x)} distance rows")
        self.classes_ = sorted(pd.unique(lab).tolist(), key=str)
        y = torch.as_tensor(pd.Categorical(lab, categories=self.classes_).codes.astype(np.int64))
        self.mean_, self.std_ = x.mean(axis=0), x.std(axis=0)
        self.std_[self.std_ == 0] = 1.0
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], self.hidden), torch.nn.ReLU(),
                                             torch.nn.Linear(self.hidden, len(self.classes_)))
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        xt = self._prep(x)
        self.model.train()
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(self.model(xt), y)
            loss.backward()
            opt.step()
        self.model.eval()
        self.loss_ = float(loss.detach())
        return self

    def predict_proba(self, distances) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` in the order of ``classes_``."""
        import torch
        if self.model is None:
            raise ShapeError("DistanceClassifier is not fitted; call fit() first")
        with torch.no_grad():
            return torch.softmax(self.model(self._prep(_as_features(distances))), dim=1).numpy()

    def predict(self, distances) -> np.ndarray:
        return np.asarray(self.classes_, dtype=object)[self.predict_proba(distances).argmax(axis=1)]


def knn_predict(train_distances, train_labels, distances, k: int = 5) -> np.ndarray:
    """k-nearest-neighbour baseline in standardised distance-vector space (majority vote; ties go
    to the label whose nearest member is closest)."""
    import torch
    xtr, x = _as_features(train_distances), _as_features(distances)
    mean, std = xtr.mean(axis=0), xtr.std(axis=0)
    std[std == 0] = 1.0
    a = torch.as_tensor((xtr - mean) / std)
    b = torch.as_tensor((x - mean) / std)
    k = max(1, min(int(k), len(xtr)))
    d, nn_idx = torch.cdist(b, a).topk(k, dim=1, largest=False)
    lab = np.asarray(train_labels, dtype=object)
    out = np.empty(len(x), dtype=object)
    for i, row in enumerate(nn_idx.numpy()):
        votes: dict = {}
        for rank, j in enumerate(row):
            c = votes.setdefault(lab[j], [0, rank])
            c[0] += 1
        out[i] = max(votes.items(), key=lambda kv: (kv[1][0], -kv[1][1]))[0]
    return out


@dataclass
class ClassifierReport:
    """Held-out evaluation of route 3: ``accuracy`` (torch model), ``knn_accuracy`` (baseline),
    ``chance`` (fraction of the most common class in the test set), split sizes and classes."""

    accuracy: float
    knn_accuracy: float
    chance: float
    n_train: int
    n_test: int
    classes: list


def train_distance_classifier(distances, labels, test_fraction: float = 0.3, seed: int = 0, k: int = 5,
                              **model_kwargs) -> tuple[DistanceClassifier, ClassifierReport]:
    """Train :class:`DistanceClassifier` on a random split and report held-out accuracy.

    The split is a seeded permutation, stratified per class (each class contributes
    ``round(test_fraction * n_class)`` entries, at least one when it has two or more). Entries
    with missing labels are dropped. Returns the fitted classifier and a :class:`ClassifierReport`
    that also holds the kNN baseline and the chance level.
    """
    x = _as_features(distances)
    lab = pd.Series(np.asarray(labels, dtype=object))
    if len(lab) != len(x):
        raise ShapeError(f"{len(lab)} labels for {len(x)} distance rows")
    keep = lab.notna().to_numpy()
    x, lab = x[keep], lab[keep].to_numpy()
    if not 0 < test_fraction < 1:
        raise ShapeError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(lab), dtype=bool)
    for c in pd.unique(lab):
        members = rng.permutation(np.flatnonzero(lab == c))
        n_test = int(round(test_fraction * len(members)))
        n_test = max(n_test, 1) if len(members) > 1 else 0
        test[members[:n_test]] = True
    if not test.any() or test.all():
        raise ShapeError("the labelled sample is too small for a train/test split")
    clf = DistanceClassifier(seed=seed, **model_kwargs).fit(x[~test], lab[~test])
    acc = float(np.mean(clf.predict(x[test]) == lab[test]))
    knn = float(np.mean(knn_predict(x[~test], lab[~test], x[test], k=k) == lab[test]))
    chance = float(pd.Series(lab[test]).value_counts(normalize=True).iloc[0])
    return clf, ClassifierReport(acc, knn, chance, int((~test).sum()), int(test.sum()), clf.classes_)
