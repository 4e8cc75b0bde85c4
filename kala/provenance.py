"""What a run ran on, for the results files that the recipes and the benchmark write beside
their numbers: the CPU, its cores, the GPUs TensorFlow sees, the versions of Python,
TensorFlow and Keras, and the thread settings given in the environment."""

import os
import platform

import keras
import tensorflow as tf


# The CPU flags that decide how fast 16-bit and wide vector maths can be.
FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def cpu_features():
    """Which of `FEATURES` the CPU has (from /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as file:
            flags = next((line.split(":", 1)[1].split() for line in file
                          if line.startswith("flags")), [])
    except OSError:
        return []
    return [name for name in FEATURES if name in flags]


def machine():
    """The platform, the CPU model (from /proc/cpuinfo where there is one), the cores, the GPUs
    and the versions, as a dict that JSON can hold."""
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            names = [line.split(":", 1)[1].strip() for line in file
                     if line.startswith("model name")]
        processor = names[0] if names else processor
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "processor": processor,
        "cpu_count": os.cpu_count(),
        "cpu_features": cpu_features(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        # Thread settings from the environment; unset, TensorFlow takes one thread per core.
        "thread_settings": {name: os.environ[name] for name in (
            "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
            if name in os.environ},
    }
