"""What a :class:`~portnet.RunConfig` means: its data, model and fit, in one place.

:func:`prepare_run` builds them and :func:`train_run` trains and evaluates; the
main job (``python -m experiments.fashion``) and a sweep worker
(:func:`portnet.sweeps.train_config`) both run them.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ..errors import ConfigError
from .run_config import RunConfig, build_loss


def build_optimizer(config: RunConfig):
    """The optimizer with its learning-rate schedule over ``epochs``."""
    import portnet as pn

    from .optim import optimizer_from_spec

    if isinstance(config.optimizer, dict):
        return optimizer_from_spec(config.optimizer)
    lr, epochs = config.lr, config.epochs
    every = config.step_every or max(1, epochs // 4)
    schedule = {
        "constant": lambda: pn.Constant(lr),
        "cosine": lambda: pn.CosineDecay(lr, epochs),
        "step": lambda: pn.StepDecay(lr, factor=config.step_factor, every=every),
    }[config.schedule]()
    options: dict[str, Any] = {"weight_decay": config.weight_decay, "clip_norm": config.clip_norm}
    if config.optimizer in ("momentum", "nesterov"):
        options["gamma"] = config.momentum
    return pn.get_optimizer(config.optimizer, lr=schedule, **options)


def build_network(config: RunConfig, n_features: int, n_classes: int, image_shape):
    """The run's :class:`~portnet.Sequential`: its layers list, or the MLP of ``hidden``."""
    import portnet as pn

    from .validation import check_chain

    if config.layers is not None:
        network = pn.Sequential(config.layers)
        # Before any output is written: the list must take the data and end in the classes.
        out = check_chain(network.layers, (n_features,), data="the data")
        if out is not None and out[-1] != n_classes:
            raise ConfigError(
                f"the layers list ends in {out[-1]} outputs but the data has "
                f"{n_classes} classes; make the last Dense layer's n_out {n_classes}"
            )
        return network
    sizes = [n_features, *config.hidden, n_classes]
    return pn.Sequential(
        pn.mlp(
            sizes,
            config.activation,
            dropout=config.dropout,
            batch_norm=config.batch_norm,
            flip=(1, *image_shape) if config.flip else None,
        )
    )


def describe_network(config: RunConfig, n_features: int, n_classes: int) -> str:
    """One line for logs and plot titles: ``784-1024-512-10 MLP`` or ``CNN (16 layers)``."""
    if config.layers is not None:
        kind = "CNN" if config.model == "cnn" else "layer list"
        return f"{kind} ({len(config.layers)} layers)"
    return f"{'-'.join(map(str, [n_features, *config.hidden, n_classes]))} MLP"


@dataclasses.dataclass
class PreparedRun:
    """A run ready to train: its configuration, data, backend and untrained model."""

    config: RunConfig
    data: Any  # portnet.data.prepare.PreparedData
    model: Any  # portnet.Model

    def fit(self, verbose: int = 0, **options: Any):
        """Train as the configuration says; ``options`` add fit arguments (``checkpoint``,
        ``resume``, ``callbacks``). Returns the :class:`~portnet.History`."""
        config = self.config
        return self.model.fit(
            self.data.X,
            self.data.y,
            validation_data=self.data.validation,
            epochs=config.epochs,
            batch_size=config.batch_size,
            patience=config.patience,
            compile=config.compile,
            verbose=verbose,
            **options,
        )


def prepare_data_of(config: RunConfig):
    """The run's :class:`~portnet.data.prepare.PreparedData` (loaded, split, normalised)."""
    from ..data.prepare import prepare_data

    return prepare_data(
        config.dataset,
        data_dir=config.data_dir,
        normalize=config.normalize,
        train_size=config.train_size,
        test_size=config.test_size,
        val_fraction=config.val_fraction,
        val_size=config.val_size,
        seed=config.run_seed() if config.split_seed is None else config.split_seed,
    )


def prepare_run(config: RunConfig, data: Any = None) -> PreparedRun:
    """Load the data (unless given), pick the backend and build the model of a run.

    The backend comes first, so a missing library or a compile on a backend that
    cannot compile is refused before any data is read.
    """
    import portnet as pn

    from .compiled import check_compilable

    backend = pn.get_backend(config.backend, config.device)
    if config.compile:
        check_compilable(backend)
    data = prepare_data_of(config) if data is None else data
    n_classes = data.dataset.n_classes
    model = pn.Model(
        build_network(config, data.X.shape[1], n_classes, data.dataset.X_train.shape[1:]),
        loss=build_loss(config),
        optimizer=build_optimizer(config),
        l1=config.l1,
        l2=config.l2,
        regularizers=_regularizers(config),
        backend=backend,
        dtype=config.dtype,
        seed=config.run_seed(),
        test_time_flip=config.uses_test_time_flip,
        test_time_shift=config.test_time_shift,
    )
    return PreparedRun(config, data, model)


def _regularizers(config: RunConfig) -> list:
    from .regularizers import regularizer_from_spec

    return [regularizer_from_spec(spec) for spec in config.regularizers]


@dataclasses.dataclass
class RunResult:
    """A trained run: ``model``, ``history``, ``data``, ``val`` and ``test``
    (``{"loss", "accuracy"}``; ``val`` None without validation data) and ``seconds``
    of training."""

    model: Any
    history: Any
    data: Any
    val: dict[str, float] | None
    test: dict[str, float]
    seconds: float


def train_run(config: RunConfig, data: Any = None, verbose: int = 0, **options: Any) -> RunResult:
    """Prepare, train and evaluate a run in this process (see :func:`prepare_run`)."""
    run = prepare_run(config, data)
    start = time.perf_counter()
    history = run.fit(verbose=verbose, **options)
    seconds = time.perf_counter() - start
    validation = run.data.validation
    return RunResult(
        model=run.model,
        history=history,
        data=run.data,
        val=run.model.evaluate(*validation) if validation is not None else None,
        test=run.model.evaluate(run.data.X_test, run.data.y_test),
        seconds=seconds,
    )


__all__ = [
    "PreparedRun",
    "RunResult",
    "build_network",
    "build_optimizer",
    "describe_network",
    "prepare_data_of",
    "prepare_run",
    "train_run",
]
