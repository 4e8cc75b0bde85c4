"""The essay's variants compared: which cells, and which initializations, bridge a long gap?

What it shows: the essay ends with variants of the LSTM — peephole connections, coupled forget
and input gates, the GRU — and asks which is best; Greff et al. (2015, "LSTM: A Search Space
Odyssey") trained thousands of them and found none clearly better than the vanilla LSTM. This
recipe trains every cell of kala.cells, and the initializations proposed for long lags, on the
long-gap task of recipes/long_gap.py ("I grew up in France … I speak fluent French", with
distractors), with the same budget and several seeds, and reports how often each solved it and
how many sequences it needed.

The contestants, in the essay's order:
    simple_rnn              the plain RNN
    simple_rnn+irnn         ReLU and an identity recurrent kernel (Le et al. 2015)
    lstm1997                the original LSTM, without a forget gate (Hochreiter & Schmidhuber)
    lstm+zero_forget_bias   the LSTM with its forget gate's bias at 0
    lstm                    the LSTM as Keras builds it, forget bias 1 (Jozefowicz et al. 2015)
    lstm+chrono             chrono initialization (Tallec & Ollivier 2018)
    peephole_lstm           gates that look at the cell state (Gers & Schmidhuber 2000)
    coupled_lstm            the input gate is 1 - the forget gate
    gru                     the GRU (Cho et al. 2014)

Each trains at its own learning rate, chosen by the same grid search as in long_gap.py (see
recipes/tuned.py): no variant runs at a rate tuned for another. This is recipes/long_gap.py with
other settings: the same task, flags, runs and summary.json.

Run it:
    python recipes/lstm_variants.py              # gap 30, 3 seeds: about 4 minutes
    python recipes/lstm_variants.py --full       # gaps 30 and 100: 30 minutes to an hour
    python recipes/lstm_variants.py --smoke      # a tiny sweep, for the tests

What you should see (2-core CPU): a line per run as it ends, then a row per variant. In the
--full run of docs/findings.md chrono solved gap 30 in a median of 6,400 sequences, the IRNN and
the coupled LSTM in 12,800, the default LSTM in 19,200, the SimpleRNN in 147,200; at gap 100 the
SimpleRNN and the 1997 LSTM, without a forget gate, solved none, and chrono needed 12,800.
"""

import dataclasses
import os
import sys
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras

import kala
import kala.provenance
import output
import sweep
import tuned

RECIPE = "lstm_variants"
Cell = typing.Literal[kala.models.VARIANTS]
Rates = typing.Literal["tuned"] | tuple[float, ...]
Task = typing.Literal["long_gap", "adding", "copy"]
# The contestants, in the essay's order (above).
CONTESTANTS = ("simple_rnn", "simple_rnn+irnn", "lstm1997", "lstm+zero_forget_bias", "lstm",
               "lstm+chrono", "peephole_lstm", "coupled_lstm", "gru")


@dataclasses.dataclass
class Settings:
    task: Task = "long_gap"  # the long-gap task, or adding or copy with the gap as their T
    cells: tuple[Cell, ...] = CONTESTANTS  # the variants: a cell, or a cell+initialization
    gaps: tuple[int, ...] = (30,)  # gaps (sequence lengths for adding and copy)
    seeds: int = 3  # seeds per (variant, gap)
    first_seed: int = 0  # seeds are FIRST_SEED, FIRST_SEED + 1, ...
    filler: typing.Literal["words", "distractors"] = "distractors"  # long_gap: the other text
    position: typing.Literal["random", "fixed"] = "random"  # long_gap: where the country sits
    units: int = 64  # size of every cell's state (units are matched, not parameter counts)
    steps: int = 3000  # budget per run, in steps
    batch_size: int = 64  # sequences per step
    learning_rate: Rates = "tuned"  # tuned: each variant's own (tuned.py); or rates for every one
    clipnorm: float = 1.0  # each gradient is clipped to this norm
    eval_every: int = 100  # steps between evaluations on the test split
    jobs: int = 2  # runs trained at the same time, each in a process with its share of the cores
    full: bool = False  # the complete comparison: gaps 30 and 100, 4,000 steps
    smoke: bool = False  # a tiny sweep to check that everything works
    report_only: bool = False  # train nothing: tabulate DIR/lstm_variants/summary.json again
    results: str = "runs"  # writes summary.json, summary.md and lstm_variants.png there


FULL = {"gaps": (30, 100), "steps": 4000}
SMOKE = {"cells": ("lstm1997", "lstm+chrono", "peephole_lstm", "coupled_lstm"), "gaps": (3,),
         "seeds": 1, "units": 8, "steps": 20, "batch_size": 8, "eval_every": 10, "jobs": 1}


