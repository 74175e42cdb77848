"""Time as a CPU with fewer vector instructions: an AVX2 machine on an AVX-512 one.

OpenBLAS, PyTorch's ATen, oneDNN and MKL each pick their kernels for the CPU when
they load; each also takes a variable that caps the instruction set. Set before
any of them is imported, they make an AVX-512 machine run the AVX2 kernels that
most laptops and the project's AVX2 EPYCs run:

================================  ==================  ===========================
library                           variable            value for AVX2
================================  ==================  ===========================
OpenBLAS (NumPy's BLAS)           OPENBLAS_CORETYPE   Haswell
PyTorch's own CPU kernels (ATen)  ATEN_CPU_CAPABILITY avx2
oneDNN (torch's convolutions)     ONEDNN_MAX_CPU_ISA  AVX2
MKL                               MKL_ENABLE_INSTRUCTIONS  AVX2
================================  ==================  ===========================

Only ever downwards: a CPU without AVX2 is refused. PyTorch echoes
``ATEN_CPU_CAPABILITY`` even where the CPU lacks the instructions, and its next
operation then crashes. Runs made this way are labelled "emulated" in their
report, and the machine record keeps the CPU's own flags and the kernels in use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from portnet.errors import ConfigError

#: The variables that cap each library at an instruction set, by instruction set.
ISA_ENVIRONMENTS: dict[str, dict[str, str]] = {
    "avx2": {
        "OPENBLAS_CORETYPE": "Haswell",
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
}
#: The CPU flags (``/proc/cpuinfo``) each instruction set needs.
REQUIRED_FLAGS = {"avx2": ("avx2", "fma")}
#: Set in the re-executed process: which instruction set it emulates.
MARKER = "PORTNET_EMULATED_ISA"


def add_emulation_argument(parser) -> None:
    """``--emulate-isa avx2`` for a benchmark's command line."""
    parser.add_argument(
        "--emulate-isa",
        choices=sorted(ISA_ENVIRONMENTS),
        help="time as a CPU with only these vector instructions: the process restarts with "
        "OpenBLAS, ATen, oneDNN and MKL capped (OPENBLAS_CORETYPE=Haswell, "
        "ATEN_CPU_CAPABILITY=avx2, ...), only ever downwards; the report says 'emulated'",
    )


def cpu_flags() -> set[str]:
    """The CPU's flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def emulation_environment(isa: str, flags: Iterable[str]) -> dict[str, str]:
    """The variables that make the libraries run ``isa``'s kernels on a CPU with
    ``flags``; :class:`ConfigError` where that would be an upgrade, not a limit."""
    if isa not in ISA_ENVIRONMENTS:
        raise ConfigError(f"unknown instruction set {isa!r}; choose {', '.join(ISA_ENVIRONMENTS)}")
    missing = [flag for flag in REQUIRED_FLAGS[isa] if flag not in set(flags)]
    if missing:
        raise ConfigError(
            f"this CPU lacks {', '.join(missing)}, so it cannot run {isa.upper()} kernels: "
            f"--emulate-isa only ever limits downwards; drop it here"
        )
    return {**ISA_ENVIRONMENTS[isa], MARKER: isa}


def emulated_isa() -> str | None:
    """The instruction set this process emulates, or None."""
    return os.environ.get(MARKER) or None


def restart_emulating(isa: str | None, module: str, argv: list[str] | None) -> None:
    """Re-run ``python -m module argv`` (``argv`` None: this process's arguments) with
    ``isa``'s variables set, unless this process already emulates it (the libraries
    read them only when they load)."""
    if isa is None or emulated_isa() == isa:
        return
    if emulated_isa() is not None:
        raise ConfigError(f"this process already emulates {emulated_isa()}, not {isa}")
    env = {**os.environ, **emulation_environment(isa, cpu_flags())}
    argv = sys.argv[1:] if argv is None else list(argv)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


def title(isa: str | None = None) -> str:
    """``"emulated AVX2"``, or ``""`` without emulation: for headings and plot titles."""
    isa = isa or emulated_isa()
    return "" if isa is None else f"emulated {isa.upper()}"


def label(isa: str | None = None) -> str:
    """``"emulated AVX2 (OPENBLAS_CORETYPE=Haswell, ...)"``, or ``""`` without emulation."""
    isa = isa or emulated_isa()
    if isa is None:
        return ""
    settings = ", ".join(f"{k}={v}" for k, v in ISA_ENVIRONMENTS[isa].items())
    return f"{title(isa)} ({settings})"
