"""Precision: kala's training loop under each of Keras's precision policies, at one shape.

The same LSTM (Keras's layer, the same initial weights) is built under float32, mixed_float16
and mixed_bfloat16 and trained by kala's loop on the same batches, the policies taking turns in
every round. 16-bit maths pays on a CPU only where it has instructions for it (AVX-512-BF16 or
AMX for bfloat16, AVX-512-FP16 for float16): each row carries the CPU's flags.
"""

import dataclasses
import statistics

import keras

from bench import common, training
from kala import provenance
from kala.training import PRECISIONS


def precision_rows(shape, rounds, round_seconds, policies=PRECISIONS):
    """Sequences per second under each policy in `policies`, and each one's ratio to float32
    (the median of the ratios within each round)."""
    task = common.Synthetic(shape.time, shape.features)
    loops = []
    for policy in policies:
        keras.mixed_precision.set_global_policy(policy)
        try:
            loops.append(training.KalaLoop(common.build("lstm", "builtin", task, shape), task,
                                           shape.batch))
        finally:
            keras.mixed_precision.set_global_policy("float32")
    # Steps per round from the float32 loop's time for steps beyond the first.
    step_seconds = max((loops[0].run(3) - loops[0].run(1)) / 2, 1e-4)
    steps = max(3, round(round_seconds / step_seconds))
    rates = [[] for _ in loops]
    for round_index in range(rounds):
        order = range(len(loops))
        for index in order if round_index % 2 == 0 else reversed(order):
            rates[index].append(steps * shape.batch / loops[index].run(steps))
    features = provenance.cpu_features()
    rows = []
    for policy, rate in zip(policies, rates):
        median = statistics.median(rate)
        rows.append({
            "measure": "precision", "impl": "kala", "cell": "lstm", "precision": policy,
            "shape": dataclasses.asdict(shape), "sequences_per_second": median,
            "ms_per_step": 1000 * shape.batch / median, "rounds": rate,
            "steps_per_round": steps, "cpu_features": features,
            "vs_float32": statistics.median(a / b for a, b in zip(rate, rates[0])),
        })
    return rows
