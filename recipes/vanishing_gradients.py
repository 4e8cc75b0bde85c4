"""Vanishing gradients, measured: how much does the loss at the end feel an input T − t steps back?

What it shows: why plain RNNs struggle with long gaps (Hochreiter 1991; Bengio, Simard &
Frasconi 1994, in the essay's section "The Problem of Long-Term Dependencies"). Training moves
the weights along the gradient of the loss; if the gradient with respect to an input far in the
past is vanishingly small, nothing the network learns can connect that input to the output. For
the adding problem (T = 100) this recipe measures ‖∂loss/∂x_t‖, averaged over a batch of test
sequences, against the distance T − t, for a SimpleRNN and an LSTM, at initialization and after
training with the adding recipe's settings.

Each cell is measured with several seeds; the figure draws each seed thinly and the median over
seeds boldly. docs/findings.md explains what it shows.

Run it:
    python recipes/vanishing_gradients.py            # results/vanishing_gradients/: 2.5 minutes
    python recipes/vanishing_gradients.py --smoke    # a tiny run, for the tests

What you should see (2-core CPU): a line per cell and seed, with the gradient at distance 99
over the gradient at distance 0. At initialization it is 5·10^-8 to 2·10^-7 for the LSTM and
2·10^-3 to 8·10^-3 for the SimpleRNN: the untrained LSTM's gradient fades faster. After training
it is the other way round: the LSTM, which solves the task in every seed, passes gradient back
across the whole sequence (a ratio of 1 to 7), while the SimpleRNN's, which solves it in none,
collapses to 0 in float32 (or 5·10^-16) far back.
"""

import dataclasses
import os
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras
import numpy as np
import tensorflow as tf

import kala
import kala.provenance
import output

RECIPE = "vanishing_gradients"
Cell = typing.Literal[kala.models.VARIANTS]


@dataclasses.dataclass
class Settings:
    cells: tuple[Cell, ...] = ("simple_rnn", "lstm")  # the cells to measure
    seq_len: int = 100  # T of the adding problem
    units: int = 64  # size of the recurrent state
    steps: int = 3000  # training budget in steps
    batch_size: int = 32  # sequences per step
    learning_rate: float = 1e-2  # Adam's learning rate
    seeds: int = 3  # seeds per cell (0, 1, ...): each sets the weights and the training data
    smoke: bool = False  # a tiny run for the tests
    results: str = "runs"  # writes gradients.json and gradients.png into DIR/vanishing_gradients/


SMOKE = {"seq_len": 10, "units": 8, "steps": 20, "batch_size": 8, "seeds": 2}


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    with flags.bad_arguments():
        task = kala.tasks.AddingProblem(settings.seq_len, test_size=256)
    # Data: one fixed batch of test sequences, the same for every cell and both measurements.
    inputs, targets = next(iter(task.test_dataset()))

    measured = {}
    for variant in settings.cells:
        runs = []
        for seed in range(settings.seeds):
            # Model: as in the adding recipe, started from this seed.
            keras.utils.set_random_seed(seed)
            model = kala.build_model(
                **kala.models.variant(variant, task.max_length), units=settings.units,
                **task.model_options)
            # Measure, train, measure again.
            initial = gradient_by_distance(model, task, inputs, targets)
            result = kala.train(
                model, task, steps=settings.steps, batch_size=settings.batch_size,
                learning_rate=settings.learning_rate, seed=seed,
                on_progress=output.Heartbeat(f"{variant} seed {seed}", task))
            trained = gradient_by_distance(model, task, inputs, targets)
            output.save_model(
                model, output.model_path(settings, RECIPE, f"{variant}-seed{seed}"), task)
            runs.append({"seed": seed, "initial": initial, "trained": trained,
                         "solved": result.solved, "sequences_seen": result.sequences_seen,
                         "metric": result.metric, "steps": result.steps,
                         "seconds": round(result.seconds, 2)})
            print(f"{variant} seed {seed}: gradient at distance {len(initial) - 1} / at distance "
                  f"0: {ratio(initial)} initially, {ratio(trained)} after training "
                  f"({'solved' if result.solved else 'not solved'}, {result.steps:,} steps, test "
                  f"mse {result.metric:.4f}, {result.seconds:.0f} s)", flush=True)
        # The bold curves: the median over the seeds, distance by distance.
        measured[variant] = {
            "initial": np.median([run["initial"] for run in runs], axis=0).tolist(),
            "trained": np.median([run["trained"] for run in runs], axis=0).tolist(),
            "runs": runs,
        }

    # Report: the curves as JSON, and the figure.
    out_dir = os.path.join(settings.results, RECIPE)
    output.write_json(os.path.join(out_dir, "gradients.json"), {
        "recipe": RECIPE, "config": dataclasses.asdict(settings),
        "machine": kala.provenance.machine(), "finished_at": output.now(),
        "distance": list(range(settings.seq_len)),
        "cells": measured,
    })
    plot(measured, os.path.join(out_dir, "gradients.png"), settings.seq_len)
    print(f"written to {out_dir}/gradients.json and gradients.png")


