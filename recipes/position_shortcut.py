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
    python recipes/position_shortcut.py              # SimpleRNN and LSTM at gap 100
    python recipes/position_shortcut.py --smoke      # a tiny run, for the tests
"""

import dataclasses
import os
import sys

import cli

RECIPE = "position_shortcut"

# The rate that solved the most runs of `long_gap.py --position fixed --gaps 100`, then in the
# fewest sequences, at 1e-3, 3e-3 or 1e-2 (results/fixed_position/long_gap/summary.md).
FIXED_POSITION_RATES = {"simple_rnn": 1e-3, "lstm": 1e-2}


# Setup: the defaults live here, once; every field is also a command-line flag.
@dataclasses.dataclass
class Config:
    cells: str = dataclasses.field(default="simple_rnn,lstm", metadata={
        "help": "comma-separated cells to train"})
    gap: int = dataclasses.field(default=100, metadata={
        "help": "words between the country sentence and the question, in training"})
    shifts: str = dataclasses.field(default="-20,-10,-5,-2,-1,0,1,2,5,10,20", metadata={
        "help": "comma-separated moves of the country, in words, to test at (negative: nearer "
                "to the question; write --shifts=-5,0,5 when the first is negative)"})
    units: int = dataclasses.field(default=64, metadata={"help": "size of every cell's state"})
    steps: int = dataclasses.field(default=4000, metadata={"help": "budget, in steps"})
    batch_size: int = dataclasses.field(default=64, metadata={"help": "sequences per step"})
    learning_rate: str = dataclasses.field(default="best", metadata={
        "help": "Adam's learning rate: 'best' for each cell's own (see the docstring), or one "
                "rate for every cell"})
    seeds: int = dataclasses.field(default=3, metadata={
        "help": "seeds per cell (0, 1, ...): each sets the weights and the training data"})
    eval_every: int = dataclasses.field(default=100, metadata={
        "help": "steps between evaluations on the test split"})
    smoke: bool = dataclasses.field(default=False, metadata={
        "help": "a tiny run to check that everything works"})
    results: str = dataclasses.field(default="results", metadata={
        "help": "directory for shifts.json and shifts.png (in DIR/position_shortcut/)"})


SMOKE = {"gap": 6, "shifts": "-2,0,2", "units": 8, "steps": 20, "batch_size": 8,
         "eval_every": 10, "seeds": 2}


def plot(measured, path, gap):
    import common

    figure, axes = common.new_figure((6.5, 5))
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
    axes.axhline(measured["baseline"], color="grey", linestyle="--", label="chance")
    axes.axvline(0, color="grey", linewidth=0.5)
    axes.set_ylim(-0.02, 1.05)
    axes.set_xlabel(f"country moved by (words; trained at exactly {gap} words from the question)")
    axes.set_ylabel("test error rate")
    axes.set_title("Trained with the country at a fixed distance")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize="small")
    common.save_figure(figure, path)


def main(argv=None):
    config = cli.parse_config(Config, __doc__, argv, smoke=SMOKE)
    cells = cli.parse_cells(config.cells)
    shifts = cli.parse_list(config.shifts, int, "shifts")
    if config.gap + min(shifts) < 1:
        cli.fail(f"--shifts {config.shifts}: a shift of {min(shifts)} leaves less than one word "
                 f"of gap {config.gap}")
    if config.learning_rate == "best":
        missing = [cell for cell in cells if cell not in FIXED_POSITION_RATES]
        if missing:
            cli.fail(f"--learning-rate best: no rate measured for {', '.join(missing)}; "
                     "pass one with --learning-rate")
        rates = {cell: FIXED_POSITION_RATES[cell] for cell in cells}
    else:
        rate = cli.parse_list(config.learning_rate, float, "learning-rate", positive=True)
        if len(rate) != 1:
            cli.fail(f"--learning-rate expects 'best' or one rate, got {config.learning_rate!r}")
        rates = {cell: rate[0] for cell in cells}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import common
    import kala

    task = kala.tasks.LongGap(config.gap, position="fixed", test_size=512)
    shifted = {shift: kala.tasks.LongGap(config.gap + shift, position="fixed", test_size=512)
               for shift in shifts}
    measured = {"recipe": RECIPE, "config": dataclasses.asdict(config), "shifts": shifts,
                "baseline": task.baseline, "machine": common.machine(), "cells": {}}
    for cell in cells:
        runs = []
        for seed in range(config.seeds):
            learning_rate = rates[cell]
            keras.utils.set_random_seed(seed)
            model = common.build_model(cell, config.units, task)
            print(f"{RECIPE}: training {cell} (lr {learning_rate:g}, seed {seed}) with the "
                  f"country exactly {config.gap} words before the question", flush=True)
            printer = common.ProgressPrinter(task.metric_name, task.baseline, config.steps)
            trainer = kala.Trainer(
                model, task, steps=config.steps, batch_size=config.batch_size,
                learning_rate=learning_rate, seed=seed, eval_every=config.eval_every)
            try:
                result = common.run_until_ctrl_c(trainer, printer)
            except KeyboardInterrupt:
                print(f"\n{RECIPE}: interrupted; nothing written", file=sys.stderr)
                sys.exit(cli.EXIT_INTERRUPTED)
            print(common.summary_line(RECIPE, cell, config.batch_size, result))
            # Inference: the trained model on sentences with the country moved.
            errors = [evaluate(model, shifted[shift]) for shift in shifts]
            runs.append({"seed": seed, "learning_rate": learning_rate, "solved": result.solved,
                         "sequences_seen": result.sequences_seen, "error_rate": errors})
            print("  country moved by " + ", ".join(
                f"{shift:+d}: {error:.0%} wrong" for shift, error in zip(shifts, errors)),
                flush=True)
        solved = [run["error_rate"] for run in runs if run["solved"]]
        # The median over the runs that solved the task: the others have nothing to shift.
        measured["cells"][cell] = {
            "error_rate": np.median(solved, axis=0).tolist() if solved else None,
            "runs": runs}

    out_dir = os.path.join(config.results, RECIPE)
    common.write_json(os.path.join(out_dir, "shifts.json"), measured)
    plot(measured, os.path.join(out_dir, "shifts.png"), config.gap)
    print(f"written to {out_dir}/shifts.json and shifts.png")


def evaluate(model, task):
    """The mean test error rate of `model` on `task`'s fixed test split."""
    import numpy as np

    errors = [task.metric(targets, model(inputs, training=False)).numpy()
              for inputs, targets in task.test_dataset()]
    return float(np.concatenate(errors).mean())


if __name__ == "__main__":
    main()
