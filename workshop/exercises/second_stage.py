"""Chapter 06, second part: the box head's training targets (``roi_targets``), its loss
(``head_loss``) and its boxes (``decode_per_class``).

Boxes are float ``(N, 4)`` xyxy in continuous pixels (no "+1"); class ids ``1..K``, 0 the
background. The rules are in :mod:`workshop.reference.second_stage`'s docstring. The wrong
implementations below are self-contained numpy (the grader hides ``workshop.reference``): one
small ``roi_targets``, ``head_loss`` and ``decode_per_class`` with a switch per mistake.

Length: the second stage's three exercises, each with its cases and every declared mistake's
self-contained wrong implementation, read together when the stage changes.
"""

from __future__ import annotations

import math

import numpy as np

from . import register
from .rpn import _iou
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.second_stage"
CHAPTER = "06_roi_pooling"
HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _encode(boxes: np.ndarray, anchors: np.ndarray, weights=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    wx, wy, ww, wh = weights
    gw, gh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    gx, gy = boxes[:, 0] + 0.5 * gw, boxes[:, 1] + 0.5 * gh
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * np.log(gw / aw), wh * np.log(gh / ah)],
                        axis=1)


# ============================================================================================
# roi_targets
# ============================================================================================
def _targets(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5, bg_iou_low=0.1,
             bg_iou_high=0.5, weights=HEAD_WEIGHTS, seed=0, *, no_low=False, fg_strict=False,
             rpn_weights=False, class_one=False, index_order=False, deltas_on_background=False,
             no_fg_cap=False, bg_fills_batch=False, no_gt_candidates=False, no_bg_topup=False):
    from ..conventions import sampling_priority

    p = np.asarray(proposals, np.float64).reshape(-1, 4)
    g = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    c = np.asarray(gt_classes).reshape(-1).astype(np.int64)
    cand = p if no_gt_candidates else np.concatenate([p, g])
    n = len(cand)
    overlaps = np.concatenate([_iou(cand, g), np.zeros((n, 1))], axis=1)
    best, match = overlaps.max(axis=1), overlaps.argmax(axis=1)
    order = np.arange(n) if index_order else np.argsort(sampling_priority(n, seed), kind="stable")
    is_fg = best[order] > fg_iou if fg_strict else best[order] >= fg_iou
    is_bg = (best[order] < bg_iou_high) & (True if no_low else best[order] >= bg_iou_low) & ~is_fg
    cap = n if no_fg_cap else int(int(batch_size) * float(fg_fraction))
    fg = order[is_fg][:cap]
    room = int(batch_size) if bg_fills_batch else int(batch_size) - (
        int(int(batch_size) * float(fg_fraction)) if no_bg_topup else len(fg))
    bg = order[is_bg][:max(room, 0)]
    labels = np.full(n, -1, np.int64)
    deltas = np.zeros((n, 4))
    labels[bg] = 0
    w = (1.0, 1.0, 1.0, 1.0) if rpn_weights else weights
    if len(g):
        labels[fg] = 1 if class_one else c[match[fg]]
        rows = np.concatenate([fg, bg]) if deltas_on_background else fg
        deltas[rows] = _encode(g[match[rows]], cand[rows], w)
    return labels, deltas


def _tswitch(**flags):
    def wrong(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5, bg_iou_low=0.1,
              bg_iou_high=0.5, weights=HEAD_WEIGHTS, seed=0):
        return _targets(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low,
                        bg_iou_high, weights, seed, **flags)
    return wrong


def _worked_example():
    """Two objects (class 2 at the origin, class 1 at (20, 20)), seven proposals whose IoUs are
    simple fractions: 0.5, 0.4, 0.1, 0.05, 0.8, 0 and 1/3."""
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    classes = np.array([2, 1])
    proposals = np.array([
        [0.0, 0.0, 10.0, 5.0],     # IoU 0.5 with the class-2 box: foreground (>= 0.5)
        [0.0, 0.0, 10.0, 4.0],     # 0.4: background
        [0.0, 0.0, 10.0, 1.0],     # 0.1: background (>= bg_iou_low)
        [0.0, 0.0, 10.0, 0.5],     # 0.05: ignored, it barely touches the object
        [20.0, 20.0, 30.0, 28.0],  # 0.8 with the class-1 box: foreground
        [40.0, 40.0, 50.0, 50.0],  # 0: ignored
        [5.0, 0.0, 15.0, 10.0],    # 50 / 150 = 1/3: background
    ])
    return proposals, gt, classes


