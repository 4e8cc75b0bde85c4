"""What the recipes show and write: progress, a run's summary line, results files, figures, exports;
and the devices a run trains on (`strategy`).

Everything here prints or writes files: that is the recipes' job, never the library's. Files are
written under a temporary name, then renamed, so a reader sees the old file or the new one.
"""

import contextlib
import dataclasses
import datetime
import io
import json
import os
import signal
import sys
import time

import keras

import flags
import kala
import kala.ask
import kala.distribute
import kala.locks
import kala.provenance


class ProgressPrinter:
    """A `kala.Trainer` progress callback: a live bar on a terminal, a line per evaluation
    otherwise."""

    def __init__(self, task, steps):
        self.metric_name = task.metric_name
        self.baseline = task.baseline
        self.interactive = sys.stdout.isatty()
        # Made now, when training starts, so that its time per step is right.
        self.bar = keras.utils.Progbar(steps, stateful_metrics=[f"test_{self.metric_name}"])

    def __call__(self, progress):
        if self.interactive:
            values = [("loss", progress.loss)] if progress.loss is not None else []
            if progress.metric is not None:
                values.append((f"test_{self.metric_name}", progress.metric))
            self.bar.update(progress.step, values=values, finalize=progress.step >= progress.steps)
        # On a terminal the bar shows every evaluation; print a line only for the one that solves.
        if progress.evaluated and (not self.interactive or progress.solved):
            loss = "  -   " if progress.loss is None else f"{progress.loss:.4f}"
            # Under a stop rule: how many of the latest training sequences were wrong.
            recent = ("" if progress.recent is None else
                      f"  wrong {progress.recent_wrong:>5,} of the last {progress.recent:,}")
            print(("\n" if self.interactive else "")
                  + f"step {progress.step:>6,}  sequences {progress.sequences_seen:>9,}  "
                  f"loss {loss}{recent}  test {self.metric_name} {progress.metric:.4f} "
                  f"(baseline {self.baseline:.4f})  {progress.seconds:6.1f} s", flush=True)


class Heartbeat:
    """A progress callback for the runs of a sweep, which print a line when they end: at an
    evaluation (or, under a stop rule, any report), once `seconds` have passed since the last
    line, a line that says where the run is and when its budget would be spent."""

    def __init__(self, name, task, seconds=15):
        self.name, self.metric_name, self.seconds = name, task.metric_name, seconds
        self.last = time.monotonic()

    def __call__(self, progress):
        ruled = progress.recent is not None
        if (progress.evaluated or ruled) and time.monotonic() - self.last > self.seconds:
            self.last = time.monotonic()
            left = progress.seconds / max(progress.step, 1) * (progress.steps - progress.step)
            where = (f"{progress.recent_wrong:,} wrong of the last {progress.recent:,}" if ruled
                     else f"test {self.metric_name} {progress.metric:.3f}")
            print(f"  ... {self.name}: step {progress.step:,}/{progress.steps:,}, {where}, at "
                  f"most {duration(left)} left", flush=True)


