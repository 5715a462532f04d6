"""Command-line parser of ``somtorch-pink``, a drop-in for the PINK 2.5 ``Pink`` binary.

The parser reproduces PINK's ``getopt_long`` behaviour (spec §7.1) rather than argparse's:

* options may come in any order; long options may be abbreviated to a unique prefix and take
  their value as ``--opt value`` or ``--opt=value``; short options ``-d -l -s -n -t -x -p -h -v -f``
  take ``-n 4`` or ``-n4``. There is no ``-e`` (PINK's help lists it, but PINK rejects it);
* option *values* are case-insensitive (``--layout HEXAGONAL``, ``--dist-func mexicanHat``),
  except file names;
* ``--train`` takes 2 arguments, ``--map`` 3 and ``--dist-func`` 3 (name, sigma, damping); an
  argument starting with ``-`` counts as missing: ``Missing arguments for --train option.``;
* integer options must be non-negative integers (``str_to_uint32_t: integer must be positive``).

:func:`parse_args` returns a plain :class:`PinkArgs` dataclass (reused by the Hydra and
distributed entry points). Errors raise :class:`PinkError` (printed as ``PINK exception: ...`` or
``Standard exception: ...``, exit code 1) or :class:`PinkUsageError` (unknown option: usage text,
exit code 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PinkArgs", "PinkError", "PinkUsageError", "parse_args", "usage", "LONG_OPTIONS"]

INIT_METHODS = ("zero", "random", "random_with_preferred_direction")
DIST_FUNCS = {"GAUSSIAN": "gaussian", "UNITYGAUSSIAN": "unitygaussian", "MEXICANHAT": "mexicanhat"}


class PinkError(Exception):
    """An error PINK reports as ``<prefix>: <message>`` followed by ``Program was aborted.``."""

    def __init__(self, message: str, prefix: str = "PINK exception"):
        super().__init__(message)
        self.message = message
        self.prefix = prefix


class PinkUsageError(Exception):
    """An unknown or malformed option: getopt's diagnostic, ``Unknown option <octal>`` and usage."""

    def __init__(self, diagnostic: str, code: int = ord("?")):
        super().__init__(diagnostic)
        self.diagnostic = diagnostic
        self.code = code


@dataclass
class PinkArgs:
    """Parsed ``somtorch-pink`` options (PINK 2.5 defaults)."""

    mode: str | None = None               # "train" or "map"
    data: str | None = None               # image file (both modes)
    som_out: str | None = None            # --train: output SOM
    map_out: str | None = None            # --map: output mapping file
    som_in: str | None = None             # --map: input SOM
    store_rot_flip: str | None = None     # --map: transform file
    init: str = "zero"                    # zero | random | random_with_preferred_direction | <file>
    dist_func: str = "gaussian"           # gaussian | unitygaussian | mexicanhat
    sigma: float = 1.1
    damping: float = 0.2
    numrot: int = 360
    flip: bool = True
    neuron_dim: int | None = None
    euclidean_dim: int | None = None
    distance_shape: str = "quadratic"     # quadratic | circular
    distance_type: str = "uint8"          # uint8 | uint16 | float (accepted, ignored)
    inter_store: str = "off"              # off | overwrite | keep
    shuffle: bool = True
    layout: str = "cartesian"             # cartesian | hexagonal
    som_width: int = 10
    som_height: int = 10
    som_depth: int = 1
    seed: int = 1234
    num_iter: int = 1
    max_update_distance: float | None = None
    pbc: bool = False
    cuda_off: bool = False
    numthreads: int | None = None
    progress: int = 10
    interpolation: str = "bilinear"       # bilinear | nearest_neighbor
    verbose: bool = False
    b1: int = 256                         # GPU block size (accepted, ignored)
    help: bool = False
    version: bool = False
    # somtorch-only extensions
    arithmetic: str = "gemm"              # gemm | pink
    tie_break: str = "pink"               # pink | none
    compile: str = "auto"                 # auto | on | off (fused compiled neuron update, CPU)
    device: str | None = None
    batch_size: int | None = None
    overwrite: bool = True                # PINK overwrites outputs; --no-overwrite refuses
    metrics: str | None = None
    matching: str = "exact"               # exact | approximate (--fast)
    scales: list | None = None            # --scales 0.8,1,1.25: zoom factors searched (mapping)

    def to_dict(self) -> dict:
        return asdict(self)


