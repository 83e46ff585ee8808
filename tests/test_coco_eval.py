"""COCO / VOC evaluation on arrays: equal to pycocotools on random sets, pinned values, the
protocol's rules one by one, COCO JSON round trips, input errors. Sizes stay small."""

import json

import numpy as np
import pytest

from workshop.reference.metrics_coco import (
    IOU_THRESHOLDS,
    RECALL_THRESHOLDS,
    coco_evaluate,
    coco_ground_truth,
    coco_results,
    detections,
    ground_truths,
    load_coco_detections,
    load_coco_ground_truth,
    pycocotools_evaluate,
    save_coco_detections,
    save_coco_ground_truth,
    to_pycocotools,
    voc_evaluate,
)


def random_set(rng, n_img=12, n_cls=3, score_levels=10, many=False):
    """Boxes on a 1/2-pixel grid (exact xywh), scores with ties, crowds, GT "area" fields that
    differ from the box area, detections on images without objects, sizes over all ranges."""
    gi, gc, gb, cr, ar = [], [], [], [], []
    di, dc, db, ds = [], [], [], []
    for img in range(n_img):
        image_id = 3 * img + 1
        for _ in range(int(rng.integers(0, 8))):
            x, y = rng.integers(0, 200, 2)
            w, h = rng.integers(1, 150, 2)
            gi.append(image_id)
            gc.append(int(rng.integers(1, n_cls + 1)))
            gb.append([x, y, x + w, y + h])
            cr.append(rng.random() < 0.1)
            ar.append(float(w * h) if rng.random() < 0.8 else float(rng.integers(1, 150 ** 2)))
        n_det = int(rng.integers(0, 15)) + (260 if many and img == 0 else 0)
        for _ in range(n_det):
            if gb and rng.random() < 0.7:
                k = int(rng.integers(len(gb)))
                b = np.array(gb[k], float) + rng.integers(-6, 7, 4) / 2
                b[2:] = np.maximum(b[2:], b[:2] + 0.5)
                c = gc[k] if rng.random() < 0.9 else int(rng.integers(1, n_cls + 1))
                im = gi[k] if rng.random() < 0.8 else image_id
            else:
                x, y = rng.integers(0, 200, 2)
                w, h = rng.integers(1, 150, 2)
                b, c, im = [x, y, x + w, y + h], int(rng.integers(1, n_cls + 1)), image_id
            di.append(im)
            dc.append(c)
            db.append(b)
            ds.append(float(rng.integers(0, score_levels)) / score_levels)
    gt = ground_truths(gi, gc, np.array(gb, float).reshape(-1, 4), crowd=cr, area=ar)
    dt = detections(di, dc, np.array(db, float).reshape(-1, 4), ds)
    return gt, dt


