"""The signatures beside serving_default: `step`, `serve_text`, and ids outside the vocabulary."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kala
from kala import export, tasks
from conftest import serve_in_fresh_process

TEXT = "I grew up in France. My friends liked trains. I speak fluent"


def build(cell, task, seed=0, **options):
    keras.utils.set_random_seed(seed)
    return kala.build_model(cell, 6, **task.model_options, **options)


@pytest.fixture(scope="module")
def long_gap(tmp_path_factory):
    """The long-gap task, a model of it, and its export's path and signatures."""
    task = tasks.LongGap(4)
    model = build("lstm", task)
    version = kala.export_model(model, tmp_path_factory.mktemp("exports"), "long_gap",
                                **task.serving_options)
    return task, model, version, tf.saved_model.load(version).signatures


def run_steps(step, inputs, input_name):
    """Feeds a batch of sequences to a `step` signature one step at a time, from zero states;
    returns the output of every step, stacked on axis 1."""
    specs = step.structured_input_signature[1]
    states = {name: tf.zeros((len(inputs), spec.shape[1]))
              for name, spec in specs.items() if name != input_name}
    outputs = []
    for t in range(inputs.shape[1]):
        answer = step(**{input_name: tf.constant(inputs[:, t])}, **states)
        states = {name: answer[name] for name in states}
        (output,) = set(answer) - set(states)
        outputs.append(answer[output].numpy())
    return np.stack(outputs, axis=1)


@pytest.mark.parametrize("cell, task, options", [
    ("lstm", tasks.AddingProblem(5), {"num_layers": 2}),   # Two layers, each with h and c.
    ("gru", tasks.CopyMemory(3), {}),                       # One answer per step.
    ("peephole_lstm", tasks.AddingProblem(5), {}),          # An essay cell.
    ("simple_rnn", tasks.LongGap(3), {"dropout_rate": 0.5}),  # Dropout is off when serving.
])
def test_the_step_signature_run_over_a_sequence_answers_like_the_whole_sequence(
        tmp_path, cell, task, options):
    model = build(cell, task, **options)
    version = kala.export_model(model, tmp_path, "model", **task.serving_options)
    inputs = task.batch(5, 1, 0, 4)[0]  # Not the sequences the export was checked with.
    steps = run_steps(tf.saved_model.load(version).signatures["step"], inputs,
                      model.inputs[0].name)
    expected = keras.ops.convert_to_numpy(model(inputs))
    np.testing.assert_allclose(steps if task.head == "steps" else steps[:, -1], expected,
                               rtol=1e-5, atol=1e-6)


STEPPABLE = [(cell, implementation) for cell in kala.models.CELLS
             for implementation in ("builtin", "essay")
             if implementation == "essay" or kala.models.CELLS[cell][0] is not None]


@pytest.mark.parametrize("cell, implementation", STEPPABLE)
@pytest.mark.parametrize("head", ["sequence", "steps"])
def test_every_cell_steps_like_its_layer_with_padding_and_two_layers(cell, implementation, head):
    # Without an export: the step function itself, for every cell build_model makes.
    keras.utils.set_random_seed(0)
    model = kala.build_model(cell, 5, vocab_size=12, num_layers=2, mask_padding=True,
                             head=head, num_classes=3, implementation=implementation)
    step = kala.signatures.Step(kala.signatures.ServedModel(model))
    inputs = np.random.default_rng(0).integers(1, 12, size=(3, 6)).astype(np.int32)
    inputs[1, 4:] = 0  # Padding, on the right.
    states = [tf.zeros((3, size)) for _, size in step.states]
    outputs = []
    for t in range(inputs.shape[1]):
        answer = step.function(tf.constant(inputs[:, t]), *states)
        states = [answer[name] for name, _ in step.states]
        outputs.append(answer["probabilities"].numpy())
    steps = np.stack(outputs, axis=1)
    expected = keras.ops.convert_to_numpy(model(inputs))
    np.testing.assert_allclose(steps if head == "steps" else steps[:, -1], expected,
                               rtol=1e-5, atol=1e-6)


