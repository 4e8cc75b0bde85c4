"""What a network learns when the country is always at the same distance from the question.

What it shows: why a naive version of the long-gap task misleads. If every training sentence puts
"i grew up in <country> ." exactly GAP words before "i speak fluent" (`LongGap(position="fixed")`),
a network can solve the task without remembering the country: it is enough to read whatever word
sat GAP steps back. This recipe trains each cell on that version until it is solved, then asks it
about sentences where the country sits a few words earlier or later than in training. A network
that remembers the country answers them as well as before; one that learnt the distance does not.

Each cell trains at the learning rate that did best for it on this fixed version of the task
(FIXED_POSITION_RATES, from the grid in results/fixed_position/), with three seeds.

Run it:
    python recipes/position_shortcut.py              # SimpleRNN and LSTM at gap 100: 5 to 15 min
    python recipes/position_shortcut.py --smoke      # a tiny run, for the tests

What you should see (2-core CPU): the SimpleRNN solves the fixed task in every seed, the LSTM in
most (two of three in docs/findings.md). Then, moved by one or two words, the SimpleRNN gets 88%
to 100% of the sentences wrong in every seed, while an LSTM that solved it gets at most 2
sentences of 512 wrong at any shift from -20 to +20: it learnt the country, the SimpleRNN its
position.
"""

import dataclasses
import os
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras
import numpy as np

import kala
import kala.provenance
import output

RECIPE = "position_shortcut"
Cell = typing.Literal[kala.models.VARIANTS]
Rate = typing.Literal["best"] | float

# The rate that solved the most runs of `long_gap.py --position fixed --gaps 100`, then in the
# fewest sequences, at 1e-3, 3e-3 or 1e-2 (results/fixed_position/long_gap/summary.md).
FIXED_POSITION_RATES = {"simple_rnn": 1e-3, "lstm": 1e-2}
SHIFTS = (-20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20)


@dataclasses.dataclass
class Settings:
    cells: tuple[Cell, ...] = ("simple_rnn", "lstm")  # the cells to train
    gap: int = 100  # words between the country sentence and the question, in training
    shifts: tuple[int, ...] = SHIFTS  # moves of the country to test (< 0: nearer; --shifts=-5,5)
    units: int = 64  # size of every cell's state
    steps: int = 4000  # budget, in steps
    batch_size: int = 64  # sequences per step
    learning_rate: Rate = "best"  # best: each cell's own (see above); or one rate for every cell
    seeds: int = 3  # seeds per cell (0, 1, ...): each sets the weights and the training data
    eval_every: int = 100  # steps between evaluations on the test split
    smoke: bool = False  # a tiny run to check that everything works
    results: str = "runs"  # writes shifts.json and shifts.png into DIR/position_shortcut/


