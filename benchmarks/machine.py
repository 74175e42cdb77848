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
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "PORTNET_EMULATED_ISA",
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
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
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
    """Every GPU the driver has, in nvidia-smi's (PCI) order and numbering."""
    fields = "index,uuid,name,driver_version,memory.total"
    try:
        proc = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in proc.stdout.strip().splitlines() if proc.returncode == 0 else []:
        try:
            index, uuid, name, driver, memory = (part.strip() for part in line.split(",", 4))
            row = {"index": int(index), "uuid": uuid, "name": name, "driver": driver}
            gpus.append({**row, "memory": memory})
        except ValueError:  # a warning line or an unexpected format: not a GPU row
            continue
    return gpus


def _uuid_key(uuid: Any) -> str:
    """A GPU UUID as nvidia-smi, torch and CuPy spell it, reduced to bare lowercase hex."""
    if isinstance(uuid, bytes | bytearray) and len(uuid) == 16:
        uuid = uuid.hex()
    text = uuid.decode() if isinstance(uuid, bytes | bytearray) else str(uuid)
    return text.lower().removeprefix("gpu-").replace("-", "")


def _visible_order(gpus: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """nvidia-smi's GPUs in the order ``CUDA_VISIBLE_DEVICES`` gives CUDA, or None.

    nvidia-smi ignores the variable, so its index 2 is ``cuda:0`` under
    ``CUDA_VISIBLE_DEVICES=2``. Entries are indices or UUID prefixes; CUDA stops at
    the first entry that names no GPU. None when the variable is unset.
    """
    setting = os.environ.get("CUDA_VISIBLE_DEVICES")
    if setting is None:
        return None
    visible = []
    for token in (t.strip() for t in setting.split(",")):
        if token.isdigit():
            match = [g for g in gpus if g["index"] == int(token)]
        else:
            key = _uuid_key(token)
            match = [g for g in gpus if key and _uuid_key(g.get("uuid", "")).startswith(key)]
        if len(match) != 1:
            break
        visible.append(match[0])
    return visible


def _library_gpus() -> list[dict[str, Any]]:
    """The GPUs CuPy and torch see (already imported ones only), by CUDA's numbering."""
    seen: dict[int, dict[str, Any]] = {}
    cupy = sys.modules.get("cupy")
    if cupy is not None and not str(getattr(cupy, "__version__", "")).endswith("+emulated"):
        try:
            runtime = cupy.cuda.runtime
            for i in range(runtime.getDeviceCount()):
                props = runtime.getDeviceProperties(i)
                name = props["name"]
                gpu = seen.setdefault(i, {"index": i, "source": "cupy"})
                gpu["name"] = name.decode() if isinstance(name, bytes) else name
                if props.get("uuid"):
                    gpu["uuid"] = props["uuid"]
                gpu["driver"] = _cuda_version(runtime.driverGetVersion())
                gpu["cuda_runtime"] = f"{_cuda_version(runtime.runtimeGetVersion())} (CuPy)"
        except Exception as exc:  # a broken CUDA install must not sink the benchmark
            seen.setdefault(-1, {"index": -1, "source": "cupy", "error": str(exc)})
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            gpu = seen.setdefault(i, {"index": i, "source": "torch"})
            gpu.setdefault("name", torch.cuda.get_device_name(i))
            uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
            if uuid is not None:
                gpu.setdefault("uuid", str(uuid))
            runtime = f"{torch.version.cuda} (torch)"
            gpu["cuda_runtime"] = ", ".join(filter(None, [gpu.get("cuda_runtime"), runtime]))
    return [seen[i] for i in sorted(seen)]


def _cuda_version(code: int) -> str:
    """CUDA's integer version (12080) as text (12.8)."""
    return f"{code // 1000}.{code % 1000 // 10}"


def gpu_info() -> list[dict[str, Any]]:
    """The NVIDIA GPUs: name, driver and CUDA runtime, from nvidia-smi, CuPy and torch.

    Numbered as CUDA numbers them (``index``: ``cuda:<index>``); ``physical_index``
    is nvidia-smi's number where it differs. A GPU that CuPy or torch sees is matched
    to nvidia-smi's row by UUID, else through ``CUDA_VISIBLE_DEVICES``; without
    either library, nvidia-smi's rows are renumbered through that variable. Only
    libraries already imported are asked (importing CuPy to find out would slow every
    CPU run); nvidia-smi is asked always. Empty on a machine without a GPU.
    """
    smi = _nvidia_smi()
    visible = _visible_order(smi)
    in_cuda_order = smi if visible is None else visible
    by_uuid = {_uuid_key(g["uuid"]): g for g in smi if g.get("uuid")}
    libraries = _library_gpus()
    if not [g for g in libraries if g["index"] >= 0]:
        # No library to ask: nvidia-smi's rows in CUDA's order, renumbered from 0.
        rows = [
            {**g, "index": i, "physical_index": g["index"], "source": "nvidia-smi"}
            for i, g in enumerate(in_cuda_order)
        ]
        return _with_physical(rows) + libraries
    gpus = []
    for gpu in libraries:
        row = by_uuid.get(_uuid_key(gpu.get("uuid", ""))) if gpu.get("uuid") else None
        if row is None and 0 <= gpu["index"] < len(in_cuda_order):
            row = in_cuda_order[gpu["index"]]
        merged = {**(row or {}), **{k: v for k, v in gpu.items() if k != "driver"}}
        merged["driver"] = (row or gpu).get("driver")
        merged["index"] = gpu["index"]
        merged["physical_index"] = row["index"] if row else None
        gpus.append(merged)
    return _with_physical(gpus)


def _with_physical(gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep ``physical_index`` only where it differs from CUDA's ``index``."""
    out = []
    for gpu in gpus:
        physical = gpu.pop("physical_index", None)
        if physical is not None and physical != gpu["index"]:
            gpu["physical_index"] = physical
        out.append(gpu)
    return out


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