def test_the_step_of_a_masked_model_leaves_the_state_alone_at_padding(tmp_path):
    task = tasks.LongGap(3)
    model = build("lstm", task, mask_padding=True)
    version = kala.export_model(model, tmp_path, "masked", **task.serving_options)
    inputs = task.batch(5, 1, 0, 2)[0]
    padded = np.concatenate([inputs, np.zeros((2, 4), np.int32)], axis=1)  # Pad on the right.
    steps = run_steps(tf.saved_model.load(version).signatures["step"], padded, "tokens")
    np.testing.assert_allclose(steps[:, -1], model(inputs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(steps[:, -1], steps[:, inputs.shape[1] - 1], rtol=1e-6)


def test_the_step_signature_refuses_states_that_do_not_fit(long_gap):
    _, _, _, signatures = long_gap
    step = signatures["step"]
    tokens = tf.constant([1, 2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="lstm_1_h: the state needs one row "
                                                             "per sequence of the batch"):
        step(tokens=tokens, lstm_1_h=tf.zeros((3, 6)), lstm_1_c=tf.zeros((2, 6)))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"is not compatible with expected shape \[\?,6\]"):
        step(tokens=tokens, lstm_1_h=tf.zeros((2, 6)), lstm_1_c=tf.zeros((2, 5)))


def test_serve_text_answers_the_word_the_model_predicts(long_gap):
    task, model, _, signatures = long_gap
    texts = [TEXT, "we visited japan . i grew up in spain . i speak fluent"]
    answer = signatures["serve_text"](text=tf.constant(texts))
    # Lower-cased, the full stops split off, then the model's own answer for those words.
    for row, text in enumerate(texts):
        ids = task.ids(text.lower().replace(".", " ."))
        probabilities = keras.ops.convert_to_numpy(model(np.array([ids], np.int32)))[0]
        assert answer["word"].numpy()[row].decode() == task.languages[probabilities.argmax()]
        assert answer["probability"].numpy()[row] == pytest.approx(probabilities.max(), rel=1e-5)
    assert answer["unknown_words"].numpy().tolist() == [0, 0]


def test_serve_text_reads_unknown_words_and_characters_as_the_unknown_id(long_gap):
    task, _, _, signatures = long_gap
    serve_text = signatures["serve_text"]
    unknown = TEXT.replace("France", "Zürich").replace("trains", "🙂 trains?").encode()
    known = TEXT.replace("France", "<pad>").replace("trains", "<pad> <pad>")
    invalid = TEXT.encode().replace(b"friends", b"\xff\xfe")  # Not UTF-8.
    answer = serve_text(text=tf.constant([unknown, known.encode(), invalid]))
    assert answer["unknown_words"].numpy().tolist() == [3, 0, 1]
    probability = answer["probability"].numpy()
    assert probability[0] == pytest.approx(probability[1], rel=1e-6)  # Unknown words read as 0.
    assert np.isfinite(probability).all()
    for empty in ("", "   "):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="text: every text needs at least one word"):
            serve_text(text=tf.constant([TEXT, empty]))


def test_the_warmup_requests_cover_every_signature(long_gap):
    task, _, version, _ = long_gap
    requests = export.warmup_requests(version)
    assert [request.model_spec.signature_name for request in requests] == [
        "serving_default", "step", "serve_text"] * 2  # One sequence, then three.
    texts = tf.make_ndarray(requests[-1].inputs["text"])
    assert [text.decode() for text in texts] == [
        " ".join(task.vocabulary[i] for i in row) for row in task.serving_options[
            "example_inputs"]]


def test_ids_outside_the_vocabulary_read_as_the_unknown_id_or_are_refused(long_gap, tmp_path):
    task, model, _, signatures = long_gap
    inputs = task.batch(5, 1, 0, 3)[0]
    outside = inputs.copy()
    outside[:, [2, 5, 7]] = [-1, task.vocab_size, 10**6]
    unknown = inputs.copy()
    unknown[:, [2, 5, 7]] = task.unknown_id
    serve = signatures["serving_default"]
    np.testing.assert_array_equal(serve(tokens=tf.constant(outside))["probabilities"],
                                  serve(tokens=tf.constant(unknown))["probabilities"])
    np.testing.assert_array_equal(run_steps(signatures["step"], outside, "tokens"),
                                  run_steps(signatures["step"], unknown, "tokens"))
    # Exported without an unknown id, such ids are refused (a GPU would read zeros silently),
    # and so are words outside the vocabulary.
    version = kala.export_model(model, tmp_path, "strict", example_inputs=inputs,
                                vocabulary=task.vocabulary, labels=task.labels)
    strict = tf.saved_model.load(version).signatures
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="text: a word is outside the vocabulary, and this export has no "
                             "unknown id"):
        strict["serve_text"](text=tf.constant(["i grew up in zürich . i speak fluent"]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"tokens: ids must be in \[0, 58\), the vocabulary of the model"):
        strict["serving_default"](tokens=tf.constant(outside))
    with pytest.raises(tf.errors.InvalidArgumentError, match="ids must be in"):
        strict["step"](tokens=tf.constant([58]), lstm_1_h=tf.zeros((1, 6)),
                       lstm_1_c=tf.zeros((1, 6)))


def test_serve_text_and_step_work_in_a_process_that_never_imports_kala(long_gap, tmp_path):
    task, model, version, _ = long_gap
    _, answer = serve_in_fresh_process(version, np.array([TEXT]), tmp_path, "serve_text")
    ids = np.array([task.ids(TEXT.lower().replace(".", " ."))], np.int32)
    probabilities = keras.ops.convert_to_numpy(model(ids))[0]
    assert answer["word"].tolist() == [task.languages[probabilities.argmax()]]
    states = {"lstm_1_h": np.zeros((1, 6), np.float32), "lstm_1_c": np.zeros((1, 6), np.float32)}
    _, answer = serve_in_fresh_process(version, {"tokens": ids[:, 0], **states}, tmp_path, "step")
    assert set(answer) == {"probabilities", "lstm_1_h", "lstm_1_c"}
    np.testing.assert_allclose(answer["probabilities"], model(ids[:, :1]), rtol=1e-5, atol=1e-6)


def test_a_bidirectional_model_has_no_step(tmp_path):
    task = tasks.AddingProblem(5)
    version = kala.export_model(build("gru", task, bidirectional=True), tmp_path, "bi")
    assert kala.export.signature_names(version) == ["serving_default"]


@pytest.mark.parametrize("task, options, message", [
    (tasks.LongGap(3), {"vocabulary": ["a", "b"]}, "one word per id of the model's embedding "
                                                   r"\(58\). Received 2 words"),
    (tasks.LongGap(3), {"vocabulary": ["a"] * 58}, "must not hold a word twice"),
    (tasks.LongGap(3), {"unknown_id": 58}, "`unknown_id` must be an id below 58"),
    (tasks.LongGap(3), {"labels": ["x"] * 8}, "`labels` name the answers of `serve_text`, which "
                                              "needs the `vocabulary` too"),
    (tasks.LongGap(3), {"vocabulary": tasks.LongGap(3).vocabulary, "labels": ["x", "y"]},
     r"Received 2 labels for a model whose output has shape \(None, 8\)"),
    (tasks.CopyMemory(3), {"vocabulary": tasks.CopyMemory(3).vocabulary, "labels": ["x"] * 10},
     r"Received 10 labels for a model whose output has shape \(None, None, 10\)"),
    (tasks.AddingProblem(3), {"unknown_id": 0}, "`unknown_id` need a model that embeds token "
                                                "ids. Received a model whose input 'sequence'"),
    (tasks.LongGap(3), {"unknown_id": "0"}, "`unknown_id` must be an id below 58"),
    (tasks.LongGap(3), {"vocabulary": "abc"}, "`vocabulary` must be a sequence of strings"),
    (tasks.LongGap(3), {"vocabulary": tasks.LongGap(3).vocabulary, "labels": list(range(8))},
     "`labels` must be a sequence of strings"),
])
def test_bad_serving_options_are_refused_before_anything_is_written(tmp_path, task, options,
                                                                    message):
    with pytest.raises(ValueError, match=message):
        kala.export_model(build("lstm", task), tmp_path, "model", **options)
    assert not (tmp_path / "model").exists()


def test_an_empty_batch_is_refused_by_every_signature_naming_the_input(long_gap):
    _, _, _, signatures = long_gap
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="text: the request holds no texts; send at least one"):
        signatures["serve_text"](text=tf.constant([], tf.string))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="tokens: the request holds no rows; send at least one"):
        signatures["step"](tokens=tf.constant([], tf.int32), lstm_1_h=tf.zeros((0, 6)),
                           lstm_1_c=tf.zeros((0, 6)))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="tokens: the request holds no rows; send at least one"):
        signatures["serving_default"](tokens=tf.zeros((0, 4), tf.int32))
