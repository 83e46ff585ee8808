"""Reference tiers of chapter 09 beyond the registry's generic tests: pinned values, agreement
with pycocotools' accumulate rule, edge rules and input validation."""

import numpy as np
import pytest

from workshop.reference import metrics as M

PIN_R = [0.5, 0.5, 1.0]
PIN_P = [1.0, 0.5, 2 / 3]
TIERS = ("loops", "numpy", "tf")


def ap(tier, *args, **kwargs):
    return float(getattr(M, f"average_precision_{tier}")(*args, **kwargs))


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("method, value", [("coco", 0.834983), ("voc07", 0.848485), ("voc", 0.833333)])
def test_pinned_average_precision(tier, method, value):
    r, p = np.array(PIN_R), np.array(PIN_P)
    assert ap(tier, r, p, method) == pytest.approx(value, abs=1e-6)


def test_coco_ap_equals_pycocotools_accumulate_rule():
    """101-point AP as pycocotools' accumulate() writes it (envelope loop, searchsorted, try/except)."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        tp = rng.random(n) < 0.5
        npig = int(tp.sum() + rng.integers(0, 4)) or 1
        tps, fps = np.cumsum(tp).astype(float), np.cumsum(~tp).astype(float)
        rc, pr = tps / npig, (tps / (fps + tps + np.spacing(1))).tolist()
        for i in range(n - 1, 0, -1):
            if pr[i] > pr[i - 1]:
                pr[i - 1] = pr[i]
        q = [0.0] * 101
        try:
            for ri, pi in enumerate(np.searchsorted(rc, np.linspace(0, 1, 101), side="left")):
                q[ri] = pr[pi]
        except IndexError:
            pass
        assert M.average_precision_numpy(rc, tps / (fps + tps + np.spacing(1)), "coco") == pytest.approx(
            np.mean(q), abs=1e-15)


def test_recall_on_a_linspace_threshold():
    # 7/20 == 0.35 < np.linspace(0, 1, 101)[35]: that threshold reads the next point
    r, p = [7 / 20, 8 / 20], [1.0, 0.8]
    expected = (35 * 1.0 + 6 * 0.8) / 101
    for tier in TIERS:
        assert ap(tier, np.array(r), np.array(p), "coco") == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("tier", ("loops", "numpy"))
def test_ap_validation(tier):
    fn = getattr(M, f"average_precision_{tier}")
    with pytest.raises(ValueError, match="entry 2"):
        fn([0.1, 0.5, 0.4], [1, 1, 1])
    with pytest.raises(ValueError, match="entry 1"):
        fn([0.1, 1.5], [1, 1])
    with pytest.raises(ValueError, match="method"):
        fn([0.1], [1.0], method="11point")
    with pytest.raises(ValueError, match="shape"):
        fn([0.1, 0.2], [1.0])


def test_pairwise_iou_touching_and_crowd_free():
    a = np.array([[0, 0, 10, 10.0]])
    b = np.array([[10, 0, 20, 10.0], [5, 0, 15, 10], [0, 0, 0, 0]])
    np.testing.assert_allclose(M.pairwise_iou(a, b), [[0.0, 50 / 150, 0.0]])


@pytest.mark.parametrize("tier", TIERS)
def test_match_iou_ties_go_to_the_later_object(tier):
    # the detection overlaps both objects at IoU 1/3 ... equal: pycocotools keeps the later one,
    # leaving object 0 for the second detection
    gts = np.array([[0, 0, 10, 10], [10, 0, 20, 10]], float)
    dets = np.array([[5, 0, 15, 10], [0, 0, 9, 10]], float)
    out = getattr(M, f"match_detections_{tier}")(gts, dets, np.array([0.9, 0.8]), 0.3)
    np.testing.assert_array_equal(np.asarray(out), [True, True])


def test_match_validation():
    with pytest.raises(ValueError, match="row 0"):
        M.match_detections_numpy([[0, 0, 1, 1]], [[5, 5, 1, 1]], [0.5])
    with pytest.raises(ValueError, match="det_scores"):
        M.match_detections_numpy([[0, 0, 1, 1]], [[0, 0, 1, 1]], [0.5, 0.4])
    with pytest.raises(ValueError, match="iou_threshold"):
        M.match_detections_loops([[0, 0, 1, 1]], [[0, 0, 1, 1]], [0.5], 1.5)


def test_detection_ap_per_class_and_pycocotools_ap50():
    from workshop.reference.metrics_coco import coco_evaluate, detections, ground_truths

    rng = np.random.default_rng(1)
    gi, gc = rng.integers(0, 5, 30), rng.integers(0, 3, 30)
    xy = rng.integers(0, 300, (30, 2)).astype(float)
    gb = np.concatenate([xy, xy + rng.integers(10, 80, (30, 2))], axis=1)
    pick = rng.integers(0, 30, 60)
    db = gb[pick] + rng.integers(-8, 9, (60, 4))
    db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
    ds = rng.permutation(60) / 60 + 0.001           # no ties: the two sort rules agree
    di, dc = gi[pick], np.where(rng.random(60) < 0.9, gc[pick], rng.integers(0, 3, 60))
    ap_l, m_l = M.detection_ap_loops(gi, gc, gb, di, dc, db, ds, 3)
    ap_n, m_n = M.detection_ap_numpy(gi, gc, gb, di, dc, db, ds, 3)
    np.testing.assert_allclose(ap_l, ap_n, atol=1e-12)
    coco = coco_evaluate(ground_truths(gi, gc, gb), detections(di, dc, db, ds))
    np.testing.assert_allclose(ap_n, coco.ap50_per_class, atol=1e-12)
    assert m_n == pytest.approx(coco.stats[1], abs=1e-12)


@pytest.mark.parametrize("tier", TIERS)
def test_instance_map_pinned(tier):
    truth = np.zeros((6, 8), np.int64)
    pred = np.zeros((6, 8), np.int64)
    truth[0:2, 0:2], pred[0:2, 0:2] = 1, 5
    truth[3, 3:6], pred[3, 3:5] = 2, 9
    pred[5, 6:8] = 3
    assert float(getattr(M, f"instance_map_{tier}")(truth, pred)) == pytest.approx(0.416667, abs=1e-6)


def test_instance_map_dataset_and_validation():
    a = np.zeros((3, 3), int)
    b = a.copy()
    b[0, 0] = 1
    assert M.instance_map_dataset([b, b, a], [b, a, a]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="shape"):
        M.instance_map_numpy(np.zeros((2, 2), int), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="row 0, column 1"):
        M.instance_map_numpy(np.array([[0, -1]]), np.zeros((1, 2), int))
    with pytest.raises(ValueError, match="integer"):
        M.instance_map_loops(np.array([[0.5, 1.0]]), np.zeros((1, 2)))
