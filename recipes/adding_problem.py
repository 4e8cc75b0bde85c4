"""The adding problem: remember two numbers across a long sequence, then add them.

What it shows: the essay's long-term dependency problem ("Understanding LSTM Networks", section
"The Problem of Long-Term Dependencies") in its classic benchmark. Each step of a sequence
carries a random value and a marker; two steps are marked, far apart, and at the very end the
network must output the sum of the two marked values. Everything between them is noise it must
ignore while holding on to the first number.

Two definitions are in use (kala.tasks.AddingProblem): the 2015/16 convention (the default) and
Hochreiter & Schmidhuber's original Experiment 4 (`--definition 1997`, judged by the paper's own
criterion; recipes/paper_1997.py runs it beside the paper's other experiments).

Run it:
    python recipes/adding_problem.py                     # LSTM, T = 100: about 20 s
    python recipes/adding_problem.py --cell simple_rnn   # the same budget for a plain RNN
    python recipes/adding_problem.py --definition 1997 --cell lstm+chrono   # the paper's own
    python recipes/adding_problem.py --smoke --export    # a tiny run, exported for TF Serving

What you should see (2-core CPU): with the defaults (T = 100, 64 units, Adam 1e-2, gradients
clipped to norm 1, 32 sequences a step, a budget of 3,000 steps) the LSTM's test MSE sits at the
baseline of always guessing 1 (MSE 0.167) for about a thousand steps, as if it had learnt
nothing, then drops below 0.01 within a few hundred steps once it has found the two marked
values: solved after some 40,000 sequences, in about 20 seconds. The SimpleRNN stays at the
baseline to the end of its budget. On the 1997 definition the default LSTM stays at the
constant guess too; with chrono initialization it solves T = 100 after about 30,000 sequences
(docs/paper_1997.md).
"""

import dataclasses
import os
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras

import kala
import output

RECIPE = "adding_problem"
Cell = typing.Literal[kala.models.VARIANTS]
Implementation = typing.Literal[kala.models.IMPLEMENTATIONS]
Distribute = typing.Literal[kala.distribute.KINDS]
Precision = typing.Literal[kala.training.PRECISIONS]


@dataclasses.dataclass
class Settings:
    seq_len: int = 100  # T, the sequence length (under 1997, lengths are drawn in [T, 1.1 T])
    definition: typing.Literal["2016", "1997"] = "2016"  # which adding problem (see above)
    cell: Cell = "lstm"  # recurrent cell, and its initialization if not the default
    implementation: Implementation = "auto"  # Keras's layer (cuDNN), the essay's, or auto
    units: int = 64  # size of the recurrent state
    steps: int = 3000  # training budget in steps (each step is one batch of fresh sequences)
    batch_size: int = 32  # sequences per step
    learning_rate: float = 1e-2  # Adam's learning rate
    clipnorm: float = 1.0  # each gradient is clipped to this norm
    seed: int = 0  # seed of the initial weights and of the training sequences
    distribute: Distribute = "none"  # train on several devices or workers (README: Scaling out)
    devices: int = 0  # with --distribute: how many GPUs (0: all), or CPU devices to split into
    precision: Precision = "float32"  # mixed_*: compute in 16 bits, keep weights and loss float32
    eval_every: int = 100  # steps between evaluations on the test split
    smoke: bool = False  # a tiny run to check that everything works (seconds on a CPU)
    export: bool = False  # export the trained model for TF Serving
    saved_models: str = "saved_models"  # TF Serving model base path for --export
    model_name: str = ""  # name to export the model under (default: the recipe's name)
    results: str = "runs"  # writes result.json and model.keras into DIR/adding_problem/RUN/
    checkpoint_dir: str = ""  # save checkpoints here and resume from them (default: none)
    resume_from_previous: bool = False  # if the latest checkpoint is damaged, use an older one
    logdir: str = ""  # write TensorBoard scalars here (default: none)


# A tiny run for the tests: the same code path in a few seconds.
SMOKE = {"units": 8, "seq_len": 20, "steps": 20, "batch_size": 8, "eval_every": 10}


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    output.check_export_target(settings, RECIPE)
    # Devices: one, or several under a tf.distribute strategy; the precision Keras computes in.
    strategy = output.strategy(settings)
    # Where this run's results go.
    run_name = output.run_name(settings, SMOKE, ["definition", "cell", "seq_len", "seed"])
    run_dir = os.path.join(settings.results, RECIPE, run_name)

    with flags.bad_arguments():
        # Data: fresh random sequences for every step, and a fixed test split to score on.
        task = kala.tasks.AddingProblem(settings.seq_len, definition=settings.definition,
                                        test_size=256 if settings.smoke else None)

        # Model: one recurrent layer reads the sequence; a linear unit reads its last state.
        keras.utils.set_random_seed(settings.seed)
        with kala.distribute.scope(strategy):  # Under a strategy its variables are mirrored.
            model = kala.build_model(
                **kala.models.variant(settings.cell, task.max_length), units=settings.units,
                implementation=settings.implementation,
                name=f"{RECIPE}_{settings.cell.replace('+', '_')}", **task.model_options)

        # Train: until the task's criterion is met (test MSE below 0.01; under --definition
        # 1997 the paper's: the last 2,000 training sequences all within 0.04, then at most 1
        # of 2,560 test sequences off by 0.04 or more), or the budget is spent.
        trainer = kala.Trainer(
            model, task, steps=settings.steps, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, clipnorm=settings.clipnorm,
            seed=settings.seed, eval_every=settings.eval_every,
            checkpoint_dir=settings.checkpoint_dir or None, logdir=settings.logdir or None,
            resume_from_previous=settings.resume_from_previous, strategy=strategy)
    if trainer.is_chief:  # The chief (worker 0) alone writes results: locked for this run.
        output.claim(run_dir)
    output.starting(RECIPE, settings, task, model, trainer)
    with output.training(RECIPE, trainer, settings.checkpoint_dir):
        result = trainer.run(on_progress=output.ProgressPrinter(task, settings.steps))
    if not trainer.is_chief:  # The other workers trained the same steps; the chief reports.
        kala.distribute.barrier(strategy)
        return

    # Report: the result as JSON beside the trained model, the model for TF Serving if asked,
    # and the run in one line.
    output.write_json(os.path.join(run_dir, "result.json"), output.run_record(
        RECIPE, settings, trainer, result, output.outcome(result)))
    output.save_model(model, os.path.join(run_dir, "model.keras"), task)
    print(f"result.json and model.keras written to {run_dir}/")
    if settings.export:
        output.export(model, task, settings, RECIPE)
    print(output.summary_line(RECIPE, settings.cell, settings.batch_size, result))
    kala.distribute.barrier(strategy)  # The other workers wait for the chief to end.


if __name__ == "__main__":
    flags.run(main)
