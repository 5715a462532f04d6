"""Prime-number label encoding of annotation masks (PYINK compatible).

Convention
----------
* The k-th label created gets the k-th prime ``PRIMES[k]`` (2, 3, 5, ..., 71; at most 20 labels),
  exactly as PYINK's ``annotator.PRIMES``, so masks can be exchanged with PYINK.
* A filter is an integer array over the neuron's pixels ``[row][col]``. Pixel value ``0`` means
  not selected, ``1`` selected without a label, ``v > 1`` the set of labels whose primes divide
  ``v``. Values are square-free: a pixel covered by several regions holds the product of the
  *union* of their primes (the least common multiple), never a power of a prime.
* Decoding is by divisibility. Unlike PYINK, ``0`` never counts as carrying a label (PYINK's
  ``valid_region`` and integer membership tests treat ``0 mod p == 0`` as a hit).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from somtorch.errors import ConfigError, ShapeError

__all__ = ["PRIMES", "MAX_LABELS", "LabelSet", "region_value", "decode_value", "label_mask",
           "valid_region", "area_ratio"]

PRIMES: tuple[int, ...] = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)
MAX_LABELS = len(PRIMES)


class LabelSet:
    """Ordered label names and their primes (one per annotation session, not global as in PYINK).

    Examples
    --------
    >>> ls = LabelSet(["core", "lobe"])
    >>> ls.prime("lobe"), ls.value(["core", "lobe"]), ls.decode(6)
    (3, 6, ('core', 'lobe'))
    """

    def __init__(self, names: Iterable[str] = ()):
        self._names: list[str] = []
        for n in names:
            self.add(n)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name) -> bool:
        return name in self._names

    def __iter__(self):
        return iter(self._names)

    def pairs(self) -> list[tuple[str, int]]:
        """``(name, prime)`` pairs in creation order (PYINK's ``Annotation.labels``)."""
        return [(n, PRIMES[i]) for i, n in enumerate(self._names)]

    def add(self, name: str) -> int:
        """Add a label (no-op for an existing one) and return its prime."""
        name = str(name).strip()
        if not name:
            raise ConfigError(None, "label", name, "a non-empty name")
        if name in self._names:
            return self.prime(name)
        if len(self._names) >= MAX_LABELS:
            raise ConfigError(None, "labels", len(self._names) + 1, f"at most {MAX_LABELS} labels")
        self._names.append(name)
        return PRIMES[len(self._names) - 1]

    def prime(self, name: str) -> int:
        try:
            return PRIMES[self._names.index(name)]
        except ValueError:
            raise ConfigError(None, "label", name, f"one of {self._names}") from None

    def value(self, names: Iterable[str]) -> int:
        """Region value of a set of labels: product of their primes, 1 for no label."""
        return region_value(self.prime(n) for n in set(names))

    def decode(self, value: int, pedantic: bool = False) -> tuple[str, ...]:
        """Label names encoded in ``value`` (creation order); ``()`` for 0 and 1.

        ``pedantic=True`` raises on 1 (a region without a label), as PYINK's ``resolve_label``.
        Raises :class:`ConfigError` if a prime factor has no label.
        """
        value = int(value)
        if value == 1 and pedantic:
            raise ConfigError(None, "region value", 1, "a labelled region", "region has no label")
        primes = decode_value(value)
        if any(p not in PRIMES[:len(self._names)] for p in primes):
            raise ConfigError(None, "region value", value, f"a product of the primes of {self._names}")
        return tuple(self._names[PRIMES.index(p)] for p in primes)

    def to_json(self) -> list[str]:
        return list(self._names)


def region_value(primes: Iterable[int]) -> int:
    """Product of distinct primes (1 for none)."""
    v = 1
    for p in sorted(set(int(p) for p in primes)):
        v *= p
    return v


def decode_value(value: int) -> tuple[int, ...]:
    """Primes of :data:`PRIMES` dividing ``value`` (``()`` for 0 and 1).

    Raises :class:`ShapeError` if ``value`` has another factor left (not a valid label product).
    """
    value = int(value)
    if value in (0, 1):
        return ()
    if value < 0:
        raise ShapeError(f"region value {value} is negative")
    out, rest = [], value
    for p in PRIMES:
        if rest % p == 0:
            out.append(p)
            while rest % p == 0:
                rest //= p
    if rest != 1:
        raise ShapeError(f"region value {value} is not a product of label primes (left {rest})")
    return tuple(out)


def label_mask(filt, prime: int) -> np.ndarray:
    """Boolean mask of pixels carrying the label with prime ``prime`` (0 and 1 never do)."""
    f = np.asarray(filt)
    return (f > 1) & (f % int(prime) == 0)


def valid_region(filt, filter_includes=None, filter_excludes=None) -> np.ndarray:
    """Pixels that carry any of the ``filter_includes`` primes and none of ``filter_excludes``.

    With ``filter_includes=None`` every selected pixel (value != 0, including unlabelled 1s) is
    a candidate. Fixes PYINK's quirk: unselected (0) pixels are never included.
    """
    f = np.asarray(filt)
    if filter_includes is None:
        valid = f != 0
    else:
        inc = [filter_includes] if np.isscalar(filter_includes) else list(filter_includes)
        valid = np.zeros(f.shape, dtype=bool)
        for p in inc:
            valid |= label_mask(f, p)
    if filter_excludes is not None:
        exc = [filter_excludes] if np.isscalar(filter_excludes) else list(filter_excludes)
        for q in exc:
            valid &= ~label_mask(f, q)
    return valid


def area_ratio(filter1, filter2, filter_includes=None, filter_excludes=None, empty_check: bool = True) -> float:
    """Valid-pixel count of ``filter1`` over that of ``filter2`` (PYINK ``utils.area_ratio``).

    With ``empty_check`` and an empty ``filter2`` the denominator is ``filter1``'s count (ratio 1),
    and 0.0 when both are empty (PYINK gives NaN).
    """
    a = int(valid_region(filter1, filter_includes, filter_excludes).sum())
    b = int(valid_region(filter2, filter_includes, filter_excludes).sum())
    if b == 0:
        if not empty_check:
            return float("inf") if a else float("nan")
        b = a
    return a / b if b else 0.0
