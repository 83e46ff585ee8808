"""Chapter 09 (mean average precision): learner code with one plausible mistake each."""

from __future__ import annotations

import numpy as np

from . import plausible


# ============================================================================================
# average_precision
# ============================================================================================
def _envelope(p):
    return np.maximum.accumulate(np.asarray(p, float)[::-1])[::-1]


def _voc_area(r, p):
    mrec = np.concatenate([[0.0], r, [1.0]])
    mpre = _envelope(np.concatenate([[0.0], p, [0.0]]))
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _sampled(r, p, thresholds):
    env = np.append(_envelope(p), 0.0)
    return float(np.mean(env[np.searchsorted(r, thresholds, side="left")]))


def _ap_loops(recall, precision, thresholds):
    total = 0.0
    for t in thresholds:
        best = 0.0
        for r, p in zip(recall, precision):
            if r >= t:
                best = max(best, p)
        total += best
    return total / len(thresholds)


@plausible("average_precision", "voc07 thresholds as i / 10", "11 points [i / 10 for i in range(11)]",
           tier="loops")
def ap_voc07_div(recall, precision, method="coco"):
    r, p = np.asarray(recall, float), np.asarray(precision, float)
    if method == "voc":
        return _voc_area(r, p)
    levels = [i / 10 for i in range(11)] if method == "voc07" else np.linspace(0, 1, 101).tolist()
    return _ap_loops(r.tolist(), p.tolist(), levels)


@plausible("average_precision", "voc07 thresholds as i / 10", "np.round(np.arange(0, 1.1, 0.1), 1)")
def ap_voc07_rounded(recall, precision, method="coco"):
    r, p = np.asarray(recall, float), np.asarray(precision, float)
    if method == "voc":
        return _voc_area(r, p)
    if method == "voc07":
        return _sampled(r, p, np.round(np.arange(0, 1.1, 0.1), 1))
    return _sampled(r, p, np.linspace(0, 1, 101))


@plausible("average_precision", "voc07 thresholds accumulated", "t = 0; while t <= 1: ...; t += 0.1",
           tier="loops")
def ap_voc07_accumulated(recall, precision, method="coco"):
    r, p = list(recall), list(precision)
    if method == "voc":
        return _voc_area(np.asarray(r, float), np.asarray(p, float))
    if method == "coco":
        return _ap_loops(r, p, np.linspace(0, 1, 101).tolist())
    levels, t = [], 0.0
    while t <= 1.0:
        levels.append(t)
        t += 0.1
    return _ap_loops(r, p, levels)


@plausible("average_precision", "thresholds built with arange", "coco levels np.arange(101) / 100")
def ap_coco_div(recall, precision, method="coco"):
    r, p = np.asarray(recall, float), np.asarray(precision, float)
    if method == "voc":
        return _voc_area(r, p)
    levels = np.arange(0, 1.1, 0.1) if method == "voc07" else np.arange(101) / 100
    return _sampled(r, p, levels)


@plausible("average_precision", "voc area starts at the first recall", "voc: np.sum(np.diff(r) * env[1:])")
def ap_voc_no_start(recall, precision, method="coco"):
    r, p = np.asarray(recall, float), np.asarray(precision, float)
    if method == "voc":
        return float(np.sum(np.diff(r) * _envelope(p)[1:]))
    levels = np.arange(0, 1.1, 0.1) if method == "voc07" else np.linspace(0, 1, 101)
    return _sampled(r, p, levels)


@plausible("average_precision", "precision beyond the largest recall", "index clipped to the last point")
def ap_clipped_index(recall, precision, method="coco"):
    r, p = np.asarray(recall, float), np.asarray(precision, float)
    if method == "voc":
        return _voc_area(r, p)
    if len(r) == 0:
        return 0.0
    levels = np.arange(0, 1.1, 0.1) if method == "voc07" else np.linspace(0, 1, 101)
    idx = np.minimum(np.searchsorted(r, levels), len(r) - 1)
    return float(np.mean(_envelope(p)[idx]))


