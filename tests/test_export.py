"""Export for TF Serving: version layout, no half-written versions, CPU-only graphs, fresh loads."""

import importlib
import os

import numpy as np
import pytest
import tensorflow as tf

import kala
from kala import export, signatures, tasks
from conftest import serve_in_fresh_process



def adding_model(seed=0, cell="lstm"):
    import keras

    task = tasks.AddingProblem(10)
    keras.utils.set_random_seed(seed)
    return kala.build_model(cell, 6, **task.model_options)


def copy_model(seed=0):
    import keras

    task = tasks.CopyMemory(5)
    keras.utils.set_random_seed(seed)
    return kala.build_model("gru", 6, bidirectional=True, **task.model_options)


def test_versions_are_numbered_and_nothing_is_left_behind(tmp_path):
    first = kala.export_model(adding_model(), tmp_path, "adding")
    second = kala.export_model(adding_model(), tmp_path, "adding")
    assert first == os.path.join(tmp_path, "adding", "1")
    assert second == os.path.join(tmp_path, "adding", "2")
    assert sorted(os.listdir(tmp_path / "adding")) == ["1", "2"]  # No staging directory left.
    for version in (first, second):
        assert os.path.isfile(os.path.join(version, "saved_model.pb"))
        assert os.path.isdir(os.path.join(version, "variables"))


def test_an_existing_version_is_never_overwritten(tmp_path):
    taken = tmp_path / "adding" / "4"
    taken.mkdir(parents=True)
    (taken / "keep.txt").write_text("published earlier")
    (tmp_path / "adding" / "notes").mkdir()  # Non-numeric names are not versions.
    published = kala.export_model(adding_model(), tmp_path, "adding")
    assert published == os.path.join(tmp_path, "adding", "5")
    assert (taken / "keep.txt").read_text() == "published earlier"
    assert export.versions(tmp_path / "adding") == [4, 5]


def test_a_failed_export_publishes_nothing(tmp_path):
    wrong_features = np.zeros((2, 5, 3), np.float32)  # The model reads 2 features a step.
    with pytest.raises(ValueError, match=r"shape \(None, None, 2\).*Received: shape \(2, 5, 3\)"):
        kala.export_model(adding_model(), tmp_path, "adding", example_inputs=wrong_features)
    assert not os.path.exists(tmp_path / "adding")
    # The signatures refuse NaN, so the example inputs that check them must not hold any.
    nan_inputs = np.full((2, 5, 2), np.nan, np.float32)
    with pytest.raises(ValueError, match="`example_inputs` must hold finite numbers"):
        kala.export_model(adding_model(), tmp_path, "adding", example_inputs=nan_inputs)
    assert not os.path.exists(tmp_path / "adding")


@pytest.mark.parametrize("name", ["", "a/b", "../up", ".hidden", "with space"])
def test_bad_model_names_raise_value_error(tmp_path, name):
    with pytest.raises(ValueError, match="model_name"):
        kala.export_model(adding_model(), tmp_path, name)


@pytest.mark.parametrize("make_model, inputs", [
    (adding_model, np.random.default_rng(1).uniform(size=(3, 23, 2)).astype(np.float32)),
    (copy_model, np.random.default_rng(1).integers(0, 10, size=(3, 17)).astype(np.int32)),
])
def test_serving_default_answers_like_keras_in_a_fresh_process(tmp_path, make_model, inputs):
    model = make_model()
    version = kala.export_model(model, tmp_path, "model")
    input_names, outputs = serve_in_fresh_process(version, inputs, tmp_path)
    assert input_names == [model.inputs[0].name]
    (output_name,) = model.output_names
    np.testing.assert_allclose(outputs[output_name], model(inputs), rtol=1e-5, atol=1e-6)


def test_the_signature_has_named_typed_inputs_with_dynamic_batch_and_time(tmp_path):
    version = kala.export_model(copy_model(), tmp_path, "copy")
    signature = tf.saved_model.load(version).signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.name == "symbols" and spec.dtype == tf.int32
    assert spec.shape.as_list() == [None, None]
    assert list(signature.structured_outputs) == ["probabilities"]


