"""What the Hydra programs share around their work: checked composition, errors, run folders.

* :func:`compose_checked`: compose a program's config (the packaged configs plus the command-line
  overrides) and check it against its schema, turning Hydra's and OmegaConf's errors into one
  :class:`~somtorch.errors.ConfigError` naming the option;
* :func:`describe_error`, :func:`report_error`: an expected failure (bad option, missing or invalid
  file, existing output, out of memory or disk) as one line on stderr; tracebacks only with
  ``HYDRA_FULL_ERROR=1`` or ``debug=true`` (:func:`debug_requested`);
* :func:`claim_run_dir`, :class:`RunFolder`: a run folder is used by one run only; a run that
  fails before it starts leaves nothing behind;
* :func:`save_run_config`, :func:`load_run_config`: the config a run was started with, saved once
  in ``<run>/.hydra/config.yaml`` (read back by ``resume=<run folder>``, never rewritten);
* :func:`log_to_file`: the program's log file in its run folder.
"""

from __future__ import annotations

import difflib
import errno
import logging
import os
import shutil
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path

from somtorch.errors import ConfigError, OutputExistsError, SomtorchError

__all__ = [
    "FLAG_PREFIXES", "debug_requested", "split_argv", "compose_checked", "check_known_keys",
    "describe_error", "report_error", "is_expected_error", "RunFolder", "claim_run_dir",
    "save_run_config", "load_run_config", "log_to_file", "override_value", "progress_bar_wanted", "tune_process", "fmt_figure", "resume_target",
    "saved_config_for_resume", "console_logging",
]

#: argv entries Hydra treats as flags (--help, --cfg, -m, --config-dir ...), not overrides
FLAG_PREFIXES = ("-",)


def debug_requested(argv: list[str]) -> bool:
    """``HYDRA_FULL_ERROR=1`` in the environment or ``debug=true`` among the overrides."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return True
    v = override_value(argv, "debug")
    return v is not None and v.strip().lower() in ("true", "1", "yes")


def override_value(argv: list[str], key: str) -> str | None:
    """The value of the last ``key=value`` (or ``+key=``/``++key=``) in ``argv``, else None."""
    out = None
    for a in argv:
        k, sep, v = a.partition("=")
        if sep and k.lstrip("+~") == key:
            out = v
    return out


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(overrides, flags)``: Hydra overrides and everything else (``--cfg job``, ``-m`` ...).

    ``--config-dir=X`` / ``-cd X`` become a ``hydra.searchpath`` override, so that composing
    outside :func:`hydra.main` sees the same configs.
    """
    overrides, flags = [], []
    it = iter(argv)
    for a in it:
        if a in ("--config-dir", "-cd"):
            d = next(it, "")
            overrides.append(f"hydra.searchpath=[file://{os.path.abspath(d)}]")
        elif a.startswith("--config-dir="):
            overrides.append(f"hydra.searchpath=[file://{os.path.abspath(a.split('=', 1)[1])}]")
        elif a.startswith(FLAG_PREFIXES):
            flags.append(a)
        else:
            overrides.append(a)
    return overrides, flags


def _first_line(s: str) -> str:
    return next((ln.strip() for ln in str(s).splitlines() if ln.strip()), "")


def _omegaconf_message(e: BaseException) -> str | None:
    key = getattr(e, "full_key", None)
    msg = getattr(e, "msg", None) or str(e)
    if not key:
        return None
    line = _first_line(msg)
    hint = _suggest(e)
    return f"option '{key}': {line}" + (f" (did you mean '{hint}'?)" if hint else "")


def _suggest(e: BaseException) -> str | None:
    key = str(getattr(e, "key", "") or "")
    typ = getattr(e, "object_type", None)
    if key and is_dataclass(typ):
        close = difflib.get_close_matches(key, [f.name for f in fields(typ)], n=1)
        return close[0] if close else None
    return None