@plausible("average_precision", "no interpolation", "precision read at the first recall >= t", tier="loops")
def ap_raw_precision(recall, precision, method="coco"):
    r, p = list(recall), list(precision)
    if method == "voc":
        area, prev = 0.0, 0.0
        for ri, pi in zip(r, p):
            area += (ri - prev) * pi
            prev = ri
        return area
    levels = np.arange(0, 1.1, 0.1) if method == "voc07" else np.linspace(0, 1, 101)
    total = 0.0
    for t in levels:
        for ri, pi in zip(r, p):
            if ri >= t:
                total += pi
                break
    return total / len(levels)


@plausible("average_precision", "recall > t instead of >= t", "searchsorted(..., side='right')")
def ap_side_right(recall, precision, method="coco"):
    r, p = np.asarray(recall, float), np.asarray(precision, float)
    if method == "voc":
        return _voc_area(r, p)
    levels = np.arange(0, 1.1, 0.1) if method == "voc07" else np.linspace(0, 1, 101)
    env = np.append(_envelope(p), 0.0)
    return float(np.mean(env[np.searchsorted(r, levels, side="right")]))


@plausible("average_precision", None, "voc: trapezoids under the raw curve (no envelope)")
def ap_voc_trapezoid(recall, precision, method="coco"):
    r, p = np.asarray(recall, float), np.asarray(precision, float)
    if method == "voc":
        return float(np.sum(np.diff(r) * (p[1:] + p[:-1]) / 2))
    levels = np.arange(0, 1.1, 0.1) if method == "voc07" else np.linspace(0, 1, 101)
    return _sampled(r, p, levels)


@plausible("average_precision", None, "coco: 100 levels np.linspace(0, 1, 100)")
def ap_coco_100(recall, precision, method="coco"):
    r, p = np.asarray(recall, float), np.asarray(precision, float)
    if method == "voc":
        return _voc_area(r, p)
    levels = np.arange(0, 1.1, 0.1) if method == "voc07" else np.linspace(0, 1, 100)
    return _sampled(r, p, levels)


# ============================================================================================
# match_detections
# ============================================================================================
def _iou(a, b, one=0.0):
    w = min(a[2], b[2]) - max(a[0], b[0]) + one
    h = min(a[3], b[3]) - max(a[1], b[1]) + one
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0] + one) * (a[3] - a[1] + one) + (b[2] - b[0] + one) * (b[3] - b[1] + one) - inter)


