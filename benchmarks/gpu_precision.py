"""What each GPU library uses for float32 matrix products and convolutions.

portnet's GPU tests compare float32 results with NumPy's to a relative 1e-4, and
BatchNorm's statistics and the convolutions' bias gradients are sums taken by a
matrix product. TensorFloat-32 (TF32: float32's range with 10 mantissa bits, on
NVIDIA GPUs from Ampere on) breaks both, so :mod:`benchmarks.gpu_check` reports,
from the running process, what each library does:

- **CuPy**: float32 unless the environment variable ``CUPY_TF32`` is above 0
  (CuPy's ``get_compute_type`` in ``cupy/_core/_routines_linalg.pyx`` reads
  ``os.getenv('CUPY_TF32', '0')``).
- **PyTorch**: cuBLAS matrix products without TF32
  (``torch.backends.cuda.matmul.allow_tf32`` is False since PyTorch 1.12), cuDNN
  convolutions with TF32 (``torch.backends.cudnn.allow_tf32`` is True). portnet's
  layers are matrix products, so only the native-torch baseline of the benchmarks
  (``nn.Conv2d``) runs cuDNN convolutions in TF32.
- **JAX**: its "DEFAULT" precision uses TF32 on such GPUs; portnet's JAX backend
  sets ``jax_default_matmul_precision`` to "highest" when it loads a GPU device
  (see :mod:`portnet.backends.jax_backend`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from typing import Any

#: Precisions under which JAX computes float32 products in float32.
JAX_FULL_FLOAT32 = ("highest", "float32", "F32_F32_F32")


@dataclasses.dataclass
class TorchPrecision:
    """torch's TF32 switches as the running process has them."""

    matmul_tf32: bool
    conv_tf32: bool


def torch_precision(torch: Any) -> TorchPrecision:
    """Read the effective TF32 switches of cuBLAS matmuls and cuDNN convolutions."""
    with warnings.catch_warnings():
        # Newer PyTorch steers users to the fp32_precision settings; the old flags still
        # report the effective value, which is what the report needs.
        warnings.simplefilter("ignore")
        return TorchPrecision(
            matmul_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
            conv_tf32=bool(torch.backends.cudnn.allow_tf32),
        )


def cupy_matmul_precision() -> str:
    """``"TF32"`` when ``CUPY_TF32`` asks for it, else ``"float32"`` (as CuPy decides)."""
    try:
        return "TF32" if int(os.environ.get("CUPY_TF32", "0")) > 0 else "float32"
    except ValueError:  # CuPy itself would fail on a non-integer value
        return f"unknown (CUPY_TF32={os.environ['CUPY_TF32']!r} is not an integer)"


def jax_matmul_precision(jax: Any) -> str:
    """JAX's default matmul precision as configured now ("default" when unset)."""
    value = jax.config.jax_default_matmul_precision
    return "default" if value is None else str(value)


def describe(label: str, *, torch: Any = None, jax: Any = None) -> str:
    """One line: what ``label`` (cupy, torch-cuda, jax-cuda) uses for float32 products.

    torch and JAX are taken from ``sys.modules`` when not given (they are imported
    by their backends before this is asked).
    """
    if label == "cupy":
        value = cupy_matmul_precision()
        setting = os.environ.get("CUPY_TF32")
        shown = "unset" if setting is None else f"={setting}"
        return f"cupy: matmul {value} (CUPY_TF32 {shown}; CuPy uses TF32 only when it is above 0)"
    if label.startswith("torch"):
        torch = torch or sys.modules["torch"]
        facts = torch_precision(torch)
        return (
            f"{label}: matmul {'TF32' if facts.matmul_tf32 else 'float32'} "
            f"(torch.backends.cuda.matmul.allow_tf32 {facts.matmul_tf32}); cuDNN convolutions "
            f"{'TF32' if facts.conv_tf32 else 'float32'} (torch.backends.cudnn.allow_tf32 "
            f"{facts.conv_tf32}): only native torch's nn.Conv2d in the benchmarks uses cuDNN, "
            "portnet's convolutions are matrix products"
        )
    if label.startswith("jax"):
        jax = jax or sys.modules["jax"]
        value = jax_matmul_precision(jax)
        return f"{label}: matmul precision {value!r} (jax_default_matmul_precision)"
    raise ValueError(f"no precision rule for {label!r}")


def tolerance_warning(label: str, *, torch: Any = None, jax: Any = None) -> str | None:
    """Why ``label``'s float32 results may miss the tests' tolerances, or None."""
    if label == "cupy" and cupy_matmul_precision() != "float32":
        return "cupy runs float32 matmuls in TF32 (CUPY_TF32); the GPU tests assume float32"
    if label.startswith("torch") and torch_precision(torch or sys.modules["torch"]).matmul_tf32:
        return f"{label} runs float32 matmuls in TF32 (allow_tf32); the GPU tests assume float32"
    if label.startswith("jax"):
        value = jax_matmul_precision(jax or sys.modules["jax"])
        if value not in JAX_FULL_FLOAT32:
            return (
                f"{label} runs float32 matmuls at precision {value!r}; the GPU tests assume "
                "'highest' (unset JAX_DEFAULT_MATMUL_PRECISION)"
            )
    return None
