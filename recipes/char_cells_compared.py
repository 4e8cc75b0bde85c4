"""The essay's claim on real text: at the same size, does the LSTM reach further back than the RNN?

What it shows: the essay says plain RNNs fail to connect information across long gaps and that
LSTMs were made to. recipes/long_gap.py tests that on a constructed task; this recipe tests it on
real code, where the long-range structure is the language's own: a bracket opened 40 characters
ago must be closed, a string must end with its quote. It trains the character model of
recipes/char_language_model.py with a SimpleRNN, an LSTM and a GRU, each with the weights of the
default LSTM (256 units, 342,754 weights), the same budget and several seeds. It reports
validation bits per character in the 100-character windows it trains on; with the validation
part read in 16 long pieces, the state carried through, how often the most likely next character
is the closing bracket that comes, by the distance back to its opening bracket (Karpathy, Johnson
& Fei-Fei 2015 measured this on Linux source); and the best correlation of a single cell with
bracket depth, strings, indentation and the position in the line, against the same network before
training. No cell runs at a rate tuned for another: each first trains shortly (--search-steps,
seed 0) at every --learning-rates and keeps its best, then trains the full budget with every seed.

Run it:
    python recipes/char_cells_compared.py                 # about 70 minutes on a 2-core CPU
    python recipes/char_cells_compared.py --seeds 1       # one seed: about 35 minutes
    python recipes/char_cells_compared.py --report-only   # the table and figure again
    python recipes/char_cells_compared.py --smoke         # a tiny comparison, for the tests: 40 s
Each run's JSON goes into DIR/char_cells_compared/search/ or runs/; the same command reuses it.

What you should see (2-core AMD EPYC, 70.6 minutes with the code of 2026-11-24, not retimed
since): the SimpleRNN (491 units) keeps 3e-3, the LSTM
(256) and the GRU (294) 1e-2. Bits per character are close (LSTM 2.173, GRU 2.213, SimpleRNN
2.260: means of three seeds); but from 6 to 50 characters back the SimpleRNN closes 12-17% of the
brackets, the LSTM 26-42% and the GRU 39-48% (all three 45-48% at 1-2 back, 8-18% beyond 50).
"""

import dataclasses
import json
import os
import sys
import time
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras
import numpy as np

import kala
import kala.provenance
import kala.reading
import kala.text
import output
import sweep

RECIPE = "char_cells_compared"
Cell = typing.Literal[kala.models.VARIANTS]
Implementation = typing.Literal[kala.models.IMPLEMENTATIONS]


@dataclasses.dataclass
class Settings:
    cells: tuple[Cell, ...] = ("simple_rnn", "lstm", "gru")  # the cells to compare
    units: int = 256  # the LSTM's units; every cell gets the units that match its weights
    seeds: int = 3  # seeds per cell for the full budget (0, 1, ...)
    learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # the rates each cell's search tries
    search_steps: int = 300  # steps of each learning-rate search run
    steps: int = 1200  # budget of each full run in steps (each step is one batch of windows)
    batch_size: int = 128  # windows per step
    implementation: Implementation = "auto"  # Keras's layer (cuDNN), the essay's, or auto
    clipnorm: float = 1.0  # each gradient is clipped to this norm
    eval_every: int = 100  # steps between evaluations on validation
    seq_len: int = 100  # characters per training window
    embedding_dim: int = 32  # size of each character's embedding
    text: str = ""  # train on this UTF-8 text file (default: the standard library's source)
    tfds: str = ""  # train on a TensorFlow Datasets text dataset, e.g. tiny_shakespeare
    prime: str = "def "  # the text each run's sample starts from
    temperature: float = 0.5  # sampling temperature (below 1: safer, above: wilder)
    sample_length: int = 400  # characters per sample
    smoke: bool = False  # a tiny comparison to check that everything works
    report_only: bool = False  # train nothing: tabulate DIR/char_cells_compared/summary.json again
    results: str = "runs"  # summary.json, .md, figure and runs/ go in DIR/char_cells_compared/


# A run of recipes/char_language_model.py: its settings and defaults, which name its file.
RUN_DEFAULTS = {"cell": "lstm", "implementation": "auto", "units": 256, "steps": 1200,
                "batch_size": 128, "learning_rate": 3e-3, "clipnorm": 1.0, "seed": 0,
                "eval_every": 100, "seq_len": 100, "embedding_dim": 32, "text": "", "tfds": "",
                "prime": "def ", "temperature": 0.5, "sample_length": 400, "smoke": False}
