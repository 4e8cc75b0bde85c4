"""kala.reading: the features of code, the cells that follow them, and the closing brackets; and
recipes/char_cells_compared.py."""

import json

import keras
import numpy as np
import pytest

import kala
from kala import reading, text
from conftest import recipe_module, run_main, run_python

SOURCE = ('def f(a, b=")"):\n'
          '    # (a comment [\n'
          '    return [a, {b: """x(\\"\n'
          '"""}]\n')


def test_brackets_in_strings_and_comments_do_not_count():
    features = reading.code_features(SOURCE)
    pairs = reading.bracket_pairs(SOURCE)
    square, curly, triple = SOURCE.index("[a"), SOURCE.index("{b"), SOURCE.index('"""')
    assert [(int(o), int(c)) for o, c in pairs] == [
        (5, 14), (curly, len(SOURCE) - 3), (square, len(SOURCE) - 2)]
    depth = features["bracket_depth"]
    assert depth[5] == 1 and depth[12] == 1 and depth[14] == 0       # ( , the ")" string , )
    assert depth[SOURCE.index("(a comment")] == 0
    assert depth[curly] == 2 and depth[-3] == 1 and depth[-2] == 0
    inside = features["inside_string"]
    assert inside[11:14].tolist() == [1, 1, 1] and inside[10] == 0 and inside[14] == 0
    # A triple-quoted string with an escaped quote and a newline, its quotes included.
    assert inside[triple:len(SOURCE) - 3].all() and inside[len(SOURCE) - 3] == 0
    lines = SOURCE.split("\n")
    assert features["indentation"].tolist() == (
        [0] * 17 + [4] * (len(lines[1]) + 1) + [4] * (len(lines[2]) + 1) + [0] * 6)
    assert features["column"][:18].tolist() == list(range(17)) + [0]


def test_a_correlation_is_pearsons_r_of_each_cell():
    rng = np.random.default_rng(0)
    feature = rng.normal(size=200)
    states = np.stack([feature * 3 + 1, -feature, np.zeros(200), rng.normal(size=200)], axis=1)
    r = reading.correlations(states.reshape(2, 100, 4), {"f": feature.reshape(2, 100)})["f"]
    assert r[:3] == pytest.approx([1.0, -1.0, 0.0])
    assert r[3] == pytest.approx(np.corrcoef(feature, states[:, 3])[0, 1])
    with pytest.raises(ValueError, match="Feature 'f' has 199 values; the states have 200"):
        reading.correlations(states, {"f": feature[:-1]})


def test_a_closing_bracket_counts_when_both_brackets_are_in_one_piece():
    task = text.CharLanguageModel(text.Corpus("(a)[bb]{ccc}(d" * 40, "test"), 5)
    source = "(a)[bb]{ccc}(d)"  # Pieces of 5: "(a)[b", "b]{cc", "c}(d)".
    ids = task.encode(source).numpy().reshape(3, 5)
    probabilities = np.full((3, 5, task.vocab_size), 0.01)
    probabilities[0, 1, task.vocabulary.index(")")] = 0.9             # After "(a": ")" — right.
    probabilities[2, 3, task.vocabulary.index("]")] = 0.9             # After "(d": "]" — wrong.
    rows = reading.closing_brackets(source, ids, probabilities, bins=(1, 3))
    # "[bb]" and "{ccc}" cross a piece; ")" at 2 and at 14 are counted (distance 2 each).
    assert rows == [{"distance_from": 1, "distance_to": 2, "count": 2, "accuracy": 0.5,
                     "mean_probability": pytest.approx((0.9 + 0.01) / 2)}]
    uniform = np.full((3, 5, task.vocab_size), 1 / task.vocab_size)
    assert reading.bits_per_char(ids, uniform) == pytest.approx(np.log2(task.vocab_size))


