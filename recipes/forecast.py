"""Forecasting a measured series: tomorrow's electricity demand, half an hour at a time.

What it shows: the simplest use of an RNN on real data. The series is the electricity demand of
England and Wales every half hour from 5 June to 27 August 2000 (Taylor 2003), in megawatts; it
rises every morning and falls every night, and weekends are lower. From the last two days
(96 values) a network forecasts the next value, or the next day (48 values), in two ways:
directly, with a head of 48 outputs, or autoregressively, a one-step model fed its own forecasts
one step at a time (the `step` machinery of kala.stepping, which the export's `forecast`
signature runs too). The first eight weeks train, the next two choose the learning rates
(--validation), the last two score; the values are standardised with the statistics of the
training weeks alone, inside the model, so it reads and forecasts megawatts.

A forecast has to beat the ones that learn nothing or little, on the same windows: the last
value, the seasonal naive forecasts (the value a day, or a week, earlier) and a linear model of
the window fitted by least squares. The recipe trains SimpleRNN, LSTM and GRU with the same
budget, each at its own learning rate (recipes/tuned.py), over several seeds, and tabulates the
mean absolute error by horizon. The data is kala's TFDS dataset `kala_electricity_demand`
(kala.datasets), built offline from the series pmdarima ships: `pip install -e '.[data]'`.

Run it:
    python recipes/forecast.py            # 3 cells x 2 ways x 3 seeds: about 5 minutes
    python recipes/forecast.py --export   # and publish the one-step LSTM with `forecast`
    python recipes/forecast.py --smoke    # a tiny sweep, for the tests

What you should see (2-core CPU): a line per run as it ends, then a row per model and baseline:
the error half an hour ahead, three hours ahead, a day ahead and over the whole day, and a
figure of the forecasts against the truth and of the error by horizon (forecast.png). In
results/forecast/ no RNN beats the linear model half an hour ahead, while a day ahead the
direct LSTM halves its error; the value a week earlier beats them all (docs/real_sequences.md).
"""

import dataclasses
import os
import statistics
import sys
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras
import numpy as np
import tensorflow as tf

import kala
import kala.datasets
import kala.provenance
import kala.series
import output
import sweep
import tuned

RECIPE = "forecast"
DATASET = "kala_electricity_demand"
Cell = typing.Literal[kala.models.VARIANTS]
Rates = typing.Literal["tuned"] | tuple[float, ...]
WAYS = ("direct", "one_step")  # A head of `horizon` outputs, or one output fed back.
DAY, WEEK = 48, 336  # The series' periods, in half hours.
# The reported horizons: half an hour, three hours, a day ahead.
SHOWN = (1, 6, 48)


@dataclasses.dataclass
class Settings:
    cells: tuple[Cell, ...] = ("simple_rnn", "lstm", "gru")  # the cells compared
    seeds: int = 3  # seeds per (cell, way)
    first_seed: int = 0  # seeds are FIRST_SEED, FIRST_SEED + 1, ...
    window: int = 96  # values a forecast reads (96: two days)
    horizon: int = 48  # values forecast (48: a day)
    units: int = 32  # size of every cell's state
    steps: int = 1500  # budget per run, in steps (batches of training windows)
    batch_size: int = 32  # windows per step
    learning_rate: Rates = "tuned"  # tuned: each cell's own (tuned.py); or rates for every one
    clipnorm: float = 1.0  # each gradient is clipped to this norm
    eval_every: int = 250  # steps between evaluations on the scored weeks
    validation: bool = False  # score on the two validation weeks, not on the two test weeks
    jobs: int = 2  # runs trained at the same time, each in a process with its share of the cores
    data_dir: str = ""  # where TFDS keeps prepared datasets (default: ~/tensorflow_datasets)
    smoke: bool = False  # a tiny sweep to check that everything works
    report_only: bool = False  # train nothing: tabulate DIR/forecast/summary.json again
    export: bool = False  # export the one-step LSTM (or first cell) of the first seed
    saved_models: str = "saved_models"  # TF Serving model base path for --export
    model_name: str = ""  # name to export the model under (default: the recipe's name)
    results: str = "runs"  # writes summary.json, summary.md and forecast.png into DIR/forecast/


SMOKE = {"cells": ("lstm",), "seeds": 1, "units": 8, "steps": 20, "window": 24,
         "horizon": 6, "eval_every": 10, "jobs": 1}


def load(settings):
    """The whole series, in megawatts, and where its parts begin: train, validation, test."""
    parts = [np.array([example["demand"] for example in kala.datasets.examples(
        DATASET, split, settings.data_dir or None)]) for split in ("train", "validation", "test")]
    starts = np.cumsum([0] + [len(part) for part in parts])
    return np.concatenate(parts), starts


