"""``mx.nd.contrib`` update operators: AdamW, AdaBelief, the multi-tensor LAMB and LANS
operators, GroupAdaGrad.  The multi-tensor functions take lists (``weights``, ``grads``,
``mean``, ``var``, ...), as MXNet's Python wrappers do."""
from ..optimizer.adabelief import AdaBelief as _AdaBelief
from ..optimizer.adamw import AdamW as _AdamW
from ..optimizer.groupadagrad import GroupAdaGrad as _GroupAdaGrad
from ..optimizer.lamb import LAMB as _LAMB
from ..optimizer.lans import LANS as _LANS
from ._ops import clip_value, per_tensor, run, scalar

__all__ = ["adabelief_update", "adamw_update", "group_adagrad_update", "mp_adabelief_update",
           "mp_adamw_update", "multi_adabelief_update", "multi_adamw_update", "multi_lamb_update",
           "multi_lans_update", "multi_mp_adabelief_update", "multi_mp_adamw_update", "multi_mp_lamb_update",
           "multi_mp_lans_update"]


def _adamw(rescale_grad, lr, eta, beta1, beta2, epsilon, wd, clip_gradient, mp, lrs=None, wds=None, etas=None,
           n=1, cls=_AdamW):
    # the kernel computes w - step * (m / (sqrt(v) + eps) + decay * w); the operator's
    # eta * (lr * m / (sqrt(v) + eps) + wd * w) is that with step = eta * lr, decay = wd / lr
    if lrs is None:
        lrs, wds, etas = [lr], [wd], [eta]
    lrs = [scalar("lr", x) for x in lrs]
    etas = [scalar("eta", x) for x in etas]
    wds = [scalar("wd", x) for x in wds]
    if len(lrs) != n or len(wds) != n or len(etas) != n:
        raise ValueError("lrs, wds and etas need one value per weight (%d)" % n)
    if cls is _AdamW and any(not x > 0 for x in lrs):
        raise ValueError("adamw_update needs lr > 0 (the optimizer passes 1), got %r" % (lrs,))
    opt = cls(learning_rate=1.0, wd=1.0, beta1=beta1, beta2=beta2, epsilon=epsilon, correct_bias=False,
              rescale_grad=scalar("rescale_grad", rescale_grad), clip_gradient=clip_value(clip_gradient),
              multi_precision=mp)
    if cls is _AdaBelief:
        # AdaBelief's decay enters the gradient: only the step is scaled by eta * lr
        return per_tensor(opt, [e * x for e, x in zip(etas, lrs)], wds, n)
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


def _mp_states(weights32, mean, var):
    return [(w32, (m, v)) for w32, m, v in zip(weights32, mean, var)]


def _lists(name, n, **lists):
    for key, value in lists.items():
        if len(value) != n:
            raise ValueError("%s: %s has %d entries for %d weights" % (name, key, len(value), n))


def multi_adamw_update(weights, grads, mean, var, rescale_grad, lrs, wds, etas, beta1=0.9, beta2=0.999,
                       epsilon=1e-8, clip_gradient=-1.0, out=None, size=0):
    """:func:`adamw_update` on many tensors in one launch, tensor ``i`` with ``lrs[i]``,
    ``wds[i]``, ``etas[i]``."""
    n = size or len(weights)
    _lists("multi_adamw_update", n, weights=weights, grads=grads, mean=mean, var=var)
    opt = _adamw(rescale_grad, None, None, beta1, beta2, epsilon, None, clip_gradient, False, lrs, wds,
                 etas, n)
    return run(opt, list(weights), list(grads), list(zip(mean, var)), out)


def multi_mp_adamw_update(weights, grads, mean, var, weights32, rescale_grad, lrs, wds, etas, beta1=0.9,
                          beta2=0.999, epsilon=1e-8, clip_gradient=-1.0, out=None, size=0):
    """:func:`mp_adamw_update` on many tensors in one launch."""
    n = size or len(weights)
    _lists("multi_mp_adamw_update", n, weights=weights, grads=grads, mean=mean, var=var, weights32=weights32)
    opt = _adamw(rescale_grad, None, None, beta1, beta2, epsilon, None, clip_gradient, True, lrs, wds,
                 etas, n)
    return run(opt, list(weights), list(grads), _mp_states(weights32, mean, var), out)


# ---------------------------------------------------------------------- AdaBelief

