"""Chapter 05, the two steps of ``rpn_targets`` on their own: labelling the anchors
(``label_anchors``, rules 1-4) and sampling a batch of them (``subsample_labels``, rule 5).
``rpn_targets`` (:mod:`workshop.exercises.rpn`) is then these two and the positives' encoding.

The rules are in :mod:`workshop.reference.rpn`'s docstring; the wrong implementations reuse the
chapter's self-contained ``_targets`` (labelling) and a small ``_subsample`` here.
"""

from __future__ import annotations

import math

import numpy as np

from . import register
from .rpn import CHAPTER, REF, _grid, _priority, _targets, _targets_edge_cases, _targets_random_case
from .spec import Case, Exercise, Mistake, Output


# ============================================================================================
# label_anchors
# ============================================================================================
def _label_switch(**flags):
    def wrong(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
        return _targets(anchors, gt_boxes, image_shape, positive_iou, negative_iou, labels_only=True, **flags)
    return wrong


_THRESHOLDS = ("positive_iou", "negative_iou")


def _label_edge_cases() -> list[Case]:
    """``rpn_targets``' cases without their sampling arguments (those that differ only in the
    sampling are left out); the pinned labels hold before sampling too."""
    cases, seen = [], set()
    for case in _targets_edge_cases():
        kwargs = {k: v for k, v in case.kwargs.items() if k in _THRESHOLDS}
        key = (*(id(a) for a in case.args[:2]), tuple(sorted(kwargs.items())))
        if key in seen:
            continue
        seen.add(key)
        expected = None if case.expected is None else (case.expected[0], _matched(case))
        cases.append(Case(case.name.split(":")[0].replace(", sampled to batch_size", ""), case.args, kwargs,
                          public=case.public, expected=expected, about=case.about))
    return cases


def _matched(case: Case) -> np.ndarray:
    """Each anchor's first GT of largest IoU, from the self-contained labelling."""
    return _targets(*case.args, labels_only=True)[1]


def _label_random_case(rng: np.random.Generator) -> Case:
    case = _targets_random_case(rng)
    return Case("", case.args, {k: v for k, v in case.kwargs.items() if k in _THRESHOLDS})


LABEL_ANCHORS = register(Exercise(
    name="label_anchors",
    chapter=CHAPTER,
    minutes={"loops": 25, "numpy": 20},
    signature=("label_anchors(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3) "
               "-> (labels (N,), matched (N,))"),
    summary="Label anchors 1/0/-1 by IoU before any sampling: border anchors ignored, negatives below "
            "negative_iou, positives from positive_iou up and each GT's best anchors; and each "
            "anchor's GT.",
    tiers={"loops": f"{REF}:label_anchors_loops", "numpy": f"{REF}:label_anchors_numpy"},
    edge_cases=_label_edge_cases,
    random_case=_label_random_case,
    outputs=(Output("labels", "int"), Output("matched", "int")),
    mistakes=(
        Mistake("> instead of >=",
                "An anchor with IoU exactly positive_iou is positive: the rule is IoU >= 0.7, not > 0.7.",
                wrong=_label_switch(strict=True)),
        Mistake("GT's best anchor forgotten",
                "Some GT boxes have no positive anchor in yours: an anchor is also positive when it is "
                "one of a GT box's best anchors (largest IoU with that GT among the inside anchors), "
                "even below positive_iou, so every reachable object gets an anchor.",
                wrong=_label_switch(no_best=True)),
        Mistake("only one best anchor per GT",
                "You kept a single best anchor per GT box (argmax); every anchor that ties for a GT's "
                "largest IoU is positive (compare iou == best, not argmax).",
                wrong=_label_switch(single_best=True)),
        Mistake("border anchors not ignored",
                "Anchors crossing the image border (x1 < 0, y1 < 0, x2 > width or y2 > height) must be "
                "ignored (-1) whatever their IoU, and left out of each GT's best-anchor search.",
                wrong=_label_switch(no_border=True)),
        Mistake("GT with no overlap given best anchors",
                "A GT box that no inside anchor overlaps (its largest IoU is 0) has no best anchor: "
                "otherwise every anchor ties at IoU 0 and becomes positive. Require best IoU > 0.",
                wrong=_label_switch(zero_best=True)),
        Mistake("best anchor searched among border anchors",
                "Look for each GT's best anchor among the inside anchors only: when a border-crossing "
                "anchor overlaps a GT most, the GT's best inside anchor must still be positive.",
                wrong=_label_switch(best_all=True)),
        Mistake("IoU equal to negative_iou counted negative",
                "An anchor whose largest IoU equals negative_iou is not negative: the rule is "
                "IoU < 0.3, not <= 0.3 (it stays ignored, -1, unless it is positive).",
                wrong=_label_switch(negative_inclusive=True)),
        Mistake("negatives labelled after positives",
                "A GT's best anchor can have an IoU below negative_iou, and it must stay positive: "
                "label the negatives first and the positives after (positive wins).",
                wrong=_label_switch(negatives_last=True)),
        Mistake("anchors touching the border ignored",
                "An anchor that touches the image border (x1 = 0, y1 = 0, x2 = width or y2 = height) "
                "is inside: it crosses the border only when x1 < 0, y1 < 0, x2 > width or "
                "y2 > height.", wrong=_label_switch(touching_outside=True)),
        Mistake("image_shape read as (width, height)",
                "image_shape is (height, width), y first: an anchor is inside when x2 <= width = "
                "image_shape[1] and y2 <= height = image_shape[0].",
                wrong=_label_switch(shape_swapped=True)),
    ),
    tf_static=("image_shape", "positive_iou", "negative_iou"),
    no_loops_over=("anchors",),
))


# ============================================================================================
# subsample_labels
# ============================================================================================
def _subsample(labels, batch_size=256, positive_fraction=0.5, seed=0, *, index_order=False, no_topup=False,
               no_cap=False, highest_first=False, priority_of_positives=False, ceil_cap=False):
    y = np.asarray(labels).reshape(-1).astype(np.int64).copy()
    n = len(y)
    cap = math.ceil(batch_size * positive_fraction) if ceil_cap else int(batch_size * positive_fraction)
    cap = n if no_cap else cap
    rank = np.arange(n) if index_order else _priority(n, seed)
    if highest_first:
        rank = -rank
    pos = np.flatnonzero(y == 1)
    if priority_of_positives:
        pos = pos[np.argsort(_priority(len(pos), seed), kind="stable")]
    else:
        pos = pos[np.argsort(rank[pos], kind="stable")]
    y[pos[cap:]] = -1
    neg = np.flatnonzero(y == 0)
    neg = neg[np.argsort(rank[neg], kind="stable")]
    n_neg = batch_size - cap if no_topup else batch_size - min(len(pos), cap)
    y[neg[max(n_neg, 0):]] = -1
    return y


def _sample_switch(**flags):
    def wrong(labels, batch_size=256, positive_fraction=0.5, seed=0):
        return _subsample(labels, batch_size, positive_fraction, seed, **flags)
    return wrong


def _subsample_edge_cases() -> list[Case]:
    ten = np.array([1, 1, 1, 0, 0, 0, 0, -1, 1, 0])
    grid = _grid(4, 6, 16.0, [(16, 16), (32, 16), (16, 32)])
    gt_many = np.array([[0, 0, 48, 32], [50, 20, 94, 60], [20, 34, 52, 62]], float)
    labelled = _targets(grid, gt_many, (64, 96), labels_only=True)[0]          # 72 anchors
    return [
        Case("ten labels, batch 4, half positive", (ten,), {"batch_size": 4, "positive_fraction": 0.5, "seed": 0},
             about="int(4 x 0.5) = 2 of the 4 positives (indices 0, 1, 2, 8), those of lowest "
                   "sampling_priority(10, 0); then 4 - 2 = 2 of the 5 negatives, again by priority"),
        Case("ten labels, batch 5, a cap that rounds down", (ten,), {"batch_size": 5, "positive_fraction": 0.5,
                                                                     "seed": 2},
             about="int(5 x 0.5) = int(2.5) = 2 positives, then 3 negatives"),
        Case("ten labels, batch 7, half positive: 3.5 rounds down too", (ten,),
             {"batch_size": 7, "positive_fraction": 0.5, "seed": 4},
             about="int(7 x 0.5) = int(3.5) = 3 of the 4 positives (round(3.5) would keep 4), then "
                   "7 - 3 = 4 of the 5 negatives"),
        Case("few positives: negatives fill the batch", (ten,), {"batch_size": 8, "positive_fraction": 0.75,
                                                                 "seed": 1},
             about="the cap is int(8 x 0.75) = 6 but only 4 positives exist: all kept, 8 - 4 = 4 negatives"),
        Case("72 labelled anchors, batch 8, a quarter positive", (labelled,),
             {"batch_size": 8, "positive_fraction": 0.25, "seed": 7}),
        Case("no positives", (np.where(ten == 1, 0, ten),), {"batch_size": 4, "seed": 3}),
        Case("600 labels, the defaults: 128 positives and 128 negatives", (_many_labels(),),
             about="batch_size 256 and positive_fraction 0.5 by default: int(256 x 0.5) = 128 of the "
                   "200 positives, then 256 - 128 = 128 of the 300 negatives, by sampling_priority(600, 0)"),
        Case("all ignored", (np.full(6, -1),), {"batch_size": 4}, expected=np.full(6, -1)),
        Case("batch_size 0: nothing sampled", (labelled,), {"batch_size": 0}, public=False,
             expected=np.full(72, -1)),
        Case("no labels", (np.zeros(0, np.int64),), {"batch_size": 4}, public=False, expected=np.zeros(0, np.int64)),
    ]


def _many_labels() -> np.ndarray:
    """600 labels, 200 positive, 300 negative, 100 ignored, shuffled: more of each than the
    default batch (256, half positive) keeps."""
    return np.random.default_rng(21).permutation(np.repeat([1, 0, -1], [200, 300, 100]))


def _subsample_random_case(rng: np.random.Generator) -> Case:
    n = int(rng.integers(1, 400))
    labels = rng.choice([1, 0, -1], n, p=rng.dirichlet([1.0, 3.0, 2.0]))
    kwargs = {"batch_size": int(rng.choice([4, 8, 16, 64, 256])),
              "positive_fraction": float(rng.choice([0.25, 0.5, 0.75, 1.0])), "seed": int(rng.integers(0, 10000))}
    return Case("", (labels,), kwargs)


SUBSAMPLE_LABELS = register(Exercise(
    name="subsample_labels",
    chapter=CHAPTER,
    minutes={"loops": 15, "numpy": 15},
    signature="subsample_labels(labels, batch_size=256, positive_fraction=0.5, seed=0) -> labels (N,)",
    summary="Keep at most int(batch_size * positive_fraction) positives and batch_size in all, those of "
            "lowest sampling_priority; the others become -1.",
    tiers={"loops": f"{REF}:subsample_labels_loops", "numpy": f"{REF}:subsample_labels_numpy"},
    edge_cases=_subsample_edge_cases,
    random_case=_subsample_random_case,
    outputs=(Output("labels", "int"),),
    mistakes=(
        Mistake("sampled in index order",
                "Your sample keeps the first anchors by index. Rank positives and negatives by "
                "sampling_priority(len(labels), seed) and keep the lowest.", wrong=_sample_switch(index_order=True)),
        Mistake("highest priority first",
                "You keep the anchors of highest priority; the rule keeps the lowest (sort ascending).",
                wrong=_sample_switch(highest_first=True)),
        Mistake("priorities of the positives alone",
                "Your positives are ranked by sampling_priority(number of positives, seed); the "
                "priorities belong to the anchors: take sampling_priority(len(labels), seed) once and "
                "index it with the positives' positions.", wrong=_sample_switch(priority_of_positives=True)),
        Mistake("negatives not topped up",
                "When there are fewer positives than the cap, negatives fill the rest of the batch: "
                "keep batch_size - (positives kept) negatives, not batch_size * (1 - positive_fraction).",
                wrong=_sample_switch(no_topup=True)),
        Mistake("positives not capped",
                "Keep at most int(batch_size * positive_fraction) positives (the others become -1); "
                "yours keeps them all.", wrong=_sample_switch(no_cap=True)),
        Mistake("cap rounded up",
                "The cap is int(batch_size * positive_fraction), rounded down: 5 x 0.5 = 2.5 keeps 2 "
                "positives, not 3.", wrong=_sample_switch(ceil_cap=True)),
    ),
    tf_static=("batch_size", "positive_fraction", "seed"),
    no_loops_over=("labels",),
))
