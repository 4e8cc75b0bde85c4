"""What an export answers: the signatures TF Serving serves, and example requests for each.

Every export has `serving_default`; `kala.export_model` adds the others where they apply.

- `serving_default`: a batch of whole sequences in, the model's output out. The input's rank and
  feature size are fixed, so a malformed request fails at the signature with a message that names
  the shape expected; a sequence of no steps is refused.
- `step`: one step of a batch of sequences, and the recurrent state, in; the output at that step
  and the new state out. This is how to serve a model step by step: a `stateful=True` model keeps
  its state in its own variables, one state that the requests of all clients would share. The
  state is one input per recurrent layer and state, `<layer>_h` (and `<layer>_c`, an LSTM's cell
  state), each `(batch, units)`; start from zeros and feed back what the last step returned.
  After the last step of a sequence the output is `serving_default`'s. A model that also reads
  its sequence backwards (bidirectional) has no `step`.
- `serve_text`: a token model given its vocabulary and labels answers a batch of texts with the
  predicted label (`word`), its `probability`, and how many of the text's words were
  `unknown_words`, so a client needs no vocabulary. A text is lower-cased (when the vocabulary is),
  the punctuation marks that are words of the vocabulary are split off, and the rest is split at
  whitespace. Texts are answered one after another.
- `forecast`: a one-step forecaster of a series exported with `forecast=(window, horizon)`:
  `history`, a batch of series of at least `window` values each, in; the next `horizon`
  values of each out, forecast from its last `window` values one step at a time, each fed
  back as the next input, inside the graph (`kala.stepping.forecast`).
- `serve_text` and `generate` of a language model of characters (`text_unit="characters"`): the
  distribution of the character after each text, most likely first; and what the model writes
  after each prompt, one character at a time (`kala.stepping.write`).

Token models: an id outside the vocabulary, or a word outside it, is read as the unknown id when
the export is given one, and is refused otherwise. (Without a check, a CPU would refuse the id
deep in the model and a GPU would silently read zeros.)

Each kind of signature is a class here (`KINDS`): when it `applies` to a `ServedModel`, its
`function` (a `tf.function` with the signature's inputs), the `resources` an archive must track
besides the model, its `example_request` for a batch of sequences, and its `check` against the
Keras model. `applicable(served)` is the signatures of one export, in the order of its warmup
requests. The model runs one step at a time through `kala.stepping`.
"""

import re

import keras
import numpy as np
import tensorflow as tf

from kala import checks, stepping

SERVING_DEFAULT = "serving_default"
STEP = "step"
SERVE_TEXT = "serve_text"
GENERATE = "generate"
FORECAST = "forecast"
TEXT_INPUT = "text"
# How `serve_text` and `generate` cut a text into tokens.
TEXT_UNITS = ("words", "characters")


class ServedModel:
    """What the signatures of an export of `model` share: the model, its input and output, its
    vocabulary, and how ids outside the vocabulary are read.

    Args:
        model: a Keras model with one input and one output.
        vocabulary: for token models, the word of each id.
        unknown_id: for token models, the id that other ids and words are read as; None refuses
            them.
        labels: with a vocabulary, for a model that gives one distribution per sequence, the
            name of each class: adds `serve_text`.
        text_unit: `"words"` (texts are split at whitespace), or `"characters"` for a language
            model of characters: with a vocabulary of single characters, adds `serve_text`
            (the next character's distribution) and `generate`.
        max_generate_length: the most characters `generate` writes after a prompt; None sets
            no bound (a request could then hold a server for hours).
        forecast: `(window, horizon)` for a one-step forecaster of a series (one value in and
            one out at each step): adds `forecast`.

    Raises:
        ValueError: an argument that does not fit the model, naming what was received.
    """

    def __init__(self, model, vocabulary=None, unknown_id=None, labels=None, text_unit="words",
                 max_generate_length=None, forecast=None):
        self.model = model
        self.input_spec = model.inputs[0]
        self.output_name = model.output_names[0]
        embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
        self.vocab_size = embeddings[0].input_dim if embeddings else None
        self.stepper = stepping.Stepper.of(model)
        _check_arguments(self, vocabulary, unknown_id, labels, text_unit)
        self.text_unit = text_unit
        self.vocabulary = None if vocabulary is None else list(vocabulary)
        self.unknown_id = None if unknown_id is None else int(unknown_id)
        self.labels = None if labels is None else list(labels)
        self.forecast = None if forecast is None else _check_forecast(self, forecast)
        # The language model of characters that `serve_text` and `generate` both run.
        self.character_model = (
            stepping.CharacterModel(self.stepper, self.vocabulary, self.unknown_id,
                                    max_generate_length)
            if text_unit == "characters" and self.vocabulary is not None else None)

    def known(self, ids):
        """Token ids with those outside the vocabulary read as the unknown id, or refused."""
        if self.vocab_size is None:
            return ids
        inside = (ids >= 0) & (ids < self.vocab_size)
        if self.unknown_id is not None:
            return tf.where(inside, ids, tf.constant(self.unknown_id, ids.dtype))
        check = tf.debugging.Assert(tf.reduce_all(inside), [
            f"{self.input_spec.name}: ids must be in [0, {self.vocab_size}), the vocabulary of "
            "the model; received an id outside it"])
        with tf.control_dependencies([check]):
            return tf.identity(ids)

    def texts(self, ids):
        """The texts of a batch of token ids (what `serve_text` reads): words joined by spaces,
        or characters one after another."""
        separator = "" if self.text_unit == "characters" else " "
        return [separator.join(self.vocabulary[i] for i in row) for row in np.asarray(ids)]


