"""Digits read one pixel at a time: a long sequence whose answer needs all of it.

What it shows: sequential MNIST, the benchmark every long-memory paper reports. A handwritten
digit is read one pixel a step, row after row, and only after the last pixel does the network
say which digit it saw; the strokes that tell a 3 from an 8 lie dozens of steps apart. Permuted,
the pixels come in one fixed random order, so that neighbouring pixels are far apart in time and
the dependencies are long everywhere. Arjovsky, Shah & Bengio (2016) report the LSTM at 98.2% in
order and 88% permuted on the 784 pixels of MNIST, and Le, Jaitly & Hinton (2015) the IRNN, a
ReLU RNN whose recurrent kernel starts as the identity, at 97% and 82%.

Here the digits are scikit-learn's 8 × 8 (kala's TFDS dataset `kala_digits`, offline: `pip
install -e '.[data]'`): 64 steps, not 784, so the task is much shorter and the table below is not
the papers' task. SimpleRNN, IRNN, LSTM and GRU train with the same budget, each at its own
learning rate (recipes/tuned.py), over several seeds, in order and permuted. With `--tfds mnist`
the recipe reads the 784-pixel original from the TFDS catalog, which needs a download.

Run it:
    python recipes/pixel_digits.py            # 4 cells x 2 orders x 3 seeds: about 6 minutes
    python recipes/pixel_digits.py --export   # and publish the in-order LSTM of the first seed
    python recipes/pixel_digits.py --smoke    # a tiny sweep, for the tests

What you should see (2-core CPU): a line per run as it ends, then a row per cell: its test
accuracy on the 360 test digits in order and permuted (median and range over seeds), beside the
published sequential-MNIST figures. In results/pixel_digits/ the SimpleRNN keeps up with the
LSTM in order and beats it permuted: 64 steps is not a long gap (docs/real_sequences.md).
"""

import dataclasses
import os
import statistics
import sys
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras
import numpy as np

import kala
import kala.datasets
import kala.provenance
import output
import sweep
import tuned

RECIPE = "pixel_digits"
DATASET = "kala_digits"
Cell = typing.Literal[kala.models.VARIANTS]
Rates = typing.Literal["tuned"] | tuple[float, ...]
Order = typing.Literal["in_order", "permuted"]
# The fixed permutation of the permuted task: the same for every run, cell and seed.
PERMUTATION_SEED = 1234
# Every 8th training digit (180 of 1,437) is held out to choose learning rates by.
VALIDATION_EVERY = 8
# Sequential MNIST (784 steps): the published test accuracies, in order and permuted.
PUBLISHED = {
    "lstm": (0.982, 0.88, "Arjovsky, Shah & Bengio 2016"),
    "simple_rnn+irnn": (0.97, 0.82, "Le, Jaitly & Hinton 2015"),
}


@dataclasses.dataclass
class Settings:
    cells: tuple[Cell, ...] = ("simple_rnn", "simple_rnn+irnn", "lstm", "gru")  # compared
    orders: tuple[Order, ...] = ("in_order", "permuted")  # pixels in reading order, or permuted
    seeds: int = 3  # seeds per (cell, order)
    first_seed: int = 0  # seeds are FIRST_SEED, FIRST_SEED + 1, ...
    units: int = 64  # size of every cell's state
    steps: int = 1500  # budget per run, in steps (batches of training digits)
    batch_size: int = 32  # digits per step
    learning_rate: Rates = "tuned"  # tuned: each cell's own (tuned.py); or rates for every one
    clipnorm: float = 1.0  # each gradient is clipped to this norm
    eval_every: int = 250  # steps between evaluations on the test digits
    validation: bool = False  # score on digits held out of training, not on the test split
    tfds: str = ""  # "mnist": the 784-pixel original from the TFDS catalog (needs a download)
    jobs: int = 2  # runs trained at the same time, each in a process with its share of the cores
    data_dir: str = ""  # where TFDS keeps prepared datasets (default: ~/tensorflow_datasets)
    smoke: bool = False  # a tiny sweep to check that everything works
    report_only: bool = False  # train nothing: tabulate DIR/pixel_digits/summary.json again
    export: bool = False  # export the in-order LSTM (or first cell) of the first seed
    saved_models: str = "saved_models"  # TF Serving model base path for --export
    model_name: str = ""  # name to export the model under (default: the recipe's name)
    results: str = "runs"  # writes summary.json and summary.md into DIR/pixel_digits/


