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


# Every cell, as Keras's layer where it has one and as the essay's cell in keras.layers.RNN.
IMPLEMENTED = [(cell, "essay") for cell in CELLS] + [
    (cell, "builtin") for cell in ("simple_rnn", "lstm", "gru")]


@pytest.mark.parametrize("cell, implementation", IMPLEMENTED)
@pytest.mark.parametrize("head", ["sequence", "steps"])
def test_a_padded_batch_answers_as_each_sequence_alone(cell, implementation, head, seeded):
    # Recordings of different lengths, padded on the right with all-zero steps (as tf.data's
    # padded_batch pads) and masked: each row's answer is that of the sequence alone.
    model = kala.build_model(cell, 6, input_features=3, mask_padding=True, head=head,
                             num_classes=4, implementation=implementation,
                             input_scale=([1.0, -2.0, 0.5], [2.0, 1.0, 3.0]))
    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(length, 3)).astype(np.float32) for length in (7, 2, 5)]
    padded = np.zeros((3, 9, 3), np.float32)
    for row, sequence in enumerate(sequences):
        padded[row, :len(sequence)] = sequence
    together = keras.ops.convert_to_numpy(model(padded))
    for row, sequence in enumerate(sequences):
        alone = keras.ops.convert_to_numpy(model(sequence[None]))[0]
        if head == "steps":  # Compare the real steps; padded steps are not answers.
            together_row = together[row, :len(sequence)]
        else:
            together_row = together[row]
        np.testing.assert_allclose(together_row, alone, rtol=1e-5, atol=1e-5)
    # Without the mask the padding changes the answer: the test can tell the two apart.
    unmasked = kala.build_model(cell, 6, input_features=3, num_classes=4,
                                implementation=implementation)
    assert not np.allclose(unmasked(padded)[1], unmasked(sequences[1][None])[0], atol=1e-5)


def test_scales_make_a_model_read_and_answer_in_the_data_units(seeded):
    mean, std = np.array([100.0, -5.0], np.float32), np.array([20.0, 0.5], np.float32)
    model = kala.build_model("gru", 4, input_features=2, input_scale=(mean, std),
                             output_scale=(1000.0, 50.0), output_units=2)
    plain = kala.build_model("gru", 4, input_features=2, output_units=2)
    # The same recurrent and linear weights, without the scaling layers.
    plain.set_weights(model.get_weights()[-len(plain.get_weights()):])
    raw = np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32) * std + mean
    expected = keras.ops.convert_to_numpy(plain((raw - mean) / std)) * 50.0 + 1000.0
    np.testing.assert_allclose(model(raw), expected, rtol=1e-5)
    assert model.output_names == ["prediction"]


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


