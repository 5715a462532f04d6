"""``somtorch-pink``: a drop-in replacement for the PINK 2.5 command line (``Pink``).

Usage (same options as PINK 2.5, see ``somtorch-pink --help``)::

    python -m somtorch.pink [Options] --train <image-file> <result-SOM>
    python -m somtorch.pink [Options] --map <image-file> <result-mapping> <SOM-file> [--store-rot-flip <file>]
    torchrun --nproc_per_node=K -m somtorch.pink [Options] --map ...   # sharded over K processes

Training, mapping, the files written (byte layout of every header), the shuffle order and the
random initialisation follow PINK 2.5 (spec ``pink-semantics.md`` §1, §5, §6, §7); the random
number generators are always PINK's (``rng="pink"``). Output messages (banner, parameter list,
progress bar, ``PINK exception: ...`` / ``Program was aborted.`` with exit code 1,
``Successfully finished. Have a nice day.`` with exit code 0) mimic PINK's.

Deliberate differences from PINK 2.5
------------------------------------
* ``--pbc`` works (periodic cartesian and hexagonal lattices); PINK 2.5 rejects it.
* CUDA is used when available unless ``--cuda-off`` (or ``--device``) is given; a machine
  without CUDA simply runs on the CPU instead of failing like a CPU-only PINK build.
* ``--euclidean-distance-type`` and ``--b1`` are accepted and ignored: distances are always
  computed in float32 (PINK's CPU path ignores the type as well).
* ``--interpolation nearest_neighbor`` works.
* A SOM file given to ``--init`` or ``--map`` is read with its header *checked* against the
  command-line geometry (lattice, neuron size, channels); PINK ignores the header and silently
  misreads mismatching (and multi-channel) SOMs.
* ``--inter-store keep`` with a result name without '.' appends ``_<k>`` instead of crashing.
* ``-v`` is ``--version`` as in PINK; ``--verbose`` (long form only) prints best-match counts.
* Stray positional arguments are an error (PINK ignores them).
* Outputs are replaced silently like PINK does (``--overwrite`` is the default; this is the one
  deliberate exception to somtorch's "never overwrite" rule, for drop-in compatibility), but
  always atomically; ``--no-overwrite`` refuses to replace existing files.
* somtorch-only options: ``--arithmetic gemm|pink``, ``--device``, ``--batch-size``,
  ``--overwrite``/``--no-overwrite``, ``--metrics <csv>``, and for mapping ``--fast``
  (approximate matching, :class:`somtorch.engine.ApproxMapper`) and ``--scales f1,f2,...``
  (zoom factors searched; written to ``<transform file>.scale.npy``, the PINK files unchanged).

:func:`main` returns the exit code; :func:`parse_args` returns a plain :class:`PinkArgs`
dataclass and :func:`run` executes one, so other entry points can reuse both.
"""

from __future__ import annotations

import os
import struct
import sys
import time

import numpy as np
import torch

from somtorch.cli.pink_args import PinkArgs, PinkError, PinkUsageError, parse_args, usage
from somtorch.errors import SomtorchError

__all__ = ["main", "run", "parse_args", "PinkArgs", "PinkError", "PinkUsageError", "usage",
           "read_data_header", "PINK_VERSION"]

PINK_VERSION = "2.5"
BAR_WIDTH = 70


def _version() -> str:
    from somtorch import __version__

    return __version__


def _out(*lines: str) -> None:
    for line in lines:
        print(line)
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------
# data file header (checked with PINK's messages)
# ------------------------------------------------------------------------------------------

def _read_comment_bytes(f) -> bytes:
    """Consume a PINK comment header (spec §1.1) and return its raw bytes."""
    raw = b""
    while True:
        pos = f.tell()
        if f.read(1) != b"#":
            f.seek(pos)
            return raw
        line = b"#" + f.readline()
        raw += line
        if line.rstrip(b"\n") == b"# END OF HEADER" or not line.endswith(b"\n"):
            return raw


