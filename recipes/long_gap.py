"""The long-term dependency problem, measured: success against the gap, for each cell.

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
plain RNN can exploit without remembering anything: the README shows what that does.

Each cell trains at its own learning rate, chosen for it by the same grid search (`--learning-rate
tuned`, the default; see TUNED_LEARNING_RATES). Units are matched, not parameter counts: the
table lists the parameters.

Run it:
    python recipes/long_gap.py                       # gaps 10 and 50: about 4 minutes
    python recipes/long_gap.py --full                # gaps 10 to 300: about 40 minutes
    python recipes/long_gap.py --task adding         # the same sweep on the adding problem
    python recipes/long_gap.py --gaps 30,100 --seeds 1 --first-seed 100 --steps 3000 \
        --learning-rate 1e-3,3e-3,1e-2 --results results/tuning   # the learning-rate search
    python recipes/long_gap.py --smoke               # a tiny sweep, for the tests
"""

import dataclasses
import multiprocessing
import os
import signal
import statistics
import sys
import time

import cli

RECIPE = "long_gap"
TASKS = ("long_gap", "adding", "copy")

# Each cell's Adam learning rate under `--learning-rate tuned`: for each cell, the rate of the grid
# 1e-3, 3e-3, 1e-2 that solved the most runs at gaps 30 and 100 (then: in the fewest sequences),
# with seed 100, which the sweeps do not use. The search is committed in results/tuning/long_gap/
# and its command is in the docstring above; the same search for the variants of
# recipes/lstm_variants.py (the same command with their --cells) is in
# results/tuning_variants/long_gap/. The SimpleRNN's choice rests on one run: with the earlier
# training loop the search solved gap 30 at 3e-3 and chose it; rerun with the loop that runs
# several steps per graph call (float32 sums in another order), that run failed, and 1e-3, the
# only rate that solved, won.
TUNED_LEARNING_RATES = {
    "simple_rnn": 1e-3, "lstm": 3e-3, "gru": 1e-2,
    "simple_rnn+irnn": 1e-3, "lstm1997": 3e-3, "lstm+zero_forget_bias": 1e-2,
    "lstm+chrono": 1e-2, "peephole_lstm": 1e-2, "coupled_lstm": 1e-2,
}


# Setup: the defaults live here, once; every field is also a command-line flag.
@dataclasses.dataclass
class Config:
    task: str = dataclasses.field(default="long_gap", metadata={
        "help": "the task to sweep: the long-gap language task, or the adding or copy problem "
                "with the gap as the sequence length", "choices": TASKS})
    cells: str = dataclasses.field(default="simple_rnn,lstm,gru", metadata={
        "help": "comma-separated cells to compare"})
    gaps: str = dataclasses.field(default="10,50", metadata={
        "help": "comma-separated gaps (sequence lengths for adding and copy)"})
    seeds: int = dataclasses.field(default=3, metadata={"help": "seeds per (cell, gap)"})
    first_seed: int = dataclasses.field(default=0, metadata={
        "help": "seeds are FIRST_SEED, FIRST_SEED + 1, ..."})
    filler: str = dataclasses.field(default="distractors", metadata={
        "help": "long_gap only: the other text", "choices": ["words", "distractors"]})
    position: str = dataclasses.field(default="random", metadata={
        "help": "long_gap only: where the country sentence sits", "choices": ["random", "fixed"]})
    units: int = dataclasses.field(default=64, metadata={
        "help": "size of every cell's state (units are matched, not parameter counts)"})
    steps: int = dataclasses.field(default=3000, metadata={"help": "budget per run, in steps"})
    batch_size: int = dataclasses.field(default=64, metadata={"help": "sequences per step"})
    learning_rate: str = dataclasses.field(default="tuned", metadata={
        "help": "Adam's learning rate: 'tuned' for each cell's own (see the docstring), or "
                "comma-separated rates that every cell runs at"})
    clipnorm: float = dataclasses.field(default=1.0, metadata={
        "help": "each gradient is clipped to this norm"})
    eval_every: int = dataclasses.field(default=100, metadata={
        "help": "steps between evaluations on the test split"})
    jobs: int = dataclasses.field(default=2, metadata={
        "help": "runs trained at the same time, in separate processes (each gets an equal share "
                "of the CPU cores)"})
    full: bool = dataclasses.field(default=False, metadata={
        "help": "the complete sweep: gaps 10 to 300, 3 seeds, 4,000 steps"})
    smoke: bool = dataclasses.field(default=False, metadata={
        "help": "a tiny sweep to check that everything works"})
    report_only: bool = dataclasses.field(default=False, metadata={
        "help": "train nothing: write the table and figure again from DIR/long_gap/summary.json "
                "(for example of a sweep that was interrupted)"})
    results: str = dataclasses.field(default="results", metadata={
        "help": "directory for summary.json, summary.md and long_gap.png (in DIR/long_gap/)"})


