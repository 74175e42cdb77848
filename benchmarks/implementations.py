"""The implementations the epoch-time benchmark runs, all behind one small interface.

Each one is built for a (workload, batch size) on the same pre-loaded host arrays
and the same initial weights, then asked to train one epoch at a time. Setup
(moving data to a device, allocating buffers) happens in the constructor and is
never timed; :meth:`Implementation.run_epoch` is the timed work and ends with a
host read of the epoch's loss, as ``Model.fit`` does.

The implementations are grouped by kind: the shared interface and data in
:mod:`benchmarks.impl_base`, portnet's in :mod:`benchmarks.impl_portnet`, native
PyTorch in :mod:`benchmarks.impl_torch`, and scikit-learn, the NumPy references and
the matrix-product floor in :mod:`benchmarks.impl_baselines`. This module holds the
registry :data:`IMPLEMENTATIONS` and re-exports the names other modules import from it.
"""

from __future__ import annotations

from .impl_base import LR, MOMENTUM, BenchData, DenseOnlyImplementation, Implementation
from .impl_baselines import GemmOnly, NumpyCareful, NumpyNaive, SklearnMLP
from .impl_portnet import (
    PortnetCupy,
    PortnetImplementation,
    PortnetJax,
    PortnetJaxCuda,
    PortnetJaxJit,
    PortnetJaxJitCuda,
    PortnetNumpy,
    PortnetStrict,
    PortnetTorch,
    PortnetTorchCuda,
    build_portnet_model,
)
from .impl_torch import TorchNative, TorchNativeCuda, build_torch_network

__all__ = [
    "IMPLEMENTATIONS",
    "LR",
    "MOMENTUM",
    "BenchData",
    "DenseOnlyImplementation",
    "GemmOnly",
    "Implementation",
    "NumpyCareful",
    "NumpyNaive",
    "PortnetCupy",
    "PortnetImplementation",
    "PortnetJax",
    "PortnetJaxCuda",
    "PortnetJaxJit",
    "PortnetJaxJitCuda",
    "PortnetNumpy",
    "PortnetStrict",
    "PortnetTorch",
    "PortnetTorchCuda",
    "SklearnMLP",
    "TorchNative",
    "TorchNativeCuda",
    "build_portnet_model",
    "build_torch_network",
]

IMPLEMENTATIONS: dict[str, type[Implementation]] = {
    cls.name: cls
    for cls in (
        PortnetNumpy,
        PortnetTorch,
        PortnetStrict,
        PortnetCupy,
        PortnetTorchCuda,
        PortnetJax,
        PortnetJaxJit,
        PortnetJaxCuda,
        PortnetJaxJitCuda,
        TorchNative,
        TorchNativeCuda,
        SklearnMLP,
        NumpyNaive,
        NumpyCareful,
        GemmOnly,
    )
}