# long name -> (kind, short letter or None); kinds: flag, int, float, str, train, map, distfunc
LONG_OPTIONS: dict[str, tuple[str, str | None]] = {
    "train": ("train", None), "map": ("map", None), "store-rot-flip": ("str", None),
    "init": ("str", "x"), "dist-func": ("distfunc", "f"), "numrot": ("int", "n"),
    "flip-off": ("flag", None), "neuron-dimension": ("int", "d"),
    "euclidean-distance-dimension": ("int", None), "euclidean-distance-shape": ("str", None),
    "euclidean-distance-type": ("str", None), "inter-store": ("str", None),
    "input-shuffle-off": ("flag", None), "layout": ("str", "l"), "som-width": ("int", None),
    "som-height": ("int", None), "som-depth": ("int", None), "seed": ("int", "s"),
    "num-iter": ("int", None), "max-update-distance": ("float", None), "pbc": ("flag", None),
    "cuda-off": ("flag", None), "numthreads": ("int", "t"), "progress": ("int", "p"),
    "interpolation": ("str", None), "verbose": ("flag", None), "b1": ("int", None),
    "help": ("flag", "h"), "version": ("flag", "v"),
    # somtorch-only
    "arithmetic": ("str", None), "tie-break": ("str", None), "device": ("str", None), "batch-size": ("int", None),
    "compile": ("str", None),
    "overwrite": ("flag", None), "no-overwrite": ("flag", None), "metrics": ("str", None),
    "fast": ("flag", None), "scales": ("str", None),
}
SHORT_OPTIONS = {short: long for long, (_, short) in LONG_OPTIONS.items() if short}
SHORT_OPTIONS["a"] = "a"  # in PINK's optstring (takes an argument) but handled as unknown


def usage(prog: str = "somtorch-pink") -> str:
    """The help text (PINK 2.5's options plus the somtorch-only extensions)."""
    return f"""\

  Usage:

    {prog} [Options] --train <image-file> <result-file>
    {prog} [Options] --map   <image-file> <result-file> <SOM-file>

  Options:

    --cuda-off                            Switch off CUDA acceleration (default: CUDA if available).
    --dist-func, -f <string> <sigma> <damping>
                                          Distribution function for SOM update
                                          (gaussian = default 1.1 0.2, unitygaussian, mexicanhat).
    --euclidean-distance-dimension <int>  Dimension for Euclidean distance calculation
                                          (default = image-dimension * sqrt(2) / 2). No -e short option.
    --euclidean-distance-type <string>    uint8 = default, uint16, float (GPU quantisation in PINK;
                                          accepted and ignored: somtorch always uses float32).
    --euclidean-distance-shape <string>   Shape of Euclidean distance region (quadratic = default, circular).
    --flip-off                            Switch off usage of mirrored images.
    --help, -h                            Print this help.
    --init, -x <string>                   SOM initialization (zero = default, random,
                                          random_with_preferred_direction, <SOM file>).
    --input-shuffle-off                   Switch off random shuffle of data input (only for training).
    --interpolation <string>              Image interpolation for rotations (bilinear = default, nearest_neighbor).
    --inter-store <string>                Store intermediate SOM at every progress step (off = default,
                                          overwrite, keep: res.som.bin -> res.som_0.bin, name without '.' -> res_0).
    --layout, -l <string>                 SOM layout (cartesian = default, hexagonal).
    --max-update-distance <float>         Maximum grid distance for SOM update (default = off).
    --neuron-dimension, -d <int>          Neuron side (default = 2 * image-dimension / sqrt(2) + 1).
    --numrot, -n <int>                    Number of rotations (1 or a multiple of 4, default = 360).
    --numthreads, -t <int>                Number of CPU threads (default = auto).
    --num-iter <int>                      Number of iterations (default = 1).
    --pbc                                 Periodic boundary conditions (supported by somtorch, not by PINK 2.5).
    --progress, -p <int>                  Maximal number of progress information prints (default = 10).
    --seed, -s <int>                      Seed for random number generator (default = 1234).
    --store-rot-flip <string>             Store the rotation and flip information of the best match (mapping).
    --som-width <int>                     Width dimension of SOM (default = 10).
    --som-height <int>                    Height dimension of SOM (default = 10).
    --som-depth <int>                     Depth dimension of SOM (default = 1).
    --verbose                             Print more output (best-match counts of every neuron).
    --version, -v                         Print version number.
    --b1 <int>                            GPU block size (accepted and ignored).

  somtorch-only options:

    --arithmetic <gemm|pink>              Distance arithmetic: gemm = fast (default), pink = PINK's exact
                                          float arithmetic (slower; reproduces PINK's exact ties bit for bit).
    --tie-break <pink|none>               pink (default): near-ties of the fast arithmetic re-evaluated with PINK's
                                          exact arithmetic, so ties resolve as in PINK; none: faster (up to ~2x at
                                          360 rotations, where near-ties are frequent), ties resolve by float32 rounding.
    --compile <auto|on|off>               Training on CPU without a C compiler (or SOMTORCH_NATIVE=0; otherwise the
                                          update already runs as a compiled C loop): PINK's neuron update compiled
                                          with torch.compile (bit-identical, ~2x faster update; a few seconds once).
                                          auto (default): only for long jobs; on: always; off: never.
    --device <string>                     torch device (cpu, cuda, cuda:1, ...); overrides --cuda-off.
    --batch-size <int>                    Images processed together (speed/memory only; same result).
    --overwrite                           Replace existing outputs (the default, as in PINK; outputs are
                                          always written atomically).
    --no-overwrite                        Refuse to replace existing output files.
    --metrics <csv>                       Training: quality metrics at each progress step to a CSV file.
    --fast                                Mapping: approximate matching, a guided coarse-to-fine search over the
                                          rotations (somtorch.engine.ApproxMapper, its default "surrogate"
                                          search; somtorch.map also offers approx.search=polar|bisect);
                                          distances are exact for the transformations found, which may miss
                                          the exact best one.
    --scales <f1,f2,...>                  Mapping: also search these zoom factors (e.g. 1,0.8,1.25); the
                                          factors go to <transform or mapping file>.scale.npy (not PINK).

  environment (somtorch):

    SOMTORCH_NATIVE=0                     Do not use the small C loops that somtorch compiles on first use
                                          with the system compiler (rotation sampling, parity features,
                                          mapping's distance tail, the training step, PINK's tie
                                          arithmetic): the same results, computed with torch/numpy,
                                          slower. Without a C compiler they are skipped.
    SOMTORCH_CACHE_DIR=<dir>              Where the compiled loops are kept (default ~/.cache/somtorch).
"""


