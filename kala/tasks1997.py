"""The experiments of Hochreiter & Schmidhuber's "Long Short-Term Memory" (Neural Computation
9(8), 1997, section 5) as tasks, each with the paper's definition and its criterion of success.

The adding problem (Experiment 4) is `kala.tasks.AddingProblem(definition="1997")`; the others
are here:

- `EmbeddedReber` (Exp. 1): predict the next symbol of strings of the embedded Reber grammar;
- `NoiseFreeLag` (Exp. 2a): two sequences that differ only in their first and last symbol;
- `DistractedLag` (Exp. 2c): the class of the second symbol, after q distractors and more;
- `TwoSequence` (Exp. 3a, Bengio et al. 1994's problem): the sign of the first N inputs, after
  Gaussian noise; `guess_weights` is the random weight guessing that solves it;
- `Multiplication` (Exp. 5): the product of two marked values;
- `TemporalOrder` (Exp. 6a, 6b): the order of two (three) symbols X and Y among distractors.

Where the paper's outputs are logistic units judged by their absolute error, kala's models give
a softmax, for which "every output within e of its target" is "the right class has a
probability above 1 - e": that is how the criteria are written here. Every task's metric is the
fraction of test sequences processed wrongly (`error_rate`), and its `stop_rule` (when it has
one) is the paper's: training stops when the latest training sequences were processed right.
Paper sections and quotations are cited where each rule is defined.

This module imports only `kala.checks` and `kala.tasks` from kala.
"""

import numpy as np
import tensorflow as tf

from kala import checks
from kala.tasks import StopRule, Task, marked_pairs, mean_cross_entropy


def _wrong_unless_likely(targets, probabilities, tolerance):
    """1 for each sequence whose right class has a probability of at most `1 - tolerance`
    (some output is `tolerance` or more from its target), else 0."""
    right = tf.gather(probabilities, tf.cast(targets, tf.int32), batch_dims=1)
    return tf.cast(right <= 1.0 - tolerance, tf.float32)


def _symbols_spec(name="symbols"):
    return tf.TensorSpec([None, None], tf.int32, name=name)


# --- Experiment 1: the embedded Reber grammar. ----------------------------------------------

# Reber's grammar (Reber 1967, as the paper's Figure 3 draws it): from each state, the symbols
# it can emit and the state each leads to; either edge with probability 0.5. State 5 ends.
REBER = {0: (("T", 1), ("P", 2)), 1: (("S", 1), ("X", 3)), 2: (("T", 2), ("V", 4)),
         3: (("X", 2), ("S", 5)), 4: (("P", 3), ("V", 5))}


