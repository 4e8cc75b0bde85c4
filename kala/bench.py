"""Speed, measured side by side: `python -m kala.bench [--quick] [--json PATH]`.

What a user would run instead is measured in the same process, interleaved round by round, and
reported as the median over rounds and as ratios, because absolute times on a shared machine
drift from minute to minute:

- training: sequences per second of kala's loop (`Trainer.run`), of Keras's `model.fit` on a
  copy of the same model, and of PyTorch's `nn.RNN`/`nn.LSTM`/`nn.GRU` on the same shapes when
  torch is installed; each as GFLOP/s and as a share of a matrix multiply timed in the same
  rounds;
- serving: a kala export's `serving_default`, loaded with `tf.saved_model.load`, at batch 1
  (latency p50, p99) and batch 256 (sequences per second), against calling the Keras model;
- the input pipeline alone, against the rate training consumes it;
- the adding problem at T = 100: time and sequences until kala's loop solves it;
- ideas for a faster LSTM (the full mode only): three ways for a loop to run the train step,
  and an LSTM layer unrolled, fused (`BlockLSTM`), or fed its input projection for all steps at
  once, each against what it would replace.

Every model trains on the same synthetic regression (`Synthetic`), with Adam and gradients
clipped to norm 1, so that the three loops do the same work: the time is in the recurrent layer.
FLOPs per sequence are 6·g·T·H·(D + H) for g gate blocks (SimpleRNN 1, GRU 3, LSTM 4):
forward 2·g·H·(D + H) per step, backward twice that (REFERENCE.md §5).

The functions here measure and return rows; only `main` prints.
"""

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras import ops

from kala import cells, models, tasks, training
from kala.export import export_model

# Each cell: the gate blocks its step multiplies by (for FLOPs) and the PyTorch module, if any.
GATES = {"simple_rnn": 1, "gru": 3, "lstm": 4, "peephole_lstm": 4, "coupled_lstm": 3,
         "lstm1997": 3}
TORCH_MODULES = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
# What is measured: Keras's three built-in layers, the same three written out in kala.cells,
# and the essay's variants, which only kala.cells has.
MODELS = (("simple_rnn", "builtin"), ("lstm", "builtin"), ("gru", "builtin"),
          ("simple_rnn", "essay"), ("lstm", "essay"), ("gru", "essay"),
          ("peephole_lstm", "essay"), ("coupled_lstm", "essay"), ("lstm1997", "essay"))
LEARNING_RATE = 1e-3
CLIPNORM = 1.0


