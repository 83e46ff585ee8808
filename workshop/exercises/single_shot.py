"""Chapter 10: a single-shot detector's training signal: every anchor matched to an object, the
background or nothing (``match_anchors``), and the sigmoid focal loss (``focal_loss``).

Boxes are float ``(N, 4)`` xyxy in continuous pixels (no "+1"); class ids ``1..K``, 0 the
background, -1 ignored. The rules are in :mod:`workshop.reference.single_shot`'s docstring. The
wrong implementations below are self-contained numpy (the grader hides ``workshop.reference``):
one small ``match_anchors`` and one small ``focal_loss`` with a switch per mistake.
"""

from __future__ import annotations

import math

import numpy as np

from . import register
from .second_stage import _encode, _iou
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.single_shot"
CHAPTER = "10_single_shot"


# ============================================================================================
# match_anchors
# ============================================================================================
def _match(anchors, gt_boxes, gt_classes, fg_iou=0.5, bg_iou=0.4, *, no_best_rule=False, fg_strict=False,
           band_is_background=False, bg_inclusive=False, deltas_everywhere=False, class_one=False,
           own_gt=False, best_at_zero=False, one_best=False, head_weights=False):
    a = np.asarray(anchors, np.float64).reshape(-1, 4)
    g = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    c = np.asarray(gt_classes).reshape(-1).astype(np.int64)
    n, m = len(a), len(g)
    overlaps = _iou(a, g) if n and m else np.zeros((n, m))
    padded = np.concatenate([overlaps, np.zeros((n, 1))], axis=1)
    best, match = padded.max(axis=1), padded.argmax(axis=1)
    foreground = best > fg_iou if fg_strict else best >= fg_iou
    if band_is_background:
        background = ~foreground
    else:
        background = best <= bg_iou if bg_inclusive else best < bg_iou
    if m and n and not no_best_rule:
        top = overlaps.max(axis=0)
        if one_best:
            is_best = np.zeros((n, m), bool)
            keep = best_at_zero | (top > 0)
            is_best[overlaps.argmax(axis=0)[keep], np.flatnonzero(keep)] = True
        else:
            is_best = (overlaps == top[None, :]) & (True if best_at_zero else top[None, :] > 0)
        forced = is_best.any(axis=1)
        if not own_gt:
            match = np.where(forced, np.where(is_best, overlaps, -1.0).argmax(axis=1), match)
        foreground = foreground | forced
    labels = np.where(foreground, 1, np.where(background, 0, -1)).astype(np.int64)
    deltas = np.zeros((n, 4))
    if m:
        labels[foreground] = 1 if class_one else c[match[foreground]]
        rows = (best > 0) | foreground if deltas_everywhere else foreground
        rows &= match < m
        deltas[rows] = _encode(g[match[rows]], a[rows], (10.0, 10.0, 5.0, 5.0) if head_weights else (1, 1, 1, 1))
    return labels, deltas


def _mswitch(**flags):
    def wrong(anchors, gt_boxes, gt_classes, fg_iou=0.5, bg_iou=0.4):
        return _match(anchors, gt_boxes, gt_classes, fg_iou, bg_iou, **flags)
    return wrong


def _match_worked_example():
    """Three objects (class 2 at the origin, class 1 at (20, 20), a thin class-3 box at x = 60)
    and eight anchors whose IoUs are simple fractions."""
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [60.0, 0.0, 64.0, 40.0]])
    classes = np.array([2, 1, 3])
    anchors = np.array([
        [0.0, 0.0, 10.0, 5.0],     # IoU 0.5 with the class-2 box: foreground (>= 0.5)
        [0.0, 0.0, 10.0, 4.5],     # 0.45: ignored (between 0.4 and 0.5)
        [0.0, 0.0, 10.0, 4.0],     # 0.4: ignored (background is < 0.4)
        [0.0, 0.0, 10.0, 3.0],     # 0.3: background
        [40.0, 40.0, 50.0, 50.0],  # 0: background
        [20.0, 20.0, 30.0, 26.0],  # 0.6 with the class-1 box: foreground
        [60.0, 0.0, 80.0, 40.0],   # 0.2 with the thin class-3 box: its best anchor, foreground
        [50.0, 0.0, 70.0, 40.0],   # 0.2 too: a tie, foreground as well
    ])
    return anchors, gt, classes