class EmbeddedReber(Task):
    """Experiment 1: next-symbol prediction on the embedded Reber grammar.

    A string is B, then T or P, then a Reber string (B, a walk through `REBER`, E), then the
    same T or P again, then E. "To correctly predict the symbol before last, the net has to
    remember the second symbol", across the whole inner string. At every step the target is the
    set of symbols that may come next; a step is right when "the output unit(s) corresponding to
    the possible next symbol(s) is(are) always the most active ones", and a trial succeeds when
    "all string symbols of all sequences in both test set and training set are predicted
    correctly". As the paper, 256 training strings and 256 other test strings; training draws
    its sequences at random from the training set.

    Token ids: 0 is padding (batches are padded on the right, and padded steps have no target),
    then B, T, P, S, X, V, E. Targets are a multi-hot vector over the 7 symbols at each step;
    the model's 7 outputs are logits, trained with sigmoid cross-entropy. The test split is the
    training set followed by the test set (512 strings), and the metric the fraction of them
    with any step wrong. The baseline, 0.5, is a model that knows the grammar but not the second
    symbol: it guesses the symbol before last.
    """

    name = "embedded_reber"
    metric_name = "error_rate"
    head = "steps"
    symbols = ("B", "T", "P", "S", "X", "V", "E")
    vocab_size = len(symbols) + 1  # And the padding, id 0.
    success_threshold = 1e-9  # None wrong.
    train_strings = 256

    def __init__(self, *, test_batch_size=256, test_seed=0):
        rng = np.random.default_rng([test_seed, 1997, 1])
        train = [self.string(rng) for _ in range(self.train_strings)]
        seen, test = set(train), []
        while len(test) < self.train_strings:  # "256 separate test strings"
            string = self.string(rng)
            if string not in seen:
                test.append(string)
        self.train, self.test = train, test
        self._encoded = None
        super().__init__(max(map(len, train + test)) - 1, test_size=len(train) + len(test),
                         test_batch_size=test_batch_size, test_seed=test_seed)

    @staticmethod
    def string(rng):
        """A string of the embedded grammar, as text ("BTBTXSETE")."""
        inner, state = "B", 0
        while state != 5:
            symbol, state = REBER[state][rng.integers(2)]
            inner += symbol
        second = "TP"[rng.integers(2)]
        return "B" + second + inner + "E" + second + "E"

    @staticmethod
    def next_symbols(string):
        """For each symbol of `string` but the last, the set of symbols the grammar lets come
        next (the embedded string's second symbol decides the one before last)."""
        sets, state = [], None
        inner_end = len(string) - 2
        for position in range(len(string) - 1):
            if position == 0:
                sets.append({"T", "P"})
            elif position == 1:
                sets.append({"B"})
            elif position == 2:  # The inner B: the walk starts in state 0.
                state = 0
                sets.append({symbol for symbol, _ in REBER[state]})
            elif position < inner_end - 1:
                state = dict(REBER[state])[string[position]]
                sets.append({"E"} if state == 5 else {symbol for symbol, _ in REBER[state]})
            elif position == inner_end - 1:  # The inner E: the second symbol comes back.
                sets.append({string[1]})
            else:
                sets.append({"E"})
        return sets

    def encode(self, strings):
        """Strings as `(inputs, targets)`: token ids padded with 0 and multi-hot targets."""
        longest = max(len(string) for string in strings) - 1
        inputs = np.zeros((len(strings), longest), np.int32)
        targets = np.zeros((len(strings), longest, len(self.symbols)), np.float32)
        for row, string in enumerate(strings):
            inputs[row, :len(string) - 1] = [self.symbols.index(s) + 1 for s in string[:-1]]
            for step, allowed in enumerate(self.next_symbols(string)):
                targets[row, step, [self.symbols.index(s) for s in allowed]] = 1.0
        return inputs, targets

    @property
    def input_spec(self):
        return _symbols_spec()

    @property
    def target_spec(self):
        return tf.TensorSpec([None, None, len(self.symbols)], tf.float32, name="next_symbols")

    @property
    def baseline(self):
        return 0.5

    def make_batch(self, rng, batch_size):
        chosen = rng.integers(0, len(self.train), size=batch_size)
        if self._encoded is None:  # The training set encoded once, padded to its longest.
            self._encoded = self.encode(self.train), np.array([len(s) - 1 for s in self.train])
        (inputs, targets), lengths = self._encoded
        longest = lengths[chosen].max()  # As `encode` of the chosen strings pads them.
        return inputs[chosen, :longest], targets[chosen, :longest]

    def test_dataset(self):
        strings = self.train + self.test
        batches = [self.encode(strings[start:start + self.test_batch_size])
                   for start in range(0, len(strings), self.test_batch_size)]
        signature = (self.input_spec, self.target_spec)
        return tf.data.Dataset.from_generator(lambda: iter(batches),
                                              output_signature=signature).cache()

    def loss(self, targets, predictions):
        real = tf.cast(tf.reduce_any(targets > 0, axis=-1), tf.float32)  # Not padding.
        entropy = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(targets, predictions),
                                axis=-1)
        return tf.reduce_sum(entropy * real) / tf.reduce_sum(real)

    def metric(self, targets, predictions):
        allowed = targets > 0
        lowest_allowed = tf.reduce_min(tf.where(allowed, predictions, np.inf), axis=-1)
        highest_other = tf.reduce_max(tf.where(allowed, -np.inf, predictions), axis=-1)
        wrong_steps = tf.reduce_any(allowed, axis=-1) & (lowest_allowed <= highest_other)
        return tf.cast(tf.reduce_any(wrong_steps, axis=-1), tf.float32)


