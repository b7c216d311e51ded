"""Counter-based random numbers for kernels: Philox-4x32 and the maps built on it.

A counter-based generator is a keyed bijection of a 128-bit counter; the random numbers
of an element are a pure function of (key, counter), so any thread, any launch layout and
the CUDA twins reach the same values without sharing a stream.  The functions here are
``@scalar_rule``s shared by the CPU kernels and the CUDA twins, plus NumPy versions
(suffix ``_np``) that compute the very same bits for the readable ``step`` paths.

Philox-4x32-10 (Salmon et al., SC'11), as Random123 defines it: counter words
``(c0, c1, c2, c3)``, key words ``(k0, k1)``, ten rounds of

    (c0, c1, c2, c3) <- (hi(B * c2) ^ c1 ^ k0,  lo(B * c2),  hi(A * c0) ^ c3 ^ k1,  lo(A * c0))
    (k0, k1)         <- (k0 + 0x9E3779B9, k1 + 0xBB67AE85)   (mod 2**32)

with ``A = 0xD2511F53``, ``B = 0xCD9E8D57``; ``hi``/``lo`` are the two halves of the 64-bit
product.  32-bit words travel in ``uint64`` values (the products need 64 bits, and Numba
promotes mixed-width unsigned arithmetic to 64 bits anyway).

Counter layout used by the library (one Philox call per *quad*, the four elements
``4Q .. 4Q + 3`` of a tensor):

    c0 = Q, low 32 bits
    c1 = Q, high 16 bits  |  stream << 16   (which consumer draws: noise, rounding)
    c2 = the tensor's update count (the optimizer's step ``t`` of that parameter), mod 2**32
    c3 = the parameter's key (``param_key``: its index, or a hash of a name)
    key = the 64-bit seed, as (low word, high word)

so what an element gets depends on the seed, the parameter, its step and the element's
position, never on threads, blocks, launches or the other tensors of a call.

Standard normals (``normal_quad``): the words ``(x0, x1)`` give elements ``4Q, 4Q + 1``
and ``(x2, x3)`` give ``4Q + 2, 4Q + 3``, through Box-Muller on a pair ``(a, b)`` computed
in float32 with every operation rounded as written (no fused multiply-adds on the CPU):

    u  = ((a >> 8) + 1) * 2**-24                       in (0, 1], exact
    r  = sqrt(-2 * log(u))                              log: ``log_unit`` below
    k  = (b >> 8) + 2**21  (mod 2**24)                  the angle is 2*pi*(b >> 8)/2**24
    q  = k >> 22                                        its quadrant (nearest axis)
    p  = ((k mod 2**22) - 2**21) * (pi / 2**23)         offset from that axis, |p| <= pi/4
    (cos, sin) of the angle = (cos p, sin p) turned by q quarter turns
    pair = (r * cos, r * sin)

``log_unit`` splits ``u = m * 2**e`` with ``m`` in [sqrt(1/2), sqrt(2)) and sums
``e * log(2) + 2 * atanh(s)``, ``s = (m - 1) / (m + 1)``, through ``s**9``; ``cos p`` and
``sin p`` are Taylor polynomials through ``p**8`` and ``p**9``.  Each is within about one
float32 ulp of the exact function, which moves no statistic measurable here; the point of
spelling them out is that the kernels, their CUDA twins and NumPy compute identical bits
(on a GPU, NVVM may fuse multiply-adds, so hardware twins agree to a few ulps) and that
the loops vectorise.  |z| is at most ``sqrt(48 log 2)`` ~ 5.77 (the normal tails beyond
carry probability 8e-9).

Rounding bits (``rounding_bits``), for stochastic rounding: one generator call on the
rounding stream gives eight elements their 16 bits.  The counter words ``c0, c1`` hold the
element's *octet* ``R = position >> 3`` (the elements ``8R .. 8R + 7``) instead of a quad,
and element ``8R + 2j + h`` (``j`` in 0..3, ``h`` in 0..1) takes the half ``h`` of ``x_j``:

    bits(8R + 2j)     = x_j & 0xFFFF          (low half)
    bits(8R + 2j + 1) = x_j >> 16             (high half)

so all 128 bits of a call are used and a tensor costs one generator call per eight
elements.  The rounding stream runs Philox-4x32 with seven rounds (same round function
and key schedule, stopped after round seven; Random123 publishes known answers for it).
Seven is the fewest rounds its authors found to pass TestU01's BigCrush, with ten as
their margin for general use.  A rounding decision only needs 16 unbiased bits, and on
two cores the generator, not memory, set the step time of SGD-momentum with stochastic
rounding: seven rounds make it faster than the float32-master path, ten did not.  SGLD's
noise, which is the sampler's randomness itself, keeps ten.  Both halves of a word are
uniform on [0, 2**16) when the word is uniform, and the words of distinct counters are
as independent as Philox makes them; the rounding of one element still depends only on
(seed, parameter, update count, its position).  The tests check the halves' uniformity
and the lack of correlation between the eight elements of an octet.  The CPU kernels
fill a per-block buffer with the bits of the block's octets (``rounding_octet`` in a
vectorised loop) and read them back per element; the CUDA twins and NumPy compute
``rounding_bits`` of each element directly.  The counter holds octet numbers below
``2**48``, so positions go up to ``2**51``.
"""
import math

