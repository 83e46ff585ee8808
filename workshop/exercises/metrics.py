"""Chapter 09: mean average precision.

Exercises: ``average_precision`` (three interpolations), ``match_detections`` (greedy matching of
one image at one IoU threshold), ``detection_map`` (per-class AP and mAP over images) and
``instance_map`` (the Data Science Bowl 2018 "mAP of IoU" of label images).

The wrong implementations below are self-contained numpy (the grader hides
``workshop.reference``); each reproduces one mistake through a switch.

Length: one chapter's registry in one place: each exercise's cases, benchmarks and
every declared mistake with its self-contained wrong implementation, read together when an
exercise changes.
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
def _voc07_accumulated() -> np.ndarray:
    """0, 0.1, ... by repeated addition: 0.6 and 0.7 exactly, then 0.7999999999999999, ..."""
    out, t = [], 0.0
    while t <= 1.0:
        out.append(t)
        t += 0.1
    return np.array(out)


def _ap(recall, precision, method="coco", *, interpolate=True, strict=False, eleven=False,
        arange_thresholds=False, voc07="arange", beyond_last=False, voc_from_first=False):
    r = np.asarray(recall, np.float64)
    p = np.asarray(precision, np.float64)
    env = np.maximum.accumulate(p[::-1])[::-1] if interpolate else p
    if method == "voc" and voc_from_first:
        return float(np.sum(np.diff(r) * env[1:]))
    if method == "voc":
        mrec = np.concatenate([[0.0], r, [1.0]])
        mpre = np.concatenate([[0.0], env, [0.0]])
        if interpolate:
            mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    if method == "voc07" and voc07 == "i / 10":
        thresholds = np.arange(11) / 10
    elif method == "voc07" and voc07 == "accumulated":
        thresholds = _voc07_accumulated()
    elif method == "voc07" or eleven:
        thresholds = np.arange(0.0, 1.1, 0.1)
    elif arange_thresholds:
        thresholds = np.arange(101) / 100
    else:
        thresholds = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(r, thresholds, side="right" if strict else "left")
    beyond = env[-1] if beyond_last and len(env) else 0.0
    return float(np.mean(np.append(env, beyond)[idx]))


def _ap_no_interpolation(recall, precision, method="coco"):
    return _ap(recall, precision, method, interpolate=False)


def _ap_strict(recall, precision, method="coco"):
    return _ap(recall, precision, method, strict=True)


def _ap_eleven(recall, precision, method="coco"):
    return _ap(recall, precision, method, eleven=True)


def _ap_arange(recall, precision, method="coco"):
    return _ap(recall, precision, method, arange_thresholds=True)


def _ap_voc07_div(recall, precision, method="coco"):
    return _ap(recall, precision, method, voc07="i / 10")


def _ap_voc07_accumulated(recall, precision, method="coco"):
    return _ap(recall, precision, method, voc07="accumulated")


def _ap_beyond_last(recall, precision, method="coco"):
    return _ap(recall, precision, method, beyond_last=True)


def _ap_voc_from_first(recall, precision, method="coco"):
    return _ap(recall, precision, method, voc_from_first=True)


_PIN_R = np.array([0.5, 0.5, 1.0])           # two ground truths: TP(.9), FP(.8), TP(.7)
_PIN_P = np.array([1.0, 0.5, 2.0 / 3.0])


def _ap_edge_cases() -> list[Case]:
    dip_r, dip_p = np.array([0.25, 0.25, 0.5, 0.75]), np.array([1.0, 0.5, 2 / 3, 0.75])
    # 20 ground truths; recall 7/20 = 0.35 is a float that np.arange(101)/100 holds but
    # np.linspace(0, 1, 101) does not (its 36th value is 0.35000000000000003)
    on_r, on_p = np.array([7 / 20, 7 / 20, 8 / 20]), np.array([1.0, 7 / 8, 0.8])
    # VOC2007's thresholds np.arange(0, 1.1, 0.1) hold 0.30000000000000004, 0.6000000000000001 and
    # 0.7000000000000001: a recall of exactly 3/10 or 3/5 does not reach them (i / 10 would)
    tp3 = np.array([1, 1, 1, 0, 0, 1])                      # 10 objects: TP TP TP FP FP TP
    r3, p3 = np.cumsum(tp3) / 10, np.cumsum(tp3) / np.arange(1, 7)
    tp6 = np.array([1, 1, 1, 0, 1])                         # 5 objects: TP TP TP FP TP
    r6, p6 = np.cumsum(tp6) / 5, np.cumsum(tp6) / np.arange(1, 6)
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
        Case("recall lands on 0.3 (10 ground truths), voc07", (r3, p3), {"method": "voc07"},
             expected=(3 + 2 * 4 / 6) / 11,
             about="0.393939: np.arange(0, 1.1, 0.1)[3] is 0.30000000000000004 > 3/10, so that "
                   "threshold takes the precision at recall 0.4 (4/6), not 1"),
        Case("recall lands on 0.6 (5 ground truths), voc07", (r6, p6), {"method": "voc07"},
             expected=(6 + 3 * 0.8) / 11,
             about="0.763636: np.arange(0, 1.1, 0.1)[6] is 0.6000000000000001 > 3/5, so that "
                   "threshold takes the precision at recall 0.8 (0.8), not 1"),
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
    minutes={"loops": 20, "numpy": 15, "tf": 20},
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
        Mistake("voc07 thresholds as i / 10",
                "Your 11 VOC2007 thresholds are i / 10 (exactly 0.3, 0.6, 0.7). The course builds "
                "them as the Python VOC evaluation code (voc_eval.py) does, np.arange(0, 1.1, 0.1), "
                "which holds 0.30000000000000004, 0.6000000000000001 and 0.7000000000000001 there: a "
                "floating-point detail, but a recall of exactly 0.3 (3 of 10 objects found) reaches "
                "your fourth threshold and not the course's. Use np.arange(0, 1.1, 0.1).",
                wrong=_ap_voc07_div),
        Mistake("voc07 thresholds accumulated",
                "Your VOC2007 thresholds are added up step by step (t += 0.1), which makes them "
                "exactly 0.6 and 0.7 (then 0.7999999999999999, ...). The course builds them as the "
                "Python VOC evaluation code (voc_eval.py) does, np.arange(0, 1.1, 0.1), which holds "
                "0.6000000000000001 and 0.7000000000000001 there, so a recall of exactly 0.6 reaches "
                "your seventh threshold and not the course's. Use np.arange(0, 1.1, 0.1).",
                wrong=_ap_voc07_accumulated),
        Mistake("precision beyond the largest recall",
                "At a recall threshold above the largest recall reached, the precision is 0 (no "
                "detection reaches it): you carried the last precision on instead.",
                wrong=_ap_beyond_last),
        Mistake("voc area starts at the first recall",
                "Your 'voc' area leaves out the first step: the curve starts at recall 0, so the "
                "first detection's step (r[0] - 0) * p_interp[0] counts too (prepend recall 0, as "
                "mrec = [0, recall..., 1]).", wrong=_ap_voc_from_first),
    ),
    tf_static=("method",),
    benchmarks=_ap_benchmarks,
    answer_calls=("sklearn.metrics.average_precision_score", "pycocotools.cocoeval.COCOeval",
                  "faster_coco_eval.COCOeval_faster"),
))


# ================================================================================================
# match_detections
# ================================================================================================
def _iou_matrix(a, b, plus_one=False):
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    one = 1.0 if plus_one else 0.0
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(inter > 0, inter / np.where(inter > 0, union, 1.0), 0.0)


def _match(gt_boxes, det_boxes, det_scores, iou_threshold=0.5, *, strict=False, reuse=False,
           order="stable", first=False, tie_first=False, voc=False, plus_one=False):
    scores = np.asarray(det_scores, np.float64)
    ious = _iou_matrix(det_boxes, gt_boxes, plus_one)
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
        if voc:          # the best object, taken or not: a taken one makes a false positive
            if n_gt:
                g = int(np.argmax(ious[d]))
                if ious[d, g] >= t and free[g]:
                    free[g] = False
                    tp[d] = True
            continue
        ok = (ious[d] > t) if strict else (ious[d] >= t)
        if not reuse:
            ok &= free
        if not ok.any():
            continue
        cand = np.where(ok, ious[d], -1.0)
        if first:
            g = int(np.flatnonzero(ok)[0])
        elif tie_first:
            g = int(np.argmax(cand))
        else:
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


def _match_tie_first(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    return _match(gt_boxes, det_boxes, det_scores, iou_threshold, tie_first=True)


def _match_voc(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    return _match(gt_boxes, det_boxes, det_scores, iou_threshold, voc=True)


def _match_plus_one(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    return _match(gt_boxes, det_boxes, det_scores, iou_threshold, plus_one=True)


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
        Case("equal IoU with two free objects: the later object is taken",
             (_boxes([0, 0, 10, 10], [5, 0, 15, 10]), _boxes([2.5, 0, 12.5, 10], [0, 0, 10, 10]),
              np.array([0.9, 0.8])), {"iou_threshold": 0.5}, expected=np.array([True, True]),
             about="the first detection overlaps both objects at 0.6; it takes object 1 (pycocotools "
                   "keeps the last of equal IoUs), so object 0 is left for the second detection"),
        Case("the best object is taken: the next free one above the threshold is matched",
             (_boxes([0, 0, 10, 10], [3, 0, 13, 10]), _boxes([0, 0, 10, 10], [1, 0, 11, 10]),
              np.array([0.9, 0.8])), {"iou_threshold": 0.5}, expected=np.array([True, True]),
             about="the second detection overlaps object 0 (taken) at 9/11 and object 1 at 2/3"),
        Case("small boxes: IoU 1/3 is no match at 0.5, nor a small box inside a large object",
             (_boxes([0, 0, 2, 2], [10, 10, 30, 30]), _boxes([1, 0, 3, 2], [12, 12, 16, 16]),
              np.array([0.9, 0.8])), {"iou_threshold": 0.5}, expected=np.array([False, False]),
             about="first pair: intersection 1 x 2 = 2, union 4 + 4 - 2 = 6; second: 16 / 400"),
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
    minutes={"loops": 20, "numpy": 20, "tf": 35},
    stretch=("tf",),
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
        Mistake("equal IoU: the first object taken",
                "When two free objects have the same (highest) IoU with a detection, take the later one: "
                "pycocotools replaces its best on IoU >= best, so it keeps the last of equal maxima "
                "(np.argmax keeps the first). It decides which object is left for the next detections.",
                wrong=_match_tie_first),
        Mistake("best object even if taken (VOC rule)",
                "You take the detection's best object among all of them and make it a false positive "
                "when that object is already taken (the VOC devkit's rule). The course follows "
                "pycocotools: choose among the objects still free, so the detection can match another "
                "one with IoU >= threshold.", wrong=_match_voc),
        Mistake("+1 IoU",
                "Your IoU follows the old '+1' pixel convention (width = x2 - x1 + 1): boxes are "
                "continuous here, width x2 - x1, area (x2 - x1) * (y2 - y1).", wrong=_match_plus_one),
    ),
    tf_static=("iou_threshold",),
    benchmarks=_match_benchmarks,
    kernels={"numpy": "workshop.kernels.metrics:match_detections_numpy"},
))


# ================================================================================================
# detection_map
# ================================================================================================
def _detection_map(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                   num_classes, iou_threshold=0.5, *, zero_for_missing=False, ignore_images=False,
                   ignore_classes=False, unsorted=False, skip_undetected=False, all_objects=False):
    gi, gc = np.asarray(gt_image, np.int64), np.asarray(gt_class, np.int64)
    di, dc = np.asarray(det_image, np.int64), np.asarray(det_class, np.int64)
    gb, db = np.asarray(gt_boxes, np.float64).reshape(-1, 4), np.asarray(det_boxes, np.float64).reshape(-1, 4)
    ds = np.asarray(det_scores, np.float64)
    if ignore_images:
        gi, di = np.zeros_like(gi), np.zeros_like(di)
    mc, mgc = (np.zeros_like(dc), np.zeros_like(gc)) if ignore_classes else (dc, gc)
    tp = np.zeros(len(db), bool)
    for c in np.unique(mc):
        for img in np.unique(di[mc == c]):
            d_idx = np.flatnonzero((mc == c) & (di == img))
            g_idx = np.flatnonzero((mgc == c) & (gi == img))
            tp[d_idx] = _match(gb[g_idx], db[d_idx], ds[d_idx], iou_threshold)
    ap = np.full(num_classes, np.nan)
    for c in range(num_classes):
        n_gt = len(gc) if all_objects else int(np.sum(gc == c))
        if n_gt == 0 or int(np.sum(gc == c)) == 0:
            continue
        sel = np.flatnonzero(dc == c)
        if skip_undetected and not len(sel):
            continue
        order = sel if unsorted else sel[np.argsort(-ds[sel], kind="stable")]
        cum = np.cumsum(tp[order]).astype(np.float64)
        ap[c] = _ap(cum / n_gt, cum / np.arange(1, len(order) + 1), "coco")
    if zero_for_missing:
        return float(np.mean(np.nan_to_num(ap, nan=0.0)))
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def _map_zero_missing(*args, **kwargs):
    return _detection_map(*args, **kwargs, zero_for_missing=True)


def _map_ignore_images(*args, **kwargs):
    return _detection_map(*args, **kwargs, ignore_images=True)


def _map_ignore_classes(*args, **kwargs):
    return _detection_map(*args, **kwargs, ignore_classes=True)


def _map_unsorted(*args, **kwargs):
    return _detection_map(*args, **kwargs, unsorted=True)


def _map_skip_undetected(*args, **kwargs):
    return _detection_map(*args, **kwargs, skip_undetected=True)


def _map_all_objects(*args, **kwargs):
    return _detection_map(*args, **kwargs, all_objects=True)


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
        Case("two images, detections listed image by image: sort them by score across images",
             (_ints(0, 1), _ints(0, 0), _boxes([0, 0, 10, 10], [0, 0, 10, 10]), _ints(0, 1), _ints(0, 0),
              _boxes([50, 50, 60, 60], [0, 0, 10, 10]), np.array([0.6, 0.9])),
             {"num_classes": 1}, expected=51 / 101,
             about="0.504950: in score order TP(.9) then FP(.6), recall 1/2 at precision 1"),
        Case("a class with objects but no detection has AP 0 and counts in the mean",
             (_ints(0, 0), _ints(0, 1), two, _ints(0), _ints(0), _boxes([0, 0, 10, 10]), np.array([0.9])),
             {"num_classes": 2}, expected=0.5, about="class 0: AP 1; class 1: AP 0; mean 0.5"),
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
    minutes={"loops": 35, "numpy": 25},
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
        Mistake("matching across classes",
                "A detection only matches ground truths of its own class: group by (image, class) "
                "before matching, so a box of another class neither matches nor takes an object.",
                wrong=_map_ignore_classes),
        Mistake("not sorted across images",
                "Sort all of a class's detections by descending score, over all images, before "
                "accumulating precision and recall: yours stay in the order they were listed.",
                wrong=_map_unsorted),
        Mistake("classes without detections left out",
                "A class with ground truth but no detection has AP 0 and counts in the mean: loop over "
                "the classes that have ground truth, not over those that have detections.",
                wrong=_map_skip_undetected),
        Mistake("recall over every class's objects",
                "A class's recall divides by that class's ground truths only (np.sum(gt_class == c)), "
                "not by all the objects of every class.", wrong=_map_all_objects),
    ),
    n_hidden_random=10,
    answer_calls=("pycocotools.cocoeval.COCOeval", "faster_coco_eval.COCOeval_faster"),
))


# ================================================================================================
# instance_map
# ================================================================================================
def _instance_map(truth, prediction, *, at_least=False, background=False, ignore_fn=False,
                  ignore_fp=False, fp_over_truths=False, fn_over_predictions=False, pooled=False,
                  empty_scores_one=False):
    t, p = np.asarray(truth).astype(np.int64), np.asarray(prediction).astype(np.int64)
    t_ids = [v for v in np.unique(t) if background or v != 0]
    p_ids = [v for v in np.unique(p) if background or v != 0]
    if not t_ids and not p_ids:
        return 1.0 if empty_scores_one else 0.0
    ious = np.zeros((len(t_ids), len(p_ids)))
    for i, a in enumerate(t_ids):
        for j, b in enumerate(p_ids):
            inter = np.sum((t == a) & (p == b))
            ious[i, j] = inter / (np.sum(t == a) + np.sum(p == b) - inter)
    scores, tps, denoms = [], [], []
    for thr in np.arange(0.5, 1.0, 0.05):
        tp = int(np.sum(ious >= thr) if at_least else np.sum(ious > thr))
        fp, fn = len(p_ids) - tp, len(t_ids) - tp
        if fp_over_truths:          # the true objects without a hit, counted as false positives
            fp = len(t_ids) - tp
        if fn_over_predictions:     # the predictions without a hit, counted as false negatives
            fn = len(p_ids) - tp
        denom = tp + (0 if ignore_fp else fp) + (0 if ignore_fn else fn)
        scores.append(tp / denom if denom else 0.0)
        tps.append(tp)
        denoms.append(denom)
    if pooled:
        return float(sum(tps) / sum(denoms)) if sum(denoms) else 0.0
    return float(np.mean(scores))


def _instance_at_least(truth, prediction):
    return _instance_map(truth, prediction, at_least=True)


def _instance_background(truth, prediction):
    return _instance_map(truth, prediction, background=True)


def _instance_no_fn(truth, prediction):
    return _instance_map(truth, prediction, ignore_fn=True)


def _instance_no_fp(truth, prediction):
    return _instance_map(truth, prediction, ignore_fp=True)


def _instance_fp_over_truths(truth, prediction):
    return _instance_map(truth, prediction, fp_over_truths=True)


def _instance_fn_over_predictions(truth, prediction):
    return _instance_map(truth, prediction, fn_over_predictions=True)


def _instance_pooled(truth, prediction):
    return _instance_map(truth, prediction, pooled=True)


def _instance_empty_one(truth, prediction):
    return _instance_map(truth, prediction, empty_scores_one=True)


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
    minutes={"loops": 20, "numpy": 20, "tf": 25},
    stretch=("tf",),
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
        Mistake("false positives left out",
                "The score at each threshold is TP / (TP + FP + FN): spurious predictions (FP) count "
                "too, not only the missed objects.", wrong=_instance_no_fp),
        Mistake("false positives counted over the true objects",
                "Your false positives are the true objects without a hit (the same as your false "
                "negatives): FP counts the predicted instances without a hit. With IoUs in a (true, "
                "predicted) matrix of hits, FN = (hits.sum(axis=1) == 0).sum() and "
                "FP = (hits.sum(axis=0) == 0).sum().", wrong=_instance_fp_over_truths),
        Mistake("false negatives counted over the predictions",
                "Your false negatives are the predicted instances without a hit (the same as your "
                "false positives): FN counts the true objects without a hit. With IoUs in a (true, "
                "predicted) matrix of hits, FN = (hits.sum(axis=1) == 0).sum() and "
                "FP = (hits.sum(axis=0) == 0).sum().", wrong=_instance_fn_over_predictions),
        Mistake("counts pooled over the thresholds",
                "You divided the TP summed over the thresholds by the (TP + FP + FN) summed over them: "
                "score each threshold on its own, TP / (TP + FP + FN), then average the 10 scores.",
                wrong=_instance_pooled),
        Mistake("nothing to find scores 1",
                "An image with neither true nor predicted instances scores 0, not 1: the formula is "
                "0/0 there, and this course scores it 0 (an empty prediction earns nothing).",
                wrong=_instance_empty_one),
    ),
    tf_jit=False,
    benchmarks=_instance_benchmarks,
))
