"""Annotation sessions on disk: atomic, versioned, pickle-free storage and PYINK import.

Convention
----------
* An :class:`AnnotationSet` maps the flat PINK neuron index (``int``) to an
  :class:`~somtorch.annotation.core.Annotation` and holds the session's
  :class:`~somtorch.annotation.encoding.LabelSet`.
* File format (``format = "somtorch-annotations"``, ``version = 1``): one compressed ``.npz`` with
  a JSON document in the uint8 array ``meta`` (labels, save counter, and per neuron its regions'
  kind/channel/value/click/vertices) and, per annotated neuron ``i``: ``neuron_i`` (float32
  ``(C, H, W)``), ``filter_i`` (int64 ``(C, H, W)``, the combined prime-product filters, readable
  without somtorch), ``masks_i`` (the regions' masks, bit-packed row-major, one row per region)
  and, if present, ``base_i`` (imported filters). No pickle.
* Saves are atomic (temporary file, fsync, rename): a crash during a save leaves the previous
  file intact. Before replacing a file, the previous one is kept as ``<name>.v<NNNN>.npz``
  (``keep`` most recent versions; ``keep=0`` keeps none).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Iterator, MutableMapping

import numpy as np

from somtorch.annotation.core import Annotation, Region
from somtorch.annotation.encoding import PRIMES, LabelSet
from somtorch.errors import FileFormatError, MissingFileError, PickleNotAllowedError, SomtorchError
from somtorch.io.atomic import AtomicFile, check_output_path
from somtorch.io.files import check_regular_file, open_regular
from somtorch.io.safe_pickle import StateHolder, safe_load

__all__ = ["AnnotationSet", "FORMAT", "FORMAT_VERSION", "ANT_SUFFIX", "import_pyink_results"]

FORMAT = "somtorch-annotations"
FORMAT_VERSION = 1
ANT_SUFFIX = "annotations.npz"
_MAX_META_BYTES = 256 * 2**20
_INT64_MAX = 2**63 - 1


class AnnotationSet(MutableMapping):
    """Annotations of a SOM's neurons, keyed by flat neuron index, with their labels."""

    def __init__(self, labels: LabelSet | list | None = None, results: dict | None = None):
        self.labels = labels if isinstance(labels, LabelSet) else LabelSet(labels or [])
        self.results: dict[int, Annotation] = {int(k): v for k, v in (results or {}).items()}
        self.save_count = 0

    # mapping protocol
    def __getitem__(self, key) -> Annotation:
        return self.results[int(key)]

    def __setitem__(self, key, value: Annotation) -> None:
        self.results[int(key)] = value

    def __delitem__(self, key) -> None:
        del self.results[int(key)]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.results))

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        return f"AnnotationSet({len(self)} neurons, labels={self.labels.names})"

    def annotated(self) -> list[int]:
        """Neurons with at least one region (sorted)."""
        return [k for k in sorted(self.results) if self.results[k].annotated]

    def unique_labels(self, labels_only: bool = True) -> list:
        """Label names used in any filter (creation order), or ``(name, prime)`` pairs."""
        used: set[str] = set()
        for a in self.results.values():
            for c in range(a.channels):
                used.update(a.filter_contains(self.labels, c))
        pairs = [(n, p) for n, p in self.labels.pairs() if n in used]
        return [n for n, _ in pairs] if labels_only else pairs

    def filter_stack(self, num_neurons: int, channels: int | None = None, shape=None):
        """All filters as one array ``(num_neurons, C, H, W)`` int64 (zeros where unannotated)
        and a boolean ``(num_neurons,)`` array marking annotated neurons."""
        if self.results:
            a0 = next(iter(self.results.values()))
            channels = a0.channels if channels is None else channels
            shape = a0.shape if shape is None else tuple(shape)
        if channels is None or shape is None:
            raise FileFormatError(None, "annotations", "empty", "channels and shape for an empty set")
        out = np.zeros((num_neurons, channels) + tuple(shape), dtype=np.int64)
        have = np.zeros(num_neurons, dtype=bool)
        for k, a in self.results.items():
            if 0 <= k < num_neurons and a.annotated:
                out[k] = a.filter_stack()
                have[k] = True
        return out, have

    # ---------------------------------------------------------------- storage
    def save(self, path, keep: int = 5, overwrite: bool = True) -> str:
        """Write atomically to ``path``; keep the previous file as a numbered version.

        ``overwrite=False`` refuses to replace an existing file (:class:`OutputExistsError`).
        """
        path = os.fspath(path)
        check_output_path(path, overwrite)
        arrays: dict[str, np.ndarray] = {}
        neurons = []
        for k in sorted(self.results):
            a = self.results[k]
            arrays[f"neuron_{k}"] = a.neuron
            arrays[f"filter_{k}"] = a.filter_stack()
            if a.regions:
                arrays[f"masks_{k}"] = np.stack([np.packbits(r.mask.ravel()) for r in a.regions])
            if a.base:
                arrays[f"base_{k}"] = np.stack([a.base.get(c, np.zeros(a.shape, np.int64)) for c in range(a.channels)])
            neurons.append({"index": int(k), "regions": [r.meta() for r in a.regions], "base": bool(a.base)})
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "save_count": self.save_count + 1,
                "labels": self.labels.to_json(), "primes": list(PRIMES[:len(self.labels)]), "neurons": neurons}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        if os.path.exists(path) and keep > 0:
            _keep_version(path, keep)
        af = AtomicFile(path, overwrite=True, mode="wb")
        try:
            np.savez_compressed(af.file, **arrays)
        except BaseException:
            af.abort()
            raise
        af.commit()
        self.save_count += 1
        return path

    @classmethod
    def load(cls, path) -> AnnotationSet:
        """Read a file written by :meth:`save` (never unpickles).

        A damaged or crafted file raises :class:`FileFormatError` naming the file and the part
        that is wrong (a missing file :class:`~somtorch.errors.MissingFileError`).
        """
        path = os.fspath(path)
        check_regular_file(path, "annotations")
        where = ["archive"]
        try:
            with open_regular(path, "rb", "annotations") as fh, zipfile.ZipFile(fh) as zf:
                return cls._load(path, zf, where)
        except (FileFormatError, MissingFileError):
            raise
        except (SomtorchError, zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError,
                IndexError, TypeError, AttributeError, ArithmeticError, RecursionError, MemoryError,
                NotImplementedError) as e:
            raise FileFormatError(path, where[0], None, None,
                                  f"damaged annotations file ({type(e).__name__}: {e})") from None

    @classmethod
    def _load(cls, path: str, zf: zipfile.ZipFile, where: list) -> AnnotationSet:
        infos = {i.filename: i for i in zf.infolist()}

        def array(name: str, dtype_kinds: str = "biuf") -> np.ndarray:
            where[0] = name
            info = infos.get(name + ".npy")
            if info is None:
                raise FileFormatError(path, name, "no such member", "an array of that name in the archive")
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise FileFormatError(path, name, version, "an .npy array of version 1.0 or 2.0")
                if dtype.kind not in dtype_kinds or dtype.hasobject or dtype.fields is not None:
                    raise FileFormatError(path, name, str(dtype), "a plain numeric dtype")
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes > info.file_size:
                    raise FileFormatError(path, name, f"shape {shape} ({nbytes} bytes)",
                                          f"at most the member's {info.file_size} bytes")
                raw = f.read(nbytes)
                if len(raw) != nbytes:
                    raise FileFormatError(path, name, f"{len(raw)} bytes", f"{nbytes} bytes")
            out = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
            return out.copy()

        meta_raw = array("meta", "u")
        where[0] = "meta"
        if meta_raw.size > _MAX_META_BYTES:
            raise FileFormatError(path, "meta", f"{meta_raw.size} bytes", f"at most {_MAX_META_BYTES}")
        meta = json.loads(bytes(meta_raw).decode("utf-8"))
        if not isinstance(meta, dict):
            raise FileFormatError(path, "meta", type(meta).__name__, "a JSON object")
        if meta.get("format") != FORMAT:
            raise FileFormatError(path, "format", meta.get("format"), repr(FORMAT))
        if meta.get("version") != FORMAT_VERSION:
            raise FileFormatError(path, "version", meta.get("version"), FORMAT_VERSION)
        if not isinstance(meta.get("neurons"), list):
            raise FileFormatError(path, "neurons", type(meta.get("neurons")).__name__, "a list")
        out = cls(LabelSet(meta["labels"]))
        out.save_count = int(meta.get("save_count", 0))
        for n in meta["neurons"]:
            where[0] = "neurons"
            k = int(n["index"])
            if k < 0 or k in out.results:
                raise FileFormatError(path, "neurons index", k, "distinct non-negative neuron indices")
            neuron = array(f"neuron_{k}", "f")
            if neuron.ndim != 3:
                raise FileFormatError(path, f"neuron_{k}", f"shape {neuron.shape}", "(C, H, W)")
            shape = neuron.shape[1:]
            size = shape[0] * shape[1]
            regions = []
            if n["regions"]:
                packed = array(f"masks_{k}", "u")
                if packed.ndim != 2 or packed.shape[0] != len(n["regions"]) or packed.shape[1] != (size + 7) // 8:
                    raise FileFormatError(path, f"masks_{k}", f"shape {packed.shape}",
                                          f"({len(n['regions'])}, {(size + 7) // 8})")
                where[0] = f"neurons[{k}] regions"
                for j, r in enumerate(n["regions"]):
                    if not 0 <= int(r["channel"]) < neuron.shape[0] or not 1 <= int(r["value"]) <= _INT64_MAX:
                        raise FileFormatError(path, f"neurons[{k}] regions[{j}]", {"channel": r["channel"],
                                              "value": r["value"]}, f"a channel in [0, {neuron.shape[0]}) "
                                              "and a label product in [1, 2**63)")
                    m = np.unpackbits(packed[j], count=size).astype(bool).reshape(shape)
                    regions.append(Region(str(r["kind"]), int(r["channel"]), int(r["value"]), m, r.get("y"),
                                          r.get("x"), r.get("sigma"), r.get("vertices")))
            base = {c: f for c, f in enumerate(array(f"base_{k}", "i"))} if n.get("base") else None
            where[0] = f"neurons[{k}]"
            a = Annotation(neuron, regions, base)
            stored = array(f"filter_{k}", "i")
            if not np.array_equal(a.filter_stack(), stored):
                raise FileFormatError(path, f"filter_{k}", "filters differing from the regions",
                                      "filters equal to the combined regions")
            out.results[k] = a
        return out

    @classmethod
    def import_pyink(cls, path, key_to_index=None, allow_pickle: bool = False) -> AnnotationSet:
        """Import a PYINK ``<som>.results.pkl`` (see :func:`import_pyink_results`)."""
        return import_pyink_results(path, key_to_index=key_to_index, allow_pickle=allow_pickle)


