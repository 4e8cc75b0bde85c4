"""The input pipeline alone: how fast the task's tf.data pipeline makes batches, against the
rate training consumes them."""

import dataclasses
import statistics
import time

from bench import common


def pipeline_rows(shape, rounds, training_rate, batches=50):
    """Sequences per second the task's tf.data pipeline makes alone, against `training_rate`,
    the rate training consumed it at (the fastest of kala's loops at this shape)."""
    task = common.Synthetic(shape.time, shape.features)
    rates = []
    for round_index in range(rounds):
        iterator = iter(task.train_dataset(shape.batch, seed=3, start=round_index * batches))
        next(iterator)
        started = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * shape.batch / (time.perf_counter() - started))
    rate = statistics.median(rates)
    return [{"measure": "pipeline", "impl": "tf.data", "cell": None, "implementation": None,
             "shape": dataclasses.asdict(shape), "sequences_per_second": rate, "rounds": rates,
             "training_sequences_per_second": training_rate,
             "vs_training": rate / training_rate}]