def _worked_expected():
    labels = np.array([2, 0, 0, -1, 1, -1, 0, 2, 1])
    deltas = np.zeros((9, 4))
    deltas[0] = [0.0, 10.0 * 2.5 / 5.0, 0.0, 5.0 * math.log(10.0 / 5.0)]
    deltas[4] = [0.0, 10.0 * 1.0 / 8.0, 0.0, 5.0 * math.log(10.0 / 8.0)]
    return labels, deltas


def _targets_edge_cases() -> list[Case]:
    proposals, gt, classes = _worked_example()
    rng = np.random.default_rng(11)
    many = _jittered(rng, gt, 40)
    return [
        Case("worked example: 7 proposals, 2 objects", (proposals, gt, classes), expected=_worked_expected(),
             about="candidates = the 7 proposals then the 2 GT boxes; foreground: rows 0 (IoU 0.5, class 2), "
                   "4 (0.8, class 1) and the GT boxes themselves (7, 8); background: rows 1, 2 and 6 "
                   "(0.4, 0.1, 1/3); ignored: 3 (0.05 < 0.1) and 5 (0). Deltas with weights (10, 10, 5, 5): "
                   "row 0 is 10 x 5 centred at (5, 2.5) for the 10 x 10 box at (5, 5)"),
        Case("worked example, batch_size 4: the priority picks 1 foreground and 3 background",
             (proposals, gt, classes), {"batch_size": 4, "fg_fraction": 0.25, "seed": 3},
             about="int(4 x 0.25) = 1 foreground of the 4, the one of lowest sampling_priority(9, 3); "
                   "then 4 - 1 = 3 background of the 3"),
        Case("worked example, batch_size 3, fg_fraction 0.5", (proposals, gt, classes),
             {"batch_size": 3, "fg_fraction": 0.5, "seed": 0},
             about="int(3 x 0.5) = 1 foreground, then 2 of the 3 background candidates, by priority"),
        Case("worked example, batch_size 8, fg_fraction 0.75: the background fills the batch",
             (proposals, gt, classes), {"batch_size": 8, "fg_fraction": 0.75, "seed": 2},
             about="the cap is int(8 x 0.75) = 6 but only 4 candidates are foreground: all 4 kept, then "
                   "up to 8 - 4 = 4 background, so all 3 background candidates (not 8 - 6 = 2)"),
        Case("worked example, RPN-style weights (1, 1, 1, 1)", (proposals, gt, classes),
             {"weights": (1.0, 1.0, 1.0, 1.0)}),
        Case("no ground truth: nothing is foreground, nothing reaches bg_iou_low",
             (proposals, np.zeros((0, 4)), np.zeros(0, np.int64)), expected=(np.full(7, -1), np.zeros((7, 4))),
             about="every IoU is 0, below bg_iou_low = 0.1: no candidate is background either"),
        Case("no ground truth, bg_iou_low 0: every proposal is background",
             (proposals, np.zeros((0, 4)), np.zeros(0, np.int64)), {"bg_iou_low": 0.0},
             expected=(np.zeros(7, np.int64), np.zeros((7, 4)))),
        Case("no proposals: the GT boxes alone", (np.zeros((0, 4)), gt, classes),
             expected=(np.array([2, 1]), np.zeros((2, 4)))),
        Case("40 jittered proposals, 2 objects, seed 5", (many, gt, classes), {"batch_size": 16, "seed": 5}),
        Case("40 jittered proposals, no cap on the background", (many, gt, classes),
             {"batch_size": 64, "fg_fraction": 0.5, "seed": 1}, public=False),
    ]