# --- Experiment 2: long time lags without and with noise. --------------------------------------

class NoiseFreeLag(Task):
    """Experiment 2a: "noise-free sequences with long time lags".

    p + 1 symbols a_1 … a_{p-1}, x = a_p, y = a_{p+1}, and only two sequences, each with
    probability 0.5: (y, a_1, …, a_{p-1}, y) and (x, a_1, …, a_{p-1}, x). The network predicts
    the next symbol at every step; only the last one needs memory, of the first, p steps back.
    Success: "during 10,000 successive, randomly chosen input sequences, the maximal absolute
    error of all output units is always below 0.25" (`stop_rule`), which with a softmax is the
    right symbol's probability above 0.75 at every step. A model that remembers nothing gives
    the last symbol 0.5 at best, so every sequence is wrong: baseline 1.

    Token ids: a_i is i - 1, x is p - 1, y is p. Inputs are the first p symbols, targets the
    next symbol at each step.
    """

    name = "noise_free_lag"
    metric_name = "error_rate"
    head = "steps"
    min_seq_len = 3
    success_threshold = 1e-9
    tolerance = 0.25

    def __init__(self, p=100, *, test_size=256, test_batch_size=256, test_seed=0):
        super().__init__(p, test_size=test_size, test_batch_size=test_batch_size,
                         test_seed=test_seed)
        self.p = self.seq_len
        self.num_classes = self.vocab_size = self.p + 1
        self.stop_rule = StopRule(window=10_000, wrong=0)

    def config(self):
        return {**super().config(), "p": self.p}

    @property
    def input_spec(self):
        return _symbols_spec()

    @property
    def target_spec(self):
        return tf.TensorSpec([None, None], tf.int32, name="next_symbol")

    @property
    def baseline(self):
        return 1.0

    def make_batch(self, rng, batch_size):
        ends = np.where(rng.integers(0, 2, size=batch_size) == 1, self.p, self.p - 1)
        sequences = np.empty((batch_size, self.p + 1), np.int32)
        sequences[:, 0] = sequences[:, -1] = ends
        sequences[:, 1:-1] = np.arange(self.p - 1)
        return sequences[:, :-1], sequences[:, 1:]

    def loss(self, targets, predictions):
        return mean_cross_entropy(targets, predictions)

    def metric(self, targets, predictions):
        right = tf.gather(predictions, targets, batch_dims=2)
        return tf.cast(tf.reduce_any(right <= 1.0 - self.tolerance, axis=-1), tf.float32)


