"""Where runs write: under runs/ by default, into results/ only on purpose; every path a run
names is checked before any work; a run keeps its trained model."""

import concurrent.futures
import dataclasses
import os

import pytest

from conftest import git, run_as_a_user, run_python
from test_recipes import LESSONS, recipe_module

# Each lesson's smoke run, and where it keeps its models (none for a recipe that trains none).
MODELS = {
    "adding_problem": "adding_problem/2016-lstm-T20-seed0-smoke/model.keras",
    "copy_memory": "copy_memory/lstm-T5-seed0-smoke/model.keras",
    "lstm_walkthrough": "lstm_walkthrough/lstm-4-seed0-smoke/model.keras",
    "char_language_model": "char_language_model/lstm-seed0-smoke/model.keras",
    "long_gap": "long_gap/runs/lstm-gap4-lr0.003-seed0/model.keras",
    "lstm_variants": "lstm_variants/runs/coupled_lstm-gap3-lr0.01-seed0/model.keras",
    "vanishing_gradients": "vanishing_gradients/runs/lstm-seed0/model.keras",
    "position_shortcut": "position_shortcut/runs/lstm-seed0/model.keras",
    "char_cells_compared": "char_cells_compared/runs",
    "classify_sequences": "classify_sequences/runs/lstm-lr0.001-seed0/model.keras",
    "forecast": "forecast/runs/lstm-one_step-lr0.003-seed0/model.keras",
    "pixel_digits": "pixel_digits/runs/lstm-permuted-lr0.003-seed0/model.keras",
    "paper_1997": "paper_1997/runs/reber-lstm-lr0.01-seed0.json",  # Its runs, not models.
}


def test_every_smoke_run_leaves_the_clone_clean_keeps_its_models_and_prints_no_tensorflow(clone):
    assert sorted(MODELS) == LESSONS
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # Two at a time: two cores here.
        runs = dict(zip(LESSONS, pool.map(
            lambda recipe: run_as_a_user([f"recipes/{recipe}.py", "--smoke"], cwd=clone,
                                         timeout=600), LESSONS)))
    for recipe, process in runs.items():
        assert process.returncode == 0, f"{recipe}: {process.stderr[-3000:]}"
        assert process.stderr == "", f"{recipe} wrote to stderr: {process.stderr[-3000:]}"
        assert os.path.exists(clone / "runs" / MODELS[recipe]), recipe
    assert git("status", "--porcelain", "--untracked-files=all", cwd=clone) == ""
    # The kept model answers a question of your own.
    ask = run_as_a_user(["-m", "kala.ask", str(clone / "runs" / MODELS["lstm_walkthrough"]),
                         "I grew up in France. I speak fluent"], cwd=clone)
    assert ask.returncode == 0 and ask.stderr == "", ask.stderr[-3000:]
    assert "(probability 0." in ask.stdout


def test_a_smoke_run_will_not_write_into_the_committed_results():
    process = run_python(["recipes/adding_problem.py", "--smoke", "--results", "results"])
    assert process.returncode == 2 and process.stdout == ""
    (line,) = process.stderr.splitlines()
    assert "--smoke runs are not kept: --results results holds the committed results" in line


def settings_of(recipe, *arguments):
    module, flags = recipe_module(recipe), recipe_module("flags")
    return flags.parse(module.Settings, "", list(arguments))


@pytest.mark.parametrize("recipe", LESSONS)
def test_every_directory_a_recipe_writes_to_is_checked_before_the_work(recipe, capsys):
    names = [field.name for field in dataclasses.fields(recipe_module(recipe).Settings)]
    checked = [name for name in ("results", "checkpoint_dir", "logdir", "saved_models")
               if name in names]
    assert "results" in checked
    for name in checked:
        flag = "--" + name.replace("_", "-")
        with pytest.raises(SystemExit) as exit:
            settings_of(recipe, flag, "/proc/x")
        assert exit.value.code == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.endswith(f"error: {flag} /proc/x: cannot write there (No such file or "
                             "directory)")


def test_a_directory_made_to_check_a_path_is_removed_again(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    assert settings_of("copy_memory", "--results", str(target)).results == str(target)
    assert os.listdir(tmp_path) == []
    os.chmod(tmp_path, 0o500)  # Readable, not writable.
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as root: every directory is writable")
        with pytest.raises(SystemExit):
            settings_of("copy_memory", "--results", str(target))
    finally:
        os.chmod(tmp_path, 0o700)


@pytest.mark.parametrize("recipe", ["char_language_model", "char_cells_compared"])
def test_a_text_file_that_cannot_be_read_is_refused_before_the_work(recipe, tmp_path, capsys):
    for path, problem in [(tmp_path / "missing.txt", "does not exist"),
                          (tmp_path, "is a directory, expected a file")]:
        with pytest.raises(SystemExit):
            settings_of(recipe, "--text", str(path))
        assert capsys.readouterr().err.strip().endswith(f"--text {path} {problem}")


@pytest.mark.parametrize("recipe", ["position_shortcut", "char_cells_compared"])
def test_a_bad_results_directory_ends_a_long_recipe_before_it_trains(recipe):
    process = run_python([f"recipes/{recipe}.py", "--results", "/proc/x"])
    assert process.returncode == 2 and process.stdout == ""
    (line,) = process.stderr.splitlines()
    assert line == f"{recipe}.py: error: --results /proc/x: cannot write there (No such file or " \
        "directory)"


def test_a_failed_write_at_the_end_names_the_path_and_keeps_what_was_measured(tmp_path, capsys):
    output = recipe_module("output")
    (tmp_path / "a file").write_text("")
    path = tmp_path / "a file" / "long_gap" / "summary.json"  # Its directory cannot be made.
    with pytest.raises(SystemExit) as exit:
        output.write_json(str(path), {"solved": True, "sequences_seen": 12800})
    assert exit.value.code == 2
    printed = capsys.readouterr()
    assert '"sequences_seen": 12800' in printed.out  # What was measured is not lost.
    (line,) = printed.err.splitlines()
    assert (f"cannot write {path} (48 bytes: Not a directory); what it would hold is printed "
            "above") in line
    assert os.listdir(tmp_path) == ["a file"]
