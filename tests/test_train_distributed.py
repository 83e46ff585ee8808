"""Detector training under tf.distribute (``python -m workshop train detector --strategy ...``),
on CPU: MirroredStrategy over two logical CPU devices in one process, and
MultiWorkerMirroredStrategy over two worker processes on 127.0.0.1 (TF_CONFIG per process).

Each run trains the tiny detector setting (16 training scenes, global batch 8, 2 epochs: 4
steps) from the checkpoint's backbone with the same seed, and is compared with single-device
training of the same global batches: the last epoch's loss within ``LOSS_RTOL`` (relative)
and every saved weight within ``WEIGHT_ATOL``. Both runs draw their targets per image
(``per_image_seeds``): with one shared random stream the draws would depend on which replica
reaches the sampler first. What differs is float summation order (a gradient summed over two
halves of the batch instead of one batch), so the runs agree to ~1e-6, not bit for bit.
Each run is a fresh subprocess (devices and strategies are fixed once TensorFlow starts).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LOSS_RTOL = 1e-3
WEIGHT_ATOL = 1e-4
EPOCHS = 2

RUN = r"""
import json, os, shutil, sys
mode, out = sys.argv[1], sys.argv[2]
from workshop.course import import_tensorflow
tf = import_tensorflow()
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from workshop import train
from workshop.checkpoint import ready_dir
os.makedirs(out, exist_ok=True)
shutil.copy(ready_dir() / "backbone.weights.h5", out)
strategy = {"single": "default"}.get(mode, mode)
figures = train.train(["detector"], out, tiny=True, seed=0, logs=None, verbose=0, epochs=int(sys.argv[3]),
                      strategy=strategy, per_image_seeds=True)
print("RESULT " + json.dumps(figures["detector"]))
"""


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _result(proc) -> dict:
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def _run(mode: str, out: Path, **env) -> dict:
    proc = subprocess.run([sys.executable, "-c", RUN, mode, str(out), str(EPOCHS)], capture_output=True,
                          text=True, timeout=600, env=_env(**env), cwd=ROOT)
    return _result(proc)


def _weights(folder: Path) -> dict:
    import h5py

    arrays = {}
    for name in ("detector_rpn.weights.h5", "detector_head.weights.h5"):
        with h5py.File(folder / name, "r") as f:
            f.visititems(lambda key, obj, n=name: arrays.__setitem__(f"{n}/{key}", obj[()])
                         if isinstance(obj, h5py.Dataset) else None)
    assert arrays
    return arrays


def _assert_same_training(a: dict, folder_a: Path, b: dict, folder_b: Path):
    assert np.isfinite(a["final_loss"]) and np.isfinite(b["final_loss"])
    assert abs(a["final_loss"] - b["final_loss"]) <= LOSS_RTOL * abs(a["final_loss"]), (a, b)
    wa, wb = _weights(folder_a), _weights(folder_b)
    assert wa.keys() == wb.keys()
    worst = max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa)
    assert worst <= WEIGHT_ATOL, worst


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    return _run("single", out), out


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_matches_one_device(single, tmp_path):
    result = _run("mirrored", tmp_path)
    assert result["replicas"] == 2
    _assert_same_training(single[0], single[1], result, tmp_path)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_multiworker_over_two_processes_matches_one_device(single, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        out = tmp_path / f"worker{index}"
        procs.append((out, subprocess.Popen(
            [sys.executable, "-c", RUN, "multiworker", str(out), str(EPOCHS)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=_env(TF_CONFIG=tf_config), cwd=ROOT)))
    results = []
    try:
        for _, proc in procs:
            stdout, stderr = proc.communicate(timeout=600)
            results.append(_result(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)))
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    chief_out = procs[0][0]
    assert all(r["replicas"] == 2 for r in results)
    assert results[0]["final_loss"] == results[1]["final_loss"], "both workers report the global loss"
    assert (chief_out / "detector_rpn.weights.h5").exists()
    assert not (procs[1][0] / "detector_rpn.weights.h5").exists(), "only the chief writes --out"
    _assert_same_training(single[0], single[1], results[0], chief_out)


def test_a_bad_strategy_is_refused():
    from workshop import train

    with pytest.raises(ValueError, match="--strategy"):
        train.train(["detector"], Path("unused"), strategy="horovod")


def test_multiworker_without_tf_config_is_refused(monkeypatch):
    from workshop import train

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        train.make_strategy("multiworker")


def test_chief_is_worker_zero_unless_there_is_a_chief(monkeypatch):
    from workshop import train

    cases = [(None, True),
             ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
             ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
             ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
             ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True)]
    for config, chief in cases:
        if config is None:
            monkeypatch.delenv("TF_CONFIG", raising=False)
        else:
            monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        assert train.is_chief() is chief, config
