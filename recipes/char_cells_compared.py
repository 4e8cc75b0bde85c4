"""The essay's claim on real text: at the same size, does the LSTM reach further back than the RNN?

What it shows: the essay says plain RNNs fail to connect information across long gaps and that
LSTMs were made to. recipes/long_gap.py tests that on a constructed task; this recipe tests it on
real code, where the long-range structure is the language's own: a bracket opened 40 characters
ago must be closed, a string must end with its quote. It trains the character model of
recipes/char_language_model.py with a SimpleRNN, an LSTM and a GRU, each sized to the same number
of weights (that of the default LSTM: 256 units, 342,754 weights), for the same budget, with
several seeds, and reports:
- validation bits per character (lower is better), as trained: windows of 100 characters;
- the validation part read in 16 long pieces with the state carried through, and how often the
  most likely next character is the closing bracket that comes, by the distance back to its
  opening bracket (Karpathy, Johnson & Fei-Fei 2015 measured this on Linux source);
- the best correlation of a single cell with bracket depth, strings, indentation and the position
  in the line, against the same network before training.

No cell runs at a rate tuned for another: each first trains shortly (--search-steps, seed 0) at
every --learning-rates and keeps its best, then trains the full budget with every seed.

Run it:
    python recipes/char_cells_compared.py                 # about 70 minutes on a 2-core CPU
    python recipes/char_cells_compared.py --seeds 1       # one seed: about 35 minutes
    python recipes/char_cells_compared.py --report-only   # the table and figure again
    python recipes/char_cells_compared.py --smoke         # a tiny comparison, for the tests
Every run writes its JSON into DIR/char_cells_compared/runs/ as it finishes; the same command run
again (after Ctrl-C, say) reuses the runs that are there with the same settings.
"""

import dataclasses
import json
import os
import sys
import time

import char_language_model
import cli
import long_gap

RECIPE = "char_cells_compared"
CELLS = ("simple_rnn", "lstm", "gru")


@dataclasses.dataclass
class Config(char_language_model.Config):
    cells: str = dataclasses.field(default=",".join(CELLS), metadata={
        "help": "comma-separated cells to compare"})
    seeds: int = dataclasses.field(default=3, metadata={
        "help": "seeds per cell for the full budget (0, 1, ...)"})
    learning_rates: str = dataclasses.field(default="1e-3,3e-3,1e-2", metadata={
        "help": "comma-separated learning rates that each cell's search tries"})
    search_steps: int = dataclasses.field(default=300, metadata={
        "help": "steps of each learning-rate search run"})
    report_only: bool = dataclasses.field(default=False, metadata={
        "help": "train nothing: write the table and figure again from "
                "DIR/char_cells_compared/summary.json"})
    results: str = dataclasses.field(default="results", metadata={
        "help": "directory for summary.json, summary.md, char_cells_compared.png and runs/ (in "
                "DIR/char_cells_compared/)"})


SMOKE = {**char_language_model.SMOKE, "seeds": 2, "learning_rates": "3e-3,1e-2",
         "search_steps": 10}
# Settings of a run that do not change what it trains; a stored run is reused if all others match.
IGNORED = set(cli.OUTPUT_SETTINGS)


def main(argv=None):
    config = cli.parse_config(Config, __doc__, argv, smoke=SMOKE)
    out_dir = os.path.join(config.results, RECIPE)
    if config.report_only:
        report(long_gap.load_summary(out_dir, RECIPE), out_dir)
        return
    cells = cli.parse_cells(config.cells)
    rates = cli.parse_list(config.learning_rates, float, "learning-rates", positive=True)
    char_language_model.check_sampling(config)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import common

    corpus = char_language_model.load_corpus(config)
    target, units = equal_sizes(config, corpus, cells)
    print(f"{RECIPE}: {', '.join(f'{cell} {units[cell]}' for cell in cells)} units: each about "
          f"{target:,} weights (lstm {config.units}); search {', '.join(map(str, rates))} for "
          f"{config.search_steps:,} steps, then {config.seeds} seed(s) of {config.steps:,} steps",
          flush=True)
    started = time.monotonic()
    summary = {"recipe": RECIPE, "command": " ".join(["python", *sys.argv]),
               "config": dataclasses.asdict(config), "target_parameters": target,
               "units": units, "machine": common.machine(), "search": [], "runs": []}

    for cell in cells:
        for rate in rates:
            run_config = single_run(config, cell=cell, units=units[cell], learning_rate=rate,
                                    steps=config.search_steps, seed=0,
                                    eval_every=config.search_steps)
            record = trained(run_config, corpus, os.path.join(out_dir, "search"))
            summary["search"].append({"cell": cell, "learning_rate": rate,
                                      "val_bits_per_char": record["val_bits_per_char"]})
    best = {cell: min((row for row in summary["search"] if row["cell"] == cell),
                      key=lambda row: row["val_bits_per_char"])["learning_rate"]
            for cell in cells}
    summary["learning_rates"] = best
    print(f"{RECIPE}: best learning rates after {config.search_steps:,} steps: "
          + ", ".join(f"{cell} {rate:g}" for cell, rate in best.items()), flush=True)

    for cell in cells:
        for seed in range(config.seeds):
            run_config = single_run(config, cell=cell, units=units[cell],
                                    learning_rate=best[cell], seed=seed)
            record = trained(run_config, corpus, os.path.join(out_dir, "runs"))
            summary["runs"].append(run_row(record))
            summary["wall_seconds"] = round(time.monotonic() - started)
            common.write_json(os.path.join(out_dir, "summary.json"), summary)
    report(summary, out_dir)


