"""A training run as one typed record: its defaults and its rules.

:class:`RunConfig` holds everything a run needs: data, network, loss, optimizer and
schedule, regularizers, augmentation, fit options and where it runs. Each field's
default, rule and help text are written once, here; the main job's flags and YAML
files, sweep configurations and S3's settings are mappings onto it, and
:func:`portnet.prepare_run` (:mod:`.run`) is the one place that turns it into data,
a model and a fit.

>>> config = pn.RunConfig.from_dict({"hidden": [256], "epochs": 5})
>>> result = pn.train_run(config)   # what the main job and a sweep worker both run
>>> result.test["accuracy"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import Choice, Kind, Number, Widths
from ..errors import ConfigError

#: Keys that say where a run executes or keeps its data, not what it computes: they
#: are left out of :meth:`RunConfig.run_id`.
PLACEMENT_KEYS = ("data_dir", "threads", "device")


def _option(default: Any, rule: Any, help: str, group: str, flag: bool = True) -> Any:
    """A field with its rule, its help text and its group of command-line flags."""
    metadata = {"rule": rule, "help": help, "group": group, "flag": flag}
    if isinstance(default, list | dict):
        return dataclasses.field(
            default_factory=lambda: json.loads(json.dumps(default)), metadata=metadata
        )
    return dataclasses.field(default=default, metadata=metadata)


PLACE, DATA, MODEL, TRAIN = "where it runs", "data", "model", "training"

OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "rmsprop", "adam")
SCHEDULES = ("constant", "cosine", "step")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, checked when it is made.

    The defaults are the main job's (``python -m experiments.fashion``): an MLP
    chosen on validation data to reach 0.91 test accuracy on Fashion-MNIST within
    five minutes on a 2-core CPU (docs/mlp.md). Build one with :meth:`from_dict`
    (unknown keys and bad values raise :class:`~portnet.errors.ConfigError` naming
    the key and the fix) or as a dataclass; :meth:`to_dict` gives plain JSON data.
    """

    # -- where it runs
    backend: str | None = _option(
        None,
        Kind((str,), optional=True),
        "numpy, torch, cupy, jax or array_api_strict (default: $PORTNET_BACKEND, else numpy)",
        PLACE,
    )
    device: str | None = _option(
        None,
        Kind((str,), optional=True),
        "device of the backend: cpu, cuda:0, mps, device1, no_float64 "
        "(default: $PORTNET_DEVICE, else the backend's default)",
        PLACE,
    )
    dtype: str = _option("float32", Choice(("float32", "float64")), "floating-point type", PLACE)
    threads: int | None = _option(
        None,
        Number(low=1, integer=True, optional=True),
        "limit BLAS, OpenMP and torch CPU threads to N (default: each library's own); on a "
        "busy or small machine 1 or 2 is steadier and often faster. A CNN on NumPy trains "
        "each batch in one row shard per thread (1: whole batches on one core)",
        PLACE,
    )
    compile: bool = _option(
        False, Kind((bool,)), "compile the training step with jax.jit (needs backend jax)", PLACE
    )
    # -- data
    dataset: str = _option(
        "fashion_mnist",
        Kind((str,)),
        "fashion_mnist, mnist, kmnist or fashion_mnist_sample (the small embedded sample)",
        DATA,
    )
    data_dir: str | None = _option(
        None,
        Kind((str,), optional=True),
        "folder holding the four IDX .gz files; searched first",
        DATA,
    )
    normalize: str = _option(
        "feature",
        Choice(("scale", "feature", "image")),
        "scale pixels to [0,1]; then z-score per pixel with training statistics (feature) "
        "or per image (image, as study S1)",
        DATA,
    )
    train_size: int | None = _option(
        None,
        Number(low=20, integer=True, optional=True),
        "use N training images, a stratified random subset (before the validation split)",
        DATA,
    )
    test_size: int | None = _option(
        None,
        Number(low=1, integer=True, optional=True),
        "evaluate on N test images, a stratified random subset",
        DATA,
    )
    val_fraction: float | None = _option(
        0.1,
        Number(low=0, high=1, low_open=True, high_open=True, optional=True),
        "share of the training images held out, stratified, for validation and early "
        "stopping (null for none)",
        DATA,
    )
    val_size: int | None = _option(
        None,
        Number(low=1, integer=True, optional=True),
        "or this many images held out (with val_fraction null)",
        DATA,
    )
    split_seed: int | None = _option(
        None,
        Number(low=0, integer=True, optional=True),
        "seeds the subsets and the validation split (default: seed)",
        DATA,
    )
    # -- model
    model: str | None = _option(
        None,
        Choice(("mlp", "cnn", "layers"), optional=True),
        "mlp (hidden, activation, dropout, batch_norm, flip) or the network of a layers "
        "list (cnn: the list of experiments/configs/cnn.yaml); default: the list when "
        "one is given, else mlp",
        MODEL,
    )
    layers: list | None = _option(
        None,
        Kind((list,), optional=True),
        "the network as a list of {class, config} layer specs",
        MODEL,
        flag=False,
    )
    hidden: list = _option(
        [1024, 512],
        Widths(),
        "hidden layer widths, e.g. 500,324; 'none' for softmax regression",
        MODEL,
    )
    activation: str = _option("relu", Choice(ACTIVATIONS), "hidden activation", MODEL)
    dropout: float = _option(
        0.3, Number(low=0, high=1, high_open=True), "dropout rate after each hidden layer", MODEL
    )
    batch_norm: bool = _option(
        True, Kind((bool,)), "BatchNorm between each hidden Dense layer and its activation", MODEL
    )
    flip: bool = _option(
        True,
        Kind((bool,)),
        "mirror half the training images left-right each step (a RandomFlip layer)",
        MODEL,
    )
    test_time_flip: bool | None = _option(
        None,
        Kind((bool,), optional=True),
        "predict and evaluate (validation too) with the mean of the class probabilities "
        "for each image and its mirror image; needs a RandomFlip in the network (default: "
        "on exactly when the network has one)",
        MODEL,
    )
    test_time_shift: int = _option(
        0,
        Number(low=0, integer=True),
        "predict and evaluate with the mean of the class probabilities for each image and "
        "it moved by N pixels up, down, left and right (each flipped too with "
        "test_time_flip); needs a RandomShift in the network. Each epoch's validation "
        "leaves the shifts out (default 0: none)",
        MODEL,
    )
    # -- loss, optimizer, regularizers
    loss: str | dict = _option(
        "softmax_cross_entropy",
        Kind((str, dict)),
        "loss name or {class, config} spec",
        TRAIN,
        flag=False,
    )
    label_smoothing: float = _option(
        0.1,
        Number(low=0, high=1, high_open=True),
        "train towards (1 - EPS) one-hot + EPS / classes (softmax cross-entropy only)",
        TRAIN,
    )
    optimizer: str | dict = _option(
        "momentum",
        Kind((str, dict)),
        "sgd, momentum, nesterov, rmsprop or adam (or, in a file, a {class, config} spec)",
        TRAIN,
    )
    lr: float = _option(0.05, Number(low=0, low_open=True), "initial learning rate", TRAIN)
    momentum: float = _option(
        0.9, Number(low=0, high=1, high_open=True), "momentum gamma for momentum/nesterov", TRAIN
    )
    schedule: str = _option(
        "cosine",
        Choice(SCHEDULES),
        "learning-rate schedule over the epochs; step multiplies it by step_factor every "
        "step_every epochs",
        TRAIN,
    )
    step_factor: float = _option(
        0.5, Number(low=0, high=1, low_open=True), "the step schedule's factor", TRAIN
    )
    step_every: int | None = _option(
        None,
        Number(low=1, integer=True, optional=True),
        "epochs between the step schedule's steps (default: a quarter of the run)",
        TRAIN,
    )
    weight_decay: float = _option(
        5e-4,
        Number(low=0),
        "decoupled weight decay: each step multiplies the weights by 1 - lr * this",
        TRAIN,
    )
    clip_norm: float | None = _option(
        None,
        Number(low=0, low_open=True, optional=True),
        "rescale each step's gradients to at most this global L2 norm (default: off)",
        TRAIN,
    )
    l1: float = _option(0.0, Number(low=0), "L1 penalty on the weights", TRAIN)
    l2: float = _option(0.0, Number(low=0), "L2 penalty on the weights", TRAIN)
    regularizers: list = _option(
        [], Kind((list,)), "more penalties as {class, config} specs", TRAIN, flag=False
    )
    # -- fit
    batch_size: int = _option(128, Number(low=1, integer=True), "minibatch size", TRAIN)
    epochs: int = _option(80, Number(low=1, integer=True), "training epochs", TRAIN)
    patience: int | None = _option(
        None,
        Number(low=1, integer=True, optional=True),
        "early stopping: stop after this many epochs without a lower validation loss and "
        "keep the best weights",
        TRAIN,
    )
    seed: int | None = _option(
        0,
        Number(low=0, integer=True, optional=True),
        "seeds initialisation, split, shuffling and dropout (null: derived from the run's id)",
        TRAIN,
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = field.metadata["rule"].check(field.name, getattr(self, field.name))
            object.__setattr__(self, field.name, value)
        _check_together(self)

    # -- plain data ----------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """The run of a mapping (a parsed JSON or YAML file, a sweep configuration).

        Missing keys take their defaults; ``-`` in keys reads as ``_``.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"a run configuration must be a mapping of option: value, got "
                f"{type(values).__name__}"
            )
        values = {str(key).replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(values) - set(field_names()))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)}; known options: "
                f"{', '.join(sorted(field_names()))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON data (``from_dict`` of it gives this run back)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> RunConfig:
        """The run of a YAML (``.yaml``/``.yml``) or JSON file."""
        return cls.from_dict(read_config_file(path))

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def run_id(self) -> str:
        """12 hex digits of SHA-256 over the sorted JSON of what the run computes
        (:data:`PLACEMENT_KEYS` left out): the same on any machine."""
        values = {k: v for k, v in self.to_dict().items() if k not in PLACEMENT_KEYS}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    def run_seed(self) -> int:
        """``seed``, or one derived from the id (of the uncompiled run: compiling the same
        run starts from the same weights and data order)."""
        if self.seed is not None:
            return self.seed
        return int(self.replace(compile=False).run_id(), 16) % (2**31 - 1)

    # -- what the options mean ------------------------------------------------------
    @property
    def mirrors_training_images(self) -> bool:
        """Whether the network has a RandomFlip (``flip`` for the MLP)."""
        if self.layers is None:
            return self.flip
        return any(spec.get("class") == "RandomFlip" for spec in self.layers)

    @property
    def shifts_training_images(self) -> bool:
        """Whether the network has a RandomShift (the MLP never has)."""
        return any(spec.get("class") == "RandomShift" for spec in self.layers or [])

    @property
    def uses_test_time_flip(self) -> bool:
        """``test_time_flip``, or (left unset) on exactly when the network mirrors images."""
        if self.test_time_flip is None:
            return self.mirrors_training_images
        return self.test_time_flip


