"""Beyond one device: the strategies of TensorFlow's own engine, `tf.distribute`, made ready for
`kala.Trainer(..., strategy=...)`, and what a run records of them.

- `make_strategy("mirrored", devices=2)`: one process, several devices. GPUs when TensorFlow sees
  some; else the CPU split into that many logical devices (a test of the maths and the API, not
  a speed-up: the devices share the same cores).
- `make_strategy("multi_worker")`: several processes, each on its own machine or all on one,
  joined by the cluster that the `TF_CONFIG` variable describes. `python -m kala.distribute
  --workers N SCRIPT ...` starts N such workers on this machine; on real hosts each host runs
  the same command with its own `TF_CONFIG`.
- `is_chief(strategy)`: whether this process writes results and exports (worker 0, or the
  cluster's `chief`); the others train the same steps and write nothing that lasts.
- `describe(strategy)`: what a results file records: the strategy, its replicas and workers.

A TPU is reached the same way with `tf.distribute.TPUStrategy` (see the README's "Scaling out");
kala has not been run on one.
"""

import contextlib
import json
import os
import socket

import tensorflow as tf

from kala import checks

KINDS = ("none", "mirrored", "multi_worker")
# The environment variable in which `python -m kala.distribute` tells its workers the command
# it was started with, for their results files.
LAUNCH_COMMAND = "KALA_LAUNCH_COMMAND"


def split_cpu(count):
    """Makes the CPU appear as `count` logical devices, `/cpu:0` to `/cpu:{count-1}`. TensorFlow
    allows it only before its first op; afterwards an unchanged count passes and another is a
    ValueError."""
    count = checks.integer("count", count)
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    try:
        tf.config.set_logical_device_configuration(cpu, wanted if count > 1 else None)
    except RuntimeError:  # TensorFlow has started: it keeps the devices it made.
        present = len(tf.config.list_logical_devices("CPU"))
        if present != count:
            raise ValueError(
                f"The CPU can be split into {count} devices only before TensorFlow runs its "
                f"first op; it already runs with {present}. Make the strategy first thing in "
                "the program.") from None


def cluster():
    """The cluster and this process's task from `TF_CONFIG`, as a dict; ValueError when it is
    not set or not what `MultiWorkerMirroredStrategy` reads."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise ValueError(
            "The multi_worker strategy needs the TF_CONFIG environment variable, which names "
            "every worker and this one's place among them; it is not set. Start the workers "
            "with `python -m kala.distribute --workers N SCRIPT ...`, or set TF_CONFIG on each "
            "host (see the README's \"Scaling out\").")
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task_type, index = config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            'TF_CONFIG must be JSON of the form {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}}. Received {text!r} ({error!r}).'
        ) from None
    hosts = config["cluster"].get(task_type, [])
    if not 0 <= index < len(hosts):
        raise ValueError(f"TF_CONFIG's task is {task_type} {index}, but its cluster has "
                         f"{len(hosts)} of them: {hosts}.")
    return {"workers": list(workers), "chief": list(config["cluster"].get("chief", [])),
            "task_type": task_type, "task_index": index}


def make_strategy(kind="none", devices=0):
    """The strategy for `kind` (one of `KINDS`), or None for `"none"`.

    Args:
        kind: `"none"` (one device, no strategy), `"mirrored"` (`tf.distribute.MirroredStrategy`
            over this machine's devices) or `"multi_worker"`
            (`tf.distribute.MultiWorkerMirroredStrategy` over the workers of `TF_CONFIG`).
        devices: for `"mirrored"`, how many devices: that many GPUs (0: all of them), or with
            no GPU that many logical CPU devices (0: one). For `"multi_worker"`, the GPUs each
            worker uses (0: all); a worker without a GPU is one CPU device.

    Call it before TensorFlow runs its first op: splitting the CPU and choosing GPUs are
    possible only then.
    """
    checks.one_of("kind", kind, KINDS)
    devices = checks.integer("devices", devices, minimum=0)
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "none":
        if devices > 1:
            raise ValueError(f"devices={devices} needs a strategy: use kind='mirrored' to train "
                             "on several devices of this machine.")
        return None
    if devices > len(gpus) and gpus:
        raise ValueError(f"devices={devices}, but TensorFlow sees {len(gpus)} GPUs: "
                         f"{[gpu.name for gpu in gpus]}.")
    if kind == "mirrored":
        if gpus:
            names = [f"/gpu:{index}" for index in range(devices or len(gpus))]
        else:
            split_cpu(devices or 1)
            names = [f"/cpu:{index}" for index in range(devices or 1)]
        return tf.distribute.MirroredStrategy(names)
    cluster()  # A clear error if TF_CONFIG is missing or malformed.
    if gpus and devices:
        tf.config.set_visible_devices(gpus[:devices], "GPU")
    elif not gpus and devices > 1:
        raise ValueError(f"devices={devices}: a multi_worker worker without a GPU trains on one "
                         "CPU device. Start more workers instead.")
    return tf.distribute.MultiWorkerMirroredStrategy()


def scope(strategy):
    """`strategy.scope()`, in which a model's variables are made mirrored; with None, nothing."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def barrier(strategy):
    """Returns once every worker of a multi-worker `strategy` has called it (one small
    all-reduce); at once for any other. A worker that has finished calls it before it exits,
    and the chief after it wrote its results: a worker that left first would be reported by
    the chief's TensorFlow as crashed ("stopped sending heartbeats")."""
    if _task(strategy) is None:
        return

    @tf.function  # Collectives run eagerly are slow, and TensorFlow warns of it.
    def all_reduce():
        ones = strategy.run(lambda: tf.constant(1.0))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    all_reduce().numpy()


def _task(strategy):
    """(task_type, task_index, cluster spec dict) of a multi-worker strategy, else None."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None
    spec = resolver.cluster_spec().as_dict()
    if not spec:
        return None
    return resolver.task_type, int(resolver.task_id or 0), spec


def is_chief(strategy):
    """Whether this process writes what lasts (results, checkpoints, exports): always without a
    strategy or with one process; else the `chief` task, or worker 0 in a cluster without one."""
    task = None if strategy is None else _task(strategy)
    if task is None:
        return True
    task_type, index, spec = task
    return task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in spec)


def describe(strategy):
    """What a results file records of a run's strategy: its class, replicas, workers and this
    worker's devices."""
    if strategy is None:
        return {"strategy": None, "replicas": 1, "workers": 1}
    task = _task(strategy)
    workers = 1 if task is None else sum(len(task[2].get(name, [])) for name in ("chief",
                                                                                  "worker"))
    name = next((name for kind, name in _NAMED if isinstance(strategy, kind)),
                type(strategy).__name__)
    return {"strategy": name, "replicas": strategy.num_replicas_in_sync,
            "workers": workers, "devices": list(strategy.extended.worker_devices)}


# The names strategies are known by: MultiWorkerMirroredStrategy's class is named
# CollectiveAllReduceStrategy.
_NAMED = ((tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
          (tf.distribute.MirroredStrategy, "MirroredStrategy"),
          (tf.distribute.OneDeviceStrategy, "OneDeviceStrategy"))


def free_ports(count, host="127.0.0.1"):
    """`count` TCP ports on `host` that nothing listens on now (the system picks them)."""
    sockets = []
    try:
        for _ in range(checks.integer("count", count)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(addresses, index):
    """The `TF_CONFIG` of worker `index` in a cluster of `addresses` ("host:port", one per
    worker, worker 0 first: the chief)."""
    return json.dumps({"cluster": {"worker": list(addresses)},
                       "task": {"type": "worker", "index": int(index)}})
