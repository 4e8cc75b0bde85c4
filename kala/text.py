"""Text for character-level language models: a corpus on every machine, and a task to learn it.

The essay's examples are language models: predict the next character (or word) from all the ones
before. `CharLanguageModel` is that task for any text, split by position into training and
validation parts, and scored in bits per character against what the text's own character
frequencies (unigram) and pairs of characters (bigram) predict.

Corpora:
- `stdlib_corpus()`: the Python standard library's own source, a fixed list of modules
  (`STDLIB_FILES`), on every machine with Python and no download. Its text differs between Python
  versions, so a corpus records its files, size and SHA-256.
- `read_corpus(path)`: any UTF-8 file.
- `tfds_corpus(name)`: a text dataset of the TensorFlow Datasets catalog (`tiny_shakespeare`),
  which needs a download.
- `load_corpus(text_path, tfds_name)`: whichever of these a run names (the standard library's
  when it names neither).
A corpus that cannot serve (missing, empty, not UTF-8, shorter than a training window) raises a
`ValueError` that says which and where.
"""

import dataclasses
import hashlib
import math
import os
import stat
import sysconfig

import keras
import numpy as np
import tensorflow as tf

from kala import stepping
from kala.tasks import Task

# Pure-Python modules of the standard library, each one file in every CPython from 3.10 on; about
# 1.2 million characters in 3.11.
STDLIB_FILES = tuple(f"{name}.py" for name in (
    "argparse", "ast", "bisect", "calendar", "configparser", "csv", "dataclasses", "difflib",
    "enum", "fractions", "functools", "heapq", "inspect", "ipaddress", "random", "shlex",
    "shutil", "statistics", "subprocess", "tempfile", "textwrap", "threading", "tokenize",
    "traceback", "uuid",
))
# What an id outside the text's characters decodes to (U+FFFD, the replacement character).
UNKNOWN_CHARACTER = "\ufffd"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A text and where it came from."""

    text: str
    source: str
    files: tuple = ()

    @property
    def sha256(self):
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def describe(self):
        """What a results file records of the corpus."""
        return {"source": self.source, "files": list(self.files), "characters": len(self.text),
                "bytes": len(self.text.encode("utf-8")), "sha256": self.sha256}


def _decode(data, where):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{where} is not UTF-8 text: byte {error.start} is "
                         f"{data[error.start:error.start + 1]!r} ({error.reason})") from None


def read_corpus(path):
    """The UTF-8 text of the file at `path` as a `Corpus`.

    Raises:
        ValueError: the file is missing, not a regular file, unreadable, empty or not UTF-8
            (naming the byte offset of the first bad byte).
    """
    try:
        if not (os.path.isdir(path) or stat.S_ISREG(os.stat(path).st_mode)):
            # A FIFO or a device: reading one could wait forever, or never end.
            raise ValueError(f"{path}: not a regular file (a FIFO, socket or device)")
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: a directory, not a text file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror})") from None
    text = _decode(data, path)
    if not text:
        raise ValueError(f"{path}: the file is empty")
    return Corpus(text, source=os.path.abspath(path), files=(os.path.basename(path),))


def stdlib_corpus(stdlib_dir=None):
    """The modules of `STDLIB_FILES` from this Python's standard library, one after another."""
    stdlib_dir = stdlib_dir or sysconfig.get_paths()["stdlib"]
    texts = []
    for name in STDLIB_FILES:
        path = os.path.join(stdlib_dir, name)
        if not os.path.isfile(path):
            raise ValueError(f"the standard library in {stdlib_dir} has no {name}; pass a text "
                             "file with --text")
        with open(path, "rb") as file:
            texts.append(_decode(file.read(), path))
    return Corpus("".join(texts), source=f"python-stdlib ({stdlib_dir})", files=STDLIB_FILES)


def tfds_corpus(name, download_host="raw.githubusercontent.com"):
    """The training text of a TensorFlow Datasets text dataset (`tiny_shakespeare`), which the
    first call downloads (from `download_host`; this checks it can be reached first, as a
    download would otherwise retry for minutes).

    Raises:
        ValueError: TensorFlow Datasets cannot load the dataset: an unknown name, or one not yet
            downloaded on a machine that cannot reach the network.
    """
    try:
        import tensorflow_datasets as tfds

        builder = tfds.builder(name)
    except Exception as error:  # Not installed, an unknown name, or a missing dependency.
        raise ValueError(f"TensorFlow Datasets cannot load {name!r}: "
                         f"{type(error).__name__}: {str(error).splitlines()[0][:200]}") from None
    from kala.datasets.sources import reachable

    if not builder.is_prepared() and not reachable(download_host):
        raise ValueError(f"{name!r} is not downloaded yet, and this machine cannot reach "
                         f"{download_host} to download it; offline, pass a text file with --text")
    try:
        builder.download_and_prepare()
        dataset = builder.as_dataset(split="train")
    except Exception as error:  # A download failing, in any of many ways.
        raise ValueError(f"TensorFlow Datasets could not download {name!r} "
                         f"({type(error).__name__}); offline, pass a text file with --text"
                         ) from None
    text = "".join(example["text"].numpy().decode("utf-8") for example in dataset)
    return Corpus(text, source=f"tfds:{name}")


