"""Character-level language modelling: corpora, the task's windows and baselines, writing, and
the recipe."""

import itertools
import json
import math
import os
import re
import sysconfig

import keras
import numpy as np
import pytest
import tensorflow as tf

import kala
import kala.datasets
from kala import text
from conftest import recipe_module, run_main, run_python, serve_in_fresh_process

TEXT = "def add(a, b):\n    return a + b\n\n" * 40  # 1,360 characters.


def corpus(content=TEXT):
    return text.Corpus(content, source="test")


def test_a_file_that_cannot_be_a_corpus_gets_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="missing.txt: no such file"):
        text.read_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="a directory, not a text file"):
        text.read_corpus(str(tmp_path))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt: the file is empty"):
        text.read_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 ol\u00e9".encode("utf-8") + b" na\xefve")
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text: byte 13 is b'\\xef'"):
        text.read_corpus(str(tmp_path / "latin1.txt"))
    with pytest.raises(ValueError, match="48 characters are too few: the training and the "
                                         r"validation part \(10%\) must each hold at least one "
                                         "window of 101 characters"):
        text.CharLanguageModel(corpus("x" * 48), 100)


def test_the_standard_library_corpus_is_the_listed_modules_in_order():
    found = text.stdlib_corpus()
    assert found.files == text.STDLIB_FILES and len(found.text) > 500_000
    with open(os.path.join(sysconfig.get_paths()["stdlib"], "argparse.py")) as file:
        assert found.text.startswith(file.read())
    assert found.describe()["sha256"] == found.sha256 and len(found.sha256) == 64


def test_load_corpus_reads_the_corpus_a_run_names(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(TEXT)
    assert text.load_corpus(text_path=str(path)) == text.read_corpus(str(path))
    assert text.load_corpus().sha256 == text.stdlib_corpus().sha256
    with pytest.raises(ValueError, match="--text and --tfds exclude each other"):
        text.load_corpus(str(path), "tiny_shakespeare")
    with pytest.raises(ValueError, match="missing.txt: no such file"):
        text.load_corpus(str(tmp_path / "missing.txt"))


def test_windows_read_the_training_part_and_validation_reads_the_rest():
    task = text.CharLanguageModel(corpus(TEXT + "é"), 16, validation_fraction=0.25)
    split = int(round(len(TEXT + "é") * 0.75))
    assert task.decode(task.train_ids) == TEXT[:split]
    assert task.encode("é").numpy().tolist() == [0]  # Only in the validation part: unknown.
    assert task.vocabulary[0] == text.UNKNOWN_CHARACTER
    training = task.decode(task.train_ids)
    batches = list(itertools.islice(task.train_dataset(8, seed=3), 12))
    for inputs, targets in batches:
        assert inputs.shape == targets.shape == (8, 16)
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])  # Targets: one on.
        for row in range(8):
            assert task.decode(np.append(inputs[row], targets[row, -1])) in training
    # A resumed run sees the batches it would have seen; another seed, other ones.
    resumed = list(task.train_dataset(8, seed=3, start=10).take(2))
    np.testing.assert_array_equal(resumed[0][0], batches[10][0])
    other = next(iter(task.train_dataset(8, seed=4)))
    assert not np.array_equal(other[0], batches[0][0])
    # Validation: the rest of the text, in consecutive windows.
    (inputs, targets), = list(task.test_dataset())
    assert inputs.shape[0] == task.test_size == (len(TEXT) + 1 - split) // 17
    assert task.decode(np.concatenate([np.append(row, last) for row, last in
                                       zip(inputs.numpy(), targets.numpy()[:, -1])])) \
        == (TEXT + "é")[split:split + 17 * task.test_size]