def _jittered(rng, gt, n):
    """``n`` proposals around the GT boxes (and some anywhere), rounded to 0.5 px."""
    base = gt[rng.integers(0, len(gt), n)]
    size = base[:, 2:] - base[:, :2]
    jitter = rng.normal(0, 0.35, (n, 4)) * np.concatenate([size, size], axis=1)
    boxes = base + jitter
    x1y1 = np.minimum(boxes[:, :2], boxes[:, 2:] - 1)
    return np.round(np.concatenate([x1y1, np.maximum(boxes[:, 2:], x1y1 + 1)], axis=1) * 2) / 2


def _targets_random_case(rng: np.random.Generator) -> Case:
    m = int(rng.integers(0, 5))
    corner = np.round(rng.uniform(0, 80, (m, 2)))
    gt = np.concatenate([corner, corner + np.round(rng.uniform(8, 40, (m, 2)))], axis=1)
    classes = rng.integers(1, 6, m)
    n = int(rng.integers(0, 60))
    if m:
        proposals = _jittered(rng, gt, n)
    else:
        corner = np.round(rng.uniform(0, 100, (n, 2)))
        proposals = np.concatenate([corner, corner + np.round(rng.uniform(1, 30, (n, 2)))], axis=1)
    kwargs = {"batch_size": int(rng.choice([8, 16, 64])), "fg_fraction": float(rng.choice([0.25, 0.5])),
              "seed": int(rng.integers(0, 1000))}
    return Case("", (proposals, gt, classes), kwargs)


ROI_TARGETS = register(Exercise(
    name="roi_targets",
    chapter=CHAPTER,
    minutes={"loops": 30, "numpy": 25, "tf": 35},
    stretch=("tf",),
    signature=("roi_targets(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5, "
               "bg_iou_low=0.1, bg_iou_high=0.5, weights=(10.0, 10.0, 5.0, 5.0), seed=0) "
               "-> (labels (N+M,), deltas (N+M, 4))"),
    summary="The box head's training regions: proposals and GT boxes labelled foreground (their object's "
            "class), background (0) or ignored (-1) by IoU, sampled by priority, with per-class box "
            "targets encoded with weights (10, 10, 5, 5).",
    tiers={"loops": f"{REF}:roi_targets_loops", "numpy": f"{REF}:roi_targets_numpy",
           "tf": f"{REF}:roi_targets_tf"},
    edge_cases=_targets_edge_cases,
    random_case=_targets_random_case,
    outputs=(Output("labels", "int"),
             Output("deltas", "float", rtol=1e-4, atol=1e-4, strict_atol=1e-9)),
    mistakes=(
        Mistake("background from IoU 0",
                "Background is bg_iou_low <= IoU < bg_iou_high: a candidate that barely touches an object "
                "(IoU below bg_iou_low, 0.1 by default, including IoU 0) is left out (-1), as Fast R-CNN "
                "does; your background starts at 0.", wrong=_tswitch(no_low=True)),
        Mistake("foreground with >",
                "A candidate is foreground when its IoU is >= fg_iou: IoU exactly 0.5 counts (row 0 of "
                "the worked example). Yours uses >.", wrong=_tswitch(fg_strict=True)),
        Mistake("RPN weights",
                "Your deltas are encoded with weights (1, 1, 1, 1), the RPN's: the second stage encodes "
                "with the weights argument, (10, 10, 5, 5) by default (pass weights to encode).",
                wrong=_tswitch(rpn_weights=True)),
        Mistake("label 1 for every object",
                "Your foreground labels are all 1: the head classifies, so a foreground candidate's label "
                "is the class of its GT box, gt_classes[m] (m its GT of largest IoU).",
                wrong=_tswitch(class_one=True)),
        Mistake("sampled in index order",
                "Your sample takes the first candidates by index; take those of lowest "
                "sampling_priority(N + M, seed), foreground first, as rpn_targets does.",
                wrong=_tswitch(index_order=True)),
        Mistake("deltas for background",
                "Your background rows have deltas: there is no object to regress onto, so only the kept "
                "foreground rows get encode(gt, candidate, weights); every other row stays 0.",
                wrong=_tswitch(deltas_on_background=True)),
        Mistake("no foreground cap",
                "You keep every foreground candidate: at most int(batch_size * fg_fraction) are kept (by "
                "priority), so that the head sees mostly background, as at test time.",
                wrong=_tswitch(no_fg_cap=True)),
        Mistake("background fills the whole batch",
                "You keep up to batch_size background candidates; the batch is shared: at most "
                "batch_size - (kept foreground) background ones.", wrong=_tswitch(bg_fills_batch=True)),
        Mistake("background not topped up",
                "When fewer candidates are foreground than the cap, background fills the rest of the "
                "batch: keep up to batch_size - (foreground kept) background candidates, not "
                "batch_size - int(batch_size * fg_fraction).", wrong=_tswitch(no_bg_topup=True)),
        Mistake("GT boxes not among the candidates",
                "Your result has one row per proposal; the candidates are the proposals followed by the GT "
                "boxes (np.concatenate([proposals, gt_boxes])), so the result has N + M rows.",
                wrong=_tswitch(no_gt_candidates=True),
                detect=lambda case, received, expected: _rows(received) == len(np.asarray(case.args[0]))
                != _rows(expected)),
    ),
    tf_static=("batch_size", "fg_fraction", "fg_iou", "bg_iou_low", "bg_iou_high", "weights", "seed"),
    no_loops_over=("proposals",),
))


