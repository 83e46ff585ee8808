"""``python -m workshop predict``: COCO results and their id sidecar for images, folders and a
video (streamed, fps printed), drawn media, a learner's stages from their notebook (used where
implemented, the reference elsewhere, and said so), bad input reported without losing the rest."""

import json
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from toolkit_support import PHOTO, ROOT, write_scene, write_video

from workshop.grading.notebook import solution_cell, test_cell
from workshop.toolkit import predict
from workshop.toolkit.stages import learner_stages

NMS_SIGNATURE = "(boxes, scores, classes, iou_threshold, max_output_size=None, score_threshold=None)"


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _load(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    scene = write_scene(d / "scene.png")
    write_video(d / "clip.mp4", frames=8)
    return d, scene


def test_commands_answer_help():
    for command in ("predict", "eval", "serve"):
        out = subprocess.run([sys.executable, "-m", "workshop", command, "--help"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert f"python -m workshop {command}" in out.stdout
    listing = subprocess.run([sys.executable, "-m", "workshop", "--help"], capture_output=True, text=True)
    assert all(c in listing.stdout for c in ("predict", "eval", "serve"))


def test_predict_images_and_a_video(inputs, tmp_path, capsys):
    d, scene = inputs
    out, media = tmp_path / "out" / "predictions.json", tmp_path / "media"
    code = predict.main([str(PHOTO), str(d / "scene.png"), str(d / "clip.mp4"), "--output", str(out),
                         "--save-media", str(media)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "clip.mp4: 8 frames in" in printed and "frames/s" in printed
    results, sidecar = _load(out), _load(out.with_name("predictions.images.json"))

    # COCO results: the format pycocotools' loadRes and the course's loader take
    assert isinstance(results, list) and results
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score"}
        assert len(r["bbox"]) == 4 and r["bbox"][2] >= 0 and r["bbox"][3] >= 0 and 0 < r["score"] <= 1
    from workshop.evaluation import load_coco_detections

    assert len(load_coco_detections(str(out))) == len(results)

    # the sidecar says what each id is: two images, then one id per frame
    images = sidecar["images"]
    assert [im["file_name"] for im in images[:2]] == [str(PHOTO), str(d / "scene.png")]
    frames = [im for im in images if im["file_name"].endswith("clip.mp4")]
    assert [im["frame"] for im in frames] == list(range(8))
    assert len({im["id"] for im in images}) == len(images) == 10
    assert {r["image_id"] for r in results} <= {im["id"] for im in images}
    assert sidecar["videos"][0]["frames"] == 8 and sidecar["videos"][0]["frames_per_second"] > 0
    assert [c["name"] for c in sidecar["categories"]] == ["circle", "square", "triangle", "cross", "ring"]
    assert set(sidecar["info"]["stages"].values()) == {"the reference"}

    # the detector finds the scene's objects (xywh in the file, xyxy in the scene)
    scene_id = images[1]["id"]
    found = [r for r in results if r["image_id"] == scene_id and r["score"] > 0.5]
    for box, cls in zip(scene.boxes.tolist(), scene.classes.tolist()):
        assert any(r["category_id"] == cls and _iou(box, [r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2],
                                                          r["bbox"][1] + r["bbox"][3]]) > 0.5 for r in found)

    # the media, drawn: the images at their size, the video with every frame
    import cv2

    drawn = cv2.imread(str(media / "scene.png"))
    assert drawn.shape == (160, 160, 3)
    assert not np.array_equal(cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB), scene.image)   # boxes drawn
    assert (media / "coffee.jpg").is_file()
    cap = cv2.VideoCapture(str(media / "clip.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 8


def test_predict_a_folder_with_filters(inputs, tmp_path, capsys):
    d, _ = inputs
    out = tmp_path / "p.json"
    assert predict.main([str(d), "--output", str(out), "--min-score", "0.5", "--max-detections", "2",
                         "--classes", "cross,ring"]) == 0
    capsys.readouterr()
    results = _load(out)
    assert results and all(r["score"] > 0.5 and r["category_id"] in (4, 5) for r in results)
    per_image = np.bincount([r["image_id"] for r in results])
    assert per_image.max() <= 2
    assert len(_load(tmp_path / "p.images.json")["images"]) == 9        # the scene and 8 frames


def _learner_notebook(path, calls):
    """A learner's notebook: their own batched NMS (keeps only the best box, and counts its
    calls in ``calls``), roi_align not written yet, decode broken."""
    nb = nbformat.v4.new_notebook()
    nms_body = (f"    with open({str(calls)!r}, 'a') as f:\n"
                "        f.write('call\\n')\n"
                "    order = np.argsort(-np.asarray(scores), kind='stable')\n"
                "    return order[:1].astype(np.int64)")
    nb.cells = [
        nbformat.v4.new_code_cell("import numpy as np"),
        nbformat.v4.new_markdown_cell("## Batched NMS, my way"),
        solution_cell("batched_nms", "numpy", nms_body, signature=NMS_SIGNATURE),
        test_cell("batched_nms", "numpy", 2),
        solution_cell("roi_align", "numpy", "    raise NotImplementedError()",
                      signature="(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1)"),
        solution_cell("decode", "numpy", "    raise ValueError('half-finished')",
                      signature="(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0))"),
    ]
    nbformat.write(nb, str(path))


def test_predict_with_a_learners_stages(inputs, tmp_path, capsys):
    d, _ = inputs
    notebook, calls = tmp_path / "my_nms.ipynb", tmp_path / "calls.txt"
    _learner_notebook(notebook, calls)
    out = tmp_path / "mine.json"
    assert predict.main([str(d / "scene.png"), "--stages", str(notebook), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "batched_nms        yours (batched_nms_numpy in my_nms.ipynb)" in printed
    assert "roi_align          the reference (roi_align_numpy in my_nms.ipynb: not implemented yet)" in printed
    assert "decode             the reference (decode_numpy in my_nms.ipynb: raised ValueError: half-finished)" in printed
    assert "stages (1 yours, 5 the reference's)" in printed
    # the learner's NMS ran: once on the probe, once on the image, and its output is the result
    assert calls.read_text().count("call") == 2
    assert len(_load(out)) == 1
    stages = _load(tmp_path / "mine.images.json")["info"]["stages"]
    assert stages["batched_nms"].startswith("yours") and stages["roi_align"].startswith("the reference")

    reference = tmp_path / "reference.json"
    assert predict.main([str(d / "scene.png"), "--output", str(reference)]) == 0
    capsys.readouterr()
    assert len(_load(reference)) > 1          # the reference's NMS keeps every object


def test_the_course_notebooks_as_stages():
    """The instructor's solutions are working stages; the learners' stubs are not (yet)."""
    solved = learner_stages([ROOT / "solutions" / "03_iou_nms.ipynb", ROOT / "solutions" / "06_roi_pooling.ipynb"])
    assert set(solved.replacements) == {"batched_nms", "roi_align"}
    assert solved.summary()["roi_align"] == "yours (roi_align_numpy in 06_roi_pooling.ipynb)"
    stubs = learner_stages([ROOT / "notebooks" / "03_iou_nms.ipynb"])
    assert stubs.replacements == {}
    assert "batched_nms_numpy in 03_iou_nms.ipynb: not implemented yet" in stubs.summary()["batched_nms"]


def test_bad_input_is_reported_and_loses_nothing(inputs, tmp_path, capsys):
    d, _ = inputs
    out = tmp_path / "p.json"
    out.write_text("[]  # an earlier run")
    # refused before anything runs: the earlier results stay as they were
    assert predict.main([str(tmp_path / "missing.png"), "--output", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    assert predict.main([str(d / "scene.png"), "--classes", "dog", "--output", str(out)]) == 2
    assert "unknown 'dog'" in capsys.readouterr().err
    assert predict.main([str(d / "scene.png"), "--stages", str(tmp_path / "p.json"), "--output", str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert out.read_text() == "[]  # an earlier run"

    # a broken file among good ones: reported, skipped, the others' results written (exit 1)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.mp4").write_text("not a video")
    code = predict.main([str(tmp_path / "broken.jpg"), str(d / "scene.png"), str(tmp_path / "notes.mp4"),
                         "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg: not an image" in err and "notes.mp4" in err
    sidecar = _load(tmp_path / "p.images.json")
    assert [f["file"] for f in sidecar["info"]["failures"]] == [str(tmp_path / "broken.jpg"),
                                                                str(tmp_path / "notes.mp4")]
    assert [im["file_name"] for im in sidecar["images"]] == [str(d / "scene.png")]
    assert _load(out) and {r["image_id"] for r in _load(out)} == {sidecar["images"][0]["id"]}
