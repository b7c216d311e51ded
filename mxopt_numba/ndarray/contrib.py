"""``mx.nd.contrib`` update operators: AdamW (decoupled weight decay)."""
from ..optimizer.adamw import AdamW as _AdamW
from ._ops import clip_value, per_tensor, run, scalar, split_data

__all__ = ["adamw_update", "mp_adamw_update", "multi_adamw_update", "multi_mp_adamw_update"]


def _adamw(rescale_grad, lr, eta, beta1, beta2, epsilon, wd, clip_gradient, mp, lrs=None, wds=None, etas=None,
           n=1):
    # the kernel computes w - step * (m / (sqrt(v) + eps) + decay * w); the operator's
    # eta * (lr * m / (sqrt(v) + eps) + wd * w) is that with step = eta * lr, decay = wd / lr
    if lrs is None:
        lrs, wds, etas = [lr], [wd], [eta]
    lrs = [scalar("lr", x) for x in lrs]
    etas = [scalar("eta", x) for x in etas]
    wds = [scalar("wd", x) for x in wds]
    if len(lrs) != n or len(wds) != n or len(etas) != n:
        raise ValueError("lrs, wds and etas need one value per weight (%d)" % n)
    if any(not x > 0 for x in lrs):
        raise ValueError("adamw_update needs lr > 0 (the optimizer passes 1), got %r" % (lrs,))
    opt = _AdamW(learning_rate=1.0, wd=1.0, beta1=beta1, beta2=beta2, epsilon=epsilon, correct_bias=False,
                 rescale_grad=scalar("rescale_grad", rescale_grad), clip_gradient=clip_value(clip_gradient),
                 multi_precision=mp)
    return per_tensor(opt, [e * x for e, x in zip(etas, lrs)], [w / x for w, x in zip(wds, lrs)], n)


def adamw_update(weight, grad, mean, var, rescale_grad, lr, eta, beta1=0.9, beta2=0.999, epsilon=1e-8, wd=0.0,
                 clip_gradient=-1.0, out=None):
    """AdamW step (no bias correction; callers fold it into ``eta``):
    ``mean <- beta1 * mean + (1 - beta1) * g'``; ``var <- beta2 * var + (1 - beta2) * g'^2``;
    ``weight <- weight - eta * (lr * mean / (sqrt(var) + epsilon) + wd * weight)``.
    ``rescale_grad`` may be a one-element array; 0, NaN or inf skips the whole update."""
    opt = _adamw(rescale_grad, lr, eta, beta1, beta2, epsilon, wd, clip_gradient, False)
    return run(opt, [weight], [grad], [(mean, var)], out)[0]


def mp_adamw_update(weight, grad, mean, var, weight32, rescale_grad, lr, eta, beta1=0.9, beta2=0.999,
                    epsilon=1e-8, wd=0.0, clip_gradient=-1.0, out=None):
    """:func:`adamw_update` on the float32 master ``weight32``, then the rounded copy."""
    opt = _adamw(rescale_grad, lr, eta, beta1, beta2, epsilon, wd, clip_gradient, True)
    return run(opt, [weight], [grad], [(weight32, (mean, var))], out)[0]


def multi_adamw_update(*data, rescale_grad, lrs, wds, etas, beta1=0.9, beta2=0.999, epsilon=1e-8,
                       clip_gradient=-1.0, num_weights=None, out=None):
    """:func:`adamw_update` on many tensors; ``data`` is ``weight, grad, mean, var`` per
    tensor, with per-tensor ``lrs``, ``wds`` and ``etas``."""
    groups = split_data(data, 4, num_weights, "multi_adamw_update")
    opt = _adamw(rescale_grad, None, None, beta1, beta2, epsilon, None, clip_gradient, False, lrs, wds, etas,
                 len(groups))
    return run(opt, [g[0] for g in groups], [g[1] for g in groups], [(g[2], g[3]) for g in groups], out)


def multi_mp_adamw_update(*data, rescale_grad, lrs, wds, etas, beta1=0.9, beta2=0.999, epsilon=1e-8,
                          clip_gradient=-1.0, num_weights=None, out=None):
    """:func:`mp_adamw_update` on many tensors; ``data`` is ``weight, grad, mean, var,
    weight32`` per tensor."""
    groups = split_data(data, 5, num_weights, "multi_mp_adamw_update")
    opt = _adamw(rescale_grad, None, None, beta1, beta2, epsilon, None, clip_gradient, True, lrs, wds, etas,
                 len(groups))
    return run(opt, [g[0] for g in groups], [g[1] for g in groups], [(g[4], (g[2], g[3])) for g in groups],
               out)
