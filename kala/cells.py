"""The essay's cells, written out: one step of each, top to bottom, as the essay tells it.

Each cell is a Keras cell for `keras.layers.RNN(cell)`, with the same weights, in the same layout,
as Keras's built-in cell of the same name, so that weights move between them with `get_weights`
and `set_weights` (tests/test_cells.py checks outputs and gradients against the built-ins). The
built-in layers are faster, and take cuDNN on a GPU; these are for reading, for watching the
gates (`watch`), and for the variants that Keras does not have.

Every cell's `step` computes one time step and returns its named values in the essay's order
(for the LSTM: forget, input, candidate, cell, output, hidden); `call`, which Keras runs, keeps
the hidden state and the cell state of it, and `watch` records all of it, so the equations are
written once.

Shapes: B is the batch, D the input features, H the units.

This module imports only `kala.checks` from kala.
"""


import keras
import numpy as np
from keras import ops

from kala import checks

ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu}


def _single_state(states):
    return states[0] if isinstance(states, (list, tuple)) else states


@keras.saving.register_keras_serializable(package="kala")
class GateBias(keras.initializers.Initializer):
    """The bias of gates side by side: every number of block `b` starts at `values[b]`.
    `GateBias([0, 1, 0, 0])` is the LSTM's: forget gate (the second block) at 1, the rest at 0."""

    def __init__(self, values):
        self.values = [float(value) for value in values]

    def __call__(self, shape, dtype=None):
        units = shape[-1] // len(self.values)
        values = np.broadcast_to(np.repeat(self.values, units), shape)
        return ops.cast(values, dtype or "float32")

    def get_config(self):
        return {"values": self.values}


@keras.saving.register_keras_serializable(package="kala")
class ChronoBias(keras.initializers.Initializer):
    """Chrono initialization (Tallec & Ollivier 2018): each unit's forget-gate bias is
    log(u), u ~ U[1, max_lag - 1], and its input-gate bias is minus that, so that at the start
    the units remember over time scales spread up to `max_lag` steps instead of the few steps
    that a bias of 0 or 1 gives (σ(1) ≈ 0.73 kept per step). `blocks` gates sit side by side;
    `input_block` is None for a cell without an input gate."""

    def __init__(self, max_lag, blocks, forget_block, input_block=None, seed=None):
        self.max_lag, self.blocks = checks.integer("max_lag", max_lag, minimum=3), blocks
        self.forget_block, self.input_block, self.seed = forget_block, input_block, seed

    def __call__(self, shape, dtype=None):
        units = shape[-1] // self.blocks
        forget = ops.log(keras.random.uniform((units,), 1.0, self.max_lag - 1.0, seed=self.seed))
        blocks = [ops.zeros((units,)) for _ in range(self.blocks)]
        blocks[self.forget_block] = forget
        if self.input_block is not None:
            blocks[self.input_block] = -forget
        return ops.cast(ops.concatenate(blocks), dtype or "float32")

    def get_config(self):
        return {"max_lag": self.max_lag, "blocks": self.blocks, "forget_block": self.forget_block,
                "input_block": self.input_block, "seed": self.seed}


