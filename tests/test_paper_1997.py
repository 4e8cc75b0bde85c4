"""recipes/paper_1997.py: the paper's table, as a user runs it (`--smoke`), resumed from its
stored runs, tabulated again, and set up as the paper set up its nets."""

import contextlib
import io
import json
import sys

import numpy as np
import pytest

from conftest import recipe_module, run_main


@pytest.fixture(scope="module")
def recipe():
    return recipe_module("paper_1997")


@pytest.fixture(scope="module")
def smoke_table(tmp_path_factory, recipe):
    # Once for the module: the tests below read the same table (capsys is per test).
    results = tmp_path_factory.mktemp("paper_1997")
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            recipe.main(["--smoke", "--results", str(results)])
        except SystemExit as exit:
            code = exit.code
        finally:
            sys.modules["output"].release_claims()
    return results / "paper_1997", code, out.getvalue(), err.getvalue()


def test_the_smoke_table_runs_every_contender_and_guessing_beside_the_papers_figures(
        smoke_table, recipe):
    out_dir, code, out, err = smoke_table
    assert code == 0, err[-3000:]
    summary = json.loads((out_dir / "summary.json").read_text())
    runs = {(run["row"], run["cell"]) for run in summary["runs"]}
    assert runs == {(row, cell) for row in ("reber", "two_sequence", "adding_T100")
                    for cell in recipe.CONTENDERS} | {("two_sequence", "guessing")}
    tuned = recipe_module("tuned")
    for run in summary["runs"]:
        if run["cell"] in ("lstm", "simple_rnn"):
            assert run["learning_rate"] == tuned.PAPER_1997[(run["cell"], run["row"])]
            assert run["batch_size"] == 32
        elif run["cell"] == "lstm1997":  # Online, at the paper's rate.
            assert run["learning_rate"] == recipe.ROWS[run["row"]].paper_rate
            assert run["batch_size"] == 1
    table = (out_dir / "summary.md").read_text()
    for figure in ("8,440", "27,380", "74,000"):
        assert f"| {figure} |" in table
    assert "| guessing |" in table and "guesses" in table
    assert "written to" in out


def test_the_same_command_takes_up_the_stored_runs_instead_of_training_again(
        smoke_table, recipe, capsys):
    out_dir, *_ = smoke_table
    before = json.loads((out_dir / "summary.json").read_text())["runs"]
    code, out, err = run_main(capsys, recipe.main,
                              ["--smoke", "--results", str(out_dir.parent)])
    assert code == 0, err[-3000:]
    after = json.loads((out_dir / "summary.json").read_text())["runs"]
    assert after == before
    # A stored run made with other settings is not taken up.
    assert recipe.stored(recipe.flags.parse(recipe.Settings, "", ["--smoke", "--units", "9"],
                                            smoke=recipe.SMOKE),
                         str(out_dir), "reber", "lstm", before[1]["learning_rate"], 0) is None


def test_report_only_tabulates_the_stored_summary_again(smoke_table, recipe, capsys):
    out_dir, *_ = smoke_table
    table = (out_dir / "summary.md").read_text()
    (out_dir / "summary.md").unlink()
    code, out, _ = run_main(capsys, recipe.main,
                            ["--report-only", "--results", str(out_dir.parent)])
    assert code == 0 and (out_dir / "summary.md").read_text() == table


def test_the_1997_cell_starts_from_the_papers_weights_and_gate_biases(recipe):
    row = recipe.ROWS["two_sequence"]
    task = row.make_task()
    settings = recipe.Settings()
    model, options = recipe.build(settings, "lstm1997", row, task, seed=0)
    kernel, recurrent, bias = model.get_layer("lstm1997_1").get_weights()
    assert kernel.shape == (1, 3 * row.cells)
    np.testing.assert_array_equal(bias[:3], [-1, -3, -5])  # Input gates.
    np.testing.assert_array_equal(bias[6:], [-2, -4, -6])  # Output gates.
    weights = np.concatenate([w.ravel() for w in model.get_weights()])
    assert np.all(np.abs(np.concatenate([kernel.ravel(), recurrent.ravel(), bias[3:6]]))
                  <= row.scale)
    assert weights.size == model.count_params()
    assert options == {"batch_size": 1, "learning_rate": 1.0, "clipnorm": None,
                       "optimizer": "sgd", "jit_compile": True}


def test_every_row_has_a_tuned_rate_for_both_of_kalas_contenders(recipe):
    tuned = recipe_module("tuned")
    for name in recipe.ROWS:
        for cell in ("lstm", "simple_rnn"):
            assert (cell, name) in tuned.PAPER_1997, (cell, name)
    # The default table: the rows that finish in minutes on the 2-core CPU (docs/paper_1997.md).
    assert recipe.QUICK == ("reber", "two_sequence", "temporal_order_4")


@pytest.mark.parametrize("arguments, message", [
    (["--rows", "xor"], "--rows: invalid choice: 'xor'"),
    (["--contenders", "gru"], "--contenders: invalid choice: 'gru'"),
])
def test_bad_arguments_exit_2_with_one_line(recipe, capsys, arguments, message):
    code, _, err = run_main(capsys, recipe.main, arguments)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
