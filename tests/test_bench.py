"""`python -m bench`: every contender measured and compared, at tiny shapes. Speed targets
live in the benchmark's own output, never here."""

import ast
import importlib.util
import json
import pathlib

import numpy as np
import pytest
from conftest import ROOT, run_main, run_python

import kala.provenance
from bench import common, ideas


def within_rounds(row, other):
    """The median over rounds of the ratio of two rates measured in the same round."""
    return float(np.median(np.array(row["rounds"]) / np.array(other["rounds"])))


def test_quick_bench_measures_every_contender_and_writes_json(tmp_path):
    out = tmp_path / "out.json"
    process = run_python(["-m", "bench", "--quick", "--shape", "4,6,3,5", "--rounds", "2",
                          "--cells", "lstm,gru,peephole_lstm", "--tasks", "reber",
                          "--adding-len", "10", "--adding-steps", "5", "--json", str(out)])
    assert process.returncode == 0, process.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["mode"] == "quick"
    assert payload["command"].startswith("python -m bench --quick --shape 4,6,3,5")
    # The machine is kala's provenance, thread settings included, with torch on top.
    machine = payload["machine"]
    assert {"processor", "cpu_count", "tensorflow", "keras", "thread_settings"} <= set(machine)
    assert {key: value for key, value in machine.items() if key not in (
        "torch", "torch_threads")} == kala.provenance.machine()
    rows = payload["rows"]
    shape = {"batch": 4, "time": 6, "features": 3, "units": 5}

    training = {(row["impl"], row["cell"], row["implementation"]): row
                for row in rows if row["measure"] == "training"}
    expected = {(impl, cell, implementation)
                for cell, implementation in [("lstm", "builtin"), ("gru", "builtin"),
                                             ("lstm", "essay"), ("gru", "essay"),
                                             ("peephole_lstm", "essay")]
                for impl in ("kala", "keras_fit", "keras_fit_matched", "tf_function")}
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch:
        expected |= {(impl, cell, "torch") for impl in ("torch", "torch_compile")
                     for cell in ("lstm", "gru")}
    assert set(training) == expected  # Quick mode leaves XLA out.
    timed = {key: row for key, row in training.items() if "rounds" in row}
    for (impl, cell, implementation), row in timed.items():
        assert row["shape"] == shape
        assert len(row["rounds"]) == 2 and row["sequences_per_second"] > 0
        # Every contender takes the same steps in a round: whole calls of the Trainer's.
        assert row["steps_per_round"] % 10 == 0
        assert row["gflops"] == pytest.approx(
            row["sequences_per_second"] * common.GATES[cell] * 6 * 6 * 5 * (3 + 5) / 1e9)
        assert row["process"] == ("own" if impl.startswith("torch") else "benchmark")
        if impl == "kala":
            fit = training[("keras_fit", cell, implementation)]
            matched = training[("keras_fit_matched", cell, implementation)]
            assert row["vs_keras_fit"] == pytest.approx(within_rounds(row, fit))
            assert row["vs_keras_fit_matched"] == pytest.approx(within_rounds(row, matched))
            best = [max(a, b) for a, b in zip(fit["rounds"], matched["rounds"])]
            assert row["vs_best_fit"] == pytest.approx(within_rounds(row, {"rounds": best}))
            assert row["vs_tf_function"] == pytest.approx(
                within_rounds(row, training[("tf_function", cell, implementation)]))
            assert ("vs_torch" in row) == (has_torch and implementation == "builtin")
            assert ("time_vs_builtin" in row) == (implementation == "essay")
    peephole = training[("kala", "peephole_lstm", "essay")]
    assert peephole["time_vs_builtin"] == pytest.approx(
        within_rounds(training[("kala", "lstm", "builtin")], peephole))
    if has_torch:
        # PyTorch 2.13's Inductor fails on nn.LSTM, and the row says why instead of a rate;
        # nn.GRU compiles.
        lstm = training[("torch_compile", "lstm", "torch")]
        assert lstm["compiled"] is False and "mkldnn_rnn_layer" in lstm["reason"]
        assert "rounds" not in lstm and "vs_torch_compile" not in training[
            ("kala", "lstm", "builtin")]
        assert training[("kala", "gru", "builtin")]["vs_torch_compile"] == pytest.approx(
            within_rounds(training[("kala", "gru", "builtin")],
                          training[("torch_compile", "gru", "torch")]))
        assert "torch.compile` did not compile lstm" in process.stdout

    serving = [row for row in rows if row["measure"] == "serving"]
    assert {(row["impl"], row["batch"]) for row in serving} == {
        (impl, batch) for impl in ("serving_default", "keras_call") for batch in (1, 256)}
    for row in serving:
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert ("vs_keras_call" in row) == (row["impl"] == "serving_default")

    (pipeline,) = [row for row in rows if row["measure"] == "pipeline"]
    assert pipeline["sequences_per_second"] > 0 and pipeline["shape"] == shape
    assert pipeline["training_sequences_per_second"] == max(
        row["sequences_per_second"] for row in timed.values() if row["impl"] == "kala")
    # A recipe's pipeline (the one asked for), in the same rounds as the Trainer on it and
    # on one fixed batch.
    (recipe,) = [row for row in rows if row["measure"] == "task_pipeline"]
    assert (recipe["task"], recipe["batch_size"], recipe["units"]) == ("reber", 32, 64)
    for key in ("pipeline", "training", "fixed_batch"):
        assert len(recipe[f"{key}_rounds"]) == 2
        assert recipe[f"{key}_sequences_per_second"] == pytest.approx(
            np.median(recipe[f"{key}_rounds"]))
    assert recipe["headroom"] == pytest.approx(within_rounds(
        {"rounds": recipe["pipeline_rounds"]}, {"rounds": recipe["training_rounds"]}))
    assert "### Input pipeline: the recipes' tasks" in process.stdout

    (adding,) = [row for row in rows if row["measure"] == "adding"]
    assert (adding["cell"], adding["seq_len"], adding["steps"]) == ("lstm", 10, 5)

    # The LSTM under each precision policy, in the same rounds, against float32.
    precision = {row["precision"]: row for row in rows if row["measure"] == "precision"}
    assert set(precision) == {"float32", "mixed_float16", "mixed_bfloat16"}
    for row in precision.values():
        assert row["shape"] == shape and len(row["rounds"]) == 2
        assert row["vs_float32"] == pytest.approx(within_rounds(row, precision["float32"]))
        assert row["cpu_features"] == kala.provenance.cpu_features()
    assert precision["float32"]["vs_float32"] == 1.0
    assert "### Precision" in process.stdout and "| mixed_bfloat16 |" in process.stdout

    assert "| B=4 T=6 D=3 H=5 | peephole_lstm |" in process.stdout
    assert "### Serving" in process.stdout and "### The adding problem" in process.stdout