def make_task(settings, gap):
    """The task at one gap: for adding and copy, the gap is the sequence length."""
    if settings.task == "long_gap":
        return kala.tasks.LongGap(gap, filler=settings.filler, position=settings.position,
                                  test_size=512)
    if settings.task == "adding":
        return kala.tasks.AddingProblem(gap, test_size=512)
    return kala.tasks.CopyMemory(gap, test_size=512)


def train_run(settings, variant, gap, learning_rate, seed):
    """Trains one (variant, gap, learning rate, seed) and returns its row of summary.json."""
    # Data: the task at this gap; the seed fixes the training batches, so every variant sees
    # the same sequences.
    task = make_task(settings, gap)
    # Model: the same embedding or input, units and head for every variant.
    keras.utils.set_random_seed(seed)
    model = kala.build_model(
        **kala.models.variant(variant, task.max_length), units=settings.units,
        **task.model_options)
    # Train: until solved or out of budget, saying where a long run is every minute.
    result = kala.train(
        model, task, steps=settings.steps, batch_size=settings.batch_size,
        learning_rate=learning_rate, clipnorm=settings.clipnorm, seed=seed,
        eval_every=settings.eval_every,
        on_progress=output.Heartbeat(f"{variant} gap {gap} lr {learning_rate:g} seed {seed}",
                                     task))
    output.save_model(model, output.model_path(
        settings, RECIPE, f"{variant}-gap{gap}-lr{learning_rate:g}-seed{seed}"), task)
    return {
        "cell": variant, "gap": gap, "learning_rate": learning_rate, "seed": seed,
        "solved": result.solved, "sequences_seen": result.sequences_seen,
        "metric": result.metric, "baseline": result.baseline,
        "seconds": round(result.seconds, 2), "parameters": model.count_params(),
    }


def describe(row):
    outcome = (f"solved after {row['sequences_seen']:,} sequences" if row["solved"]
               else "not solved")
    return (f"{row['cell']} gap {row['gap']} lr {row['learning_rate']:g} seed {row['seed']}: "
            f"{outcome}; {row['metric_name']} {row['metric']:.3f} (chance {row['baseline']:.3f}); "
            f"{row['seconds']:.0f} s")


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE, full=FULL)
    out_dir = os.path.join(settings.results, RECIPE)
    if settings.report_only:
        summary = sweep.load_summary(out_dir, RECIPE)
    else:
        summary = run_sweep(settings, out_dir)
    report(summary, out_dir)


def run_sweep(settings, out_dir):
    """Trains every (variant, gap, learning rate, seed) of `settings` and returns the summary."""
    untuned = [cell for cell in settings.cells if cell not in tuned.TUNED_LEARNING_RATES]
    if settings.learning_rate == "tuned" and untuned:
        flags.fail(f"--learning-rate tuned: no tuned rate for {', '.join(untuned)}; give rates "
                   "with --learning-rate")
    with flags.bad_arguments():
        tasks = {gap: make_task(settings, gap) for gap in settings.gaps}
    plan = [(settings, cell, gap, learning_rate, seed)
            for gap in settings.gaps for cell in settings.cells
            for learning_rate in (settings.learning_rate if settings.learning_rate != "tuned"
                                  else [tuned.TUNED_LEARNING_RATES[cell]])
            for seed in range(settings.first_seed, settings.first_seed + settings.seeds)]
    print(f"{RECIPE}: {len(plan)} runs ({', '.join(settings.cells)}; gaps "
          f"{', '.join(map(str, settings.gaps))}; {settings.seeds} "
          f"seed{'s' if settings.seeds > 1 else ''}; {settings.steps:,} steps of "
          f"{settings.batch_size}), {min(settings.jobs, len(plan))} at a time", flush=True)
    metric_name = tasks[settings.gaps[0]].metric_name
    summary = {"recipe": RECIPE, "command": " ".join(["python", *sys.argv]),
               "config": dataclasses.asdict(settings), "metric_name": metric_name,
               "machine": kala.provenance.machine(), "wall_seconds": 0, "runs": []}
    sweep.run(train_run, plan, summary, out_dir, jobs=settings.jobs,
              describe=lambda row: describe({**row, "metric_name": metric_name}))
    return summary


def _lines(table):
    """The variants of a summarised table, in order: (cell, learning rate) and its label."""
    keys = list(dict.fromkeys((row["cell"], row["learning_rate"]) for row in table))
    several_rates = len({cell for cell, _ in keys}) < len(keys)
    return [(key, f"{key[0]} (lr {key[1]:g})" if several_rates else key[0]) for key in keys]