class DistractedLag(Task):
    """Experiment 2c: "very long time lags — no local regularities", with distractors.

    p + 4 symbols: the distractors a_1 … a_p, then e, b, x, y. A sequence is b, then x or y,
    then q distractors drawn at random ("a sequence prefix of length q + 2"); then each further
    element is a distractor with probability 9/10 or e with probability 1/10, and after e the
    sequence ends with the second symbol again. The network reads the sequence up to e and must
    name the last symbol, x or y, across at least q + 1 steps. Success: "prediction error (for
    final sequence element) of both output units always below 0.2, for 10,000 successive,
    randomly chosen input sequences" (`stop_rule`): the right one's probability above 0.8.
    Chance gives 0.5, so a model that remembers nothing gets every sequence wrong: baseline 1.

    The paper gives the expected length as q + 14; its construction, as kala reads it, gives
    q + 13 (q + 2, then 10 elements up to e on average, then the last). A training batch shares
    one length; each test sequence draws its own.

    Token ids: a_i is i - 1, then e = p, b = p + 1, x = p + 2, y = p + 3; the class is 0 for x,
    1 for y.
    """

    name = "distracted_lag"
    metric_name = "error_rate"
    head = "sequence"
    num_classes = 2
    success_threshold = 1e-9
    tolerance = 0.2

    def __init__(self, q=100, p=100, *, test_size=2560, test_batch_size=256, test_seed=0):
        self.q = checks.integer("q", q, 1)
        self.p = checks.integer("p", p, 1)
        super().__init__(self.q + 3, test_size=test_size, test_batch_size=test_batch_size,
                         test_seed=test_seed)
        self.vocab_size = self.p + 4
        self.e, self.b, self.x = self.p, self.p + 1, self.p + 2
        self.stop_rule = StopRule(window=10_000, wrong=0)

    def config(self):
        return {**super().config(), "q": self.q, "p": self.p}

    @property
    def input_spec(self):
        return _symbols_spec()

    @property
    def target_spec(self):
        return tf.TensorSpec([None], tf.int32, name="last_symbol")

    @property
    def baseline(self):
        return 1.0

    @property
    def max_length(self):
        return self.q + 3 + 50  # Longer suffixes than 50 come once in 200 sequences.

    def draw_lengths(self, rng, count):
        # The prefix, then a geometric number of elements up to and including e.
        return self.q + 2 + rng.geometric(0.1, size=count)

    def make_batch(self, rng, batch_size, length=None):
        if length is None:
            length = int(self.draw_lengths(rng, 1)[0])
        classes = rng.integers(0, 2, size=batch_size)
        inputs = rng.integers(0, self.p, size=(batch_size, length))
        inputs[:, 0] = self.b
        inputs[:, 1] = self.x + classes
        inputs[:, -1] = self.e
        return inputs.astype(np.int32), classes.astype(np.int32)

    def loss(self, targets, predictions):
        return mean_cross_entropy(targets, predictions)

    def metric(self, targets, predictions):
        return _wrong_unless_likely(targets, predictions, self.tolerance)


# --- Experiment 3: the two-sequence problem. ---------------------------------------------------

class TwoSequence(Task):
    """Experiment 3a, Bengio, Simard & Frasconi's (1994) two-sequence problem.

    One input per step and two classes, each with probability 0.5. The first N elements are 1.0
    (class 1) or -1.0 (class 2); every later element is Gaussian noise, mean 0 and variance
    0.2; the length is uniform in [T, T + T/10]. The target at the end is 1.0 for class 1 and 0.0
    for class 2, and a sequence is right when the "absolute output error at sequence end" is
    below 0.2. The paper's stop criterion ST1: "none of 256 sequences from a randomly chosen
    test set is misclassified" (the test split here, 256 sequences). The best constant, 0.5, is
    wrong on every sequence: baseline 1.

    The paper's point: random weight guessing (`guess_weights`) solves this faster than the
    gradient methods Bengio et al. tried, so solving it shows little about long time lags.
    """

    name = "two_sequence"
    metric_name = "error_rate"
    head = "sequence"
    min_seq_len = 2
    success_threshold = 1e-9
    tolerance = 0.2

    def __init__(self, seq_len=100, n=3, *, test_size=256, test_batch_size=256, test_seed=0):
        super().__init__(seq_len, test_size=test_size, test_batch_size=test_batch_size,
                         test_seed=test_seed)
        self.n = checks.integer("n", n, 1)
        if self.n >= self.seq_len:
            raise ValueError(f"`n`, the informative elements, must be fewer than the "
                             f"{self.seq_len} steps. Received: n={n}")

    def config(self):
        return {**super().config(), "n": self.n}

    @property
    def input_spec(self):
        return tf.TensorSpec([None, None, 1], tf.float32, name="sequence")

    @property
    def target_spec(self):
        return tf.TensorSpec([None, 1], tf.float32, name="target")

    @property
    def baseline(self):
        return 1.0

    @property
    def max_length(self):
        return self.seq_len + self.seq_len // 10

    def draw_lengths(self, rng, count):
        return rng.integers(self.seq_len, self.max_length + 1, size=count)

    def make_batch(self, rng, batch_size, length=None):
        if length is None:
            length = int(self.draw_lengths(rng, 1)[0])
        first_class = rng.integers(0, 2, size=batch_size) == 1
        inputs = rng.normal(0.0, np.sqrt(0.2), size=(batch_size, length))
        inputs[:, :self.n] = np.where(first_class, 1.0, -1.0)[:, None]
        targets = first_class.astype(np.float32)[:, None]
        return inputs[..., None].astype(np.float32), targets

    def loss(self, targets, predictions):
        return tf.reduce_mean(tf.square(targets - predictions))

    def metric(self, targets, predictions):
        return tf.cast(tf.abs(targets[:, 0] - predictions[:, 0]) >= self.tolerance, tf.float32)


