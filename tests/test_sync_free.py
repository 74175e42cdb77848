"""A training step with no host sync and no scalar upload, proven without a GPU.

Two instruments see what the CPU matrix cannot:

* the emulated CuPy (``portnet.testing.emulated_cupy``): array-api-compat's real
  CuPy wrappers over NumPy, where a hidden sync (boolean-mask indexing,
  ``bool()``, ``float()``) raises, and uploads and kernels are counted;
* PyTorch's dispatcher, where ``_local_scalar_dense``, ``nonzero`` and
  ``lift_fresh`` are what a CUDA run would wait for.

Every option of ``portnet.testing.options`` trains, evaluates and predicts under
both, and its counts must not grow with the number of steps.
"""

from __future__ import annotations

import numpy as np
import pytest

import portnet as pn
from portnet.testing import emulated_cupy
from portnet.testing.audit import audit_emulated_cupy, audit_torch
from portnet.testing.options import OPTIONS

OPTION_PARAMS = [pytest.param(option, id=option.name) for option in OPTIONS]


def _train_evaluate_predict(option, backend):
    X, y = option.data()
    model = option.build(backend)
    history = model.fit(
        X, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0, **option.fit_kwargs
    )
    outputs = {
        "train_loss": np.array(history.history["train_loss"]),
        "val_loss": np.array(history.history["val_loss"]),
        "evaluate": np.array(list(model.evaluate(X, y).values())),
        "predict": backend.to_numpy(model.predict(X)),
    }
    if option.classifies:
        outputs["predict_proba"] = backend.to_numpy(model.predict_proba(X))
    return outputs


@pytest.mark.parametrize("option", OPTION_PARAMS)
def test_every_option_runs_on_emulated_cupy_as_on_numpy(option):
    """fit, evaluate, predict on CuPy's own path: no hidden sync, the same numbers."""
    with emulated_cupy():
        on_cupy = _train_evaluate_predict(option, pn.get_backend("cupy"))
    on_numpy = _train_evaluate_predict(option, pn.get_backend("numpy"))
    assert np.all(np.isfinite(on_cupy["train_loss"]))
    for key, expected in on_numpy.items():
        np.testing.assert_allclose(on_cupy[key], expected, rtol=1e-5, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("option", OPTION_PARAMS)
def test_emulated_cupy_steps_upload_and_download_nothing(option):
    audit = audit_emulated_cupy(option)
    assert audit.worst_step["uploads"] == 0, audit
    assert audit.worst_step["downloads"] == 0, audit
    assert audit.per_step["kernels"] > 0  # the instrument saw the step
    assert audit.worst_step == audit.per_step  # every step costs the same


@pytest.mark.parametrize("option", OPTION_PARAMS)
def test_torch_steps_have_no_sync_and_no_scalar_upload(option):
    pytest.importorskip("torch")
    audit = audit_torch(option)
    waits = ("_local_scalar_dense", "nonzero", "lift_fresh", "lift_fresh_copy")
    assert {k: audit.worst_step[k] for k in waits} == dict.fromkeys(waits, 0), audit.ops
    assert audit.per_step["kernels"] > 0
    assert audit.worst_step == audit.per_step
