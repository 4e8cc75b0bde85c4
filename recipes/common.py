"""What every recipe shares: its command line, its progress printing, its results and export.

A recipe defines its defaults once, as a dataclass derived from `RecipeConfig`; `parse_config`
turns each field into a `--flag`. Everything here prints or exits: that is the recipes' job, never
the library's.
"""

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import sys

import keras
import tensorflow as tf

import kala

# Exit codes: 2 for bad arguments or files (as argparse does), 130 for Ctrl-C (as shells do).
EXIT_BAD_ARGUMENTS = 2
EXIT_INTERRUPTED = 130


@dataclasses.dataclass
class RecipeConfig:
    """Settings every recipe has; a recipe subclasses this and adds its task's settings."""

    cell: str = dataclasses.field(default="lstm", metadata={
        "help": "recurrent layer", "choices": list(kala.models.CELLS)})
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
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
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


def parse_config(config_class, description, argv=None, smoke=None):
    """Parses the command line into `config_class`: defaults, then `smoke` under `--smoke`, then
    the flags given. Bad flags end the run with one line and exit code 2."""
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
        if field.name == "seed":
            convert = _non_negative_int
        elif kind in (int, float):
            convert = _positive(kind)
        else:
            convert = kind
        parser.add_argument(flag, type=convert, default=argparse.SUPPRESS, help=help_text,
                            choices=field.metadata.get("choices"), metavar=field.name.upper())
    given = vars(parser.parse_args(argv))
    values = dict(smoke or {}) if given.get("smoke") else {}
    values.update(given)
    config = config_class(**values)
    for name in ("results", "saved_models", "checkpoint_dir", "logdir"):
        path = getattr(config, name)
        if path and os.path.exists(path) and not os.path.isdir(path):
            fail(f"--{name.replace('_', '-')} {path} is a file, expected a directory")
    return config


@contextlib.contextmanager
def bad_arguments_exit():
    """Turns a library `ValueError` raised while setting up into a one-line exit with code 2."""
    try:
        yield
    except ValueError as error:
        fail(str(error))


class ProgressPrinter:
    """Shows training progress: a live bar on a terminal, a line per evaluation otherwise."""

    def __init__(self, metric_name, baseline):
        self.metric_name = metric_name
        self.baseline = baseline
        self.bar = None
        self.interactive = sys.stdout.isatty()

    def __call__(self, progress):
        if self.interactive:
            if self.bar is None:
                self.bar = keras.utils.Progbar(progress.steps, stateful_metrics=["test"])
            values = [("loss", progress.loss)]
            if progress.metric is not None:
                values.append(("test", progress.metric))
            self.bar.update(progress.step, values=values, finalize=progress.step >= progress.steps)
        if progress.evaluated and (not self.interactive or progress.solved):
            print(f"{'' if not self.interactive else chr(10)}step {progress.step:>6,}  "
                  f"sequences {progress.sequences_seen:>9,}  loss {progress.loss:.4f}  "
                  f"test {self.metric_name} {progress.metric:.4f} "
                  f"(baseline {self.baseline:.4f})  {progress.seconds:6.1f} s", flush=True)


def machine():
    """What the run ran on, for results files."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def write_json(path, payload):
    """Writes JSON to a temporary name, then renames: a reader sees the old file or the new one."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as file:
        json.dump(payload, file, indent=2)
        file.write("\n")
    os.replace(temporary, path)


def summary_line(recipe, config, result):
    """The run in one line: solved or not, metric against baseline, sequences, seconds."""
    metric = f"test {result.metric_name} {result.metric:.4f} vs baseline {result.baseline:.4f}"
    if result.solved:
        outcome = f"SOLVED after {result.sequences_seen:,} sequences"
    else:
        outcome = (f"NOT solved within {result.steps * config.batch_size:,} sequences "
                   f"({result.steps:,} steps)")
    return f"{recipe}: {config.cell} {outcome}; {metric}; {result.seconds:.0f} s"


def run_recipe(recipe, config, task, model, run_name):
    """Trains `model` on `task` as `config` says, prints progress and the summary, writes the
    JSON result into `config.results/recipe/run_name.json`, and exports under `--export`."""
    with bad_arguments_exit():
        trainer = kala.Trainer(
            model, task, steps=config.steps, batch_size=config.batch_size,
            learning_rate=config.learning_rate, clipnorm=config.clipnorm, seed=config.seed,
            eval_every=config.eval_every, checkpoint_dir=config.checkpoint_dir or None,
            logdir=config.logdir or None,
        )
    print(f"{recipe}: training {config.cell} ({model.count_params():,} parameters) on "
          f"{task.name} T={task.seq_len}; budget {config.steps:,} steps of {config.batch_size} "
          f"sequences; baseline {task.metric_name} {task.baseline:.4f}", flush=True)
    try:
        result = trainer.run(on_progress=ProgressPrinter(task.metric_name, task.baseline))
    except KeyboardInterrupt:
        where = int(trainer.step.numpy())
        hint = (f"; run the same command to resume from {config.checkpoint_dir}"
                if config.checkpoint_dir else "; pass --checkpoint-dir to be able to resume")
        print(f"\n{recipe}: interrupted at step {where:,}{hint}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)

    path = os.path.join(config.results, recipe, f"{run_name}.json")
    write_json(path, {
        "recipe": recipe,
        "command": " ".join(["python", *sys.argv]),
        "solved": result.solved,
        "sequences_seen": result.sequences_seen,
        "metric": result.metric,
        "metric_name": result.metric_name,
        "baseline": result.baseline,
        "seconds": round(result.seconds, 2),
        "steps": result.steps,
        "config": {**dataclasses.asdict(config), **trainer.config},
        "machine": machine(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "history": result.history,
    })
    print(summary_line(recipe, config, result))
    print(f"result written to {path}")

    if config.export:
        try:
            version_dir = kala.export_model(model, config.saved_models,
                                            config.model_name or recipe)
        except (OSError, ValueError) as error:
            fail(f"export failed, nothing was published: {error}")
        print(f"exported to {version_dir} (signature serving_default, input "
              f"{model.inputs[0].name!r}, output {model.output_names[0]!r})")
    return result
