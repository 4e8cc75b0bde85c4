"""Shared test setup: quiet TensorFlow, and helpers to run scripts and fresh processes."""

import os
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
export_dir, inputs_path = sys.argv[1], sys.argv[2]
signature = tf.saved_model.load(export_dir).signatures["serving_default"]
inputs = np.load(inputs_path)
(name,) = signature.structured_input_signature[1]
outputs = {key: value.numpy().tolist() for key, value in signature(**{name: tf.constant(inputs)}).items()}
assert "kala" not in sys.modules
print(json.dumps({"input": name, "outputs": outputs}))
"""


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
