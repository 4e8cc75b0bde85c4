"""Training beyond one device: kala.distribute's strategies, the Trainer under them, the launcher
of local workers, and mixed precision.

The strategies with two replicas need a process of their own (a CPU is split into devices only
before TensorFlow's first op); the rest runs in this process."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import kala
import kala.serving
from kala import distribute
from conftest import ROOT, recipe_module, run_main, run_python

SCRIPT = os.path.join(ROOT, "tests", "distributed_training.py")
# The largest difference between the loss curves measured on the 2-core Xeon: 1.2e-7 (float32
# sums taken in another order); the tolerance leaves a hundredfold margin.
LOSS_TOLERANCE = 1e-5


def _launch(*args, timeout=240):
    return run_python(["-m", "kala.distribute", *args], timeout=timeout)


def _runs(path):
    with open(path) as file:
        return json.load(file)


def test_one_replica_two_mirrored_replicas_and_two_workers_do_the_same_maths(tmp_path):
    mirrored_out, workers_out = tmp_path / "mirrored.json", tmp_path / "workers.json"
    process = run_python([SCRIPT, "--distribute", "mirrored", "--devices", "2", "--alone-first",
                          "--steps", "400", "--out", str(mirrored_out)])
    assert process.returncode == 0, process.stderr[-3000:]
    process = _launch("--workers", "2", "--log-dir", str(tmp_path / "logs"), SCRIPT,
                      "--steps", "400", "--out", str(workers_out))
    assert process.returncode == 0, process.stderr[-3000:]
    (alone, mirrored), (workers,) = _runs(mirrored_out), _runs(workers_out)
    assert (alone["replicas"], mirrored["replicas"], workers["replicas"]) == (1, 2, 2)
    assert (mirrored["strategy"], workers["strategy"]) == ("MirroredStrategy",
                                                           "MultiWorkerMirroredStrategy")
    assert workers["workers"] == 2
    # The first 50 steps' losses, step by step, and the outcome: solved, at the same step.
    curve = np.array(alone["losses"][:50])
    for other in (mirrored, workers):
        np.testing.assert_allclose(other["losses"][:50], curve, rtol=0, atol=LOSS_TOLERANCE)
        assert (other["solved"], other["steps"]) == (alone["solved"], alone["steps"])
    assert alone["solved"]


def test_killing_one_worker_stops_the_job_and_the_same_command_resumes_it(tmp_path, capsys):
    checkpoints, results = tmp_path / "checkpoints", tmp_path / "results"
    command = [sys.executable, "-m", "kala.distribute", "--workers", "2", "--log-dir",
               str(tmp_path / "logs"), os.path.join(ROOT, "recipes", "adding_problem.py"),
               "--seq-len", "10", "--units", "16", "--batch-size", "16", "--steps", "2000",
               "--eval-every", "50", "--checkpoint-dir", str(checkpoints),
               "--results", str(results)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    launcher = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (checkpoints / "ckpt-50.index").exists():
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr.read()
            time.sleep(0.1)
        worker = _worker_pid(launcher.pid, index=1)
        os.kill(worker, signal.SIGKILL)
        out, err = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 128 + signal.SIGKILL
    assert f"worker 1 (pid {worker}) was killed by SIGKILL" in err
    assert "run the same command to resume" in err
    assert not list(results.rglob("result.json"))  # Nothing was reported.

    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at step" in resumed.stdout
    (path,) = results.rglob("result.json")  # The chief's, and only it.
    record = json.loads(path.read_text())
    assert record["distribute"]["replicas"] == 2 and record["distribute"]["workers"] == 2
    assert record["command"].startswith("python -m kala.distribute --workers 2 ")
    assert "stopped sending heartbeats" not in resumed.stderr  # Workers wait for the chief.
    assert record["resumed_from_step"] >= 50

    # The same run on one device, uninterrupted, ends at the same step.
    adding = recipe_module("adding_problem")
    code, out, _ = run_main(capsys, adding.main, [
        "--seq-len", "10", "--units", "16", "--batch-size", "16", "--steps", "2000",
        "--eval-every", "50", "--results", str(tmp_path / "alone")])
    assert code == 0
    (alone,) = (tmp_path / "alone").rglob("result.json")
    alone = json.loads(alone.read_text())
    assert alone["solved"] and record["solved"]
    assert (record["steps"], record["sequences_seen"]) == (alone["steps"],
                                                           alone["sequences_seen"])


def _worker_pid(launcher_pid, index):
    """The pid of the launcher's worker `index`: the child whose TF_CONFIG gives that index."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{name}/stat") as file:
                    parent = int(file.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{name}/environ", "rb") as file:
                    environment = dict(item.split(b"=", 1) for item in file.read().split(b"\0")
                                       if b"=" in item)
            except OSError:
                continue
            config = environment.get(b"TF_CONFIG")
            if parent == launcher_pid and config and json.loads(config)["task"]["index"] == index:
                return int(name)
        time.sleep(0.1)
    raise AssertionError(f"the launcher {launcher_pid} has no worker {index}")


# --- In this process: one CPU device. -------------------------------------------------------

@pytest.fixture
def float32_afterwards():
    """Puts Keras's precision policy back to float32 after a test that changed it."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_each_workers_replicas_draw_their_rows_of_the_same_global_batch():
    task = kala.tasks.AddingProblem(10, test_size=16)
    whole = list(task.train_dataset(8, seed=3, start=5).take(2))
    parts = [list(task.train_dataset(8, seed=3, start=5, worker=worker, workers=2,
                                     replicas=2).take(4)) for worker in (0, 1)]
    for index, (inputs, targets) in enumerate(whole):
        # Worker w's replicas take its elements in turn: 2 per global batch, 2 rows each.
        pieces = [parts[worker][2 * index + replica] for worker in (0, 1) for replica in (0, 1)]
        assert all(piece[0].shape[0] == 2 for piece in pieces)
        np.testing.assert_array_equal(np.concatenate([piece[0] for piece in pieces]), inputs)
        np.testing.assert_array_equal(np.concatenate([piece[1] for piece in pieces]), targets)


def test_a_global_batch_that_does_not_split_evenly_is_refused():
    task = kala.tasks.AddingProblem(10, test_size=16)
    with pytest.raises(ValueError, match="batch of 6 cannot be split evenly over 2 workers of "
                                         "2 replicas"):
        task.train_dataset(6, workers=2, replicas=2)


def test_a_strategy_of_one_device_trains_exactly_as_no_strategy(seeded):
    task = kala.tasks.AddingProblem(10, test_size=64)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    curves = []
    for chosen in (None, strategy):
        keras.utils.set_random_seed(0)
        with distribute.scope(chosen):
            model = kala.build_model("lstm", units=8, **task.model_options)
        losses = []
        trainer = kala.Trainer(model, task, steps=20, batch_size=8, log_every=1, eval_every=10,
                               strategy=chosen)
        trainer.run(on_progress=lambda progress: losses.append(progress.loss))
        curves.append(losses)
    np.testing.assert_allclose(curves[1], curves[0], rtol=0, atol=LOSS_TOLERANCE)


def test_a_model_built_outside_the_strategys_scope_is_refused_with_the_fix():
    task = kala.tasks.AddingProblem(10, test_size=16)
    model = kala.build_model("lstm", units=4, **task.model_options)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with pytest.raises(ValueError, match=r"outside the strategy's scope .* Build the model "
                                         r"inside `with strategy.scope\(\):`"):
        kala.Trainer(model, task, steps=1, strategy=strategy)
    with pytest.raises(ValueError, match="must be a tf.distribute.Strategy or None"):
        kala.Trainer(model, task, steps=1, strategy="mirrored")


def test_strategies_that_cannot_be_made_are_refused_with_the_reason(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON of the form"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", distribute.tf_config(["127.0.0.1:1"], 3))
    with pytest.raises(ValueError, match="task is worker 3, but its cluster has 1"):
        distribute.make_strategy("multi_worker")
    with pytest.raises(ValueError, match="needs a strategy"):
        distribute.make_strategy("none", devices=2)
    tf.constant(1.0).numpy()  # TensorFlow runs on one CPU device now: it cannot be split.
    with pytest.raises(ValueError, match="only before TensorFlow runs its first op; it already "
                                         "runs with 1"):
        distribute.make_strategy("mirrored", devices=2)
    with pytest.raises(ValueError, match="`kind` must be one of none, mirrored, multi_worker"):
        distribute.make_strategy("tpu")


def test_tf_config_names_each_worker_and_worker_0_is_the_chief(monkeypatch):
    addresses = ["127.0.0.1:2001", "127.0.0.1:2002"]
    monkeypatch.setenv("TF_CONFIG", distribute.tf_config(addresses, 1))
    assert distribute.cluster() == {"workers": addresses, "chief": [], "task_type": "worker",
                                    "task_index": 1}
    assert distribute.is_chief(None)
    assert distribute.describe(None) == {"strategy": None, "replicas": 1, "workers": 1}
    assert len(set(distribute.free_ports(3))) == 3


def test_the_launcher_refuses_bad_arguments_in_one_line(capsys, tmp_path):
    from kala.distribute import __main__ as launcher

    script = tmp_path / "train.py"
    script.write_text("")
    for argv, message in ([["--workers", "0", str(script)], "--workers: must be at least 1"],
                          [[str(tmp_path / "absent.py")], "absent.py: no such script"],
                          [["--log-dir", "", str(script)], "--log-dir: must not be empty"]):
        with pytest.raises(SystemExit) as exit:
            launcher.main(argv)
        err = capsys.readouterr().err
        assert exit.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_mixed_float16_trains_with_loss_scaling_and_float32_losses(float32_afterwards):
    keras.mixed_precision.set_global_policy("mixed_float16")
    task = kala.tasks.AddingProblem(10, test_size=64)
    keras.utils.set_random_seed(0)
    model = kala.build_model("lstm", units=8, **task.model_options)
    assert model.get_layer("lstm_1").compute_dtype == "float16"
    assert model.output.dtype == "float32"  # The head computes in float32.
    trainer = kala.Trainer(model, task, steps=20, batch_size=8, eval_every=10)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert trainer.config["precision"] == "mixed_float16"
    result = trainer.run()
    assert result.steps == 20 and np.isfinite(result.metric)
    assert all(np.isfinite(entry["loss"]) for entry in result.history)


def test_a_recipe_trained_in_mixed_bfloat16_exports_a_float32_model_that_serves(
        tmp_path, capsys, float32_afterwards):
    adding = recipe_module("adding_problem")
    saved_models = tmp_path / "saved_models"
    code, out, _ = run_main(capsys, adding.main, [
        "--smoke", "--precision", "mixed_bfloat16", "--export", "--saved-models",
        str(saved_models), "--results", str(tmp_path / "runs")])
    assert code == 0
    assert "in mixed_bfloat16" in out
    (path,) = (tmp_path / "runs").rglob("result.json")
    assert json.loads(path.read_text())["config"]["precision"] == "mixed_bfloat16"
    version = saved_models / "adding_problem" / "1"
    loaded = tf.saved_model.load(str(version))
    for name, signature in loaded.signatures.items():
        specs = [*signature.structured_input_signature[1].values(),
                 *signature.structured_outputs.values()]
        assert {spec.dtype for spec in specs} == {tf.float32}, name
    # No op of the served graph computes in 16 bits.
    graph = kala.export._saved_model(str(version)).meta_graphs[0].graph_def
    nodes = [*graph.node, *(node for function in graph.library.function
                            for node in function.node_def)]
    sixteen = {tf.bfloat16.as_datatype_enum, tf.float16.as_datatype_enum}
    assert not [node.name for node in nodes
                if any(value.type in sixteen for value in node.attr.values())]
    reports, config_problems = kala.serving.check(str(saved_models))
    assert reports and not config_problems
    assert all(not report.problems for report in reports), reports
