"""Training speed: kala's loop against `model.fit` and PyTorch, cell by cell, at one shape.

Each contender is set up and warmed, then `run(steps)` times `steps` training steps. The rows
give sequences per second, GFLOP/s and the share of a matrix multiply timed in the same rounds,
and each kala row its ratios to the others.
"""

import dataclasses
import gc
import statistics
import time

import keras
import tensorflow as tf

import kala
from bench import common
from kala import tasks


class KalaLoop:
    """kala's `Trainer`, taking its steps as `Trainer.run` does between two reports: all in one
    graph call, each batch drawn from the task's pipeline inside it; with `jit_compile`, its
    train step compiled by XLA."""

    def __init__(self, model, task, batch_size, jit_compile=False):
        self.impl = "kala_xla" if jit_compile else "kala"
        self.trainer = kala.Trainer(
            model, task, steps=1, batch_size=batch_size, learning_rate=common.LEARNING_RATE,
            clipnorm=common.CLIPNORM, jit_compile=jit_compile)
        # Traces the steps; the count is a tensor in the graph, so other counts reuse the trace.
        self.trainer.train_steps(1)

    def run(self, steps):
        started = time.perf_counter()
        self.trainer.train_steps(steps)
        return time.perf_counter() - started


class KerasFit:
    """`model.fit` on the same pipeline, with the same optimizer and loss."""

    impl = "keras_fit"

    def __init__(self, model, task, batch_size):
        self.model = model
        model.compile(optimizer=keras.optimizers.Adam(common.LEARNING_RATE,
                                                      clipnorm=common.CLIPNORM),
                      loss="mse")
        self.data = task.train_dataset(batch_size, seed=1)
        self.run(1)

    def run(self, steps):
        started = time.perf_counter()
        self.model.fit(self.data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        return time.perf_counter() - started


class TorchLoop:
    """PyTorch's own recurrent module and a linear head, trained on the same batches."""

    impl = "torch"

    def __init__(self, cell, task, shape):
        torch = common.torch()
        self.torch, self.task, self.batch_size = torch, task, shape.batch
        torch.manual_seed(0)
        module = getattr(torch.nn, common.TORCH_MODULES[cell])
        self.rnn = module(shape.features, shape.units, batch_first=True)
        self.head = torch.nn.Linear(shape.units, 1)
        self.parameters = [*self.rnn.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(self.parameters, lr=common.LEARNING_RATE)
        self.index = 0
        self.run(1)

    def run(self, steps):
        torch = self.torch
        started = time.perf_counter()
        for _ in range(steps):
            inputs, targets = self.task.batch(2, tasks.TRAIN_STREAM, self.index, self.batch_size)
            self.index += 1
            outputs, _ = self.rnn(torch.from_numpy(inputs))
            loss = torch.nn.functional.mse_loss(self.head(outputs[:, -1]),
                                                torch.from_numpy(targets))
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.parameters, common.CLIPNORM)
            self.optimizer.step()
        return time.perf_counter() - started


def matmul_rate(size=1024, repeats=8):
    """GFLOP/s of a float32 `size`² matrix multiply in TensorFlow, on the threads training uses."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    tf.matmul(a, b).numpy()
    started = time.perf_counter()
    for _ in range(repeats):
        c = tf.matmul(a, b)
    c.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def training_rows(shape, rounds, round_seconds, cells=common.MODELS, xla=False, on_model=None):
    """Sequences per second of every contender for every cell at `shape`. One cell at a time:
    its contenders are set up, then timed in turn in each round, all for the same number of
    steps (about `round_seconds` of `model.fit`), then let go before the next cell's: with the
    models of another cell alive, kala's coupled LSTM once ran 15% slower in every round than
    alone (B=32, T=100, D=32, H=256). With `xla`, kala's loop also runs compiled by XLA."""
    task = common.Synthetic(shape.time, shape.features)
    rows = []
    for cell_index, (cell, implementation) in enumerate(cells):
        model = common.build(cell, implementation, task, shape)
        fit = KerasFit(common.copy(model), task, shape.batch)
        # Steps per round from the time of `fit`'s steps beyond the first, not its set-up.
        step_seconds = max((fit.run(3) - fit.run(1)) / 2, 1e-4)
        steps = max(3, round(round_seconds / step_seconds))
        contenders = [KalaLoop(common.copy(model), task, shape.batch), fit]
        if xla:
            contenders.append(KalaLoop(common.copy(model), task, shape.batch, jit_compile=True))
        if (implementation == "builtin" and common.torch() is not None
                and cell in common.TORCH_MODULES):
            contenders.append(TorchLoop(cell, task, shape))
        rates = [[] for _ in contenders]
        matmul = []
        for round_index in range(rounds):
            matmul.append(matmul_rate())
            # Every other round runs the contenders in reverse, so none always follows another.
            order = range(len(contenders))
            for index in order if round_index % 2 == 0 else reversed(order):
                rates[index].append(steps * shape.batch / contenders[index].run(steps))
        matmul_gflops = statistics.median(matmul)
        for contender, rate in zip(contenders, rates):
            median = statistics.median(rate)
            gflops = median * shape.flops_per_sequence(cell) / 1e9
            rows.append({
                "measure": "training", "impl": contender.impl, "cell": cell,
                "implementation": "torch" if contender.impl == "torch" else implementation,
                "shape": dataclasses.asdict(shape),
                "sequences_per_second": median, "ms_per_step": 1000 * shape.batch / median,
                "rounds": rate, "steps_per_round": steps, "gflops": gflops,
                "matmul_gflops": matmul_gflops, "matmul_percent": 100 * gflops / matmul_gflops,
            })
        del model, fit, contenders
        gc.collect()
        if on_model is not None:
            on_model(cell_index + 1, len(cells))
    _add_ratios(rows)
    return rows


def _add_ratios(rows):
    """Each kala row's ratio to `model.fit` and to torch on the same cell, and an essay cell's
    ratio to the built-in layer (the LSTM's for the variants). A ratio is the median over rounds
    of the two rates in one round, which ran minutes apart at most."""
    by_key = {(row["impl"], row["cell"], row["implementation"]): row for row in rows}

    def ratio(row, other):
        return statistics.median(a / b for a, b in zip(row["rounds"], other["rounds"]))

    for row in rows:
        if row["impl"] not in ("kala", "kala_xla"):
            continue
        cell, implementation = row["cell"], row["implementation"]
        fit = by_key.get(("keras_fit", cell, implementation))
        if fit is not None:
            row["vs_keras_fit"] = ratio(row, fit)
        torch = by_key.get(("torch", cell, "torch"))
        if torch is not None and implementation == "builtin":
            row["vs_torch"] = ratio(row, torch)
        builtin = by_key.get((row["impl"], cell if cell in common.TORCH_MODULES else "lstm",
                              "builtin"))
        if implementation == "essay" and builtin is not None:
            # How many times longer the essay cell takes than the built-in layer.
            row["time_vs_builtin"] = ratio(builtin, row)
