"""The GPU check: `python -m bench.gpu_check [--json PATH]`, on a machine with an NVIDIA GPU.

What kala says of the GPU path, run where it can be (under 5 minutes on one GPU):

1. cuDNN: a training step of Keras's built-in LSTM and GRU, traced on the GPU, holds
   `CudnnRNNV3`; kala's essay cells hold none (they run TensorFlow's generic loop).
2. The adding problem (T = 100, the recipe's settings: LSTM of 64 units, batches of 32, Adam
   1e-2) trains to solved on the GPU.
3. Its export, made by that GPU process, holds no cuDNN op, and a process that sees no GPU
   (`CUDA_VISIBLE_DEVICES=""`) answers the export's example inputs as the GPU model did, to
   within `OUTPUT_TOLERANCE` (the largest difference is recorded).
4. With two GPUs or more: two `MirroredStrategy` replicas train the same 50 steps as one GPU,
   loss for loss, to within `LOSS_TOLERANCE`.
5. Speed: kala's loop (cuDNN LSTM) against PyTorch's `nn.LSTM` (cuDNN too) on the GPU, at the
   benchmark's quick shapes, in sequences per second, interleaved round by round.

TensorFloat-32 is turned off first, so that the GPU's float32 maths is float32 and the export's
CPU answers can be held to a float32 tolerance. Without a GPU it says so and exits 0, having
checked nothing (`--require-gpu`: exit 1). A check that fails prints why and exits 1.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import kala
from bench import common, training

OUTPUT_TOLERANCE = 1e-4  # cuDNN against the generic loop, float32, 100 steps of the adding task
LOSS_TOLERANCE = 1e-4  # one GPU against two replicas, 50 steps
SHAPES = (common.Shape(32, 50, 16, 64), common.Shape(128, 100, 2, 128))

CPU_ANSWER = """
import json, sys
import numpy as np
import tensorflow as tf
assert not tf.config.list_physical_devices("GPU")
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
(name,) = signature.structured_input_signature[1]
answer = signature(**{name: tf.constant(np.load(sys.argv[2]))})
print(json.dumps({key: value.numpy().tolist() for key, value in answer.items()}))
"""


def _op_types(concrete_function):
    """Every op type in a traced function, the functions it calls (loop bodies) included."""
    graph = concrete_function.graph.as_graph_def()
    return ({node.op for node in graph.node}
            | {node.op for function in graph.library.function for node in function.node_def})


def cudnn_check():
    """The cuDNN ops in one training step of each built-in layer and of an essay LSTM."""
    task = common.Synthetic(50, 16)
    found = {}
    for cell, implementation in (("lstm", "builtin"), ("gru", "builtin"), ("lstm", "essay")):
        model = common.build(cell, implementation, task, common.Shape(32, 50, 16, 64))
        optimizer = keras.optimizers.Adam()
        optimizer.build(model.trainable_variables)

        @tf.function
        def step(inputs, targets):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(inputs, training=True) - targets))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        traced = step.get_concrete_function(tf.TensorSpec([32, 50, 16]), tf.TensorSpec([32, 1]))
        found[f"{cell} ({implementation})"] = sorted(
            op for op in _op_types(traced) if op.startswith("Cudnn"))
    problems = [f"{name} traced without CudnnRNNV3: {ops}" for name, ops in found.items()
                if "builtin" in name and "CudnnRNNV3" not in ops]
    problems += [f"{name} traced with cuDNN ops {ops}" for name, ops in found.items()
                 if "essay" in name and ops]
    return {"cudnn_ops": found}, problems


def adding_and_export_check(scratch):
    """Trains the adding problem on the GPU, exports it from this process and answers its
    example inputs in a process without a GPU."""
    task = kala.tasks.AddingProblem(100)
    keras.utils.set_random_seed(0)
    model = kala.build_model("lstm", 64, **task.model_options)
    result = kala.train(model, task, steps=3000, batch_size=32, learning_rate=1e-2, seed=0)
    measured = {"adding": {"solved": result.solved, "sequences_seen": result.sequences_seen,
                           "steps": result.steps, "metric": result.metric,
                           "seconds": round(result.seconds, 2)}}
    problems = [] if result.solved else [f"the adding problem was not solved in {result.steps} "
                                         f"steps (test MSE {result.metric:.4f})"]
    options = task.serving_options
    version = kala.export_model(model, os.path.join(scratch, "saved_models"), "adding_gpu",
                                **options)
    found = kala.export.cudnn_ops(version)
    inputs = np.asarray(options["example_inputs"])
    on_gpu = keras.ops.convert_to_numpy(model(inputs, training=False))
    np.save(os.path.join(scratch, "inputs.npy"), inputs)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run([sys.executable, "-c", CPU_ANSWER, version,
                              os.path.join(scratch, "inputs.npy")],
                             env=env, capture_output=True, text=True, timeout=180)
    if process.returncode != 0:
        return measured, problems + [f"the export did not serve on the CPU: "
                                     f"{process.stderr.strip().splitlines()[-1:]}"]
    on_cpu = np.array(json.loads(process.stdout.strip().splitlines()[-1])["prediction"])
    difference = float(np.max(np.abs(on_cpu - on_gpu)))
    measured["export"] = {"cudnn_ops": found, "max_output_difference_cpu_vs_gpu": difference,
                          "tolerance": OUTPUT_TOLERANCE}
    if found:
        problems.append(f"the export holds cuDNN ops {found}")
    if difference > OUTPUT_TOLERANCE:
        problems.append(f"the CPU answers differ from the GPU's by {difference:.2e} "
                        f"(> {OUTPUT_TOLERANCE})")
    return measured, problems


def mirrored_check():
    """Two MirroredStrategy replicas against one GPU, 50 steps of the adding problem (T=100)."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < 2:
        return {"mirrored": f"skipped: {len(gpus)} GPU"}, []
    curves = []
    for strategy in (None, kala.distribute.make_strategy("mirrored", devices=2)):
        task = kala.tasks.AddingProblem(100)
        keras.utils.set_random_seed(0)
        with kala.distribute.scope(strategy):
            model = kala.build_model("lstm", 64, **task.model_options)
        losses = []
        kala.train(model, task, steps=50, batch_size=32, log_every=1, strategy=strategy,
                   stop_when_solved=False,
                   on_progress=lambda progress: losses.append(progress.loss))
        curves.append(np.array(losses))
    difference = float(np.max(np.abs(curves[0] - curves[1])))
    measured = {"mirrored": {"replicas": 2, "max_loss_difference": difference,
                             "tolerance": LOSS_TOLERANCE}}
    problems = [] if difference <= LOSS_TOLERANCE else [
        f"two replicas' losses differ from one GPU's by {difference:.2e} (> {LOSS_TOLERANCE})"]
    return measured, problems


