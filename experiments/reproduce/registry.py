"""The one registry of the reference studies: names, titles, modules, config files.

Every study's configuration is resolved here, for ``python -m experiments.reproduce``
and ``python -m experiments.sweep`` alike: the module's ``DEFAULTS``, overridden by
``experiments/configs/<study>.yaml`` (or ``--config``), then (quick runs) the module's
``QUICK`` and the file's ``quick:`` block. Every value is checked against its default's
type and range; a bad one is a :class:`~portnet.errors.ConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from experiments.common import load_config_file
from portnet.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclasses.dataclass(frozen=True)
class Study:
    """A reference study: ``experiments/reproduce/<name>`` and ``configs/<name>.yaml``."""

    name: str
    title: str
    #: The paper, as "Authors, *Title*" (facts only: the papers are not in this repository).
    citation: str = ""

    @property
    def config_file(self) -> Path:
        return CONFIGS / f"{self.name}.yaml"

    def module(self) -> ModuleType:
        """The study's module: ``DEFAULTS``, optional ``QUICK``, ``run(ctx)``."""
        return importlib.import_module(f"experiments.reproduce.{self.name}")


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            "s0",
            "Logistic and softmax regression with PCA and 10-fold CV (Fashion-MNIST)",
            "Lucas Nguyen and Paul Pan, *Implementing Neural Networks from Scratch as a Means "
            "of Achieving High Accuracy* (UC San Diego)",
        ),
        Study(
            "s1",
            "MLP with momentum, L1/L2, activations and gradient checks (Fashion-MNIST)",
            "Connor Gag and Shivangi Karwa, *Neural Network for Fashion MNIST Dataset Using "
            "Low-Level Functions* (UC San Diego)",
        ),
        Study(
            "s2",
            "MLP study on KMNIST: learning rates, regularization, activations, topologies",
            "Linghang Kong, *Image Classification in Practice: Implementing Multi-layer Neural "
            "Network Using Numpy* (UC San Diego)",
        ),
        Study(
            "s3",
            "The 'Rookie' 784-500-324-10 network and its hyper-parameter grid (Fashion-MNIST)",
            "Yuanye Liu, *Rookie: A Three-layer Neural Network for Image Classification* "
            "(Fudan University)",
        ),
        Study(
            "s4",
            "Binary and multiclass study with F1, batch-size timing and optimizers (MNIST)",
            "Hunor Laczko and Smriti Joshi, *Neural Networks from Scratch*",
        ),
    )
}


def study_config(name: str, path: str | Path | None = None, quick: bool = False) -> dict[str, Any]:
    """DEFAULTS < config file < (``quick``) QUICK < the file's ``quick:`` block.

    ``path`` (``--config``) must exist; without it ``configs/<name>.yaml`` is read if present.
    """
    study = STUDIES[name]
    module = study.module()
    config = dict(module.DEFAULTS)
    file = Path(path) if path else study.config_file
    file_config = load_config_file(file) if (path or file.is_file()) else {}
    quick_block = file_config.pop("quick", None) or {}
    if not isinstance(quick_block, dict):
        raise ConfigError(
            f"the quick: block of {file} must be a mapping of option: value, got {quick_block!r}"
        )
    for source, values in ((file, file_config), (f"{file} (quick)", quick_block)):
        unknown = sorted(set(values) - set(config))
        if unknown:
            raise ConfigError(
                f"unknown option(s) in {source}: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(config))}"
            )
        check_study_config(values, module.DEFAULTS, str(source))
    config.update(file_config)
    if quick:
        config.update(getattr(module, "QUICK", {}))
        config.update(quick_block)
    return config


# Study options by name: counts of at least 1, rates above 0, fractions in (0, 1), and
# options with a fixed set of values. Every other number must be finite and not negative.
_COUNT = re.compile(
    r"(epochs|batch_sizes?|folds|components|components_shown|patience|every|workers|samples"
    r"|hidden|hidden_units|topologies|top_k|n_misclassified|threads|size)$"
)
_RATE = re.compile(r"(^|_)(lr|eps|learning_rates)$")
_FRACTION = re.compile(r"(^|_)fraction$")
_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
_CHOICES = {
    "l2_form": ("half", "full"),
    "monitor": ("val_loss", "val_accuracy"),
    "softmax_monitor": ("val_loss", "val_accuracy"),
    "grid": ("reduced", "full", "none"),
    "activation": _ACTIVATIONS,
    "units_activation": _ACTIVATIONS,
    "activations": _ACTIVATIONS,
    "cnn_optimizer": ("sgd", "momentum", "nesterov", "rmsprop", "adam"),
}


def _type_word(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    return {str: "a string", list: "a list", dict: "a mapping"}.get(type(value), "")


def _same_kind(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, numbers.Real)
    return isinstance(value, type(default))


def _check_numbers(key: str, value: Any, where: str) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _check_numbers(key, item, where)
        return
    if isinstance(value, list):
        for item in value:
            _check_numbers(key, item, where)
        return
    if isinstance(value, str) and key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(
            f"{where}: {key} must be one of {', '.join(_CHOICES[key])}, got {value!r}."
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return
    if not math.isfinite(value):
        raise ConfigError(
            f"{where}: {key} must be finite, got {value}. Fix the value and run again."
        )
    if _COUNT.search(key) and value < 1:
        raise ConfigError(
            f"{where}: {key} must be at least 1, got {value}. Fix the value and run again."
        )
    if _RATE.search(key) and value <= 0:
        raise ConfigError(
            f"{where}: {key} must be above 0, got {value}. Fix the value and run again."
        )
    if _FRACTION.search(key) and not 0 < value < 1:
        raise ConfigError(
            f"{where}: {key} must be between 0 and 1, got {value}. Fix the value and run again."
        )
    if value < 0:
        raise ConfigError(
            f"{where}: {key} must not be negative, got {value}. Fix the value and run again."
        )


def check_study_config(values: dict[str, Any], defaults: dict[str, Any], where: str) -> None:
    """Raise ConfigError naming the first value of the wrong type (against the study's default), not
    finite, negative, or out of its range; ``None`` is allowed where the default is ``None``."""
    for key, value in values.items():
        default = defaults.get(key)
        if value is None:
            if default is not None:
                raise ConfigError(
                    f"{where}: {key} needs a value ({_type_word(default)}), got null."
                )
            continue
        if not _same_kind(value, default):
            raise ConfigError(
                f"{where}: {key} must be {_type_word(default)} like its default {default!r}, "
                f"got {value!r} ({type(value).__name__}). Fix the value and run again."
            )
        _check_numbers(key, value, where)
