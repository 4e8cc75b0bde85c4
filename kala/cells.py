"""The essay's cells, written out: one step of each, top to bottom, as the essay tells it.

Each cell is a Keras cell for `keras.layers.RNN(cell)`, with the same weights, in the same layout,
as Keras's built-in cell of the same name, so that weights move between them with `get_weights`
and `set_weights` (tests/test_cells.py checks outputs and gradients against the built-ins). The
built-in layers are faster, and take cuDNN on a GPU; these are for reading, and for the variants
that Keras does not have.

Shapes: B is the batch, D the input features, H the units.

This module imports nothing else from kala.
"""

import keras
from keras import ops


def _check_units(units):
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise ValueError(f"`units` must be an integer >= 1. Received: units={units!r}")


def _single_state(states):
    return states[0] if isinstance(states, (list, tuple)) else states


def _add_kernels(layer, features, blocks):
    """The input and recurrent weights of `blocks` gates side by side: kernel (D, blocks·H),
    recurrent kernel (H, blocks·H), initialized as Keras's cells do."""
    units = layer.units
    layer.kernel = layer.add_weight(shape=(features, blocks * units), name="kernel",
                                    initializer="glorot_uniform")
    layer.recurrent_kernel = layer.add_weight(shape=(units, blocks * units),
                                              name="recurrent_kernel", initializer="orthogonal")


def _gates_bias(units, blocks, ones_at=None):
    """A bias initializer for `blocks` gates of `units` each, ones in block `ones_at`."""

    def initializer(shape, dtype=None):
        parts = [(keras.initializers.Ones() if index == ones_at else keras.initializers.Zeros())(
            (units,), dtype=dtype) for index in range(blocks)]
        return ops.concatenate(parts)

    return initializer


