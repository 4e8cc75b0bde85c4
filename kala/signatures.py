"""What an export answers: the signatures TF Serving serves, and example requests for each.

Every export has `serving_default`; `kala.export_model` adds the others where they apply.

- `serving_default`: a batch of whole sequences in, the model's output out. The input's rank and
  feature size are fixed, so a malformed request fails at the signature with a message that names
  the shape expected; a sequence of no steps is refused.
- `step`: one step of a batch of sequences, and the recurrent state, in; the output at that step
  and the new state out. This is how to serve a model step by step: a `stateful=True` model would
  share one state among all clients (REFERENCE.md §2). The state is one input per recurrent layer
  and state, `<layer>_h` (and `<layer>_c`, an LSTM's cell state), each `(batch, units)`; start
  from zeros and feed back what the last step returned. After the last step of a sequence the
  output is `serving_default`'s. A model that also reads its sequence backwards (bidirectional)
  has no `step`.
- `serve_text`: a token model given its vocabulary and labels answers a batch of texts with the
  predicted label (`word`), its `probability`, and how many of the text's words were
  `unknown_words`, so a client needs no vocabulary. A text is lower-cased (when the vocabulary is),
  the punctuation marks that are words of the vocabulary are split off, and the rest is split at
  whitespace. Texts are answered one after another.
- `serve_text` and `generate` of a language model of characters (`text_unit="characters"`): the
  distribution of the character after each text, most likely first; and what the model writes
  after each prompt, one character at a time (`write`).

Token models: an id outside the vocabulary, or a word outside it, is read as the unknown id when
the export is given one, and is refused otherwise. (Without a check, a CPU would refuse the id
deep in the model and a GPU would silently read zeros.)
"""

import re

import keras
import numpy as np
import tensorflow as tf

SERVING_DEFAULT = "serving_default"
STEP = "step"
SERVE_TEXT = "serve_text"
GENERATE = "generate"
TEXT_INPUT = "text"
# How `serve_text` and `generate` cut a text into tokens.
TEXT_UNITS = ("words", "characters")
# The names of a recurrent layer's states, in the order its cell keeps them.
_STATE_NAMES = {1: ("h",), 2: ("h", "c")}


def _steppable_layers(model):
    """The layers after the input, if `model` is a chain that can run one step at a time (an
    embedding, forward recurrent layers, and layers that act on each step alone); else None."""
    layers = model.layers[1:]
    previous = model.layers[0]
    for layer in layers:
        inputs = layer.input
        if isinstance(inputs, (list, tuple)):  # A layer after a masking embedding: [x, mask].
            inputs = inputs[0]
        if inputs is not previous.output:  # Not a chain.
            return None
        if isinstance(layer, keras.layers.RNN):
            if layer.go_backwards or layer.stateful:
                return None
        elif not isinstance(layer, (keras.layers.Embedding, keras.layers.Dropout,
                                    keras.layers.Dense)):
            return None  # Bidirectional, convolutions, attention: they read other steps.
        previous = layer
    return layers if any(isinstance(layer, keras.layers.RNN) for layer in layers) else None


def _state_names(layer):
    sizes = layer.cell.state_size
    sizes = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
    names = _STATE_NAMES.get(len(sizes), tuple(f"state{index}" for index in range(len(sizes))))
    return [(f"{layer.name}_{name}", int(size)) for name, size in zip(names, sizes)]


class Stepper:
    """`model` run one step at a time, for every model that runs forwards (else `None` from
    `Stepper.of`): `stepper(inputs, states)` takes one step of a batch of sequences and the
    state, a list in the order of `states` (`(name, size)` pairs), and returns the output at that
    step and the new state. Padding (id 0 of a model with `mask_padding`) leaves the state as it
    was, as the model does."""

    def __init__(self, model, layers):
        self.model = model
        self.layers = layers
        self.states = [state for layer in layers if isinstance(layer, keras.layers.RNN)
                       for state in _state_names(layer)]

    @classmethod
    def of(cls, model):
        layers = _steppable_layers(model)
        return None if layers is None else cls(model, layers)

    def zero_states(self, batch_size):
        return [tf.zeros((batch_size, size)) for _, size in self.states]

    def __call__(self, inputs, states, known=None):
        """`known`, if given, is applied to token ids before the embedding reads them."""
        x, keep, new_states, remaining = inputs, None, [], iter(states)
        for layer in self.layers:
            if isinstance(layer, keras.layers.Embedding):
                if known is not None:
                    x = known(x)
                if layer.mask_zero:  # Padding leaves the state as it was, as in the model.
                    keep = tf.not_equal(x, 0)[:, None]
                x = tf.identity(layer(x))  # Without the Keras mask: `keep` does its work.
            elif isinstance(layer, keras.layers.RNN):
                previous = [next(remaining) for _ in _state_names(layer)]
                x, new = layer.cell(x, previous, training=False)
                new = list(new) if isinstance(new, (list, tuple)) else [new]
                if keep is not None:
                    new = [tf.where(keep, state, old) for state, old in zip(new, previous)]
                    x = tf.where(keep, x, previous[0])  # A cell's output is its first state.
                new_states += new
            else:
                x = layer(x, training=False)
        return x, new_states


