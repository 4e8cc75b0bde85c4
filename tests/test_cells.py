"""The essay's cells against Keras's built-in cells: same weights, same outputs, same gradients."""

import keras
import numpy as np
from keras import ops
import pytest
import tensorflow as tf

from kala import cells

B, T, D, H = 4, 7, 3, 5

PAIRS = {
    "simple_rnn": (lambda: cells.SimpleRNNCell(H), lambda: keras.layers.SimpleRNNCell(H)),
    "lstm": (lambda: cells.LSTMCell(H), lambda: keras.layers.LSTMCell(H)),
    "gru": (lambda: cells.GRUCell(H), lambda: keras.layers.GRUCell(H)),
    "gru_reset_before": (lambda: cells.GRUCell(H, reset_after=False),
                         lambda: keras.layers.GRUCell(H, reset_after=False)),
}


def sequence_model(cell):
    inputs = keras.Input((None, D))
    return keras.Model(inputs, keras.layers.RNN(cell, return_sequences=True)(inputs))


@pytest.mark.parametrize("name", PAIRS)
def test_an_essay_cell_matches_the_keras_cell_in_outputs_and_gradients(name):
    essay_cell, keras_cell = PAIRS[name]
    keras.utils.set_random_seed(0)
    reference = sequence_model(keras_cell())
    essay = sequence_model(essay_cell())
    assert [w.shape for w in essay.get_weights()] == [w.shape for w in reference.get_weights()]
    # Random weights, not the initial ones: a bias of zeros would hide a misplaced bias.
    rng = np.random.default_rng(1)
    weights = [rng.normal(0, 0.5, size=w.shape).astype("float32")
               for w in reference.get_weights()]
    reference.set_weights(weights)
    essay.set_weights(weights)
    x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))

    def outputs_and_gradients(model):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)
            loss = tf.reduce_sum(tf.sin(y))
        return y, tape.gradient(loss, [x, *model.trainable_variables])

    y_essay, grads_essay = outputs_and_gradients(essay)
    y_keras, grads_keras = outputs_and_gradients(reference)
    np.testing.assert_allclose(y_essay, y_keras, atol=1e-5)
    for ours, theirs in zip(grads_essay, grads_keras):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_the_lstm_cell_starts_with_its_forget_gate_open():
    cell = cells.LSTMCell(H)
    cell.build((None, D))
    bias = cell.bias.numpy()
    np.testing.assert_array_equal(bias[H:2 * H], 1.0)  # Gates i, f, c, o: f is the second.
    assert not bias[:H].any() and not bias[2 * H:].any()


@pytest.mark.parametrize("name", PAIRS)
def test_an_essay_cell_survives_serialization(name, tmp_path):
    essay_cell, _ = PAIRS[name]
    keras.utils.set_random_seed(0)
    model = sequence_model(essay_cell())
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(2).normal(size=(2, 5, D)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert type(loaded.layers[1].cell) is type(model.layers[1].cell)


@pytest.mark.parametrize("make, message", [
    (lambda: cells.LSTMCell(0), "`units` must be an integer >= 1. Received: units=0"),
    (lambda: cells.SimpleRNNCell(2.5), "Received: units=2.5"),
    (lambda: cells.GRUCell(4, reset_after="yes"), "`reset_after` must be True or False"),
])
def test_bad_cell_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("name", PAIRS)
def test_a_model_of_essay_cells_exports_and_answers_like_keras(name, tmp_path):
    import kala

    essay_cell, _ = PAIRS[name]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, D), name="sequence")
    hidden = keras.layers.RNN(essay_cell())(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="prediction")(hidden))
    # export_model reloads the SavedModel and refuses it unless it answers like the Keras model.
    version = kala.export_model(model, str(tmp_path), "essay")
    loaded = tf.saved_model.load(version)
    x = np.random.default_rng(3).normal(size=(2, 9, D)).astype("float32")
    answer = loaded.signatures["serving_default"](sequence=tf.constant(x))
    np.testing.assert_allclose(list(answer.values())[0], model(x), atol=1e-5)


# --- The variants that Keras does not have, against the equations in NumPy. ---------------------

def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_rnn(step, blocks):
    """A reference cell in NumPy: runs `step(gates, c) -> (h, c)` over the sequence, where
    `gates` are the `blocks` pre-activations [h, x] · weights + bias."""

    def run(x, kernel, recurrent_kernel, bias, *extra):
        h = c = np.zeros((x.shape[0], H))
        outputs = []
        for t in range(x.shape[1]):
            gates = np.split(x[:, t] @ kernel + h @ recurrent_kernel + bias, blocks, axis=-1)
            h, c = step(gates, c, *extra)
            outputs.append(h)
        return np.stack(outputs, axis=1)

    return run


def peephole_step(gates, c, p_i, p_f, p_o):
    z_i, z_f, z_c, z_o = gates
    i, f = sigmoid(z_i + p_i * c), sigmoid(z_f + p_f * c)
    c = f * c + i * np.tanh(z_c)
    return sigmoid(z_o + p_o * c) * np.tanh(c), c


def coupled_step(gates, c):
    z_f, z_c, z_o = gates
    f = sigmoid(z_f)
    c = f * c + (1 - f) * np.tanh(z_c)
    return sigmoid(z_o) * np.tanh(c), c


def lstm1997_step(gates, c):
    z_i, z_c, z_o = gates
    c = c + sigmoid(z_i) * (4 * sigmoid(z_c) - 2)
    return sigmoid(z_o) * (2 * sigmoid(c) - 1), c