def test_the_baselines_are_what_character_counts_predict():
    from collections import Counter

    rng = np.random.default_rng(0)
    content = "".join(rng.choice(list("aabbbcd\n"), size=2_000))
    task = text.CharLanguageModel(corpus(content), 10, validation_fraction=0.2)
    # Counted here from the characters themselves, on the validation windows' targets.
    training = content[:1_600]
    singles, pairs = Counter(training), Counter(zip(training, training[1:]))
    windows = [content[1_600 + 11 * w:1_600 + 11 * (w + 1)] for w in range(task.test_size)]
    scored = [(window[j], window[j + 1]) for window in windows for j in range(10)]
    n = task.vocab_size  # The characters, and the unknown one.

    def best(probability):
        return min(-np.mean([math.log2(probability(before, after, k)) for before, after in scored])
                   for k in (1.0, 0.1, 0.01))

    assert task.unigram_bits_per_char == pytest.approx(
        best(lambda _, after, k: (singles[after] + k) / (len(training) + k * n)), rel=1e-9)
    assert task.bigram_bits_per_char == pytest.approx(best(
        lambda before, after, k: (pairs[before, after] + k)
        / (sum(count for (first, _), count in pairs.items() if first == before) + k * n)),
        rel=1e-9)


def test_every_pass_over_the_training_part_starts_at_another_offset():
    rng = np.random.default_rng(1)
    content = "".join(rng.choice(list("abcdefghij"), size=1_000))
    task = text.CharLanguageModel(corpus(content), 15, validation_fraction=0.1)
    training = task.decode(task.train_ids)
    per_pass, second_pass = len(training) // 16, (len(training) - 7919 % 16) // 16
    windows = [np.append(inputs[0], targets[0, -1]) for inputs, targets in
               itertools.islice(task.train_dataset(1, seed=0), per_pass + second_pass)]
    starts = [training.find(task.decode(window)) for window in windows]
    assert {start % 16 for start in starts[:per_pass]} == {0}
    assert {start % 16 for start in starts[per_pass:]} == {7919 % 16}
    assert sorted(starts[:per_pass]) == list(range(0, 16 * per_pass, 16))  # Each window once.


def test_the_replacement_character_in_a_text_is_the_unknown_one():
    task = text.CharLanguageModel(corpus("ab\ufffdc" * 100), 10)
    assert task.vocabulary == (text.UNKNOWN_CHARACTER, "a", "b", "c")
    assert task.encode("\ufffd").numpy().tolist() == [0]
    text.Writer(kala.build_model("gru", 4, **task.model_options), task)  # A vocabulary it takes.


def test_a_model_writes_the_same_text_for_the_same_seed_and_reads_each_prompt_alone():
    task = text.CharLanguageModel(corpus(), 20)
    keras.utils.set_random_seed(0)
    model = kala.build_model("gru", 8, embedding_dim=4, **task.model_options)
    writer = text.Writer(model, task)
    first = writer.generate(["def "], 30, 1.0, 7)[0].numpy()
    assert len(first.decode("utf-8")) == 30
    assert writer.generate(["def "], 30, 1.0, 7)[0].numpy() == first
    assert writer.generate(["def "], 30, 1.0, 8)[0].numpy() != first
    # Prompts of different lengths, read together, write what each writes alone: every prompt
    # draws from its own seeds. Unknown characters are fine.
    prompts = ["d", "return a + b\n", "🙂 é"]
    together = writer.generate(prompts, 12, 1.0, 0).numpy()
    alone = [writer.generate([prompt], 12, 1.0, 0)[0].numpy() for prompt in prompts]
    assert together.tolist() == alone and len(set(alone)) == 3
    # Each character is drawn from the model's prediction after the prompt and what came
    # before: with sharpened output weights and a low temperature, the most likely one.
    kernel, bias = model.get_layer("probabilities").get_weights()
    model.get_layer("probabilities").set_weights([kernel * 100, bias])
    written, ids = writer.generate(["def "], 10, 0.01, 0)[0].numpy().decode(), task.encode("def ")
    for _ in range(10):
        probabilities = keras.ops.convert_to_numpy(model(ids.numpy()[None]))[0, -1]
        ids = tf.concat([ids, [int(probabilities.argmax())]], axis=0)
    assert written == task.decode(ids.numpy()[4:])
    with pytest.raises(tf.errors.InvalidArgumentError, match="prompt: every text needs at least one character"):
        writer.generate(["def", ""], 5, 1.0, 0)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"temperature: must be a finite number above 0; received\] \[0\]"):
        writer.generate(["def"], 5, 0.0, 0)
    with pytest.raises(ValueError, match="the model must run forwards"):
        text.Writer(kala.build_model("gru", 4, bidirectional=True, **task.model_options), task)


