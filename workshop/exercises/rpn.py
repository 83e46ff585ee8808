"""Chapter 05: the region proposal network's geometry (``rpn_targets``, ``rpn_proposals``) and its loss (``rpn_loss``).

Boxes are float ``(N, 4)`` xyxy in continuous pixels (area ``(x2 - x1) * (y2 - y1)``, no "+1");
``image_shape`` is ``(height, width)``. The sampling in ``rpn_targets`` ranks anchors by
:func:`workshop.conventions.sampling_priority` (a documented hash of the seed and the anchor
index, lowest first), so every tier and every learner keeps the same anchors.

The wrong implementations below are self-contained numpy (the grader hides
``workshop.reference``): one small ``rpn_targets`` and one small ``rpn_proposals`` with a
switch per mistake.

Length: one chapter's registry in one place: each exercise's cases, benchmarks and
every declared mistake with its self-contained wrong implementation, read together when an
exercise changes.
"""

from __future__ import annotations

import math

import numpy as np

from . import register
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.rpn"
CHAPTER = "05_rpn"
CLAMP = math.log(1000.0 / 16)


# ============================================================================================
# small self-contained helpers for the wrong implementations
# ============================================================================================
def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None] + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _encode(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    gw, gh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    gx, gy = boxes[:, 0] + 0.5 * gw, boxes[:, 1] + 0.5 * gh
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([(gx - ax) / aw, (gy - ay) / ah, np.log(gw / aw), np.log(gh / ah)], axis=1)


def _priority(n: int, seed: int) -> np.ndarray:
    from ..conventions import sampling_priority

    return sampling_priority(n, seed)


# ============================================================================================
# rpn_targets
# ============================================================================================
def _targets(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3, batch_size=256,
             positive_fraction=0.5, seed=0, *, strict=False, no_best=False, single_best=False,
             no_border=False, zero_best=False, best_all=False, all_deltas=False, reversed_encode=False,
             no_sampling=False, index_order=False, no_topup=False, negative_inclusive=False,
             negatives_last=False, touching_outside=False, shape_swapped=False, deltas_unsampled=False,
             labels_only=False):
    a = np.asarray(anchors, np.float64).reshape(-1, 4)
    g = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    H, W = float(image_shape[0]), float(image_shape[1])
    if shape_swapped:
        H, W = W, H
    n, m = len(a), len(g)
    inside = (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= W) & (a[:, 3] <= H)
    if touching_outside:
        inside = (a[:, 0] > 0) & (a[:, 1] > 0) & (a[:, 2] < W) & (a[:, 3] < H)
    if no_border:
        inside = np.ones(n, bool)
    labels = np.full(n, -1, np.int64)
    matched = np.zeros(n, np.int64)
    if m == 0:
        labels[inside] = 0
    else:
        iou = _iou(a, g)
        top, matched = iou.max(axis=1), iou.argmax(axis=1)
        pool = np.ones(n, bool) if best_all else inside
        best = np.where(pool[:, None], iou, 0.0).max(axis=0) if n else np.zeros(m)
        hit = iou == best[None, :]
        if not zero_best:
            hit &= best[None, :] > 0
        if single_best:
            hit = np.zeros_like(hit)
            cand = np.where(pool[:, None], iou, -1.0)
            for j in range(m):
                if zero_best or best[j] > 0:
                    hit[int(np.argmax(cand[:, j])), j] = True
        is_best = hit.any(axis=1) & (not no_best)
        below = top <= negative_iou if negative_inclusive else top < negative_iou
        labels[inside & below] = 0
        above = top > positive_iou if strict else top >= positive_iou
        labels[inside & (above | is_best)] = 1
        if negatives_last:
            labels[inside & below] = 0
    if labels_only:                      # label_anchors: before the sampling
        return labels, matched.astype(np.int64)
    unsampled = np.flatnonzero(labels == 1)
    if not no_sampling:
        rank = np.arange(n) if index_order else _priority(n, seed)
        max_pos = int(batch_size * positive_fraction)
        pos = np.flatnonzero(labels == 1)
        pos = pos[np.argsort(rank[pos], kind="stable")]
        labels[pos[max_pos:]] = -1
        neg = np.flatnonzero(labels == 0)
        neg = neg[np.argsort(rank[neg], kind="stable")]
        n_neg = batch_size - max_pos if no_topup else batch_size - min(len(pos), max_pos)
        labels[neg[max(n_neg, 0):]] = -1
    deltas = np.zeros((n, 4))
    rows = np.arange(n) if (all_deltas and m) else np.flatnonzero(labels == 1)
    if deltas_unsampled:
        rows = unsampled
    if rows.size:
        deltas[rows] = (_encode(a[rows], g[matched[rows]]) if reversed_encode
                        else _encode(g[matched[rows]], a[rows]))
    return labels, deltas


def _switch(**flags):
    def wrong(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3, batch_size=256,
              positive_fraction=0.5, seed=0):
        return _targets(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                        positive_fraction, seed, **flags)
    return wrong


def _grid(H: int, W: int, stride: float, sizes) -> np.ndarray:
    """Anchors of an (H, W) map, position-major (as grid_anchors), sizes (w, h) per cell."""
    rows = []
    for y in range(H):
        for x in range(W):
            cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
            for w, h in sizes:
                rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(rows, np.float64).reshape(-1, 4)


def _targets_edge_cases() -> list[Case]:
    # A: the 0.7 boundary, each GT's best anchors (a tie), the border
    anchors_a = np.array([[10, 10, 20, 17], [10, 10, 20, 20], [40, 40, 50, 50], [-5, 10, 5, 20],
                          [60, 30, 80, 50], [70, 40, 90, 60], [85, 50, 100, 64]], float)
    gt_a = np.array([[10, 10, 20, 17], [60, 30, 90, 60]], float)
    l15 = math.log(1.5)
    deltas_a = np.array([[0, 0, 0, 0], [0, -0.15, 0, math.log(0.7)], [0, 0, 0, 0], [0, 0, 0, 0],
                         [0.25, 0.25, l15, l15], [-0.25, -0.25, l15, l15], [0, 0, 0, 0]])
    # B: a GT only border anchors reach (excluded from the best-anchor rule), a GT whose best
    # anchor overall crosses the border (its best inside anchor is the positive one)
    anchors_b = np.array([[0, 0, 8, 8], [24, 24, 32, 32], [20, -4, 36, 12], [18, 4, 26, 12],
                          [40, 36, 52, 52]], float)
    gt_b = np.array([[0, 0, 8, 10], [22, 2, 30, 10], [42, 40, 47, 47]], float)
    deltas_b = np.array([[0, 0.125, 0, math.log(1.25)], [0, 0, 0, 0], [0, 0, 0, 0], [0.5, -0.25, 0, 0],
                         [0, 0, 0, 0]])
    # C: an IoU of exactly negative_iou (30 / 100 is 0.3 exactly in float64)
    anchors_c = np.array([[0, 0, 10, 4], [0, 0, 10, 10], [10, 10, 20, 20]], float)
    gt_c = np.array([[0, 0, 10, 3]], float)
    deltas_c = np.array([[0, -0.125, 0, math.log(0.75)], [0, 0, 0, 0], [0, 0, 0, 0]])
    # D: a GT whose best anchor has an IoU below negative_iou
    anchors_d = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    gt_d = np.array([[0, 0, 4, 4]], float)
    deltas_d = np.array([[-0.3, -0.3, math.log(0.4), math.log(0.4)], [0, 0, 0, 0]])
    grid = _grid(4, 6, 16.0, [(16, 16), (32, 16), (16, 32)])          # 72 anchors, image (64, 96)
    gt_few = np.array([[40, 8, 72, 24]], float)
    gt_many = np.array([[0, 0, 48, 32], [50, 20, 94, 60], [20, 34, 52, 62]], float)
    return [
        Case("IoU exactly 0.7, a tie for a GT's best anchor, border anchors",
             (anchors_a, gt_a, (64, 96)),
             expected=(np.array([1, 1, 0, -1, 1, 1, -1]), deltas_a),
             about="anchor 1 has IoU 70/100 = 0.7 (positive: >=); anchors 4 and 5 tie as GT 1's best "
                   "(IoU 0.444), both positive; anchors 3 and 6 cross the border: ignored"),
        Case("a GT reached only by border anchors; a best anchor that crosses the border",
             (anchors_b, gt_b, (48, 48)),
             expected=(np.array([1, 0, -1, 1, -1]), deltas_b),
             about="GT 2 overlaps no inside anchor (max IoU 0: no best anchor); GT 1's best anchor "
                   "overall (2) crosses the border, so its best inside anchor (3, IoU 0.23) is positive"),
        Case("no GT boxes: inside anchors negative, sampled to batch_size",
             (grid, np.zeros((0, 4)), (64, 96)), {"batch_size": 10, "seed": 3}),
        Case("few positives: negatives fill the batch", (grid, gt_few, (64, 96)),
             {"batch_size": 12, "positive_fraction": 0.5, "seed": 1},
             about="at most 6 positives; fewer exist, so 12 - (positives) negatives"),
        Case("many positives: capped at batch_size * positive_fraction", (grid, gt_many, (64, 96)),
             {"batch_size": 8, "positive_fraction": 0.25, "seed": 7}),
        Case("IoU exactly 0.3: ignored, not negative", (anchors_c, gt_c, (20, 20)),
             expected=(np.array([1, -1, 0]), deltas_c),
             about="anchor 1 has IoU 30/100 = 0.3 with the GT, not < 0.3; anchor 0 (IoU 0.75) is positive"),
        Case("a GT's best anchor below negative_iou: positive wins", (anchors_d, gt_d, (40, 40)),
             expected=(np.array([1, 0]), deltas_d),
             about="anchor 0 is the small GT's best anchor at IoU 16/100 = 0.16 < 0.3: positive, not negative"),
        Case("no anchors", (np.zeros((0, 4)), gt_a, (64, 96)),
             expected=(np.zeros(0, np.int64), np.zeros((0, 4)))),
        Case("another seed", (grid, gt_many, (64, 96)), {"batch_size": 8, "positive_fraction": 0.25,
                                                         "seed": 12345}, public=False),
        Case("thresholds 0.5 / 0.5: no ignored band", (grid, gt_many, (64, 96)),
             {"positive_iou": 0.5, "negative_iou": 0.5}, public=False),
        Case("batch_size 0: nothing sampled", (grid, gt_many, (64, 96)), {"batch_size": 0}, public=False),
    ]


_SIZES = [(16, 16), (32, 32), (8, 32), (32, 8), (24, 12), (12, 24), (48, 48), (64, 32)]


def _targets_random_case(rng: np.random.Generator) -> Case:
    h, w = (int(v) for v in rng.integers(2, 6, 2))
    stride = 16
    pick = rng.choice(len(_SIZES), size=int(rng.integers(1, 4)), replace=False)
    anchors = _grid(h, w, float(stride), [_SIZES[i] for i in pick])
    H, W = h * stride, w * stride
    m = int(rng.integers(0, 5))
    x1 = rng.integers(0, W - 6, m)
    y1 = rng.integers(0, H - 6, m)
    x2 = np.minimum(x1 + rng.integers(6, 60, m), W)
    y2 = np.minimum(y1 + rng.integers(6, 60, m), H)
    gt = np.stack([x1, y1, x2, y2], axis=1).astype(np.float64).reshape(-1, 4)
    kwargs: dict = {"seed": int(rng.integers(0, 10000))}
    kwargs["batch_size"] = int(rng.choice([256, 16, 8, 5]))
    if rng.random() < 0.5:
        kwargs["positive_fraction"] = float(rng.choice([0.25, 0.5, 1.0]))
    if rng.random() < 0.3:
        kwargs["positive_iou"], kwargs["negative_iou"] = 0.6, 0.4
    return Case("", (anchors, gt, (H, W)), kwargs)


RPN_TARGETS = register(Exercise(
    name="rpn_targets",
    chapter=CHAPTER,
    minutes={"loops": 10, "numpy": 10, "tf": 45},   # loops, numpy: label_anchors, subsample_labels, encode
    stretch=("tf",),
    signature=("rpn_targets(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3, "
               "batch_size=256, positive_fraction=0.5, seed=0) -> (labels (N,), deltas (N, 4))"),
    summary="Label anchors 1/0/-1 by IoU (border anchors ignored, each GT's best anchors positive), "
            "sample a batch by the seeded priority, and encode the positives' targets.",
    tiers={"loops": f"{REF}:rpn_targets_loops", "numpy": f"{REF}:rpn_targets_numpy",
           "tf": f"{REF}:rpn_targets_tf"},
    edge_cases=_targets_edge_cases,
    random_case=_targets_random_case,
    outputs=(Output("labels", "int"),
             Output("deltas", "float", rtol=1e-4, atol=1e-4, strict_atol=1e-6)),
    mistakes=(
        Mistake("> instead of >=",
                "An anchor with IoU exactly positive_iou is positive: the rule is IoU >= 0.7, not > 0.7.",
                wrong=_switch(strict=True)),
        Mistake("GT's best anchor forgotten",
                "Some GT boxes have no positive anchor in yours: an anchor is also positive when it is "
                "one of a GT box's best anchors (largest IoU with that GT among the inside anchors), "
                "even below positive_iou, so every reachable object gets an anchor.",
                wrong=_switch(no_best=True)),
        Mistake("only one best anchor per GT",
                "You kept a single best anchor per GT box (argmax); every anchor that ties for a GT's "
                "largest IoU is positive (compare iou == best, not argmax).",
                wrong=_switch(single_best=True)),
        Mistake("border anchors not ignored",
                "Anchors crossing the image border (x1 < 0, y1 < 0, x2 > width or y2 > height) must be "
                "ignored (-1) whatever their IoU, and left out of each GT's best-anchor search.",
                wrong=_switch(no_border=True)),
        Mistake("GT with no overlap given best anchors",
                "A GT box that no inside anchor overlaps (its largest IoU is 0) has no best anchor: "
                "otherwise every anchor ties at IoU 0 and becomes positive. Require best IoU > 0.",
                wrong=_switch(zero_best=True)),
        Mistake("best anchor searched among border anchors",
                "Look for each GT's best anchor among the inside anchors only: when a border-crossing "
                "anchor overlaps a GT most, the GT's best inside anchor must still be positive.",
                wrong=_switch(best_all=True)),
        Mistake("deltas for every anchor",
                "Regression targets are for the positive anchors only (label 1 after sampling); "
                "fill the other rows with zeros.", wrong=_switch(all_deltas=True)),
        Mistake("encoded the wrong way round",
                "Your targets encode the anchor relative to the GT box: use encode(gt_box, anchor), "
                "offsets in anchor sizes and log(gt size / anchor size).",
                wrong=_switch(reversed_encode=True)),
        Mistake("no subsampling",
                "Keep at most int(batch_size * positive_fraction) positives and batch_size anchors in "
                "all; the other positives and negatives become -1.", wrong=_switch(no_sampling=True)),
        Mistake("sampled in index order",
                "Your sampling keeps the first anchors by index. Rank positives and negatives by "
                "sampling_priority(len(anchors), seed) from workshop.models.rpn and keep the lowest.",
                wrong=_switch(index_order=True)),
        Mistake("negatives not topped up",
                "When there are fewer positives than the cap, negatives fill the rest of the batch: "
                "keep batch_size - (positives kept) negatives, not batch_size * (1 - positive_fraction).",
                wrong=_switch(no_topup=True)),
        Mistake("IoU equal to negative_iou counted negative",
                "An anchor whose largest IoU equals negative_iou is not negative: the rule is "
                "IoU < 0.3, not <= 0.3 (it stays ignored, -1, unless it is positive).",
                wrong=_switch(negative_inclusive=True)),
        Mistake("negatives labelled after positives",
                "A GT's best anchor can have an IoU below negative_iou, and it must stay positive: "
                "label the negatives first and the positives after (positive wins).",
                wrong=_switch(negatives_last=True)),
        Mistake("anchors touching the border ignored",
                "An anchor that touches the image border (x1 = 0, y1 = 0, x2 = width or y2 = height) "
                "is inside: it crosses the border only when x1 < 0, y1 < 0, x2 > width or "
                "y2 > height.", wrong=_switch(touching_outside=True)),
        Mistake("image_shape read as (width, height)",
                "image_shape is (height, width), y first: an anchor is inside when x2 <= width = "
                "image_shape[1] and y2 <= height = image_shape[0].",
                wrong=_switch(shape_swapped=True)),
        Mistake("deltas for positives dropped by the sampling",
                "Your deltas fill the rows of every positive anchor, also those the sampling turned "
                "to -1: compute the targets after the sampling, for the final label-1 anchors only.",
                wrong=_switch(deltas_unsampled=True)),
    ),
    tf_static=("image_shape", "positive_iou", "negative_iou", "batch_size", "positive_fraction", "seed"),
    no_loops_over=("anchors",),   # the numpy tier: no Python loop over anchors
))


# ============================================================================================
# rpn_proposals
# ============================================================================================
def _wrong_nms(boxes, scores, thr, order, inclusive=False):
    kept = []
    rest = list(order)
    while rest:
        i = rest.pop(0)
        kept.append(i)
        if rest:
            ious = _iou(boxes[i:i + 1], boxes[rest])[0]
            rest = [r for r, v in zip(rest, ious) if (v < thr if inclusive else v <= thr)]
    return kept


def _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000, post_nms_top_n=300,
               nms_threshold=0.7, min_size=0, *, no_clip=False, clip_swapped=False, keep_small=False,
               size_before_clip=False, unstable=False, no_post=False, nms_first=False, sigmoid=False,
               clip_minus_one=False, size_strict=False, top_n_first=False, nms_inclusive=False):
    a = np.asarray(anchors, np.float64).reshape(-1, 4)
    d = np.asarray(deltas, np.float64).reshape(-1, 4)
    s = np.asarray(objectness, np.float64).reshape(-1)
    H, W = float(image_shape[0]), float(image_shape[1])
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    cx, cy = d[:, 0] * aw + a[:, 0] + 0.5 * aw, d[:, 1] * ah + a[:, 1] + 0.5 * ah
    w, h = np.exp(np.minimum(d[:, 2], CLAMP)) * aw, np.exp(np.minimum(d[:, 3], CLAMP)) * ah
    raw = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    boxes = raw.copy()
    if not no_clip:
        xmax, ymax = (H, W) if clip_swapped else (W, H)
        if clip_minus_one:
            xmax, ymax = xmax - 1, ymax - 1
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, xmax)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, ymax)
    sized = raw if size_before_clip else boxes
    bw, bh = sized[:, 2] - sized[:, 0], sized[:, 3] - sized[:, 1]
    big = np.ones(len(a), bool) if keep_small else (
        (bw > min_size) & (bh > min_size) if size_strict else (bw >= min_size) & (bh >= min_size))
    if top_n_first:                         # the best pre_nms_top_n of all, then the small ones dropped
        best = np.argsort(-s, kind="stable")[:pre_nms_top_n]
        idx = np.sort(best[big[best]])
    else:
        idx = np.flatnonzero(big)
    if unstable:
        order = idx[np.argsort(s[idx], kind="stable")[::-1]]
    else:
        order = idx[np.argsort(-s[idx], kind="stable")]
    if nms_first:
        final = _wrong_nms(boxes, s, nms_threshold, order)[:pre_nms_top_n]
    else:
        final = _wrong_nms(boxes, s, nms_threshold, order[:pre_nms_top_n], nms_inclusive)
    if not no_post:
        final = final[:post_nms_top_n]
    final = np.asarray(final, np.int64)
    out = s[final]
    if sigmoid:
        out = 1.0 / (1.0 + np.exp(-out))
    return boxes[final].reshape(-1, 4), out


