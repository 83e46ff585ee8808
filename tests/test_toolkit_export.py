"""``python -m workshop export --tflite [--int8]``: the detector's networks as TensorFlow Lite,
run by the same numpy stages (workshop/toolkit/tflite.py, export.py).

Tolerances: TFLite float32 against Keras float32, the same detections with boxes within
0.01 px and scores within 1e-4 (both float32 kernels; measured differences are ~1e-5 px);
TFLite int8 against TFLite float32, COCO mAP within 0.03 on 48 held-out scenes (measured: a
difference under 0.01 on 300). Nothing here is slow (the module takes ~35 s, most of it the
two conversions), so no test is marked ``slow``.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from workshop.toolkit.detection import ToolkitError

pytest.importorskip("tensorflow")

MAP_TOLERANCE = 0.03
BOX_TOLERANCE = 0.01     # px
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from workshop.toolkit.tflite import export_tflite

    folder = tmp_path_factory.mktemp("tflite")
    float_info = export_tflite(folder / "detector.tflite")
    int8_info = export_tflite(folder / "detector-int8.tflite", int8=True, calibration=16)
    return float_info, int8_info


@pytest.fixture(scope="module")
def keras_detector():
    from workshop.course import load_detector

    return load_detector()


def test_both_files_load_in_the_interpreter_with_two_signatures(exported):
    import tensorflow as tf

    float_info, int8_info = exported
    assert int8_info.size_bytes < 0.4 * float_info.size_bytes, "int8 weights take a quarter of the bytes"
    for info in exported:
        assert info.path.stat().st_size == info.size_bytes
        interp = tf.lite.Interpreter(model_path=str(info.path))
        assert set(interp.get_signature_list()) == {"rpn", "box_head"}
        out = interp.get_signature_runner("rpn")(image=np.zeros((1, 64, 96, 3), np.float32))
        assert sorted(v.shape for v in out.values()) == sorted([(1, 8, 12, 96), (1, 8 * 12 * 9), (1, 8 * 12 * 9, 4)])
        out = interp.get_signature_runner("box_head")(pooled=np.zeros((3, 7, 7, 96), np.float32))
        assert sorted(v.shape for v in out.values()) == sorted([(3, 6), (3, 5, 4)])


def test_int8_model_is_integer_inside_with_float_boundary(exported):
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(exported[1].path))
    floats = []
    for subgraph in range(2):       # one per signature: every float32 tensor is an input or output
        details = interp.get_tensor_details(subgraph)
        assert sum(d["dtype"] == np.int8 for d in details) >= 10
        floats.append(sum(d["dtype"] == np.float32 for d in details))
    assert sorted(floats) == [1 + 2, 1 + 3], "box_head: 1 in, 2 out; rpn: 1 in, 3 out"
    for key in ("rpn", "box_head"):
        runner = interp.get_signature_runner(key)
        assert all(d["dtype"] == np.float32 for d in runner.get_input_details().values())
        assert all(d["dtype"] == np.float32 for d in runner.get_output_details().values())


def test_tflite_float_detections_match_keras(exported, keras_detector):
    from workshop.data.synthetic import make_detection_dataset
    from workshop.toolkit.tflite import load_tflite_detector

    lite = load_tflite_detector(exported[0].path)
    images = make_detection_dataset(6, 3, 128).images
    compared = 0
    for a, b in zip(keras_detector.detect(images), lite.detect(images)):
        confident_a, confident_b = a["scores"] > 0.1, b["scores"] > 0.1
        assert np.array_equal(a["classes"][confident_a], b["classes"][confident_b])
        np.testing.assert_allclose(b["boxes"][confident_b], a["boxes"][confident_a], atol=BOX_TOLERANCE)
        np.testing.assert_allclose(b["scores"][confident_b], a["scores"][confident_a], atol=SCORE_TOLERANCE)
        compared += int(confident_a.sum())
    assert compared >= 6


def test_predict_runs_the_tflite_model(exported, tmp_path):
    from toolkit_support import write_scene

    scene = write_scene(tmp_path / "scene.png")
    out = tmp_path / "pred.json"
    proc = subprocess.run([sys.executable, "-m", "workshop", "predict", str(tmp_path / "scene.png"),
                           "--model", str(exported[0].path), "--output", str(out), "--min-score", "0.5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model (TensorFlow Lite)" in proc.stdout
    results = json.loads(out.read_text())
    found = 0
    for box, cls in zip(scene.boxes, scene.classes):
        for r in results:
            x, y, w, h = r["bbox"]
            found += r["category_id"] == cls and _iou(box, [x, y, x + w, y + h]) > 0.5
    assert found >= 1, (results, scene.boxes, scene.classes)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_int8_map_is_close_to_float(exported):
    from workshop.data.synthetic import make_detection_dataset
    from workshop.toolkit.tflite import load_tflite_detector
    from workshop.train import evaluate_detector

    dataset = make_detection_dataset(48, 3, 128)
    float_map = evaluate_detector(load_tflite_detector(exported[0].path), dataset)["map"]
    int8_map = evaluate_detector(load_tflite_detector(exported[1].path), dataset)["map"]
    assert float_map > 0.5
    assert abs(int8_map - float_map) <= MAP_TOLERANCE, (float_map, int8_map)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from workshop.toolkit.tflite import export_tflite

    with pytest.raises(ToolkitError, match="no such folder"):
        export_tflite(tmp_path / "m.tflite", checkpoint=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToolkitError, match="missing detector_rpn.weights.h5"):
        export_tflite(tmp_path / "m.tflite", checkpoint=tmp_path / "empty")


def test_unwritable_output_is_a_clear_error(tmp_path):
    from workshop.toolkit.tflite import export_tflite

    with pytest.raises(ToolkitError, match="no such folder"):
        export_tflite(tmp_path / "absent" / "m.tflite")
    with pytest.raises(ToolkitError, match="ending in .tflite"):
        export_tflite(tmp_path / "m.onnx")
    if os.geteuid() != 0:       # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ToolkitError, match="permission denied"):
            export_tflite(locked / "m.tflite")


def test_command_line_errors_exit_2_with_the_reason(tmp_path):
    cases = [(["--tflite", "--output", str(tmp_path / "m.tflite"), "--checkpoint", str(tmp_path / "nowhere")],
              "no such folder"),
             (["--tflite", "--output", str(tmp_path / "absent" / "m.tflite")], "no such folder"),
             (["--tflite"], "--output"),
             (["--tflite", "--int8", "--calibration", "0", "--output", str(tmp_path / "m.tflite")], "--calibration")]
    for args, reason in cases:
        proc = subprocess.run([sys.executable, "-m", "workshop", "export", *args],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr[-1000:])
        assert reason in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-1000:]
    assert not list(tmp_path.glob("*.tflite"))


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    from workshop.toolkit.tflite import load_tflite_detector

    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a flatbuffer")
    with pytest.raises(ToolkitError, match="not a TensorFlow Lite model"):
        load_tflite_detector(bogus)
    with pytest.raises(ToolkitError, match="no such file"):
        load_tflite_detector(tmp_path / "absent.tflite")