def duration(seconds):
    """`42 s`, `3.5 min` or `1.2 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def strategy(settings):
    """Sets Keras's precision policy to `--precision` and returns the tf.distribute strategy of
    `--distribute` and `--devices` (None for one device). First thing in a recipe's `main`:
    the CPU can be split into devices only before TensorFlow runs an op."""
    with flags.bad_arguments():
        keras.mixed_precision.set_global_policy(settings.precision)
        return kala.distribute.make_strategy(settings.distribute, settings.devices)


def starting(recipe, settings, task, model, trainer):
    """The line a training run starts with: what trains on what, with which budget, and where
    it resumes from."""
    where = ""
    if trainer.strategy is not None:
        described = kala.distribute.describe(trainer.strategy)
        workers = described["workers"]
        where = (f" on {described['replicas']} replicas ({described['strategy']}, {workers} "
                 f"worker{'s' if workers > 1 else ''})")
    precision = "" if trainer.precision == "float32" else f" in {trainer.precision}"
    print(f"{recipe}: training {settings.cell} ({model.count_params():,} parameters) on "
          f"{task.name} T={task.seq_len}{where}{precision}; budget {settings.steps:,} steps of "
          f"{settings.batch_size} sequences; baseline {task.metric_name} {task.baseline:.4f}",
          flush=True)
    resuming(trainer, settings.checkpoint_dir)


def resuming(trainer, checkpoint_dir):
    """Says so when the trainer took up a checkpoint: `resumed at step N of M from DIR`, and
    why an older one, under --resume-from-previous."""
    step = int(trainer.step.numpy())
    if trainer.resumed_instead:
        print(f"the latest checkpoint is damaged ({trainer.resumed_instead}); resuming from the "
              "newest intact one", flush=True)
    if step:
        print(f"resumed at step {step:,} of {trainer.steps:,} from {checkpoint_dir}", flush=True)


def summary_line(recipe, cell, batch_size, result):
    """The run in one line: solved or not, metric against baseline, sequences, seconds."""
    metric = f"test {result.metric_name} {result.metric:.4f} vs baseline {result.baseline:.4f}"
    if result.solved:
        outcome = f"SOLVED after {result.sequences_seen:,} sequences"
    else:
        outcome = (f"NOT solved within {result.steps * batch_size:,} sequences "
                   f"({result.steps:,} steps)")
    return f"{recipe}: {cell} {outcome}; {metric}; {result.seconds:.0f} s"


def interrupted(recipe, trainer, checkpoint_dir, signum=signal.SIGINT):
    """Ends a run that Ctrl-C or SIGTERM stopped: where it stopped, how to resume, exit code
    128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as shells report it."""
    hint = (f"; run the same command to resume from {checkpoint_dir}" if checkpoint_dir
            else "; pass --checkpoint-dir to be able to resume")
    print(f"\n{recipe}: interrupted at step {int(trainer.step.numpy()):,}{hint}",
          file=sys.stderr)
    sys.exit(128 + signum)


@contextlib.contextmanager
def training(recipe, trainer, checkpoint_dir):
    """Around `trainer.run`: an interruption ends the run as `interrupted` says, and a checkpoint
    that cannot be written (a full disk) with one line naming it, exit code 2."""
    try:
        yield
    except KeyboardInterrupt as error:
        interrupted(recipe, trainer, checkpoint_dir, getattr(error, "signum", signal.SIGINT))
    except OSError as error:
        flags.fail(str(error))
    except kala.training.WorkerLost as error:  # Another worker died: this one cannot go on.
        print(f"{recipe}: {error}", file=sys.stderr)
        sys.exit(1)


# Settings that say where output goes, not how the model trains.
OUTPUT_SETTINGS = ("smoke", "export", "saved_models", "model_name", "max_generate_length",
                   "results", "checkpoint_dir", "resume_from_previous", "logdir")


def run_name(settings, smoke, named):
    """The name of a run's results file: the settings in `named` (e.g. cell, seq_len, seed),
    then every other training setting that differs from its default, so that one run never
    overwrites another's results; `-smoke` for smoke runs."""
    formats = {"seq_len": "T{}", "seed": "seed{}"}
    parts = [formats.get(name, "{}").format(getattr(settings, name)) for name in named]
    defaults = {field.name: field.default for field in dataclasses.fields(settings)}
    if settings.smoke:
        defaults.update(smoke)
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name not in named and field.name not in OUTPUT_SETTINGS \
                and value != defaults[field.name]:
            if isinstance(value, str) and os.sep in value:  # A path: its file's name.
                value = os.path.basename(value.rstrip(os.sep))
            parts.append(f"{field.name}{value}")
    if settings.smoke:
        parts.append("smoke")
    return "-".join(parts)


def run_record(recipe, settings, trainer, result, measured):
    """A run's JSON result: the recipe and its command, what it `measured`, then its settings,
    the machine, when it finished and its evaluations."""
    return {
        "recipe": recipe,
        # A worker started by `python -m kala.distribute` records the launcher's command.
        "command": os.environ.get(kala.distribute.LAUNCH_COMMAND)
        or " ".join(["python", *sys.argv]),
        **measured,
        "config": {**dataclasses.asdict(settings), **trainer.config},
        "distribute": kala.distribute.describe(trainer.strategy),
        "machine": kala.provenance.machine(),
        "finished_at": now(),
        "history": result.history,
    }


