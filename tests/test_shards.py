"""Sharded training steps (portnet.training.shards): a batch's row shards in threads
give the whole batch's step (same random draws, batch statistics and gradients, up
to the order of float sums), fail cleanly, and are used only where they were
measured to help."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import portnet as pn
from portnet.errors import ConfigError
from portnet.layers.base import Layer, RandomStream
from portnet.layers.conv import Conv2D, Flatten, Reshape
from portnet.layers.normalization import BatchNorm
from portnet.training import shards
from portnet.training.shards import ShardPlan, plan_for


def cnn_layers():
    """Every batch-coupled or random layer the job's CNN has, on 6x6 images."""
    return [
        Reshape((1, 6, 6)),
        pn.RandomFlip(),
        pn.RandomShift(1),
        Conv2D(1, 4, 3, padding=1, bias=False),
        BatchNorm(4),
        pn.MaxPool2D(2),
        pn.ReLU(),
        Flatten(),
        pn.Dense(36, 16, bias=False),  # BatchNorm makes a bias redundant: noise alone
        BatchNorm(16),
        pn.ReLU(),
        pn.Dropout(0.3),
        pn.Dense(16, 3),
    ]


def data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 36)), rng.integers(0, 3, size=n)


def train_epochs(plan, epochs=2, batch_size=64, dtype="float64", n=200):
    """Epochs of the CNN with each step sharded by ``plan`` (``None``: whole batches)."""
    backend = pn.get_backend("numpy")
    model = pn.Model(cnn_layers(), optimizer=pn.Adam(1e-2), backend=backend, dtype=dtype, seed=4)
    trainer, state = model.trainer, model.state
    X_h, y_h = data(n)
    X, y = backend.asarray(X_h, dtype), backend.asarray(y_h, "int64")
    sums = []
    for epoch in range(epochs):
        order = backend.asarray(np.random.default_rng(epoch).permutation(n))
        random = RandomStream(backend, 10 + epoch)
        ctx = trainer.training_context(backend.xp, random)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            state, (loss, correct) = trainer.train_step(state, X[idx], y[idx], ctx=ctx, shards=plan)
            sums.append((float(loss), float(correct)))
    return state.params, np.array(sums)


@pytest.mark.parametrize("n_shards", [2, 3])
def test_a_sharded_step_is_the_whole_batch_step(n_shards):
    """Two and three shards (64 rows: 32+32 or 21+21+22; the last batch of 8 rows:
    4+4 or 2+3+3) give the unsharded parameters, losses and correct counts in float64
    after two epochs: BatchNorm's statistics, the random draws and the loss are the
    whole batch's. Without BatchNorm's shared sums or the shared draws the shards
    would normalize and mask differently, far outside these bounds."""
    plan = ShardPlan(n_shards)
    assert [plan.count(rows) for rows in (64, 8)] == [min(n_shards, 2), 1]  # 32 rows each
    plan.count = lambda rows: n_shards if rows >= 2 * n_shards else 1  # smaller shards here
    whole_params, whole_sums = train_epochs(None)
    sharded_params, sharded_sums = train_epochs(plan)
    np.testing.assert_allclose(sharded_sums, whole_sums, rtol=1e-10)
    for whole, sharded in zip(whole_params, sharded_params, strict=True):
        assert whole.keys() == sharded.keys()
        for key in whole:
            np.testing.assert_allclose(sharded[key], whole[key], rtol=1e-9, atol=1e-12)


def test_sharded_float32_stays_within_rounding_of_the_whole_batch():
    whole_params, whole_sums = train_epochs(None, epochs=1, dtype="float32")
    sharded_params, sharded_sums = train_epochs(ShardPlan(2), epochs=1, dtype="float32")
    np.testing.assert_allclose(sharded_sums[:, 0], whole_sums[:, 0], rtol=1e-4)
    for whole, sharded in zip(whole_params, sharded_params, strict=True):
        for key in whole:
            np.testing.assert_allclose(sharded[key], whole[key], rtol=2e-3, atol=2e-4)


class FailsInShard(Layer):
    """Raises in one shard only, after the other shards reached BatchNorm's barrier."""

    def __init__(self, index):
        self.index = index

    def forward(self, params, x, ctx):
        if ctx.shard is not None and ctx.shard.index == self.index:
            raise ValueError(f"shard {self.index} failed")
        return x, lambda dy: (dy, {})


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failing_shard_raises_its_own_error_and_frees_the_others(failing):
    backend = pn.get_backend("numpy")
    layers = [Reshape((1, 6, 6)), Conv2D(1, 2, 3), FailsInShard(failing), BatchNorm(2)]
    layers += [Flatten(), pn.Dense(32, 3)]
    model = pn.Model(layers, backend=backend, dtype="float64", seed=0)
    X, y = (backend.asarray(a) for a in data(64))
    ctx = model.trainer.training_context(backend.xp, None)
    with pytest.raises(ValueError, match=f"shard {failing} failed"):
        model.trainer.train_step(model.state, X, y, ctx=ctx, shards=ShardPlan(2))
    # The threads are free again: the next sharded step runs.
    healthy = pn.Model(cnn_layers(), backend=backend, dtype="float64", seed=0)
    ctx = healthy.trainer.training_context(backend.xp, RandomStream(backend, 0))
    healthy.trainer.train_step(healthy.state, X, y, ctx=ctx, shards=ShardPlan(2))


class DrawsOneNumber(Layer):
    def forward(self, params, x, ctx):
        ctx.random.uniform((1,), x.dtype)
        return x, lambda dy: (dy, {})