SMOKE = {"cells": ("lstm",), "seeds": 1, "units": 8, "steps": 20, "eval_every": 10, "jobs": 1}


def load(settings):
    """The training and scoring images, flattened to one pixel per step, and their digits."""
    data_dir = settings.data_dir or None
    if settings.tfds:
        train = kala.datasets.catalog_examples(settings.tfds, "train", data_dir)
        test = kala.datasets.catalog_examples(settings.tfds, "test", data_dir)
        key = "image"
    else:
        train = kala.datasets.examples(DATASET, "train", data_dir)
        test = kala.datasets.examples(DATASET, "test", data_dir)
        key = "pixels"
    if settings.validation:
        train, test = ([example for index, example in enumerate(train)
                        if index % VALIDATION_EVERY],
                       [example for index, example in enumerate(train)
                        if index % VALIDATION_EVERY == 0])

    def pairs(examples):
        return ([np.asarray(example[key], np.float32).reshape(-1, 1) for example in examples],
                [int(example["label"]) for example in examples])

    return pairs(train), pairs(test)


def make_task(settings, order):
    (train, train_digits), (scored, scored_digits) = load(settings)
    if order == "permuted":
        permutation = np.random.default_rng(PERMUTATION_SEED).permutation(len(train[0]))
        train = [image[permutation] for image in train]
        scored = [image[permutation] for image in scored]
    return kala.tasks.Recordings(f"pixel_digits_{order}", (train, train_digits),
                                 (scored, scored_digits), labels=[str(d) for d in range(10)],
                                 input_name="pixels")


def export_cell(settings):
    return "lstm" if "lstm" in settings.cells else settings.cells[0]


def train_run(settings, cell, order, learning_rate, seed):
    """Trains one (cell, order, learning rate, seed) and returns its row of summary.json."""
    # Data: every digit the same length, so nothing is padded and nothing masked (a pixel of 0
    # is ink-free paper, not padding).
    task = make_task(settings, order)
    # Model: the model standardises the pixels itself; one recurrent layer reads all of them,
    # then a softmax over the ten digits.
    keras.utils.set_random_seed(seed)
    model = kala.build_model(
        **kala.models.variant(cell, task.max_length), units=settings.units,
        input_scale=task.statistics, name=f"{RECIPE}_{order}_{cell.replace('+', '_')}",
        **task.model_options)
    result = kala.train(
        model, task, steps=settings.steps, batch_size=settings.batch_size,
        learning_rate=learning_rate, clipnorm=settings.clipnorm, seed=seed,
        eval_every=settings.eval_every,
        on_progress=output.Heartbeat(f"{cell} {order} lr {learning_rate:g} seed {seed}", task))
    output.save_model(model, output.model_path(
        settings, RECIPE, f"{cell.replace('+', '_')}-{order}-lr{learning_rate:g}-seed{seed}"),
        task)
    if (settings.export and order == "in_order" and cell == export_cell(settings)
            and seed == settings.first_seed):
        output.export(model, task, settings, RECIPE)
    return {"cell": cell, "order": order, "learning_rate": learning_rate, "seed": seed,
            "accuracy": 1.0 - result.metric, "baseline_accuracy": 1.0 - result.baseline,
            "test_size": task.test_size, "steps_per_sequence": task.max_length,
            "seconds": round(result.seconds, 2), "parameters": model.count_params()}


