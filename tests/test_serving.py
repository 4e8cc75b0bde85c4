"""The serving contract: models.config, warmup requests, the checker, and bad requests."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

import kala
from kala import export, serving, tasks
from conftest import run_python


def adding_model():
    import keras

    task = tasks.AddingProblem(10)
    keras.utils.set_random_seed(0)
    return kala.build_model("lstm", 6, **task.model_options)


def checked(base_path):
    process = run_python(["-m", "kala.serving", "check", str(base_path)])
    return process.returncode, process.stdout, process.stderr


def test_exports_of_two_recipes_pass_the_check(tmp_path):
    saved_models = tmp_path / "saved_models"
    for recipe in ("adding_problem", "copy_memory"):
        process = run_python([f"recipes/{recipe}.py", "--smoke", "--export", "--saved-models",
                              str(saved_models), "--results", str(tmp_path / "results")])
        assert process.returncode == 0, process.stderr[-3000:]
    code, out, err = checked(saved_models)
    assert code == 0, out + err[-2000:]
    assert "adding_problem: ok (versions: 1)" in out and "copy_memory: ok (versions: 1)" in out
    assert "models.config: ok" in out


def test_a_version_without_variables_fails_the_check(tmp_path):
    kala.export_model(adding_model(), tmp_path, "adding")
    kala.export_model(adding_model(), tmp_path, "adding")
    shutil.rmtree(tmp_path / "adding" / "2" / "variables")
    code, out, _ = checked(tmp_path)
    assert code == 1
    assert "adding: FAILED (versions: 1, 2)" in out
    assert "version 2: incomplete SavedModel: no variables/variables.index" in out
    assert "version 1" not in out  # The complete version passes.


def test_the_check_finds_stray_entries_dead_staging_and_a_config_out_of_sync(tmp_path):
    kala.export_model(adding_model(), tmp_path, "adding")
    (tmp_path / "adding" / "latest").mkdir()
    (tmp_path / "adding" / f"{export.STAGING_PREFIX}999999999-0000abcd").mkdir()
    shutil.copytree(tmp_path / "adding", tmp_path / "copied")  # A model the config lacks.
    reports, config_problems = serving.check(str(tmp_path))
    problems = {report.name: report.problems for report in reports}
    assert "latest: not an integer version (TF Serving ignores it)" in problems["adding"]
    assert any("999999999" in problem and "died" in problem for problem in problems["adding"])
    assert config_problems == ["models.config does not list model 'copied'"]
    (tmp_path / "models.config").write_text("model_config_list { config { name: ")
    assert "does not parse" in serving.check(str(tmp_path))[1][0]


def test_the_warmup_requests_replay_and_answer_like_the_model(tmp_path):
    model = adding_model()
    inputs = np.random.default_rng(0).uniform(size=(3, 9, 2)).astype(np.float32)
    version = kala.export_model(model, tmp_path, "adding", example_inputs=inputs)
    requests = export.warmup_requests(version)
    assert [tuple(tf.make_ndarray(request.inputs["sequence"]).shape) for request in requests] \
        == [(1, 9, 2), (3, 9, 2)]
    assert {request.model_spec.name for request in requests} == {"adding"}
    loaded = tf.saved_model.load(version)
    for request in requests:
        sent = tf.make_ndarray(request.inputs["sequence"])
        np.testing.assert_allclose(export.replay(loaded, request)["prediction"], model(sent),
                                   atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5), (2, 5, 3), (2, 5, 2, 1)])
def test_a_request_of_the_wrong_rank_or_feature_size_raises_at_the_signature(tmp_path, shape):
    version = kala.export_model(adding_model(), tmp_path, "adding")
    signature = tf.saved_model.load(version).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"is not compatible with expected shape \[\?,\?,2\]"):
        signature(sequence=tf.zeros(shape))


def test_the_checker_takes_bad_arguments_with_one_line_and_exit_2(tmp_path):
    code, out, err = checked(tmp_path / "missing")
    assert code == 2 and "is not a directory" in err and "Traceback" not in err
    process = run_python(["-m", "kala.serving", "inspect"])
    assert process.returncode == 2 and "invalid choice: 'inspect'" in process.stderr