def _rows(output) -> int:
    """The number of rows of a result's first element (-1 when it has none)."""
    try:
        first = output[0] if isinstance(output, (tuple, list)) else output
        return int(np.asarray(first).shape[0])
    except (TypeError, IndexError, ValueError):
        return -1


# ============================================================================================
# head_loss
# ============================================================================================
def _loss(class_logits, box_deltas, labels, target_deltas, beta=1.0, *, all_classes=False,
          background_boxes=False, by_foreground=False, rpn_beta=False, unsampled_as_background=False,
          sigmoid=False, class_slot=False, coordinate_mean=False, naive_softmax=False):
    z = np.asarray(class_logits, np.float64)
    r, k1 = z.shape
    b = np.asarray(box_deltas, np.float64).reshape(r, k1 - 1, 4)
    t = np.asarray(target_deltas, np.float64).reshape(-1, 4)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if unsampled_as_background:
        y = np.where(y < 0, 0, y)
    sampled, fg = y >= 0, y >= 1
    rows = np.arange(r)
    with np.errstate(all="ignore"):
        if sigmoid:
            onehot = np.eye(k1)[np.maximum(y, 0)]
            ce = (np.maximum(z, 0) - z * onehot + np.log1p(np.exp(-np.abs(z)))).sum(axis=1)
        elif naive_softmax:
            e = np.exp(z)
            ce = -np.log(e[rows, np.maximum(y, 0)] / e.sum(axis=1))
        else:
            top = z.max(axis=1) if r else np.zeros(0)
            ce = top + np.log(np.exp(z - top[:, None]).sum(axis=1)) - z[rows, np.maximum(y, 0)]
        beta = 1.0 / 9 if rpn_beta else float(beta)
        if all_classes:
            d = np.abs(b - t[:, None, :]).reshape(r, -1)
        else:
            slot = np.minimum(y, k1 - 2) if class_slot else y - 1
            d = np.abs(b[rows, slot] - t)
        sl1 = np.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta)
        box_rows = sampled if background_boxes else fg
        s = max(int(sampled.sum()), 1)
        box_s = max(int(fg.sum()), 1) if by_foreground else s
        box = sl1[box_rows].sum() / box_s
        return float(ce[sampled].sum() / s), float(box / 4 if coordinate_mean else box)


def _lswitch(**flags):
    def wrong(class_logits, box_deltas, labels, target_deltas, beta=1.0):
        return _loss(class_logits, box_deltas, labels, target_deltas, beta, **flags)
    return wrong


