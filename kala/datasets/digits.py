"""`kala_digits`: scikit-learn's 8 × 8 handwritten digits, to read one pixel at a time."""

import numpy as np
import tensorflow_datasets as tfds

from kala.datasets import sources

SIZE = 1797
TRAIN = 1437  # The first 80%; the last 360 are the test split.

CITATION = """\
@misc{alpaydin1998,
  author = {Alpaydin, E. and Kaynak, C.},
  title = {Optical Recognition of Handwritten Digits},
  howpublished = {UCI Machine Learning Repository},
  year = {1998},
  doi = {10.24432/C50P49},
}"""


class KalaDigits(tfds.core.GeneratorBasedBuilder):
    """Handwritten digits (Alpaydin & Kaynak 1998), as scikit-learn's `load_digits` ships them:
    1,797 images of 8 × 8 pixels, each the count (0 to 16) of set pixels in a 4 × 4 block of a
    32 × 32 bitmap, with the digit (0 to 9) written."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Train: the first 1,437 images; test: the last 360."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict({
                "pixels": tfds.features.Tensor(shape=(8, 8), dtype=np.uint8,
                                               doc="Set pixels of each 4 × 4 block, 0 to 16"),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("pixels", "label"),
            disable_shuffling=True,
            homepage="https://archive.ics.uci.edu/dataset/80",
            citation=CITATION,
            license="CC BY 4.0 (UCI); files from scikit-learn, BSD-3-Clause",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: scikit-learn ships the images.
        images, labels = load()
        return {"train": self._generate_examples(images, labels, 0, TRAIN),
                "test": self._generate_examples(images, labels, TRAIN, SIZE)}

    def _generate_examples(self, images, labels, begin, end):
        for index in range(begin, end):
            yield index, {"pixels": images[index], "label": labels[index]}


def load():
    """The images (uint8, 1,797 × 8 × 8) and labels from scikit-learn."""
    datasets = sources.module("sklearn.datasets", KalaDigits.name, "scikit-learn")
    digits = datasets.load_digits()
    images = np.asarray(digits.images)
    if images.shape != (SIZE, 8, 8) or images.min() < 0 or images.max() > 16:
        raise ValueError(f"scikit-learn's load_digits gave images of shape {images.shape}, "
                         f"values {images.min()} to {images.max()}; {KalaDigits.name} expects "
                         f"({SIZE}, 8, 8), 0 to 16")
    return images.astype(np.uint8), np.asarray(digits.target, dtype=np.int64)
