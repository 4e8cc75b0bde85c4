"""The training loop: online training on fresh sequences until the task is solved.

One `tf.function` train step, traced once for the task's input signature, runs Adam with
gradient clipping on a fresh batch; every `eval_every` steps the model is scored on the task's
fixed test split and training stops as soon as it meets the task's success criterion. The result
says how many sequences were seen until then: the unit of Hochreiter & Schmidhuber 1997.

With a `checkpoint_dir`, progress is saved with `tf.train.CheckpointManager` (which writes under a
temporary name, then renames) and a later run with the same settings resumes at the saved step
with the same batches it would have seen; a damaged checkpoint is refused, naming the file.
Ctrl-C or SIGTERM stops a run between two steps, with a
checkpoint, and raises `Interrupted`. The loop never prints; it reports `Progress` events to a
callback. TensorFlow places the work on
a GPU when one is visible.

With a `tf.distribute.Strategy` (see `kala.distribute`) the same loop runs on several devices or
workers, and does the same maths: every replica draws its rows of the same global batch, the
gradients are summed over the replicas and then clipped, as one device would. A model of a mixed
precision policy computes in float16 or bfloat16 and keeps float32 variables and a float32
loss; float16 trains with Keras's `LossScaleOptimizer`.
"""

import contextlib
import dataclasses
import glob
import importlib.util
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from kala import checks, distribute, locks

RUN_FILE = "kala_run.json"
# Keras's precision policies the loop trains under (`keras.mixed_precision.set_global_policy`
# before the model is built): float32, or 16-bit maths with float32 weights.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# The optimizers the loop trains with: Adam, or plain gradient descent (Hochreiter &
# Schmidhuber's 1997 runs: a fixed learning rate, one sequence per update).
OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class Progress:
    """What the loop reports to `on_progress`: after every `log_every` steps and every evaluation."""

    step: int
    steps: int
    sequences_seen: int
    loss: float | None  # Mean training loss since the previous report; None if no step ran.
    metric: float | None  # The latest test metric, None before the first evaluation.
    evaluated: bool  # Whether `metric` was computed at this step.
    solved: bool
    seconds: float
    # For a task with a stop rule: how many of the most recent training sequences it reads
    # (up to its window) were wrong, and how many it read.
    recent_wrong: int | None = None
    recent: int | None = None

    def __str__(self):
        loss = "-" if self.loss is None else f"{self.loss:.4f}"
        metric = "-" if self.metric is None else f"{self.metric:.4f}"
        recent = ("" if self.recent is None
                  else f", {self.recent_wrong:,} wrong of the last {self.recent:,} trained on")
        return (f"step {self.step:,}/{self.steps:,}: {self.sequences_seen:,} sequences, loss "
                f"{loss}{recent}, test metric {metric}{' (solved)' if self.solved else ''}, "
                f"{self.seconds:.1f} s")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    solved: bool
    sequences_seen: int | None  # Sequences trained on until solved; None when not solved.
    steps: int  # Steps taken in all, counting those of earlier runs resumed from.
    metric: float  # The test metric at the end.
    metric_name: str
    baseline: float
    seconds: float  # Wall time in all, counting earlier runs resumed from.
    resumed_from_step: int
    history: list  # One dict per evaluation in this run: step, sequences_seen, loss, metric.
    train_step_traces: int  # How often the train step was traced: 1 unless shapes changed.