def _loss_worked_example():
    """Four regions, two foreground classes: one of each class, one background, one not
    sampled (holding wild values that must not count). ln 2 and ln 3 logits give softmax
    probabilities 1/6, 2/6, 3/6."""
    l2, l3 = math.log(2.0), math.log(3.0)
    logits = np.array([[0.0, l2, l3],     # class 2: p = 3/6
                       [0.0, l3, l2],     # class 1: p = 3/6
                       [l3, l2, 0.0],     # background: p = 3/6
                       [9.0, -9.0, 4.0]])  # not sampled
    targets = np.array([[0.1, -0.2, 0.3, 0.0], [0.5, 0.0, -0.1, 0.2], [0.0] * 4, [0.0] * 4])
    boxes = np.zeros((4, 2, 4))
    boxes[0, 1] = targets[0] + [0.5, 0.0, -2.0, 0.0]      # class 2's box: off by 0.5 and -2
    boxes[0, 0] = [7.0, 7.0, 7.0, 7.0]                     # class 1's box of a class-2 region: untrained
    boxes[1, 0] = targets[1] + [0.0, 1.5, 0.0, 0.25]
    boxes[1, 1] = [-7.0, 7.0, -7.0, 7.0]
    boxes[2] = [[3.0, 3.0, 3.0, 3.0], [5.0, 5.0, 5.0, 5.0]]  # background: no box is trained
    boxes[3] = 100.0
    labels = np.array([2, 1, 0, -1])
    return logits, boxes, labels, targets


def _loss_edge_cases() -> list[Case]:
    logits, boxes, labels, targets = _loss_worked_example()
    ce = math.log(2.0)                                   # -log(3/6) for each of the 3 sampled rows
    box = ((0.5 * 0.5 ** 2) + (2.0 - 0.5) + (1.5 - 0.5) + 0.5 * 0.25 ** 2) / 3
    rng = np.random.default_rng(5)
    r, k = 30, 4
    z30 = np.round(rng.normal(0, 2, (r, k + 1)), 3)
    y30 = rng.choice([-1, 0, 0, 1, 2, 3, 4], r)
    t30 = np.round(rng.normal(0, 0.5, (r, 4)), 3)
    b30 = np.round(t30[:, None, :] + rng.normal(0, 0.8, (r, k, 4)), 3)
    return [
        Case("worked example: 2 objects, 1 background, 1 not sampled", (logits, boxes, labels, targets),
             expected=(ce, box),
             about="S = 3 sampled regions, each with probability 3/6 on its label: class loss ln 2; box "
                   "loss: smooth L1 (beta 1) of the true class's differences (0.5, 0, -2, 0; 0, 1.5, 0, "
                   "0.25), summed, / 3. The other class's box, the background's boxes and the unsampled "
                   "row do not count"),
        Case("worked example, beta 1/9", (logits, boxes, labels, targets), {"beta": 1.0 / 9}),
        Case("nothing sampled: both terms 0", (logits, boxes, np.full(4, -1), targets), expected=(0.0, 0.0),
             about="the normaliser is max(sampled, 1): 0 / 1, not 0 / 0"),
        Case("very large logits: a stable cross-entropy",
             (np.array([[800.0, 0.0], [0.0, 800.0]]), np.zeros((2, 1, 4)), np.array([1, 1]), np.zeros((2, 4))),
             expected=(400.0, 0.0),
             about="exp(800) overflows: compute log-softmax as z[label] - logsumexp(z), with the max "
                   "taken out (region 0 is wrong by 800, region 1 right)"),
        Case("30 regions, 4 classes", (z30, b30, y30, t30)),
        Case("30 regions, no foreground", (z30, b30, np.where(y30 > 0, 0, y30), t30)),
        Case("30 regions, class 4 absent", (z30, b30, np.where(y30 == 4, 3, y30), t30),
             about="no region of the last class: its boxes (column 3) are never read"),
        Case("no regions", (np.zeros((0, 3)), np.zeros((0, 2, 4)), np.zeros(0, np.int64), np.zeros((0, 4))),
             expected=(0.0, 0.0), public=False),
    ]


