"""Serving speed: a kala export's `serving_default`, loaded as a server would load it, against
calling the Keras model it was exported from."""

import dataclasses
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf

from bench import common
from kala import tasks
from kala.export import export_model


def serving_rows(cell, shape, rounds, calls=100, large_batch=256):
    """`serving_default` of a kala export against calling the Keras model, at batch 1 (latency)
    and at `large_batch` (throughput); the two alternate in every round."""
    task = common.Synthetic(shape.time, shape.features)
    model = common.build(cell, "builtin", task, shape)
    with tempfile.TemporaryDirectory() as base_path:
        version = export_model(model, base_path, "bench", **task.serving_options)
        loaded = tf.saved_model.load(version)
        serve = loaded.signatures["serving_default"]
        name = task.input_spec.name
        contenders = {"serving_default": lambda x: serve(**{name: x}),
                      "keras_call": lambda x: model(x, training=False)}
        rows = []
        # About `calls` calls at batch 1 in all, for the 99th percentile; fewer at the large batch.
        per_round = -(-calls // rounds)
        for batch, count in ((1, per_round), (large_batch, max(2, per_round // 20))):
            inputs = tf.constant(task.batch(3, tasks.TEST_STREAM, 0, batch)[0])
            times = {impl: [] for impl in contenders}
            for function in contenders.values():
                function(inputs)  # Warm up.
            for _ in range(rounds):
                for impl, function in contenders.items():
                    for _ in range(count):
                        started = time.perf_counter()
                        np.asarray(next(iter(_outputs(function(inputs)))))
                        times[impl].append(time.perf_counter() - started)
            for impl, seconds in times.items():
                row = {"measure": "serving", "impl": impl, "cell": cell,
                       "implementation": "builtin", "shape": dataclasses.asdict(shape),
                       "batch": batch, "calls": len(seconds),
                       "p50_ms": 1000 * _percentile(seconds, 50),
                       "p99_ms": 1000 * _percentile(seconds, 99),
                       "sequences_per_second": batch / statistics.median(seconds)}
                rows.append(row)
            served, called = rows[-2], rows[-1]
            served["vs_keras_call"] = (served["sequences_per_second"]
                                       / called["sequences_per_second"])
    return rows


def _outputs(result):
    """A signature answers a dict of outputs, the Keras model a tensor: both as a sequence."""
    return result.values() if isinstance(result, dict) else [result]


def _percentile(values, q):
    return float(np.percentile(np.asarray(values), q))
