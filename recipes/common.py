"""What every recipe does after parsing: train with progress, report, write results, export.

Everything here prints or exits: that is the recipes' job, never the library's.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import signal
import sys

import keras

import cli
import kala
import kala.bench


def build_model(variant, units, task, **options):
    """`kala.build_model` for `task`, with the cell and initialization named in `variant` as the
    recipes' flags take them: "lstm", or "lstm+chrono" (chrono's longest lag being the task's
    longest sequence). `options` go to `kala.build_model`."""
    cell, _, initialization = variant.partition("+")
    if initialization == "chrono":
        options["max_lag"] = task.max_length
    return kala.build_model(cell, units, initialization=initialization or "default",
                            **task.model_options, **options)


class ProgressPrinter:
    """Shows training progress: a live bar on a terminal, a line per evaluation otherwise."""

    def __init__(self, metric_name, baseline, steps):
        self.metric_name = metric_name
        self.baseline = baseline
        self.interactive = sys.stdout.isatty()
        # Made now, when training starts, so that its time per step is right.
        self.bar = keras.utils.Progbar(steps, stateful_metrics=[f"test_{metric_name}"])

    def __call__(self, progress):
        if self.interactive:
            values = [("loss", progress.loss)] if progress.loss is not None else []
            if progress.metric is not None:
                values.append((f"test_{self.metric_name}", progress.metric))
            self.bar.update(progress.step, values=values, finalize=progress.step >= progress.steps)
        # On a terminal the bar shows every evaluation; print a line only for the one that solves.
        if progress.evaluated and (not self.interactive or progress.solved):
            loss = "  -   " if progress.loss is None else f"{progress.loss:.4f}"
            print(("\n" if self.interactive else "")
                  + f"step {progress.step:>6,}  sequences {progress.sequences_seen:>9,}  "
                  f"loss {loss}  test {self.metric_name} {progress.metric:.4f} "
                  f"(baseline {self.baseline:.4f})  {progress.seconds:6.1f} s", flush=True)


def machine():
    """What the run ran on, for results files."""
    return kala.bench.machine()


def new_figure(size, columns=1, rows=1):
    """A matplotlib figure and its axes (`columns` side by side, `rows` above each other),
    drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot.subplots(rows, columns, figsize=size)


def save_figure(figure, path):
    """Lays out a figure, saves it as PNG under a temporary name, then renames (as `write_json`),
    and closes it."""
    from matplotlib import pyplot

    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}.png"
    figure.savefig(temporary, dpi=120)
    pyplot.close(figure)
    os.replace(temporary, path)


