"""Chapter 05 (rpn_targets, rpn_proposals): plausible learner mistakes."""

import math

import numpy as np

from workshop.models.rpn import sampling_priority

from . import plausible


def _iou_one(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _iou_matrix(a, b):
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _encode(g, a, corners=False):
    aw, ah = a[2] - a[0], a[3] - a[1]
    gw, gh = g[2] - g[0], g[3] - g[1]
    if corners:
        return [(g[0] - a[0]) / aw, (g[1] - a[1]) / ah, math.log(gw / aw), math.log(gh / ah)]
    return [((g[0] + g[2]) / 2 - (a[0] + a[2]) / 2) / aw, ((g[1] + g[3]) / 2 - (a[1] + a[3]) / 2) / ah,
            math.log(gw / aw), math.log(gh / ah)]


# == rpn_targets: loops ===========================================================================
def _targets_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                   positive_fraction, seed, *, pos_op=">=", neg_op="<", corners=False,
                   order="low"):
    H, W = image_shape[0], image_shape[1]
    anchors = [list(map(float, r)) for r in anchors]
    gts = [list(map(float, r)) for r in gt_boxes]
    n = len(anchors)
    ious = [[_iou_one(a, g) for g in gts] for a in anchors]
    inside = [a[0] >= 0 and a[1] >= 0 and a[2] <= W and a[3] <= H for a in anchors]
    best = [max([ious[i][j] for i in range(n) if inside[i]], default=0.0) for j in range(len(gts))]
    labels = [-1] * n
    for i in range(n):
        if not inside[i]:
            continue
        top = max(ious[i], default=0.0)
        if (top < negative_iou) if neg_op == "<" else (top <= negative_iou):
            labels[i] = 0
        positive = top >= positive_iou if pos_op == ">=" else top > positive_iou
        if positive or any(best[j] > 0 and ious[i][j] == best[j] for j in range(len(gts))):
            labels[i] = 1
    prio = list(sampling_priority(n, seed))
    sign = 1 if order == "low" else -1
    pos = sorted([i for i in range(n) if labels[i] == 1], key=lambda i: sign * prio[i])
    max_pos = int(batch_size * positive_fraction)
    for i in pos[max_pos:]:
        labels[i] = -1
    neg = sorted([i for i in range(n) if labels[i] == 0], key=lambda i: sign * prio[i])
    for i in neg[max(batch_size - min(len(pos), max_pos), 0):]:
        labels[i] = -1
    deltas = np.zeros((n, 4))
    for i in range(n):
        if labels[i] == 1:
            j = max(range(len(gts)), key=lambda j: (ious[i][j], -j))
            deltas[i] = _encode(gts[j], anchors[i], corners)
    return np.array(labels, dtype=np.int64), deltas


@plausible("rpn_targets", "> instead of >=", "top > positive_iou, loops", tier="loops")
def rpn_targets_strict_positive_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                                      batch_size=256, positive_fraction=0.5, seed=0):
    return _targets_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, pos_op=">")


@plausible("rpn_targets", "IoU equal to negative_iou counted negative", "top <= negative_iou, loops",
           tier="loops")
def rpn_targets_inclusive_negative_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                                         batch_size=256, positive_fraction=0.5, seed=0):
    return _targets_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, neg_op="<=")


@plausible("rpn_targets", None, "the highest priorities kept, loops", tier="loops")
def rpn_targets_highest_priority_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                                       batch_size=256, positive_fraction=0.5, seed=0):
    return _targets_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, order="high")


@plausible("rpn_targets", None, "deltas from the corners, not the centres, loops", tier="loops")
def rpn_targets_corner_deltas_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                                    batch_size=256, positive_fraction=0.5, seed=0):
    return _targets_loops(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, corners=True)