def test_the_smoke_run_trains_writes_and_reports(tmp_path):
    process = run_python(["recipes/char_language_model.py", "--smoke", "--results",
                          str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]
    run_dir = tmp_path / "char_language_model" / "lstm-seed0-smoke"
    with open(run_dir / "result.json") as file:
        result = json.load(file)
    assert result["baseline_bits_per_char"] > result["bigram_bits_per_char"] > 0
    assert result["val_bits_per_char"] == result["history"][-1]["metric"]
    assert len(result["sample"]) == 40 and result["sample"] == result["samples"][-1]["text"]
    assert result["corpus"]["files"] == list(text.STDLIB_FILES)
    assert result["corpus"]["characters"] == 20_000 and result["characters_per_second"] > 0
    assert "--- sample at temperature 0.5:\ndef " in process.stdout
    # It reads its model: closing brackets by distance, and the cells that follow the code.
    assert result["closing_brackets"][0]["distance_from"] == 1
    assert 0 < result["carried_state_bits_per_char"] < 10
    assert list(result["readable_cells"]) == [
        "bracket_depth", "inside_string", "indentation", "column"]
    for name, cell in result["readable_cells"].items():
        assert 0 <= cell["cell"] < 16 and -1 <= cell["r"] <= 1, name
        assert f"follows {name}" in process.stdout
    assert (run_dir / "cells.png").stat().st_size > 0 and (run_dir / "model.keras").exists()
    assert process.stdout.strip().splitlines()[-1].startswith(
        "char_language_model: lstm reached ")


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),  # Refused by the flags, before the corpus is read.
    (b"", "the file is empty"),
    (b"print('ok')\n\xff\n", r"is not UTF-8 text: byte 12 is b'\\xff'"),
    (b"print('ok')\n", "12 characters are too few"),
])
def test_the_recipe_ends_a_bad_corpus_with_one_line_and_exit_2(capsys, tmp_path, content,
                                                               message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run_main(capsys, recipe_module("char_language_model").main,
                            ["--text", str(path), "--smoke", "--results", str(tmp_path)])
    assert code == 2 and err.count("\n") == 1
    assert re.search(message, err), err


@pytest.mark.parametrize("recipe, arguments, message", [
    ("char_language_model", ["--prime", ""], "--prime must hold at least one character"),
    ("char_language_model", ["--temperature", "0"], "argument --temperature: expected a positive"),
    ("char_cells_compared", ["--text", "recipes/flags.py", "--tfds", "tiny_shakespeare"],
     "--text and --tfds exclude each other"),
])
def test_the_recipes_refuse_bad_sampling_and_corpus_flags_before_training(
        capsys, tmp_path, recipe, arguments, message):
    code, _, err = run_main(capsys, recipe_module(recipe).main,
                            [*arguments, "--results", str(tmp_path)])
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / recipe).exists()


def test_tfds_offline_says_a_download_is_needed(tmp_path):
    if kala.datasets.sources.reachable("raw.githubusercontent.com"):
        pytest.skip("this machine is online: --tfds would download tiny_shakespeare")
    process = run_python(["recipes/char_language_model.py", "--tfds", "tiny_shakespeare",
                          "--smoke", "--results", str(tmp_path)])
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert ("char_language_model.py: error: 'tiny_shakespeare' is not downloaded yet, and this "
            "machine cannot reach raw.githubusercontent.com") in process.stderr


# --- The export: serving_default, step, serve_text and generate. -------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    task = text.CharLanguageModel(corpus(), 20)
    keras.utils.set_random_seed(0)
    model = kala.build_model("lstm", 8, embedding_dim=4, **task.model_options)
    version = kala.export_model(model, tmp_path_factory.mktemp("exports"), "chars",
                                **task.serving_options)
    return task, model, version