def _hydra_message(text: str) -> str:
    """Hydra's multi-line composition messages as one line (option lists joined with commas)."""
    head, opts, where = [], [], None
    for ln in text.splitlines():
        if ln.strip().startswith("Config search path"):
            break
        if ln.strip().startswith("Available options in"):
            where = ln.strip().rstrip(":")
        elif where is not None and ln.strip():
            opts.append(ln.strip())
        elif ln.strip():
            head.append(ln.strip())
    msg = " ".join(head[:2]).removeprefix("In 'train': ").removeprefix("In 'map': ")
    if where:
        msg += f"; {where[0].lower()}{where[1:]}: {', '.join(opts)}"
    return msg


def compose_checked(config_name: str, overrides: list[str]):
    """Compose ``config_name`` from the packaged configs with ``overrides`` (Hydra's compose API).

    Raises :class:`ConfigError` with one line naming the option when Hydra or OmegaConf refuse
    the composition (an unknown key, a value of the wrong type, an unknown group option, a
    malformed override) or when a key is not in the schema (:func:`check_known_keys`).
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from somtorch.cli.common import CONFIG_MODULE
    from somtorch.cli.schema import register

    register()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        cause = e.__cause__ if e.__cause__ is not None else e
        msg = _omegaconf_message(cause) or _omegaconf_message(e)
        if msg is None:
            msg = _hydra_message(str(e)) or type(e).__name__
        raise ConfigError(msg) from e
    check_known_keys(cfg)
    return cfg


def check_known_keys(cfg, prefix: str = "") -> None:
    """Refuse keys that are not in the schema of their node (``+som.shapee=...`` adds one)."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(cfg, DictConfig):
        return
    typ = OmegaConf.get_type(cfg)
    if is_dataclass(typ):
        names = [f.name for f in fields(typ)]
        for k in cfg.keys():
            if k not in names:
                close = difflib.get_close_matches(str(k), names, n=1)
                raise ConfigError(None, f"{prefix}{k}", None, None,
                                  f"unknown option of '{prefix.rstrip('.') or 'the config'}'"
                                  + (f" (did you mean '{prefix}{close[0]}'?)" if close else "")
                                  + f"; known: {', '.join(names)}")
    for k in cfg.keys():
        if OmegaConf.is_missing(cfg, k):
            continue
        v = cfg._get_node(k)
        if isinstance(v, DictConfig) and not v._is_none():
            check_known_keys(v, f"{prefix}{k}.")


# ---------------------------------------------------------------------------------------- errors
def is_expected_error(e: BaseException) -> bool:
    """Failures a user can act on without a traceback: bad options or files, full disk, OOM."""
    if isinstance(e, (SomtorchError, OSError, MemoryError)):
        return True
    return type(e).__name__ in ("OutOfMemoryError", "DistributedError")


def describe_error(e: BaseException) -> str:
    """One line for a person: what failed and what to do."""
    name = type(e).__name__
    if name == "OutOfMemoryError" or isinstance(e, MemoryError):
        return ("out of memory: " + _first_line(str(e))[:200]
                + " -- lower runtime.memory_limit or runtime.batch_size, or use fewer rotations or a smaller SOM")
    if isinstance(e, SomtorchError):
        return " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
    if isinstance(e, OSError):
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            what = f"{e.strerror} while writing {e.filename}" if e.filename else _first_line(str(e))
            return f"{what} -- free some space and run again (outputs written so far are kept for resume)"
        if e.filename is not None:
            return f"{e.filename}: {e.strerror or _first_line(str(e))}"
        return _first_line(str(e)) or name
    return f"{name}: {_first_line(str(e))}"


def call_hydra(prog: str, argv: list[str], entry, result: dict) -> None:
    """Run a Hydra main ``entry`` with ``argv`` as its command line (``sys.argv`` restored after),
    then raise the error its task stored in ``result["error"]`` (Hydra's own handler would print a
    traceback)."""
    old = sys.argv[:]
    sys.argv = [sys.argv[0] if sys.argv else prog] + list(argv)
    try:
        entry()
    finally:
        sys.argv = old
    if "error" in result:
        raise result["error"]