import numpy as np

from ._scalar import f32_from_bits, f32_to_bits, scalar_rule

#: ``stream`` word values (c1 >> 16): one per consumer, so that two consumers keyed by
#: the same seed, step and element never see the same numbers
NOISE_STREAM = 1
ROUNDING_STREAM = 2

#: Philox rounds of the rounding stream (the noise stream keeps the standard ten)
ROUNDING_ROUNDS = 7

_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)
_MASK16 = _U64(0xFFFF)
_SHIFT32 = _U64(32)
_SHIFT16 = _U64(16)
_SHIFT8 = _U64(8)
_MUL_A = _U64(0xD2511F53)
_MUL_B = _U64(0xCD9E8D57)
_WEYL_0 = _U64(0x9E3779B9)
_WEYL_1 = _U64(0xBB67AE85)

_F = np.float32
_TWO_M24 = _F(2.0 ** -24)
_HALF_PI_M22 = _F(math.pi / 2 ** 23)     # pi/2 per 2**22 steps of k
_LN2 = _F(math.log(2.0))
_ONE = _F(1.0)
_TWO = _F(2.0)
_MINUS_TWO = _F(-2.0)
_C3, _C5, _C7, _C9 = _F(1 / 3), _F(1 / 5), _F(1 / 7), _F(1 / 9)
_S3, _S5, _S7, _S9 = _F(-1 / 6), _F(1 / 120), _F(-1 / 5040), _F(1 / 362880)
_K2, _K4, _K6, _K8 = _F(-1 / 2), _F(1 / 24), _F(-1 / 720), _F(1 / 40320)

_EXP_BIAS = np.int32(127)
_MANT_MASK = np.uint32(0x007FFFFF)
_ONE_BITS = np.uint32(0x3F800000)
_HALF_BITS = np.uint32(0x3F000000)
_SQRT2_MANT = np.uint32(0x003504F3)      # mantissa bits of sqrt(2)
_QUARTER_TURN = np.uint32(1 << 21)
_TURN_MASK = np.uint32((1 << 24) - 1)
_QUADRANT_MASK = np.uint32((1 << 22) - 1)
_QUADRANT_CENTRE = np.int32(1 << 21)      # the axis inside a quadrant's range of k


# --------------------------------------------------------------------------- Philox