def _loss_random_case(rng: np.random.Generator) -> Case:
    r, k = int(rng.integers(1, 60)), int(rng.integers(1, 6))
    logits = rng.normal(0, 2.5, (r, k + 1))
    labels = rng.choice(np.arange(-1, k + 1), r)
    targets = rng.normal(0, 0.5, (r, 4))
    boxes = targets[:, None, :] + rng.normal(0, rng.choice([0.1, 0.6, 2.0]), (r, k, 4))
    kwargs = {"beta": float(rng.choice([1.0 / 9, 0.5]))} if rng.random() < 0.2 else {}
    return Case("", (logits, boxes, labels, targets), kwargs)


HEAD_LOSS = register(Exercise(
    name="head_loss",
    chapter=CHAPTER,
    minutes={"loops": 20, "numpy": 15, "tf": 20},
    signature="head_loss(class_logits, box_deltas, labels, target_deltas, beta=1.0) -> (class_loss, box_loss)",
    summary="Softmax cross-entropy over the sampled regions and smooth L1 on the true class's box of the "
            "foreground regions, both summed and divided by the number of sampled regions.",
    tiers={"loops": f"{REF}:head_loss_loops", "numpy": f"{REF}:head_loss_numpy", "tf": f"{REF}:head_loss_tf"},
    edge_cases=_loss_edge_cases,
    random_case=_loss_random_case,
    outputs=(Output("class_loss", "float", rtol=1e-4, atol=1e-5, strict_atol=1e-9),
             Output("box_loss", "float", rtol=1e-4, atol=1e-5, strict_atol=1e-9)),
    mistakes=(
        Mistake("every class's box trained",
                "Your box term adds the smooth L1 of every class's box; only the true class's box is "
                "trained: box_deltas[r, labels[r] - 1] (column k - 1 holds class k's box).",
                wrong=_lswitch(all_classes=True)),
        Mistake("a box for the background",
                "Your box term includes background regions (label 0). There is no box to learn there, and "
                "box_deltas[r, 0 - 1] silently reads the *last* class's box (index -1): sum over "
                "labels >= 1 only.", wrong=_lswitch(background_boxes=True)),
        Mistake("box term divided by the foreground",
                "Your box term is divided by the number of foreground regions; divide both terms by the "
                "number of sampled regions, max((labels >= 0).sum(), 1).", wrong=_lswitch(by_foreground=True)),
        Mistake("the RPN's beta",
                "Your smooth L1 switches at 1/9, the RPN's beta; the head's is the argument beta, 1 by "
                "default (Fast R-CNN).", wrong=_lswitch(rpn_beta=True)),
        Mistake("unsampled regions counted as background",
                "Your loss counts label -1 (not sampled) as background: leave those rows out of both terms "
                "and of the normaliser (labels >= 0).", wrong=_lswitch(unsampled_as_background=True)),
        Mistake("sigmoid cross-entropy",
                "Your class term is a per-class sigmoid cross-entropy; the head's classes exclude each "
                "other: softmax over the K + 1 logits, -log softmax(z)[label] = logsumexp(z) - z[label].",
                wrong=_lswitch(sigmoid=True)),
        Mistake("class k's box read at column k",
                "Column k - 1 of box_deltas holds class k's box (there is no background box); yours reads "
                "column k (for the last class, K, that column does not exist).",
                wrong=_lswitch(class_slot=True)),
        Mistake("box term averaged over coordinates",
                "Your box term is divided by 4 more: sum the smooth L1 over the 4 coordinates (as the RPN "
                "loss does), then divide by the number of sampled regions.", wrong=_lswitch(coordinate_mean=True)),
        Mistake("unstable softmax",
                "Your class loss is inf or NaN for large logits: exp(800) overflows. Take the largest logit "
                "out first: logsumexp(z) = m + log(sum(exp(z - m))), m = max(z).",
                wrong=_lswitch(naive_softmax=True),
                detect=lambda case, received, expected: not np.all(np.isfinite(np.asarray(received[0], float)))
                and bool(np.all(np.isfinite(np.asarray(expected[0], float))))),
    ),
    tf_static=("beta",),
    no_loops_over=("class_logits",),
    answer_calls=("workshop.models.rpn.smooth_l1",),
))


