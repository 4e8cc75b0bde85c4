"""The paper's own table: Hochreiter & Schmidhuber's 1997 experiments, row by row.

What it shows: the essay's claim that LSTMs learn long-term dependencies where plain RNNs do
not rests on one paper, "Long Short-Term Memory" (Neural Computation 9(8), 1997). Its evidence
is a table: for each of six experiments, how many training sequences the LSTM needed until it
met a strict criterion, while RTRL, BPTT, Elman nets and others failed. This recipe trains each
experiment of kala.tasks1997 (and the adding problem of kala.tasks) three ways, and prints the
paper's figure beside kala's:

    lstm1997     the paper's LSTM as closely as kala can: the 1997 cell (no forget gate), the
                 paper's number of cells, its weight range and gate biases, plain gradient
                 descent at its learning rate, one sequence per update (online); --full only
    lstm         kala's LSTM: forget gate, chrono initialization, Adam at its tuned rate,
                 32 sequences per update, gradients clipped to norm 1
    simple_rnn   the plain RNN with the same budget, also at its own tuned rate

Every contender trains on the same fresh sequences under the same rule of success, the paper's:
most experiments stop training once the latest 2,000 (or 10,000) training sequences were all
processed right, then check a test split (kala.tasks.StopRule). The rows:

    reber                 Exp. 1   embedded Reber grammar, next-symbol prediction
    noise_free_lag        Exp. 2a  two sequences that differ only at both ends, p = 100
    distracted_lag        Exp. 2c  x or y after q = 100 distractors, p = 100 symbols
    distracted_lag_q1000  Exp. 2c  the same with q = p = 1,000
    two_sequence          Exp. 3a  Bengio et al.'s problem, T = 100, N = 3; random guessing too
    adding_T100           Exp. 4   the adding problem at T = 100
    adding_T500           Exp. 4   ... at T = 500
    adding_T1000          Exp. 4   ... at T = 1,000
    multiplication        Exp. 5   the product of two marked values, T = 100
    temporal_order_4      Exp. 6a  the order of X and Y far apart, 4 classes
    temporal_order_8      Exp. 6b  the same with three symbols, 8 classes

Run it:
    python recipes/paper_1997.py           # reber, two_sequence, temporal_order_4: minutes
    python recipes/paper_1997.py --full    # every row and contender: hours
    python recipes/paper_1997.py --smoke   # a tiny table, for the tests

A run that is interrupted keeps every finished run in DIR/paper_1997/runs/, and the same command
takes up the rest. What you should see, and what it means: docs/paper_1997.md. In short, kala's
LSTM needs fewer sequences than the paper's on every row but two: the noise-free lag (Exp. 2a),
which it does not solve, and the Reber grammar, solved in 2 seeds of 3. The learning-rate
searches are in results/tuning/paper_1997/.
"""

import dataclasses
import json
import os
import statistics
import sys
import time
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras
import numpy as np

import kala
import kala.provenance
import kala.tasks1997
import output
import sweep
import tuned

RECIPE = "paper_1997"


@dataclasses.dataclass(frozen=True)
class Row:
    """One experiment of the paper: its task, the paper's result and how its LSTM was set up,
    and the budget each of kala's contenders gets."""

    experiment: str  # The paper's name for it.
    make_task: typing.Callable
    paper: int | None  # The paper's LSTM: sequences until success (mean of its trials).
    paper_note: str  # Its setting and what the other methods of the paper did.
    budget: int  # Training sequences for kala's contenders.
    # The paper's net: memory cells, learning rate, weights in [-scale, scale], and the
    # initial biases of the input and output gates (None: random, as the other weights).
    cells: int = 4
    paper_rate: float = 0.5
    scale: float = 0.1
    input_biases: tuple | None = None
    output_biases: tuple | None = None
    paper_budget: int | None = None  # Sequences for the 1997 cell; None: not run (why: note).
    quick: bool = True  # In the default table.