def make_task(settings, horizon, loaded=None):
    """The task at `horizon`: train on the training weeks, score on the validation or test
    weeks (of `loaded`, the series and its parts' starts, if read already)."""
    series, starts = loaded or load(settings)
    scored = (starts[1], starts[2]) if settings.validation else (starts[2], starts[3])
    return kala.series.Forecast(series, train_end=int(starts[1]), scored=tuple(map(int, scored)),
                                window=settings.window, horizon=horizon, periods=(DAY, WEEK),
                                name="electricity_demand")


def export_cell(settings):
    return "lstm" if "lstm" in settings.cells else settings.cells[0]


def train_run(settings, cell, way, learning_rate, seed):
    """Trains one (cell, way, learning rate, seed) and returns its row of summary.json."""
    # Data: the forecast of the whole horizon, or of the next value only.
    loaded = load(settings)
    scored = make_task(settings, settings.horizon, loaded)
    task = scored if way == "direct" else make_task(settings, 1, loaded)
    # Model: one recurrent layer over the window; the model standardises the megawatts it reads
    # and turns its linear output back into megawatts.
    keras.utils.set_random_seed(seed)
    model = kala.build_model(
        **kala.models.variant(cell, task.max_length), units=settings.units,
        input_scale=task.statistics, output_scale=task.statistics,
        name=f"{RECIPE}_{way}_{cell.replace('+', '_')}", **task.model_options)
    # Train: the whole budget.
    result = kala.train(
        model, task, steps=settings.steps, batch_size=settings.batch_size,
        learning_rate=learning_rate, clipnorm=settings.clipnorm, seed=seed,
        eval_every=settings.eval_every,
        on_progress=output.Heartbeat(f"{cell} {way} lr {learning_rate:g} seed {seed}", task))
    # Forecast the whole horizon from every scored window: at once, or a step at a time.
    inputs = scored.scored_windows()[0]
    if way == "direct":
        forecasts = np.asarray(model(inputs, training=False))
    else:
        stepper = kala.stepping.Stepper.of(model)

        @tf.function
        def rollout(history):
            return kala.stepping.forecast(stepper, history, settings.horizon)

        forecasts = rollout(tf.constant(inputs)).numpy()
    errors = scored.errors(forecasts)
    output.save_model(model, output.model_path(
        settings, RECIPE, f"{cell}-{way}-lr{learning_rate:g}-seed{seed}"), task)
    if (settings.export and way == "one_step" and cell == export_cell(settings)
            and seed == settings.first_seed):
        output.export(model, task, settings, RECIPE, forecast=(settings.window, settings.horizon))
    return {"cell": cell, "way": way, "learning_rate": learning_rate, "seed": seed,
            "mae_by_horizon": [round(float(error), 2) for error in errors],
            "mae": round(float(errors.mean()), 2), "first_forecast": forecasts[0].tolist(),
            "seconds": round(result.seconds, 2), "parameters": model.count_params()}


def describe(row):
    errors = row["mae_by_horizon"]
    return (f"{row['cell']} {row['way']} lr {row['learning_rate']:g} seed {row['seed']}: MAE "
            f"{errors[0]:,.0f} MW half an hour ahead, {errors[-1]:,.0f} MW at the end of the "
            f"horizon, {row['mae']:,.0f} MW over it; {row['seconds']:.0f} s")


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    out_dir = os.path.join(settings.results, RECIPE)
    if settings.report_only:
        summary = sweep.load_summary(out_dir, RECIPE)
        # The windows the sweep scored, for the figure.
        settings = dataclasses.replace(settings, **{
            name: summary["config"][name] for name in ("window", "horizon", "validation")})
        with flags.bad_arguments(), flags.missing_data():
            report(summary, out_dir, make_task(settings, settings.horizon))
        return
    untuned = [f"{cell} {way}" for cell in settings.cells for way in WAYS
               if (cell, way) not in tuned.FORECAST]
    if settings.learning_rate == "tuned" and untuned:
        flags.fail(f"--learning-rate tuned: no tuned rate for {', '.join(untuned)}; give rates "
                   "with --learning-rate")
    if settings.export:
        output.check_export_target(settings, RECIPE)
    with flags.bad_arguments(), flags.missing_data():
        task = make_task(settings, settings.horizon)  # Prepares the dataset before the workers.
    plan = [(settings, cell, way, learning_rate, seed) for cell in settings.cells for way in WAYS
            for learning_rate in (settings.learning_rate if settings.learning_rate != "tuned"
                                  else [tuned.FORECAST[cell, way]])
            for seed in range(settings.first_seed, settings.first_seed + settings.seeds)]
    scored = "validation" if settings.validation else "test"
    print(f"{RECIPE}: {len(plan)} runs ({', '.join(settings.cells)}; direct and one step; "
          f"{settings.seeds} seed{'s' if settings.seeds > 1 else ''}; {settings.steps:,} steps "
          f"of {settings.batch_size}); windows of {settings.window} values, {settings.horizon} "
          f"forecast, {task.test_size} {scored} windows scored, "
          f"{min(settings.jobs, len(plan))} at a time", flush=True)
    summary = {"recipe": RECIPE, "command": " ".join(["python", *sys.argv]),
               "config": dataclasses.asdict(settings), "dataset": DATASET, "scored_on": scored,
               "baselines": {name: [round(float(error), 2) for error in errors]
                             for name, errors in task.baselines().items()},
               "machine": kala.provenance.machine(), "wall_seconds": 0, "runs": []}
    sweep.run(train_run, plan, summary, out_dir, jobs=settings.jobs, describe=describe)
    report(summary, out_dir, task)


