"""The serving contract: models.config, warmup requests, the checker, and bad requests."""

import os
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


def test_exports_of_three_recipes_pass_the_check(tmp_path):
    saved_models = tmp_path / "saved_models"
    # Continuous inputs; symbols with an answer per step; words (the long-gap task).
    for recipe in ("adding_problem", "copy_memory", "lstm_walkthrough"):
        process = run_python([f"recipes/{recipe}.py", "--smoke", "--export", "--saved-models",
                              str(saved_models), "--results", str(tmp_path / "results")])
        assert process.returncode == 0, process.stderr[-3000:]
    code, out, err = checked(saved_models)
    assert code == 0, out + err[-2000:]
    assert out.splitlines() == [
        "adding_problem: ok (versions: 1; signatures of version 1: serving_default, step)",
        "copy_memory: ok (versions: 1; signatures of version 1: serving_default, step)",
        "lstm_walkthrough: ok (versions: 1; signatures of version 1: serving_default, "
        "serve_text, step)",
        "models.config: ok"]


def test_a_version_without_variables_fails_the_check(tmp_path):
    kala.export_model(adding_model(), tmp_path, "adding")
    kala.export_model(adding_model(), tmp_path, "adding")
    shutil.rmtree(tmp_path / "adding" / "2" / "variables")
    code, out, _ = checked(tmp_path)
    assert code == 1
    assert ("adding: FAILED (versions: 1, 2; signatures of version 2: serving_default, step)"
            in out)
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
    # Each signature, with one sequence and then the whole batch; a step starts from zeros.
    assert [(request.model_spec.signature_name,
             tuple(tf.make_ndarray(request.inputs["sequence"]).shape)) for request in requests] \
        == [("serving_default", (1, 9, 2)), ("step", (1, 2)),
            ("serving_default", (3, 9, 2)), ("step", (3, 2))]
    assert {request.model_spec.name for request in requests} == {"adding"}
    loaded = tf.saved_model.load(version)
    for request in requests:
        sent = tf.make_ndarray(request.inputs["sequence"])
        if request.model_spec.signature_name == "step":
            assert not tf.make_ndarray(request.inputs["lstm_1_h"]).any()
            sent = sent[:, None]  # From zero states, one step answers as a sequence of one.
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


# Exports one model again and again, saying when each version is published.
EXPORT_FOREVER = """
import sys
import keras
import kala
task = kala.tasks.AddingProblem(10)
keras.utils.set_random_seed(0)
model = kala.build_model("lstm", 6, **task.model_options)
while True:
    print(kala.export_model(model, sys.argv[1], "adding"), flush=True)
"""


def _wait_for(path_inside_staging, model_dir, child, timeout=120):
    """Waits until a staging directory under `model_dir` holds `path_inside_staging` ("" for the
    directory itself); returns False if the child exits or the time runs out first."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        names = os.listdir(model_dir) if os.path.isdir(model_dir) else []
        if any(export.is_staging(name) and os.path.exists(
                os.path.join(model_dir, name, path_inside_staging)) for name in names):
            return True
        time.sleep(0.002)
    return False


def test_killing_exports_at_any_moment_never_leaves_a_partial_version(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    rng = random.Random(0)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    model_dir = tmp_path / "adding"
    # Each kill is aimed at a moment of an export, from its first file to its last checks (the
    # warmup file is written just before the export is loaded back and the version renamed);
    # the last one at a random time, which may fall between two exports.
    moments = ["", "variables", os.path.join("variables", "variables.index"), "saved_model.pb",
               export.WARMUP_FILE, export.WARMUP_FILE, None]
    killed_mid_export = 0
    for moment in moments:
        child = subprocess.Popen([sys.executable, "-c", EXPORT_FOREVER, str(tmp_path)], cwd=ROOT,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
        child.stdout.readline()  # One version published: exports are running.
        if moment is None:
            time.sleep(rng.uniform(0.0, 3.0))
        else:
            assert _wait_for(moment, model_dir, child), f"no export reached {moment!r}"
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        killed_mid_export += any(export.is_staging(name) for name in os.listdir(model_dir))
        for name in os.listdir(model_dir):
            if export.is_version(name):
                version = model_dir / name
                assert (version / "saved_model.pb").is_file(), name
                assert (version / "variables" / "variables.index").is_file(), name
                assert (version / export.WARMUP_FILE).is_file(), name
            else:
                assert export.is_staging(name), name  # Only a dead export's staging dir.
    # The aimed kills did land inside exports (a staging dir left), not only between them.
    assert killed_mid_export >= 4, killed_mid_export
    kala.export_model(adding_model(), tmp_path, "adding")
    assert all(export.is_version(name) for name in os.listdir(tmp_path / "adding"))
    reports, config_problems = serving.check(str(tmp_path))
    assert [report.problems for report in reports] == [[]] and config_problems == []


def test_bad_requests_get_a_clear_error_or_a_documented_answer(tmp_path):
    version = kala.export_model(adding_model(), tmp_path, "adding")
    signature = tf.saved_model.load(version).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="expected to be a float tensor but is a int32 tensor"):
        signature(sequence=tf.zeros((2, 5, 2), tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="sequence: a sequence needs at least one step"):
        signature(sequence=tf.zeros((2, 0, 2)))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="sequence: the request holds no rows; send at least one"):
        signature(sequence=tf.zeros((0, 5, 2)))
    # NaN (or infinity) anywhere in the batch is refused: it would come out as NaN.
    for bad in (np.nan, np.inf):
        values = np.zeros((2, 5, 2), np.float32)
        values[0, 2, 0] = bad
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="sequence: every value must be a finite number"):
            signature(sequence=tf.constant(values))
    assert np.isfinite(signature(sequence=tf.zeros((2, 5, 2)))["prediction"].numpy()).all()