def adabelief_update(weight, grad, mean, var, rescale_grad, lr, eta, beta1=0.9, beta2=0.999, epsilon=1e-8,
                     wd=0.0, clip_gradient=-1.0, out=None):
    """AdaBelief step (no bias correction; callers fold it into ``eta``):
    ``g' = clip(rescale_grad * grad + wd * weight)``;
    ``mean <- beta1 * mean + (1 - beta1) * g'``;
    ``var <- beta2 * var + (1 - beta2) * (g' - mean)^2 + epsilon``;
    ``weight <- weight - eta * lr * mean / (sqrt(var) + epsilon)``.
    ``rescale_grad`` 0, NaN or inf skips the whole update."""
    opt = _adamw(rescale_grad, lr, eta, beta1, beta2, epsilon, wd, clip_gradient, False, cls=_AdaBelief)
    return run(opt, [weight], [grad], [(mean, var)], out)[0]


def mp_adabelief_update(weight, grad, mean, var, weight32, rescale_grad, lr, eta, beta1=0.9, beta2=0.999,
                        epsilon=1e-8, wd=0.0, clip_gradient=-1.0, out=None):
    """:func:`adabelief_update` on the float32 master ``weight32``, then the rounded copy."""
    opt = _adamw(rescale_grad, lr, eta, beta1, beta2, epsilon, wd, clip_gradient, True, cls=_AdaBelief)
    return run(opt, [weight], [grad], [(weight32, (mean, var))], out)[0]


def multi_adabelief_update(weights, grads, mean, var, rescale_grad, lrs, wds, etas, beta1=0.9, beta2=0.999,
                           epsilon=1e-8, clip_gradient=-1.0, out=None, size=0):
    """:func:`adabelief_update` on many tensors in one launch."""
    n = size or len(weights)
    _lists("multi_adabelief_update", n, weights=weights, grads=grads, mean=mean, var=var)
    opt = _adamw(rescale_grad, None, None, beta1, beta2, epsilon, None, clip_gradient, False, lrs, wds,
                 etas, n, cls=_AdaBelief)
    return run(opt, list(weights), list(grads), list(zip(mean, var)), out)


def multi_mp_adabelief_update(weights, grads, mean, var, weights32, rescale_grad, lrs, wds, etas, beta1=0.9,
                              beta2=0.999, epsilon=1e-8, clip_gradient=-1.0, out=None, size=0):
    """:func:`mp_adabelief_update` on many tensors in one launch."""
    n = size or len(weights)
    _lists("multi_mp_adabelief_update", n, weights=weights, grads=grads, mean=mean, var=var,
           weights32=weights32)
    opt = _adamw(rescale_grad, None, None, beta1, beta2, epsilon, None, clip_gradient, True, lrs, wds,
                 etas, n, cls=_AdaBelief)
    return run(opt, list(weights), list(grads), _mp_states(weights32, mean, var), out)


# ---------------------------------------------------------------------- LAMB, LANS

def _bound(value):
    value = scalar("bound", value)
    return None if value < 0 else value


def _layerwise(cls, name, weights, grads, mean, var, weights32, step_count, lrs, wds, out, num_tensors, **kw):
    n = num_tensors or len(weights)
    lists = dict(weights=weights, grads=grads, mean=mean, var=var, step_count=step_count)
    if weights32 is not None:
        lists["weights32"] = weights32
    _lists(name, n, **lists)
    opt = cls(learning_rate=1.0, wd=1.0, multi_precision=weights32 is not None, **kw)
    per_tensor(opt, lrs, wds, n)
    for k, t in enumerate(step_count):
        t = int(t)
        if t < 1:
            raise ValueError("%s: step_count[%d] must be >= 1, got %r" % (name, k, t))
        opt._index_update_count[k] = t - 1          # the update counts it up to t
    if weights32 is None:
        states = list(zip(mean, var))
    else:
        states = _mp_states(weights32, mean, var)
    return run(opt, list(weights), list(grads), states, out)


def _lamb_kw(beta1, beta2, epsilon, rescale_grad, lower_bound, upper_bound, clip_gradient):
    return dict(beta1=beta1, beta2=beta2, epsilon=epsilon, rescale_grad=scalar("rescale_grad", rescale_grad),
                lower_bound=_bound(lower_bound), upper_bound=_bound(upper_bound),
                clip_gradient=clip_value(clip_gradient))


