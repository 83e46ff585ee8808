"""Chapter 03: IoU and non-maximum suppression (``iou``, ``nms``, ``batched_nms``).

Boxes are float ``(N, 4)`` xyxy in continuous pixels (area ``(x2 - x1) * (y2 - y1)``, no "+1").
The wrong implementations below are self-contained numpy (the grader hides
``workshop.reference``): one small IoU and one small greedy NMS with a switch per mistake.

Length: one chapter's registry in one place: each exercise's cases, benchmarks and
every declared mistake with its self-contained wrong implementation, read together when an
exercise changes.
"""

from __future__ import annotations

import numpy as np

from workshop.data.boxes import clustered_boxes, distinct_scores, random_boxes

from . import register
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.boxes"
IND = "workshop.reference.industry"
KERNELS = "workshop.kernels.boxes"
CHAPTER = "03_iou_nms"


# ============================================================================================
# wrong implementations (self-contained)
# ============================================================================================
def _wrong_iou(boxes1, boxes2, *, plus_one=False, swap_second=False, no_clamp=False,
               no_guard=False, no_subtract=False, clamp_product=False, plus_one_areas=False,
               xywh=False, over_min=False):
    a = np.asarray(boxes1, np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, np.float64).reshape(-1, 4)
    if xywh:   # (x, y, w, h) read as if it were the course's xyxy
        a = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], axis=1)
        b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    if swap_second:
        b = b[:, [1, 0, 3, 2]]
    one = 1.0 if plus_one else 0.0
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one
    if not (no_clamp or clamp_product):
        w, h = np.maximum(w, 0), np.maximum(h, 0)
    inter = np.maximum(w * h, 0) if clamp_product else w * h
    area_one = 1.0 if plus_one_areas else one
    area_a = (a[:, 2] - a[:, 0] + area_one) * (a[:, 3] - a[:, 1] + area_one)
    area_b = (b[:, 2] - b[:, 0] + area_one) * (b[:, 3] - b[:, 1] + area_one)
    if over_min:
        union = np.minimum(area_a[:, None], area_b[None, :])
    else:
        union = area_a[:, None] + area_b[None, :] - (0.0 if no_subtract else inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        if no_guard:
            return inter / union
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _iou_plus_one(boxes1, boxes2):
    return _wrong_iou(boxes1, boxes2, plus_one=True)


def _iou_swapped(boxes1, boxes2):
    return _wrong_iou(boxes1, boxes2, swap_second=True)


def _iou_not_clamped(boxes1, boxes2):
    return _wrong_iou(boxes1, boxes2, no_clamp=True)


def _iou_nan(boxes1, boxes2):
    return _wrong_iou(boxes1, boxes2, no_guard=True)


def _iou_union_is_sum(boxes1, boxes2):
    return _wrong_iou(boxes1, boxes2, no_subtract=True)


def _iou_clamp_product(boxes1, boxes2):
    return _wrong_iou(boxes1, boxes2, clamp_product=True)


def _iou_plus_one_areas(boxes1, boxes2):
    return _wrong_iou(boxes1, boxes2, plus_one_areas=True)


def _iou_xywh(boxes1, boxes2):
    return _wrong_iou(boxes1, boxes2, xywh=True)


def _iou_over_min(boxes1, boxes2):
    return _wrong_iou(boxes1, boxes2, over_min=True)


def _has_nan_where_number(case, received, expected):
    r = np.asarray(received.numpy() if hasattr(received, "numpy") else received, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    return r.shape == e.shape and bool(np.any(np.isnan(r) & ~np.isnan(e)))


def _wrong_nms(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None,
               classes=None, *, order="score", ge=False, cap_first=False, score_ge=False,
               as_boxes=False, ignore_classes=False, by_class=False, cap_per_class=False,
               plus_one=False, over_min=False, no_score_threshold=False, positions=False):
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.asarray(scores, np.float64).reshape(-1)
    n = len(s)
    if classes is not None and not ignore_classes and (by_class or cap_per_class):
        c = np.asarray(classes).reshape(-1)
        kept = []
        for cls in np.unique(c):
            idx = np.flatnonzero(c == cls)
            sub = _wrong_nms(b[idx], s[idx], iou_threshold,
                             max_output_size if cap_per_class else None, score_threshold)
            kept.extend(idx[sub].tolist())
        if positions:   # each class's positions, never mapped back to the input's indices
            pos = {int(i): int(np.sum(c[:i] == c[i])) for i in kept}
            kept.sort(key=lambda i: (-s[i], i))
            kept = kept[:n if max_output_size is None else max_output_size]
            return np.array([pos[i] for i in kept], np.int64)
        if cap_per_class:
            kept.sort(key=lambda i: (-s[i], i))
            return np.array(kept, np.int64)
        return np.array(kept[:n if max_output_size is None else max_output_size], np.int64)
    if order == "index":
        cand = np.arange(n)
    elif order == "high_index_first":
        cand = np.argsort(s, kind="stable")[::-1]
    else:
        cand = np.argsort(-s, kind="stable")
    if score_threshold is not None and not no_score_threshold:
        cand = cand[(s[cand] >= score_threshold) if score_ge else (s[cand] > score_threshold)]
    cap = n if max_output_size is None else int(max_output_size)
    if cap_first:
        cand = cand[:cap]
    c = None if (classes is None or ignore_classes) else np.asarray(classes).reshape(-1)
    ious = _wrong_iou(b, b, plus_one=plus_one, over_min=over_min)
    kept = []
    for i in cand:
        if len(kept) >= cap:
            break
        over = [ious[i, k] >= iou_threshold if ge else ious[i, k] > iou_threshold for k in kept]
        if c is not None:
            over = [o and c[i] == c[k] for o, k in zip(over, kept)]
        if not any(over):
            kept.append(int(i))
    keep = np.array(kept, np.int64)
    return b[keep] if as_boxes else keep


def _nms_unsorted(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold, order="index")


def _nms_ge(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold, ge=True)


def _nms_boxes(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold, as_boxes=True)


def _nms_high_index(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold,
                      order="high_index_first")


def _nms_cap_first(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold, cap_first=True)


def _nms_score_ge(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold, score_ge=True)


def _nms_iou_plus_one(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold,
                      plus_one=True)


def _nms_over_min(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold,
                      over_min=True)


def _nms_no_score_threshold(boxes, scores, iou_threshold, max_output_size=None,
                            score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold,
                      no_score_threshold=True)


def _ties_out_of_index_order(case, received, expected):
    """Among the returned boxes, two with equal scores come with the higher index first."""
    r = np.asarray(received.numpy() if hasattr(received, "numpy") else received)
    s = np.asarray(case.args[1], np.float64).reshape(-1)
    if r.ndim != 1 or r.dtype.kind not in "iu" or not r.size or r.max() >= len(s) or r.min() < 0:
        return False
    rs = s[r]
    if np.any(np.diff(rs) > 0):   # not in score order at all: another mistake
        return False
    same = np.diff(rs) == 0
    return bool(np.any(same & (np.diff(r) < 0)))


def _returned_boxes(case, received, expected):
    r = received.numpy() if hasattr(received, "numpy") else received
    r = np.asarray(r)
    return r.ndim == 2 and r.shape[-1] == 4


def _bnms_ignore_classes(boxes, scores, classes, iou_threshold, max_output_size=None,
                         score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold, classes,
                      ignore_classes=True)


def _bnms_by_class(boxes, scores, classes, iou_threshold, max_output_size=None,
                   score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold, classes,
                      by_class=True)


def _bnms_positions(boxes, scores, classes, iou_threshold, max_output_size=None,
                    score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold, classes,
                      by_class=True, positions=True)


def _bnms_cap_per_class(boxes, scores, classes, iou_threshold, max_output_size=None,
                        score_threshold=None):
    return _wrong_nms(boxes, scores, iou_threshold, max_output_size, score_threshold, classes,
                      cap_per_class=True)


# ============================================================================================
# cases
# ============================================================================================
def _b(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _s(values) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def _idx(values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _ladder(n: int) -> np.ndarray:
    """``n`` separate 10 x 10 boxes in a row (no two overlap)."""
    x = 20.0 * np.arange(n)
    return np.stack([x, np.zeros(n), x + 10.0, np.full(n, 10.0)], axis=1)


def _tied_scores(n: int) -> np.ndarray:
    """Three score levels in a shuffled order (an unstable sort reorders such ties)."""
    return np.random.default_rng(0).choice([0.9, 0.6, 0.3], n)


def _iou_edge_cases() -> list[Case]:
    return [
        Case("pinned: half-overlapping squares", (_b([[0, 0, 10, 10]]), _b([[5, 5, 15, 15]])),
             expected=np.array([[1 / 7]]), about="intersection 25, union 175"),
        Case("wide and tall boxes", (_b([[0, 0, 20, 10]]), _b([[0, 0, 10, 20], [5, 0, 25, 10]])),
             expected=np.array([[1 / 3, 0.6]]), about="x and y play different roles"),
        Case("touching boxes", (_b([[0, 0, 10, 10]]), _b([[10, 0, 20, 10], [0, 10, 10, 20], [10, 10, 20, 20]])),
             expected=np.zeros((1, 3)), about="a shared edge or corner is no overlap"),
        Case("diagonally disjoint boxes", (_b([[0, 0, 10, 10], [20, 20, 30, 30]]), _b([[20, 20, 30, 30], [40, 0, 50, 5]])),
             expected=np.array([[0.0, 0.0], [1.0, 0.0]])),
        Case("zero-area boxes", (_b([[5, 5, 5, 5], [0, 0, 10, 10]]), _b([[5, 5, 5, 5], [2, 2, 2, 8]])),
             expected=np.zeros((2, 2)), about="a point and a segment have no area: IoU 0, not NaN"),
        Case("nested box", (_b([[0, 0, 10, 10]]), _b([[2, 2, 4, 4], [0, 0, 10, 10]])),
             expected=np.array([[0.04, 1.0]])),
        Case("apart along one axis only", (_b([[0, 0, 10, 10]]), _b([[30, 2, 40, 8], [2, 30, 8, 40]])),
             expected=np.zeros((1, 2)), about="the x (or y) overlap is negative, the other positive"),
        Case("empty first set", (np.zeros((0, 4)), _b([[0, 0, 1, 1]])), expected=np.zeros((0, 1))),
        Case("empty second set", (_b([[0, 0, 1, 1], [1, 1, 2, 2]]), np.zeros((0, 4))),
             expected=np.zeros((2, 0)), public=False),
        Case("fractional coordinates", (_b([[0.5, 0.25, 3.75, 2.5]]), _b([[1.25, 0.0, 2.5, 4.0]])),
             public=False),
        Case("far from the origin", (random_boxes(np.random.default_rng(7), 6) + 5000.0,
                                     random_boxes(np.random.default_rng(8), 5) + 5000.0), public=False),
    ]


def _iou_random(rng) -> Case:
    n, m = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    extent = float(rng.choice([30.0, 100.0, 640.0]))
    a = random_boxes(rng, n, extent, 1.0, extent / 2)
    b = random_boxes(rng, m, extent, 1.0, extent / 2)
    if rng.random() < 0.3:  # integer pixel boxes make exact shared edges likely
        a, b = np.round(a), np.round(b)
        a[:, 2:] = np.maximum(a[:, 2:], a[:, :2] + 1)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
    return Case("", (a, b))


def _iou_benchmarks() -> list[Case]:
    rng = np.random.default_rng(2024)
    return [Case("2000 x 2000", (random_boxes(rng, 2000, 1000.0, 10.0, 200.0),
                                 random_boxes(rng, 2000, 1000.0, 10.0, 200.0)))]


def _nms_edge_cases() -> list[Case]:
    return [
        Case("pinned: IoU exactly at the threshold", (_b([[0, 0, 10, 10], [0, 0, 10, 5]]), _s([0.9, 0.8]), 0.5),
             expected=_idx([0, 1]), about="IoU = 0.5 is not > 0.5: both stay"),
        Case("pinned: equal scores", (_b([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]]), _s([0.5, 0.5, 0.5]), 0.3),
             expected=_idx([0, 2]), about="ties: the lower index goes first"),
        Case("pinned: score threshold", (_b([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]), _s([0.9, 0.5, 0.3]), 0.5),
             {"score_threshold": 0.5}, expected=_idx([0]), about="only scores > 0.5 take part"),
        Case("pinned: zero-area duplicates", (_b([[5, 5, 5, 5], [5, 5, 5, 5]]), _s([0.9, 0.8]), 0.5),
             expected=_idx([0, 1]), about="a zero-area box has IoU 0 with everything"),
        Case("scores not in index order", (_b([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]), _s([0.3, 0.9, 0.6]), 0.5),
             expected=_idx([1, 2])),
        Case("max_output_size caps the output", (_b([[0, 0, 10, 10], [1, 0, 11, 10], [30, 0, 40, 10], [60, 0, 70, 10]]),
                                                 _s([0.9, 0.8, 0.7, 0.6]), 0.5), {"max_output_size": 2},
             expected=_idx([0, 2]), about="the cap counts kept boxes, not candidates"),
        Case("empty input", (np.zeros((0, 4)), np.zeros(0), 0.5), expected=_idx([])),
        Case("ties at several score levels", (_ladder(24), _tied_scores(24), 0.5),
             expected=np.argsort(-_tied_scores(24), kind="stable").astype(np.int64),
             about="24 separate boxes, 3 scores: within a score, the lower index first"),
        Case("nested boxes and a score threshold",
             (_b([[0, 0, 10, 10], [1, 1, 7, 7], [30, 0, 40, 10], [60, 0, 70, 10]]),
              _s([0.9, 0.8, 0.4, 0.2]), 0.5), {"score_threshold": 0.3}, expected=_idx([0, 1, 2]),
             about="IoU of the nested pair is 0.36: it stays; 0.2 is below the threshold"),
        Case("nothing above the score threshold", (_b([[0, 0, 1, 1]]), _s([0.2]), 0.5), {"score_threshold": 0.2},
             expected=_idx([]), public=False),
        Case("threshold 1 keeps duplicates", (_b([[0, 0, 4, 4], [0, 0, 4, 4]]), _s([0.4, 0.6]), 1.0),
             expected=_idx([1, 0]), public=False),
        Case("threshold 0: any overlap suppresses", (_b([[0, 0, 4, 4], [3.5, 3.5, 8, 8], [4, 0, 8, 4]]), _s([0.9, 0.8, 0.7]), 0.0),
             expected=_idx([0, 2]), public=False),
        Case("max_output_size 0", (_b([[0, 0, 4, 4]]), _s([0.4]), 0.5), {"max_output_size": 0},
             expected=_idx([]), public=False),
        Case("ties among many duplicates", (np.tile(_b([[0, 0, 10, 10], [20, 0, 30, 10]]), (4, 1)),
                                            _s([0.5] * 8), 0.5), expected=_idx([0, 1]), public=False),
        Case("ties with a chain", (_b([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10], [12, 0, 22, 10]]),
                                   _s([0.7, 0.7, 0.7, 0.7]), 0.2), public=False),
    ]


def _nms_random(rng) -> Case:
    n = int(rng.integers(1, 40))
    boxes = clustered_boxes(rng, n, int(rng.integers(1, 8)))
    kwargs = {}
    if rng.random() < 0.3:
        kwargs["max_output_size"] = int(rng.integers(1, n + 1))
    scores = distinct_scores(rng, n)
    if rng.random() < 0.3:  # a threshold between two scores, never equal to one
        kwargs["score_threshold"] = float(rng.uniform(0.05, 0.6))
    thr = float(rng.choice([0.3, 0.5, 0.7]))
    return Case("", (boxes, scores, thr), kwargs)


def _nms_benchmarks() -> list[Case]:
    rng = np.random.default_rng(2024)
    n = 6000
    uniform = random_boxes(rng, n, 1000.0, 10.0, 200.0)
    rpn = clustered_boxes(rng, n, 60, extent=800.0, jitter=0.15) * 1.25
    return [Case("6000 uniform, thr 0.7", (uniform, distinct_scores(rng, n), 0.7)),
            Case("6000 RPN-like, thr 0.7", (rpn, distinct_scores(rng, n), 0.7))]


def _bnms_edge_cases() -> list[Case]:
    return [
        Case("pinned: classes never suppress each other",
             (_b([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11]]), _s([0.9, 0.8, 0.7]), _idx([0, 1, 0]), 0.5),
             expected=_idx([0, 1]), about="box 1 is another class; box 2 is suppressed by box 0"),
        Case("large boxes of two classes in the same place",
             (_b([[0, 0, 100, 100], [2, 2, 102, 102]]), _s([0.9, 0.8]), _idx([0, 1]), 0.5),
             expected=_idx([0, 1]), about="an offset per class must exceed every coordinate"),
        Case("merged by score across classes",
             (_b([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]), _s([0.5, 0.9, 0.7]), _idx([0, 1, 0]), 0.5),
             expected=_idx([1, 2, 0])),
        Case("max_output_size counts all classes",
             (_b([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]), _s([0.9, 0.8, 0.7]), _idx([0, 0, 1]), 0.5),
             {"max_output_size": 2}, expected=_idx([0, 1])),
        Case("equal scores in two classes", (_b([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]),
                                             _s([0.5, 0.5, 0.5]), _idx([3, 1, 3]), 0.5),
             expected=_idx([0, 1])),
        Case("empty input", (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5), expected=_idx([])),
        Case("score threshold with classes", (_b([[0, 0, 10, 10], [0, 0, 10, 10]]), _s([0.3, 0.6]), _idx([0, 1]), 0.5),
             {"score_threshold": 0.3}, expected=_idx([1]), public=False),
        Case("indices into the whole input", (_b([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10],
                                                  [60, 0, 70, 10]]), _s([0.5, 0.9, 0.7, 0.8]),
                                              _idx([1, 0, 1, 0]), 0.5), expected=_idx([1, 3, 2, 0]),
             about="return positions in the input, not within a class"),
    ]


