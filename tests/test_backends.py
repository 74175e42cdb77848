"""Choosing a backend: names, environment variables, clear errors, no silent fallback."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import assert_on_backend

import portnet as pn
from portnet.errors import BackendError, DeviceMismatchError


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
    assert set(status) == {"numpy", "torch", "cupy", "array_api_strict"}
    assert status["numpy"] == "ok (cpu)"
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
