"""Real sequences: the forecasting task and its baselines, recordings padded and bucketed by length,
the `forecast` signature, and the two lessons' smoke runs, exported and checked."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import kala
import kala.datasets
import kala.series
from conftest import ROOT, recipe_module, run_main

# A series with a period of 8 and a slow rise: enough to tell the baselines apart.
STEPS = np.arange(400)
SERIES = 100 + 10 * np.sin(2 * np.pi * STEPS / 8) + 0.05 * STEPS


def forecast_task(horizon=3, **options):
    return kala.series.Forecast(SERIES, train_end=300, scored=(300, 400), window=16,
                                horizon=horizon, periods=(8,), **options)


def test_forecast_windows_come_from_the_right_parts_of_the_series():
    task = forecast_task()
    inputs, targets = task.scored_windows()
    assert inputs.shape == (98, 16, 1) and targets.shape == (98, 3)
    # The first scored forecast starts at step 300 and reads the 16 steps before it.
    np.testing.assert_allclose(inputs[0, :, 0], SERIES[284:300], rtol=1e-6)
    np.testing.assert_allclose(targets[-1], SERIES[397:400], rtol=1e-6)
    # Training targets never reach the scored part; the statistics are the training part's.
    for index in range(5):
        train_inputs, train_targets = task.batch(0, kala.tasks.TRAIN_STREAM, index, 64)
        assert np.isin(train_targets, SERIES[:300].astype(np.float32)).all()
    assert task.mean == pytest.approx(SERIES[:300].mean())


def test_baselines_are_what_their_names_say():
    task = forecast_task()
    baselines = task.baselines()
    targets = task.scored_windows()[1]
    last = SERIES[task.origins - 1]
    np.testing.assert_allclose(baselines["last value"],
                               np.abs(targets - last[:, None]).mean(axis=0), rtol=1e-5)
    # One period earlier: on a periodic series with a slow rise, off by the rise over 8 steps.
    np.testing.assert_allclose(baselines["seasonal naive (8)"], 0.05 * 8, rtol=1e-3)
    # A linear map of the window can forecast a sine plus a line almost exactly.
    assert baselines["linear"].max() < 0.05 < baselines["last value"].min()
    assert task.baseline == pytest.approx(baselines["last value"].mean())


def test_forecast_errors_and_bad_arguments():
    task = forecast_task()
    assert task.errors(task.scored_windows()[1]).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"one row of 3 values per scored window"):
        task.errors(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="must lie after the training part"):
        kala.series.Forecast(SERIES, train_end=300, scored=(250, 400), window=16)
    with pytest.raises(ValueError, match="1-D and finite"):
        kala.series.Forecast(np.array([1.0, np.nan] * 50), train_end=60, scored=(60, 100),
                             window=4)


def test_a_one_step_model_fed_its_own_forecasts_and_its_export(tmp_path, seeded):
    task = forecast_task(horizon=1)
    model = kala.build_model("gru", 8, input_scale=task.statistics,
                             output_scale=task.statistics, **task.model_options)
    kala.train(model, task, steps=30, batch_size=16, learning_rate=1e-2, eval_every=30)
    history = task.scored_windows()[0][:4]
    stepper = kala.stepping.Stepper.of(model)
    rolled = tf.function(lambda h: kala.stepping.forecast(stepper, h, 5))(history).numpy()
    # As the whole model reading the window and every value forecast so far.
    sequence, wanted = history, []
    for _ in range(5):
        value = np.asarray(model(sequence))
        wanted.append(value[:, 0])
        sequence = np.concatenate([sequence, value[:, None]], axis=1)
    np.testing.assert_allclose(rolled, np.stack(wanted, axis=1), rtol=1e-4)
    # The export's `forecast` takes any history at least the window long, refuses a shorter one.
    version = kala.export_model(model, tmp_path, "f", forecast=(16, 5), **task.serving_options)
    loaded = tf.saved_model.load(version)
    longer = np.c_[np.zeros((4, 9), np.float32), history[..., 0]]
    answer = loaded.signatures["forecast"](history=tf.constant(longer))["forecast"].numpy()
    np.testing.assert_allclose(answer, rolled, rtol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="needs at least 16 values"):
        loaded.signatures["forecast"](history=tf.constant(history[:, 1:, 0]))
    with pytest.raises(ValueError, match="reads one value per step"):
        kala.export_model(kala.build_model("gru", 4, input_features=2), tmp_path, "g",
                          forecast=(4, 2))


def recordings(lengths, features=2, seed=0):
    rng = np.random.default_rng(seed)
    sequences = [rng.normal(size=(length, features)) for length in lengths]
    return sequences, [int(length > 10) for length in lengths]


def test_recording_batches_are_bucketed_padded_and_resume_where_they_were():
    lengths = list(range(3, 21)) * 3
    task = kala.tasks.Recordings("toy", recordings(lengths), recordings([5, 15, 9]),
                                 labels=["short", "long"], bucket_boundaries=(8, 14))
    batches = list(task.train_dataset(6, seed=3).take(12).as_numpy_iterator())
    for inputs, targets in batches:
        # Each batch's lengths lie in one bucket, and the batch is padded to its longest only.
        real = (inputs != 0).any(axis=-1)
        sizes = real.sum(axis=1)
        assert len({int(np.digitize(size, [8, 14])) for size in sizes}) == 1
        assert sizes.max() == inputs.shape[1]
        assert all(real[row, :size].all() for row, size in enumerate(sizes))  # Right-padded.
        assert targets.tolist() == [int(size > 10) for size in sizes]
    # An epoch draws every sequence once; a resumed stream picks up at its batch.
    later = list(task.train_dataset(6, seed=3, start=7).take(5).as_numpy_iterator())
    for (inputs, targets), (again, targets_again) in zip(batches[7:], later):
        np.testing.assert_array_equal(inputs, again)
    with pytest.raises(ValueError, match="trains on one device"):
        task.train_dataset(6, workers=2)
    with pytest.raises(ValueError, match="test sequence 1 has 3 features"):
        kala.tasks.Recordings("toy", recordings([4, 5]), ([np.zeros((3, 2)), np.zeros((3, 3))],
                                                          [0, 1]), labels=["a", "b"])


def test_a_masked_classifier_answers_each_recording_as_alone(seeded):
    task = kala.tasks.Recordings("toy", recordings([4, 12, 7, 15] * 4), recordings([3, 11, 6]),
                                 labels=["short", "long"])
    model = kala.build_model("lstm", 6, mask_padding=True, input_scale=task.statistics,
                             implementation="essay", **task.model_options)
    kala.train(model, task, steps=10, batch_size=8, eval_every=10)
    padded = np.asarray(model(task.serving_options["example_inputs"]))
    for row, sequence in enumerate(task.test_sequences):
        np.testing.assert_allclose(padded[row], np.asarray(model(sequence[None]))[0],
                                   rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.mark.parametrize("recipe, signatures", [
    ("classify_sequences", ["serving_default", "step"]),
    ("forecast", ["serving_default", "forecast", "step"]),
    ("pixel_digits", ["serving_default", "step"]),
])
def test_smoke_run_trains_tabulates_and_exports_a_version_the_checker_passes(
        capsys, tmp_path, data_dir, recipe, signatures):
    code, out, err = run_main(capsys, recipe_module(recipe).main, [
        "--smoke", "--export", "--results", str(tmp_path / "runs"), "--data-dir", data_dir,
        "--saved-models", str(tmp_path / "models")])
    assert code == 0, err
    assert {"classify_sequences": "| the most common speaker, always |",
            "forecast": "| seasonal naive (336) |",
            "pixel_digits": "| 0.982 (Arjovsky, Shah & Bengio 2016) | 0.880 |"}[recipe] in out
    summary = json.loads((tmp_path / "runs" / recipe / "summary.json").read_text())
    assert summary["scored_on"] == "test" and summary["runs"]
    check = subprocess.run([sys.executable, "-m", "kala.serving", "check",
                            str(tmp_path / "models")], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"signatures of version 1: {', '.join(signatures)}" in check.stdout
    if recipe == "classify_sequences":
        # TF Serving's REST API takes no rows of different lengths: a client pads each
        # utterance on the right with all-zero frames to the longest of its request, and each
        # answer is that of the utterance alone.
        served = tf.saved_model.load(str(tmp_path / "models" / recipe / "1"))
        answer = served.signatures["serving_default"]
        rng = np.random.default_rng(0)
        utterances = [rng.normal(size=(length, 12)).astype(np.float32) for length in (7, 29, 12)]
        padded = answer(frames=tf.constant(kala.tasks.pad(utterances)))["probabilities"]
        for row, utterance in enumerate(utterances):
            alone = answer(frames=tf.constant(utterance[None]))["probabilities"]
            np.testing.assert_allclose(padded[row], alone[0], rtol=1e-5, atol=1e-6)


def test_a_recipe_without_its_data_package_says_how_to_install_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pmdarima", None)  # As if it were not installed.
    monkeypatch.delitem(sys.modules, "pmdarima.datasets", raising=False)
    code, _, err = run_main(capsys, recipe_module("forecast").main, [
        "--smoke", "--data-dir", str(tmp_path), "--results", str(tmp_path / "runs")])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "pip install -e '.[data]'" in err


def test_the_784_pixel_digits_offline_say_a_download_is_needed(capsys, tmp_path):
    if kala.datasets.sources.reachable("storage.googleapis.com"):
        pytest.skip("this machine is online: --tfds mnist would download MNIST")
    code, _, err = run_main(capsys, recipe_module("pixel_digits").main, [
        "--smoke", "--tfds", "mnist", "--data-dir", str(tmp_path), "--results",
        str(tmp_path / "runs")])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'mnist' is not downloaded yet, and this machine cannot reach" in err