class Trainer:
    """Trains `model` on `task`. Arguments are checked and any checkpoint is restored here, so a
    bad setting fails before the first step; `run()` trains.

    Args:
        model: a Keras model whose input and output fit the task (`task.model_options`).
        task: a `kala.tasks.Task`.
        steps: the budget, in training steps (`steps * batch_size` sequences).
        batch_size: sequences per step.
        learning_rate, clipnorm: the learning rate, and the norm each gradient is clipped to
            (None: not clipped).
        optimizer: `"adam"`, or `"sgd"` for plain gradient descent at a fixed rate.
        seed: the seed of the training batches (the model's initial weights are seeded by the
            caller, e.g. with `keras.utils.set_random_seed`).
        eval_every: steps between evaluations on the test split (and checkpoints).
        log_every: steps between progress reports.
        jit_compile: compile the train step with XLA. On a 2-core CPU it made small shapes
            faster and some larger ones slower (`python -m bench` measures it).
        stop_when_solved: stop at the first evaluation that meets the task's criterion. A task
            with a `stop_rule` (`kala.tasks.StopRule`) is evaluated as soon as its rule holds
            (checked after every step, as the paper does) and counts as solved only then; when
            the test split does not confirm it, the rule is read again from the next report.
        checkpoint_dir: where to save and resume from; None disables checkpoints. The
            directory is locked while a Trainer restores from it and while it runs: another
            Trainer (in any process) is refused then.
        resume_from_previous: when the latest checkpoint in `checkpoint_dir` is damaged (or the
            state file naming it is gone), resume from the newest intact one and remove the
            damaged ones. Without it, such a directory is refused with a ValueError that names
            the damaged file and the intact checkpoint.
        logdir: where to write TensorBoard scalars; None disables them.
        strategy: a `tf.distribute.Strategy` to train under (`kala.distribute.make_strategy`),
            or None for one device. The model must have been built inside `strategy.scope()`,
            and `batch_size` (the global batch) must split evenly over its replicas. Global
            batch `i` of `seed` holds the same sequences whatever the number of replicas, and
            a checkpoint can be resumed with another number. Only the chief (see
            `kala.distribute.is_chief`) writes checkpoints and TensorBoard scalars; the other
            workers restore from the chief's `checkpoint_dir` and save into a scratch
            directory that they remove.
    """

    def __init__(self, model, task, *, steps, batch_size=32, learning_rate=1e-2, clipnorm=1.0,
                 seed=0, eval_every=100, log_every=10, stop_when_solved=True,
                 checkpoint_dir=None, logdir=None, jit_compile=False,
                 resume_from_previous=False, strategy=None, optimizer="adam"):
        steps, batch_size = checks.integer("steps", steps), checks.integer("batch_size", batch_size)
        eval_every = checks.integer("eval_every", eval_every)
        log_every = checks.integer("log_every", log_every)
        seed = checks.integer("seed", seed, minimum=0)
        learning_rate = checks.positive_number("learning_rate", learning_rate)
        if clipnorm is not None:
            clipnorm = checks.positive_number("clipnorm", clipnorm)
        optimizer = checks.one_of("optimizer", optimizer, OPTIMIZERS)
        self.stop_rule = task.stop_rule
        if self.stop_rule is not None:
            if strategy is not None:
                raise ValueError(
                    f"{task.name}'s stop rule reads every training sequence as it is trained "
                    "on, which kala does on one device only. Received: a strategy of "
                    f"{strategy.num_replicas_in_sync} replicas")
            if batch_size > self.stop_rule.window:
                raise ValueError(
                    f"{task.name}'s stop rule reads the last {self.stop_rule.window:,} training "
                    f"sequences; a step of more cannot be read. Received: batch_size={batch_size}")
        checks.boolean("jit_compile", jit_compile)
        if logdir is not None and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                f"`logdir` needs TensorBoard, which is not installed. Received: logdir={logdir!r}. "
                "Install it with `pip install tensorboard` (or kala's extra `.[tensorboard]`)."
            )
        self.strategy = _check_strategy(strategy, model, batch_size)
        self.replicas = 1 if strategy is None else strategy.num_replicas_in_sync
        self.is_chief = distribute.is_chief(strategy)
        self.model = model
        self.task = task
        self.steps = steps
        self.batch_size = batch_size
        self.seed = seed
        self.eval_every = eval_every
        self.log_every = log_every
        self.stop_when_solved = stop_when_solved
        self.logdir = os.fspath(logdir) if logdir is not None and self.is_chief else None
        self.precision = model.dtype_policy.name
        self.config = {
            **task.config(),
            "model": model.name,
            "parameters": int(model.count_params()),
            "batch_size": batch_size,
            "learning_rate": float(learning_rate),
            "clipnorm": None if clipnorm is None else float(clipnorm),
            "seed": seed,
        }
        if optimizer != "adam":  # Recorded when not the default, so older runs still resume.
            self.config["optimizer"] = optimizer
        if self.precision != "float32":  # Other maths: a resume under another is refused.
            self.config["precision"] = self.precision

        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            kind = keras.optimizers.Adam if optimizer == "adam" else keras.optimizers.SGD
            self.optimizer = kind(learning_rate=learning_rate, clipnorm=clipnorm)
            if self.precision == "mixed_float16":  # float16 gradients underflow unscaled.
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            # Keras creates the optimizer's slots lazily; build them now so that a checkpoint
            # restores them (and, under a strategy, so that they are mirrored).
            self.optimizer.build(model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.solved_at_step = tf.Variable(-1, dtype=tf.int64, trainable=False,
                                              name="solved_at")
            self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
            self.last_metric = tf.Variable(np.nan, dtype=tf.float64, trainable=False,
                                           name="metric")
            # What the stop rule reads: the latest training sequences, as the model judged
            # them before their update.
            self.recent = None if self.stop_rule is None else _Recent(self.stop_rule.window)
        self.manager = None
        self._lock = None
        self._scratch_saves = False  # A worker other than the chief (see `_reading_only`).
        # What was wrong with the latest checkpoint, when `resume_from_previous` resumed from
        # an older one; else None.
        self.resumed_instead = None
        if checkpoint_dir is not None:
            try:
                self._restore(os.fspath(checkpoint_dir), checks.boolean(
                    "resume_from_previous", resume_from_previous))
            finally:  # `run` takes the lock again, so a Trainer that never runs holds nothing.
                self.release()

        # Built once, so its cache serves every evaluation after the first.
        self.test_data = task.test_dataset()
        signature = [task.input_spec, task.target_spec]
        # One call runs the steps up to the next report, taking each batch from the
        # pipeline's iterator inside the graph, as `model.fit` does with `steps_per_execution`:
        # a call per step, with its batch handed over from Python, costs a small step much of its
        # time. XLA cannot compile the iterator, so it compiles the step.
        self._step = self._train_step if strategy is None else self._replica_step
        if jit_compile:
            self._step = tf.function(self._step, input_signature=signature, jit_compile=True)
        self._train_steps = tf.function(self._train_steps_in_graph if strategy is None
                                        else self._distributed_steps_in_graph)
        self.eval_step = tf.function(self._eval_step, input_signature=signature)
        # The pipeline's iterator, kept for the next `run`. Every batch is drawn in the graph
        # call that counts its step, so its next batch is always that of `self.step`.
        self._batches = None
        # Each Trainer traces its steps once. TensorFlow counts traces by code object, so a
        # sweep that makes many Trainers would be warned of "retracing" that is not happening.
        for step_function in (self._train_steps, self.eval_step):
            step_function._omit_frequent_tracing_warning = True

    # --- Checkpoints. ------------------------------------------------------------------------

    def _restore(self, directory, resume_from_previous):
        """Locks `directory`, checks that its run is this one, and restores its latest
        checkpoint, or (with `resume_from_previous`) the newest intact one. Every refusal is a
        ValueError that names the file and what is wrong with it."""
        self._lock_directory = directory
        if self.is_chief:  # The other workers only read the chief's directory.
            self._lock = locks.hold(directory)
            _remove_temporaries(directory)
        recent = {} if self.recent is None else {"recent": self.recent}
        self._checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step,
            solved_at_step=self.solved_at_step, seconds=self.elapsed, metric=self.last_metric,
            **recent,
        )
        self.manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=2)
        if not self.is_chief and not os.path.isdir(directory):
            self._reading_only()  # The chief has not made it: a first run.
            return
        on_disk = _checkpoints_on_disk(directory)
        state_file = os.path.join(directory, STATE_FILE)
        saved = _read_run_file(directory)
        if saved is None:
            if on_disk or os.path.exists(state_file):
                raise ValueError(
                    f"{directory} holds checkpoints but no {RUN_FILE} saying which run they "
                    "belong to, so they cannot be checked against this one. Restore the file, "
                    "or use another checkpoint directory."
                )
            self._reading_only()
            return
        changed = {key: (saved.get(key), value) for key, value in self.config.items()
                   if saved.get(key) != value}
        if changed:
            details = "; ".join(f"{key}: saved {old!r}, now {new!r}"
                                for key, (old, new) in sorted(changed.items()))
            raise ValueError(
                f"The checkpoint in {directory} belongs to a different run ({details}). "
                "Resume with the same settings, or use another checkpoint directory."
            )
        latest = self.manager.latest_checkpoint
        if latest is None and not on_disk:
            if os.path.exists(state_file):
                raise ValueError(f"{state_file} names no checkpoint that can be read, and the "
                                 "directory holds none. Use another checkpoint directory.")
            self._reading_only()
            return  # Stopped before its first checkpoint: nothing to resume.
        if latest is None:
            problem = (f"{state_file} is damaged (it names no checkpoint)"
                       if os.path.exists(state_file) else f"{state_file} is missing")
        else:
            problem = _damage(latest)
        if problem is None:
            self._load(latest)
            self._reading_only()
            return
        older = [prefix for prefix in reversed(on_disk) if prefix != latest]
        intact = next((prefix for prefix in older if _damage(prefix) is None), None)
        if intact is None:
            raise ValueError(f"Cannot resume from {directory}: {problem}, and it holds no "
                             "intact older checkpoint. Use another checkpoint directory to "
                             "start afresh.")
        if not resume_from_previous:
            raise ValueError(
                f"Cannot resume from {directory}: {problem}. The older checkpoint "
                f"{os.path.basename(intact)} (step {_number(intact):,}) is intact: resume from "
                "it with resume_from_previous=True (the recipes' --resume-from-previous), or "
                "use another checkpoint directory."
            )
        self.resumed_instead = problem
        if not self.is_chief:
            self._load(intact)
            self._reading_only()
            return
        # Resume from the intact one: the damaged newer ones go, and the state names it.
        for prefix in on_disk:
            if _number(prefix) > _number(intact):
                _remove_checkpoint(prefix)
        kept = [prefix for prefix in on_disk if _number(prefix) <= _number(intact)]
        _write_state(directory, kept[-2:])
        self.manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=2)
        self._load(intact)

    def _reading_only(self):
        """A worker other than the chief saves (it must: a save takes part in the collective
        ops of a multi-worker strategy) into scratch directories, never the chief's."""
        if not self.is_chief:
            self.manager = None
            self._scratch_saves = True

    def _load(self, prefix):
        try:
            self._checkpoint.restore(prefix).assert_existing_objects_matched()
        except Exception as error:  # Any way a checkpoint can fail to fit.
            raise ValueError(f"Cannot restore {prefix}: {_first_line(error)}. Use another "
                             "checkpoint directory.") from None

    def _save(self):
        if self._scratch_saves:
            scratch = tempfile.mkdtemp(prefix="kala-worker-")
            try:
                self._checkpoint.write(os.path.join(scratch, "ckpt"))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return
        if self.manager is None:
            return
        # The settings go beside the checkpoint, so that a resume with others is refused.
        directory = self.manager.directory
        prefix = os.path.join(directory, f"ckpt-{int(self.step.numpy())}")
        complete = set(self.manager.checkpoints)
        try:
            run_file = os.path.join(directory, RUN_FILE)
            if not os.path.exists(run_file):  # An existing one was checked equal when restoring.
                with open(run_file + ".tmp", "w") as file:
                    json.dump(self.config, file, indent=2)
                os.replace(run_file + ".tmp", run_file)
            self.manager.save(checkpoint_number=int(self.step.numpy()))
        except (OSError, tf.errors.OpError) as error:
            # A full disk or a size limit: what was written goes; earlier checkpoints stay.
            _remove_temporaries(directory)
            if prefix not in complete:
                _remove_checkpoint(prefix)
            size = sum(variable.numpy().nbytes for variable in self._checkpoint_variables())
            raise OSError(f"cannot write the checkpoint {prefix} ({size:,} bytes of weights and "
                          f"optimizer state): {_reason(error)}; the earlier checkpoints in "
                          f"{directory} are intact") from None

    def _checkpoint_variables(self):
        recent = [] if self.recent is None else self.recent.variables
        return [*self.model.variables, *self.optimizer.variables, *recent]

    def release(self):
        """Lets another run use the checkpoint directory; `run` takes it again."""
        if self.manager is not None:  # What this run saved last, before another can save.
            self._restored = _latest_in_state(self.manager.directory)
        if self._lock is not None:
            self._lock.release()

    # --- The steps. --------------------------------------------------------------------------

    def _train_step(self, inputs, targets):
        with tf.GradientTape() as tape:
            # The loss in float32 whatever the model computes in (a no-op for float32).
            predictions = tf.cast(self.model(inputs, training=True), tf.float32)
            loss = self.task.loss(targets, predictions)
            scaled = self.optimizer.scale_loss(loss)  # Unchanged but under mixed_float16.
        if self.recent is not None:  # Judged before this step's update, as the paper's rule.
            predictions = tf.stop_gradient(predictions)
            errors = (self.task.sequence_errors(targets, predictions)
                      if self.stop_rule.error is not None else None)
            self.recent.record(self.task.metric(targets, predictions), errors)
        gradients = tape.gradient(scaled, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        self.step.assign_add(1)
        return loss

    def _replica_step(self, inputs, targets):
        """One replica's part of a step under a strategy: its rows' share of the global batch's
        mean loss, and that share's gradients."""
        with tf.GradientTape() as tape:
            predictions = self.model(inputs, training=True)
            loss = self.task.loss(targets, tf.cast(predictions, tf.float32)) / self.replicas
            scaled = self.optimizer.scale_loss(loss)
        return loss, tape.gradient(scaled, self.model.trainable_variables)

    def _distributed_steps_in_graph(self, batches, count, until_rule):
        """`_train_steps_in_graph` under a strategy (which no stop rule trains under, so
        `until_rule` is always False). The replicas' gradients are summed before the optimizer
        clips them: Keras would clip each replica's share, which is not the maths of one
        device."""
        total = tf.constant(0.0)
        for _ in tf.range(count):
            losses, gradients = self.strategy.run(self._step, args=next(batches))
            gradients = [self.strategy.reduce(tf.distribute.ReduceOp.SUM, gradient, axis=None)
                         for gradient in gradients]
            self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
            self.step.assign_add(1)
            total += self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
        return total, count

    def _train_steps_in_graph(self, batches, count, until_rule):
        """Runs `count` train steps on batches from the iterator `batches`, or fewer when
        `until_rule` and the task's stop rule holds after one; returns the sum of their losses
        and the number of steps."""
        total, taken = tf.constant(0.0), tf.constant(0)
        for _ in tf.range(count):
            total += tf.cast(self._step(*next(batches)), tf.float32)
            taken += 1
            if self.recent is not None:
                if tf.logical_and(until_rule, self.recent.holds(self.stop_rule)):
                    break
        return total, taken

    def train_steps(self, count, until_rule=False):
        """Runs `count` training steps in one graph call, on the next batches of the task's
        training stream, and returns their mean loss. With `until_rule`, the call ends early
        after the first step at which the task's stop rule holds (`self.step` says where).
        `run` calls it between reports; a benchmark can call it alone."""
        count = checks.integer("count", count)
        until_rule = checks.boolean("until_rule", until_rule)
        if until_rule and self.stop_rule is None:
            raise ValueError(f"until_rule=True needs a task with a stop rule; {self.task.name} "
                             "has none")
        if self._batches is None:
            self._batches = iter(self._train_data(int(self.step.numpy())))
        total, taken = self._train_steps(self._batches, tf.constant(count),
                                         tf.constant(until_rule))
        return float(total) / int(taken)

    def _train_data(self, start):
        """The training stream from batch `start`: the task's own, or under a strategy the
        per-replica parts of the same global batches, handed out as tf.distribute does."""
        if self.strategy is None:
            return self.task.train_dataset(self.batch_size, self.seed, start=start)
        replicas = self.replicas

        def this_workers_part(context):
            return self.task.train_dataset(
                self.batch_size, self.seed, start=start, worker=context.input_pipeline_id,
                workers=context.num_input_pipelines,
                replicas=replicas // context.num_input_pipelines)

        return self.strategy.distribute_datasets_from_function(this_workers_part)

    def _eval_step(self, inputs, targets):
        return self.task.metric(targets, tf.cast(self.model(inputs, training=False), tf.float32))

    def evaluate(self):
        """The task's metric on its test split: the mean over sequences."""
        total, count = 0.0, 0
        for inputs, targets in self.test_data:
            values = self.eval_step(inputs, targets)
            total += float(tf.reduce_sum(values))
            count += int(values.shape[0])
        return total / count

    # --- The loop. ---------------------------------------------------------------------------

    def run(self, on_progress=None):
        """Trains until solved or out of budget; returns a `TrainResult`.

        `on_progress` receives a `Progress` after every `log_every` steps and every evaluation.
        Ctrl-C or SIGTERM (in the main thread) stops training between two steps and raises
        `Interrupted`; a KeyboardInterrupt raised by `on_progress` stops it too. Either way the
        trainer saves a checkpoint (when it has a directory) first; a second Ctrl-C interrupts
        at once.

        Raises:
            Interrupted: a signal stopped training (after the checkpoint).
            OSError: a checkpoint could not be written (a full disk); the message names it.
        """
        if self.manager is not None and not self._lock.held:
            self._lock = locks.hold(self._lock_directory)
            if _latest_in_state(self.manager.directory) != self._restored:
                self.release()
                raise ValueError(
                    f"Another run saved checkpoints in {self.manager.directory} after this "
                    "Trainer restored from it. Make a new Trainer to resume from them.")
        start_step = int(self.step.numpy())
        self._clock = (time.perf_counter(), float(self.elapsed.numpy()))
        history = []
        writer = tf.summary.create_file_writer(self.logdir) if self.logdir else None
        try:
            with _signals_between_steps() as signalled:
                # Whether the stop rule may end a call early: not again before the next
                # report once the test split did not confirm it.
                armed = True
                while not self._finished():
                    step = int(self.step.numpy())
                    # The steps up to the next report, evaluation or the end, in one call.
                    count = min(self.log_every - step % self.log_every,
                                self.eval_every - step % self.eval_every, self.steps - step)
                    until_rule = armed and self.stop_rule is not None and not self._solved()
                    loss = self.train_steps(count, until_rule=until_rule)
                    step = int(self.step.numpy())
                    if writer is not None:
                        with writer.as_default(step=step):
                            tf.summary.scalar("train/loss", loss)
                    evaluated = step % self.eval_every == 0 or step >= self.steps
                    # The paper's procedure: once its stop rule holds, the test split decides.
                    ruled = until_rule and self._rule_holds()
                    if evaluated or ruled:
                        history.append(self._evaluate(loss, writer))
                    if ruled and not self._solved():
                        armed = False
                    elif step % self.log_every == 0:
                        armed = True
                    self._report(on_progress, loss, evaluated or ruled)
                    if signalled():
                        raise Interrupted(signalled())
            if np.isnan(self.last_metric.numpy()):  # A resumed run with no step left to take.
                history.append(self._evaluate(None, writer))
                self._report(on_progress, None, evaluated=True)
        except KeyboardInterrupt:
            self.elapsed.assign(self._seconds())
            self._save()
            raise
        except _PEER_ERRORS as error:
            if distribute.describe(self.strategy)["workers"] == 1:
                raise
            raise WorkerLost(f"a worker of this run stopped, so this one cannot go on "
                             f"({_first_line(error)}); the chief's last checkpoint is intact: "
                             "start every worker again to resume from it") from None
        finally:
            if writer is not None:
                writer.close()
            self.release()

        solved_at = int(self.solved_at_step.numpy())
        return TrainResult(
            solved=solved_at >= 0,
            sequences_seen=solved_at * self.batch_size if solved_at >= 0 else None,
            steps=int(self.step.numpy()),
            metric=float(self.last_metric.numpy()),
            metric_name=self.task.metric_name,
            baseline=float(self.task.baseline),
            seconds=self._seconds(),
            resumed_from_step=start_step,
            history=history,
            train_step_traces=self._train_steps.experimental_get_tracing_count(),
        )

    def _seconds(self):
        """Seconds of training in all, counting earlier runs resumed from."""
        started, earlier = self._clock
        return earlier + time.perf_counter() - started

    def _solved(self):
        return int(self.solved_at_step.numpy()) >= 0

    def _rule_holds(self):
        """Whether the task's stop rule holds now (True for a task without one)."""
        if self.stop_rule is None:
            return True
        return bool(self.recent.holds(self.stop_rule))

    def _finished(self):
        return (self._solved() and self.stop_when_solved) or int(self.step.numpy()) >= self.steps

    def _evaluate(self, loss, writer):
        """Scores the model on the test split, notes when it first met the criterion, saves a
        checkpoint, and returns the evaluation's entry of the history."""
        metric = self.evaluate()
        step = int(self.step.numpy())
        self.last_metric.assign(metric)
        if self.task.is_solved(metric) and self._rule_holds() and not self._solved():
            self.solved_at_step.assign(step)
        if writer is not None:
            with writer.as_default(step=step):
                tf.summary.scalar(f"test/{self.task.metric_name}", metric)
                tf.summary.flush()
        self.elapsed.assign(self._seconds())
        self._save()
        return {"step": step, "sequences_seen": step * self.batch_size, "loss": loss,
                "metric": metric, "seconds": self._seconds()}

    def _report(self, on_progress, loss, evaluated):
        if on_progress is None:
            return
        step, metric = int(self.step.numpy()), float(self.last_metric.numpy())
        recent = {}
        if self.recent is not None:
            wrong, _ = self.recent.values()
            recent = {"recent_wrong": int(np.sum(wrong)), "recent": len(wrong)}
        on_progress(Progress(
            step=step, steps=self.steps, sequences_seen=step * self.batch_size, loss=loss,
            metric=None if np.isnan(metric) else metric, evaluated=evaluated,
            solved=self._solved(), seconds=self._seconds(), **recent,
        ))


class _Recent(tf.Module):
    """The wrong flags and errors of the latest `window` training sequences, in a ring: what a
    `kala.tasks.StopRule` reads. Checkpointed with the run, so a resumed run reads the same."""

    def __init__(self, window):
        super().__init__(name="recent")
        self.window = window
        self.wrong = tf.Variable(tf.zeros([window]), trainable=False, name="wrong")
        self.errors = tf.Variable(tf.zeros([window]), trainable=False, name="errors")
        self.seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="seen")

    def record(self, wrong, errors=None):
        count = tf.shape(wrong, out_type=tf.int64)[0]
        slots = ((self.seen + tf.range(count)) % self.window)[:, None]
        self.wrong.scatter_nd_update(slots, tf.cast(wrong, tf.float32))
        if errors is not None:
            self.errors.scatter_nd_update(slots, tf.cast(errors, tf.float32))
        self.seen.assign_add(count)

    def holds(self, rule):
        """Whether `rule` holds for the recorded sequences (a boolean tensor)."""
        return tf.logical_and(self.seen >= self.window, rule.holds(self.wrong, self.errors))

    def values(self):
        """The recorded wrong flags and errors as NumPy arrays, oldest first."""
        seen = int(self.seen.numpy())
        order = np.arange(seen - min(seen, self.window), seen) % self.window
        return self.wrong.numpy()[order], self.errors.numpy()[order]


# --- Checkpoint files. -----------------------------------------------------------------------

STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's list of the kept checkpoints.
_CHECKPOINT = re.compile(r"^ckpt-([0-9]+)\.(index|data-[0-9]+-of-[0-9]+)$")


def _latest_in_state(directory):
    """The state file's latest checkpoint (None without one): what a run saved last."""
    with contextlib.suppress(OSError):
        with open(os.path.join(directory, STATE_FILE)) as file:
            return file.readline()
    return None


def _number(prefix):
    return int(prefix.rsplit("-", 1)[1])


def _checkpoints_on_disk(directory):
    """The prefixes of the checkpoints with any file in `directory`, oldest first."""
    numbers = {int(match.group(1)) for name in os.listdir(directory)
               if (match := _CHECKPOINT.match(name))}
    return [os.path.join(directory, f"ckpt-{number}") for number in sorted(numbers)]


def _remove_temporaries(directory):
    """Removes what a write that was killed or failed leaves: the manager's `checkpoint.tmp*`,
    TensorFlow's `ckpt-N_temp/` shards and kala's `kala_run.json.tmp`. Only the run holding the
    directory's lock calls it."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith(STATE_FILE + ".tmp") or name == RUN_FILE + ".tmp":
            with contextlib.suppress(OSError):
                os.remove(path)
        elif name.startswith("ckpt-") and name.endswith("_temp") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)


def _write_state(directory, prefixes):
    """Rewrites the state file to keep `prefixes` (oldest first), the last as the latest, in the
    text format that tf.train.CheckpointManager writes; whole or not at all."""
    names = [os.path.basename(prefix) for prefix in prefixes]
    lines = [f'model_checkpoint_path: "{names[-1]}"',
             *(f'all_model_checkpoint_paths: "{name}"' for name in names)]
    path = os.path.join(directory, STATE_FILE)
    with open(path + ".tmp-kala", "w") as file:
        file.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp-kala", path)


def _remove_checkpoint(prefix):
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with contextlib.suppress(OSError):
            os.remove(path)


def _read_run_file(directory):
    """The settings a checkpoint directory's run saved, or None if it saved none."""
    path = os.path.join(directory, RUN_FILE)
    try:
        with open(path) as file:
            saved = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:  # Unreadable, or not JSON (a bad byte, truncated).
        raise ValueError(f"{path} is damaged ({error}); it says which run the checkpoints "
                         "belong to. Restore it, or use another checkpoint directory.") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path} is damaged (expected a JSON object of settings, got "
                         f"{type(saved).__name__}). Restore it, or use another checkpoint "
                         "directory.")
    return saved


