"""A preprocessing run: catalogue + FITS images + recipe -> PINK image binary + records.

:func:`run_preprocessing` reads the catalogue, loads each entry's FITS file per channel (or
cuts it from a mosaic at the entry's RA/Dec), stacks the channels on the first channel's pixel
grid, applies the recipe to each channel and writes, next to ``output``:

* ``output`` -- the PINK image binary (:class:`somtorch.io.ImageWriter`), images in catalogue
  order, shape ``(C, H, W)`` (rank 2 when ``C == 1``);
* ``output.records.json`` -- one record per image: ``index`` (image number), ``row`` (0-based
  catalogue row), the id column and any ``record_columns`` (plus ``n_padded`` for cutouts);
* ``output.skipped.csv`` -- one line per skipped entry: ``row, id, channel, file, reason,
  detail`` where ``reason`` is one of :data:`SKIP_REASONS`;
* ``output.summary.json`` -- counts (rows, written, skipped per reason, partial cutouts), the
  image shape, settings and output paths.

Entries that fail are never silently dropped: a missing file, a corrupt FITS file, a cutout
outside the mosaic, an all-NaN image, an image of the wrong shape or a recipe error skips that
entry, names it (id, file) and gives the reason. Work is split into chunks of consecutive
rows processed by ``workers`` processes (:mod:`concurrent.futures`); each finished chunk is
saved in ``output.work/`` (a ``.npy`` of images and a JSON of records/skips) and listed in
``output.work/state.json``. Re-running with the same settings resumes: finished chunks are not
recomputed. When all chunks are done the outputs are assembled in catalogue order (the result
does not depend on ``workers`` or on interruptions) and written atomically; the work folder is
then removed. Existing outputs are never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from somtorch.data.catalogue import check_id_column, read_catalogue
from somtorch.data.fits import (
    MissingFileError,
    NoOverlapError,
    cutout,
    read_fits_image,
    stack_channels,
)
from somtorch.errors import (
    ConfigError,
    FileFormatError,
    OutputExistsError,
    ShapeError,
    UnsafePathError,
)
from somtorch.io.files import check_folder

__all__ = ["ChannelSpec", "PreprocessConfig", "run_preprocessing", "process_entry", "EntrySkipped",
           "SKIP_REASONS", "output_paths"]

#: Reasons an entry is skipped.
SKIP_REASONS = ("missing file", "corrupt FITS", "no overlap", "partial overlap", "all NaN",
                "wrong shape", "recipe failed")


class EntrySkipped(Exception):
    """Raised inside :func:`process_entry` for an entry that cannot be written."""

    def __init__(self, reason: str, detail: str, channel: str | None = None, file: str | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.channel, self.file = reason, detail, channel, file


@dataclass
class ChannelSpec:
    """One image channel: catalogue column with the file name, recipe, FITS HDU."""

    name: str = "radio"
    file_column: str = "File_name"
    recipe: list | None = None  # None: the run's recipe
    hdu: int | str | None = None


@dataclass
class PreprocessConfig:
    """Settings of :func:`run_preprocessing` (see the module docstring).

    ``image_dir`` prefixes relative file names (default: the catalogue's folder). ``cutout_size`` set: every file is a mosaic and
    the entry is cut at (``ra_column``, ``dec_column``) with ``cutout_size`` pixels.
    ``image_shape`` is the expected shape of channel 0 before the recipe (``None``: the
    cutout size, else the shape of the first readable entry, in catalogue order).
    ``resample``: other channels not on channel 0's grid are resampled onto it (else skipped as
    'wrong shape'). ``max_padded_fraction``: cutouts with a larger fraction of pixels outside
    the mosaic are skipped ('partial overlap').
    """

    catalogue: Any = None  # path or DataFrame
    output: str = "images.bin"
    image_dir: str | None = None  # None: the catalogue's folder (the working folder for a DataFrame)
    id_column: str = "Component_name"
    channels: list = field(default_factory=lambda: [ChannelSpec()])
    recipe: list = field(default_factory=list)
    ra_column: str = "RA"
    dec_column: str = "DEC"
    cutout_size: int | None = None
    image_shape: tuple | None = None
    resample: bool = True
    max_padded_fraction: float = 0.5
    record_columns: list = field(default_factory=list)
    workers: int = 1
    chunk_size: int = 64
    overwrite: bool = False
    resume: bool = True
    progress: bool = True
    comment: str | None = None


def output_paths(output) -> dict[str, str]:
    """The files a run writes for image binary ``output``."""
    o = os.fspath(output)
    return {"binary": o, "records": o + ".records.json", "skipped": o + ".skipped.csv",
            "summary": o + ".summary.json", "work": o + ".work"}


# ------------------------------------------------------------------------------------ entries
@lru_cache(maxsize=4)
def _read_cached(path: str, hdu, mtime: float):
    return read_fits_image(path, hdu=hdu, dtype=np.float32)


def _load(path: str, hdu, mosaic: bool):
    if mosaic:
        try:
            return _read_cached(path, hdu, os.path.getmtime(path))
        except OSError:
            pass
    return read_fits_image(path, hdu=hdu, dtype=np.float32)


def process_entry(entry: dict, spec: dict) -> np.ndarray:
    """Load, stack and preprocess one catalogue entry; ``(C, H, W)`` float32.

    ``entry``: ``{"files": [...], "ra", "dec"}``; ``spec``: the run settings as plain data.
    Raises :class:`EntrySkipped` with the reason when the entry cannot be written.
    """
    from somtorch.preprocessing import preprocess_image

    chans = spec["channels"]
    mosaic = spec["cutout_size"] is not None
    loaded, n_padded = [], 0
    for k, ch in enumerate(chans):
        fname = entry["files"][k]
        if fname is None or (isinstance(fname, float) and np.isnan(fname)) or str(fname) == "":
            raise EntrySkipped("missing file", f"no file name in column {ch['file_column']!r}",
                               ch["name"], None)
        path = _confined(spec["image_dir"], str(fname))
        if path is None:
            raise UnsafePathError(f"file name {fname!r} resolves outside the image folder {spec['image_dir']}")
        try:
            im = _load(path, ch["hdu"], mosaic)
        except MissingFileError as e:
            raise EntrySkipped("missing file", str(e), ch["name"], path) from None
        except FileFormatError as e:
            raise EntrySkipped("corrupt FITS", str(e), ch["name"], path) from None
        except ShapeError as e:
            raise EntrySkipped("wrong shape", str(e), ch["name"], path) from None
        if mosaic and k == 0:
            try:
                im = cutout(im, entry["ra"], entry["dec"], spec["cutout_size"])
            except NoOverlapError as e:
                raise EntrySkipped("no overlap", str(e), ch["name"], path) from None
            n_padded = im.n_padded
            if n_padded > spec["max_padded_fraction"] * im.data.size:
                raise EntrySkipped("partial overlap", f"{path}: {n_padded} of {im.data.size} "
                                   f"cutout pixels outside the image (> {spec['max_padded_fraction']:.0%})",
                                   ch["name"], path)
        elif mosaic:  # other channels: a cutout covering channel 0's, resampled below
            im = _cover(im, loaded[0][0], entry, spec["cutout_size"], ch["name"], path)
        elif k == 0 and tuple(im.data.shape) != tuple(spec["image_shape"]):
            raise EntrySkipped("wrong shape", f"{path}: image shape {tuple(im.data.shape)}, "
                               f"expected {tuple(spec['image_shape'])}", ch["name"], path)
        loaded.append((im, path))
    try:
        stack = stack_channels([im for im, _ in loaded], resample=spec["resample"], dtype=np.float64)
    except ShapeError as e:
        raise EntrySkipped("wrong shape", f"{loaded[-1][1]}: {e}", chans[-1]["name"],
                           loaded[-1][1]) from None
    out = []
    for k, ch in enumerate(chans):
        plane = stack[k]
        if not np.isfinite(plane).any():
            raise EntrySkipped("all NaN", f"{loaded[k][1]}: no finite pixel"
                               + (" in the cutout" if mosaic else ""), ch["name"], loaded[k][1])
        try:
            res = np.asarray(preprocess_image(plane, ch["recipe"]), dtype=np.float32)
        except Exception as e:  # any recipe error skips the entry, with its message
            raise EntrySkipped("recipe failed", f"{loaded[k][1]}: {type(e).__name__}: {e}",
                               ch["name"], loaded[k][1]) from None
        if not np.isfinite(res).all():
            raise EntrySkipped("recipe failed", f"{loaded[k][1]}: non-finite output pixels",
                               ch["name"], loaded[k][1])
        out.append(res)
    if len({o.shape for o in out}) != 1:
        raise EntrySkipped("wrong shape", f"channels give shapes {[o.shape for o in out]} after "
                           "their recipes", None, loaded[0][1])
    entry["n_padded"] = int(n_padded)
    return np.stack(out)


def _cover(im, first, entry: dict, size: int, name: str, path: str):
    """A cutout of ``im`` around the entry wide enough to cover ``first`` (any rotation)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    s0 = float(np.max(proj_plane_pixel_scales(first.wcs)))
    sk = float(np.min(proj_plane_pixel_scales(im.wcs)))
    side = int(np.ceil(size * s0 / sk * np.sqrt(2.0))) + 4
    try:
        return cutout(im, entry["ra"], entry["dec"], side)
    except NoOverlapError as e:
        raise EntrySkipped("no overlap", str(e), name, path) from None


