"""The long-term dependency problem, measured: success against the gap, for each cell.

What it shows: the essay's central claim. "I grew up in France … I speak fluent French": when the
gap between the country and the language is short, a plain RNN connects them; as it grows, the
claim goes, a plain RNN can no longer learn the connection while an LSTM still can
("Understanding LSTM Networks", section "The Problem of Long-Term Dependencies"). This recipe
trains every cell at every gap with several seeds and the same budget, and reports per (cell,
gap) how often the cell solved the task, how many sequences it needed, and how long it took.

Work in progress (issue 3): the task, its defaults and the budget are still being measured; the
README does not quote this recipe yet.

Run it:
    python recipes/long_gap.py                       # the default sweep
    python recipes/long_gap.py --task adding         # the same sweep on the adding problem
    python recipes/long_gap.py --smoke               # a tiny sweep, for the tests
"""

import dataclasses
import os
import statistics
import sys

import cli

RECIPE = "long_gap"
TASKS = ("long_gap", "adding", "copy")


# Setup: the defaults live here, once; every field is also a command-line flag.
@dataclasses.dataclass
class Config:
    task: str = dataclasses.field(default="long_gap", metadata={
        "help": "the task to sweep: the long-gap language task, or the adding or copy problem "
                "with the gap as the sequence length", "choices": TASKS})
    cells: str = dataclasses.field(default="simple_rnn,lstm,gru", metadata={
        "help": "comma-separated cells to compare"})
    gaps: str = dataclasses.field(default="10,30,100", metadata={
        "help": "comma-separated gaps (sequence lengths for adding and copy)"})
    seeds: int = dataclasses.field(default=3, metadata={"help": "seeds per (cell, gap)"})
    filler: str = dataclasses.field(default="distractors", metadata={
        "help": "long_gap only: the text in the gap", "choices": ["words", "distractors"]})
    units: int = dataclasses.field(default=64, metadata={
        "help": "size of every cell's state (units are matched, not parameter counts)"})
    steps: int = dataclasses.field(default=1000, metadata={"help": "budget per run, in steps"})
    batch_size: int = dataclasses.field(default=64, metadata={"help": "sequences per step"})
    learning_rate: float = dataclasses.field(default=1e-2, metadata={
        "help": "Adam's learning rate, the same for every cell"})
    clipnorm: float = dataclasses.field(default=1.0, metadata={
        "help": "each gradient is clipped to this norm"})
    eval_every: int = dataclasses.field(default=100, metadata={
        "help": "steps between evaluations on the test split"})
    smoke: bool = dataclasses.field(default=False, metadata={
        "help": "a tiny sweep to check that everything works"})
    results: str = dataclasses.field(default="results", metadata={
        "help": "directory for summary.json, summary.md and long_gap.png (in DIR/long_gap/)"})


SMOKE = {"cells": "simple_rnn,lstm", "gaps": "2,4", "seeds": 1, "units": 8, "steps": 20,
         "batch_size": 8, "eval_every": 10}


def make_task(config, gap):
    """The task at one gap: for adding and copy, the gap is the sequence length."""
    import kala

    if config.task == "long_gap":
        return kala.tasks.LongGap(gap, filler=config.filler, test_size=512)
    if config.task == "adding":
        return kala.tasks.AddingProblem(gap, test_size=512)
    return kala.tasks.CopyMemory(gap, test_size=512)


def summarise(runs):
    """One row per (cell, gap): success rate, median sequences until solved, median metric."""
    rows = {}
    for run in runs:
        rows.setdefault((run["cell"], run["gap"]), []).append(run)
    table = []
    for (cell, gap), group in rows.items():
        solved = [run["sequences_seen"] for run in group if run["solved"]]
        table.append({
            "cell": cell, "gap": gap, "seeds": len(group),
            "success_rate": len(solved) / len(group),
            "median_sequences_seen": statistics.median(solved) if solved else None,
            "median_metric": statistics.median(run["metric"] for run in group),
            "baseline": group[0]["baseline"],
            "median_seconds": statistics.median(run["seconds"] for run in group),
        })
    return table


