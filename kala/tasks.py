"""Sequence tasks: where the relevant information sits far from where it is needed.

Each task is a generator of `(inputs, targets)` batches plus the rules to score them: the loss to
train on, a metric with a success criterion, and the score of a trivial model that remembers
nothing (the baseline to beat).

Batches are pure functions of `(seed, stream, index)`: batch 7 of seed 0 is the same array in every
run (and on every machine with the same NumPy: NumPy does not promise its random streams across
versions). Training draws fresh sequences forever (online, as in the papers), the test
split is a fixed stream, and a resumed run picks up exactly the batches it would have seen.

This module imports only `kala.checks` from kala.
"""

import abc
import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from kala import checks

TRAIN_STREAM = 0
TEST_STREAM = 1
LENGTH_STREAM = 2  # The test split's sequence lengths, for tasks whose lengths vary.
# Training batches made ahead, in a thread of tf.data's, while the model trains on the current
# one: batch making then overlaps the compute instead of adding to it.
PREFETCH = 2


@dataclasses.dataclass(frozen=True)
class StopRule:
    """Hochreiter & Schmidhuber's (1997) stopping rule, which reads the training sequences as
    they are trained on (each judged by the model just before the update it is part of).

    Training may stop once at most `wrong` of the `window` most recent training sequences were
    processed wrongly (the task's metric: 1 for a wrong sequence, 0 for a right one) and, when
    `error` is given, their mean training error (`Task.sequence_errors`) is below it. Then the
    test split decides: the task is solved when its test metric meets `Task.is_solved` too.
    """

    window: int = 2000
    wrong: int = 0
    error: float | None = None

    def holds(self, wrong, errors=None):
        """Whether the rule holds for the wrong flags (and errors) of the most recent sequences,
        oldest first: a boolean tensor (so the Trainer reads it in its graph after every step).
        Fewer than `window` sequences never hold."""
        wrong = tf.cast(wrong, tf.float32)[-self.window:]
        holds = tf.logical_and(tf.shape(wrong)[0] >= self.window,
                               tf.reduce_sum(wrong) <= self.wrong)
        if self.error is not None:
            errors = tf.cast(errors, tf.float32)[-self.window:]
            holds = tf.logical_and(holds, tf.reduce_mean(errors) < self.error)
        return holds

    def __str__(self):
        error = "" if self.error is None else f", mean training error below {self.error:g}"
        return (f"at most {self.wrong:,} wrong of the last {self.window:,} training "
                f"sequences{error}")


