"""What every measurement shares: the cells measured, the shapes, the synthetic task all of
them train on, how a model is built and copied, and the machine a run ran on.

FLOPs per sequence are 6·g·T·H·(D + H) for g gate blocks (SimpleRNN 1, GRU 3, LSTM 4): each
step's forward pass is a multiply and an add per weight, 2·g·H·(D + H), and its backward pass
multiplies by every weight twice more, once for the gradient of the inputs and once for that of
the weights (the count of Kaplan et al. 2020, "Scaling Laws for Neural Language Models", §2.1).
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

import kala
import kala.provenance
from kala import tasks

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


def build(cell, implementation, task, shape, seed=0):
    """kala's model of `cell` for `task` at `shape`, its weights seeded."""
    keras.utils.set_random_seed(seed)
    return kala.build_model(cell, shape.units, implementation=implementation,
                            **task.model_options)


def copy(model):
    """A twin of `model` with the same weights, for a contender of its own."""
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def torch():
    """PyTorch, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def machine():
    """`kala.provenance.machine()`, with the PyTorch the benchmark ran with."""
    info = kala.provenance.machine()
    library = torch()
    if library is not None:
        info["torch"] = library.__version__
        info["torch_threads"] = library.get_num_threads()
    return info
