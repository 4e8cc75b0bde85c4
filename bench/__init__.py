"""Speed, measured side by side: `python -m bench [--quick] [--json PATH]`, from a clone.

What a user would run instead is measured beside kala, interleaved round by round, and
reported as the median over rounds and as ratios, because absolute times on a shared machine
drift from minute to minute:

- training (`bench.training`): sequences per second of kala's `Trainer` as users run it
  (`Trainer.run`, one graph call of `log_every` steps between two reports), of Keras's
  `model.fit` on a copy of the same model at one step a call and at the Trainer's steps a call,
  of a plain `tf.function` taking the same steps on one fixed batch (the floor under any loop),
  and of PyTorch's `nn.RNN`/`nn.LSTM`/`nn.GRU`, eager and through `torch.compile`, each in a
  process of its own (`bench/torch_worker.py`) on batches made before the timed loop, when
  torch is installed; each as GFLOP/s and as a share of a matrix multiply timed in the same
  rounds;
- serving (`bench.serving`): a kala export's `serving_default`, loaded with
  `tf.saved_model.load`, at batch 1 (latency p50, p99) and batch 256 (sequences per second),
  against calling the Keras model;
- the input pipeline alone, against the rate training consumes it, for the synthetic task
  at every shape and for the recipes' tasks, whose Trainer also trains on one fixed batch
  (`bench.pipeline`);
- the adding problem at T = 100: time and sequences until kala's loop solves it
  (`bench.adding`);
- ideas for a faster LSTM (the full mode only; `bench.ideas`): three ways for a loop to run the
  train step, and an LSTM layer unrolled, fused (`BlockLSTM`), or fed its input projection for
  all steps at once, each against what it would replace.

Every model trains on the same synthetic regression (`bench.common.Synthetic`), with Adam and
gradients clipped to norm 1, so that the three loops do the same work: the time is in the
recurrent layer. `bench.report` writes the rows as Markdown; `bench.__main__` is the command
line, and the only module that prints.

The benchmark is not part of the installed package: it drives kala through its public API only,
and nothing in `kala` imports it.
"""

import os
import sys

# Quiet as the recipes are: kala holds back TensorFlow's start-up lines, this its info and
# warning lines; `--verbose` shows them all.
if "--verbose" in sys.argv[1:]:
    os.environ["KALA_VERBOSE"] = "1"
else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kala.quiet  # noqa: E402  Loads TensorFlow now, before the modules' own imports.

kala.quiet.for_this_process()