def test_servable_copy_keeps_weights_and_answers(seeded):
    model = kala.build_model("gru", 4, input_features=2, num_layers=2, bidirectional=True)
    copy = models.servable_copy(model)
    inputs = np.random.default_rng(0).normal(size=(3, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(copy(inputs), model(inputs), rtol=1e-6)
    for layer in copy.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            assert layer.forward_layer.use_cudnn is False
            assert layer.backward_layer.use_cudnn is False
    assert all(layer.forward_layer.use_cudnn == "auto" for layer in model.layers
               if isinstance(layer, keras.layers.Bidirectional))


@pytest.mark.parametrize("arguments, message", [
    (dict(cell="transformer", input_features=2), "`cell` must be one of simple_rnn, lstm, gru"),
    (dict(units=0, input_features=2), "units=0"),
    (dict(units=-3, input_features=2), "units=-3"),
    (dict(units=2.5, input_features=2), "units=2.5"),
    (dict(), "exactly one of `input_features`"),
    (dict(input_features=2, vocab_size=10), "exactly one of `input_features`"),
    (dict(input_features=0), "input_features=0"),
    (dict(vocab_size=5, input_scale=(0, 1)), "input_scale"),
    (dict(input_features=2, num_classes=3, output_scale=(0, 1)), "output_scale"),
    (dict(input_features=2, input_scale=(0, 0)), "std above 0"),
    (dict(input_features=2, output_scale=(0, float("nan"))), "std above 0"),
    (dict(input_features=2, input_scale="mean"), "Received: input_scale='mean'"),
    (dict(input_features=2, num_layers=0), "num_layers=0"),
    (dict(input_features=2, dropout_rate=1.0), "dropout_rate=1.0"),
    (dict(input_features=2, head="tree"), "head='tree'"),
    (dict(input_features=2, num_classes=1), "num_classes=1"),
    (dict(input_features=2, use_cudnn=True), "use_cudnn=True"),
    (dict(input_features=2, use_cudnn=0), "use_cudnn=0"),
    (dict(cell=["lstm"], input_features=2), "Received: cell=['lstm']"),
])
def test_bad_arguments_raise_value_error_naming_them(arguments, message):
    with pytest.raises(ValueError) as error:
        kala.build_model(**arguments)
    assert message in str(error.value)


# --- Every cell by name, built-in or essay, and the initializations for long lags. -------------

def test_every_cell_builds_by_name_with_the_layer_it_should():
    for cell, (builtin, essay_cell) in models.CELLS.items():
        model = kala.build_model(cell, 4, input_features=2)
        (layer,) = [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]
        if builtin is not None:
            assert type(layer) is builtin  # Keras's own layer, which takes cuDNN on a GPU.
        else:
            assert type(layer.cell) is essay_cell
        assert tuple(model(np.zeros((2, 3, 2), np.float32)).shape) == (2, 1)


@pytest.mark.parametrize("cell", CELLS)
def test_the_essay_implementation_answers_like_the_builtin_with_its_weights(cell, seeded):
    builtin = kala.build_model(cell, 5, vocab_size=9, num_classes=3)
    essay = kala.build_model(cell, 5, vocab_size=9, num_classes=3, implementation="essay")
    (layer,) = [layer for layer in essay.layers if isinstance(layer, keras.layers.RNN)]
    assert type(layer) is keras.layers.RNN and type(layer.cell) is models.CELLS[cell][1]
    essay.set_weights(builtin.get_weights())
    tokens = np.random.default_rng(0).integers(1, 9, size=(4, 12)).astype(np.int32)
    np.testing.assert_allclose(essay(tokens), builtin(tokens), atol=1e-5)


def recurrent_weights(model):
    (layer,) = [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]
    return [keras.ops.convert_to_numpy(weight) for weight in layer.cell.weights]


@pytest.mark.parametrize("implementation", ["builtin", "essay"])
def test_zero_forget_bias_and_chrono_set_the_gate_biases(implementation, seeded):
    H = 6
    default = recurrent_weights(kala.build_model("lstm", H, input_features=2,
                                                 implementation=implementation))
    np.testing.assert_array_equal(default[2], np.repeat([0.0, 1.0, 0.0, 0.0], H))
    zero = recurrent_weights(kala.build_model("lstm", H, input_features=2,
                                              implementation=implementation,
                                              initialization="zero_forget_bias"))
    np.testing.assert_array_equal(zero[2], 0.0)
    chrono = recurrent_weights(kala.build_model("lstm", H, input_features=2,
                                                implementation=implementation,
                                                initialization="chrono", max_lag=50))
    input_bias, forget_bias, candidate_bias, output_bias = np.split(chrono[2], 4)
    # log U[1, 49]: every forget bias in [0, log 49], different per unit; the input bias mirrors.
    assert np.all((forget_bias >= 0) & (forget_bias <= np.log(49))) and np.ptp(forget_bias) > 0
    np.testing.assert_allclose(input_bias, -forget_bias)
    assert not candidate_bias.any() and not output_bias.any()


def test_chrono_sets_the_coupled_cells_forget_gate_only(seeded):
    bias = recurrent_weights(kala.build_model("coupled_lstm", 4, input_features=2,
                                              initialization="chrono", max_lag=20))[2]
    forget_bias, rest = bias[:4], bias[4:]  # Gates f, c, o.
    assert np.all((forget_bias >= 0) & (forget_bias <= np.log(19))) and not rest.any()


@pytest.mark.parametrize("implementation", ["builtin", "essay"])
def test_irnn_is_a_relu_rnn_starting_from_the_identity(implementation, seeded):
    model = kala.build_model("simple_rnn", 5, input_features=2, implementation=implementation,
                             initialization="irnn")
    kernel, recurrent_kernel, bias = recurrent_weights(model)
    np.testing.assert_array_equal(recurrent_kernel, np.eye(5))
    hidden = keras.Model(model.input, model.layers[1].output)
    # One step from a zero state: h = relu(x · kernel), so some units are off, some on.
    x = np.random.default_rng(0).normal(size=(8, 1, 2)).astype(np.float32)
    outputs = keras.ops.convert_to_numpy(hidden(x))
    np.testing.assert_allclose(outputs, np.maximum(x[:, 0] @ kernel, 0), rtol=1e-5, atol=1e-6)
    assert outputs.min() == 0.0 and outputs.max() > 0


@pytest.mark.parametrize("arguments, message", [
    (dict(cell="peephole", input_features=2),
     "must be one of simple_rnn, lstm, gru, peephole_lstm, coupled_lstm, lstm1997. Received: "
     "cell='peephole'"),
    (dict(cell="coupled_lstm", input_features=2, implementation="builtin"),
     "Keras has no built-in layer for cell 'coupled_lstm'; cells with one: simple_rnn, lstm, gru"),
    (dict(input_features=2, implementation="fast"), "implementation='fast'"),
    (dict(input_features=2, initialization="he"),
     "`initialization` must be one of default, zero_forget_bias, chrono, irnn. Received: "
     "initialization='he'"),
    (dict(cell="lstm", input_features=2, initialization="irnn"),
     "`initialization='irnn'` applies to simple_rnn. Received: cell='lstm'"),
    (dict(cell="gru", input_features=2, initialization="chrono", max_lag=10),
     "applies to lstm, peephole_lstm, coupled_lstm. Received: cell='gru'"),
    (dict(input_features=2, initialization="chrono"), "`max_lag` goes with"),
    (dict(input_features=2, max_lag=10), "`max_lag` goes with"),
    (dict(input_features=2, initialization="chrono", max_lag=2), "max_lag=2"),
])
def test_bad_cell_choices_raise_value_error_naming_them(arguments, message):
    with pytest.raises(ValueError) as error:
        kala.build_model(**arguments)
    assert message in str(error.value)


def test_units_for_weights_finds_the_size_closest_to_a_weight_count():
    options = dict(vocab_size=30, embedding_dim=8, head="steps", num_classes=30)
    target = kala.build_model("lstm", 40, **options).count_params()
    assert kala.models.units_for_weights("lstm", target, **options) == 40
    units = kala.models.units_for_weights("simple_rnn", target, **options)

    def gap(size):
        return abs(kala.build_model("simple_rnn", size, **options).count_params() - target)

    assert gap(units) <= min(gap(units - 1), gap(units + 1))
    assert units > 40  # A SimpleRNN needs more units for the weights of an LSTM.


@pytest.mark.parametrize("name, expected", [
    ("lstm", {"cell": "lstm", "initialization": "default", "max_lag": None}),
    ("lstm+chrono", {"cell": "lstm", "initialization": "chrono", "max_lag": 30}),
    ("simple_rnn+irnn", {"cell": "simple_rnn", "initialization": "irnn", "max_lag": None}),
])
def test_a_variant_name_gives_the_arguments_of_build_model(name, expected):
    assert kala.models.variant(name, max_lag=30) == expected
    model = kala.build_model(**kala.models.variant(name, max_lag=30), units=4, input_features=2)
    assert model.layers[1].name == f"{expected['cell']}_1"


def test_an_unknown_variant_is_a_value_error_listing_the_variants():
    with pytest.raises(ValueError, match="`variant` must be one of simple_rnn, lstm, .*lstm\\+chrono"):
        kala.models.variant("gru+chrono")
