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
long_gap.TUNED_LEARNING_RATES): no variant runs at a rate tuned for another.

Run it:
    python recipes/lstm_variants.py              # gap 30, 3 seeds: about 4 minutes
    python recipes/lstm_variants.py --full       # gaps 30 and 100: about 30 minutes
    python recipes/lstm_variants.py --smoke      # a tiny sweep, for the tests
"""

import dataclasses
import os

import cli
import long_gap

RECIPE = "lstm_variants"
VARIANTS = ("simple_rnn", "simple_rnn+irnn", "lstm1997", "lstm+zero_forget_bias", "lstm",
            "lstm+chrono", "peephole_lstm", "coupled_lstm", "gru")


# Setup: long_gap.py's settings, with this comparison's defaults.
@dataclasses.dataclass
class Config(long_gap.Config):
    cells: str = dataclasses.field(default=",".join(VARIANTS), metadata={
        "help": "comma-separated variants to compare: a cell, or a cell+initialization"})
    gaps: str = dataclasses.field(default="30", metadata={"help": "comma-separated gaps"})
    full: bool = dataclasses.field(default=False, metadata={
        "help": "the complete comparison: gaps 30 and 100, 4,000 steps"})
    report_only: bool = dataclasses.field(default=False, metadata={
        "help": "train nothing: write the table and figure again from "
                "DIR/lstm_variants/summary.json"})
    results: str = dataclasses.field(default="results", metadata={
        "help": "directory for summary.json, summary.md and lstm_variants.png (in "
                "DIR/lstm_variants/)"})


# As long_gap.py --full, at the two gaps where the cells differ: 4,000 steps.
FULL = {"gaps": "30,100", "steps": 4000}
SMOKE = {**long_gap.SMOKE, "cells": "lstm1997,lstm+chrono,peephole_lstm,coupled_lstm",
         "gaps": "3"}


def main(argv=None):
    config = cli.parse_config(Config, __doc__, argv, smoke=SMOKE, full=FULL)
    out_dir = os.path.join(config.results, RECIPE)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if config.report_only:
        summary = long_gap.load_summary(out_dir, RECIPE)
    else:
        summary = long_gap.sweep(config, RECIPE, out_dir)
    report(summary, out_dir)


def _lines(table):
    """The variants of a summarised table, in order: (cell, learning rate) and its label."""
    keys = list(dict.fromkeys((row["cell"], row["learning_rate"]) for row in table))
    several_rates = len({cell for cell, _ in keys}) < len(keys)
    return [(key, f"{key[0]} (lr {key[1]:g})" if several_rates else key[0]) for key in keys]


def plot(runs, table, path):
    """Left, the share of seeds that solved the task, per variant and gap; right, the sequences
    each solved run needed (dots) and their median (bar)."""
    from matplotlib import ticker

    import common

    figure, (solved_axes, sequences_axes) = common.new_figure((12, 4.5), columns=2)
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
                                   s=8, zorder=3)
            if row and not solved:
                sequences_axes.annotate("none solved", (position + offset, 0.03),
                                        xycoords=("data", "axes fraction"), ha="center",
                                        rotation=90, fontsize="x-small")
        positions = [position + offset for position in range(len(lines))]
        solved_axes.bar(positions, shares, width, label=f"gap {gap}")
        sequences_axes.bar(positions, medians, width, label=f"gap {gap} (median)")
    for axes in (solved_axes, sequences_axes):
        axes.set_xticks(range(len(lines)))
        axes.set_xticklabels([label for _, label in lines], rotation=35, ha="right",
                             fontsize="small")
        axes.legend(fontsize="small")
    solved_axes.set_ylim(0, 1.05)
    solved_axes.set_ylabel("share of seeds that solved the task")
    sequences_axes.set_yscale("log")
    sequences_axes.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    sequences_axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    sequences_axes.yaxis.set_minor_locator(ticker.NullLocator())
    sequences_axes.set_ylabel("sequences until solved (dots: seeds)")
    figure.suptitle('The variants on "I grew up in France … I speak fluent French"')
    common.save_figure(figure, path)


def markdown(table, metric_name):
    """One row per variant (of `long_gap.summarise`'s table): its learning rate and parameters,
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
    import common

    table = long_gap.summarise(summary["runs"])
    text = markdown(table, summary["metric_name"])
    common.write_text(os.path.join(out_dir, "summary.md"), text)
    plot(summary["runs"], table, os.path.join(out_dir, f"{RECIPE}.png"))
    print()
    print(text, end="")
    print(f"written to {out_dir}/summary.json, summary.md and {RECIPE}.png"
          + (f"; the sweep took {summary['wall_seconds'] / 60:.1f} min"
             if summary.get("wall_seconds") else ""))


if __name__ == "__main__":
    main()
