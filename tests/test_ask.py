"""`python -m kala.ask`: a saved or exported model answers a question of your own."""

import numpy as np
import pytest

import kala
import kala.ask
from conftest import run_as_a_user
from kala import text

QUESTION = "I grew up in France. We visited Italy. I speak fluent"


def long_gap_model():
    task = kala.tasks.LongGap(4, test_size=8)
    model = kala.build_model("lstm", units=4, **task.model_options)
    return task, model


def test_a_saved_model_answers_as_its_export_does(tmp_path, seeded):
    task, model = long_gap_model()
    kala.ask.save(model, tmp_path / "run" / "model.keras", **task.serving_options)
    version = kala.export_model(model, str(tmp_path / "saved"), "long_gap", **task.serving_options)
    answers = []
    for path in (tmp_path / "run" / "model.keras", version):
        signatures, _ = kala.ask.load(path)
        answers.append(kala.ask.answer(signatures, QUESTION))
    assert answers[0] == answers[1]
    (line,) = answers[0]
    # What the Keras model says of the same words, read as serve_text reads them.
    probabilities = np.asarray(model(np.array([task.ids(QUESTION)])))[0]
    label = task.labels[int(np.argmax(probabilities))]
    assert line == f"{label} (probability {probabilities.max():.3f})"


def test_unknown_words_are_counted(tmp_path, seeded):
    task, model = long_gap_model()
    kala.ask.save(model, tmp_path / "model.keras", **task.serving_options)
    signatures, _ = kala.ask.load(tmp_path / "model.keras")
    (line,) = kala.ask.answer(signatures, "I grew up in Paris. I speak fluent")
    assert line.endswith("; 1 unknown word)")


def test_a_character_model_names_the_next_characters_and_writes_on(tmp_path, seeded):
    task = text.CharLanguageModel(text.Corpus("abcabcabd " * 40, source="test"), 8)
    model = kala.build_model("gru", units=4, embedding_dim=4, **task.model_options)
    kala.ask.save(model, tmp_path / "model.keras", **task.serving_options)
    signatures, _ = kala.ask.load(tmp_path / "model.keras")
    first, second = kala.ask.answer(signatures, "abc")
    assert first.startswith("next character: ") and first.count(", ") == 4
    written = second.removeprefix("writes on (temperature 0.5): abc")
    assert len(written) == 60 and set(written) <= set("abcd \ufffd")


def test_numbers_inline_or_from_a_csv_file(tmp_path, seeded):
    task = kala.tasks.AddingProblem(10, test_size=8)
    model = kala.build_model("lstm", units=4, **task.model_options)
    kala.ask.save(model, tmp_path / "model.keras", **task.serving_options)
    signatures, _ = kala.ask.load(tmp_path / "model.keras")
    steps = np.array([[0.5, 1], [0.2, 0], [0.9, 1], [0.4, 0]], np.float32)
    expected = float(np.asarray(model(steps[None]))[0, 0])
    inline = kala.ask.answer(signatures, "0.5,1 0.2,0; 0.9,1 0.4,0")
    (tmp_path / "steps.csv").write_text("0.5,1\n0.2,0\n0.9,1\n0.4,0\n")
    assert kala.ask.answer(signatures, str(tmp_path / "steps.csv")) == inline
    assert inline == [f"output: {expected:.4f}", "(the sum of the values marked 1: 1.4000)"]
    with pytest.raises(ValueError, match="expected 2 comma-separated numbers at every step"):
        kala.ask.answer(signatures, "0.5 0.2")
    with pytest.raises(ValueError, match="expected numbers"):
        kala.ask.answer(signatures, "a,b")


def test_the_command_answers_and_bad_input_gets_one_line(tmp_path, seeded):
    task, model = long_gap_model()
    kala.ask.save(model, tmp_path / "model.keras", **task.serving_options)
    process = run_as_a_user(["-m", "kala.ask", str(tmp_path / "model.keras"), QUESTION])
    assert process.returncode == 0 and process.stderr == ""
    assert process.stdout.split()[0] in task.labels
    for arguments, message in [
        ([str(tmp_path / "missing.keras"), "x"], "does not exist"),
        ([str(tmp_path), "x"], "directory without saved_model.pb"),
        ([str(tmp_path / "model.keras")], "expected PATH and a question"),
    ]:
        process = run_as_a_user(["-m", "kala.ask", *arguments])
        assert process.returncode == 2 and process.stdout == ""
        (line,) = process.stderr.splitlines()
        assert line.startswith("kala.ask: error: ") and message in line


def test_save_wants_a_keras_path(tmp_path, seeded):
    _, model = long_gap_model()
    with pytest.raises(ValueError, match="must end in .keras"):
        kala.ask.save(model, tmp_path / "model.h5")