def multi_lamb_update(weights, grads, mean, var, step_count, lrs, wds, beta1=0.9, beta2=0.999, epsilon=1e-6,
                      rescale_grad=1.0, lower_bound=-1.0, upper_bound=-1.0, clip_gradient=-1.0,
                      bias_correction=True, out=None, num_tensors=0):
    """LAMB on many tensors, tensor ``i`` at step ``step_count[i]``:
    ``mean <- beta1 * mean + (1 - beta1) * g'``; ``var <- beta2 * var + (1 - beta2) * g'^2``;
    ``r = mean_hat / (sqrt(var_hat) + epsilon) + wd * weight`` (hats: bias-corrected if
    ``bias_correction``); ``r1 = ||weight||`` bounded by ``lower_bound``/``upper_bound``
    (when >= 0), ``r2 = ||r||``; ``weight <- weight - lr * (r1 / r2 if both > 0 else 1) * r``."""
    kw = _lamb_kw(beta1, beta2, epsilon, rescale_grad, lower_bound, upper_bound, clip_gradient)
    return _layerwise(_LAMB, "multi_lamb_update", weights, grads, mean, var, None, step_count, lrs, wds, out,
                      num_tensors, bias_correction=bool(bias_correction), **kw)


def multi_mp_lamb_update(weights, grads, mean, var, weights32, step_count, lrs, wds, beta1=0.9, beta2=0.999,
                         epsilon=1e-6, rescale_grad=1.0, lower_bound=-1.0, upper_bound=-1.0,
                         clip_gradient=-1.0, bias_correction=True, out=None, num_tensors=0):
    """:func:`multi_lamb_update` on float32 masters ``weights32``, then the rounded copies."""
    kw = _lamb_kw(beta1, beta2, epsilon, rescale_grad, lower_bound, upper_bound, clip_gradient)
    return _layerwise(_LAMB, "multi_mp_lamb_update", weights, grads, mean, var, weights32, step_count, lrs,
                      wds, out, num_tensors, bias_correction=bool(bias_correction), **kw)


def multi_lans_update(weights, grads, mean, var, step_count, lrs, wds, beta1=0.9, beta2=0.999, epsilon=1e-6,
                      rescale_grad=1.0, lower_bound=-1.0, upper_bound=-1.0, clip_gradient=-1.0, out=None,
                      num_tensors=0):
    """LANS on many tensors, tensor ``i`` at step ``step_count[i]``: the gradient is
    normalised per tensor (``g^ = clip(s g / ||s g||)``), moments as Adam with bias
    correction, ``d = sqrt(v_hat) + epsilon``, ``rm = m_hat / d + wd w``,
    ``rg = g^ / d + wd w``; ``weight <- weight - lr * (beta1 * tm * rm + (1 - beta1) * tg * rg)``
    with trust ratios ``tm = r1 / ||rm||``, ``tg = r1 / ||rg||`` (``r1 = ||weight||``, bounded)."""
    kw = _lamb_kw(beta1, beta2, epsilon, rescale_grad, lower_bound, upper_bound, clip_gradient)
    return _layerwise(_LANS, "multi_lans_update", weights, grads, mean, var, None, step_count, lrs, wds, out,
                      num_tensors, **kw)


def multi_mp_lans_update(weights, grads, mean, var, weights32, step_count, lrs, wds, beta1=0.9, beta2=0.999,
                         epsilon=1e-6, rescale_grad=1.0, lower_bound=-1.0, upper_bound=-1.0,
                         clip_gradient=-1.0, out=None, num_tensors=0):
    """:func:`multi_lans_update` on float32 masters ``weights32``, then the rounded copies."""
    kw = _lamb_kw(beta1, beta2, epsilon, rescale_grad, lower_bound, upper_bound, clip_gradient)
    return _layerwise(_LANS, "multi_mp_lans_update", weights, grads, mean, var, weights32, step_count, lrs,
                      wds, out, num_tensors, **kw)


# ---------------------------------------------------------------------- GroupAdaGrad

def group_adagrad_update(weight, grad, history, lr, rescale_grad=1.0, clip_gradient=-1.0, epsilon=1e-5,
                         out=None):
    """GroupAdaGrad on a 2-D weight with one history value per row:
    ``history[r] <- history[r] + mean_c(g'[r, c]^2)``;
    ``weight[r, c] <- weight[r, c] - lr * g'[r, c] / (sqrt(history[r]) + epsilon)``.
    A row_sparse gradient updates only its rows."""
    opt = _GroupAdaGrad(learning_rate=scalar("lr", lr), epsilon=epsilon,
                        rescale_grad=scalar("rescale_grad", rescale_grad),
                        clip_gradient=clip_value(clip_gradient))
    return run(opt, [weight], [grad], [history], out)[0]

