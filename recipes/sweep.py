"""Sweeps: many training runs (cells × gaps × learning rates × seeds), every finished run kept.

A sweeping recipe writes the training of one run as a function of its own, `train_run(*run)`,
which returns the run's row (a dict), and hands it to `run` with the plan, a list of argument
tuples. `run` trains the plan `jobs` at a time, each run in a worker process with an equal share
of the CPU cores, prints a line per run as it finishes, and writes the summary whole after each
one, so a sweep that Ctrl-C ends keeps every run it reported. A recipe that stores its runs
passes `stored`, which gives the row of a run already done (and None for one to train).

`summarise`, `best_learning_rates` and `load_summary` read the rows back.
"""

import json
import multiprocessing
import os
import signal
import statistics
import sys
import time

import flags
import output


def run(train_run, plan, summary, out_dir, *, jobs=1, describe=str, stored=None, rows="runs",
        started=None):
    """Trains each run of `plan`, keeps its row in `summary[rows]` (in the order of the plan)
    and writes `summary` to OUT_DIR/summary.json after each; returns the rows. `describe(row)`
    is the line printed as a run finishes; `summary["wall_seconds"]` counts from `started` (a
    `time.monotonic()`; by default now)."""
    started = time.monotonic() if started is None else started
    output.claim(out_dir)  # One sweep writing OUT_DIR at a time.
    done, trained = {}, 0
    try:
        for index, row, was_stored in _rows(train_run, plan, jobs, stored):
            done[index] = row
            trained += not was_stored
            summary[rows] = [done[index] for index in sorted(done)]
            elapsed = time.monotonic() - started
            summary["wall_seconds"] = round(elapsed)
            summary["finished_at"] = output.now()
            # Written before the run is announced: an interrupted sweep keeps what it reported.
            output.write_json(os.path.join(out_dir, "summary.json"), summary)
            left = len(plan) - len(done)
            # The pace of the runs trained here: a stored run took no time.
            others = "the last one takes" if left == 1 else f"the other {left} take"
            eta = (f"; at this pace {others} about "
                   f"{output.duration(elapsed / trained * left)}" if left and trained else "")
            print(f"[{len(done)}/{len(plan)}] {describe(row)}{eta}", flush=True)
    except KeyboardInterrupt as error:
        again = "; the same command takes them up again" if stored is not None else ""
        print(f"\n{summary['recipe']}: interrupted; the {len(done)} finished runs are in "
              f"{out_dir}/summary.json (--report-only tabulates them){again}", file=sys.stderr)
        sys.exit(128 + getattr(error, "signum", signal.SIGINT))
    return summary[rows]


def _rows(train_run, plan, jobs, stored):
    """Yields `(index, row, stored)` for each run of `plan` as it finishes, `jobs` at a time
    (the stored runs first)."""
    todo = []
    for index, arguments in enumerate(plan):
        row = stored(*arguments) if stored is not None else None
        if row is not None:
            yield index, row, True
        else:
            todo.append((train_run, index, arguments))
    if jobs == 1 or len(todo) <= 1:
        for work in todo:
            yield _train(work)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    # The workers start ignoring Ctrl-C (it is the parent's to handle), before they import the
    # recipe and TensorFlow; then Ctrl-C raises KeyboardInterrupt here, even where the shell
    # started us ignoring it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    pool = context.Pool(jobs, initializer=_start_worker, initargs=(threads,))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield from pool.imap_unordered(_train, todo)
        # Every run is done: the workers take the pool's sentinel and exit by themselves.
        # (Terminating them here could leave one waiting forever for the queue's lock, which
        # terminate() takes, where SIGTERM reached another of its threads.)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        signal.signal(signal.SIGINT, previous)


def _train(work):
    train_run, index, arguments = work
    return index, train_run(*arguments), False


def _start_worker(threads):
    """A worker process: Ctrl-C is the parent's to handle, and SIGTERM (the pool's way to stop
    it) ends it at once, not at the trainer's next step; TensorFlow gets its share of the CPU
    cores and, on a GPU, only the memory it uses (by default each process would take it all)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_worker)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


def _end_worker(signum, frame):
    os._exit(128 + signum)


def summarise(runs):
    """One row per (cell, learning rate, gap): success rate, median sequences until solved,
    median metric and seconds."""
    groups = {}
    for row in runs:
        groups.setdefault((row["cell"], row["learning_rate"], row["gap"]), []).append(row)
    table = []
    for (cell, learning_rate, gap), group in groups.items():
        solved = [row["sequences_seen"] for row in group if row["solved"]]
        table.append({
            "cell": cell, "learning_rate": learning_rate, "gap": gap, "seeds": len(group),
            "parameters": group[0]["parameters"],
            "success_rate": len(solved) / len(group),
            "median_sequences_seen": statistics.median(solved) if solved else None,
            "median_metric": statistics.median(row["metric"] for row in group),
            "baseline": group[0]["baseline"],
            "median_seconds": statistics.median(row["seconds"] for row in group),
        })
    return table


def best_rows(runs, key, score):
    """For each `key(row)`: the row of `runs` with the lowest `score(row)` (the first, on a
    tie): the best rate of a search, where runs have a score rather than solved or not."""
    best = {}
    for row in runs:
        if key(row) not in best or score(row) < score(best[key(row)]):
            best[key(row)] = row
    return best


def best_learning_rates(runs):
    """For each cell run at several rates: the rate that solved the most runs, then the one that
    needed the fewest sequences in all."""
    scores = {}
    for row in runs:
        solved, sequences = scores.get((row["cell"], row["learning_rate"]), (0, 0))
        if row["solved"]:
            solved, sequences = solved + 1, sequences + row["sequences_seen"]
        scores[(row["cell"], row["learning_rate"])] = (solved, sequences)
    best = {}
    for (cell, learning_rate), (solved, sequences) in scores.items():
        if cell not in best or (solved, -sequences) > best[cell][1]:
            best[cell] = (learning_rate, (solved, -sequences))
    return {cell: learning_rate for cell, (learning_rate, _) in best.items()}


def load_summary(out_dir, recipe):
    """The summary.json of an earlier sweep of `recipe`; a missing or unreadable one ends the
    run with one line."""
    path = os.path.join(out_dir, "summary.json")
    try:
        with open(path) as file:
            summary = json.load(file)
    except FileNotFoundError:
        flags.fail(f"--report-only: {path} does not exist; run a sweep with --results first")
    except (OSError, ValueError) as error:
        flags.fail(f"--report-only: cannot read {path}: {error}")
    if not isinstance(summary, dict) or summary.get("recipe") != recipe or not summary.get("runs"):
        flags.fail(f"--report-only: {path} is not the summary of a {recipe} sweep with runs")
    return summary