def _damage(prefix):
    """What is wrong with the checkpoint at `prefix`, naming the file; None if every tensor in
    it reads back (each is checked against the checksum in the index)."""
    index = prefix + ".index"
    if not os.path.exists(index):
        return f"{index} is missing"
    shards = sorted(glob.glob(glob.escape(prefix) + ".data-*-of-*"))
    if not shards:
        return f"{prefix}.data-00000-of-00001 is missing"
    expected = int(shards[0].rsplit("-of-", 1)[1])
    if len(shards) != expected:
        return f"{prefix} should have {expected} data files and has {len(shards)}"
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = list(reader.get_variable_to_shape_map())
    except Exception as error:  # Truncated, emptied or altered: TensorFlow says how.
        return f"{index} is damaged ({_first_line(error)})"
    for name in names:
        try:
            reader.get_tensor(name)
        except Exception as error:
            where = shards[0] if len(shards) == 1 else f"{prefix}.data-*"
            return f"{where} is damaged ({_first_line(error)})"
    return None


def _first_line(error):
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[0][:300]


def _reason(error):
    """Why a write failed, in the words of the OS: `No space left on device`."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = re.sub(r"\s*\[Op:\w+\]$", "", _first_line(error))
    return text.rsplit("; ", 1)[-1] if "; " in text else text


# What a collective op raises when a peer worker has died or stopped answering.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError)


class WorkerLost(RuntimeError):
    """Raised by `Trainer.run` under a multi-worker strategy when another worker died or stopped
    (its collective ops fail within seconds). Nothing is saved then; every worker must start
    again, and resumes from the chief's last checkpoint."""