def _missing(opt: str) -> PinkError:
    return PinkError(f"Missing arguments for --{opt} option.")


def _to_int(value: str, opt: str) -> int:
    s = value.strip()
    if s.startswith("-"):
        raise PinkError("str_to_uint32_t: integer must be positive", "Standard exception")
    try:
        return int(s, 10)
    except ValueError:
        raise PinkError(f"stoi: invalid integer {value!r} for --{opt}", "Standard exception") from None


def _to_float(value: str, opt: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise PinkError(f"stof: invalid number {value!r} for --{opt}", "Standard exception") from None


def _choice(value: str, choices: dict, what: str) -> str:
    key = value.upper()
    if key not in choices:
        raise PinkError(f"Unknown {what} option {value}")
    return choices[key]


def _match_long(name: str) -> str:
    if name in LONG_OPTIONS:
        return name
    hits = [k for k in LONG_OPTIONS if k.startswith(name)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise PinkUsageError(f"unrecognized option '--{name}'")
    raise PinkUsageError(f"option '--{name}' is ambiguous; possibilities: "
                         + " ".join("'--" + h + "'" for h in hits))


def parse_args(argv) -> PinkArgs:
    """Parse PINK 2.5 options (see the module docstring). Raises PinkError / PinkUsageError."""
    argv = [str(a) for a in argv]
    a = PinkArgs()
    i = 0
    positional = []

    def take_value(opt: str, inline: str | None) -> str:
        nonlocal i
        if inline is not None:
            return inline
        if i >= len(argv):
            raise PinkUsageError(f"option '--{opt}' requires an argument")
        v = argv[i]
        i += 1
        return v

    def take_more(opt: str, count: int) -> list[str]:
        nonlocal i
        vals = argv[i:i + count]
        if len(vals) < count or any(v.startswith("-") for v in vals):
            raise _missing(opt)
        i += count
        return vals

    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg.startswith("--"):
            name, eq, inline = arg[2:].partition("=")
            opt = _match_long(name)
            kind = LONG_OPTIONS[opt][0]
            if kind == "flag" and eq:
                raise PinkUsageError(f"option '--{opt}' doesn't allow an argument")
            value = None if kind == "flag" else take_value(opt, inline if eq else None)
        elif arg.startswith("-") and len(arg) > 1:
            letter, rest = arg[1], arg[2:]
            if letter not in SHORT_OPTIONS:
                raise PinkUsageError(f"invalid option -- '{letter}'")
            opt = SHORT_OPTIONS[letter]
            if opt == "a":
                take_value("a", rest or None)
                raise PinkUsageError("", ord("a"))
            kind = LONG_OPTIONS[opt][0]
            if kind == "flag":
                if rest:  # clustered flags: -hv
                    argv.insert(i, "-" + rest)
                value = None
            else:
                if not rest and i >= len(argv):
                    raise PinkUsageError(f"option requires an argument -- '{letter}'")
                value = take_value(opt, rest or None)
        else:
            positional.append(arg)
            continue
        _apply(a, opt, kind, value, take_more)
    if positional:
        raise PinkError(f"Unexpected argument(s): {' '.join(positional)}")
    return a


def _apply(a: PinkArgs, opt: str, kind: str, value, take_more) -> None:
    if kind in ("train", "map"):
        if value is None or value.startswith("-"):
            raise _missing(opt)
        rest = take_more(opt, 1 if kind == "train" else 2)
        a.mode, a.data = kind, value
        if kind == "train":
            a.som_out = rest[0]
        else:
            a.map_out, a.som_in = rest
        return
    if kind == "distfunc":
        if value is None or value.startswith("-"):
            raise _missing(opt)
        sigma, damping = take_more(opt, 2)
        key = value.upper()
        if key not in DIST_FUNCS:  # PINK's (copy-pasted) message, with the real meaning added
            raise PinkError(f"Unknown intermediate storage option {value} "
                            "(unknown --dist-func name; use gaussian, unitygaussian or mexicanHat)")
        a.dist_func = DIST_FUNCS[key]
        a.sigma, a.damping = _to_float(sigma, opt), _to_float(damping, opt)
        return
    if kind == "flag":
        _FLAGS[opt](a)
        return
    if kind == "int":
        n = _to_int(value, opt)
        if opt == "numrot" and (n < 1 or (n != 1 and n % 4)):
            raise PinkError("Number of rotations must be 1 or a multiple of 4")
        if opt == "progress" and n < 1:
            raise PinkError("progress must be positive.")
        if opt == "num-iter" and n < 1:
            raise PinkError("Number of iterations must be larger than 0.")
        if opt in ("numthreads", "batch-size", "neuron-dimension", "euclidean-distance-dimension") and n < 1:
            raise PinkError(f"{opt} must be positive.")
        setattr(a, _DEST.get(opt, opt.replace("-", "_")), n)
        return
    if kind == "float":  # max-update-distance
        x = _to_float(value, opt)
        if not x > 0:
            raise PinkError("max-update-distance must be positive.")
        a.max_update_distance = x
        return
    # string options
    if opt == "init":
        low = value.lower()
        a.init = low if low in INIT_METHODS else value
    elif opt == "store-rot-flip":
        a.store_rot_flip = value
    elif opt == "layout":
        a.layout = _choice(value, {"CARTESIAN": "cartesian", "HEXAGONAL": "hexagonal"}, "layout")
    elif opt == "euclidean-distance-shape":
        a.distance_shape = _choice(value, {"QUADRATIC": "quadratic", "CIRCULAR": "circular"},
                                   "euclidean distance shape")
    elif opt == "euclidean-distance-type":
        key = value.upper()
        if key not in ("UINT8", "UINT16", "FLOAT"):
            raise PinkError(f"Unknown intermediate storage option {value} "
                            "(unknown --euclidean-distance-type; use uint8, uint16 or float)")
        a.distance_type = key.lower()
    elif opt == "inter-store":
        a.inter_store = _choice(value, {"OFF": "off", "OVERWRITE": "overwrite", "KEEP": "keep"},
                                "intermediate storage")
    elif opt == "interpolation":
        a.interpolation = _choice(value, {"BILINEAR": "bilinear", "NEAREST_NEIGHBOR": "nearest_neighbor"},
                                  "interpolation")
    elif opt == "arithmetic":
        a.arithmetic = _choice(value, {"GEMM": "gemm", "PINK": "pink"}, "arithmetic")
    elif opt == "compile":
        a.compile = _choice(value, {"AUTO": "auto", "ON": "on", "OFF": "off"}, "compile")
    elif opt == "tie-break":
        a.tie_break = _choice(value, {"PINK": "pink", "NONE": "none"}, "tie-break")
    elif opt == "device":
        a.device = value
    elif opt == "metrics":
        a.metrics = value
    elif opt == "scales":
        try:
            vals = [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise PinkError(f"--scales: expected comma-separated zoom factors such as 1,0.8,1.25; got {value}") from None
        from somtorch.engine.scale import check_scales
        from somtorch.errors import ConfigError

        try:
            a.scales = list(check_scales(vals) or []) or None
        except ConfigError as e:
            raise PinkError(f"--scales: {e}") from None


_DEST = {"numrot": "numrot", "neuron-dimension": "neuron_dim", "euclidean-distance-dimension": "euclidean_dim",
         "som-width": "som_width", "som-height": "som_height", "som-depth": "som_depth",
         "num-iter": "num_iter", "batch-size": "batch_size"}


def _set(field: str, value):
    def f(a: PinkArgs) -> None:
        setattr(a, field, value)
    return f


_FLAGS = {
    "flip-off": _set("flip", False), "input-shuffle-off": _set("shuffle", False), "pbc": _set("pbc", True),
    "cuda-off": _set("cuda_off", True), "verbose": _set("verbose", True), "help": _set("help", True),
    "version": _set("version", True), "overwrite": _set("overwrite", True),
    "no-overwrite": _set("overwrite", False), "fast": _set("matching", "approximate"),
}