def read_data_header(path: str) -> dict:
    """Raw header of a PINK data file: version, file_type, data_type, n, layout, dims."""
    from somtorch.errors import MissingFileError
    from somtorch.io.files import open_regular

    try:
        f = open_regular(path, "rb", "data")  # a FIFO or folder raises NotRegularFileError
    except (MissingFileError, PermissionError):
        raise PinkError(f"Error opening {path}") from None
    with f:
        _read_comment_bytes(f)
        head = f.read(24)
        if len(head) < 24:
            raise PinkError(f"{path}: file ends inside the data file header")
        version, ftype, dtype, n, layout, k = struct.unpack("<6i", head)
        dims = ()
        if 0 < k <= 8:
            raw = f.read(4 * k)
            if len(raw) < 4 * k:
                raise PinkError(f"{path}: file ends inside the data file header")
            dims = struct.unpack(f"<{k}i", raw)
    return {"version": version, "file_type": ftype, "data_type": dtype, "n": n, "layout": layout,
            "k": k, "dims": dims}


def _image_geometry(h: dict) -> tuple[int, int]:
    """(channels, side) as PINK derives them: side from dims[1], channels from dims[0] for k=3."""
    dims = h["dims"]
    if len(dims) == 3:
        return dims[0], dims[1]
    if len(dims) == 2:
        return 1, dims[1]
    return 1, dims[0] if dims else 0


def _check_data_header(path: str, h: dict) -> None:
    """PINK's data-file checks (spec §1.2), in PINK's order, naming the file."""
    if h["version"] != 2:
        raise PinkError(f"Please use file format version 2 as data input. ({path}: version {h['version']})")
    if h["file_type"] != 0:
        raise PinkError(f"Please use file type 0 as data input. ({path}: file type {h['file_type']})")
    if h["data_type"] != 0:
        raise PinkError("Only data_type = 0 (float, single precision) is supported. "
                        f"({path}: data_type {h['data_type']})")
    if h["n"] <= 0:
        raise PinkError(f"Number of data entries must be larger than 0. ({path}: {h['n']} entries)")
    if h["layout"] != 0:
        name = "hexagonal" if h["layout"] == 1 else str(h["layout"])
        raise PinkError(f"Unsupported data layout: {name} ({path})")
    dims = h["dims"]
    if len(dims) == 1:
        raise PinkError(f"Not implemented yet. ({path}: 1-dimensional data entries {dims})")
    if len(dims) not in (2, 3) or any(d <= 0 for d in dims):
        raise PinkError(f"{path}: unsupported data dimensions {dims}; expected (rows, cols) or "
                        "(channels, rows, cols)")
    if dims[-1] != dims[-2]:
        raise PinkError(f"Images must be quadratic. ({path}: dimensions {dims})")


# ------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------

def _lattice(a: PinkArgs):
    from somtorch.geometry import Lattice

    if a.som_width <= 1:
        raise PinkError("som-width must be > 1.")
    if a.som_height <= 0:
        raise PinkError("som-height must be > 0.")
    if a.som_depth <= 0:
        raise PinkError("som-depth must be > 0.")
    if a.layout == "hexagonal":
        if a.som_width % 2 == 0:
            raise PinkError("For hexagonal layout only odd dimension supported.")
        if a.som_width != a.som_height:
            raise PinkError("For hexagonal layout som-width must be equal to som-height.")
        if a.som_depth != 1:
            raise PinkError("For hexagonal layout som-depth must be equal to 1.")
    return Lattice.from_pink(a.som_width, a.som_height, a.som_depth, a.layout, periodic=a.pbc)


def _dims(a: PinkArgs, h: dict) -> tuple[int, int, int, int]:
    """(channels, d, nd, ed) with PINK's defaults (spec §2.2)."""
    from somtorch.geometry import default_euclidean_dim, default_neuron_dim

    c, d = _image_geometry(h)
    nd = a.neuron_dim if a.neuron_dim is not None else default_neuron_dim(max(d, 1), a.numrot, "pink")
    ed = a.euclidean_dim if a.euclidean_dim is not None else default_euclidean_dim(max(d, 1), a.numrot,
                                                                                    a.distance_shape, "pink")
    return c, d, nd, ed