def _match_worked_expected():
    labels = np.array([2, -1, -1, 0, 0, 1, 3, 3])
    deltas = np.zeros((8, 4))
    deltas[0] = [0.0, 2.5 / 5.0, 0.0, math.log(10.0 / 5.0)]
    deltas[5] = [0.0, 2.0 / 6.0, 0.0, math.log(10.0 / 6.0)]
    deltas[6] = [-8.0 / 20.0, 0.0, math.log(4.0 / 20.0), 0.0]
    deltas[7] = [2.0 / 20.0, 0.0, math.log(4.0 / 20.0), 0.0]
    return labels, deltas


def _thin_object():
    """A 10 x 10 class-1 box and a thin 2 x 10 class-2 box inside it; anchor 1 overlaps the big
    box more (0.6) but is the thin box's best anchor (1/3)."""
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2.0, 10.0]])
    classes = np.array([1, 2])
    anchors = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 6.0, 10.0], [30.0, 30.0, 40.0, 40.0]])
    expected = (np.array([1, 2, 0]),
                np.array([[0.0, 0.0, 0.0, 0.0], [-2.0 / 6.0, 0.0, math.log(2.0 / 6.0), 0.0], [0.0] * 4]))
    return anchors, gt, classes, expected


def _grid(step: float, size: float, extent: float) -> np.ndarray:
    """Square anchors of side ``size`` every ``step`` pixels over ``[0, extent)^2``."""
    centres = np.arange(step / 2, extent, step)
    cx, cy = np.meshgrid(centres, centres)
    cx, cy = cx.ravel(), cy.ravel()
    return np.stack([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], axis=1)


def _match_edge_cases() -> list[Case]:
    anchors, gt, classes = _match_worked_example()
    thin_anchors, thin_gt, thin_classes, thin_expected = _thin_object()
    grid = np.concatenate([_grid(8.0, 16.0, 64.0), _grid(8.0, 32.0, 64.0)])
    rng = np.random.default_rng(3)
    corner = np.round(rng.uniform(0, 44, (4, 2)))
    objects = np.concatenate([corner, corner + np.round(rng.uniform(6, 24, (4, 2)))], axis=1)
    return [
        Case("worked example: 8 anchors, 3 objects", (anchors, gt, classes), expected=_match_worked_expected(),
             about="foreground: anchor 0 (IoU 0.5, class 2) and 5 (0.6, class 1) by the threshold, 6 and 7 "
                   "(0.2 each, a tie) as the thin class-3 box's best anchors; ignored: 1 (0.45) and 2 (0.4, "
                   "not < 0.4); background: 3 (0.3) and 4 (0). Deltas, weights 1: anchor 0 is 10 x 5 centred "
                   "at (5, 2.5) for the 10 x 10 box centred at (5, 5): (0, 2.5 / 5, 0, log 2)"),
        Case("worked example, fg_iou 0.45, bg_iou 0.3", (anchors, gt, classes), {"fg_iou": 0.45, "bg_iou": 0.3}),
        Case("a thin object's best anchor overlaps a bigger object more", (thin_anchors, thin_gt, thin_classes),
             expected=thin_expected,
             about="anchor 1 has IoU 0.6 with the 10 x 10 box (class 1) and 1/3 with the thin box (class 2), "
                   "whose best anchor it is: the best-anchor rule makes it the thin box's (class 2), so that "
                   "every object has an anchor; anchor 0 (IoU 1) keeps the big box"),
        Case("an object no anchor touches", (anchors[:6], np.array([[200.0, 200.0, 210.0, 210.0]]), np.array([4])),
             expected=(np.zeros(6, np.int64), np.zeros((6, 4))),
             about="the object's best IoU is 0: no anchor is its best anchor (the rule needs IoU > 0), so "
                   "every anchor is background"),
        Case("no objects: every anchor is background", (anchors, np.zeros((0, 4)), np.zeros(0, np.int64)),
             expected=(np.zeros(8, np.int64), np.zeros((8, 4)))),
        Case("a 64 x 64 grid of 128 anchors, 4 objects", (grid, objects, np.array([1, 2, 3, 1]))),
        Case("no anchors", (np.zeros((0, 4)), gt, classes), expected=(np.zeros(0, np.int64), np.zeros((0, 4))),
             public=False),
        Case("the grid, one big object, fg_iou 0.6", (grid, np.array([[4.0, 6.0, 60.0, 50.0]]), np.array([2])),
             {"fg_iou": 0.6, "bg_iou": 0.3}, public=False),
    ]


