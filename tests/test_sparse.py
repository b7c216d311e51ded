"""Row-sparse gradients: validation, lazy (rows only) and standard updates."""
import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba.sparse import row_sparse_array

SHAPE = (37, 5)

#: optimizers whose row_sparse gradients update only the listed rows
LAZY = [
    ("sgd", {"lazy_update": True, "momentum": 0.9, "wd": 0.05, "clip_gradient": 0.8}),
    ("sgd", {"lazy_update": True}),
    ("adam", {"lazy_update": True, "wd": 0.01}),
    ("adagrad", {}),
    ("groupadagrad", {}),
]
#: standard updates: identical to a dense gradient with zero rows
STANDARD = [
    ("sgd", {"momentum": 0.9, "wd": 0.05}),
    ("sgd", {"lazy_update": False, "wd": 0.05}),
    ("adam", {"wd": 0.01}),
    ("rmsprop", {"centered": True}),
    ("nag", {}),
    ("adamw", {}),
    ("lamb", {}),
    # MXNet's row kernel for Ftrl needs row_sparse weights (out of scope): a dense weight
    # recomputes every row from z and n, as the golden trace opt.ftrl.sparse shows
    ("ftrl", {"wd": 0.01}),
]


def _params(table):
    return [pytest.param(name, kw, id="%s-%s" % (name, "-".join("%s=%s" % i for i in sorted(kw.items())) or "default"))
            for name, kw in table]


def _need(name):
    if name not in mxo.optimizer.Optimizer.opt_registry:
        pytest.skip("%s is not available" % name)


def _grads(rng, steps, rows_per_step, dtype=np.float32):
    out = []
    for step in range(steps):
        n = rows_per_step[step % len(rows_per_step)]
        rows = np.sort(rng.choice(SHAPE[0], size=n, replace=False))
        out.append(row_sparse_array((rng.standard_normal((n, SHAPE[1])).astype(dtype), rows), shape=SHAPE))
    return out


@pytest.mark.parametrize("name, kwargs", _params(LAZY))
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_lazy_update_touches_only_the_listed_rows(name, kwargs, fused):
    """Reference: the dense update applied to the listed rows alone (weights and states)."""
    _need(name)
    rng = np.random.default_rng(1)
    weight = rng.standard_normal(SHAPE).astype(np.float32)
    opt = mxo.optimizer.create(name, use_fused_step=fused, **kwargs)
    ref_opt = mxo.optimizer.create(name, **{k: v for k, v in kwargs.items() if k != "lazy_update"})
    state = opt.create_state_multi_precision(0, weight)
    ref_w = weight.copy()
    ref_states = {}
    for step, grad in enumerate(_grads(rng, 4, [5, 0, 37, 3])):
        before = weight.copy()
        opt.update(0, weight, grad, state)
        untouched = np.setdiff1d(np.arange(SHAPE[0]), grad.indices)
        np.testing.assert_array_equal(weight[untouched], before[untouched])
        for r, row in zip(grad.indices, grad.data):
            # each row is its own one-row tensor for the reference optimizer
            sub = ref_w[r:r + 1].copy()
            if r not in ref_states:
                ref_states[r] = ref_opt.create_state_multi_precision("row%d" % r, sub)
            ref_opt._index_update_count["row%d" % r] = opt._index_update_count[0] - 1
            ref_opt.update("row%d" % r, sub, row[None].copy(), ref_states[r])
            ref_w[r] = sub[0]
        np.testing.assert_allclose(weight, ref_w, rtol=2e-6, atol=1e-7, err_msg="step %d" % step)
    assert opt.num_update == 4


@pytest.mark.parametrize("name, kwargs", _params(STANDARD))
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_standard_update_equals_dense_gradient_with_zero_rows(name, kwargs, fused):
    _need(name)
    rng = np.random.default_rng(2)
    w_sparse = rng.standard_normal(SHAPE).astype(np.float32)
    w_dense = w_sparse.copy()
    a = mxo.optimizer.create(name, use_fused_step=fused, **kwargs)
    b = mxo.optimizer.create(name, use_fused_step=fused, **kwargs)
    sa, sb = a.create_state_multi_precision(0, w_sparse), b.create_state_multi_precision(0, w_dense)
    for grad in _grads(rng, 4, [4, 0, 37]):
        a.update(0, w_sparse, grad, sa)
        b.update(0, w_dense, grad.todense(), sb)
        np.testing.assert_array_equal(w_sparse, w_dense)


