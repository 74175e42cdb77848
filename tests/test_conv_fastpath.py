"""The slice-based Conv2D and pooling against the old gather method, on the backend matrix.

The reference is the index-map im2col that portnet used before (``window_sources``:
a float64 NumPy gather, and ``np.add.at`` for col2im), so every geometry, including
odd sizes, strides larger than the kernel and floor-mode leftovers, is checked
forward and backward on every backend case, both with in-place buffers (NumPy, CuPy,
torch) and with the portable ``concat`` construction. Max-pool ties are checked
exactly: the first maximal element of each window in row-major order takes the
gradient, as in PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import (
    assert_gradients_on_backend,
    assert_on_backend,
    assert_unchanged,
    f32,
    host_copies,
)
from portnet.backends.ops import ops_for

import portnet as pn
from portnet.layers.conv import Conv2D
from portnet.layers.normalization import BatchNorm
from portnet.layers.pooling import AvgPool2D, MaxPool2D
from portnet.layers.windows import window_sources

TOL = {"rtol": 1e-4, "atol": 1e-5}

# (in, out, H, W, kernel, stride, padding)
CONV_GEOMETRIES = [
    (3, 4, 7, 6, 3, 1, 1),
    (2, 3, 9, 8, (3, 2), 2, (1, 0)),
    (1, 2, 5, 5, 5, 1, 2),
    (2, 2, 8, 8, 2, 2, 0),
    (2, 3, 7, 7, 3, 3, 0),
    (3, 2, 6, 9, (1, 3), (2, 1), (0, 1)),
    (2, 2, 5, 4, 1, 1, 0),
    (1, 2, 8, 7, 3, 2, 1),
    (2, 3, 5, 5, 2, 3, 1),
]
# (H, W, kernel, stride, padding); stride None is the kernel (windows tile the input)
POOL_GEOMETRIES = [
    (8, 8, 2, None, 0),
    (7, 9, 2, None, 0),
    (7, 7, (3, 2), None, 0),
    (3, 3, 3, None, 0),
    (7, 9, 3, 2, 1),
    (6, 6, 3, 1, 0),
    (5, 7, (2, 3), (1, 2), 1),
    (5, 5, 2, 3, 0),
    (9, 7, 3, None, 1),
]


@pytest.fixture(params=[False, True], ids=["portable", "inplace"])
def inplace(request, backend):
    if request.param and not backend.ops.can_mutate:
        pytest.skip(f"{backend.name} has no in-place path")
    return request.param


# -- the float64 reference: the old gather-based im2col -------------------------------
def gather_windows(x, kernel, stride, padding, pad_value):
    """``(N, C, L, K)`` windows of ``x`` through the host index map, and the map."""
    n, c, h, w = x.shape
    src, out_h, out_w = window_sources(h, w, kernel, stride, padding)
    flat = np.concatenate([x.reshape(n, c, h * w), np.full((n, c, 1), pad_value)], axis=2)
    return flat[:, :, np.where(src >= 0, src, h * w)], src, (out_h, out_w)


def scatter_windows(dwin, src, shape):
    """col2im by ``np.add.at``: the adjoint of :func:`gather_windows`."""
    n, c, h, w = shape
    dx = np.zeros((n, c, h * w + 1))
    np.add.at(dx, (slice(None), slice(None), np.where(src >= 0, src, h * w)), dwin)
    return dx[:, :, : h * w].reshape(shape)


def conv_reference(x, params, kernel, stride, padding, dy):
    win, src, (oh, ow) = gather_windows(x, kernel, stride, padding, 0.0)
    W = params["W"].reshape(params["W"].shape[0], x.shape[1], -1)
    y = np.einsum("nclk,fck->nfl", win, W)
    if "b" in params:
        y = y + params["b"][None, :, None]
    d = dy.reshape(dy.shape[0], dy.shape[1], -1)
    grads = {"W": np.einsum("nfl,nclk->fck", d, win).reshape(params["W"].shape)}
    if "b" in params:
        grads["b"] = d.sum(axis=(0, 2))
    dx = scatter_windows(np.einsum("nfl,fck->nclk", d, W), src, x.shape)
    return y.reshape(x.shape[0], -1, oh, ow), dx, grads


def pool_reference(kind, x, kernel, stride, padding, dy):
    pad_value = -np.inf if kind == "max" else 0.0
    win, src, (oh, ow) = gather_windows(x, kernel, stride, padding, pad_value)
    d = dy.reshape(dy.shape[0], dy.shape[1], -1, 1)
    if kind == "max":
        y = win.max(axis=-1)
        # argmax: the first maximal entry in row-major window order.
        first = win.argmax(axis=-1)[..., None] == np.arange(win.shape[-1])
        dwin = np.where(first, d, 0.0)
    else:
        y = win.mean(axis=-1)
        dwin = np.broadcast_to(d / win.shape[-1], win.shape)
    return y.reshape(*x.shape[:2], oh, ow), scatter_windows(dwin, src, x.shape)


def run(backend, layer, x_h, p_h, dy_h, inplace):
    """Forward and backprop in float32 on ``backend``; placement and inputs checked."""
    x = backend.asarray(x_h, "float32")
    params = {k: backend.asarray(v, "float32") for k, v in p_h.items()}
    dy = backend.asarray(dy_h, "float32")
    before = host_copies([x, params, dy])
    ctx = pn.Context(xp=backend.xp, training=True, ops=backend.ops.with_inplace(inplace))
    y, backprop = layer.forward(params, x, ctx)
    assert_on_backend(y, backend, "float32", dy_h.shape)
    dx, grads = backprop(dy)
    assert_gradients_on_backend(dx, grads, backend, x_h.shape, p_h)
    assert_unchanged(before, [x, params, dy])
    return host_copies(y), host_copies(dx), host_copies(grads)


def out_shape(n, c, h, w, kernel, stride, padding):
    _, out_h, out_w = window_sources(h, w, kernel, stride, padding)
    return (n, c, out_h, out_w)


# -- every geometry on every backend case, both construction paths -------------------
def test_conv2d_matches_gather_reference(backend, inplace):
    rng = np.random.default_rng(0)
    for c, f, h, w, k, s, p in CONV_GEOMETRIES:
        layer = Conv2D(c, f, k, stride=s, padding=p)
        params = {
            "W": f32(rng.normal(size=(f, c, *layer.kernel_size))),
            "b": f32(rng.normal(size=f)),
        }
        x_h = f32(rng.normal(size=(2, c, h, w)))
        dy_h = f32(rng.normal(size=out_shape(2, f, h, w, *_geometry(layer))))
        y, dx, grads = run(backend, layer, x_h, params, dy_h, inplace)
        y_ref, dx_ref, g_ref = conv_reference(x_h, params, *_geometry(layer), dy_h)
        where = f"conv {(c, f, h, w, k, s, p)}"
        np.testing.assert_allclose(y, y_ref, **TOL, err_msg=where)
        np.testing.assert_allclose(dx, dx_ref, **TOL, err_msg=where)
        for key in params:
            np.testing.assert_allclose(grads[key], g_ref[key], **TOL, err_msg=f"{where} d{key}")


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_matches_gather_reference(backend, inplace, kind):
    rng = np.random.default_rng(1)
    for h, w, k, s, p in POOL_GEOMETRIES:
        layer = (MaxPool2D if kind == "max" else AvgPool2D)(k, stride=s, padding=p)
        # Distinct values: no ties, so the float32 and float64 arg-max agree.
        x_h = f32(rng.permutation(2 * 3 * h * w).reshape(2, 3, h, w) * 0.01 - 1.0)
        dy_h = f32(rng.normal(size=out_shape(2, 3, h, w, *_geometry(layer))))
        y, dx, _ = run(backend, layer, x_h, {}, dy_h, inplace)
        y_ref, dx_ref = pool_reference(kind, x_h, *_geometry(layer), dy_h)
        np.testing.assert_allclose(y, y_ref, **TOL, err_msg=f"{kind} {(h, w, k, s, p)}")
        np.testing.assert_allclose(dx, dx_ref, **TOL, err_msg=f"{kind} {(h, w, k, s, p)}")


def test_maxpool_ties_first_element_every_geometry(backend, inplace):
    """0/1 inputs (as after a ReLU): most windows tie, and the first maximal element
    in row-major window order takes the whole gradient, overlapping windows adding."""
    rng = np.random.default_rng(2)
    for h, w, k, s, p in POOL_GEOMETRIES:
        layer = MaxPool2D(k, stride=s, padding=p)
        x_h = rng.integers(0, 2, size=(2, 3, h, w)).astype(np.float64)
        # Small integers: every sum is exact in float32, so equality is exact.
        dy_h = rng.integers(1, 5, size=out_shape(2, 3, h, w, *_geometry(layer))).astype(float)
        y, dx, _ = run(backend, layer, x_h, {}, dy_h, inplace)
        y_ref, dx_ref = pool_reference("max", x_h, *_geometry(layer), dy_h)
        np.testing.assert_array_equal(y, y_ref, err_msg=f"{(h, w, k, s, p)}")
        np.testing.assert_array_equal(dx, dx_ref, err_msg=f"ties {(h, w, k, s, p)}")


def _geometry(layer):
    return layer.kernel_size, layer.stride, layer.padding


# -- layouts: a channels-last input gives the same numbers, and stays channels-last ------
@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_channels_last_memory_same_values_and_kept(name):
    """An ``N x C x H x W`` view of channels-last memory (what Conv2D returns) and a
    channels-first array give equal results through Conv2D, BatchNorm, ReLU and the
    pools; on NumPy and torch each output is channels-last memory again (no copy)."""
    if name == "torch":
        pytest.importorskip("torch")
    backend = pn.get_backend(name)
    xp = backend.xp
    rng = np.random.default_rng(3)
    layers = [Conv2D(3, 4, 3, padding=1), BatchNorm(4), pn.ReLU(), MaxPool2D(2)]
    layers += [Conv2D(4, 5, 3, stride=2, padding=1), AvgPool2D(2)]
    params = [
        {k: backend.asarray(v, "float32") for k, v in lay.init(rng).items()} for lay in layers
    ]
    x_h = f32(rng.normal(size=(2, 9, 10, 3)))
    first = backend.asarray(np.ascontiguousarray(x_h.transpose(0, 3, 1, 2)), "float32")
    last = xp.permute_dims(backend.asarray(x_h, "float32"), (0, 3, 1, 2))
    results = []
    for x in (first, last):
        backprops = []
        for layer, p in zip(layers, params, strict=True):
            ctx = pn.Context(xp=xp, training=True, ops=ops_for(xp))
            x, back = layer.forward(p, x, ctx)
            channels_last = backend.to_numpy(xp.permute_dims(x, (0, 2, 3, 1)))
            if name == "numpy":
                assert np.permute_dims(x, (0, 2, 3, 1)).flags.c_contiguous, type(layer)
            else:
                assert xp.permute_dims(x, (0, 2, 3, 1)).is_contiguous(), type(layer)
            backprops.append(back)
        dy = backend.asarray(np.ones(tuple(x.shape)), "float32")
        for back in reversed(backprops):
            dy, _ = back(dy)
        results.append((channels_last, host_copies(dy)))
    np.testing.assert_allclose(results[0][0], results[1][0], **TOL)
    np.testing.assert_allclose(results[0][1], results[1][1], **TOL)


def test_layers_trace_under_jax_jit():
    """No host read and no data-dependent shape: the layers trace, and agree with eager."""
    jax = pytest.importorskip("jax")
    backend = pn.get_backend("jax")
    xp = backend.xp
    rng = np.random.default_rng(4)
    layers = [Conv2D(2, 3, 3, stride=2, padding=1), BatchNorm(3), MaxPool2D(3, 2, 1), AvgPool2D(2)]
    params = [
        {k: backend.asarray(v, "float32") for k, v in lay.init(rng).items()} for lay in layers
    ]
    x = backend.asarray(rng.normal(size=(2, 2, 11, 9)), "float32")

    def step(params, x):
        backprops = []
        for layer, p in zip(layers, params, strict=True):
            x, back = layer.forward(p, x, pn.Context(xp=xp, training=True))
            backprops.append(back)
        dy = xp.ones(x.shape, dtype=x.dtype)
        for back in reversed(backprops):
            dy, _ = back(dy)
        return x, dy

    eager = step(params, x)
    jitted = jax.jit(step)(params, x)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)
