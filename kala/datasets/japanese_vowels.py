"""`kala_japanese_vowels`: nine speakers saying two vowels, as sequences of different lengths."""

import numpy as np
import tensorflow_datasets as tfds

from kala.datasets import sources

FEATURES = 12
SPEAKERS = 9
# The archive's files as sktime ships them, in the .ts format of the UEA/UCR archive.
FILES = {"train": "datasets/data/JapaneseVowels/JapaneseVowels_TRAIN.ts",
         "test": "datasets/data/JapaneseVowels/JapaneseVowels_TEST.ts"}
SIZES = {"train": 270, "test": 370}

CITATION = """\
@article{kudo1999,
  author = {Kudo, Mineichi and Toyama, Jun and Shimbo, Masaru},
  title = {Multidimensional curve classification using passing-through regions},
  journal = {Pattern Recognition Letters},
  volume = {20},
  number = {11--13},
  pages = {1103--1111},
  year = {1999},
}"""


class KalaJapaneseVowels(tfds.core.GeneratorBasedBuilder):
    """Japanese Vowels (Kudo, Toyama & Shimbo 1999; UCI): nine male speakers each said the
    vowels /ae/; each utterance is 7 to 29 frames of 12 LPC cepstrum coefficients, and the
    task is to tell the speaker. Train: 30 utterances a speaker; test: 24 to 88 a speaker."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The UCI train and test splits, from sktime's files."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict({
                "coefficients": tfds.features.Tensor(
                    shape=(None, FEATURES), dtype=np.float32,
                    doc="One row of 12 LPC cepstrum coefficients per frame"),
                "speaker": tfds.features.ClassLabel(
                    names=[str(speaker) for speaker in range(1, SPEAKERS + 1)]),
            }),
            supervised_keys=("coefficients", "speaker"),
            disable_shuffling=True,
            homepage="https://archive.ics.uci.edu/dataset/128/japanese+vowels",
            citation=CITATION,
            license="UCI Machine Learning Repository (files from sktime, BSD-3-Clause)",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: sktime ships the files.
        return {split: self._generate_examples(sources.package_file("sktime", path, self.name),
                                               SIZES[split])
                for split, path in FILES.items()}

    def _generate_examples(self, path, size):
        utterances = read_ts(path.read_text())
        if len(utterances) != size:
            raise ValueError(f"{path} holds {len(utterances)} utterances; expected {size}")
        for index, (coefficients, speaker) in enumerate(utterances):
            yield index, {"coefficients": coefficients, "speaker": speaker - 1}


def read_ts(text):
    """The `(frames, speaker)` pairs of a .ts file of this dataset: after `@data`, one line per
    utterance, its 12 dimensions separated by `:` (each a comma-separated series over time),
    then the class label."""
    lines = text.splitlines()
    try:
        start = next(number for number, line in enumerate(lines)
                     if line.strip().lower() == "@data") + 1
    except StopIteration:
        raise ValueError("not a .ts file: no @data line") from None
    utterances = []
    for number, line in enumerate(lines[start:], start + 1):
        if not line.strip():
            continue
        *dimensions, label = line.strip().split(":")
        if len(dimensions) != FEATURES:
            raise ValueError(f"line {number}: {len(dimensions)} dimensions; expected {FEATURES}")
        frames = np.array([[float(value) for value in dimension.split(",")]
                           for dimension in dimensions], dtype=np.float32).T
        utterances.append((frames, int(label)))
    return utterances
