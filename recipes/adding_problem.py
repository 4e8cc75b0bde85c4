"""The adding problem: remember two numbers across a long sequence, then add them.

What it shows: the essay's long-term dependency problem in its classic benchmark. Each step of a
sequence carries a random value and a marker; two steps are marked, far apart, and at the very end
the network must output the sum of the two marked values. Everything between them is noise it
must ignore while holding on to the first number. With the defaults (T = 100, 64 units, Adam
1e-2, gradients clipped to norm 1, 32 sequences a step, a budget of 3,000 steps), an LSTM learns
the task and a plain RNN (`--cell simple_rnn`) stays at the baseline of always guessing 1 (MSE
0.167): "Understanding LSTM Networks", section "The Problem of Long-Term Dependencies".

Two definitions are in use (kala.tasks.AddingProblem): the 2015/16 convention (the default) and
Hochreiter & Schmidhuber's original Experiment 4 (`--definition 1997`).

Run it:
    python recipes/adding_problem.py                     # LSTM, T = 100
    python recipes/adding_problem.py --cell simple_rnn   # the same budget for a plain RNN
    python recipes/adding_problem.py --smoke --export    # a tiny run, exported for TF Serving
"""

import dataclasses
import os

import cli

RECIPE = "adding_problem"


# Setup: the defaults live here, once; every field is also a command-line flag.
@dataclasses.dataclass
class Config(cli.RecipeConfig):
    seq_len: int = dataclasses.field(default=100, metadata={
        "help": "T: the sequence length (the 1997 definition draws lengths in [T, 1.1 T])"})
    definition: str = dataclasses.field(default="2016", metadata={
        "help": "which adding problem: 2016 (Le et al.; Arjovsky et al.) or 1997 (Hochreiter & "
                "Schmidhuber)", "choices": ["2016", "1997"]})


# A tiny run for the tests: the same code path in a few seconds.
SMOKE = {"units": 8, "seq_len": 20, "steps": 20, "batch_size": 8, "eval_every": 10}


def main(argv=None):
    config = cli.parse_config(Config, __doc__, argv, smoke=SMOKE)
    # TensorFlow takes seconds to import: load it once the arguments are known to be good.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import common
    import kala

    with cli.bad_arguments_exit():
        # Data: fresh random sequences for every step, and a fixed test split to score on.
        task = kala.tasks.AddingProblem(
            config.seq_len, definition=config.definition,
            test_size=256 if config.smoke else None,
        )
        # Model: one recurrent layer reads the sequence; a linear unit reads its last state.
        keras.utils.set_random_seed(config.seed)
        model = common.build_model(config.cell, config.units, task,
                                   implementation=config.implementation,
                                   name=f"{RECIPE}_{config.cell.replace('+', '_')}")

    # Train: until the task's criterion is met (test MSE below 0.01; under --definition 1997,
    # fewer than 1% of test sequences off by 0.04 or more), or the budget is spent.
    run_name = cli.run_name(config, SMOKE, ["definition", "cell", "seq_len", "seed"])
    common.run_recipe(RECIPE, config, task, model, run_name)

    # What you should see: with the defaults, the LSTM's test MSE sits at the baseline for a
    # while, as if it had learnt nothing, then drops within a few hundred steps once it has
    # found the two marked values; the SimpleRNN's stays at the baseline to the end.


if __name__ == "__main__":
    main()
