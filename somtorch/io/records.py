"""Per-image records sidecars: ``<binary>.records.json`` (somtorch) and ``.records.pkl`` (PYINK).

A records sidecar is a list with one entry per image of an image binary, in file order (for
example catalogue row indices or source names). somtorch writes JSON, which is safe to load and
independent of Python versions; tuples come back as lists and numpy/torch scalars and arrays are
converted to plain Python values. PYINK's pickle sidecars are read only with
``allow_pickle=True``, and then only through an allow-list (:mod:`somtorch.io.safe_pickle`:
plain values and NumPy arrays of plain dtypes; anything else is refused).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from somtorch.errors import ConfigError, FileFormatError, PickleNotAllowedError
from somtorch.io.atomic import atomic_output
from somtorch.io.files import check_regular_file, open_regular
from somtorch.io.safe_pickle import safe_load

__all__ = ["RECORDS_JSON_SUFFIX", "RECORDS_PICKLE_SUFFIX", "records_path", "to_jsonable",
           "write_records", "read_records"]

RECORDS_JSON_SUFFIX = ".records.json"
RECORDS_PICKLE_SUFFIX = ".records.pkl"
#: Largest records JSON read (bytes) and deepest nesting of lists/dicts accepted in it.
MAX_RECORDS_BYTES = 4 * 2**30
MAX_RECORDS_DEPTH = 128  # above the 100 levels write_records accepts


def records_path(binary_path, kind: str = "json") -> str:
    """Sidecar path of ``binary_path``: ``<binary>.records.json`` (or ``.records.pkl``)."""
    suffix = RECORDS_JSON_SUFFIX if kind == "json" else RECORDS_PICKLE_SUFFIX
    return os.fspath(binary_path) + suffix


def to_jsonable(obj, _depth: int = 0):
    """Convert ``obj`` to plain JSON types (numpy/torch scalars and arrays, tuples, sets).

    Raises :class:`ConfigError` for values JSON cannot represent.

    >>> to_jsonable({"a": np.int64(3), "b": (np.float32(0.5), np.arange(2))})
    {'a': 3, 'b': [0.5, [0, 1]]}
    """
    if _depth > 100:
        raise ConfigError("record nested too deeply for JSON")
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), _depth + 1)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return to_jsonable(obj.tolist(), _depth + 1)
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, _depth + 1) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v, _depth + 1) for v in obj), key=repr)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            k = to_jsonable(k, _depth + 1)
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise ConfigError(f"record dict key {k!r} cannot be a JSON object key")
            out[str(k) if not isinstance(k, str) else k] = to_jsonable(v, _depth + 1)
        return out
    raise ConfigError(f"record value {obj!r} of type {type(obj).__name__} is not JSON-serialisable; "
                      "convert it to numbers, strings, lists or dicts")


def write_records(path, records, overwrite: bool = False) -> None:
    """Write a records list as JSON to ``path`` (atomically)."""
    data = json.dumps([to_jsonable(r) for r in records], allow_nan=True).encode("utf-8")
    with atomic_output(path, overwrite) as f:
        f.write(data)


def _check_depth(path: str, value) -> None:
    """Raise if ``value`` nests containers deeper than :data:`MAX_RECORDS_DEPTH` (no recursion)."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d >= MAX_RECORDS_DEPTH:
                raise FileFormatError(path, "records", None, None,
                                      f"JSON nested deeper than {MAX_RECORDS_DEPTH} levels")
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))


def read_records(binary_path, record_path=None, allow_pickle: bool = False, expected_len=None):
    """Load the records sidecar of ``binary_path``; ``None`` if there is none.

    The default sidecar is ``<binary>.records.json``, then PYINK's ``<binary>.records.pkl``.
    An explicit ``record_path`` must exist (else :class:`~somtorch.errors.MissingFileError`, a
    :class:`FileNotFoundError`) and be a regular file; it is read as pickle if it ends in ``.pkl`` and as
    JSON otherwise. Pickles need ``allow_pickle=True`` (else :class:`PickleNotAllowedError`).
    If ``expected_len`` is given the list must have that many entries. JSON larger than
    :data:`MAX_RECORDS_BYTES` or nested deeper than :data:`MAX_RECORDS_DEPTH` is refused
    (:class:`FileFormatError`).
    """
    if record_path is None:
        cands = [records_path(binary_path, "json"), records_path(binary_path, "pkl")]
        found = [c for c in cands if os.path.exists(c)]
        if not found:
            return None
        record_path = found[0]
    rp = os.fspath(record_path)
    size = check_regular_file(rp, "records")
    if rp.endswith(".pkl"):
        if not allow_pickle:
            raise PickleNotAllowedError(
                f"{rp}: records are a pickle, which can run arbitrary code when loaded; pass "
                "allow_pickle=True if you trust this file (and consider converting it to JSON with "
                "somtorch.io.write_records)")
        recs = safe_load(rp, "records")
    else:
        if size > MAX_RECORDS_BYTES:
            raise FileFormatError(rp, "records", f"{size} bytes", f"at most {MAX_RECORDS_BYTES} bytes of JSON")
        try:
            with open_regular(rp, "r", "records", encoding="utf-8") as f:
                recs = json.load(f)
        except RecursionError:
            raise FileFormatError(rp, "records", None, None,
                                  f"JSON nested deeper than {MAX_RECORDS_DEPTH} levels") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise FileFormatError(rp, "records", None, None, f"invalid JSON: {exc}") from None
        _check_depth(rp, recs)
    if not isinstance(recs, list):
        raise FileFormatError(rp, "records", type(recs).__name__, "a list with one entry per image")
    if expected_len is not None and len(recs) != expected_len:
        raise FileFormatError(rp, "records length", len(recs), expected_len)
    return recs