def _device(a: PinkArgs) -> torch.device:
    if a.device:
        try:
            return torch.device(a.device)
        except RuntimeError as e:
            raise PinkError(f"invalid --device {a.device!r}: {e}") from None
    if a.cuda_off or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


# ------------------------------------------------------------------------------------------
# output helpers
# ------------------------------------------------------------------------------------------

def _banner() -> list[str]:
    rows = [f"somtorch-pink {_version()}",
            f"PINK {PINK_VERSION} compatible command line of somtorch (PyTorch):",
            "rotation- and flip-invariant self-organizing maps",
            "(PINK: Parallel orientation Invariant Non-parametric Kohonen-map)"]
    width = 71
    out = ["", "  " + "*" * (width + 2), "  *" + " " * width + "*"]
    out += [f"  *   {r:<{width - 3}}*" for r in rows]
    out += ["  *" + " " * width + "*", "  " + "*" * (width + 2), ""]
    return out


def _parameters(a: PinkArgs, h: dict, lat, c: int, d: int, nd: int, ed: int, device) -> list[str]:
    dims = h["dims"]
    p = [f"  Data file = {a.data}"]
    if a.mode == "train":
        p.append(f"  Result file = {a.som_out}")
    else:
        p += [f"  Result file = {a.map_out}", f"  SOM file = {a.som_in}"]
        if a.store_rot_flip:
            p.append(f"  Store best rotation and flipping parameters = {a.store_rot_flip}")
    p += [f"  Number of data entries = {h['n']}",
          f"  Data dimension = {' x '.join(str(x) for x in dims)}",
          f"  SOM dimension (width x height x depth) = {a.som_width}x{a.som_height}x{a.som_depth}",
          f"  SOM size = {lat.num_neurons}",
          f"  Number of iterations = {a.num_iter}",
          f"  Neuron dimension = {nd}x{nd}",
          f"  Euclidean distance dimension = {ed}x{ed}",
          f"  Data type for euclidean distance calculation = {a.distance_type} (ignored: float32)",
          f"  Shape of euclidean distance region = {a.distance_shape}",
          f"  Maximal number of progress information prints = {a.progress}",
          f"  Intermediate storage of SOM = {a.inter_store}",
          f"  Layout = {a.layout}",
          f"  Initialization type = {a.init}",
          f"  Interpolation type = {a.interpolation}",
          f"  Seed = {a.seed}",
          f"  Number of rotations = {a.numrot}",
          f"  Use mirrored image = {int(a.flip)}",
          f"  Number of CPU threads = {torch.get_num_threads()}",
          f"  Use CUDA = {int(device.type == 'cuda')}",
          f"  Distribution function for SOM update = {a.dist_func}",
          f"  Sigma = {a.sigma:g}",
          f"  Damping factor = {a.damping:g}",
          f"  Maximum distance for SOM update = "
          f"{-1 if a.max_update_distance is None else format(a.max_update_distance, 'g')}",
          f"  Use periodic boundary conditions = {int(a.pbc)}",
          f"  Random shuffle data input = {int(a.shuffle)}",
          f"  Arithmetic (somtorch) = {a.arithmetic}",
          f"  Device (somtorch) = {device}",
          ""]
    return p


class _ProgressBar:
    """PINK's progress output (spec §5.8): ``[===>   ] 40 % 1.234 s`` at PINK's progress points."""

    def __init__(self, ticks: int, steps: int):
        from somtorch.engine import progress_ticks

        self.ticks = ticks
        self.points = progress_ticks(ticks, steps)
        self.next = 0
        self.t0 = time.perf_counter()

    def line(self, tick: int) -> str:
        frac = tick / self.ticks
        pos = int(BAR_WIDTH * frac)
        bar = "".join("=" if i < pos else ">" if i == pos else " " for i in range(BAR_WIDTH))
        return f"[{bar}] {int(100 * frac)} % {time.perf_counter() - self.t0:.3f} s"

    def update_to(self, tick: int) -> None:
        while self.next < len(self.points) and self.points[self.next] <= tick:
            t = self.points[self.next]
            self.next += 1
            _out(self.line(t))
            if t == self.ticks:
                _out("")


