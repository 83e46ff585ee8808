"""Chapter 03 (iou, nms, batched_nms): plausible learner mistakes."""

import numpy as np

from . import plausible


# == iou =======================================================================================
@plausible("iou", "+1 area convention", "+1 everywhere, loops", tier="loops")
def iou_plus_one_loops(boxes1, boxes2):
    out = []
    for a in boxes1:
        row = []
        for b in boxes2:
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
            ua = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
            row.append(w * h / (ua - w * h) if ua - w * h > 0 else 0.0)
        out.append(row)
    return np.array(out).reshape(len(boxes1), len(boxes2))


def _sides(a, b):
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return w, h


def _areas(a):
    return (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])


def _safe_div(x, y):
    return np.where(y > 0, x / np.where(y > 0, y, 1), 0.0)


@plausible("iou", "product clamped instead of each side", "np.clip(w * h, 0, None)")
def iou_clip_product(boxes1, boxes2):
    a, b = np.asarray(boxes1, float), np.asarray(boxes2, float)
    w, h = _sides(a, b)
    inter = np.clip(w * h, 0, None)
    return _safe_div(inter, _areas(a)[:, None] + _areas(b)[None, :] - inter)


@plausible("iou", "intersection not clamped at zero", "no clamp at all")
def iou_no_clamp(boxes1, boxes2):
    a, b = np.asarray(boxes1, float), np.asarray(boxes2, float)
    w, h = _sides(a, b)
    inter = w * h
    return _safe_div(inter, _areas(a)[:, None] + _areas(b)[None, :] - inter)


@plausible("iou", "boxes read as (x, y, w, h)", "xywh arithmetic, loops", tier="loops")
def iou_xywh_loops(boxes1, boxes2):
    res = np.zeros((len(boxes1), len(boxes2)))
    for i, (x, y, w, h) in enumerate(boxes1):
        for j, (u, v, p, q) in enumerate(boxes2):
            iw = max(0, min(x + w, u + p) - max(x, u))
            ih = max(0, min(y + h, v + q) - max(y, v))
            union = w * h + p * q - iw * ih
            res[i, j] = iw * ih / union if union > 0 else 0
    return res


@plausible("iou", "intersection over the smaller box", "divides by the smaller area")
def iou_over_min(boxes1, boxes2):
    a, b = np.asarray(boxes1, float), np.asarray(boxes2, float)
    w, h = _sides(a, b)
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    return _safe_div(inter, np.minimum(_areas(a)[:, None], _areas(b)[None, :]))


@plausible("iou", "union is the sum of the areas", "forgot to subtract the intersection")
def iou_sum(boxes1, boxes2):
    a, b = np.asarray(boxes1, np.float32), np.asarray(boxes2, np.float32)
    w, h = _sides(a, b)
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    return _safe_div(inter, _areas(a)[:, None] + _areas(b)[None, :])


@plausible("iou", "NaN on zero-area boxes", "divides without a guard")
def iou_unguarded(boxes1, boxes2):
    a, b = np.asarray(boxes1, float), np.asarray(boxes2, float)
    w, h = _sides(a, b)
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (_areas(a)[:, None] + _areas(b)[None, :] - inter)


@plausible("iou", "+1 in the areas only", "+1 in the areas, float32")
def iou_plus_one_areas(boxes1, boxes2):
    a, b = np.asarray(boxes1, np.float32), np.asarray(boxes2, np.float32)
    w, h = _sides(a, b)
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    area = lambda x: (x[:, 2] - x[:, 0] + 1) * (x[:, 3] - x[:, 1] + 1)  # noqa: E731
    return _safe_div(inter, area(a)[:, None] + area(b)[None, :] - inter)


@plausible("iou", None, "returns the (M, N) transpose")
def iou_transposed(boxes1, boxes2):
    a, b = np.asarray(boxes1, float), np.asarray(boxes2, float)
    w, h = _sides(b, a)
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    return _safe_div(inter, _areas(b)[:, None] + _areas(a)[None, :] - inter)


@plausible("iou", None, "rounds to two decimals")
def iou_rounded(boxes1, boxes2):
    a, b = np.asarray(boxes1, float), np.asarray(boxes2, float)
    w, h = _sides(a, b)
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    return np.round(_safe_div(inter, _areas(a)[:, None] + _areas(b)[None, :] - inter), 2)


