"""The main job's flags and config files, mapped onto :class:`portnet.RunConfig`.

Every run option is a field of the record, with its default, rule and help text
written there once: the flags are made from the fields. Defaults < config file <
flags; a problem exits with code 2 and one line naming the option and the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from pathlib import Path

from experiments.common import fail
from portnet.config import Choice, Kind, Number, Widths
from portnet.errors import ConfigError
from portnet.training.run_config import OPTIMIZER_NAMES, RunConfig, default_of, read_config_file

CNN_CONFIG = Path(__file__).parent / "configs" / "cnn.yaml"

#: What the job does with a run besides training it (not part of the run), and rules.
JOB_OPTIONS = {"out": None, "plots": True}
JOB_RULES = {"out": Kind((str,), optional=True), "plots": Kind((bool,))}

#: Written into config.json: a run folder of another layout cannot be resumed.
RUN_FOLDER_FORMAT = "portnet-run/2"


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option of :class:`RunConfig` (``--batch-size`` for ``batch_size``),
    in argument groups, with the option's help text and default."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in dataclasses.fields(RunConfig):
        meta = field.metadata
        if not meta["flag"]:
            continue
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        default = default_of(field.name)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_text = meta["help"] + ("" if default is None else f" (default {shown})")
        group.add_argument(
            f"--{field.name.replace('_', '-')}",
            help=help_text,
            **_flag_kind(field.name, meta["rule"]),
        )


def _flag_kind(name: str, rule) -> dict:
    """argparse's ``type``/``choices``/``action`` for an option's rule."""
    if name == "optimizer":
        return {"choices": OPTIMIZER_NAMES}
    if name == "model":
        return {"choices": ("mlp", "cnn")}  # a layers list comes from a config file
    if isinstance(rule, Kind) and bool in rule.types:
        return {"action": argparse.BooleanOptionalAction}
    if isinstance(rule, Choice):
        return {"choices": rule.choices}
    if isinstance(rule, Number | Widths):
        return {"type": rule.arg, "metavar": "N" if getattr(rule, "integer", False) else None}
    return {}


def resolve_config(args: argparse.Namespace) -> tuple[RunConfig, dict]:
    """The run and the job options of the command line: defaults < file < flags.

    ``--model cnn`` without a layers list takes experiments/configs/cnn.yaml under
    the file and the flags. Exits 2 naming any bad option.
    """
    values = _file_values(args.config) if args.config else {}
    where = f"config file {args.config}: " if args.config else ""
    job = {key: values.pop(key, default) for key, default in JOB_OPTIONS.items()}
    values.pop("format", None)
    model = args.model or values.get("model")
    if model == "cnn" and values.get("layers") is None:
        values = {**_file_values(CNN_CONFIG), **values}
        where = f"{where.rstrip(': ')} over {CNN_CONFIG}: " if args.config else "--model cnn: "
    for key, value in vars(args).items():
        if value is None:
            continue
        if key in JOB_OPTIONS:
            job[key] = value
        elif key in RunConfig.__dataclass_fields__:
            values[key] = value
    try:
        for key, rule in JOB_RULES.items():
            rule.check(key, job[key])
        config = RunConfig.from_dict(values)
    except ConfigError as exc:
        fail(f"{where}{exc}. Fix the value and run again.")
    _check_can_run(config, job)
    return config, job


def _file_values(path) -> dict:
    try:
        return read_config_file(path)
    except ConfigError as exc:
        fail(str(exc))


def _check_can_run(config: RunConfig, job: dict) -> None:
    """What the job needs from this machine, checked before any data is loaded."""
    if job["plots"] and importlib.util.find_spec("matplotlib") is None:
        fail('the plots need matplotlib: pip install "portnet[plots]", or pass --no-plots.')
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        fail(f"--data-dir {config.data_dir} is not a folder; give the folder of the IDX files.")
