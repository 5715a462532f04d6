"""somtorch-pink: the PINK 2.5 drop-in command line (somtorch.pink).

* every command of tests/data/manifest.json reproduces PINK's golden outputs;
* PINK's error messages and exit codes, option-parsing rules (case-insensitive values, missing
  arguments, no ``-e``), inter-store naming, comment copying, extensions;
* the cookbook's 3-stage bash training script runs unchanged (on a tiny input).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from somtorch.io import read_header, read_mapping, read_som, read_transforms
from somtorch.pink import PinkArgs, main, parse_args

DATA = Path(__file__).parent / "data"
MANIFEST = json.loads((DATA / "manifest.json").read_text())["commands"]
PREFIX = "Pink --cuda-off --numthreads 1 "
REPO = Path(__file__).resolve().parents[1]


def _argv(command: str) -> list[str]:
    assert command.startswith(PREFIX)
    return ["--cuda-off", "--numthreads", "1"] + shlex.split(command[len(PREFIX):])


def _inputs(argv: list[str]) -> list[str]:
    """Input files of a PINK command (data file, --init file, --map SOM)."""
    out = []
    if "--train" in argv:
        out.append(argv[argv.index("--train") + 1])
    if "--map" in argv:
        i = argv.index("--map")
        out += [argv[i + 1], argv[i + 3]]
    if "--init" in argv and (DATA / argv[argv.index("--init") + 1]).exists():
        out.append(argv[argv.index("--init") + 1])
    return out


def _outputs(argv: list[str]) -> list[str]:
    if "--train" in argv:
        return [argv[argv.index("--train") + 2]]
    out = [argv[argv.index("--map") + 2]]
    if "--store-rot-flip" in argv:
        out.append(argv[argv.index("--store-rot-flip") + 1])
    return out


def _header_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read(read_header(path).offset)


def _run(argv, capsys) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().out


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _copy(tmp: Path, *names: str) -> None:
    for n in names:
        shutil.copy(DATA / n, tmp / n)
        os.chmod(tmp / n, 0o644)


def _check_transforms_equal_except_ties(map_golden, rf_ours, rf_golden, argv, work):
    """Flips and angles identical except where PINK's two candidates tie (near-equal distances)."""
    fo, ao, _ = read_transforms(rf_ours)
    fg, ag, _ = read_transforms(rf_golden)
    fo, ao, fg, ag = (np.asarray(x) for x in (fo, ao, fg, ag))
    bad = np.nonzero((fo != fg) | (ao != ag))
    if len(bad[0]) == 0:
        return
    # re-evaluate the mismatching entries: both transformations must give the same distance
    from somtorch.engine import RotationInvariantSOM, SOMGeometry
    from somtorch.geometry import Lattice, flip_angle_to_index
    from somtorch.io import read_images

    a = parse_args(argv)
    imgs = read_images(a.data)
    w, h = read_som(a.som_in)
    lat = Lattice.from_pink(a.som_width, a.som_height, a.som_depth, a.layout)
    geo = SOMGeometry(imgs.shape[-1], imgs.shape[1], a.numrot, a.flip, distance_shape=a.distance_shape)
    som = RotationInvariantSOM(lat, geo, init=w, arithmetic="pink")
    to = flip_angle_to_index(torch.from_numpy(fo), torch.from_numpy(ao), a.numrot)
    tg = flip_angle_to_index(torch.from_numpy(fg), torch.from_numpy(ag), a.numrot)
    for i, n in zip(*bad):
        dsq = som.sq_distances(imgs[i:i + 1])[0, :, n]
        assert float(dsq[to[i, n]]) == pytest.approx(float(dsq[tg[i, n]]), rel=1e-5, abs=1e-6), (i, n)
    assert len(bad[0]) <= 0.02 * fo.size


