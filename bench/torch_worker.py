"""PyTorch's contenders, each in a process of its own, without TensorFlow beside it.

`bench.training` starts this file as a script (`python bench/torch_worker.py`, so that the
`bench` package, which loads TensorFlow, is never imported here) and talks to it in JSON
lines: one request on stdin, one answer on stdout. While one side runs its steps the other
waits on the pipe, so the contenders still take turns round by round, each alone on the cores.

Requests:

    {"setup": {"cell": "lstm", "features": 16, "units": 64, "batches": PATH, "compile": false}}
        builds `nn.RNN`/`nn.LSTM`/`nn.GRU` with a linear head and an Adam, loads the batches
        (an .npz of `inputs` [N, B, T, D] and `targets` [N, B, 1], made before the timed loop),
        and takes two warm-up steps. With `compile`, the model goes through `torch.compile`
        with `torch._dynamo.config.allow_rnn` (without it, Dynamo leaves these three modules
        to eager PyTorch); the answer says whether it compiled and, if not, why.
    {"run": STEPS}   times STEPS training steps on the batches in turn; answers the seconds.
    {"quit": true}   ends the process.

Every answer is one JSON object; an error is `{"error": "..."}` on one line.
"""

import json
import sys
import time

import numpy as np
import torch
import torch._dynamo

LEARNING_RATE = 1e-3  # As bench.common's.
CLIPNORM = 1.0
MODULES = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


class Net(torch.nn.Module):
    """The recurrent layer and a linear head on its last output, as kala's sequence models."""

    def __init__(self, cell, features, units):
        super().__init__()
        self.rnn = getattr(torch.nn, MODULES[cell])(features, units, batch_first=True)
        self.head = torch.nn.Linear(units, 1)

    def forward(self, inputs):
        outputs, _ = self.rnn(inputs)
        return self.head(outputs[:, -1])


class Contender:
    def __init__(self, cell, features, units, batches, compile=False):
        torch.manual_seed(0)
        self.net = Net(cell, features, units)
        self.parameters = list(self.net.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=LEARNING_RATE)
        with np.load(batches) as data:
            self.batches = list(zip(torch.from_numpy(data["inputs"]),
                                    torch.from_numpy(data["targets"])))
        self.forward, self.index = self.net, 0
        self.compiled, self.reason = False, None
        started = time.perf_counter()
        if compile:
            torch._dynamo.config.allow_rnn = True
            compiled = torch.compile(self.net)
            try:
                self._step(compiled)
                self.forward, self.compiled = compiled, True
            except Exception as error:  # Inductor's own errors: the answer carries them.
                self.reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        self.run(2)
        self.setup_seconds = time.perf_counter() - started

    def _step(self, forward):
        inputs, targets = self.batches[self.index % len(self.batches)]
        self.index += 1
        loss = torch.nn.functional.mse_loss(forward(inputs), targets)
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, CLIPNORM)
        self.optimizer.step()

    def run(self, steps):
        started = time.perf_counter()
        for _ in range(steps):
            self._step(self.forward)
        return time.perf_counter() - started


def answer(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    contender = None
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if "setup" in request:
                contender = Contender(**request["setup"])
                answer({"setup_seconds": contender.setup_seconds,
                        "compiled": contender.compiled, "reason": contender.reason,
                        "torch": torch.__version__, "threads": torch.get_num_threads()})
            elif "run" in request:
                answer({"seconds": contender.run(int(request["run"]))})
            elif "quit" in request:
                return
            else:
                answer({"error": f"unknown request {line.strip()!r}"})
        except Exception as error:  # The parent reports it; this process stays up.
            answer({"error": f"{type(error).__name__}: {error}".splitlines()[0]})


if __name__ == "__main__":
    main()
