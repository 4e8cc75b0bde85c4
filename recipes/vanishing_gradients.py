"""Vanishing gradients, measured: how much does the loss at the end feel an input T − t steps back?

What it shows: why plain RNNs struggle with long gaps (Hochreiter 1991; Bengio, Simard &
Frasconi 1994, in the essay's section "The Problem of Long-Term Dependencies"). Training moves
the weights along the gradient of the loss; if the gradient with respect to an input far in the
past is vanishingly small, nothing the network learns can connect that input to the output. For
the adding problem (T = 100) this recipe measures ‖∂loss/∂x_t‖, averaged over a batch of test
sequences, against the distance T − t, for a SimpleRNN and an LSTM, at initialization and after
training with the adding recipe's settings.

Each cell is measured with several seeds; the figure draws each seed thinly and the median over
seeds boldly. The README explains what it shows.

Run it:
    python recipes/vanishing_gradients.py            # results/vanishing_gradients/
    python recipes/vanishing_gradients.py --smoke    # a tiny run, for the tests
"""

import dataclasses
import os

import cli

RECIPE = "vanishing_gradients"


# Setup: the defaults live here, once; every field is also a command-line flag.
@dataclasses.dataclass
class Config:
    cells: str = dataclasses.field(default="simple_rnn,lstm", metadata={
        "help": "comma-separated cells to measure"})
    seq_len: int = dataclasses.field(default=100, metadata={"help": "T of the adding problem"})
    units: int = dataclasses.field(default=64, metadata={"help": "size of the recurrent state"})
    steps: int = dataclasses.field(default=3000, metadata={"help": "training budget in steps"})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "sequences per step"})
    learning_rate: float = dataclasses.field(default=1e-2, metadata={"help": "Adam's rate"})
    seeds: int = dataclasses.field(default=3, metadata={
        "help": "seeds per cell (0, 1, ...): each sets the weights and the training data"})
    smoke: bool = dataclasses.field(default=False, metadata={"help": "a tiny run for the tests"})
    results: str = dataclasses.field(default="results", metadata={
        "help": "directory for gradients.json and gradients.png (in DIR/vanishing_gradients/)"})


SMOKE = {"seq_len": 10, "units": 8, "steps": 20, "batch_size": 8, "seeds": 2}


def gradient_by_distance(model, task, inputs, targets):
    """Mean over the batch of ‖∂loss/∂x_t‖, indexed by the distance T − 1 − t to the end."""
    import tensorflow as tf

    inputs = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = task.loss(targets, model(inputs, training=False))
    gradient = tape.gradient(loss, inputs)  # (B, T, D)
    per_step = tf.reduce_mean(tf.norm(gradient, axis=-1), axis=0)  # (T,)
    return per_step.numpy()[::-1].tolist()


def plot(measured, path, seq_len):
    """The gradient norm against the distance (log axis): dashed initial, solid trained; the
    median over seeds bold, each seed thin."""
    import common

    figure, axes = common.new_figure((6.5, 4))
    for index, (cell, curves) in enumerate(measured.items()):
        color = f"C{index}"
        for run in curves["runs"]:
            axes.plot(run["initial"], color=color, linestyle="--", linewidth=0.5, alpha=0.5)
            axes.plot(run["trained"], color=color, linewidth=0.5, alpha=0.5)
        seeds = len(curves["runs"])
        axes.plot(curves["initial"], color=color, linestyle="--",
                  label=f"{cell}, initial (median of {seeds} seeds)")
        axes.plot(curves["trained"], color=color, label=f"{cell}, trained (median)")
    axes.set_yscale("log")
    axes.set_xlabel("distance T − t from the input to the end of the sequence")
    axes.set_ylabel("mean ‖∂loss/∂x_t‖")
    axes.set_title(f"Gradient reaching back into an adding-problem sequence (T = {seq_len})")
    axes.legend()
    common.save_figure(figure, path)


def main(argv=None):
    config = cli.parse_config(Config, __doc__, argv, smoke=SMOKE)
    cells = cli.parse_cells(config.cells)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import common
    import kala

    with cli.bad_arguments_exit():
        task = kala.tasks.AddingProblem(config.seq_len, test_size=256)
    # Data: one fixed batch of test sequences, the same for every cell and both measurements.
    inputs, targets = next(iter(task.test_dataset()))

    measured = {}
    for cell in cells:
        runs = []
        for seed in range(config.seeds):
            keras.utils.set_random_seed(seed)
            model = common.build_model(cell, config.units, task)
            initial = gradient_by_distance(model, task, inputs, targets)
            result = kala.train(model, task, steps=config.steps, batch_size=config.batch_size,
                                learning_rate=config.learning_rate, seed=seed)
            trained = gradient_by_distance(model, task, inputs, targets)
            runs.append({"seed": seed, "initial": initial, "trained": trained,
                         "solved": result.solved, "sequences_seen": result.sequences_seen,
                         "metric": result.metric, "steps": result.steps,
                         "seconds": round(result.seconds, 2)})
            print(f"{cell} seed {seed}: gradient at distance {len(initial) - 1} / at distance 0: "
                  f"{ratio(initial)} initially, {ratio(trained)} after training "
                  f"({'solved' if result.solved else 'not solved'}, {result.steps:,} steps, test "
                  f"mse {result.metric:.4f}, {result.seconds:.0f} s)", flush=True)
        measured[cell] = {
            "initial": np.median([run["initial"] for run in runs], axis=0).tolist(),
            "trained": np.median([run["trained"] for run in runs], axis=0).tolist(),
            "runs": runs,
        }

    out_dir = os.path.join(config.results, RECIPE)
    common.write_json(os.path.join(out_dir, "gradients.json"), {
        "recipe": RECIPE, "config": dataclasses.asdict(config), "machine": common.machine(),
        "distance": list(range(config.seq_len)), "cells": measured,
    })
    plot(measured, os.path.join(out_dir, "gradients.png"), config.seq_len)
    print(f"written to {out_dir}/gradients.json and gradients.png")


def ratio(curve):
    return f"{curve[-1] / curve[0]:.2e}" if curve[0] > 0 else "undefined (0 at distance 0)"


if __name__ == "__main__":
    main()
