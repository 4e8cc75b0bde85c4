r"""The long-term dependency problem, measured: success against the gap, for each cell.

What it shows: the essay's central claim. "I grew up in France … I speak fluent French": when the
gap between the country and the language is short, a plain RNN connects them; as it grows, the
claim goes, a plain RNN can no longer learn the connection while an LSTM still can
("Understanding LSTM Networks", section "The Problem of Long-Term Dependencies"). This recipe
trains every cell at every gap with several seeds and the same budget, and reports per (cell,
gap) how often the cell solved the task, how many sequences it needed, and how long it took.

The task (kala.tasks.LongGap): "i grew up in <country> ." sits at a random place among other
text, some of which says "we visited <another country> ."; at the end comes "i speak fluent" and
the model names the language. Between GAP and GAP + GAP/2 words separate the country from the
question. `--position fixed` puts the country at a fixed distance from the end instead, which a
plain RNN can exploit without remembering anything: docs/findings.md shows what that does.

Each cell trains at its own learning rate, chosen for it by the same grid search (`--learning-rate
tuned`, the default; see recipes/tuned.py). Units are matched, not parameter counts: the
table lists the parameters. Variants of the LSTM run the same sweep in recipes/lstm_variants.py.

Run it:
    python recipes/long_gap.py                       # gaps 10 and 50: about 5 minutes
    python recipes/long_gap.py --full                # gaps 10 to 300: about an hour
    python recipes/long_gap.py --task adding         # the same sweep on the adding problem
    python recipes/long_gap.py --gaps 30,100 --seeds 1 --first-seed 100 --steps 3000 \
        --learning-rate 1e-3,3e-3,1e-2 --results results/tuning   # the learning-rate search
    python recipes/long_gap.py --smoke               # a tiny sweep, for the tests

What you should see (2-core CPU, about 5 minutes): a line per run as it ends, a line every 15 s
for a run still going, then the table. The LSTM and the GRU solve both gaps in every seed; the
SimpleRNN solves gap 10 and no seed at gap 50 (docs/findings.md). The full sweep shows it
failing in every seed from 100 words on, while the GRU still connects country and language in
every seed and the LSTM in most, near the end of its budget.
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

RECIPE = "long_gap"
Cell = typing.Literal[kala.models.VARIANTS]
Rates = typing.Literal["tuned"] | tuple[float, ...]
Task = typing.Literal["long_gap", "adding", "copy"]


@dataclasses.dataclass
class Settings:
    task: Task = "long_gap"  # the long-gap task, or adding or copy with the gap as their T
    cells: tuple[Cell, ...] = ("simple_rnn", "lstm", "gru")  # the cells to compare
    gaps: tuple[int, ...] = (10, 50)  # gaps (sequence lengths for adding and copy)
    seeds: int = 3  # seeds per (cell, gap)
    first_seed: int = 0  # seeds are FIRST_SEED, FIRST_SEED + 1, ...
    filler: typing.Literal["words", "distractors"] = "distractors"  # long_gap: the other text
    position: typing.Literal["random", "fixed"] = "random"  # long_gap: where the country sits
    units: int = 64  # size of every cell's state (units are matched, not parameter counts)
    steps: int = 3000  # budget per run, in steps
    batch_size: int = 64  # sequences per step
    learning_rate: Rates = "tuned"  # tuned: each cell's own (tuned.py); or rates for every cell
    clipnorm: float = 1.0  # each gradient is clipped to this norm
    eval_every: int = 100  # steps between evaluations on the test split
    jobs: int = 2  # runs trained at the same time, each in a process with its share of the cores
    full: bool = False  # the complete sweep: gaps 10 to 300, 3 seeds, 4,000 steps
    smoke: bool = False  # a tiny sweep to check that everything works
    report_only: bool = False  # train nothing: tabulate DIR/long_gap/summary.json again
    results: str = "runs"  # writes summary.json, summary.md and long_gap.png into DIR/long_gap/


FULL = {"gaps": (10, 30, 100, 300), "seeds": 3, "steps": 4000}
SMOKE = {"cells": ("simple_rnn", "lstm"), "gaps": (2, 4), "seeds": 1, "units": 8, "steps": 20,
         "batch_size": 8, "eval_every": 10, "jobs": 1}


def make_task(settings, gap):
    """The task at one gap: for adding and copy, the gap is the sequence length."""
    if settings.task == "long_gap":
        return kala.tasks.LongGap(gap, filler=settings.filler, position=settings.position,
                                  test_size=512)
    if settings.task == "adding":
        return kala.tasks.AddingProblem(gap, test_size=512)
    return kala.tasks.CopyMemory(gap, test_size=512)


def train_run(settings, variant, gap, learning_rate, seed):
    """Trains one (cell, gap, learning rate, seed) and returns its row of summary.json."""
    # Data: the task at this gap; the seed fixes the training batches, so every cell sees the
    # same sequences.
    task = make_task(settings, gap)
    # Model: the same embedding or input, units and head for every cell.
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
    """Trains every (cell, gap, learning rate, seed) of `settings` and returns the summary."""
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


def markdown(table, metric_name):
    lines = [f"| cell | learning rate | parameters | gap | solved | median sequences until "
             f"solved | median final {metric_name} (chance) | median seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table:
        sequences = (f"{row['median_sequences_seen']:,.0f}"
                     if row["median_sequences_seen"] is not None else "—")
        lines.append(
            f"| {row['cell']} | {row['learning_rate']:g} | {row['parameters']:,} | {row['gap']} "
            f"| {row['success_rate']:.0%} of {row['seeds']} | {sequences} | "
            f"{row['median_metric']:.3f} ({row['baseline']:.3f}) | {row['median_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(table, path, title, metric_name):
    """Left, the share of seeds that solved the task against the gap; right, the median final
    metric with chance marked. Log gap axis, one line per cell (and learning rate)."""
    from matplotlib import ticker

    figure, (solved_axes, metric_axes) = output.new_figure((11, 4), columns=2)
    lines = dict.fromkeys((row["cell"], row["learning_rate"]) for row in table)
    several_rates = len({cell for cell, _ in lines}) < len(lines)
    for index, (cell, learning_rate) in enumerate(lines):
        rows = sorted((row for row in table
                       if (row["cell"], row["learning_rate"]) == (cell, learning_rate)),
                      key=lambda row: row["gap"])
        # Lines that coincide stay visible: each later one is thinner, dashed, with a smaller
        # marker, and drawn a little to the side of the gap it stands for.
        style = {"label": f"{cell} (lr {learning_rate:g})" if several_rates else cell,
                 "marker": "os^vD<>p"[index % 8], "markersize": max(4, 9 - 2 * index),
                 "linewidth": max(1, 3 - index), "linestyle": "-" if index == 0 else "--"}
        beside = 1.04 ** (index - (len(lines) - 1) / 2)
        gaps = [row["gap"] * beside for row in rows]
        solved_axes.plot(gaps, [row["success_rate"] for row in rows], **style)
        metric_axes.plot(gaps, [row["median_metric"] for row in rows], **style)
    gaps = sorted({row["gap"] for row in table})
    solved_axes.axhline(0, color="grey", linestyle="--",
                        label="chance (guessing never solves it)")
    metric_axes.axhline(table[0]["baseline"], color="grey", linestyle="--",
                        label="chance (a model that remembers nothing)")
    solved_axes.set_ylim(-0.05, 1.05)
    solved_axes.set_ylabel("share of seeds that solved the task")
    highest = max([table[0]["baseline"], *(row["median_metric"] for row in table)])
    metric_axes.set_ylim(-0.04 * highest, 1.1 * highest)
    metric_axes.set_ylabel(f"median final test {metric_name}")
    for axes in (solved_axes, metric_axes):
        axes.set_xscale("log")
        axes.set_xticks(gaps)
        axes.xaxis.set_major_formatter(ticker.ScalarFormatter())
        axes.xaxis.set_minor_locator(ticker.NullLocator())
        axes.set_xlabel("gap (steps between the information and where it is needed)")
        # Above the data, never on it.
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2, fontsize="small",
                    frameon=False)
    figure.suptitle(title)
    output.save_figure(figure, path)


TITLES = {"long_gap": '"I grew up in France … I speak fluent French"',
          "adding": "The adding problem", "copy": "Copy memory"}


def report(summary, out_dir):
    """Writes summary.md and long_gap.png from the runs of `summary` and prints the table."""
    runs, metric_name = summary["runs"], summary["metric_name"]
    table = sweep.summarise(runs)
    several_rates = len({(run["cell"], run["learning_rate"]) for run in runs}) \
        > len({run["cell"] for run in runs})
    if several_rates:
        summary["best_learning_rates"] = sweep.best_learning_rates(runs)
        output.write_json(os.path.join(out_dir, "summary.json"), summary)
    output.write_text(os.path.join(out_dir, "summary.md"), markdown(table, metric_name))
    plot(table, os.path.join(out_dir, "long_gap.png"),
         f"{TITLES[summary['config']['task']]}: success against the gap "
         f"({max(row['seeds'] for row in table)} seeds a point)", metric_name)
    print()
    print(markdown(table, metric_name), end="")
    if several_rates:
        print("best learning rate per cell (most runs solved, then fewest sequences): "
              + ", ".join(f"{cell} {rate:g}"
                          for cell, rate in summary["best_learning_rates"].items()))
    print(f"written to {out_dir}/summary.json, summary.md and long_gap.png"
          + (f"; the sweep took {summary['wall_seconds'] / 60:.1f} min"
             if summary.get("wall_seconds") else ""))


if __name__ == "__main__":
    flags.run(main)