VARIANTS = {
    "peephole": (cells.PeepholeLSTMCell, numpy_rnn(peephole_step, 4),
                 [(D, 4 * H), (H, 4 * H), (4 * H,), (H,), (H,), (H,)]),
    "coupled": (cells.CoupledLSTMCell, numpy_rnn(coupled_step, 3), [(D, 3 * H), (H, 3 * H), (3 * H,)]),
    "lstm1997": (cells.LSTM1997Cell, numpy_rnn(lstm1997_step, 3), [(D, 3 * H), (H, 3 * H), (3 * H,)]),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_a_variant_cell_computes_its_equations(name):
    make, reference, shapes = VARIANTS[name]
    model = sequence_model(make(H))
    assert [tuple(w.shape) for w in model.get_weights()] == shapes
    rng = np.random.default_rng(4)
    weights = [rng.normal(0, 0.5, size=shape).astype("float32") for shape in shapes]
    model.set_weights(weights)
    x = rng.normal(size=(B, T, D)).astype("float32")
    np.testing.assert_allclose(model(x), reference(x.astype("float64"), *weights), atol=1e-5)


def test_the_1997_cell_keeps_its_output_between_minus_one_and_one():
    model = sequence_model(cells.LSTM1997Cell(H))
    x = np.random.default_rng(5).normal(0, 3, size=(B, 40, D)).astype("float32")
    outputs = model(x).numpy()
    assert np.all(np.abs(outputs) <= 1)


@pytest.mark.parametrize("name", VARIANTS)
def test_a_variant_cell_survives_serialization_and_export(name, tmp_path):
    import kala

    make, _, _ = VARIANTS[name]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, D), name="sequence")
    model = keras.Model(inputs, keras.layers.RNN(make(H))(inputs))
    model.save(str(tmp_path / "model.keras"))
    loaded = keras.models.load_model(str(tmp_path / "model.keras"))
    x = np.random.default_rng(6).normal(size=(2, 5, D)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    kala.export_model(model, str(tmp_path / "saved"), "variant")  # Reloads and compares.


# --- Watching the gates: the layer's weights through the essay cell, step by step. --------------

@pytest.mark.parametrize("cell, implementation", [
    ("lstm", "builtin"), ("gru", "builtin"), ("simple_rnn", "builtin"), ("lstm", "essay"),
    ("peephole_lstm", "essay"), ("coupled_lstm", "essay"), ("lstm1997", "essay"),
])
def test_watch_gives_every_step_of_the_layer_the_model_runs(cell, implementation):
    import kala

    keras.utils.set_random_seed(0)
    model = kala.build_model(cell, H, vocab_size=11, num_layers=2, head="steps", num_classes=3,
                             implementation=implementation)
    rng = np.random.default_rng(7)
    # Random weights, so that a gate in the wrong place shows.
    model.set_weights([rng.normal(0, 0.5, size=w.shape).astype("float32")
                       for w in model.get_weights()])
    tokens = rng.integers(1, 11, size=(B, T)).astype("int32")
    for name in (f"{cell}_1", f"{cell}_2"):
        values = cells.watch(model, tokens, layer=name)
        layer_output = keras.Model(model.input, model.get_layer(name).output)(tokens)
        np.testing.assert_allclose(values["hidden"], layer_output, atol=1e-5)
        assert all(value.shape == (B, T, H) for value in values.values())
    if "cell" in values:
        # The cell state is what the gates made of it: c = f·c_prev + i·g.
        forget = values.get("forget", 1.0)
        previous = np.concatenate([np.zeros((B, 1, H)), values["cell"][:, :-1]], axis=1)
        np.testing.assert_allclose(
            values["cell"], forget * previous + values["input"] * values["candidate"], atol=1e-5)
    expected = {"lstm": ["forget", "input", "candidate", "cell", "output", "hidden"],
                "gru": ["update", "reset", "candidate", "hidden"], "simple_rnn": ["hidden"],
                "lstm1997": ["input", "candidate", "cell", "output", "hidden"]}
    assert list(values) == expected.get(cell, expected["lstm"])


def test_watch_refuses_what_it_cannot_run():
    import kala

    model = kala.build_model("lstm", H, input_features=D, bidirectional=True)
    with pytest.raises(ValueError, match="runs backwards"):
        cells.watch(model, np.zeros((1, 3, D), "float32"))
    model = kala.build_model("gru", H, input_features=D)
    with pytest.raises(ValueError, match="No recurrent layer 'lstm_1'.*its recurrent layers: "
                                         "gru_1"):
        cells.watch(model, np.zeros((1, 3, D), "float32"), layer="lstm_1")
    inputs = keras.Input((None, D))
    odd = keras.Model(inputs, keras.layers.LSTM(H, activation="relu")(inputs))
    with pytest.raises(ValueError, match="Cannot watch a LSTMCell with activation 'relu'"):
        cells.watch(odd, np.zeros((1, 3, D), "float32"))

    class Cumulative(keras.layers.Layer):  # A cell of the user's own, without activations.
        state_size = output_size = H

        def call(self, inputs, states):
            h = states[0] + ops.sum(inputs, axis=-1, keepdims=True)
            return h, [h]

    own = keras.Model(inputs, keras.layers.RNN(Cumulative())(inputs))
    with pytest.raises(ValueError, match="Cannot watch a Cumulative with activation None"):
        cells.watch(own, np.zeros((1, 3, D), "float32"))
