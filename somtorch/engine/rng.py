"""Exact emulation of the random numbers PINK 2.5 draws (GCC 12 / libstdc++ 12 build).

PINK uses the C++ standard library for two things (spec §5.2, §5.7):

* the **input shuffle** of every training iteration: ``std::default_random_engine``
  (``minstd_rand0``) seeded with ``seed + iteration`` gives one draw, which seeds a
  ``std::mt19937`` that drives ``std::shuffle`` (:func:`pink_shuffle_order`);
* the **random SOM initialisation** (``--init random``): ``std::mt19937(seed)`` and one
  ``uniform_real_distribution<float>(0, 1)`` value per float (:func:`pink_uniform_fill`,
  :func:`pink_random_init`).

Everything here is pure Python / numpy and bit-exact with libstdc++ 12 on x86-64 Linux.
Binaries built against other standard libraries (MSVC, libc++, libstdc++ < 11) shuffle
differently; no attempt is made to emulate them.

Convention
----------
Seeds are Python integers taken as the C++ ``int`` PINK passes. Conversion to the engines'
``uint_fast32_t`` (64-bit on x86-64 Linux) is modular: a negative ``s`` becomes ``s + 2**64``,
so ``minstd_rand0`` reduces ``s mod 2**64`` modulo ``2**31 - 1`` and ``mt19937`` keeps
``s mod 2**32``. Raw draws are returned as ``uint32``; permutations as ``int64`` index arrays
``order`` meaning "process image ``order[k]`` at step ``k``"; filled SOMs have shape
``(num_neurons, *neuron_shape)`` (``neuron_shape`` normally ``(C, nd, nd)``) and are filled in
C (row-major) storage order, which is PINK's file order (spec §1.3).

Speed (2 vCPU AMD EPYC container): ``pink_shuffle_order(10**6, 1)`` takes about 0.4 s and
``n = 3 * 10**6`` about 1.5 s (Fisher–Yates branch: the bounded draws are vectorised in numpy,
only the sequential swaps run in a Python loop); the pairwise branch (``n <= 65535``) runs a
plain Python loop of ``n / 2`` steps (< 50 ms).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from somtorch.errors import ConfigError, ShapeError

__all__ = [
    "MT19937",
    "minstd_rand0_first",
    "pink_shuffle_order",
    "pink_uniform_fill",
    "pink_random_init",
    "MINSTD_MODULUS",
    "FLOAT32_BELOW_ONE",
]

MINSTD_MODULUS = 2**31 - 1
"""Modulus ``m`` of ``minstd_rand0`` (``a = 16807``, ``c = 0``)."""

FLOAT32_BELOW_ONE = np.float32(np.nextafter(np.float32(1.0), np.float32(0.0)))
"""``nextafter(1.0f, 0.0f) = 0.99999994``: what libstdc++ returns when a canonical float rounds to 1."""

_U32 = 2**32
_U64 = 2**64
_TWO_POW_M32 = np.float32(2.0**-32)


def _init_genrand(seed: int) -> np.ndarray:
    """MT19937 state words from ``init_genrand(seed mod 2**32)`` (the C++ ``mt19937(seed)``)."""
    key = [0] * 624
    x = int(seed) % _U32
    key[0] = x
    for i in range(1, 624):
        x = (1812433253 * (x ^ (x >> 30)) + i) & 0xFFFFFFFF
        key[i] = x
    return np.array(key, dtype=np.uint32)


class MT19937:
    """``std::mt19937`` seeded with one integer (``init_genrand``), producing raw 32-bit draws.

    Backed by numpy's ``MT19937`` bit generator whose state is set through the public
    ``state`` property (no private numpy API).

    Parameters
    ----------
    seed : int
        The C++ seed value; reduced modulo ``2**32`` as ``mt19937::seed`` does (negative
        values wrap, see the module "Convention").

    Convention
    ----------
    Draws come in generation order, each in ``[0, 2**32)``, as ``uint32``. ``draw(n)`` is
    equivalent to ``n`` successive calls of the C++ engine's ``operator()``.

    Examples
    --------
    >>> g = MT19937(5489)
    >>> int(g())
    3499211612
    >>> g.draw(3).tolist()
    [581869302, 3890346734, 3586334585]
    """

    def __init__(self, seed: int = 5489):
        self.seed = int(seed)
        self._bitgen = np.random.MT19937()
        self._bitgen.state = {
            "bit_generator": "MT19937",
            "state": {"key": _init_genrand(self.seed), "pos": 624},
        }

    def draw(self, n: int) -> np.ndarray:
        """Return the next ``n`` raw draws as a ``uint32`` array of shape ``(n,)``."""
        n = int(n)
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        if n == 0:
            return np.empty(0, dtype=np.uint32)
        return self._bitgen.random_raw(n).astype(np.uint32)

    def __call__(self) -> int:
        """Return one raw draw as a Python ``int``."""
        return int(self._bitgen.random_raw())


def minstd_rand0_first(seed: int) -> int:
    """First output of ``std::minstd_rand0(seed)`` (= ``std::default_random_engine`` in libstdc++).

    Parameters
    ----------
    seed : int
        The C++ seed; a negative value wraps modulo ``2**64`` (``uint_fast32_t`` is 64-bit on
        x86-64 Linux) before the reduction.

    Returns
    -------
    int
        ``16807 * x0 mod (2**31 - 1)`` with ``x0 = seed mod (2**31 - 1)``, and ``x0 = 1`` when
        that is 0.

    Convention
    ----------
    ``linear_congruential_engine<uint_fast32_t, 16807, 0, 2147483647>::seed(s)`` sets the state
    to ``s mod m`` (1 if that is 0); the first ``operator()`` returns the next state.

    Examples
    --------
    >>> minstd_rand0_first(1)
    16807
    >>> minstd_rand0_first(0) == minstd_rand0_first(2**31 - 1) == 16807
    True
    """
    x0 = (int(seed) % _U64) % MINSTD_MODULUS
    if x0 == 0:
        x0 = 1
    return (16807 * x0) % MINSTD_MODULUS


# --------------------------------------------------------------------------------------------
# Bounded draws (libstdc++ 12 uniform_int_distribution on a 32-bit engine: Lemire's method)
# --------------------------------------------------------------------------------------------

def _lemire_scalar(next_draw, m: int) -> int:
    """``U(m)``: uniform in ``[0, m)`` from 32-bit draws, libstdc++ ``_S_nd`` (1 <= m <= 2**32)."""
    p = next_draw() * m
    lo = p & 0xFFFFFFFF
    if lo < m:
        thr = (_U32 - m) % m
        while lo < thr:
            p = next_draw() * m
            lo = p & 0xFFFFFFFF
    return p >> 32


class _DrawBuffer:
    """Raw draws from an :class:`MT19937` consumed one at a time, refilled in blocks."""

    def __init__(self, gen: MT19937, block: int = 4096):
        self.gen = gen
        self.block = block
        self.buf: list[int] = []
        self.pos = 0

    def __call__(self) -> int:
        if self.pos == len(self.buf):
            self.buf = self.gen.draw(self.block).tolist()
            self.pos = 0
        v = self.buf[self.pos]
        self.pos += 1
        return v


def _lemire_sequence(gen: MT19937, ranges: np.ndarray) -> np.ndarray:
    """``[U(ranges[0]), U(ranges[1]), ...]`` drawn in sequence from ``gen``, vectorised.

    Each step usually consumes one draw; a rejected draw (``lo < thr``) makes that step consume
    more. The draws are speculatively assigned one per step in a block; the block is accepted up
    to the first rejection, after which that step is retried with the following draws. Only
    efficient when rejections are rare, i.e. ``ranges`` small against ``2**32``: in the
    Fisher–Yates branch a step with range ``m <= n`` rejects with probability ``< n / 2**32``
    (about 100 rejections in total for ``n = 10**6``). Draws generated ahead are discarded, so
    ``gen`` must not be used afterwards.
    """
    k_total = ranges.shape[0]
    out = np.empty(k_total, dtype=np.int64)
    m_all = ranges.astype(np.uint64)
    thr_all = ((np.uint64(_U32) - m_all) % m_all)
    mask32 = np.uint64(0xFFFFFFFF)
    pending = np.empty(0, dtype=np.uint64)  # draws already generated, not yet consumed
    k = 0
    block = 65536
    while k < k_total:
        want = min(block, k_total - k)
        if pending.shape[0] < want:
            pending = np.concatenate([pending, gen.draw(want - pending.shape[0]).astype(np.uint64)])
        raw = pending[:want]
        m = m_all[k:k + want]
        p = raw * m  # < 2**64: raw < 2**32, m <= 2**32
        lo = p & mask32
        bad = np.flatnonzero(lo < thr_all[k:k + want])
        t = int(bad[0]) if bad.shape[0] else want
        out[k:k + t] = (p[:t] >> np.uint64(32)).astype(np.int64)
        k += t
        pending = pending[t:]
        if t < want:
            # step k rejected its draw: drop that draw and retry step k with the next ones
            pending = pending[1:]
    return out


def pink_shuffle_order(n: int, seed: int, iteration: int = 0) -> np.ndarray:
    """The input order PINK (libstdc++ 12) uses in training iteration ``iteration``.

    Parameters
    ----------
    n : int
        Number of images (>= 0).
    seed : int
        PINK's ``--seed`` (default 1234 in PINK).
    iteration : int
        Zero-based iteration index; the shuffle engine is seeded with ``seed + iteration``.

    Returns
    -------
    np.ndarray
        ``int64`` permutation of ``0 .. n-1``.

    Convention
    ----------
    Exactly spec §5.2: ``s = seed + iteration``; ``std::mt19937`` seeded with the first
    ``minstd_rand0(s)`` draw; ``std::shuffle`` of ``[0, 1, ..., n-1]`` as in GCC 12. With
    ``U(m)`` Lemire's bounded draw on 32-bit outputs: if ``(2**32 - 1) // n >= n`` the pairwise
    variant is used (if ``n`` is even, first swap ``v[1]`` with ``v[U(2)]``; then for each
    remaining pair ``i, i+1`` with ``r = i + 1``, ``x = U(r (r+1))`` and swap ``v[i]`` with
    ``v[x // (r+1)]``, then ``v[i+1]`` with ``v[x % (r+1)]``); otherwise plain Fisher–Yates
    (``i = 1 .. n-1``: swap ``v[i]`` with ``v[U(i+1)]``). ``order[k]`` is the image processed
    at step ``k``. About 0.4 s for ``n = 10**6`` (see module docstring).

    Examples
    --------
    >>> pink_shuffle_order(20, 1).tolist()
    [8, 11, 0, 9, 16, 1, 7, 14, 5, 10, 6, 15, 2, 19, 4, 17, 12, 3, 13, 18]
    """
    n = int(n)
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    gen = MT19937(minstd_rand0_first(int(seed) + int(iteration)))
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    v = list(range(n))
    if (_U32 - 1) // n >= n:
        nxt = _DrawBuffer(gen, block=min(4096, n + 64))
        i = 1
        if n % 2 == 0:
            j = _lemire_scalar(nxt, 2)
            v[1], v[j] = v[j], v[1]
            i = 2
        while i < n:
            r = i + 1
            x = _lemire_scalar(nxt, r * (r + 1))
            a, b = divmod(x, r + 1)
            v[i], v[a] = v[a], v[i]
            v[i + 1], v[b] = v[b], v[i + 1]
            i += 2
    else:
        js = _lemire_sequence(gen, np.arange(2, n + 1, dtype=np.int64)).tolist()
        for i, j in zip(range(1, n), js):
            v[i], v[j] = v[j], v[i]
    return np.fromiter(v, dtype=np.int64, count=n)


def pink_uniform_fill(count: int, seed: int) -> np.ndarray:
    """``count`` values of PINK's ``--init random`` fill (``std::mt19937(seed)``).

    Parameters
    ----------
    count : int
        Number of float values.
    seed : int
        PINK's ``--seed``; reduced modulo ``2**32`` like ``mt19937::seed``.

    Returns
    -------
    np.ndarray
        ``float32`` array of shape ``(count,)`` with values in ``[0, 1)``.

    Convention
    ----------
    libstdc++ ``uniform_real_distribution<float>(0, 1)`` on ``mt19937`` =
    ``generate_canonical<float, 24>`` with one 32-bit draw ``g``: ``u = float32(g) * 2**-32``
    (``g`` first rounded to the nearest float32, then scaled exactly), replaced by
    ``0.99999994`` (``nextafter(1.0f, 0.0f)``) when it rounds up to 1.0 (spec §5.7).

    Examples
    --------
    >>> [f"{x:.8f}" for x in pink_uniform_fill(3, 1)]
    ['0.41702199', '0.99718481', '0.72032452']
    """
    count = int(count)
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    raw = MT19937(seed).draw(count)
    u = raw.astype(np.float32) * _TWO_POW_M32
    u[u >= np.float32(1.0)] = FLOAT32_BELOW_ONE
    return u


def pink_random_init(num_neurons: int, neuron_shape: Sequence[int] | int, seed: int,
                     preferred_direction: bool = False,
                     pink_bug_compatible: bool = False) -> torch.Tensor:
    """PINK's ``--init random`` / ``random_with_preferred_direction`` SOM weights.

    Parameters
    ----------
    num_neurons : int
        Number of neurons ``N``.
    neuron_shape : sequence of int or int
        Shape of one neuron, normally ``(C, nd, nd)`` or ``(nd, nd)``; an int ``nd`` means
        ``(nd, nd)``.
    seed : int
        PINK's ``--seed``.
    preferred_direction : bool
        Set the main diagonal ``[..., i, i]`` of every neuron to 1.0 after the random fill
        (``random_with_preferred_direction``). The last two dimensions must be equal.
    pink_bug_compatible : bool
        With ``preferred_direction``, reproduce PINK's writes exactly: flat element
        ``n * nd**2 + i * nd + i`` for every neuron ``n`` and ``i < nd``, i.e. a stride of
        ``nd**2`` per neuron instead of ``C * nd**2``. For ``C = 1`` both choices agree; for
        ``C > 1`` PINK puts the diagonals into the wrong neurons/channels (``SOM.h:83-85``).

    Returns
    -------
    torch.Tensor
        ``float32`` tensor of shape ``(num_neurons, *neuron_shape)``.

    Convention
    ----------
    Values come from :func:`pink_uniform_fill` in C storage order (neuron, channel, row, col),
    which is the order PINK fills its SOM buffer and writes its SOM file (spec §1.3, §5.7).
    The default (``pink_bug_compatible=False``) sets the diagonal of *every channel* of every
    neuron, which is what PINK intends.

    Examples
    --------
    >>> w = pink_random_init(9, (1, 4, 4), 1)
    >>> tuple(w.shape), [f"{x:.8f}" for x in w.flatten()[:3].tolist()]
    ((9, 1, 4, 4), ['0.41702199', '0.99718481', '0.72032452'])
    >>> pink_random_init(2, (2, 3, 3), 1, preferred_direction=True)[1, 1].diagonal().tolist()
    [1.0, 1.0, 1.0]
    """
    shape = (int(neuron_shape), int(neuron_shape)) if isinstance(neuron_shape, (int, np.integer)) \
        else tuple(int(s) for s in neuron_shape)
    num_neurons = int(num_neurons)
    if num_neurons < 0 or any(s < 0 for s in shape):
        raise ShapeError(f"sizes must be >= 0, got num_neurons={num_neurons}, neuron_shape={shape}")
    per_neuron = int(np.prod(shape, dtype=np.int64))
    flat = pink_uniform_fill(num_neurons * per_neuron, seed)
    if preferred_direction:
        if len(shape) < 2 or shape[-1] != shape[-2]:
            raise ShapeError(f"preferred_direction needs neuron_shape (..., nd, nd), got {shape}")
        nd = shape[-1]
        if pink_bug_compatible:
            idx = (np.arange(num_neurons, dtype=np.int64)[:, None] * nd * nd
                   + np.arange(nd, dtype=np.int64)[None, :] * (nd + 1)).ravel()
            flat[idx] = np.float32(1.0)
        else:
            w = flat.reshape(num_neurons, -1, nd, nd)
            diag = np.arange(nd)
            w[:, :, diag, diag] = np.float32(1.0)
    return torch.from_numpy(flat.reshape((num_neurons, *shape)))