def gradient_by_distance(model, task, inputs, targets):
    """Mean over the batch of ‖∂loss/∂x_t‖, indexed by the distance T − 1 − t to the end."""
    inputs = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = task.loss(targets, model(inputs, training=False))
    gradient = tape.gradient(loss, inputs)  # (B, T, D)
    per_step = tf.reduce_mean(tf.norm(gradient, axis=-1), axis=0)  # (T,)
    return per_step.numpy()[::-1].tolist()


def ratio(curve):
    return f"{curve[-1] / curve[0]:.2e}" if curve[0] > 0 else "undefined (0 at distance 0)"


def plot(measured, path, seq_len):
    """The gradient norm against the distance (log axis): dashed initial, solid trained; the
    median over seeds bold, each seed thin. A gradient of exactly 0 has no place on a log axis:
    it is marked with an x on the axis's floor, below every other value."""
    figure, axes = output.new_figure((8, 6))
    curves_drawn = [curve for curves in measured.values()
                    for curve in (curves["initial"], curves["trained"],
                                  *(run[key] for run in curves["runs"]
                                    for key in ("initial", "trained")))]
    positive = [value for curve in curves_drawn for value in curve if value > 0]
    floor = min(positive) / 10 if positive else 1e-30
    zeros_marked = False

    def draw(curve, **style):
        nonlocal zeros_marked
        curve = np.asarray(curve, dtype=float)
        axes.plot(np.where(curve > 0, curve, np.nan), **style)
        zeros = np.flatnonzero(curve <= 0)
        if len(zeros):
            axes.scatter(zeros, [floor] * len(zeros), marker="x", s=12, color=style["color"],
                         label=None if zeros_marked else "exactly 0 (drawn at the floor)")
            zeros_marked = True

    for index, (cell, curves) in enumerate(measured.items()):
        color = f"C{index}"
        for run in curves["runs"]:
            draw(run["initial"], color=color, linestyle="--", linewidth=0.5, alpha=0.5)
            draw(run["trained"], color=color, linewidth=0.5, alpha=0.5)
        seeds = len(curves["runs"])
        draw(curves["initial"], color=color, linestyle="--",
             label=f"{cell}, initial (median of {seeds} seeds; thin: each seed)")
        draw(curves["trained"], color=color, label=f"{cell}, trained (median)")
    axes.set_yscale("log")
    axes.set_ylim(floor / 3, None)
    axes.set_xlabel("distance T − t from the input to the end of the sequence")
    axes.set_ylabel("mean ‖∂loss/∂x_t‖")
    axes.set_title(f"The gradient that reaches back into an adding-problem sequence "
                   f"(T = {seq_len})", fontsize="medium")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2,
                fontsize="small")  # Below the axes, off the data.
    output.save_figure(figure, path)


if __name__ == "__main__":
    flags.run(main)