Run = dataclasses.make_dataclass("Run", [(name, type(value), value)
                                         for name, value in RUN_DEFAULTS.items()])
# A tiny comparison for the tests: runs the size of recipes/char_language_model.py's smoke run.
SMOKE = dict(units=16, steps=20, batch_size=8, seq_len=20, eval_every=10, embedding_dim=8,
             sample_length=40, seeds=2, learning_rates=(3e-3, 1e-2), search_steps=10)


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    out_dir = os.path.join(settings.results, RECIPE)
    if settings.report_only:
        return report(sweep.load_summary(out_dir, RECIPE), out_dir)
    if not settings.prime:
        flags.fail("--prime must hold at least one character: the samples start from it")

    # Data: one corpus, split into training and validation, for every run.
    with flags.bad_arguments():
        corpus = kala.text.load_corpus(settings.text, settings.tfds)
        if settings.smoke:
            corpus = dataclasses.replace(corpus, text=corpus.text[:20_000])
        task = kala.text.CharLanguageModel(corpus, settings.seq_len)

    # Sizes: each cell gets the units that bring its weights closest to the LSTM's.
    shape = dict(embedding_dim=settings.embedding_dim, **task.model_options)
    target = kala.build_model("lstm", settings.units, **shape).count_params()
    units = {cell: kala.models.units_for_weights(kala.models.variant(cell)["cell"], target, **shape)
             for cell in settings.cells}
    print(f"{RECIPE}: {', '.join(f'{cell} {units[cell]}' for cell in settings.cells)} units, "
          f"each about {target:,} weights (an LSTM of {settings.units})", flush=True)
    summary = {"recipe": RECIPE, "command": " ".join(["python", *sys.argv]),
               "config": dataclasses.asdict(settings), "target_parameters": target,
               "units": units, "machine": kala.provenance.machine(), "search": [], "runs": [],
               "learning_rates": {}, "wall_seconds": 0}
    run = Run(**{name: getattr(settings, name) for name in RUN_DEFAULTS if hasattr(settings, name)})

    def phase(part, runs, row_of):
        """Each run of `runs`, from OUT_DIR/PART/ or trained now, in summary[PART]."""
        def path(run):
            name = output.run_name(run, SMOKE, ["cell", "seed"])
            return os.path.join(out_dir, part, f"{name}.json")

        def stored(run):
            record = stored_record(run, task, path(run))
            return None if record is None else row_of(record)

        return sweep.run(lambda run: row_of(trained(run, task, path(run))),
                         [(run,) for run in runs], summary, out_dir, rows=part, stored=stored,
                         started=started, describe=lambda row: (
                             f"{part}: {row['cell']} lr {row['learning_rate']:g} seed "
                             f"{row.get('seed', 0)}: bits/char {row['val_bits_per_char']:.3f}"))

    # The search: every cell for --search-steps at every rate, seed 0; each keeps its best.
    started = time.monotonic()
    search = phase("search", [
        dataclasses.replace(run, cell=cell, units=units[cell], learning_rate=rate,
                            steps=settings.search_steps, eval_every=settings.search_steps)
        for cell in settings.cells for rate in settings.learning_rates], search_row)
    summary["learning_rates"] = best = {cell: min(
        (row for row in search if row["cell"] == cell),
        key=lambda row: row["val_bits_per_char"])["learning_rate"] for cell in settings.cells}
    print(f"{RECIPE}: best learning rates after {settings.search_steps:,} steps: "
          + ", ".join(f"{cell} {rate:g}" for cell, rate in best.items()), flush=True)

    # The comparison: each cell at its rate, every seed, the full budget.
    phase("runs", [dataclasses.replace(run, cell=cell, units=units[cell], seed=seed,
                                       learning_rate=best[cell])
                   for cell in settings.cells for seed in range(settings.seeds)], run_row)
    report(summary, out_dir)


def search_row(record):
    """What summary.json keeps of a search run."""
    return {"cell": record["config"]["cell"], "learning_rate": record["config"]["learning_rate"],
            "val_bits_per_char": record["val_bits_per_char"]}