class _GatedCell(keras.layers.Layer):
    """What the LSTM variants share: `blocks` gates, each reading [h_prev, x]; the state is
    (h, c)."""

    blocks = 4
    forget_block = None

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        _check_units(units)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        _add_kernels(self, input_shape[-1], self.blocks)
        self.bias = self.add_weight(
            shape=(self.blocks * self.units,), name="bias",
            initializer=_gates_bias(self.units, self.blocks, self.forget_block))

    def _preactivations(self, inputs, h_prev):
        z = (ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
             + self.bias)                                                # (B, blocks·H)
        return ops.split(z, self.blocks, axis=-1)                         # (B, H) each

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="kala")
class SimpleRNNCell(keras.layers.Layer):
    """The plain RNN of the essay's first diagram: one tanh layer that mixes the input with the
    previous output. Weights as `keras.layers.SimpleRNNCell`: kernel (D, H), recurrent kernel
    (H, H), bias (H)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        _check_units(units)
        self.units = units
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        _add_kernels(self, input_shape[-1], 1)
        self.bias = self.add_weight(shape=(self.units,), name="bias", initializer="zeros")

    def call(self, inputs, states, training=False):
        h_prev = _single_state(states)                      # (B, H)
        h = ops.tanh(ops.matmul(inputs, self.kernel)        # (B, D) @ (D, H)
                     + ops.matmul(h_prev, self.recurrent_kernel)
                     + self.bias)                           # (B, H)
        return h, [h] if isinstance(states, (list, tuple)) else h

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="kala")
class LSTMCell(_GatedCell):
    """The LSTM as the essay walks through it: forget gate, input gate and candidate, the new cell
    state, output gate, hidden state. Weights as `keras.layers.LSTMCell`, gates in the order i, f,
    c, o: kernel (D, 4H), recurrent kernel (H, 4H), bias (4H), the forget gate's bias starting
    at 1 (Jozefowicz et al. 2015)."""

    forget_block = 1

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states                                   # (B, H) each
        # Every gate looks at the input and the previous output: [h_prev, x] times its weights.
        z_i, z_f, z_c, z_o = self._preactivations(inputs, h_prev)  # (B, H) each
        forget = ops.sigmoid(z_f)      # what to keep of the old cell state, 0 to 1 per number
        input_gate = ops.sigmoid(z_i)  # which numbers to update
        candidate = ops.tanh(z_c)      # the new values that could be added, -1 to 1
        c = forget * c_prev + input_gate * candidate              # the new cell state
        output_gate = ops.sigmoid(z_o)  # which parts of the cell state to output
        h = output_gate * ops.tanh(c)                             # (B, H)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="kala")
class GRUCell(keras.layers.Layer):
    """The GRU (Cho et al. 2014), the essay's last variant: an update gate that both forgets and
    writes, and a reset gate that decides how much of the past the candidate sees. As in Keras,
    the update gate z is the share of the old state kept (the essay's figure writes it the other
    way round, z for the share of the new). Weights as
    `keras.layers.GRUCell`, gates in the order z, r, h: kernel (D, 3H), recurrent kernel (H, 3H);
    with `reset_after=True` (Keras's default, the form cuDNN runs) the reset gate applies after
    the recurrent matrix and the bias is (2, 3H), one row for the input and one for the recurrent
    part; with `reset_after=False` (Cho et al.'s form) it applies before, and the bias is (3H)."""

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(**kwargs)
        _check_units(units)
        if not isinstance(reset_after, bool):
            raise ValueError(f"`reset_after` must be True or False. Received: "
                             f"reset_after={reset_after!r}")
        self.units = units
        self.reset_after = reset_after
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        _add_kernels(self, input_shape[-1], 3)
        bias_shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        self.bias = self.add_weight(shape=bias_shape, name="bias", initializer="zeros")

    def call(self, inputs, states, training=False):
        h_prev = _single_state(states)                                     # (B, H)
        input_bias, recurrent_bias = ((self.bias[0], self.bias[1]) if self.reset_after
                                      else (self.bias, 0.0))
        x_z, x_r, x_h = ops.split(ops.matmul(inputs, self.kernel) + input_bias, 3, axis=-1)
        r_z, r_r, r_h = ops.split(self.recurrent_kernel, 3, axis=-1)      # (H, H) each
        b_z, b_r, b_h = (ops.split(recurrent_bias, 3, axis=-1) if self.reset_after
                         else (0.0, 0.0, 0.0))
        update = ops.sigmoid(x_z + ops.matmul(h_prev, r_z) + b_z)  # how much of the past to keep
        reset = ops.sigmoid(x_r + ops.matmul(h_prev, r_r) + b_r)   # how much the candidate sees
        if self.reset_after:
            candidate = ops.tanh(x_h + reset * (ops.matmul(h_prev, r_h) + b_h))
        else:
            candidate = ops.tanh(x_h + ops.matmul(reset * h_prev, r_h))
        # One gate forgets and writes at once: keep `update` of the old, add the rest of the new.
        h = update * h_prev + (1.0 - update) * candidate                   # (B, H)
        return h, [h] if isinstance(states, (list, tuple)) else h

    def get_config(self):
        return {**super().get_config(), "units": self.units, "reset_after": self.reset_after}


@keras.saving.register_keras_serializable(package="kala")
class PeepholeLSTMCell(_GatedCell):
    """The LSTM with peephole connections (Gers & Schmidhuber 2000): the input and forget gates
    also look at the previous cell state, the output gate at the new one. Weights: the LSTM's
    (gates i, f, c, o), then three diagonal peephole vectors (H) for the input, forget and output
    gates."""

    forget_block = 1

    def build(self, input_shape):
        super().build(input_shape)
        for gate in ("input", "forget", "output"):
            setattr(self, f"{gate}_peephole", self.add_weight(
                shape=(self.units,), name=f"{gate}_peephole", initializer="zeros"))

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states                                           # (B, H) each
        z_i, z_f, z_c, z_o = self._preactivations(inputs, h_prev)
        forget = ops.sigmoid(z_f + self.forget_peephole * c_prev)  # it peeks at the old cell
        input_gate = ops.sigmoid(z_i + self.input_peephole * c_prev)
        candidate = ops.tanh(z_c)
        c = forget * c_prev + input_gate * candidate                      # the new cell state
        output_gate = ops.sigmoid(z_o + self.output_peephole * c)  # it peeks at the new cell
        h = output_gate * ops.tanh(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="kala")
class CoupledLSTMCell(_GatedCell):
    """The LSTM with coupled forget and input gates: new values are written only where old ones
    are forgotten, input gate = 1 - forget gate. No input-gate weights: kernel (D, 3H), recurrent
    kernel (H, 3H), bias (3H), gates in the order f, c, o; the forget bias starts at 1."""

    blocks = 3
    forget_block = 0

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states                                           # (B, H) each
        z_f, z_c, z_o = self._preactivations(inputs, h_prev)
        forget = ops.sigmoid(z_f)
        candidate = ops.tanh(z_c)
        c = forget * c_prev + (1.0 - forget) * candidate  # forget and write in one decision
        output_gate = ops.sigmoid(z_o)
        h = output_gate * ops.tanh(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="kala")
class LSTM1997Cell(_GatedCell):
    """The original LSTM (Hochreiter & Schmidhuber 1997), before the forget gate existed: the cell
    only adds, c = c_prev + i·g, with the candidate g squashed to [-2, 2] (4σ(z) - 2) and the cell
    output to [-1, 1] (2σ(c) - 1). Gates in the order i, c, o: kernel (D, 3H), recurrent kernel
    (H, 3H), bias (3H)."""

    blocks = 3

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states                                           # (B, H) each
        z_i, z_c, z_o = self._preactivations(inputs, h_prev)
        input_gate = ops.sigmoid(z_i)
        candidate = 4.0 * ops.sigmoid(z_c) - 2.0                          # in [-2, 2]
        # Nothing is ever forgotten: the cell is the paper's "constant error carousel".
        c = c_prev + input_gate * candidate
        output_gate = ops.sigmoid(z_o)
        h = output_gate * (2.0 * ops.sigmoid(c) - 1.0)                    # in [-1, 1]
        return h, [h, c]
