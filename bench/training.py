"""Training speed: kala's loop against `model.fit` and PyTorch, cell by cell, at one shape.

Each contender is set up and warmed, then `run(steps)` times `steps` training steps. The rows
give sequences per second, GFLOP/s and the share of a matrix multiply timed in the same rounds,
and each kala row its ratios to the others.
"""

import dataclasses
import gc
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import kala
from bench import common, ideas
from kala import tasks

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_worker.py")
# How long `torch.compile` may take to compile one model before it is left out: Dynamo unrolls
# nn.RNN and nn.GRU over every step, and Inductor's time grows with T.
COMPILE_SECONDS = 300


class KalaLoop:
    """kala's `Trainer` as a user runs it: `Trainer.run` with its default reporting, so one graph
    call of `log_every` steps between two reports (each batch drawn from the task's pipeline
    inside the call) and an evaluation of the test split every `eval_every` steps; with
    `jit_compile`, its train step compiled by XLA. Each round raises the step budget and runs
    again, as a run resumed with more steps would; a task that gets solved trains on."""

    def __init__(self, model, task, batch_size, jit_compile=False):
        self.impl = "kala_xla" if jit_compile else "kala"
        self.trainer = kala.Trainer(
            model, task, steps=1, batch_size=batch_size, learning_rate=common.LEARNING_RATE,
            clipnorm=common.CLIPNORM, jit_compile=jit_compile, stop_when_solved=False)
        self.steps_per_call = self.trainer.log_every
        self.trainer.run()  # Traces the steps and the evaluation.

    def run(self, steps):
        self.trainer.steps += steps
        started = time.perf_counter()
        self.trainer.run()
        return time.perf_counter() - started