def _keep_version(path: str, keep: int) -> None:
    directory, name = os.path.split(os.path.abspath(path))
    stem = name[:-4] if name.endswith(".npz") else name
    pat = re.compile(re.escape(stem) + r"\.v(\d{4,})\.npz$")
    found = sorted((int(m.group(1)), f) for f in os.listdir(directory) if (m := pat.match(f)))
    nxt = (found[-1][0] + 1) if found else 1
    target = os.path.join(directory, f"{stem}.v{nxt:04d}.npz")
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)
    found.append((nxt, os.path.basename(target)))
    for _, f in found[:-keep]:
        os.remove(os.path.join(directory, f))


# ---------------------------------------------------------------------------- PYINK import

class _PyinkAnnotationState(StateHolder):
    """Stand-in for ``pyink.annotator.Annotation`` while unpickling: keeps the state dict."""


_PYINK_CLASSES = {("pyink.annotator", "Annotation"): _PyinkAnnotationState}


def import_pyink_results(path, key_to_index=None, allow_pickle: bool = False) -> AnnotationSet:
    """Read PYINK's ``<som>.results.pkl`` (a pickle; only with ``allow_pickle=True``).

    Only the globals such a file needs are resolved (PYINK's ``Annotation``, containers and
    NumPy arrays of plain dtypes, through :func:`somtorch.io.safe_pickle.safe_load`); anything
    else is refused with :class:`FileFormatError`. ``key_to_index`` maps PYINK's ``(row, col)`` keys to
    flat neuron indices (e.g. ``SOM.key_to_index``); by default keys must already be ints.
    PYINK's filters become each annotation's imported ``base`` filters (its click and lasso
    history cannot be replayed exactly); the label list is the union over the file in prime order.
    """
    path = os.fspath(path)
    if not allow_pickle:
        raise PickleNotAllowedError(f"{path}: PYINK results are a pickle; pass allow_pickle=True "
                                    "only for files you trust")
    obj = safe_load(path, "results", classes=_PYINK_CLASSES)
    if not isinstance(obj, dict):
        raise FileFormatError(path, "results", type(obj).__name__, "dict of neuron key -> Annotation")
    by_prime: dict[int, str] = {}
    out = AnnotationSet()
    for key, ann in obj.items():
        st = getattr(ann, "state", None)
        if not isinstance(st, dict) or "neuron" not in st or "filters" not in st:
            raise FileFormatError(path, f"results[{key!r}]", type(ann).__name__, "a pyink Annotation")
        for name, prime in st.get("labels", []):
            by_prime.setdefault(int(prime), str(name))
        if isinstance(key, tuple):
            if key_to_index is None:
                raise FileFormatError(path, "key", key, "int keys (or pass key_to_index)")
            idx = int(key_to_index(tuple(int(v) for v in key)))
        else:
            idx = int(key)
        base = {int(c): np.asarray(f, dtype=np.int64) for c, f in dict(st["filters"]).items()}
        out.results[idx] = Annotation(np.asarray(st["neuron"]), base=base)
    for k, p in enumerate(sorted(by_prime)):
        if p != PRIMES[k]:
            raise FileFormatError(path, "labels", sorted(by_prime), "primes 2, 3, 5, ... in creation order")
        out.labels.add(by_prime[p])
    return out