@dataclasses.dataclass(frozen=True)
class Shape:
    batch: int
    time: int
    features: int
    units: int

    @classmethod
    def parse(cls, text):
        """`"B,T,D,H"`, e.g. `"32,50,16,64"`."""
        try:
            values = [int(value) for value in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or min(values) < 1:
            raise ValueError(f"A shape is four positive integers B,T,D,H (batch, time, features, "
                             f"units), e.g. 32,50,16,64. Received: {text!r}")
        return cls(*values)

    @property
    def label(self):
        return f"B={self.batch} T={self.time} D={self.features} H={self.units}"

    def flops_per_sequence(self, cell):
        """Training FLOPs of one sequence through the recurrent layer: forward and backward."""
        return 6 * GATES[cell] * self.time * self.units * (self.features + self.units)


QUICK = {"shapes": (Shape(32, 50, 16, 64), Shape(128, 100, 2, 128)), "rounds": 6,
         "round_seconds": 0.5, "xla": False, "serving_cells": ("lstm",),
         "adding_cells": ("lstm",), "adding_seeds": (0,)}
FULL = {"shapes": QUICK["shapes"] + (Shape(32, 100, 32, 256), Shape(256, 200, 8, 64)),
        "rounds": 8, "round_seconds": 1.0, "xla": True,
        "serving_cells": ("simple_rnn", "lstm", "gru"), "adding_cells": ("lstm", "gru"), "adding_seeds": (0, 1, 2)}


class Synthetic(tasks.Task):
    """Random sequences of `features` standard normal values; the target is the sum of the first
    feature over time, scaled to unit variance. A regression that reads every step, for timing:
    it is never counted as solved."""

    name = "synthetic"
    metric_name = "mse"
    head = "sequence"
    success_threshold = -np.inf

    def __init__(self, seq_len, features):
        super().__init__(seq_len, test_size=1)
        self.features = features

    @property
    def input_spec(self):
        return tf.TensorSpec([None, None, self.features], tf.float32, name="sequence")

    @property
    def target_spec(self):
        return tf.TensorSpec([None, 1], tf.float32, name="target")

    @property
    def baseline(self):
        return 1.0

    def make_batch(self, rng, batch_size):
        inputs = rng.standard_normal((batch_size, self.seq_len, self.features), np.float32)
        targets = inputs[:, :, :1].sum(axis=1) / np.sqrt(self.seq_len, dtype=np.float32)
        return inputs, targets

    def loss(self, targets, predictions):
        return tf.reduce_mean(tf.square(predictions - targets))

    def metric(self, targets, predictions):
        return tf.reduce_mean(tf.square(predictions - targets), axis=-1)


def machine():
    """What a run ran on: CPU, cores, GPUs and versions (the recipes record it too)."""
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            names = [line.split(":", 1)[1].strip() for line in file
                     if line.startswith("model name")]
        processor = names[0] if names else processor
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "processor": processor,
        "cpu_count": os.cpu_count(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def _bench_machine():
    """`machine()`, with the thread settings and PyTorch the benchmark ran with."""
    info = machine()
    # Thread settings from the environment; unset, each library takes one thread per core.
    info["thread_settings"] = {name: os.environ[name] for name in (
        "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
        if name in os.environ}
    torch = _torch()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# --- Contenders: each is set up and warmed, then `run(steps)` times `steps` training steps. ------


class KalaLoop:
    """kala's `Trainer.run`, fed by the task's pipeline as in every recipe; with `jit_compile`,
    its train step compiled by XLA."""

    def __init__(self, model, task, batch_size, jit_compile=False):
        self.impl = "kala_xla" if jit_compile else "kala"
        self.trainer = training.Trainer(
            model, task, steps=1, batch_size=batch_size, learning_rate=LEARNING_RATE,
            clipnorm=CLIPNORM, eval_every=10**9, log_every=10**9, stop_when_solved=False,
            jit_compile=jit_compile)
        self.trainer.run()  # Traces the train and eval steps.

    def run(self, steps):
        self.trainer.steps = int(self.trainer.step.numpy()) + steps
        started = time.perf_counter()
        self.trainer.run()
        return time.perf_counter() - started


class KerasFit:
    """`model.fit` on the same pipeline, with the same optimizer and loss."""

    impl = "keras_fit"

    def __init__(self, model, task, batch_size):
        self.model = model
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE, clipnorm=CLIPNORM),
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
        torch = _torch()
        self.torch, self.task, self.batch_size = torch, task, shape.batch
        torch.manual_seed(0)
        module = getattr(torch.nn, TORCH_MODULES[cell])
        self.rnn = module(shape.features, shape.units, batch_first=True)
        self.head = torch.nn.Linear(shape.units, 1)
        self.parameters = [*self.rnn.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(self.parameters, lr=LEARNING_RATE)
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
            torch.nn.utils.clip_grad_norm_(self.parameters, CLIPNORM)
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


def _build(cell, implementation, task, shape, seed=0):
    keras.utils.set_random_seed(seed)
    return models.build_model(cell, shape.units, implementation=implementation,
                              **task.model_options)


def _copy(model):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def training_rows(shape, rounds, round_seconds, cells=MODELS, xla=False, on_model=None):
    """Sequences per second of every contender for every cell at `shape`. One cell at a time:
    its contenders are set up, then timed in turn in each round, all for the same number of
    steps (about `round_seconds` of `model.fit`), then let go before the next cell's: with the
    models of another cell alive, kala's coupled LSTM once ran 15% slower in every round than
    alone (B=32, T=100, D=32, H=256). With `xla`, kala's loop also runs compiled by XLA."""
    task = Synthetic(shape.time, shape.features)
    rows = []
    for cell_index, (cell, implementation) in enumerate(cells):
        model = _build(cell, implementation, task, shape)
        fit = KerasFit(_copy(model), task, shape.batch)
        # Steps per round from the time of `fit`'s steps beyond the first, not its set-up.
        step_seconds = max((fit.run(3) - fit.run(1)) / 2, 1e-4)
        steps = max(3, round(round_seconds / step_seconds))
        contenders = [KalaLoop(_copy(model), task, shape.batch), fit]
        if xla:
            contenders.append(KalaLoop(_copy(model), task, shape.batch, jit_compile=True))
        if implementation == "builtin" and _torch() is not None and cell in TORCH_MODULES:
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
        builtin = by_key.get((row["impl"], cell if cell in TORCH_MODULES else "lstm",
                              "builtin"))
        if implementation == "essay" and builtin is not None:
            # How many times longer the essay cell takes than the built-in layer.
            row["time_vs_builtin"] = ratio(builtin, row)


def _percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def serving_rows(cell, shape, rounds, calls=100, large_batch=256):
    """`serving_default` of a kala export against calling the Keras model, at batch 1 (latency)
    and at `large_batch` (throughput); the two alternate in every round."""
    task = Synthetic(shape.time, shape.features)
    model = _build(cell, "builtin", task, shape)
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
    return result.values() if isinstance(result, dict) else [result]


def pipeline_rows(shape, rounds, training_rate, batches=50):
    """Sequences per second the task's tf.data pipeline makes alone, against `training_rate`,
    the rate training consumed it at (the fastest of kala's loops at this shape)."""
    task = Synthetic(shape.time, shape.features)
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


def adding_rows(cells, seeds, seq_len=100, steps=3000):
    """Time and sequences until kala's loop solves the adding problem at `seq_len`, with the
    settings of `recipes/adding_problem.py`: 64 units, batches of 32, Adam 1e-2."""
    rows = []
    for cell in cells:
        for seed in seeds:
            task = tasks.AddingProblem(seq_len)
            keras.utils.set_random_seed(seed)
            model = models.build_model(cell, 64, **task.model_options)
            result = training.train(model, task, steps=steps, batch_size=32, learning_rate=1e-2,
                                    seed=seed)
            rows.append({"measure": "adding", "impl": "kala", "cell": cell,
                         "implementation": "builtin", "seq_len": seq_len, "seed": seed,
                         "solved": result.solved, "sequences_seen": result.sequences_seen,
                         "steps": result.steps, "seconds": result.seconds,
                         "metric": result.metric})
    return rows


# --- Ideas for a faster LSTM, each timed against what it would replace. ----------------------


def block_lstm(inputs, kernel, recurrent_kernel, bias):
    """The last hidden state of an LSTM with Keras's weights, by TensorFlow's fused
    `BlockLSTM` (v1) op. The op orders gates i, c, f, o (Keras: i, f, c, o), clips the cell
    state to ±3 unless `cell_clip` is negative, and adds a forget bias of its own unless it is 0.
    Its v2 is left alone: its registered gradient failed a finite-difference check
    (REFERENCE.md)."""

    def reorder(weights):
        i, f, c, o = tf.split(weights, 4, axis=-1)
        return tf.concat([i, c, f, o], axis=-1)

    batch, units = tf.shape(inputs)[0], recurrent_kernel.shape[0]
    zeros = tf.zeros([batch, units], inputs.dtype)
    outputs = tf.raw_ops.BlockLSTM(
        seq_len_max=tf.cast(tf.shape(inputs)[1], tf.int64),
        x=tf.transpose(inputs, [1, 0, 2]), cs_prev=zeros, h_prev=zeros,
        w=reorder(tf.concat([kernel, recurrent_kernel], axis=0)),
        wci=tf.zeros([units]), wcf=tf.zeros([units]), wco=tf.zeros([units]),
        b=reorder(bias), forget_bias=0.0, cell_clip=-1.0, use_peephole=False)
    return outputs[-1][-1]  # h: (T, B, H); its last step.


class _ProjectedLSTMCell(cells.LSTMCell):
    """kala's LSTM cell fed inputs already multiplied by the kernel for every step at once,
    so each step multiplies only the previous output."""

    def __init__(self, units, features, **kwargs):
        super().__init__(units, **kwargs)
        self.features = features

    def build(self, input_shape):
        super().build((None, self.features))

    def _preactivations(self, projected, h_prev):
        return ops.split(projected + ops.matmul(h_prev, self.recurrent_kernel), 4, axis=-1)


def idea_rows(shape, rounds, round_seconds):
    """The time of an LSTM layer's forward and backward pass (gradients of its last output),
    for each idea beside the layer it would replace, interleaved over rounds:

    - Keras's LSTM layer unrolled (`unroll=True`) and TensorFlow's fused BlockLSTM, against
      Keras's LSTM layer as kala builds it;
    - kala's LSTM cell with the input projection computed for all steps in one matmul before
      the loop, against the same cell projecting inside it."""
    inputs = tf.random.stateless_normal([shape.batch, shape.time, shape.features], seed=[0, 1])
    layer = keras.layers.LSTM(shape.units)
    layer.build((None, None, shape.features))
    unrolled = keras.layers.LSTM(shape.units, unroll=True)
    unrolled.build((None, None, shape.features))
    unrolled.set_weights(layer.get_weights())
    essay = keras.layers.RNN(cells.LSTMCell(shape.units))
    essay.build((None, None, shape.features))
    essay.set_weights(layer.get_weights())
    projected_cell = _ProjectedLSTMCell(shape.units, shape.features)
    projected = keras.layers.RNN(projected_cell)
    projected.build((None, None, 4 * shape.units))
    projected.set_weights(layer.get_weights())
    kernel, recurrent_kernel, bias = layer.weights

    ideas = {  # name: (what it replaces, forward pass, weights)
        "keras_lstm": (None, layer, layer.weights),
        "keras_lstm_unrolled": ("keras_lstm", unrolled, unrolled.weights),
        "block_lstm_v1": ("keras_lstm",
                          lambda x: block_lstm(x, kernel, recurrent_kernel, bias), layer.weights),
        "essay_lstm": (None, essay, essay.weights),
        "essay_lstm_projected_inputs": (
            "essay_lstm",
            lambda x: projected(ops.matmul(x, projected_cell.kernel) + projected_cell.bias),
            projected.weights),
    }

    def gradient_step(forward, weights):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(forward(inputs))
            return tape.gradient(loss, weights)
        return step

    steps = {name: gradient_step(forward, weights)
             for name, (_, forward, weights) in ideas.items()}
    reference = [gradient.numpy() for gradient in steps["keras_lstm"]()]

    def timed(step, count):
        started = time.perf_counter()
        for _ in range(count):
            gradients = step()
        np.asarray(gradients[0])
        return (time.perf_counter() - started) / count

    differences, counts = {}, {}
    for name, step in steps.items():
        gradients = [gradient.numpy() for gradient in step()]
        differences[name] = max(float(np.max(np.abs(a - b)))
                                for a, b in zip(gradients, reference))
        counts[name] = max(2, round(round_seconds / timed(step, 1)))
    seconds = {name: [] for name in steps}
    for round_index in range(rounds):
        names = list(steps) if round_index % 2 == 0 else list(steps)[::-1]
        for name in names:
            seconds[name].append(timed(steps[name], counts[name]))
    rows = []
    for name, (replaces, _, _) in ideas.items():
        row = {"measure": "idea", "impl": name, "cell": "lstm", "implementation": None,
               "shape": dataclasses.asdict(shape), "replaces": replaces,
               "unit": "forward and backward pass", "ms": 1000 * statistics.median(seconds[name]),
               "rounds": seconds[name], "max_gradient_difference": differences[name]}
        if replaces is not None:
            row["time_vs_replaced"] = statistics.median(
                a / b for a, b in zip(seconds[name], seconds[replaces]))
        rows.append(row)
    return rows


def loop_rows(shape, rounds, round_seconds, cell="lstm", steps_per_call=10):
    """Three ways for a training loop to run the same train step, as training steps of `cell`
    on `Synthetic`: a batch handed over from Python to a step per call (kala's loop before
    this benchmark), the batch drawn from the iterator inside the graph, one step per call,
    and `steps_per_call` steps per call, as `Trainer` runs them up to each report (default
    `log_every`)."""
    task = Synthetic(shape.time, shape.features)
    model = _build(cell, "builtin", task, shape)

    def trainer():
        return training.Trainer(_copy(model), task, steps=1, batch_size=shape.batch,
                                learning_rate=LEARNING_RATE, clipnorm=CLIPNORM)

    def from_python():
        step = tf.function(trainer()._train_step,
                           input_signature=[task.input_spec, task.target_spec])
        batches = iter(task.train_dataset(shape.batch))
        return lambda: step(*next(batches))

    def in_graph():
        step = tf.function(lambda iterator, train_step=trainer()._train_step:
                           train_step(*next(iterator)))
        batches = iter(task.train_dataset(shape.batch))
        return lambda: step(batches)

    def per_call():
        steps, batches = trainer().train_steps, iter(task.train_dataset(shape.batch))
        count = tf.constant(steps_per_call)
        return lambda: steps(batches, count)

    loops = {"loop_batch_from_python": (None, from_python(), 1),
             "loop_batch_in_graph": ("loop_batch_from_python", in_graph(), 1),
             f"loop_{steps_per_call}_steps_per_call": ("loop_batch_from_python", per_call(),
                                                       steps_per_call)}

    def timed(run, calls, steps):
        started = time.perf_counter()
        for _ in range(calls):
            loss = run()
        float(loss)
        return (time.perf_counter() - started) / (calls * steps)

    calls = {}
    for name, (_, run, steps) in loops.items():
        timed(run, 1, steps)  # Traces.
        calls[name] = max(2, round(round_seconds / (timed(run, 1, steps) * steps)))
    seconds = {name: [] for name in loops}
    for round_index in range(rounds):
        names = list(loops) if round_index % 2 == 0 else list(loops)[::-1]
        for name in names:
            seconds[name].append(timed(loops[name][1], calls[name], loops[name][2]))
    rows = []
    for name, (replaces, _, _) in loops.items():
        row = {"measure": "idea", "impl": name, "cell": cell, "implementation": "builtin",
               "shape": dataclasses.asdict(shape), "replaces": replaces, "unit": "training step",
               "ms": 1000 * statistics.median(seconds[name]), "rounds": seconds[name]}
        if replaces is not None:
            row["time_vs_replaced"] = statistics.median(
                a / b for a, b in zip(seconds[name], seconds[replaces]))
        rows.append(row)
    return rows


# --- The report. ---------------------------------------------------------------------------


def _ratio(value):
    return "—" if value is None else f"{value:.2f}×"


def _rate(row):
    return "—" if row is None else f"{row['sequences_per_second']:,.0f}"


def markdown(payload):
    """The rows as Markdown tables."""
    rows = payload["rows"]
    lines = []
    trained = [row for row in rows if row["measure"] == "training"]
    if trained:
        xla = any(row["impl"] == "kala_xla" for row in trained)
        lines += ["### Training: sequences per second (median of rounds; a ratio is the median "
                  "of the ratios within each round)", "",
                  "| shape | cell | kala | " + ("kala + XLA | " if xla else "")
                  + "model.fit | torch | kala ÷ fit | " + ("kala + XLA ÷ fit | " if xla else "")
                  + "kala ÷ torch | GFLOP/s | % of matmul | essay ÷ built-in time |",
                  "|---|---|" + "---:|" * (10 if xla else 8)]
        for row in trained:
            if row["impl"] != "kala":
                continue
            same = {other["impl"]: other for other in trained
                    if other["shape"] == row["shape"] and other["cell"] == row["cell"]
                    and other["implementation"] in (row["implementation"], "torch")}
            torch = same.get("torch") if row["implementation"] == "builtin" else None
            cell = row["cell"] + (" (essay)" if row["implementation"] == "essay"
                                  and row["cell"] in TORCH_MODULES else "")
            cells = [Shape(**row["shape"]).label, cell, _rate(row)]
            if xla:
                cells.append(_rate(same.get("kala_xla")))
            cells += [_rate(same.get("keras_fit")), _rate(torch),
                      _ratio(row.get("vs_keras_fit"))]
            if xla:
                cells.append(_ratio(same.get("kala_xla", {}).get("vs_keras_fit")))
            cells += [_ratio(row.get("vs_torch") if torch is not None else None),
                      f"{row['gflops']:.1f}", f"{row['matmul_percent']:.0f}%",
                      _ratio(row.get("time_vs_builtin"))]
            lines.append("| " + " | ".join(cells) + " |")
        matmul = [row["matmul_gflops"] for row in trained]
        lines += ["", f"A 1024² float32 matrix multiply, timed in every round: "
                  f"{statistics.median(matmul):.0f} GFLOP/s (medians per model "
                  f"{min(matmul):.0f} to {max(matmul):.0f}).", ""]
    serving = [row for row in rows if row["measure"] == "serving"]
    if serving:
        lines += ["### Serving: a kala export's `serving_default` against calling the Keras "
                  "model", "", "| shape | cell | batch | call | p50 ms | p99 ms | sequences/s "
                  "| served ÷ Keras |", "|---|---|---:|---|---:|---:|---:|---:|"]
        for row in serving:
            lines.append(
                f"| {Shape(**row['shape']).label} | {row['cell']} | {row['batch']} | "
                f"{row['impl']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                f"{row['sequences_per_second']:,.0f} | {_ratio(row.get('vs_keras_call'))} |")
        lines.append("")
    for row in rows:
        if row["measure"] == "pipeline":
            lines += ["### Input pipeline", "",
                      f"At {Shape(**row['shape']).label}, the tf.data pipeline alone makes "
                      f"{row['sequences_per_second']:,.0f} sequences/s; training consumes "
                      f"{row['training_sequences_per_second']:,.0f} (the fastest of kala's loops): "
                      f"{row['vs_training']:,.0f}× headroom.", ""]
    ideas = [row for row in rows if row["measure"] == "idea"]
    if ideas:
        lines += ["### Ideas for a faster LSTM, each against what it would replace", "",
                  "| shape | idea | replaces | timed | ms | time ÷ replaced "
                  "| largest gradient difference |", "|---|---|---|---|---:|---:|---:|"]
        for row in ideas:
            difference = row.get("max_gradient_difference")
            lines.append(
                f"| {Shape(**row['shape']).label} | {row['impl']} | {row['replaces'] or '—'} | "
                f"{row['unit']} | {row['ms']:.2f} | {_ratio(row.get('time_vs_replaced'))} | "
                f"{'—' if difference is None else f'{difference:.1e}'} |")
        lines.append("")
    adding = [row for row in rows if row["measure"] == "adding"]
    if adding:
        lines += [f"### The adding problem at T = {adding[0]['seq_len']} (kala's loop, "
                  "64 units, batches of 32)", "",
                  "| cell | seed | solved | sequences until solved | seconds |",
                  "|---|---|---|---:|---:|"]
        for row in adding:
            sequences = "—" if row["sequences_seen"] is None else f"{row['sequences_seen']:,}"
            lines.append(f"| {row['cell']} | {row['seed']} | "
                         f"{'yes' if row['solved'] else 'no'} | {sequences} | "
                         f"{row['seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines)


# --- The command line. ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


PARTS = ("training", "serving", "pipeline", "adding", "ideas")


def parse_args(argv):
    parser = _Parser(prog="python -m kala.bench", description=(
        "Measures kala's training loop against model.fit and PyTorch, a kala export's "
        "serving_default against calling the Keras model, the input pipeline against "
        "training, and the time to solve the adding problem; prints Markdown tables."))
    parser.add_argument("--quick", action="store_true",
                        help="two shapes, shorter rounds, no XLA, the LSTM only for serving "
                             "and the adding problem (under 5 minutes on a 2-core CPU)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    parser.add_argument("--shape", metavar="B,T,D,H", action="append", type=_shape,
                        help="measure this shape instead of the mode's (repeatable)")
    parser.add_argument("--cells", metavar="CELL,...", type=_cells,
                        help=f"only these cells (of {', '.join(GATES)})")
    parser.add_argument("--parts", metavar="PART,...", type=_parts,
                        help=f"only these measurements (of {', '.join(PARTS)}; default: all, "
                             "but ideas only in the full mode)")
    parser.add_argument("--rounds", type=_positive, help="rounds (default: 6 quick, 8 full)")
    parser.add_argument("--adding-len", type=_positive, default=100,
                        help="length of the adding problem (default 100)")
    parser.add_argument("--adding-steps", type=_positive, default=3000,
                        help="training budget for the adding problem, in steps (default 3000)")
    args = parser.parse_args(argv)
    if args.json is not None:
        directory = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(directory):
            parser.error(f"--json: no directory {directory}")
    return args


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _shape(text):
    try:
        return Shape.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _names(text, valid, what):
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; valid: "
            f"{', '.join(valid)}")
    return names


def _cells(text):
    return _names(text, tuple(GATES), "cell")


def _parts(text):
    return _names(text, PARTS, "part")


def run(args, log=lambda message: None):
    """Runs the measurements `args` asks for; returns the JSON payload."""
    mode = QUICK if args.quick else FULL
    shapes = args.shape or mode["shapes"]
    rounds = args.rounds or mode["rounds"]
    parts = args.parts or (PARTS[:-1] if args.quick else PARTS)
    chosen = [(cell, implementation) for cell, implementation in MODELS
              if args.cells is None or cell in args.cells]
    started = time.perf_counter()
    rows = []
    for shape in shapes:
        if "training" in parts and chosen:
            log(f"training at {shape.label}: {len(chosen)} models")
            rows += training_rows(shape, rounds, mode["round_seconds"], chosen, mode["xla"],
                                  on_model=lambda done, total: log(f"  {done}/{total} models"))
        if "serving" in parts:
            for cell in mode["serving_cells"]:
                if args.cells is None or cell in args.cells:
                    log(f"serving {cell} at {shape.label}")
                    rows += serving_rows(cell, shape, rounds)
        if "ideas" in parts:
            log(f"ideas for the LSTM at {shape.label}")
            rows += loop_rows(shape, rounds, mode["round_seconds"])
            rows += idea_rows(shape, rounds, mode["round_seconds"])
    if "pipeline" in parts:
        shape = shapes[-1]
        consumed = [row["sequences_per_second"] for row in rows
                    if row["measure"] == "training" and row["impl"].startswith("kala")
                    and row["shape"] == dataclasses.asdict(shape)]
        if consumed:
            log(f"pipeline at {shape.label}")
            # The fastest consumer at this shape is the hardest to keep fed.
            rows += pipeline_rows(shape, rounds, max(consumed))
    if "adding" in parts:
        cells = [cell for cell in mode["adding_cells"] if args.cells is None
                 or cell in args.cells]
        log(f"adding problem at T={args.adding_len}: {', '.join(cells)}")
        rows += adding_rows(cells, mode["adding_seeds"], args.adding_len, args.adding_steps)
    return {"mode": "quick" if args.quick else "full",
            "command": "python -m kala.bench " + " ".join(sys.argv[1:]),
            "machine": _bench_machine(), "seconds": time.perf_counter() - started,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Nine models of one shape make `fit` trace nine functions from one code object, which
    # TensorFlow would warn of as retracing.
    tf.get_logger().setLevel("ERROR")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    payload = run(args, log)
    if args.json is not None:
        temporary = f"{args.json}.tmp-{os.getpid()}"
        with open(temporary, "w") as file:
            json.dump(payload, file, indent=2)
            file.write("\n")
        os.replace(temporary, args.json)
    print(markdown(payload))
    print(f"{payload['mode']} run: {payload['seconds']:.0f} s on {payload['machine']['processor']}"
          f" ({payload['machine']['cpu_count']} cores), TensorFlow "
          f"{payload['machine']['tensorflow']}.")


if __name__ == "__main__":
    main()
