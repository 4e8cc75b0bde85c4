"""The training loop: it learns, stops when solved, traces once, resumes exactly, stays quiet."""

import glob
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

import kala
from kala import tasks


def small_adding(seq_len=10, **options):
    return tasks.AddingProblem(seq_len, test_size=256, **options)


def new_model(task, seed, units=8, cell="lstm"):
    keras.utils.set_random_seed(seed)
    return kala.build_model(cell, units, **task.model_options)


def test_solves_a_short_adding_problem_and_stops_there():
    task = small_adding()
    result = kala.train(new_model(task, 0), task, steps=1000, batch_size=32, eval_every=25)
    assert result.solved
    assert result.steps < 1000  # It stopped at the first evaluation that met the criterion.
    assert result.steps % 25 == 0
    assert result.sequences_seen == result.steps * 32
    assert result.metric < 0.01 < result.baseline
    assert result.history[-1]["metric"] == result.metric
    assert all(entry["metric"] >= 0.01 for entry in result.history[:-1])


def test_reports_an_unsolved_run_honestly():
    task = small_adding()
    result = kala.train(new_model(task, 0), task, steps=20, batch_size=8, eval_every=10)
    assert not result.solved and result.sequences_seen is None
    assert result.steps == 20
    assert result.metric == result.history[-1]["metric"] > 0.01
    assert [entry["step"] for entry in result.history] == [10, 20]


def test_train_step_is_traced_once_although_lengths_change():
    # The 1997 definition draws a new sequence length for every batch.
    task = small_adding(30, definition="1997")
    trainer = kala.Trainer(new_model(task, 0), task, steps=30, batch_size=4, eval_every=30)
    lengths = {task.batch(0, tasks.TRAIN_STREAM, step, 4)[0].shape[1] for step in range(30)}
    result = trainer.run()
    assert len(lengths) > 1
    assert result.train_step_traces == 1
    assert trainer.eval_step.experimental_get_tracing_count() == 1


def test_xla_compiled_step_trains_as_the_plain_one():
    task = small_adding()
    results = [kala.train(new_model(task, 0), task, steps=30, batch_size=8, eval_every=15,
                          jit_compile=jit_compile) for jit_compile in (False, True)]
    plain, compiled = results
    assert compiled.train_step_traces == 1
    # XLA fuses and reorders float32 arithmetic, so the two agree closely, not bit for bit.
    np.testing.assert_allclose([entry["loss"] for entry in compiled.history],
                               [entry["loss"] for entry in plain.history], rtol=1e-3)
    assert compiled.metric == pytest.approx(plain.metric, rel=1e-3)


def test_running_again_with_a_larger_budget_continues_on_the_same_batches():
    task = small_adding()
    options = dict(batch_size=8, eval_every=10, log_every=3, seed=2, stop_when_solved=False)
    whole_model = new_model(task, 0)
    whole = kala.Trainer(whole_model, task, steps=25, **options).run()
    parts_model = new_model(task, 0)
    trainer = kala.Trainer(parts_model, task, steps=7, **options)
    trainer.run()
    trainer.steps = 25
    parts = trainer.run()
    assert parts.steps == 25 and parts.train_step_traces == 1
    assert [entry["step"] for entry in parts.history] == [10, 20, 25]
    assert parts.metric == pytest.approx(whole.metric, rel=1e-5)
    for part, reference in zip(parts_model.get_weights(), whole_model.get_weights()):
        np.testing.assert_allclose(part, reference, rtol=1e-5, atol=1e-6)


def test_progress_goes_to_the_callback_and_nothing_is_printed(capsys):
    task = small_adding()
    events = []
    kala.train(new_model(task, 0), task, steps=20, batch_size=8, eval_every=10, log_every=5,
               on_progress=events.append)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert [event.step for event in events] == [5, 10, 15, 20]
    assert [event.evaluated for event in events] == [False, True, False, True]
    assert events[0].metric is None and events[1].metric is not None
    assert events[-1].sequences_seen == 160 and events[-1].steps == 20
    assert all(np.isfinite(event.loss) for event in events)