# == nms =======================================================================================
def _iou_matrix(b, plus=0.0):
    w = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]) + plus
    h = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]) + plus
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    area = (b[:, 2] - b[:, 0] + plus) * (b[:, 3] - b[:, 1] + plus)
    union = area[:, None] + area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _greedy(boxes, scores, iou_threshold, max_output_size, score_threshold, *,
            order=None, ge=False, plus=0.0, use_threshold=True, cap=True):
    b = np.asarray(boxes, float).reshape(-1, 4)
    s = np.asarray(scores, float).reshape(-1)
    order = np.argsort(-s, kind="stable") if order is None else order(s)
    if score_threshold is not None and use_threshold:
        order = order[s[order] > score_threshold]
    ious = _iou_matrix(b, plus)
    keep = []
    for i in order:
        if cap and max_output_size is not None and len(keep) >= max_output_size:
            break
        if all((ious[i, k] < iou_threshold) if ge else (ious[i, k] <= iou_threshold)
               for k in keep):
            keep.append(int(i))
    return np.array(keep, dtype=np.int64)


@plausible("nms", "ties out of index order", "np.argsort(-scores) (quicksort)")
def nms_unstable(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _greedy(boxes, scores, iou_threshold, max_output_size, score_threshold,
                   order=lambda s: np.argsort(-s))


@plausible("nms", "suppresses at IoU equal to the threshold", ">= in the suppression")
def nms_ge(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _greedy(boxes, scores, iou_threshold, max_output_size, score_threshold, ge=True)


@plausible("nms", "score threshold ignored", "never looks at score_threshold")
def nms_no_threshold(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _greedy(boxes, scores, iou_threshold, max_output_size, score_threshold,
                   use_threshold=False)


@plausible("nms", "NMS with the +1 IoU", "+1 IoU, loops", tier="loops")
def nms_plus_one(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _greedy(boxes, scores, iou_threshold, max_output_size, score_threshold, plus=1.0)


@plausible("nms", None, "lowest score first")
def nms_ascending(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _greedy(boxes, scores, iou_threshold, max_output_size, score_threshold,
                   order=lambda s: np.argsort(s, kind="stable"))


@plausible("nms", None, "max_output_size ignored")
def nms_no_cap(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    return _greedy(boxes, scores, iou_threshold, max_output_size, score_threshold, cap=False)


# == batched_nms =================================================================================
def _per_class(boxes, scores, classes, iou_threshold, max_output_size, score_threshold, *,
               map_back=True, merge=True, cap_each=False):
    c = np.asarray(classes).reshape(-1)
    s = np.asarray(scores, float).reshape(-1)
    kept = []
    for cls in np.unique(c):
        idx = np.flatnonzero(c == cls)
        sub = _greedy(np.asarray(boxes, float)[idx], s[idx], iou_threshold,
                      max_output_size if cap_each else None, score_threshold)
        kept += [(int(idx[k]), int(k)) for k in sub]
    if merge:
        kept.sort(key=lambda t: (-s[t[0]], t[0]))
    if not cap_each and max_output_size is not None:
        kept = kept[:max_output_size]
    return np.array([t[0] if map_back else t[1] for t in kept], dtype=np.int64)


@plausible("batched_nms", "classes ignored", "plain NMS over all boxes")
def bnms_ignore(boxes, scores, classes, iou_threshold, max_output_size=None,
                score_threshold=None):
    return _greedy(boxes, scores, iou_threshold, max_output_size, score_threshold)


@plausible("batched_nms", "positions within a class", "per-class positions, not indices")
def bnms_positions(boxes, scores, classes, iou_threshold, max_output_size=None,
                   score_threshold=None):
    return _per_class(boxes, scores, classes, iou_threshold, max_output_size, score_threshold,
                      map_back=False)


@plausible("batched_nms", "results concatenated class by class", "class by class, loops",
           tier="loops")
def bnms_grouped(boxes, scores, classes, iou_threshold, max_output_size=None,
                 score_threshold=None):
    return _per_class(boxes, scores, classes, iou_threshold, max_output_size, score_threshold,
                      merge=False)


@plausible("batched_nms", "max_output_size applied per class", "cap per class")
def bnms_cap_each(boxes, scores, classes, iou_threshold, max_output_size=None,
                  score_threshold=None):
    return _per_class(boxes, scores, classes, iou_threshold, max_output_size, score_threshold,
                      cap_each=True)


@plausible("batched_nms", None, "class offset too small (boxes + class * 10)")
def bnms_small_offset(boxes, scores, classes, iou_threshold, max_output_size=None,
                      score_threshold=None):
    b = np.asarray(boxes, float).reshape(-1, 4) + 10.0 * np.asarray(classes, float)[:, None]
    return _greedy(b, scores, iou_threshold, max_output_size, score_threshold)