@pytest.mark.parametrize("name, kwargs", _params([LAZY[0], LAZY[2]]))
def test_lazy_multi_precision_float16(name, kwargs):
    _need(name)
    rng = np.random.default_rng(3)
    w16 = rng.standard_normal(SHAPE).astype(np.float16)
    w32 = w16.astype(np.float32)
    o16 = mxo.optimizer.create(name, multi_precision=True, **kwargs)
    o32 = mxo.optimizer.create(name, **kwargs)
    s16, s32 = o16.create_state_multi_precision(0, w16), o32.create_state_multi_precision(0, w32)
    for grad in _grads(rng, 3, [6, 11]):
        g16 = row_sparse_array((grad.data.astype(np.float16), grad.indices), shape=SHAPE)
        g32 = row_sparse_array((g16.data.astype(np.float32), grad.indices), shape=SHAPE)
        o16.update(0, w16, g16, s16)
        o32.update(0, w32, g32, s32)
        np.testing.assert_array_equal(s16[0], w32)
        np.testing.assert_array_equal(w16, s16[0].astype(np.float16))


def test_a_chunk_may_mix_dense_and_sparse_gradients():
    rng = np.random.default_rng(4)
    ws = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(3)]
    ref = [w.copy() for w in ws]
    grads = _grads(rng, 1, [7])[0], rng.standard_normal(SHAPE).astype(np.float32), _grads(rng, 1, [2])[0]
    opt = mxo.optimizer.create("sgd", lazy_update=True, momentum=0.5, aggregate_num=np.inf)
    mxo.optimizer.get_updater(opt)([0, 1, 2], list(grads), ws)
    single = mxo.optimizer.create("sgd", lazy_update=True, momentum=0.5)
    u = mxo.optimizer.get_updater(single)
    for i, g in enumerate(grads):
        u(i, g, ref[i])
    for x, r in zip(ws, ref):
        np.testing.assert_array_equal(x, r)
    assert opt._index_update_count[1] == 1


@pytest.mark.parametrize("data, indices, shape, match", [
    (np.ones((2, 3)), [3, 1], (5, 3), "sorted"),
    (np.ones((2, 3)), [1, 1], (5, 3), "unique"),
    (np.ones((2, 3)), [1, 5], (5, 3), r"\[0, 5\)"),
    (np.ones((2, 3)), [-1, 2], (5, 3), r"\[0, 5\)"),
    (np.ones((2, 4)), [1, 2], (5, 3), "data has shape"),
    (np.ones((3, 3)), [1, 2], (5, 3), "data has shape"),
    (np.ones((2, 3)), [[1, 2]], (5, 3), "1-D"),
], ids=["unsorted", "duplicate", "too-large", "negative", "wrong-width", "wrong-count", "2-d-indices"])
def test_row_sparse_array_validation(data, indices, shape, match):
    with pytest.raises(ValueError, match=match):
        row_sparse_array((data, indices), shape=shape)


def test_row_sparse_array_basics():
    g = row_sparse_array((np.arange(6.0).reshape(2, 3), [0, 3]), shape=(4, 3))
    assert g.stype == "row_sparse" and g.shape == (4, 3)
    dense = g.todense()
    np.testing.assert_array_equal(dense[[1, 2]], 0)
    np.testing.assert_array_equal(dense[3], [3, 4, 5])
    empty = row_sparse_array((np.zeros((0, 3)), []), shape=(4, 3))
    assert not empty.todense().any()


def test_sparse_gradient_shape_must_match_the_weight():
    g = row_sparse_array((np.ones((1, 3), np.float32), [0]), shape=(4, 3))
    with pytest.raises(ValueError, match="does not match"):
        mxo.optimizer.create("sgd", lazy_update=True).update(0, np.zeros((5, 3), np.float32), g, None)


# --------------------------------------------------------------------------- RowSparseArray built directly

_ROWS = np.ones((2, 3), np.float32)


