"""Section 2 of :mod:`benchmarks.gpu_check`: the sync check of every training option.

Every option of :mod:`portnet.testing.options` trains, evaluates and predicts on
each working GPU backend, and each training step after the first of an epoch is
watched (:class:`_WatchSteps`): on torch-cuda with ``set_sync_debug_mode("error")``
and PyTorch's dispatcher counts (:func:`check_torch`); on CuPy with a spin kernel
queued before the step, which a step that waits for the GPU cannot outrun
(:class:`CupySpin`, :func:`check_cupy`); on JAX under
``jax_transfer_guard="disallow"``, which makes every implicit transfer between host
and device raise (:func:`check_jax`). Each run gives one :class:`SyncCheck`.

On the emulated CuPy (:mod:`portnet.testing.emulated_cupy`, gpu_check's stand-in
without a GPU) nothing can be queued, so the spin is :class:`EmulatedSpin`, which
never delays; the emulation itself raises on every hidden host sync.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from portnet.testing.audit import audit_torch
from portnet.testing.options import OPTIONS, TrainingOption
from portnet.training.callbacks import Callback


@dataclasses.dataclass
class SyncCheck:
    """One option on one GPU backend: ``verdict`` is "ok", "sync" or "error"."""

    option: str
    backend: str
    verdict: str
    detail: str


class _WatchSteps(Callback):
    """Calls ``arm()`` after every batch but an epoch's last, and ``disarm()`` at the
    next batch end: exactly the steps after an epoch's first are watched."""

    def __init__(self, arm: Callable[[], None], disarm: Callable[[], None]) -> None:
        self.arm, self.disarm, self.armed = arm, disarm, False

    def on_epoch_begin(self, model, epoch):
        self._stop()

    def on_batch_end(self, model, batch, n_batches):
        self._stop()
        if batch < n_batches - 1:
            self.arm()
            self.armed = True

    def on_epoch_end(self, model, epoch, logs):
        self._stop()

    def on_train_end(self, model, history):
        self._stop()

    def _stop(self):
        if self.armed:
            self.armed = False
            self.disarm()


def _fit_watched(option: TrainingOption, backend: Any, watch: _WatchSteps) -> None:
    """Train, evaluate and predict ``option`` on ``backend`` with ``watch`` on the steps."""
    X, y = option.data()
    model = option.build(backend)
    model.fit(
        X,
        y,
        epochs=2,
        batch_size=12,
        validation_split=0.25,
        verbose=0,
        callbacks=[watch],
        **option.fit_kwargs,
    )
    model.evaluate(X, y)
    backend.to_numpy(model.predict(X))


def _failure(option: TrainingOption, label: str, exc: BaseException) -> SyncCheck:
    where = traceback.extract_tb(exc.__traceback__)[-1]
    first = (str(exc).splitlines() or [""])[0]
    detail = f"{type(exc).__name__}: {first} ({where.filename}:{where.lineno})"
    # torch's sync debug mode says "synchronizing", JAX's transfer guard "Disallowed
    # ... transfer", and the emulated CuPy raises HostSyncError.
    text = str(exc).lower()
    is_sync = (
        "synchroniz" in text
        or ("disallowed" in text and "transfer" in text)
        or type(exc).__name__ == "HostSyncError"
    )
    return SyncCheck(option.name, label, "sync" if is_sync else "error", detail)


def check_torch(option: TrainingOption, backend: Any) -> SyncCheck:
    """Sync-debug mode "error" during the watched steps (on CUDA), plus the dispatcher's
    per-step counts of the ops that wait for the host."""
    import torch

    def debug_mode(mode: str) -> Callable[[], None]:
        # The mode exists on CUDA builds only; on the CPU the counts below carry the check.
        on_cuda = backend.device.type == "cuda"
        return lambda: torch.cuda.set_sync_debug_mode(mode) if on_cuda else None

    label = f"torch-{backend.device.type}"
    try:
        _fit_watched(option, backend, _WatchSteps(debug_mode("error"), debug_mode("default")))
        audit = audit_torch(option, device=backend.device_name)
    except Exception as exc:
        return _failure(option, label, exc)
    finally:
        debug_mode("default")()
    waits = {k: audit.worst_step[k] for k in ("_local_scalar_dense", "nonzero", "lift_fresh")}
    verdict = "ok" if not any(waits.values()) else "sync"
    detail = ", ".join(f"{k} {v}" for k, v in waits.items())
    return SyncCheck(option.name, label, verdict, f"per step: {detail}")


_SPIN_SOURCE = r"""
extern "C" __global__ void spin(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) { }
}
"""