# == rpn_targets: numpy ===========================================================================
def _targets_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                   positive_fraction, seed, *, wh=False, strict_border=False, negatives_last=False,
                   argmax_best=False, deltas_early=False, rng_sampling=False):
    a = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if wh:
        W, H = image_shape[:2]
    else:
        H, W = image_shape[:2]
    n = len(a)
    if strict_border:
        inside = (a[:, 0] > 0) & (a[:, 1] > 0) & (a[:, 2] < W) & (a[:, 3] < H)
    else:
        inside = (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= W) & (a[:, 3] <= H)
    labels = -np.ones(n, dtype=np.int64)
    deltas = np.zeros((n, 4))
    if len(g) == 0:
        labels[inside] = 0
        iou = np.zeros((n, 1))
    else:
        iou = _iou_matrix(a, g)
        top = iou.max(axis=1)
        masked = np.where(inside[:, None], iou, 0.0)
        best = masked.max(axis=0) if n else np.zeros(len(g))
        if argmax_best:
            is_best = np.zeros(n, bool)
            if n:
                is_best[masked.argmax(axis=0)[best > 0]] = True
        else:
            is_best = ((iou == best) & (best > 0)).any(axis=1)
        if negatives_last:
            labels[inside & ((top >= positive_iou) | is_best)] = 1
            labels[inside & (top < negative_iou)] = 0
        else:
            labels[inside & (top < negative_iou)] = 0
            labels[inside & ((top >= positive_iou) | is_best)] = 1
    match = iou.argmax(axis=1)

    def fill(rows):
        for i in rows:
            deltas[i] = _encode(g[match[i]], a[i])

    if deltas_early and len(g):
        fill(np.flatnonzero(labels == 1))
    if rng_sampling:
        rank = np.random.default_rng(seed).permutation(n)
    else:
        rank = sampling_priority(n, seed)
    pos = np.flatnonzero(labels == 1)
    pos = pos[np.argsort(rank[pos], kind="stable")]
    max_pos = int(batch_size * positive_fraction)
    labels[pos[max_pos:]] = -1
    neg = np.flatnonzero(labels == 0)
    neg = neg[np.argsort(rank[neg], kind="stable")]
    labels[neg[max(batch_size - min(len(pos), max_pos), 0):]] = -1
    if not deltas_early and len(g):
        fill(np.flatnonzero(labels == 1))
    return labels, deltas


@plausible("rpn_targets", "image_shape read as (width, height)", "W, H = image_shape")
def rpn_targets_wh(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3, batch_size=256,
                   positive_fraction=0.5, seed=0):
    return _targets_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, wh=True)


@plausible("rpn_targets", "anchors touching the border ignored", "x1 > 0 and x2 < W for inside")
def rpn_targets_strict_border(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                              batch_size=256, positive_fraction=0.5, seed=0):
    return _targets_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, strict_border=True)


@plausible("rpn_targets", "negatives labelled after positives", "positives set first, then negatives")
def rpn_targets_negatives_last(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                               batch_size=256, positive_fraction=0.5, seed=0):
    return _targets_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, negatives_last=True)


@plausible("rpn_targets", "only one best anchor per GT", "argmax per GT column")
def rpn_targets_argmax(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3, batch_size=256,
                       positive_fraction=0.5, seed=0):
    return _targets_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, argmax_best=True)


@plausible("rpn_targets", "deltas for positives dropped by the sampling", "deltas filled before sampling")
def rpn_targets_deltas_early(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                             batch_size=256, positive_fraction=0.5, seed=0):
    return _targets_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, deltas_early=True)


@plausible("rpn_targets", None, "np.random permutation instead of sampling_priority")
def rpn_targets_rng(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3, batch_size=256,
                    positive_fraction=0.5, seed=0):
    return _targets_numpy(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                          positive_fraction, seed, rng_sampling=True)


# == rpn_proposals ================================================================================
def _decode(anchors, deltas, corners=False):
    a, d = np.asarray(anchors, dtype=np.float64).reshape(-1, 4), np.asarray(deltas, dtype=np.float64).reshape(-1, 4)
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    w = aw * np.exp(np.minimum(d[:, 2], math.log(1000 / 16)))
    h = ah * np.exp(np.minimum(d[:, 3], math.log(1000 / 16)))
    if corners:
        x1, y1 = a[:, 0] + d[:, 0] * aw, a[:, 1] + d[:, 1] * ah
        return np.stack([x1, y1, x1 + w, y1 + h], axis=1)
    cx = a[:, 0] + 0.5 * aw + d[:, 0] * aw
    cy = a[:, 1] + 0.5 * ah + d[:, 1] * ah
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _nms(boxes, order, thr, limit, inclusive=False):
    keep = []
    order = list(order)
    while order and len(keep) < limit:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            v = _iou_one(boxes[i], boxes[j])
            if not (v >= thr if inclusive else v > thr):
                rest.append(j)
        order = rest
    return keep


