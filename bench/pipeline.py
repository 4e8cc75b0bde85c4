"""The input pipeline: how fast each task's tf.data pipeline makes batches alone, against the
rate training consumes them, and what training on it costs against training on one fixed batch.

- `pipeline_rows`: the synthetic task of the training benchmark at one shape, against the
  fastest of kala's loops there.
- `task_rows`: the tasks the recipes train, each at its recipe's batch size, with kala's LSTM
  of 64 units: the pipeline alone, the Trainer on it, and the Trainer on one batch made before
  (no pipeline at all), in the same rounds.
"""

import dataclasses
import statistics
import time

import tensorflow as tf

import kala
import kala.tasks1997
from bench import common, training
from kala import tasks

# Each task as a recipe trains it: its name in the tables, how to make it, the recipe's batch
# size. `--quick` takes the first; `--tasks` chooses.
TASKS = {
    "long_gap": ("long-gap sentences (gap 100)", lambda: tasks.LongGap(100), 64),
    "adding": ("adding problem (T = 100)", lambda: tasks.AddingProblem(100), 32),
    "adding_1997": ("adding problem, 1997 (T = 1000)",
                    lambda: tasks.AddingProblem(1000, definition="1997"), 32),
    "copy": ("copy memory (T = 100)", lambda: tasks.CopyMemory(100), 32),
    "reber": ("embedded Reber grammar", kala.tasks1997.EmbeddedReber, 32),
    "temporal_order": ("temporal order (4 classes)", lambda: kala.tasks1997.TemporalOrder(4),
                       32),
}


def pipeline_alone(task, batch_size, batches, seed, start):
    """Sequences per second of the task's training pipeline alone, over `batches` batches
    after the first."""
    iterator = iter(task.train_dataset(batch_size, seed=seed, start=start))
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - started)


def pipeline_rows(shape, rounds, training_rate, batches=50):
    """Sequences per second the synthetic task's pipeline makes alone at `shape`, against
    `training_rate`, the rate training consumed it at (the fastest of kala's loops there)."""
    task = common.Synthetic(shape.time, shape.features)
    rates = [pipeline_alone(task, shape.batch, batches, 3, round_index * batches)
             for round_index in range(rounds)]
    rate = statistics.median(rates)
    return [{"measure": "pipeline", "impl": "tf.data", "task": "synthetic", "cell": None,
             "implementation": None, "shape": dataclasses.asdict(shape),
             "sequences_per_second": rate, "rounds": rates,
             "training_sequences_per_second": training_rate,
             "vs_training": rate / training_rate}]


class FixedBatch:
    """`task` with one batch, made before training, as its whole training stream: what the
    Trainer costs without any pipeline."""

    def __init__(self, task, batch_size):
        self.task = task
        self.fixed = task.batch(5, tasks.TRAIN_STREAM, 0, batch_size)

    def __getattr__(self, name):
        return getattr(self.task, name)

    def train_dataset(self, batch_size, seed=0, start=0, **options):
        return tf.data.Dataset.from_tensors(self.fixed).repeat()


def task_rows(names, rounds, round_seconds, units=64):
    """For each task of `names` (keys of TASKS): the pipeline alone, kala's Trainer (an LSTM
    of `units`, as users run it) on the pipeline, and the same on one fixed batch, timed in
    turn in every round; the headroom and the cost of the pipeline as ratios within rounds."""
    rows = []
    for name in names:
        title, make, batch_size = TASKS[name]
        task = make()
        model = kala.build_model("lstm", units, **task.model_options)
        on_pipeline = training.KalaLoop(common.copy(model), task, batch_size)
        on_fixed = training.KalaLoop(common.copy(model), FixedBatch(task, batch_size),
                                     batch_size)
        per_call = on_pipeline.steps_per_call
        steps = training.steps_per_round(on_pipeline.run(per_call) / per_call, round_seconds,
                                         per_call)
        alone, trained, fixed = [], [], []
        for round_index in range(rounds):
            timed = [
                lambda: alone.append(pipeline_alone(task, batch_size, steps, 7,
                                                    round_index * steps)),
                lambda: trained.append(steps * batch_size / on_pipeline.run(steps)),
                lambda: fixed.append(steps * batch_size / on_fixed.run(steps)),
            ]
            for run in timed if round_index % 2 == 0 else reversed(timed):
                run()
        rows.append({
            "measure": "task_pipeline", "task": name, "title": title, "batch_size": batch_size,
            "units": units, "max_length": task.max_length, "steps_per_round": steps,
            "pipeline_rounds": alone, "training_rounds": trained, "fixed_batch_rounds": fixed,
            "pipeline_sequences_per_second": statistics.median(alone),
            "training_sequences_per_second": statistics.median(trained),
            "fixed_batch_sequences_per_second": statistics.median(fixed),
            "headroom": statistics.median(a / b for a, b in zip(alone, trained)),
            "vs_fixed_batch": statistics.median(a / b for a, b in zip(trained, fixed)),
        })
    return rows