class Task(abc.ABC):
    """A sequence task as a tf.data pipeline, with its loss, metric, criterion and baseline.

    Subclasses set the class attributes and implement `make_batch`, `loss` and `metric`.
    """

    name: str
    metric_name: str
    # `"sequence"`: one prediction per sequence (many-to-one); `"steps"`: one per step.
    head: str
    # None for regression, else the number of classes predicted at each output.
    num_classes = None
    min_seq_len = 1
    # Token tasks: the word of each input id, and the id that a served model reads any other id
    # or word as (one that no training sequence holds, so the model learned nothing from it).
    vocabulary = None
    unknown_id = None
    # How a served model cuts a text into tokens: "words" or "characters".
    text_unit = "words"
    # Tasks with one class per sequence: the name of each class.
    labels = None
    # Tasks whose sequences differ in length define `draw_lengths`; a batch shares one length.
    # The paper's stopping rule (a `StopRule`), for tasks that train under it.
    stop_rule = None

    def __init__(self, seq_len, *, test_size, test_batch_size=256, test_seed=0):
        checks.integer("seq_len", seq_len, self.min_seq_len)
        checks.integer("test_size", test_size, 1)
        checks.integer("test_batch_size", test_batch_size, 1)
        checks.integer("test_seed", test_seed, 0)
        self.seq_len = int(seq_len)
        self.test_size = int(test_size)
        self.test_batch_size = int(test_batch_size)
        self.test_seed = int(test_seed)

    # --- What a subclass defines. ------------------------------------------------------------

    @property
    @abc.abstractmethod
    def input_spec(self):
        """`tf.TensorSpec` of a batch of inputs, with dynamic batch and time dimensions."""

    @property
    @abc.abstractmethod
    def target_spec(self):
        """`tf.TensorSpec` of a batch of targets."""

    @property
    @abc.abstractmethod
    def baseline(self):
        """The metric of a model that remembers nothing."""

    @abc.abstractmethod
    def make_batch(self, rng, batch_size):
        """Returns `(inputs, targets)` as NumPy arrays, drawn with `rng`."""

    @abc.abstractmethod
    def loss(self, targets, predictions):
        """The scalar training loss of a batch (TensorFlow ops)."""

    @abc.abstractmethod
    def metric(self, targets, predictions):
        """The metric of each sequence, shape `(batch,)` (TensorFlow ops); the task's metric of a
        split is the mean over its sequences."""

    @property
    def max_length(self):
        """The length of the longest sequence the task makes, the longest lag it can ask a model
        to bridge (chrono initialization's `max_lag`)."""
        return self.seq_len

    def is_solved(self, metric):
        """Whether a test metric meets the task's success criterion (lower is better)."""
        return metric < self.success_threshold

    def draw_lengths(self, rng, count):
        """For tasks whose sequences differ in length: `count` lengths drawn with `rng`, as
        `make_batch(rng, batch_size, length=...)` takes them. None: every sequence has one
        length."""
        return None

    def sequence_errors(self, targets, predictions):
        """For tasks whose `stop_rule` reads a training error: each sequence's error, shape
        `(batch,)` (TensorFlow ops)."""
        raise NotImplementedError(f"{type(self).__name__} defines no training error")

    # --- Shared machinery. -------------------------------------------------------------------

    def config(self):
        """The arguments that define this task, for results files and resume checks."""
        return {
            "task": self.name,
            "seq_len": self.seq_len,
            "test_size": self.test_size,
            "test_seed": self.test_seed,
        }

    @property
    def model_options(self):
        """Keyword arguments for `kala.build_model` that fit this task's inputs and outputs."""
        options = {"head": self.head, "input_name": self.input_spec.name}
        if self.input_spec.dtype.is_integer:
            options["vocab_size"] = self.vocab_size
        else:
            options["input_features"] = self.input_spec.shape[-1]
        if self.num_classes is None:
            options["output_units"] = self.target_spec.shape[-1]
        else:
            options["num_classes"] = self.num_classes
        return options

    @property
    def serving_options(self):
        """Keyword arguments for `kala.export_model`: three test sequences to check the export and
        warm the server up with, and what a token task serves with (vocabulary, unknown id,
        labels, text unit)."""
        options = {"example_inputs": self.batch(self.test_seed, TEST_STREAM, 0, 3)[0]}
        for name in ("vocabulary", "unknown_id", "labels"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        if self.vocabulary is not None:
            options["text_unit"] = self.text_unit
        return options

    def batch(self, seed, stream, index, batch_size, length=None):
        """Batch number `index` of a stream: the same arrays for the same arguments, always.
        Tasks whose lengths vary draw the batch's length, unless `length` is given."""
        rng = np.random.default_rng([int(seed), int(stream), int(index)])
        if length is None:
            return self.make_batch(rng, int(batch_size))
        return self.make_batch(rng, int(batch_size), length=int(length))

    def train_dataset(self, batch_size, seed=0, start=0, *, worker=0, workers=1, replicas=1):
        """An endless stream of fresh training batches; batch `i` is the `start + i`-th of `seed`.

        A run resumed at step `s` passes `start=s` and sees exactly the batches it would have.

        Under a `tf.distribute` strategy each of `workers` pipelines draws worker `worker`'s
        rows of every global batch of `batch_size` (rows `worker * share` on, `share =
        batch_size / workers`), split into `replicas` consecutive batches, one for each of its
        replicas in turn, as tf.distribute hands elements out: the same sequences as one
        device sees, whatever the number of replicas.
        """
        checks.integer("batch_size", batch_size, 1)
        checks.integer("seed", seed, 0)
        checks.integer("start", start, 0)
        workers = checks.integer("workers", workers)
        worker = checks.integer("worker", worker, 0)
        replicas = checks.integer("replicas", replicas)
        if worker >= workers or batch_size % (workers * replicas):
            raise ValueError(
                f"A global batch of {batch_size} cannot be split evenly over {workers} workers "
                f"of {replicas} replicas each (worker {worker}); use a multiple of "
                f"{workers * replicas}.")
        size = batch_size // (workers * replicas)  # Each replica's rows.

        def rows(index):
            inputs, targets = self.batch(seed, TRAIN_STREAM, index, batch_size)
            if workers * replicas == 1:
                return inputs, targets
            part = slice(worker * replicas * size, (worker + 1) * replicas * size)
            return (inputs[part].reshape(replicas, size, *inputs.shape[1:]),
                    targets[part].reshape(replicas, size, *targets.shape[1:]))

        def load(index):
            inputs, targets = tf.numpy_function(
                rows, [index], [self.input_spec.dtype, self.target_spec.dtype], stateful=False)
            lead = [batch_size] if workers * replicas == 1 else [replicas, size]
            inputs.set_shape([*lead, *self.input_spec.shape[1:]])
            targets.set_shape([*lead, *self.target_spec.shape[1:]])
            return inputs, targets

        # A sequential map, with tf.data's autotuning off: with it on, deleting this endless
        # iterator after a run could stall for seconds. The next batches are made while the
        # model trains on this one (`PREFETCH`).
        options = tf.data.Options()
        options.autotune.enabled = False
        batches = tf.data.Dataset.counter(start, dtype=tf.int64).map(load)
        if workers * replicas > 1:
            batches = batches.unbatch()  # One element per replica, in the replicas' order.
        return batches.prefetch(PREFETCH).with_options(options)

    def test_dataset(self):
        """The fixed test split: `test_size` sequences drawn from `test_seed`, in batches.

        Where lengths vary, each test sequence draws its own length (`draw_lengths`), and the
        split holds them in batches of one length, shortest first.
        """
        rng = np.random.default_rng([self.test_seed, LENGTH_STREAM])
        lengths = self.draw_lengths(rng, self.test_size)
        if lengths is None:
            parts = [(size, None) for size in _sizes(self.test_size, self.test_batch_size)]
        else:
            values, counts = np.unique(np.asarray(lengths), return_counts=True)
            parts = [(size, length) for length, count in zip(values.tolist(), counts.tolist())
                     for size in _sizes(count, self.test_batch_size)]

        def batches():
            for index, (size, length) in enumerate(parts):
                yield self.batch(self.test_seed, TEST_STREAM, index, size, length=length)

        signature = (self.input_spec, self.target_spec)
        return tf.data.Dataset.from_generator(batches, output_signature=signature).cache()


def _sizes(total, most):
    """`total` split into batches of `most`, the last one smaller."""
    return [most] * (total // most) + ([total % most] if total % most else [])


class AddingProblem(Task):
    """The adding problem: two values are marked in a long sequence; output their sum at the end.

    Two definitions are in use:

    - `definition="2016"` (Le et al. 2015; Arjovsky et al. 2016): values ~ U[0, 1], markers in
      {0, 1}, one marker in each half of a sequence of fixed length T, target X1 + X2, MSE loss.
      Always predicting 1 scores MSE 1/6 ≈ 0.167 (the baseline); solved at test MSE < 0.01.
    - `definition="1997"` (Hochreiter & Schmidhuber 1997, Experiment 4): values ~ U[-1, 1],
      markers in {-1, 0, 1}, length uniform in [T, T + T/10], X1 marked among the first 10 steps,
      X2 among the first T/2 - 1 steps still unmarked, the first and last steps marked -1 when
      not marked 1, target 0.5 + (X1 + X2) / 4. "In the rare case where the first pair of the
      sequence gets marked, we set X1 to zero." A sequence is wrong when |error| >= 0.04; the
      metric is the fraction of test sequences that are wrong, and the baseline is that
      fraction for the constant 0.5. The paper's criterion: training stops once the average
      training error is below 0.01 and the 2,000 most recent training sequences were all right
      (`stop_rule`); then at most 1 of 2,560 test sequences may be wrong (its runs ended with
      0 or 1 wrong).

    Inputs have two features per step, `[value, marker]`. In the 1997 definition each test
    sequence draws its own length; a training batch shares one length, drawn per batch (so with
    batch size 1, the paper's online setup, every sequence draws its own).
    """

    name = "adding_problem"
    head = "sequence"
    definitions = ("2016", "1997")
    tolerance_1997 = 0.04

    def __init__(self, seq_len=100, *, definition="2016", test_size=None, test_batch_size=256,
                 test_seed=0):
        self.definition = definition = checks.one_of("definition", str(definition),
                                                     self.definitions)
        # The 1997 X2 is drawn from the first T/2 steps while X1 takes one of the first ten.
        self.min_seq_len = 20 if definition == "1997" else 2
        if test_size is None:
            test_size = 2560 if definition == "1997" else 1024
        super().__init__(seq_len, test_size=test_size, test_batch_size=test_batch_size,
                         test_seed=test_seed)
        self.metric_name = "mse" if definition == "2016" else "error_rate"
        self.success_threshold = 0.01
        if definition == "1997":
            self.stop_rule = StopRule(window=2000, wrong=0, error=0.01)
        self._baseline = None

    def config(self):
        return {**super().config(), "definition": self.definition}

    @property
    def input_spec(self):
        return tf.TensorSpec([None, None, 2], tf.float32, name="sequence")

    @property
    def target_spec(self):
        return tf.TensorSpec([None, 1], tf.float32, name="target")

    @property
    def baseline(self):
        if self.definition == "2016":
            return 1.0 / 6.0  # Var(X1 + X2) for two independent U[0, 1] values.
        if self._baseline is None:
            # The best constant guess is the mean target, 0.5; score it on the test split.
            wrong = [np.abs(targets - 0.5) >= self.tolerance_1997
                     for _, targets in self.test_dataset().as_numpy_iterator()]
            self._baseline = float(np.mean(np.concatenate(wrong)))
        return self._baseline

    @property
    def max_length(self):
        return self.seq_len + (self.seq_len // 10 if self.definition == "1997" else 0)

    def is_solved(self, metric):
        if self.definition == "2016":
            return metric < self.success_threshold
        return metric <= 1 / 2560  # The paper's worst test result: 1 wrong of 2,560.

    def draw_lengths(self, rng, count):
        if self.definition == "2016":
            return None
        return rng.integers(self.seq_len, self.max_length + 1, size=count)

    def make_batch(self, rng, batch_size, length=None):
        if self.definition == "2016":
            return self._make_batch_2016(rng, batch_size)
        return self._make_batch_1997(rng, batch_size, length)

    def _make_batch_2016(self, rng, batch_size):
        length = self.seq_len
        values = rng.uniform(0.0, 1.0, size=(batch_size, length))
        markers = np.zeros((batch_size, length))
        rows = np.arange(batch_size)
        first = rng.integers(0, length // 2, size=batch_size)  # One marker in the first half,
        second = rng.integers(length // 2, length, size=batch_size)  # one in the second.
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        targets = values[rows, first] + values[rows, second]
        inputs = np.stack([values, markers], axis=-1)
        return inputs.astype(np.float32), targets[:, None].astype(np.float32)

    def _make_batch_1997(self, rng, batch_size, length):
        if length is None:
            length = int(self.draw_lengths(rng, 1)[0])
        values = rng.uniform(-1.0, 1.0, size=(batch_size, length))
        markers, first, second = marked_pairs(rng, batch_size, length, self.seq_len)
        # "In the rare case where the first pair of the sequence gets marked, we set X1 to zero."
        values[first == 0, 0] = 0.0
        rows = np.arange(batch_size)
        targets = 0.5 + (values[rows, first] + values[rows, second]) / 4.0
        inputs = np.stack([values, markers], axis=-1)
        return inputs.astype(np.float32), targets[:, None].astype(np.float32)

    def loss(self, targets, predictions):
        return tf.reduce_mean(tf.square(targets - predictions))

    def metric(self, targets, predictions):
        error = targets[:, 0] - predictions[:, 0]
        if self.definition == "2016":
            return tf.square(error)
        return tf.cast(tf.abs(error) >= self.tolerance_1997, tf.float32)

    def sequence_errors(self, targets, predictions):
        return tf.square(targets[:, 0] - predictions[:, 0])


def marked_pairs(rng, batch_size, length, seq_len):
    """The markers of Hochreiter & Schmidhuber's adding and multiplication problems (1997,
    Experiments 4 and 5), shape `(batch_size, length)`, and the two marked steps of each row:
    `first` among the first 10 steps, `second` among the first `seq_len / 2 - 1` steps still
    unmarked. The first and last steps are marked -1 where not marked 1."""
    markers = np.zeros((batch_size, length))
    markers[:, 0] = -1.0
    markers[:, -1] = -1.0
    rows = np.arange(batch_size)
    first = rng.integers(0, 10, size=batch_size)
    # Draw from T/2 - 1 slots and skip over the slot X1 took.
    second = rng.integers(0, seq_len // 2 - 1, size=batch_size)
    second = second + (second >= first)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return markers, first, second


class CopyMemory(Task):
    """Copy memory (Arjovsky, Shah & Bengio 2016): recall ten symbols after a gap of T steps.

    Symbols 0-7 carry data, 8 is the blank and 9 the delimiter (a served model reads any other
    id as a blank). The input is ten data symbols,
    T - 1 blanks, the delimiter, then ten blanks (T + 20 steps); the target is T + 10 blanks, then
    the ten data symbols in order. The metric is the mean cross-entropy per step (nats); a model
    that remembers nothing predicts blanks, then a uniform guess over 8 symbols, and scores
    10·log(8) / (T + 20), the baseline. Solved when the test cross-entropy is below 1% of it.
    """

    name = "copy_memory"
    metric_name = "cross_entropy"
    head = "steps"
    num_data_symbols = 8
    blank = 8
    delimiter = 9
    vocab_size = 10
    vocabulary = (*"01234567", "<blank>", "<delimiter>")
    unknown_id = blank
    num_classes = 10
    num_copied = 10

    def __init__(self, seq_len=100, *, test_size=1024, test_batch_size=256, test_seed=0):
        super().__init__(seq_len, test_size=test_size, test_batch_size=test_batch_size,
                         test_seed=test_seed)
        self.success_threshold = 0.01 * self.baseline
        self._cross_entropy = keras.losses.SparseCategoricalCrossentropy(reduction=None)

    @property
    def input_spec(self):
        return tf.TensorSpec([None, None], tf.int32, name="symbols")

    @property
    def target_spec(self):
        return tf.TensorSpec([None, None], tf.int32, name="target")

    @property
    def baseline(self):
        return self.num_copied * math.log(self.num_data_symbols) / (self.seq_len + 2 * self.num_copied)

    @property
    def max_length(self):
        return self.seq_len + 2 * self.num_copied

    def make_batch(self, rng, batch_size):
        n, gap = self.num_copied, self.seq_len
        data = rng.integers(0, self.num_data_symbols, size=(batch_size, n))
        inputs = np.full((batch_size, gap + 2 * n), self.blank)
        inputs[:, :n] = data
        inputs[:, gap + n - 1] = self.delimiter
        targets = np.full((batch_size, gap + 2 * n), self.blank)
        targets[:, gap + n:] = data
        return inputs.astype(np.int32), targets.astype(np.int32)

    def loss(self, targets, predictions):
        return tf.reduce_mean(self.metric(targets, predictions))

    def metric(self, targets, predictions):
        return tf.reduce_mean(self._cross_entropy(targets, predictions), axis=-1)


class LongGap(Task):
    """The essay's own example: "I grew up in France … I speak fluent French".

    A sequence of words says where someone grew up, other text follows, then "i speak fluent";
    the model must name the language that goes with the country. With a small gap this is the
    essay's "the clouds are in the sky" case; as the gap grows, the country sits further and
    further from where it is needed. The metric is the fraction of test sequences whose language
    is wrong; guessing scores 1 - 1/8 (eight countries), the baseline, and the task counts as
    solved below 5%.

    `position` says where the country sentence sits:
    - `"random"`: `gap // 2` words of the other text are split at random between before the
      sentence and after it, so that between `gap` and `gap + gap // 2` words separate the
      sentence from the question, and every sequence is `gap + gap // 2 + 9` words long;
    - `"fixed"`: the sequence starts with the sentence and exactly `gap` words follow it. A
      network can then find the country by its distance from the end alone, without learning to
      remember it: docs/findings.md shows what that does to the comparison.

    `filler` chooses the other text:
    - `"words"`: words drawn independently from a filler vocabulary;
    - `"distractors"`: short sentences from the same vocabulary, among which some say
      "we visited <another country> ." — a model that simply keeps the last country it read
      answers wrong.

    Token ids: 0 is padding (unused here), then the sentence words, the countries, the
    languages and the filler words; `vocabulary` lists them, so `vocabulary[id]` is the word, and
    `labels` are the languages. A served model reads any other word or id as 0, the padding that
    no sequence holds (its embedding stays as initialized): kala's unknown word.
    """

    name = "long_gap"
    metric_name = "error_rate"
    head = "sequence"
    countries = ("france", "spain", "germany", "italy", "japan", "china", "russia", "brazil")
    languages = ("french", "spanish", "german", "italian", "japanese", "chinese", "russian",
                 "portuguese")
    frame = ("i", "grew", "up", "in", ".", "speak", "fluent", "we", "visited")
    filler_words = (
        "the", "a", "weather", "was", "nice", "and", "my", "friends", "walked", "to", "school",
        "every", "day", "it", "rained", "often", "she", "he", "they", "liked", "music", "cats",
        "dogs", "trains", "sometimes", "read", "books", "about", "history", "sea", "old", "new",
    )
    fillers = ("words", "distractors")
    positions = ("random", "fixed")
    num_classes = len(languages)

    def __init__(self, gap=10, *, filler="distractors", position="random", test_size=1024,
                 test_batch_size=256, test_seed=0):
        self.filler = checks.one_of("filler", filler, self.fillers)
        self.position = checks.one_of("position", position, self.positions)
        super().__init__(gap, test_size=test_size, test_batch_size=test_batch_size,
                         test_seed=test_seed)
        self.vocabulary = ("<pad>", *self.frame, *self.countries, *self.languages,
                           *self.filler_words)
        self.vocab_size = len(self.vocabulary)
        self.unknown_id = 0
        self.labels = self.languages
        self._ids = {word: index for index, word in enumerate(self.vocabulary)}
        self._filler_ids = np.array(self.ids(" ".join(self.filler_words)))
        # For each country, the sentences "we visited <another country> ." in their order.
        self._visits = [[self.ids(f"we visited {other} .") for other in self.countries
                         if other != country] for country in self.countries]
        self.success_threshold = 0.05

    @property
    def gap(self):
        return self.seq_len

    def config(self):
        return {**super().config(), "filler": self.filler, "position": self.position}

    @property
    def spread(self):
        """How many words the distance between the country and the question can vary by."""
        return self.gap // 2 if self.position == "random" else 0

    @property
    def input_spec(self):
        return tf.TensorSpec([None, None], tf.int32, name="tokens")

    @property
    def target_spec(self):
        return tf.TensorSpec([None], tf.int32, name="language")

    @property
    def baseline(self):
        return 1.0 - 1.0 / len(self.languages)

    def ids(self, text):
        """Token ids of a text, read as the `serve_text` signature reads it: lower-cased, full
        stops split off, then split at whitespace.

        Raises:
            ValueError: a word outside `vocabulary`, named.
        """
        words = text.lower().replace(".", " . ").split()
        unknown = sorted({word for word in words if word not in self._ids})
        if unknown:
            raise ValueError(f"ids: {', '.join(map(repr, unknown))} not in the task's "
                             f"vocabulary; its words are {', '.join(self.vocabulary[1:])}")
        return [self._ids[word] for word in words]

    def _filler(self, draws, country, length, places):
        """`length` filler token ids, never mentioning `country` itself, drawn from `draws`. A
        filler word is -1 here, and the place of its draw is added to `places`: `make_batch`
        looks them all up at once."""
        if self.filler == "words":
            draws.places(length, places)
            return [-1] * length
        # Sentences of 4 to 8 words; about one in three is "we visited <another country> .",
        # always whole. The last sentence is cut short to fit: a fragment of filler words, and
        # one word without its full stop where only one is left.
        tokens, stop, others = [], self._ids["."], self._visits[country]
        while len(tokens) < length:
            left = length - len(tokens)
            if left >= 4 and draws.random() < 1 / 3:
                tokens += others[draws.integer(len(others))]
            else:
                words_in_sentence = min(3 + draws.integer(5), max(left - 1, 1))
                draws.places(words_in_sentence, places)
                tokens += [-1] * words_in_sentence
                if left > 1:
                    tokens.append(stop)
        return tokens

    @property
    def max_length(self):
        return len(self.ids("i grew up in")) + 2 + self.gap + self.spread + len(
            self.ids("i speak fluent"))

    def make_batch(self, rng, batch_size):
        # Drawn as `rng`'s own calls would draw, from its raw outputs in bulk (`_Draws`): the
        # same batch, several times as fast.
        draws, places = _Draws(rng), []
        start = self.ids("i grew up in")
        end = self.ids("i speak fluent")
        inputs = np.zeros((batch_size, self.max_length), dtype=np.int32)
        targets = draws.integers(len(self.countries), batch_size)
        for row, country in enumerate(targets.tolist()):
            before = draws.integer(self.spread + 1)
            after = self.gap + self.spread - before
            inputs[row] = [*self._filler(draws, country, before, places), *start,
                           self._ids[self.countries[country]], self._ids["."],
                           *self._filler(draws, country, after, places), *end]
        # The filler words, row by row and left to right: the order they were drawn in.
        inputs[inputs < 0] = self._filler_ids[draws.bounded(places, len(self._filler_ids))]
        draws.finish()
        return inputs, targets.astype(np.int32)

    def loss(self, targets, predictions):
        return mean_cross_entropy(targets, predictions)

    def metric(self, targets, predictions):
        return wrong_class(targets, predictions)


class _Draws:
    """What a NumPy `Generator` on PCG64 would draw, computed from its raw 64-bit outputs in
    bulk, so that a generator that draws one number at a time runs at the speed of Python's
    own arithmetic and still makes exactly the arrays it made with `rng` itself.

    The maths is NumPy's (numpy/random/src/distributions): `rng.random()` is the top 53 bits of
    one 64-bit output times 2**-53; `rng.integers(0, n)`, one number or an array of them, draws
    32-bit halves (the low half of an output first, the high one kept for the next 32-bit draw,
    across calls) and maps each to [0, n) by Lemire's multiply-and-shift, drawing again in the
    rare case it rejects (never for a power of two); `rng.choice` of n items draws as
    `rng.integers(0, n)`; n = 1 draws nothing. `finish` leaves `rng` where its own calls would
    have. tests/test_tasks.py checks the arrays against those of `rng`'s own calls.

    A 32-bit draw is named by its place: 2 * (index of its 64-bit output) + (1 if the high half).
    """

    CHUNK = 4096

    def __init__(self, rng):
        bits = rng.bit_generator
        if not isinstance(bits, np.random.PCG64):
            raise ValueError(f"expected a Generator on PCG64 (np.random.default_rng), got one "
                             f"on {type(bits).__name__}")
        self.rng, self.start = rng, bits.state
        # The 64-bit outputs drawn so far; a half kept from before comes first, as the high
        # half of an output of our own.
        kept = self.start["has_uint32"]
        self.raw = [self.start["uinteger"] << 32] if kept else []
        self.own = len(self.raw)
        self.used = self.own
        self.kept = 1 if kept else None  # The place of the high half kept for the next draw.
        # The last output split into halves: NumPy leaves its high half in the state, used
        # or not.
        self.split = 0 if kept else None

    def _take(self, count):
        """The index of the first of the next `count` 64-bit outputs."""
        while self.used + count > len(self.raw):
            self.raw += self.rng.bit_generator.random_raw(self.CHUNK).tolist()
        self.used += count
        return self.used - count

    def _next32(self):
        # `places(1, ...)` for one draw, written out: through `places` the long-gap batches
        # took 1.2 times as long.
        if self.kept is not None:
            value, self.kept = self.raw[self.kept >> 1] >> 32, None
            return value
        index = self.split = self._take(1)
        self.kept = 2 * index + 1
        return self.raw[index] & 0xFFFFFFFF

    def random(self):
        return (self.raw[self._take(1)] >> 11) * (1.0 / 9007199254740992.0)

    def integer(self, n):
        """As `rng.integers(0, n)`: a Python int."""
        if n == 1:
            return 0
        product = self._next32() * n
        if product & 0xFFFFFFFF < n:
            threshold = (2**32 - n) % n
            while product & 0xFFFFFFFF < threshold:
                product = self._next32() * n
        return product >> 32

    def places(self, count, places):
        """Takes `count` 32-bit draws, as `rng.integers(0, n, size=count)` would for an n that
        never rejects (a power of two), and adds their places to the list `places`, for
        `bounded` to map."""
        if count and self.kept is not None:
            places.append(self.kept)
            self.kept, count = None, count - 1
        outputs = (count + 1) // 2  # Consecutive outputs, low half then high: places in a row.
        if outputs:
            first = self._take(outputs)
            places.extend(range(2 * first, 2 * first + count))
            self.split = first + outputs - 1
            if count % 2:
                self.kept = 2 * self.split + 1

    def bounded(self, places, n):
        """The 32-bit draws at `places` mapped to [0, n), n a power of two: an int64 array."""
        if n < 1 or n & (n - 1):
            raise ValueError(f"bounded maps only to a power of two, got {n}")
        places = np.asarray(places, dtype=np.int64)
        outputs = np.asarray(self.raw, dtype=np.uint64)[places >> 1]
        halves = (outputs >> (np.uint64(32) * (places & 1).astype(np.uint64))) & np.uint64(
            0xFFFFFFFF)
        return ((halves * np.uint64(n)) >> np.uint64(32)).astype(np.int64)

    def integers(self, n, size):
        """As `rng.integers(0, n, size=size)`: an int64 array."""
        if n & (n - 1):
            return np.array([self.integer(n) for _ in range(size)], dtype=np.int64)
        places = []
        self.places(size, places)
        return self.bounded(places, n)

    def finish(self):
        """Leaves the generator as if its own calls had drawn these numbers."""
        bits = self.rng.bit_generator
        bits.state = self.start
        bits.random_raw(self.used - self.own)
        state = bits.state
        state["has_uint32"] = int(self.kept is not None)
        if self.split is not None:
            state["uinteger"] = self.raw[self.split] >> 32
        bits.state = state


def mean_cross_entropy(targets, predictions):
    """The loss of a classifier with one class per sequence: the mean cross-entropy."""
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(targets, predictions))


def wrong_class(targets, predictions):
    """1 for each sequence whose most likely class is not its target, else 0."""
    guesses = tf.argmax(predictions, axis=-1, output_type=tf.int32)
    return tf.cast(tf.not_equal(guesses, targets), tf.float32)


class Recordings(Task):
    """Recorded sequences to classify, one class per sequence: a fixed training set and a fixed
    test set, rather than fresh draws.

    Sequences may differ in length. A batch is padded on the right with all-zero steps to its
    longest sequence, and the model masks them (`build_model(mask_padding=True)`); then a
    sequence answers alone as it does in any batch. Training goes through the training set in
    epochs, each in a new order (a stateless permutation of seed and epoch), and with
    `bucket_boundaries` tf.data groups sequences of similar lengths into each batch
    (`bucket_by_sequence_length`), so that little of a batch is padding. Batch `i` of a seed
    is always the same sequences, so a resumed run sees the batches it would have.

    The metric is the fraction of test sequences given the wrong class; the baseline is that of
    always naming the class most common in training. A real set has no success criterion:
    training spends its budget (`is_solved` is never true).

    Args:
        name: the task's name in results files.
        train, test: each a pair `(sequences, classes)`: a list of float arrays of shape
            `(length, features)` and one class index per sequence.
        labels: the name of each class (`class_names`).
        bucket_boundaries: lengths at which tf.data starts a new bucket; empty for none.
        input_name: the name of the model's input (and of the served input).
    """

    metric_name = "error_rate"
    head = "sequence"
    success_threshold = 0.0

    def __init__(self, name, train, test, *, labels, bucket_boundaries=(), test_batch_size=256,
                 input_name="sequence"):
        self.name = str(name)
        # The names, for people; a served model answers with class indexes (labels are for
        # models of token ids, kala.signatures).
        self.class_names = tuple(str(label) for label in labels)
        self.num_classes = len(self.class_names)
        self._input_name = str(input_name)
        self.train_sequences, self.train_classes = self._checked("train", *train)
        self.test_sequences, self.test_classes = self._checked("test", *test)
        self.features = self.train_sequences[0].shape[1]
        if self.test_sequences[0].shape[1] != self.features:
            raise ValueError(f"test sequences have {self.test_sequences[0].shape[1]} features "
                             f"and training sequences {self.features}; they must agree")
        self.bucket_boundaries = tuple(
            checks.integer("bucket boundary", boundary, 2) for boundary in bucket_boundaries)
        if list(self.bucket_boundaries) != sorted(set(self.bucket_boundaries)):
            raise ValueError("bucket_boundaries must increase. Received: "
                             f"{list(self.bucket_boundaries)}")
        longest = max(len(sequence) for sequence in (*self.train_sequences,
                                                     *self.test_sequences))
        super().__init__(longest, test_size=len(self.test_sequences),
                         test_batch_size=test_batch_size)
        counts = np.bincount(self.train_classes, minlength=self.num_classes)
        self.majority_class = int(np.argmax(counts))

    def _checked(self, split, sequences, classes):
        sequences = [np.asarray(sequence, dtype=np.float32) for sequence in sequences]
        classes = np.asarray(classes)
        if not sequences:
            raise ValueError(f"the {split} split holds no sequences")
        if len(classes) != len(sequences) or classes.ndim != 1:
            raise ValueError(f"the {split} split has {len(sequences)} sequences and classes of "
                             f"shape {classes.shape}; give one class per sequence")
        for index, sequence in enumerate(sequences):
            if sequence.ndim != 2 or len(sequence) == 0:
                raise ValueError(f"{split} sequence {index} has shape {sequence.shape}; "
                                 "expected (length >= 1, features)")
            if sequence.shape[1] != sequences[0].shape[1]:
                raise ValueError(f"{split} sequence {index} has {sequence.shape[1]} features, "
                                 f"sequence 0 has {sequences[0].shape[1]}")
            if not np.all(np.isfinite(sequence)):
                raise ValueError(f"{split} sequence {index} holds NaN or infinity")
        if not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0 or (
                classes.max() >= self.num_classes):
            raise ValueError(f"{split} classes must be integers in [0, {self.num_classes}); "
                             f"received {classes.dtype} from {classes.min()} to {classes.max()}")
        return sequences, classes.astype(np.int32)

    def config(self):
        return {**super().config(), "train_size": len(self.train_sequences),
                "bucket_boundaries": list(self.bucket_boundaries)}

    @property
    def input_spec(self):
        return tf.TensorSpec([None, None, self.features], tf.float32, name=self._input_name)

    @property
    def target_spec(self):
        return tf.TensorSpec([None], tf.int32, name="target")

    @property
    def baseline(self):
        return float(np.mean(self.test_classes != self.majority_class))

    @property
    def statistics(self):
        """`(mean, std)` of each feature over every step of the training sequences: the
        `input_scale` of `kala.build_model`."""
        steps = np.concatenate(self.train_sequences)
        return steps.mean(axis=0), np.maximum(steps.std(axis=0), 1e-6)

    @property
    def serving_options(self):
        options = super().serving_options
        options["example_inputs"] = pad(self.test_sequences[:3])
        return options

    def make_batch(self, rng, batch_size):
        chosen = rng.integers(0, len(self.train_sequences), size=batch_size)
        return (pad([self.train_sequences[index] for index in chosen]),
                self.train_classes[chosen])

    def train_dataset(self, batch_size, seed=0, start=0, *, worker=0, workers=1, replicas=1):
        checks.integer("batch_size", batch_size, 1)
        seed = checks.integer("seed", seed, 0)
        start = checks.integer("start", start, 0)
        if checks.integer("workers", workers) * checks.integer("replicas", replicas) > 1:
            raise ValueError(f"{self.name} trains on one device: its batches are bucketed by "
                             f"length. Received: workers={workers}, replicas={replicas}")
        values = ragged(self.train_sequences)
        classes = tf.constant(self.train_classes)
        size = len(self.train_sequences)

        def example(position):  # The position-th sequence drawn: epoch by epoch, shuffled.
            epoch, place = position // size, position % size
            index = tf.random.experimental.index_shuffle(
                place, seed=tf.stack([tf.constant(seed, tf.int64), epoch]),
                max_index=size - 1)
            return values[index], classes[index]

        sequences = tf.data.Dataset.counter(dtype=tf.int64).map(example)
        padded_shapes = ([None, self.features], [])
        if self.bucket_boundaries:
            batches = sequences.bucket_by_sequence_length(
                lambda sequence, _: tf.shape(sequence)[0], list(self.bucket_boundaries),
                [batch_size] * (len(self.bucket_boundaries) + 1),
                padded_shapes=padded_shapes, drop_remainder=True)
        else:
            batches = sequences.padded_batch(batch_size, padded_shapes, drop_remainder=True)
        options = tf.data.Options()
        options.autotune.enabled = False
        return batches.skip(start).prefetch(PREFETCH).with_options(options)

    def test_dataset(self):
        values, classes = ragged(self.test_sequences), tf.constant(self.test_classes)
        sequences = tf.data.Dataset.range(len(self.test_sequences)).map(
            lambda index: (values[index], classes[index]))
        return sequences.padded_batch(self.test_batch_size, ([None, self.features], [])).cache()

    def loss(self, targets, predictions):
        return mean_cross_entropy(targets, predictions)

    def metric(self, targets, predictions):
        return wrong_class(targets, predictions)


def ragged(sequences):
    """Sequences of `(length, features)` as one `tf.RaggedTensor` of shape
    `(sequences, None, features)`."""
    return tf.RaggedTensor.from_row_lengths(np.concatenate(sequences),
                                            [len(sequence) for sequence in sequences])


def pad(sequences):
    """Sequences of `(length, features)` as one batch, padded on the right with all-zero steps
    to the longest: the form a masked model (and a served one) reads."""
    longest = max(len(sequence) for sequence in sequences)
    batch = np.zeros((len(sequences), longest, np.shape(sequences[0])[1]), np.float32)
    for row, sequence in enumerate(sequences):
        batch[row, :len(sequence)] = sequence
    return batch
