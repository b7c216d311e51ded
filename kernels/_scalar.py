"""The leaf of the kernel modules: the decorator of per-element rules and the bit casts
between float32 and its integer bits.  ``_common`` and ``counter_rng`` both build on it,
so neither has to import the other to get them.
"""
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["scalar_rule", "f32_from_bits", "f32_to_bits"]


def scalar_rule(func):
    """Decorator of the per-element rule functions shared by the CPU and GPU kernels."""
    return njit(inline="always", error_model="numpy")(func)


# --------------------------------------------------------------------------- bit casts

@intrinsic
def _bitcast(typingctx, value, target):
    """Reinterpret the bits of a scalar as the same-sized type named by ``target``."""
    to = target.instance_type if isinstance(target, types.NumberClass) else None
    if to is None or to.bitwidth != value.bitwidth:
        return None
    sig = to(value, target)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(to))
    return sig, codegen


@njit(inline="always")
def f32_from_bits(bits):
    return _bitcast(np.uint32(bits), types.float32)


@njit(inline="always")
def f32_to_bits(value):
    return _bitcast(np.float32(value), types.uint32)