# --------------------------------------------------------------------------------------------
# golden files
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", MANIFEST, ids=[c["name"] for c in MANIFEST])
def test_manifest_command_reproduces_golden(cmd, work, capsys):
    argv = _argv(cmd["command"])
    _copy(work, *_inputs(argv))
    if cmd["name"] == "train A":  # zero init: exact ties everywhere, reproduced by PINK's arithmetic
        argv += ["--arithmetic", "pink"]
    rc, out = _run(argv, capsys)
    assert rc == 0, out
    assert "Successfully finished. Have a nice day." in out
    for name in _outputs(argv):
        ours, golden = work / name, DATA / name
        assert _header_bytes(ours) == _header_bytes(golden), name
        assert ours.stat().st_size == golden.stat().st_size, name
    if "--train" in argv:
        (name,) = _outputs(argv)
        a, _ = read_som(work / name)
        b, _ = read_som(DATA / name)
        assert torch.allclose(a, b, rtol=0, atol=1e-3), float((a - b).abs().max())
        if cmd["name"] == "train A":
            assert float((a - b).abs().max()) < 1e-6
    else:
        mapping, rf = _outputs(argv)
        a, _ = read_mapping(work / mapping)
        b, _ = read_mapping(DATA / mapping)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        _check_transforms_equal_except_ties(DATA / mapping, work / rf, DATA / rf, argv, work)


def test_progress_output_and_parameters(work, capsys):
    _copy(work, "train20.bin")
    rc, out = _run(["--cuda-off", "--train", "train20.bin", "s.bin", "--som-width", "3", "--som-height", "3",
                    "-n", "4", "-p", "3", "--seed", "1"], capsys)
    assert rc == 0
    lines = out.splitlines()
    bars = [ln for ln in lines if ln.startswith("[")]
    # 20 ticks, P=3: sec=6, rem=2 -> prints at 7, 13, 19 (spec §5.8)
    assert [ln.split("] ")[1].split(" %")[0] for ln in bars] == ["35", "65", "95"]
    assert all(len(ln.split("]")[0]) == 71 for ln in bars)
    assert "  Neuron dimension = 23x23" in lines and "  Euclidean distance dimension = 11x11" in lines
    assert "  Seed = 1" in lines and "  Number of rotations = 4" in lines
    assert "  Write final SOM to s.bin ... done." in lines
    assert any(ln.startswith("  Total time (hh:mm:ss): ") for ln in lines)
    assert lines[-2] == "  Successfully finished. Have a nice day."


# --------------------------------------------------------------------------------------------
# errors: PINK exception + Program was aborted + exit code 1
# --------------------------------------------------------------------------------------------

def _write_data(path, version=2, ftype=0, dtype=0, dims=(16, 16), n=2, layout=0):
    with open(path, "wb") as f:
        f.write(struct.pack(f"<6i{len(dims)}i", version, ftype, dtype, n, layout, len(dims), *dims))
        f.write(np.zeros(max(n, 0) * int(np.prod(dims)), np.float32).tobytes())


TRAIN = ["--cuda-off", "--train", "train20.bin", "out.bin", "--som-width", "3", "--som-height", "3", "-n", "4"]