def _bnms_random(rng) -> Case:
    base = _nms_random(rng)
    boxes, scores, thr = base.args
    classes = rng.integers(0, int(rng.integers(1, 4)), len(scores)).astype(np.int64)
    return Case("", (boxes, scores, classes, thr), base.kwargs)


def _bnms_benchmarks() -> list[Case]:
    rng = np.random.default_rng(2025)
    n = 6000
    rpn = clustered_boxes(rng, n, 60, extent=800.0, jitter=0.15) * 1.25
    return [Case("6000 RPN-like, 20 classes, thr 0.5",
                 (rpn, distinct_scores(rng, n), rng.integers(0, 20, n).astype(np.int64), 0.5))]


# ============================================================================================
# declarations
# ============================================================================================
# the libraries' finished NMS: a tier that uses one implements nothing
NMS_CALLS = ("tensorflow.image.non_max_suppression",
             "tensorflow.image.non_max_suppression_with_scores",
             "tensorflow.image.non_max_suppression_padded",
             "tensorflow.image.non_max_suppression_overlaps",
             "tensorflow.image.combined_non_max_suppression",
             "tensorflow.raw_ops.NonMaxSuppressionV3", "tensorflow.raw_ops.NonMaxSuppressionV4",
             "tensorflow.raw_ops.NonMaxSuppressionV5", "cv2.dnn.NMSBoxes",
             "torchvision.ops.nms", "torchvision.ops.batched_nms")

