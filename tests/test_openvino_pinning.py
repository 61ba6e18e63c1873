"""OpenVINO pins the threads that run an inference to CPUs (ENABLE_CPU_PINNING, on by default on Linux),
counting from the first CPU of the process's mask, for as long as the inference runs. A process that runs
fewer threads than it has CPUs shares the machine with others like it (Ray actors of one CPU, `zoo serve
--workers N`): pinned, every one of them ran its model on CPU 0 while CPU 1 sat idle (seen in a Ray run of
resnet18 int8 on 2 CPUs: two actors, each at 60 % of a CPU, 0.5-0.6x local classify). So the predictor
pins only where its threads take every CPU the process may use."""

import json
import os
import subprocess
import sys

import pytest

from infer.predictor import installed
from zoo.hardware import usable_cpus

pytestmark = pytest.mark.skipif(not installed("openvino"), reason="openvino is not installed")

# Infers in a loop on a thread while the main thread reads every thread's CPU mask from /proc for half a second
# (a mask is narrowed only while an inference runs, so it is watched then, not after).
WATCH = """
import collections, json, os, sys, threading, time
import numpy as np
import infer
p = infer.load(sys.argv[1], backend="openvino", threads=int(sys.argv[2]))
x = np.zeros((256, *p.card.input_shape), np.float32)
stop, inferences = threading.Event(), []
def work():
    while not stop.is_set():
        p.predict(x)
        inferences.append(1)
worker = threading.Thread(target=work)
worker.start()
def mask(status):
    try:
        return next(line.split(":")[1].strip() for line in open(status) if line.startswith("Cpus_allowed_list"))
    except OSError:  # a thread that ended
        return None
seen, end = collections.Counter(), time.monotonic() + 0.5
while time.monotonic() < end:
    seen.update(m for t in os.listdir("/proc/self/task") if (m := mask(f"/proc/self/task/{t}/status")))
    time.sleep(0.0005)
stop.set()
worker.join()
print(json.dumps({"process": mask("/proc/self/status"), "seen": seen, "inferences": len(inferences)}))
"""


def watch_masks(model, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-c", WATCH, str(model), str(threads)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_fewer_threads_than_cpus_pin_nothing(exported_lenet):
    if len(usable_cpus()) < 2:
        pytest.skip("one CPU: no thread can be pinned to fewer")
    watched = watch_masks(exported_lenet("lenet") / "model.onnx", threads=1)
    assert watched["inferences"] > 0, watched
    assert set(watched["seen"]) == {watched["process"]}, watched  # every thread may run on every CPU throughout