def _check_arguments(served, vocabulary, unknown_id, labels, text_unit):
    """Raises ValueError unless the serving options fit `served`'s model."""
    given = [name for name, value in (("vocabulary", vocabulary), ("unknown_id", unknown_id),
                                      ("labels", labels)) if value is not None]
    if given and served.vocab_size is None:
        raise ValueError(
            f"{', '.join(f'`{name}`' for name in given)} need a model that embeds token ids. "
            f"Received a model whose input {served.input_spec.name!r} is "
            f"{served.input_spec.dtype} without an Embedding layer."
        )
    for name, words in (("vocabulary", vocabulary), ("labels", labels)):
        if words is not None and (isinstance(words, str) or not all(
                isinstance(word, str) for word in words)):
            raise ValueError(f"`{name}` must be a sequence of strings. Received: "
                             f"{name}={str(words)[:200]}")
    if vocabulary is not None and len(vocabulary) != served.vocab_size:
        raise ValueError(
            f"`vocabulary` must hold one word per id of the model's embedding "
            f"({served.vocab_size}). Received {len(vocabulary)} words."
        )
    if vocabulary is not None and len(set(vocabulary)) != len(vocabulary):
        raise ValueError("`vocabulary` must not hold a word twice.")
    if unknown_id is not None and not (isinstance(unknown_id, (int, np.integer)) and not
                                       isinstance(unknown_id, bool) and
                                       0 <= unknown_id < served.vocab_size):
        raise ValueError(f"`unknown_id` must be an id below {served.vocab_size}. "
                         f"Received: unknown_id={unknown_id!r}")
    checks.one_of("text_unit", text_unit, TEXT_UNITS)
    if text_unit == "characters":
        _check_character_model(served, vocabulary, labels)
    if labels is None:
        return
    if vocabulary is None:
        raise ValueError("`labels` name the answers of `serve_text`, which needs the "
                         "`vocabulary` too.")
    if any(re.search(r"\s", word) for word in vocabulary):
        raise ValueError("`vocabulary` words must not hold whitespace: `serve_text` splits "
                         "texts into words at whitespace.")
    output_shape = tuple(served.model.outputs[0].shape)
    if len(output_shape) != 2 or output_shape[1] != len(labels):
        raise ValueError(
            f"`labels` name the classes of a model with one distribution per sequence. "
            f"Received {len(labels)} labels for a model whose output has shape "
            f"{output_shape}."
        )


def _check_forecast(served, forecast):
    """`(window, horizon)` as ints, for a model that can forecast one step at a time."""
    try:
        window, horizon = forecast
    except (TypeError, ValueError):
        raise ValueError(f"`forecast` is a pair `(window, horizon)`. Received: {forecast!r}") \
            from None
    window, horizon = checks.integer("window", window), checks.integer("horizon", horizon)
    if (served.stepper is None or tuple(served.input_spec.shape[1:]) != (None, 1)
            or tuple(served.model.outputs[0].shape) != (None, 1)):
        raise ValueError(
            "`forecast` needs a model that reads one value per step, forwards, and forecasts "
            f"the next one. Received a model of input shape {tuple(served.input_spec.shape)} "
            f"and output shape {tuple(served.model.outputs[0].shape)}")
    return window, horizon


