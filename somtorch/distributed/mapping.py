"""Sharded, resumable mapping: every rank writes its own rows of the PINK mapping/transform files.

Convention
----------
Mapping and transform files have a fixed header and fixed-size records (one row of ``N``
distances / ``N`` (flip, angle) pairs per image), so rank ``r`` of ``K`` can ``pwrite`` its rows
straight into one preallocated file (:class:`somtorch.io.atomic.PreallocatedOutput`), with no
gather and no join step. Images are split into contiguous shards whose boundaries are multiples
of the mapping batch size (:func:`shard_rows`), so every image is computed in the same batch as
in a single-process run and the files are **byte-identical** to it.

A one-byte-per-row journal (``.<name>.partial.rows``) records finished rows. A rerun with
``resume=True`` after a crash (a killed rank, a full disk, a power cut) maps only the rows the
journal lacks -- shards are idempotent. Rank 0 creates the partial files before the others open
them and commits (checks every row, fsyncs, renames into place) after all ranks are done; a
failure on any rank is reported to every rank, which all stop with an error, keeping the partial
files for the rerun.

Resume identity: before the partial files are created, rank 0 writes ``.<mapping>.partial.json``
with the identity of the image file (size, modification time, content hash of the data region;
:mod:`somtorch.io.identity`), of the SOM's weights and its configuration. A resume recomputes
them and refuses, naming what changed, when they differ (a partial output without this record is
refused too). Before creating the outputs rank 0 checks that their final size fits the free disk
space (:func:`~somtorch.io.atomic.check_free_space`); a disk that fills up during the run gives
:class:`~somtorch.errors.OutOfSpaceError` naming the file and the size.

Across nodes the output folder must be on a file system every node sees (NFS, Lustre, GPFS...);
each rank flushes and fsyncs its rows before rank 0 checks the journal and commits. Every rank
uses rank 0's batch size (budgets computed from free device memory may differ between ranks).
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import torch

from somtorch.distributed.env import (
    DistributedError,
    all_reduce_flag,
    all_reduce_sum_,
    broadcast_object,
    detect,
    is_distributed,
)

__all__ = ["shard_rows", "row_runs", "map_to_files_sharded"]


def shard_rows(n: int, world_size: int, rank: int, align: int = 1) -> range:
    """Contiguous rows of ``n`` for ``rank`` of ``world_size``, boundaries multiples of ``align``.

    Blocks of ``align`` rows are dealt out as evenly as possible (the first ranks get one block
    more); shards are disjoint and cover ``0..n``.

    >>> [shard_rows(10, 3, r, align=2) for r in range(3)]
    [range(0, 4), range(4, 8), range(8, 10)]
    """
    if world_size < 1 or not 0 <= rank < world_size:
        from somtorch.errors import ConfigError

        raise ConfigError(None, "rank", rank, f"0..{world_size - 1}")
    align = max(int(align), 1)
    blocks = -(-n // align)
    per, extra = divmod(blocks, world_size)
    b0 = rank * per + min(rank, extra)
    b1 = b0 + per + (1 if rank < extra else 0)
    return range(min(b0 * align, n), min(b1 * align, n))


def row_runs(rows: np.ndarray, align: int = 1) -> list[range]:
    """Sorted row indices as contiguous ranges, split at multiples of ``align``.

    >>> row_runs(np.array([0, 1, 2, 5, 6, 7, 8]), align=4)
    [range(0, 3), range(5, 8), range(8, 9)]
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return []
    align = max(int(align), 1)
    brk = np.diff(rows) != 1
    if align > 1:
        brk |= rows[1:] % align == 0
    cut = np.flatnonzero(brk) + 1
    return [range(int(p[0]), int(p[-1]) + 1) for p in np.split(rows, cut)]


