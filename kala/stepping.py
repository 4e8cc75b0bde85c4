"""A recurrent model run one step at a time, and a language model of characters that writes.

- `Stepper.of(model)`: `model` run one step at a time, the state in the caller's hands, for a
  model that reads its sequence forwards (else None).
- `read(stepper, tokens, lengths)`: the output after each sequence of a padded batch, and the
  state there.
- `write(...)`: characters drawn from the model one at a time, each fed back.
- `CharacterModel(stepper, vocabulary, unknown_id)`: a language model of characters that reads
  texts and writes after prompts. The `serve_text` and `generate` signatures of an export
  (`kala.signatures`) and `kala.text.Writer` run it.
- `looked_up(table, tokens, name, unit, unknown_id)`: the ids of texts' tokens, refusing an
  empty batch or text, and a token outside the vocabulary where there is no unknown id.
- `checked(tensor, *requirements)`: `tensor`, once each `require(...)` holds: the checks that
  refuse a bad request with a message naming the input, what it got and what is valid.
"""

import keras
import tensorflow as tf

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
                                    keras.layers.Dense, keras.layers.Masking,
                                    keras.layers.Normalization, keras.layers.Rescaling)):
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
    step and the new state. Padding (id 0, or an all-zero step, of a model with `mask_padding`)
    leaves the state as it was, as the model does."""

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
            elif isinstance(layer, keras.layers.Masking):  # An all-zero step is padding.
                keep = tf.reduce_any(tf.not_equal(x, layer.mask_value), axis=-1)[:, None]
            elif isinstance(layer, keras.layers.Normalization):
                # As the layer computes it, with its statistics shaped for one step, not for
                # the (batch, time) it was built on.
                mean = tf.reshape(tf.cast(layer.mean, x.dtype), [-1])
                std = tf.sqrt(tf.reshape(tf.cast(layer.variance, x.dtype), [-1]))
                x = (x - mean) / tf.maximum(std, keras.backend.epsilon())
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


def require(condition, message, *received):
    """An op that fails the request unless `condition` holds, with `message` (which names the
    input and what is valid) and then the values `received`."""
    return tf.debugging.Assert(condition, [message, *received], summarize=8)


def checked(tensor, *requirements):
    """`tensor`, computed only after every op of `requirements` has passed."""
    with tf.control_dependencies(requirements):
        return tf.identity(tensor)


def nonempty_batch(tensor, name):
    """The check that a request holds at least one row of `name`."""
    return require(tf.shape(tensor)[0] > 0,
                   f"{name}: the request holds no rows; send at least one")


def finite(tensor, name):
    """The check that a float input holds no NaN or infinity (integers pass)."""
    if not tensor.dtype.is_floating:
        return tf.no_op()
    return require(tf.reduce_all(tf.math.is_finite(tensor)),
                   f"{name}: every value must be a finite number; received NaN or infinity")


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


def looked_up(table, tokens, name, unit, unknown_id):
    """The ids of a batch of texts' tokens (a ragged tensor of words or code points) in `table`,
    -1 outside the vocabulary. Refuses an empty text, and a token outside the vocabulary when
    `unknown_id` is None, before anything reads the ids; `name` is the input, `unit` the token."""
    ids = tf.ragged.map_flat_values(table.lookup, tokens)
    checks = [require(ids.nrows() > 0, f"{name}: the request holds no texts; send at least one"),
              tf.debugging.assert_positive(ids.row_lengths(), message=(
        f"{name}: every text needs at least one {unit}; received an empty one"))]
    if unknown_id is None:
        checks.append(tf.debugging.Assert(tf.reduce_all(ids.flat_values >= 0), [
            f"{name}: a {unit} is outside the vocabulary, and this export has no "
            "unknown id to read it as"]))
    with tf.control_dependencies(checks):
        return ids.with_flat_values(tf.identity(ids.flat_values))


def check_character_model(model, stepper, vocabulary):
    """Raises ValueError unless `model` runs forwards (its `stepper` is not None) and predicts
    the next of `vocabulary`'s characters at every step."""
    output_shape = tuple(model.outputs[0].shape)
    if stepper is None or len(output_shape) != 3 or output_shape[-1] != len(vocabulary):
        raise ValueError(
            "To read and write characters, the model must run forwards and predict the next "
            f"character at every step: an output of shape (None, None, {len(vocabulary)}). "
            f"Received a model whose output has shape {output_shape}.")