@pytest.mark.parametrize("extra, message", [
    (["-n", "3"], "Number of rotations must be 1 or a multiple of 4"),
    (["--numrot", "0"], "Number of rotations must be 1 or a multiple of 4"),
    (["--som-width", "1"], "som-width must be > 1."),
    (["--som-height", "0"], "som-height must be > 0."),
    (["--layout", "hexagonal", "--som-width", "4", "--som-height", "4"],
     "For hexagonal layout only odd dimension supported."),
    (["--layout", "hexagonal", "--som-width", "5", "--som-height", "3"],
     "For hexagonal layout som-width must be equal to som-height."),
    (["--layout", "hexagonal", "--som-width", "3", "--som-depth", "2"],
     "For hexagonal layout som-depth must be equal to 1."),
    (["--euclidean-distance-dimension", "20", "-d", "18"],
     "euclidean distance dimension must be equal or smaller than neuron dimension."),
    (["--max-update-distance", "0"], "max-update-distance must be positive."),
    (["--dist-func", "mexicanHat", "0", "0.2"],
     "Standard exception: MexicanHatFunctor: sigma <= 0 not defined."),
    (["-n", "-4"], "Standard exception: str_to_uint32_t: integer must be positive"),
    (["--num-iter", "0"], "Number of iterations must be larger than 0."),
    (["--dist-func", "triangle", "1", "1"], "Unknown intermediate storage option triangle"),
    (["--euclidean-distance-type", "int4"], "Unknown intermediate storage option int4"),
    (["--init", "no_such_som.bin"], "Error opening no_such_som.bin"),
])
def test_option_errors(extra, message, work, capsys):
    _copy(work, "train20.bin")
    rc, out = _run(TRAIN + extra, capsys)
    assert rc == 1
    assert message in out
    assert out.rstrip().endswith("Program was aborted.")
    assert ("Standard exception: " if message.startswith("Standard") else "PINK exception: ") in out
    assert not (work / "out.bin").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"version": 1}, "Please use file format version 2 as data input."),
    ({"ftype": 1}, "Please use file type 0 as data input."),
    ({"dtype": 1}, "Only data_type = 0 (float, single precision) is supported."),
    ({"n": 0}, "Number of data entries must be larger than 0."),
    ({"dims": (16, 12)}, "Images must be quadratic."),
    ({"layout": 1}, "Unsupported data layout: hexagonal"),
    ({"dims": (16,)}, "Not implemented yet."),
])
def test_data_file_errors(kwargs, message, work, capsys):
    _write_data(work / "bad.bin", **kwargs)
    rc, out = _run(["--cuda-off", "--train", "bad.bin", "out.bin", "--som-width", "2", "--som-height", "2",
                    "-n", "4"], capsys)
    assert rc == 1
    msg_line = [ln for ln in out.splitlines() if ln.startswith("PINK exception: ")]
    assert len(msg_line) == 1 and message in msg_line[0] and "bad.bin" in msg_line[0]
    assert out.rstrip().endswith("Program was aborted.")
    assert "  Data file = bad.bin" in out  # parameters are printed before the data checks (spec §7.2)


def test_missing_data_file(work, capsys):
    rc, out = _run(["--cuda-off", "--map", "nothing.bin", "m.bin", "som.bin"], capsys)
    assert rc == 1 and "PINK exception: Error opening nothing.bin" in out


def test_map_geometry_mismatch_is_a_clear_error(work, capsys):
    _copy(work, "train20.bin", "somA.bin")
    rc, out = _run(["--cuda-off", "--map", "train20.bin", "m.bin", "somA.bin", "--som-width", "4",
                    "--som-height", "4", "-n", "4"], capsys)
    assert rc == 1 and "som_dims" in out and "somA.bin" in out and "command line" in out
    rc, out = _run(["--cuda-off", "--map", "train20.bin", "m.bin", "somA.bin", "--som-width", "3",
                    "--som-height", "3", "-n", "8", "-d", "20"], capsys)
    assert rc == 1 and "neuron_shape" in out
    assert not (work / "m.bin").exists()


# --------------------------------------------------------------------------------------------
# option parsing
# --------------------------------------------------------------------------------------------

def test_parse_defaults_are_pinks():
    a = parse_args(["--train", "d.bin", "s.bin"])
    assert isinstance(a, PinkArgs)
    assert (a.mode, a.data, a.som_out) == ("train", "d.bin", "s.bin")
    assert (a.numrot, a.flip, a.seed, a.num_iter, a.progress) == (360, True, 1234, 1, 10)
    assert (a.som_width, a.som_height, a.som_depth, a.layout, a.init) == (10, 10, 1, "cartesian", "zero")
    assert (a.dist_func, a.sigma, a.damping, a.max_update_distance) == ("gaussian", 1.1, 0.2, None)
    assert (a.distance_shape, a.inter_store, a.interpolation, a.arithmetic) == (
        "quadratic", "off", "bilinear", "gemm")
    assert a.overwrite is True and a.to_dict()["seed"] == 1234