def _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n, nms_threshold,
               min_size, *, minus_one=False, strict_size=False, topk_first=False, inclusive=False,
               reverse_sort=False, corners=False, xy_to_hw=False, post_before=False):
    H, W = image_shape[0], image_shape[1]
    s = np.asarray(objectness, dtype=np.float64).reshape(-1)
    boxes = _decode(anchors, deltas, corners)
    xmax, ymax = (H, W) if xy_to_hw else (W, H)
    if minus_one:
        xmax, ymax = xmax - 1, ymax - 1
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, xmax)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, ymax)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    big = (bw > min_size) & (bh > min_size) if strict_size else (bw >= min_size) & (bh >= min_size)

    def ranked(idx):
        if reverse_sort:
            return idx[np.argsort(s[idx])[::-1]]
        return idx[np.argsort(-s[idx], kind="stable")]

    if topk_first:
        top = ranked(np.arange(len(s)))[:pre_nms_top_n]
        top = top[big[top]]
    else:
        top = ranked(np.flatnonzero(big))[:pre_nms_top_n]
    if post_before:
        top = top[:post_nms_top_n]
    keep = _nms(boxes, top, nms_threshold, post_nms_top_n, inclusive)
    keep = np.array(keep, dtype=np.int64)
    return boxes[keep].reshape(-1, 4), s[keep]


@plausible("rpn_proposals", "clipped to width - 1", "clip to [0, W - 1] and [0, H - 1]")
def rpn_proposals_minus_one(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                            post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    return _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                      nms_threshold, min_size, minus_one=True)


@plausible("rpn_proposals", "min_size compared with >", "keep w > min_size")
def rpn_proposals_strict_size(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                              post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    return _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                      nms_threshold, min_size, strict_size=True)


@plausible("rpn_proposals", "top-N before dropping small boxes", "top-N first, then small boxes removed")
def rpn_proposals_topk_first(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                             post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    return _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                      nms_threshold, min_size, topk_first=True)


@plausible("rpn_proposals", "NMS suppresses IoU equal to the threshold", "NMS drops iou >= threshold")
def rpn_proposals_nms_inclusive(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                                post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    return _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                      nms_threshold, min_size, inclusive=True)


@plausible("rpn_proposals", "unstable sort", "np.argsort(scores)[::-1]")
def rpn_proposals_reversed(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                           post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    return _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                      nms_threshold, min_size, reverse_sort=True)


@plausible("rpn_proposals", "clipped with height and width swapped", "H, W used for x, y")
def rpn_proposals_hw(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                     post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    return _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                      nms_threshold, min_size, xy_to_hw=True)


@plausible("rpn_proposals", None, "decoded from the anchor's corner")
def rpn_proposals_corner_decode(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                                post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    return _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                      nms_threshold, min_size, corners=True)


@plausible("rpn_proposals", None, "post_nms_top_n cut before NMS")
def rpn_proposals_post_before(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                              post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    return _proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                      nms_threshold, min_size, post_before=True)


@plausible("rpn_proposals", "NMS suppresses IoU equal to the threshold", "NMS with >=, loops",
           tier="loops")
def rpn_proposals_nms_inclusive_loops(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                                      post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    boxes = []
    for (x1, y1, x2, y2), (dx, dy, dw, dh) in zip(np.asarray(anchors).tolist(), np.asarray(deltas).tolist()):
        w, h = x2 - x1, y2 - y1
        cx, cy = x1 + w / 2 + dx * w, y1 + h / 2 + dy * h
        w, h = w * math.exp(min(dw, math.log(62.5))), h * math.exp(min(dh, math.log(62.5)))
        bx = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        bx = [min(max(bx[0], 0), image_shape[1]), min(max(bx[1], 0), image_shape[0]),
              min(max(bx[2], 0), image_shape[1]), min(max(bx[3], 0), image_shape[0])]
        boxes.append(bx)
    scores = list(np.asarray(objectness, dtype=float))
    order = [i for i in range(len(boxes))
             if boxes[i][2] - boxes[i][0] >= min_size and boxes[i][3] - boxes[i][1] >= min_size]
    order.sort(key=lambda i: -scores[i])
    order = order[:pre_nms_top_n]
    keep = []
    while order and len(keep) < post_nms_top_n:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if _iou_one(boxes[i], boxes[j]) < nms_threshold]
    return np.array([boxes[i] for i in keep]).reshape(-1, 4), np.array([scores[i] for i in keep])