def guess_weights(model, task, *, trials, scale=100.0, seed=0):
    """Random weight guessing (Hochreiter & Schmidhuber's answer to the two-sequence problem):
    draw every weight of `model` uniformly from [-scale, scale] until the guessed network gets
    no sequence of `task`'s test split wrong, at most `trials` times.

    The model's output goes through a logistic unit first, as the guessed networks' output did
    (the paper's nets: weights in [-100, 100]). Returns `(trials until success or None, the best
    error rate seen)`; the model keeps the last weights guessed.
    """
    checks.integer("trials", trials, 1)
    scale = checks.positive_number("scale", scale)
    rng = np.random.default_rng([checks.integer("seed", seed, 0), 1997, 3])
    batches = list(task.test_dataset())

    @tf.function(reduce_retracing=True)
    def wrong(inputs, targets):
        return task.metric(targets, tf.sigmoid(model(inputs, training=False)))

    best = 1.0
    for trial in range(1, trials + 1):
        model.set_weights([rng.uniform(-scale, scale, size=np.shape(weight)).astype(np.float32)
                           for weight in model.get_weights()])
        error = float(np.mean(np.concatenate([wrong(x, y).numpy() for x, y in batches])))
        best = min(best, error)
        if error == 0.0:
            return trial, 0.0
    return None, best


# --- Experiment 5: the multiplication problem. -------------------------------------------------

class Multiplication(Task):
    """Experiment 5: as the adding problem (`kala.tasks.AddingProblem(definition="1997")`), but
    the values are drawn from [0, 1], the target at the end is the product X1 · X2, and a marked
    first pair sets X1 to 1.0. A sequence is wrong when its absolute error exceeds 0.04.

    The paper's stop rule: "as soon as less than n_seq of the 2000 most recent training
    sequences lead to absolute errors exceeding 0.04", with n_seq = 140 (or 13). kala asks the
    same of the test split: fewer than 7% (140 of 2,000) wrong. The baseline is the error rate
    of the constant 0.25, the mean product.
    """

    name = "multiplication"
    metric_name = "error_rate"
    head = "sequence"
    min_seq_len = 20
    tolerance = 0.04

    def __init__(self, seq_len=100, *, n_seq=140, test_size=2560, test_batch_size=256,
                 test_seed=0):
        super().__init__(seq_len, test_size=test_size, test_batch_size=test_batch_size,
                         test_seed=test_seed)
        self.n_seq = checks.integer("n_seq", n_seq, 1)
        self.stop_rule = StopRule(window=2000, wrong=self.n_seq - 1)
        self.success_threshold = self.n_seq / 2000
        self._baseline = None

    def config(self):
        return {**super().config(), "n_seq": self.n_seq}

    @property
    def input_spec(self):
        return tf.TensorSpec([None, None, 2], tf.float32, name="sequence")

    @property
    def target_spec(self):
        return tf.TensorSpec([None, 1], tf.float32, name="target")

    @property
    def baseline(self):
        if self._baseline is None:
            targets = np.concatenate([t for _, t in self.test_dataset().as_numpy_iterator()])
            self._baseline = float(np.mean(np.abs(targets - 0.25) > self.tolerance))
        return self._baseline

    @property
    def max_length(self):
        return self.seq_len + self.seq_len // 10

    def draw_lengths(self, rng, count):
        return rng.integers(self.seq_len, self.max_length + 1, size=count)

    def make_batch(self, rng, batch_size, length=None):
        if length is None:
            length = int(self.draw_lengths(rng, 1)[0])
        values = rng.uniform(0.0, 1.0, size=(batch_size, length))
        markers, first, second = marked_pairs(rng, batch_size, length, self.seq_len)
        values[first == 0, 0] = 1.0
        rows = np.arange(batch_size)
        targets = values[rows, first] * values[rows, second]
        inputs = np.stack([values, markers], axis=-1)
        return inputs.astype(np.float32), targets[:, None].astype(np.float32)

    def loss(self, targets, predictions):
        return tf.reduce_mean(tf.square(targets - predictions))

    def metric(self, targets, predictions):
        return tf.cast(tf.abs(targets[:, 0] - predictions[:, 0]) > self.tolerance, tf.float32)


