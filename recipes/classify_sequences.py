"""Sequences of different lengths: who is speaking, from 7 to 29 frames of a vowel?

What it shows: real recordings are not all one length. Nine Japanese men said the vowels /ae/
(Japanese Vowels, Kudo, Toyama & Shimbo 1999); each utterance is 7 to 29 frames of 12 LPC
cepstrum coefficients, and the network must name the speaker. A batch pads its utterances on the
right with all-zero frames to the longest, and the model masks them: a padded frame leaves the
state as it was, so an utterance gets the same answer alone or in any batch (tests/test_models.py
checks it for every cell). tf.data groups utterances of similar lengths into a batch
(`bucket_by_sequence_length`), so that little of a batch is padding. On a GPU the masks stay
right-padded, which is what lets Keras's LSTM and GRU keep cuDNN.

The dependencies here are short: a speaker's voice is in every frame, so the plain RNN has no long
gap to bridge. The recipe trains SimpleRNN, LSTM and GRU with the same budget, each at its own
learning rate (recipes/tuned.py), over several seeds, and prints their test accuracy beside a
published one. The data is kala's TFDS dataset `kala_japanese_vowels` (kala.datasets), built
offline from the files sktime ships: `pip install -e '.[data]'`.

Run it:
    python recipes/classify_sequences.py            # 3 cells x 3 seeds: about 2 minutes
    python recipes/classify_sequences.py --export   # and publish the LSTM of the first seed
    python recipes/classify_sequences.py --smoke    # a tiny sweep, for the tests

What you should see (2-core CPU): a line per run as it ends, then a row per cell: its learning
rate, parameters, and test accuracy on the 370 test utterances (median and range over seeds).
In results/classify_sequences/ the three cells end within two points of each other, 0.943 to
0.965: with no long gap to bridge, the plain RNN copes (docs/real_sequences.md).
"""

import dataclasses
import os
import statistics
import sys
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras

import kala
import kala.datasets
import kala.provenance
import output
import sweep
import tuned

RECIPE = "classify_sequences"
DATASET = "kala_japanese_vowels"
Cell = typing.Literal[kala.models.VARIANTS]
Rates = typing.Literal["tuned"] | tuple[float, ...]
# Every 6th training utterance (5 of each speaker's 30) is held out to choose learning rates by.
VALIDATION_EVERY = 6
# Lengths at which a new bucket starts: utterances are 7 to 29 frames.
BUCKETS = (12, 16, 20)
# Published on the same 270/370 split: echo state networks of leaky-integrator neurons.
PUBLISHED = ("Jaeger, Lukoševičius, Popovici & Siewert 2007 (Neural Networks 20(3), "
             "leaky-integrator echo state networks): zero test errors", 1.0)


@dataclasses.dataclass
class Settings:
    cells: tuple[Cell, ...] = ("simple_rnn", "lstm", "gru")  # the cells compared
    seeds: int = 3  # seeds per cell
    first_seed: int = 0  # seeds are FIRST_SEED, FIRST_SEED + 1, ...
    units: int = 32  # size of every cell's state
    steps: int = 1500  # budget per run, in steps (batches of training utterances)
    batch_size: int = 32  # utterances per step
    learning_rate: Rates = "tuned"  # tuned: each cell's own (tuned.py); or rates for every one
    clipnorm: float = 1.0  # each gradient is clipped to this norm
    eval_every: int = 250  # steps between evaluations on the test split
    validation: bool = False  # score on utterances held out of training, not on the test split
    jobs: int = 2  # runs trained at the same time, each in a process with its share of the cores
    data_dir: str = ""  # where TFDS keeps prepared datasets (default: ~/tensorflow_datasets)
    smoke: bool = False  # a tiny sweep to check that everything works
    report_only: bool = False  # train nothing: tabulate DIR/classify_sequences/summary.json again
    export: bool = False  # export the LSTM (or the first cell) of the first seed for TF Serving
    saved_models: str = "saved_models"  # TF Serving model base path for --export
    model_name: str = ""  # name to export the model under (default: the recipe's name)
    results: str = "runs"  # writes summary.json and summary.md into DIR/classify_sequences/