class KerasFit:
    """`model.fit` on the same pipeline, with the same optimizer and loss, taking
    `steps_per_execution` steps per graph call (Keras's default on a CPU is 1)."""

    def __init__(self, model, task, batch_size, steps_per_execution=1):
        self.impl = "keras_fit" if steps_per_execution == 1 else "keras_fit_matched"
        self.model = model
        model.compile(optimizer=keras.optimizers.Adam(common.LEARNING_RATE,
                                                      clipnorm=common.CLIPNORM),
                      loss="mse", steps_per_execution=steps_per_execution)
        self.data = task.train_dataset(batch_size, seed=1)
        self.run(steps_per_execution)

    def run(self, steps):
        started = time.perf_counter()
        self.model.fit(self.data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        return time.perf_counter() - started


class PlainFunction:
    """The floor under any loop: a plain `tf.function` running `steps_per_call` train steps of
    the same maths (`bench.ideas.train_step`) per call on one fixed batch, with no pipeline."""

    impl = "tf_function"

    def __init__(self, model, task, batch_size, steps_per_call):
        inputs, targets = task.batch(4, tasks.TRAIN_STREAM, 0, batch_size)
        self.batch = tf.constant(inputs), tf.constant(targets)
        self.steps_per_call = steps_per_call
        step = ideas.train_step(model, task)

        @tf.function
        def steps(inputs, targets, count):
            total = tf.constant(0.0)
            for _ in tf.range(count):
                total += step(inputs, targets)
            return total

        self.steps = steps
        self.run(steps_per_call)

    def run(self, steps):
        started = time.perf_counter()
        calls, rest = divmod(steps, self.steps_per_call)
        for count in [self.steps_per_call] * calls + ([rest] if rest else []):
            total = self.steps(*self.batch, tf.constant(count))
        total.numpy()
        return time.perf_counter() - started


class TorchProcess:
    """PyTorch's own recurrent module and a linear head, in a process of its own
    (`bench/torch_worker.py`), on `BATCHES` batches of the same task made before the timed loop;
    with `compile`, through `torch.compile`. `compiled` and `reason` say whether it compiled."""

    BATCHES = 8

    def __init__(self, cell, task, shape, directory, compile=False):
        self.impl = "torch_compile" if compile else "torch"
        path = os.path.join(directory, f"batches-{cell}-{shape.batch}-{shape.time}.npz")
        if not os.path.exists(path):
            made = [task.batch(2, tasks.TRAIN_STREAM, index, shape.batch)
                    for index in range(self.BATCHES)]
            np.savez(path, inputs=np.stack([inputs for inputs, _ in made]),
                     targets=np.stack([targets for _, targets in made]))
        self.process = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        request = {"setup": {"cell": cell, "features": shape.features, "units": shape.units,
                             "batches": path, "compile": compile}}
        started = time.perf_counter()
        answer = self._ask(request, timeout=COMPILE_SECONDS if compile else None)
        if answer is None:  # Inductor still compiling: this contender is left out.
            self.process.kill()
            self.process.wait()
            answer = {"setup_seconds": time.perf_counter() - started, "compiled": False,
                      "threads": None, "reason": f"still compiling after {COMPILE_SECONDS} s "
                      "(Dynamo unrolls the recurrence over all T steps)"}
        self.setup_seconds = answer["setup_seconds"]
        self.compiled = answer["compiled"] if compile else None
        self.reason = answer["reason"]
        self.threads = answer["threads"]

    def _ask(self, request, timeout=None):
        """The worker's answer to `request`, or None if it has none within `timeout` s."""
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        if timeout is not None and not select.select([self.process.stdout], [], [], timeout)[0]:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker stopped (exit code {self.process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the PyTorch worker failed: {answer['error']}")
        return answer

    def run(self, steps):
        return self._ask({"run": steps})["seconds"]

    def close(self):
        if self.process.poll() is None and not self.process.stdin.closed:
            self.process.stdin.write(json.dumps({"quit": True}) + "\n")
            self.process.stdin.close()
            self.process.wait()


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
    steps (about `round_seconds` of `model.fit`, a multiple of the Trainer's steps per call),
    then let go before the next cell's: with the models of another cell alive, kala's coupled
    LSTM once ran 15% slower in every round than alone (B=32, T=100, D=32, H=256). With `xla`,
    kala's loop also runs compiled by XLA. PyTorch's contenders run in processes of their own
    and take their turns in the same rounds (`TorchProcess`)."""
    task = common.Synthetic(shape.time, shape.features)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kala-bench-") as directory:
        for cell_index, (cell, implementation) in enumerate(cells):
            rows += _cell_rows(cell, implementation, task, shape, rounds, round_seconds, xla,
                               directory)
            gc.collect()
            if on_model is not None:
                on_model(cell_index + 1, len(cells))
    _add_ratios(rows)
    return rows


def steps_per_round(step_seconds, round_seconds, per_call):
    """Steps for a round of about `round_seconds`, in whole calls of `per_call` steps."""
    return per_call * max(1, round(round_seconds / max(step_seconds, 1e-4) / per_call))


def _cell_rows(cell, implementation, task, shape, rounds, round_seconds, xla, directory):
    model = common.build(cell, implementation, task, shape)
    kala_loop = KalaLoop(common.copy(model), task, shape.batch)
    per_call = kala_loop.steps_per_call
    fit = KerasFit(common.copy(model), task, shape.batch)
    # Steps per round from the time of `fit`'s steps beyond the first, not its set-up.
    steps = steps_per_round((fit.run(3) - fit.run(1)) / 2, round_seconds, per_call)
    contenders = [kala_loop, fit, KerasFit(common.copy(model), task, shape.batch, per_call),
                  PlainFunction(common.copy(model), task, shape.batch, per_call)]
    if xla:
        contenders.append(KalaLoop(common.copy(model), task, shape.batch, jit_compile=True))
    failed = []
    if (implementation == "builtin" and common.torch() is not None
            and cell in common.TORCH_MODULES):
        for compile in (False, True):
            contender = TorchProcess(cell, task, shape, directory, compile=compile)
            if compile and not contender.compiled:
                failed.append(contender)
            else:
                contenders.append(contender)
    try:
        rates = [[] for _ in contenders]
        matmul = []
        for round_index in range(rounds):
            matmul.append(matmul_rate())
            # Every other round runs the contenders in reverse, so none always follows another.
            order = range(len(contenders))
            for index in order if round_index % 2 == 0 else reversed(order):
                rates[index].append(steps * shape.batch / contenders[index].run(steps))
    finally:
        for contender in contenders + failed:
            if isinstance(contender, TorchProcess):
                contender.close()
    matmul_gflops = statistics.median(matmul)
    rows = []
    for contender, rate in zip(contenders, rates):
        median = statistics.median(rate)
        gflops = median * shape.flops_per_sequence(cell) / 1e9
        row = {
            "measure": "training", "impl": contender.impl, "cell": cell,
            "implementation": "torch" if contender.impl.startswith("torch") else implementation,
            "shape": dataclasses.asdict(shape),
            "sequences_per_second": median, "ms_per_step": 1000 * shape.batch / median,
            "rounds": rate, "steps_per_round": steps, "gflops": gflops,
            "matmul_gflops": matmul_gflops, "matmul_percent": 100 * gflops / matmul_gflops,
        }
        if isinstance(contender, TorchProcess):
            row.update(process="own", threads=contender.threads,
                       setup_seconds=contender.setup_seconds)
        else:
            row["process"] = "benchmark"
        rows.append(row)
    for contender in failed:  # torch.compile that did not compile: why, and no rate.
        rows.append({"measure": "training", "impl": contender.impl, "cell": cell,
                     "implementation": "torch", "shape": dataclasses.asdict(shape),
                     "compiled": False, "reason": contender.reason, "process": "own"})
    return rows


def _add_ratios(rows):
    """Each kala row's ratios to the other contenders on the same cell, and an essay cell's
    ratio to the built-in layer (the LSTM's for the variants). A ratio is the median over rounds
    of the two rates in one round, which ran minutes apart at most; against "the best fit" it is
    against the faster of the two `fit`s in each round."""
    timed = [row for row in rows if "rounds" in row]
    by_key = {(row["impl"], row["cell"], row["implementation"]): row for row in timed}

    def ratio(row, *others):
        return statistics.median(a / max(b) for a, *b in zip(row["rounds"],
                                                             *(o["rounds"] for o in others)))

    for row in timed:
        if row["impl"] not in ("kala", "kala_xla"):
            continue
        cell, implementation = row["cell"], row["implementation"]
        fits = [by_key[(impl, cell, implementation)] for impl in ("keras_fit", "keras_fit_matched")
                if (impl, cell, implementation) in by_key]
        for fit in fits:
            row[f"vs_{fit['impl']}"] = ratio(row, fit)
        if fits:
            row["vs_best_fit"] = ratio(row, *fits)
        plain = by_key.get(("tf_function", cell, implementation))
        if plain is not None:
            row["vs_tf_function"] = ratio(row, plain)
        if implementation == "builtin":
            rivals = [by_key[(impl, cell, "torch")] for impl in ("torch", "torch_compile")
                      if (impl, cell, "torch") in by_key]
            for rival in rivals:
                row[f"vs_{rival['impl']}"] = ratio(row, rival)
            if rivals:
                row["vs_best_torch"] = ratio(row, *rivals)
        builtin = by_key.get((row["impl"], cell if cell in common.TORCH_MODULES else "lstm",
                              "builtin"))
        if implementation == "essay" and builtin is not None:
            # How many times longer the essay cell takes than the built-in layer.
            row["time_vs_builtin"] = ratio(builtin, row)
