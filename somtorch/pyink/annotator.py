"""PYINK's ``annotator``: ``Annotation``, ``Annotator``, ``PRIMES``, ``ANT_SUFFIX``, on
:mod:`somtorch.annotation`.

Keys are PYINK's ``(row, col)`` lattice tuples; results files are PYINK's
``<som>.results.pkl``: a pickled ``{(row, col): pyink.annotator.Annotation}`` dict, written in
exactly PYINK's layout (PYINK can read files written here) and read back **through the
allow-list reader** (:func:`somtorch.io.safe_pickle.safe_load`; the only class it resolves is
PYINK's ``Annotation``, kept as a plain state dict; nothing is imported or called). A file saved
by :meth:`somtorch.annotation.AnnotationSet.save` (``.npz``) is recognised and read too.

Differences from PYINK (no number changes):

* ``Annotation.filters`` is a live mapping: ``ann.filters[c] = array`` and in-place edits
  (``ann.filters[c][r0:r1, c0:c1] = v``) are stored and used by everything downstream (the
  native filters are computed from regions and refuse such edits); ``clicks`` and
  ``lasso_filters`` are read-only views (edits raise).
* Labels belong to the session (the :class:`Annotator`'s results), not to a class attribute
  shared by every annotation in the process (PYINK bug).
* **PYINK bugs corrected** in the GUI (the native :class:`somtorch.annotation.Annotator`):
  with ``labeling=False`` the last channel can be clicked and the lasso works; a lasso gets its
  label value (PYINK re-added it as 1s); overlapping regions keep both labels; ``d`` undoes
  lassos too; any number of channels; checkbox states carry over between neurons.
"""

from __future__ import annotations

import collections
import copyreg
import os
import pickle
import warnings
from collections.abc import MutableMapping
from types import MappingProxyType

import numpy as np

from somtorch.annotation import core as _core
from somtorch.annotation import gui as _gui
from somtorch.annotation.encoding import PRIMES as _PRIMES
from somtorch.annotation.encoding import LabelSet, decode_value
from somtorch.annotation.store import AnnotationSet
from somtorch.errors import ConfigError, FileFormatError, ShapeError
from somtorch.io.atomic import atomic_output
from somtorch.io.safe_pickle import StateHolder, safe_load

__all__ = ["Annotation", "Annotator", "PRIMES", "ANT_SUFFIX", "calculate_region_value"]

#: The k-th label created gets ``PRIMES[k]`` (PYINK's dict, 20 labels at most).
PRIMES = {k: p for k, p in enumerate(_PRIMES)}
#: Suffix of the results file, joined with a dot: ``<som>.results.pkl``.
ANT_SUFFIX = "results.pkl"


def calculate_region_value(callback):
    """Product of the primes of the checked label boxes of ``callback.checkbox`` (1 if none)."""
    box = getattr(callback, "checkbox", None)
    if box is None:
        return 1
    v = 1
    for k, on in enumerate(box.get_status()):
        if on:
            v *= PRIMES[k]
    return v


