"""Chapter 09: mean average precision.

Exercises: ``average_precision`` (three interpolations), ``match_detections`` (greedy matching of
one image at one IoU threshold), ``detection_map`` (per-class AP and mAP over images) and
``instance_map`` (the Data Science Bowl 2018 "mAP of IoU" of label images).

The wrong implementations below are self-contained numpy (the grader hides
``workshop.reference``); each reproduces one mistake through a switch.
"""

from __future__ import annotations

import numpy as np

from . import register
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.metrics"
CHAPTER = "09_map"


# ================================================================================================
# average_precision
# ================================================================================================
def _ap(recall, precision, method="coco", *, interpolate=True, strict=False, eleven=False,
        arange_thresholds=False):
    r = np.asarray(recall, np.float64)
    p = np.asarray(precision, np.float64)
    env = np.maximum.accumulate(p[::-1])[::-1] if interpolate else p
    if method == "voc":
        mrec = np.concatenate([[0.0], r, [1.0]])
        mpre = np.concatenate([[0.0], env, [0.0]])
        if interpolate:
            mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    if method == "voc07" or eleven:
        thresholds = np.arange(0.0, 1.1, 0.1)
    elif arange_thresholds:
        thresholds = np.arange(101) / 100
    else:
        thresholds = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(r, thresholds, side="right" if strict else "left")
    return float(np.mean(np.append(env, 0.0)[idx]))


def _ap_no_interpolation(recall, precision, method="coco"):
    return _ap(recall, precision, method, interpolate=False)


def _ap_strict(recall, precision, method="coco"):
    return _ap(recall, precision, method, strict=True)


def _ap_eleven(recall, precision, method="coco"):
    return _ap(recall, precision, method, eleven=True)


def _ap_arange(recall, precision, method="coco"):
    return _ap(recall, precision, method, arange_thresholds=True)


_PIN_R = np.array([0.5, 0.5, 1.0])           # two ground truths: TP(.9), FP(.8), TP(.7)
_PIN_P = np.array([1.0, 0.5, 2.0 / 3.0])


def _ap_edge_cases() -> list[Case]:
    dip_r, dip_p = np.array([0.25, 0.25, 0.5, 0.75]), np.array([1.0, 0.5, 2 / 3, 0.75])
    # 20 ground truths; recall 7/20 = 0.35 is a float that np.arange(101)/100 holds but
    # np.linspace(0, 1, 101) does not (its 36th value is 0.35000000000000003)
    on_r, on_p = np.array([7 / 20, 7 / 20, 8 / 20]), np.array([1.0, 7 / 8, 0.8])
    return [
        Case("pinned: TP(.9), FP(.8), TP(.7), two ground truths, coco", (_PIN_R, _PIN_P), {"method": "coco"},
             expected=(51 + 50 * 2 / 3) / 101, about="0.834983: 51 thresholds at precision 1, 50 at 2/3"),
        Case("pinned: TP(.9), FP(.8), TP(.7), two ground truths, voc07", (_PIN_R, _PIN_P), {"method": "voc07"},
             expected=(6 + 5 * 2 / 3) / 11, about="0.848485: 6 of the 11 points at precision 1"),
        Case("pinned: TP(.9), FP(.8), TP(.7), two ground truths, voc", (_PIN_R, _PIN_P), {"method": "voc"},
             expected=0.5 + 0.5 * 2 / 3, about="0.833333: area under the envelope"),
        Case("a dip then a recovery (interpolation matters), coco", (dip_r, dip_p), {"method": "coco"}),
        Case("a dip then a recovery (interpolation matters), voc", (dip_r, dip_p), {"method": "voc"}),
        Case("a dip then a recovery (interpolation matters), voc07", (dip_r, dip_p), {"method": "voc07"}),
        Case("recall lands on 0.35 (20 ground truths), coco", (on_r, on_p), {"method": "coco"},
             about="np.linspace(0, 1, 101)[35] is 0.35000000000000003 > 7/20"),
        Case("one perfect detection, coco", (np.array([1.0]), np.array([1.0])), {"method": "coco"}, expected=1.0),
        Case("no detections, coco", (np.zeros(0), np.zeros(0)), {"method": "coco"}, expected=0.0),
        Case("no detections, voc", (np.zeros(0), np.zeros(0)), {"method": "voc"}, expected=0.0, public=False),
        Case("only false positives, voc07", (np.zeros(3), np.zeros(3)), {"method": "voc07"}, expected=0.0,
             public=False),
        Case("half the objects found, all at precision 1, coco", (np.array([0.25, 0.5]), np.ones(2)),
             {"method": "coco"}, expected=51 / 101, public=False),
    ]