def test_train_steps_runs_that_many_steps_on_the_batches_a_run_would_take():
    task = small_adding()
    options = dict(steps=12, batch_size=8, eval_every=12, log_every=12, seed=4)
    by_hand_model, run_model = new_model(task, 0), new_model(task, 0)
    trainer = kala.Trainer(by_hand_model, task, **options)
    losses = [trainer.train_steps(5), trainer.train_steps(7)]
    assert int(trainer.step.numpy()) == 12
    assert all(isinstance(loss, float) and np.isfinite(loss) for loss in losses)
    kala.Trainer(run_model, task, **options).run()
    for by_hand, by_run in zip(by_hand_model.get_weights(), run_model.get_weights()):
        np.testing.assert_allclose(by_hand, by_run, rtol=1e-5, atol=1e-6)


def test_ctrl_c_stops_between_steps_with_a_checkpoint_and_the_run_resumes(tmp_path):
    task = small_adding()
    options = dict(steps=40, batch_size=8, eval_every=10, log_every=5, seed=3,
                   stop_when_solved=False, checkpoint_dir=tmp_path / "checkpoints")

    def ctrl_c_at_15(progress):
        if progress.step == 15:
            os.kill(os.getpid(), signal.SIGINT)  # As a terminal's Ctrl-C: only a request.

    trainer = kala.Trainer(new_model(task, 0), task, **options)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(on_progress=ctrl_c_at_15)
    assert int(trainer.step.numpy()) == 15  # It finished the report's step, then stopped.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Restored.
    resumed = kala.train(new_model(task, 99), task, **options)
    assert resumed.resumed_from_step == 15 and resumed.steps == 40


def test_numpy_integers_are_taken_and_recorded_as_integers(tmp_path):
    task = small_adding()
    result = kala.train(new_model(task, 0), task, steps=np.int64(10), batch_size=np.int32(8),
                        eval_every=np.int64(10), checkpoint_dir=tmp_path)
    assert result.steps == 10
    with open(tmp_path / "kala_run.json") as file:
        assert '"batch_size": 8' in file.read()


def test_train_steps_refuses_a_count_that_is_not_a_positive_integer():
    task = small_adding()
    trainer = kala.Trainer(new_model(task, 0), task, steps=10)
    for count in (0, 2.5):
        with pytest.raises(ValueError, match=f"Received: count={count}"):
            trainer.train_steps(count)


class Interrupt:
    """Raises KeyboardInterrupt, as Ctrl-C would, once training reaches `step`."""

    def __init__(self, step):
        self.step = step

    def __call__(self, progress):
        if progress.step >= self.step:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    task = small_adding()
    options = dict(steps=40, batch_size=8, eval_every=10, log_every=5, seed=3,
                   stop_when_solved=False)
    reference_model = new_model(task, 0)
    reference = kala.train(reference_model, task, **options)

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(KeyboardInterrupt):
        kala.train(new_model(task, 0), task, checkpoint_dir=checkpoints,
                   on_progress=Interrupt(15), **options)
    # A fresh model with other initial weights: everything must come from the checkpoint.
    resumed_model = new_model(task, 99)
    resumed = kala.train(resumed_model, task, checkpoint_dir=checkpoints, **options)

    assert resumed.resumed_from_step == 15
    assert resumed.steps == reference.steps == 40
    assert [entry["step"] for entry in resumed.history] == [20, 30, 40]
    for resumed_weights, reference_weights in zip(resumed_model.get_weights(),
                                                   reference_model.get_weights()):
        np.testing.assert_allclose(resumed_weights, reference_weights, rtol=1e-5, atol=1e-6)
    assert resumed.metric == pytest.approx(reference.metric, rel=1e-4)

    # A finished run resumed again does no more work.
    again = kala.train(new_model(task, 0), task, checkpoint_dir=checkpoints, **options)
    assert again.resumed_from_step == 40 and again.steps == 40 and again.history == []


