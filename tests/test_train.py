"""The training entry points, with tiny settings (CI never trains the real checkpoint)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from workshop import train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    figures = train.train(train.MODELS, out, tiny=True, logs=out / "logs", verbose=0)
    return out, figures


def test_every_model_writes_weights_and_figures(tiny_run):
    out, figures = tiny_run
    for name in ("classifier.weights.h5", "backbone.weights.h5", "unet.weights.h5",
                 "detector_rpn.weights.h5", "detector_head.weights.h5", "metrics.json"):
        assert (out / name).exists(), name
    assert not list(out.glob("*.best.weights.h5")), "ModelCheckpoint's files are cleaned up"
    recorded = json.loads((out / "metrics.json").read_text())
    assert set(recorded) == set(train.MODELS)
    assert 0.0 <= recorded["classifier"]["test_accuracy"] <= 1.0
    assert 0.0 <= recorded["unet"]["pixel_accuracy"] <= 1.0
    assert "ap50" in recorded["detector"] and "pycocotools_ap50" in recorded["detector"]
    assert abs(recorded["detector"]["ap50"] - recorded["detector"]["pycocotools_ap50"]) < 1e-9
    assert all(r["train_seconds"] > 0 for r in recorded.values())


def test_tensorboard_logs_are_written(tiny_run):
    out, _ = tiny_run
    assert list((out / "logs").rglob("events.out.tfevents.*"))


def test_trained_detector_loads_and_detects(tiny_run):
    from workshop.course import load_detector
    from workshop.data.synthetic import make_scene

    out, _ = tiny_run
    detector = load_detector(out)
    scene = make_scene(0)
    (result,) = detector.detect(scene.image)
    assert result["boxes"].shape[1:] == (4,)
    assert len(result["boxes"]) == len(result["scores"]) == len(result["classes"])
    assert np.all(np.diff(result["scores"]) <= 0)


def test_training_is_deterministic_under_a_seed(tmp_path):
    a = train.train(["classifier"], tmp_path / "a", tiny=True, seed=3, logs=None, verbose=0)
    b = train.train(["classifier"], tmp_path / "b", tiny=True, seed=3, logs=None, verbose=0)
    assert a["classifier"]["test_accuracy"] == b["classifier"]["test_accuracy"]
    assert _weights(tmp_path / "a" / "classifier.weights.h5") == _weights(tmp_path / "b" / "classifier.weights.h5")


def _weights(path):
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()].tobytes())
                     if isinstance(obj, h5py.Dataset) else None)
    assert arrays
    return arrays


def test_command_line_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "workshop.train", "classifier", "--tiny", "--quiet",
                           "--out", str(tmp_path), "--logs", str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[classifier]" in proc.stdout
    assert (tmp_path / "classifier.weights.h5").exists()


def test_unknown_model_is_refused():
    with pytest.raises(SystemExit):
        train.main(["nonsense"])
