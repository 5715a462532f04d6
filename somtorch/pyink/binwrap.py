"""PYINK's ``binwrap``: PINK binary readers/writers with PYINK's signatures, on :mod:`somtorch.io`.

Differences from :mod:`somtorch.io.binwrap` (the native classes these subclass):

* ``.header`` is PYINK's tuple, e.g. ``(2, 0, 0, N, 0, 3, (C, H, W))`` for images; the native
  header's fields stay readable as attributes (``reader.header.img_shape``).
* Records sidecars are PYINK's ``<binary>.records.pkl``. They are read **by default** through
  the allow-list reader (:func:`somtorch.io.safe_pickle.safe_load`: plain lists, dicts, tuples,
  strings, numbers and NumPy arrays only; nothing is ever imported or called), so PYINK datasets
  open without ``allow_pickle``; anything else is refused with an error naming the file.
  :class:`ImageWriter` writes the same format and refuses, at :meth:`ImageWriter.add`, records
  the allow-list could not read back (e.g. a ``WCS`` object: store ``wcs.to_header_string()``).
* ``SOM[i, j]`` keeps the channel axis, ``(C, H, W)``, as PYINK.
* ``ImageReader.transform`` uses PYINK's cubic-spline rotation (native: PINK's bilinear).

PYINK bugs corrected (spec §14): comment headers are read (``header_offset``) and written
properly; a non-cartesian layout raises ``NotImplementedError`` (PYINK: ``TypeError``); records
are written even when only some images have attributes (``None`` for the others; PYINK silently
wrote nothing); ``ImageReader.records`` is ``None`` without a sidecar (PYINK: no attribute);
``reweight`` works without records and on single-channel files and keeps every record; SOM slice
steps count neurons; ``SOMWriter`` checks shapes; ``Mapping.bmu_mask`` has the shape of
``data.shape[1:]`` and works on current NumPy; ``images_with_bmu(idx=...)`` and
``worst_matches(neuron=...)`` return image indices; ``Transform`` iterates over images;
``SOM.plot(fig=...)`` works and its grid lines follow non-square lattices.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from somtorch.errors import ConfigError, MissingFileError
from somtorch.io import binwrap as _bw
from somtorch.io.atomic import atomic_output
from somtorch.io.pink import DATA_TYPES

__all__ = ["ImageWriter", "ImageReader", "SOM", "SOMWriter", "Mapping", "Transform", "SOMSet",
           "header_offset", "resolve_data_type", "REC_SUFFIX"]

#: Suffix of the records sidecar, joined with a dot: ``<binary>.records.pkl``.
REC_SUFFIX = "records.pkl"

_END = b"# END OF HEADER"


class PyinkFileNotFoundError(MissingFileError, ValueError):
    """A file PYINK would have refused with ``ValueError`` (also a ``FileNotFoundError``)."""


class PyinkFileExistsError(ValueError, FileExistsError):
    """An output exists and ``clobber`` is False (PYINK: ``ValueError``)."""


def header_offset(path):
    """Byte offset just after the ``# END OF HEADER`` line of a commented PINK file (0 if none).

    **PYINK bug corrected**: PYINK compared the line without its newline and so returned 0 for
    every file, misreading any file with a comment header. A file made only of ``#`` lines
    raises ``ValueError`` ("Malformed PINK header").
    """
    path = os.fspath(path)
    offset = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.startswith(b"#"):
                return 0
            offset += len(line)
            if line.rstrip(b"\r\n") == _END:
                return offset
    raise ValueError(f"{path}: Malformed PINK header (only '#' lines, no '# END OF HEADER')")


_CODE_OF = {np.dtype(v).newbyteorder("="): k for k, v in DATA_TYPES.items()}


def resolve_data_type(x):
    """PINK data-type code <-> NumPy type: ``0 -> np.float32`` ... ``9 -> np.uint64`` and back.

    An int gives the NumPy scalar type; a NumPy dtype or type (``np.float32``, ``"f4"``) gives the
    code. Anything else raises ``ValueError``.
    """
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        if int(x) not in DATA_TYPES:
            raise ValueError(f"data type code {x} is not one of {sorted(DATA_TYPES)}")
        return DATA_TYPES[int(x)].type
    try:
        dt = np.dtype(x).newbyteorder("=")
    except TypeError:
        raise ValueError(f"{x!r} is not a PINK data type") from None
    if dt not in _CODE_OF:
        raise ValueError(f"{x!r} is not a PINK data type (float32/64, int8-64, uint8-64)")
    return _CODE_OF[dt]


class _Header(tuple):
    """PYINK's header tuple; attribute access reaches the native header record."""

    def __new__(cls, values, native):
        t = super().__new__(cls, values)
        t.__dict__["native"] = native
        return t

    def __getattr__(self, name):
        native = self.__dict__.get("native")
        if native is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(native, name)