def _check_strategy(strategy, model, batch_size):
    """`strategy`, once it is known to fit `model` and `batch_size`; a ValueError says how not."""
    if strategy is None:
        return None
    if not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(f"`strategy` must be a tf.distribute.Strategy or None. Received: "
                         f"{strategy!r}")
    outside = [variable.path for variable in model.variables
               if not strategy.extended.variable_created_in_scope(
                   getattr(variable, "value", variable))]
    if outside:
        raise ValueError(
            f"The model's variables were made outside the strategy's scope ({outside[0]} is "
            f"one of {len(outside)}), so {type(strategy).__name__} cannot mirror them. Build "
            "the model inside `with strategy.scope():` and pass it to the Trainer.")
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"batch_size={batch_size} (the global batch) must split evenly over the strategy's "
            f"{replicas} replicas: an uneven or empty share breaks an RNN's initial state "
            f"(tensorflow/tensorflow#58809). Use a multiple of {replicas}.")
    return strategy


class Interrupted(KeyboardInterrupt):
    """Raised by `Trainer.run` when Ctrl-C (SIGINT) or SIGTERM stopped training between two
    steps, after the checkpoint; `signum` says which. A KeyboardInterrupt, so that code which
    handles Ctrl-C handles both."""

    def __init__(self, signum=signal.SIGINT):
        self.signum = signal.Signals(signum)
        super().__init__(self.signum.name)