_NMS_MISTAKES = (
    Mistake("NMS not sorted by score",
            "Your boxes come out in index order: NMS must visit the candidates from the highest "
            "score down (np.argsort(-scores, kind='stable')) and return the kept indices in "
            "that order.", _nms_unsorted),
    Mistake("suppresses at IoU equal to the threshold",
            "You drop boxes whose IoU equals iou_threshold: only an IoU STRICTLY greater than "
            "the threshold suppresses (use iou > iou_threshold, not >=).", _nms_ge),
    Mistake("returns boxes instead of indices",
            "You return the kept boxes themselves: return their integer indices into the input "
            "(int64, shape (K,)), in decreasing score order.", _nms_boxes, detect=_returned_boxes),
    Mistake("ties out of index order",
            "With equal scores your boxes are not in index order: sort with a stable sort, "
            "np.argsort(-scores, kind='stable'); numpy's default sort (quicksort) and reversing "
            "an ascending sort do not keep ties in index order.",
            _nms_high_index, detect=_ties_out_of_index_order),
    Mistake("max_output_size caps the candidates",
            "You keep only the first max_output_size candidates before suppressing (as "
            "cv2.dnn.NMSBoxes's top_k does): the cap counts kept boxes, so keep scanning until "
            "that many boxes are kept.", _nms_cap_first),
    Mistake("score threshold is inclusive",
            "A box whose score equals score_threshold takes part in your NMS: only scores "
            "STRICTLY above score_threshold are candidates.", _nms_score_ge),
    Mistake("score threshold ignored",
            "Boxes at or below score_threshold take part in your NMS: drop them before "
            "suppressing (only scores strictly above score_threshold are candidates).",
            _nms_no_score_threshold),
    Mistake("NMS with the +1 IoU",
            "Your suppression matches an IoU with the old '+1' pixel convention: boxes are "
            "continuous here (width x2 - x1); compute the IoU as the course's iou does.",
            _nms_iou_plus_one),
    Mistake("NMS with intersection over the smaller box",
            "You suppress by intersection over the smaller box's area: NMS uses intersection "
            "over union.", _nms_over_min),
)

