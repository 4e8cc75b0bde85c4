"""Copy memory: read ten symbols, wait T steps, then write them out again in order.

What it shows: a long-term dependency where the network must hold a whole phrase, not one number,
across the gap: the essay's "I grew up in France … I speak fluent French", with the gap made of
blanks. The task is Arjovsky, Shah & Bengio's (2016): ten symbols from an alphabet of eight, T - 1
blanks, a delimiter that says "now repeat", and ten more blanks during which the ten symbols must
come back. A model that remembers nothing writes blanks and then guesses, which scores a
cross-entropy of 10·log(8) / (T + 20) per step: the baseline. Arjovsky et al. saw an LSTM beat it
only at T = 100 of T in {100, …, 500}.

Run it:
    python recipes/copy_memory.py                       # LSTM, T = 10: about 30 s
    python recipes/copy_memory.py --cell simple_rnn     # the same budget for a plain RNN
    python recipes/copy_memory.py --smoke --export      # a tiny run, exported for TF Serving

What you should see (2-core CPU): the loss falls quickly to the baseline (the network learns to
write blanks and then to guess) and stays there while nothing ties the output to the input. With
the defaults the LSTM then gets below it, to about half the baseline (0.33 against 0.69 nats) in
3,000 steps (96,000 sequences, 29 s), without solving the task (below 1% of the baseline); the
SimpleRNN stays at the baseline (21 s).
"""

import dataclasses
import os
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras

import kala
import output

RECIPE = "copy_memory"
Cell = typing.Literal[kala.models.VARIANTS]
Implementation = typing.Literal[kala.models.IMPLEMENTATIONS]
Distribute = typing.Literal[kala.distribute.KINDS]
Precision = typing.Literal[kala.training.PRECISIONS]


@dataclasses.dataclass
class Settings:
    seq_len: int = 10  # T: the gap between the last symbol read and the delimiter, plus one
    embedding_dim: int = 16  # size of each symbol's embedding
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
    results: str = "runs"  # writes result.json and model.keras into DIR/copy_memory/RUN/
    checkpoint_dir: str = ""  # save checkpoints here and resume from them (default: none)
    resume_from_previous: bool = False  # if the latest checkpoint is damaged, use an older one
    logdir: str = ""  # write TensorBoard scalars here (default: none)


# A tiny run for the tests: the same code path in a few seconds.
SMOKE = {"units": 8, "seq_len": 5, "steps": 20, "batch_size": 8, "eval_every": 10}


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    output.check_export_target(settings, RECIPE)
    # Devices: one, or several under a tf.distribute strategy; the precision Keras computes in.
    strategy = output.strategy(settings)
    # Where this run's results go.
    run_name = output.run_name(settings, SMOKE, ["cell", "seq_len", "seed"])
    run_dir = os.path.join(settings.results, RECIPE, run_name)

    with flags.bad_arguments():
        # Data: symbols as token ids, fresh for every step, and a fixed test split.
        task = kala.tasks.CopyMemory(settings.seq_len,
                                     test_size=256 if settings.smoke else 1024)

        # Model: an embedding turns each symbol into a vector, the recurrent layer reads them
        # one by one, and at every step a softmax says which symbol comes next in the output.
        keras.utils.set_random_seed(settings.seed)
        with kala.distribute.scope(strategy):  # Under a strategy its variables are mirrored.
            model = kala.build_model(
                **kala.models.variant(settings.cell, task.max_length), units=settings.units,
                embedding_dim=settings.embedding_dim, implementation=settings.implementation,
                name=f"{RECIPE}_{settings.cell.replace('+', '_')}", **task.model_options)

        # Train: until the cross-entropy falls below 1% of the baseline, or the budget is spent.
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