def _dtype_code(dt) -> int:
    return _CODE_OF.get(np.dtype(dt).newbyteorder("="), 0)


def _check_exists(path, clobber, what="file"):
    if os.path.exists(os.fspath(path)) and not clobber:
        raise PyinkFileExistsError(f"{os.fspath(path)}: {what} exists; pass clobber=True to replace it")


def _plain(obj, where: str, depth: int = 0) -> None:
    """Refuse record values the allow-list reader could not read back."""
    if depth > 100:
        raise ConfigError(None, where, "nested > 100 levels", "plain values nested at most 100 levels")
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return
    if isinstance(obj, np.generic):
        if obj.dtype.kind in "biufc":
            return
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufc" and obj.dtype.fields is None and type(obj) is np.ndarray:
            return
    elif type(obj) in (list, tuple, set, frozenset):
        for v in obj:
            _plain(v, where, depth + 1)
        return
    elif type(obj) is dict:
        for k, v in obj.items():
            _plain(k, where, depth + 1)
            _plain(v, where, depth + 1)
        return
    raise ConfigError(None, where, type(obj).__name__,
                      "plain values (None, numbers, strings, lists, tuples, dicts, NumPy arrays) that the "
                      "safe records reader can load back; convert it (e.g. a WCS with to_header_string())")


class ImageWriter(_bw.ImageWriter):
    """Write a PINK image binary and its ``<binary>.records.pkl`` (PYINK ``ImageWriter``).

    Parameters and behaviour as PYINK: ``data_header`` is the per-image shape ``(H, W)`` or
    ``(C, H, W)``; :meth:`add` checks the shape and finite values; ``close`` (or leaving the
    ``with`` block) writes the records. The file is written at a temporary name and renamed
    into place on close (an exception inside ``with`` leaves nothing behind).
    """

    def __init__(self, binary_path, data_layout, data_header, comment=None, clobber=False):
        if data_layout != 0:
            raise NotImplementedError(f"data_layout {data_layout!r}: only cartesian layout 0 is supported")
        binary_path = os.fspath(binary_path)
        _check_exists(binary_path, clobber)
        self.records_pkl_path = f"{binary_path}.{REC_SUFFIX}"
        _check_exists(self.records_pkl_path, clobber, "records sidecar")
        super().__init__(binary_path, 0, data_header, comment, overwrite=bool(clobber))

    def add(self, img, nonfinite_check=True, attributes=None):
        """Append ``img`` (shape ``data_header``) as float32; ``attributes`` becomes its record."""
        if attributes is not None:
            _plain(attributes, f"attributes of image {self.count}")
        super().add(img, nonfinite_check, None)
        self.records[-1] = attributes
        self._any_attr = self._any_attr or attributes is not None

    def close(self):
        """Finish the binary, then write the records (if any image had attributes)."""
        if self._af.done:
            return
        any_attr, self._any_attr = self._any_attr, False  # the native writer would write JSON
        super().close()
        if any_attr:
            self.save_records()

    def save_records(self, path=None):
        """Pickle ``records`` (one entry per image, ``None`` where none was given) to ``path``
        (default ``<binary>.records.pkl``), atomically. Only plain values are ever written."""
        path = self.records_pkl_path if path is None else os.fspath(path)
        data = pickle.dumps(list(self.records), protocol=4)
        with atomic_output(path, overwrite=True) as f:
            f.write(data)
        return path