SMOKE = {"cells": ("lstm",), "seeds": 1, "units": 8, "steps": 20,
         "eval_every": 10, "jobs": 1}


def load(settings):
    """The training and scoring utterances: the test split, or under --validation the held-out
    part of training. Each is a pair (utterances, speakers)."""
    def pairs(examples):
        return ([example["coefficients"] for example in examples],
                [int(example["speaker"]) for example in examples])

    data_dir = settings.data_dir or None
    train = kala.datasets.examples(DATASET, "train", data_dir)
    if not settings.validation:
        return pairs(train), pairs(kala.datasets.examples(DATASET, "test", data_dir))
    held_out = [example for index, example in enumerate(train) if index % VALIDATION_EVERY == 0]
    kept = [example for index, example in enumerate(train) if index % VALIDATION_EVERY]
    return pairs(kept), pairs(held_out)


def make_task(settings):
    train, scored = load(settings)
    return kala.tasks.Recordings(
        "japanese_vowels", train, scored, bucket_boundaries=BUCKETS,
        labels=[f"speaker {speaker}" for speaker in range(1, 10)], input_name="frames")


def export_cell(settings):
    return "lstm" if "lstm" in settings.cells else settings.cells[0]


def train_run(settings, cell, learning_rate, seed):
    """Trains one (cell, learning rate, seed) and returns its row of summary.json."""
    # Data: the utterances, padded per batch and bucketed by length; the seed fixes the order.
    task = make_task(settings)
    # Model: padding masked, each coefficient standardised by the model itself (so that it
    # reads and serves raw coefficients), one recurrent layer, a softmax over the speakers.
    keras.utils.set_random_seed(seed)
    model = kala.build_model(
        **kala.models.variant(cell, task.max_length), units=settings.units, mask_padding=True,
        input_scale=task.statistics, name=f"{RECIPE}_{cell.replace('+', '_')}",
        **task.model_options)
    # Train: the whole budget (a real set has no point at which it is "solved").
    result = kala.train(
        model, task, steps=settings.steps, batch_size=settings.batch_size,
        learning_rate=learning_rate, clipnorm=settings.clipnorm, seed=seed,
        eval_every=settings.eval_every,
        on_progress=output.Heartbeat(f"{cell} lr {learning_rate:g} seed {seed}", task))
    # The mean cross-entropy on the scored utterances: finer than accuracy on a few of them,
    # and what --validation chooses learning rates by.
    inputs, targets = kala.tasks.pad(task.test_sequences), task.test_classes
    cross_entropy = float(keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
        targets, model(inputs, training=False))))
    output.save_model(model, output.model_path(
        settings, RECIPE, f"{cell}-lr{learning_rate:g}-seed{seed}"), task)
    if settings.export and cell == export_cell(settings) and seed == settings.first_seed:
        output.export(model, task, settings, RECIPE)
    return {"cell": cell, "learning_rate": learning_rate, "seed": seed,
            "error_rate": result.metric, "accuracy": 1.0 - result.metric,
            "cross_entropy": round(cross_entropy, 4),
            "baseline_accuracy": 1.0 - result.baseline, "test_size": task.test_size,
            "seconds": round(result.seconds, 2), "parameters": model.count_params()}