def _match_random_case(rng: np.random.Generator) -> Case:
    extent = float(rng.choice([48.0, 64.0]))
    grid = np.concatenate([_grid(8.0, s, extent) for s in rng.choice([12.0, 16.0, 24.0, 32.0], 2, replace=False)])
    m = int(rng.integers(0, 5))
    corner = np.round(rng.uniform(0, extent - 8, (m, 2)))
    gt = np.concatenate([corner, corner + np.round(rng.uniform(4, 28, (m, 2)))], axis=1)
    kwargs = {} if rng.random() < 0.6 else {"fg_iou": float(rng.choice([0.5, 0.6])),
                                            "bg_iou": float(rng.choice([0.3, 0.4]))}
    return Case("", (grid, gt, rng.integers(1, 6, m)), kwargs)


MATCH_ANCHORS = register(Exercise(
    name="match_anchors",
    chapter=CHAPTER,
    minutes={"loops": 25, "numpy": 20},
    signature=("match_anchors(anchors, gt_boxes, gt_classes, fg_iou=0.5, bg_iou=0.4) "
               "-> (labels (N,), deltas (N, 4))"),
    summary="RetinaNet's anchor assignment: foreground (its object's class) at IoU >= fg_iou or as an object's "
            "best anchor, background (0) below bg_iou, ignored (-1) in between, with box targets encoded "
            "with weights (1, 1, 1, 1) for the foreground; no sampling.",
    tiers={"loops": f"{REF}:match_anchors_loops", "numpy": f"{REF}:match_anchors_numpy"},
    edge_cases=_match_edge_cases,
    random_case=_match_random_case,
    outputs=(Output("labels", "int"),
             Output("deltas", "float", rtol=1e-4, atol=1e-4, strict_atol=1e-9)),
    mistakes=(
        Mistake("no best-anchor rule",
                "Your thin class-3 object gets no anchor: besides the threshold, every object's best anchors "
                "(IoU equal to the object's largest IoU over all anchors, when that is > 0) are foreground "
                "with it, even below fg_iou.", wrong=_mswitch(no_best_rule=True)),
        Mistake("foreground with >",
                "An anchor is foreground when its IoU is >= fg_iou: IoU exactly 0.5 counts (anchor 0 of the "
                "worked example). Yours uses >.", wrong=_mswitch(fg_strict=True)),
        Mistake("ignored band labelled background",
                "Your anchors between bg_iou and fg_iou are background; they are ignored (-1): half on an "
                "object, they are neither a good example of it nor of the background.",
                wrong=_mswitch(band_is_background=True)),
        Mistake("background with <=",
                "Background is IoU < bg_iou: an anchor at exactly 0.4 (anchor 2 of the worked example) is "
                "ignored. Yours uses <=.", wrong=_mswitch(bg_inclusive=True)),
        Mistake("deltas for anchors that are not foreground",
                "Your background or ignored anchors have deltas: only foreground anchors get "
                "encode(gt, anchor); every other row stays 0 (the box loss reads only foreground rows, and "
                "a zero row says so).", wrong=_mswitch(deltas_everywhere=True)),
        Mistake("label 1 for every object",
                "Your foreground labels are all 1: a foreground anchor's label is the class of its object, "
                "gt_classes[j].", wrong=_mswitch(class_one=True)),
        Mistake("a best anchor keeps its own best object",
                "Your best anchor of the thin object takes the class of the object it overlaps most; the "
                "rule makes it the thin object's anchor (among the objects it is a best anchor of, the one "
                "of largest IoU with it), or that object would have no anchor at all.",
                wrong=_mswitch(own_gt=True)),
        Mistake("best anchors at IoU 0",
                "An object that no anchor touches (its best IoU is 0) has no best anchor: with yours, every "
                "anchor ties at 0 and becomes foreground. Apply the best-anchor rule only when that IoU "
                "is > 0.", wrong=_mswitch(best_at_zero=True)),
        Mistake("one best anchor per object",
                "Your rule keeps one best anchor per object (argmax); every anchor that ties for the largest "
                "IoU counts (anchors 6 and 7 of the worked example, both 0.2).", wrong=_mswitch(one_best=True)),
        Mistake("the head's weights",
                "Your deltas are encoded with weights (10, 10, 5, 5), the two-stage box head's; a single-shot "
                "head regresses from the anchors directly, with weights (1, 1, 1, 1), like the RPN.",
                wrong=_mswitch(head_weights=True)),
    ),
    no_loops_over=("anchors",),
))