def test_missing_checkpoint_files_are_an_error_not_a_fresh_start(tmp_path):
    task = small_adding()
    kala.train(new_model(task, 0), task, steps=10, batch_size=8, eval_every=10,
               checkpoint_dir=tmp_path)
    for path in glob.glob(str(tmp_path / "ckpt-*")):
        os.remove(path)
    with pytest.raises(ValueError, match=r"ckpt-10.index is missing, and it holds no intact"):
        kala.Trainer(new_model(task, 0), task, steps=20, batch_size=8, checkpoint_dir=tmp_path)


def test_resuming_with_other_settings_is_an_error(tmp_path):
    task = small_adding()
    # A trainer that never runs leaves nothing behind to refuse other settings with.
    kala.Trainer(new_model(task, 0), task, steps=10, batch_size=4, checkpoint_dir=tmp_path)
    assert not os.path.exists(tmp_path / "kala_run.json")
    kala.train(new_model(task, 0), task, steps=10, batch_size=8, eval_every=10,
               checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size: saved 8, now 16"):
        kala.Trainer(new_model(task, 0), task, steps=20, batch_size=16, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="seq_len: saved 10, now 12"):
        other = small_adding(12)
        kala.Trainer(new_model(other, 0), other, steps=20, batch_size=8, checkpoint_dir=tmp_path)


def test_tensorboard_scalars_are_written(tmp_path):
    task = small_adding()
    kala.train(new_model(task, 0), task, steps=20, batch_size=8, eval_every=10, log_every=5,
               logdir=tmp_path)
    tags = set()
    for path in glob.glob(str(tmp_path / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert tags == {"train/loss", "test/mse"}


@pytest.mark.parametrize("options, message", [
    (dict(steps=0), "steps=0"),
    (dict(steps=10, batch_size=-1), "batch_size=-1"),
    (dict(steps=10, learning_rate=0.0), "learning_rate=0.0"),
    (dict(steps=10, clipnorm=float("nan")), "clipnorm=nan"),
    (dict(steps=10, seed=-2), "seed=-2"),
    (dict(steps=10, seed=True), "seed=True"),
    (dict(steps=10, jit_compile="yes"), "jit_compile='yes'"),
])
def test_bad_arguments_raise_value_error_naming_them(options, message):
    task = small_adding()
    with pytest.raises(ValueError, match=message):
        kala.Trainer(new_model(task, 0), task, **options)


# --- Hochreiter & Schmidhuber's stop rule and plain gradient descent. ----------------------------

def ruled_adding(window, wrong, *, always_solved=False):
    """A short 1997 adding problem whose stop rule reads `window` sequences, of which at most
    `wrong` may be wrong; with `always_solved`, any test metric meets its criterion."""
    task = tasks.AddingProblem(20, definition="1997", test_size=64)
    task.stop_rule = tasks.StopRule(window=window, wrong=wrong)
    if always_solved:
        task.is_solved = lambda metric: True
    return task


def test_the_stop_rule_reads_each_training_sequence_as_judged_before_its_update():
    task = ruled_adding(12, 0)
    model = new_model(task, 0)
    batches = [task.batch(0, tasks.TRAIN_STREAM, index, 4) for index in range(3)]
    before = model.get_weights()
    trainer = kala.Trainer(model, task, steps=3, batch_size=4, eval_every=3, log_every=1,
                           learning_rate=0.05)
    judged = []
    for inputs, targets in batches:  # The wrong flags each batch gets from the weights it meets.
        judged.extend(task.metric(tf.constant(targets), model(inputs)).numpy())
        trainer.train_steps(1)
    wrong, _ = trainer.recent.values()
    np.testing.assert_array_equal(wrong, judged)
    assert not np.allclose(before[0], model.get_weights()[0])  # The weights did change.


def test_a_task_with_a_stop_rule_is_solved_only_once_the_rule_holds():
    # The test criterion always holds here; the rule (none of 8 wrong) never does.
    task = ruled_adding(8, 0, always_solved=True)
    result = kala.train(new_model(task, 0), task, steps=20, batch_size=4, eval_every=10)
    assert not result.solved and [entry["step"] for entry in result.history] == [10, 20]
    # A rule that any 8 sequences meet: evaluated, and solved, at the step that sees the 8th,
    # between two reports.
    task = ruled_adding(8, 8, always_solved=True)
    result = kala.train(new_model(task, 0), task, steps=20, batch_size=4, eval_every=10,
                        log_every=3)
    assert result.solved and result.steps == 2 and result.sequences_seen == 8


def test_the_stop_rule_is_read_after_every_step_and_after_a_failed_test_from_the_next_report():
    # The rule holds from step 2 on; the test split never confirms it.
    task = ruled_adding(8, 8)
    task.is_solved = lambda metric: False
    reports = []
    result = kala.train(new_model(task, 0), task, steps=12, batch_size=4, eval_every=100,
                        log_every=5, on_progress=reports.append)
    # Tested at step 2 (the rule), not again until the report at 5 re-reads it (at 6), then 10
    # (at 11), and at the end.
    assert [entry["step"] for entry in result.history] == [2, 6, 11, 12]
    assert [report.step for report in reports] == [2, 5, 6, 10, 11, 12]
    assert not result.solved and result.steps == 12


def test_a_resumed_run_reads_the_same_recent_sequences(tmp_path):
    task = ruled_adding(10, 0)
    whole = kala.Trainer(new_model(task, 0), task, steps=8, batch_size=4, eval_every=4)
    whole.run()
    first = kala.Trainer(new_model(task, 0), task, steps=4, batch_size=4, eval_every=4,
                         checkpoint_dir=tmp_path)
    first.run()
    resumed = kala.Trainer(new_model(task, 0), task, steps=8, batch_size=4, eval_every=4,
                           checkpoint_dir=tmp_path)
    assert int(resumed.recent.seen.numpy()) == 16
    resumed.run()
    for a, b in zip(whole.recent.values(), resumed.recent.values()):
        np.testing.assert_array_equal(a, b)


def test_plain_gradient_descent_takes_the_step_its_rate_says():
    task = small_adding()
    model = new_model(task, 0)
    inputs, targets = task.batch(0, tasks.TRAIN_STREAM, 0, 8)
    with tf.GradientTape() as tape:
        loss = task.loss(tf.constant(targets), model(inputs, training=True))
    gradients = tape.gradient(loss, model.trainable_variables)
    expected = [w.numpy() - 0.5 * g.numpy() for w, g in zip(model.trainable_variables, gradients)]
    trainer = kala.Trainer(model, task, steps=1, batch_size=8, optimizer="sgd",
                           learning_rate=0.5, clipnorm=None)
    trainer.train_steps(1)
    for weight, value in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(weight.numpy(), value, rtol=1e-5, atol=1e-6)
    assert trainer.config["optimizer"] == "sgd" and trainer.config["clipnorm"] is None


def test_stop_rule_and_optimizer_arguments_are_checked():
    task = ruled_adding(8, 0)
    with pytest.raises(ValueError, match="batch_size=16"):
        kala.Trainer(new_model(task, 0), task, steps=1, batch_size=16)
    with pytest.raises(ValueError, match="one device only"):
        kala.Trainer(new_model(task, 0), task, steps=1, batch_size=4,
                     strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        kala.Trainer(new_model(task, 0), task, steps=1, batch_size=4, optimizer="rmsprop")
    ruleless = small_adding()
    with pytest.raises(ValueError, match="until_rule=True needs a task with a stop rule"):
        kala.Trainer(new_model(ruleless, 0), ruleless, steps=1).train_steps(1, until_rule=True)
