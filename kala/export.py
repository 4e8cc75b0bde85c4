"""Export for TF Serving: `<base_path>/<model_name>/<version>/`, published whole or not at all.

TF Serving watches the base path and loads any child directory whose name is an integer, as soon
as a poll of the file system finds it (`FileSystemStoragePathSource`, in tensorflow/serving
`tensorflow_serving/sources/storage_path/file_system_storage_path_source.h`).
So an export is written to a non-numeric staging directory beside the versions, loaded back and
checked against the Keras model, and only then renamed to the next integer version. A rename is
atomic: the server sees no version or a complete one. An existing version is never overwritten,
and the staging directory never outlives the export.

What a version answers, `serving_default` and the signatures beside it, is `kala.signatures`:
`export_model` writes each signature that applies to the model, its warmup requests, and checks
each against the Keras model before the version is published.

The exported model is a copy that never uses cuDNN, so a model trained on a GPU serves on a
CPU-only server; `cudnn_ops` reads a SavedModel's graph to prove it.

Each version carries `assets.extra/tf_serving_warmup_requests`, `PredictionLog` records for
every signature that TF Serving replays before it serves the version
(https://www.tensorflow.org/tfx/serving/saved_model_warmup). Every export also rewrites
`<base_path>/models.config`, TF Serving's `model_config_list` with one
entry per model directory, its base path as the Docker command of docs/serving.md mounts it
(`/models`).
A staging directory left by an export that was killed is removed by the next export of that
model; one that an exception stopped (a full disk, a signal that raises) is removed at once.
"""

import contextlib
import os
import re
import shutil
import uuid

import keras
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from kala import checks, models, signatures
from kala.signatures import SERVING_DEFAULT as SIGNATURE

# TF Serving replays these requests when it loads a version, before it serves any (its SavedModel
# warmup: https://www.tensorflow.org/tfx/serving/saved_model_warmup).
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
STAGING_PREFIX = ".staging-"
CONFIG_FILE = "models.config"
# Where the `docker run` of docs/serving.md mounts the base path inside the TF Serving container.
SERVER_BASE_PATH = "/models"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION = re.compile(r"^[0-9]+$")
# What an export writes under a name holding its process id: group 1 is the id.
_STAGING = re.compile(rf"^{re.escape(STAGING_PREFIX)}([0-9]+)-")
_CONFIG_TEMPORARY = re.compile(rf"^{re.escape(CONFIG_FILE)}\.tmp-([0-9]+)$")
# The most characters `generate` writes after a prompt, unless the export says otherwise: on a
# 2-core CPU about 0.1 ms a character, so a request of 8 prompts is answered within a second or
# so, and no request can hold the server for minutes or fill its memory.
MAX_GENERATE_LENGTH = 1000


