"""Starts N local workers of one training script under `MultiWorkerMirroredStrategy`.

    python -m kala.distribute --workers 2 recipes/adding_problem.py --seed 1

Each worker runs `SCRIPT ARGS... --distribute multi_worker` (the flag is added unless ARGS
name one) with its own `TF_CONFIG` on 127.0.0.1 and free ports. Worker 0 is the chief: its
output is this command's output, and it alone writes results, checkpoints and exports. The
others write their output to `--log-dir` (runs/workers/worker-K.log). If any worker fails or is
killed, the launcher stops the rest and exits non-zero naming it; running the same command
again resumes every worker from the chief's last checkpoint (given `--checkpoint-dir`).

On real hosts, run the script itself on each host with that host's `TF_CONFIG` (README,
"Scaling out").
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time

from kala import distribute

GRACE_SECONDS = 10  # What a stopped worker is given to save and exit before SIGKILL.


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # One line, exit code 2, as the recipes do.
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _parse(argv):
    parser = _Parser(
        prog="python -m kala.distribute", description=__doc__.split("\n\n")[0],
        epilog="Example: python -m kala.distribute --workers 2 recipes/adding_problem.py "
               "--checkpoint-dir checkpoints/adding")
    parser.add_argument("--workers", type=int, default=2, help="how many workers to start "
                        "(default: 2)")
    parser.add_argument("--log-dir", default=os.path.join("runs", "workers"),
                        help="where workers 1..N-1 write their output (default: runs/workers)")
    parser.add_argument("script", help="the training script, e.g. recipes/adding_problem.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own flags")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers: must be at least 1; received {args.workers}")
    if not os.path.isfile(args.script):
        parser.error(f"{args.script}: no such script")
    if not args.log_dir:
        parser.error("--log-dir: must not be empty")
    return args


def _dies_with_parent():
    """In a worker, before it runs: ask Linux to send SIGTERM if the launcher dies, so that no
    worker is left waiting for its peers."""
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _how_it_ended(code):
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


def _stop(processes, signum=signal.SIGTERM):
    """Sends `signum` to the workers still running, and SIGKILL to those still running after
    GRACE_SECONDS (one stuck in a collective op with a dead peer cannot take a signal)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        time.sleep(0.1)
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def main(argv=None):
    args = _parse(argv)
    command = [sys.executable, args.script, *args.args]
    if not any(arg == "--distribute" or arg.startswith("--distribute=") for arg in args.args):
        command += ["--distribute", "multi_worker"]
    try:
        os.makedirs(args.log_dir, exist_ok=True)
    except OSError as error:
        sys.exit(f"--log-dir: cannot make {args.log_dir}: {error.strerror}")
    addresses = [f"127.0.0.1:{port}" for port in distribute.free_ports(args.workers)]
    received = []

    def request_stop(signum, frame):
        received.append(signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    processes, logs = [], {}
    for index in range(args.workers):
        env = {**os.environ, "TF_CONFIG": distribute.tf_config(addresses, index),
               # What a results file records as the command that ran: this one.
               distribute.LAUNCH_COMMAND: " ".join(
                   ["python -m kala.distribute", *(sys.argv[1:] if argv is None else argv)])}
        output = None
        if index:
            logs[index] = os.path.join(args.log_dir, f"worker-{index}.log")
            output = open(logs[index], "w")
        # Each worker in its own session: Ctrl-C reaches the launcher, which passes it on once.
        processes.append(subprocess.Popen(command, env=env, stdout=output, stderr=output,
                                          start_new_session=True, preexec_fn=_dies_with_parent))
        if output is not None:
            output.close()
    while True:
        if received:
            _stop(processes, received[0])
            name = signal.Signals(received[0]).name
            print(f"kala.distribute: {name}: stopped the {args.workers} workers; run the same "
                  "command to resume from the last checkpoint", file=sys.stderr)
            return 128 + received[0]
        codes = [process.poll() for process in processes]
        failed = [index for index, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            index = failed[0]
            code = codes[index]
            _stop(processes)
            where = f"; its output is in {logs[index]}" if index in logs else ""
            print(f"kala.distribute: worker {index} (pid {processes[index].pid}) "
                  f"{_how_it_ended(code)}{where}. The other workers were stopped; run the "
                  "same command to resume every worker from the last checkpoint "
                  "(with --checkpoint-dir).", file=sys.stderr)
            return code if code > 0 else 128 - code
        if all(code == 0 for code in codes):
            return 0
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
