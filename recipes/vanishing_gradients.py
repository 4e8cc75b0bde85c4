"""Vanishing gradients, measured: how much does the loss at the end feel an input T − t steps back?

What it shows: why plain RNNs struggle with long gaps (Hochreiter 1991; Bengio, Simard &
Frasconi 1994, in the essay's section "The Problem of Long-Term Dependencies"). Training moves
the weights along the gradient of the loss; if the gradient with respect to an input far in the
past is vanishingly small, nothing the network learns can connect that input to the output. For
the adding problem (T = 100) this recipe measures ‖∂loss/∂x_t‖, averaged over a batch of test
sequences, against the distance T − t, for a SimpleRNN and an LSTM, at initialization and after
training with the adding recipe's settings.

The README shows one run (seed 0): the untrained LSTM's gradient fades faster than the untrained
SimpleRNN's, and after training the LSTM's reaches back across the whole sequence while the
SimpleRNN's vanishes.

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
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of weights and data"})
    smoke: bool = dataclasses.field(default=False, metadata={"help": "a tiny run for the tests"})
    results: str = dataclasses.field(default="results", metadata={
        "help": "directory for gradients.json and gradients.png (in DIR/vanishing_gradients/)"})


SMOKE = {"seq_len": 10, "units": 8, "steps": 20, "batch_size": 8}


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
    """The gradient norm against the distance (log axis): dashed initial, solid trained."""
    import common

    figure, axes = common.new_figure((6.5, 4))
    for index, (cell, curves) in enumerate(measured.items()):
        color = f"C{index}"
        axes.plot(curves["initial"], color=color, linestyle="--", label=f"{cell}, initial")
        axes.plot(curves["trained"], color=color, label=f"{cell}, trained")
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

    import common
    import kala

    with cli.bad_arguments_exit():
        task = kala.tasks.AddingProblem(config.seq_len, test_size=256)
    # Data: one fixed batch of test sequences, the same for every cell and both measurements.
    inputs, targets = next(iter(task.test_dataset()))

    measured = {}
    for cell in cells:
        keras.utils.set_random_seed(config.seed)
        model = kala.build_model(cell, config.units, **task.model_options)
        initial = gradient_by_distance(model, task, inputs, targets)
        result = kala.train(model, task, steps=config.steps, batch_size=config.batch_size,
                            learning_rate=config.learning_rate, seed=config.seed)
        trained = gradient_by_distance(model, task, inputs, targets)
        measured[cell] = {"initial": initial, "trained": trained, "solved": result.solved,
                          "sequences_seen": result.sequences_seen, "metric": result.metric,
                          "steps": result.steps, "seconds": round(result.seconds, 2)}
        print(f"{cell}: gradient at distance {len(initial) - 1} / at distance 0: "
              f"{initial[-1] / initial[0]:.2e} initially, {trained[-1] / trained[0]:.2e} after "
              f"training ({'solved' if result.solved else 'not solved'}, {result.steps:,} "
              f"steps, test mse {result.metric:.4f})", flush=True)

    out_dir = os.path.join(config.results, RECIPE)
    common.write_json(os.path.join(out_dir, "gradients.json"), {
        "recipe": RECIPE, "config": dataclasses.asdict(config), "machine": common.machine(),
        "distance": list(range(config.seq_len)), "cells": measured,
    })
    plot(measured, os.path.join(out_dir, "gradients.png"), config.seq_len)
    print(f"written to {out_dir}/gradients.json and gradients.png")


if __name__ == "__main__":
    main()
