"""TensorFlow's start-up lines are held back; everything else, real errors first, gets through."""

import pytest

from conftest import run_as_a_user
from kala import quiet

START_UP = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796218603.507360    2385 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796218603.507698    2385 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0000 00:00:1796218603.896199    2385 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796218607.786830    2385 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "2025-01-01 10:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom operations "
    "are on.",
    "E0000 00:00:1796219234.402390    6141 util.cc:131] oneDNN supports DT_INT32 only on "
    "platforms with AVX-512. Falling back to the default Eigen-based implementation if present.",
]
REAL = [
    "E0000 00:00:1796218607.786830    2385 cuda_platform.cc:52] CUDA_ERROR_OUT_OF_MEMORY: out "
    "of memory",  # From a start-up source, but not start-up noise.
    "W0000 00:00:1796219387.312333    7588 op_kernel.cc:1858] OP_REQUIRES failed at "
    "whole_file_read_ops.cc:117 : NOT_FOUND: /nonexistent",
    "Traceback (most recent call last):",
    "tensorflow.python.framework.errors_impl.NotFoundError: /nonexistent [Op:ReadFile]",
    "copy_memory.py: error: --results /proc/x: cannot write there",
]


@pytest.mark.parametrize("line", START_UP)
def test_start_up_lines_are_noise(line):
    assert quiet.is_noise(line)


@pytest.mark.parametrize("line", REAL)
def test_other_lines_are_not(line):
    assert not quiet.is_noise(line)


def test_importing_kala_prints_nothing_and_a_real_error_still_reaches_stderr():
    program = """
import os, sys
import kala
print("imported", flush=True)
from kala import quiet
with quiet.start_up():
    os.write(2, b"E0000 00:00:1.5  1 op_kernel.cc:1] a real error, written while held\\n")
    os.write(2, b"I0000 00:00:1.5  1 port.cc:153] oneDNN custom operations are on.\\n")
import tensorflow as tf
tf.io.read_file("/no/such/file")
"""
    process = run_as_a_user(["-c", program])
    assert process.stdout == "imported\n"
    assert process.returncode == 1
    assert "a real error, written while held" in process.stderr
    assert "NotFoundError" in process.stderr and "/no/such/file" in process.stderr
    for marker in ("absl::InitializeLog", "port.cc", "cudart_stub.cc", "cpu_feature_guard.cc",
                   "cuInit"):
        assert marker not in process.stderr


def test_kala_verbose_shows_tensorflows_start_up():
    process = run_as_a_user(["-c", "import kala"], KALA_VERBOSE="1")
    assert process.returncode == 0
    assert "port.cc" in process.stderr or "cpu_feature_guard.cc" in process.stderr


def test_a_recipe_says_only_its_own_lines_and_verbose_brings_tensorflows_back(tmp_path):
    command = ["recipes/copy_memory.py", "--smoke", "--results", str(tmp_path)]
    process = run_as_a_user(command)
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stderr == ""
    assert process.stdout.splitlines()[-1].startswith("copy_memory: lstm ")
    verbose = run_as_a_user([*command, "--verbose"])
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "port.cc" in verbose.stderr or "cpu_feature_guard.cc" in verbose.stderr