@pytest.mark.parametrize("argv, message", [
    (["--shape", "32,50,16"], "four positive integers"),
    (["--cells", "lstm,transformer"], "unknown cell 'transformer'"),
    (["--parts", "speed"], "unknown part 'speed'"),
    (["--tasks", "sudoku"], "unknown task 'sudoku'"),
    (["--rounds", "0"], "expected a positive integer"),
    (["--json", "/no/such/dir/out.json"], "no directory"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    import bench.__main__

    code, _, err = run_main(capsys, bench.__main__.main, argv)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("python -m bench: error:") and message in err


def test_shape_parses_and_counts_flops():
    shape = common.Shape.parse("128,100,2,128")
    assert shape == common.Shape(batch=128, time=100, features=2, units=128)
    # An LSTM training step is 24·B·T·H·(D + H) FLOPs (4 gate blocks, 2 FLOPs a weight forward
    # and 4 backward); GRU 18, SimpleRNN 6.
    for cell, factor in [("lstm", 24), ("gru", 18), ("simple_rnn", 6)]:
        assert shape.batch * shape.flops_per_sequence(cell) == factor * 128 * 100 * 128 * 130
    with pytest.raises(ValueError, match="Received: '1,2,0,4'"):
        common.Shape.parse("1,2,0,4")


def test_synthetic_task_targets_the_scaled_sum_of_the_first_feature():
    task = common.Synthetic(9, 3)
    inputs, targets = task.batch(0, 0, 0, 5)
    assert inputs.shape == (5, 9, 3) and targets.shape == (5, 1)
    np.testing.assert_allclose(targets[:, 0], inputs[:, :, 0].sum(axis=1) / 3, rtol=1e-5)
    assert not task.is_solved(0.0)  # A timing task never stops a run early.


def test_block_lstm_matches_keras_lstm_in_outputs_and_gradients(seeded):
    import keras
    import tensorflow as tf

    layer = keras.layers.LSTM(5)
    layer.build((None, None, 3))
    kernel, recurrent_kernel, bias = layer.weights
    # Input, forget and candidate biases of 3 make the cell state grow by nearly 1 a step, past
    # ±3, where BlockLSTM's default cell clip would cut it: the two agree only with it off.
    bias.assign(np.repeat([3.0, 3.0, 3.0, 0.0], 5).astype(np.float32))
    inputs = tf.random.stateless_normal([4, 20, 3], seed=[1, 2])
    weights = tf.random.stateless_normal([5], seed=[3, 4])
    results = []
    for forward in (layer, lambda x: ideas.block_lstm(x, kernel, recurrent_kernel, bias)):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = forward(inputs)
            loss = tf.reduce_sum(outputs * weights)
        results.append([outputs, *tape.gradient(loss, [inputs, kernel, recurrent_kernel, bias])])
    states = keras.layers.RNN(keras.layers.LSTMCell(5), return_state=True)
    states.build((None, None, 3))
    states.set_weights(layer.get_weights())
    assert float(tf.reduce_max(tf.abs(states(inputs)[2]))) > 3.5  # The clip would matter.
    for keras_value, block_value in zip(*results):
        np.testing.assert_allclose(block_value, keras_value, rtol=1e-5, atol=1e-5)


def test_ideas_are_timed_against_what_they_replace(tmp_path):
    out = tmp_path / "ideas.json"
    process = run_python(["-m", "bench", "--parts", "ideas", "--shape", "3,4,2,5",
                          "--rounds", "1", "--json", str(out)])
    assert process.returncode == 0, process.stderr[-3000:]
    rows = {row["impl"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows.keys() == {
        "loop_batch_from_python", "loop_batch_in_graph", "loop_10_steps_per_call",
        "keras_lstm", "keras_lstm_unrolled", "block_lstm_v1", "essay_lstm",
        "essay_lstm_projected_inputs"}
    for row in rows.values():
        assert row["ms"] > 0
        assert ("time_vs_replaced" in row) == (row["replaces"] is not None)
        if row["replaces"] is not None:
            assert row["time_vs_replaced"] == pytest.approx(float(np.median(
                np.array(row["rounds"]) / np.array(rows[row["replaces"]]["rounds"]))))
        if row["unit"] == "forward and backward pass":
            assert row["max_gradient_difference"] < 1e-4  # Every idea computes the same LSTM.


def test_the_library_never_imports_the_benchmark():
    """`bench/` runs from a clone and is not installed: nothing in `kala/` may import it."""
    importers = []
    for path in sorted(pathlib.Path(ROOT, "kala").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            if any(name.split(".")[0] == "bench" or name.split(".")[:2] == ["kala", "bench"]
                   for name in names):
                importers.append(path.name)
    assert importers == []
