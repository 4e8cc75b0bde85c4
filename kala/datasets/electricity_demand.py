"""`kala_electricity_demand`: half-hourly electricity demand in England and Wales, summer 2000."""

import datetime

import numpy as np
import tensorflow_datasets as tfds

from kala.datasets import sources

START = datetime.datetime(2000, 6, 5)  # Monday 5 June 2000, 00:00.
STEP = datetime.timedelta(minutes=30)
STEPS_PER_DAY = 48
STEPS_PER_WEEK = 7 * STEPS_PER_DAY
# Twelve weeks in all: the first eight to train on, the next two to choose settings by, the last
# two to test on. Each split starts on a Monday at midnight.
SPLITS = {"train": (0, 8), "validation": (8, 10), "test": (10, 12)}

CITATION = """\
@article{taylor2003,
  author = {Taylor, James W.},
  title = {Short-term electricity demand forecasting using double seasonal exponential
           smoothing},
  journal = {Journal of the Operational Research Society},
  volume = {54},
  number = {8},
  pages = {799--805},
  year = {2003},
}"""


class KalaElectricityDemand(tfds.core.GeneratorBasedBuilder):
    """Half-hourly electricity demand in England and Wales, 5 June to 27 August 2000 (Taylor
    2003), as R's forecast package and pmdarima (`load_taylor`) ship it: 4,032 measurements
    in megawatts, with a daily (48 steps) and a weekly (336 steps) cycle."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The series split by week: train 8, validation 2, test 2."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict({
                "time": tfds.features.Text(doc="Start of the half hour, ISO 8601, local time"),
                "demand": tfds.features.Scalar(np.float32, doc="Demand, megawatts"),
            }),
            # A series: examples keep their time order.
            disable_shuffling=True,
            homepage="https://pkg.robjhyndman.com/forecast/reference/taylor.html",
            citation=CITATION,
            license="Data kindly provided by James W. Taylor (forecast package, GPL-3; "
                    "pmdarima, MIT)",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: pmdarima ships the series.
        demand = series()
        return {name: self._generate_examples(demand, first * STEPS_PER_WEEK,
                                              last * STEPS_PER_WEEK)
                for name, (first, last) in SPLITS.items()}

    def _generate_examples(self, demand, begin, end):
        for index in range(begin, end):
            time = (START + index * STEP).isoformat(timespec="minutes")
            yield index, {"time": time, "demand": np.float32(demand[index])}


def series():
    """The 4,032 measurements, in megawatts, from pmdarima."""
    datasets = sources.module("pmdarima.datasets", KalaElectricityDemand.name, "pmdarima")
    demand = np.asarray(datasets.load_taylor(as_series=False), dtype=np.float64)
    if demand.shape != (12 * STEPS_PER_WEEK,):
        raise ValueError(f"pmdarima's load_taylor returned shape {demand.shape}; "
                         f"{KalaElectricityDemand.name} expects ({12 * STEPS_PER_WEEK},)")
    return demand