def write_text(path, text):
    """Writes to a temporary name, then renames: a reader sees the old file or the new one."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def write_json(path, payload):
    """Writes JSON as `write_text` does."""
    write_text(path, json.dumps(payload, indent=2) + "\n")


def summary_line(recipe, cell, batch_size, result):
    """The run in one line: solved or not, metric against baseline, sequences, seconds."""
    metric = f"test {result.metric_name} {result.metric:.4f} vs baseline {result.baseline:.4f}"
    if result.solved:
        outcome = f"SOLVED after {result.sequences_seen:,} sequences"
    else:
        outcome = (f"NOT solved within {result.steps * batch_size:,} sequences "
                   f"({result.steps:,} steps)")
    return f"{recipe}: {cell} {outcome}; {metric}; {result.seconds:.0f} s"


@contextlib.contextmanager
def ctrl_c_between_steps():
    """Makes Ctrl-C a request that the training loop honours between steps.

    Python raises KeyboardInterrupt wherever the main thread happens to be; inside TensorFlow's
    callback that feeds tf.data, that crashed the process (free(): invalid next size) in 2 of 9
    trials. So the first Ctrl-C only sets a flag, and a second one interrupts at once.
    Yields a function that says whether Ctrl-C was pressed.
    """
    requested = []

    def request_stop(signum, frame):
        requested.append(signum)
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_if(requested, on_progress=None):
    """A progress callback: passes progress on, then ends training, between steps, once
    `requested()` is true (the loop saves a checkpoint and re-raises KeyboardInterrupt)."""
    def callback(progress):
        if on_progress is not None:
            on_progress(progress)
        if requested():
            raise KeyboardInterrupt

    return callback


def run_until_ctrl_c(trainer, on_progress=None):
    """`trainer.run(on_progress)`, where Ctrl-C ends training between two steps: the trainer
    saves its checkpoint (if it has a directory) and KeyboardInterrupt reaches the caller."""
    with ctrl_c_between_steps() as ctrl_c_pressed:
        return trainer.run(on_progress=stop_if(ctrl_c_pressed, on_progress))


def run_recipe(recipe, config, task, model, run_name):
    """Trains `model` on `task` as `config` says, prints progress and the summary, writes the
    JSON result into `config.results/recipe/run_name.json`, and exports under `--export`."""
    check_export_target(recipe, config)
    trainer = make_trainer(config, task, model)
    print(f"{recipe}: training {config.cell} ({model.count_params():,} parameters) on "
          f"{task.name} T={task.seq_len}; budget {config.steps:,} steps of {config.batch_size} "
          f"sequences; baseline {task.metric_name} {task.baseline:.4f}", flush=True)
    result = train_or_exit(recipe, config, trainer,
                           ProgressPrinter(task.metric_name, task.baseline, config.steps))

    path = os.path.join(config.results, recipe, f"{run_name}.json")
    write_json(path, run_record(recipe, config, trainer, result, {
        "solved": result.solved,
        "sequences_seen": result.sequences_seen,
        "metric": result.metric,
        "metric_name": result.metric_name,
        "baseline": result.baseline,
        "seconds": round(result.seconds, 2),
        "steps": result.steps,
        "resumed_from_step": result.resumed_from_step,
    }))
    print(f"result written to {path}")

    if config.export:
        export(recipe, config, task, model)
    print(summary_line(recipe, config.cell, config.batch_size, result))
    return result


def make_trainer(config, task, model):
    """A `kala.Trainer` with the recipe's training settings; bad ones end the run with one
    line."""
    with cli.bad_arguments_exit():
        return kala.Trainer(
            model, task, steps=config.steps, batch_size=config.batch_size,
            learning_rate=config.learning_rate, clipnorm=config.clipnorm, seed=config.seed,
            eval_every=config.eval_every, checkpoint_dir=config.checkpoint_dir or None,
            logdir=config.logdir or None,
        )


def train_or_exit(recipe, config, trainer, on_progress):
    """Runs the trainer; Ctrl-C ends the run between steps, with how to resume, and exit code
    130."""
    try:
        return run_until_ctrl_c(trainer, on_progress)
    except KeyboardInterrupt:
        where = int(trainer.step.numpy())
        hint = (f"; run the same command to resume from {config.checkpoint_dir}"
                if config.checkpoint_dir else "; pass --checkpoint-dir to be able to resume")
        print(f"\n{recipe}: interrupted at step {where:,}{hint}", file=sys.stderr)
        sys.exit(cli.EXIT_INTERRUPTED)


def run_record(recipe, config, trainer, result, measured):
    """A run's JSON result: the recipe and its command, what it `measured`, then its settings,
    the machine, when it finished and its evaluations."""
    return {
        "recipe": recipe,
        "command": " ".join(["python", *sys.argv]),
        **measured,
        "config": {**dataclasses.asdict(config), **trainer.config},
        "machine": machine(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "history": result.history,
    }


def check_export_target(recipe, config):
    """Under `--export`, refuses a bad model name or an unwritable path now, not after the
    training (one line, exit code 2)."""
    if not config.export:
        return
    with cli.bad_arguments_exit():
        kala.export.check_model_name(config.model_name or recipe)
        try:
            os.makedirs(config.saved_models, exist_ok=True)
        except OSError as error:
            raise ValueError(f"--saved-models {config.saved_models}: {error.strerror}")


def export(recipe, config, task, model):
    """Publishes the trained model for TF Serving and says where, with its signatures."""
    try:
        version_dir = kala.export_model(model, config.saved_models,
                                        config.model_name or recipe, **task.serving_options)
    except (OSError, ValueError) as error:
        cli.fail(f"export failed, nothing was published: {error}")
    names = ", ".join(kala.export.signature_names(version_dir))
    print(f"exported to {version_dir} (signatures {names}; input {model.inputs[0].name!r}, "
          f"output {model.output_names[0]!r})")
    return version_dir