class ImageReader(_bw.ImageReader):
    """Memory-mapped PINK image binary (PYINK ``ImageReader``): ``data`` ``(N, C, H, W)``,
    ``header`` (PYINK tuple), ``img_rank``, ``img_shape``, ``records``.

    ``record_path`` overrides the sidecar; PYINK's ``.records.pkl`` is read through the
    allow-list reader by default (module docstring).
    """

    def __init__(self, path, record_path=None):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise PyinkFileNotFoundError(path, field="images")
        super().__init__(path, record_path, allow_pickle=True)
        h = self.header
        dims = tuple(h.img_shape)
        self.header = _Header((2, 0, _dtype_code(h.dtype), h.n_images, 0, len(dims), dims), h)

    def transform(self, idx, transform):
        """Image ``idx`` in the frame of a neuron: PYINK's cubic rotation, same size ``(C, H, W)``."""
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"idx must be an integer, got {type(idx).__name__}")
        return _bw.ImageReader.transform_images(self, [idx], [tuple(transform)], interpolation="cubic")[0]

    def transform_images(self, idxs, transforms):
        """Images ``idxs`` each transformed by its record: ``(K, C, H, W)``."""
        if len(idxs) != len(transforms):
            raise ValueError(f"{len(idxs)} image indices but {len(transforms)} transforms")
        return super().transform_images(idxs, transforms, interpolation="cubic")

    def reweight(self, binary_path, old_weights, new_weights, verbose=False):
        """Write a copy with channel ``c`` scaled by ``new[c] / old[c]``; returns its reader.

        Every record is carried over (as the new file's ``.records.pkl``). **PYINK bugs
        corrected**: works without records and on single-channel (rank-2) files, and the
        ``verbose`` progress counts images (a tqdm bar) instead of testing the record values.
        """
        c = self.data.shape[1]
        old = np.asarray(old_weights, np.float64).reshape(-1)
        new = np.asarray(new_weights, np.float64).reshape(-1)
        if old.size != c or new.size != c:
            raise ValueError(f"{old.size} old and {new.size} new weights for {c} channel(s)")
        if np.any(old == 0):
            raise ValueError(f"old weights must be non-zero, got {old.tolist()}")
        factor = (new / old)[:, None, None]
        dims = tuple(self.header.img_shape)
        recs = self.records
        from tqdm.auto import tqdm

        with ImageWriter(binary_path, 0, dims) as w:
            for i in tqdm(range(len(self)), disable=not verbose, desc="reweight", unit="img"):
                img = (np.asarray(self.data[i], np.float64) * factor).reshape(dims)
                w.add(img, attributes=None if recs is None else recs[i])
        return ImageReader(binary_path)


class SOM(_bw.SOM):
    """A PINK SOM (PYINK ``SOM``): ``data`` mosaic ``(C, X*H, (Y*Z)*W)``, ``som[i, j]`` the
    ``(C, H, W)`` neuron, ``iter(som)`` the ``(i, j)`` keys, PYINK's geometry properties."""

    def __init__(self, path):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise PyinkFileNotFoundError(path, field="SOM")
        super().__init__(path)
        h = self.header
        self.header = _Header((2, 1, _dtype_code(h.dtype), 0, len(h.som_dims), tuple(h.som_dims), 0,
                               len(h.neuron_shape), tuple(h.neuron_shape)), h)

    def __getitem__(self, key):
        return self._select(key)

    def plot(self, channel=0, fig=None, show_cbar=False, outfile=None, cmap="viridis"):
        """The whole SOM of one channel with lines between neurons; saved to ``outfile`` (dpi
        ``25 * X``) or shown. Returns the Figure. **PYINK bugs corrected**: ``fig`` is used (PYINK:
        ``NameError``); grid lines follow non-square lattices."""
        import matplotlib.pyplot as plt

        from somtorch.plotting import plot_som_mosaic

        x, yz = self._grid if len(self._grid) == 2 else (self._grid[0], 1)
        if fig is None:
            long = 10.0
            w, h = (long, long * x / yz) if yz >= x else (long * yz / x, long)
            fig = plt.figure(figsize=(w + (2 if show_cbar else 0), h))
        ax = fig.add_subplot(1, 1, 1) if not fig.axes else fig.axes[0]
        plot_som_mosaic(self, channel=channel, ax=ax, cmap=cmap)
        if show_cbar and ax.images:
            fig.colorbar(ax.images[-1], ax=ax)
        if outfile is not None:
            fig.savefig(outfile, dpi=25 * x)
        else:
            from somtorch.annotation.gui import _interactive

            if _interactive():  # Agg / files: nothing to show (no warning)
                plt.show()
        return fig

    def plot_neuron(self, neuron=(0, 0), fig=None, trim_to_img_shape=False, show_ticks=False):
        """One neuron, one panel per channel (colour maps viridis, plasma, inferno, cividis).
        ``trim_to_img_shape`` crops to the image side PINK's neuron size came from
        (:func:`somtorch.pyink.trim_neuron`). Returns the Figure."""
        from somtorch.analysis.frames import default_trim_side
        from somtorch.plotting import plot_neuron

        trim = default_trim_side(self.neuron_shape[-1]) if trim_to_img_shape else None
        return plot_neuron(self, tuple(neuron) if isinstance(neuron, (tuple, list)) else neuron, trim=trim,
                           cmaps=["viridis", "plasma", "inferno", "cividis"], show_ticks=show_ticks, fig=fig)

    def explore(self, start=(0, 0), **kwargs):
        """Arrow keys move through the neurons (interactive figure). ``kwargs`` are
        :meth:`plot_neuron`'s (``trim_to_img_shape``, ``show_ticks``) or the native explorer's
        (``trim=``, ``cmaps=``...), and apply from the first draw (PYINK ignored them until a key
        was pressed). Keep the returned :class:`~somtorch.plotting.SOMExplorer` alive."""
        from somtorch.analysis.frames import default_trim_side
        from somtorch.plotting import explore

        if kwargs.pop("trim_to_img_shape", False):
            kwargs.setdefault("trim", default_trim_side(self.neuron_shape[-1]))
        kwargs.pop("show_ticks", None)
        kwargs.pop("fig", None)
        kwargs.setdefault("cmaps", ["viridis", "plasma", "inferno", "cividis"])
        return explore(self, start=tuple(start) if isinstance(start, (tuple, list)) else start, **kwargs)


