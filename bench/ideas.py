"""Ideas for a faster LSTM, each timed against what it would replace (the full mode only):

- three ways for a training loop to run the same train step (`loop_rows`);
- an LSTM layer unrolled, fused into TensorFlow's `BlockLSTM` op, or fed its input projection
  for all steps at once (`idea_rows`), each also checked to compute the same gradients.

These are experiments, not kala: the train step here is the benchmark's own, with the same
maths as `kala.Trainer`'s.
"""

import dataclasses
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras import ops

from bench import common
from kala import cells


def train_step(model, task):
    """The maths of `kala.Trainer`'s train step, with an Adam of its own on `model`'s weights:
    the gradients of `task.loss` on a batch, clipped and applied. Returns the step as a Python
    function of `(inputs, targets)` that answers the loss, for `tf.function` to trace."""
    optimizer = keras.optimizers.Adam(learning_rate=common.LEARNING_RATE,
                                      clipnorm=common.CLIPNORM)
    optimizer.build(model.trainable_variables)

    def step(inputs, targets):
        with tf.GradientTape() as tape:
            predictions = model(inputs, training=True)
            loss = task.loss(targets, predictions)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step


def loop_rows(shape, rounds, round_seconds, cell="lstm", steps_per_call=10):
    """Three ways for a training loop to run the same train step, as training steps of `cell`
    on `Synthetic`: a batch handed over from Python to a step per call (kala's loop before
    this benchmark), the batch drawn from the iterator inside the graph, one step per call,
    and `steps_per_call` steps per call, as `Trainer` runs them up to each report (default
    `log_every`). Each way trains a copy of the same model with an optimizer of its own."""
    task = common.Synthetic(shape.time, shape.features)
    model = common.build(cell, "builtin", task, shape)

    def from_python():
        step = tf.function(train_step(common.copy(model), task),
                           input_signature=[task.input_spec, task.target_spec])
        batches = iter(task.train_dataset(shape.batch))
        return lambda: step(*next(batches))

    def in_graph():
        step = tf.function(lambda iterator, train=train_step(common.copy(model), task):
                           train(*next(iterator)))
        batches = iter(task.train_dataset(shape.batch))
        return lambda: step(batches)

    def per_call():
        train = train_step(common.copy(model), task)

        @tf.function
        def steps(iterator, count):
            total = tf.constant(0.0)
            for _ in tf.range(count):
                total += tf.cast(train(*next(iterator)), tf.float32)
            return total

        batches, count = iter(task.train_dataset(shape.batch)), tf.constant(steps_per_call)
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


def block_lstm(inputs, kernel, recurrent_kernel, bias):
    """The last hidden state of an LSTM with Keras's weights, by TensorFlow's fused
    `BlockLSTM` (v1) op. The op orders gates i, c, f, o (Keras: i, f, c, o), clips the cell
    state to ±3 unless `cell_clip` is negative, and adds a forget bias of its own unless it is 0.
    Its v2 is left alone: on TensorFlow 2.21 its registered gradient is off from
    `tf.test.compute_gradient`'s finite differences by as much as the gradient itself, where
    v1's agrees to 1e-4."""

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


class ProjectedLSTMCell(cells.LSTMCell):
    """kala's LSTM cell fed inputs already multiplied by the kernel for every step at once,
    so each step multiplies only the previous output. It replaces the cell's own
    `_preactivations`, the one step it changes: an experiment may lean on kala's insides."""

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
    projected_cell = ProjectedLSTMCell(shape.units, shape.features)
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