def single_run(config, **changes):
    """The char_language_model settings of one run of the comparison."""
    fields = {field.name for field in dataclasses.fields(char_language_model.Config)}
    settings = {name: value for name, value in dataclasses.asdict(config).items()
                if name in fields}
    return char_language_model.Config(**{**settings, **changes})


def equal_sizes(config, corpus, cells):
    """The number of weights of an LSTM with `config.units`, and for each cell the units that
    come closest to it (a bisection over built models: the count grows with the units)."""
    import common
    import kala.text

    with cli.bad_arguments_exit():
        task = kala.text.CharLanguageModel(corpus, config.seq_len)

    def weights(cell, units):
        return common.build_model(cell, units, task,
                                  embedding_dim=config.embedding_dim).count_params()

    target = weights("lstm", config.units)
    units = {}
    for cell in cells:
        low, high = 1, 4 * config.units
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if weights(cell, middle) <= target else (low, middle)
        units[cell] = min((low, high), key=lambda size: abs(weights(cell, size) - target))
    return target, units


def trained(config, corpus, out_dir):
    """The record of `config`'s run: read from OUT_DIR when a run with the same settings on the
    same corpus (its SHA-256) is there, else trained now (and written there)."""
    name = cli.run_name(config, char_language_model.SMOKE, ["cell", "seed"])
    path = os.path.join(out_dir, f"{name}.json")
    try:
        with open(path) as file:
            record = json.load(file)
        stored = record["config"]
        if record["corpus"]["sha256"] == corpus.sha256 and all(
                stored.get(key) == value for key, value in dataclasses.asdict(config).items()
                if key not in IGNORED):
            print(f"{RECIPE}: reusing {path}", flush=True)
            return record
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return char_language_model.run(config, corpus, out_dir, draw=False)[2]


def run_row(record):
    """What summary.json keeps of one run."""
    config = record["config"]
    return {"cell": config["cell"], "seed": config["seed"], "units": config["units"],
            "parameters": record["parameters"], "learning_rate": config["learning_rate"],
            **{key: record[key] for key in (
                "val_bits_per_char", "carried_state_bits_per_char", "baseline_bits_per_char",
                "bigram_bits_per_char", "closing_brackets", "readable_cells",
                "characters_per_second", "seconds", "sample")}}


def _by_cell(runs):
    cells = list(dict.fromkeys(run["cell"] for run in runs))
    return {cell: [run for run in runs if run["cell"] == cell] for cell in cells}


def _bins(runs):
    """The distance bins of the runs' closing-bracket rows, in order, as (from, to) pairs."""
    return sorted({(row["distance_from"], row["distance_to"])
                   for run in runs for row in run["closing_brackets"]},
                  key=lambda pair: pair[0])


def _accuracy(run, low):
    return next((row["accuracy"] for row in run["closing_brackets"]
                 if row["distance_from"] == low), None)


def _counts(runs, bins):
    """The closing brackets in each bin (the same text for every run)."""
    return {low: max(next((row["count"] for row in run["closing_brackets"]
                           if row["distance_from"] == low), 0) for run in runs)
            for low, _ in bins}


def _label(low, high):
    return f"{low}+" if high is None else f"{low}-{high}"