def _pswitch(**flags):
    def wrong(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000, post_nms_top_n=300,
              nms_threshold=0.7, min_size=0):
        return _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                          nms_threshold, min_size, **flags)
    return wrong


def _hand_example():
    anchors = np.array([[0, 0, 20, 20], [2, 0, 22, 20], [50, 30, 70, 50], [30, 10, 34, 12],
                        [20, 20, 40, 40], [0, 25, 10, 35], [58, 0, 68, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.5, 0.5, 0.6])
    deltas = np.zeros((7, 4))
    deltas[4, 0] = 0.5                               # anchor 4 moves 10 px right
    return anchors, scores, deltas


def _proposals_edge_cases() -> list[Case]:
    anchors, scores, deltas = _hand_example()
    shape = (40, 60)
    rng = np.random.default_rng(11)
    grid = _grid(5, 7, 8.0, [(16, 16), (24, 12)])
    gs = np.round(rng.normal(size=len(grid)), 3)
    gd = np.round(rng.normal(0, 0.3, size=(len(grid), 4)), 3)
    return [
        Case("hand example: clip, min_size 3, NMS, equal scores", (anchors, scores, deltas, shape),
             {"pre_nms_top_n": 10, "post_nms_top_n": 10, "min_size": 3},
             expected=(np.array([[0, 0, 20, 20], [50, 30, 60, 40], [30, 20, 50, 40], [0, 25, 10, 35]], float),
                       np.array([0.9, 0.7, 0.5, 0.5])),
             about="3 is 4x2 (too small), 6 is 2 px wide once clipped, 1 overlaps 0 at IoU 0.82 "
                   "(suppressed), 2 is clipped to the 60x40 image, 4 and 5 tie (4 first)"),
        Case("pre_nms_top_n 3: NMS among the 3 best only", (anchors, scores, deltas, shape),
             {"pre_nms_top_n": 3, "post_nms_top_n": 10, "min_size": 0},
             expected=(np.array([[30, 10, 34, 12], [0, 0, 20, 20]], float), np.array([0.95, 0.9])),
             about="the best 3 are 3, 0, 1; NMS drops 1; nothing refills"),
        Case("pre_nms_top_n 3 after dropping small boxes", (anchors, scores, deltas, shape),
             {"pre_nms_top_n": 3, "post_nms_top_n": 10, "min_size": 3},
             expected=(np.array([[0, 0, 20, 20], [50, 30, 60, 40]], float), np.array([0.9, 0.7])),
             about="3 and 6 are too small and go first; the best 3 of the rest are 0, 1, 2; NMS drops 1"),
        Case("min_size 2: a box exactly 2 wide is kept",
             (np.array([[0, 0, 2, 10], [5, 5, 6, 15]], float), np.array([0.5, 0.6]), np.zeros((2, 4)), (20, 20)),
             {"min_size": 2}, expected=(np.array([[0, 0, 2, 10]], float), np.array([0.5])),
             about="width 2 is not < 2 (kept); width 1 is (dropped)"),
        Case("IoU exactly the NMS threshold: kept",
             (np.array([[0, 0, 20, 10], [0, 0, 10, 10], [30, 0, 40, 10]], float), np.array([0.9, 0.8, 0.7]),
              np.zeros((3, 4)), (20, 50)),
             {"nms_threshold": 0.5},
             expected=(np.array([[0, 0, 20, 10], [0, 0, 10, 10], [30, 0, 40, 10]], float),
                       np.array([0.9, 0.8, 0.7])),
             about="boxes 0 and 1 overlap at IoU 100 / 200 = 0.5, not > 0.5: both stay"),
        Case("post_nms_top_n 2", (anchors, scores, deltas, shape),
             {"pre_nms_top_n": 10, "post_nms_top_n": 2, "min_size": 3},
             expected=(np.array([[0, 0, 20, 20], [50, 30, 60, 40]], float), np.array([0.9, 0.7]))),
        Case("a 5x7 grid of logits", (grid, gs, gd, (40, 56)),
             {"pre_nms_top_n": 40, "post_nms_top_n": 15, "nms_threshold": 0.5, "min_size": 4}),
        Case("no anchors", (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4)), shape),
             expected=(np.zeros((0, 4)), np.zeros(0))),
        Case("every box too small", (anchors[3:4], scores[3:4], deltas[3:4], shape), {"min_size": 5},
             expected=(np.zeros((0, 4)), np.zeros(0))),
        Case("defaults on a grid", (grid, gs, gd, (40, 56)), public=False),
        Case("NMS threshold 0.3, big deltas", (grid, gs, gd * 4, (40, 56)),
             {"nms_threshold": 0.3, "post_nms_top_n": 20}, public=False),
    ]