ROWS = {
    "reber": Row(
        "Exp. 1: embedded Reber grammar", kala.tasks1997.EmbeddedReber, 8_440,
        "3 blocks of 2 cells, lr 0.5 (100% of 30 trials; range 3,800-24,100). RTRL: some "
        "trials, 25,000; Elman nets: 0%; RCC: 50%, 182,000", 64_000,
        cells=6, scale=0.2, output_biases=(-1, -2, -3), paper_budget=32_000),
    "noise_free_lag": Row(
        "Exp. 2a: noise-free long lag, p = 100", lambda: kala.tasks1997.NoiseFreeLag(100),
        5_040, "one memory cell added to an RTRL net, lr 1.0 (100%). RTRL and BPTT: 0% at "
        "p = 100 (BPTT, RTRL: 5 million sequences); CH: 33%, 32,400", 64_000,
        paper_budget=None, quick=False),
    "distracted_lag": Row(
        "Exp. 2c: distractors, q = 100, p = 100", lambda: kala.tasks1997.DistractedLag(100, 100),
        31_000, "2 blocks of 1 cell, no biases, lr 0.01 (20 trials)", 128_000, quick=False),
    "distracted_lag_q1000": Row(
        "Exp. 2c: distractors, q = 1000, p = 1000",
        lambda: kala.tasks1997.DistractedLag(1000, 1000), 49_000,
        "2 blocks of 1 cell, no biases, lr 0.01 (20 trials)", 128_000, quick=False),
    "two_sequence": Row(
        "Exp. 3a: two-sequence problem, T = 100, N = 3",
        lambda: kala.tasks1997.TwoSequence(100, 3), 27_380,
        "3 blocks of 1 cell, lr 1.0, stop criterion ST1 (10 trials). Random weight guessing "
        "solves it faster than LSTM (the paper's point)", 64_000,
        cells=3, paper_rate=1.0, input_biases=(-1, -3, -5), output_biases=(-2, -4, -6),
        paper_budget=64_000),
    "adding_T100": Row(
        "Exp. 4: adding problem, T = 100", lambda: kala.tasks.AddingProblem(100, definition="1997"),
        74_000, "2 blocks of 2 cells, lr 0.5; 1 of 2,560 test sequences wrong (10 trials)",
        160_000, input_biases=(-3, -3, -6, -6), paper_budget=150_000, quick=False),
    "adding_T500": Row(
        "Exp. 4: adding problem, T = 500", lambda: kala.tasks.AddingProblem(500, definition="1997"),
        209_000, "2 blocks of 2 cells, lr 0.5; 0 of 2,560 wrong", 160_000,
        input_biases=(-3, -3, -6, -6), quick=False),
    "adding_T1000": Row(
        "Exp. 4: adding problem, T = 1000",
        lambda: kala.tasks.AddingProblem(1000, definition="1997"), 853_000,
        "2 blocks of 2 cells, lr 0.5; 1 of 2,560 wrong (range 370,000-2,020,000)", 128_000,
        input_biases=(-3, -3, -6, -6), quick=False),
    "multiplication": Row(
        "Exp. 5: multiplication, T = 100", lambda: kala.tasks1997.Multiplication(100),
        482_000, "2 blocks of 2 cells, lr 0.1, stop at fewer than 140 of 2,000 wrong; 139 of "
        "2,560 test sequences wrong", 320_000, paper_rate=0.1, quick=False),
    "temporal_order_4": Row(
        "Exp. 6a: temporal order, 4 classes", lambda: kala.tasks1997.TemporalOrder(4), 31_390,
        "2 blocks of 2 cells, lr 0.5; 1 of 2,560 wrong (20 trials)", 96_000,
        input_biases=(-2, -2, -4, -4), paper_budget=64_000),
    "temporal_order_8": Row(
        "Exp. 6b: temporal order, 8 classes", lambda: kala.tasks1997.TemporalOrder(8), 571_100,
        "3 blocks of 2 cells, lr 0.1; 2 of 2,560 wrong (10 trials)", 320_000,
        cells=6, paper_rate=0.1, input_biases=(-2, -2, -4, -4, -6, -6), quick=False),
}
QUICK = tuple(name for name, row in ROWS.items() if row.quick)
CONTENDERS = ("lstm1997", "lstm", "simple_rnn")
Rates = typing.Literal["tuned"] | tuple[float, ...]