class _Cell(keras.layers.Layer):
    """What every cell shares: `blocks` gates side by side, each reading [h_prev, x], with
    kernel (D, blocks·H), recurrent kernel (H, blocks·H) and a bias initialized as Keras's cells
    do (the LSTMs' forget gate at 1); a `step` that returns the named values of one time step;
    and a `call` that keeps the hidden state (and the cell state, for the LSTMs) of it."""

    blocks = 1
    forget_block = None         # The block whose bias starts at 1 (Jozefowicz et al. 2015).
    has_cell_state = False

    def __init__(self, units, recurrent_initializer="orthogonal", bias_initializer=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = units = checks.integer("units", units)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = (None if bias_initializer is None
                                 else keras.initializers.get(bias_initializer))
        self.state_size = [units, units] if self.has_cell_state else units
        self.output_size = units

    @property
    def bias_shape(self):
        return (self.blocks * self.units,)

    def build(self, input_shape):
        width = self.blocks * self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], width), name="kernel",
                                      initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(shape=(self.units, width),
                                                name="recurrent_kernel",
                                                initializer=self.recurrent_initializer)
        default = GateBias([1.0 if block == self.forget_block else 0.0
                            for block in range(self.blocks)])
        self.bias = self.add_weight(shape=self.bias_shape, name="bias",
                                    initializer=self.bias_initializer or default)

    def _preactivations(self, inputs, h_prev):
        z = (ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
             + self.bias)                                                # (B, blocks·H)
        return ops.split(z, self.blocks, axis=-1)                         # (B, H) each

    def call(self, inputs, states, training=False):
        if self.has_cell_state:
            values = self.step(inputs, states)
            return values["hidden"], [values["hidden"], values["cell"]]
        h = self.step(inputs, _single_state(states))["hidden"]
        return h, [h] if isinstance(states, (list, tuple)) else h

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": (None if self.bias_initializer is None
                                     else keras.initializers.serialize(self.bias_initializer))}


@keras.saving.register_keras_serializable(package="kala")
class SimpleRNNCell(_Cell):
    """The plain RNN of the essay's first diagram: one tanh layer that mixes the input with the
    previous output. Weights as `keras.layers.SimpleRNNCell`: kernel (D, H), recurrent kernel
    (H, H), bias (H). `activation="relu"` with an identity recurrent kernel is the IRNN
    (Le et al. 2015)."""

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, **kwargs)
        self.activation = checks.one_of("activation", activation, ACTIVATIONS)

    def step(self, inputs, h_prev):
        (z,) = self._preactivations(inputs, h_prev)          # (B, D) @ (D, H) + (B, H) @ (H, H)
        return {"hidden": ACTIVATIONS[self.activation](z)}   # (B, H)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


@keras.saving.register_keras_serializable(package="kala")
class LSTMCell(_Cell):
    """The LSTM as the essay walks through it: forget gate, input gate and candidate, the new cell
    state, output gate, hidden state. Weights as `keras.layers.LSTMCell`, gates in the order i, f,
    c, o: kernel (D, 4H), recurrent kernel (H, 4H), bias (4H), the forget gate's bias starting
    at 1 (Jozefowicz et al. 2015)."""

    blocks, forget_block, has_cell_state = 4, 1, True

    def step(self, inputs, states):
        h_prev, c_prev = states                                   # (B, H) each
        # Every gate looks at the input and the previous output: [h_prev, x] times its weights.
        z_i, z_f, z_c, z_o = self._preactivations(inputs, h_prev)  # (B, H) each
        forget = ops.sigmoid(z_f)      # what to keep of the old cell state, 0 to 1 per number
        input_gate = ops.sigmoid(z_i)  # which numbers to update
        candidate = ops.tanh(z_c)      # the new values that could be added, -1 to 1
        c = forget * c_prev + input_gate * candidate              # the new cell state
        output_gate = ops.sigmoid(z_o)  # which parts of the cell state to output
        h = output_gate * ops.tanh(c)                             # (B, H)
        return {"forget": forget, "input": input_gate, "candidate": candidate, "cell": c,
                "output": output_gate, "hidden": h}


@keras.saving.register_keras_serializable(package="kala")
class GRUCell(_Cell):
    """The GRU (Cho et al. 2014), the essay's last variant: an update gate that both forgets and
    writes, and a reset gate that decides how much of the past the candidate sees. As in Keras,
    the update gate z is the share of the old state kept (the essay's figure writes it the other
    way round, z for the share of the new). Weights as
    `keras.layers.GRUCell`, gates in the order z, r, h: kernel (D, 3H), recurrent kernel (H, 3H);
    with `reset_after=True` (Keras's default, the form cuDNN runs) the reset gate applies after
    the recurrent matrix and the bias is (2, 3H), one row for the input and one for the recurrent
    part; with `reset_after=False` (Cho et al.'s form) it applies before, and the bias is (3H)."""

    blocks = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = checks.boolean("reset_after", reset_after)

    @property
    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def step(self, inputs, h_prev):
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
        return {"update": update, "reset": reset, "candidate": candidate, "hidden": h}

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}


