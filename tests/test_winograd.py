"""Winograd's F(2x2, 3x3) against im2col on every backend case: forward and gradients.

Both are exact convolutions; they differ only in rounding, so float32 agrees to 1e-4
relative and float64 to 1e-10. Odd output sizes (a tile cropped), padding 0, 1 and 2,
one input channel and many, with and without in-place buffers.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_unchanged, host_copies

import portnet as pn
from portnet.errors import ConfigError
from portnet.layers.conv import WINOGRAD_MIN_CHANNELS, Conv2D
from portnet.layers.winograd import transforms

# (in, out, H, W, padding)
GEOMETRIES = [(3, 4, 8, 8, 1), (2, 3, 7, 6, 1), (1, 2, 5, 5, 0), (4, 2, 6, 9, 2), (2, 2, 3, 3, 0)]


@pytest.fixture(params=[False, True], ids=["portable", "inplace"])
def inplace(request):
    return request.param


def _relative_error(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _forward_backward(backend, layer, x_h, p_h, dy_h, dtype, inplace):
    ops = backend.ops.with_inplace(inplace and backend.ops.can_mutate)
    ctx = pn.Context(xp=backend.xp, training=True, ops=ops)
    x = backend.asarray(x_h, dtype)
    params = {k: backend.asarray(v, dtype) for k, v in p_h.items()}
    dy = backend.asarray(dy_h, dtype)
    before = host_copies([x, params, dy])
    y, backprop = layer.forward(params, x, ctx)
    dx, grads = backprop(dy)
    assert_unchanged(before, [x, params, dy])  # neither path writes into its inputs
    return host_copies(y), host_copies(dx), host_copies(grads)


def _assert_paths_agree(backend, dtype, bound, inplace):
    rng = np.random.default_rng(0)
    for c, f, h, w, p in GEOMETRIES:
        p_h = {"W": rng.normal(size=(f, c, 3, 3)), "b": rng.normal(size=f)}
        x_h = rng.normal(size=(3, c, h, w))
        dy_h = rng.normal(size=(3, f, h + 2 * p - 2, w + 2 * p - 2))
        results = [
            _forward_backward(
                backend, Conv2D(c, f, 3, padding=p, algorithm=a), x_h, p_h, dy_h, dtype, inplace
            )
            for a in ("im2col", "winograd")
        ]
        (y0, dx0, g0), (y1, dx1, g1) = results
        where = f"{(c, f, h, w, p)} {dtype}"
        assert y1.shape == y0.shape and dx1.shape == dx0.shape, where
        assert _relative_error(y1, y0) < bound, f"y {where}"
        assert _relative_error(dx1, dx0) < bound, f"dx {where}"
        for key in g0:
            assert _relative_error(g1[key], g0[key]) < bound, f"d{key} {where}"


def test_winograd_equals_im2col_float32(backend, inplace):
    _assert_paths_agree(backend, "float32", 1e-4, inplace)


def test_winograd_equals_im2col_float64(backend64, inplace):
    _assert_paths_agree(backend64, "float64", 1e-10, inplace)


def test_transforms_are_lavin_and_grays():
    """The matrices built from eye rows are the published B^T, G and A^T (as Kronecker squares)."""
    b_t = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    a_t = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])
    built = transforms(pn.get_backend("numpy").xp, np.float64, "cpu")
    np.testing.assert_array_equal(built["B"], np.kron(b_t, b_t))
    np.testing.assert_array_equal(built["G"], np.kron(g, g))
    np.testing.assert_array_equal(built["A"], np.kron(a_t, a_t))


def test_winograd_only_for_3x3_stride_1():
    with pytest.raises(ConfigError, match="3x3 stride-1"):
        Conv2D(4, 4, 5, algorithm="winograd")
    with pytest.raises(ConfigError, match="3x3 stride-1"):
        Conv2D(4, 4, 3, stride=2, algorithm="winograd")
    with pytest.raises(ConfigError, match="unknown algorithm"):
        Conv2D(4, 4, 3, algorithm="fft")


def test_auto_picks_winograd_from_enough_channels():
    few, many = WINOGRAD_MIN_CHANNELS - 1, WINOGRAD_MIN_CHANNELS
    assert not Conv2D(few, 8, 3, padding=1).uses_winograd
    assert Conv2D(many, 8, 3, padding=1).uses_winograd
    assert not Conv2D(many, 8, 3, stride=2).uses_winograd
    assert not Conv2D(many, 8, 5).uses_winograd
    assert not Conv2D(many, 8, 3, algorithm="im2col").uses_winograd


def test_algorithm_is_saved_only_when_chosen():
    assert "algorithm" not in Conv2D(2, 2, 3).get_config()
    layer = Conv2D(2, 2, 3, algorithm="winograd")
    assert layer.get_config()["algorithm"] == "winograd"
    assert Conv2D(**layer.get_config()).algorithm == "winograd"


def test_winograd_adds_a_fixed_few_kernels_and_no_sync():
    """On the emulated CuPy a Winograd layer's step uploads and downloads nothing and
    launches a fixed few more kernels than im2col (its transforms, built from eye
    rows, and the tile products), however many channels it has."""
    import dataclasses

    from portnet import layers
    from portnet.layers import activations, conv, pooling
    from portnet.testing.audit import audit_emulated_cupy
    from portnet.testing.options import IMAGE, N_CLASSES, option

    def network(algorithm, channels):
        return lambda: [
            conv.Reshape(IMAGE),
            conv.Conv2D(1, channels, 3, padding=1, algorithm="im2col"),
            activations.ReLU(),
            conv.Conv2D(channels, channels, 3, padding=1, algorithm=algorithm),
            pooling.MaxPool2D(2),
            conv.Flatten(),
            layers.Dense(channels * 4 * 4, N_CLASSES),
        ]

    base = option("cnn-winograd")
    extra = []
    for channels in (4, 8):
        counts = {}
        for algorithm in ("im2col", "winograd"):
            image = dataclasses.replace(base, make_layers=network(algorithm, channels))
            audit = audit_emulated_cupy(image)
            assert audit.worst_step["uploads"] == audit.worst_step["downloads"] == 0, audit
            counts[algorithm] = audit.per_step["kernels"]
        extra.append(counts["winograd"] - counts["im2col"])
    assert extra[0] == extra[1] and 0 < extra[0] <= 60, extra