SMOKE = {"gap": 6, "shifts": (-2, 0, 2), "units": 8, "steps": 20, "batch_size": 8,
         "eval_every": 10, "seeds": 2}


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    if settings.gap + min(settings.shifts) < 1:
        flags.fail(f"--shifts {','.join(map(str, settings.shifts))}: a shift of "
                   f"{min(settings.shifts)} leaves less than one word of gap {settings.gap}")
    if settings.learning_rate == "best":
        missing = [cell for cell in settings.cells if cell not in FIXED_POSITION_RATES]
        if missing:
            flags.fail(f"--learning-rate best: no rate measured for {', '.join(missing)}; "
                       "pass one with --learning-rate")
        rates = {cell: FIXED_POSITION_RATES[cell] for cell in settings.cells}
    else:
        rates = dict.fromkeys(settings.cells, settings.learning_rate)

    # Data: the country exactly GAP words back for training, and moved by each shift to test.
    with flags.bad_arguments():
        task = kala.tasks.LongGap(settings.gap, position="fixed", test_size=512)
        shifted = {shift: kala.tasks.LongGap(settings.gap + shift, position="fixed",
                                             test_size=512)
                   for shift in settings.shifts}
    measured = {"recipe": RECIPE, "config": dataclasses.asdict(settings),
                "shifts": list(settings.shifts), "baseline": task.baseline,
                "machine": kala.provenance.machine(), "cells": {}}
    for variant in settings.cells:
        runs = []
        for seed in range(settings.seeds):
            # Model: the same embedding, units and head for every cell.
            learning_rate = rates[variant]
            keras.utils.set_random_seed(seed)
            model = kala.build_model(
                **kala.models.variant(variant, task.max_length), units=settings.units,
                **task.model_options)

            # Train: until solved (fewer than 5% wrong) or out of budget.
            print(f"{RECIPE}: training {variant} (lr {learning_rate:g}, seed {seed}) with the "
                  f"country exactly {settings.gap} words before the question", flush=True)
            trainer = kala.Trainer(
                model, task, steps=settings.steps, batch_size=settings.batch_size,
                learning_rate=learning_rate, seed=seed, eval_every=settings.eval_every)
            result = trainer.run(on_progress=output.ProgressPrinter(task, settings.steps))
            print(output.summary_line(RECIPE, variant, settings.batch_size, result))
            output.save_model(
                model, output.model_path(settings, RECIPE, f"{variant}-seed{seed}"), task)

            # Inference: the trained model on sentences with the country moved.
            errors = [evaluate(model, shifted[shift]) for shift in settings.shifts]
            runs.append({"seed": seed, "learning_rate": learning_rate, "solved": result.solved,
                         "sequences_seen": result.sequences_seen, "error_rate": errors})
            print("  country moved by " + ", ".join(
                f"{shift:+d}: {error:.0%} wrong" for shift, error in zip(settings.shifts, errors)),
                flush=True)
        solved = [run["error_rate"] for run in runs if run["solved"]]
        # The median over the runs that solved the task: the others have nothing to shift.
        measured["cells"][variant] = {
            "error_rate": np.median(solved, axis=0).tolist() if solved else None,
            "runs": runs}

    # Report: the error rates as JSON, and the figure.
    out_dir = os.path.join(settings.results, RECIPE)
    measured["finished_at"] = output.now()
    output.write_json(os.path.join(out_dir, "shifts.json"), measured)
    plot(measured, os.path.join(out_dir, "shifts.png"), settings.gap)
    print(f"written to {out_dir}/shifts.json and shifts.png")


def evaluate(model, task):
    """The mean test error rate of `model` on `task`'s fixed test split."""
    errors = [task.metric(targets, model(inputs, training=False)).numpy()
              for inputs, targets in task.test_dataset()]
    return float(np.concatenate(errors).mean())


def plot(measured, path, gap):
    """The test error rate against the shift: each seed that solved the task thin, their median
    bold, chance dashed."""
    figure, axes = output.new_figure((6.5, 5))
    for index, (cell, curves) in enumerate(measured["cells"].items()):
        color = f"C{index}"
        for run in curves["runs"]:
            if run["solved"]:
                axes.plot(measured["shifts"], run["error_rate"], color=color, linewidth=0.5,
                          alpha=0.5)
        solved = sum(run["solved"] for run in curves["runs"])
        if solved:
            axes.plot(measured["shifts"], curves["error_rate"], color=color, marker="o",
                      label=f"{cell} (median of the {solved} of {len(curves['runs'])} seeds "
                            "that solved it)")
        else:  # Nothing to draw: say so.
            axes.plot([], [], color=color, linestyle=":",
                      label=f"{cell}: none of the {len(curves['runs'])} seeds solved it")
    axes.axhline(measured["baseline"], color="grey", linestyle="--", label="chance")
    axes.axvline(0, color="grey", linewidth=0.5)
    axes.set_ylim(-0.02, 1.05)
    axes.set_xlabel(f"country moved by (words; trained at exactly {gap} words from the question)")
    axes.set_ylabel("test error rate")
    axes.set_title("Trained with the country at a fixed distance")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize="small")
    output.save_figure(figure, path)


if __name__ == "__main__":
    flags.run(main)