def run_row(record):
    """What summary.json keeps of a run of the comparison."""
    config, kept = record["config"], (
        "val_bits_per_char", "carried_state_bits_per_char", "baseline_bits_per_char",
        "bigram_bits_per_char", "closing_brackets", "readable_cells", "characters_per_second",
        "seconds", "sample")
    return {"cell": config["cell"], "seed": config["seed"], "units": config["units"],
            "parameters": record["parameters"], "learning_rate": config["learning_rate"],
            **{key: record[key] for key in kept}}


def stored_record(run, task, path):
    """The record at `path`, if it is of a run with `run`'s settings on the same corpus (its
    SHA-256); else None."""
    try:
        with open(path) as file:
            record = json.load(file)
        if record["corpus"]["sha256"] == task.corpus.sha256 and all(
                record["config"].get(key) == value for key, value in vars(run).items()
                if key not in output.OUTPUT_SETTINGS):
            print(f"{RECIPE}: reusing {path}", flush=True)
            return record
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def trained(run, task, path):
    """Trains `run`, reads the trained model and writes its record to `path`; returns it."""
    name = f"{run.cell} {run.units} lr {run.learning_rate:g} seed {run.seed}"

    # Model: embeddings, the recurrent layer, a softmax over the next character; and a copy.
    keras.utils.set_random_seed(run.seed)
    model = kala.build_model(
        **kala.models.variant(run.cell, task.max_length), units=run.units,
        embedding_dim=run.embedding_dim, implementation=run.implementation,
        name=f"char_language_model_{run.cell.replace('+', '_')}", **task.model_options)
    untrained = keras.models.clone_model(model)
    untrained.set_weights(model.get_weights())

    # Train: the whole budget, saying where a long run is every minute; then a sample.
    trainer = kala.Trainer(model, task, steps=run.steps, batch_size=run.batch_size,
                           learning_rate=run.learning_rate, clipnorm=run.clipnorm,
                           seed=run.seed, eval_every=run.eval_every)
    result = trainer.run(on_progress=output.Heartbeat(name, task))
    sample = kala.text.Writer(model, task).generate(
        [run.prime], run.sample_length, run.temperature, result.steps)[0].numpy().decode("utf-8")
    characters = result.steps * run.batch_size * run.seq_len

    # Read it as recipes/char_language_model.py does: the brackets it foresees, its cells.
    started = time.perf_counter()
    reading, _, _ = kala.reading.read_model(model, untrained, task)

    # The run's JSON, as recipes/char_language_model.py writes it (without the cells' figure).
    record = output.run_record("char_language_model", run, trainer, result, {
        "corpus": task.corpus.describe(), "val_bits_per_char": result.metric,
        "baseline_bits_per_char": task.unigram_bits_per_char,
        "bigram_bits_per_char": task.bigram_bits_per_char, "sample": sample, "prime": run.prime,
        "temperature": run.temperature, "parameters": model.count_params(), "steps": result.steps,
        "characters_trained_on": characters,
        "characters_per_second": round(characters / result.seconds),
        "seconds": round(result.seconds, 2), **reading,
        "reading_seconds": round(time.perf_counter() - started, 2),
        "samples": [{"step": result.steps, "bits_per_char": result.metric, "text": sample}]})
    output.write_json(path, record)
    output.save_model(model, os.path.join(os.path.splitext(path)[0], "model.keras"), task)
    return record