@dataclasses.dataclass
class Settings:
    rows: tuple[typing.Literal[tuple(ROWS)], ...] = QUICK  # the experiments (see above)
    contenders: tuple[typing.Literal[CONTENDERS], ...] = ("lstm", "simple_rnn")  # who trains
    seeds: int = 3  # seeds per (row, contender)
    first_seed: int = 0  # seeds are FIRST_SEED, FIRST_SEED + 1, ...
    units: int = 64  # size of the state of kala's LSTM and SimpleRNN
    batch_size: int = 32  # sequences per update for kala's LSTM and SimpleRNN
    learning_rate: Rates = "tuned"  # tuned: each contender's own for each row (tuned.py)
    guessing_trials: int = 10_000  # two_sequence: random weight guesses at most
    jobs: int = 2  # runs trained at the same time, each in a process with its share of the cores
    full: bool = False  # every row, and the 1997 cell trained online
    smoke: bool = False  # a tiny table to check that everything works
    report_only: bool = False  # train nothing: tabulate DIR/paper_1997/summary.json again
    results: str = "runs"  # writes summary.json and summary.md there, each run in runs/


FULL = {"rows": tuple(ROWS), "contenders": CONTENDERS}
SMOKE = {"rows": ("reber", "two_sequence", "adding_T100"), "contenders": CONTENDERS,
         "seeds": 1, "units": 8, "guessing_trials": 20, "jobs": 1}
SMOKE_BUDGET = 64  # Sequences per run in --smoke.
# Reports every 2,048 sequences. The stop rule is read after every step; the test split of a
# task without one is evaluated every 512 sequences.
REPORT_SEQUENCES, EVAL_SEQUENCES = 2048, 512


def budget(settings, row, contender):
    """Training sequences for one run (None: the contender does not run this row)."""
    sequences = row.paper_budget if contender == "lstm1997" else row.budget
    if sequences is not None and settings.smoke:
        return SMOKE_BUDGET
    return sequences


def build(settings, contender, row, task, seed):
    """The model and the Trainer's settings of one contender."""
    keras.utils.set_random_seed(seed)
    if contender == "lstm1997":
        model = kala.build_model("lstm1997", units=row.cells, implementation="essay",
                                 **task.model_options)
        paper_weights(model, row, seed)
        # XLA compiles its small step into one: 1.7 times the sequences per second on the
        # adding problem here, after a compilation for each length, which --smoke skips. Its
        # sums round differently, and online at these rates that changes whole runs: Reber's
        # seed 0 was solved after 6,144 sequences under XLA, and not within 16,384 without.
        return model, {"batch_size": 1, "learning_rate": row.paper_rate, "clipnorm": None,
                       "optimizer": "sgd", "jit_compile": not settings.smoke}
    units = settings.units
    if contender == "lstm":
        model = kala.build_model(**kala.models.variant("lstm+chrono", task.max_length),
                                 units=units, **task.model_options)
    else:
        model = kala.build_model("simple_rnn", units=units, **task.model_options)
    return model, {"batch_size": settings.batch_size, "clipnorm": 1.0}


def paper_weights(model, row, seed):
    """The paper's initial weights: uniform in [-scale, scale], then the gate biases it gives."""
    rng = np.random.default_rng([seed, 1997])
    model.set_weights([rng.uniform(-row.scale, row.scale, np.shape(weight)).astype(np.float32)
                       for weight in model.get_weights()])
    layer = model.get_layer("lstm1997_1")
    kernel, recurrent, bias = layer.get_weights()
    cells = row.cells  # The bias holds the input gates, candidates, output gates in turn.
    if row.input_biases is not None:
        bias[:cells] = np.resize(row.input_biases, cells)
    if row.output_biases is not None:
        bias[2 * cells:] = np.resize(row.output_biases, cells)
    layer.set_weights([kernel, recurrent, bias])


def rate(settings, contender, name):
    if contender == "lstm1997":
        return ROWS[name].paper_rate
    if settings.learning_rate != "tuned":
        return None  # Given on the command line: the plan has one run per rate.
    return tuned.PAPER_1997[(contender, name)]