# ============================================================================================
# focal_loss
# ============================================================================================
def _focal(class_logits, labels, alpha=0.25, gamma=2.0, *, gamma_on_p=False, alpha_everywhere=False,
           no_alpha=False, alpha_swapped=False, by_all=False, ignored_counted=False, naive_log=False,
           column_k=False):
    z = np.asarray(class_logits, np.float64)
    n, k = z.shape
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if ignored_counted:
        y = np.where(y < 0, 0, y)
    cols = np.arange(0, k) if column_k else np.arange(1, k + 1)
    t = y[:, None] == cols[None, :]
    with np.errstate(all="ignore"):
        if naive_log:
            p = 1.0 / (1.0 + np.exp(-z))
            p_t = np.where(t, p, 1.0 - p)
            log_p_t = np.log(p_t)
        else:
            s = np.where(t, z, -z)
            log_p_t = -(np.maximum(-s, 0) + np.log1p(np.exp(-np.abs(s))))
            p_t = np.exp(log_p_t)
        focus = p_t ** gamma if gamma_on_p else (1.0 - p_t) ** gamma
        if no_alpha:
            w = np.ones_like(z)
        elif alpha_everywhere:
            w = np.full_like(z, alpha)
        elif alpha_swapped:
            w = np.where(t, 1.0 - alpha, alpha)
        else:
            w = np.where(t, alpha, 1.0 - alpha)
        terms = -w * focus * log_p_t
        kept = y >= 0
        norm = int(kept.sum()) if by_all else int((y >= 1).sum())
        return float(terms[kept].sum() / max(norm, 1))


def _fswitch(**flags):
    def wrong(class_logits, labels, alpha=0.25, gamma=2.0):
        return _focal(class_logits, labels, alpha, gamma, **flags)
    return wrong


def _focal_worked_example():
    """Four anchors, two classes: an object of class 1, a background anchor, an ignored anchor
    holding wild logits, and a background anchor that looks like class 2. Logits 0 give p = 1/2."""
    logits = np.array([[0.0, 0.0],      # class 1: terms ln2 / 16 (positive) + 3 ln2 / 16 (negative)
                       [0.0, 0.0],      # background: 3 ln2 / 16 + 3 ln2 / 16
                       [50.0, -50.0],   # ignored
                       [-2.0, 2.0]])    # background, confident class 2: a hard negative
    labels = np.array([1, 0, -1, 0])
    return logits, labels


def _focal_edge_cases() -> list[Case]:
    logits, labels = _focal_worked_example()
    l3 = math.log(3.0)
    rng = np.random.default_rng(8)
    z40 = np.round(rng.normal(-1.0, 2.0, (40, 3)), 3)
    y40 = rng.choice([-1, 0, 0, 0, 0, 1, 2, 3], 40)
    return [
        Case("worked example, anchors 0 and 1: logits 0", (logits[:2], labels[:2]),
             expected=(1 + 3 + 3 + 3) * math.log(2.0) / 16,
             about="p = 1/2 everywhere, so (1 - p_t)^2 = 1/4 and -log p_t = ln 2: a positive term is "
                   "0.25 x 1/4 x ln 2 = ln2 / 16, a negative one 0.75 x 1/4 x ln 2 = 3 ln2 / 16. Three "
                   "negatives and one positive: 10 ln2 / 16, divided by 1 foreground anchor"),
        Case("worked example: 4 anchors, 1 foreground, 1 ignored", (logits, labels),
             about="the ignored anchor (label -1) adds nothing; the hard negative (logit 2 for class 2, "
                   "p = 0.88) adds far more than the easy ones"),
        Case("a well-classified anchor: p_t = 3/4 on both classes", (np.array([[l3, -l3]]), np.array([1])),
             expected=math.log(4.0 / 3.0) / 16,
             about="class 1 (positive, p = 3/4): 0.25 x (1/4)^2 x ln(4/3); class 2 (negative, p = 1/4, so "
                   "p_t = 3/4): 0.75 x (1/4)^2 x ln(4/3); together ln(4/3) / 16"),
        Case("gamma 0: alpha-balanced cross-entropy", (logits, labels), {"gamma": 0.0}),
        Case("alpha 0.5, gamma 1", (logits, labels), {"alpha": 0.5, "gamma": 1.0}),
        Case("very large logits: a stable log", (np.array([[100.0, -100.0], [-100.0, 100.0]]), np.array([1, 1])),
             expected=50.0,
             about="anchor 0 is right (terms ~0); anchor 1 is wrong by 100 on both classes: 0.25 x 100 + "
                   "0.75 x 100 = 100, over 2 foreground anchors. sigmoid(-100) is 3.7e-44 and log(1 - "
                   "sigmoid(100)) is log(0) in float64: compute log p_t from the logit, -softplus(-z)"),
        Case("no foreground: divided by 1", (logits[1:], labels[1:])),
        Case("40 anchors, 3 classes", (z40, y40)),
        Case("every anchor ignored: 0", (logits, np.full(4, -1)), expected=0.0),
        Case("no anchors", (np.zeros((0, 3)), np.zeros(0, np.int64)), expected=0.0, public=False),
    ]