def _disk_error(e: OSError, path, needed: int | None = None) -> OSError:
    from somtorch.errors import OutOfSpaceError

    if isinstance(e, OutOfSpaceError) and e.detail and "checked before" in e.detail:
        return e
    if e.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1)):
        from somtorch.io.atomic import space_error

        return space_error(e, path, needed, f"{os.strerror(e.errno)} while writing; the partial output and its "
                           "row journal are kept: free space and rerun with resume=true to map only the "
                           "missing rows")
    return e


def mapping_in_progress(mapping_path) -> bool:
    """Does ``mapping_path`` belong to an unfinished mapping (its partial-run record exists)?"""
    return os.path.exists(_manifest_path(mapping_path))


def _manifest_path(mapping_path) -> str:
    d, name = os.path.split(os.path.abspath(os.fspath(mapping_path)))
    return os.path.join(d, f".{name}.partial.json")


def _inputs(mapper, src) -> dict:
    from somtorch.io.identity import array_identity, images_identity

    som = mapper.som
    return {"images": images_identity(src), "som": array_identity(som.weight),
            "som_config": json.loads(json.dumps(som.config_dict()))}


def _check_or_record_inputs(mapper, src, mapping_path, resume: bool) -> None:
    """Rank 0: refuse a resume on other inputs than the partial files were started on; record
    the inputs of a fresh start (before the partial files exist)."""
    from somtorch.errors import ConfigError
    from somtorch.io.atomic import atomic_output
    from somtorch.io.identity import check_same_inputs

    man = _manifest_path(mapping_path)
    partial = os.path.join(os.path.dirname(man), os.path.basename(man)[:-len(".json")])
    new = _inputs(mapper, src)
    if resume and os.path.exists(partial):
        if not os.path.exists(man):
            raise ConfigError(partial, "resume inputs", None, None,
                              f"the partial output has no record of its inputs ({man}); it cannot be checked "
                              "against this run: remove it and map again without resume")
        from somtorch.io.identity import read_manifest

        check_same_inputs(read_manifest(man), new, partial, "partial mapping output")
        return
    with atomic_output(man, overwrite=True, mode="w") as f:
        json.dump(new, f)


def _needed_bytes(n: int, lat, transform: bool) -> int:
    """Final size of the mapping (float32 per neuron) and transform (int8 flip + float32 angle) files."""
    return n * lat.num_neurons * (4 + (5 if transform else 0)) + 4096


def _sync(writer) -> None:
    """Flush this rank's rows to storage before another rank (maybe on another node) commits."""
    import contextlib

    for f in (getattr(getattr(writer, "_af", None), "file", None), getattr(writer, "_rows", None)):
        if f is not None and not f.closed:
            with contextlib.suppress(OSError, ValueError):
                f.flush()
                os.fsync(f.fileno())