FULL = {"gaps": "10,30,100,300", "seeds": 3, "steps": 4000}
SMOKE = {"cells": "simple_rnn,lstm", "gaps": "2,4", "seeds": 1, "units": 8, "steps": 20,
         "batch_size": 8, "eval_every": 10, "jobs": 1}
# A run that trains longer than this without finishing reports where it is.
HEARTBEAT_SECONDS = 60


def make_task(config, gap):
    """The task at one gap: for adding and copy, the gap is the sequence length."""
    import kala

    if config.task == "long_gap":
        return kala.tasks.LongGap(gap, filler=config.filler, position=config.position,
                                  test_size=512)
    if config.task == "adding":
        return kala.tasks.AddingProblem(gap, test_size=512)
    return kala.tasks.CopyMemory(gap, test_size=512)


def learning_rates(config, cell):
    if config.learning_rate == "tuned":
        return [TUNED_LEARNING_RATES[cell]]
    return cli.parse_list(config.learning_rate, float, "learning-rate", positive=True)


def train_one(config, cell, gap, learning_rate, seed, interruptible):
    """Trains one (cell, gap, learning rate, seed) and returns its row of summary.json."""
    import keras

    import common
    import kala

    task = make_task(config, gap)
    # Model: the same embedding or input, units and head for every cell; the seed also fixes
    # the training batches, so every cell sees the same sequences.
    keras.utils.set_random_seed(seed)
    model = common.build_model(cell, config.units, task)
    trainer = kala.Trainer(
        model, task, steps=config.steps, batch_size=config.batch_size,
        learning_rate=learning_rate, clipnorm=config.clipnorm, seed=seed,
        eval_every=config.eval_every)
    name = f"{cell} gap {gap} lr {learning_rate:g} seed {seed}"
    last_report = [time.monotonic()]

    def heartbeat(progress):
        if progress.evaluated and time.monotonic() - last_report[0] > HEARTBEAT_SECONDS:
            last_report[0] = time.monotonic()
            print(f"  ... {name}: step {progress.step:,}/{progress.steps:,}, test "
                  f"{task.metric_name} {progress.metric:.3f}", flush=True)

    if interruptible:
        result = common.run_until_ctrl_c(trainer, heartbeat)
    else:
        result = trainer.run(on_progress=heartbeat)
    return {
        "cell": cell, "gap": gap, "learning_rate": learning_rate, "seed": seed,
        "solved": result.solved, "sequences_seen": result.sequences_seen,
        "metric": result.metric, "baseline": result.baseline,
        "seconds": round(result.seconds, 2), "parameters": model.count_params(),
    }


def _train_in_worker(arguments):
    return train_one(*arguments, interruptible=False)