def read(stepper, tokens, lengths):
    """Runs `stepper` over a batch of token sequences padded on the right, each up to its own
    length: returns the output after each sequence's last token, and the state there. (In a
    `tf.function`: AutoGraph turns the loop into a graph loop.)"""
    batch_size = tf.shape(tokens)[0]
    states = stepper.zero_states(batch_size)
    output = tf.zeros((batch_size, stepper.model.outputs[0].shape[-1]))
    for t in tf.range(tf.shape(tokens)[1]):
        new_output, new_states = stepper(tokens[:, t], states)
        reading = (t < lengths)[:, None]  # A sequence that has ended keeps what it had.
        states = [tf.where(reading, new, old) for new, old in zip(new_states, states)]
        output = tf.where(reading, new_output, output)
    return output, states


def write(stepper, prompts, tokens, lengths, length, temperature, seed, characters):
    """What a character model writes after each prompt of a padded batch (`prompts`, and
    `tokens` with their `lengths`): `length` characters, each drawn from the model's
    distribution with its logarithm divided by `temperature`, then fed back. The draws are
    stateless, from `seed`, the prompt and the character's place: the same seed writes the same
    text after a prompt, wherever it sits in the batch, and other prompts draw otherwise."""
    probabilities, states = read(stepper, tokens, lengths)
    streams = tf.stack([tf.fill(tf.shape(prompts), seed), tf.cast(
        tf.strings.to_hash_bucket_fast(prompts, 2**31 - 1), tf.int32)], axis=1)
    written = tf.TensorArray(tf.int32, size=length)
    for i in tf.range(length):
        logits = tf.math.log(probabilities + 1e-12) / temperature
        drawn = tf.map_fn(
            lambda row: tf.random.stateless_categorical(
                row[0][None], 1, seed=tf.random.experimental.stateless_fold_in(row[1], i),
                dtype=tf.int32)[0, 0],
            (logits, streams), fn_output_signature=tf.int32)
        written = written.write(i, drawn)
        probabilities, states = stepper(drawn, states)
    return tf.strings.reduce_join(tf.gather(characters, tf.transpose(written.stack())), axis=1)


