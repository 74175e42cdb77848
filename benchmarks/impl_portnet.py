"""portnet's own implementations: its Trainer on each backend (numpy, torch, array-api-strict,
CuPy, torch on CUDA, JAX eager and jitted), and :func:`build_portnet_model`, the workload
as a portnet Model."""

from __future__ import annotations

import portnet as pn
from portnet.errors import BackendError

from .impl_base import LR, MOMENTUM, BenchData, Implementation
from .workloads import CNNWorkload, Workload


class PortnetImplementation(Implementation):
    """portnet's Trainer on one backend, driven as ``fit_loop`` drives it, minus the bookkeeping.

    Per epoch: the core's ``Trainer.train_epoch`` on device data (its host
    permutation is the one upload) and one read of the stacked loss and
    correct-count sums (the second transfer).
    """

    backend_name = ""
    device: str | None = None

    @classmethod
    def load_backend(cls):
        return pn.get_backend(cls.backend_name, cls.device)

    @classmethod
    def unavailable_reason(cls):
        try:
            cls.load_backend()
        except BackendError as exc:
            return str(exc)
        return None

    def __init__(self, workload: Workload, batch_size: int, data: BenchData, seed: int):
        self.backend = self.load_backend()
        self.model = build_portnet_model(workload, self.backend, seed)
        self.trainer = self.model.trainer
        self.xp = self.backend.xp
        self.batch_size = batch_size
        self.n = data.n
        # Data goes to the device once, outside the timed epochs (fit does the same).
        self.X = self.backend.asarray(data.X, "float32")
        self.y = self.backend.asarray(data.y, "int64")
        # The Model's own training state: its optimizer state knows which entries are
        # frozen (BatchNorm's running statistics) and which take weight decay.
        self.state = self.model.state

    def run_epoch(self):
        with self.backend.device_scope():  # as Model.fit does (CuPy's current device)
            self.state, loss_sum, correct_sum = self.trainer.train_epoch(
                self.state, self.X, self.y, batch_size=self.batch_size, backend=self.backend
            )
            values = self.backend.to_numpy(self.xp.stack([loss_sum, correct_sum]))
        return float(values[0]) / self.n

    def synchronize(self):
        self.backend.synchronize()


def build_portnet_model(
    workload: Workload | CNNWorkload, backend, seed: int, inplace: bool | None = None
):
    """The workload as a float32 :class:`portnet.Model` with SGD + momentum 0.9, lr 0.01.

    ``inplace`` forces the optimizer's in-place or portable path (by default the
    backend decides), which lets the op counter measure the portable path on torch.
    """
    optimizer = pn.Momentum(LR, gamma=MOMENTUM, inplace=inplace)
    model = pn.Model(
        workload.portnet_layers(), optimizer=optimizer, backend=backend, dtype="float32", seed=seed
    )
    # Set explicitly, so every implementation provably starts from the same weights.
    model.set_weights(workload.initial_params(seed))
    return model


class PortnetNumpy(PortnetImplementation):
    name, backend_name = "portnet-numpy", "numpy"


class PortnetTorch(PortnetImplementation):
    name, backend_name, device = "portnet-torch", "torch", "cpu"


class PortnetStrict(PortnetImplementation):
    name, backend_name, device = "portnet-array_api_strict", "array_api_strict", "CPU_DEVICE"
    note = "portable (rebinding) optimizer path: array-api-strict promises no in-place updates"


class PortnetCupy(PortnetImplementation):
    name, backend_name, device = "portnet-cupy", "cupy", "cuda:0"
    device_kind = "cuda"


class PortnetTorchCuda(PortnetImplementation):
    name, backend_name, device = "portnet-torch-cuda", "torch", "cuda"
    device_kind = "cuda"


class PortnetJax(PortnetImplementation):
    name, backend_name, device = "portnet-jax", "jax", "cpu"
    note = "eager JAX: every operation dispatched from Python, rebinding updates"


class PortnetJaxJit(PortnetImplementation):
    """The training step compiled with ``jax.jit`` (``fit(compile=True)``'s epoch).

    ``compile_seconds`` is the first step's wall time (tracing and compiling), which
    the warm-up epoch pays and the timed epochs do not.
    """

    name, backend_name, device = "portnet-jax-jit", "jax", "cpu"
    note = "jax.jit training step; the ragged last batch runs eagerly"

    def __init__(self, workload, batch_size, data, seed):
        from portnet.training.compiled import compiled_step

        super().__init__(workload, batch_size, data, seed)
        self.compiled = compiled_step(self.trainer, self.backend, self.state.opt_state)

    @property
    def compile_seconds(self) -> float | None:
        return self.compiled.compile_seconds

    def run_epoch(self):
        from portnet.training.compiled import train_epoch_compiled

        self.state, loss_sum, correct_sum = train_epoch_compiled(
            self.trainer,
            self.compiled,
            self.state,
            self.X,
            self.y,
            batch_size=self.batch_size,
            backend=self.backend,
        )
        values = self.backend.to_numpy(self.xp.stack([loss_sum, correct_sum]))
        return float(values[0]) / self.n


class PortnetJaxCuda(PortnetJax):
    name, device = "portnet-jax-cuda", "cuda"
    device_kind = "cuda"


class PortnetJaxJitCuda(PortnetJaxJit):
    name, device = "portnet-jax-jit-cuda", "cuda"
    device_kind = "cuda"
