"""HostRows: sparse host rows trained batch by batch equal the dense device rows."""

from __future__ import annotations

import numpy as np
import pytest

import portnet as pn
from portnet.training.core import copy_tree
from portnet.training.rows import HostRows

sparse = pytest.importorskip("scipy.sparse")


def test_an_epoch_on_sparse_rows_equals_the_dense_epoch(backend):
    rng = np.random.default_rng(0)
    X = rng.random((50, 8)) * (rng.random((50, 8)) < 0.3)  # mostly zeros
    y = rng.integers(0, 3, 50)
    model = pn.Model(pn.mlp([8, 6, 3]), optimizer=pn.Momentum(0.1), backend=backend)
    X_dev, y_dev = model.prepare_data(X.astype(np.float32), y)
    order = rng.permutation(50)
    start = model.state
    results = []
    for features in (X_dev, HostRows(sparse.csr_array(X), backend, "float32", order)):
        state = model.trainer.init_state(copy_tree(start.params))  # fresh velocities too
        state, loss_sum, _ = model.trainer.run_epoch(
            state, features, y_dev, batch_size=16, order=backend.asarray(order), random=None
        )
        results.append(
            (
                backend.to_numpy(loss_sum),
                [backend.to_numpy(p["W"]) for p in state.params if "W" in p],
            )
        )
    (dense_loss, dense_W), (sparse_loss, sparse_W) = results
    np.testing.assert_allclose(sparse_loss, dense_loss, rtol=1e-6)
    for a, b in zip(sparse_W, dense_W, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_host_rows_upload_one_batch_at_a_time(numpy_backend):
    matrix = sparse.random(1000, 30, density=0.05, format="csc", random_state=0)
    rows = HostRows(matrix, numpy_backend, "float32").in_order(np.arange(999, -1, -1))
    with pn.count_transfers() as count:
        batch = rows.batch(0, 10)
    assert count.to_device == 1
    assert batch.shape == (10, 30) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, matrix.toarray()[999:989:-1].astype(np.float32))
    assert rows.shape == (1000, 30)
