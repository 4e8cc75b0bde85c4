"""Time to solve: how long kala's loop takes to solve the adding problem, and on how many
sequences."""

import keras

import kala
from kala import tasks


def adding_rows(cells, seeds, seq_len=100, steps=3000):
    """Time and sequences until kala's loop solves the adding problem at `seq_len`, with the
    settings of `recipes/adding_problem.py`: 64 units, batches of 32, Adam 1e-2."""
    rows = []
    for cell in cells:
        for seed in seeds:
            task = tasks.AddingProblem(seq_len)
            keras.utils.set_random_seed(seed)
            model = kala.build_model(cell, 64, **task.model_options)
            result = kala.train(model, task, steps=steps, batch_size=32, learning_rate=1e-2,
                                seed=seed)
            rows.append({"measure": "adding", "impl": "kala", "cell": cell,
                         "implementation": "builtin", "seq_len": seq_len, "seed": seed,
                         "solved": result.solved, "sequences_seen": result.sequences_seen,
                         "steps": result.steps, "seconds": result.seconds,
                         "metric": result.metric})
    return rows
