"""The model-level gradient check (pn.gradient_check) and its table."""

from __future__ import annotations

import numpy as np
from helpers.ops import GRAD_TOL

import portnet as pn


# -- model-level gradient check and its table --------------------------------------------
def small_tanh_model(backend, l2=1e-2):
    model = pn.Model(
        [pn.Dense(20, 16, init="glorot"), pn.Tanh(), pn.Dense(16, 10, init="glorot"), pn.Softmax()],
        l2=l2,
        backend=backend,
        seed=3,
    )
    rng = np.random.default_rng(14)
    weights = model.get_weights()
    for layer in weights:  # non-zero biases so every checked entry has a real gradient
        if "b" in layer:
            layer["b"] = rng.normal(scale=0.1, size=layer["b"].shape).astype(np.float32)
    model.set_weights(weights)
    X = rng.normal(size=(12, 20)).astype(np.float32)
    y = rng.integers(0, 10, 12).astype(np.int64)
    return model, X, y


def test_model_gradient_check(backend64):
    model, X, y = small_tanh_model(backend64)
    rows = pn.gradient_check(model, X, y, n_per_param=3)
    # 3 entries of each of W1, b1, W2, b2.
    assert len(rows) == 12
    assert {(r.layer, r.param) for r in rows} == {(0, "W"), (0, "b"), (2, "W"), (2, "b")}
    for row in rows:
        assert row.rel_error < GRAD_TOL, row
        assert abs(row.backprop) > 1e-8, row  # a real gradient, not 0 == 0
    # The L2 term is included: without it the W gradients change by lam * W.
    no_l2, _, _ = small_tanh_model(backend64, l2=0.0)
    entries = [(r.layer, r.param, r.index) for r in rows if r.param == "W"]
    plain = {
        (r.layer, r.index): r.backprop for r in pn.gradient_check(no_l2, X, y, entries=entries)
    }
    weights = model.get_weights()
    for row in rows:
        if row.param == "W":
            expected = plain[(row.layer, row.index)] + 1e-2 * float(
                weights[row.layer]["W"][row.index]
            )
            np.testing.assert_allclose(row.backprop, expected, rtol=1e-6, atol=1e-12)


def test_format_gradient_table(numpy_backend):
    model, X, y = small_tanh_model(numpy_backend)
    rows = pn.gradient_check(model, X, y, n_per_param=2)
    table = pn.format_gradient_table(rows, names={(0, "W"): "W1"})
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["weight", "index", "backprop", "numerical", "abs. difference", "rel. error"]
    assert set(lines[1].replace("|", "")) == {"-"}
    for line, row in zip(lines[2:], rows, strict=True):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 6
        assert cells[0] == (
            "W1" if (row.layer, row.param) == (0, "W") else f"layer {row.layer} {row.param}"
        )
        assert cells[1] == ", ".join(map(str, row.index))
        np.testing.assert_allclose(float(cells[2]), row.backprop, rtol=1e-6)
        np.testing.assert_allclose(float(cells[3]), row.numerical, rtol=1e-6)
        np.testing.assert_allclose(float(cells[5]), row.rel_error, rtol=1e-2, atol=1e-300)