def _start_worker(threads):
    """A worker process: Ctrl-C is the parent's to handle; TensorFlow gets its share of the CPU
    cores and, on a GPU, only the memory it uses (by default each process would take it all)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


def trained_runs(config, plan):
    """Yields the row of each run in `plan` as it finishes, `config.jobs` at a time."""
    if config.jobs == 1:
        for arguments in plan:
            yield train_one(*arguments, interruptible=True)
        return
    threads = max(1, (os.cpu_count() or 1) // config.jobs)
    context = multiprocessing.get_context("spawn")
    # Ctrl-C raises KeyboardInterrupt here even where the shell started us ignoring it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    pool = context.Pool(config.jobs, initializer=_start_worker, initargs=(threads,))
    try:
        yield from pool.imap_unordered(_train_in_worker, plan)
        pool.close()
    finally:
        pool.terminate()
        pool.join()
        signal.signal(signal.SIGINT, previous)


def summarise(runs):
    """One row per (cell, learning rate, gap): success rate, median sequences until solved,
    median metric and seconds."""
    rows = {}
    for run in runs:
        rows.setdefault((run["cell"], run["learning_rate"], run["gap"]), []).append(run)
    table = []
    for (cell, learning_rate, gap), group in rows.items():
        solved = [run["sequences_seen"] for run in group if run["solved"]]
        table.append({
            "cell": cell, "learning_rate": learning_rate, "gap": gap, "seeds": len(group),
            "parameters": group[0]["parameters"],
            "success_rate": len(solved) / len(group),
            "median_sequences_seen": statistics.median(solved) if solved else None,
            "median_metric": statistics.median(run["metric"] for run in group),
            "baseline": group[0]["baseline"],
            "median_seconds": statistics.median(run["seconds"] for run in group),
        })
    return table


def best_learning_rates(runs):
    """For each cell run at several rates: the rate that solved the most runs, then the one that
    needed the fewest sequences in all (the rule that chose TUNED_LEARNING_RATES)."""
    scores = {}
    for run in runs:
        solved, sequences = scores.get((run["cell"], run["learning_rate"]), (0, 0))
        if run["solved"]:
            solved, sequences = solved + 1, sequences + run["sequences_seen"]
        scores[(run["cell"], run["learning_rate"])] = (solved, sequences)
    best = {}
    for (cell, learning_rate), (solved, sequences) in scores.items():
        if cell not in best or (solved, -sequences) > best[cell][1]:
            best[cell] = (learning_rate, (solved, -sequences))
    return {cell: learning_rate for cell, (learning_rate, _) in best.items()}


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
    import common
    from matplotlib import ticker

    figure, (solved_axes, metric_axes) = common.new_figure((11, 4), columns=2)
    lines = dict.fromkeys((row["cell"], row["learning_rate"]) for row in table)
    several_rates = len({cell for cell, _ in lines}) < len(lines)
    for index, (cell, learning_rate) in enumerate(lines):
        rows = sorted((row for row in table
                       if (row["cell"], row["learning_rate"]) == (cell, learning_rate)),
                      key=lambda row: row["gap"])
        # Lines that coincide stay visible: each later one is thinner, dashed, with a smaller
        # marker.
        style = {"label": f"{cell} (lr {learning_rate:g})" if several_rates else cell,
                 "marker": "os^vD<>p"[index % 8], "markersize": max(3, 9 - 2 * index),
                 "linewidth": max(1, 3 - index), "linestyle": "-" if index == 0 else "--"}
        gaps = [row["gap"] for row in rows]
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
    metric_axes.set_ylim(0, 1.1 * highest)
    metric_axes.set_ylabel(f"median final test {metric_name}")
    for axes in (solved_axes, metric_axes):
        axes.set_xscale("log")
        axes.set_xticks(gaps)
        axes.xaxis.set_major_formatter(ticker.ScalarFormatter())
        axes.xaxis.set_minor_locator(ticker.NullLocator())
        axes.set_xlabel("gap (steps between the information and where it is needed)")
    solved_axes.legend(fontsize="small")
    metric_axes.legend(fontsize="small")
    figure.suptitle(title)
    common.save_figure(figure, path)


def main(argv=None):
    config = cli.parse_config(Config, __doc__, argv, smoke=SMOKE, full=FULL)
    out_dir = os.path.join(config.results, RECIPE)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if config.report_only:
        summary = load_summary(out_dir, RECIPE)
    else:
        summary = sweep(config, RECIPE, out_dir)
    report(summary, out_dir)


def sweep(config, recipe, out_dir):
    """Trains every (cell, gap, learning rate, seed) of `config`, writing OUT_DIR/summary.json
    after each run, and returns the summary. Ctrl-C ends the run with the finished runs kept."""
    cells = cli.parse_cells(config.cells)
    gaps = cli.parse_list(config.gaps, int, "gaps", positive=True)
    if config.learning_rate != "tuned":
        learning_rates(config, cells[0])  # A bad list ends the run now, not in a worker.
    elif any(cell not in TUNED_LEARNING_RATES for cell in cells):
        cli.fail(f"--learning-rate tuned: no tuned rate for "
                 f"{', '.join(cell for cell in cells if cell not in TUNED_LEARNING_RATES)}; "
                 "give rates with --learning-rate")
    # TensorFlow takes seconds to import: load it once the arguments are known to be good.
    import common

    with cli.bad_arguments_exit():
        tasks = {gap: make_task(config, gap) for gap in gaps}
    metric_name = tasks[gaps[0]].metric_name
    plan = [(config, cell, gap, learning_rate, seed)
            for gap in gaps for cell in cells for learning_rate in learning_rates(config, cell)
            for seed in range(config.first_seed, config.first_seed + config.seeds)]
    print(f"{recipe}: {len(plan)} runs ({', '.join(cells)}; gaps {', '.join(map(str, gaps))}; "
          f"{config.seeds} seed{'s' if config.seeds > 1 else ''}; {config.steps:,} steps of "
          f"{config.batch_size}), "
          f"{min(config.jobs, len(plan))} at a time", flush=True)

    def order(run):
        return (gaps.index(run["gap"]), cells.index(run["cell"]), run["learning_rate"],
                run["seed"])

    runs = []
    started = time.monotonic()
    summary = {"recipe": recipe, "command": " ".join(["python", *sys.argv]),
               "config": dataclasses.asdict(config), "metric_name": metric_name,
               "machine": common.machine(), "wall_seconds": 0, "runs": runs}
    try:
        for run in trained_runs(config, plan):
            runs.append(run)
            runs.sort(key=order)
            summary["wall_seconds"] = round(time.monotonic() - started)
            # Written after every run, whole, before it is announced, so an interrupted sweep
            # keeps every run it reported.
            common.write_json(os.path.join(out_dir, "summary.json"), summary)
            outcome = (f"solved after {run['sequences_seen']:,} sequences" if run["solved"]
                       else "not solved")
            print(f"[{len(runs)}/{len(plan)}] {run['cell']} gap {run['gap']} lr "
                  f"{run['learning_rate']:g} seed {run['seed']}: {outcome}; {metric_name} "
                  f"{run['metric']:.3f} (chance {run['baseline']:.3f}); {run['seconds']:.0f} s",
                  flush=True)
    except KeyboardInterrupt:
        print(f"\n{recipe}: interrupted; the {len(runs)} finished runs are in "
              f"{out_dir}/summary.json (--report-only tabulates them)", file=sys.stderr)
        sys.exit(cli.EXIT_INTERRUPTED)
    return summary


TITLES = {"long_gap": '"I grew up in France … I speak fluent French"',
          "adding": "The adding problem", "copy": "Copy memory"}


def report(summary, out_dir):
    """Writes summary.md and long_gap.png from the runs of `summary` and prints the table."""
    import common

    runs, metric_name = summary["runs"], summary["metric_name"]
    table = summarise(runs)
    several_rates = len({(run["cell"], run["learning_rate"]) for run in runs}) \
        > len({run["cell"] for run in runs})
    if several_rates:
        summary["best_learning_rates"] = best_learning_rates(runs)
        common.write_json(os.path.join(out_dir, "summary.json"), summary)
    common.write_text(os.path.join(out_dir, "summary.md"), markdown(table, metric_name))
    plot(table, os.path.join(out_dir, "long_gap.png"),
         f"{TITLES[summary['config']['task']]}: success against the gap", metric_name)
    print()
    print(markdown(table, metric_name), end="")
    if several_rates:
        print("best learning rate per cell (most runs solved, then fewest sequences): "
              + ", ".join(f"{cell} {rate:g}"
                          for cell, rate in summary["best_learning_rates"].items()))
    print(f"written to {out_dir}/summary.json, summary.md and long_gap.png"
          + (f"; the sweep took {summary['wall_seconds'] / 60:.1f} min"
             if summary.get("wall_seconds") else ""))


def load_summary(out_dir, recipe):
    """The summary.json of an earlier sweep of `recipe`; a missing or unreadable one ends the
    run."""
    import json

    path = os.path.join(out_dir, "summary.json")
    try:
        with open(path) as file:
            summary = json.load(file)
    except FileNotFoundError:
        cli.fail(f"--report-only: {path} does not exist; run a sweep with --results first")
    except (OSError, ValueError) as error:
        cli.fail(f"--report-only: cannot read {path}: {error}")
    if not isinstance(summary, dict) or summary.get("recipe") != recipe or not summary.get("runs"):
        cli.fail(f"--report-only: {path} is not the summary of a {recipe} sweep with runs")
    return summary


if __name__ == "__main__":
    main()
