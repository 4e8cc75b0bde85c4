"""kala's TFDS builders: each prepares offline from the files its package ships, with the splits,
features and sizes of its source (tfds.testing's own checks), and the data matches the
published description."""

import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import kala.datasets
from kala.datasets import electricity_demand, japanese_vowels

# The builders read real files, not dummy data; tfds.testing wants a directory all the same.
EXAMPLES = str(kala.datasets.__path__[0])


class TestElectricityDemand(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = kala.datasets.KalaElectricityDemand
    SPLITS = {"train": 2688, "validation": 672, "test": 672}
    EXAMPLE_DIR = EXAMPLES


class TestJapaneseVowels(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = kala.datasets.KalaJapaneseVowels
    SPLITS = {"train": 270, "test": 370}
    EXAMPLE_DIR = EXAMPLES


class TestDigits(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = kala.datasets.KalaDigits
    SPLITS = {"train": 1437, "test": 360}
    EXAMPLE_DIR = EXAMPLES


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))


def test_load_by_name_after_import(data_dir):
    digits = tfds.load("kala_digits", split="test", data_dir=data_dir, as_supervised=True)
    pixels, label = next(iter(digits))
    assert pixels.shape == (8, 8) and 0 <= int(label) <= 9


def test_electricity_demand_is_the_series_in_time_order(data_dir):
    parts = [kala.datasets.examples("kala_electricity_demand", split, data_dir)
             for split in ("train", "validation", "test")]
    demand = np.array([example["demand"] for part in parts for example in part])
    times = [example["time"].decode() for part in parts for example in part]
    assert demand.shape == (4032,)
    assert demand[:3].tolist() == [22262.0, 21756.0, 22247.0]  # As R's forecast::taylor starts.
    assert times[0] == "2000-06-05T00:00" and times[-1] == "2000-08-27T23:30"
    assert [part[0]["time"].decode() for part in parts] == [
        "2000-06-05T00:00", "2000-07-31T00:00", "2000-08-14T00:00"]  # Mondays.
    assert 15_000 < demand.min() < demand.max() < 45_000  # Megawatts, England and Wales.


def test_japanese_vowels_has_the_published_shape(data_dir):
    for split, speakers in (("train", [30] * 9), ("test", None)):
        examples = kala.datasets.examples("kala_japanese_vowels", split, data_dir)
        lengths = [len(example["coefficients"]) for example in examples]
        assert min(lengths) >= 7 and max(lengths) <= 29 and len(set(lengths)) > 10
        assert all(example["coefficients"].shape[1] == 12 for example in examples)
        counts = np.bincount([example["speaker"] for example in examples], minlength=9)
        assert len(counts) == 9 and counts.min() >= 24
        if speakers:
            assert counts.tolist() == speakers


def test_digits_are_the_ten_digits(data_dir):
    examples = kala.datasets.examples("kala_digits", "train", data_dir)
    pixels = np.stack([example["pixels"] for example in examples])
    assert pixels.max() == 16 and pixels.min() == 0
    assert sorted(set(int(example["label"]) for example in examples)) == list(range(10))


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "pmdarima", None)  # As if it were not installed.
    monkeypatch.delitem(sys.modules, "pmdarima.datasets", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '\.\[data\]'"):
        electricity_demand.series()


def test_examples_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="kala has no dataset 'kala_mnist'; it has kala_"):
        kala.datasets.examples("kala_mnist", "train")


def test_read_ts_refuses_a_broken_file():
    with pytest.raises(ValueError, match="no @data line"):
        japanese_vowels.read_ts("@problemName x\n1,2:3,4:1\n")
    with pytest.raises(ValueError, match="line 2: 2 dimensions; expected 12"):
        japanese_vowels.read_ts("@data\n1,2:3,4:1\n")