def _curve(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(1, 30))
    tp = rng.random(n) < rng.uniform(0.2, 0.9)
    num_gt = int(tp.sum() + rng.integers(0, 5)) or 1
    cum = np.cumsum(tp).astype(np.float64)
    return cum / num_gt, cum / np.arange(1, n + 1)


def _ap_random_case(rng: np.random.Generator) -> Case:
    recall, precision = _curve(rng)
    return Case("", (recall, precision), {"method": str(rng.choice(["voc07", "voc", "coco"]))})


def _ap_benchmarks() -> list[Case]:
    rng = np.random.default_rng(0)
    n = 5000
    tp = rng.random(n) < 0.4
    cum = np.cumsum(tp).astype(np.float64)
    r, p = cum / (tp.sum() + 100), cum / np.arange(1, n + 1)
    return [Case(f"{n} detections, {m}", (r, p), {"method": m}) for m in ("voc07", "voc", "coco")]


AVERAGE_PRECISION = register(Exercise(
    name="average_precision",
    chapter=CHAPTER,
    signature="average_precision(recall, precision, method='coco') -> float",
    summary="Area under a precision-recall curve: VOC2007 11-point, VOC all-point, COCO 101-point.",
    tiers={"loops": f"{REF}:average_precision_loops", "numpy": f"{REF}:average_precision_numpy",
           "tf": f"{REF}:average_precision_tf"},
    edge_cases=_ap_edge_cases,
    random_case=_ap_random_case,
    outputs=(Output("ap", "float", rtol=1e-6, atol=1e-6, strict_atol=1e-9),),
    mistakes=(
        Mistake("no interpolation",
                "You read the precision at the recall threshold as it is; AP interpolates it: use the "
                "monotone envelope, the best precision at this recall or any higher one "
                "(p_interp[i] = max(p[i:])), before sampling or integrating.", wrong=_ap_no_interpolation),
        Mistake("recall > t instead of >= t",
                "A recall exactly equal to a threshold must count: take the precision at the first recall "
                ">= t (np.searchsorted(recall, t, side='left')), not the first recall > t.", wrong=_ap_strict),
        Mistake("11 points instead of 101",
                "method='coco' samples the envelope at 101 recall thresholds np.linspace(0, 1, 101) (0, 0.01, "
                "..., 1); 11 points (0, 0.1, ..., 1) are VOC2007's.", wrong=_ap_eleven),
        Mistake("thresholds built with arange",
                "Build the 101 recall thresholds exactly as pycocotools: np.linspace(0, 1, 101). "
                "np.arange(101) / 100 differs in ten values (e.g. 0.35 vs 0.35000000000000003), which "
                "changes the result when a recall lands on one of them.", wrong=_ap_arange),
    ),
    tf_static=("method",),
    benchmarks=_ap_benchmarks,
))


# ================================================================================================
# match_detections
# ================================================================================================
def _iou_matrix(a, b):
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(inter > 0, inter / np.where(inter > 0, union, 1.0), 0.0)


def _match(gt_boxes, det_boxes, det_scores, iou_threshold=0.5, *, strict=False, reuse=False,
           order="stable", first=False):
    scores = np.asarray(det_scores, np.float64)
    ious = _iou_matrix(det_boxes, gt_boxes)
    n_det, n_gt = ious.shape
    if order == "stable":
        visit = np.argsort(-scores, kind="stable")
    elif order == "reversed ties":
        visit = np.argsort(scores, kind="stable")[::-1]
    else:
        visit = np.arange(n_det)
    free = np.ones(n_gt, bool)
    tp = np.zeros(n_det, bool)
    t = min(float(iou_threshold), 1 - 1e-10)
    for d in visit:
        ok = (ious[d] > t) if strict else (ious[d] >= t)
        if not reuse:
            ok &= free
        if not ok.any():
            continue
        if first:
            g = int(np.flatnonzero(ok)[0])
        else:
            cand = np.where(ok, ious[d], -1.0)
            g = n_gt - 1 - int(np.argmax(cand[::-1]))
        free[g] = False
        tp[d] = True
    return tp