def train_run(settings, name, contender, learning_rate, seed):
    """Trains one (row, contender, learning rate, seed) and returns its row of summary.json."""
    row = ROWS[name]
    task = row.make_task()
    model, options = build(settings, contender, row, task, seed)
    options["learning_rate"] = learning_rate
    sequences = budget(settings, row, contender)
    steps = max(1, sequences // options["batch_size"])
    report_every = max(1, REPORT_SEQUENCES // options["batch_size"])
    eval_every = (steps if task.stop_rule is not None
                  else max(1, EVAL_SEQUENCES // options["batch_size"]))
    result = kala.train(
        model, task, steps=steps, seed=seed, eval_every=min(eval_every, steps),
        log_every=min(report_every, steps), **options,
        on_progress=output.Heartbeat(f"{name} {contender} seed {seed}", task, seconds=60))
    return {
        "row": name, "cell": contender, "learning_rate": learning_rate, "seed": seed,
        "solved": result.solved, "sequences_seen": result.sequences_seen,
        "budget": steps * options["batch_size"], "metric": result.metric,
        "baseline": result.baseline, "seconds": round(result.seconds, 2),
        "parameters": model.count_params(), "batch_size": options["batch_size"],
        "checked_every": (1 if task.stop_rule is not None else eval_every)
        * options["batch_size"],
    }


def guess_run(settings, seed):
    """Random weight guessing on the two-sequence problem: the paper's point, measured."""
    task = ROWS["two_sequence"].make_task()
    keras.utils.set_random_seed(seed)
    model = kala.build_model("simple_rnn", units=1, **task.model_options)
    started = time.monotonic()
    trials, best = kala.tasks1997.guess_weights(model, task, trials=settings.guessing_trials,
                                                seed=seed)
    return {"row": "two_sequence", "cell": "guessing", "learning_rate": None, "seed": seed,
            "solved": trials is not None, "trials": trials, "sequences_seen": None,
            "budget": settings.guessing_trials, "metric": best, "baseline": task.baseline,
            "seconds": round(time.monotonic() - started, 2), "parameters": model.count_params()}


def stored_settings(settings):
    """What a stored run must share with this table to count in it (with its budget)."""
    return {key: getattr(settings, key) for key in ("units", "batch_size", "smoke")}


def keep(settings, out_dir, name, contender, learning_rate, seed):
    """Trains one run (or guesses), keeps its row in DIR/paper_1997/runs/ and returns it."""
    if contender == "guessing":
        row = guess_run(settings, seed)
    else:
        row = train_run(settings, name, contender, learning_rate, seed)
    output.write_json(run_file(out_dir, name, contender, learning_rate, seed),
                      {"settings": stored_settings(settings), "row": row})
    return row


def stored(settings, out_dir, name, contender, learning_rate, seed):
    """The row of a run an earlier table finished with these settings and budget, or None."""
    try:
        with open(run_file(out_dir, name, contender, learning_rate, seed)) as file:
            saved = json.load(file)
        row = saved["row"]
        expected = (settings.guessing_trials if contender == "guessing"
                    else budget(settings, ROWS[name], contender))
        if saved["settings"] == stored_settings(settings) and row["budget"] == expected:
            return row
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def run_file(out_dir, name, contender, learning_rate, seed):
    rate_part = "" if learning_rate is None else f"-lr{learning_rate:g}"
    return os.path.join(out_dir, "runs", f"{name}-{contender}{rate_part}-seed{seed}.json")


def plan_of(settings, out_dir):
    """Every run the settings ask for, as arguments of `keep`."""
    seeds = range(settings.first_seed, settings.first_seed + settings.seeds)
    plan = []
    for name in settings.rows:
        contenders = list(settings.contenders)
        if name == "two_sequence" and settings.learning_rate == "tuned":
            contenders.append("guessing")
        for contender in contenders:
            if contender != "guessing" and budget(settings, ROWS[name], contender) is None:
                continue  # The 1997 cell is not run here (the row's note says why).
            if contender == "guessing":
                rates = [None]
            elif rate(settings, contender, name) is not None:
                rates = [rate(settings, contender, name)]
            else:
                rates = list(settings.learning_rate)
            plan += [(settings, out_dir, name, contender, learning_rate, seed)
                     for learning_rate in rates for seed in seeds]
    return plan


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE, full=FULL)
    out_dir = os.path.join(settings.results, RECIPE)
    if settings.report_only:
        summary = sweep.load_summary(out_dir, RECIPE)
    else:
        summary = run_table(settings, out_dir)
    report(summary, out_dir)


def run_table(settings, out_dir):
    plan = plan_of(settings, out_dir)
    print(f"{RECIPE}: {len(plan)} runs ({', '.join(settings.rows)}; "
          f"{', '.join(settings.contenders)}; {settings.seeds} seed"
          f"{'s' if settings.seeds > 1 else ''}), {min(settings.jobs, len(plan))} at a time",
          flush=True)
    summary = {"recipe": RECIPE, "command": " ".join(["python", *sys.argv]),
               "config": dataclasses.asdict(settings), "machine": kala.provenance.machine(),
               "wall_seconds": 0, "runs": []}
    sweep.run(keep, plan, summary, out_dir, jobs=settings.jobs, describe=describe,
              stored=stored)
    return summary


def describe(row):
    if row["cell"] == "guessing":
        outcome = (f"solved after {row['trials']:,} guesses" if row["solved"]
                   else f"not solved in {row['budget']:,} guesses")
    else:
        outcome = (f"solved after {row['sequences_seen']:,} sequences" if row["solved"]
                   else f"not solved within {row['budget']:,} sequences")
    rate_part = "" if row["learning_rate"] is None else f" lr {row['learning_rate']:g}"
    return (f"{row['row']} {row['cell']}{rate_part} seed {row['seed']}: {outcome}; test error "
            f"rate {row['metric']:.4f} (baseline {row['baseline']:.3f}); {row['seconds']:.0f} s")


def summarise(runs):
    """One line per (row, contender, learning rate): seeds solved, median and range of the
    sequences (or guesses) until success, median seconds."""
    groups = {}
    for run in runs:
        groups.setdefault((run["row"], run["cell"], run["learning_rate"]), []).append(run)
    table = []
    for (name, contender, learning_rate), group in groups.items():
        counted = "trials" if contender == "guessing" else "sequences_seen"
        solved = sorted(run[counted] for run in group if run["solved"])
        table.append({
            "row": name, "cell": contender, "learning_rate": learning_rate,
            "seeds": len(group), "solved": len(solved),
            "median": statistics.median(solved) if solved else None,
            "range": [solved[0], solved[-1]] if solved else None,
            "median_metric": statistics.median(run["metric"] for run in group),
            "budget": group[0]["budget"], "checked_every": group[0].get("checked_every"),
            "median_seconds": statistics.median(run["seconds"] for run in group),
        })
    return table


def markdown(table):
    lines = ["| experiment | paper's LSTM: sequences | who | solved | sequences until solved: "
             "median (range) | budget | median time | test error rate (median) |",
             "|---|---|---|---|---|---|---|---|"]
    order = {name: index for index, name in enumerate(ROWS)}
    who = {name: index for index, name in enumerate((*CONTENDERS, "guessing"))}
    for entry in sorted(table, key=lambda e: (order[e["row"]], who[e["cell"]],
                                              e["learning_rate"] or 0)):
        row = ROWS[entry["row"]]
        unit = "guesses" if entry["cell"] == "guessing" else "sequences"
        if entry["solved"]:
            low, high = entry["range"]
            found = f"{entry['median']:,.0f} ({low:,}-{high:,})" if low != high else f"{low:,}"
        else:
            found = "—"
        label = entry["cell"] if entry["learning_rate"] is None else (
            f"{entry['cell']} (lr {entry['learning_rate']:g})")
        paper = "—" if row.paper is None else f"{row.paper:,}"
        lines.append(
            f"| {row.experiment} | {paper} | {label} | {entry['solved']}/{entry['seeds']} | "
            f"{found} | {entry['budget']:,} {unit} | "
            f"{output.duration(entry['median_seconds'])} | {entry['median_metric']:.4f} |")
    notes = [f"- {ROWS[name].experiment}: {ROWS[name].paper_note}."
             for name in dict.fromkeys(entry["row"] for entry in table)]
    return "\n".join(lines) + "\n\nThe paper's setting for each row:\n\n" + "\n".join(notes) + "\n"


def report(summary, out_dir):
    """Writes summary.md from the runs of `summary` and prints the table."""
    text = markdown(summarise(summary["runs"]))
    output.write_text(os.path.join(out_dir, "summary.md"), text)
    print()
    print(text, end="")
    print(f"written to {out_dir}/summary.json and summary.md"
          + (f"; the table took {output.duration(summary['wall_seconds'])}"
             if summary.get("wall_seconds") else ""))


if __name__ == "__main__":
    flags.run(main)