@pytest.mark.parametrize("data, indices, shape, error, match", [
    (np.ones((1, 3), np.float32), [10**7], (5, 3), ValueError, r"indices must lie in \[0, 5\)"),
    (np.ones((1, 3), np.float32), [-5], (5, 3), ValueError, r"indices must lie in \[0, 5\)"),
    (np.ones((1, 3), np.float32), np.array([10**7], np.int32), (5, 3), ValueError, r"\[0, 5\)"),
    (np.ones((1, 3), np.float32), [10**30], (5, 3), ValueError, r"\[0, 5\)"),
    (np.ones((1, 3), np.float32), np.array([2**63 + 5], np.uint64), (5, 3), ValueError, r"\[0, 5\)"),
    (np.ones((1, 3), np.float32), np.arange(5), (5, 3), ValueError, "data has shape"),
    (_ROWS, [3, 1], (5, 3), ValueError, "sorted"),
    (_ROWS, [1, 1], (5, 3), ValueError, "unique"),
    (_ROWS, np.array([[1, 2]]), (5, 3), ValueError, "indices must be 1-D"),
    (_ROWS, [[1], [2, 3]], (5, 3), TypeError, "indices must be"),
    (np.ones((1, 3), np.float32), [0.5], (5, 3), TypeError, "indices must be integers"),
    (np.ones((1, 3), np.float32), [np.nan], (5, 3), TypeError, "indices must be integers"),
    (np.ones((1, 3), np.float32), [None], (5, 3), TypeError, "indices must be integers"),
    (np.ones((1, 3), np.float32), [True], (5, 3), TypeError, "indices must be integers"),
    (np.ones((1, 3), np.float32), np.array([1 + 0j]), (5, 3), TypeError, "indices must be integers"),
    (np.ones((1, 3), np.int32), [1], (5, 3), TypeError, "data has dtype int32"),
    ([[1.0, 2.0, 3.0]], [1], (5, 3), TypeError, "data must be a numpy array"),
    (np.ones((1, 4), np.float32), [1], (5, 3), ValueError, "data has shape"),
    (np.array(1.0, np.float32), [], (5,), ValueError, "data must have one row per index"),
    (np.ones((1, 3), np.float32), [1], (5.0, 3), TypeError, "shape must be a tuple of non-negative ints"),
    (np.ones((1, 3), np.float32), [1], (-5, 3), ValueError, "shape must be a tuple of non-negative ints"),
    (np.ones((1, 3), np.float32), [1], 5, TypeError, "shape must be a tuple"),
    (np.ones((1, 3), np.float32), [1], (), ValueError, "shape must have at least one dimension"),
], ids=["huge", "negative", "int32-huge", "beyond-int64", "uint64-huge", "five-indices-one-row",
        "unsorted", "duplicate", "2-d", "ragged", "fraction", "nan", "none", "bool", "complex",
        "int-data", "list-data", "row-width", "scalar-data", "float-shape", "negative-shape",
        "int-shape", "empty-shape"])
def test_row_sparse_array_constructor_validates(data, indices, shape, error, match):
    """The constructor runs the same checks as row_sparse_array (no NumPy error leaks)."""
    with pytest.raises(error, match=match):
        mxo.sparse.RowSparseArray(data, indices, shape)


@pytest.mark.parametrize("indices", [np.array([1, 4], np.int32), [1, 4], (1, 4), np.array([1.0, 4.0]),
                                     np.array([1, 4], np.uint8), np.array([0, 1, 3, 4])[1::2]],
                         ids=["int32", "list", "tuple", "integral-floats", "uint8", "strided"])
def test_row_sparse_array_constructor_normalises_indices(indices):
    g = mxo.sparse.RowSparseArray(_ROWS, indices, [5, 3])
    assert g.indices.dtype == np.int64 and g.indices.flags.c_contiguous
    np.testing.assert_array_equal(g.indices, [1, 4])
    assert g.shape == (5, 3) and type(g.shape) is tuple