def _proposals_random_case(rng: np.random.Generator) -> Case:
    h, w = (int(v) for v in rng.integers(2, 7, 2))
    stride = float(rng.choice([8.0, 16.0]))
    pick = rng.choice(len(_SIZES), size=int(rng.integers(1, 4)), replace=False)
    anchors = _grid(h, w, stride, [_SIZES[i] for i in pick])
    n = len(anchors)
    scores = rng.normal(0, 2, n)
    deltas = rng.normal(0, 0.25, (n, 4))
    kwargs = {"pre_nms_top_n": int(rng.choice([n, max(1, n // 2), 5])),
              "post_nms_top_n": int(rng.choice([n, 10, 3])),
              "nms_threshold": float(rng.choice([0.5, 0.7])),
              "min_size": float(rng.choice([0.0, 4.0, 10.0]))}
    return Case("", (anchors, scores, deltas, (int(h * stride), int(w * stride))), kwargs)


def _proposals_benchmarks() -> list[Case]:
    rng = np.random.default_rng(0)
    sizes = [(s / math.sqrt(r), s * math.sqrt(r)) for r in (0.5, 1.0, 2.0) for s in (32.0, 64.0, 128.0)]
    anchors = _grid(48, 46, 16.0, sizes)[:20000]        # 48*46*9 = 19,872 -> pad to 20,000 below
    extra = _grid(1, 128, 16.0, sizes)[: 20000 - len(anchors)]
    anchors = np.concatenate([anchors, extra])
    scores = rng.normal(0, 2, len(anchors))
    deltas = rng.normal(0, 0.2, (len(anchors), 4))
    return [Case("20,000 anchors, pre-NMS 6,000, post-NMS 300", (anchors, scores, deltas, (768, 736)),
                 {"pre_nms_top_n": 6000, "post_nms_top_n": 300, "nms_threshold": 0.7, "min_size": 0})]


RPN_PROPOSALS = register(Exercise(
    name="rpn_proposals",
    chapter=CHAPTER,
    minutes={"loops": 25, "numpy": 20, "tf": 35},
    stretch=("tf",),
    signature=("rpn_proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000, "
               "post_nms_top_n=300, nms_threshold=0.7, min_size=0) -> (boxes (K, 4), scores (K,))"),
    summary="Decode, clip, drop small boxes, keep the best pre_nms_top_n, NMS, keep post_nms_top_n.",
    tiers={"loops": f"{REF}:rpn_proposals_loops", "numpy": f"{REF}:rpn_proposals_numpy",
           "tf": f"{REF}:rpn_proposals_tf"},
    edge_cases=_proposals_edge_cases,
    random_case=_proposals_random_case,
    outputs=(Output("boxes", "float", rtol=1e-4, atol=1e-3, strict_atol=1e-6),
             Output("scores", "float", rtol=1e-4, atol=1e-5, strict_atol=1e-9)),
    mistakes=(
        Mistake("not clipped",
                "Your boxes leave the image: clip x1, x2 to [0, width] and y1, y2 to [0, height] "
                "after decoding.", wrong=_pswitch(no_clip=True)),
        Mistake("clipped with height and width swapped",
                "You clipped x to the height and y to the width: image_shape is (height, width); "
                "x goes to [0, width], y to [0, height].", wrong=_pswitch(clip_swapped=True)),
        Mistake("small boxes kept",
                "Drop the boxes whose width or height is below min_size (after clipping), before "
                "choosing the top scores.", wrong=_pswitch(keep_small=True)),
        Mistake("min_size tested before clipping",
                "Test min_size on the clipped boxes: a box mostly outside the image is small once "
                "clipped, and that is the box you would keep.", wrong=_pswitch(size_before_clip=True)),
        Mistake("unstable sort",
                "Boxes with equal scores must keep their index order (lower index first): sort with a "
                "stable sort on -score (np.argsort(-s, kind='stable')), not reverse an ascending sort.",
                wrong=_pswitch(unstable=True)),
        Mistake("NMS before the pre-NMS top-N",
                "Take the pre_nms_top_n best boxes first and run NMS on those only (that is what makes "
                "NMS affordable); boxes suppressed there are not replaced.", wrong=_pswitch(nms_first=True)),
        Mistake("post_nms_top_n ignored",
                "Keep only the first post_nms_top_n boxes that survive NMS.", wrong=_pswitch(no_post=True)),
        Mistake("scores transformed",
                "Return the objectness values as given (logits stay logits): sorting by logit or by "
                "probability gives the same order.", wrong=_pswitch(sigmoid=True)),
        Mistake("clipped to width - 1",
                "Clip x to [0, width] and y to [0, height]: coordinates are continuous, so a box may "
                "end at the image's right edge, x2 = width (not width - 1, the last pixel's index).",
                wrong=_pswitch(clip_minus_one=True)),
        Mistake("min_size compared with >",
                "Drop a box only when its width or height is < min_size: a box exactly min_size wide "
                "stays (keep width >= min_size, not > min_size).", wrong=_pswitch(size_strict=True)),
        Mistake("top-N before dropping small boxes",
                "Drop the small boxes first, then keep the pre_nms_top_n best scores among the rest: "
                "your top-N was taken before, so the small boxes in it took the places of others.",
                wrong=_pswitch(top_n_first=True)),
        Mistake("NMS suppresses IoU equal to the threshold",
                "NMS suppresses a box when its IoU with a kept box is > nms_threshold; a box at exactly "
                "the threshold stays (suppress IoU > threshold, not >=).",
                wrong=_pswitch(nms_inclusive=True)),
    ),
    tf_static=("image_shape", "pre_nms_top_n", "post_nms_top_n", "nms_threshold", "min_size"),
    benchmarks=_proposals_benchmarks,
    # no baseline: tf.image.generate_bounding_box_proposals has a GPU kernel only
))


# ============================================================================================
# rpn_loss
# ============================================================================================
def _loss(objectness, pred_deltas, labels, target_deltas, beta=1.0 / 9, *, ignored_as_negative=False,
          all_anchors_norm=False, box_by_positives=False, by_positives=False, box_on_sampled=False,
          box_on_all=False, sigmoid_twice=False, logits_as_probs=False, box_l1=False, box_l2=False,
          beta_one=False, no_clamp=False, naive_bce=False):
    z = np.asarray(objectness, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    d = np.asarray(pred_deltas, np.float64).reshape(-1, 4) - np.asarray(target_deltas, np.float64).reshape(-1, 4)
    if ignored_as_negative:
        y = np.where(y < 0, 0, y)
    sampled, positive = y >= 0, y == 1
    t = positive.astype(np.float64)
    with np.errstate(all="ignore"):
        if logits_as_probs:
            bce = -(t * np.log(z) + (1 - t) * np.log(1 - z))
        elif naive_bce:
            q = 1.0 / (1.0 + np.exp(-z))
            bce = -(t * np.log(q) + (1 - t) * np.log(1 - q))
        else:
            x = 1.0 / (1.0 + np.exp(-z)) if sigmoid_twice else z
            bce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        b = 1.0 if beta_one else float(beta)
        a = np.abs(d)
        sl1 = a if box_l1 else 0.5 * a ** 2 if box_l2 else np.where(a < b, 0.5 * a ** 2 / b, a - 0.5 * b)
        rows = np.ones(len(y), bool) if box_on_all else sampled if box_on_sampled else positive
        obj_sum, box_sum = bce[sampled].sum(), sl1[rows].sum()
        count = float(sampled.sum())
        if all_anchors_norm:
            count = float(len(y))
        if by_positives:
            count = float(positive.sum())
        s = count if no_clamp else max(count, 1.0)
        box_s = max(float(positive.sum()), 1.0) if box_by_positives else s
        return float(obj_sum / s), float(box_sum / box_s)


def _lswitch(**flags):
    def wrong(objectness, pred_deltas, labels, target_deltas, beta=1.0 / 9):
        return _loss(objectness, pred_deltas, labels, target_deltas, beta, **flags)
    return wrong


def _loss_worked_example():
    """Six anchors: two positives, two negatives, two ignored (with wild values that must not
    count); sigmoid(ln 3) = 3/4, so the cross-entropies are logs of simple numbers."""
    l3 = math.log(3.0)
    logits = np.array([0.0, l3, -l3, 5.0, -l3, -4.0])
    labels = np.array([1, 0, 1, -1, 0, -1])
    target = np.array([[0.1, -0.2, 0.3, 0.0], [0, 0, 0, 0], [0.5, 0.0, -0.1, 0.2],
                       [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    diff = np.array([[0.05, -0.1, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0], [-1.0, 0.2, 0.0, 0.1],
                     [3.0, 3.0, 3.0, 3.0], [0.0, -2.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    return logits, target + diff, labels, target


def _loss_edge_cases() -> list[Case]:
    logits, pred, labels, target = _loss_worked_example()
    half_beta = 1 / 18
    obj = (math.log(2) + math.log(4) + math.log(4) + math.log(4 / 3)) / 4
    box = ((0.5 * 0.05 ** 2 * 9 + 0.5 * 0.1 ** 2 * 9 + (0.5 - half_beta))
           + ((1.0 - half_beta) + (0.2 - half_beta) + 0.5 * 0.1 ** 2 * 9)) / 4
    rng = np.random.default_rng(3)
    n = 40
    z40 = np.round(rng.normal(0, 2, n), 3)
    l40 = rng.choice([-1, -1, 0, 0, 0, 1], n)
    t40 = np.round(rng.normal(0, 0.3, (n, 4)), 3)
    p40 = np.round(t40 + rng.normal(0, 0.2, (n, 4)), 3)
    probs = np.array([0.9, 0.2, 0.6, 0.3])
    return [
        Case("worked example: 2 positives, 2 negatives, 2 ignored", (logits, pred, labels, target),
             expected=(obj, box),
             about="S = 4 sampled anchors; objectness (ln 2 + ln 4 + ln 4 + ln 4/3) / 4 (anchor 0: "
                   "p = 1/2, anchor 1: p = 3/4 but negative, anchor 2: p = 1/4 but positive, anchor 4: "
                   "p = 1/4, negative); box: smooth L1 of the positives' 8 differences "
                   "(0.05, -0.1, 0.5, 0; -1, 0.2, 0, 0.1) with beta = 1/9, summed, / 4"),
        Case("worked example, beta = 0.5", (logits, pred, labels, target), {"beta": 0.5},
             expected=(obj, (0.0025 + 0.01 + 0.25 + 0.75 + 0.04 + 0.01) / 4),
             about="every |difference| below 0.5 is now quadratic, 0.5 x**2 / 0.5 = x**2; |-1| gives 1 - 0.25"),
        Case("logits that look like probabilities", (probs, np.zeros((4, 4)), np.array([1, 0, 1, 0]),
                                                     np.zeros((4, 4))),
             expected=(float(np.mean(np.log1p(np.exp(-np.array([0.9, -0.2, 0.6, -0.3]))))), 0.0),
             about="0.9 is a logit: sigmoid(0.9) = 0.71, not 0.9; no box differences"),
        Case("nothing sampled: both terms 0", (logits, pred, np.full(6, -1), target), expected=(0.0, 0.0),
             about="the normaliser is max(sampled, 1): 0 / 1, not 0 / 0"),
        Case("40 anchors, no positives", (z40, p40, np.where(l40 == 1, 0, l40), t40)),
        Case("40 anchors", (z40, p40, l40, t40)),
        Case("no anchors", (np.zeros(0), np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros((0, 4))),
             expected=(0.0, 0.0), public=False),
        Case("very large logits: a stable cross-entropy", (np.array([60.0, -60.0, 40.0, -40.0]), np.zeros((4, 4)),
                                                           np.array([1, 0, 0, 1]), np.zeros((4, 4))),
             expected=(40.0 / 2, 0.0),
             about="anchors 0 and 1 right and confident (about 1e-26 each), 2 and 3 wrong by 40 each; "
                   "sigmoid(40) is 1.0 in floating point, so log(1 - p) is -inf: compute from the logit"),
        Case("all positive, beta 1", (z40, p40, np.ones(n, np.int64), t40), {"beta": 1.0}, public=False),
    ]


def _loss_random_case(rng: np.random.Generator) -> Case:
    n = int(rng.integers(1, 80))
    logits = rng.normal(0, 2.5, n)
    labels = rng.choice([-1, 0, 1], n, p=[0.5, 0.35, 0.15])
    target = rng.normal(0, 0.3, (n, 4))
    pred = target + rng.normal(0, rng.choice([0.05, 0.3, 1.0]), (n, 4))
    kwargs = {"beta": float(rng.choice([0.25, 1.0]))} if rng.random() < 0.2 else {}
    return Case("", (logits, pred, labels, target), kwargs)


RPN_LOSS = register(Exercise(
    name="rpn_loss",
    chapter=CHAPTER,
    minutes={"loops": 15, "numpy": 10, "tf": 15},
    signature=("rpn_loss(objectness, pred_deltas, labels, target_deltas, beta=1/9) "
               "-> (objectness_loss, box_loss)"),
    summary="Binary cross-entropy from the logits on the sampled anchors and smooth L1 on the "
            "positives' deltas, both summed and divided by the number of sampled anchors.",
    tiers={"loops": f"{REF}:rpn_loss_loops", "numpy": f"{REF}:rpn_loss_numpy", "tf": f"{REF}:rpn_loss_tf"},
    edge_cases=_loss_edge_cases,
    random_case=_loss_random_case,
    outputs=(Output("objectness_loss", "float", rtol=1e-4, atol=1e-5, strict_atol=1e-9),
             Output("box_loss", "float", rtol=1e-4, atol=1e-5, strict_atol=1e-9)),
    mistakes=(
        Mistake("ignored anchors counted as negatives",
                "Your loss counts the ignored anchors (label -1) as background. They were left out of "
                "the sample on purpose: only labels 0 and 1 enter the cross-entropy, and the normaliser "
                "is the number of sampled anchors, (labels >= 0).sum().",
                wrong=_lswitch(ignored_as_negative=True)),
        Mistake("divided by all anchors",
                "Your terms are divided by the number of anchors, N; divide both sums by the number of "
                "*sampled* anchors, max((labels >= 0).sum(), 1).", wrong=_lswitch(all_anchors_norm=True)),
        Mistake("divided by the positives",
                "Your terms are divided by the number of positives; the course (as Faster R-CNN and "
                "Detectron2) divides both sums by the number of sampled anchors, max((labels >= 0).sum(), 1).",
                wrong=_lswitch(by_positives=True)),
        Mistake("box term divided by the positives",
                "Your objectness term is right, but your box term is divided by the number of positives: "
                "divide it by the number of sampled anchors too, max((labels >= 0).sum(), 1), so that "
                "the two terms keep the balance the course trains with.",
                wrong=_lswitch(box_by_positives=True)),
        Mistake("regression on negatives",
                "Your box term includes the negative anchors: there is no box to regress onto background. "
                "Sum the smooth L1 over the positive anchors (label 1) only.", wrong=_lswitch(box_on_sampled=True)),
        Mistake("regression on every anchor",
                "Your box term includes negative and ignored anchors: sum the smooth L1 over the positive "
                "anchors (label 1) only.", wrong=_lswitch(box_on_all=True)),
        Mistake("sigmoid applied twice",
                "Your objectness goes through the sigmoid twice: the cross-entropy *from logits* applies "
                "the sigmoid itself, so give it the raw logits (or compute log sigmoid(z) yourself, "
                "stably: max(z, 0) - z*y + log(1 + exp(-|z|))).", wrong=_lswitch(sigmoid_twice=True)),
        Mistake("logits used as probabilities",
                "Your cross-entropy takes the logits for probabilities (log(z), log(1 - z)); the head "
                "outputs logits, any real number: p = sigmoid(z), and stably "
                "BCE = max(z, 0) - z*y + log(1 + exp(-|z|)).", wrong=_lswitch(logits_as_probs=True)),
        Mistake("unstable cross-entropy",
                "Your objectness loss is NaN or inf for large logits: sigmoid(40) is exactly 1.0 in "
                "floating point, and log(1 - 1.0) = -inf. Compute the cross-entropy from the logit, "
                "max(z, 0) - z*y + log(1 + exp(-|z|)), which is exact and never overflows.",
                wrong=_lswitch(naive_bce=True)),
        Mistake("plain L1",
                "Your box term is the plain L1 |x|: smooth L1 is 0.5 x**2 / beta where |x| < beta and "
                "|x| - 0.5 beta elsewhere.", wrong=_lswitch(box_l1=True)),
        Mistake("L2 instead of smooth L1",
                "Your box term is the squared error 0.5 x**2 everywhere: smooth L1 is quadratic only where "
                "|x| < beta (0.5 x**2 / beta) and linear beyond (|x| - 0.5 beta), so a bad anchor cannot "
                "dominate the loss.", wrong=_lswitch(box_l2=True)),
        Mistake("beta = 1",
                "Your smooth L1 switches from quadratic to linear at |x| = 1 (PyTorch's default); the RPN's "
                "beta is the argument beta, 1/9 by default: 0.5 x**2 / beta below it, |x| - 0.5 beta above.",
                wrong=_lswitch(beta_one=True)),
        Mistake("0 / 0 with nothing sampled",
                "With no sampled anchor your loss is 0 / 0 = NaN: divide by max(number sampled, 1), so "
                "that an image with nothing sampled adds 0.", wrong=_lswitch(no_clamp=True)),
    ),
    tf_static=("beta",),
    no_loops_over=("objectness",),
    answer_calls=("workshop.models.rpn.rpn_loss", "workshop.models.rpn.rpn_objectness_loss",
                  "workshop.models.rpn.rpn_box_loss", "workshop.models.rpn.smooth_l1"),
))