@pytest.mark.parametrize("cell, bidirectional", [("lstm", True), ("gru", False)])
def test_a_model_traced_as_on_a_gpu_still_exports_servable_copy(tmp_path, monkeypatch, cell,
                                                                 bidirectional):
    # Keras picks cuDNN at trace time when it sees a GPU. Make it believe it sees one: tracing
    # only builds the graph, so this works on a CPU (eager calls fall back to the generic loop).
    keras_tf_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")
    monkeypatch.setattr(keras_tf_rnn, "_is_gpu_available", lambda: True)
    task = tasks.CopyMemory(5)
    model = kala.build_model(cell, 4, num_layers=2, bidirectional=bidirectional,
                             **task.model_options)

    # The control: the model as trained would carry cuDNN ops into its SavedModel.
    as_trained = str(tmp_path / "as_trained")
    export._write_saved_model(model, signatures.applicable(signatures.ServedModel(model)),
                              as_trained)
    assert export.cudnn_ops(as_trained) == ["CudnnRNNV3"]
    # The export is made from a copy that never uses cuDNN.
    version = kala.export_model(model, tmp_path, "model")
    assert export.cudnn_ops(version) == []
    # Every signature of it, the step included where there is one.
    assert export.signature_names(version) == (
        ["serving_default"] if bidirectional else ["serving_default", "step"])


def test_exports_contain_no_cudnn_ops_and_the_check_finds_them(tmp_path):
    version = kala.export_model(adding_model(cell="gru"), tmp_path, "gru")
    assert export.cudnn_ops(version) == []

    # A graph that calls cuDNN can be traced and saved on a CPU; only running it needs a GPU.
    class CudnnModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([5, 2, 3], tf.float32)])
        def serve(self, x):
            h = tf.zeros([1, 2, 4])
            output, *_ = tf.raw_ops.CudnnRNNV3(
                input=x, input_h=h, input_c=h, params=tf.zeros([200]),
                sequence_lengths=tf.fill([2], 5), rnn_mode="lstm")
            return output

    cudnn_dir = str(tmp_path / "cudnn")
    tf.saved_model.save(CudnnModule(), cudnn_dir)
    assert export.cudnn_ops(cudnn_dir) == ["CudnnRNNV3"]


# --- models.config and stale staging directories. ----------------------------------------------

def parsed_config(base_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(os.path.join(base_path, "models.config")) as file:
        return text_format.Parse(file.read(), model_server_config_pb2.ModelServerConfig())


def test_every_export_keeps_models_config_listing_exactly_the_model_dirs(tmp_path):
    kala.export_model(adding_model(), tmp_path, "adding")
    (tmp_path / f"models.config.tmp-{dead_pid()}").write_text("half a config")
    (tmp_path / "empty_model").mkdir()  # No version: not a model TF Serving could load.
    kala.export_model(copy_model(), tmp_path, "copy")
    config = parsed_config(tmp_path)
    entries = [(entry.name, entry.base_path, entry.model_platform)
               for entry in config.model_config_list.config]
    assert entries == [("adding", "/models/adding", "tensorflow"),
                       ("copy", "/models/copy", "tensorflow")]
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]


def dead_pid():
    """The id of a process that has ended."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_next_export_removes_the_staging_dir_of_a_killed_one(tmp_path):
    model_dir = tmp_path / "adding"
    model_dir.mkdir()
    stale = model_dir / f"{export.STAGING_PREFIX}{dead_pid()}-0000abcd"
    live = model_dir / f"{export.STAGING_PREFIX}{os.getppid()}-0000abcd"  # Our parent runs.
    for directory in (stale, live):
        (directory / "variables").mkdir(parents=True)
    kala.export_model(adding_model(), tmp_path, "adding")
    assert sorted(os.listdir(model_dir)) == sorted(["1", live.name])