def test_row_sparse_array_keeps_int64_indices_and_makes_data_contiguous():
    rows = np.array([0, 2], np.int64)
    data = np.arange(12, dtype=np.float32).reshape(2, 6)[:, ::2]
    g = mxo.sparse.RowSparseArray(data, rows, (3, 3))
    assert g.indices is rows
    assert g.data.flags.c_contiguous
    np.testing.assert_array_equal(g.data, data)
    assert row_sparse_array((data, rows), shape=(3, 3)).data.flags.c_contiguous


def test_validate_repeats_the_checks_after_in_place_changes():
    g = row_sparse_array((np.ones((2, 3), np.float32), [1, 3]), shape=(5, 3))
    assert g.validate() is g and g.validate((5, 3)) is g
    with pytest.raises(ValueError, match="does not match the weight's shape"):
        g.validate((6, 3))
    g.indices[0] = 10**7
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\)"):
        g.validate()
    g.indices[0] = 3
    with pytest.raises(ValueError, match="unique"):
        g.validate()
    g.indices = [0, 4]                    # reassigned as a list: normalised again
    g.validate((5, 3))
    assert g.indices.dtype == np.int64
    g.data = g.data[:1]
    with pytest.raises(ValueError, match="data has shape"):
        g.validate()
    g.data = np.ones((2, 3), np.float32)
    g.shape = (5, -1)
    with pytest.raises(ValueError, match="shape"):
        g.validate()


def test_row_sparse_array_accepts_every_float_dtype():
    import ml_dtypes
    for dtype in (np.float16, ml_dtypes.bfloat16, np.float32, np.float64):
        g = mxo.sparse.RowSparseArray(np.ones((1, 2), dtype), [0], (2, 2))
        assert g.dtype == np.dtype(dtype)


@pytest.mark.gpu
def test_row_sparse_array_with_device_data_still_checks_host_indices():
    """Device data: only its shape and dtype are read (no copy); host indices get every
    check; device indices get the metadata checks, their values checked on the host."""
    try:
        from numba import cuda
        if not cuda.is_available():
            raise ImportError
    except Exception:       # noqa: BLE001 - numba without a CUDA target or simulator
        pytest.skip("no CUDA device and NUMBA_ENABLE_CUDASIM is not set")
    from mxopt_numba.sparse import check_row_indices
    data = cuda.to_device(np.ones((2, 3), np.float32))
    g = mxo.sparse.RowSparseArray(data, np.array([1, 4], np.int32), (5, 3))
    assert g.data is data and g.indices.dtype == np.int64
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\)"):
        mxo.sparse.RowSparseArray(data, [1, 7], (5, 3))
    with pytest.raises(ValueError, match="data has shape"):
        mxo.sparse.RowSparseArray(data, [1, 2, 3], (5, 3))
    with pytest.raises(TypeError, match="data has dtype int32"):
        mxo.sparse.RowSparseArray(cuda.to_device(np.ones((2, 3), np.int32)), [1, 4], (5, 3))
    on_device = mxo.sparse.RowSparseArray(data, cuda.to_device(np.array([1, 4])), (5, 3))
    assert on_device.validate((5, 3)) is on_device
    with pytest.raises(TypeError, match="integer dtype"):
        mxo.sparse.RowSparseArray(data, cuda.to_device(np.array([1.0, 4.0])), (5, 3))
    with pytest.raises(ValueError, match="data has shape"):
        mxo.sparse.RowSparseArray(data, cuda.to_device(np.array([1, 2, 4])), (5, 3))
    np.testing.assert_array_equal(check_row_indices(on_device.indices.copy_to_host(), 5), [1, 4])
    with pytest.raises(ValueError, match="sorted"):
        check_row_indices(cuda.to_device(np.array([4, 1])).copy_to_host(), 5)


def test_row_sparse_array_from_lists_is_float32():
    g = row_sparse_array(([[1, 2], [3, 4]], [0, 2]), shape=(3, 2))
    assert g.dtype == np.float32 and g.indices.dtype == np.int64
    np.testing.assert_array_equal(g.todense(), [[1, 2], [0, 0], [3, 4]])
    with pytest.raises(TypeError, match="data has dtype int64"):
        row_sparse_array((np.array([[1, 2]]), [0]), shape=(3, 2))
    assert row_sparse_array((np.ones((1, 2)), [0]), shape=(3, 2), dtype=np.float16).dtype == np.float16
