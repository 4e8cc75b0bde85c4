"""Shared test setup: quiet TensorFlow, and helpers to run scripts and fresh processes."""

import os
import shutil
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loads an export the way a server would: a fresh process that never imports kala.
FRESH_LOAD = """
import json, sys
import numpy as np
import tensorflow as tf
export_dir, inputs_path, signature_name = sys.argv[1:]
signature = tf.saved_model.load(export_dir).signatures[signature_name]
inputs = dict(np.load(inputs_path))
if "__only__" in inputs:
    (name,) = signature.structured_input_signature[1]
    inputs = {name: inputs.pop("__only__")}
answer = signature(**{key: tf.constant(value) for key, value in inputs.items()})
outputs = {key: value.numpy().tolist() for key, value in answer.items()}
assert "kala" not in sys.modules
print(json.dumps({"inputs": sorted(inputs), "outputs": outputs}, default=bytes.decode))
"""


def serve_in_fresh_process(version_dir, inputs, scratch_dir, signature="serving_default"):
    """Answers `inputs` with a signature of an export loaded in a fresh process that never
    imports kala. `inputs` is an array for the signature's only input, or a dict of them by
    name. Returns the names of the inputs sent, sorted, and the outputs as NumPy arrays."""
    import json

    import numpy as np

    inputs_path = os.path.join(scratch_dir, "inputs.npz")
    np.savez(inputs_path, **(inputs if isinstance(inputs, dict) else {"__only__": inputs}))
    process = run_python(["-c", FRESH_LOAD, str(version_dir), inputs_path, signature])
    assert process.returncode == 0, process.stderr[-3000:]
    answer = json.loads(process.stdout.strip().splitlines()[-1])
    return answer["inputs"], {name: np.array(value) for name, value in answer["outputs"].items()}


def run_python(args, cwd=ROOT, timeout=300):
    """Runs `python ARGS` in a fresh process and returns the CompletedProcess (text output)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def git(*arguments, cwd):
    return subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="session")
def clone(tmp_path_factory):
    """A repository holding this working tree's files as its one commit, as a fresh clone
    would. The tests that run recipes in it as a user would (default output directories) share
    it: what they write is under the git-ignored runs/."""
    clone = tmp_path_factory.mktemp("clone")
    files = git("ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT)
    for name in filter(None, files.split("\0")):
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(os.path.dirname(clone / name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), clone / name)
    git("init", "-q", cwd=clone)
    git("add", "-A", cwd=clone)
    git("-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "clone",
        cwd=clone)
    return clone


def user_environment():
    """The environment a user runs in: none of the tests' settings that quiet TensorFlow."""
    return {key: value for key, value in os.environ.items()
            if key not in ("TF_CPP_MIN_LOG_LEVEL", "KALA_VERBOSE")}


def run_as_a_user(args, cwd=ROOT, timeout=300, **env):
    """Runs `python ARGS` as `run_python` does, in `user_environment()` plus `env`."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**user_environment(), **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def seeded():
    """Seeds Python, NumPy and TensorFlow, so model weights are the same on every run."""
    import keras

    keras.utils.set_random_seed(1234)


def recipe_module(name):
    """A module of recipes/, imported as a recipe imports its helpers."""
    import importlib

    sys.path.insert(0, os.path.join(ROOT, "recipes"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def run_main(capsys, main, argv):
    """Runs a script's `main(argv)` in this process, as `python SCRIPT ARGV` would but without
    starting TensorFlow again: returns its exit code (0 if it returned) and what it printed.
    The one-line exits of bad arguments are the same code path as in a process of their own
    (tests/test_recipes.py runs one that way)."""
    capsys.readouterr()
    code = 0
    try:
        main(argv)
    except SystemExit as exit:
        code = exit.code
    finally:
        if "output" in sys.modules:  # What a recipe claimed is free for the next one.
            sys.modules["output"].release_claims()
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err
