"""The command line: `python -m bench [--quick] [--json PATH] ...`, run from the repository root.

It parses the flags, runs the measurements asked for with progress on stderr, writes the rows as
JSON when asked to, and prints the Markdown tables on stdout.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import tensorflow as tf

from bench import adding, common, ideas, pipeline, precision, report, serving, training

QUICK = {"shapes": (common.Shape(32, 50, 16, 64), common.Shape(128, 100, 2, 128)), "rounds": 6,
         "round_seconds": 0.5, "xla": False, "serving_cells": ("lstm",),
         "adding_cells": ("lstm",), "adding_seeds": (0,)}
FULL = {"shapes": QUICK["shapes"] + (common.Shape(32, 100, 32, 256), common.Shape(256, 200, 8, 64)),
        "rounds": 8, "round_seconds": 1.0, "xla": True,
        "serving_cells": ("simple_rnn", "lstm", "gru"), "adding_cells": ("lstm", "gru"),
        "adding_seeds": (0, 1, 2)}
PARTS = ("training", "serving", "pipeline", "precision", "adding", "ideas")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv):
    parser = _Parser(prog="python -m bench", description=(
        "Measures kala's training loop against model.fit and PyTorch, a kala export's "
        "serving_default against calling the Keras model, the input pipeline against "
        "training, and the time to solve the adding problem; prints Markdown tables."))
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines, start-up included")
    parser.add_argument("--quick", action="store_true",
                        help="two shapes, shorter rounds, no XLA, the LSTM only for serving "
                             "and the adding problem (under 5 minutes on a 2-core CPU)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    parser.add_argument("--shape", metavar="B,T,D,H", action="append", type=_shape,
                        help="measure this shape instead of the mode's (repeatable)")
    parser.add_argument("--cells", metavar="CELL,...", type=_cells,
                        help=f"only these cells (of {', '.join(common.GATES)})")
    parser.add_argument("--parts", metavar="PART,...", type=_parts,
                        help=f"only these measurements (of {', '.join(PARTS)}; default: all, "
                             "but ideas only in the full mode)")
    parser.add_argument("--tasks", metavar="TASK,...", type=_tasks,
                        help=f"the recipes' tasks whose pipelines to measure (of "
                             f"{', '.join(pipeline.TASKS)}; default: long_gap quick, all full)")
    parser.add_argument("--rounds", type=_positive, help="rounds (default: 6 quick, 8 full)")
    parser.add_argument("--adding-len", type=_positive, default=100,
                        help="length of the adding problem (default 100)")
    parser.add_argument("--adding-steps", type=_positive, default=3000,
                        help="training budget for the adding problem, in steps (default 3000)")
    args = parser.parse_args(argv)
    if args.json is not None:
        directory = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(directory):
            parser.error(f"--json: no directory {directory}")
    return args


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _shape(text):
    try:
        return common.Shape.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _names(text, valid, what):
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; valid: "
            f"{', '.join(valid)}")
    return names


def _cells(text):
    return _names(text, tuple(common.GATES), "cell")


def _tasks(text):
    return _names(text, tuple(pipeline.TASKS), "task")


def _parts(text):
    return _names(text, PARTS, "part")


def run(args, log=lambda message: None):
    """Runs the measurements `args` asks for; returns the JSON payload."""
    mode = QUICK if args.quick else FULL
    shapes = args.shape or mode["shapes"]
    rounds = args.rounds or mode["rounds"]
    parts = args.parts or (PARTS[:-1] if args.quick else PARTS)
    chosen = [(cell, implementation) for cell, implementation in common.MODELS
              if args.cells is None or cell in args.cells]
    started = time.perf_counter()
    rows = []
    for shape in shapes:
        if "training" in parts and chosen:
            log(f"training at {shape.label}: {len(chosen)} models")
            rows += training.training_rows(
                shape, rounds, mode["round_seconds"], chosen, mode["xla"],
                on_model=lambda done, total: log(f"  {done}/{total} models"))
        if "serving" in parts:
            for cell in mode["serving_cells"]:
                if args.cells is None or cell in args.cells:
                    log(f"serving {cell} at {shape.label}")
                    rows += serving.serving_rows(cell, shape, rounds)
        if "precision" in parts:
            log(f"precision policies for the LSTM at {shape.label}")
            rows += precision.precision_rows(shape, rounds, mode["round_seconds"])
        if "ideas" in parts:
            log(f"ideas for the LSTM at {shape.label}")
            rows += ideas.loop_rows(shape, rounds, mode["round_seconds"])
            rows += ideas.idea_rows(shape, rounds, mode["round_seconds"])
    if "pipeline" in parts:
        for shape in shapes:
            consumed = [row["sequences_per_second"] for row in rows
                        if row["measure"] == "training" and row["impl"].startswith("kala")
                        and row["shape"] == dataclasses.asdict(shape)]
            if consumed:
                log(f"pipeline at {shape.label}")
                # The fastest consumer at this shape is the hardest to keep fed.
                rows += pipeline.pipeline_rows(shape, rounds, max(consumed))
        names = args.tasks or (list(pipeline.TASKS)[:1] if args.quick else list(pipeline.TASKS))
        log(f"the recipes' pipelines: {', '.join(names)}")
        rows += pipeline.task_rows(names, rounds, mode["round_seconds"])
    if "adding" in parts:
        cells = [cell for cell in mode["adding_cells"] if args.cells is None
                 or cell in args.cells]
        log(f"adding problem at T={args.adding_len}: {', '.join(cells)}")
        rows += adding.adding_rows(cells, mode["adding_seeds"], args.adding_len,
                                   args.adding_steps)
    return {"mode": "quick" if args.quick else "full",
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "machine": common.machine(), "seconds": time.perf_counter() - started,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Nine models of one shape make `fit` trace nine functions from one code object, which
    # TensorFlow would warn of as retracing.
    tf.get_logger().setLevel("ERROR")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    payload = run(args, log)
    if args.json is not None:
        temporary = f"{args.json}.tmp-{os.getpid()}"
        with open(temporary, "w") as file:
            json.dump(payload, file, indent=2)
            file.write("\n")
        os.replace(temporary, args.json)
    print(report.markdown(payload))
    print(f"{payload['mode']} run: {payload['seconds']:.0f} s on {payload['machine']['processor']}"
          f" ({payload['machine']['cpu_count']} cores), TensorFlow "
          f"{payload['machine']['tensorflow']}.")


if __name__ == "__main__":
    main()
