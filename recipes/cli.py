"""The recipes' command line: defaults as a dataclass, flags from its fields, one-line errors.

This module imports neither TensorFlow nor kala, so `--help` and a mistyped flag answer at once,
before the seconds TensorFlow takes to import.
"""

import argparse
import contextlib
import dataclasses
import os
import sys

# Exit codes: 2 for bad arguments or files (as argparse does), 130 for Ctrl-C (as shells do).
EXIT_BAD_ARGUMENTS = 2
EXIT_INTERRUPTED = 130

# kala.models.CELLS and INITIALIZATIONS (but the default), spelled out so that parsing needs no
# TensorFlow (a test keeps them equal).
CELLS = ("simple_rnn", "lstm", "gru", "peephole_lstm", "coupled_lstm", "lstm1997")
INITIALIZATIONS = {"zero_forget_bias": ("lstm", "peephole_lstm", "coupled_lstm"),
                   "chrono": ("lstm", "peephole_lstm", "coupled_lstm"),
                   "irnn": ("simple_rnn",)}
# What --cell and --cells take: a cell with its default initialization, or a cell and another
# initialization, as in "lstm+chrono".
VARIANTS = CELLS + tuple(f"{cell}+{initialization}"
                         for initialization, cells in INITIALIZATIONS.items() for cell in cells)


@dataclasses.dataclass
class RecipeConfig:
    """Settings every recipe has; a recipe subclasses this and adds its task's settings."""

    cell: str = dataclasses.field(default="lstm", metadata={
        "help": "recurrent cell, and its initialization if not the default", "choices": VARIANTS})
    implementation: str = dataclasses.field(default="auto", metadata={
        "help": "for simple_rnn, lstm and gru: Keras's built-in layer (cuDNN on a GPU) or the "
                "essay's cell from kala.cells; auto takes the built-in",
        "choices": ["auto", "builtin", "essay"]})
    units: int = dataclasses.field(default=64, metadata={"help": "size of the recurrent state"})
    steps: int = dataclasses.field(default=3000, metadata={
        "help": "training budget in steps (each step is one batch of fresh sequences)"})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "sequences per step"})
    learning_rate: float = dataclasses.field(default=1e-2, metadata={"help": "Adam's learning rate"})
    clipnorm: float = dataclasses.field(default=1.0, metadata={
        "help": "each gradient is clipped to this norm"})
    seed: int = dataclasses.field(default=0, metadata={
        "help": "seed of the initial weights and of the training sequences"})
    eval_every: int = dataclasses.field(default=100, metadata={
        "help": "steps between evaluations on the test split"})
    smoke: bool = dataclasses.field(default=False, metadata={
        "help": "a tiny run to check that everything works (under a minute on a CPU)"})
    export: bool = dataclasses.field(default=False, metadata={
        "help": "export the trained model for TF Serving"})
    saved_models: str = dataclasses.field(default="saved_models", metadata={
        "help": "TF Serving model base path for --export"})
    model_name: str = dataclasses.field(default="", metadata={
        "help": "name to export the model under (default: the recipe's name)"})
    results: str = dataclasses.field(default="results", metadata={
        "help": "directory for the JSON result (written into DIR/<recipe>/)"})
    checkpoint_dir: str = dataclasses.field(default="", metadata={
        "help": "save checkpoints here and resume from them (default: no checkpoints)"})
    logdir: str = dataclasses.field(default="", metadata={
        "help": "write TensorBoard scalars here (default: none)"})


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line and exit code 2, without argparse's usage block.
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_ARGUMENTS)


def fail(message):
    """Ends a recipe run for a bad argument or file: one line on stderr, exit code 2."""
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_ARGUMENTS)


def _positive(kind):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return convert


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


# Integer settings for which 0 is a value (every other number must be positive).
COUNTED_FROM_ZERO = ("seed", "first_seed", "example")


def parse_config(config_class, description, argv=None, smoke=None, full=None):
    """Parses the command line into `config_class`: defaults, then `smoke` under `--smoke` (or
    `full` under `--full`), then the flags given. Bad flags end the run with one line and exit
    code 2."""
    parser = _Parser(description=description,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for field in dataclasses.fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} (default: {field.default!r})"
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS,
                                help=field.metadata.get("help"))
            continue
        kind = {"int": int, "float": float, "str": str}.get(field.type, field.type)
        if field.name in COUNTED_FROM_ZERO:
            convert = _non_negative_int
        elif kind in (int, float):
            convert = _positive(kind)
        else:
            convert = kind
        parser.add_argument(flag, type=convert, default=argparse.SUPPRESS, help=help_text,
                            choices=field.metadata.get("choices"), metavar=field.name.upper())
    given = vars(parser.parse_args(argv))
    if given.get("smoke") and given.get("full"):
        fail("--smoke and --full exclude each other: choose one")
    values = dict(smoke or {}) if given.get("smoke") else {}
    if given.get("full"):
        values.update(full or {})
    values.update(given)
    config = config_class(**values)
    for name in ("results", "saved_models", "checkpoint_dir", "logdir"):
        path = getattr(config, name, "")
        if path and os.path.exists(path) and not os.path.isdir(path):
            fail(f"--{name.replace('_', '-')} {path} is a file, expected a directory")
    return config


def parse_list(text, kind, flag, positive=False):
    """The values of a comma-separated flag, converted by `kind` (and checked to be > 0 when
    `positive`); a bad one ends the run."""
    try:
        values = [kind(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        fail(f"--{flag} expects comma-separated {kind.__name__} values, got {text!r}")
    if not values:
        fail(f"--{flag} is empty")
    if positive and not all(value > 0 for value in values):
        fail(f"--{flag} expects positive values, got {text!r}")
    return values


def parse_cells(text):
    """The cells (or "cell+initialization" variants) named in a comma-separated `--cells` value;
    an unknown one ends the run."""
    cells = parse_list(text, str, "cells")
    unknown = [cell for cell in cells if cell not in VARIANTS]
    if unknown:
        fail(f"--cells: unknown {', '.join(unknown)}; valid cells: {', '.join(CELLS)}, each "
             f"alone or with an initialization: {', '.join(VARIANTS[len(CELLS):])}")
    return cells


# Settings that say where output goes, not how the model trains.
OUTPUT_SETTINGS = ("smoke", "export", "saved_models", "model_name", "results", "checkpoint_dir",
                   "logdir")


def run_name(config, smoke, named):
    """The name of a run's results file: the settings in `named` (e.g. cell, seq_len, seed),
    then every other training setting that differs from its default, so that one run never
    overwrites another's results; `-smoke` for smoke runs."""
    formats = {"seq_len": "T{}", "seed": "seed{}"}
    parts = [formats.get(name, "{}").format(getattr(config, name)) for name in named]
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    if config.smoke:
        defaults.update(smoke)
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name not in named and field.name not in OUTPUT_SETTINGS \
                and value != defaults[field.name]:
            if isinstance(value, str) and os.sep in value:  # A path: its file's name.
                value = os.path.basename(value.rstrip(os.sep))
            parts.append(f"{field.name}{value}")
    if config.smoke:
        parts.append("smoke")
    return "-".join(parts)


@contextlib.contextmanager
def bad_arguments_exit():
    """Turns a library `ValueError` raised while setting up into a one-line exit with code 2."""
    try:
        yield
    except ValueError as error:
        fail(str(error))