def _worker_init() -> None:
    import torch

    import somtorch.data  # noqa: F401  (registers the crop/resize steps)
    torch.set_num_threads(1)


def _process_chunk(args) -> tuple[int, np.ndarray, list[dict], list[dict]]:
    chunk_id, entries, spec = args
    images, done, skipped = [], [], []
    for e in entries:
        try:
            img = process_entry(e, spec)
        except EntrySkipped as s:
            skipped.append({"row": e["row"], "id": e["id"], "channel": s.channel, "file": s.file,
                            "reason": s.reason, "detail": s.detail})
            continue
        images.append(img)
        done.append({"row": e["row"], "n_padded": e.get("n_padded", 0)})
    arr = np.stack(images) if images else np.zeros((0,), np.float32)
    return chunk_id, arr.astype(np.float32), done, skipped


# ------------------------------------------------------------------------------------ the run
def _spec(cfg: PreprocessConfig) -> dict:
    chans = []
    for ch in cfg.channels:
        c = asdict(ch) if isinstance(ch, ChannelSpec) else dict(ChannelSpec(**ch).__dict__)
        c["recipe"] = list(cfg.recipe if c["recipe"] is None else c["recipe"])
        chans.append(c)
    if not chans:
        raise ConfigError(None, "channels", [], "at least one channel")
    image_dir = cfg.image_dir
    if image_dir is None:
        image_dir = "." if isinstance(cfg.catalogue, pd.DataFrame) else os.path.dirname(
            os.path.abspath(os.path.expanduser(str(cfg.catalogue))))
    return {"channels": chans, "image_dir": os.path.abspath(os.path.expanduser(str(image_dir))),
            "cutout_size": None if cfg.cutout_size is None else int(cfg.cutout_size),
            "resample": bool(cfg.resample), "max_padded_fraction": float(cfg.max_padded_fraction),
            "image_shape": None if cfg.image_shape is None else [int(s) for s in cfg.image_shape]}