@keras.saving.register_keras_serializable(package="kala")
class PeepholeLSTMCell(LSTMCell):
    """The LSTM with peephole connections (Gers & Schmidhuber 2000): the input and forget gates
    also look at the previous cell state, the output gate at the new one. Weights: the LSTM's
    (gates i, f, c, o), then three diagonal peephole vectors (H) for the input, forget and output
    gates."""

    def build(self, input_shape):
        super().build(input_shape)
        for gate in ("input", "forget", "output"):
            setattr(self, f"{gate}_peephole", self.add_weight(
                shape=(self.units,), name=f"{gate}_peephole", initializer="zeros"))

    def step(self, inputs, states):
        h_prev, c_prev = states                                           # (B, H) each
        z_i, z_f, z_c, z_o = self._preactivations(inputs, h_prev)
        forget = ops.sigmoid(z_f + self.forget_peephole * c_prev)  # it peeks at the old cell
        input_gate = ops.sigmoid(z_i + self.input_peephole * c_prev)
        candidate = ops.tanh(z_c)
        c = forget * c_prev + input_gate * candidate                      # the new cell state
        output_gate = ops.sigmoid(z_o + self.output_peephole * c)  # it peeks at the new cell
        h = output_gate * ops.tanh(c)
        return {"forget": forget, "input": input_gate, "candidate": candidate, "cell": c,
                "output": output_gate, "hidden": h}


@keras.saving.register_keras_serializable(package="kala")
class CoupledLSTMCell(_Cell):
    """The LSTM with coupled forget and input gates: new values are written only where old ones
    are forgotten, input gate = 1 - forget gate. No input-gate weights: kernel (D, 3H), recurrent
    kernel (H, 3H), bias (3H), gates in the order f, c, o; the forget bias starts at 1."""

    blocks, forget_block, has_cell_state = 3, 0, True

    def step(self, inputs, states):
        h_prev, c_prev = states                                           # (B, H) each
        z_f, z_c, z_o = self._preactivations(inputs, h_prev)
        forget = ops.sigmoid(z_f)
        input_gate = 1.0 - forget                         # forget and write in one decision
        candidate = ops.tanh(z_c)
        c = forget * c_prev + input_gate * candidate
        output_gate = ops.sigmoid(z_o)
        h = output_gate * ops.tanh(c)
        return {"forget": forget, "input": input_gate, "candidate": candidate, "cell": c,
                "output": output_gate, "hidden": h}


@keras.saving.register_keras_serializable(package="kala")
class LSTM1997Cell(_Cell):
    """The original LSTM (Hochreiter & Schmidhuber 1997), before the forget gate existed: the cell
    only adds, c = c_prev + i·g, with the candidate g squashed to [-2, 2] (4σ(z) - 2) and the cell
    output to [-1, 1] (2σ(c) - 1). Gates in the order i, c, o: kernel (D, 3H), recurrent kernel
    (H, 3H), bias (3H)."""

    blocks, has_cell_state = 3, True

    def step(self, inputs, states):
        h_prev, c_prev = states                                           # (B, H) each
        z_i, z_c, z_o = self._preactivations(inputs, h_prev)
        input_gate = ops.sigmoid(z_i)
        candidate = 4.0 * ops.sigmoid(z_c) - 2.0                          # in [-2, 2]
        # Nothing is ever forgotten: the cell is the paper's "constant error carousel".
        c = c_prev + input_gate * candidate
        output_gate = ops.sigmoid(z_o)
        h = output_gate * (2.0 * ops.sigmoid(c) - 1.0)                    # in [-1, 1]
        return {"input": input_gate, "candidate": candidate, "cell": c, "output": output_gate,
                "hidden": h}


