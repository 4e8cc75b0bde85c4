"""Forecasting a measured series: windows of the past, the next values, and the baselines to beat.

`Forecast` is a task (`kala.tasks.Task`): from the `window` values before a moment, predict the
`horizon` values after it. It trains on windows drawn at random from the training part of the
series and scores on every window of the part it is given to score on, chronologically after the
training part; the statistics that standardise the values come from the training part alone.
Errors are in the series' own units, by horizon (`errors`), and the same windows give the
baselines (`baselines`): the last value, the seasonal naive forecasts (the value one period
earlier) and a linear model of the window fitted by least squares on the training windows.

A model forecasts several steps ahead either directly (a head of `horizon` outputs) or
autoregressively: a one-step model fed its own forecasts (`kala.stepping.forecast`).

This module imports only `kala.checks` and `kala.tasks` from kala.
"""

import numpy as np
import tensorflow as tf

from kala import checks, tasks


class Forecast(tasks.Task):
    """Forecast the next `horizon` values of `series` from the `window` values before them.

    Args:
        series: the whole series, one value per step (1-D, finite).
        train_end: the training part is `series[:train_end]`; every training target lies in it.
        scored: `(begin, end)`: the forecasts scored start at each step of `series[begin:end]`
            whose `horizon` values all lie before `end`; their windows may reach back before
            `begin` (that past is known when the forecast is made). `begin >= train_end`.
        window: values a forecast reads.
        horizon: values it forecasts.
        periods: the series' seasonal periods, in steps, for the seasonal naive baselines.
        name: the task's name in results files.
        input_name: the model's input (and served input) name.

    The metric is the mean absolute error over a window's horizon, in the series' units; the
    training loss is the mean squared error of the standardised values. A measured series has
    no success criterion: training spends its budget.
    """

    metric_name = "mae"
    head = "sequence"
    success_threshold = 0.0

    def __init__(self, series, *, train_end, scored, window, horizon=1, periods=(),
                 name="forecast", input_name="history"):
        series = np.asarray(series, dtype=np.float64)
        if series.ndim != 1 or not np.all(np.isfinite(series)):
            raise ValueError(f"`series` must be 1-D and finite. Received shape {series.shape}"
                             + ("" if series.ndim != 1 else " holding NaN or infinity"))
        self.window = checks.integer("window", window, 2)
        self.horizon = checks.integer("horizon", horizon)
        self.train_end = checks.integer("train_end", train_end, self.window + self.horizon)
        begin, end = (checks.integer("scored begin", scored[0], self.window),
                      checks.integer("scored end", scored[1], 1))
        if not self.train_end <= begin < end <= len(series) or end - begin < self.horizon:
            raise ValueError(
                f"`scored=({begin}, {end})` must lie after the training part (train_end="
                f"{self.train_end}), inside the series ({len(series)} values), and hold at "
                f"least one horizon ({self.horizon})")
        self.periods = tuple(checks.integer("period", period) for period in periods)
        self.series = series
        self.begin, self.end = begin, end
        self.name = str(name)
        self._input_name = str(input_name)
        self.mean = float(series[:self.train_end].mean())
        self.std = float(max(series[:self.train_end].std(), 1e-12))
        self.origins = np.arange(begin, end - self.horizon + 1)  # Where each scored one starts.
        super().__init__(self.window, test_size=len(self.origins))

    def config(self):
        return {**super().config(), "window": self.window, "horizon": self.horizon,
                "train_end": self.train_end, "scored": [self.begin, self.end],
                "series_length": len(self.series)}

    @property
    def input_spec(self):
        return tf.TensorSpec([None, None, 1], tf.float32, name=self._input_name)

    @property
    def target_spec(self):
        return tf.TensorSpec([None, self.horizon], tf.float32, name="forecast")

    @property
    def statistics(self):
        """`(mean, std)` of the training part: `build_model`'s `input_scale` and
        `output_scale`, so that a model reads and forecasts the series' own units."""
        return self.mean, self.std

    @property
    def baseline(self):
        return float(self._last_value().mean())

    def _last_value(self):
        """The error by horizon of forecasting the value before each window, throughout."""
        return self.errors(np.repeat(self.series[self.origins - 1][:, None], self.horizon,
                                     axis=1))

    def windows(self, origins):
        """The inputs `(n, window, 1)` and targets `(n, horizon)` of forecasts made at
        `origins`."""
        origins = np.asarray(origins)
        inputs = self.series[origins[:, None] + np.arange(-self.window, 0)]
        targets = self.series[origins[:, None] + np.arange(self.horizon)]
        return inputs[..., None].astype(np.float32), targets.astype(np.float32)

    def scored_windows(self):
        """Every scored forecast's inputs and targets, in time order."""
        return self.windows(self.origins)

    @property
    def serving_options(self):
        return {"example_inputs": self.windows(self.origins[:3])[0]}

    def make_batch(self, rng, batch_size):
        origins = rng.integers(self.window, self.train_end - self.horizon + 1, size=batch_size)
        return self.windows(origins)

    def test_dataset(self):
        inputs, targets = self.scored_windows()
        return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(
            self.test_batch_size).cache()

    def loss(self, targets, predictions):
        return tf.reduce_mean(tf.square((targets - predictions) / self.std))

    def metric(self, targets, predictions):
        return tf.reduce_mean(tf.abs(targets - predictions), axis=-1)

    def errors(self, forecasts):
        """The mean absolute error at each horizon (`(horizon,)`) of `forecasts`, one row of
        `horizon` values per scored window."""
        forecasts = np.asarray(forecasts, dtype=np.float64)
        targets = self.scored_windows()[1]
        if forecasts.shape != targets.shape:
            raise ValueError(f"`forecasts` must have one row of {self.horizon} values per scored "
                             f"window, shape {targets.shape}. Received shape {forecasts.shape}")
        return np.abs(targets - forecasts).mean(axis=0)

    def baselines(self):
        """The error by horizon of each forecast that learns nothing or little, on the scored
        windows: "last value", "seasonal naive (P)" for each period P (the value P steps
        earlier, or a whole number of periods earlier where P is shorter than the horizon),
        and "linear": a least-squares map from the window to the horizon, fitted on every
        training window."""
        steps = self.origins[:, None] + np.arange(self.horizon)
        results = {"last value": self._last_value()}
        for period in self.periods:
            back = period * ((np.arange(self.horizon) // period) + 1)  # Always in the past.
            results[f"seasonal naive ({period})"] = self.errors(self.series[steps - back])
        train_origins = np.arange(self.window, self.train_end - self.horizon + 1)
        inputs, targets = self.windows(train_origins)
        design = np.c_[(inputs[..., 0] - self.mean) / self.std, np.ones(len(inputs))]
        weights, *_ = np.linalg.lstsq(design, (targets - self.mean) / self.std, rcond=None)
        scored = self.scored_windows()[0][..., 0]
        linear = np.c_[(scored - self.mean) / self.std, np.ones(len(scored))] @ weights
        results["linear"] = self.errors(linear * self.std + self.mean)
        return results
