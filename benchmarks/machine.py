"""What the timings depend on: CPU, threads, BLAS, library versions, environment."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

# Recorded, never set: they change which OpenBLAS kernels run (see the README).
_ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PORTNET_BACKEND",
    "PORTNET_DEVICE",
)

_PACKAGES = (
    "numpy",
    "torch",
    "scikit-learn",
    "array-api-compat",
    "array-api-strict",
    "portnet",
    "threadpoolctl",
    "matplotlib",
    "cupy-cuda12x",
    "cupy-cuda13x",
)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if not name.startswith("cupy"):
                versions[name] = None
    return versions


def _torch_info() -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:
        return None
    config = torch.__config__.show()
    blas = [line.strip() for line in config.splitlines() if "BLAS" in line or "LAPACK" in line]
    return {
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "mkl": bool(torch.backends.mkl.is_available()),
        "blas_config": blas,
        "cuda_available": bool(torch.cuda.is_available()),
    }


def _threadpools() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl is not installed"}]
    keys = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info()]


def _scheduling() -> dict[str, Any]:
    """This process's nice value and, on Linux, its autogroup.

    With ``kernel.sched_autogroup_enabled``, CPU time is shared between sessions
    first, so other people's jobs compete with the benchmark whatever their own nice
    value: record what the run had.
    """
    info: dict[str, Any] = {"nice": os.nice(0) if hasattr(os, "nice") else None}
    for key, path in (
        ("autogroup", "/proc/self/autogroup"),
        ("autogroup_enabled", "/proc/sys/kernel/sched_autogroup_enabled"),
    ):
        try:
            info[key] = Path(path).read_text().strip()
        except OSError:
            info[key] = None
    return info


def machine_info() -> dict[str, Any]:
    """Everything recorded about the machine and software, as a JSON-ready dict.

    Call it after the libraries under test are imported, so that threadpoolctl
    sees every BLAS and OpenMP runtime they loaded.
    """
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": _versions(),
        "environment": {name: os.environ.get(name) for name in _ENV_VARS},
        "threadpools": _threadpools(),
        "torch": _torch_info(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "scheduling": _scheduling(),
    }