def _essay_cell(cell):
    """A new essay cell of the kind and configuration of `cell` (an essay cell, or one of
    Keras's LSTM, GRU and SimpleRNN cells in the configurations the essay cells have)."""
    if isinstance(cell, _Cell):
        return type(cell).from_config(cell.get_config())
    def name(attribute, default):
        function = getattr(cell, attribute, None)
        return default if function is None else keras.activations.serialize(function)

    activation, recurrent = name("activation", None), name("recurrent_activation", "sigmoid")
    if getattr(cell, "use_bias", False) and recurrent == "sigmoid":
        if isinstance(cell, keras.layers.LSTMCell) and activation == "tanh":
            return LSTMCell(cell.units)
        if isinstance(cell, keras.layers.GRUCell) and activation == "tanh":
            return GRUCell(cell.units, reset_after=cell.reset_after)
        if isinstance(cell, keras.layers.SimpleRNNCell) and activation in ACTIVATIONS:
            return SimpleRNNCell(cell.units, activation=activation)
    raise ValueError(
        f"Cannot watch a {type(cell).__name__} with activation {activation!r}: only kala's "
        "cells and Keras's LSTM, GRU and SimpleRNN cells with their default activations (or "
        "ReLU for the SimpleRNN) have an essay cell to run their weights.")


def watch(model, inputs, layer=None):
    """Every value of every step of one recurrent layer of `model`, run on `inputs`.

    The layer's weights go into the essay cell of its kind (Keras's built-in layers have the same
    layout), whose `step` then runs over the sequence the layer reads in `model`, one step at a
    time, from zero states, and every padded step included. So the gates come from the same
    equations the model computes, written once in this module.

    Args:
        model: a functional Keras model, such as `kala.build_model` makes.
        inputs: a batch the model takes, for example token ids of shape (B, T).
        layer: the name of the recurrent layer; defaults to the first one.

    Returns:
        A dict from the names the cell's `step` gives ("forget", "input", "candidate", "cell",
        "output", "hidden" for an LSTM) to NumPy arrays of shape (B, T, H).

    Raises:
        ValueError: the model has no such recurrent layer, or the layer is bidirectional or runs
            backwards, or its cell has no essay cell (see `_essay_cell`).
    """
    recurrent = [candidate for candidate in model.layers
                 if isinstance(candidate, (keras.layers.RNN, keras.layers.Bidirectional))]
    names = [candidate.name for candidate in recurrent]
    if not recurrent or (layer is not None and layer not in names):
        raise ValueError(f"No recurrent layer {layer!r} in model {model.name!r}; its recurrent "
                         f"layers: {', '.join(names) or 'none'}.")
    rnn = recurrent[names.index(layer) if layer is not None else 0]
    if isinstance(rnn, keras.layers.Bidirectional) or rnn.go_backwards:
        raise ValueError(f"Layer {rnn.name!r} runs backwards (or both ways); watch runs a "
                         "sequence forwards only.")
    cell = _essay_cell(rnn.cell)
    sequence = keras.Model(model.input, rnn.input)(inputs)           # (B, T, D)
    cell.build(sequence.shape)
    cell.set_weights(rnn.cell.get_weights())
    batch = ops.shape(sequence)[0]
    h = c = ops.zeros((batch, cell.units))
    steps = []
    for time in range(sequence.shape[1]):
        values = cell.step(sequence[:, time], [h, c] if cell.has_cell_state else h)
        h, c = values["hidden"], values.get("cell")
        steps.append(values)
    return {name: np.stack([ops.convert_to_numpy(values[name]) for values in steps], axis=1)
            for name in steps[0]}
