"""Command line annotator (PYINK ``run_annotation_example.py``).

Usage::

    python -m somtorch.annotation SOM [-d] [-k I [J ...]] [-r [PATH]] [-c] [--labels A B ...]

* without ``-k``: step through all neurons (``-c`` resumes at the first un-annotated one);
* ``-k I J`` (lattice key) or ``-k N`` (flat index): annotate that single neuron;
* ``-r``: load previous results -- bare flag: the default ``<SOM>.annotations.npz``; with a path:
  that file (a PYINK ``.results.pkl`` is imported only with ``--allow-pickle``);
* ``-d``: do not save (results are otherwise saved, atomically, to ``<SOM>.annotations.npz`` or
  the ``-r`` path after every move).
"""

from __future__ import annotations

import argparse
import os
import sys

from somtorch.annotation.store import ANT_SUFFIX, AnnotationSet, import_pyink_results

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m somtorch.annotation", description=__doc__.split("\n\n")[0])
    p.add_argument("som", help="PINK SOM file")
    p.add_argument("-d", "--dont-save", action="store_true", help="do not save the annotations")
    p.add_argument("-k", "--key", nargs="+", type=int, help="annotate only this neuron (I J, or a flat index)")
    p.add_argument("-r", "--results", nargs="?", const=True, default=None,
                   help="load results (default path when given without a value)")
    p.add_argument("-c", "--resume", action="store_true", help="start at the first un-annotated neuron")
    p.add_argument("--labels", nargs="*", default=[], help="labels to create up front")
    p.add_argument("--allow-pickle", action="store_true", help="allow importing a PYINK .results.pkl")
    p.add_argument("--no-block", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    from somtorch.annotation.gui import Annotator
    from somtorch.io.binwrap import SOM

    a = build_parser().parse_args(argv)
    som = SOM(a.som)
    default = f"{a.som}.{ANT_SUFFIX}"
    res_path = default if a.results is True or (a.results is None and (a.resume or a.key)) else a.results
    results = None
    if res_path is not None and os.path.exists(res_path):
        if str(res_path).endswith(".pkl"):
            results = import_pyink_results(res_path, key_to_index=som.key_to_index, allow_pickle=a.allow_pickle)
        else:
            results = AnnotationSet.load(res_path)
    save = None if a.dont_save else (default if res_path is None or str(res_path).endswith(".pkl") else res_path)
    ann = Annotator(som, results=results, save=save, labels=a.labels)
    block = False if a.no_block else None
    if a.key:
        ann.annotate_neuron(tuple(a.key) if len(a.key) > 1 else a.key[0], block=block)
    else:
        ann.interactive_annotate(resume=a.resume, block=block)
    if block is None or ann.finished:
        print(f"{len(ann.results.annotated())} neurons annotated" + (f"; saved to {save}" if save else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