def map_to_files_sharded(mapper, data, mapping_path, transform_path=None, overwrite: bool = False,
                         resume: bool = False) -> dict:
    """Map ``data`` with ``mapper`` into PINK files, sharded over the ranks of the process group.

    Works on one process too (then it is the resumable single-process mapping). Every rank must
    call it with the same arguments.

    Parameters
    ----------
    mapper : somtorch.engine.Mapper
    data : path to a PINK image file (or anything :func:`~somtorch.engine.as_image_source` takes)
    mapping_path, transform_path : output paths (``transform_path=None``: no transform file)
    overwrite : bool
        Replace existing final outputs.
    resume : bool
        Reuse partial files of an earlier, interrupted run and map only the rows they lack.

    Returns
    -------
    dict
        ``mapping``, ``transform``, ``n_images``, ``rows_mapped`` (by this rank),
        ``rows_mapped_total`` (by all ranks; less than ``n_images`` after a resume), ``shard``
        (this rank's range), ``rank``, ``world_size``.
    """
    from somtorch.engine.data import as_image_source
    from somtorch.geometry.transforms import index_to_flip_angle
    from somtorch.io import MappingWriter, TransformWriter
    from somtorch.io.atomic import check_output_path

    env = detect()
    src = as_image_source(data)
    n = len(src)
    som = mapper.som
    lat = som.lattice
    paths = [p for p in (mapping_path, transform_path) if p is not None]
    writers_cls = [MappingWriter, TransformWriter][: len(paths)]

    def open_writers(res: bool):
        return [cls(p, n, lat.som_dims, overwrite, layout=lat.layout, resume=res)
                for cls, p in zip(writers_cls, paths)]

    # rank 0 creates (or checks, on resume) the partial files; then everybody opens them
    err = None
    if env.is_main:
        try:
            for p in paths:
                check_output_path(p, overwrite)
            from somtorch.io.atomic import check_free_space

            if not (resume and os.path.exists(_manifest_path(mapping_path)[:-len(".json")])):
                check_free_space(mapping_path, _needed_bytes(n, lat, transform_path is not None),
                                 "mapping and transform files")
            _check_or_record_inputs(mapper, src, mapping_path, resume)
            for w in open_writers(resume):
                w.close()
        except OSError as e:
            err = _disk_error(e, mapping_path)
        except BaseException as e:  # noqa: BLE001 -- reported to the other ranks below
            err = e
    if all_reduce_flag(err is not None, "create mapping outputs") and err is None:
        raise DistributedError(f"rank {env.rank}: rank 0 could not create the outputs {paths} (see its log)")
    if err is not None:
        raise err

    # every rank must cut the same shards: rank 0's batch size (budgets may differ per device)
    bs = int(broadcast_object(int(mapper.auto_batch_size()), what="mapping batch size"))
    mapper.batch_size = bs
    shard = shard_rows(n, env.world_size, env.rank, align=bs)
    done_rows = 0
    err = None
    writers = []
    try:
        writers = open_writers(True)
        missing = writers[0].missing_rows()
        for w in writers[1:]:
            missing = np.union1d(missing, w.missing_rows())
        mine = missing[(missing >= shard.start) & (missing < shard.stop)]
        for run in row_runs(mine, align=bs):
            for s, d, t in mapper.iter_batches(src, run):
                try:
                    writers[0].write_rows(s, d.cpu().numpy())
                    if len(writers) > 1:
                        fl, an = index_to_flip_angle(t.cpu(), som.geometry.numrot)
                        writers[1].write_rows(s, fl.numpy(), an.numpy())
                except OSError as e:
                    raise _disk_error(e, mapping_path) from e
                done_rows += len(d)
    except BaseException as e:  # noqa: BLE001
        err = e
    finally:
        for w in writers:
            _sync(w)
            w.close()  # keep the partial files: other shards, or a rerun, fill them in
    failed = all_reduce_flag(err is not None, "mapping shards done")
    total = int(all_reduce_sum_(torch.tensor([float(done_rows)], dtype=torch.float64), "rows mapped").item()) \
        if not failed else done_rows
    if err is not None:
        raise err
    if failed:
        raise DistributedError(f"rank {env.rank}: {failed} other rank(s) failed while mapping (see their logs); "
                               "the partial outputs are kept -- rerun with resume=true to finish them")

    if env.is_main:
        try:
            for w in open_writers(True):
                try:
                    w.commit()
                except OSError as e:
                    w.close()
                    raise _disk_error(e, w.path) from e
            import contextlib

            with contextlib.suppress(FileNotFoundError):
                os.remove(_manifest_path(mapping_path))
        except BaseException as e:  # noqa: BLE001
            err = e
    if is_distributed() and all_reduce_flag(err is not None, "commit mapping outputs") and err is None:
        raise DistributedError(f"rank {env.rank}: rank 0 could not commit {paths} (see its log)")
    if err is not None:
        raise err
    return {"mapping": os.fspath(mapping_path),
            "transform": None if transform_path is None else os.fspath(transform_path),
            "n_images": n, "rows_mapped": done_rows, "rows_mapped_total": total, "shard": [shard.start, shard.stop],
            "rank": env.rank, "world_size": env.world_size}