def _match_strict(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    return _match(gt_boxes, det_boxes, det_scores, iou_threshold, strict=True)


def _match_duplicates(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    return _match(gt_boxes, det_boxes, det_scores, iou_threshold, reuse=True)


def _match_unstable(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    return _match(gt_boxes, det_boxes, det_scores, iou_threshold, order="reversed ties")


def _match_unsorted(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    return _match(gt_boxes, det_boxes, det_scores, iou_threshold, order="input")


def _match_first(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    return _match(gt_boxes, det_boxes, det_scores, iou_threshold, first=True)


def _boxes(*rows) -> np.ndarray:
    return np.array(rows, np.float64).reshape(-1, 4)


def _match_edge_cases() -> list[Case]:
    gt1 = _boxes([0, 0, 10, 10])
    return [
        Case("IoU exactly 0.5 is a match", (gt1, _boxes([0, 0, 10, 20]), np.array([0.9])),
             {"iou_threshold": 0.5}, expected=np.array([True]), about="100 / 200 = 0.5 >= 0.5"),
        Case("two detections on one object: the second is a false positive",
             (gt1, _boxes([0, 0, 10, 10], [1, 0, 10, 10]), np.array([0.9, 0.8])), {"iou_threshold": 0.5},
             expected=np.array([True, False])),
        Case("tied scores: the first listed wins (stable sort)",
             (gt1, _boxes([0, 0, 10, 10], [0, 0, 10, 10]), np.array([0.7, 0.7])), {"iou_threshold": 0.5},
             expected=np.array([True, False])),
        Case("the higher score is listed last",
             (gt1, _boxes([0, 0, 10, 10], [1, 1, 10, 10]), np.array([0.6, 0.9])), {"iou_threshold": 0.5},
             expected=np.array([False, True])),
        Case("each detection takes its best free object, not the first above the threshold",
             (_boxes([0, 0, 10, 10], [4, 0, 14, 10]), _boxes([3, 0, 13, 10], [0, 0, 10, 10]),
              np.array([0.9, 0.8])), {"iou_threshold": 0.5}, expected=np.array([True, True]),
             about="the first detection overlaps object 0 at 7/13 and object 1 at 9/11"),
        Case("no ground truth: every detection is a false positive",
             (np.zeros((0, 4)), _boxes([0, 0, 5, 5], [1, 1, 4, 4]), np.array([0.5, 0.4])),
             {"iou_threshold": 0.5}, expected=np.array([False, False])),
        Case("no detections", (gt1, np.zeros((0, 4)), np.zeros(0)), {"iou_threshold": 0.5},
             expected=np.zeros(0, bool)),
        Case("a stricter threshold (0.75)",
             (_boxes([0, 0, 10, 10], [20, 20, 30, 30]), _boxes([0, 0, 10, 12], [20, 20, 30, 40]),
              np.array([0.5, 0.6])), {"iou_threshold": 0.75}, expected=np.array([True, False]),
             public=False),
    ]


def _scene(rng: np.random.Generator, n_gt: int, n_det: int, size: float = 100.0):
    """Random objects and detections around them (jittered copies) plus a few strays."""
    xy = rng.uniform(0, size * 0.8, (n_gt, 2))
    wh = rng.uniform(size * 0.05, size * 0.3, (n_gt, 2))
    gts = np.concatenate([xy, xy + wh], axis=1)
    dets = []
    for _ in range(n_det):
        if n_gt and rng.random() < 0.75:
            g = gts[rng.integers(n_gt)]
            scale = (g[2:] - g[:2]).repeat(2) * rng.normal(0, 0.12, 4)
            b = g + scale
            b[2:] = np.maximum(b[2:], b[:2] + 1.0)
        else:
            p = rng.uniform(0, size * 0.8, 2)
            b = np.concatenate([p, p + rng.uniform(size * 0.05, size * 0.3, 2)])
        dets.append(b)
    return gts, np.array(dets, np.float64).reshape(-1, 4)


def _match_random_case(rng: np.random.Generator) -> Case:
    gts, dets = _scene(rng, int(rng.integers(0, 7)), int(rng.integers(0, 12)))
    scores = rng.permutation(len(dets)) / max(len(dets), 1) + 0.01   # distinct scores
    return Case("", (gts, dets, scores), {"iou_threshold": float(rng.choice([0.3, 0.5, 0.75]))})


def _match_benchmarks() -> list[Case]:
    rng = np.random.default_rng(0)
    gts, dets = _scene(rng, 100, 300, size=1000.0)
    return [Case("100 objects, 300 detections", (gts, dets, rng.random(len(dets))), {"iou_threshold": 0.5})]


MATCH_DETECTIONS = register(Exercise(
    name="match_detections",
    chapter=CHAPTER,
    signature="match_detections(gt_boxes, det_boxes, det_scores, iou_threshold=0.5) -> tp (D,) bool",
    summary="Greedy matching of one image's detections to its objects at one IoU threshold (COCO rule).",
    tiers={"loops": f"{REF}:match_detections_loops", "numpy": f"{REF}:match_detections_numpy",
           "tf": f"{REF}:match_detections_tf"},
    edge_cases=_match_edge_cases,
    random_case=_match_random_case,
    outputs=(Output("tp", "bool"),),
    mistakes=(
        Mistake("IoU > threshold instead of >=",
                "A detection whose IoU equals the threshold is a match (pycocotools: IoU >= t); you "
                "required IoU > t.", wrong=_match_strict),
        Mistake("duplicates counted as true positives",
                "A ground truth can be matched once: mark it as taken, so a second detection of the same "
                "object is a false positive (or takes another free object).", wrong=_match_duplicates),
        Mistake("unstable sort",
                "With tied scores the detection listed first must be visited first: sort with a stable "
                "sort in descending order, np.argsort(-scores, kind='stable'). np.argsort(scores)[::-1] "
                "reverses the order of ties.", wrong=_match_unstable),
        Mistake("not sorted by score",
                "Visit detections from the highest score down: the greedy match gives each object to its "
                "most confident detection, whatever the input order.", wrong=_match_unsorted),
        Mistake("first object above the threshold",
                "Each detection takes the free object with the highest IoU (>= threshold), not the first "
                "one above the threshold.", wrong=_match_first),
    ),
    tf_static=("iou_threshold",),
    benchmarks=_match_benchmarks,
))


# ================================================================================================
# detection_map
# ================================================================================================
def _detection_map(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                   num_classes, iou_threshold=0.5, *, zero_for_missing=False, ignore_images=False):
    gi, gc = np.asarray(gt_image, np.int64), np.asarray(gt_class, np.int64)
    di, dc = np.asarray(det_image, np.int64), np.asarray(det_class, np.int64)
    gb, db = np.asarray(gt_boxes, np.float64).reshape(-1, 4), np.asarray(det_boxes, np.float64).reshape(-1, 4)
    ds = np.asarray(det_scores, np.float64)
    if ignore_images:
        gi, di = np.zeros_like(gi), np.zeros_like(di)
    tp = np.zeros(len(db), bool)
    for c in range(num_classes):
        for img in np.unique(di[dc == c]):
            d_idx = np.flatnonzero((dc == c) & (di == img))
            g_idx = np.flatnonzero((gc == c) & (gi == img))
            tp[d_idx] = _match(gb[g_idx], db[d_idx], ds[d_idx], iou_threshold)
    ap = np.full(num_classes, np.nan)
    for c in range(num_classes):
        n_gt = int(np.sum(gc == c))
        if n_gt == 0:
            continue
        sel = np.flatnonzero(dc == c)
        order = sel[np.argsort(-ds[sel], kind="stable")]
        cum = np.cumsum(tp[order]).astype(np.float64)
        ap[c] = _ap(cum / n_gt, cum / np.arange(1, len(order) + 1), "coco")
    if zero_for_missing:
        return float(np.mean(np.nan_to_num(ap, nan=0.0)))
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def _map_zero_missing(*args, **kwargs):
    return _detection_map(*args, **kwargs, zero_for_missing=True)


def _map_ignore_images(*args, **kwargs):
    return _detection_map(*args, **kwargs, ignore_images=True)


def _ints(*v) -> np.ndarray:
    return np.array(v, np.int64)


def _map_edge_cases() -> list[Case]:
    two = _boxes([0, 0, 10, 10], [20, 20, 30, 30])
    pinned_dets = _boxes([0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30])
    pinned = (_ints(0, 0), _ints(0, 0), two, _ints(0, 0, 0), _ints(0, 0, 0), pinned_dets,
              np.array([0.9, 0.8, 0.7]))
    ap_pin = (51 + 50 * 2 / 3) / 101
    return [
        Case("pinned: two objects, detections TP(.9), FP(.8), TP(.7)", pinned, {"num_classes": 1},
             expected=ap_pin, about="0.834983"),
        Case("a class without ground truth is left out of the mean",
             (_ints(0, 0), _ints(0, 2), two, _ints(0, 0, 0), _ints(0, 1, 2),
              _boxes([0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]), np.array([0.9, 0.8, 0.7])),
             {"num_classes": 3}, expected=1.0,
             about="class 1 has a detection but no object: its AP is undefined (NaN), not 0"),
        Case("the same box in another image is a false positive",
             (_ints(0, 1), _ints(0, 0), two, _ints(1, 1), _ints(0, 0),
              _boxes([0, 0, 10, 10], [20, 20, 30, 30]), np.array([0.9, 0.8])),
             {"num_classes": 1}, about="detections only match objects of their own image"),
        Case("a detection of the wrong class does not match",
             (_ints(0), _ints(1), _boxes([0, 0, 10, 10]), _ints(0, 0), _ints(0, 1),
              _boxes([0, 0, 10, 10], [1, 1, 10, 10]), np.array([0.9, 0.5])),
             {"num_classes": 2}, expected=1.0),
        Case("no detections at all", (_ints(0), _ints(0), _boxes([0, 0, 10, 10]), np.zeros(0, np.int64),
                                      np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0)),
             {"num_classes": 1}, expected=0.0, public=False),
    ]


def _map_random_case(rng: np.random.Generator) -> Case:
    num_classes = int(rng.integers(1, 4))
    gi, gc, gb, di, dc, db = [], [], [], [], [], []
    for img in range(int(rng.integers(1, 4))):
        for c in range(num_classes):
            if rng.random() < 0.3:
                continue
            gts, dets = _scene(rng, int(rng.integers(0, 4)), int(rng.integers(0, 6)))
            gi += [img] * len(gts); gc += [c] * len(gts); gb.append(gts)        # noqa: E702
            di += [img] * len(dets); dc += [c] * len(dets); db.append(dets)     # noqa: E702
    gb_arr = np.concatenate(gb + [np.zeros((0, 4))])
    db_arr = np.concatenate(db + [np.zeros((0, 4))])
    scores = (rng.permutation(len(db_arr)) + 1) / (len(db_arr) + 1)
    return Case("", (np.array(gi, np.int64), np.array(gc, np.int64), gb_arr, np.array(di, np.int64),
                     np.array(dc, np.int64), db_arr, scores),
                {"num_classes": num_classes, "iou_threshold": float(rng.choice([0.5, 0.75]))})


DETECTION_MAP = register(Exercise(
    name="detection_map",
    chapter=CHAPTER,
    signature=("detection_map(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores, "
               "num_classes, iou_threshold=0.5) -> mean_ap"),
    summary="mAP at one IoU threshold: per-class AP (COCO matching, 101 points) over images, averaged.",
    tiers={"loops": f"{REF}:detection_map_loops", "numpy": f"{REF}:detection_map_numpy"},
    edge_cases=_map_edge_cases,
    random_case=_map_random_case,
    outputs=(Output("mean_ap", "float", rtol=1e-6, atol=1e-6, strict_atol=1e-9),),
    mistakes=(
        Mistake("averaging over classes without ground truth",
                "A class with no ground truth has no AP (its recall is 0/0): give it NaN and leave it out "
                "of the mean (np.nanmean), instead of counting it as 0.", wrong=_map_zero_missing),
        Mistake("matching across images",
                "Match each detection only to the ground truths of its own image (and class): group by "
                "(image, class) before matching.", wrong=_map_ignore_images),
    ),
    n_hidden_random=10,
))


# ================================================================================================
# instance_map
# ================================================================================================
def _instance_map(truth, prediction, *, at_least=False, background=False, ignore_fn=False):
    t, p = np.asarray(truth).astype(np.int64), np.asarray(prediction).astype(np.int64)
    t_ids = [v for v in np.unique(t) if background or v != 0]
    p_ids = [v for v in np.unique(p) if background or v != 0]
    if not t_ids and not p_ids:
        return 0.0
    ious = np.zeros((len(t_ids), len(p_ids)))
    for i, a in enumerate(t_ids):
        for j, b in enumerate(p_ids):
            inter = np.sum((t == a) & (p == b))
            ious[i, j] = inter / (np.sum(t == a) + np.sum(p == b) - inter)
    scores = []
    for thr in np.arange(0.5, 1.0, 0.05):
        tp = int(np.sum(ious >= thr) if at_least else np.sum(ious > thr))
        fp, fn = len(p_ids) - tp, len(t_ids) - tp
        denom = tp + fp + (0 if ignore_fn else fn)
        scores.append(tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _instance_at_least(truth, prediction):
    return _instance_map(truth, prediction, at_least=True)


def _instance_background(truth, prediction):
    return _instance_map(truth, prediction, background=True)


def _instance_no_fn(truth, prediction):
    return _instance_map(truth, prediction, ignore_fn=True)


def _pinned_instances() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((6, 8), np.int64)
    pred = np.zeros((6, 8), np.int64)
    truth[0:2, 0:2] = 1
    pred[0:2, 0:2] = 5           # IoU 1
    truth[3, 3:6] = 2
    pred[3, 3:5] = 9             # IoU 2/3
    pred[5, 6:8] = 3             # spurious
    return truth, pred


def _instance_edge_cases() -> list[Case]:
    truth, pred = _pinned_instances()
    half_t = np.zeros((4, 4), np.int64)
    half_p = np.zeros((4, 4), np.int64)
    half_t[0, 0:2] = 1
    half_p[0:2, 0:2] = 1         # IoU exactly 0.5
    perm_t = np.zeros((5, 5), np.int64)
    perm_t[0:2, 0:2], perm_t[3:5, 0:3], perm_t[2, 3:5] = 1, 2, 3
    perm_p = np.select([perm_t == 1, perm_t == 2, perm_t == 3], [7, 3, 1], 0)
    empty = np.zeros((3, 3), np.int64)
    return [
        Case("pinned: IoUs 1 and 2/3 plus one spurious prediction", (truth, pred), expected=5 / 12,
             about="4 thresholds at 2/(2+1+0), 6 at 1/(1+2+1): 0.416667"),
        Case("IoU exactly 0.5 is no hit (IoU > t)", (half_t, half_p), expected=0.0),
        Case("a perfect prediction with other label numbers", (perm_t, perm_p), expected=1.0),
        Case("nothing to find, nothing predicted", (empty, empty), expected=0.0,
             about="0/0 scores 0 in this course (see the reference docstring)"),
        Case("nothing predicted", (perm_t, np.zeros_like(perm_t)), expected=0.0, public=False),
        Case("only spurious predictions", (empty, np.eye(3, dtype=np.int64)), expected=0.0, public=False),
    ]


def _instance_random_case(rng: np.random.Generator) -> Case:
    h, w = (int(v) for v in rng.integers(6, 16, 2))
    truth = np.zeros((h, w), np.int64)
    pred = np.zeros((h, w), np.int64)
    labels = rng.permutation(20) + 1
    for k in range(int(rng.integers(0, 5))):
        y, x = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        hh, ww = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        truth[y:y + hh, x:x + ww] = k + 1
        if rng.random() < 0.8:
            dy, dx = (int(v) for v in rng.integers(-1, 2, 2))
            y2, x2 = max(y + dy, 0), max(x + dx, 0)
            pred[y2:y2 + hh + int(rng.integers(-1, 2)), x2:x2 + ww] = labels[k]
    if rng.random() < 0.5:
        y, x = int(rng.integers(0, h - 1)), int(rng.integers(0, w - 1))
        pred[y:y + 2, x:x + 2] = labels[10]
    return Case("", (truth, pred))


def _instance_benchmarks() -> list[Case]:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 60, (256, 256)) // 2
    pred = np.roll(truth, 1, axis=1)
    return [Case("256x256, ~30 instances of scattered pixels", (truth, pred))]


INSTANCE_MAP = register(Exercise(
    name="instance_map",
    chapter=CHAPTER,
    signature="instance_map(truth, prediction) -> float",
    summary="Data Science Bowl 2018 mAP of IoU between two instance label images (0 = background).",
    tiers={"loops": f"{REF}:instance_map_loops", "numpy": f"{REF}:instance_map_numpy",
           "tf": f"{REF}:instance_map_tf"},
    edge_cases=_instance_edge_cases,
    random_case=_instance_random_case,
    outputs=(Output("score", "float", rtol=1e-6, atol=1e-6, strict_atol=1e-9),),
    mistakes=(
        Mistake("IoU >= t instead of > t",
                "In this metric a hit needs IoU strictly greater than the threshold: a pair with IoU "
                "exactly 0.5 is no hit at t = 0.5.", wrong=_instance_at_least),
        Mistake("background counted as an instance",
                "Label 0 is the background, not an object: leave it out of both label images' instances.",
                wrong=_instance_background),
        Mistake("false negatives left out",
                "The score at each threshold is TP / (TP + FP + FN): missed objects (FN) count too, "
                "not only the spurious predictions.", wrong=_instance_no_fn),
    ),
    tf_jit=False,
    benchmarks=_instance_benchmarks,
))