def raise_interrupted(signum, frame):
    """A signal handler that raises `Interrupted`: a script that installs it for SIGTERM is
    stopped by SIGTERM as by Ctrl-C, with `finally` blocks run (an export's staging directory
    removed). `Trainer.run` takes SIGTERM over from it, as from the default handler."""
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_between_steps():
    """Makes Ctrl-C and SIGTERM requests that the loop honours between two graph calls, and
    yields a function that says which came (None before any).

    Python raises KeyboardInterrupt wherever the main thread is, and inside the callback through
    which TensorFlow feeds tf.data that can crash the process. So the first signal only sets a
    flag and restores the previous handler: a second Ctrl-C interrupts at once. Nothing changes
    outside the main thread, or for a signal the program handles its own way (a worker process
    that ignores Ctrl-C keeps ignoring it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    ours = {signal.SIGINT: (signal.default_int_handler,),
            signal.SIGTERM: (signal.SIG_DFL, raise_interrupted)}
    previous = {signum: signal.getsignal(signum) for signum in ours}
    taken = [signum for signum, handlers in ours.items() if previous[signum] in handlers]
    received = []

    def request_stop(signum, frame):
        received.append(signum)
        signal.signal(signum, previous[signum])

    for signum in taken:
        signal.signal(signum, request_stop)
    try:
        yield lambda: received[0] if received else None
    finally:
        for signum in taken:
            signal.signal(signum, previous[signum])


def train(model, task, *, on_progress=None, **options):
    """Trains `model` on `task` and returns a `TrainResult`; see `Trainer` for the options."""
    return Trainer(model, task, **options).run(on_progress=on_progress)
