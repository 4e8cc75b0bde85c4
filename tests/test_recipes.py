"""The recipes end to end, as a user runs them: `--smoke`, `--export`, `--help`, bad arguments."""

import ast
import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import typing

import numpy as np
import pytest

import kala
from conftest import ROOT, recipe_module, run_main, run_python, serve_in_fresh_process

RECIPES = {
    # recipe: (run directory of a smoke run, a batch of 3 at a length never trained on)
    "adding_problem": ("2016-lstm-T20-seed0-smoke",
                       np.random.default_rng(0).uniform(size=(3, 37, 2)).astype(np.float32)),
    "copy_memory": ("lstm-T5-seed0-smoke",
                    np.random.default_rng(0).integers(0, 10, size=(3, 41)).astype(np.int32)),
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_smoke_run_trains_reports_and_exports(tmp_path, recipe):
    run_name, inputs = RECIPES[recipe]
    saved_models, results = tmp_path / "models", tmp_path / "results"
    process = run_python([f"recipes/{recipe}.py", "--smoke", "--export",
                          "--saved-models", str(saved_models), "--results", str(results)])
    assert process.returncode == 0, process.stderr[-3000:]
    lines = process.stdout.strip().splitlines()
    assert any(line.startswith("step ") for line in lines)  # Progress.
    summary = lines[-1]  # The run ends with its one-line summary.
    assert summary.startswith(f"{recipe}: lstm ") and "baseline" in summary

    with open(results / recipe / run_name / "result.json") as file:
        result = json.load(file)
    assert ("SOLVED after" in summary) == result["solved"]
    assert ("NOT solved within 160 sequences" in summary) == (not result["solved"])
    assert summary.endswith(f"; {result['seconds']:.0f} s")
    for key in ("solved", "sequences_seen", "metric", "baseline", "seconds"):
        assert key in result
    assert isinstance(result["solved"], bool)
    assert (result["sequences_seen"] is None) == (not result["solved"])
    assert result["config"]["smoke"] is True and result["steps"] == 20

    version = saved_models / recipe / "1"
    assert (version / "saved_model.pb").is_file()
    assert os.listdir(saved_models / recipe) == ["1"]
    _, outputs = serve_in_fresh_process(version, inputs, tmp_path)
    (answer,) = outputs.values()
    expected_shape = (3, 1) if recipe == "adding_problem" else (3, 41, 10)
    assert np.array(answer).shape == expected_shape
    assert np.all(np.isfinite(answer))


_HELP = {}


@pytest.fixture
def help_of(capsys):
    """What `python recipes/RECIPE.py --help` prints (it must exit 0), by recipe."""
    def help_text(recipe):
        if recipe not in _HELP:
            code, out, _ = run_main(capsys, recipe_module(recipe).main, ["--help"])
            assert code == 0
            _HELP[recipe] = out
        return _HELP[recipe]
    return help_text


@pytest.mark.parametrize("recipe", RECIPES)
def test_help_lists_the_flags(recipe, help_of):
    for flag in ("--cell", "--units", "--seq-len", "--steps", "--batch-size", "--learning-rate",
                 "--seed", "--smoke", "--export", "--saved-models", "--results"):
        assert flag in help_of(recipe)


@pytest.mark.parametrize("arguments, message", [
    (["--cell", "transformer"], "invalid choice: 'transformer'"),
    (["--units", "0"], "expected a positive number, got '0'"),
    (["--steps", "many"], "expected an integer, got 'many'"),
    (["--learning-rate", "-1"], "expected a positive number"),
    (["--seed", "-1"], "expected an integer >= 0"),
    (["--seq-len", "1"], "seq_len=1"),  # Valid for argparse, refused by the task.
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--export", "--model-name", "a/b"], "model_name='a/b'"),  # Refused before training.
])
def test_bad_arguments_exit_2_with_one_line(capsys, arguments, message):
    # In this process: the same code path as a process of its own, without starting
    # TensorFlow again (the test below runs one that way).
    code, out, err = run_main(capsys, recipe_module("adding_problem").main, arguments)
    assert code == 2 and out == ""
    (error,) = err.splitlines()
    assert ": error: " in error and message in error


def test_a_bad_argument_in_a_process_of_its_own_is_one_line_and_no_start_up_noise():
    process = run_python(["recipes/adding_problem.py", "--cell", "transformer"])
    assert process.returncode == 2
    assert process.stdout == ""
    # One line: the recipe's, with none of TensorFlow's start-up lines before it.
    (error,) = process.stderr.splitlines()
    assert error.startswith("adding_problem.py: error: ") and "invalid choice" in error


def test_a_file_where_a_directory_belongs_exits_2(tmp_path):
    not_a_directory = tmp_path / "results.txt"
    not_a_directory.write_text("")
    process = run_python(["recipes/copy_memory.py", "--smoke", "--results", str(not_a_directory)])
    assert process.returncode == 2
    assert "is a file, expected a directory" in process.stderr
    assert "Traceback" not in process.stderr


# What the recipes import; every other file of recipes/ is a lesson, run on its own.
HELPERS = ("flags", "output", "sweep", "tuned")
LESSONS = sorted(os.path.splitext(os.path.basename(path))[0]
                 for path in glob.glob(os.path.join(ROOT, "recipes", "*.py"))
                 if os.path.splitext(os.path.basename(path))[0] not in HELPERS)


def literal_choices(kind):
    """The values of the `typing.Literal`s in a type (inside tuples and unions too)."""
    if typing.get_origin(kind) is typing.Literal:
        return list(typing.get_args(kind))
    return [choice for member in typing.get_args(kind) for choice in literal_choices(member)]


def test_every_lesson_imports_no_other_lesson():
    assert {"adding_problem", "long_gap", "lstm_variants"} <= set(LESSONS)
    for name in LESSONS + list(HELPERS):
        with open(os.path.join(ROOT, "recipes", f"{name}.py")) as file:
            tree = ast.parse(file.read())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        assert not imported & set(LESSONS), f"recipes/{name}.py imports {imported & set(LESSONS)}"


@pytest.mark.parametrize("recipe", LESSONS)
def test_help_lists_the_choices_of_every_flag_that_has_them(recipe, help_of):
    text = help_of(recipe)
    fields = {field.name: literal_choices(field.type)
              for field in dataclasses.fields(recipe_module(recipe).Settings)}
    assert any(fields.values()), f"{recipe}: no flag with choices"
    for name, choices in fields.items():
        if not choices:
            continue
        # The flag's entry, from its name to the next flag, ends with its choices.
        flag = "--" + name.replace("_", "-")
        entry = re.search(rf"^  {flag} .*?(?=^  -|\Z)", text, re.MULTILINE | re.DOTALL).group(0)
        assert "choices:" in entry, f"{recipe} {flag}: {entry}"
        listed = set(re.split(r"[\s,;()]+", entry.split("choices:")[1]))
        assert set(map(str, choices)) <= listed, f"{recipe} {flag}: {entry}"
    if "cell" in fields:
        assert "lstm+chrono" in fields["cell"]


EVERY_CELL = [("peephole_lstm", "auto"), ("coupled_lstm", "auto"), ("lstm1997", "auto"),
              ("lstm+chrono", "auto"), ("simple_rnn+irnn", "auto"), ("simple_rnn", "essay"),
              ("lstm", "essay"), ("gru", "essay")]

# Answers a batch with every export under a base path, in a process that never imports kala.
SERVE_EVERY_EXPORT = """
import json, os, sys
import numpy as np
import tensorflow as tf
base, inputs = sys.argv[1], np.load(sys.argv[2])
answers = {}
for name in sorted(os.listdir(base)):
    if os.path.isdir(os.path.join(base, name)):
        signature = tf.saved_model.load(os.path.join(base, name, "1")).signatures["serving_default"]
        answers[name] = signature(sequence=tf.constant(inputs))["prediction"].numpy().tolist()
assert "kala" not in sys.modules
print(json.dumps(answers))
"""


def test_every_cell_trains_in_a_recipe_and_serves_in_a_fresh_process(tmp_path, capsys):
    saved_models = tmp_path / "models"
    for cell, implementation in EVERY_CELL:  # In this process: TensorFlow starts once.
        code, out, err = run_main(capsys, recipe_module("adding_problem").main, [
            "--smoke", "--cell", cell, "--implementation", implementation, "--export",
            "--model-name", f"{cell.replace('+', '_')}-{implementation}",
            "--saved-models", str(saved_models), "--results", str(tmp_path)])
        assert code == 0, err[-3000:]
        assert out.strip().splitlines()[-1].startswith(f"adding_problem: {cell} ")
        suffix = "" if implementation == "auto" else f"-implementation{implementation}"
        run_dir = tmp_path / "adding_problem" / f"2016-{cell}-T20-seed0{suffix}-smoke"
        with open(run_dir / "result.json") as file:
            assert json.load(file)["steps"] == 20
    inputs = np.random.default_rng(0).uniform(size=(3, 37, 2)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    process = run_python(["-c", SERVE_EVERY_EXPORT, str(saved_models),
                          str(tmp_path / "inputs.npy")])
    assert process.returncode == 0, process.stderr[-3000:]
    answers = json.loads(process.stdout.strip().splitlines()[-1])
    assert sorted(answers) == sorted(f"{cell.replace('+', '_')}-{implementation}"
                                     for cell, implementation in EVERY_CELL)
    for answer in answers.values():
        assert np.array(answer).shape == (3, 1) and np.all(np.isfinite(answer))


def test_results_of_runs_with_other_settings_do_not_overwrite_each_other():
    adding_problem, flags, output = (recipe_module(name)
                                     for name in ("adding_problem", "flags", "output"))

    def name(*arguments):
        settings = flags.parse(adding_problem.Settings, "", list(arguments),
                               smoke=adding_problem.SMOKE)
        return output.run_name(settings, adding_problem.SMOKE,
                               ["definition", "cell", "seq_len", "seed"])

    assert name() == "2016-lstm-T100-seed0"
    assert name("--seed", "2", "--cell", "gru", "--export") == "2016-gru-T100-seed2"
    assert name("--units", "32", "--learning-rate", "0.001") == (
        "2016-lstm-T100-seed0-units32-learning_rate0.001")
    assert name("--smoke") == "2016-lstm-T20-seed0-smoke"
    assert name("--smoke", "--steps", "3000") == "2016-lstm-T20-seed0-steps3000-smoke"
    # A path names its file, so the result stays in DIR/<recipe>/.
    char_language_model = recipe_module("char_language_model")
    settings = char_language_model.Settings(text="/data/books/emma.txt")  # Not read here.
    assert output.run_name(settings, char_language_model.SMOKE, ["cell", "seed"]) == (
        "lstm-seed0-textemma.txt")


def long_gap_summary(results):
    with open(results / "long_gap" / "summary.json") as file:
        return json.load(file)


@pytest.mark.parametrize("task", ["long_gap", "copy"])
def test_long_gap_smoke_sweep_writes_its_summary(tmp_path, task):
    process = run_python(["recipes/long_gap.py", "--smoke", "--task", task,
                          "--results", str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]
    summary = long_gap_summary(tmp_path)
    assert summary["config"]["task"] == task
    assert [(run["cell"], run["gap"]) for run in summary["runs"]] == [
        ("simple_rnn", 2), ("lstm", 2), ("simple_rnn", 4), ("lstm", 4)]
    for run in summary["runs"]:
        for key in ("cell", "gap", "seed", "solved", "sequences_seen", "metric", "baseline",
                    "seconds", "learning_rate", "parameters"):
            assert key in run
        assert (run["sequences_seen"] is None) == (not run["solved"])
    # Under the default `--learning-rate tuned`, each cell trains at its own tuned rate.
    tuned = recipe_module("tuned")
    assert {(run["cell"], run["learning_rate"]) for run in summary["runs"]} == {
        (cell, tuned.TUNED_LEARNING_RATES[cell]) for cell in ("simple_rnn", "lstm")}
    table = (tmp_path / "long_gap" / "summary.md").read_text()
    row = (f"| lstm | {tuned.TUNED_LEARNING_RATES['lstm']:g} | "
           f"{summary['runs'][-1]['parameters']:,} | 4 |")
    assert table.count("\n") == 2 + 4 and row in table
    assert row in process.stdout  # The table is printed too.
    assert (tmp_path / "long_gap" / "long_gap.png").stat().st_size > 10_000


def test_long_gap_learning_rate_grid_in_parallel_matches_one_at_a_time(capsys, tmp_path):
    # Two worker processes train the same runs, to the same numbers, as one process does.
    common = ["--smoke", "--cells", "lstm", "--gaps", "3", "--seeds", "2",
              "--learning-rate", "1e-3,1e-2"]
    code, serial_out, err = run_main(capsys, recipe_module("long_gap").main,
                                     [*common, "--results", str(tmp_path / "serial")])
    parallel = run_python(["recipes/long_gap.py", *common, "--jobs", "2",
                           "--results", str(tmp_path / "parallel")])
    assert code == 0 and parallel.returncode == 0, err + parallel.stderr[-3000:]
    runs = long_gap_summary(tmp_path / "serial")["runs"]
    assert [(run["learning_rate"], run["seed"]) for run in runs] == [
        (0.001, 0), (0.001, 1), (0.01, 0), (0.01, 1)]
    assert len({run["metric"] for run in runs}) > 1
    for one, other in zip(runs, long_gap_summary(tmp_path / "parallel")["runs"]):
        assert {**one, "seconds": 0} == {**other, "seconds": 0}
    # A grid ends by naming each cell's best rate.
    best = long_gap_summary(tmp_path / "serial")["best_learning_rates"]
    assert set(best) == {"lstm"} and best["lstm"] in (0.001, 0.01)
    assert f"best learning rate per cell (most runs solved, then fewest sequences): lstm " \
           f"{best['lstm']:g}" in serial_out


def test_the_best_learning_rate_solves_most_runs_then_needs_fewest_sequences():
    sweep = recipe_module("sweep")

    def run(cell, rate, sequences):
        return {"cell": cell, "learning_rate": rate, "solved": sequences is not None,
                "sequences_seen": sequences}

    runs = [run("lstm", 0.01, 5000), run("lstm", 0.01, None),  # 1 solved
            run("lstm", 0.003, 9000), run("lstm", 0.003, 8000),  # 2 solved, 17,000 sequences
            run("lstm", 0.001, 4000), run("lstm", 0.001, 6000),  # 2 solved, 10,000 sequences
            run("gru", 0.01, None), run("gru", 0.001, None)]  # none solved: the first rate
    assert sweep.best_learning_rates(runs) == {"lstm": 0.001, "gru": 0.01}


def test_ctrl_c_ends_a_parallel_sweep_and_keeps_the_finished_runs(tmp_path):
    command = [sys.executable, "recipes/long_gap.py", "--smoke", "--jobs", "2", "--gaps", "2",
               "--seeds", "12", "--steps", "60", "--results", str(tmp_path)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in process.stdout:
        if line.startswith("[1/24]"):
            # Ctrl-C on a terminal signals the whole process group, workers included.
            os.killpg(process.pid, signal.SIGINT)
            break
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted; the" in stderr and "Traceback" not in stderr
    runs = long_gap_summary(tmp_path)["runs"]
    assert 1 <= len(runs) < 24
    assert not (tmp_path / "long_gap" / "summary.md").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--cells", "lstm,transformer"], "--cells: invalid choice: 'transformer'"),
    (["--gaps", "10,many"], "--gaps: expected an integer, got 'many'"),
    (["--gaps", "10,0"], "--gaps: expected a positive number, got '0'"),
    (["--learning-rate", "fast"], "--learning-rate: invalid choice: 'fast' (choose from tuned)"),
    (["--learning-rate", "1e-3,-1"], "expected a positive number, got '-1'"),
    (["--smoke", "--full"], "--smoke and --full exclude each other"),
    (["--position", "middle"], "invalid choice: 'middle'"),
])
def test_long_gap_bad_arguments_exit_2(capsys, arguments, message):
    code, _, err = run_main(capsys, recipe_module("long_gap").main, arguments)
    assert code == 2 and message in err and err.count("\n") == 1


def test_vanishing_gradients_smoke_measures_every_distance(tmp_path):
    process = run_python(["recipes/vanishing_gradients.py", "--smoke", "--results", str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]
    with open(tmp_path / "vanishing_gradients" / "gradients.json") as file:
        measured = json.load(file)
    assert measured["distance"] == list(range(10))
    assert set(measured["cells"]) == {"simple_rnn", "lstm"}
    for curves in measured["cells"].values():
        assert len(curves["initial"]) == len(curves["trained"]) == 10
        assert all(value > 0 for value in curves["initial"])
        assert curves["initial"] != curves["trained"]  # Training changed the weights.
        # The bold curve is the median of the seeds' curves (two seeds: their mean).
        first, second = curves["runs"]
        assert (first["seed"], second["seed"]) == (0, 1) and first["initial"] != second["initial"]
        np.testing.assert_allclose(
            curves["initial"], (np.array(first["initial"]) + second["initial"]) / 2, rtol=1e-6)
    assert (tmp_path / "vanishing_gradients" / "gradients.png").stat().st_size > 10_000


@pytest.mark.parametrize("recipe, flags", [
    ("long_gap", ["--cells", "--gaps", "--seeds", "--learning-rate", "--jobs", "--full",
                  "--position", "--smoke", "--results"]),
    ("position_shortcut", ["--cells", "--gap", "--shifts", "--learning-rate", "--smoke",
                           "--results"]),
    ("vanishing_gradients", ["--smoke", "--results"]),
    ("lstm_variants", ["--cells", "--gaps", "--seeds", "--learning-rate", "--full", "--smoke",
                       "--report-only", "--results"]),
    ("lstm_walkthrough", ["--cell", "--gap", "--example", "--smoke", "--export", "--results"]),
    ("char_language_model", ["--cell", "--text", "--tfds", "--prime", "--temperature",
                             "--sample-length", "--seq-len", "--smoke", "--results"]),
    ("char_cells_compared", ["--cells", "--seeds", "--learning-rates", "--search-steps",
                             "--report-only", "--text", "--smoke", "--results"]),
])
def test_help_of_the_experiments_lists_their_flags(recipe, flags, help_of):
    for flag in flags:
        assert flag in help_of(recipe)


def test_position_shortcut_smoke_tests_every_shift(tmp_path):
    process = run_python(["recipes/position_shortcut.py", "--smoke", "--results", str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]
    with open(tmp_path / "position_shortcut" / "shifts.json") as file:
        measured = json.load(file)
    assert measured["shifts"] == [-2, 0, 2]
    assert set(measured["cells"]) == {"simple_rnn", "lstm"}
    for cell, curves in measured["cells"].items():
        assert [run["seed"] for run in curves["runs"]] == [0, 1]
        for run in curves["runs"]:
            assert len(run["error_rate"]) == 3
            assert all(0 <= error <= 1 for error in run["error_rate"])
            assert run["learning_rate"] == {"simple_rnn": 1e-3, "lstm": 1e-2}[cell]
    assert "country moved by -2:" in process.stdout
    assert (tmp_path / "position_shortcut" / "shifts.png").stat().st_size > 10_000


@pytest.mark.parametrize("arguments, message", [
    (["--shifts=-100,0"], "leaves less than one word"),
    (["--shifts", "0,far"], "--shifts: expected an integer, got 'far'"),
    (["--cells", "rnn"], "--cells: invalid choice: 'rnn'"),
    (["--cells", "gru"], "no rate measured for gru"),
    (["--learning-rate", "1e-3,1e-2"], "invalid choice: '1e-3,1e-2' (choose from best); or "
                                       "expected a number"),
])
def test_position_shortcut_bad_arguments_exit_2(capsys, arguments, message):
    code, _, err = run_main(capsys, recipe_module("position_shortcut").main, arguments)
    assert code == 2 and message in err and err.count("\n") == 1


def test_long_gap_report_only_tabulates_an_earlier_sweep(capsys, tmp_path):
    def run(cell, gap, seed, sequences):
        return {"cell": cell, "gap": gap, "learning_rate": 0.01, "seed": seed,
                "solved": sequences is not None, "sequences_seen": sequences,
                "metric": 0.01 if sequences else 0.86, "baseline": 0.875, "seconds": 5.0,
                "parameters": 1000}

    summary = {"recipe": "long_gap", "config": {"task": "long_gap"}, "metric_name": "error_rate",
               "runs": [run("lstm", 10, 0, 6400), run("lstm", 10, 1, 9600),
                        run("lstm", 100, 0, None), run("lstm", 100, 1, 64000)]}
    (tmp_path / "long_gap").mkdir()
    (tmp_path / "long_gap" / "summary.json").write_text(json.dumps(summary))
    main = recipe_module("long_gap").main
    code, _, err = run_main(capsys, main, ["--report-only", "--results", str(tmp_path)])
    assert code == 0, err[-3000:]
    table = (tmp_path / "long_gap" / "summary.md").read_text()
    assert "| lstm | 0.01 | 1,000 | 10 | 100% of 2 | 8,000 | 0.010 (0.875) | 5 |" in table
    assert "| lstm | 0.01 | 1,000 | 100 | 50% of 2 | 64,000 | 0.435 (0.875) | 5 |" in table
    assert (tmp_path / "long_gap" / "long_gap.png").stat().st_size > 10_000

    (tmp_path / "long_gap" / "summary.json").write_text("{not json")
    code, _, err = run_main(capsys, main, ["--report-only", "--results", str(tmp_path)])
    assert code == 2 and "cannot read" in err
    code, _, err = run_main(capsys, main, ["--report-only", "--results",
                                           str(tmp_path / "nothing")])
    assert code == 2 and "does not exist" in err


# --- Inside the LSTM: the variants compared, and the gates watched. ------------------------------

def test_lstm_variants_smoke_sweep_runs_each_variant_at_its_tuned_rate(tmp_path):
    tuned = recipe_module("tuned")
    process = run_python(["recipes/lstm_variants.py", "--smoke", "--results", str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]
    with open(tmp_path / "lstm_variants" / "summary.json") as file:
        summary = json.load(file)
    variants = ["lstm1997", "lstm+chrono", "peephole_lstm", "coupled_lstm"]
    assert [run["cell"] for run in summary["runs"]] == variants
    for run in summary["runs"]:
        assert run["learning_rate"] == tuned.TUNED_LEARNING_RATES[run["cell"]]
    table = (tmp_path / "lstm_variants" / "summary.md").read_text()
    assert all(f"| {variant} |" in table for variant in variants)
    assert (tmp_path / "lstm_variants" / "lstm_variants.png").stat().st_size > 10_000
    # The full comparison has a rate for every variant, from the same search.
    contestants = recipe_module("lstm_variants").Settings().cells
    assert len(contestants) == 9 and set(contestants) <= set(tuned.TUNED_LEARNING_RATES)


def test_lstm_walkthrough_smoke_watches_the_gates_of_the_trained_model(tmp_path):
    process = run_python(["recipes/lstm_walkthrough.py", "--smoke", "--results", str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]
    run_dir = tmp_path / "lstm_walkthrough" / "lstm-4-seed0-smoke"
    with open(run_dir / "gates.json") as file:
        measured = json.load(file)
    assert len(measured["carriers"]) == 3 and measured["config"]["smoke"] is True
    for gate in ("input_gate", "forget_gate", "output_gate"):
        assert all(0 <= value <= 1 for value in measured[gate].values())
    assert "forget gate:" in process.stdout and "input gate:" in process.stdout
    assert (run_dir / "gates.png").stat().st_size > 10_000
    assert {"result.json", "model.keras", "task.json"} <= set(os.listdir(run_dir))


def test_the_walkthrough_finds_the_unit_that_stores_the_country():
    walkthrough = recipe_module("lstm_walkthrough")
    task = kala.tasks.LongGap(6, test_size=64)
    tokens, languages = task.make_batch(np.random.default_rng(0), 64)
    country = np.argmax(tokens == task.ids("in")[0], axis=1) + 1
    steps = np.arange(tokens.shape[1])[None, :]
    rng = np.random.default_rng(1)
    shape = tokens.shape + (4,)
    values = {name: rng.uniform(0.2, 0.8, size=shape) for name in ("forget", "input", "output")}
    values["candidate"] = rng.uniform(-1, 1, size=shape)
    # Unit 2 writes the country at its step and keeps it: forget gate 1 after it.
    values["cell"] = rng.normal(0, 0.1, size=shape)
    values["cell"][:, :, 2] = np.where(steps >= country[:, None], 3.0 * languages[:, None], 0.0)
    values["forget"][:, :, 2] = np.where(steps > country[:, None], 1.0, 0.5)
    values["input"][:, :, 2] = np.where(steps == country[:, None], 0.9, 0.1)
    values["candidate"][:, :, 2] = 1.0
    measured = walkthrough.measure(task, tokens, languages, values)
    assert measured["carriers"][0] == 2
    eta = measured["cell_eta2_of_carriers"]
    assert eta["before_country"][0] == 0 and eta["at_country"][0] == eta["at_end"][0] == 1
    forget = measured["forget_gate"]
    assert forget["first_half_of_gap"] > forget["before_country"] + 0.1
    assert measured["input_gate"]["at_country"] > measured["input_gate"]["elsewhere"]
    assert measured["written"]["at_country"] > measured["written"]["elsewhere"]


@pytest.mark.parametrize("recipe, arguments, message", [
    ("lstm_walkthrough", ["--cell", "gru"], "invalid choice: 'gru' (choose from lstm, "),
    ("lstm_walkthrough", ["--example", "512"], "there are 512 test sentences"),
    ("lstm_walkthrough", ["--example=-1"], "expected an integer >= 0, got '-1'"),
    ("lstm_variants", ["--cells", "lstm+irnn"], "--cells: invalid choice: 'lstm+irnn'"),
    ("adding_problem", ["--cell", "coupled_lstm", "--implementation", "builtin"],
     "Keras has no built-in layer for cell 'coupled_lstm'"),
])
def test_inside_the_lstm_bad_arguments_exit_2(capsys, recipe, arguments, message):
    code, _, err = run_main(capsys, recipe_module(recipe).main, arguments)
    assert code == 2 and message in err and err.count("\n") == 1


def test_settings_counted_from_zero_take_zero_and_shifts_take_either_sign():
    flags = recipe_module("flags")
    for recipe, flag in [("lstm_walkthrough", "--example"), ("long_gap", "--first-seed"),
                         ("adding_problem", "--seed")]:
        settings = flags.parse(recipe_module(recipe).Settings, "", [flag, "0"])
        assert getattr(settings, flag[2:].replace("-", "_")) == 0
    settings = flags.parse(recipe_module("position_shortcut").Settings, "", ["--shifts=-5,0,5"])
    assert settings.shifts == (-5, 0, 5)


def _sleepy_run(name, seconds):
    time.sleep(seconds)
    return {"name": name}


def test_a_sweeps_pace_counts_only_the_runs_it_trained(tmp_path, capsys):
    sweep = recipe_module("sweep")
    plan = [("stored", 0.0), ("trained", 2.0), ("last", 0.0)]
    summary = {"recipe": "pace"}
    rows = sweep.run(_sleepy_run, plan, summary, str(tmp_path), describe=lambda row: row["name"],
                     stored=lambda name, seconds: {"name": name} if name == "stored" else None)
    assert [row["name"] for row in rows] == ["stored", "trained", "last"]
    lines = capsys.readouterr().out.splitlines()
    # Before anything has trained there is no pace to tell; after, the trained run's pace
    # (2 s each), not one spread over the stored run too (1 s).
    assert lines[0] == "[1/3] stored"
    assert re.fullmatch(r"\[2/3\] trained; at this pace the last one takes about [2-4] s",
                        lines[1]), lines[1]
