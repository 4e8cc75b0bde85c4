"""Faults, injected for real: signals sent to running recipes, checkpoints damaged on disk, a file
size limit, a lock held by another process, a FIFO for a corpus. Every interruption resumes
bitwise equal to an uninterrupted run; every damaged file and bad value ends in one line that
names it; nothing is left half-written. docs/faults.md lists each fault with its test."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import kala
from conftest import ROOT, recipe_module, run_main, run_python

# The adding recipe at its smoke sizes, with a budget long enough to be interrupted in.
ADDING = [sys.executable, "recipes/adding_problem.py", "--smoke", "--steps", "1500",
          "--eval-every", "20"]
RUN_NAME = "2016-lstm-T20-seed0-steps1500-eval_every20-smoke"
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def start(arguments, **options):
    return subprocess.Popen(arguments, cwd=ROOT, env=QUIET, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


def signal_at_step(arguments, signum, step):
    """Runs a recipe and sends it `signum` once it reports an evaluation at `step` or later;
    returns (exit code, stdout, stderr)."""
    process = start(arguments)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("step ") and int(line.split()[1].replace(",", "")) >= step:
            process.send_signal(signum)
            break
    out, err = process.communicate(timeout=120)
    return process.returncode, "".join(lines) + out, err


def handles_sigterm(process, timeout=60):
    """Waits until `process` handles SIGTERM (Linux's /proc says), as a recipe does from the
    first lines of recipes/flags.py, which set its SIGINT handler just before. A signal sent
    earlier finds Python's defaults, as a fixed wait can on a loaded machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{process.pid}/status") as status:
            caught = next(line for line in status if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {process.pid} did not handle SIGTERM within {timeout} s")


def one_line(stderr):
    """The one line a recipe ends with on stderr (TensorFlow may have written before it)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    return stderr.strip().splitlines()[-1]


def weights(run_dir):
    return keras.saving.load_model(os.path.join(run_dir, "model.keras")).get_weights()


def exits_with_one_line(capsys, main, argv):
    """Runs a recipe's `main` in this process, and returns the one line it ended with."""
    code, _, err = run_main(capsys, main, argv)
    assert code == 2 and err.count("\n") == 1, err
    return err


# --- Interruptions. ---------------------------------------------------------------------------

def test_every_interruption_resumes_bitwise_equal_to_the_uninterrupted_run(tmp_path, capsys):
    reference = subprocess.run(ADDING + ["--results", str(tmp_path / "reference")], cwd=ROOT,
                               env=QUIET, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    checkpoints = tmp_path / "checkpoints"
    command = ADDING + ["--results", str(tmp_path / "results"), "--checkpoint-dir",
                        str(checkpoints)]

    # Ctrl-C, then SIGTERM: each finishes its step, checkpoints there, says how to resume.
    for signum, step, code in ((signal.SIGINT, 40, 130), (signal.SIGTERM, 100, 143)):
        returncode, out, err = signal_at_step(command, signum, step)
        assert returncode == code, err[-3000:]
        line = one_line(err)
        assert "interrupted at step" in line and "run the same command to resume" in line
        stopped = int(line.split("interrupted at step ")[1].split(";")[0].replace(",", ""))
        assert os.path.exists(checkpoints / f"ckpt-{stopped}.index")  # At the step, not before.
        if signum == signal.SIGTERM:
            assert "resumed at step" in out  # It took up Ctrl-C's checkpoint.

    # kill -9: the run resumes from its last periodic checkpoint.
    returncode, _, _ = signal_at_step(command, signal.SIGKILL, 160)
    assert returncode == -signal.SIGKILL
    # What a kill in the middle of a checkpoint leaves, to be cleaned on the next run.
    (checkpoints / "checkpoint.tmp5f3a9c").write_text("half a state file")
    (checkpoints / "ckpt-999_temp").mkdir()
    (checkpoints / "ckpt-999_temp" / "part-00000-of-00001.index").write_bytes(b"\0" * 10)

    # The latest checkpoint damaged (one byte flipped): refused, naming the file and the way out.
    latest = max(glob.glob(str(checkpoints / "ckpt-*.index")),
                 key=lambda path: int(path.split("ckpt-")[1].split(".")[0]))
    data = latest.replace(".index", ".data-00000-of-00001")
    damaged = bytearray(open(data, "rb").read())
    damaged[len(damaged) // 2] ^= 0xFF
    open(data, "wb").write(damaged)
    line = exits_with_one_line(capsys, recipe_module("adding_problem").main, command[2:])
    assert os.path.basename(data) in line and "Checksum does not match" in line
    assert "--resume-from-previous" in line and "is intact" in line
    assert sorted(os.listdir(checkpoints)).count("checkpoint.tmp5f3a9c") == 0
    assert not os.path.exists(checkpoints / "ckpt-999_temp")

    resumed = subprocess.run(command + ["--resume-from-previous"], cwd=ROOT, env=QUIET,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the newest intact one" in resumed.stdout
    with open(tmp_path / "results" / "adding_problem" / RUN_NAME / "result.json") as file:
        result = json.load(file)
    with open(tmp_path / "reference" / "adding_problem" / RUN_NAME / "result.json") as file:
        expected = json.load(file)
    assert (result["steps"], result["metric"], result["solved"]) == (
        expected["steps"], expected["metric"], expected["solved"])
    for got, want in zip(weights(tmp_path / "results" / "adding_problem" / RUN_NAME),
                         weights(tmp_path / "reference" / "adding_problem" / RUN_NAME)):
        assert np.array_equal(got, want)  # Bitwise.


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_starting_ends_the_run_at_once_with_one_line(tmp_path, signum):
    process = start(ADDING + ["--results", str(tmp_path)])
    handles_sigterm(process)  # recipes/flags.py's first lines: TensorFlow is loading now.
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    assert "interrupted" in one_line(err)
    assert not os.path.exists(tmp_path / "adding_problem" / RUN_NAME / "result.json")


def test_sigterm_during_an_export_removes_its_staging_directory(tmp_path):
    model_dir = tmp_path / "models" / "adding_problem"
    process = start(ADDING[:3] + ["--export", "--saved-models", str(tmp_path / "models"),
                                  "--results", str(tmp_path / "results")])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            model_dir.is_dir() and any(name.startswith(".staging-")
                                       for name in os.listdir(model_dir))):
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-3000:]
    assert "interrupted (SIGTERM)" in one_line(err)
    assert os.listdir(model_dir) == []  # No staging directory, and no version.


# --- Damaged checkpoints. ---------------------------------------------------------------------

def small_task():
    return kala.tasks.AddingProblem(10, test_size=64)


def small_trainer(directory, **options):
    task = small_task()
    keras.utils.set_random_seed(0)
    model = kala.build_model(**kala.models.variant("lstm", task.max_length), units=4,
                             **task.model_options)
    return kala.Trainer(model, task, steps=20, batch_size=8, eval_every=10,
                        stop_when_solved=False, checkpoint_dir=directory, **options)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A checkpoint directory holding ckpt-10 and ckpt-20."""
    directory = tmp_path_factory.mktemp("checkpoints")
    small_trainer(directory).run()
    return directory


def truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def empty(path):
    open(path, "wb").close()


def flip(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(data)


def garbage(path):
    open(path, "w").write("{not json")


DATA, INDEX = "ckpt-20.data-00000-of-00001", "ckpt-20.index"


@pytest.mark.parametrize("name, damage, message, previous", [
    (DATA, truncate, f"{DATA} is damaged", 10),
    (DATA, empty, f"{DATA} is damaged", 10),
    (DATA, flip, rf"{DATA} is damaged \(.*Checksum does not match", 10),
    (DATA, os.remove, f"{DATA} is missing", 10),
    (INDEX, truncate, f"{INDEX} is damaged", 10),
    (INDEX, empty, f"{INDEX} is damaged", 10),
    (INDEX, flip, f"{INDEX} is damaged", 10),
    (INDEX, os.remove, f"{INDEX} is missing", 10),
    # Without the state file there is no saying which is the latest: refused, not restarted.
    ("checkpoint", os.remove, "checkpoint is missing", 20),
    ("checkpoint", garbage, r"checkpoint is damaged \(it names no checkpoint\)", 20),
    ("kala_run.json", garbage, r"kala_run.json is damaged \(Expecting", None),
    ("kala_run.json", os.remove, "holds checkpoints but no kala_run.json", None),
])
def test_a_damaged_checkpoint_is_named_and_an_intact_older_one_offered(
        tmp_path, two_checkpoints, name, damage, message, previous):
    directory = tmp_path / "checkpoints"
    shutil.copytree(two_checkpoints, directory)
    damage(str(directory / name))
    with pytest.raises(ValueError, match=message) as error:
        small_trainer(directory)
    if previous is None:
        return
    assert f"ckpt-{previous} (step {previous}) is intact" in str(error.value)
    assert "resume_from_previous=True" in str(error.value)
    trainer = small_trainer(directory, resume_from_previous=True)
    assert int(trainer.step.numpy()) == previous and trainer.resumed_instead
    assert trainer.run().steps == 20  # And it trains on from there.


def test_a_directory_whose_every_checkpoint_is_damaged_is_refused(tmp_path, two_checkpoints):
    directory = tmp_path / "checkpoints"
    shutil.copytree(two_checkpoints, directory)
    for path in glob.glob(str(directory / "ckpt-*.index")):
        truncate(path)
    with pytest.raises(ValueError, match="holds no intact older checkpoint"):
        small_trainer(directory, resume_from_previous=True)


# --- One run per directory. -------------------------------------------------------------------

HOLD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("locks", sys.argv[1])
locks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(locks)
lock = locks.hold(sys.argv[2])
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def hold(tmp_path):
    """Holds the lock of a directory in another process (kala.locks alone, without
    TensorFlow) until the test kills it; yields a function of the directory that returns the
    process."""
    holders = []

    def holding(directory):
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, os.path.join(ROOT, "kala", "locks.py"), str(directory)],
            stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "held"
        holders.append(process)
        return process

    yield holding
    for process in holders:
        process.kill()
        process.wait()


def test_a_checkpoint_directory_in_use_is_refused_and_a_killed_holders_lock_taken_over(
        tmp_path, hold, capsys):
    directory = tmp_path / "checkpoints"
    holder = hold(directory)
    with pytest.raises(ValueError, match=rf"in use by another run \(process {holder.pid}\)"):
        small_trainer(directory)
    err = exits_with_one_line(capsys, recipe_module("adding_problem").main, [
        "--smoke", "--results", str(tmp_path / "results"), "--checkpoint-dir", str(directory)])
    assert f"(process {holder.pid})" in err
    holder.kill()
    holder.wait()
    assert small_trainer(directory).run().steps == 20  # The dead holder's lock is taken over.


def test_a_results_directory_in_use_is_refused(tmp_path, hold, capsys):
    holder = hold(tmp_path / "adding_problem" / "2016-lstm-T20-seed0-smoke")
    err = exits_with_one_line(capsys, recipe_module("adding_problem").main,
                              ["--smoke", "--results", str(tmp_path)])
    assert f"in use by another run writing results (process {holder.pid})" in err


# --- A full disk. -----------------------------------------------------------------------------

UNDER_A_SIZE_LIMIT = """
import json, os, resource, sys
import keras
import kala, kala.ask
directory = sys.argv[1]
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

def limited(size, write):
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        write()
    except OSError as error:
        return str(error)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

task = kala.tasks.AddingProblem(10, test_size=64)
keras.utils.set_random_seed(0)
model = kala.build_model(**kala.models.variant("lstm", task.max_length), units=4,
                         **task.model_options)
checkpoints = os.path.join(directory, "checkpoints")
options = dict(batch_size=8, eval_every=10, stop_when_solved=False, checkpoint_dir=checkpoints)
kala.Trainer(model, task, steps=10, **options).run()
found = {"checkpoint": limited(1000, kala.Trainer(model, task, steps=20, **options).run),
         "checkpoint_files": sorted(os.listdir(checkpoints)),
         "resumed_at": int(kala.Trainer(model, task, steps=20, **options).step.numpy())}
base = os.path.join(directory, "models")
kala.export_model(model, base, "adding")
found["export"] = limited(20000, lambda: kala.export_model(model, base, "adding"))
found["versions"] = sorted(os.listdir(os.path.join(base, "adding")))
found["keras"] = limited(1000, lambda: kala.ask.save(model, os.path.join(directory, "m.keras")))
found["keras_files"] = sorted(name for name in os.listdir(directory) if "m.keras" in name)
print(json.dumps(found))
"""


def test_a_full_disk_is_one_message_naming_the_file_and_its_size_and_loses_nothing(tmp_path):
    process = run_python(["-c", UNDER_A_SIZE_LIMIT, str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]
    found = json.loads(process.stdout.strip().splitlines()[-1])
    assert found["checkpoint"].startswith(f"cannot write the checkpoint {tmp_path}/checkpoints/"
                                          "ckpt-20 (") and "bytes" in found["checkpoint"]
    assert "File too large; the earlier checkpoints" in found["checkpoint"]
    # ckpt-10 intact and nothing half-written beside it; the next run resumes from it.
    assert [name for name in found["checkpoint_files"] if "ckpt-20" in name or "tmp" in name
            ] == []
    assert found["resumed_at"] == 10
    assert "cannot write the export to" in found["export"] and "bytes" in found["export"]
    assert "File too large" in found["export"]
    assert found["versions"] == ["1"]  # The earlier version stays; no staging directory.
    assert "File too large" in found["keras"] and "bytes" in found["keras"]
    assert found["keras_files"] == []  # No temporary file.


def test_a_recipe_under_a_size_limit_ends_with_one_line_and_no_temporary_file(tmp_path):
    import resource

    process = start(ADDING + ["--results", str(tmp_path)])
    for line in process.stdout:
        if line.startswith("step "):  # Training: TensorFlow has written its own files.
            resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
            break
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2, err[-3000:]
    line = one_line(err)
    assert line.startswith(f"adding_problem.py: error: cannot write {tmp_path}/adding_problem/")
    assert "bytes: File too large" in line
    assert "what it would hold is printed above" in line and '"solved"' in out
    left = [name for _, _, names in os.walk(tmp_path) for name in names if "tmp" in name]
    assert left == []


# --- Bad corpora and bad values. --------------------------------------------------------------

def test_bad_corpora_are_refused_with_one_line(tmp_path, capsys):
    main = recipe_module("char_language_model").main
    results = ["--smoke", "--results", str(tmp_path / "results")]
    assert "--text was given an empty path" in exits_with_one_line(
        capsys, main, ["--text", ""] + results)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # No writer: opening it would wait forever.
    assert "is not a regular file" in exits_with_one_line(
        capsys, main, ["--text", str(fifo)] + results)
    with pytest.raises(ValueError, match="not a regular file"):
        kala.text.read_corpus(str(fifo))
    unreadable = tmp_path / "replacement.txt"
    unreadable.write_text("\ufffd" * 30000, encoding="utf-8")
    assert "holds no character but U+FFFD" in exits_with_one_line(
        capsys, main, ["--text", str(unreadable)] + results)


@pytest.mark.parametrize("flag, value", [("--units", "1000000"), ("--batch-size", "1000000000"),
                                         ("--seq-len", "1000000000")])
def test_sizes_beyond_the_machines_memory_are_refused_before_any_work(tmp_path, capsys, flag,
                                                                      value):
    err = exits_with_one_line(capsys, recipe_module("adding_problem").main,
                              [flag, value, "--results", str(tmp_path)])
    assert "would need at least" in err and "TB of memory to train; this machine allows" in err
    assert os.listdir(tmp_path) == []


RECIPES = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(ROOT, "recipes",
                                                                               "*.py"))
                 if "\ndef main(" in open(path).read())


@pytest.mark.parametrize("name", RECIPES)
def test_a_directory_that_cannot_be_written_is_refused_with_one_line(capsys, name):
    # /sys takes no new files, even from root (for whom permission bits stop nothing).
    module = recipe_module(name)
    flags = ["--results"] + (["--checkpoint-dir"] if hasattr(module.Settings, "checkpoint_dir")
                             else [])
    for flag in flags:
        err = exits_with_one_line(capsys, module.main, [flag, "/sys"])
        assert f"{flag} /sys: cannot write there" in err