@scalar_rule
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 of counter ``(c0, c1, c2, c3)`` under key ``(k0, k1)`` (32-bit words
    in uint64 values); returns the four output words."""
    return philox4x32_rounds(c0, c1, c2, c3, k0, k1, 10)


@scalar_rule
def philox4x32_rounds(c0, c1, c2, c3, k0, k1, rounds):
    """Philox-4x32 with ``rounds`` rounds (a constant at every call, so that the loop
    unrolls)."""
    c0, c1, c2, c3 = _U64(c0), _U64(c1), _U64(c2), _U64(c3)
    k0, k1 = _U64(k0), _U64(k1)
    for _ in range(rounds):
        p0 = _MUL_A * c0
        p1 = _MUL_B * c2
        c0, c1, c2, c3 = ((p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32,
                          (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32)
        k0 = (k0 + _WEYL_0) & _MASK32
        k1 = (k1 + _WEYL_1) & _MASK32
    return c0, c1, c2, c3


@scalar_rule
def word_from_halves(hi, lo):
    """A 32-bit word from two 16-bit halves carried as floats (exact in float32), the way
    per-tensor keys travel in a kernel's ``coefs``."""
    return (_U64(hi) << _SHIFT16) | _U64(lo)


@scalar_rule
def quad_draw(quad, stream, step, param_key, k0, k1):
    """The four Philox-4x32-10 words of elements ``4 * quad .. 4 * quad + 3`` (see the
    counter layout in the module docstring)."""
    return counter_words(quad, stream, step, param_key, k0, k1, 10)


@scalar_rule
def counter_words(index, stream, step, param_key, k0, k1, rounds):
    """The Philox-4x32 words of call ``index`` on ``stream`` (the counter layout of the
    module docstring), with ``rounds`` rounds."""
    index = _U64(index)
    c1 = ((index >> _SHIFT32) & _MASK16) | (_U64(stream) << _SHIFT16)
    return philox4x32_rounds(index & _MASK32, c1, step, param_key, k0, k1, rounds)


# --------------------------------------------------------------------------- float32 maps

@scalar_rule
def log_unit(u):
    """Natural log of a float32 ``u`` in (0, 1] (normal numbers), float32.  The integer
    work is in 32-bit lanes (exact, so the bits are those of the formula as documented)."""
    bits = f32_to_bits(u)
    big = (bits & _MANT_MASK) > _SQRT2_MANT
    m = f32_from_bits((bits & _MANT_MASK) | (_HALF_BITS if big else _ONE_BITS))
    # (Numba widens int32 arithmetic to 64 bits; the casts keep the lanes 32-bit)
    e = np.int32(np.int32(bits >> np.uint32(23)) - _EXP_BIAS + (np.int32(1) if big else np.int32(0)))
    f = m - _ONE
    s = f / (_TWO + f)
    s2 = s * s
    poly = _C3 + s2 * (_C5 + s2 * (_C7 + s2 * _C9))
    return _F(e) * _LN2 + (_TWO * s + _TWO * s * s2 * poly)


@scalar_rule
def normal_pair(x0, x1):
    """Box-Muller of two Philox words: two float32 standard normals ``r * (cos, sin)``.
    Written in 32-bit integer and float32 lanes only (the words are 32-bit), so that a
    loop over pairs vectorises sixteen to a register."""
    a = np.uint32(x0)
    b = np.uint32(x1)
    u = _F(np.int32(np.int32(a >> np.uint32(8)) + np.int32(1))) * _TWO_M24
    r = _F(np.sqrt(_MINUS_TWO * log_unit(u)))
    k = np.uint32(np.uint32((b >> np.uint32(8)) + _QUARTER_TURN) & _TURN_MASK)
    q = np.uint32(k >> np.uint32(22))
    p = _F(np.int32(np.int32(k & _QUADRANT_MASK) - _QUADRANT_CENTRE)) * _HALF_PI_M22
    p2 = p * p
    sin_p = p + p * p2 * (_S3 + p2 * (_S5 + p2 * (_S7 + p2 * _S9)))
    cos_p = _ONE + p2 * (_K2 + p2 * (_K4 + p2 * (_K6 + p2 * _K8)))
    odd = (q & np.uint32(1)) != np.uint32(0)
    c = sin_p if odd else cos_p
    s = cos_p if odd else sin_p
    c = -c if (q == np.uint32(1)) | (q == np.uint32(2)) else c
    s = -s if q >= np.uint32(2) else s
    return r * c, r * s


