"""Ask a trained model your own question.

    python -m kala.ask runs/long_gap/runs/lstm-gap50-lr0.003-seed0/model.keras \\
        "I grew up in France. We visited Italy. I speak fluent"
    python -m kala.ask saved_models/char_language_model/1 "def main("
    python -m kala.ask saved_models/adding_problem/1 "0.5,1 0.2,0 0.9,1 0.4,0"

PATH is a `model.keras` that a recipe saved (with the `task.json` written beside it, which holds
the vocabulary and labels of a token model) or an exported version directory. The model answers
as its serving signatures do, the same functions whether it was exported or not:

- a classifier of words (the long-gap task): the label and its probability. The text is read as
  `serve_text` reads it: lower-cased, full stops split off, unknown words counted;
- a language model of characters: the most likely next characters, and what it writes on;
- a model of numbers (the adding problem): its output for one sequence, given inline (steps
  separated by spaces or `;`, the features of a step by commas) or as a CSV file of one step
  per line. For two features of which the second marks values with 1 (the adding problem), the
  sum of the marked values is printed beside it.

`save(model, path, **serving_options)` writes a `.keras` file and its `task.json`; `load(path)`
gives the signatures of either kind of PATH. Bad input ends with one line and exit code 2.
"""

import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from kala import quiet, signatures

TASK_FILE = "task.json"
OPTIONS = ("vocabulary", "unknown_id", "labels", "text_unit")


def save(model, path, **serving_options):
    """Saves `model` to the `.keras` file `path` and, beside it, `task.json` with the serving
    options that `kala.ask` needs for a token model (vocabulary, unknown id, labels, text unit;
    others, such as example inputs, are left out). Each file is written under a temporary name,
    then renamed; a write that fails leaves no temporary file and raises OSError."""
    if not str(path).endswith(".keras"):
        raise ValueError(f"save: path must end in .keras, got {path!r}")
    directory = os.path.dirname(os.fspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    options = {name: _plain(value) for name, value in serving_options.items()
               if name in OPTIONS and value is not None}
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary + ".json", "w") as file:
            json.dump(options, file)
        os.replace(temporary + ".json", os.path.join(directory, TASK_FILE))
        model.save(temporary + ".keras")
        os.replace(temporary + ".keras", path)
    except OSError as error:  # A full disk or a size limit: say what did not fit.
        size = sum(np.asarray(weight).nbytes for weight in model.get_weights())
        raise OSError(error.errno, f"{error.strerror or error}; the model's weights alone are "
                      f"{size:,} bytes") from None
    finally:
        for leftover in (temporary + ".json", temporary + ".keras"):
            if os.path.exists(leftover):
                os.remove(leftover)


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def load(path):
    """The serving signatures of a `.keras` file (with its `task.json`, if any) or an exported
    version directory, by name: functions of keyword tensors that return a dict of tensors.

    Raises:
        ValueError: `path` is neither, or cannot be read.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path} is a directory without saved_model.pb; expected an exported "
                             "version directory (such as saved_models/long_gap/1) or a .keras file")
        try:
            loaded = tf.saved_model.load(path)
        except (OSError, tf.errors.OpError) as error:
            raise ValueError(f"{path}: cannot load the SavedModel ({error})") from None
        return dict(loaded.signatures), loaded
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: expected a .keras file or an exported version directory")
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist")
    try:
        model = keras.models.load_model(path)
    except Exception as error:  # Keras raises many kinds for a damaged or foreign file.
        raise ValueError(f"{path}: cannot load the Keras model ({error})") from None
    options = {}
    task_file = os.path.join(os.path.dirname(path), TASK_FILE)
    if os.path.exists(task_file):
        with open(task_file) as file:
            options = json.load(file)
    served = signatures.ServedModel(model, **options)
    return {kind.name: _by_keyword(kind.function) for kind in signatures.applicable(served)}, model


def _by_keyword(function):
    """A `tf.function` with an input signature, called with its inputs by name, as a loaded
    signature is."""
    names = [spec.name for spec in function.input_signature]

    def call(**inputs):
        return function(*[inputs[name] for name in names])

    call.input_signature = function.input_signature
    return call


def _input_specs(signature):
    """A signature's inputs by name."""
    if hasattr(signature, "input_signature"):
        return {spec.name: spec for spec in signature.input_signature}
    return dict(signature.structured_input_signature[1])