def _focal_random_case(rng: np.random.Generator) -> Case:
    n, k = int(rng.integers(1, 80)), int(rng.integers(1, 6))
    logits = rng.normal(float(rng.choice([-2.0, 0.0])), 2.5, (n, k))
    labels = rng.choice(np.arange(-1, k + 1), n, p=None)
    kwargs = {}
    if rng.random() < 0.3:
        kwargs = {"alpha": float(rng.choice([0.25, 0.5, 0.75])), "gamma": float(rng.choice([0.0, 0.5, 1.0, 2.0, 5.0]))}
    return Case("", (logits, labels), kwargs)


FOCAL_LOSS = register(Exercise(
    name="focal_loss",
    chapter=CHAPTER,
    minutes={"loops": 15, "numpy": 10, "tf": 15},
    signature="focal_loss(class_logits, labels, alpha=0.25, gamma=2.0) -> loss",
    summary="RetinaNet's sigmoid focal loss: -alpha_t (1 - p_t)^gamma log p_t per anchor and class (one-hot "
            "targets, background all zeros), summed over the anchors not ignored, divided by the number of "
            "foreground anchors; stable from the logits.",
    tiers={"loops": f"{REF}:focal_loss_loops", "numpy": f"{REF}:focal_loss_numpy", "tf": f"{REF}:focal_loss_tf"},
    edge_cases=_focal_edge_cases,
    random_case=_focal_random_case,
    outputs=(Output("loss", "float", rtol=1e-4, atol=1e-5, strict_atol=1e-9),),
    mistakes=(
        Mistake("gamma on the wrong factor",
                "Your focusing factor is p_t^gamma; it is (1 - p_t)^gamma, so that an anchor already "
                "classified well (p_t near 1) weighs almost nothing, and a hard one keeps its weight.",
                wrong=_fswitch(gamma_on_p=True)),
        Mistake("alpha on the negatives too",
                "Your terms are all weighted by alpha; a positive term (t = 1) by alpha and a negative "
                "term (t = 0) by 1 - alpha.", wrong=_fswitch(alpha_everywhere=True)),
        Mistake("no alpha",
                "Your loss leaves out alpha_t: weight a positive term (t = 1) by alpha (0.25 by default) "
                "and a negative one by 1 - alpha.", wrong=_fswitch(no_alpha=True)),
        Mistake("alpha swapped",
                "Your positive terms are weighted by 1 - alpha and the negative ones by alpha; it is the "
                "other way round: alpha_t = alpha where t = 1 (with gamma = 2, the paper's best alpha is "
                "0.25, the focusing term already quietening the easy negatives).",
                wrong=_fswitch(alpha_swapped=True)),
        Mistake("divided by every anchor",
                "Your loss is divided by the number of anchors not ignored; divide by the number of "
                "foreground anchors, max((labels >= 1).sum(), 1): the focal term makes the easy negatives "
                "small already, and their number would otherwise shrink the loss.",
                wrong=_fswitch(by_all=True)),
        Mistake("ignored anchors counted",
                "Your loss counts the ignored anchors (label -1) as background: leave them out of the sum.",
                wrong=_fswitch(ignored_counted=True)),
        Mistake("class k at column k",
                "Label k is class k, held in column k - 1 of the logits (there is no background column): "
                "the target is t[n, k - 1] = 1. Yours puts it at column k.", wrong=_fswitch(column_k=True)),
        Mistake("unstable log",
                "Your loss is inf or NaN for large logits: log(sigmoid(z)) reaches log(0). Compute it from "
                "the logit: log sigmoid(z) = -softplus(-z), log(1 - sigmoid(z)) = -softplus(z), "
                "softplus(x) = max(x, 0) + log1p(exp(-|x|)).", wrong=_fswitch(naive_log=True),
                detect=lambda case, received, expected: not np.all(np.isfinite(np.asarray(received, float)))
                and bool(np.all(np.isfinite(np.asarray(expected, float))))),
    ),
    tf_static=("alpha", "gamma"),
    no_loops_over=("class_logits",),
    answer_calls=("keras.losses.BinaryFocalCrossentropy", "keras.losses.binary_focal_crossentropy",
                  "tensorflow.keras.losses.BinaryFocalCrossentropy",
                  "tensorflow.keras.losses.binary_focal_crossentropy"),
))