# --- Experiment 6: temporal order. -------------------------------------------------------------

class TemporalOrder(Task):
    """Experiment 6: the order of symbols far apart. 6a: 4 classes, 6b: 8 classes.

    "The sequence starts with an E, ends with a B (the 'trigger symbol')", and is otherwise
    made of symbols drawn from a, b, c, d, except at two (6b: three) positions, which hold X or
    Y: t1 in [10, 20] and t2 in [50, 60] (6b: [10, 20], [33, 43], [66, 76]), counting the first
    symbol as position 1. The length is uniform in [100, 110]. The class is the order: X,X →
    0 (the paper's Q), X,Y → 1 (R), Y,X → 2 (S), Y,Y → 3 (U), and likewise for three. A sequence
    is right "if the final absolute error of all output units is below 0.3": the right class's
    probability above 0.7. The paper's stop rule: "average training error falls below 0.1 and
    the 2000 most recent sequences were classified correctly", the error being the summed
    squared error of the outputs (kala's reading); then at most the paper's own test errors
    (6a: 1, 6b: 2 of 2,560). A uniform guess is wrong on every sequence: baseline 1.

    Token ids: a, b, c, d, B, E, X, Y are 0-7.
    """

    name = "temporal_order"
    metric_name = "error_rate"
    head = "sequence"
    symbols = ("a", "b", "c", "d", "B", "E", "X", "Y")
    vocab_size = len(symbols)
    tolerance = 0.3
    positions = {4: ((10, 20), (50, 60)), 8: ((10, 20), (33, 43), (66, 76))}

    def __init__(self, classes=4, *, test_size=2560, test_batch_size=256, test_seed=0):
        self.num_classes = checks.one_of("classes", classes, tuple(self.positions))
        super().__init__(100, test_size=test_size, test_batch_size=test_batch_size,
                         test_seed=test_seed)
        self.stop_rule = StopRule(window=2000, wrong=0, error=0.1)
        self.allowed_wrong = {4: 1, 8: 2}[self.num_classes]

    def config(self):
        return {**super().config(), "classes": self.num_classes}

    @property
    def input_spec(self):
        return _symbols_spec()

    @property
    def target_spec(self):
        return tf.TensorSpec([None], tf.int32, name="order")

    @property
    def baseline(self):
        return 1.0

    @property
    def max_length(self):
        return 110

    def is_solved(self, metric):
        return metric <= self.allowed_wrong / 2560

    def draw_lengths(self, rng, count):
        return rng.integers(100, 111, size=count)

    def make_batch(self, rng, batch_size, length=None):
        if length is None:
            length = int(self.draw_lengths(rng, 1)[0])
        inputs = rng.integers(0, 4, size=(batch_size, length))
        inputs[:, 0] = self.symbols.index("E")
        inputs[:, -1] = self.symbols.index("B")
        rows = np.arange(batch_size)
        classes = np.zeros(batch_size, np.int64)
        for low, high in self.positions[self.num_classes]:
            position = rng.integers(low, high + 1, size=batch_size) - 1  # From position 1.
            is_y = rng.integers(0, 2, size=batch_size)
            inputs[rows, position] = self.symbols.index("X") + is_y
            classes = 2 * classes + is_y
        return inputs.astype(np.int32), classes.astype(np.int32)

    def loss(self, targets, predictions):
        return mean_cross_entropy(targets, predictions)

    def metric(self, targets, predictions):
        return _wrong_unless_likely(targets, predictions, self.tolerance)

    def sequence_errors(self, targets, predictions):
        wanted = tf.one_hot(targets, self.num_classes)
        return tf.reduce_sum(tf.square(wanted - predictions), axis=-1)