@scalar_rule
def normal_quad(quad, stream, step, param_key, k0, k1):
    """The float32 standard normals of elements ``4 * quad .. 4 * quad + 3``."""
    x0, x1, x2, x3 = quad_draw(quad, stream, step, param_key, k0, k1)
    z0, z1 = normal_pair(x0, x1)
    z2, z3 = normal_pair(x2, x3)
    return z0, z1, z2, z3


@scalar_rule
def standard_normal(position, stream, step, param_key, k0, k1):
    """The float32 standard normal of the element at ``position`` (lane of its quad)."""
    pos = _U64(position)
    z0, z1, z2, z3 = normal_quad(pos >> _U64(2), stream, step, param_key, k0, k1)
    lane = pos & _U64(3)
    if lane == _U64(0):
        return z0
    if lane == _U64(1):
        return z1
    if lane == _U64(2):
        return z2
    return z3


@scalar_rule
def rounding_octet(octet, step, param_key, k0, k1):
    """The four Philox-4x32-7 words that hold the rounding bits of elements ``8 * octet ..
    8 * octet + 7`` (see the module docstring for which half goes to which element)."""
    return counter_words(octet, ROUNDING_STREAM, step, param_key, k0, k1, ROUNDING_ROUNDS)


@scalar_rule
def rounding_bits(position, step, param_key, k0, k1):
    """16 uniform random bits of one element, for stochastic rounding (uint64 < 2**16):
    the half ``position & 1`` of word ``(position >> 1) & 3`` of the call of its octet."""
    pos = _U64(position)
    x0, x1, x2, x3 = rounding_octet(pos >> _U64(3), step, param_key, k0, k1)
    j = (pos >> _U64(1)) & _U64(3)
    x = x0
    if j == _U64(1):
        x = x1
    if j == _U64(2):
        x = x2
    if j == _U64(3):
        x = x3
    return (x >> (_SHIFT16 * (pos & _U64(1)))) & _MASK16


# --------------------------------------------------------------------------- host side

def param_key(index):
    """The 32-bit counter word of a parameter: a small non-negative int index is itself;
    any other index (a name, a large or negative int) is hashed (stable across processes
    and runs) into the upper half of the word range, so names never collide with small
    ints."""
    import zlib
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool) and 0 <= index < (1 << 31):
        return int(index)
    text = ("s:" + index) if isinstance(index, str) else ("i:%d" % int(index))
    return zlib.crc32(text.encode("utf-8")) | (1 << 31)


def seed_halves(seed):
    """A 64-bit seed as four 16-bit pieces (low word's high half, low word's low half,
    high word's high half, high word's low half), each exact in float32."""
    seed = int(seed) & ((1 << 64) - 1)
    lo, hi = seed & 0xFFFFFFFF, seed >> 32
    return (lo >> 16, lo & 0xFFFF, hi >> 16, hi & 0xFFFF)


def word_halves(words):
    """uint32-range int64 array -> (high halves, low halves) as float64 (exact)."""
    words = np.asarray(words, dtype=np.int64) & 0xFFFFFFFF
    return (words >> 16).astype(np.float64), (words & 0xFFFF).astype(np.float64)