# ============================================================================================
# decode_per_class
# ============================================================================================
def _decode(rois, box_deltas, image_shape, weights=HEAD_WEIGHTS, *, no_weights=False, first_class=False,
            no_clip=False, clip_minus_one=False, clip_swapped=False, no_clamp=False, weights_multiply=False):
    r = np.asarray(rois, np.float64).reshape(-1, 4)
    d = np.asarray(box_deltas, np.float64).reshape(len(r), -1, 4)
    if first_class:
        d = np.repeat(d[:, :1], d.shape[1], axis=1)
    height, width = float(image_shape[0]), float(image_shape[1])
    if clip_swapped:
        height, width = width, height
    wx, wy, ww, wh = (1.0, 1.0, 1.0, 1.0) if no_weights else weights
    if weights_multiply:
        wx, wy, ww, wh = 1 / wx, 1 / wy, 1 / ww, 1 / wh
    w, h = (r[:, 2] - r[:, 0])[:, None], (r[:, 3] - r[:, 1])[:, None]
    cx, cy = r[:, 0:1] + 0.5 * w, r[:, 1:2] + 0.5 * h
    clamp = np.inf if no_clamp else math.log(1000.0 / 16)
    with np.errstate(over="ignore", invalid="ignore"):
        bw = np.exp(np.minimum(d[..., 2] / ww, clamp)) * w
        bh = np.exp(np.minimum(d[..., 3] / wh, clamp)) * h
        bx, by = cx + d[..., 0] / wx * w, cy + d[..., 1] / wy * h
        boxes = np.stack([bx - 0.5 * bw, by - 0.5 * bh, bx + 0.5 * bw, by + 0.5 * bh], axis=-1)
    if not no_clip:
        edge = 1.0 if clip_minus_one else 0.0
        boxes[..., 0::2] = boxes[..., 0::2].clip(0.0, width - edge)
        boxes[..., 1::2] = boxes[..., 1::2].clip(0.0, height - edge)
    return boxes


def _dswitch(**flags):
    def wrong(rois, box_deltas, image_shape, weights=HEAD_WEIGHTS):
        return _decode(rois, box_deltas, image_shape, weights, **flags)
    return wrong


def _decode_edge_cases() -> list[Case]:
    rois = np.array([[10.0, 10.0, 30.0, 50.0], [40.0, 4.0, 60.0, 14.0]])
    deltas = np.zeros((2, 2, 4))
    deltas[0, 1] = [5.0, -2.5, 5.0 * math.log(2.0), 0.0]     # +10 in x, -10 in y, twice as wide
    deltas[1, 0] = [10.0, 0.0, 0.0, 5.0 * math.log(3.0)]     # +20 in x (past the right edge), 3x taller
    deltas[1, 1] = [0.0, 0.0, 0.0, 0.0]
    expected = np.array([[[10.0, 10.0, 30.0, 50.0], [10.0, 0.0, 50.0, 40.0]],
                         [[60.0, 0.0, 64.0, 24.0], [40.0, 4.0, 60.0, 14.0]]])
    pixel = np.array([[5000.0, 5000.0, 5001.0, 5001.0]])
    huge = np.array([[[0.0, 0.0, 50.0, 50.0]]])
    rng = np.random.default_rng(8)
    corner = np.round(rng.uniform(0, 90, (12, 2)))
    many = np.concatenate([corner, corner + np.round(rng.uniform(4, 40, (12, 2)))], axis=1)
    return [
        Case("worked example: 2 regions, 2 classes, a 64 x 64 image", (rois, deltas, (64, 64)), expected=expected,
             about="region 0, class 2: dx = 5 moves the centre 5/10 x 20 = 10 px right, dy = -2.5 moves it "
                   "10 px up, dw = 5 ln 2 doubles the width: [10, 0, 50, 40]; region 1, class 1: 20 px right "
                   "and 3 times taller, [50, -6, 70, 24], clipped to [60, 0, 64, 24]"),
        Case("worked example, RPN-style weights (1, 1, 1, 1)", (rois, deltas, (64, 64)),
             {"weights": (1.0, 1.0, 1.0, 1.0)}),
        Case("a wide image: x clipped to the width, y to the height", (rois, deltas, (40, 100))),
        Case("a large dw and dh: clamped before exp", (pixel, huge, (10000, 10000)),
             expected=np.array([[[4969.25, 4969.25, 5031.75, 5031.75]]]),
             about="dw / ww = 50 / 5 = 10 is clamped at log(1000 / 16) = 4.14 before exp: the 1-pixel region "
                   "grows 1000 / 16 = 62.5 times, not e**10 = 22026 times (nor 1000 times, a clamp at "
                   "log(1000))"),
        Case("12 regions, 5 classes", (many, np.round(rng.normal(0, 1.5, (12, 5, 4)), 3), (128, 128))),
        Case("no regions", (np.zeros((0, 4)), np.zeros((0, 3, 4)), (64, 64)), expected=np.zeros((0, 3, 4)),
             public=False),
    ]


