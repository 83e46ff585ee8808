"""``python -m workshop train detector --dataset``: the detector trained on a COCO or Pascal VOC
data set of one's own (workshop/toolkit/training.py, datasets.py).

The data: 16 synthetic scenes drawn at 128 x 128, 96 x 128 and 128 x 96 and enlarged (so the
images are 128 x 128, 192 x 256 and 192 x 144 pixels and the letterbox has work to do), their
classes renamed (coin, tile, ...), written as PNG + COCO JSON and as a VOC root. Training runs
in this process, a few steps of batch 4 at the course's 128 pixels; the whole module takes
about a minute on 2 cores, so nothing is marked slow.
"""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from toolkit_support import ROOT, SHAPE_NAMES, write_training_set

from workshop.toolkit import evaluate, predict, training
from workshop.toolkit.datasets import letterbox, load_dataset, unletterbox

pytest.importorskip("tensorflow")

COMMON = ["detector", "--batch-size", "4", "--quiet", "--seed", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_training_set(tmp_path_factory.mktemp("data"), n=16)


def _train(capsys, *argv):
    code = training.main([*COMMON, *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _scalars(log_dir):
    """TensorBoard's scalars in ``log_dir`` (recursively): {tag: {step: value}}."""
    import tensorflow as tf

    found = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                found.setdefault(f"{path.parent.name}/{value.tag}", {})[event.step] = number
    return found


def _state(out):
    return json.loads((out / "training_state.json").read_text())


@pytest.fixture(scope="module")
def coco_run(data, tmp_path_factory):
    """Two epochs on the COCO version; returns (out folder, what it printed)."""
    out = tmp_path_factory.mktemp("coco_run")
    buf = io.StringIO()           # capsys is per test: this module-wide run captures by hand
    with contextlib.redirect_stdout(buf):
        code = training.main([*COMMON, "--dataset", str(data["coco"]), "--images", str(data["images"]),
                              "--out", str(out), "--epochs", "2", "--val-fraction", "0.25"])
    assert code == 0, buf.getvalue()
    return out, buf.getvalue()


def test_training_writes_weights_classes_state_and_tensorboard(coco_run):
    out, printed = coco_run
    for name in ("detector_rpn.weights.h5", "detector_head.weights.h5", "optimizer.npz", "detector.json",
                 "training_state.json"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if ".tmp." in p.name], "temporary files are renamed or removed"
    info = json.loads((out / "detector.json").read_text())
    assert info["class_names"] == ["background", *SHAPE_NAMES] and info["input_size"] == 128
    state = _state(out)
    assert state["epochs_done"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert len(state["split"]["val"]) == 4 and len(state["split"]["train"]) == 12
    assert state["optimizer_steps"] == 2 * 3               # 12 images, batch 4
    last = state["history"][-1]
    assert np.isfinite(last["loss"]) and np.isfinite(last["val_loss"])
    assert 0.0 < last["val_map"] <= 1.0, "the box head learns from the checkpoint's RPN in two epochs"
    assert "16 images (12 to train on, 4 held out)" in printed
    assert f"COCO mAP@[.5:.95] {last['val_map']:.4f}" in printed         # the final validation
    scalars = _scalars(out / "logs")
    assert set(scalars["train/epoch_loss"]) == {0, 1}
    assert set(scalars["validation/epoch_loss"]) == {0, 1}
    assert scalars["validation/epoch_map"][1] == pytest.approx(last["val_map"], abs=1e-6)


def test_the_same_command_resumes_after_the_last_epoch(coco_run, data, capsys):
    out, _ = coco_run
    before = _state(out)
    args = ["--dataset", data["coco"], "--images", data["images"], "--out", out, "--val-fraction", "0.25"]
    code, printed, err = _train(capsys, *args, "--epochs", "3")
    assert code == 0, err
    assert "resuming: 2 of 3 epochs done" in printed and "training epochs 3 to 3" in printed
    # the weights are the saved ones: the held-out mAP they give is the one recorded for epoch 2
    # (a fresh box head scores near 0); Adam's state too: its step counter goes on from 6
    assert f"val mAP {before['history'][-1]['val_map']:.4f} (as saved)" in printed
    assert "(step 6)" in printed
    after = _state(out)
    assert after["epochs_done"] == 3 and [h["epoch"] for h in after["history"]] == [1, 2, 3]
    assert after["history"][:2] == before["history"]
    assert after["optimizer_steps"] == 9                     # one more epoch, not three
    assert after["split"] == before["split"]
    assert set(_scalars(out / "logs")["train/epoch_loss"]) == {0, 1, 2}   # TensorBoard's epochs go on

    code, printed, err = _train(capsys, *args, "--epochs", "3", "--resume")
    assert code == 0, err
    assert "nothing left to train" in printed
    assert _state(out)["history"] == after["history"]


def test_predict_and_eval_take_the_result(coco_run, data, tmp_path, capsys):
    out, _ = coco_run
    pred = tmp_path / "pred.json"
    code = predict.main([str(data["images"]), "--checkpoint", str(out), "--annotations", str(data["coco"]),
                         "--output", str(pred), "--min-score", "0.3"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "classes: coin, tile, wedge, plus, hoop (images letterboxed to 128 x 128)" in printed
    results = json.loads(pred.read_text())
    sidecar = json.loads(pred.with_name("pred.images.json").read_text())
    assert {c["name"] for c in sidecar["categories"]} == set(SHAPE_NAMES)
    assert {r["category_id"] for r in results} <= {10, 20, 30, 40, 50}
    # boxes come back in the pixels of each image as read: beyond 128 on the enlarged ones
    size = {im["id"]: (im["width"], im["height"]) for im in sidecar["images"]}
    assert max(r["bbox"][0] + r["bbox"][2] for r in results) > 130
    for r in results:
        w, h = size[r["image_id"]]
        assert r["bbox"][0] + r["bbox"][2] <= w + 1e-3 and r["bbox"][1] + r["bbox"][3] <= h + 1e-3
    # evaluated on the held-out images in their own pixels, predict's detections score what the
    # training's validation measured on the letterboxed ones (IoU does not change with the scale)
    held_out = set(_state(out)["split"]["val"])
    truth = json.loads(data["coco"].read_text())
    keep = {im["id"] for im in truth["images"] if im["file_name"] in held_out}
    truth["images"] = [im for im in truth["images"] if im["id"] in keep]
    truth["annotations"] = [a for a in truth["annotations"] if a["image_id"] in keep]
    (tmp_path / "val.json").write_text(json.dumps(truth))
    code = predict.main([*(str(data["images"] / n) for n in sorted(held_out)), "--checkpoint", str(out),
                         "--annotations", str(tmp_path / "val.json"), "--output", str(tmp_path / "val_pred.json")])
    assert code == 0
    capsys.readouterr()
    report = evaluate.coco_report(str(tmp_path / "val.json"), str(tmp_path / "val_pred.json"))
    figures = _state(out)["figures"]
    assert figures["map"] > 0.05
    assert report["stats"]["AP @[IoU=0.50:0.95 | area=all | maxDets=100]"] == pytest.approx(figures["map"], abs=0.01)
    assert report["stats"]["AP @[IoU=0.50 | area=all | maxDets=100]"] == pytest.approx(figures["ap50"], abs=0.01)


def test_voc_data_set_trains_and_evaluates(data, tmp_path, capsys):
    out = tmp_path / "voc_run"
    code, printed, err = _train(capsys, "--dataset", data["voc"], "--out", out, "--epochs", "1",
                                "--val-fraction", "0.25")
    assert code == 0, err
    assert "VOC data set" in printed and "VOC mAP@0.5" in printed
    info = json.loads((out / "detector.json").read_text())
    assert info["class_names"] == ["background", *sorted(SHAPE_NAMES)]   # as `eval --voc` numbers them
    pred = tmp_path / "pred.json"
    assert predict.main([str(data["voc"] / "JPEGImages"), "--checkpoint", str(out), "--output", str(pred)]) == 0
    capsys.readouterr()
    assert evaluate.main(["--voc", str(data["voc"]), "--predictions", str(pred)]) == 0
    assert "mAP" in capsys.readouterr().out


def test_letterbox_scales_boxes_with_the_pixels():
    image = np.zeros((150, 300, 3), np.uint8)
    image[30:90, 60:240] = 255                       # the box (60, 30, 240, 90)
    box = np.array([[60.0, 30.0, 240.0, 90.0]])
    boxed, scaled = letterbox(image, box, 64)
    assert boxed.shape == (64, 64, 3) and boxed.dtype == np.uint8
    assert boxed[33:].max() == 0, "padding below the 64 x 32 picture"
    ys, xs = np.nonzero(boxed[..., 0] > 127)
    np.testing.assert_allclose(scaled[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=0.6)
    np.testing.assert_allclose(unletterbox(scaled, 150, 300, 64), box, atol=1e-9)


def _coco(tmp_path, data, change):
    doc = json.loads(data["coco"].read_text())
    change(doc)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return path


def _bad_box(doc, bbox):
    """Annotation 7 moved to scene_002.png (144 x 192 pixels) with ``bbox``."""
    ann = next(a for a in doc["annotations"] if a["id"] == 7)
    ann.update(image_id=102, bbox=bbox)


@pytest.mark.parametrize("case, expected", [
    ("missing", "no-such.json: no such file or folder"),
    ("not json", "not valid JSON"),
    ("not coco", "not a COCO detection file"),
    ("missing image", "image ghost.png not found"),
    ("outside", "annotation id 7 (scene_002.png): box [x1=100, y1=20, x2=300, y2=60] is outside the image"),
    ("inverted", "(annotation id 7): bbox [100, 20, -5, 40] has a negative width or height, so x2 < x1"),
    ("no annotations", "no annotations"),
    ("no categories", "no categories"),
    ("size", "image scene_002.png: the file is 144 x 192 pixels, its annotation says 145 x 192"),
    ("epochs 0", "--epochs: expected at least 1, got 0"),
    ("voc inverted", "scene_000.xml object 0: inverted box"),
    ("resume nothing", "--resume: no training run"),
    ("not the detector", "`train detector --dataset ...`, not classifier"),
])
def test_bad_input_exits_2_naming_the_problem(case, expected, data, tmp_path, capsys):
    images = data["images"]
    models = ["detector"]
    extra = []
    if case == "missing":
        dataset = tmp_path / "no-such.json"
    elif case == "not json":
        dataset = tmp_path / "a.json"
        dataset.write_text("{images: oops")
    elif case == "not coco":
        dataset = tmp_path / "a.json"
        dataset.write_text(json.dumps({"type": "instances", "items": []}))
    elif case == "missing image":
        dataset = _coco(tmp_path, data, lambda d: d["images"][3].update(file_name="ghost.png"))
    elif case == "outside":
        dataset = _coco(tmp_path, data, lambda d: _bad_box(d, [100, 20, 200, 40]))
    elif case == "inverted":
        dataset = _coco(tmp_path, data, lambda d: _bad_box(d, [100, 20, -5, 40]))
    elif case == "no annotations":
        dataset = _coco(tmp_path, data, lambda d: d.update(annotations=[]))
    elif case == "no categories":
        dataset = _coco(tmp_path, data, lambda d: d.update(annotations=[], categories=[]))
    elif case == "size":
        dataset = _coco(tmp_path, data, lambda d: d["images"][2].update(width=145))
    elif case == "epochs 0":
        dataset, extra = data["coco"], ["--epochs", "0"]
    elif case == "voc inverted":
        voc = tmp_path / "voc"
        (voc / "Annotations").mkdir(parents=True)
        for xml in (data["voc"] / "Annotations").glob("*.xml"):
            text = xml.read_text()
            if xml.name == "scene_000.xml":
                text = text.replace("<xmin>", "<xmin>9", 1)     # xmin > xmax
            (voc / "Annotations" / xml.name).write_text(text)
        dataset, images = voc, data["voc"] / "JPEGImages"
    elif case == "resume nothing":
        dataset, extra = data["coco"], ["--resume"]
    else:
        dataset, models = data["coco"], ["classifier"]
    argv = [*models, "--dataset", str(dataset), "--images", str(images), "--out", str(tmp_path / "out"), *extra]
    code = training.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "training_state.json").exists()


def test_command_line_help_and_usage_errors(data, tmp_path):
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "workshop", "train", *argv], capture_output=True,
                              text=True, timeout=300, cwd=ROOT)

    shown = run("--help")
    assert shown.returncode == 0, shown.stderr
    for option in ("--dataset", "--images", "--val-fraction", "--image-size", "--logs", "--out", "--resume",
                   "--restart", "--init", "--epochs", "letterbox"):
        assert option in shown.stdout, option
    bad = run("detector", "--dataset", str(tmp_path / "missing.json"), "--out", str(tmp_path / "out"))
    assert bad.returncode == 2 and "missing.json: no such file or folder" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert run("detector", "--dataset", str(data["coco"]), "--epochs", "x").returncode == 2   # argparse


def test_a_checkpoint_interrupted_while_saving_leaves_the_last_one_whole(tmp_path):
    """Files are written under temporary names and renamed only when all are written."""

    class Net:
        def __init__(self, payload):
            self.payload = payload

        def save_weights(self, path):
            with open(path, "wb") as f:
                f.write(self.payload)

    class Detector:
        def __init__(self, payload):
            self.rpn, self.head = Net(payload), Net(payload)

    class Optimizer:
        def __init__(self, fail):
            self.fail = fail

        def save_own_variables(self, store):
            if self.fail:
                raise KeyboardInterrupt
            store["0"] = np.arange(3)

    training.save_checkpoint(tmp_path, Detector(b"epoch 1"), Optimizer(False), {"epochs_done": 1})
    with pytest.raises(KeyboardInterrupt):
        training.save_checkpoint(tmp_path, Detector(b"epoch 2"), Optimizer(True), {"epochs_done": 2})
    assert (tmp_path / "detector_rpn.weights.h5").read_bytes() == b"epoch 1"
    assert (tmp_path / "detector_head.weights.h5").read_bytes() == b"epoch 1"
    assert json.loads((tmp_path / "training_state.json").read_text()) == {"epochs_done": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector_head.weights.h5", "detector_rpn.weights.h5",
                                                         "optimizer.npz", "training_state.json"]


def test_dataset_reader_keeps_boxes_in_image_pixels(data):
    loaded = load_dataset(data["coco"], data["images"])
    assert loaded.format == "coco" and loaded.class_names == ("background", *SHAPE_NAMES)
    name, (h, w), boxes, classes = data["scenes"][1]
    im = next(i for i in loaded.images if i.name == name)
    assert (im.height, im.width) == (h, w) == (192, 256)
    np.testing.assert_allclose(im.boxes, boxes, atol=1e-9)
    np.testing.assert_array_equal(im.classes, classes)
    voc = load_dataset(data["voc"])
    assert voc.format == "voc" and voc.image_dir == data["voc"] / "JPEGImages"
    vim = next(i for i in voc.images if i.name == name)
    np.testing.assert_allclose(vim.boxes, boxes, atol=1e-6)