class TorchCudaLoop:
    """PyTorch's nn.LSTM and a linear head on the GPU, trained on the same batches as kala's."""

    impl = "torch_cuda"

    def __init__(self, torch, task, shape):
        self.torch, self.task, self.shape, self.index = torch, task, shape, 0
        torch.manual_seed(0)
        self.rnn = torch.nn.LSTM(shape.features, shape.units, batch_first=True).cuda()
        self.head = torch.nn.Linear(shape.units, 1).cuda()
        self.parameters = [*self.rnn.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(self.parameters, lr=common.LEARNING_RATE)
        self.run(3)

    def run(self, steps):
        torch = self.torch
        batches = [self.task.batch(2, kala.tasks.TRAIN_STREAM, self.index + step,
                                   self.shape.batch) for step in range(steps)]
        self.index += steps
        batches = [(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()) for x, y in batches]
        torch.cuda.synchronize()
        started = time.perf_counter()
        for inputs, targets in batches:
            outputs, _ = self.rnn(inputs)
            loss = torch.nn.functional.mse_loss(self.head(outputs[:, -1]), targets)
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.parameters, common.CLIPNORM)
            self.optimizer.step()
        torch.cuda.synchronize()
        return time.perf_counter() - started


def speed_check(rounds=5, round_seconds=1.0):
    """Sequences per second of kala's loop and of PyTorch's cuDNN LSTM at `SHAPES`."""
    torch = common.torch()
    cuda = torch is not None and torch.cuda.is_available()
    rows = []
    for shape in SHAPES:
        task = common.Synthetic(shape.time, shape.features)
        contenders = [training.KalaLoop(common.build("lstm", "builtin", task, shape), task,
                                        shape.batch)]
        if cuda:
            contenders.append(TorchCudaLoop(torch, task, shape))
        step_seconds = max((contenders[0].run(6) - contenders[0].run(1)) / 5, 1e-5)
        steps = max(5, round(round_seconds / step_seconds))
        rates = [[] for _ in contenders]
        for round_index in range(rounds):
            order = range(len(contenders))
            for index in order if round_index % 2 == 0 else reversed(order):
                rates[index].append(steps * shape.batch / contenders[index].run(steps))
        for contender, rate in zip(contenders, rates):
            rows.append({"shape": shape.label, "impl": contender.impl,
                         "sequences_per_second": statistics.median(rate), "rounds": rate})
        if cuda:
            rows[-2]["vs_torch_cuda"] = statistics.median(a / b for a, b in zip(*rates))
    return {"speed": rows, "torch": None if torch is None else torch.__version__,
            "torch_cuda": cuda}, []


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also write what was measured here")
    parser.add_argument("--require-gpu", action="store_true",
                        help="exit 1, not 0, on a machine without a GPU")
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("gpu_check: TensorFlow sees no GPU here; nothing was checked.")
        return 1 if args.require_gpu else 0
    tf.config.experimental.enable_tensor_float_32_execution(False)
    started = time.perf_counter()
    payload = {"command": "python -m bench.gpu_check " + " ".join(sys.argv[1:]),
               "machine": {**common.machine(), "gpu_names": _gpu_names()}}
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, check in (("cuDNN in the traced step", cudnn_check),
                            ("adding problem, export, CPU answers",
                             lambda: adding_and_export_check(scratch)),
                            ("two mirrored replicas", mirrored_check),
                            ("speed against PyTorch", speed_check)):
            print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
            measured, found = check()
            payload.update(measured)
            problems += found
            print(f"  {'ok' if not found else 'FAILED: ' + '; '.join(found)}: "
                  f"{json.dumps(measured)[:400]}", flush=True)
    payload["seconds"] = round(time.perf_counter() - started, 1)
    payload["problems"] = problems
    if args.json:
        with open(args.json + ".tmp", "w") as file:
            json.dump(payload, file, indent=2)
        os.replace(args.json + ".tmp", args.json)
    print(f"gpu_check: {'all checks passed' if not problems else f'{len(problems)} failed'} in "
          f"{payload['seconds']:.0f} s on {', '.join(payload['machine']['gpu_names'])}")
    return 1 if problems else 0


def _gpu_names():
    """The GPUs' model names, as TensorFlow's device details give them."""
    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names


if __name__ == "__main__":
    sys.exit(main())
