"""Chapter 05, the steps of rpn_targets (label_anchors, subsample_labels): plausible learner
mistakes."""

import numpy as np

from workshop.conventions import sampling_priority

from . import plausible


# == label_anchors =================================================================================
def _iou_one(a, b, plus_one=False):
    e = 1.0 if plus_one else 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + e)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + e)
    inter = iw * ih
    union = (a[2] - a[0] + e) * (a[3] - a[1] + e) + (b[2] - b[0] + e) * (b[3] - b[1] + e) - inter
    return inter / union if union > 0 else 0.0


def _label_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, *, strict=False, border=True,
                 zero_best=False, no_best=False, plus_one=False):
    """A learner's anchor-by-anchor labelling."""
    H, W = image_shape[0], image_shape[1]
    A = np.asarray(anchors, float).reshape(-1, 4).tolist()
    G = np.asarray(gt_boxes, float).reshape(-1, 4).tolist()
    ious = [[_iou_one(a, g, plus_one) for g in G] for a in A]
    inside = [(a[0] >= 0 and a[1] >= 0 and a[2] <= W and a[3] <= H) or not border for a in A]
    best = [0.0] * len(G)
    for i, row in enumerate(ious):
        if inside[i]:
            for j, v in enumerate(row):
                best[j] = max(best[j], v)
    labels, matched = [], []
    for i, row in enumerate(ious):
        top, m = 0.0, 0
        for j, v in enumerate(row):
            if v > top:
                top, m = v, j
        matched.append(m)
        lab = -1
        if inside[i]:
            if top < negative_iou:
                lab = 0
            above = top > positive_iou if strict else top >= positive_iou
            is_best = any(v == best[j] and (zero_best or best[j] > 0) for j, v in enumerate(row)) and not no_best
            if above or is_best:
                lab = 1
        labels.append(lab)
    return np.array(labels, dtype=np.int64), np.array(matched, dtype=np.int64)


def _iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = np.prod(a[:, 2:] - a[:, :2], axis=1)[:, None] + np.prod(b[:, 2:] - b[:, :2], axis=1)[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _label_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, *, argmax_best=False,
                 neg_inclusive=False, wh=False, matched_minus_one=False, default_low=None):
    a = np.asarray(anchors, float).reshape(-1, 4)
    g = np.asarray(gt_boxes, float).reshape(-1, 4)
    if wh:
        W, H = image_shape[:2]
    else:
        H, W = image_shape[:2]
    inside = (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= W) & (a[:, 3] <= H)
    labels = np.where(inside, 0, -1)
    if len(g) == 0:
        return labels, np.zeros(len(a), dtype=np.int64)
    iou = _iou(a, g)
    top, matched = iou.max(axis=1), iou.argmax(axis=1)
    inside_iou = iou * inside[:, None]
    best = inside_iou.max(axis=0)
    if argmax_best:
        is_best = np.zeros(len(a), bool)
        is_best[inside_iou.argmax(axis=0)[best > 0]] = True
    else:
        is_best = np.any((iou == best) & (best > 0), axis=1)
    neg = top <= negative_iou if neg_inclusive else top < negative_iou
    labels = np.where(inside & neg, 0, -1)
    labels = np.where(inside & ((top >= positive_iou) | is_best), 1, labels)
    if matched_minus_one:
        matched = np.where(labels == -1, -1, matched)
    return labels, matched


@plausible("label_anchors", "> instead of >=", "top > positive_iou, loops", tier="loops")
def label_anchors_strict_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    return _label_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, strict=True)


@plausible("label_anchors", "border anchors not ignored", "every anchor labelled, loops", tier="loops")
def label_anchors_no_border_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    return _label_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, border=False)


@plausible("label_anchors", "GT with no overlap given best anchors", "iou == best without best > 0, loops",
           tier="loops")
def label_anchors_zero_best_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    return _label_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, zero_best=True)


@plausible("label_anchors", "only one best anchor per GT", "argmax of each GT's column")
def label_anchors_argmax(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    return _label_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, argmax_best=True)


@plausible("label_anchors", "IoU equal to negative_iou counted negative", "top <= negative_iou, np.where")
def label_anchors_negative_inclusive(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    return _label_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, neg_inclusive=True)


@plausible("label_anchors", "image_shape read as (width, height)", "W, H = image_shape[:2]")
def label_anchors_wh(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    return _label_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, wh=True)


@plausible("label_anchors", None, "IoU with the +1 pixel convention, loops", tier="loops")
def label_anchors_plus_one_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    return _label_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, plus_one=True)


@plausible("label_anchors", None, "matched set to -1 for ignored anchors")
def label_anchors_matched_minus_one(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    return _label_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, matched_minus_one=True)


@plausible("label_anchors", None, "> for positives and <= for negatives together, loops", tier="loops")
def label_anchors_both_thresholds_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    labels, matched = _label_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, strict=True)
    inc, _ = _label_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, neg_inclusive=True)
    labels = np.where((labels == -1) & (inc == 0), 0, labels)
    return labels, matched