def report_error(prog: str, e: BaseException) -> int:
    """Print ``<prog>: error: <one line>`` (and where to get more) to stderr; returns exit status 1."""
    print(f"{prog}: error: {describe_error(e)}", file=sys.stderr)
    if not isinstance(e, ConfigError):
        print(f"{prog}: (HYDRA_FULL_ERROR=1 or debug=true shows the traceback)", file=sys.stderr)
    sys.stderr.flush()
    return 1


# ---------------------------------------------------------------------------------------- folders
class RunFolder:
    """A claimed run folder. ``fresh``: it was absent or empty when claimed, so everything in it
    is this run's; :meth:`discard` removes it again (a run that failed before it started)."""

    def __init__(self, path: Path, fresh: bool, existed: bool):
        self.path, self.fresh, self.existed = Path(path), bool(fresh), bool(existed)

    def discard(self) -> None:
        if not self.fresh or not self.path.exists():
            return
        for child in list(self.path.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if not self.existed:
            try:
                self.path.rmdir()
            except OSError:
                pass


def claim_run_dir(path, *, existed: bool | None = None, resume: bool = False, overwrite: bool = False,
                  what: str = "run") -> RunFolder:
    """Claim ``path`` for a new run (or, with ``resume``, the run there).

    A folder that already holds anything is refused (:class:`OutputExistsError`, nothing inside
    is touched) unless ``overwrite`` (the caller removes the earlier outputs) or ``resume``.
    ``existed``: whether the folder existed before the program started (Hydra creates it first).
    Temporary files of atomic writers that were killed outright are swept first
    (:func:`~somtorch.io.atomic.sweep_temp_files`).
    """
    from somtorch.io.atomic import sweep_temp_files

    p = Path(path)
    existed = p.exists() if existed is None else existed
    sweep_temp_files(p)  # temporary files of writers killed outright (SIGKILL, power cut)
    used = p.is_dir() and any(p.iterdir())
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{p}: exists and is not a folder; choose another hydra.run.dir")
    if used and not (resume or overwrite):
        raise OutputExistsError(
            f"{p} already holds a {what}; continue it with resume={p}, choose another hydra.run.dir, "
            "or pass overwrite=true to replace it")
    p.mkdir(parents=True, exist_ok=True)
    return RunFolder(p, fresh=not used, existed=existed)


def save_run_config(run_dir, cfg, overrides: list[str]) -> None:
    """Save the resolved config and the overrides in ``<run>/.hydra/`` (``config.yaml``,
    ``overrides.yaml``), as Hydra does -- once, when the run starts."""
    from omegaconf import OmegaConf

    from somtorch.io.atomic import atomic_output

    d = Path(run_dir) / ".hydra"
    d.mkdir(parents=True, exist_ok=True)
    with atomic_output(d / "config.yaml", overwrite=True, mode="w") as f:
        f.write(OmegaConf.to_yaml(cfg, resolve=True))
    with atomic_output(d / "overrides.yaml", overwrite=True, mode="w") as f:
        f.write(OmegaConf.to_yaml(OmegaConf.create(list(overrides))))


def load_run_config(run_dir, schema):
    """The config a run was started with (``<run>/.hydra/config.yaml``), checked against ``schema``."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not Path(run_dir).is_dir():
        raise ConfigError(None, "resume", str(run_dir), "an existing run folder")
    if not path.is_file():
        raise ConfigError(path, "resume", str(run_dir), "a run folder written by this program",
                          "its saved config (.hydra/config.yaml) is missing")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(path))
    except (OmegaConfBaseException, ValueError) as e:
        raise ConfigError(path, None, None, None, _omegaconf_message(e) or _first_line(str(e))) from e
    check_known_keys(cfg)
    return cfg


def progress_bar_wanted(runtime) -> bool:
    """``runtime.progress_bar``; null (the default): on when stderr is a terminal (off in logs and
    pipes, where the programs log a line at each progress point instead)."""
    v = runtime.get("progress_bar") if runtime is not None else None
    if v is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(v)


def fmt_figure(v, digits: int = 4) -> str:
    """A figure for a log line: ``digits`` significant digits (``0.1235``), ``-`` for none."""
    if v is None:
        return "-"
    try:
        return f"{float(v):.{digits}g}"
    except (TypeError, ValueError):
        return str(v)


def tune_process() -> None:
    """Process-wide settings a command-line program makes for itself (never a library call):
    glibc's allocator keeps the large per-step CPU buffers in the heap
    (:func:`somtorch.engine._malloc.tune_malloc`; ``SOMTORCH_MALLOC_TUNING=0`` leaves it alone)."""
    from somtorch.engine._malloc import tune_malloc

    tune_malloc()


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        if not d and prefix:
            out[prefix[:-1]] = {}
    else:
        out[prefix[:-1]] = d
    return out


def resume_target(overrides: list[str]) -> str | None:
    """The run folder named by ``resume=<folder>`` (or ``resume=true hydra.run.dir=<folder>``)."""
    v = override_value(overrides, "resume")
    if v is None or v.strip().lower() in ("false", "null", "none", "no", "0", ""):
        return None
    if v.strip().lower() in ("true", "yes", "1"):
        d = override_value(overrides, "hydra.run.dir")
        if not d:
            raise ConfigError(None, "resume", v, "the run folder to continue: resume=<run folder>")
        return d
    return v


def saved_config_for_resume(config_name: str, schema, run_dir, overrides: list[str], allowed_prefixes,
                            reset=()):
    """A run's saved config (:func:`load_run_config`) with the command line's ``overrides`` checked.

    Overrides of options starting with one of ``allowed_prefixes`` (those that do not change the
    result) take effect; any other override must agree with the saved config (so the original
    command may be repeated), else :class:`ConfigError` names the option. ``reset`` options are
    set to null (one-off options of the original run).
    """
    from omegaconf import OmegaConf

    saved = load_run_config(run_dir, schema)
    given = [o for o in overrides if not o.lstrip("+~").startswith(("resume=", "hydra."))]
    base = _plain(compose_checked(config_name, []))
    asked = _plain(compose_checked(config_name, given)) if given else base
    flat_base, flat_asked, flat_saved = _flatten(base), _flatten(asked), _flatten(_plain(saved))
    touched = sorted(k for k in set(flat_base) | set(flat_asked)
                     if flat_base.get(k, "<none>") != flat_asked.get(k, "<none>"))
    allowed = [k for k in touched if k.startswith(tuple(allowed_prefixes))]
    for k in touched:
        if k not in allowed and flat_saved.get(k, "<none>") != flat_asked.get(k, "<none>"):
            raise ConfigError(None, k, flat_asked.get(k), f"{flat_saved.get(k)!r} as in the run being resumed",
                              f"resume={run_dir} continues that run with its saved config "
                              f"({Path(run_dir) / '.hydra' / 'config.yaml'}); start a new run to change it")
    for k in reset:
        OmegaConf.update(saved, k, None)
    for k in allowed:
        OmegaConf.update(saved, k, OmegaConf.select(OmegaConf.create(asked), k), merge=False)
    return saved


def _plain(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def console_logging():
    """Log INFO records to stdout as Hydra's job logging does, for a run outside Hydra; returns a
    function that restores the previous logging setup."""
    root = logging.getLogger()
    old_handlers, old_level = root.handlers[:], root.level
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root.handlers = [h]
    root.setLevel(logging.INFO)

    def restore():
        root.handlers = old_handlers
        root.setLevel(old_level)

    return restore


def log_to_file(path) -> logging.Handler:
    """Append the root logger's records to ``path`` (as Hydra's job log file); returns the handler."""
    h = logging.FileHandler(path, mode="a", encoding="utf-8")
    h.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(h)
    return h