def versions(model_dir):
    """The integer versions under a model directory, ascending (empty if it does not exist)."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_dir) if is_version(name))


def model_names(base_path):
    """The model directories under a base path that hold at least one version, sorted."""
    if not os.path.isdir(base_path):
        return []
    return sorted(name for name in os.listdir(base_path)
                  if _MODEL_NAME.match(name) and versions(os.path.join(base_path, name)))


def models_config(base_path, server_base_path=SERVER_BASE_PATH):
    """TF Serving's `ModelServerConfig`, in its text format, with one entry per model directory
    under `base_path`, seen by the server under `server_base_path`."""
    config = model_server_config_pb2.ModelServerConfig()
    for name in model_names(base_path):
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = f"{server_base_path}/{name}"
        entry.model_platform = "tensorflow"
    return text_format.MessageToString(config)


@contextlib.contextmanager
def _locked(base_path):
    """Holds an exclusive lock on the base path (where the OS has `fcntl`), so that two exports
    finishing at once write models.config one after the other."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the checker reports a config out of sync.
        yield
        return
    with open(os.path.join(base_path, f".{CONFIG_FILE}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_models_config(base_path):
    """Rewrites `<base_path>/models.config` from the model directories there, atomically (a
    temporary file, then a rename), and returns its path."""
    path = os.path.join(os.fspath(base_path), CONFIG_FILE)
    with _locked(base_path):
        for name in _left_by_dead_exports(base_path, _CONFIG_TEMPORARY):
            os.remove(os.path.join(base_path, name))
        temporary = f"{path}.tmp-{os.getpid()}"  # As _CONFIG_TEMPORARY matches.
        try:
            with open(temporary, "w") as file:
                file.write(models_config(base_path))
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    return path


def is_version(name):
    """Whether TF Serving takes a directory of this name for a version: an integer."""
    return bool(_VERSION.match(name))


def is_staging(name):
    """Whether a directory of this name is an export's staging directory."""
    return bool(_STAGING.match(name))


def stale_staging(model_dir):
    """The staging directories under a model directory whose export no longer runs (killed)."""
    return _left_by_dead_exports(model_dir, _STAGING)


def _left_by_dead_exports(directory, pattern):
    """The names in `directory` that `pattern` matches, whose process (group 1) no longer runs."""
    return sorted(name for name in os.listdir(directory)
                  if (match := pattern.match(name)) and not _is_running(int(match.group(1))))


def _remove_stale_staging(model_dir):
    for name in stale_staging(model_dir):
        shutil.rmtree(os.path.join(model_dir, name), ignore_errors=True)


def _is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Another user's process.
        return True
    return True


def _saved_model(export_dir):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    return saved_model


def signature_names(export_dir):
    """The names of a SavedModel's signatures, `serving_default` first, read from its
    `saved_model.pb` without loading it."""
    names = {name for meta_graph in _saved_model(export_dir).meta_graphs
             for name in meta_graph.signature_def if not name.startswith("__")}
    return sorted(names, key=lambda name: (name != SIGNATURE, name))


def cudnn_ops(export_dir):
    """The op types in a SavedModel's graphs and functions that need cuDNN (a GPU)."""
    found = set()
    for meta_graph in _saved_model(export_dir).meta_graphs:
        nodes = list(meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            nodes.extend(function.node_def)
        found.update(node.op for node in nodes if node.op.startswith("Cudnn"))
    return sorted(found)


def _example_inputs(model, batch_size=3, length=7):
    """A small batch that fits the model's input: random values, or random token ids (never 0,
    which may be padding) below the embedding's vocabulary size."""
    spec = model.inputs[0]
    shape = [batch_size, length, *spec.shape[2:]]
    rng = np.random.default_rng(0)
    if "int" in str(spec.dtype):
        embeddings = [layer for layer in model.layers
                      if isinstance(layer, keras.layers.Embedding)]
        vocab_size = embeddings[0].input_dim if embeddings else 2
        return rng.integers(1, max(vocab_size, 2), size=shape).astype(spec.dtype)
    return rng.normal(size=shape).astype(spec.dtype)


def _write_saved_model(model, answering, directory):
    """Writes a SavedModel of `model` with the signatures `answering` (from
    `kala.signatures.applicable`), tracking the lookup tables they read."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    # Each table once: both signatures of a character model read the same one.
    resources = {id(resource): resource for signature in answering
                 for resource in signature.resources}
    for resource in resources.values():
        archive.track(resource)
    for signature in answering:
        archive.add_endpoint(signature.name, signature.function)
    archive.write_out(directory, verbose=False)


def _example_requests(answering, example_inputs):
    """`(signature, inputs)` pairs for every signature: one sequence, then the whole batch."""
    return [(signature.name, signature.example_request(batch))
            for batch in (example_inputs[:1], example_inputs) for signature in answering]


def _write_warmup(directory, model_name, requests):
    """Writes `(signature, inputs)` pairs as TF Serving's warmup records."""
    path = os.path.join(directory, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def warmup_requests(export_dir):
    """The `PredictRequest`s of a version's warmup file, in order."""
    requests = []
    for record in tf.data.TFRecordDataset(os.path.join(export_dir, WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        requests.append(log.predict_log.request)
    return requests


def replay(loaded, request):
    """Runs one `PredictRequest` against a loaded SavedModel, as TF Serving would, and returns
    the outputs as NumPy arrays."""
    signature = loaded.signatures[request.model_spec.signature_name or SIGNATURE]
    inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
    return {name: value.numpy() for name, value in signature(**inputs).items()}


def _validate(directory, answering, model, example_inputs):
    """Loads an export back and checks that it has no cuDNN ops, that each signature of
    `answering` answers like `model` (the one exported, or the model it was copied from), and
    that the warmup requests replay."""
    found = cudnn_ops(directory)
    if found:
        raise ValueError(
            f"The export in {directory} uses cuDNN ops {found}; it would not serve on a CPU."
        )
    loaded = tf.saved_model.load(directory)
    missing = {signature.name for signature in answering} - set(loaded.signatures)
    if missing:
        raise ValueError(f"The export in {directory} lacks the signatures {sorted(missing)}.")
    expected = keras.ops.convert_to_numpy(model(example_inputs, training=False))
    try:
        for signature in answering:
            signature.check(loaded, example_inputs, expected)
    except ValueError as error:
        raise ValueError(f"The export in {directory}: {error}") from None
    for request in warmup_requests(directory):
        replay(loaded, request)


def check_model_name(model_name):
    """Raises ValueError unless `model_name` can name a model directory for TF Serving."""
    if not isinstance(model_name, str) or not _MODEL_NAME.match(model_name):
        raise ValueError(
            "`model_name` must start with a letter or digit and hold only letters, digits, "
            f"'_', '.' and '-'. Received: model_name={model_name!r}"
        )


def export_model(model, base_path, model_name, example_inputs=None, *, vocabulary=None,
                 unknown_id=None, labels=None, text_unit="words",
                 max_generate_length=MAX_GENERATE_LENGTH, forecast=None):
    """Publishes `model` as the next version of `model_name` under `base_path`.

    The version serves `serving_default`, a `step` signature for a model that runs forwards one
    step at a time, `serve_text` for a token model given `vocabulary` and `labels`, and
    `serve_text` and `generate` for a language model of characters: see `kala.signatures`. A
    task's `serving_options` fill the keyword arguments.

    Args:
        model: a Keras model with one named input and one output, e.g. from `build_model`.
        base_path: TF Serving's model base path (kala's `saved_models/`).
        model_name: the name clients ask for; letters, digits, `_`, `.` and `-`.
        example_inputs: a batch to check the export with and warm the server up with; by
            default 3 random sequences of 7 steps.
        vocabulary: for a token model, the word of each id.
        unknown_id: for a token model, the id that other ids and words are read as; by default
            they are refused.
        labels: with `vocabulary`, the name of each class of a model with one distribution per
            sequence; adds `serve_text`.
        text_unit: `"characters"` for a language model of characters, whose `vocabulary` is
            single characters: adds `serve_text` (the next character) and `generate`.
        max_generate_length: the most characters `generate` writes after a prompt (a longer
            `length` is refused with a message); `MAX_GENERATE_LENGTH` by default.
        forecast: `(window, horizon)` for a one-step forecaster of a series: adds `forecast`,
            the next `horizon` values after a history, forecast one step at a time.

    Returns:
        The path of the new version directory, `<base_path>/<model_name>/<version>`.

    Raises:
        ValueError: a bad `model_name`, `example_inputs`, `vocabulary`, `unknown_id` or
            `labels`, or an export that fails its check (nothing is published).
        OSError: the base path cannot be written.
    """
    check_model_name(model_name)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "`export_model` serves models with one input and one output. Received a model with "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs."
        )
    if example_inputs is None:
        example_inputs = _example_inputs(model)
    spec = model.inputs[0]
    if np.issubdtype(np.asarray(example_inputs).dtype, np.floating) and not np.all(
            np.isfinite(example_inputs)):
        raise ValueError("`example_inputs` must hold finite numbers: the signatures refuse NaN "
                         "and infinity. Received inputs that hold some.")
    if not tf.TensorSpec(spec.shape, spec.dtype).is_compatible_with(tf.constant(example_inputs)):
        raise ValueError(
            f"`example_inputs` must fit the model's input {spec.name!r} of shape "
            f"{tuple(spec.shape)} and dtype {spec.dtype}. Received: shape "
            f"{np.shape(example_inputs)}, dtype {np.asarray(example_inputs).dtype}"
        )

    max_generate_length = checks.integer("max_generate_length", max_generate_length)
    served = signatures.ServedModel(models.servable_copy(model), vocabulary, unknown_id, labels,
                                    text_unit, max_generate_length, forecast)
    answering = signatures.applicable(served)
    model_dir = os.path.join(os.fspath(base_path), model_name)
    os.makedirs(model_dir, exist_ok=True)
    _remove_stale_staging(model_dir)
    example_inputs = np.asarray(example_inputs)
    staging = os.path.join(model_dir, f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        try:
            _write_saved_model(served.model, answering, staging)
            _write_warmup(staging, model_name, _example_requests(answering, example_inputs))
        except (OSError, tf.errors.OpError) as error:  # A full disk, a size limit.
            size = sum(np.asarray(weight).nbytes for weight in model.get_weights())
            reason = (error.strerror if isinstance(error, OSError) and error.strerror
                      else str(getattr(error, "message", error)).splitlines()[0])
            raise OSError(f"cannot write the export to {staging} (the weights alone are "
                          f"{size:,} bytes): {reason.rsplit('; ', 1)[-1]}") from None
        # The export answers like the trained model; one trained in mixed precision, like its
        # float32 copy (bfloat16 maths differs from float32 in the third digit).
        reference = model if model.dtype_policy.name == "float32" else served.model
        _validate(staging, answering, reference, example_inputs)
        while True:
            version = max(versions(model_dir), default=0) + 1
            target = os.path.join(model_dir, str(version))
            try:
                # rename() fails on an existing non-empty directory, so a version that another
                # exporter published meanwhile is never replaced; then try the next number.
                os.rename(staging, target)
                break
            except OSError:
                if not os.path.isdir(target):
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_models_config(base_path)
    return target