register(Exercise(
    name="iou",
    chapter=CHAPTER,
    minutes={"loops": 15, "numpy": 15, "tf": 15},
    signature="iou(boxes1, boxes2) -> (N, M) float64",
    summary="Intersection over union of every pair of xyxy boxes.",
    tiers={"loops": f"{REF}:iou_loops", "numpy": f"{REF}:iou_numpy", "tf": f"{REF}:iou_tf"},
    kernels={"numpy": f"{KERNELS}:iou_numpy"},
    edge_cases=_iou_edge_cases,
    random_case=_iou_random,
    outputs=(Output("iou", "float"),),
    mistakes=(
        Mistake("+1 area convention",
                "Your IoU matches the old '+1' pixel convention (width = x2 - x1 + 1): here boxes "
                "live in continuous coordinates, width is x2 - x1 and area (x2 - x1) * (y2 - y1).",
                _iou_plus_one),
        Mistake("(x, y) order swapped",
                "Your IoU matches reading the second set of boxes as (y1, x1, y2, x2): both "
                "arguments are (x1, y1, x2, y2); columns 0 and 2 are x, 1 and 3 are y.",
                _iou_swapped),
        Mistake("intersection not clamped at zero",
                "Boxes that do not overlap get a non-zero IoU (negative when they are apart "
                "along one axis, positive when apart along both): clamp the intersection's width "
                "and height at zero, each on its own: np.maximum(x_right - x_left, 0).",
                _iou_not_clamped),
        Mistake("product clamped instead of each side",
                "Boxes apart along both axes get a positive IoU: you clamp the product w * h at "
                "zero, but two negative sides make a positive product. Clamp the width and the "
                "height at zero, each on its own, before multiplying.", _iou_clamp_product),
        Mistake("+1 in the areas only",
                "Your areas use the old '+1' convention ((x2 - x1 + 1) * (y2 - y1 + 1)) while "
                "the intersection does not: boxes are continuous here, area (x2 - x1) * (y2 - y1).",
                _iou_plus_one_areas),
        Mistake("boxes read as (x, y, w, h)",
                "Your IoU matches reading the boxes as (x, y, width, height): the course's boxes "
                "are corners (x1, y1, x2, y2); width is x2 - x1.", _iou_xywh),
        Mistake("intersection over the smaller box",
                "You divide the intersection by the smaller box's area: IoU divides by the "
                "union, area1 + area2 - intersection.", _iou_over_min),
        Mistake("NaN on zero-area boxes",
                "You return NaN for boxes with zero area (0 / 0): when the union is 0 the IoU is "
                "0; divide only where union > 0 (numpy: np.divide(..., where=union > 0) or "
                "np.where; TensorFlow: tf.math.divide_no_nan).", _iou_nan,
                detect=_has_nan_where_number),
        Mistake("union is the sum of the areas",
                "Your union counts the intersection twice: union = area1 + area2 - intersection.",
                _iou_union_is_sum),
    ),
    benchmarks=_iou_benchmarks,
    baselines={"pycocotools": f"{IND}:iou_pycocotools"},
    answer_calls=("pycocotools.mask.iou", "torchvision.ops.box_iou"),
    no_loops_over=("boxes1", "boxes2"),
))