def field_names() -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(RunConfig))


def default_of(name: str) -> Any:
    """The default of one option."""
    field = RunConfig.__dataclass_fields__[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


#: Options that only shape the built-in MLP: with a layers list they would be unused.
MLP_OPTIONS = ("hidden", "activation", "dropout", "batch_norm", "flip")
#: Options that only shape an optimizer given by name.
OPTIMIZER_OPTIONS = (
    "lr",
    "momentum",
    "schedule",
    "step_factor",
    "step_every",
    "weight_decay",
    "clip_norm",
)


def _check_together(config: RunConfig) -> None:
    """The rules that involve several options, or other modules; each names the fix."""
    if config.backend is not None:
        from ..backends import _canonical
        from ..errors import BackendError

        try:
            object.__setattr__(config, "backend", _canonical(config.backend))
        except BackendError as exc:
            raise ConfigError(str(exc).rstrip(".")) from None
    if config.model is None:  # the network says which it is
        object.__setattr__(config, "model", "mlp" if config.layers is None else "layers")
    if config.layers is None and config.model != "mlp":
        raise ConfigError(f"model {config.model} needs a layers list; give one, or model mlp")
    if config.layers is not None:
        if config.model == "mlp":
            raise ConfigError(
                "model mlp builds the MLP of hidden, but a layers list is given too, which "
                "would be ignored; remove one of them (without model mlp the list is the "
                "network)"
            )
        _check_layer_specs(config.layers)
        _refuse_changed(
            config,
            MLP_OPTIONS,
            "shape the built-in MLP, but this run's network "
            "is its layers list, so they would be ignored; remove them or change the list",
        )
    if isinstance(config.optimizer, dict):
        _refuse_changed(
            config,
            OPTIMIZER_OPTIONS,
            "shape an optimizer given by name, but "
            "this run's optimizer is a spec; put them in the spec's config",
        )
        from .optim import optimizer_from_spec

        optimizer_from_spec(config.optimizer)
    elif config.optimizer not in OPTIMIZER_NAMES:
        raise ConfigError(
            f"optimizer must be one of {', '.join(OPTIMIZER_NAMES)} or a {{class, config}} "
            f"spec, got {config.optimizer!r}"
        )
    build_loss(config)
    from .regularizers import regularizer_from_spec

    for spec in config.regularizers:
        regularizer_from_spec(spec)
    if config.val_fraction is not None and config.val_size is not None:
        raise ConfigError("give val_fraction or val_size, not both (set val_fraction to null)")
    if config.test_time_flip and not config.mirrors_training_images:
        raise ConfigError(
            "test_time_flip averages the predictions for each image and its mirror image, "
            "made by the network's RandomFlip, but this run's network has none: turn on flip "
            "(MLP) or put a RandomFlip layer after the Reshape (layers list), or turn "
            "test_time_flip off"
        )
    if config.test_time_shift and not config.shifts_training_images:
        raise ConfigError(
            "test_time_shift averages the predictions for each image and its shifted "
            "copies, made by the network's RandomShift, but this run's network has none: "
            "put a RandomShift layer after the Reshape (layers list), or set "
            "test_time_shift to 0"
        )
    from ..data import available_datasets

    if config.dataset.strip().lower().replace("-", "_") not in available_datasets():
        raise ConfigError(
            f"unknown dataset {config.dataset!r}; known: {', '.join(available_datasets())}"
        )


def _refuse_changed(config: RunConfig, names: tuple[str, ...], why: str) -> None:
    changed = [name for name in names if getattr(config, name) != default_of(name)]
    if changed:
        given = ", ".join(f"{name} ({getattr(config, name)!r})" for name in changed)
        raise ConfigError(f"{given} {why}")


def _check_layer_specs(specs: list) -> None:
    """Each entry of a layers list builds; the error names the entry."""
    from ..layers.base import Sequential, layer_classes

    if not specs:
        raise ConfigError("layers must be a non-empty list of {class, config} entries")
    known = layer_classes()
    for number, spec in enumerate(specs, 1):
        head = f"layer {number} of the layers list"
        if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
            raise ConfigError(f"{head} must be {{class: Name, config: {{...}}}}, got {spec!r}")
        extra = sorted(set(spec) - {"class", "config"})
        if extra:
            raise ConfigError(
                f"{head} ({spec['class']}) has unknown key(s) {', '.join(extra)}; a layer "
                "takes only class and config"
            )
        if spec["class"] not in known:
            raise ConfigError(
                f"{head}: unknown layer class {spec['class']!r}; known layers: "
                f"{', '.join(sorted(known))}"
            )
        try:
            Sequential([spec])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{head} ({spec['class']}): {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{head} ({spec['class']}): {exc}") from None


def build_loss(config: RunConfig):
    """The loss: a name or spec, with ``label_smoothing`` for softmax cross-entropy."""
    from .losses import LOSSES, SoftmaxCrossEntropy, loss_from_spec

    if config.label_smoothing and (
        not isinstance(config.loss, str) or LOSSES.get(config.loss) is not SoftmaxCrossEntropy
    ):
        raise ConfigError(
            f"label_smoothing smooths the targets of softmax_cross_entropy; this run's loss is "
            f"{config.loss!r}. Set label_smoothing to 0, or use softmax_cross_entropy"
        )
    if config.label_smoothing:
        return SoftmaxCrossEntropy(label_smoothing=config.label_smoothing)
    return loss_from_spec(config.loss)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML or JSON file of option: value, as a dict; ConfigError names any problem."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give the path of a .yaml or .json file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"config file {path} is not UTF-8 text; give a YAML or JSON file of option: value"
        ) from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON ({exc}); fix it") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                'YAML configs need PyYAML: pip install "portnet[yaml]" (or use a .json config)'
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of option: value, got a {type(data).__name__}"
        )
    return {str(key).replace("-", "_"): value for key, value in data.items()}


#: The main job's run: every option at its default.
DEFAULTS = RunConfig()

__all__ = [
    "DEFAULTS",
    "RunConfig",
    "build_loss",
    "default_of",
    "field_names",
    "read_config_file",
]