def plot(runs, table, path):
    """Left, the share of seeds that solved the task, per variant and gap; right, the sequences
    each solved run needed (dots) and their median (bar, its value written on it) on a linear
    axis, so that the fastest variant's bar is as short as it should look."""
    figure, (solved_axes, sequences_axes) = output.new_figure((13, 5), columns=2)
    lines = _lines(table)
    rows = {(row["cell"], row["learning_rate"], row["gap"]): row for row in table}
    gaps = sorted({row["gap"] for row in table})
    width = 0.8 / len(gaps)
    for index, gap in enumerate(gaps):
        offset = (index - (len(gaps) - 1) / 2) * width
        shares, medians = [], []
        for position, (key, _) in enumerate(lines):
            row = rows.get((*key, gap))
            shares.append(row["success_rate"] if row else 0)
            medians.append((row and row["median_sequences_seen"]) or 0)
            solved = [run["sequences_seen"] for run in runs if run["solved"]
                      and (run["cell"], run["learning_rate"], run["gap"]) == (*key, gap)]
            sequences_axes.scatter([position + offset] * len(solved), solved, color="black",
                                   s=8, zorder=3, label="one seed" if solved else None)
            if row and not solved:
                sequences_axes.annotate("none solved", (position + offset, 0.02),
                                        xycoords=("data", "axes fraction"), ha="center",
                                        va="bottom", rotation=90, fontsize="x-small")
        positions = [position + offset for position in range(len(lines))]
        shares_bars = solved_axes.bar(positions, shares, width, label=f"gap {gap}")
        solved_axes.bar_label(shares_bars, labels=["none" if share == 0 else ""
                                                   for share in shares], fontsize="x-small")
        bars = sequences_axes.bar(positions, medians, width, label=f"gap {gap}: median")
        sequences_axes.bar_label(bars, labels=[f"{value / 1000:,.0f}k" if value else ""
                                               for value in medians],
                                 fontsize="x-small", padding=4)
    for axes in (solved_axes, sequences_axes):
        axes.set_xticks(range(len(lines)))
        axes.set_xticklabels([label for _, label in lines], rotation=35, ha="right",
                             fontsize="small")
        handles, labels = axes.get_legend_handles_labels()
        unique = dict(zip(labels, handles))  # "one seed" once.
        # Above the bars, outside the data.
        axes.legend(unique.values(), unique.keys(), loc="lower left", bbox_to_anchor=(0, 1.01),
                    ncol=len(unique), fontsize="small", frameon=False)
    solved_axes.set_ylim(0, 1.05)
    solved_axes.set_ylabel("share of seeds that solved the task")
    sequences_axes.set_ylim(0, None)
    sequences_axes.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    sequences_axes.set_ylabel("sequences until solved")
    figure.suptitle('The variants on "I grew up in France … I speak fluent French": how many '
                    'seeds solved it (left), and how fast (right; fewer is faster)')
    output.save_figure(figure, path)


def markdown(table, metric_name):
    """One row per variant (of `sweep.summarise`'s table): its learning rate and parameters,
    then for each gap how many seeds solved the task and the median sequences they needed (or,
    where none did, the median final metric)."""
    rows = {(row["cell"], row["learning_rate"], row["gap"]): row for row in table}
    gaps = sorted({row["gap"] for row in table})
    lines = ["| variant | learning rate | parameters | "
             + " | ".join(f"gap {gap}: solved (median sequences)" for gap in gaps) + " |",
             "|---|---|---|" + "---|" * len(gaps)]
    for (cell, learning_rate), label in _lines(table):
        cells = []
        for gap in gaps:
            row = rows.get((cell, learning_rate, gap))
            if row is None:
                cells.append("—")
                continue
            solved = round(row["success_rate"] * row["seeds"])
            detail = (f"{row['median_sequences_seen']:,.0f}" if solved
                      else f"final {metric_name} {row['median_metric']:.2f}")
            cells.append(f"{solved}/{row['seeds']} ({detail})")
        parameters = next(row["parameters"] for row in table if row["cell"] == cell)
        lines.append(f"| {label} | {learning_rate:g} | {parameters:,} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(summary, out_dir):
    """Writes summary.md and lstm_variants.png from the runs of `summary` and prints the table."""
    table = sweep.summarise(summary["runs"])
    text = markdown(table, summary["metric_name"])
    output.write_text(os.path.join(out_dir, "summary.md"), text)
    plot(summary["runs"], table, os.path.join(out_dir, f"{RECIPE}.png"))
    print()
    print(text, end="")
    print(f"written to {out_dir}/summary.json, summary.md and {RECIPE}.png"
          + (f"; the sweep took {summary['wall_seconds'] / 60:.1f} min"
             if summary.get("wall_seconds") else ""))


if __name__ == "__main__":
    flags.run(main)