def report(summary, out_dir):
    """Writes summary.md and the figure from the runs of `summary`, and prints the table."""
    runs = summary["runs"]
    cells = {run["cell"]: [each for each in runs if each["cell"] == run["cell"]] for run in runs}
    # The brackets' distance bins (the same text, so the same counts, for every run); accuracies.
    bins = {row["distance_from"]: row for run in runs for row in run["closing_brackets"]}
    lows = sorted(bins)
    labels = [f"{low}+" if bins[low]["distance_to"] is None
              else f"{low}-{bins[low]['distance_to']}" for low in lows]
    counts = ", ".join(f"{label}: {bins[low]['count']:,}" for label, low in zip(labels, lows))
    accuracy = {cell: np.array([[next((row["accuracy"] for row in run["closing_brackets"]
                                       if row["distance_from"] == low), np.nan) for low in lows]
                                for run in cell_runs]) for cell, cell_runs in cells.items()}

    # The table: one row per cell, means over seeds (each seed's value in summary.json).
    lines = ["| cell | units | weights | learning rate | seeds | validation bits/char | "
             "carried state | " + " | ".join(f"{label} back" for label in labels) + " |",
             "|" + "---|" * (7 + len(labels))]
    for cell, cell_runs in cells.items():
        values, first = [run["val_bits_per_char"] for run in cell_runs], cell_runs[0]
        lines.append(
            f"| {cell} | {first['units']} | {first['parameters']:,} | "
            f"{first['learning_rate']:g} | {len(cell_runs)} | {np.mean(values):.3f} "
            f"({', '.join(f'{value:.3f}' for value in values)}) | "
            f"{np.mean([run['carried_state_bits_per_char'] for run in cell_runs]):.3f} | "
            + " | ".join("-" if np.isnan(column).all() else f"{np.nanmean(column):.0%}"
                         for column in accuracy[cell].T) + " |")
    lines += ["", "Validation bits per character in 100-character windows, as trained (each "
              "seed's in brackets), and with the state carried through 16 long pieces. The "
              "columns `N-M back`: how often the most likely next character is the closing "
              "bracket that comes, by the distance back to its opening bracket (mean of the "
              f"seeds). Closing brackets per distance: {counts}.", ""]
    features = list(runs[0]["readable_cells"])
    lines += ["| cell | " + " | ".join(features) + " |", "|---|" + "---|" * len(features)]
    for cell, cell_runs in cells.items():
        found = [[run["readable_cells"][name] for run in cell_runs] for name in features]
        lines.append(f"| {cell} | " + " | ".join(
            f"{np.mean([abs(row['r']) for row in rows]):.2f} "
            f"({np.mean([row['untrained_best_abs_r'] for row in rows]):.2f})"
            for rows in found) + " |")
    lines += ["", "Best |r| of one cell with each feature, mean over seeds (before training in "
              "brackets).", ""]
    output.write_text(os.path.join(out_dir, "summary.md"), "\n".join(lines))

    # The figure: each seed's bits per character and their mean; closing brackets by distance.
    figure, (left, right) = output.new_figure((11, 4), columns=2)
    for index, (cell, cell_runs) in enumerate(cells.items()):
        values, colour = [run["val_bits_per_char"] for run in cell_runs], f"C{index}"
        left.scatter([index] * len(values), values, color=colour)
        left.plot([index - 0.2, index + 0.2], [np.mean(values)] * 2, color=colour)
        right.plot(range(len(lows)), np.nanmean(accuracy[cell], axis=0), marker="o",
                   color=colour, label=f"{cell} ({cell_runs[0]['units']} units)")
        right.fill_between(range(len(lows)), np.nanmin(accuracy[cell], axis=0),
                           np.nanmax(accuracy[cell], axis=0), color=colour, alpha=0.2)
    left.set(xticks=range(len(cells)),
             xticklabels=[f"{cell}\n{cell_runs[0]['parameters']:,} weights"
                          for cell, cell_runs in cells.items()],
             xlim=(-0.5, len(cells) - 0.5),
             ylabel="validation bits per character (lower is better)")
    left.set_title(f"About the same size (the LSTM's {summary['target_parameters']:,} weights), "
                   f"same budget\n(dots: seeds, line: their mean; bigram "
                   f"{runs[0]['bigram_bits_per_char']:.2f})", fontsize=10)
    right.set_xticks(range(len(lows)), [f"{label}\n({bins[low]['count']:,})"
                                        for label, low in zip(labels, lows)], fontsize=8)
    right.set(xlabel="distance from the opening bracket in characters (brackets)",
              ylabel="closing bracket is the most likely next character", ylim=(0, 1))
    right.set_title("Closing brackets (mean of seeds; band: min to max)", fontsize=10)
    right.legend(loc="upper right", fontsize="small")
    output.save_figure(figure, os.path.join(out_dir, f"{RECIPE}.png"))
    print("\n" + "\n".join(lines), end="")
    print(f"written to {out_dir}/summary.json, summary.md and {RECIPE}.png"
          + (f"; the comparison took {summary['wall_seconds'] / 60:.1f} min"
             if summary.get("wall_seconds") else ""))


if __name__ == "__main__":
    flags.run(main)