register(Exercise(
    name="nms",
    chapter=CHAPTER,
    minutes={"loops": 25, "numpy": 20, "tf": 45},
    stretch=("tf",),
    signature="nms(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None) -> int64 indices",
    summary="Greedy non-maximum suppression, exactly as tf.image.non_max_suppression.",
    tiers={"loops": f"{REF}:nms_loops", "numpy": f"{REF}:nms_numpy", "tf": f"{REF}:nms_tf"},
    kernels={"numpy": f"{KERNELS}:nms_numpy", "tf": f"{KERNELS}:nms_tf"},
    edge_cases=_nms_edge_cases,
    random_case=_nms_random,
    outputs=(Output("indices", "int"),),
    mistakes=_NMS_MISTAKES,
    tf_jit=True,  # fixed-size tiles in the loop; XLA handles the final boolean mask + slice
    tf_static=("iou_threshold", "max_output_size", "score_threshold"),
    benchmarks=_nms_benchmarks,
    baselines={"cv2.dnn.NMSBoxes": f"{IND}:nms_opencv",
               "tf.image.non_max_suppression": f"{IND}:nms_tf_image"},
    answer_calls=NMS_CALLS,
))

register(Exercise(
    name="batched_nms",
    chapter=CHAPTER,
    minutes={"loops": 10, "numpy": 15},
    signature=("batched_nms(boxes, scores, classes, iou_threshold, max_output_size=None, "
               "score_threshold=None) -> int64 indices"),
    summary="Class-aware NMS: boxes of different classes never suppress each other.",
    tiers={"loops": f"{REF}:batched_nms_loops", "numpy": f"{REF}:batched_nms_numpy",
           "tf": f"{REF}:batched_nms_tf"},
    kernels={"numpy": f"{KERNELS}:batched_nms_numpy", "tf": f"{KERNELS}:batched_nms_tf"},
    edge_cases=_bnms_edge_cases,
    random_case=_bnms_random,
    outputs=(Output("indices", "int"),),
    mistakes=(
        Mistake("classes ignored",
                "A box suppresses boxes of other classes: compare (or offset) boxes only within "
                "the same class, e.g. ignore IoU where classes[i] != classes[j].",
                _bnms_ignore_classes),
        Mistake("results concatenated class by class",
                "Your indices are grouped by class: after per-class NMS, merge all kept boxes "
                "by decreasing score (ties by index) before applying max_output_size.",
                _bnms_by_class),
        Mistake("max_output_size applied per class",
                "You cap each class at max_output_size: the cap is on the total number of kept "
                "boxes over all classes.", _bnms_cap_per_class),
        Mistake("positions within a class",
                "Your indices count positions within each class's boxes: map them back to the "
                "boxes' indices in the whole input (e.g. idx = np.flatnonzero(classes == c); "
                "keep idx[kept]).", _bnms_positions),
    ),
    tf_jit=True,  # fixed-size tiles in the loop; XLA handles the final boolean mask + slice
    tf_static=("iou_threshold", "max_output_size", "score_threshold"),
    benchmarks=_bnms_benchmarks,
    baselines={"tf.image.non_max_suppression (class offsets)": f"{IND}:batched_nms_tf_image"},
    answer_calls=NMS_CALLS,
))
