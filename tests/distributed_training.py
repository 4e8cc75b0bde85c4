"""A tiny adding-problem run under the strategy its flags name, for tests/test_distribute.py.

    python tests/distributed_training.py --distribute mirrored --devices 2 --out RUN.json
    python -m kala.distribute --workers 2 tests/distributed_training.py --out RUN.json

Writes (the chief alone) the loss of every step, the outcome and what ran as JSON. With
`--alone-first`, it first trains the same model on one device in the same process (after the
CPU was split, so the strategy's devices exist) and writes that run too.
"""

import argparse
import json
import os
import sys

import keras

import kala

SETTINGS = {"seq_len": 10, "units": 16, "batch_size": 16, "learning_rate": 1e-2}


def train(strategy, steps, checkpoint_dir=None):
    task = kala.tasks.AddingProblem(SETTINGS["seq_len"], test_size=256)
    keras.utils.set_random_seed(0)
    with kala.distribute.scope(strategy):
        model = kala.build_model("lstm", units=SETTINGS["units"], name="tiny",
                                 **task.model_options)
    losses = []
    trainer = kala.Trainer(model, task, steps=steps, batch_size=SETTINGS["batch_size"],
                           learning_rate=SETTINGS["learning_rate"], log_every=1, eval_every=50,
                           checkpoint_dir=checkpoint_dir, strategy=strategy)
    result = trainer.run(on_progress=lambda progress: losses.append(progress.loss))
    return trainer, {"losses": losses, "solved": result.solved, "steps": result.steps,
                     "sequences_seen": result.sequences_seen, "metric": result.metric,
                     "resumed_from_step": result.resumed_from_step,
                     **kala.distribute.describe(strategy)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--distribute", default="none", choices=kala.distribute.KINDS)
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--alone-first", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    strategy = kala.distribute.make_strategy(args.distribute, args.devices)
    runs = []
    if args.alone_first:
        runs.append(train(None, args.steps)[1])
    trainer, run = train(strategy, args.steps, args.checkpoint_dir)
    runs.append(run)
    if trainer.is_chief:
        with open(args.out + ".tmp", "w") as file:
            json.dump(runs, file)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    sys.exit(main())
