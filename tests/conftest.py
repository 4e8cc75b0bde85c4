"""Shared test setup: quiet TensorFlow, and helpers to run scripts and fresh processes."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(args, cwd=ROOT, timeout=300):
    """Runs `python ARGS` in a fresh process and returns the CompletedProcess (text output)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def seeded():
    """Seeds Python, NumPy and TensorFlow, so model weights are the same on every run."""
    import keras

    keras.utils.set_random_seed(1234)