def _int_filter(arr, shape, where: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.shape != tuple(shape):
        raise ShapeError(f"{where}: filter shape {a.shape}, expected {tuple(shape)}")
    if a.dtype.kind not in "iu":
        if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ShapeError(f"{where}: filter values must be integers (prime products), got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise ShapeError(f"{where}: filter values must be >= 0")
    return a if a.dtype == np.int64 else a.astype(np.int64)


class _LiveFilters(MutableMapping):
    """``{channel: int filter}`` whose assignments and in-place edits are stored."""

    def __init__(self, ann):
        self._ann = ann

    def _channel(self, c) -> int:
        c = int(c)
        if not 0 <= c < self._ann.channels:
            raise KeyError(c)
        return c

    def __getitem__(self, c):
        c = self._channel(c)
        self._ann._flatten(c)
        return self._ann.base[c]

    def __setitem__(self, c, arr):
        c = self._channel(c)
        self._ann._flatten(c)
        self._ann.base[c] = _int_filter(arr, self._ann.shape, f"Annotation.filters[{c}]")

    def __delitem__(self, c):
        raise TypeError("a channel's filter cannot be deleted; assign zeros to clear it")

    def __iter__(self):
        return iter(range(self._ann.channels))

    def __len__(self) -> int:
        return self._ann.channels

    def __repr__(self) -> str:
        return repr(dict(self))


class Annotation(_core.Annotation):
    """Annotation of one neuron (PYINK ``Annotation(neuron)``), see the module docstring.

    Attributes: ``neuron`` ``(C, H, W)``, ``filters`` (live), ``clicks`` and ``lasso_filters``
    (read-only), ``labels`` (the ``(name, prime)`` pairs of its session).
    """

    def __init__(self, neuron, labels=None):
        super().__init__(neuron)
        self._labels = labels if isinstance(labels, LabelSet) else LabelSet(labels or [])
        self._old_clicks: dict[int, list] = {}
        self._old_lassos: dict[int, list] = {}

    @classmethod
    def _adopt(cls, ann, labels: LabelSet):
        if isinstance(ann, Annotation):
            for name in ann._labels:
                labels.add(name)
            if ann._labels.pairs() != labels.pairs()[:len(ann._labels)]:
                raise ConfigError(None, "labels", ann._labels.names, f"the session's label order {labels.names}")
            ann._labels = labels
            return ann
        if not isinstance(ann, _core.Annotation):
            raise TypeError(f"expected an Annotation, got {type(ann).__name__}")
        new = cls(ann.neuron, labels)
        new.regions, new.base = list(ann.regions), dict(ann.base)
        return new

    @property
    def labels(self):
        return tuple(self._labels.pairs())

    def _flatten(self, c: int) -> None:
        """Fold the regions of channel ``c`` into its stored filter (history kept for saving)."""
        regs = [r for r in self.regions if r.channel == c]
        if c in self.base and not regs:
            return
        f = self.filter(c)
        for r in regs:
            if r.kind == "click":
                self._old_clicks.setdefault(c, []).append([float(r.y), float(r.x), int(r.value), float(r.sigma)])
            elif r.kind == "lasso":
                self._old_lassos.setdefault(c, []).append(r.mask.astype(np.int64))
        self.regions = [r for r in self.regions if r.channel != c]
        self.base[c] = f

    @property
    def filters(self):
        return _LiveFilters(self)

    @property
    def clicks(self):
        out = {}
        for c in range(self.channels):
            new = [(r.y, r.x, r.value, r.sigma) for r in self.regions if r.kind == "click" and r.channel == c]
            out[c] = tuple(tuple(k) for k in self._old_clicks.get(c, [])) + tuple(new)
        return MappingProxyType(out)

    @property
    def lasso_filters(self):
        out = {}
        for c in range(self.channels):
            masks = list(self._old_lassos.get(c, [])) + [r.mask.astype(np.int64) for r in self.regions
                                                         if r.kind == "lasso" and r.channel == c]
            for m in masks:
                m.flags.writeable = False
            out[c] = tuple(masks)
        return MappingProxyType(out)

    def resolve_label(self, value, pedantic=True):
        """Label names whose primes divide ``value`` (``()`` for 0 and 1).

        Value 1 (a region without a label) raises ``ValueError`` when ``pedantic``; a prime
        without a label raises ``KeyError``, as PYINK.
        """
        value = int(value)
        if value == 1 and pedantic:
            raise ValueError("region value 1: a region defined without an active label")
        if value in (0, 1):
            return ()
        primes = decode_value(value)
        known = dict((p, n) for n, p in self._labels.pairs())
        missing = [p for p in primes if p not in known]
        if missing:
            raise KeyError(f"prime(s) {missing} of value {value} have no label (labels: {self._labels.names})")
        return tuple(known[p] for p in primes)

    def filter_contains(self, channel=0, _native_channel=None):
        """Label names present anywhere in ``channel``'s filter (each once, creation order)."""
        if isinstance(channel, LabelSet):  # native call: filter_contains(labels, channel)
            return super().filter_contains(channel, _native_channel or 0)
        return list(super().filter_contains(self._labels, int(channel)))

    def _state(self) -> dict:
        """PYINK's pickled state of this annotation."""
        clicks = collections.defaultdict(list)
        lassos = collections.defaultdict(list)
        for c, ks in self.clicks.items():
            if ks:
                clicks[np.int64(c)] = [list(k) for k in ks]
        for c, ms in self.lasso_filters.items():
            if ms:
                lassos[np.int64(c)] = [np.array(m) for m in ms]
        return {"neuron": np.array(self.neuron), "clicks": clicks,
                "filters": {np.int64(c): self.filter(c) for c in range(self.channels)},
                "lasso_filters": lassos, "labels": list(self.labels)}

    def __repr__(self) -> str:
        return f"Annotation(neuron shape {self.neuron.shape})"


# ---------------------------------------------------------------------------- results files

class _PyinkAnnotationState(StateHolder):
    """Stand-in for ``pyink.annotator.Annotation`` while reading (keeps the state dict)."""


class _PyinkAnnotationRecord:
    """Written as a ``pyink.annotator.Annotation`` with the given state."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return (copyreg.__newobj__, (type(self),), self.state)


class _ResultsPickler(pickle._Pickler):
    def save_global(self, obj, name=None):
        if obj is _PyinkAnnotationRecord:
            self.write(pickle.GLOBAL + b"pyink.annotator\nAnnotation\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


class _PyinkResults(AnnotationSet):
    """The native annotation set, keyed like PYINK by ``(row, col)`` (flat ints work too)."""

    def __init__(self, som, labels=None):
        super().__init__(labels)
        self._som = som

    def _index(self, key) -> int:
        if isinstance(key, (tuple, list)):
            return int(self._som.key_to_index(tuple(int(v) for v in key)))
        return int(key)

    def __getitem__(self, key):
        return self.results[self._index(key)]

    def __setitem__(self, key, value):
        self.results[self._index(key)] = Annotation._adopt(value, self.labels)

    def __delitem__(self, key):
        del self.results[self._index(key)]

    def __contains__(self, key):
        try:
            return self._index(key) in self.results
        except (IndexError, TypeError, ValueError):
            return False

    def __iter__(self):
        return iter([self._som.index_to_key(i) for i in sorted(self.results)])

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{k}: {self[k]!r}' for k in self)}}}"


def _load_results(path: str, into: _PyinkResults) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"PK":  # somtorch's own .npz format
        native = AnnotationSet.load(path)
        for name in native.labels:
            into.labels.add(name)
        for k, a in native.results.items():
            into.results[k] = Annotation._adopt(a, into.labels)
        return
    obj = safe_load(path, "results", classes={("pyink.annotator", "Annotation"): _PyinkAnnotationState})
    if not isinstance(obj, dict):
        raise FileFormatError(path, "results", type(obj).__name__, "a dict of (row, col) -> Annotation")
    by_prime: dict[int, str] = {}
    states = {}
    for key, ann in obj.items():
        st = getattr(ann, "state", None)
        if not isinstance(st, dict) or "neuron" not in st or "filters" not in st:
            raise FileFormatError(path, f"results[{key!r}]", type(ann).__name__, "a pyink Annotation")
        for pair in st.get("labels", []):
            name, prime = pair
            if by_prime.setdefault(int(prime), str(name)) != str(name):
                raise FileFormatError(path, "labels", f"prime {prime} named {by_prime[int(prime)]!r} and {name!r}",
                                      "one name per prime")
        try:
            states[into._index(key)] = st
        except (IndexError, TypeError, ValueError) as e:
            raise FileFormatError(path, "key", key, f"a (row, col) neuron key of the SOM ({e})") from None
    for k, p in enumerate(sorted(by_prime)):
        if p != _PRIMES[k]:
            raise FileFormatError(path, "labels", sorted(by_prime), "primes 2, 3, 5, ... in creation order")
        into.labels.add(by_prime[p])
    for idx, st in states.items():
        a = Annotation(np.asarray(st["neuron"]), into.labels)
        if a.neuron.shape[0] != len(st["filters"]) and st["filters"]:
            raise FileFormatError(path, "filters", len(st["filters"]), f"{a.neuron.shape[0]} channels")
        for c, f in dict(st["filters"]).items():
            a.base[int(c)] = _int_filter(f, a.shape, f"{path}: filters[{c}]")
        for c, ks in dict(st.get("clicks", {})).items():
            a._old_clicks[int(c)] = [[float(v) for v in k] for k in ks]
        for c, ms in dict(st.get("lasso_filters", {})).items():
            a._old_lassos[int(c)] = [np.asarray(m, np.int64) for m in ms]
        into.results[idx] = a


def _write_results(path: str, results: _PyinkResults) -> str:
    out = {}
    for idx in sorted(results.results):
        key = tuple(np.int64(v) for v in results._som.index_to_key(idx))
        out[key] = _PyinkAnnotationRecord(results.results[idx]._state())
    import io

    buf = io.BytesIO()
    _ResultsPickler(buf, protocol=4).dump(out)
    with atomic_output(path, overwrite=True) as f:
        f.write(buf.getvalue())
    return path


# ---------------------------------------------------------------------------- the session

class Annotator(_gui.Annotator):
    """Annotation session over a SOM (PYINK ``Annotator(som, results=None, save=True)``).

    ``results``: None/False start empty; a path loads that file (or warns and starts empty if it
    does not exist); True loads ``<som>.results.pkl``; a dict is used as given. ``save``: True
    saves to ``<som>.results.pkl`` after every move of :meth:`interactive_annotate`, a path
    saves there, False/None never saves automatically. ``results`` is a dict-like
    ``{(row, col): Annotation}``.
    """

    def __init__(self, som, results=None, save=True):
        from somtorch.pyink.binwrap import SOM

        som = som if hasattr(som, "key_to_index") and hasattr(som, "weights") else SOM(som)
        self.som = som
        self.default_path = f"{som.path}.{ANT_SUFFIX}"
        res = _PyinkResults(som)
        if results is True:
            results = self.default_path
        if results is None or results is False:
            pass
        elif isinstance(results, (str, os.PathLike)):
            p = os.fspath(results)
            if os.path.exists(p):
                _load_results(p, res)
            else:
                warnings.warn(f"{p}: no annotation results there; starting empty", UserWarning, stacklevel=2)
        elif isinstance(results, (dict, MutableMapping)):
            for k, v in results.items():
                res[k] = v
        else:
            raise ValueError(f"results must be None, a bool, a path or a dict, got {type(results).__name__}")
        if save is True:
            save = self.default_path
        elif save is False:
            save = None
        elif save is not None and not isinstance(save, (str, os.PathLike)):
            raise ValueError(f"save must be a bool, None or a path, got {type(save).__name__}")
        super().__init__(som, results=res, save=None)
        self.save_path = None if save is None else os.fspath(save)
        self._detached = None

    @property
    def current(self):
        if self.index not in self.results.results:
            self.results.results[self.index] = Annotation(self.neurons[self.index], self.results.labels)
        return self.results.results[self.index]

    @property
    def last_index(self) -> int:
        """PYINK's name of the last-clicked channel."""
        return self.last_channel

    def save(self):
        """Save after a move of :meth:`interactive_annotate` (not in single-neuron mode)."""
        if self.single or self.save_path is None:
            return None
        return self.save_annotation_results(self.save_path)

    def save_annotation_results(self, path=None):
        """Write the results dict in PYINK's format to ``path`` (default: the ``save`` path, else
        ``<som>.results.pkl``), atomically. Returns the path."""
        path = os.fspath(path) if path is not None else (self.save_path or self.default_path)
        return _write_results(path, self.results)

    def unique_labels(self, labels_only=True):
        """Label names used in any annotation (creation order), or ``(name, prime)`` pairs."""
        return self.results.unique_labels(labels_only)

    def annotate_neuron(self, key, return_callback=False, cmap="bwr", labeling=False, update=False,
                        colorbar=True, vmin=None, vmax=None, grid=True, block=None):
        """Open neuron ``key`` in the annotation window; returns its Annotation (or
        ``(annotator, annotation)`` with ``return_callback``; the annotator carries PYINK's
        callback state: ``next_move``, ``sigma``, ``last_index``, ``live_update``, ``checkbox``).

        ``update=True`` stores the result in ``results[key]``; with ``update=False`` a neuron
        that had no annotation yet is left out of ``results`` once the window is finished (an
        existing one is edited in place, as PYINK). ``labeling`` is accepted for PYINK
        compatibility: the label widgets and every mouse action are always available (PYINK bug
        corrected). ``block=None`` blocks only on interactive backends.
        """
        self.cmap, self.vmin, self.vmax = cmap, vmin, vmax
        idx = self._resolve(key)
        new = idx not in self.results.results
        self.index = idx
        ann = self.current
        self._detached = idx if (new and not update) else None
        super().annotate_neuron(idx, block=block)
        if self.finished or self.fig is None:
            self._drop_detached()
        return (self, ann) if return_callback else ann

    def _drop_detached(self) -> None:
        if self._detached is not None:
            self.results.results.pop(self._detached, None)
            self._detached = None

    def close(self):
        super().close()
        self._drop_detached()

    def interactive_annotate(self, *args, labeling=True, resume=True, **kwargs):
        """Step through the neurons (``n``/``b``/``q``), saving after every move when ``save``
        is set; ``resume`` starts at the first neuron without an annotation."""
        return super().interactive_annotate(resume=resume, block=kwargs.get("block"))

    def __repr__(self) -> str:
        return f"Annotator({self.som.path!r}: {len(self.results)} annotated neurons)"
