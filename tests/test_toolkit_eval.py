"""``python -m workshop eval``: on the detector's own predictions for a small synthetic set, the
12 COCO numbers and the per-class APs equal pycocotools' on the same two files; the VOC form
matches images by file name and classes by name; bad files get a clear message."""

import json

import numpy as np
import pytest
from toolkit_support import write_dataset

from workshop.toolkit import evaluate, predict

# the module shares one prediction run: its tests on one xdist worker
pytestmark = pytest.mark.xdist_group("toolkit_eval")

@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """A COCO data set (image ids from 100, category ids 10, 20, ...) and the detector's results
    for it, with the data set's ids (``--annotations``)."""
    d = tmp_path_factory.mktemp("set")
    annotations = write_dataset(d / "images", n=8)
    results = d / "predictions.json"
    assert predict.main([str(d / "images"), "--annotations", str(annotations), "--output", str(results)]) == 0
    return annotations, results


def _pycocotools(annotations, results):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
        ev = COCOeval(gt, gt.loadRes(str(results)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_eval_equals_pycocotools_on_the_same_files(predicted, tmp_path, capsys):
    annotations, results = predicted
    ids = {r["image_id"] for r in json.loads(results.read_text())}
    assert ids <= set(range(100, 108)) and len(ids) > 4                 # the data set's ids
    out = tmp_path / "metrics.json"
    assert evaluate.main(["--annotations", str(annotations), "--predictions", str(results), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    ours = json.loads(out.read_text())
    ev = _pycocotools(annotations, results)

    assert list(ours["stats"].values()) == [float(s) for s in ev.stats]        # to the last bit
    assert ours["stats"]["AP @[IoU=0.50 | area=all | maxDets=100]"] > 0.5        # it does detect
    precision = ev.eval["precision"][:, :, :, 0, -1]                           # area all, 100 dets
    for k, row in enumerate(ours["per_class"]):
        assert row["id"] == ev.params.catIds[k] and row["name"] == ["circle", "square", "triangle", "cross", "ring"][k]
        p = precision[:, :, k]
        assert row["ap"] == float(np.mean(p[p > -1]))
        assert row["ap50"] == float(np.mean(p[0][p[0] > -1]))
    lines = printed.splitlines()
    assert sum(line.startswith((" AP @", " AR @")) for line in lines) == 12
    assert any(line.split()[0] == "triangle" for line in lines if line.strip())


def test_eval_voc_folder(predicted, tmp_path, capsys):
    from workshop.data.formats import write_voc
    from workshop.evaluation import load_coco_detections, load_coco_ground_truth, voc_evaluate

    annotations, results = predicted
    data = json.loads(annotations.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    voc = tmp_path / "VOC" / "Annotations"
    voc.mkdir(parents=True)
    for im in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"]]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], float)
        write_voc({"file_name": im["file_name"], "width": im["width"], "height": im["height"], "boxes": boxes,
                   "names": [names[a["category_id"]] for a in anns]}, voc / f"{im['id']}.xml")
    out = tmp_path / "voc.json"
    assert evaluate.main(["--voc", str(tmp_path / "VOC"), "--predictions", str(results), "--json", str(out)]) == 0
    assert "mAP" in capsys.readouterr().out
    ours = json.loads(out.read_text())
    # the same evaluation on the COCO files' own ids: the remapping by file and class name is exact
    expected = voc_evaluate(load_coco_ground_truth(str(annotations)), load_coco_detections(str(results)))
    assert ours["map"] == pytest.approx(expected.mean_ap, abs=1e-12)
    assert [c["name"] for c in ours["per_class"]] == sorted(names.values())      # VOC: by name
    by_name = {names[int(k)]: ap for k, ap in zip(expected.class_ids, expected.ap)}
    assert {c["name"]: c["ap"] for c in ours["per_class"]} == pytest.approx(by_name, abs=1e-12)
    assert ours["unmatched"] == 0


def test_eval_bad_files_say_what_is_wrong(predicted, tmp_path, capsys):
    annotations, results = predicted
    assert evaluate.main(["--annotations", str(tmp_path / "none.json"), "--predictions", str(results)]) == 2
    assert "none.json" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert evaluate.main(["--annotations", str(annotations), "--predictions", str(tmp_path / "bad.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps([{"image_id": 999, "category_id": 10, "bbox": [0, 0, 5, 5], "score": 0.5}]))
    assert evaluate.main(["--annotations", str(annotations), "--predictions", str(stray)]) == 2
    assert "999" in capsys.readouterr().err
    with pytest.raises(SystemExit):                  # argparse: one ground truth is required
        evaluate.main(["--predictions", str(results)])
