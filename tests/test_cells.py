"""The essay's cells against Keras's built-in cells: same weights, same outputs, same gradients."""

import keras
import numpy as np
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