def _decode_random_case(rng: np.random.Generator) -> Case:
    r, k = int(rng.integers(1, 40)), int(rng.integers(1, 6))
    height, width = (int(v) for v in rng.integers(32, 200, 2))
    corner = rng.uniform(0, [width - 4, height - 4], (r, 2))
    rois = np.concatenate([corner, corner + rng.uniform(4, 60, (r, 2))], axis=1)
    deltas = rng.normal(0, rng.choice([0.5, 2.0, 6.0]), (r, k, 4))
    kwargs = {"weights": (1.0, 1.0, 1.0, 1.0)} if rng.random() < 0.15 else {}
    return Case("", (rois, deltas, (height, width)), kwargs)


DECODE_PER_CLASS = register(Exercise(
    name="decode_per_class",
    chapter=CHAPTER,
    minutes={"loops": 10, "numpy": 10, "tf": 10},
    signature="decode_per_class(rois, box_deltas, image_shape, weights=(10.0, 10.0, 5.0, 5.0)) -> boxes (R, K, 4)",
    summary="Every region's K class boxes: each class's deltas decoded against the region with the head's "
            "weights (10, 10, 5, 5), then clipped to the image.",
    tiers={"loops": f"{REF}:decode_per_class_loops", "numpy": f"{REF}:decode_per_class_numpy",
           "tf": f"{REF}:decode_per_class_tf"},
    edge_cases=_decode_edge_cases,
    random_case=_decode_random_case,
    outputs=(Output("boxes", "float", rtol=1e-5, atol=1e-4, strict_atol=1e-9),),
    mistakes=(
        Mistake("weights forgotten",
                "Your boxes move 10 times too far: the head's deltas were encoded with weights (10, 10, 5, 5), "
                "so decoding divides by them (dx / wx, ..., dh / wh) before using them.",
                wrong=_dswitch(no_weights=True)),
        Mistake("weights multiplied",
                "Decoding divides the deltas by the weights (dx / 10, dw / 5); yours multiplies by them.",
                wrong=_dswitch(weights_multiply=True)),
        Mistake("one class's deltas for every class",
                "All your class boxes of a region are the same: box_deltas[r, k] is class k + 1's own box; "
                "decode each class's deltas (broadcast the region over the K classes, not the deltas).",
                wrong=_dswitch(first_class=True)),
        Mistake("not clipped",
                "Your boxes leave the image: clip x to [0, width] and y to [0, height] after decoding.",
                wrong=_dswitch(no_clip=True)),
        Mistake("clipped to width - 1",
                "Clip x to [0, width] and y to [0, height]: coordinates are continuous, so a box may end at "
                "the image's right edge, x2 = width (not width - 1).", wrong=_dswitch(clip_minus_one=True)),
        Mistake("image_shape read as (width, height)",
                "image_shape is (height, width): clip x to [0, image_shape[1]] and y to [0, image_shape[0]].",
                wrong=_dswitch(clip_swapped=True)),
        Mistake("exp not clamped",
                "A large dw overflows exp: clamp dw / ww and dh / wh at log(1000 / 16) before exp, as decode does "
                "in chapter 4.", wrong=_dswitch(no_clamp=True)),
    ),
    tf_static=("image_shape", "weights"),
    no_loops_over=("rois",),
))