def markdown(summary):
    """The table of summary.md: one row per cell, means over seeds (each seed's value in the
    JSON)."""
    import numpy as np

    runs = summary["runs"]
    bins = _bins(runs)
    lines = ["| cell | units | weights | learning rate | seeds | validation bits/char | "
             "carried state | " + " | ".join(f"{_label(*pair)} back" for pair in bins) + " |",
             "|" + "---|" * (7 + len(bins))]
    for cell, cell_runs in _by_cell(runs).items():
        values = [run["val_bits_per_char"] for run in cell_runs]
        carried = [run["carried_state_bits_per_char"] for run in cell_runs]
        accuracies = []
        for low, _ in bins:
            found = [value for value in (_accuracy(run, low) for run in cell_runs)
                     if value is not None]
            accuracies.append(f"{np.mean(found):.0%}" if found else "-")
        first = cell_runs[0]
        lines.append(
            f"| {cell} | {first['units']} | {first['parameters']:,} | "
            f"{first['learning_rate']:g} | {len(cell_runs)} | {np.mean(values):.3f} "
            f"({', '.join(f'{value:.3f}' for value in values)}) | {np.mean(carried):.3f} | "
            + " | ".join(accuracies) + " |")
    counts = _counts(runs, bins)
    lines += ["", "Validation bits per character in 100-character windows, as trained (each "
              "seed's in brackets), and with the state carried through 16 long pieces. The "
              "columns `N-M back`: how often the most likely next character is the closing "
              "bracket that comes, by the distance back to its opening bracket (mean of the "
              "seeds). Closing brackets per distance: "
              + ", ".join(f"{_label(*pair)}: {counts[pair[0]]:,}" for pair in bins) + ".", ""]
    features = list(runs[0]["readable_cells"])
    lines += ["| cell | " + " | ".join(features) + " |", "|---|" + "---|" * len(features)]
    for cell, cell_runs in _by_cell(runs).items():
        cells = []
        for name in features:
            trained = np.mean([abs(run["readable_cells"][name]["r"]) for run in cell_runs])
            before = np.mean([run["readable_cells"][name]["untrained_best_abs_r"]
                              for run in cell_runs])
            cells.append(f"{trained:.2f} ({before:.2f})")
        lines.append(f"| {cell} | " + " | ".join(cells) + " |")
    lines += ["", "Best |r| of one cell with each feature, mean over seeds (before training in "
              "brackets).", ""]
    return "\n".join(lines)


def plot(summary, path):
    """Validation bits per character per seed, and closing-bracket accuracy by distance."""
    import numpy as np

    import common

    runs = summary["runs"]
    bins = _bins(runs)
    figure, (left, right) = common.new_figure((11, 4), columns=2)
    for index, (cell, cell_runs) in enumerate(_by_cell(runs).items()):
        values = [run["val_bits_per_char"] for run in cell_runs]
        left.scatter([index] * len(values), values, color=f"C{index}")
        left.plot([index - 0.2, index + 0.2], [np.mean(values)] * 2, color=f"C{index}")
        table = np.array([[np.nan if _accuracy(run, low) is None else _accuracy(run, low)
                           for low, _ in bins] for run in cell_runs])
        positions = np.arange(len(bins))
        right.plot(positions, np.nanmean(table, axis=0), marker="o", color=f"C{index}",
                   label=f"{cell} ({cell_runs[0]['units']} units)")
        right.fill_between(positions, np.nanmin(table, axis=0), np.nanmax(table, axis=0),
                           color=f"C{index}", alpha=0.2)
    cells = list(_by_cell(runs))
    left.set_xticks(range(len(cells)), cells)
    left.set_xlim(-0.5, len(cells) - 0.5)
    left.set_ylabel("validation bits per character (lower is better)")
    left.set_title(f"Same size ({summary['target_parameters']:,} weights), same budget "
                   f"(bigram: {runs[0]['bigram_bits_per_char']:.2f})", fontsize=10)
    counts = _counts(runs, bins)
    right.set_xticks(range(len(bins)), [f"{_label(*pair)}\n({counts[pair[0]]:,})"
                                        for pair in bins], fontsize=8)
    right.set_xlabel("distance from the opening bracket in characters (brackets)")
    right.set_ylabel("closing bracket is the most likely next character")
    right.set_ylim(0, 1)
    right.set_title("Closing brackets (mean of seeds; band: min to max)", fontsize=10)
    right.legend()
    common.save_figure(figure, path)


def report(summary, out_dir):
    import common

    table = markdown(summary)
    common.write_text(os.path.join(out_dir, "summary.md"), table)
    plot(summary, os.path.join(out_dir, f"{RECIPE}.png"))
    print()
    print(table, end="")
    print(f"written to {out_dir}/summary.json, summary.md and {RECIPE}.png"
          + (f"; the comparison took {summary['wall_seconds'] / 60:.1f} min"
             if summary.get("wall_seconds") else ""))


if __name__ == "__main__":
    main()