class CharacterModel:
    """A language model of characters (`stepper`'s model predicts the next character at every
    step, `vocabulary[id]` being the character of each id) that reads texts and writes after
    prompts. A character outside the vocabulary is read as `unknown_id`, or refused when it is
    None. `max_length`, when given, is the most characters `generate` writes after a prompt. Both
    methods run in a `tf.function`, whose AutoGraph turns their loops into graph loops;
    `generate_inputs` is what `generate` takes there."""

    generate_inputs = [tf.TensorSpec([None], tf.string, name="prompt"),
                       tf.TensorSpec([], tf.int32, name="length"),
                       tf.TensorSpec([], tf.float32, name="temperature"),
                       tf.TensorSpec([], tf.int32, name="seed")]

    def __init__(self, stepper, vocabulary, unknown_id=None, max_length=None):
        self.stepper = stepper
        self.unknown_id = unknown_id
        self.max_length = max_length  # The most characters `generate` writes; None: no bound.
        self.characters = tf.constant(list(vocabulary))
        # The unknown id's character is read as unknown, like every character outside.
        known = [(ord(char), index) for index, char in enumerate(vocabulary)
                 if index != unknown_id]
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant([code for code, _ in known], tf.int32),
            tf.constant([index for _, index in known], tf.int32)), default_value=-1)

    def ids(self, texts, name):
        """Token ids of each text's characters, padded on the right, and each text's length.
        Bytes that are not UTF-8 are read as U+FFFD, which the vocabulary does not hold."""
        ids = looked_up(self.table, tf.strings.unicode_decode(texts, "UTF-8"), name, "character",
                        self.unknown_id)
        tokens = ids.to_tensor()  # Padded with id 0; `lengths` says where each text ends.
        if self.unknown_id is not None:
            tokens = tf.where(tokens >= 0, tokens, tf.constant(self.unknown_id, tokens.dtype))
        return tokens, tf.cast(ids.row_lengths(), tf.int32)

    def next_character(self, texts, name):
        """The characters, most likely first, and their probabilities after each text."""
        tokens, lengths = self.ids(tf.ensure_shape(texts, [None]), name)
        probabilities, _ = read(self.stepper, tokens, lengths)
        order = tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)
        return (tf.gather(self.characters, order),
                tf.gather(probabilities, order, batch_dims=1))

    def generate(self, prompt, length, temperature, seed):
        """What the model writes after each prompt: see `write`. Refuses no prompts or an empty
        one, a `length` below 1 or above `max_length`, and a `temperature` that is not a finite
        number above 0."""
        tokens, lengths = self.ids(tf.ensure_shape(prompt, [None]), "prompt")
        most = self.max_length
        valid = f"between 1 and {most:,} (the maximum of this export)" if most else "1 or more"
        checks = [
            require(length >= 1 if most is None else (length >= 1) & (length <= most),
                    f"length: must be {valid}; received", length),
            require(tf.math.is_finite(temperature) & (temperature > 0),
                    "temperature: must be a finite number above 0; received", temperature)]
        tokens, length, temperature = (checked(value, *checks)
                                       for value in (tokens, length, temperature))
        return write(self.stepper, prompt, tokens, lengths, length, temperature, seed,
                     self.characters)


def forecast(stepper, history, horizon):
    """The next `horizon` values after each series of `history` (a batch, `(batch, time, 1)`),
    forecast one step at a time: `stepper` reads the history, its output is the next value, and
    each value forecast is fed back as the next input. Returns `(batch, horizon)`. The loops are
    `tf.while_loop`s, so that the graph holds them whatever AutoGraph makes of the caller."""
    history = tf.convert_to_tensor(history)

    def read(t, output, states):
        output, states = stepper(history[:, t], states)
        return t + 1, output, states

    _, output, states = tf.while_loop(
        lambda t, output, states: t < tf.shape(history)[1], read,
        (tf.constant(0), tf.zeros_like(history[:, 0]), stepper.zero_states(tf.shape(history)[0])))

    def feed_back(i, output, states, forecasts):
        forecasts = forecasts.write(i, output[:, 0])
        output, states = stepper(output, states)
        return i + 1, output, states, forecasts

    *_, forecasts = tf.while_loop(
        lambda i, output, states, forecasts: i < horizon, feed_back,
        (tf.constant(0), output, states, tf.TensorArray(history.dtype, size=horizon)))
    return tf.transpose(forecasts.stack())