def _confined(image_dir: str, fname: str) -> str | None:
    """``image_dir/fname`` normalised, or ``None`` if it leaves ``image_dir`` (``../``, absolute)."""
    root = os.path.normpath(image_dir)
    full = os.path.normpath(os.path.join(root, fname))
    return full if full.startswith(root if root.endswith(os.sep) else root + os.sep) else None


def _check_confined(names, image_dir: str, cat_path, column: str) -> None:
    """Raise :class:`UnsafePathError` if a file name leaves ``image_dir`` (``../``, absolute)."""
    root = os.path.normpath(image_dir)
    for i, fname in enumerate(names):
        if not isinstance(fname, str) or not fname:
            continue
        if _confined(root, fname) is None:
            full = os.path.normpath(os.path.join(root, fname))
            raise UnsafePathError(f"{cat_path or 'catalogue'}: row {i}, column {column!r}: file name {fname!r} "
                                  f"resolves to {full}, outside the image folder {root}; expected a path "
                                  "relative to image_dir without '..' (set image_dir to a folder holding all files)")


def _infer_shape(cat: pd.DataFrame, spec: dict) -> list[int]:
    ch = spec["channels"][0]
    for fname in cat[ch["file_column"]]:
        if not isinstance(fname, str) or not fname:
            continue
        try:
            return list(read_fits_image(os.path.join(spec["image_dir"], fname), hdu=ch["hdu"]).shape)
        except Exception:  # unreadable entries are reported later, in their own right
            continue
    raise ConfigError(None, "image_shape", None, "an explicit shape",
                      "no entry of the catalogue could be read to infer it")