def load_corpus(text_path="", tfds_name=""):
    """The corpus a run names: the UTF-8 file at `text_path` (`read_corpus`), the TensorFlow
    Datasets text dataset `tfds_name` (`tfds_corpus`), or, when it names neither, the standard
    library's source (`stdlib_corpus`).

    Raises:
        ValueError: both are named (the recipes' --text and --tfds), or the corpus cannot serve.
    """
    if text_path and tfds_name:
        raise ValueError("--text and --tfds exclude each other: choose one")
    if text_path:
        return read_corpus(text_path)
    if tfds_name:
        return tfds_corpus(tfds_name)
    return stdlib_corpus()


class CharLanguageModel(Task):
    """Predict every next character of a text; scored in bits per character.

    The text is split by position: the first `1 - validation_fraction` for training, the rest
    for validation. Ids: 0 is any character that the training part does not hold (decoded as
    U+FFFD), then the training part's characters in code point order; `vocabulary[id]` is the
    character. Training reads windows of `seq_len + 1` characters (inputs, and targets one
    character on) from a fresh offset every pass, shuffled; validation reads the validation part
    (`validation_text`) in consecutive windows. The baseline is the unigram model's bits per
    character on the characters the model is scored on (the targets of the validation windows);
    `bigram_bits_per_char` is the bigram model's.
    """

    name = "char_language_model"
    metric_name = "bits_per_char"
    head = "steps"
    unknown_id = 0
    text_unit = "characters"
    min_seq_len = 1

    def __init__(self, corpus, seq_len=100, *, validation_fraction=0.1, test_batch_size=64):
        if not 0 < validation_fraction < 1:
            raise ValueError("`validation_fraction` must be in (0, 1). Received: "
                             f"validation_fraction={validation_fraction!r}")
        text = corpus.text
        split = int(round(len(text) * (1 - validation_fraction)))
        if min(split, len(text) - split) < seq_len + 1:
            raise ValueError(
                f"{corpus.source}: {len(text):,} characters are too few: the training and the "
                f"validation part ({validation_fraction:.0%}) must each hold at least one window "
                f"of {seq_len + 1} characters (--seq-len + 1)")
        self.corpus = corpus
        self.validation_fraction = validation_fraction
        # U+FFFD in the text is read as the unknown character it stands for.
        self.vocabulary = (UNKNOWN_CHARACTER, *sorted(set(text[:split]) - {UNKNOWN_CHARACTER}))
        if len(self.vocabulary) == 1:
            raise ValueError(
                f"{corpus.source}: its training part holds no character but U+FFFD (the mark of "
                "an unreadable character): nothing to learn from")
        self.vocab_size = self.num_classes = len(self.vocabulary)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([ord(char) for char in self.vocabulary[1:]], tf.int32),
                tf.range(1, self.vocab_size, dtype=tf.int32)),
            default_value=self.unknown_id)
        self.train_ids = self.encode(text[:split]).numpy()
        self.validation_text = text[split:]
        self.validation_ids = self.encode(self.validation_text).numpy()
        windows = len(self.validation_ids) // (seq_len + 1)
        super().__init__(seq_len, test_size=windows, test_batch_size=test_batch_size)
        self.success_threshold = 0.0  # Never met: a language model trains its whole budget.
        self.unigram_bits_per_char, self.bigram_bits_per_char = self._baselines()

    def encode(self, text):
        """The ids of a string's characters (tf.strings; any character outside the vocabulary
        is 0)."""
        return self._table.lookup(tf.strings.unicode_decode(text, "UTF-8"))

    def decode(self, ids):
        return "".join(self.vocabulary[i] for i in np.asarray(ids).ravel())

    def config(self):
        return {**super().config(), "validation_fraction": self.validation_fraction,
                "corpus": self.corpus.describe()}

    @property
    def input_spec(self):
        return tf.TensorSpec([None, None], tf.int32, name="chars")

    @property
    def target_spec(self):
        return tf.TensorSpec([None, None], tf.int32, name="next_chars")

    @property
    def baseline(self):
        return self.unigram_bits_per_char

    def _baselines(self):
        """Unigram and bigram bits per character, with counts from the training part, on the
        characters the model is scored on: the targets of the validation windows. Both use
        add-k smoothing, k from {1, 0.1, 0.01} as the validation part likes best: the strongest
        form of each baseline."""
        n, train = self.vocab_size, self.train_ids.astype(np.int64)
        windows = self._validation_windows()
        previous, targets = windows[:, :-1].ravel(), windows[:, 1:].ravel()
        unigram_counts = np.bincount(train, minlength=n).astype(np.float64)
        # Pairs counted sparsely: a corpus may hold tens of thousands of distinct characters.
        pairs, pair_counts = np.unique(train[:-1] * n + train[1:], return_counts=True)
        asked = previous.astype(np.int64) * n + targets
        found = np.minimum(np.searchsorted(pairs, asked), len(pairs) - 1)
        counts = np.where(pairs[found] == asked, pair_counts[found], 0)
        totals = np.bincount(train[:-1], minlength=n)[previous]

        def bits(probabilities):
            return float(-np.mean(np.log2(probabilities)))

        unigram = min(bits((unigram_counts[targets] + k) / (len(train) + k * n))
                      for k in (1.0, 0.1, 0.01))
        bigram = min(bits((counts + k) / (totals + k * n)) for k in (1.0, 0.1, 0.01))
        return unigram, bigram

    def _validation_windows(self):
        """The validation part's ids as consecutive windows of `seq_len + 1`: (test_size, T+1)."""
        width = self.seq_len + 1
        return self.validation_ids[:self.test_size * width].reshape(self.test_size, width)

    def make_batch(self, rng, batch_size):
        """Windows at random offsets of the training part."""
        width = self.seq_len + 1
        starts = rng.integers(0, len(self.train_ids) - width + 1, size=batch_size)
        windows = np.stack([self.train_ids[start:start + width] for start in starts])
        return windows[:, :-1], windows[:, 1:]

    def train_dataset(self, batch_size, seed=0, start=0):
        """Endless shuffled batches of training windows; batch `i` is the `start + i`-th of
        `seed`. Every pass over the text starts at another offset, so windows differ between
        passes."""
        width, seed = self.seq_len + 1, int(seed)
        ids = tf.constant(self.train_ids)

        def one_pass(index):
            offset = tf.cast(index * 7919 % width, tf.int32)  # 7919: a prime, offsets spread.
            count = (len(self.train_ids) - offset) // width
            windows = tf.reshape(ids[offset:offset + count * width], [count, width])
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), index]))
            return tf.data.Dataset.from_tensor_slices(tf.gather(windows, order))

        return (tf.data.Dataset.counter(dtype=tf.int64).flat_map(one_pass)
                .map(lambda window: (window[:-1], window[1:]), num_parallel_calls=tf.data.AUTOTUNE)
                .batch(batch_size, drop_remainder=True)
                .skip(start)
                .prefetch(tf.data.AUTOTUNE))

    def test_dataset(self):
        """The validation part in consecutive windows, batched."""
        ids = self._validation_windows()
        return (tf.data.Dataset.from_tensor_slices((ids[:, :-1], ids[:, 1:]))
                .batch(self.test_batch_size).cache())

    def loss(self, targets, predictions):
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(targets, predictions))

    def metric(self, targets, predictions):
        nats = keras.losses.sparse_categorical_crossentropy(targets, predictions)
        return tf.reduce_mean(nats, axis=-1) / math.log(2.0)


