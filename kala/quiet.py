"""TensorFlow's start-up lines, held back so that a user sees kala's.

Loading TensorFlow and listing its devices writes a dozen lines to file descriptor 2 (the
process's stderr) in every process: absl's "All log messages before absl::InitializeLog()", the
oneDNN note, "Could not find cuda drivers", the CPU-instructions note and, on a machine without a
GPU, "failed call to cuInit". TF_CPP_MIN_LOG_LEVEL does not reach the ones written before absl
starts. While a filter is on, descriptor 2 goes through a pipe and those lines are dropped, and
only those (and one known notice TensorFlow logs as an error, `NOTICES`): every other line passes
through unchanged, so a real error still reaches the user. With KALA_VERBOSE=1 in the
environment nothing is held back.

- `start_up()`: a filter while a block runs; kala/__init__.py loads TensorFlow in one.
- `for_this_process()`: a filter until the process exits, for the scripts (the recipes,
  `python -m kala.ask`, `python -m kala.serving`, the benchmark), whose later lines are theirs;
  `for_a_kala_script()` also hides TensorFlow's info and warnings under `python -m kala.…`.

This module imports nothing of kala or TensorFlow.
"""

import atexit
import contextlib
import os
import re
import signal
import sys
import threading

# A line of TensorFlow's C++ logging: severity, date or zeros, time, thread, source file, line.
_LOGGED = re.compile(r"^(?:(?P<severity>[IWEF])\d{4} [\d:]+\.\d+\s+\d+ "
                     r"|\d{4}-\d\d-\d\d [\d:.]+: (?P<severity2>[IWEF]) )"
                     r"(?P<source>\S+?):\d+\] (?P<text>.*)")
# The start-up lines, by the source file that writes them and, for errors, what they say.
_START_UP_SOURCES = ("port.cc", "cudart_stub.cc", "cpu_feature_guard.cc", "cuda_platform.cc",
                     "cuda_executor.cc", "cuda_fft.cc", "cuda_dnn.cc", "cuda_blas.cc",
                     "computation_placer.cc", "dso_loader.cc")
_START_UP_ERRORS = ("failed call to cuInit", "Unable to register", "already been registered",
                    "already registered")
_START_UP_LINES = ("WARNING: All log messages before absl::InitializeLog() is called",
                   "To enable the following instructions:",
                   "TF-TRT Warning: Could not find TensorRT")
# Notices TensorFlow logs at error level that say nothing is wrong: where oneDNN has no integer
# kernel it says so once, and uses Eigen's.
NOTICES = ("oneDNN supports DT_INT32 only on platforms with AVX-512",
           "oneDNN supports DT_BOOL only on platforms with AVX-512")


def verbose():
    """True when KALA_VERBOSE asks to see everything TensorFlow writes."""
    return os.environ.get("KALA_VERBOSE", "") not in ("", "0")


def is_noise(line):
    """True for a line TensorFlow writes while it loads and lists devices, or one of `NOTICES`;
    False for any other, errors included."""
    if line.startswith(_START_UP_LINES):
        return True
    match = _LOGGED.match(line)
    if not match:
        return False
    if any(notice in match.group("text") for notice in NOTICES):
        return True
    if os.path.basename(match.group("source")) not in _START_UP_SOURCES:
        return False
    severity = match.group("severity") or match.group("severity2")
    return severity in "IW" or any(text in match.group("text") for text in _START_UP_ERRORS)


class _Filter:
    """Descriptor 2 through a pipe, copied back line by line but for the noise."""

    def __init__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        reader, writer = os.pipe()
        self.thread = threading.Thread(target=self._copy, args=(reader,), daemon=True)
        # The copying thread blocks every signal (a thread inherits its creator's mask), so
        # that a SIGTERM or Ctrl-C always reaches the main thread, which acts on it.
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self.thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        os.dup2(writer, 2)
        os.close(writer)

    def _copy(self, reader):
        with os.fdopen(reader, "rb") as pipe:
            for line in pipe:
                if not is_noise(line.decode("utf-8", "replace")):
                    os.write(self.saved, line)

    def stop(self):
        """Descriptor 2 back where it was, once everything written before is through."""
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # The pipe's last writer is gone: the copy reads to its end.
        self.thread.join(timeout=10)
        os.close(self.saved)


def _started():
    """A filter, or None under KALA_VERBOSE=1 or where descriptor 2 cannot be redirected."""
    if verbose():
        return None
    try:
        return _Filter()
    except OSError:
        return None


@contextlib.contextmanager
def start_up():
    """Drops TensorFlow's start-up lines from stderr while the body runs."""
    running = None if _for_this_process else _started()
    try:
        yield
    finally:
        if running is not None:
            running.stop()


def for_a_kala_script():
    """Under `python -m kala.<module>` (kala.ask, kala.serving), before TensorFlow loads: its info
    and warning lines hidden too (TF_CPP_MIN_LOG_LEVEL=2), as the recipes hide them, unless
    KALA_VERBOSE=1. A program that imports kala is left as it is."""
    argv = getattr(sys, "orig_argv", [])
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1].startswith("kala.") and not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


_for_this_process = []


def for_this_process():
    """Drops TensorFlow's start-up lines and `NOTICES` from stderr until the process exits
    (then everything written is let through first). Calling it again changes nothing."""
    if not _for_this_process:
        running = _started()
        if running is not None:
            _for_this_process.append(running)
            atexit.register(running.stop)
