"""Parameter-shape workloads for benchmarks: lists of ``(name, shape)`` pairs.

========================  =======  ============  ==============================================
preset                    tensors  elements      what
========================  =======  ============  ==============================================
``one16m``                1        16,777,216    one large tensor (pure bandwidth)
``resnet50``              161      25,557,032    ResNet-50 v1 (convs, BatchNorm gamma/beta, fc)
``bert-base``             199      109,482,240   BERT-base encoder with embeddings and pooler
``small2000x512``         2000     1,024,000     many small tensors (launch overhead)
``tiny``                  4        1,395         a smoke test
========================  =======  ============  ==============================================

Names follow MXNet's conventions (``*_weight``, ``*_bias``, ``*_gamma``, ``*_beta``), so
name-based rules (LARS) see the same split as in a real model.
"""
import math

import numpy as np

from . import _namespace

__all__ = ["PRESETS", "shapes", "named_shapes", "resnet50", "bert_base", "resnet50_shapes",
           "bert_base_shapes", "make_arrays", "summary"]


def resnet50(num_classes=1000):
    """ResNet-50 v1 (bottleneck blocks [3, 4, 6, 3], stride in the 3x3 conv)."""
    out = [("conv0_weight", (64, 3, 7, 7)), ("bn0_gamma", (64,)), ("bn0_beta", (64,))]
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = "stage%d_unit%d_" % (stage, b + 1)
            out += [(p + "conv1_weight", (width, in_ch, 1, 1)),
                    (p + "bn1_gamma", (width,)), (p + "bn1_beta", (width,)),
                    (p + "conv2_weight", (width, width, 3, 3)),
                    (p + "bn2_gamma", (width,)), (p + "bn2_beta", (width,)),
                    (p + "conv3_weight", (4 * width, width, 1, 1)),
                    (p + "bn3_gamma", (4 * width,)), (p + "bn3_beta", (4 * width,))]
            if b == 0:
                out += [(p + "sc_weight", (4 * width, in_ch, 1, 1)),
                        (p + "sc_gamma", (4 * width,)), (p + "sc_beta", (4 * width,))]
            in_ch = 4 * width
    out += [("fc_weight", (num_classes, in_ch)), ("fc_bias", (num_classes,))]
    return out


def bert_base(vocab=30522, hidden=768, layers=12, ffn=3072, max_len=512, type_vocab=2):
    """BERT-base: embeddings, 12 encoder layers, pooler (weights stored (out, in))."""
    h = hidden
    out = [("word_embed_weight", (vocab, h)), ("position_embed_weight", (max_len, h)),
           ("token_type_embed_weight", (type_vocab, h)),
           ("embed_ln_gamma", (h,)), ("embed_ln_beta", (h,))]
    for i in range(layers):
        p = "layer%d_" % i
        for proj in ("query", "key", "value", "attn_out"):
            out += [(p + proj + "_weight", (h, h)), (p + proj + "_bias", (h,))]
        out += [(p + "attn_ln_gamma", (h,)), (p + "attn_ln_beta", (h,)),
                (p + "ffn1_weight", (ffn, h)), (p + "ffn1_bias", (ffn,)),
                (p + "ffn2_weight", (h, ffn)), (p + "ffn2_bias", (h,)),
                (p + "ffn_ln_gamma", (h,)), (p + "ffn_ln_beta", (h,))]
    out += [("pooler_weight", (h, h)), ("pooler_bias", (h,))]
    return out


def resnet50_shapes():
    """The 161 shapes of :func:`resnet50` (25,557,032 elements)."""
    return [shape for _, shape in resnet50()]


def bert_base_shapes():
    """The 199 shapes of :func:`bert_base` (109,482,240 elements)."""
    return [shape for _, shape in bert_base()]


def _one16m():
    return [("big_weight", (1 << 24,))]


def _small():
    return [("p%04d_weight" % i, (512,)) for i in range(2000)]


def _tiny():
    return [("a_weight", (20, 50)), ("a_bias", (20,)), ("b_weight", (5, 70)), ("b_bias", (25,))]


#: preset name -> function returning ``[(name, shape), ...]``
PRESETS = {
    "one16m": _one16m,
    "resnet50": resnet50,
    "bert-base": bert_base,
    "small2000x512": _small,
    "tiny": _tiny,
}


def named_shapes(preset):
    """``[(name, shape), ...]`` of a preset (see the module docstring)."""
    try:
        make = PRESETS[preset]
    except KeyError:
        raise ValueError("unknown workload preset %r; choose from %s"
                         % (preset, ", ".join(PRESETS))) from None
    return make()


def shapes(preset):
    """The shapes of a preset, in order."""
    return [shape for _, shape in named_shapes(preset)]


def summary(preset):
    """``(number of tensors, number of elements)`` of a preset."""
    s = shapes(preset)
    return len(s), sum(math.prod(x) for x in s)


def make_arrays(preset, dtype=np.float32, seed=0, scale=0.1):
    """Weights ``N(0, scale^2)`` and gradients ``N(0, (scale/100)^2)`` of ``dtype`` for a
    preset, as two lists of C-contiguous arrays."""
    rng = np.random.default_rng(seed)
    weights, grads = [], []
    for shape in shapes(preset):
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)
        g = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale / 100)
        weights.append(np.ascontiguousarray(w.astype(dtype)))
        grads.append(np.ascontiguousarray(g.astype(dtype)))
    return weights, grads


__dir__ = _namespace.public_dir(__name__)