def _check_character_model(served, vocabulary, labels):
    """Raises ValueError unless `served`'s model is a language model of `vocabulary`'s
    characters; without a vocabulary, it serves ids only (`serving_default` and `step`)."""
    if vocabulary is None:
        return
    if labels is not None:
        raise ValueError("A language model of characters answers with characters: give no "
                         "`labels` with text_unit='characters'.")
    if any(len(char) != 1 for char in vocabulary):
        raise ValueError("With text_unit='characters', every word of `vocabulary` must be "
                         "one character.")
    stepping.check_character_model(served.model, served.stepper, vocabulary)


def _compare(signature, answer, wanted, rtol=1e-3, atol=1e-4):
    """Raises ValueError unless a signature's answer is the Keras model's, in shape and value.

    The tolerance catches wrong weights or wiring, not rounding: on a GPU the Keras model may
    run cuDNN (and TF32 matmuls) while the export runs the generic kernel."""
    if answer.shape != wanted.shape or not np.allclose(answer, wanted, rtol, atol):
        raise ValueError(f"{signature} does not answer like the Keras model.")


def _constants(request):
    return {name: tf.constant(value) for name, value in request.items()}


class ServingDefault:
    """`serving_default`: a batch of whole sequences in, the model's output out."""

    name = SERVING_DEFAULT
    resources = ()

    @staticmethod
    def applies(served):
        return True

    def __init__(self, served):
        self.served = served
        spec = served.input_spec
        self.function = tf.function(self.answer, autograph=False, input_signature=[
            tf.TensorSpec(spec.shape, spec.dtype, name=spec.name)])

    def answer(self, inputs):
        spec = self.served.input_spec
        # A request of the wrong rank or feature size fails here, with a message naming the
        # expected shape, instead of deep inside the recurrent loop.
        inputs = tf.ensure_shape(inputs, spec.shape)
        # A sequence of no steps has no last state to answer from; NaN would come out as NaN.
        inputs = stepping.checked(
            inputs, stepping.nonempty_batch(inputs, spec.name),
            stepping.require(tf.shape(inputs)[1] > 0, f"{spec.name}: a sequence needs at least "
                             "one step; received a request of 0 steps"),
            stepping.finite(inputs, spec.name))
        return {self.served.output_name: self.served.model(self.served.known(inputs),
                                                           training=False)}

    def example_request(self, batch):
        return {self.served.input_spec.name: batch}

    def check(self, loaded, example_inputs, expected):
        """Raises ValueError unless the loaded export answers `example_inputs` with
        `expected`, the Keras model's output."""
        answer = loaded.signatures[self.name](**_constants(self.example_request(example_inputs)))
        _compare(self.name, answer[self.served.output_name].numpy(), expected)


class Step:
    """`step`: one step of a batch of sequences and the state in; the output at that step and
    the new state out. For a model that runs forwards one step at a time."""

    name = STEP
    resources = ()

    @staticmethod
    def applies(served):
        return served.stepper is not None

    def __init__(self, served):
        self.served = served
        # (name, size) of each state that `step` takes and returns.
        self.states = served.stepper.states
        spec = served.input_spec
        self.function = tf.function(self.answer, autograph=False, input_signature=[
            tf.TensorSpec([spec.shape[0], *spec.shape[2:]], spec.dtype, name=spec.name),
            *(tf.TensorSpec([None, size], tf.float32, name=name) for name, size in self.states)])

    def answer(self, inputs, *states):
        spec = self.served.input_spec
        inputs = tf.ensure_shape(inputs, [spec.shape[0], *spec.shape[2:]])
        batch_size = tf.shape(inputs)[0]
        states = [tf.ensure_shape(state, [None, size])
                  for state, (_, size) in zip(states, self.states)]
        same_rows = [tf.debugging.assert_equal(tf.shape(state)[0], batch_size, message=(
            f"{name}: the state needs one row per sequence of the batch ({spec.name} holds a "
            "different number)")) for state, (name, _) in zip(states, self.states)]
        same_rows += [stepping.nonempty_batch(inputs, spec.name),
                      stepping.finite(inputs, spec.name),
                      *(stepping.finite(state, name)
                        for state, (name, _) in zip(states, self.states))]
        # Before the cells mix rows that do not match.
        states = [stepping.checked(state, *same_rows) for state in states]
        output, new_states = self.served.stepper(inputs, states, known=self.served.known)
        return {self.served.output_name: output,
                **{name: state for (name, _), state in zip(self.states, new_states)}}

    def zero_states(self, batch_size):
        """The state inputs for a fresh batch: zeros, by name."""
        return {name: np.zeros((batch_size, size), np.float32) for name, size in self.states}

    def example_request(self, batch):
        """The first step of each sequence, from zero states."""
        return {self.served.input_spec.name: batch[:, 0], **self.zero_states(len(batch))}

    def check(self, loaded, example_inputs, expected):
        """Raises ValueError unless `step`, run over the sequences of `example_inputs`, answers
        like the Keras model: at the last step, or at every step for a model of one output per
        step."""
        name = self.served.input_spec.name
        states, outputs = self.zero_states(len(example_inputs)), []
        for t in range(example_inputs.shape[1]):
            answer = loaded.signatures[self.name](**_constants(
                {name: example_inputs[:, t], **states}))
            states = {key: answer[key].numpy() for key in states}
            outputs.append(answer[self.served.output_name].numpy())
        _compare(self.name, outputs[-1] if expected.ndim == 2 else np.stack(outputs, axis=1),
                 expected)