def test_states_and_predictions_over_long_text_come_from_the_model():
    task = text.CharLanguageModel(text.Corpus(SOURCE * 20, "test"), 10)
    keras.utils.set_random_seed(0)
    model = kala.build_model("lstm", 6, embedding_dim=4, **task.model_options)
    long_text = SOURCE * 3
    ids, probabilities = reading.run_over(model, task, long_text, pieces=4)
    length = len(long_text) // 4
    assert ids.shape == (4, length) and probabilities.shape == (4, length, task.vocab_size)
    # Each piece is read from a zero state, carried to its end.
    second = task.encode(long_text[length:2 * length]).numpy()[None]
    assert probabilities[1] == pytest.approx(keras.ops.convert_to_numpy(model(second))[0],
                                             abs=1e-5)
    states = reading.cell_states(model, task, long_text, pieces=4)
    assert states.shape == (4, length, 6)
    assert states == pytest.approx(kala.cells.watch(model, ids)["cell"])
    gru = kala.build_model("gru", 5, embedding_dim=4, **task.model_options)
    halves = task.encode(long_text[:len(long_text) // 2 * 2]).numpy().reshape(2, -1)
    assert reading.cell_states(gru, task, long_text, 2) == pytest.approx(
        kala.cells.watch(gru, halves)["hidden"])
    with pytest.raises(ValueError, match="cannot be cut into 100 pieces"):
        reading.run_over(model, task, SOURCE[:150], pieces=100)
    with pytest.raises(ValueError, match="`pieces` must be a positive integer"):
        reading.cell_states(model, task, SOURCE, pieces=0)


def test_the_smoke_comparison_sizes_cells_alike_searches_rates_and_reuses_runs(clone):
    # In the clone, where the smoke runs of every recipe may have run already: the first
    # command here then reuses their runs.
    command = ["recipes/char_cells_compared.py", "--smoke"]
    process = run_python(command, cwd=clone)
    assert process.returncode == 0, process.stderr[-3000:]
    out = clone / "runs" / "char_cells_compared"
    summary = json.loads((out / "summary.json").read_text())
    assert [run["cell"] for run in summary["runs"]] == ["simple_rnn"] * 2 + ["lstm"] * 2 + ["gru"] * 2
    assert summary["units"]["lstm"] == 16
    for run in summary["runs"]:
        # Each cell has the units that bring it closest to the LSTM's weights.
        assert abs(run["parameters"] - summary["target_parameters"]) < 0.05 * summary["target_parameters"]
        searched = [row for row in summary["search"] if row["cell"] == run["cell"]]
        assert len(searched) == 2
        assert run["learning_rate"] == min(searched, key=lambda row: row["val_bits_per_char"])["learning_rate"]
        assert set(run["readable_cells"]) == set(reading.FEATURES)
        assert run["closing_brackets"] and run["carried_state_bits_per_char"] > 0
    assert (out / "char_cells_compared.png").stat().st_size > 0
    table = (out / "summary.md").read_text()
    assert table.startswith("| cell | units | weights |") and "| gru | 18 |" in table
    # The same command again trains nothing: every run is where it was left.
    again = run_python(command, cwd=clone)
    assert again.returncode == 0 and again.stdout.count("reusing") == 12
    assert "step " not in again.stdout
    assert json.loads((out / "summary.json").read_text())["runs"] == summary["runs"]
    # A run of another corpus is trained again, not reused.
    stored = next((out / "runs").glob("gru-seed1-*.json"))
    record = json.loads(stored.read_text())
    record["corpus"]["sha256"] = "0" * 64
    stored.write_text(json.dumps(record))
    third = run_python(command, cwd=clone)
    assert third.returncode == 0 and third.stdout.count("reusing") == 11
    (out / "summary.md").unlink()
    report = run_python(command + ["--report-only"], cwd=clone)
    assert report.returncode == 0 and (out / "summary.md").read_text() == table


def test_report_only_without_a_comparison_ends_with_one_line(tmp_path):
    process = run_python(["recipes/char_cells_compared.py", "--report-only", "--results",
                          str(tmp_path)])
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert "summary.json does not exist" in process.stderr


@pytest.mark.parametrize("arguments, message", [
    (["--seeds", "0"], "argument --seeds: expected a positive number, got '0'"),
    (["--search-steps", "-3"], "argument --search-steps: expected a positive number"),
    (["--learning-rates", "1e-3,fast"], "argument --learning-rates: expected a number, got 'fast'"),
    (["--cells", "rnn,lstm"], "argument --cells: invalid choice: 'rnn'"),
])
def test_bad_comparison_arguments_end_with_one_line_before_any_training(capsys, arguments,
                                                                        message):
    code, out, err = run_main(capsys, recipe_module("char_cells_compared").main, arguments)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err, err


def test_the_comparison_names_its_runs_as_the_character_lesson_names_a_run():
    # Its runs are the character lesson's runs: the same settings, the same defaults (which
    # name their files), so that each stored run is found again.
    import dataclasses
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
    try:
        import char_cells_compared
        import char_language_model
    finally:
        sys.path.pop(0)
    lesson = {field.name: field.default
              for field in dataclasses.fields(char_language_model.Settings)}
    assert char_cells_compared.RUN_DEFAULTS == {
        name: lesson[name] for name in char_cells_compared.RUN_DEFAULTS}