def _write_som(path: str, weights: torch.Tensor, lat, comments_raw: bytes, overwrite: bool) -> None:
    """Write a PINK SOM file; comment lines of an init SOM are copied verbatim (spec §1.1)."""
    from somtorch.io import write_som

    w = weights.detach().cpu().float()
    if not comments_raw:
        write_som(path, w, lat.som_dims, layout=lat.layout, overwrite=overwrite)
        return
    from somtorch.io.atomic import atomic_output

    dims = tuple(lat.som_dims)
    ndims = tuple(w.shape[2:]) if w.shape[1] == 1 else tuple(w.shape[1:])
    ints = (2, 1, 0, 0, len(dims), *dims, 0, len(ndims), *ndims)
    with atomic_output(path, overwrite) as f:
        f.write(comments_raw + struct.pack(f"<{len(ints)}i", *ints))
        f.write(np.ascontiguousarray(w.numpy(), dtype="<f4").tobytes())


def _read_som_file(path: str, lat, geo) -> tuple[torch.Tensor, bytes]:
    """Weights ``(N, C, nd, nd)`` of a SOM file checked against the command-line geometry."""
    from somtorch.errors import GeometryMismatchError
    from somtorch.io import read_som

    try:
        with open(path, "rb") as f:
            raw = _read_comment_bytes(f)
    except OSError:
        raise PinkError(f"Error opening {path}") from None
    try:
        w, _ = read_som(path, som_dims=lat.som_dims, layout=lat.layout, neuron_shape=geo.neuron_shape)
    except GeometryMismatchError as e:
        raise PinkError(f"{e} -- the SOM file does not match the geometry given on the command line "
                        "(--som-width/--som-height/--som-depth/--layout, -n/--numrot, -d/--neuron-dimension "
                        "and the data's channels decide how a SOM file is read)") from None
    return w.clone().float().contiguous(), raw