def _groups(runs):
    groups = {}
    for row in runs:
        groups.setdefault((row["cell"], row["way"], row["learning_rate"]), []).append(row)
    return groups


def markdown(summary):
    """One row per model (median over seeds, and the range half an hour ahead) and per baseline:
    the error at the SHOWN horizons and over the whole horizon, in megawatts."""
    horizon = summary["config"]["horizon"]
    shown = [h for h in SHOWN if h <= horizon]
    lines = ["| forecast | learning rate | seeds | "
             + " | ".join(f"MAE {h} ahead" for h in shown) + " | MAE over the horizon |",
             "|---|---|---:|" + "---:|" * (len(shown) + 1)]
    for (cell, way, learning_rate), group in _groups(summary["runs"]).items():
        cells = []
        for h in shown:
            errors = [row["mae_by_horizon"][h - 1] for row in group]
            spread = f" ({min(errors):,.0f}–{max(errors):,.0f})" if len(group) > 1 else ""
            cells.append(f"{statistics.median(errors):,.0f}{spread}")
        mean = statistics.median(row["mae"] for row in group)
        lines.append(f"| {cell}, {way.replace('_', ' ')} | {learning_rate:g} | {len(group)} | "
                     + " | ".join(cells) + f" | {mean:,.0f} |")
    for name, errors in summary["baselines"].items():
        lines.append(f"| {name} | — | — | " + " | ".join(f"{errors[h - 1]:,.0f}" for h in shown)
                     + f" | {np.mean(errors):,.0f} |")
    return "\n".join(lines) + "\n"


def plot(summary, task, path):
    """Left: the day after the first scored window, the truth against each model's forecast
    (first seed); right: the error by horizon, each model's median over seeds and each
    baseline."""
    figure, (days, by_horizon) = output.new_figure((13, 5), columns=2)
    horizon = summary["config"]["horizon"]
    inputs, targets = task.scored_windows()
    steps = np.arange(-task.window, horizon)
    days.plot(steps, np.r_[inputs[0, :, 0], targets[0]], color="black", linewidth=2,
              label="measured")
    for (cell, way, _), group in _groups(summary["runs"]).items():
        first = min(group, key=lambda row: row["seed"])
        days.plot(np.arange(horizon), first["first_forecast"], label=f"{cell}, {way}")
    days.axvline(0, color="grey", linestyle=":")
    days.set_xlabel("half hours from the forecast")
    days.set_ylabel("demand, MW")
    days.legend(fontsize="x-small")
    for (cell, way, _), group in _groups(summary["runs"]).items():
        median = np.median([row["mae_by_horizon"] for row in group], axis=0)
        by_horizon.plot(np.arange(1, horizon + 1), median, label=f"{cell}, {way}")
    for name, errors in summary["baselines"].items():
        by_horizon.plot(np.arange(1, horizon + 1), errors, linestyle="--", label=name)
    by_horizon.set_xlabel("half hours ahead")
    by_horizon.set_ylabel("mean absolute error, MW")
    by_horizon.set_ylim(0, None)
    by_horizon.legend(fontsize="x-small")
    figure.suptitle("Electricity demand, England and Wales, August 2000: a day forecast "
                    f"from the {task.window} half hours before it ({summary['scored_on']} weeks)")
    output.save_figure(figure, path)


def report(summary, out_dir, task):
    """Writes summary.md and forecast.png from the runs of `summary` and prints the table."""
    text = markdown(summary)
    output.write_text(os.path.join(out_dir, "summary.md"), text)
    plot(summary, task, os.path.join(out_dir, f"{RECIPE}.png"))
    print()
    print(text, end="")
    print(f"written to {out_dir}/summary.json, summary.md and {RECIPE}.png; the sweep took "
          f"{summary['wall_seconds'] / 60:.1f} min")
    if summary["scored_on"] == "validation":  # A search: name each model's best rate.
        best = sweep.best_rows(summary["runs"], lambda row: (row["cell"], row["way"]),
                               lambda row: row["mae"])
        print("lowest validation MAE over the horizon: " + ", ".join(
            f"{cell} {way} at {row['learning_rate']:g}" for (cell, way), row in best.items()))


if __name__ == "__main__":
    flags.run(main)