def philox4x32_np(c0, c1, c2, c3, k0, k1, rounds=10):
    """NumPy Philox-4x32 (ten rounds unless told): the same words as
    :func:`philox4x32_rounds`, element-wise."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & _MASK32 for c in np.broadcast_arrays(c0, c1, c2, c3))
    k0, k1 = _U64(k0) & _MASK32, _U64(k1) & _MASK32
    for _ in range(rounds):
        p0 = _MUL_A * c0
        p1 = _MUL_B * c2
        c0, c1, c2, c3 = ((p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32,
                          (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32)
        k0 = (k0 + _WEYL_0) & _MASK32
        k1 = (k1 + _WEYL_1) & _MASK32
    return c0, c1, c2, c3


def counter_words_np(index, stream, step, pkey, seed, rounds=10):
    """NumPy :func:`counter_words`: the Philox words of the calls ``index`` (uint64
    array) on ``stream`` of one tensor."""
    c1 = ((index >> _SHIFT32) & _MASK16) | (_U64(stream) << _SHIFT16)
    seed = int(seed) & ((1 << 64) - 1)
    return philox4x32_np(index & _MASK32, c1, _U64(int(step) & 0xFFFFFFFF), _U64(pkey),
                         seed & 0xFFFFFFFF, seed >> 32, rounds)


def quad_draw_np(size, stream, step, pkey, seed):
    """The Philox words of the quads covering elements ``0 .. size-1`` of one tensor."""
    return counter_words_np(np.arange((size + 3) // 4, dtype=np.uint64), stream, step, pkey, seed)


def log_unit_np(u):
    bits = u.view(np.uint32)
    e = (bits >> np.uint32(23)).astype(np.int64) - _EXP_BIAS
    mant = bits & _MANT_MASK
    big = mant > _SQRT2_MANT
    m = np.where(big, mant | _HALF_BITS, mant | _ONE_BITS).view(np.float32)
    e = e + big
    f = m - _ONE
    s = f / (_TWO + f)
    s2 = s * s
    poly = _C3 + s2 * (_C5 + s2 * (_C7 + s2 * _C9))
    return e.astype(np.float32) * _LN2 + (_TWO * s + _TWO * s * s2 * poly)


def normal_pair_np(x0, x1):
    u = ((x0 >> _SHIFT8) + _U64(1)).astype(np.float32) * _TWO_M24
    r = np.sqrt(_MINUS_TWO * log_unit_np(u)).astype(np.float32)
    k = ((x1 >> _SHIFT8) + _QUARTER_TURN) & _TURN_MASK
    q = k >> _U64(22)
    p = ((k & _QUADRANT_MASK).astype(np.int64) - _QUADRANT_CENTRE).astype(np.float32) * _HALF_PI_M22
    p2 = p * p
    sin_p = p + p * p2 * (_S3 + p2 * (_S5 + p2 * (_S7 + p2 * _S9)))
    cos_p = _ONE + p2 * (_K2 + p2 * (_K4 + p2 * (_K6 + p2 * _K8)))
    odd = (q & _U64(1)) != 0
    c = np.where(odd, sin_p, cos_p)
    s = np.where(odd, cos_p, sin_p)
    c = np.where((q == 1) | (q == 2), -c, c)
    s = np.where(q >= 2, -s, s)
    return r * c, r * s


def standard_normal_np(size, step, pkey, seed, stream=NOISE_STREAM):
    """Float32 standard normals of elements ``0 .. size-1`` of one tensor: bit for bit
    what the kernels draw for it."""
    x0, x1, x2, x3 = quad_draw_np(size, stream, step, pkey, seed)
    z0, z1 = normal_pair_np(x0, x1)
    z2, z3 = normal_pair_np(x2, x3)
    return np.stack([z0, z1, z2, z3], axis=1).ravel()[:size]


def rounding_bits_np(size, step, pkey, seed):
    """What :func:`rounding_bits` gives for elements ``0 .. size-1`` of one tensor."""
    return rounding_bits_at_np(np.arange(size, dtype=np.int64), step, pkey, seed)


def rounding_bits_at_np(positions, step, pkey, seed):
    """What :func:`rounding_bits` gives for the elements at ``positions`` of one tensor."""
    pos = np.asarray(positions, dtype=np.uint64)
    words = counter_words_np(pos >> _U64(3), ROUNDING_STREAM, step, pkey, seed, ROUNDING_ROUNDS)
    x = np.choose(((pos >> _U64(1)) & _U64(3)).astype(np.intp), words)
    return (x >> (_SHIFT16 * (pos & _U64(1)))) & _MASK16