# == subsample_labels ==============================================================================
def _sample_loops(labels, batch_size, positive_fraction, seed, *, index_order=False, cap=True, topup=True):
    out = [int(v) for v in labels]
    prio = sampling_priority(len(out), seed)
    order = list(range(len(out))) if index_order else sorted(range(len(out)), key=lambda i: prio[i])
    max_pos = int(batch_size * positive_fraction) if cap else len(out)
    kept_pos = 0
    for i in order:
        if out[i] == 1:
            if kept_pos < max_pos:
                kept_pos += 1
            else:
                out[i] = -1
    n_neg = batch_size - kept_pos if topup else batch_size - int(batch_size * positive_fraction)
    kept_neg = 0
    for i in order:
        if out[i] == 0:
            if kept_neg < n_neg:
                kept_neg += 1
            else:
                out[i] = -1
    return np.array(out)


def _sample_numpy(labels, batch_size, positive_fraction, seed, *, descending=False, cap_rule=int,
                  own_priority=False, neg_from_all=False):
    y = np.array(labels, dtype=np.int64)
    prio = sampling_priority(len(y), seed)
    pos = np.where(y == 1)[0]
    if own_priority:
        pos = pos[np.argsort(sampling_priority(len(pos), seed))]
    else:
        pos = pos[np.argsort(prio[pos])[::-1]] if descending else pos[np.argsort(prio[pos])]
    cap = cap_rule(batch_size * positive_fraction)
    y[pos[cap:]] = -1
    neg = np.where(y == 0)[0]
    neg = neg[np.argsort(prio[neg])[::-1]] if descending else neg[np.argsort(prio[neg])]
    n_neg = batch_size - len(pos) if neg_from_all else batch_size - min(len(pos), cap)
    y[neg[max(n_neg, 0):]] = -1
    return y


@plausible("subsample_labels", "sampled in index order", "the first anchors by index, loops", tier="loops")
def subsample_labels_index_order_loops(labels, batch_size=256, positive_fraction=0.5, seed=0):
    return _sample_loops(labels, batch_size, positive_fraction, seed, index_order=True)


@plausible("subsample_labels", "positives not capped", "every positive kept, loops", tier="loops")
def subsample_labels_no_cap_loops(labels, batch_size=256, positive_fraction=0.5, seed=0):
    return _sample_loops(labels, batch_size, positive_fraction, seed, cap=False)


@plausible("subsample_labels", "negatives not topped up", "batch_size - the cap negatives, loops", tier="loops")
def subsample_labels_no_topup_loops(labels, batch_size=256, positive_fraction=0.5, seed=0):
    return _sample_loops(labels, batch_size, positive_fraction, seed, topup=False)


@plausible("subsample_labels", "highest priority first", "np.argsort(priority)[::-1]")
def subsample_labels_descending(labels, batch_size=256, positive_fraction=0.5, seed=0):
    return _sample_numpy(labels, batch_size, positive_fraction, seed, descending=True)


@plausible("subsample_labels", "cap rounded up", "cap = int(batch_size * positive_fraction + 0.5)")
def subsample_labels_round_half_up(labels, batch_size=256, positive_fraction=0.5, seed=0):
    return _sample_numpy(labels, batch_size, positive_fraction, seed, cap_rule=lambda v: int(v + 0.5))


@plausible("subsample_labels", "priorities of the positives alone", "sampling_priority(len(pos), seed)")
def subsample_labels_own_priority(labels, batch_size=256, positive_fraction=0.5, seed=0):
    return _sample_numpy(labels, batch_size, positive_fraction, seed, own_priority=True)


@plausible("subsample_labels", None, "cap with round(): 2.5 -> 2 but 3.5 -> 4")
def subsample_labels_round(labels, batch_size=256, positive_fraction=0.5, seed=0):
    return _sample_numpy(labels, batch_size, positive_fraction, seed, cap_rule=round)


@plausible("subsample_labels", None, "negatives: batch_size - every positive, not the kept ones")
def subsample_labels_neg_from_all(labels, batch_size=256, positive_fraction=0.5, seed=0):
    return _sample_numpy(labels, batch_size, positive_fraction, seed, neg_from_all=True)


@plausible("subsample_labels", None, "index order and no top-up together, loops", tier="loops")
def subsample_labels_index_no_topup_loops(labels, batch_size=256, positive_fraction=0.5, seed=0):
    return _sample_loops(labels, batch_size, positive_fraction, seed, index_order=True, topup=False)


@plausible("subsample_labels", None, "default positive_fraction=0.25")
def subsample_labels_wrong_default(labels, batch_size=256, positive_fraction=0.25, seed=0):
    return _sample_numpy(labels, batch_size, positive_fraction, seed)


# == more: the same mistakes written another way, and near-misses ==================================
@plausible("label_anchors", "negatives labelled after positives", "if top < negative_iou: 0 elif positive: 1, loops",
           tier="loops")
