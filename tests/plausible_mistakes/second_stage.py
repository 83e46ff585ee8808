"""Chapter 06, the second stage (roi_targets, head_loss, decode_per_class): plausible learner
mistakes."""

import math

import numpy as np
from scipy.special import logsumexp, softmax

from workshop.conventions import sampling_priority

from . import plausible

W10 = (10.0, 10.0, 5.0, 5.0)


# == roi_targets ===================================================================================
def _iou_one(a, b, plus_one=False):
    e = 1.0 if plus_one else 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + e)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + e)
    inter = iw * ih
    union = (a[2] - a[0] + e) * (a[3] - a[1] + e) + (b[2] - b[0] + e) * (b[3] - b[1] + e) - inter
    return inter / union if union > 0 else 0.0


def _iou(a, b):
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _encode_one(g, c, weights):
    wx, wy, ww, wh = weights
    cw, ch = c[2] - c[0], c[3] - c[1]
    gw, gh = g[2] - g[0], g[3] - g[1]
    return [wx * ((g[0] + g[2]) / 2 - (c[0] + c[2]) / 2) / cw, wy * ((g[1] + g[3]) / 2 - (c[1] + c[3]) / 2) / ch,
            ww * math.log(gw / cw), wh * math.log(gh / ch)]


def _encode(g, c, weights):
    return np.array([_encode_one(gi, ci, weights) for gi, ci in zip(g, c)]).reshape(-1, 4)


def _roi_loops(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
               weights, seed, *, index_order=False, low=True, plus_one=False):
    """A learner's candidate-by-candidate roi_targets."""
    cand = [list(map(float, r)) for r in np.asarray(proposals).reshape(-1, 4)]
    gts = [list(map(float, r)) for r in np.asarray(gt_boxes).reshape(-1, 4)]
    cand += gts
    n = len(cand)
    best, match = [0.0] * n, [0] * n
    for i in range(n):
        for j, g in enumerate(gts):
            v = _iou_one(cand[i], g, plus_one)
            if v > best[i]:
                best[i], match[i] = v, j
    if index_order:
        order = list(range(n))
    else:
        prio = sampling_priority(n, seed)
        order = sorted(range(n), key=lambda i: prio[i])
    cap = int(batch_size * fg_fraction)
    fg = [i for i in order if best[i] >= fg_iou][:cap]
    bg = [i for i in order if best[i] < bg_iou_high and (best[i] >= bg_iou_low or not low) and best[i] < fg_iou]
    bg = bg[:max(batch_size - len(fg), 0)]
    labels = [-1] * n
    deltas = np.zeros((n, 4))
    for i in bg:
        labels[i] = 0
    for i in fg:
        labels[i] = int(gt_classes[match[i]])
        deltas[i] = _encode_one(gts[match[i]], cand[i], weights)
    return np.array(labels), deltas


def _roi_numpy(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
               weights, seed, *, cap_rule=int, descending=False, class_one=False, encode_weights=None,
               strict_fg=False, no_low=False):
    """A learner's vectorized roi_targets."""
    cand = np.concatenate([np.asarray(proposals, float).reshape(-1, 4), np.asarray(gt_boxes, float).reshape(-1, 4)])
    g = np.asarray(gt_boxes, float).reshape(-1, 4)
    n = len(cand)
    labels = -np.ones(n, dtype=int)
    deltas = np.zeros((n, 4))
    if len(g):
        iou = _iou(cand, g)
        best, match = iou.max(axis=1), iou.argmax(axis=1)
    else:
        best, match = np.zeros(n), np.zeros(n, dtype=int)
    prio = sampling_priority(n, seed)
    order = np.argsort(prio)[::-1] if descending else np.argsort(prio)
    fg_mask = np.greater(best, fg_iou) if strict_fg else best >= fg_iou
    bg_mask = (best < bg_iou_high) & ~fg_mask
    if not no_low:
        bg_mask &= best >= bg_iou_low
    fg = order[fg_mask[order]][:cap_rule(batch_size * fg_fraction)]
    bg = order[bg_mask[order]][:max(batch_size - len(fg), 0)]
    labels[bg] = 0
    if len(fg):
        labels[fg] = 1 if class_one else np.asarray(gt_classes)[match[fg]]
        deltas[fg] = _encode(g[match[fg]], cand[fg], weights if encode_weights is None else encode_weights)
    return labels, deltas