class Writer:
    """A trained character model that writes: `generate(prompts, length, temperature, seed)`
    reads each prompt, then draws `length` characters one at a time, each from the model's
    distribution with its logarithm divided by `temperature` (below 1: safer, above: wilder),
    and returns what it wrote after each prompt. The same seed writes the same text. It runs
    `kala.stepping.CharacterModel`, as the `generate` signature of an export does; a model that
    does not run forwards one step at a time (bidirectional) cannot write.

    Raises:
        ValueError: `model` does not run forwards, or does not predict one of `task`'s
            characters at every step.
    """

    def __init__(self, model, task):
        stepper = stepping.Stepper.of(model)
        stepping.check_character_model(model, stepper, task.vocabulary)
        self.character_model = stepping.CharacterModel(stepper, task.vocabulary, task.unknown_id)
        # With AutoGraph: the loops over the prompts' and the written characters become graph
        # loops.
        self._generate = tf.function(self.character_model.generate,
                                     input_signature=stepping.CharacterModel.generate_inputs)
        # Traced once per Writer; TensorFlow counts traces by code object, so a run that makes
        # several Writers would be warned of "retracing" that is not happening.
        self._generate._omit_frequent_tracing_warning = True

    def generate(self, prompts, length, temperature, seed):
        """The texts written after `prompts` (a list of strings), as a tf.string tensor."""
        return self._generate(tf.constant(prompts), tf.constant(length, tf.int32),
                              tf.constant(temperature, tf.float32), tf.constant(seed, tf.int32))