class TextLabel:
    """`serve_text` of a token model given its vocabulary and labels: texts in; the predicted
    label (`word`), its `probability` and the count of `unknown_words` out."""

    name = SERVE_TEXT

    @staticmethod
    def applies(served):
        return served.labels is not None

    def __init__(self, served):
        self.served = served
        vocabulary = served.vocabulary
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocabulary), tf.range(len(vocabulary), dtype=tf.int32)),
            default_value=-1)  # Outside the vocabulary: read as unknown, or refused.
        self.resources = (self.table,)
        self.lower = all(word == word.lower() for word in vocabulary)
        # Punctuation marks that are words of the vocabulary are split off the words around them.
        self.marks = sorted({word for word in vocabulary if len(word) == 1 and not word.isalnum()})
        self.function = tf.function(self.answer, autograph=False, input_signature=[
            tf.TensorSpec([None], tf.string, name=TEXT_INPUT)])

    def answer(self, text):
        served = self.served
        text = tf.ensure_shape(text, [None])
        if self.lower:
            text = tf.strings.lower(text, encoding="utf-8")
        if self.marks:
            text = tf.strings.regex_replace(
                text, f"([{''.join(re.escape(mark) for mark in self.marks)}])", r" \1 ")
        ids = stepping.looked_up(self.table, tf.strings.split(text), TEXT_INPUT, "word",
                                 served.unknown_id)
        unknown_words = tf.reduce_sum(tf.cast(tf.equal(ids, -1), tf.int32), axis=1)
        probabilities = tf.map_fn(  # One text after another: each has its own length.
            lambda row: served.model(served.known(row)[None], training=False)[0], ids,
            fn_output_signature=tf.TensorSpec([len(served.labels)], tf.float32))
        return {"word": tf.gather(tf.constant(served.labels), tf.argmax(probabilities, axis=-1)),
                "probability": tf.reduce_max(probabilities, axis=-1),
                "unknown_words": unknown_words}

    def example_request(self, batch):
        """The texts of the sequences' words."""
        return {TEXT_INPUT: np.array(self.served.texts(batch), dtype=object)}

    def check(self, loaded, example_inputs, expected):
        """Raises ValueError unless `serve_text`, asked the texts of `example_inputs`, answers
        the label the Keras model predicts, with its probability."""
        answer = loaded.signatures[self.name](**_constants(self.example_request(example_inputs)))
        expected_words = [self.served.labels[i] for i in expected.argmax(axis=-1)]
        if [word.decode() for word in answer["word"].numpy()] != expected_words:
            raise ValueError(f"{SERVE_TEXT} does not answer the words the model predicts.")
        _compare(self.name, answer["probability"].numpy(), expected.max(axis=-1))