def assert_same_as_pycocotools(gt, dt):
    ours = coco_evaluate(gt, dt)
    stats, ev = pycocotools_evaluate(gt, dt)
    np.testing.assert_allclose(ours.stats, stats, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.precision, ev.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.recall, ev.eval["recall"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.scores, ev.eval["scores"], rtol=0, atol=1e-12)
    return ours, stats


@pytest.mark.parametrize("seed", range(12))
def test_equals_pycocotools_on_random_sets(seed):
    rng = np.random.default_rng(seed)
    gt, dt = random_set(rng, n_img=int(rng.integers(1, 16)), score_levels=int(rng.choice([3, 10, 1000])))
    assert_same_as_pycocotools(gt, dt)


def test_equals_pycocotools_beyond_100_detections_per_image():
    gt, dt = random_set(np.random.default_rng(100), n_img=4, n_cls=2, many=True)
    counts = np.unique(np.stack([dt.image_id, dt.class_id]), axis=1, return_counts=True)[1]
    assert counts.max() > 100      # the maxDets=100 cut is exercised
    assert_same_as_pycocotools(gt, dt)


def test_equals_pycocotools_every_area_range_populated():
    gt, dt = random_set(np.random.default_rng(7), n_img=15)
    ours, stats = assert_same_as_pycocotools(gt, dt)
    assert np.all(stats[3:6] > -1) and np.all(stats[9:] > -1), stats


def test_equals_faster_coco_eval():
    from faster_coco_eval import COCO, COCOeval_faster

    gt, dt = random_set(np.random.default_rng(11), n_img=10)
    coco_gt = COCO()
    coco_gt.dataset = coco_ground_truth(gt, np.union1d(gt.image_id, dt.image_id), np.union1d(gt.class_id, dt.class_id))
    coco_gt.createIndex()
    ev = COCOeval_faster(coco_gt, coco_gt.loadRes(coco_results(dt)), "bbox", print_function=lambda *a: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    np.testing.assert_allclose(coco_evaluate(gt, dt).stats, ev.stats[:12], rtol=0, atol=1e-12)


def test_bench_dataset_small_scale_agrees():
    from workshop.bench.coco import make_dataset

    gt, dt = make_dataset(n_images=40, n_classes=5)
    assert_same_as_pycocotools(gt, dt)


def pinned():
    gt = ground_truths([1, 1], [1, 1], [[0, 0, 100, 100], [200, 200, 300, 300]])
    dt = detections([1, 1, 1], [1, 1, 1], [[0, 0, 100, 100], [500, 500, 600, 600], [200, 200, 300, 300]],
                    [0.9, 0.8, 0.7])
    return gt, dt


def test_pinned_ap50():
    gt, dt = pinned()
    result = coco_evaluate(gt, dt)
    assert result.stats[1] == pytest.approx(0.834983, abs=1e-6)
    assert result.ap50_per_class[0] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-15)
    stats, _ = pycocotools_evaluate(gt, dt)
    assert stats[1] == pytest.approx(result.stats[1], abs=1e-12)
    assert voc_evaluate(gt, dt, method="voc07").ap[0] == pytest.approx(0.848485, abs=1e-6)
    assert voc_evaluate(gt, dt, method="voc").ap[0] == pytest.approx(0.833333, abs=1e-6)


def test_thresholds_built_as_pycocotools():
    assert np.array_equal(IOU_THRESHOLDS, np.linspace(0.5, 0.95, 10))
    assert np.array_equal(RECALL_THRESHOLDS, np.linspace(0, 1, 101))
    assert not np.array_equal(RECALL_THRESHOLDS, np.arange(101) / 100)


def test_recall_landing_on_a_threshold():
    # 20 objects, 7 found first: recall 7/20 = 0.35 < linspace's 0.35000000000000003
    boxes = np.array([[30 * i, 0, 30 * i + 20, 20] for i in range(20)], float)
    gt = ground_truths(np.ones(20), np.ones(20), boxes)
    dt = detections(np.ones(9), np.ones(9), np.concatenate([boxes[:7], [[700, 0, 720, 20]], boxes[7:8]]),
                    np.linspace(0.9, 0.1, 9))
    ours, _ = assert_same_as_pycocotools(gt, dt)
    assert ours.precision[0, 35, 0, 0, 2] == pytest.approx(8 / 9)   # not 1.0


def test_class_without_ground_truth_is_minus_one_and_nan():
    gt = ground_truths([1], [1], [[0, 0, 50, 50]])
    dt = detections([1, 1], [1, 2], [[0, 0, 50, 50], [0, 0, 50, 50]], [0.9, 0.8])
    result, _ = assert_same_as_pycocotools(gt, dt)
    assert list(result.class_ids) == [1, 2]
    assert np.all(result.precision[:, :, 1] == -1) and np.all(result.recall[:, 1] == -1)
    assert np.isnan(result.ap_per_class[1]) and result.ap_per_class[0] == pytest.approx(1.0)
    assert result.stats[0] == pytest.approx(1.0)     # class 2 is not averaged in


def test_crowd_absorbs_several_detections_and_uses_detection_area():
    gt = ground_truths([1, 1], [1, 1], [[0, 0, 100, 100], [200, 0, 400, 200]], crowd=[0, 1])
    # two detections inside the crowd region: IoU to crowd = inter / det area = 1 -> ignored
    dt = detections([1, 1, 1], [1, 1, 1], [[0, 0, 100, 100], [210, 10, 250, 50], [300, 100, 350, 150]],
                    [0.7, 0.9, 0.8])
    result, _ = assert_same_as_pycocotools(gt, dt)
    assert result.stats[0] == pytest.approx(1.0)      # neither crowd detection is a false positive


def test_area_ranges_use_the_area_field():
    # the box is large but the "area" field says small: it is a small object
    gt = ground_truths([1], [1], [[0, 0, 200, 200]], area=[500.0])
    dt = detections([1], [1], [[0, 0, 200, 200]], [0.9])
    result, stats = assert_same_as_pycocotools(gt, dt)
    assert stats[3] == pytest.approx(1.0) and stats[5] == -1


def test_no_detections_and_no_ground_truth():
    gt = ground_truths([1], [1], [[0, 0, 10, 10]])
    dt = detections(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 4)), np.zeros(0))
    result, _ = assert_same_as_pycocotools(gt, dt)
    assert result.stats[0] == 0.0
    empty = ground_truths(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 4)))
    result = coco_evaluate(empty, detections([1], [1], [[0, 0, 5, 5]], [0.5]))
    assert np.all(result.stats == -1)