def _iou_matrix(dets, gts):
    d, g = np.asarray(dets, float).reshape(-1, 4), np.asarray(gts, float).reshape(-1, 4)
    w = np.minimum(d[:, None, 2], g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0])
    h = np.minimum(d[:, None, 3], g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area_d = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    union = area_d[:, None] + area_g[None, :] - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _greedy(ious, order, t, pick):
    """Visit ``order``; ``pick(row, free)`` returns the object index or -1."""
    free = np.ones(ious.shape[1], bool)
    tp = np.zeros(ious.shape[0], bool)
    for d in order:
        g = pick(ious[d], free, t) if ious.shape[1] else -1
        if g >= 0:
            free[g] = False
            tp[d] = True
    return tp


def _pick_last_best(row, free, t):
    cand = np.where(free & (row >= t), row, -1.0)
    g = len(row) - 1 - int(np.argmax(cand[::-1]))
    return g if cand[g] >= 0 else -1


@plausible("match_detections", "IoU > threshold instead of >=", "iou > best with best = threshold",
           tier="loops")
def md_strict(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    gts, dets = np.asarray(gt_boxes).tolist(), np.asarray(det_boxes).tolist()
    order = sorted(range(len(dets)), key=lambda i: -det_scores[i])
    taken, tp = [False] * len(gts), [False] * len(dets)
    for d in order:
        best, m = -1.0, -1
        for g in range(len(gts)):
            iou = _iou(dets[d], gts[g])
            if not taken[g] and iou > iou_threshold and iou >= best:
                best, m = iou, g
        if m >= 0:
            taken[m] = True
            tp[d] = True
    return np.array(tp, bool)


@plausible("match_detections", "duplicates counted as true positives", "no 'taken' flags")
def md_no_taken(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    ious = _iou_matrix(det_boxes, gt_boxes)
    if ious.shape[1] == 0:
        return np.zeros(len(ious), bool)
    return ious.max(axis=1) >= iou_threshold


@plausible("match_detections", "unstable sort", "np.argsort(scores)[::-1]")
def md_reversed_argsort(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    ious = _iou_matrix(det_boxes, gt_boxes)
    order = np.argsort(np.asarray(det_scores), kind="stable")[::-1]
    return _greedy(ious, order, iou_threshold, _pick_last_best)


@plausible("match_detections", "not sorted by score", "detections visited in input order", tier="loops")
def md_input_order(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    gts, dets = np.asarray(gt_boxes).tolist(), np.asarray(det_boxes).tolist()
    taken, tp = [False] * len(gts), []
    for det in dets:
        best, m = iou_threshold, -1
        for g, gt in enumerate(gts):
            iou = _iou(det, gt)
            if not taken[g] and iou >= best:
                best, m = iou, g
        if m >= 0:
            taken[m] = True
        tp.append(m >= 0)
    return np.array(tp, bool)


@plausible("match_detections", "equal IoU: the first object taken", "np.argmax over the free objects")
def md_argmax_first(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    ious = _iou_matrix(det_boxes, gt_boxes)

    def pick(row, free, t):
        cand = np.where(free, row, -1.0)
        g = int(np.argmax(cand))
        return g if cand[g] >= t else -1

    return _greedy(ious, np.argsort(-np.asarray(det_scores), kind="stable"), iou_threshold, pick)


@plausible("match_detections", "best object even if taken (VOC rule)", "the best object overall, FP if taken")
def md_voc_rule(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    ious = _iou_matrix(det_boxes, gt_boxes)

    def pick(row, free, t):
        g = int(np.argmax(row))
        return g if row[g] >= t and free[g] else -1

    return _greedy(ious, np.argsort(-np.asarray(det_scores), kind="stable"), iou_threshold, pick)


@plausible("match_detections", "+1 IoU", "IoU with the '+1' pixel convention", tier="loops")
def md_plus_one(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    gts, dets = np.asarray(gt_boxes).tolist(), np.asarray(det_boxes).tolist()
    order = sorted(range(len(dets)), key=lambda i: -det_scores[i])
    taken, tp = [False] * len(gts), [False] * len(dets)
    for d in order:
        best, m = iou_threshold, -1
        for g in range(len(gts)):
            iou = _iou(dets[d], gts[g], one=1.0)
            if not taken[g] and iou >= best:
                best, m = iou, g
        if m >= 0:
            taken[m], tp[d] = True, True
    return np.array(tp, bool)


@plausible("match_detections", "first object above the threshold", "break at the first free object >= t",
           tier="loops")
def md_first_free(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    gts, dets = np.asarray(gt_boxes).tolist(), np.asarray(det_boxes).tolist()
    order = sorted(range(len(dets)), key=lambda i: -det_scores[i])
    taken, tp = [False] * len(gts), [False] * len(dets)
    for d in order:
        for g in range(len(gts)):
            if not taken[g] and _iou(dets[d], gts[g]) >= iou_threshold:
                taken[g], tp[d] = True, True
                break
    return np.array(tp, bool)


@plausible("match_detections", None, "lowest score first (ascending stable sort)")
def md_ascending(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    ious = _iou_matrix(det_boxes, gt_boxes)
    return _greedy(ious, np.argsort(np.asarray(det_scores), kind="stable"), iou_threshold, _pick_last_best)


@plausible("match_detections", None, "intersection over the smaller box")
def md_over_min(gt_boxes, det_boxes, det_scores, iou_threshold=0.5):
    d, g = np.asarray(det_boxes, float).reshape(-1, 4), np.asarray(gt_boxes, float).reshape(-1, 4)
    w = np.minimum(d[:, None, 2], g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0])
    h = np.minimum(d[:, None, 3], g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area_d = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    ious = inter / np.minimum(area_d[:, None], area_g[None, :])
    return _greedy(ious, np.argsort(-np.asarray(det_scores), kind="stable"), iou_threshold, _pick_last_best)


# ============================================================================================
# detection_map
# ============================================================================================
def _match(gts, dets, scores, t):
    return _greedy(_iou_matrix(dets, gts), np.argsort(-np.asarray(scores), kind="stable"), t, _pick_last_best)


def _coco_ap(tp, n_gt):
    cum = np.cumsum(tp)
    recall, precision = cum / n_gt, cum / np.arange(1, len(tp) + 1)
    return _sampled(recall, precision, np.linspace(0, 1, 101))


def _class_aps(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores, num_classes,
               iou_threshold, *, by_image=True, by_class=True, sort=True, classes=None, n_gt_of=None):
    gi, gc, gb = np.asarray(gt_image), np.asarray(gt_class), np.asarray(gt_boxes, float).reshape(-1, 4)
    di, dc, db = np.asarray(det_image), np.asarray(det_class), np.asarray(det_boxes, float).reshape(-1, 4)
    ds = np.asarray(det_scores, float)
    tp = np.zeros(len(db), bool)
    groups = {(di[k] if by_image else 0, dc[k] if by_class else 0) for k in range(len(db))}
    for img, c in groups:
        d_sel = ((di == img) | (not by_image)) & ((dc == c) | (not by_class))
        g_sel = ((gi == img) | (not by_image)) & ((gc == c) | (not by_class))
        tp[d_sel] = _match(gb[g_sel], db[d_sel], ds[d_sel], iou_threshold)
    aps = []
    for c in (range(num_classes) if classes is None else classes):
        n_gt = int(np.sum(gc == c)) if n_gt_of is None else n_gt_of(c)
        if np.sum(gc == c) == 0:
            aps.append(np.nan)
            continue
        sel = np.flatnonzero(dc == c)
        if sort:
            sel = sel[np.argsort(-ds[sel], kind="stable")]
        aps.append(_coco_ap(tp[sel], n_gt))
    return np.array(aps, float)


def _mean(aps):
    aps = np.asarray(aps, float)
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")


@plausible("detection_map", "averaging over classes without ground truth", "np.nan_to_num before the mean")
def dm_nan_to_zero(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                   num_classes, iou_threshold=0.5):
    aps = _class_aps(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                     num_classes, iou_threshold)
    return float(np.mean(np.nan_to_num(aps)))


@plausible("detection_map", "matching across images", "one pool of objects per class")
def dm_across_images(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                     num_classes, iou_threshold=0.5):
    return _mean(_class_aps(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                            num_classes, iou_threshold, by_image=False))


@plausible("detection_map", "matching across classes", "matched per image only, any class")
def dm_across_classes(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                      num_classes, iou_threshold=0.5):
    return _mean(_class_aps(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                            num_classes, iou_threshold, by_class=False))


@plausible("detection_map", "not sorted across images", "TP flags accumulated in input order")
def dm_unsorted(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                num_classes, iou_threshold=0.5):
    return _mean(_class_aps(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                            num_classes, iou_threshold, sort=False))


@plausible("detection_map", "classes without detections left out", "loop over np.unique(det_class)")
def dm_detected_classes(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                        num_classes, iou_threshold=0.5):
    classes = np.unique(np.asarray(det_class)).tolist()
    aps = _class_aps(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                     num_classes, iou_threshold, classes=classes)
    return _mean(aps) if len(aps) else float("nan")


@plausible("detection_map", "recall over every class's objects", "recall = TP / len(gt_class)")
def dm_all_objects(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                   num_classes, iou_threshold=0.5):
    total = len(gt_class)
    return _mean(_class_aps(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                            num_classes, iou_threshold, n_gt_of=lambda c: total))


@plausible("detection_map", None, "VOC all-point AP instead of COCO's 101 points", tier="loops")
def dm_voc_ap(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
              num_classes, iou_threshold=0.5):
    gi, gc, gb = list(gt_image), list(gt_class), np.asarray(gt_boxes, float).reshape(-1, 4)
    di, dc, db = list(det_image), list(det_class), np.asarray(det_boxes, float).reshape(-1, 4)
    aps = []
    for c in range(num_classes):
        n_gt = gc.count(c)
        if n_gt == 0:
            continue
        tp = {}
        for img in set(di):
            d_idx = [k for k in range(len(db)) if di[k] == img and dc[k] == c]
            g_idx = [k for k in range(len(gb)) if gi[k] == img and gc[k] == c]
            flags = _match(gb[g_idx], db[d_idx], np.asarray(det_scores)[d_idx], iou_threshold)
            tp.update(zip(d_idx, flags.tolist()))
        order = sorted([k for k in range(len(db)) if dc[k] == c], key=lambda k: -det_scores[k])
        cum = np.cumsum([tp[k] for k in order])
        aps.append(_voc_area(cum / n_gt, cum / np.arange(1, len(order) + 1)))
    return float(np.mean(aps)) if aps else float("nan")


@plausible("detection_map", None, "AP per image, then averaged")
def dm_per_image(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                 num_classes, iou_threshold=0.5):
    gi, gc = np.asarray(gt_image), np.asarray(gt_class)
    di, dc = np.asarray(det_image), np.asarray(det_class)
    gb, db = np.asarray(gt_boxes, float).reshape(-1, 4), np.asarray(det_boxes, float).reshape(-1, 4)
    ds = np.asarray(det_scores, float)
    per_class = []
    for c in range(num_classes):
        aps = []
        for img in np.unique(gi[gc == c]):
            g_sel, d_sel = (gi == img) & (gc == c), (di == img) & (dc == c)
            order = np.argsort(-ds[d_sel], kind="stable")
            tp = _match(gb[g_sel], db[d_sel], ds[d_sel], iou_threshold)[order]
            aps.append(_coco_ap(tp, int(g_sel.sum())))
        per_class.append(np.mean(aps) if aps else np.nan)
    return _mean(per_class)


# ============================================================================================
# instance_map
# ============================================================================================
THRESHOLDS = np.arange(0.5, 1.0, 0.05)


def _ious(truth, prediction, keep_background=False):
    t, p = np.asarray(truth), np.asarray(prediction)
    t_ids = [v for v in np.unique(t) if keep_background or v != 0]
    p_ids = [v for v in np.unique(p) if keep_background or v != 0]
    ious = np.zeros((len(t_ids), len(p_ids)))
    for i, a in enumerate(t_ids):
        for j, b in enumerate(p_ids):
            inter = np.sum((t == a) & (p == b))
            ious[i, j] = inter / np.sum((t == a) | (p == b))
    return ious


def _score(ious, thresholds=THRESHOLDS, at_least=False, counts=None):
    if ious.size == 0 and sum(ious.shape) == 0:
        return 0.0
    scores = []
    for t in thresholds:
        hits = ious >= t if at_least else ious > t
        tp = int(hits.sum())
        fp = int((hits.sum(axis=0) == 0).sum())
        fn = int((hits.sum(axis=1) == 0).sum())
        if counts is not None:
            tp, fp, fn = counts(hits, tp, fp, fn)
        scores.append(tp / (tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


@plausible("instance_map", "IoU >= t instead of > t", "hits at IoU >= t")
def im_at_least(truth, prediction):
    return _score(_ious(truth, prediction), at_least=True)


@plausible("instance_map", "background counted as an instance", "label 0 kept", tier="loops")
def im_background(truth, prediction):
    t, p = np.asarray(truth).ravel().tolist(), np.asarray(prediction).ravel().tolist()
    t_ids, p_ids = sorted(set(t)), sorted(set(p))
    ious = []
    for a in t_ids:
        for b in p_ids:
            inter = sum(1 for x, y in zip(t, p) if x == a and y == b)
            union = sum(1 for x, y in zip(t, p) if x == a or y == b)
            ious.append(inter / union)
    total = 0.0
    for thr in THRESHOLDS:
        tp = sum(1 for iou in ious if iou > thr)
        total += tp / (tp + (len(p_ids) - tp) + (len(t_ids) - tp))
    return total / 10


@plausible("instance_map", "false negatives left out", "TP / (TP + FP)")
def im_precision(truth, prediction):
    return _score(_ious(truth, prediction), counts=lambda hits, tp, fp, fn: (tp, fp, 0))


@plausible("instance_map", "false positives left out", "TP / (TP + FN)")
def im_recall(truth, prediction):
    return _score(_ious(truth, prediction), counts=lambda hits, tp, fp, fn: (tp, 0, fn))


@plausible("instance_map", "false positives counted over the true objects",
           "fp = (hits.sum(axis=1) == 0).sum(), on the truth axis")
def im_fp_wrong_axis(truth, prediction):
    return _score(_ious(truth, prediction),
                  counts=lambda hits, tp, fp, fn: (tp, int((hits.sum(axis=1) == 0).sum()), fn))


@plausible("instance_map", "false negatives counted over the predictions",
           "fn = (hits.sum(axis=0) == 0).sum(), on the prediction axis")
def im_fn_wrong_axis(truth, prediction):
    return _score(_ious(truth, prediction),
                  counts=lambda hits, tp, fp, fn: (tp, fp, int((hits.sum(axis=0) == 0).sum())))


@plausible("instance_map", "counts pooled over the thresholds", "sum(TP) / sum(TP + FP + FN)")
def im_pooled(truth, prediction):
    ious = _ious(truth, prediction)
    nt, n_p = ious.shape
    if nt + n_p == 0:
        return 0.0
    tps = np.array([(ious > t).sum() for t in THRESHOLDS], float)
    return float(tps.sum() / (nt + n_p - tps).sum())


@plausible("instance_map", "nothing to find scores 1", "empty truth and prediction: 1.0")
def im_empty_one(truth, prediction):
    if not np.any(truth) and not np.any(prediction):
        return 1.0
    return _score(_ious(truth, prediction))


@plausible("instance_map", None, "empty truth and prediction: 0/0 = NaN")
def im_empty_nan(truth, prediction):
    ious = _ious(truth, prediction)
    nt, n_p = ious.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        hits = np.array([(ious > t).sum() for t in THRESHOLDS], float)
        return float(np.mean(hits / (nt + n_p - hits)))


@plausible("instance_map", None, "10 thresholds np.linspace(0.5, 1.0, 10)")
def im_linspace(truth, prediction):
    return _score(_ious(truth, prediction), thresholds=np.linspace(0.5, 1.0, 10))


@plausible("instance_map", None, "IoU as intersection over the true area")
def im_over_truth(truth, prediction):
    t, p = np.asarray(truth), np.asarray(prediction)
    t_ids, p_ids = [v for v in np.unique(t) if v], [v for v in np.unique(p) if v]
    ious = np.zeros((len(t_ids), len(p_ids)))
    for i, a in enumerate(t_ids):
        for j, b in enumerate(p_ids):
            ious[i, j] = np.sum((t == a) & (p == b)) / np.sum(t == a)
    return _score(ious)