def label_anchors_if_elif_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    H, W = image_shape[0], image_shape[1]
    A = np.asarray(anchors, float).reshape(-1, 4).tolist()
    G = np.asarray(gt_boxes, float).reshape(-1, 4).tolist()
    inside = [a[0] >= 0 and a[1] >= 0 and a[2] <= W and a[3] <= H for a in A]
    ious = [[_iou_one(a, g) for g in G] for a in A]
    best = [max([ious[i][j] for i in range(len(A)) if inside[i]], default=0.0) for j in range(len(G))]
    labels, matched = [], []
    for i in range(len(A)):
        top = max(ious[i], default=0.0)
        matched.append(ious[i].index(top) if G else 0)
        if not inside[i]:
            labels.append(-1)
        elif top < negative_iou:
            labels.append(0)
        elif top >= positive_iou or any(b > 0 and v == b for v, b in zip(ious[i], best)):
            labels.append(1)
        else:
            labels.append(-1)
    return np.array(labels), np.array(matched)


@plausible("label_anchors", "best anchor searched among border anchors", "best = iou.max(axis=0) over every anchor")
def label_anchors_best_over_all(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    a = np.asarray(anchors, float).reshape(-1, 4)
    g = np.asarray(gt_boxes, float).reshape(-1, 4)
    H, W = image_shape[:2]
    inside = np.all((a[:, :2] >= 0) & (a[:, 2:] <= [W, H]), axis=1)
    if len(g) == 0:
        return np.where(inside, 0, -1), np.zeros(len(a), dtype=int)
    iou = _iou(a, g)
    best = iou.max(axis=0) if len(a) else np.zeros(len(g))
    is_best = ((iou == best) & (best > 0)).any(axis=1)
    labels = -np.ones(len(a), dtype=int)
    labels[inside & (iou.max(axis=1) < negative_iou)] = 0
    labels[inside & ((iou.max(axis=1) >= positive_iou) | is_best)] = 1
    return labels, iou.argmax(axis=1)


@plausible("label_anchors", "anchors touching the border ignored", "inside: x1 > 0 and x2 < W, float32")
def label_anchors_touching(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    a = np.asarray(anchors, np.float32).reshape(-1, 4)
    g = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    H, W = image_shape[:2]
    inside = (a[:, 0] > 0) & (a[:, 1] > 0) & (a[:, 2] < W) & (a[:, 3] < H)
    if len(g) == 0:
        return np.where(inside, 0, -1), np.zeros(len(a), dtype=int)
    iou = _iou(a.astype(float), g.astype(float))
    best = np.where(inside[:, None], iou, 0).max(axis=0) if len(a) else np.zeros(len(g))
    is_best = ((iou == best) & (best > 0)).any(axis=1)
    labels = -np.ones(len(a), dtype=int)
    labels[inside & (iou.max(axis=1) < negative_iou)] = 0
    labels[inside & ((iou.max(axis=1) >= positive_iou) | is_best)] = 1
    return labels, iou.argmax(axis=1)


@plausible("subsample_labels", None, "one negative too many: neg[n_neg + 1:] = -1")
def subsample_labels_one_more_negative(labels, batch_size=256, positive_fraction=0.5, seed=0):
    y = np.array(labels, dtype=np.int64)
    prio = sampling_priority(len(y), seed)
    pos = np.flatnonzero(y == 1)
    pos = pos[np.argsort(prio[pos])]
    cap = int(batch_size * positive_fraction)
    y[pos[cap:]] = -1
    neg = np.flatnonzero(y == 0)
    neg = neg[np.argsort(prio[neg])]
    y[neg[max(batch_size - min(len(pos), cap), 0) + 1:]] = -1
    return y


@plausible("label_anchors", None, "matched: the last GT of largest IoU (ties, e.g. IoU 0 everywhere, to the last)")
def label_anchors_last_gt(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    labels, matched = _label_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou)
    g = np.asarray(gt_boxes, float).reshape(-1, 4)
    if len(g):
        iou = _iou(np.asarray(anchors, float).reshape(-1, 4), g)
        matched = len(g) - 1 - iou[:, ::-1].argmax(axis=1)
    return labels, matched


@plausible("subsample_labels", None, "positives in index order, negatives by priority, loops", tier="loops")
def subsample_labels_positives_index_order_loops(labels, batch_size=256, positive_fraction=0.5, seed=0):
    out = [int(v) for v in labels]
    prio = sampling_priority(len(out), seed)
    cap = int(batch_size * positive_fraction)
    pos = [i for i in range(len(out)) if out[i] == 1]
    for i in pos[cap:]:
        out[i] = -1
    neg = sorted([i for i in range(len(out)) if out[i] == 0], key=lambda i: prio[i])
    for i in neg[max(batch_size - min(len(pos), cap), 0):]:
        out[i] = -1
    return np.array(out)
