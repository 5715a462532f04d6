"""Every public PYINK name exists in somtorch.pyink with a compatible signature (spec inventory
in somtorch/pyink/_names.py, written from shared/spec/pyink-features.md)."""

import importlib
import inspect

import astropy.units as u
import numpy as np
import pytest

import somtorch.pyink as pu
from somtorch.pyink._names import ACTIONS, CONSTANTS, SIGNATURES, SUBMODULES

P = inspect.Parameter


def _resolve(name):
    obj = pu
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _pyink_signature(text):
    ns = {"u": u, "Action": pu.Action}
    body = text.strip()[1:-1].replace("=...", "=_ELLIPSIS")
    ns["_ELLIPSIS"] = Ellipsis
    return inspect.signature(eval(f"lambda {body}: None", ns))  # noqa: S307 - our own inventory


def _same_default(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(np.all(a == b))


def _compatible(ours: inspect.Signature, theirs: inspect.Signature, name: str):
    op = [p for p in ours.parameters.values()]
    tp = [p for p in theirs.parameters.values()]
    # PYINK's positional parameters: same names, same order, same defaults
    pos_t = [p for p in tp if p.kind in (P.POSITIONAL_OR_KEYWORD, P.POSITIONAL_ONLY)]
    pos_o = [p for p in op if p.kind in (P.POSITIONAL_OR_KEYWORD, P.POSITIONAL_ONLY)]
    assert [p.name for p in pos_o[:len(pos_t)]] == [p.name for p in pos_t], f"{name}: {ours} vs PYINK {theirs}"
    for a, b in zip(pos_o, pos_t):
        if b.default is Ellipsis:
            assert a.default is not P.empty, f"{name}: {a.name} needs a default"
        elif b.default is P.empty:
            assert a.default is P.empty, f"{name}: {a.name} must be required as in PYINK"
        else:
            assert _same_default(a.default, b.default), \
                f"{name}: default of {a.name} is {a.default!r}, PYINK {b.default!r}"
    # extra positional parameters of ours need defaults
    for a in pos_o[len(pos_t):]:
        assert a.default is not P.empty, f"{name}: extra parameter {a.name} without default"
    kinds_o = {p.kind for p in op}
    for b in tp:
        if b.kind is P.VAR_POSITIONAL:
            assert P.VAR_POSITIONAL in kinds_o, f"{name}: needs *{b.name}"
        elif b.kind is P.KEYWORD_ONLY:
            a = ours.parameters.get(b.name)
            assert a is not None and a.kind in (P.KEYWORD_ONLY, P.POSITIONAL_OR_KEYWORD), f"{name}: {b.name}"
            assert a.default == b.default, f"{name}: default of {b.name}"
        elif b.kind is P.VAR_KEYWORD:
            assert P.VAR_KEYWORD in kinds_o, f"{name}: needs **{b.name}"
    for a in op:
        if a.kind is P.KEYWORD_ONLY and a.name not in theirs.parameters:
            assert a.default is not P.empty, f"{name}: extra keyword {a.name} without default"


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_public_name_has_pyink_signature(name):
    obj = _resolve(name)
    assert callable(obj), name
    theirs = _pyink_signature(SIGNATURES[name])
    ours = inspect.signature(obj)
    if name in ("Mapping.bmu_counts", "Mapping.images_with_bmu"):
        # PYINK forwards **bmu_kwargs to bmu(); ours must take the same keywords
        assert any(p.kind is P.VAR_KEYWORD for p in ours.parameters.values())
        return
    _compatible(ours, theirs, name)


def test_every_top_level_name_of_pyink_is_exported():
    top = {n.split(".")[0] for n in SIGNATURES if not n.startswith("annotator.")} | set(CONSTANTS)
    missing = sorted(n for n in top if not hasattr(pu, n))
    assert not missing
    assert set(pu.__all__) >= top


def test_constants_have_pyink_values():
    for name, value in CONSTANTS.items():
        assert getattr(pu, name) == value, name
    assert pu.binwrap.REC_SUFFIX == "records.pkl" and pu.annotator.ANT_SUFFIX == "results.pkl"
    assert {a.name: a.value for a in pu.Action} == ACTIONS


def test_submodules_importable_like_pyink():
    for sub in SUBMODULES:
        m = importlib.import_module(f"somtorch.pyink.{sub}")
        assert m.__name__ == f"somtorch.pyink.{sub}"
    # as in PYINK, the package attribute SOMSampler is the class, the module stays importable
    assert isinstance(pu.SOMSampler, type)
    from somtorch.pyink.SOMSampler import SOMSampler
    assert SOMSampler is pu.SOMSampler


def test_signature_checker_rejects_incompatible_signatures():
    """The checker itself can fail (a wrong default, a renamed or missing parameter)."""
    theirs = _pyink_signature("(data, threshold=0.01)")

    def f1(data, threshold=0.5): ...
    def f2(data, thresh=0.01): ...
    def f3(data): ...
    for f in (f1, f2, f3):
        with pytest.raises(AssertionError):
            _compatible(inspect.signature(f), theirs, "convex_hull")