def now():
    """The time, in UTC, as results files record it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def outcome(result):
    """What a results file records of a `kala.TrainResult`."""
    return {"solved": result.solved, "sequences_seen": result.sequences_seen,
            "metric": result.metric, "metric_name": result.metric_name,
            "baseline": result.baseline, "seconds": round(result.seconds, 2),
            "steps": result.steps, "resumed_from_step": result.resumed_from_step}


def save_model(model, path, task):
    """Saves the trained model as a `.keras` file, with the vocabulary and labels of `task` in
    task.json beside it, so that `python -m kala.ask PATH QUESTION` can ask it."""
    with _writing(path):  # kala.ask.save leaves no temporary file and names the size.
        kala.ask.save(model, path, **task.serving_options)


@contextlib.contextmanager
def _writing(path, temporary=None, text=None, size=None):
    """Ends the run with one line that names `path` and the `size` it tried to write if writing
    fails (a full disk, a size limit, a directory gone), leaving no temporary file, whatever
    stops the write. `text`, what the file would have held, is printed first, so that what was
    measured is not lost."""
    try:
        yield
    except OSError as error:
        if text is not None:
            print(text, end="", flush=True)
        size = f"{size:,} bytes: " if size is not None else ""
        flags.fail(f"cannot write {path} ({size}{error.strerror or error})"
                   + ("; what it would hold is printed above" if text is not None else ""))
    finally:
        if temporary and os.path.exists(temporary):
            with contextlib.suppress(OSError):
                os.remove(temporary)


# The results directories this process holds, by real path: held until it ends.
_CLAIMED = {}


def claim(directory):
    """Locks a run's results directory (made if missing) for this process, until it ends: a
    second run writing there at once, the same settings started twice, is refused now with
    one line that names the first one's process id. Claiming it again in this process is a
    no-op."""
    key = os.path.realpath(directory)
    if key not in _CLAIMED:
        with flags.bad_arguments():
            _CLAIMED[key] = kala.locks.hold(directory, what="run writing results")


def release_claims():
    """Lets other processes write the directories this one claimed: for a program that runs
    recipes' `main` one after another in one process, such as the tests."""
    while _CLAIMED:
        _CLAIMED.popitem()[1].release()


def model_path(settings, recipe, run):
    """Where a sweep keeps the trained model of one of its runs: DIR/RECIPE/runs/RUN/model.keras."""
    return os.path.join(settings.results, recipe, "runs", run, "model.keras")


def write_text(path, text):
    """Writes `text` to `path` whole: a temporary name, then a rename. If that fails, the text
    is printed and the run ends with one line that names the path."""
    temporary = f"{path}.tmp-{os.getpid()}"
    data = text.encode("utf-8")
    with _writing(path, temporary, text, len(data)):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)


def write_json(path, payload):
    """Writes JSON as `write_text` does."""
    write_text(path, json.dumps(payload, indent=2) + "\n")


def new_figure(size, columns=1, rows=1):
    """A matplotlib figure and its axes (`columns` side by side, `rows` above each other),
    drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot.subplots(rows, columns, figsize=size)


def save_figure(figure, path):
    """Lays out a figure, saves it as PNG as `write_text` does, and closes it."""
    from matplotlib import pyplot

    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=120)
    pyplot.close(figure)
    temporary = f"{path}.tmp-{os.getpid()}.png"
    with _writing(path, temporary, size=len(image.getvalue())):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(image.getvalue())
        os.replace(temporary, path)


def check_export_target(settings, default_name):
    """Under `--export`, refuses a bad model name now, not after the training (one line, exit
    code 2). Whether --saved-models can be written, `flags.parse` has checked already."""
    if not settings.export:
        return
    with flags.bad_arguments():
        kala.export.check_model_name(settings.model_name or default_name)


def export(model, task, settings, default_name, **options):
    """Publishes the trained model for TF Serving and says where, with its signatures;
    `options` go to `kala.export_model` (e.g. `forecast`)."""
    try:
        limit = getattr(settings, "max_generate_length", None)  # For a model that writes.
        version_dir = kala.export_model(
            model, settings.saved_models, settings.model_name or default_name,
            **task.serving_options, **({"max_generate_length": limit} if limit else {}),
            **options)
    except (OSError, ValueError) as error:
        flags.fail(f"export failed, nothing was published: {error}")
    names = ", ".join(kala.export.signature_names(version_dir))
    print(f"exported to {version_dir} (signatures {names}; input {model.inputs[0].name!r}, "
          f"output {model.output_names[0]!r})")
    return version_dir