def test_parse_values_case_insensitive_and_forms():
    a = parse_args(["--map", "D.bin", "M.bin", "S.bin", "--layout", "HEXAGONAL", "-f", "MexicanHat", "1.5", "0.3",
                    "--init", "RANDOM", "--inter-store", "Keep", "--euclidean-distance-shape", "Circular",
                    "--euclidean-distance-type", "FLOAT", "--interpolation", "NEAREST_NEIGHBOR",
                    "-n8", "--som-w=5", "--som-height", "5", "-s", "7", "--flip-off", "--input-shuffle-off",
                    "--store-rot-flip", "RF.bin", "--arithmetic", "PINK", "--b1", "128", "--pbc"])
    assert (a.mode, a.data, a.map_out, a.som_in, a.store_rot_flip) == ("map", "D.bin", "M.bin", "S.bin", "RF.bin")
    assert (a.layout, a.dist_func, a.sigma, a.damping, a.init) == ("hexagonal", "mexicanhat", 1.5, 0.3, "random")
    assert (a.inter_store, a.distance_shape, a.distance_type, a.interpolation) == (
        "keep", "circular", "float", "nearest_neighbor")
    assert (a.numrot, a.som_width, a.seed, a.flip, a.shuffle, a.arithmetic, a.pbc) == (
        8, 5, 7, False, False, "pink", True)
    # a SOM file name keeps its case
    assert parse_args(["--init", "My_SOM.bin"]).init == "My_SOM.bin"
    assert parse_args(["-x", "Random_With_Preferred_Direction"]).init == "random_with_preferred_direction"


@pytest.mark.parametrize("argv, opt", [
    (["--train", "d.bin"], "train"),
    (["--train", "d.bin", "--numrot", "4"], "train"),
    (["--map", "d.bin", "m.bin"], "map"),
    (["--map", "d.bin", "m.bin", "-n", "4"], "map"),
    (["--dist-func", "gaussian", "1.0"], "dist-func"),
    (["--dist-func", "gaussian", "-1", "0.2"], "dist-func"),
    (["-f", "gaussian", "1.0", "--seed", "3"], "dist-func"),
])
def test_missing_arguments(argv, opt, capsys):
    rc, out = _run(argv, capsys)
    assert rc == 1
    assert f"PINK exception: Missing arguments for --{opt} option." in out
    assert "Program was aborted." in out