def markdown(table, metric_name):
    lines = [f"| cell | gap | solved | median sequences until solved | median {metric_name} | "
             "baseline | median seconds |", "|---|---|---|---|---|---|---|"]
    for row in table:
        sequences = (f"{row['median_sequences_seen']:,.0f}"
                     if row["median_sequences_seen"] is not None else "—")
        lines.append(f"| {row['cell']} | {row['gap']} | {row['success_rate']:.0%} of "
                     f"{row['seeds']} | {sequences} | {row['median_metric']:.3f} | "
                     f"{row['baseline']:.3f} | {row['median_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(table, path, title):
    """Success rate against the gap (log axis), one line per cell."""
    import common

    figure, axes = common.new_figure((6, 4))
    for cell in dict.fromkeys(row["cell"] for row in table):
        points = sorted((row["gap"], row["success_rate"]) for row in table if row["cell"] == cell)
        axes.plot(*zip(*points), marker="o", label=cell)
    axes.set_xscale("log")
    axes.set_ylim(-0.05, 1.05)
    axes.set_xlabel("gap (steps between the information and where it is needed)")
    axes.set_ylabel("share of seeds that solved the task")
    axes.set_title(title)
    axes.legend()
    common.save_figure(figure, path)


def main(argv=None):
    config = cli.parse_config(Config, __doc__, argv, smoke=SMOKE)
    cells = cli.parse_cells(config.cells)
    gaps = cli.parse_list(config.gaps, int, "gaps")
    # TensorFlow takes seconds to import: load it once the arguments are known to be good.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import common
    import kala

    out_dir = os.path.join(config.results, RECIPE)
    runs = []
    total = len(gaps) * len(cells) * config.seeds
    for gap in gaps:
        with cli.bad_arguments_exit():
            task = make_task(config, gap)
        for cell in cells:
            for seed in range(config.seeds):
                # Model: the same embedding or input, units and head for every cell.
                keras.utils.set_random_seed(seed)
                model = kala.build_model(cell, config.units, **task.model_options)
                with cli.bad_arguments_exit():
                    trainer = kala.Trainer(
                        model, task, steps=config.steps, batch_size=config.batch_size,
                        learning_rate=config.learning_rate, clipnorm=config.clipnorm, seed=seed,
                        eval_every=config.eval_every)
                try:
                    with common.ctrl_c_between_steps() as ctrl_c_pressed:
                        result = trainer.run(on_progress=common.stop_if(ctrl_c_pressed))
                except KeyboardInterrupt:
                    print(f"\n{RECIPE}: interrupted; the {len(runs)} finished runs are in "
                          f"{out_dir}/summary.json", file=sys.stderr)
                    sys.exit(cli.EXIT_INTERRUPTED)
                runs.append({
                    "cell": cell, "gap": gap, "seed": seed, "solved": result.solved,
                    "sequences_seen": result.sequences_seen, "metric": result.metric,
                    "baseline": result.baseline, "seconds": round(result.seconds, 2),
                    "parameters": model.count_params(),
                })
                outcome = (f"solved after {result.sequences_seen:,} sequences" if result.solved
                           else "not solved")
                print(f"[{len(runs)}/{total}] {cell} gap {gap} seed {seed}: {outcome}; "
                      f"{task.metric_name} {result.metric:.3f} (baseline {result.baseline:.3f}); "
                      f"{result.seconds:.0f} s", flush=True)
                # Written after every run, whole, so an interrupted sweep keeps what it measured.
                common.write_json(os.path.join(out_dir, "summary.json"), {
                    "recipe": RECIPE, "config": dataclasses.asdict(config),
                    "metric_name": task.metric_name, "machine": common.machine(), "runs": runs,
                })

    table = summarise(runs)
    with open(os.path.join(out_dir, "summary.md.tmp"), "w") as file:
        file.write(markdown(table, task.metric_name))
    os.replace(os.path.join(out_dir, "summary.md.tmp"), os.path.join(out_dir, "summary.md"))
    plot(table, os.path.join(out_dir, "long_gap.png"), f"{config.task}: success against the gap")
    print()
    print(markdown(table, task.metric_name), end="")
    print(f"written to {out_dir}/summary.json, summary.md and long_gap.png")


if __name__ == "__main__":
    main()