def test_match_at_iou_equal_threshold():
    gt = ground_truths([1], [1], [[0, 0, 100, 100]])
    dt = detections([1], [1], [[0, 0, 100, 200]], [0.9])              # IoU exactly 0.5
    result, _ = assert_same_as_pycocotools(gt, dt)
    assert result.stats[1] == pytest.approx(1.0)
    assert voc_evaluate(gt, dt).ap[0] == pytest.approx(1.0)


def test_voc_second_hit_is_false_positive_and_difficult_is_neutral():
    gt = ground_truths([1, 1], [1, 1], [[0, 0, 100, 100], [200, 200, 300, 300]], difficult=[0, 1])
    dt = detections([1, 1, 1], [1, 1, 1], [[0, 0, 100, 100], [2, 2, 100, 100], [200, 200, 300, 300]],
                    [0.9, 0.8, 0.7])
    voc = voc_evaluate(gt, dt, method="voc")
    # one non-difficult object; detections: TP, FP (second hit), ignored (difficult)
    np.testing.assert_allclose(voc.recall[0], [1.0, 1.0])
    np.testing.assert_allclose(voc.precision[0], [1.0, 0.5])
    assert voc.ap[0] == pytest.approx(1.0) and voc.mean_ap == pytest.approx(1.0)


def test_voc_takes_highest_iou_object_even_if_taken():
    # the second detection overlaps object 0 most (taken) and object 1 above 0.5: VOC says FP
    gt = ground_truths([1, 1], [1, 1], [[0, 0, 100, 100], [20, 0, 120, 100]])
    dt = detections([1, 1], [1, 1], [[0, 0, 100, 100], [8, 0, 108, 100]], [0.9, 0.8])
    voc = voc_evaluate(gt, dt)
    np.testing.assert_allclose(voc.recall[0], [0.5, 0.5])
    coco = coco_evaluate(gt, dt)            # COCO gives it the free object 1
    assert coco.recall[0, 0, 0, 2] == pytest.approx(1.0)


def test_json_round_trip(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dt = random_set(np.random.default_rng(3), n_img=8)
    images = np.union1d(gt.image_id, dt.image_id)
    gt = ground_truths(gt.image_id, gt.class_id, gt.boxes, gt.crowd, area=gt.area, images=images)
    save_coco_ground_truth(gt, tmp_path / "gt.json")
    save_coco_detections(dt, tmp_path / "dt.json")
    gt2 = load_coco_ground_truth(tmp_path / "gt.json")
    dt2 = load_coco_detections(str(tmp_path / "dt.json"))
    for name in ("image_id", "class_id", "boxes", "crowd", "area"):
        np.testing.assert_array_equal(getattr(gt2, name), getattr(gt, name))
    for name in ("image_id", "class_id", "boxes", "scores"):
        np.testing.assert_array_equal(getattr(dt2, name), getattr(dt, name))
    np.testing.assert_array_equal(gt2.images, images)
    ours = coco_evaluate(gt2, dt2)
    # pycocotools reading the very same files
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(coco_gt, coco_gt.loadRes(str(tmp_path / "dt.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    np.testing.assert_allclose(ours.stats, ev.stats, rtol=0, atol=1e-12)
    first = json.loads((tmp_path / "dt.json").read_text())[0]
    assert set(first) == {"image_id", "category_id", "bbox", "score"}


def test_to_pycocotools_uses_area_field():
    gt = ground_truths([1], [1], [[0, 0, 10, 10]], area=[77.0])
    coco_gt, _ = to_pycocotools(gt, detections([1], [1], [[0, 0, 10, 10]], [0.5]))
    assert coco_gt.dataset["annotations"][0]["area"] == 77.0
    assert coco_gt.dataset["annotations"][0]["bbox"] == [0.0, 0.0, 10.0, 10.0]


def test_bad_input_names_the_row():
    with pytest.raises(ValueError, match="row 1"):
        ground_truths([1, 1], [1, 1], [[0, 0, 1, 1], [5, 5, 1, 1]])
    with pytest.raises(ValueError, match="entry 1"):
        detections([1, 2.5], [1, 1], [[0, 0, 1, 1], [0, 0, 1, 1]], [0.1, 0.2])
    with pytest.raises(ValueError, match="row 0"):
        coco_evaluate(ground_truths([1], [1], [[0, 0, 1, 1]], images=[1]),
                      detections([9], [1], [[0, 0, 1, 1]], [0.5]))
    with pytest.raises(ValueError, match=r"annotations\[1\]"):
        load_coco_ground_truth({"images": [], "categories": [],
                                "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
                                                {"image_id": 1, "category_id": 1}]})
    with pytest.raises(ValueError, match="method"):
        voc_evaluate(*pinned(), method="11point")