@pytest.mark.parametrize("argv, code", [
    (["-e", "10", "--train", "d.bin", "s.bin"], "77"),
    (["--euclidean-distance-dim=10", "--frobnicate"], "77"),
    (["--som", "3"], "77"),            # ambiguous abbreviation
    (["-a", "1"], "141"),              # in PINK's optstring, but unknown
])
def test_unknown_options_print_usage(argv, code, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 1
    assert f"Unknown option {code}" in cap.out and "--train <image-file>" in cap.out
    if argv[0] == "-e":
        assert "invalid option -- 'e'" in cap.err


def test_help_and_version(capsys):
    assert main(["-h"]) == 0
    out = capsys.readouterr().out
    assert "--euclidean-distance-dimension" in out and "somtorch-only" in out and "--arithmetic" in out
    assert main(["--version"]) == 0 and "PINK 2.5" in capsys.readouterr().out
    assert main(["-v"]) == 0 and "somtorch-pink" in capsys.readouterr().out


def test_no_mode_is_an_error(capsys):
    rc, out = _run(["--numrot", "4"], capsys)
    assert rc == 1 and "--train or --map" in out


# --------------------------------------------------------------------------------------------
# behaviour: inter-store, comments, verbose, extensions
# --------------------------------------------------------------------------------------------

def test_inter_store_keep_naming(work, capsys):
    _copy(work, "train20.bin")
    base = ["--cuda-off", "--train", "train20.bin", "res.som.bin", "--som-width", "2", "--som-height", "2",
            "-n", "4", "--inter-store", "keep"]
    assert main(base) == 0
    capsys.readouterr()
    # 20 images, P = 10: 9 intermediate SOMs (never after the last image), spec §5.8
    assert sorted(p.name for p in work.glob("res.som_*.bin")) == [f"res.som_{k}.bin" for k in range(9)]
    assert (work / "res.som.bin").exists()
    # a result name without '.' gets _<k> appended (PINK crashes)
    assert main(base[:3] + ["res"] + base[4:]) == 0
    assert sorted(p.name for p in work.glob("res_*")) == [f"res_{k}" for k in range(9)]
    # overwrite: no extra files
    assert main(base[:3] + ["ov.bin"] + base[4:-1] + ["overwrite"]) == 0
    assert not list(work.glob("ov_*"))
    # the last intermediate SOM is the state after image 19 (not the final one)
    a, _ = read_som(work / "res.som_8.bin")
    b, _ = read_som(work / "res.som.bin")
    assert not torch.equal(a, b)


def test_init_som_comments_are_copied_verbatim(work, capsys):
    _copy(work, "train20.bin")
    head = b"#created by a test\n# second line\n# END OF HEADER\n"
    (work / "init.bin").write_bytes(head + (DATA / "somB.bin").read_bytes())
    rc, out = _run(["--cuda-off", "--train", "train20.bin", "out.bin", "--som-width", "3", "--som-height", "3",
                    "-n", "4", "--init", "init.bin", "--inter-store", "keep", "-p", "2"], capsys)
    assert rc == 0, out
    for name in ("out.bin", "out_0.bin"):
        raw = (work / name).read_bytes()
        assert raw.startswith(head)
        assert raw[len(head):len(head) + 44] == (DATA / "somB.bin").read_bytes()[:44]
    assert read_header(work / "out.bin").comments[:2] == ("created by a test", "second line")


def test_init_from_file_continues_training(work, capsys):
    """Training from a SOM file equals PINK's state: somB trained once more from somB."""
    _copy(work, "train20.bin", "somB.bin")
    args = ["--cuda-off", "--som-width", "3", "--som-height", "3", "-n", "4", "--seed", "1"]
    assert main(["--train", "train20.bin", "again.bin", "--init", "somB.bin"] + args) == 0
    assert main(["--train", "train20.bin", "b.bin", "--init", "random", "--num-iter", "1"] + args) == 0
    capsys.readouterr()
    w0, _ = read_som(work / "somB.bin")
    w1, _ = read_som(work / "again.bin")
    assert w1.shape == w0.shape and not torch.equal(w0, w1)
    assert torch.allclose(read_som(work / "b.bin")[0], w0, atol=1e-6)


def test_verbose_prints_best_match_counts(work, capsys):
    _copy(work, "train20.bin")
    rc, out = _run(["--cuda-off", "--train", "train20.bin", "s.bin", "--som-width", "3", "--som-height", "3",
                    "-n", "4", "--seed", "1", "--init", "random", "--verbose"], capsys)
    assert rc == 0
    i = out.index("Number of updates of each neuron:")
    rows = [ln.split() for ln in out[i:].splitlines()[2:5]]
    assert rows == [["0", "0", "0"], ["1", "11", "3"], ["0", "3", "2"]]  # spec §9.2, run B


def test_extensions_metrics_pbc_nearest_and_no_overwrite(work, capsys):
    _copy(work, "train20.bin")
    base = ["--cuda-off", "--train", "train20.bin", "s.bin", "--som-width", "3", "--som-height", "3", "-n", "4",
            "--init", "random"]
    assert main(base + ["--metrics", "m.csv", "--pbc", "--interpolation", "nearest_neighbor",
                        "--batch-size", "3", "--device", "cpu", "--numthreads", "1"]) == 0
    import pandas as pd

    df = pd.read_csv(work / "m.csv")
    assert len(df) == 10 and {"qe", "te", "change"} <= set(df.columns)
    # outputs are replaced silently like PINK ...
    before = (work / "s.bin").read_bytes()
    assert main(base + ["--seed", "5"]) == 0
    assert (work / "s.bin").read_bytes() != before
    capsys.readouterr()
    # ... unless --no-overwrite
    rc, out = _run(base + ["--no-overwrite"], capsys)
    assert rc == 1 and "exists" in out
    assert not [p for p in work.iterdir() if ".tmp-" in p.name]


def test_numthreads_is_restored(work, capsys):
    _copy(work, "train20.bin")
    n = torch.get_num_threads()
    assert main(["--cuda-off", "-t", "1", "--map", "train20.bin", "m.bin", "nosuch.bin", "-n", "4"]) == 1
    assert torch.get_num_threads() == n


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_map_on_cuda_matches_golden(work, capsys):
    _copy(work, "train20.bin", "somB.bin")
    rc, out = _run(["--map", "train20.bin", "m.bin", "somB.bin", "--som-width", "3", "--som-height", "3",
                    "-n", "4", "--store-rot-flip", "rf.bin"], capsys)
    assert rc == 0 and "Use CUDA = 1" in out
    a, _ = read_mapping(work / "m.bin")
    b, _ = read_mapping(DATA / "mapB.bin")
    assert torch.allclose(a, b, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# the cookbook's 3-stage bash script (Table 3), unchanged apart from sizes
# --------------------------------------------------------------------------------------------

COOKBOOK = r"""
set -e
Pink() { "$PYTHON" -m somtorch.pink "$@"; }
WIDTH=3
HEIGHT=3
SUF=_h"$HEIGHT"_w"$WIDTH"_vlass
IMG='IMG_catalog.bin'
OUT1="SOM_B1$SUF.bin"
Pink --train $IMG $OUT1 --init random --numthreads 8 -n 4 -p 10 \
     --som-width $WIDTH --som-height $HEIGHT \
     --dist-func unitygaussian 2.5 0.1 --inter-store keep \
     --euclidean-distance-shape circular --num-iter 2
OUT2="SOM_B2$SUF.bin"
Pink --train $IMG $OUT2 --init $OUT1 --numthreads 8 -n 4 -p 10 \
     --som-width $WIDTH --som-height $HEIGHT \
     --dist-func unitygaussian 1.5 0.05 --inter-store keep \
     --euclidean-distance-shape circular --num-iter 2
OUT3="SOM_B3$SUF.bin"
Pink --train $IMG $OUT3 --init $OUT2 --numthreads 8 -n 8 -p 10 \
     --som-width $WIDTH --som-height $HEIGHT \
     --dist-func unitygaussian 0.7 0.05 --inter-store keep \
     --euclidean-distance-shape circular --num-iter 3
Pink --map IMG_catalog.bin MAP_catalog.bin SOM_B3_h3_w3_vlass.bin \
    --numthreads 8 --som-width 3 --som-height 3 \
    --store-rot-flip TRANSFORM_catalog.bin \
    --euclidean-distance-shape circular -n 8 | tee mapping_step.log
"""


def test_cookbook_three_stage_script(work):
    rng = np.random.default_rng(0)
    imgs = rng.random((6, 10, 10), dtype=np.float32)
    with open(work / "IMG_catalog.bin", "wb") as f:
        f.write(struct.pack("<8i", 2, 0, 0, 6, 0, 2, 10, 10) + imgs.tobytes())
    (work / "train.sh").write_text(COOKBOOK)
    env = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(["bash", "train.sh"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for k in (1, 2, 3):
        w, h = read_som(work / f"SOM_B{k}_h3_w3_vlass.bin")
        assert tuple(w.shape) == (9, 1, 15, 15) and h.som_dims == (3, 3)
        assert sorted(work.glob(f"SOM_B{k}_h3_w3_vlass_*.bin"))  # inter-store keep files
    m, mh = read_mapping(work / "MAP_catalog.bin")
    assert tuple(m.shape) == (6, 9) and torch.isfinite(m).all()
    flip, angle, _ = read_transforms(work / "TRANSFORM_catalog.bin")
    assert np.asarray(flip).shape == (6, 9)
    log = (work / "mapping_step.log").read_text()
    assert "Successfully finished. Have a nice day." in log


def test_tie_break_option(work, capsys, monkeypatch):
    """--tie-break none (a somtorch extension) trains without PINK's exact re-evaluation of near-ties;
    the default stays PINK's tie rules."""
    assert parse_args(["--train", "a.bin", "b.bin"]).tie_break == "pink"
    assert parse_args(["--train", "a.bin", "b.bin", "--tie-break", "NONE"]).tie_break == "none"
    with pytest.raises(Exception, match="tie-break"):
        parse_args(["--train", "a.bin", "b.bin", "--tie-break", "sometimes"])
    _copy(work, "train20.bin")
    seen = []
    import somtorch.engine.distance as dist

    orig = dist.TieResolver.resolve
    monkeypatch.setattr(dist.TieResolver, "resolve", lambda self, *a: seen.append(1) or orig(self, *a))
    for tie, n in (("none", 0), ("pink", None)):
        rc, _ = _run(["--train", "train20.bin", f"som_{tie}.bin", "--som-width", "3", "--som-height", "3",
                      "-n", "8", "--init", "zero", "--tie-break", tie], capsys)
        assert rc == 0
        if n == 0:
            assert not seen  # never consulted
    assert seen  # zero initialisation ties everywhere: PINK's rules were applied


def test_compile_option_gives_the_same_som(work, capsys):
    """--compile on|off (a somtorch extension): the compiled neuron update changes no bit of the
    SOM file; the default is auto; a bad value is refused naming the option."""
    assert parse_args(["--train", "a.bin", "b.bin"]).compile == "auto"
    assert parse_args(["--train", "a.bin", "b.bin", "--compile", "ON"]).compile == "on"
    with pytest.raises(Exception, match="compile"):
        parse_args(["--train", "a.bin", "b.bin", "--compile", "sometimes"])
    _copy(work, "train20.bin")
    for mode in ("off", "on"):
        rc, _ = _run(["--train", "train20.bin", f"som_{mode}.bin", "--som-width", "5", "--som-height", "5",
                      "-n", "4", "--init", "random", "--compile", mode], capsys)
        assert rc == 0
    assert (work / "som_on.bin").read_bytes() == (work / "som_off.bin").read_bytes()


def test_a_killed_runs_temporary_files_are_swept_on_the_next_start(work, capsys):
    """A SIGKILL leaves the atomic writer's temporary file; the next drop-in run writing into that
    folder removes it (its writer process is gone), and leaves other files alone."""
    import subprocess
    import sys

    _copy(work, "train20.bin")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = work / f".som.bin.tmp-p{pid}-0123456789ab"
    stale.write_bytes(b"x" * 1000)
    other = work / ".keep.me"
    other.write_bytes(b"y")
    rc, _ = _run(["--train", "train20.bin", "som.bin", "--som-width", "2", "--som-height", "2", "-n", "4"], capsys)
    assert rc == 0
    assert not stale.exists() and other.exists() and (work / "som.bin").exists()


@pytest.mark.parametrize("numrot, size", [(8, 16), (36, 20)])
def test_compiled_loops_change_no_output_byte(numrot, size, work, capsys, monkeypatch):
    """The drop-in's SOM, mapping and transformation files are byte-identical with the compiled loops
    (sampler, parity coordinates, step) and without them (SOMTORCH_NATIVE=0): a user who disables
    them, or whose machine has no C compiler, gets the same numbers."""
    from somtorch.io import write_images

    g = torch.Generator().manual_seed(numrot)
    write_images("img.bin", torch.rand(60, 1, size, size, generator=g).numpy(), overwrite=True)
    common = ["--som-width", "3", "--som-height", "3", "-n", str(numrot), "--numthreads", "2"]
    files = {}
    for native in ("1", "0"):
        monkeypatch.setenv("SOMTORCH_NATIVE", native)
        assert _run(["--train", "img.bin", f"som{native}.bin", "--init", "random", "--num-iter", "2", *common],
                    capsys)[0] == 0
        assert _run(["--map", "img.bin", f"map{native}.bin", f"som{native}.bin", "--store-rot-flip",
                     f"rf{native}.bin", *common], capsys)[0] == 0
        files[native] = [(work / f"{name}{native}.bin").read_bytes() for name in ("som", "map", "rf")]
    assert files["1"] == files["0"]