class CupySpin:
    """A one-thread kernel that keeps the GPU busy for about ``seconds``.

    The number of clock cycles is calibrated by timing the kernel itself (the
    nominal clock rate is not what the GPU runs at, and CUDA 13 drops it from the
    device properties).
    """

    def __init__(self, backend: Any, seconds: float) -> None:
        self.backend = backend
        with backend.device_scope():
            self.kernel = backend.cupy.RawKernel(_SPIN_SOURCE, "spin")
        self.cycles = 10**7
        for _ in range(3):  # rescale until the measured duration is near the target
            self.seconds = self.measure()
            self.cycles = max(1, int(self.cycles * seconds / max(self.seconds, 1e-6)))
        self.seconds = self.measure()

    def launch(self) -> None:
        with self.backend.device_scope():
            self.kernel((1,), (1,), (np.int64(self.cycles),))

    def measure(self) -> float:
        """The spin's real duration (the clock rate is nominal)."""
        self.launch()
        self.backend.synchronize()
        start = time.perf_counter()
        self.launch()
        self.backend.synchronize()
        return time.perf_counter() - start


class EmulatedSpin:
    """The spin's stand-in on the emulated CuPy: launches nothing, so never delays a step.

    A hidden sync there raises :class:`~portnet.testing.emulated_cupy.HostSyncError`
    instead of waiting, so the check still fails on one.
    """

    seconds = float("inf")

    def launch(self) -> None:
        pass


def make_spin(backend: Any, seconds: float) -> CupySpin | EmulatedSpin:
    """A :class:`CupySpin` on a real GPU, an :class:`EmulatedSpin` on the emulated CuPy."""
    if str(getattr(backend.cupy, "__version__", "")).endswith("+emulated"):
        return EmulatedSpin()
    return CupySpin(backend, seconds)


def check_cupy(option: TrainingOption, backend: Any, spin: CupySpin | EmulatedSpin) -> SyncCheck:
    """Queue a spin before each watched step: the step must return before the spin ends."""
    host_times: list[float] = []
    started: list[float] = []

    def arm():
        backend.synchronize()
        spin.launch()
        started.append(time.perf_counter())

    def disarm():
        host_times.append(time.perf_counter() - started[-1])
        backend.synchronize()

    try:
        _fit_watched(option, backend, _WatchSteps(arm, disarm))
    except Exception as exc:
        return _failure(option, "cupy", exc)
    worst = max(host_times)
    verdict = "ok" if worst < 0.5 * spin.seconds else "sync"
    if isinstance(spin, EmulatedSpin):
        detail = f"{len(host_times)} steps on the emulated CuPy (a hidden host sync raises there)"
    else:
        detail = (
            f"{len(host_times)} steps, host time of the slowest {worst * 1e3:.1f} ms "
            f"while a {spin.seconds * 1e3:.0f} ms spin was queued"
        )
    return SyncCheck(option.name, "cupy", verdict, detail)


def check_jax(option: TrainingOption, backend: Any) -> SyncCheck:
    """JAX's device-to-host transfer guard "disallow" during the watched steps.

    An implicit device-to-host transfer (``float()`` or ``bool()`` of a device value,
    ``np.asarray`` of one) makes the host wait for the device, and raises under the
    guard; explicit ones (``device_get``) pass. Host-to-device transfers are left
    alone: a Python scalar turned into a device scalar (JAX's eager slicing with
    Python ints does this) is queued without waiting. On the CPU, device memory is
    host memory and the guard sees nothing: there only the plumbing is exercised.
    """
    jax = backend.jax
    label = f"jax-{'cpu' if backend.device_name == 'cpu' else 'cuda'}"
    setting = "jax_transfer_guard_device_to_host"
    before = getattr(jax.config, setting)
    count = [0]

    def arm():
        count[0] += 1
        jax.config.update(setting, "disallow")

    def disarm():
        jax.config.update(setting, before)

    try:
        _fit_watched(option, backend, _WatchSteps(arm, disarm))
    except Exception as exc:
        return _failure(option, label, exc)
    finally:
        disarm()
    detail = f"{count[0]} steps under transfer_guard_device_to_host('disallow')"
    return SyncCheck(option.name, label, "ok", detail)


#: The check of each GPU backend label, in the order they run per option.
CHECKS: dict[str, Callable[..., SyncCheck]] = {
    "torch-cuda": check_torch,
    "cupy": check_cupy,
    "jax-cuda": check_jax,
}


def sync_checks(
    working: dict[str, Any], spin_seconds: float, deadline: float | None = None
) -> tuple[list[SyncCheck], int]:
    """Every option on every working GPU backend, until ``deadline`` (``perf_counter``).

    Returns the checks made and how many option × backend runs the deadline left out.
    """
    checks: list[SyncCheck] = []
    labels = [label for label in CHECKS if label in working]
    spin = make_spin(working["cupy"], spin_seconds) if "cupy" in working else None
    for done, option in enumerate(OPTIONS):
        if deadline is not None and time.perf_counter() > deadline:
            return checks, (len(OPTIONS) - done) * len(labels)
        for label in labels:
            extra = (spin,) if label == "cupy" else ()
            check = CHECKS[label](option, working[label], *extra)
            checks.append(check)
            print(f"[sync] {check.backend:10s} {check.option:20s} {check.verdict}: {check.detail}")
    return checks, 0