def describe(row):
    wrong = round(row["error_rate"] * row["test_size"])
    return (f"{row['cell']} lr {row['learning_rate']:g} seed {row['seed']}: accuracy "
            f"{row['accuracy']:.3f} ({wrong} of {row['test_size']} wrong; the most common "
            f"speaker alone: {row['baseline_accuracy']:.3f}), cross-entropy "
            f"{row['cross_entropy']:.3f}; {row['seconds']:.0f} s")


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    out_dir = os.path.join(settings.results, RECIPE)
    if settings.report_only:
        report(sweep.load_summary(out_dir, RECIPE), out_dir)
        return
    untuned = [cell for cell in settings.cells if cell not in tuned.CLASSIFY_SEQUENCES]
    if settings.learning_rate == "tuned" and untuned:
        flags.fail(f"--learning-rate tuned: no tuned rate for {', '.join(untuned)}; give rates "
                   "with --learning-rate")
    if settings.export:
        output.check_export_target(settings, RECIPE)
    with flags.bad_arguments(), flags.missing_data():
        task = make_task(settings)  # Prepares the dataset once, before the workers read it.
    plan = [(settings, cell, learning_rate, seed) for cell in settings.cells
            for learning_rate in (settings.learning_rate if settings.learning_rate != "tuned"
                                  else [tuned.CLASSIFY_SEQUENCES[cell]])
            for seed in range(settings.first_seed, settings.first_seed + settings.seeds)]
    scored = "held-out training utterances" if settings.validation else "test utterances"
    print(f"{RECIPE}: {len(plan)} runs ({', '.join(settings.cells)}; {settings.seeds} "
          f"seed{'s' if settings.seeds > 1 else ''}; {settings.steps:,} steps of "
          f"{settings.batch_size}); {len(task.train_sequences)} training and "
          f"{task.test_size} {scored}, {min(settings.jobs, len(plan))} at a time", flush=True)
    summary = {"recipe": RECIPE, "command": " ".join(["python", *sys.argv]),
               "config": dataclasses.asdict(settings), "dataset": DATASET,
               "scored_on": "validation" if settings.validation else "test",
               "machine": kala.provenance.machine(), "wall_seconds": 0, "runs": []}
    sweep.run(train_run, plan, summary, out_dir, jobs=settings.jobs, describe=describe)
    report(summary, out_dir)


def markdown(runs, published=None):
    """One row per (cell, learning rate): its parameters, then accuracy over seeds (median,
    range) and the median seconds; then the published figure, if any."""
    groups = {}
    for row in runs:
        groups.setdefault((row["cell"], row["learning_rate"]), []).append(row)
    lines = ["| cell | learning rate | parameters | seeds | accuracy: median (range) | "
             "cross-entropy: median | seconds |", "|---|---|---:|---:|---|---:|---:|"]
    for (cell, learning_rate), group in groups.items():
        accuracies = [row["accuracy"] for row in group]
        lines.append(
            f"| {cell} | {learning_rate:g} | {group[0]['parameters']:,} | {len(group)} | "
            f"{statistics.median(accuracies):.3f} ({min(accuracies):.3f}–{max(accuracies):.3f})"
            f" | {statistics.median(row['cross_entropy'] for row in group):.3f}"
            f" | {statistics.median(row['seconds'] for row in group):.0f} |")
    baseline = runs[0]["baseline_accuracy"]
    lines.append(f"| the most common speaker, always | — | — | — | {baseline:.3f} | — | — |")
    if published:
        lines.append(f"| published: {published[0]} | — | — | — | {published[1]:.3f} | — | — |")
    return "\n".join(lines) + "\n"


def report(summary, out_dir):
    """Writes summary.md from the runs of `summary` and prints the table."""
    text = markdown(summary["runs"], PUBLISHED if summary["scored_on"] == "test" else None)
    output.write_text(os.path.join(out_dir, "summary.md"), text)
    print()
    print(text, end="")
    print(f"written to {out_dir}/summary.json and summary.md; the sweep took "
          f"{summary['wall_seconds'] / 60:.1f} min")
    if summary["scored_on"] == "validation":  # A search: name each cell's best rate.
        best = sweep.best_rows(summary["runs"], lambda row: row["cell"],
                               lambda row: row["cross_entropy"])
        print("lowest held-out cross-entropy: " + ", ".join(
            f"{cell} at {row['learning_rate']:g}" for cell, row in best.items()))


if __name__ == "__main__":
    flags.run(main)