def test_the_export_answers_text_and_writes_in_a_process_that_never_imports_kala(exported,
                                                                                 tmp_path):
    task, model, version = exported
    assert kala.export.signature_names(version) == ["serving_default", "generate", "serve_text",
                                                    "step"]
    texts = ["def ", "é🙂", "return"]
    _, answer = serve_in_fresh_process(version, {"text": np.array(texts)}, tmp_path,
                                       "serve_text")
    for row, prompt in enumerate(texts):
        ids = task.encode(prompt).numpy()[None]
        expected = keras.ops.convert_to_numpy(model(ids))[0, -1]
        np.testing.assert_allclose(answer["probabilities"][row], np.sort(expected)[::-1],
                                   rtol=1e-5, atol=1e-7)
        assert answer["characters"][row][0] == task.vocabulary[expected.argmax()]
        assert sorted(answer["characters"][row]) == sorted(task.vocabulary)
    request = {"prompt": np.array([b"def ", "\u00e9".encode(), b"\xff not UTF-8"]),
               "length": np.int32(25), "temperature": np.float32(0.8), "seed": np.int32(5)}
    _, answer = serve_in_fresh_process(version, request, tmp_path, "generate")
    writer = text.Writer(model, task)
    written = writer.generate(request["prompt"], 25, 0.8, 5).numpy()
    assert answer["text"].tolist() == [line.decode("utf-8") for line in written]
    assert all(len(line) == 25 for line in answer["text"])


def test_the_export_refuses_bad_generate_requests_and_warms_up_every_signature(exported):
    _, _, version = exported
    generate = tf.saved_model.load(version).signatures["generate"]
    longest = kala.export.MAX_GENERATE_LENGTH
    too_long = rf"length: must be between 1 and {longest:,} \(the maximum of this export\); received"
    for prompt, length, temperature, message in (
            (["def", ""], 5, 1.0, "prompt: every text needs at least one character"),
            ([], 5, 1.0, "prompt: the request holds no texts; send at least one"),
            (["def"], 0, 1.0, too_long + r"\] \[0\]"),
            (["def"], longest + 1, 1.0, too_long + rf"\] \[{longest + 1}\]"),
            # Once it aborted the server (std::bad_alloc); now it is refused before any work.
            (["def"], 2**31 - 1, 1.0, too_long + rf"\] \[{2**31 - 1}\]"),
            (["def"], 5, 0.0, r"temperature: must be a finite number above 0; received\] \[0\]"),
            (["def"], 5, -1.0, r"temperature: must be a finite number above 0; received\] \[-1\]"),
            (["def"], 5, float("nan"), r"temperature: must be a finite number above 0"),
            (["def"], 5, float("inf"), r"temperature: must be a finite number above 0")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            generate(prompt=tf.constant(prompt, tf.string), length=tf.constant(length),
                     temperature=tf.constant(temperature), seed=tf.constant(0))
    signatures = [request.model_spec.signature_name
                  for request in kala.export.warmup_requests(version)]
    assert signatures == ["serving_default", "step", "serve_text", "generate"] * 2


@pytest.mark.parametrize("options, message", [
    ({"labels": ["x"] * 10}, "give no `labels` with text_unit='characters'"),
    ({"vocabulary": "two characters each"}, "every word of `vocabulary` must be one character"),
    ({"text_unit": "lines"}, "`text_unit` must be one of words, characters"),
])
def test_bad_character_export_options_are_refused(tmp_path, options, message):
    task = text.CharLanguageModel(corpus(), 20)
    model = kala.build_model("gru", 4, **task.model_options)
    arguments = {**task.serving_options, **options}
    if "vocabulary" in options:
        arguments["vocabulary"] = [f"{char}{char}" for char in task.vocabulary]
    with pytest.raises(ValueError, match=message):
        kala.export_model(model, tmp_path, "chars", **arguments)