class NextCharacter:
    """`serve_text` of a language model of characters: texts in; the `characters`, most likely
    first, and their `probabilities` of coming next out."""

    name = SERVE_TEXT

    @staticmethod
    def applies(served):
        return served.character_model is not None

    def __init__(self, served):
        self.served = served
        self.resources = (served.character_model.table,)
        # With AutoGraph: the loop over each text's characters becomes a graph loop.
        self.function = tf.function(self.answer, input_signature=[
            tf.TensorSpec([None], tf.string, name=TEXT_INPUT)])

    def answer(self, text):
        characters, probabilities = self.served.character_model.next_character(text, TEXT_INPUT)
        return {"characters": characters, "probabilities": probabilities}

    def example_request(self, batch):
        """The texts of the sequences' characters."""
        return {TEXT_INPUT: np.array(self.served.texts(batch), dtype=object)}

    def check(self, loaded, example_inputs, expected):
        """Raises ValueError unless the distribution after each text of `example_inputs` is the
        Keras model's at the sequence's last step, sorted."""
        answer = loaded.signatures[self.name](**_constants(self.example_request(example_inputs)))
        _compare(self.name, answer["probabilities"].numpy(), -np.sort(-expected[:, -1], axis=-1))


class Generate:
    """`generate` of a language model of characters: prompts, a `length`, a `temperature` and a
    `seed` in; the `text` the model writes after each prompt out."""

    name = GENERATE

    @staticmethod
    def applies(served):
        return served.character_model is not None

    def __init__(self, served):
        self.served = served
        self.resources = (served.character_model.table,)
        # With AutoGraph: the loops over the prompts' and the written characters become graph
        # loops.
        self.function = tf.function(self.answer,
                                    input_signature=stepping.CharacterModel.generate_inputs)

    def answer(self, prompt, length, temperature, seed):
        return {"text": self.served.character_model.generate(prompt, length, temperature, seed)}

    def example_request(self, batch):
        """8 characters after the texts of the sequences, at temperature 1, from seed 0."""
        return {"prompt": np.array(self.served.texts(batch), dtype=object),
                "length": np.int32(8), "temperature": np.float32(1.0), "seed": np.int32(0)}

    def check(self, loaded, example_inputs, expected):
        """Raises ValueError unless `generate` writes as many characters as asked after each
        text of `example_inputs` (what it writes is drawn, so `expected` cannot say)."""
        request = self.example_request(example_inputs)
        written = loaded.signatures[self.name](**_constants(request))["text"].numpy()
        asked = [int(request["length"])] * len(example_inputs)
        if [len(text.decode("utf-8")) for text in written] != asked:
            raise ValueError(f"{GENERATE} does not write as many characters as asked.")


class Forecast:
    """`forecast`: a batch of series (`history`, at least `window` values each) in; the next
    `horizon` values of each (`forecast`) out."""

    name = FORECAST
    resources = ()
    input_name = "history"

    @staticmethod
    def applies(served):
        return served.forecast is not None

    def __init__(self, served):
        self.served = served
        self.window, self.horizon = served.forecast
        self.function = tf.function(self.answer, input_signature=[
            tf.TensorSpec([None, None], tf.float32, name=self.input_name)])

    def answer(self, history):
        history = stepping.checked(
            history, stepping.nonempty_batch(history, self.input_name),
            stepping.finite(history, self.input_name),
            stepping.require(tf.shape(history)[1] >= self.window,
                             f"{self.input_name}: each series needs at least {self.window} "
                             "values (the window the model reads); received",
                             tf.shape(history)[1]))
        recent = history[:, -self.window:, None]
        return {FORECAST: stepping.forecast(self.served.stepper, recent, self.horizon)}

    def example_request(self, batch):
        """The window of each example sequence, with one value more before it: a history
        longer than the window."""
        values = batch[:, :, 0]
        return {self.input_name: np.concatenate([values[:, :1], values], axis=1)}

    def check(self, loaded, example_inputs, expected):
        """Raises ValueError unless `forecast` answers as the Keras model does when it reads the
        window and then, for each further value, the window and every value forecast so far."""
        request = self.example_request(example_inputs)
        answer = loaded.signatures[self.name](**_constants(request))[FORECAST].numpy()
        sequence, wanted = request[self.input_name][:, -self.window:, None], []
        for _ in range(self.horizon):
            value = np.asarray(self.served.model(sequence, training=False))
            wanted.append(value[:, 0])
            sequence = np.concatenate([sequence, value[:, None, :]], axis=1)
        _compare(self.name, answer, np.stack(wanted, axis=1))


# Every kind of signature, in the order of an export's warmup requests.
KINDS = (ServingDefault, Step, TextLabel, NextCharacter, Generate, Forecast)


def applicable(served):
    """The signatures of an export of `served` (a `ServedModel`): those of `KINDS` that apply."""
    return [kind(served) for kind in KINDS if kind.applies(served)]
