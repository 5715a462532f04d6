"""What a resumable job was started on: identities of input files and arrays, and their changes.

A checkpoint (training) or a partial output (mapping) records the identity of its inputs; a
resume computes them again and refuses to go on when the content differs, with a message saying
what changed (size, modification time, content hash, shape, config fields).

Convention
----------
A *file identity* is ``{"kind": "file", "path", "size", "mtime_ns", "offset", "hash", "hash_kind"}``:
``hash`` is a BLAKE2b-128 digest of the file's *data region* (bytes ``offset..size``; ``offset``
is the header length of a PINK file, 0 otherwise). Files up to :data:`FULL_HASH_LIMIT` bytes
(default 8 GiB, ``$SOMTORCH_FULL_HASH_LIMIT``) are hashed entirely (``hash_kind="full"``, ~455 MB/s
from the page cache on a 2-core x86 CPU: ~2 s per GB, only when a checkpoint or partial output is kept); larger ones by 1024 evenly spaced 64 KiB blocks plus the first and last MiB
(``hash_kind="sampled"``), which catches any appended, removed or replaced data and nearly any
in-place edit. Content decides: a file that was moved or touched but holds the same data is
accepted; a different size or hash is refused. An *array identity* (in-memory data, SOM weights)
is ``{"kind": "array", "shape", "dtype", "hash"}`` over the raw bytes.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

__all__ = ["FULL_HASH_LIMIT", "file_identity", "array_identity", "images_identity", "identity_changes",
           "config_changes", "describe_changes", "check_same_inputs", "read_manifest"]

FULL_HASH_LIMIT = int(os.environ.get("SOMTORCH_FULL_HASH_LIMIT", 8 << 30))
_BLOCK = 1 << 16
_SAMPLES = 1024


def _hash_region(path: str, offset: int, size: int, limit: int) -> tuple[str, str]:
    h = hashlib.blake2b(digest_size=16)
    n = max(size - offset, 0)
    with open(path, "rb") as f:
        if n <= limit:
            f.seek(offset)
            while chunk := f.read(1 << 22):
                h.update(chunk)
            return h.hexdigest(), "full"
        edges = [(offset, 1 << 20), (size - (1 << 20), 1 << 20)]
        step = (n - _BLOCK) // (_SAMPLES - 1)
        for pos, k in edges + [(offset + i * step, _BLOCK) for i in range(_SAMPLES)]:
            f.seek(pos)
            h.update(pos.to_bytes(8, "little"))
            h.update(f.read(k))
    return h.hexdigest(), "sampled"


def file_identity(path, offset: int | None = None, limit: int | None = None) -> dict:
    """Identity of the file at ``path`` (``offset=None``: the PINK header length if it has one, else 0)."""
    from somtorch.io.files import check_regular_file

    path = os.fspath(path)
    check_regular_file(path, "input")
    if offset is None:
        offset = 0
        try:
            from somtorch.io import read_header

            offset = int(read_header(path).offset)
        except Exception:  # noqa: BLE001 -- not a PINK file: the whole file is data
            offset = 0
    st = os.stat(path)
    digest, kind = _hash_region(path, offset, st.st_size, FULL_HASH_LIMIT if limit is None else limit)
    return {"kind": "file", "path": os.path.abspath(path), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
            "offset": int(offset), "hash": digest, "hash_kind": kind}


def array_identity(x) -> dict:
    """Identity of an in-memory array or tensor (its shape, dtype and bytes)."""
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().contiguous().numpy()
    a = np.ascontiguousarray(np.asarray(x))
    h = hashlib.blake2b(a.view(np.uint8).reshape(-1) if a.size else b"", digest_size=16)
    return {"kind": "array", "shape": list(a.shape), "dtype": str(a.dtype), "hash": h.hexdigest()}


def images_identity(src) -> dict:
    """Identity of a training/mapping input: the file behind an ImageSource, else its array."""
    path = getattr(src, "path", None)
    if path is not None and os.path.isfile(path):
        return file_identity(path)
    arr = src._np if getattr(src, "_np", None) is not None else src._t
    return array_identity(arr)


def _when(ns) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(int(ns) / 1e9, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def identity_changes(old: dict | None, new: dict, what: str = "input") -> list[str]:
    """Human-readable differences in content between two identities (empty: same content).

    A moved or touched file with the same content is not a change."""
    if not old:
        return []
    if old.get("kind") != new.get("kind"):
        return [f"{what}: was {old.get('kind')} {old.get('path', old.get('shape'))}, now {new.get('kind')} "
                f"{new.get('path', new.get('shape'))}"]
    out = []
    if new["kind"] == "file":
        name = f"{what} {new['path']}" + (f" (was {old['path']})" if old.get("path") != new["path"] else "")
        mt = ("" if old.get("mtime_ns") == new["mtime_ns"] or old.get("mtime_ns") is None else
              f", modified {_when(old['mtime_ns'])} -> {_when(new['mtime_ns'])}")
        if old.get("size") != new["size"]:
            out.append(f"{name}: size {old.get('size')} -> {new['size']} bytes{mt}")
        elif old.get("hash") != new["hash"] or old.get("offset") != new["offset"]:
            out.append(f"{name}: content hash of the data region {str(old.get('hash'))[:12]}... -> "
                       f"{new['hash'][:12]}... (same size){mt}")
        return out
    for key in ("shape", "dtype"):
        if old.get(key) != new.get(key):
            out.append(f"{what}: {key} {old.get(key)} -> {new.get(key)}")
    if not out and old.get("hash") != new.get("hash"):
        out.append(f"{what}: content hash {str(old.get('hash'))[:12]}... -> {new['hash'][:12]}... (the values differ)")
    return out


def config_changes(old: dict | None, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every (nested) field that differs; keys only in one side included."""
    if old is None:
        return []
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_changes(a, b, f"{prefix}{k}."))
        elif (list(a) if isinstance(a, tuple) else a) != (list(b) if isinstance(b, tuple) else b):
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def describe_changes(old: dict | None, new: dict) -> list[str]:
    """Differences between two records ``{name: identity or config dict}`` (see module docstring)."""
    if old is None:
        return []
    out = []
    for key in new:
        a, b = old.get(key), new[key]
        if isinstance(b, dict) and b.get("kind") in ("file", "array"):
            out.extend(identity_changes(a, b, key) if a is not None else [f"{key}: not recorded"])
        elif isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_changes(a, b, f"{key}."))
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def check_same_inputs(old: dict | None, new: dict, where, what: str = "checkpoint") -> None:
    """Raise :class:`~somtorch.errors.ConfigError` naming every change when ``new`` differs from ``old``."""
    from somtorch.errors import ConfigError

    changes = describe_changes(old, new)
    if changes:
        raise ConfigError(where, "resume inputs", None, None,
                          f"the {what} was written for other inputs, refusing to resume: " + "; ".join(changes)
                          + ". Resume with the original inputs and settings, or start afresh")


def read_manifest(path, max_bytes: int = 1 << 20) -> dict:
    """A small JSON object (inputs record), read with typed errors: too big, not JSON, not an object."""
    import json

    from somtorch.errors import FileFormatError
    from somtorch.io.files import check_regular_file, open_regular

    size = check_regular_file(path, "inputs record")
    if size > max_bytes:
        raise FileFormatError(path, "inputs record", f"{size} bytes", f"at most {max_bytes} bytes")
    try:
        with open_regular(path, "r", "inputs record", encoding="utf-8") as f:
            obj = json.load(f)
    except RecursionError:
        raise FileFormatError(path, "inputs record", None, None, "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise FileFormatError(path, "inputs record", None, None, f"invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise FileFormatError(path, "inputs record", type(obj).__name__, "a JSON object")
    return obj