def _fingerprint(cat: pd.DataFrame, spec: dict, cols: list[str], chunk_size: int) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(cat[cols].astype(str), index=False).to_numpy().tobytes())
    h.update(json.dumps({"spec": spec, "chunk": chunk_size}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def _write_json(path: str, obj, overwrite: bool = True) -> None:
    from somtorch.io import atomic_output, to_jsonable

    with atomic_output(path, overwrite=overwrite, mode="w") as f:
        json.dump(to_jsonable(obj), f, indent=1)
        f.write("\n")


def _save_chunk(work: str, chunk_id: int, arr: np.ndarray, done: list, skipped: list) -> None:
    from somtorch.io import atomic_output

    with atomic_output(os.path.join(work, f"chunk_{chunk_id:06d}.npy"), overwrite=True) as f:
        np.save(f, arr, allow_pickle=False)
    _write_json(os.path.join(work, f"chunk_{chunk_id:06d}.json"), {"done": done, "skipped": skipped})


def _load_chunk(work: str, chunk_id: int):
    with open(os.path.join(work, f"chunk_{chunk_id:06d}.json"), encoding="utf-8") as f:
        meta = json.load(f)
    arr = np.load(os.path.join(work, f"chunk_{chunk_id:06d}.npy"), allow_pickle=False)
    return arr, meta["done"], meta["skipped"]


def _as_config(config=None, **kw) -> PreprocessConfig:
    if config is None:
        config = PreprocessConfig()
    elif isinstance(config, dict):
        config = PreprocessConfig(**config)
    for k, v in kw.items():
        if not hasattr(config, k):
            raise ConfigError(None, k, v, "a field of PreprocessConfig")
        setattr(config, k, v)
    return config


def run_preprocessing(config: PreprocessConfig | dict | None = None, *,
                      stop_after_chunks: int | None = None, **kw) -> dict:
    """Run (or resume) a preprocessing run; returns the summary dict (also written as JSON).

    ``stop_after_chunks`` (testing/operations) stops after computing that many new chunks, as
    an interruption would, returning ``status='interrupted'``; running again resumes.
    Keyword arguments override fields of ``config``.
    """
    import somtorch.data.steps  # noqa: F401  (crop/resize)
    from somtorch.preprocessing.pipeline import _parse

    cfg = _as_config(config, **kw)
    t0 = time.time()
    paths = output_paths(cfg.output)
    cat_path = None
    if isinstance(cfg.catalogue, pd.DataFrame):
        cat = cfg.catalogue.reset_index(drop=True)
        check_id_column(cat, cfg.id_column)
    else:
        if cfg.catalogue is None:
            raise ConfigError(None, "catalogue", None, "a catalogue path or DataFrame")
        cat_path = os.path.abspath(os.path.expanduser(str(cfg.catalogue)))
        cat = read_catalogue(cat_path, cfg.id_column)
    spec = _spec(cfg)
    for ch in spec["channels"]:
        if ch["file_column"] not in cat.columns:
            raise ConfigError(cat_path, f"channel {ch['name']!r}.file_column", ch["file_column"],
                              f"one of the catalogue columns {list(cat.columns)[:20]}")
        for st in ch["recipe"]:
            _parse(st)  # unknown step names fail here, not in every entry
    check_folder(spec["image_dir"], "image_dir")
    for ch in spec["channels"]:
        _check_confined(cat[ch["file_column"]], spec["image_dir"], cat_path, ch["file_column"])
    cols = [cfg.id_column] + [c["file_column"] for c in spec["channels"]]
    if spec["cutout_size"] is not None:
        for c in (cfg.ra_column, cfg.dec_column):
            if c not in cat.columns:
                raise ConfigError(cat_path, "ra_column/dec_column", c, "a catalogue column")
        cols += [cfg.ra_column, cfg.dec_column]
    for c in cfg.record_columns:
        if c not in cat.columns:
            raise ConfigError(cat_path, "record_columns", c, "catalogue columns")
    if int(cfg.chunk_size) < 1 or int(cfg.workers) < 1:
        raise ConfigError(None, "chunk_size/workers", (cfg.chunk_size, cfg.workers), ">= 1")

    # outputs: never silently replaced; an unfinished run resumes
    work = paths["work"]
    state_path = os.path.join(work, "state.json")
    existing = [p for k, p in paths.items() if k != "work" and os.path.exists(p)]
    state = None
    if os.path.exists(state_path) and cfg.resume and not cfg.overwrite:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
    if existing and not cfg.overwrite and not (state and state.get("assembling")):
        raise OutputExistsError(f"{existing[0]}: output exists; pass overwrite=True to replace it")
    if os.path.isdir(work) and state is None:
        if not cfg.overwrite:
            raise OutputExistsError(f"{work}: an unfinished run exists; pass resume=True to continue "
                                    "it or overwrite=True to start again")
        shutil.rmtree(work)
    if spec["image_shape"] is None:
        if spec["cutout_size"] is not None:
            spec["image_shape"] = [spec["cutout_size"]] * 2
        elif state is not None:
            spec["image_shape"] = state["spec"]["image_shape"]
        else:
            spec["image_shape"] = _infer_shape(cat, spec)
    fp = _fingerprint(cat, spec, cols, int(cfg.chunk_size))
    n = len(cat)
    n_chunks = (n + int(cfg.chunk_size) - 1) // int(cfg.chunk_size)
    if state is not None and state.get("fingerprint") != fp:
        raise ConfigError(state_path, "fingerprint", state.get("fingerprint"), fp,
                          "the unfinished run used another catalogue or other settings; pass "
                          "overwrite=True to start again")
    if state is None:
        os.makedirs(work, exist_ok=True)
        state = {"fingerprint": fp, "spec": spec, "n_rows": n, "chunk_size": int(cfg.chunk_size),
                 "done_chunks": [], "done_rows": 0, "assembling": False}
        _write_json(state_path, state)
    done_set = {c for c in state["done_chunks"]
                if os.path.exists(os.path.join(work, f"chunk_{c:06d}.json"))}

    ids = cat[cfg.id_column].tolist()
    files = [cat[ch["file_column"]].tolist() for ch in spec["channels"]]
    if spec["cutout_size"] is not None:
        ras, decs = cat[cfg.ra_column].to_numpy(float), cat[cfg.dec_column].to_numpy(float)

    def entries(c: int) -> list[dict]:
        lo, hi = c * int(cfg.chunk_size), min(n, (c + 1) * int(cfg.chunk_size))
        out = []
        for r in range(lo, hi):
            e = {"row": r, "id": ids[r], "files": [f[r] for f in files]}
            if spec["cutout_size"] is not None:
                e["ra"], e["dec"] = float(ras[r]), float(decs[r])
            out.append(e)
        return out

    todo = [c for c in range(n_chunks) if c not in done_set]
    if stop_after_chunks is not None:
        todo = todo[:max(0, int(stop_after_chunks))]
    from tqdm.auto import tqdm

    bar = tqdm(total=n, initial=n - sum(len(range(c * cfg.chunk_size, min(n, (c + 1) * cfg.chunk_size)))
                                        for c in range(n_chunks) if c not in done_set),
               desc="preprocess", unit="img", disable=not cfg.progress)

    def finished(res) -> None:
        cid, arr, done, skipped = res
        _save_chunk(work, cid, arr, done, skipped)
        done_set.add(cid)
        state["done_chunks"] = sorted(done_set)
        ranges = [[c * cfg.chunk_size, min(n, (c + 1) * cfg.chunk_size)] for c in sorted(done_set)]
        state["done_row_ranges"] = ranges  # [first, end) catalogue rows of each finished chunk
        state["done_rows"] = int(sum(hi - lo for lo, hi in ranges))
        _write_json(state_path, state)
        bar.update(len(done) + len(skipped))

    try:
        if int(cfg.workers) <= 1 or len(todo) <= 1:
            _worker_init_light()
            for c in todo:
                finished(_process_chunk((c, _plain_entries(entries(c)), spec)))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(int(cfg.workers), mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init) as ex:
                futs = [ex.submit(_process_chunk, (c, _plain_entries(entries(c)), spec)) for c in todo]
                try:
                    for fut in as_completed(futs):
                        finished(fut.result())
                except BaseException:
                    for f in futs:
                        f.cancel()
                    raise
    finally:
        bar.close()
    if len(done_set) < n_chunks:
        return {"status": "interrupted", "n_rows": n, "done_rows": state["done_rows"],
                "work": work, "elapsed_s": time.time() - t0}
    return _assemble(cfg, cat, spec, paths, state, state_path, n_chunks, cat_path, t0)


def _worker_init_light() -> None:
    import somtorch.data.steps  # noqa: F401


def _plain_entries(es: list[dict]) -> list[dict]:
    from somtorch.io import to_jsonable

    out = []
    for e in es:
        e = dict(e)
        e["id"] = to_jsonable(e["id"].item() if hasattr(e["id"], "item") else e["id"])
        e["files"] = [None if (f is None or (isinstance(f, float) and np.isnan(f))) else str(f)
                      for f in e["files"]]
        out.append(e)
    return out


def _assemble(cfg, cat, spec, paths, state, state_path, n_chunks, cat_path, t0) -> dict:
    """Write binary, records, skipped list and summary from the finished chunks."""
    from somtorch.io import ImageWriter, atomic_output

    overwrite = bool(cfg.overwrite or state.get("assembling"))
    state["assembling"] = True
    _write_json(state_path, state)
    work = paths["work"]
    skipped_all: list[dict] = []
    n_written, n_partial, shape = 0, 0, None
    writer = None
    # the binary holds the chunks' images: refuse before writing anything if they cannot fit
    from somtorch.io.atomic import check_free_space

    needed = sum(os.path.getsize(os.path.join(work, f"chunk_{c:06d}.npy")) for c in range(n_chunks)
                 if os.path.exists(os.path.join(work, f"chunk_{c:06d}.npy")))
    check_free_space(paths["binary"], needed, "image binary")
    try:
        for c in range(n_chunks):
            arr, done, skipped = _load_chunk(work, c)
            skipped_all += skipped
            for img, d in zip(arr, done):
                if shape is None:
                    shape = tuple(img.shape)
                    header = shape[1:] if shape[0] == 1 else shape
                    writer = ImageWriter(paths["binary"], 0, header, comment=cfg.comment,
                                         overwrite=overwrite)
                if tuple(img.shape) != shape:
                    raise ShapeError(f"row {d['row']}: image shape {img.shape}, expected {shape}")
                r = d["row"]
                rec = {"index": n_written, "row": r,
                       cfg.id_column: cat[cfg.id_column].iat[r]}
                for col in cfg.record_columns:
                    rec[col] = cat[col].iat[r]
                if spec["cutout_size"] is not None:
                    rec["n_padded"] = d["n_padded"]
                    n_partial += d["n_padded"] > 0
                writer.add(img[0] if shape[0] == 1 else img, attributes=_clean(rec))
                n_written += 1
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    sk = pd.DataFrame(skipped_all, columns=["row", "id", "channel", "file", "reason", "detail"])
    with atomic_output(paths["skipped"], overwrite=overwrite, mode="w") as f:
        sk.to_csv(f, index=False)
    if writer is None:
        import warnings

        warnings.warn(f"{paths['binary']}: every one of the {len(cat)} entries was skipped; no image "
                      f"binary written (see {paths['skipped']})", RuntimeWarning, stacklevel=3)
    summary = {
        "status": "done" if n_written else "empty", "n_rows": len(cat), "written": n_written, "skipped": len(skipped_all),
        "skipped_by_reason": dict(Counter(s["reason"] for s in skipped_all)),
        "partial_cutouts": int(n_partial), "image_shape": None if shape is None else list(shape),
        "catalogue": cat_path, "id_column": cfg.id_column,
        "channels": [c["name"] for c in spec["channels"]], "spec": spec,
        "outputs": {k: v for k, v in paths.items() if k != "work"},
        "skipped_entries": skipped_all,
        "elapsed_s": round(time.time() - t0, 3),
    }
    _write_json(paths["summary"], summary, overwrite=overwrite)
    shutil.rmtree(work, ignore_errors=True)
    return summary


def _clean(rec: dict) -> dict:
    out = {}
    for k, v in rec.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out[k] = v
    return out