@plausible("roi_targets", "sampled in index order", "candidates taken in index order, loops", tier="loops")
def roi_targets_index_order_loops(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                                  bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    return _roi_loops(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
                      weights, seed, index_order=True)


@plausible("roi_targets", "background from IoU 0", "background is IoU < bg_iou_high, loops", tier="loops")
def roi_targets_no_low_loops(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                             bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    return _roi_loops(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
                      weights, seed, low=False)


@plausible("roi_targets", "label 1 for every object", "labels[fg] = 1")
def roi_targets_class_one(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                          bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    return _roi_numpy(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
                      weights, seed, class_one=True)


@plausible("roi_targets", "RPN weights", "chapter 4's encode with its default weights, float32")
def roi_targets_rpn_weights(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                            bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    labels, deltas = _roi_numpy(np.asarray(proposals, np.float32), np.asarray(gt_boxes, np.float32), gt_classes,
                                batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high, weights, seed,
                                encode_weights=(1.0, 1.0, 1.0, 1.0))
    return labels, deltas.astype(np.float32)


@plausible("roi_targets", None, "foreground cap with round() instead of int()")
def roi_targets_round_cap(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                          bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    return _roi_numpy(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
                      weights, seed, cap_rule=round)


@plausible("roi_targets", None, "IoU with the +1 pixel convention, loops", tier="loops")
def roi_targets_plus_one_loops(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                               bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    return _roi_loops(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
                      weights, seed, plus_one=True)


@plausible("roi_targets", None, "np.argsort(priority)[::-1]: highest priority first")
def roi_targets_descending(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                           bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    return _roi_numpy(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
                      weights, seed, descending=True)


@plausible("roi_targets", None, "foreground with > and background from IoU 0 together")
def roi_targets_strict_and_no_low(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                                  bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    return _roi_numpy(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
                      weights, seed, strict_fg=True, no_low=True)


# == head_loss =====================================================================================
def _sl1(d, beta):
    d = np.abs(d)
    return np.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta)


@plausible("head_loss", "a box for the background", "every sampled row's box[label - 1], loops", tier="loops")
def head_loss_background_box_loops(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    ce = box = 0.0
    s = 0
    for z, b, y, t in zip(np.asarray(class_logits).tolist(), np.asarray(box_deltas).tolist(),
                          np.asarray(labels).tolist(), np.asarray(target_deltas).tolist()):
        if y < 0:
            continue
        s += 1
        m = max(z)
        ce += m + math.log(sum(math.exp(v - m) for v in z)) - z[y]
        for p, q in zip(b[y - 1], t):
            x = abs(p - q)
            box += 0.5 * x * x / beta if x < beta else x - 0.5 * beta
    s = max(s, 1)
    return ce / s, box / s


@plausible("head_loss", "the RPN's beta", "chapter 5's smooth_l1 with its default beta, beta not passed")
def head_loss_rpn_smooth_l1(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    def smooth_l1(d, beta=1 / 9):
        return _sl1(d, beta)

    z = np.asarray(class_logits, float)
    y = np.asarray(labels)
    keep, fg = y >= 0, y > 0
    s = max(keep.sum(), 1)
    ce = logsumexp(z, axis=1) - z[np.arange(len(y)), np.maximum(y, 0)]
    b = np.asarray(box_deltas, float)[fg, y[fg] - 1]
    return ce[keep].sum() / s, smooth_l1(b - np.asarray(target_deltas)[fg]).sum() / s


@plausible("head_loss", "sigmoid cross-entropy", "log(1 + e^z) - z * onehot per class, np.logaddexp")
def head_loss_sigmoid(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    z = np.asarray(class_logits, float)
    y = np.asarray(labels)
    keep, fg = y >= 0, y > 0
    s = max(keep.sum(), 1)
    onehot = np.eye(z.shape[1])[np.clip(y, 0, None)]
    bce = (np.logaddexp(0.0, z) - onehot * z).sum(axis=1)
    b = np.asarray(box_deltas, float)[fg, y[fg] - 1]
    return bce[keep].sum() / s, _sl1(b - np.asarray(target_deltas)[fg], beta).sum() / s


@plausible("head_loss", "unstable softmax", "-np.log of scipy.special.softmax")
def head_loss_log_softmax_probs(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    z = np.asarray(class_logits, float)
    y = np.asarray(labels)
    keep, fg = y >= 0, y > 0
    s = max(keep.sum(), 1)
    with np.errstate(divide="ignore"):
        ce = -np.log(softmax(z, axis=1)[np.arange(len(y)), np.maximum(y, 0)]) if len(y) else np.zeros(0)
    b = np.asarray(box_deltas, float)[fg, y[fg] - 1]
    return ce[keep].sum() / s, _sl1(b - np.asarray(target_deltas)[fg], beta).sum() / s


@plausible("head_loss", "every class's box trained",
           "logsumexp cross-entropy, box loss on box_deltas - targets[:, None]")
def head_loss_all_boxes(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    z = np.asarray(class_logits, float)
    y = np.asarray(labels)
    keep, fg = y >= 0, y > 0
    s = max(keep.sum(), 1)
    ce = logsumexp(z, axis=1) - np.take_along_axis(z, np.maximum(y, 0)[:, None], axis=1)[:, 0]
    diff = np.asarray(box_deltas, float) - np.asarray(target_deltas, float)[:, None, :]
    return ce[keep].sum() / s, _sl1(diff[fg], beta).sum() / s


@plausible("head_loss", "unsampled regions counted as background", "labels = np.maximum(labels, 0)")
def head_loss_clip_labels(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    z = np.asarray(class_logits, float)
    y = np.maximum(np.asarray(labels), 0)
    fg = y > 0
    s = max(len(y), 1)
    ce = logsumexp(z, axis=1) - z[np.arange(len(y)), y]
    b = np.asarray(box_deltas, float)[fg, y[fg] - 1]
    return ce.sum() / s, _sl1(b - np.asarray(target_deltas)[fg], beta).sum() / s


@plausible("head_loss", None, "np.mean over every region, unsampled rows masked to 0")
def head_loss_mean_all_rows(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    z = np.asarray(class_logits, float)
    y = np.asarray(labels)
    if len(y) == 0:
        return 0.0, 0.0
    keep, fg = y >= 0, y > 0
    ce = logsumexp(z, axis=1) - z[np.arange(len(y)), np.maximum(y, 0)]
    b = np.asarray(box_deltas, float)[np.arange(len(y)), np.maximum(y, 1) - 1]
    box = _sl1(b - np.asarray(target_deltas), beta).sum(axis=1)
    return float(np.mean(ce * keep)), float(np.mean(box * fg))


@plausible("head_loss", None, "box term: .mean() over the foreground rows and coordinates")
def head_loss_box_mean(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    z = np.asarray(class_logits, float)
    y = np.asarray(labels)
    keep, fg = y >= 0, y > 0
    s = max(keep.sum(), 1)
    ce = logsumexp(z, axis=1) - z[np.arange(len(y)), np.maximum(y, 0)]
    b = np.asarray(box_deltas, float)[fg, y[fg] - 1]
    box = _sl1(b - np.asarray(target_deltas)[fg], beta).mean() if fg.any() else 0.0
    return ce[keep].sum() / s, float(box)


@plausible("head_loss", None, "smooth L1 quadratic part without / beta, loops", tier="loops")
def head_loss_quadratic_without_beta_loops(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    ce = box = 0.0
    s = 0
    for r, y in enumerate(np.asarray(labels).tolist()):
        if y < 0:
            continue
        s += 1
        z = [float(v) for v in class_logits[r]]
        m = max(z)
        ce += m + math.log(sum(math.exp(v - m) for v in z)) - z[y]
        if y > 0:
            for c in range(4):
                x = abs(float(box_deltas[r][y - 1][c]) - float(target_deltas[r][c]))
                box += 0.5 * x * x if x < beta else x - 0.5 * beta
    s = max(s, 1)
    return ce / s, box / s


# == decode_per_class ==============================================================================
def _decode_loops(rois, box_deltas, image_shape, weights, *, use_weights=True, class_index=None, clip=True,
                  clamp=math.log(1000 / 16), clamp_raw=False, plus_one=False, shape_wh=False, edge=0.0):
    """A learner's region-by-region, class-by-class decode."""
    if shape_wh:
        W, H = image_shape[0], image_shape[1]
    else:
        H, W = image_shape[0], image_shape[1]
    wx, wy, ww, wh = weights if use_weights else (1.0, 1.0, 1.0, 1.0)
    rois = np.asarray(rois, float).reshape(-1, 4)
    d = np.asarray(box_deltas, float)
    R, K = d.shape[0], d.shape[1]
    out = np.zeros((R, K, 4))
    for r in range(R):
        x1, y1, x2, y2 = rois[r]
        e = 1.0 if plus_one else 0.0
        w, h = x2 - x1 + e, y2 - y1 + e
        cx, cy = x1 + 0.5 * w, y1 + 0.5 * h
        for k in range(K):
            dx, dy, dw, dh = d[r, k if class_index is None else class_index]
            if clamp_raw:
                dw, dh = min(dw, clamp), min(dh, clamp)
                sw, sh = dw / ww, dh / wh
            else:
                sw, sh = min(dw / ww, clamp), min(dh / wh, clamp)
            px, py = cx + dx / wx * w, cy + dy / wy * h
            pw, ph = math.exp(sw) * w, math.exp(sh) * h
            box = [px - pw / 2, py - ph / 2, px + pw / 2, py + ph / 2]
            if clip:
                box = [min(max(box[0], 0), W - edge), min(max(box[1], 0), H - edge),
                       min(max(box[2], 0), W - edge), min(max(box[3], 0), H - edge)]
            out[r, k] = box
    return out


@plausible("decode_per_class", "weights forgotten", "chapter 4's decode, weights (1, 1, 1, 1), loops", tier="loops")
def decode_per_class_no_weights_loops(rois, box_deltas, image_shape, weights=W10):
    return _decode_loops(rois, box_deltas, image_shape, weights, use_weights=False)


@plausible("decode_per_class", "one class's deltas for every class", "box_deltas[r, 0] inside the class loop",
           tier="loops")
def decode_per_class_first_class_loops(rois, box_deltas, image_shape, weights=W10):
    return _decode_loops(rois, box_deltas, image_shape, weights, class_index=0)


def _decode_numpy(rois, box_deltas, image_shape, weights, *, multiply=False, edge=0.0, swap=False,
                  clamp=math.log(1000 / 16), clip=True):
    r = np.asarray(rois, float).reshape(-1, 1, 4)
    d = np.asarray(box_deltas, float)
    wts = np.asarray(weights, float)
    d = d * wts if multiply else d / wts
    w, h = r[..., 2] - r[..., 0], r[..., 3] - r[..., 1]
    cx, cy = r[..., 0] + w / 2, r[..., 1] + h / 2
    with np.errstate(over="ignore", invalid="ignore"):
        pw = w * np.exp(np.minimum(d[..., 2], clamp))
        ph = h * np.exp(np.minimum(d[..., 3], clamp))
        px, py = cx + d[..., 0] * w, cy + d[..., 1] * h
        boxes = np.stack([px - pw / 2, py - ph / 2, px + pw / 2, py + ph / 2], axis=-1)
    if clip:
        H, W = image_shape[:2]
        if swap:
            H, W = W, H
        boxes = np.clip(boxes, 0, np.array([W, H, W, H], float) - edge)
    return boxes


@plausible("decode_per_class", "weights multiplied", "deltas * np.array(weights)")
def decode_per_class_multiply(rois, box_deltas, image_shape, weights=W10):
    return _decode_numpy(rois, box_deltas, image_shape, weights, multiply=True)


@plausible("decode_per_class", "clipped to width - 1", "np.clip(boxes, 0, [W - 1, H - 1, W - 1, H - 1])")
def decode_per_class_minus_one(rois, box_deltas, image_shape, weights=W10):
    return _decode_numpy(rois, box_deltas, image_shape, weights, edge=1.0)


@plausible("decode_per_class", "image_shape read as (width, height)", "W, H = image_shape, loops", tier="loops")
def decode_per_class_shape_wh_loops(rois, box_deltas, image_shape, weights=W10):
    return _decode_loops(rois, box_deltas, image_shape, weights, shape_wh=True)


@plausible("decode_per_class", None, "clamp at log(1000) instead of log(1000 / 16)")
def decode_per_class_clamp_1000(rois, box_deltas, image_shape, weights=W10):
    return _decode_numpy(rois, box_deltas, image_shape, weights, clamp=math.log(1000.0))


@plausible("decode_per_class", None, "dw clamped before dividing by the weights, loops", tier="loops")
def decode_per_class_clamp_raw_loops(rois, box_deltas, image_shape, weights=W10):
    return _decode_loops(rois, box_deltas, image_shape, weights, clamp_raw=True)


@plausible("decode_per_class", None, "region sizes with the +1 pixel convention, loops", tier="loops")
def decode_per_class_plus_one_loops(rois, box_deltas, image_shape, weights=W10):
    return _decode_loops(rois, box_deltas, image_shape, weights, plus_one=True)


@plausible("decode_per_class", None, "weights multiplied and not clipped")
def decode_per_class_multiply_no_clip(rois, box_deltas, image_shape, weights=W10):
    return _decode_numpy(rois, box_deltas, image_shape, weights, multiply=True, clip=False)


# == more: near-misses of the declared mistakes ====================================================
@plausible("roi_targets", "background not topped up",
           "background capped at batch_size - the foreground cap, not the kept foreground")
def roi_targets_bg_from_cap(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                            bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    labels, deltas = _roi_numpy(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low,
                                bg_iou_high, weights, seed)
    bg = np.flatnonzero(labels == 0)
    bg = bg[np.argsort(sampling_priority(len(labels), seed)[bg])]
    labels[bg[max(batch_size - int(batch_size * fg_fraction), 0):]] = -1
    return labels, deltas


@plausible("roi_targets", None, "no GT: every candidate background (the RPN's rule), loops", tier="loops")
def roi_targets_no_gt_background_loops(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25,
                                       fg_iou=0.5, bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    if len(np.asarray(gt_boxes).reshape(-1, 4)) == 0:
        n = len(np.asarray(proposals).reshape(-1, 4))
        prio = sampling_priority(n, seed)
        labels = [-1] * n
        for i in sorted(range(n), key=lambda i: prio[i])[:batch_size]:
            labels[i] = 0
        return np.array(labels), np.zeros((n, 4))
    return _roi_loops(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high,
                      weights, seed)


@plausible("head_loss", "class k's box read at column k", "box_deltas[r][label] (IndexError for class K), loops",
           tier="loops")
def head_loss_column_k_loops(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    ce = box = 0.0
    s = 0
    for r, y in enumerate(np.asarray(labels).tolist()):
        if y < 0:
            continue
        s += 1
        z = [float(v) for v in class_logits[r]]
        m = max(z)
        ce += m + np.log(sum(np.exp(v - m) for v in z)) - z[y]
        if y > 0:
            for c in range(4):
                x = abs(float(box_deltas[r][y][c]) - float(target_deltas[r][c]))
                box += 0.5 * x * x / beta if x < beta else x - 0.5 * beta
    s = max(s, 1)
    return ce / s, box / s


@plausible("head_loss", None, "box term: mean over foreground rows of the row sums (NaN with none)")
def head_loss_box_per_foreground_nan(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    z = np.asarray(class_logits, float)
    y = np.asarray(labels)
    keep, fg = y >= 0, y > 0
    s = max(keep.sum(), 1)
    ce = logsumexp(z, axis=1) - z[np.arange(len(y)), np.maximum(y, 0)]
    b = np.asarray(box_deltas, float)[fg, y[fg] - 1]
    with np.errstate(invalid="ignore"):
        rows = _sl1(b - np.asarray(target_deltas)[fg], beta).sum(axis=1)
        return ce[keep].sum() / s, float(np.mean(rows)) if len(rows) else float("nan")


@plausible("decode_per_class", None, "only the upper bounds clipped: np.minimum(x, W)")
def decode_per_class_upper_clip_only(rois, box_deltas, image_shape, weights=W10):
    boxes = _decode_numpy(rois, box_deltas, image_shape, weights, clip=False)
    H, W = image_shape[:2]
    return np.minimum(boxes, np.array([W, H, W, H], float))


@plausible("decode_per_class", None, "weights divided on the centre only: dw, dh used as they are, loops",
           tier="loops")
def decode_per_class_centre_weights_only_loops(rois, box_deltas, image_shape, weights=W10):
    return _decode_loops(rois, box_deltas, image_shape, (weights[0], weights[1], 1.0, 1.0))


@plausible("roi_targets", "GT boxes not among the candidates", "the proposals alone, loops", tier="loops")
def roi_targets_proposals_only_loops(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                                     bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    props = [list(map(float, r)) for r in np.asarray(proposals).reshape(-1, 4)]
    gts = [list(map(float, r)) for r in np.asarray(gt_boxes).reshape(-1, 4)]
    n = len(props)
    best, match = [0.0] * n, [0] * n
    for i in range(n):
        for j, g in enumerate(gts):
            v = _iou_one(props[i], g)
            if v > best[i]:
                best[i], match[i] = v, j
    prio = sampling_priority(n, seed)
    order = sorted(range(n), key=lambda i: prio[i])
    fg = [i for i in order if best[i] >= fg_iou][:int(batch_size * fg_fraction)]
    bg = [i for i in order if bg_iou_low <= best[i] < bg_iou_high][:max(batch_size - len(fg), 0)]
    labels, deltas = [-1] * n, np.zeros((n, 4))
    for i in bg:
        labels[i] = 0
    for i in fg:
        labels[i] = int(gt_classes[match[i]])
        deltas[i] = _encode_one(gts[match[i]], props[i], weights)
    return np.array(labels), deltas


@plausible("roi_targets", None, "candidates in the wrong order: np.concatenate([gt_boxes, proposals])")
def roi_targets_gt_first(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                         bg_iou_low=0.1, bg_iou_high=0.5, weights=W10, seed=0):
    g = np.asarray(gt_boxes, float).reshape(-1, 4)
    p = np.asarray(proposals, float).reshape(-1, 4)
    cand = np.concatenate([g, p])
    n = len(cand)
    best = np.zeros(n)
    match = np.zeros(n, dtype=int)
    if len(g):
        iou = _iou(cand, g)
        best, match = iou.max(axis=1), iou.argmax(axis=1)
    order = np.argsort(sampling_priority(n, seed))
    fg = order[best[order] >= fg_iou][:int(batch_size * fg_fraction)]
    bg = order[(best[order] >= bg_iou_low) & (best[order] < bg_iou_high)][:max(batch_size - len(fg), 0)]
    labels, deltas = np.full(n, -1), np.zeros((n, 4))
    labels[bg] = 0
    if len(fg):
        labels[fg] = np.asarray(gt_classes)[match[fg]]
        deltas[fg] = _encode(g[match[fg]], cand[fg], weights)
    return labels, deltas


@plausible("decode_per_class", None, "clipped at 0 only: np.maximum(boxes, 0)")
def decode_per_class_lower_clip_only(rois, box_deltas, image_shape, weights=W10):
    return np.maximum(_decode_numpy(rois, box_deltas, image_shape, weights, clip=False), 0.0)