def _counts_table(som) -> list[str]:
    counts = som.update_count.detach().cpu().numpy()
    lat = som.lattice
    out = ["  Number of updates of each neuron:", ""]
    if lat.layout == "hexagonal":
        coords = lat.coords.numpy()
        for r in range(lat.shape[0]):
            row = counts[coords[:, 1] == r]
            out.append("  " + "   " * abs(r - lat.shape[0] // 2) + " ".join(f"{v:5d}" for v in row))
    else:
        s = tuple(lat.shape) + (1,) * (3 - len(lat.shape))
        grid = counts.reshape(s[2], s[0], s[1])  # [D][W][H], height fastest (spec §1.6)
        for k in range(s[2]):
            out += ["  " + " ".join(f"{v:6d}" for v in row) for row in grid[k]]
            out.append("")
    return out


# ------------------------------------------------------------------------------------------
# training and mapping
# ------------------------------------------------------------------------------------------

def _make_trainer_class():
    from somtorch.engine import Trainer
    from somtorch.engine.training import inter_store_name

    class PinkTrainer(Trainer):
        """Trainer printing PINK's progress bar and writing PINK's intermediate SOMs."""

        bar: _ProgressBar | None = None
        comments_raw: bytes = b""

        def _progress_record(self, src, msub, it, tick, ticks_total, prev_w, elapsed):
            rec = super()._progress_record(src, msub, it, tick, ticks_total, prev_w, elapsed)
            if self.bar is not None:
                self.bar.update_to(tick)
            return rec

        def _inter_store(self):
            path = self.inter_store_path
            if self.inter_store == "keep":
                path = inter_store_name(path, self._store_k)
            self._store_k += 1
            _write_som(path, self.som.weight, self.som.lattice, self.comments_raw, overwrite=True)

    return PinkTrainer


def _train(a: PinkArgs, h: dict, lat, geo, device) -> None:
    from somtorch.engine import Neighbourhood, RotationInvariantSOM
    from somtorch.io import check_output_path

    check_output_path(a.som_out, a.overwrite)
    _sweep(a.som_out)
    if a.metrics:
        check_output_path(a.metrics, a.overwrite)
    if a.dist_func == "mexicanhat" and not a.sigma > 0:
        raise PinkError("MexicanHatFunctor: sigma <= 0 not defined.", "Standard exception")
    if not a.sigma > 0:
        raise PinkError(f"{a.dist_func}: sigma must be > 0 (got {a.sigma:g}).")
    comments_raw = b""
    init = a.init
    if init not in ("zero", "random", "random_with_preferred_direction"):
        init, comments_raw = _read_som_file(a.init, lat, geo)
    som = RotationInvariantSOM(lat, geo, init=init, seed=a.seed, rng="pink", arithmetic=a.arithmetic,
                               tie_break=a.tie_break,
                               device=device)
    nb = Neighbourhood(a.dist_func, a.sigma, a.damping, a.max_update_distance)
    trainer = _make_trainer_class()(
        som, nb, num_iter=a.num_iter, shuffle=a.shuffle, batch_size=a.batch_size, progress=False,
        progress_steps=a.progress, inter_store=None if a.inter_store == "off" else a.inter_store,
        inter_store_path=a.som_out, metrics_sample=256 if a.metrics else 0, handle_signals=False,
        stage_name=os.path.basename(a.som_out), compile=a.compile)
    trainer.comments_raw = comments_raw
    trainer.bar = _ProgressBar(h["n"] * a.num_iter, a.progress)
    _out("  Starting training.", "")
    history = trainer.fit(a.data)
    print(f"  Write final SOM to {a.som_out} ... ", end="")
    _write_som(a.som_out, som.weight, lat, comments_raw,
               overwrite=a.overwrite or a.inter_store == "overwrite")
    _out("done.", "")
    if a.metrics:
        history.save(a.metrics)
        _out(f"  Metrics written to {a.metrics}", "")
    if a.verbose:
        _out(f"  SOM layout: {lat.describe()}", *_counts_table(som))


def _same_file(p: str, q: str) -> bool:
    if os.path.realpath(p) == os.path.realpath(q):
        return True
    try:
        return os.path.samefile(p, q)
    except OSError:
        return False


def _sweep(*outputs) -> None:
    """Remove the temporary files that killed runs (SIGKILL, power cut) left next to ``outputs``:
    only files named like somtorch's atomic writes whose writer process is gone."""
    from somtorch.io.atomic import sweep_temp_files

    for folder in {os.path.dirname(os.path.abspath(o)) for o in outputs if o}:
        sweep_temp_files(folder, depth=0)


def _map(a: PinkArgs, h: dict, lat, geo, device) -> None:
    from somtorch.engine import RotationInvariantSOM
    from somtorch.errors import ConfigError
    from somtorch.io import check_output_path

    if a.store_rot_flip and _same_file(a.map_out, a.store_rot_flip):
        raise ConfigError(None, "--store-rot-flip", a.store_rot_flip, "a file other than the mapping output",
                          f"the mapping is written to {a.map_out}; give the best rotation/flip file its own path")
    check_output_path(a.map_out, a.overwrite)
    if a.store_rot_flip:
        check_output_path(a.store_rot_flip, a.overwrite)
    _sweep(a.map_out, a.store_rot_flip)
    w, _ = _read_som_file(a.som_in, lat, geo)
    som = RotationInvariantSOM(lat, geo, init=w, seed=a.seed, rng="pink", arithmetic=a.arithmetic,
                               tie_break=a.tie_break,
                               device=device)
    bar = _ProgressBar(h["n"], a.progress)
    from somtorch.engine.approx import make_mapper

    # --fast / --scales (somtorch extensions) pick the mapper; PINK's progress bar follows its batches
    mapper = make_mapper(som, a.matching, a.scales, batch_size=a.batch_size)
    inner = mapper.iter_batches

    def iter_batches(data, rows=None):
        for s, d, t in inner(data, rows):
            yield s, d, t
            bar.update_to(s + len(d))

    mapper.iter_batches = iter_batches
    _out("  Starting mapping.", "")
    from somtorch import distributed as sd

    if sd.detect().distributed:  # torchrun: every rank writes its shard's rows of the same files
        if a.scales:
            raise PinkError("--scales is not supported under torchrun (map in one process)")
        sd.map_to_files_sharded(mapper, a.data, a.map_out, a.store_rot_flip, overwrite=a.overwrite)
    else:
        mapper.map_to_files(a.data, a.map_out, a.store_rot_flip, overwrite=a.overwrite)
    _out(f"  Mapping written to {a.map_out}" + (f", best rotation/flip to {a.store_rot_flip}"
                                                  if a.store_rot_flip else ""), "")
    if a.verbose:
        counts = np.zeros(lat.num_neurons, dtype=np.int64)
        from somtorch.io import read_mapping

        m, _ = read_mapping(a.map_out)
        np.add.at(counts, m.argmin(1).numpy(), 1)
        som.update_count.copy_(torch.from_numpy(counts))
        _out(f"  SOM layout: {lat.describe()}", "  Best-matching neuron counts:",
             *_counts_table(som)[1:])


def run(a: PinkArgs) -> int:
    """Execute parsed options (prints PINK-style output). Raises PinkError/SomtorchError on errors."""
    from somtorch.engine import SOMGeometry

    if a.mode is None:
        raise PinkError("Missing --train or --map option (see --help).")
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    try:
        if a.numthreads:
            torch.set_num_threads(a.numthreads)
        lat = _lattice(a)
        device = _device(a)
        from somtorch import distributed as sd

        if sd.detect().distributed:  # launched by torchrun
            if a.mode == "train":
                raise PinkError("training is sequential (online PINK updates); torchrun runs --map only "
                                "(for data-parallel training use: torchrun -m somtorch.train runtime.mode=batch)")
            env = sd.init(device)
            device = sd.device_for(env, device)
        h = read_data_header(a.data)
        c, d, nd, ed = _dims(a, h)
        _out(*_banner(), *_parameters(a, h, lat, c, d, nd, ed, device))
        _check_data_header(a.data, h)
        if ed > nd:
            raise PinkError("euclidean distance dimension must be equal or smaller than neuron dimension.")
        geo = SOMGeometry(image_dim=d, channels=c, numrot=a.numrot, flip=a.flip, neuron_dim=nd,
                          euclidean_dim=ed, distance_shape=a.distance_shape,
                          interpolation="nearest" if a.interpolation == "nearest_neighbor" else "bilinear",
                          convention="pink")
        if a.mode == "train":
            _train(a, h, lat, geo, device)
        else:
            _map(a, h, lat, geo, device)
    finally:
        torch.set_num_threads(old_threads)
    dt = time.perf_counter() - t0
    hh, rem = divmod(dt, 3600)
    mm, ss = divmod(rem, 60)
    _out(f"  Total time (hh:mm:ss): {int(hh):02d}:{int(mm):02d}:{ss:06.3f}     ({int(dt)} s)", "",
         "  Successfully finished. Have a nice day.", "")
    return 0


def _abort(prefix: str, message: str) -> int:
    _out(f"{prefix}: {message}", "Program was aborted.")
    return 1


def main(argv=None) -> int:
    """Entry point of ``somtorch-pink`` / ``python -m somtorch.pink``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else [str(x) for x in argv]
    from somtorch.cli.runner import tune_process

    tune_process()  # process-wide allocator settings belong to the program, not the library
    try:
        a = parse_args(argv)
    except PinkUsageError as e:
        if e.diagnostic:
            print(f"somtorch-pink: {e.diagnostic}", file=sys.stderr)
        _out(f"Unknown option {e.code:o}", usage())
        return 1
    except PinkError as e:
        return _abort(e.prefix, e.message)
    if a.help:
        _out(usage())
        return 0
    if a.version:
        _out(f"somtorch-pink {_version()} (PINK {PINK_VERSION} compatible command line)")
        return 0
    try:
        return run(a)
    except PinkError as e:
        sys.stdout.write("\n")
        return _abort(e.prefix, e.message)
    except (SomtorchError, OSError) as e:
        sys.stdout.write("\n")
        return _abort("PINK exception", str(e))
    finally:
        from somtorch.distributed import shutdown

        shutdown()


if __name__ == "__main__":
    sys.exit(main())
