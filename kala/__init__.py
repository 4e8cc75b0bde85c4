"""kala: the essay "Understanding LSTM Networks" (Olah, 2015) as runnable, measured experiments.

The library, in the order a run uses it:

- `kala.tasks`: sequence tasks as tf.data pipelines (the long-gap language task, the adding
  problem, copy memory), each with its loss, metric, success criterion and baseline.
- `kala.cells`: the essay's cells and variants written out step by step, weight for weight like
  Keras's, and `kala.cells.watch` to see a trained layer's gates at every step.
- `kala.build_model`: a model of any cell by name, from Keras's built-in layers or the essay's
  cells, with the initializations made for long lags.
- `kala.train` / `kala.Trainer`: a tf.function training loop that stops when the task is solved,
  stops between steps on Ctrl-C or SIGTERM (`kala.training.Interrupted`), and resumes from
  checkpoints, refusing damaged ones; `kala.locks` keeps one run per directory. Given a
  `kala.distribute` strategy, it trains on several devices or workers with the same maths.
- `kala.export_model`: a SavedModel version directory that TF Serving loads, answering the
  signatures of `kala.signatures`; `kala.stepping` runs a model one step at a time, for the
  `step` signature and for writing text.
- `kala.text`: character language models on real text (the standard library's source by
  default), and `kala.reading` to see what such a model's cells follow and how far back its
  brackets reach.
- `kala.provenance.machine`: what a run ran on (CPU, cores, GPUs, versions), for results files.
- `kala.checks`: the argument checks every module shares.
- `kala.quiet`: TensorFlow's start-up lines held back (KALA_VERBOSE=1 shows them).

The library never prints and never reads the command line; the scripts in `recipes/` do.
"""

from kala import quiet

quiet.for_a_kala_script()
with quiet.start_up():  # TensorFlow's start-up lines, held back (KALA_VERBOSE=1 shows them).
    import tensorflow as _tensorflow

    _tensorflow.config.list_physical_devices()

from kala import cells, distribute, series, stepping, tasks  # noqa: E402
from kala.export import export_model
from kala.models import build_model
from kala.training import Interrupted, Progress, Trainer, TrainResult, WorkerLost, train

__all__ = ["Interrupted", "Progress", "TrainResult", "Trainer", "WorkerLost", "build_model",
           "cells", "distribute", "export_model", "series", "stepping", "tasks", "train"]
__version__ = "0.1.0"
