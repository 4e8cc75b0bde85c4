"""The model builder: shapes, inputs, masking, options, cuDNN eligibility and bad arguments."""

import importlib

import keras
import numpy as np
import pytest

# Keras's TensorFlow RNN backend; `keras.src.backend.tensorflow.rnn` the attribute is a function.
keras_tf_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")

import kala
from kala import models

CELLS = ["simple_rnn", "lstm", "gru"]


@pytest.mark.parametrize("cell", CELLS)
def test_continuous_many_to_one_regression(cell, seeded):
    model = kala.build_model(cell, 6, input_features=3)
    (spec,) = model.inputs
    assert spec.name == "sequence" and spec.dtype == "float32"
    assert tuple(spec.shape) == (None, None, 3)  # Dynamic batch and time.
    assert model.output_names == ["prediction"]
    for batch, length in [(2, 5), (4, 11)]:
        outputs = model(np.zeros((batch, length, 3), np.float32))
        assert tuple(outputs.shape) == (batch, 1)


@pytest.mark.parametrize("cell", CELLS)
def test_token_many_to_many_classification(cell, seeded):
    model = kala.build_model(cell, 6, vocab_size=12, head="steps", num_classes=5)
    (spec,) = model.inputs
    assert spec.name == "tokens" and spec.dtype == "int32"
    assert tuple(spec.shape) == (None, None)
    outputs = keras.ops.convert_to_numpy(model(np.ones((3, 9), np.int32)))
    assert outputs.shape == (3, 9, 5)
    np.testing.assert_allclose(outputs.sum(axis=-1), 1.0, rtol=1e-5)  # Probabilities.


@pytest.mark.parametrize("cell", CELLS)
def test_padding_is_masked_for_token_inputs(cell, seeded):
    model = kala.build_model(cell, 6, vocab_size=12, mask_padding=True, num_classes=3)
    sequence = np.array([[3, 7, 2, 9]], np.int32)
    padded = np.array([[3, 7, 2, 9, 0, 0, 0]], np.int32)
    np.testing.assert_allclose(model(sequence), model(padded), rtol=1e-5, atol=1e-6)
    # Without masking the padding changes the answer: the test can tell the two apart.
    unmasked = kala.build_model(cell, 6, vocab_size=12, num_classes=3)
    assert not np.allclose(unmasked(sequence), unmasked(padded), atol=1e-6)


def test_numpy_integers_are_accepted_as_sizes():
    model = kala.build_model("gru", np.int64(4), input_features=np.int64(2))
    assert model.layers[1].units == 4


def test_stacked_bidirectional_with_dropout():
    model = kala.build_model("lstm", 5, input_features=2, num_layers=3, bidirectional=True,
                             dropout_rate=0.25, head="steps", output_units=4)
    recurrent = [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(recurrent) == 3 and len(dropouts) == 3
    assert all(layer.forward_layer.return_sequences for layer in recurrent)
    assert dropouts[0].rate == 0.25
    assert tuple(model(np.zeros((2, 7, 2), np.float32)).shape) == (2, 7, 4)
    # Each direction has its own LSTM: 4 gates x (input + recurrent + bias) weights.
    first = recurrent[0]
    assert first.count_params() == 2 * 4 * (2 * 5 + 5 * 5 + 5)
    # A many-to-one stack returns sequences from every layer but the last.
    stack = kala.build_model("gru", 5, input_features=2, num_layers=2)
    rnns = [layer for layer in stack.layers if isinstance(layer, keras.layers.GRU)]
    assert [layer.return_sequences for layer in rnns] == [True, False]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lstm_and_gru_are_configured_for_cudnn(cell):
    model = kala.build_model(cell, 8, input_features=2, num_layers=2, dropout_rate=0.1)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            assert layer.use_cudnn == "auto"
            assert layer.recurrent_dropout == 0
            # Keras's own test of whether the arguments allow the cuDNN kernel.
            arguments = dict(activation=layer.activation,
                             recurrent_activation=layer.recurrent_activation,
                             unroll=layer.unroll, use_bias=layer.use_bias)
            if cell == "lstm":
                assert keras_tf_rnn._do_lstm_arguments_support_cudnn(**arguments)
            else:
                assert keras_tf_rnn._do_gru_arguments_support_cudnn(
                    reset_after=layer.cell.reset_after, **arguments)


def test_without_cudnn_keeps_weights_and_answers(seeded):
    model = kala.build_model("gru", 4, input_features=2, num_layers=2, bidirectional=True)
    copy = models.without_cudnn(model)
    inputs = np.random.default_rng(0).normal(size=(3, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(copy(inputs), model(inputs), rtol=1e-6)
    for layer in copy.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            assert layer.forward_layer.use_cudnn is False
            assert layer.backward_layer.use_cudnn is False
    assert all(layer.forward_layer.use_cudnn == "auto" for layer in model.layers
               if isinstance(layer, keras.layers.Bidirectional))


@pytest.mark.parametrize("arguments, message", [
    (dict(cell="transformer", input_features=2), "Unknown `cell` 'transformer'. Valid cells: "
                                                 "simple_rnn, lstm, gru"),
    (dict(units=0, input_features=2), "units=0"),
    (dict(units=-3, input_features=2), "units=-3"),
    (dict(units=2.5, input_features=2), "units=2.5"),
    (dict(), "exactly one of `input_features`"),
    (dict(input_features=2, vocab_size=10), "exactly one of `input_features`"),
    (dict(input_features=0), "input_features=0"),
    (dict(input_features=2, mask_padding=True), "mask_padding"),
    (dict(input_features=2, num_layers=0), "num_layers=0"),
    (dict(input_features=2, dropout_rate=1.0), "dropout_rate=1.0"),
    (dict(input_features=2, head="tree"), "head='tree'"),
    (dict(input_features=2, num_classes=1), "num_classes=1"),
    (dict(input_features=2, use_cudnn=True), "use_cudnn=True"),
    (dict(input_features=2, use_cudnn=0), "use_cudnn=0"),
    (dict(cell=["lstm"], input_features=2), "Unknown `cell` ['lstm']"),
])
def test_bad_arguments_raise_value_error_naming_them(arguments, message):
    with pytest.raises(ValueError) as error:
        kala.build_model(**arguments)
    assert message in str(error.value)
