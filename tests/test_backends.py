"""Choosing a backend: names, environment variables, clear errors, no silent fallback."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers.arrays import assert_on_backend

import portnet as pn
from portnet.errors import BackendError, DeviceMismatchError
from portnet.testing import emulated_cupy


def test_default_is_numpy_and_env_is_read_at_call_time(monkeypatch):
    monkeypatch.delenv("PORTNET_BACKEND", raising=False)
    monkeypatch.delenv("PORTNET_DEVICE", raising=False)
    assert pn.get_backend().name == "numpy"
    monkeypatch.setenv("PORTNET_BACKEND", "array_api_strict")
    monkeypatch.setenv("PORTNET_DEVICE", "device1")
    backend = pn.get_backend()
    assert backend.name == "array_api_strict" and backend.device_name == "device1"
    # An explicit argument beats the environment.
    assert pn.get_backend("numpy").name == "numpy"


def test_unknown_backend_lists_known_ones():
    with pytest.raises(BackendError) as info:
        pn.get_backend("tensorflow")
    message = str(info.value)
    assert "tensorflow" in message
    for name in ("numpy", "torch", "cupy", "array_api_strict"):
        assert name in message


def test_cupy_without_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    with pytest.raises(BackendError) as info:
        pn.get_backend("cupy")
    assert 'pip install "portnet[cuda12]"' in str(info.value)


def test_cupy_without_gpu_says_what_to_check(monkeypatch):
    import types

    class NoDriver(Exception):
        pass

    def no_devices():
        raise NoDriver("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_devices))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendError) as info:
        pn.get_backend("cupy")
    assert "no usable CUDA GPU" in str(info.value) and "nvidia-smi" in str(info.value)


def test_strict_unknown_device_is_refused():
    with pytest.raises(BackendError, match="device1"):
        pn.get_backend("array_api_strict", "device9")


def test_available_backends_reports_every_backend():
    status = pn.available_backends()
    assert set(status) == {"numpy", "torch", "cupy", "array_api_strict", "jax"}
    assert status["numpy"] == "ok (cpu)"
    assert status["jax"] == "ok (cpu)" or "pip install" in status["jax"]
    assert status["array_api_strict"].startswith("ok")


def test_asarray_and_to_numpy_round_trip(backend):
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    with pn.count_transfers() as count:
        dev = backend.asarray(host)
        back = backend.to_numpy(dev)
    assert_on_backend(dev, backend, "float32", (3, 4))
    np.testing.assert_array_equal(back, host)
    assert (count.to_device, count.to_host) == (1, 1)
    assert pn.backend_of(dev) == backend


def test_numpy_data_in_a_device1_model_is_refused():
    backend = pn.get_backend("array_api_strict", "device1")
    model = pn.Model(pn.mlp([4, 3, 2]), backend=backend)
    x = np.ones((2, 4), dtype=np.float32)
    ctx = pn.Context(xp=backend.xp)
    with pytest.raises(DeviceMismatchError, match="different array libraries"):
        model.network.forward(model.params, x, ctx)


def test_two_devices_are_refused():
    device1 = pn.get_backend("array_api_strict", "device1")
    device2 = pn.get_backend("array_api_strict", "device2")
    model = pn.Model(pn.mlp([4, 3, 2]), backend=device1)
    x2 = device2.asarray(np.ones((5, 4), dtype=np.float32))
    with pytest.raises(DeviceMismatchError, match="different devices"):
        model.network.forward(model.params, x2, pn.Context(xp=device1.xp))
    with pytest.raises(DeviceMismatchError, match="not on the model's backend"):
        model.fit(x2, device2.asarray(np.zeros(5, dtype=np.int64)), epochs=1, verbose=0)


def test_no_float64_device_keeps_float32(backend):
    if backend.device_name != "no_float64":
        pytest.skip("only the no_float64 device refuses float64")
    model = pn.Model(pn.mlp([4, 8, 3]), backend=backend)
    X = np.random.default_rng(0).normal(size=(20, 4))  # float64 host data
    model.fit(X, np.arange(20) % 3, epochs=1, verbose=0)
    for layer in model.params:
        for value in layer.values():
            assert value.dtype == backend.xp.float32


@pytest.mark.parametrize("case", ["numpy", "torch"])
def test_inplace_backends_say_so(case):
    if case == "torch":
        pytest.importorskip("torch")
    assert pn.get_backend(case).inplace
    assert not pn.get_backend("array_api_strict").inplace


def test_cupy_installed_but_broken_quotes_the_original_error(monkeypatch):
    from portnet.backends import cupy_backend

    def broken():
        raise ImportError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setattr(cupy_backend, "_import_cupy", broken)
    monkeypatch.setattr(cupy_backend, "cupy_distributions", lambda: ("cupy-cuda12x",))
    with pytest.raises(BackendError) as info:
        pn.get_backend("cupy")
    message = str(info.value)
    assert "cupy-cuda12x is installed but failed to import" in message
    assert "libcudart.so.12: cannot open shared object file" in message
    assert "not installed" not in message


def test_two_cupy_wheels_are_named_with_the_fix(monkeypatch):
    from portnet.backends import cupy_backend

    wheels = ("cupy-cuda12x", "cupy-cuda13x")
    monkeypatch.setattr(cupy_backend, "cupy_distributions", lambda: wheels)
    with pytest.raises(BackendError) as info:
        pn.get_backend("cupy")
    assert "pip uninstall -y cupy-cuda12x cupy-cuda13x" in str(info.value)


def test_missing_cuda_libraries_fail_at_load_not_mid_training(monkeypatch):
    from portnet.backends import cupy_backend

    monkeypatch.setattr(cupy_backend, "_working_devices", set())
    with emulated_cupy() as cupy:
        cupy.break_kernels(RuntimeError("CuPy failed to load libnvrtc.so.12"))
        with pytest.raises(BackendError) as info:
            pn.get_backend("cupy", "cuda:0")
        cupy.break_kernels(None)
        assert pn.get_backend("cupy", "cuda:0").device_name == "cuda:0"
    message = str(info.value)
    assert "libnvrtc.so.12" in message and "NVRTC" in message
    assert 'pip install "portnet[cuda12]"' in message


def test_cupy_device_beyond_the_gpus_is_refused():
    with emulated_cupy(n_devices=2), pytest.raises(BackendError, match="sees 2 GPU"):
        pn.get_backend("cupy", "cuda:2")


def _fake_cuda(monkeypatch, count, current):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    return torch


def test_torch_cuda_names_the_current_index(monkeypatch):
    torch = _fake_cuda(monkeypatch, count=2, current=1)
    backend = pn.get_backend("torch", "cuda")
    # Tensors always report an index; the backend's device must equal theirs.
    assert backend.device == torch.device("cuda", 1) and backend.device_name == "cuda:1"
    assert pn.get_backend("torch", "cuda:0").device_name == "cuda:0"


def test_torch_cuda_index_beyond_the_gpus_is_refused(monkeypatch):
    _fake_cuda(monkeypatch, count=2, current=0)
    with pytest.raises(BackendError, match="sees 2 CUDA GPU"):
        pn.get_backend("torch", "cuda:2")


def test_a_model_on_cuda_1_keeps_all_its_work_on_cuda_1(tmp_path):
    """The emulated CuPy refuses any operation whose arrays are not on the current
    device, as CuPy does without peer access; every Model method must enter cuda:1."""
    from helpers.arrays import synthetic_classification

    X, y = synthetic_classification(n=120, n_features=20, n_classes=3)
    with emulated_cupy(n_devices=2):
        backend = pn.get_backend("cupy", "cuda:1")
        model = pn.Model(
            pn.mlp([20, 16, 3], "relu", dropout=0.2),
            optimizer=pn.Adam(1e-2, clip_norm=5.0),
            l1=1e-4,
            backend=backend,
        )
        X_dev, y_dev = backend.asarray(X), backend.asarray(y)
        model.fit(X_dev, y_dev, epochs=2, batch_size=32, validation_split=0.25, verbose=0)
        result = model.evaluate(X_dev, y_dev)
        predicted = model.predict(X_dev)
        proba = model.predict_proba(X_dev)
        for array in [predicted, proba, *(v for layer in model.params for v in layer.values())]:
            assert array.device.id == 1
        cm = pn.confusion_matrix(y_dev, predicted, 3)
        assert cm.device.id == 1
        model.save(tmp_path / "model.npz")
        again = pn.Model.load(tmp_path / "model.npz", backend=backend)
        again.set_weights(model.params)  # device arrays are accepted
        assert again.evaluate(X_dev, y_dev) == result
    assert 0.0 <= result["accuracy"] <= 1.0


def test_jax_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax now raises ImportError
    with pytest.raises(BackendError, match=r'pip install "portnet\[jax\]"'):
        pn.get_backend("jax")


def test_jax_arrays_are_never_updated_in_place():
    pytest.importorskip("jax")
    backend = pn.get_backend("jax")
    assert not backend.inplace
    model = pn.Model([pn.Dense(4, 3)], optimizer=pn.Momentum(0.1), backend=backend)
    before = model.state.params[0]["W"]
    model.fit(np.ones((8, 4)), np.zeros(8, dtype=int), epochs=1, verbose=0)
    assert model.state.params[0]["W"] is not before  # rebound, as immutable arrays must be
    assert pn.backend_of(model.state.params[0]["W"]).name == "jax"
