"""Names of the backend test matrix that tests use too: the emulated CuPy case and
the GPU cases, with their `gpu` marker."""

from __future__ import annotations

import pytest

EMULATED = "cupy-emulated"
# What each GPU case needs; checked before a `gpu` test sets anything up.
GPU_CASES = {
    "cupy": ("cupy", "cuda:0"),
    "torch-cuda": ("torch", "cuda"),
    "jax-cuda": ("jax", "cuda"),
}


def gpu_marks(case_id):
    """The `gpu` marker (naming the library it needs) for a GPU case id, else none."""
    return [pytest.mark.gpu(case_id)] if case_id in GPU_CASES else []
