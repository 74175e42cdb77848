"""What the backends set up for a GPU, proved without one.

- JAX on a GPU device: ``jax_default_matmul_precision`` "highest" (read back from
  ``jax.config``), a user's own choice kept, the CPU left alone, and JAX's 75 %
  preallocation turned off before JAX is imported;
- CuPy given another GPU library's array: a counted copy, not an alias, unless
  ``zero_copy=True`` (on the emulated CuPy, which aliases such arrays as CuPy does);
- what :mod:`benchmarks.gpu_precision` reports each library to use for float32
  products, read from the installed torch and from ``CUPY_TF32``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import portnet as pn
from benchmarks import gpu_precision
from portnet.testing import emulated_cupy


@dataclasses.dataclass(frozen=True)
class FakeJaxGpu:
    """Stands in for a JAX GPU device where only the backend's bookkeeping needs one."""

    id: int = 0
    platform: str = "gpu"


@pytest.fixture
def jax_config():
    """JAX's module, its matmul precision restored after the test."""
    jax = pytest.importorskip("jax")
    saved = jax.config.jax_default_matmul_precision
    yield jax
    jax.config.update("jax_default_matmul_precision", saved)


def _fake_gpu_devices(jax, monkeypatch):
    real = jax.devices

    def devices(kind=None):
        return [FakeJaxGpu()] if kind == "gpu" else real(kind)

    monkeypatch.setattr(jax, "devices", devices)


def test_jax_on_a_gpu_computes_float32_products_in_full_float32(jax_config, monkeypatch):
    jax_config.config.update("jax_default_matmul_precision", None)  # JAX's own default
    _fake_gpu_devices(jax_config, monkeypatch)
    backend = pn.get_backend("jax", "cuda")
    assert backend.device_name == "cuda:0"
    assert jax_config.config.jax_default_matmul_precision == "highest"


def test_jax_keeps_a_precision_the_user_chose(jax_config, monkeypatch):
    jax_config.config.update("jax_default_matmul_precision", "tensorfloat32")
    _fake_gpu_devices(jax_config, monkeypatch)
    pn.get_backend("jax", "cuda")
    assert jax_config.config.jax_default_matmul_precision == "tensorfloat32"


def test_jax_on_the_cpu_leaves_the_precision_alone(jax_config):
    jax_config.config.update("jax_default_matmul_precision", None)
    pn.get_backend("jax", "cpu")
    assert jax_config.config.jax_default_matmul_precision is None


def test_jax_preallocation_is_off_unless_the_user_set_it(monkeypatch):
    pytest.importorskip("jax")
    from portnet.backends import jax_backend

    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    jax_backend._import()
    import os

    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    jax_backend._import()
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"


class ForeignGpuArray:
    """Another library's GPU array as CuPy sees it: ``__cuda_array_interface__`` over
    memory that CuPy's ``asarray`` would wrap (the emulated CuPy wraps ``__array__``'s
    buffer without a copy, as real CuPy wraps the interface's pointer)."""

    def __init__(self, values):
        self.buffer = np.array(values, dtype=np.float32)

    @property
    def __cuda_array_interface__(self):
        return {
            "shape": self.buffer.shape,
            "typestr": self.buffer.dtype.str,
            "data": (self.buffer.ctypes.data, False),
            "version": 3,
        }

    def __array__(self, dtype=None, copy=None):
        # NumPy 2 passes copy=True to an __array__ that takes it and trusts it to copy.
        return self.buffer.copy() if copy else self.buffer


def test_cupy_copies_another_gpu_librarys_array_and_counts_it():
    foreign = ForeignGpuArray([1.0, 2.0, 3.0])
    with emulated_cupy():
        backend = pn.get_backend("cupy")
        with pn.count_transfers() as count:
            mine = backend.asarray(foreign)
        mine[0] = 100.0  # an in-place update, as portnet's optimizers make
        assert backend.to_numpy(mine).tolist() == [100.0, 2.0, 3.0]
    assert foreign.buffer.tolist() == [1.0, 2.0, 3.0], "the caller's array changed"
    assert (count.between_libraries, count.to_device, count.total) == (1, 0, 1)


def test_cupy_aliases_another_gpu_librarys_array_when_asked():
    foreign = ForeignGpuArray([1.0, 2.0, 3.0])
    with emulated_cupy():
        backend = pn.get_backend("cupy")
        with pn.count_transfers() as count:
            shared = backend.asarray(foreign, zero_copy=True)
        shared[0] = 100.0
    assert foreign.buffer.tolist() == [100.0, 2.0, 3.0]
    assert count.total == 0


def test_cupy_casts_the_copy_and_leaves_host_data_to_the_upload_path():
    foreign = ForeignGpuArray([1.5, 2.5])
    with emulated_cupy():
        backend = pn.get_backend("cupy")
        with pn.count_transfers() as count:
            copied = backend.asarray(foreign, dtype="float64")
            uploaded = backend.asarray(np.ones(2, dtype=np.float32))
        assert copied.dtype == np.float64 and uploaded.dtype == np.float32
    assert (count.between_libraries, count.to_device) == (1, 1)


def test_precision_report_reads_torchs_flags():
    torch = pytest.importorskip("torch")
    facts = gpu_precision.torch_precision(torch)
    # PyTorch's documented defaults since 1.12: cuBLAS float32 matmuls without TF32,
    # cuDNN convolutions with TF32 (torch.backends.cudnn.allow_tf32 is True).
    assert facts.matmul_tf32 is False
    assert facts.conv_tf32 is True
    line = gpu_precision.describe("torch-cuda", torch=torch)
    assert "matmul float32" in line and "cuDNN convolutions TF32" in line


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "float32"), ("0", "float32"), ("1", "TF32")],
)
def test_precision_report_reads_cupy_tf32(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CUPY_TF32", raising=False)
    else:
        monkeypatch.setenv("CUPY_TF32", value)
    assert gpu_precision.cupy_matmul_precision() == expected
    assert f"matmul {expected}" in gpu_precision.describe("cupy")