def answer(signatures_by_name, question):
    """The lines that answer `question` (text, or numbers, or the path of a CSV file of numbers).

    Raises:
        ValueError: the question does not fit the model.
    """
    text = signatures_by_name.get(signatures.SERVE_TEXT)
    if text is not None:
        reply = text(text=tf.constant([question]))
        if "word" in reply:
            unknown = int(reply["unknown_words"][0])
            return [f"{reply['word'][0].numpy().decode()} (probability "
                    f"{float(reply['probability'][0]):.3f}"
                    + (f"; {unknown} unknown word{'s' * (unknown != 1)})" if unknown else ")")]
        characters = [c.decode("utf-8") for c in reply["characters"][0].numpy()[:5]]
        probabilities = reply["probabilities"][0].numpy()[:5]
        lines = ["next character: " + ", ".join(f"{c!r} {p:.2f}"
                                                for c, p in zip(characters, probabilities))]
        generate = signatures_by_name.get(signatures.GENERATE)
        if generate is not None:
            written = generate(prompt=tf.constant([question]), length=tf.constant(60),
                               temperature=tf.constant(0.5), seed=tf.constant(0))["text"]
            lines.append(f"writes on (temperature 0.5): {question}"
                         f"{written[0].numpy().decode('utf-8')}")
        return lines
    default = signatures_by_name[signatures.SERVING_DEFAULT]
    (name, spec), = _input_specs(default).items()
    if spec.dtype.is_integer:
        raise ValueError("this token model was saved without its vocabulary (no task.json "
                         "beside it); export it, or save it with kala.ask.save and its task's "
                         "serving_options")
    sequence = numbers(question, spec.shape[-1])
    output = np.asarray(next(iter(default(**{name: tf.constant(sequence[None])}).values())))[0]
    lines = [f"output: {', '.join(f'{value:.4f}' for value in np.ravel(output))}"]
    if sequence.shape[1] == 2 and set(np.unique(sequence[:, 1])) <= {0.0, 1.0}:
        marked = sequence[sequence[:, 1] == 1, 0].sum()
        lines.append(f"(the sum of the values marked 1: {marked:.4f})")
    return lines


def numbers(question, features):
    """One sequence of `features` numbers a step, from inline text or a CSV file's path."""
    if os.path.isfile(question):
        with open(question) as file:
            question = file.read()
    steps = [step for step in question.replace(";", "\n").split() if step]
    try:
        rows = [[float(value) for value in step.split(",") if value] for step in steps]
    except ValueError:
        raise ValueError(f"expected numbers, steps separated by spaces or ';' and the {features} "
                         f"features of a step by commas; got {question[:60]!r}") from None
    wrong = [step for step, row in zip(steps, rows) if len(row) != features]
    if not rows or wrong:
        raise ValueError(f"expected {features} comma-separated numbers at every step, got "
                         f"{wrong[0] if wrong else 'no steps'!r}")
    return np.array(rows, dtype=np.float32)


def main(argv=None):
    quiet.for_this_process()
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return
    if len(arguments) != 2:
        _fail(f"expected PATH and a question, got {len(arguments)} argument(s); see --help")
    path, question = arguments
    try:
        signatures_by_name, _ = load(path)
        lines = answer(signatures_by_name, question)
    except (ValueError, tf.errors.InvalidArgumentError) as error:
        message = getattr(error, "message", None) or str(error)
        _fail(message.strip().splitlines()[0])
    print("\n".join(lines))


def _fail(message):
    print(f"kala.ask: error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