class Signatures:
    """The signatures of an export of `model`.

    `functions` maps each signature's name to `(function, input_signature)`, ready for
    `keras.export.ExportArchive.add_endpoint`; `resources` are what the archive must track besides
    the model (the vocabulary's lookup table); `example_requests` and `check` build requests for
    each signature from a batch of sequences and compare the answers of a loaded export with
    the model's.

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
    """

    def __init__(self, model, vocabulary=None, unknown_id=None, labels=None, text_unit="words"):
        self.model = model
        self.input_spec = model.inputs[0]
        self.output_name = model.output_names[0]
        embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
        self.vocab_size = embeddings[0].input_dim if embeddings else None
        self.stepper = Stepper.of(model)
        self._check_arguments(vocabulary, unknown_id, labels, text_unit)
        self.text_unit = text_unit
        self.vocabulary = None if vocabulary is None else list(vocabulary)
        self.unknown_id = None if unknown_id is None else int(unknown_id)
        self.labels = None if labels is None else list(labels)

        spec = self.input_spec
        self.functions = {SERVING_DEFAULT: (
            self._serve, [tf.TensorSpec(spec.shape, spec.dtype, name=spec.name)])}
        self.resources = []
        # (name, size) of each state that `step` takes and returns.
        self.states = self.stepper.states if self.stepper else []
        if self.stepper is not None:
            self.functions[STEP] = (self._step, [
                tf.TensorSpec([spec.shape[0], *spec.shape[2:]], spec.dtype, name=spec.name),
                *(tf.TensorSpec([None, size], tf.float32, name=name)
                  for name, size in self.states)])
        if self.labels is not None:
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(self.vocabulary), tf.range(len(self.vocabulary), dtype=tf.int32)),
                default_value=-1)  # Outside the vocabulary: read as unknown, or refused.
            self.resources.append(self.table)
            self.functions[SERVE_TEXT] = (
                self._serve_text, [tf.TensorSpec([None], tf.string, name=TEXT_INPUT)])
        if text_unit == "characters" and self.vocabulary is not None:
            self._add_character_signatures()

    def _check_arguments(self, vocabulary, unknown_id, labels, text_unit):
        given = [name for name, value in (("vocabulary", vocabulary), ("unknown_id", unknown_id),
                                          ("labels", labels)) if value is not None]
        if given and self.vocab_size is None:
            raise ValueError(
                f"{', '.join(f'`{name}`' for name in given)} need a model that embeds token ids. "
                f"Received a model whose input {self.input_spec.name!r} is "
                f"{self.input_spec.dtype} without an Embedding layer."
            )
        for name, words in (("vocabulary", vocabulary), ("labels", labels)):
            if words is not None and (isinstance(words, str) or not all(
                    isinstance(word, str) for word in words)):
                raise ValueError(f"`{name}` must be a sequence of strings. Received: "
                                 f"{name}={str(words)[:200]}")
        if vocabulary is not None and len(vocabulary) != self.vocab_size:
            raise ValueError(
                f"`vocabulary` must hold one word per id of the model's embedding "
                f"({self.vocab_size}). Received {len(vocabulary)} words."
            )
        if vocabulary is not None and len(set(vocabulary)) != len(vocabulary):
            raise ValueError("`vocabulary` must not hold a word twice.")
        if unknown_id is not None and not (isinstance(unknown_id, (int, np.integer)) and not
                                           isinstance(unknown_id, bool) and
                                           0 <= unknown_id < self.vocab_size):
            raise ValueError(f"`unknown_id` must be an id below {self.vocab_size}. "
                             f"Received: unknown_id={unknown_id!r}")
        if text_unit not in TEXT_UNITS:
            raise ValueError(f"`text_unit` must be one of {', '.join(TEXT_UNITS)}. Received: "
                             f"text_unit={text_unit!r}")
        if text_unit == "characters":
            self._check_character_model(vocabulary, labels)
        if labels is None:
            return
        if vocabulary is None:
            raise ValueError("`labels` name the answers of `serve_text`, which needs the "
                             "`vocabulary` too.")
        if any(re.search(r"\s", word) for word in vocabulary):
            raise ValueError("`vocabulary` words must not hold whitespace: `serve_text` splits "
                             "texts into words at whitespace.")
        output_shape = tuple(self.model.outputs[0].shape)
        if len(output_shape) != 2 or output_shape[1] != len(labels):
            raise ValueError(
                f"`labels` name the classes of a model with one distribution per sequence. "
                f"Received {len(labels)} labels for a model whose output has shape "
                f"{output_shape}."
            )

    # --- The signatures. ---------------------------------------------------------------------

    def _known(self, ids):
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

    def _serve(self, inputs):
        spec = self.input_spec
        # A request of the wrong rank or feature size fails here, with a message naming the
        # expected shape, instead of deep inside the recurrent loop.
        inputs = tf.ensure_shape(inputs, spec.shape)
        # A sequence of no steps has no last state to answer from.
        check = tf.debugging.assert_positive(tf.shape(inputs)[1], message=(
            f"{spec.name}: a sequence needs at least one step; received a request of 0 steps"))
        with tf.control_dependencies([check]):
            inputs = tf.identity(inputs)
        return {self.output_name: self.model(self._known(inputs), training=False)}

    def _step(self, inputs, *states):
        spec = self.input_spec
        inputs = tf.ensure_shape(inputs, [spec.shape[0], *spec.shape[2:]])
        batch_size = tf.shape(inputs)[0]
        states = [tf.ensure_shape(state, [None, size])
                  for state, (_, size) in zip(states, self.states)]
        checks = [tf.debugging.assert_equal(tf.shape(state)[0], batch_size, message=(
            f"{name}: the state needs one row per sequence of the batch ({spec.name} holds a "
            "different number)")) for state, (name, _) in zip(states, self.states)]
        with tf.control_dependencies(checks):  # Before the cells mix rows that do not match.
            states = [tf.identity(state) for state in states]
        output, new_states = self.stepper(inputs, states, known=self._known)
        return {self.output_name: output,
                **{name: state for (name, _), state in zip(self.states, new_states)}}

    def _looked_up(self, tokens, name, unit):
        """The ids of a batch of texts' tokens (a ragged tensor of words or code points), -1
        outside the vocabulary; refuses an empty text, and a token outside the vocabulary when
        there is no unknown id, before anything reads the ids."""
        ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
        checks = [tf.debugging.assert_positive(ids.row_lengths(), message=(
            f"{name}: every text needs at least one {unit}; received an empty one"))]
        if self.unknown_id is None:
            checks.append(tf.debugging.Assert(tf.reduce_all(ids.flat_values >= 0), [
                f"{name}: a {unit} is outside the vocabulary, and this export has no "
                "unknown id to read it as"]))
        with tf.control_dependencies(checks):
            return ids.with_flat_values(tf.identity(ids.flat_values))

    def _serve_text(self, text):
        text = tf.ensure_shape(text, [None])
        if all(word == word.lower() for word in self.vocabulary):
            text = tf.strings.lower(text, encoding="utf-8")
        marks = sorted({word for word in self.vocabulary
                        if len(word) == 1 and not word.isalnum()})
        if marks:
            text = tf.strings.regex_replace(
                text, f"([{''.join(re.escape(mark) for mark in marks)}])", r" \1 ")
        ids = self._looked_up(tf.strings.split(text), TEXT_INPUT, "word")
        unknown_words = tf.reduce_sum(tf.cast(tf.equal(ids, -1), tf.int32), axis=1)
        probabilities = tf.map_fn(
            lambda row: self.model(self._known(row)[None], training=False)[0], ids,
            fn_output_signature=tf.TensorSpec([len(self.labels)], tf.float32))
        return {"word": tf.gather(tf.constant(self.labels), tf.argmax(probabilities, axis=-1)),
                "probability": tf.reduce_max(probabilities, axis=-1),
                "unknown_words": unknown_words}

    # --- A language model of characters. ----------------------------------------------------

    def _check_character_model(self, vocabulary, labels):
        if vocabulary is None:
            return  # Ids only: serving_default and step.
        if labels is not None:
            raise ValueError("A language model of characters answers with characters: give no "
                             "`labels` with text_unit='characters'.")
        if any(len(char) != 1 for char in vocabulary):
            raise ValueError("With text_unit='characters', every word of `vocabulary` must be "
                             "one character.")
        output_shape = tuple(self.model.outputs[0].shape)
        if len(output_shape) != 3 or output_shape[-1] != len(vocabulary) or (
                self.stepper is None):
            raise ValueError(
                "With text_unit='characters', the model must run forwards and predict the next "
                f"character at every step: an output of shape (None, None, {len(vocabulary)}). "
                f"Received a model whose output has shape {output_shape}.")

    def _add_character_signatures(self):
        known = [(ord(char), index) for index, char in enumerate(self.vocabulary)
                 if index != self.unknown_id]
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant([code for code, _ in known], tf.int32),
            tf.constant([index for _, index in known], tf.int32)), default_value=-1)
        self.resources.append(self.table)
        self.characters = tf.constant(self.vocabulary)
        texts = tf.TensorSpec([None], tf.string, name=TEXT_INPUT)
        self.functions[SERVE_TEXT] = (tf.function(self._next_character,
                                                  input_signature=[texts]), None)
        self.functions[GENERATE] = (tf.function(self._generate, input_signature=[
            tf.TensorSpec([None], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="length"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="seed")]), None)

    def _character_ids(self, texts, name):
        """Token ids of each text's characters, padded on the right, and each text's length.
        Bytes that are not UTF-8 are read as U+FFFD, which the vocabulary does not hold."""
        ids = self._looked_up(tf.strings.unicode_decode(texts, "UTF-8"), name, "character")
        return self._known(ids.to_tensor()), tf.cast(ids.row_lengths(), tf.int32)

    def _next_character(self, text):
        """The distribution of the character after each text, most likely first."""
        tokens, lengths = self._character_ids(tf.ensure_shape(text, [None]), TEXT_INPUT)
        probabilities, _ = read(self.stepper, tokens, lengths)
        order = tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)
        return {"characters": tf.gather(self.characters, order),
                "probabilities": tf.gather(probabilities, order, batch_dims=1)}

    def _generate(self, prompt, length, temperature, seed):
        tokens, lengths = self._character_ids(tf.ensure_shape(prompt, [None]), "prompt")
        checks = [tf.debugging.assert_positive(length, message="length: must be 1 or more"),
                  tf.debugging.assert_positive(temperature, message=(
                      "temperature: must be above 0"))]
        with tf.control_dependencies(checks):
            tokens, length, temperature = (tf.identity(tokens), tf.identity(length),
                                           tf.identity(temperature))
        return {"text": write(self.stepper, prompt, tokens, lengths, length, temperature, seed,
                              self.characters)}

    # --- Requests, and answers compared with the model's. ------------------------------------

    def texts(self, ids):
        """The texts of a batch of token ids (what `serve_text` reads): words joined by spaces,
        or characters one after another."""
        separator = "" if self.text_unit == "characters" else " "
        return [separator.join(self.vocabulary[i] for i in row) for row in np.asarray(ids)]

    def zero_states(self, batch_size):
        """The `step` signature's state inputs for a fresh batch: zeros, by name."""
        return {name: np.zeros((batch_size, size), np.float32) for name, size in self.states}

    def example_requests(self, example_inputs):
        """`(signature, inputs)` pairs for every signature: one sequence, then the whole batch."""
        requests = []
        for batch in (example_inputs[:1], example_inputs):
            requests.append((SERVING_DEFAULT, {self.input_spec.name: batch}))
            if STEP in self.functions:
                requests.append((STEP, {self.input_spec.name: batch[:, 0],
                                        **self.zero_states(len(batch))}))
            if SERVE_TEXT in self.functions:
                requests.append((SERVE_TEXT, {TEXT_INPUT: np.array(self.texts(batch),
                                                                   dtype=object)}))
            if GENERATE in self.functions:
                requests.append((GENERATE, {
                    "prompt": np.array(self.texts(batch), dtype=object),
                    "length": np.int32(8), "temperature": np.float32(1.0), "seed": np.int32(0)}))
        return requests

    def check(self, loaded, example_inputs, model, rtol=1e-3, atol=1e-4):
        """Raises ValueError unless every signature of a loaded export answers `example_inputs`
        like `model` (the one exported, or the model it was copied from): `step` run over the
        sequences, `serve_text` on their texts, and `generate` writing as much as asked.

        The tolerance catches wrong weights or wiring, not rounding: on a GPU the Keras model may
        run cuDNN (and TF32 matmuls) while the export runs the generic kernel."""
        name = self.input_spec.name
        expected = keras.ops.convert_to_numpy(model(example_inputs, training=False))
        answers = {SERVING_DEFAULT: loaded.signatures[SERVING_DEFAULT](
            **{name: tf.constant(example_inputs)})[self.output_name].numpy()}
        wanted = {SERVING_DEFAULT: expected}
        if STEP in self.functions:
            states = self.zero_states(len(example_inputs))
            outputs = []
            for t in range(example_inputs.shape[1]):
                answer = loaded.signatures[STEP](**{name: tf.constant(example_inputs[:, t])},
                                                 **{key: tf.constant(value)
                                                    for key, value in states.items()})
                states = {key: answer[key].numpy() for key in states}
                outputs.append(answer[self.output_name].numpy())
            answers[STEP] = outputs[-1] if expected.ndim == 2 else np.stack(outputs, axis=1)
            wanted[STEP] = expected
        texts = tf.constant(self.texts(example_inputs)) if self.vocabulary else None
        if SERVE_TEXT in self.functions and self.text_unit == "words":
            answer = loaded.signatures[SERVE_TEXT](**{TEXT_INPUT: texts})
            answers[SERVE_TEXT], wanted[SERVE_TEXT] = (answer["probability"].numpy(),
                                                       expected.max(axis=-1))
            expected_words = [self.labels[i] for i in expected.argmax(axis=-1)]
            if [word.decode() for word in answer["word"].numpy()] != expected_words:
                raise ValueError(f"{SERVE_TEXT} does not answer the words the model predicts.")
        if SERVE_TEXT in self.functions and self.text_unit == "characters":
            answer = loaded.signatures[SERVE_TEXT](**{TEXT_INPUT: texts})
            answers[SERVE_TEXT] = answer["probabilities"].numpy()
            wanted[SERVE_TEXT] = -np.sort(-expected[:, -1], axis=-1)
        if GENERATE in self.functions:
            written = loaded.signatures[GENERATE](prompt=texts, length=tf.constant(8),
                                                  temperature=tf.constant(1.0),
                                                  seed=tf.constant(0))["text"].numpy()
            if [len(text.decode("utf-8")) for text in written] != [8] * len(example_inputs):
                raise ValueError(f"{GENERATE} does not write as many characters as asked.")
        for signature, answer in answers.items():
            if answer.shape != wanted[signature].shape or not np.allclose(
                    answer, wanted[signature], rtol, atol):
                raise ValueError(f"{signature} does not answer like the Keras model.")