class SOMWriter(_bw.SOMWriter):
    """Write a SOM neuron by neuron (PYINK ``SOMWriter``); ``close()`` finishes the file.

    PYINK bugs corrected: the real lattice rank and the comment are written; shapes and the
    neuron count are checked; it is also a context manager.
    """

    def __init__(self, binary_path, som_shape, neuron_shape, comment=None, clobber=False):
        _check_exists(binary_path, clobber)
        super().__init__(binary_path, som_shape, neuron_shape, comment, overwrite=bool(clobber))


class Mapping(_bw.Mapping):
    """A PINK mapping with PYINK's best-matching-unit queries (``bmu``, ``bmu_counts``,
    ``bmu_ed``, ``images_with_bmu``, ``map_labels``, ``coherence``, ``worst_matches``)."""

    def __init__(self, path, bmu_mask=None):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise PyinkFileNotFoundError(path, field="mapping")
        super().__init__(path, bmu_mask)
        h = self.header
        self.header = _Header((2, 2, _dtype_code(h.dtype), h.n_images, 0, len(h.som_dims), tuple(h.som_dims)), h)

    def bmu_counts(self, **bmu_kwargs):
        """How often each neuron is the best match; keywords as :meth:`bmu` (``idx``, ``N``)."""
        allowed = {"idx", "N"}
        extra = set(bmu_kwargs) - allowed - {"squeeze", "return_idx", "return_tuples"}
        if extra:
            raise TypeError(f"bmu_counts got unexpected keywords {sorted(extra)}")
        return super().bmu_counts(**{k: v for k, v in bmu_kwargs.items() if k in allowed})

    def images_with_bmu(self, key, **bmu_kwargs):
        """Image indices whose best match is ``key`` (true indices, also with ``idx=``)."""
        return super().images_with_bmu(key, bmu_kwargs.get("idx"), bmu_kwargs.get("N", 0))


class Transform(_bw.Transform):
    """A PINK transform file (PYINK ``Transform``): structured ``data`` ``(N, X, Y*Z)`` with
    fields ``flip`` and ``angle`` (radians)."""

    def __init__(self, path):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise PyinkFileNotFoundError(path, field="transform")
        super().__init__(path)
        h = self.header
        self.header = _Header((2, 3, h.n_images, 0, len(h.som_dims), tuple(h.som_dims)), h)


class SOMSet(_bw.SOMSet):
    """SOM, mapping and transform together (objects or paths); PYINK's classes are used for
    paths. The three are checked for a common lattice (PYINK did not check)."""

    def __init__(self, som, mapping, transform):
        som = som if isinstance(som, _bw.SOM) else SOM(som)
        mapping = mapping if mapping is None or isinstance(mapping, _bw.Mapping) else Mapping(mapping)
        transform = transform if transform is None or isinstance(transform, _bw.Transform) else Transform(transform)
        super().__init__(som, mapping, transform)
