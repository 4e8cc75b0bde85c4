"""Real recordings as TensorFlow Datasets builders that read files a maintained package ships.

Importing this module registers three builders with `tensorflow_datasets`; none needs a network:

- `kala_electricity_demand`: half-hourly electricity demand in England and Wales, 5 June to
  27 August 2000, in megawatts (Taylor 2003), from `pmdarima`. One example per half hour, in
  time order; twelve weeks split by week into train (8), validation (2) and test (2).
- `kala_japanese_vowels`: 640 utterances of two Japanese vowels by nine speakers, 7 to 29 steps
  of 12 cepstrum coefficients each (Kudo, Toyama & Shimbo 1999), from `sktime`. The original
  train (270) and test (370) splits.
- `kala_digits`: 1,797 handwritten digits, 8 × 8 pixels of 0 to 16 (the test part of the UCI
  optical digits), from `scikit-learn`. Train (the first 1,437) and test (the last 360).

The packages are the `data` extra (`pip install -e '.[data]'`); a builder without its package
raises `ModuleNotFoundError` naming the install command. After `import kala.datasets`,
`tfds.load("kala_digits", split="train")` prepares the dataset once (in `data_dir`, by default
`~/tensorflow_datasets`) and reads it back from there.

`examples(name, split)` returns a split as NumPy, the whole of it in memory (these sets are
small), and holds back what TFDS prints while it prepares one.

This module imports nothing else from kala.
"""

import contextlib
import io
import logging

import tensorflow_datasets as tfds

from kala.datasets import sources
from kala.datasets.digits import KalaDigits
from kala.datasets.electricity_demand import KalaElectricityDemand
from kala.datasets.japanese_vowels import KalaJapaneseVowels

BUILDERS = (KalaElectricityDemand, KalaJapaneseVowels, KalaDigits)
NAMES = tuple(builder.name for builder in BUILDERS)


@contextlib.contextmanager
def _held_back():
    """What TFDS prints and logs while it finds and prepares a dataset (a line, progress bars,
    absl warnings), held back: the library prints nothing."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        absl.setLevel(level)


def examples(name, split, data_dir=None):
    """Every example of `split` of kala's dataset `name`, in the builder's order, as a list of
    dicts of NumPy values (prepared first if it is not yet)."""
    if name not in NAMES:
        raise ValueError(f"kala has no dataset {name!r}; it has {', '.join(NAMES)}")
    with _held_back():
        dataset = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
        return list(tfds.as_numpy(dataset))


# Where the TFDS catalog's datasets that a recipe can ask for download from.
CATALOG_HOSTS = {"mnist": "storage.googleapis.com"}


def catalog_examples(name, split, data_dir=None):
    """Every example of `split` of the TFDS catalog's dataset `name` (one of `CATALOG_HOSTS`),
    downloaded first if it is not yet prepared.

    Raises:
        ValueError: `name` is not one kala reads, or it is not prepared yet and its host cannot
            be reached (as here, offline), or the download fails.
    """
    if name not in CATALOG_HOSTS:
        raise ValueError(f"kala reads {', '.join(CATALOG_HOSTS)} from the TFDS catalog; "
                         f"received {name!r}")
    with _held_back():
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    if not prepared and not sources.reachable(CATALOG_HOSTS[name]):
        raise ValueError(f"{name!r} is not downloaded yet, and this machine cannot reach "
                         f"{CATALOG_HOSTS[name]} to download it; without --tfds the recipe "
                         "reads data that ships with a package")
    try:
        with _held_back():
            builder.download_and_prepare()
            return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))
    except Exception as error:  # A download failing, in any of many ways.
        raise ValueError(f"TensorFlow Datasets could not download {name!r} "
                         f"({type(error).__name__})") from None


__all__ = ["BUILDERS", "CATALOG_HOSTS", "NAMES", "KalaDigits", "KalaElectricityDemand",
           "KalaJapaneseVowels", "catalog_examples", "examples"]