def test_a_draw_that_is_not_one_row_per_sample_is_refused_with_the_way_out():
    backend = pn.get_backend("numpy")
    model = pn.Model([DrawsOneNumber(), pn.Dense(36, 3)], backend=backend, dtype="float64")
    X, y = (backend.asarray(a) for a in data(64))
    ctx = model.trainer.training_context(backend.xp, RandomStream(backend, 0))
    with pytest.raises(ConfigError, match=r"shape \(1,\).*limit_threads\(1\)"):
        model.trainer.train_step(model.state, X, y, ctx=ctx, shards=ShardPlan(2))


def blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_plan_only_for_numpy_cnns_without_sample_weights_and_with_threads():
    """The measured rule: NumPy, a convolution, no sample weights, two or more BLAS
    threads (limit_threads(1) turns sharding off)."""
    numpy_ops = pn.get_backend("numpy").ops
    cnn = pn.Model(cnn_layers(), backend="numpy").trainer
    mlp = pn.Model(pn.mlp([36, 8, 3]), backend="numpy").trainer
    assert plan_for(mlp, numpy_ops) is None
    assert plan_for(cnn, numpy_ops, sample_weight=np.ones(3)) is None
    torch = pytest.importorskip("torch")
    assert torch is not None and plan_for(cnn, pn.get_backend("torch").ops) is None
    undo = pn.limit_threads(1)
    try:
        assert plan_for(cnn, numpy_ops) is None
    finally:
        undo()
    undo = pn.limit_threads(2)
    try:
        plan = plan_for(cnn, numpy_ops)
        if shards._usable_cores() < 2:
            assert plan is None
        else:
            assert plan is not None and plan.n_shards == 2
    finally:
        undo()


def test_fit_shards_a_numpy_cnn_with_the_blas_on_one_thread_and_restores_it():
    """Model.fit takes the sharded path by itself; the BLAS runs on one thread during
    the epoch (its workers would compete with the shards) and gets its threads back."""
    if shards._usable_cores() < 2:
        pytest.skip("one usable core: nothing is sharded")
    undo = pn.limit_threads(2)
    try:
        seen = []
        calls = []
        original = ShardPlan.loss_and_grads

        def counting(self, *args, **kwargs):
            calls.append(self.n_shards)
            seen.append(blas_threads())
            return original(self, *args, **kwargs)

        ShardPlan.loss_and_grads = counting
        try:
            model = pn.Model(cnn_layers(), backend="numpy", seed=0)
            model.fit(*data(128), epochs=1, batch_size=64, verbose=0)
        finally:
            ShardPlan.loss_and_grads = original
        assert calls == [2, 2]
        assert all(threads and set(threads) == {1} for threads in seen)
        assert set(blas_threads()) == {2}
    finally:
        undo()


def test_sharded_inference_is_the_whole_batch_inference():
    """Evaluation and prediction run row shards side by side (map_rows): the same
    outputs, with test-time flips and BatchNorm's running statistics, in float64."""
    backend = pn.get_backend("numpy")
    model = pn.Model(cnn_layers(), backend=backend, dtype="float64", seed=1, test_time_flip=True)
    model.fit(*data(128), epochs=1, batch_size=64, verbose=0)
    X = backend.asarray(data(150, seed=5)[0])
    trainer, params = model.trainer, model.state.params
    whole = trainer._inference_outputs(params, X, backend.xp)
    for n_shards in (2, 3):
        plan = ShardPlan(n_shards)
        plan.count = lambda rows, n_shards=n_shards: n_shards
        fn = lambda rows: trainer._inference_outputs(params, rows, backend.xp)  # noqa: E731
        np.testing.assert_allclose(plan.map_rows(fn, X), whole, rtol=1e-12, atol=1e-14)
    if shards._usable_cores() >= 2 and min(blas_threads(), default=1) >= 2:
        np.testing.assert_allclose(trainer.inference_outputs(params, X), whole, rtol=1e-12)
        rows_seen = []
        original = ShardPlan.map_rows

        def recording(self, fn, x):
            rows_seen.append(x.shape[0])
            return original(self, fn, x)

        ShardPlan.map_rows = recording
        try:
            model.predict(X)
        finally:
            ShardPlan.map_rows = original
        assert rows_seen == [150]


def test_trainings_in_several_threads_share_the_shard_threads():
    """Two models trained at once from two threads (as a threaded sweep would), each
    step in three shards on the pool's two threads: both finish and each equals its
    whole-batch training, so the shards of different steps never wait on each other."""
    from concurrent.futures import ThreadPoolExecutor

    whole_params, _ = train_epochs(None, epochs=1)
    plan = ShardPlan(3)
    plan.count = lambda rows: 3 if rows >= 6 else 1
    with ThreadPoolExecutor(2) as runners:
        runs = [runners.submit(train_epochs, plan, 1) for _ in range(2)]
        results = [run.result(timeout=120) for run in runs]
    for params, _ in results:
        for whole, sharded in zip(whole_params, params, strict=True):
            for key in whole:
                np.testing.assert_allclose(sharded[key], whole[key], rtol=1e-9, atol=1e-12)


def test_sharded_training_is_reproducible_to_the_bit():
    """However the threads are scheduled, shards add in shard order: two sharded runs
    from one seed agree bit for bit (what exact resume needs)."""
    first, first_sums = train_epochs(ShardPlan(2), epochs=1, dtype="float32")
    second, second_sums = train_epochs(ShardPlan(2), epochs=1, dtype="float32")
    np.testing.assert_array_equal(first_sums, second_sums)
    for a, b in zip(first, second, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