def describe(row):
    return (f"{row['cell']} {row['order'].replace('_', ' ')} lr {row['learning_rate']:g} seed "
            f"{row['seed']}: accuracy {row['accuracy']:.3f} of {row['test_size']} digits; "
            f"{row['seconds']:.0f} s")


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    out_dir = os.path.join(settings.results, RECIPE)
    if settings.report_only:
        report(sweep.load_summary(out_dir, RECIPE), out_dir)
        return
    untuned = [f"{cell} {order}" for cell in settings.cells for order in settings.orders
               if (cell, order) not in tuned.PIXEL_DIGITS]
    if settings.learning_rate == "tuned" and untuned:
        flags.fail(f"--learning-rate tuned: no tuned rate for {', '.join(untuned)}; give rates "
                   "with --learning-rate")
    if settings.export:
        output.check_export_target(settings, RECIPE)
    with flags.bad_arguments(), flags.missing_data():
        task = make_task(settings, settings.orders[0])  # Prepares the data before the workers.
    plan = [(settings, cell, order, learning_rate, seed)
            for cell in settings.cells for order in settings.orders
            for learning_rate in (settings.learning_rate if settings.learning_rate != "tuned"
                                  else [tuned.PIXEL_DIGITS[cell, order]])
            for seed in range(settings.first_seed, settings.first_seed + settings.seeds)]
    scored = "held-out training" if settings.validation else "test"
    print(f"{RECIPE}: {len(plan)} runs ({', '.join(settings.cells)}; "
          f"{' and '.join(order.replace('_', ' ') for order in settings.orders)}; "
          f"{settings.seeds} seed{'s' if settings.seeds > 1 else ''}; {settings.steps:,} steps "
          f"of {settings.batch_size}); {task.max_length} pixels a digit, "
          f"{len(task.train_sequences):,} training and {task.test_size} {scored} digits, "
          f"{min(settings.jobs, len(plan))} at a time", flush=True)
    summary = {"recipe": RECIPE, "command": " ".join(["python", *sys.argv]),
               "config": dataclasses.asdict(settings), "dataset": settings.tfds or DATASET,
               "scored_on": "validation" if settings.validation else "test",
               "machine": kala.provenance.machine(), "wall_seconds": 0, "runs": []}
    sweep.run(train_run, plan, summary, out_dir, jobs=settings.jobs, describe=describe)
    report(summary, out_dir)


def markdown(runs, published=True):
    """One row per cell (per cell and learning rate, for a search of rates): accuracy in order
    and permuted over seeds (median, range), and the published sequential-MNIST figures where
    there are some."""
    several = len({(row["cell"], row["order"], row["learning_rate"]) for row in runs}) > len(
        {(row["cell"], row["order"]) for row in runs})
    groups = {}
    for row in runs:
        key = (row["cell"], row["learning_rate"]) if several else (row["cell"],)
        groups.setdefault(key, {}).setdefault(row["order"], []).append(row)
    steps = runs[0]["steps_per_sequence"]
    header = (f"| cell | learning rate (in order, permuted) | parameters | seeds | "
              f"in order, {steps} steps | permuted, {steps} steps |")
    rule = "|---|---|---:|---:|---|---|"
    if published:
        header += " published, MNIST in order (784 steps) | permuted |"
        rule += "---|---|"
    lines = [header, rule]
    for key, orders in groups.items():
        cells, rates = [], []
        for order in ("in_order", "permuted"):
            group = orders.get(order)
            if not group:
                cells.append("—")
                rates.append("—")
                continue
            accuracies = [row["accuracy"] for row in group]
            rates.append(f"{group[0]['learning_rate']:g}")
            cells.append(f"{statistics.median(accuracies):.3f} "
                         f"({min(accuracies):.3f}–{max(accuracies):.3f})")
        any_group = next(iter(orders.values()))
        line = (f"| {key[0]} | {', '.join(rates)} | {any_group[0]['parameters']:,} | "
                f"{len(any_group)} | {' | '.join(cells)} |")
        if published:
            paper = PUBLISHED.get(key[0])
            line += (f" {paper[0]:.3f} ({paper[2]}) | {paper[1]:.3f} |" if paper else " — | — |")
        lines.append(line)
    return "\n".join(lines) + "\n"


def report(summary, out_dir):
    """Writes summary.md from the runs of `summary` and prints the table."""
    text = markdown(summary["runs"], published=summary["scored_on"] == "test")
    output.write_text(os.path.join(out_dir, "summary.md"), text)
    print()
    print(text, end="")
    print(f"written to {out_dir}/summary.json and summary.md; the sweep took "
          f"{summary['wall_seconds'] / 60:.1f} min")
    if summary["scored_on"] == "validation":  # A search: name each model's best rate.
        best = sweep.best_rows(summary["runs"], lambda row: (row["cell"], row["order"]),
                               lambda row: -row["accuracy"])
        print("highest held-out accuracy: " + ", ".join(
            f"{cell} {order} at {row['learning_rate']:g}" for (cell, order), row in best.items()))


if __name__ == "__main__":
    flags.run(main)
