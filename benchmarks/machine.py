"""What the timings depend on: CPU, threads, BLAS, library versions, environment."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
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


def _nvidia_smi() -> list[dict[str, Any]]:
    try:
        proc = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=index,name,driver_version,memory.total",
                "--format=csv,noheader",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in proc.stdout.strip().splitlines() if proc.returncode == 0 else []:
        index, name, driver, memory = (part.strip() for part in line.split(",", 3))
        gpus.append({"index": int(index), "name": name, "driver": driver, "memory": memory})
    return gpus


def _cuda_version(code: int) -> str:
    """CUDA's integer version (12080) as text (12.8)."""
    return f"{code // 1000}.{code % 1000 // 10}"


def gpu_info() -> list[dict[str, Any]]:
    """The NVIDIA GPUs: name, driver and CUDA runtime, from nvidia-smi, CuPy and torch.

    Only libraries already imported are asked (importing CuPy to find out would slow
    every CPU run); nvidia-smi is asked always. Empty on a machine without a GPU.
    """
    gpus = {gpu["index"]: {**gpu, "source": "nvidia-smi"} for gpu in _nvidia_smi()}
    cupy = sys.modules.get("cupy")
    if cupy is not None and not str(getattr(cupy, "__version__", "")).endswith("+emulated"):
        try:
            runtime = cupy.cuda.runtime
            for i in range(runtime.getDeviceCount()):
                name = runtime.getDeviceProperties(i)["name"]
                gpu = gpus.setdefault(i, {"index": i, "source": "cupy"})
                gpu.setdefault("name", name.decode() if isinstance(name, bytes) else name)
                gpu.setdefault("driver", _cuda_version(runtime.driverGetVersion()))
                gpu["cuda_runtime"] = f"{_cuda_version(runtime.runtimeGetVersion())} (CuPy)"
        except Exception as exc:  # a broken CUDA install must not sink the benchmark
            gpus.setdefault(-1, {"index": -1, "source": "cupy", "error": str(exc)})
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            gpu = gpus.setdefault(i, {"index": i, "source": "torch"})
            gpu.setdefault("name", torch.cuda.get_device_name(i))
            runtime = f"{torch.version.cuda} (torch)"
            gpu["cuda_runtime"] = ", ".join(filter(None, [gpu.get("cuda_runtime"), runtime]))
    return [gpus[i] for i in sorted(gpus)]


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
        "gpus": gpu_info(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "scheduling": _scheduling(),
    }
