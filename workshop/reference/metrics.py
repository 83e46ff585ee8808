"""Average precision and its building blocks, in tiers (chapter 09_map).

* :func:`average_precision_loops` / ``_numpy`` / ``_tf``: the area under a precision-recall
  curve, three ways ("voc07", "voc", "coco").
* :func:`match_detections_loops` / ``_numpy`` / ``_tf``: greedy COCO-style matching of one
  image's detections to its ground truths at one IoU threshold -> per-detection TP flags.
* :func:`detection_ap_loops` / ``_numpy``: per-class AP and mAP (``detection_map_*``: the mAP) over a set of images at one
  IoU threshold (COCO matching, 101-point AP).
* :func:`instance_map_loops` / ``_numpy`` / ``_tf``: the Data Science Bowl 2018 "mAP of IoU"
  of two instance label images.

The full COCO / VOC evaluations (crowds, area ranges, maxDets, JSON) live in
:mod:`workshop.reference.metrics_coco`.

Boxes are float ``(N, 4)`` xyxy (see :mod:`workshop.conventions`); IoU has no "+1".

Length: chapter 9's four answers in three tiers each, with the edge rules they share.
"""

from __future__ import annotations

import numpy as np

from ..conventions import as_boxes, as_scores

AP_METHODS = ("voc07", "voc", "coco")
VOC07_THRESHOLDS = np.arange(0.0, 1.1, 0.1)                 # 11 points, as the VOC2007 devkit
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)         # exactly as pycocotools builds them
INSTANCE_THRESHOLDS = np.arange(0.5, 1.0, 0.05)             # Data Science Bowl 2018


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def _check_method(method) -> str:
    if method not in AP_METHODS:
        raise ValueError(f"method: expected one of {AP_METHODS}, got {method!r}")
    return method


def _as_curve(recall, precision) -> tuple[np.ndarray, np.ndarray]:
    """Validate a precision-recall curve: two float ``(N,)`` arrays, values in [0, 1], recall
    non-decreasing (detections in descending score order)."""
    out = []
    for name, values in (("recall", recall), ("precision", precision)):
        try:
            arr = np.array(values, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: expected a float array of shape (N,): {err}") from None
        if arr.ndim != 1:
            raise ValueError(f"{name}: expected shape (N,), got shape {arr.shape}")
        bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}: entry {i} is {arr[i]}, expected a finite value in [0, 1]")
        out.append(arr)
    r, p = out
    if r.shape != p.shape:
        raise ValueError(f"recall and precision differ in shape: {r.shape} vs {p.shape}")
    dec = np.flatnonzero(np.diff(r) < 0)
    if dec.size:
        i = int(dec[0]) + 1
        raise ValueError(f"recall: entry {i} ({r[i]}) is smaller than entry {i - 1} ({r[i - 1]}); "
                         "recall must be non-decreasing (detections in descending score order)")
    return r, p


# ------------------------------------------------------------------------------------------------
# average precision
# ------------------------------------------------------------------------------------------------
def average_precision_loops(recall, precision, method: str = "coco") -> float:
    """Area under a precision-recall curve, plain Python.

    Args:
      recall, precision: float ``(N,)``, one entry per detection in descending score order
        (recall non-decreasing), values in [0, 1].
      method: ``"voc07"``: mean over t in ``np.arange(0, 1.1, 0.1)`` (11 points) of the maximum
        precision at recall >= t (0 if none); ``"voc"`` (VOC2010+): the area under the monotone
        envelope, sum of (r_i - r_{i-1}) * max(p_i, p_{i+1}, ...); ``"coco"``: mean over the 101
        thresholds ``np.linspace(0, 1, 101)`` of the envelope at the first recall >= t
        (``searchsorted`` left), 0 beyond the largest recall, as pycocotools.

    Returns:
      float AP in [0, 1]; 0.0 for an empty curve.
    """
    method = _check_method(method)
    r, p = _as_curve(recall, precision)
    r, p = r.tolist(), p.tolist()
    if method == "voc":
        mrec, mpre = [0.0] + r + [1.0], [0.0] + p + [0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        return float(sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]
                         for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i]))
    thresholds = VOC07_THRESHOLDS if method == "voc07" else COCO_RECALL_THRESHOLDS
    total = 0.0
    for t in thresholds.tolist():
        best = 0.0
        for ri, pi in zip(r, p):
            if ri >= t and pi > best:
                best = pi
        total += best
    return total / len(thresholds)


def _envelope(p: np.ndarray) -> np.ndarray:
    """Monotone (non-increasing) envelope along the last axis: max of p[..., i:]."""
    return np.maximum.accumulate(p[..., ::-1], axis=-1)[..., ::-1]


def average_precision_numpy(recall, precision, method: str = "coco") -> float:
    """Vectorized :func:`average_precision_loops` (same arguments, float64)."""
    method = _check_method(method)
    r, p = _as_curve(recall, precision)
    if method == "voc":
        mrec = np.concatenate([[0.0], r, [1.0]])
        mpre = _envelope(np.concatenate([[0.0], p, [0.0]]))
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    thresholds = VOC07_THRESHOLDS if method == "voc07" else COCO_RECALL_THRESHOLDS
    env = np.append(_envelope(p), 0.0)                       # index n means "beyond the curve"
    idx = np.searchsorted(r, thresholds, side="left")        # first recall >= t
    return float(np.mean(env[idx]))


def average_precision_tf(recall, precision, method: str = "coco"):
    """Pure TF :func:`average_precision_numpy`; ``method`` is a Python string (static).

    Tensors in, a float64 scalar tensor out. Works under ``jit_compile=True``. No validation
    (recall must be non-decreasing, values in [0, 1]).
    """
    import tensorflow as tf

    method = _check_method(method)
    r = tf.cast(tf.reshape(recall, [-1]), tf.float64)
    p = tf.cast(tf.reshape(precision, [-1]), tf.float64)
    if method == "voc":
        # envelope: max over p[i:], by doubling (log2 N steps of a shifted maximum; XLA
        # compiles this loop, unlike tf.scan's dynamic TensorArray)
        n = tf.shape(p)[0]
        idx = tf.range(n)

        def step(shift, env):
            return shift * 2, tf.maximum(env, tf.gather(env, tf.minimum(idx + shift, n - 1)))

        _, env = tf.while_loop(lambda shift, env: shift < n, step, (tf.constant(1), p))
        prev = tf.concat([tf.zeros([1], tf.float64), r[:-1]], axis=0)
        return tf.reduce_sum((r - prev) * env)
    thresholds = tf.constant(VOC07_THRESHOLDS if method == "voc07" else COCO_RECALL_THRESHOLDS,
                             tf.float64)
    # with recall sorted, "envelope at the first recall >= t" = max precision over recall >= t
    mask = r[None, :] >= thresholds[:, None]
    best = tf.reduce_max(tf.where(mask, p[None, :], tf.zeros_like(mask, tf.float64)), axis=1)
    return tf.reduce_mean(tf.maximum(best, 0.0))               # an empty curve gives -inf -> 0


# ------------------------------------------------------------------------------------------------
# IoU, pycocotools' arithmetic
# ------------------------------------------------------------------------------------------------
def pairwise_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in ``boxes_a`` (N, 4) with every box in ``boxes_b`` (M, 4) -> (N, M).

    The arithmetic of pycocotools' ``bbIou``: w = min(x2) - max(x1), h likewise, 0 unless both
    are > 0 (touching boxes have IoU 0), i = w*h, IoU = i / (area_a + area_b - i).
    """
    a, b = boxes_a[:, None, :], boxes_b[None, :, :]
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / np.where(inter > 0, union, 1.0), 0.0)


def _iou_loops(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ------------------------------------------------------------------------------------------------
# greedy matching of one image
# ------------------------------------------------------------------------------------------------
def _check_threshold(iou_threshold) -> float:
    t = float(iou_threshold)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"iou_threshold: expected a value in [0, 1], got {iou_threshold}")
    return t


def match_detections_loops(gt_boxes, det_boxes, det_scores, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy matching of one image's detections (one class) to its ground truths, plain Python.

    Detections are visited in descending score order, ties in input order (a stable sort, as
    pycocotools' mergesort). Each takes the still-unmatched ground truth with the highest IoU
    if that IoU is >= ``iou_threshold`` (on equal IoU the later ground truth, as pycocotools);
    a matched ground truth is gone for later detections, so a duplicate is a false positive.

    Args:
      gt_boxes: float ``(G, 4)`` xyxy. det_boxes: float ``(D, 4)`` xyxy. det_scores: ``(D,)``.
      iou_threshold: match at IoU >= this (pycocotools caps it at 1 - 1e-10).

    Returns:
      bool ``(D,)``: True where the detection is a true positive, in the input order.
    """
    gts = as_boxes(gt_boxes, "gt_boxes").tolist()
    dets = as_boxes(det_boxes, "det_boxes").tolist()
    scores = as_scores(det_scores, len(dets), "det_scores").tolist()
    t = min(_check_threshold(iou_threshold), 1 - 1e-10)
    order = sorted(range(len(dets)), key=lambda i: -scores[i])   # Python's sort is stable
    taken = [False] * len(gts)
    tp = [False] * len(dets)
    for d in order:
        best, m = t, -1
        for g, gt in enumerate(gts):
            if taken[g]:
                continue
            iou = _iou_loops(dets[d], gt)
            if iou >= best:
                best, m = iou, g
        if m >= 0:
            taken[m] = True
            tp[d] = True
    return np.array(tp, dtype=bool)


def match_detections_numpy(gt_boxes, det_boxes, det_scores, iou_threshold: float = 0.5) -> np.ndarray:
    """:func:`match_detections_loops` with the IoU matrix computed at once (the greedy pass is
    sequential by nature: one short loop over detections)."""
    gts = as_boxes(gt_boxes, "gt_boxes")
    dets = as_boxes(det_boxes, "det_boxes")
    scores = as_scores(det_scores, len(dets), "det_scores")
    t = min(_check_threshold(iou_threshold), 1 - 1e-10)
    tp = np.zeros(len(dets), bool)
    if len(gts) == 0 or len(dets) == 0:
        return tp
    order = np.argsort(-scores, kind="stable")
    ious = pairwise_iou(dets, gts)[order]                    # (D, G) in visiting order
    free = np.ones(len(gts), bool)
    for k, d in enumerate(order):
        cand = np.where(free & (ious[k] >= t), ious[k], -1.0)
        g = len(gts) - 1 - int(np.argmax(cand[::-1]))        # the last of equal maxima
        if cand[g] >= 0:
            free[g] = False
            tp[d] = True
    return tp


def match_detections_tf(gt_boxes, det_boxes, det_scores, iou_threshold: float = 0.5):
    """Pure TF :func:`match_detections_numpy`: a ``tf.while_loop`` over detections in score
    order. Tensors in, a bool ``(D,)`` tensor out; works under ``jit_compile=True``."""
    import tensorflow as tf

    gts = tf.cast(tf.reshape(gt_boxes, [-1, 4]), tf.float64)
    dets = tf.cast(tf.reshape(det_boxes, [-1, 4]), tf.float64)
    scores = tf.cast(tf.reshape(det_scores, [-1]), tf.float64)
    t = tf.minimum(tf.cast(iou_threshold, tf.float64), 1 - 1e-10)
    n_det, n_gt = tf.shape(dets)[0], tf.shape(gts)[0]
    order = tf.argsort(-scores, stable=True)
    d = tf.gather(dets, order)[:, None, :]
    g = gts[None, :, :]
    w = tf.minimum(d[..., 2], g[..., 2]) - tf.maximum(d[..., 0], g[..., 0])
    h = tf.minimum(d[..., 3], g[..., 3]) - tf.maximum(d[..., 1], g[..., 1])
    inter = tf.where((w > 0) & (h > 0), w * h, tf.zeros_like(w))
    area_d = (d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1])
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    union = area_d + area_g - inter
    ious = tf.where(inter > 0, inter / tf.where(inter > 0, union, tf.ones_like(union)), tf.zeros_like(inter))
    sentinel = -tf.ones([1], tf.float64)       # keeps argmax off an empty axis (no ground truth)
    ious_padded = tf.concat([ious, tf.zeros_like(gts[None, :, 0])], axis=0)   # a row even when D = 0
    gt_index = tf.cumsum(tf.ones_like(gts[:, 0], tf.int32)) - 1    # range with a static shape

    def body(k, free, tp_sorted):
        row = ious_padded[k]
        cand = tf.concat([sentinel, tf.where(free & (row >= t), row, -tf.ones_like(row))], axis=0)
        last = n_gt - tf.argmax(tf.reverse(cand, [0]), output_type=tf.int32)   # last of equal maxima
        hit = tf.gather(cand, last) >= 0
        free = free & ~(hit & tf.equal(gt_index, last - 1))
        tp_sorted = tf.tensor_scatter_nd_update(tp_sorted, [[k]], tf.reshape(hit, [1]))
        return k + 1, free, tp_sorted

    _, _, tp_sorted = tf.while_loop(
        lambda k, *_: k < n_det, body,
        (tf.constant(0), tf.ones_like(gts[:, 0], tf.bool),
         tf.zeros_like(tf.concat([scores, [0.0]], 0), tf.bool)))   # one spare slot when D = 0
    tp_sorted = tp_sorted[:-1]
    return tf.scatter_nd(order[:, None], tp_sorted, [n_det])


# ------------------------------------------------------------------------------------------------
# precision / recall from TP flags, per-class AP over images
# ------------------------------------------------------------------------------------------------
def precision_recall_numpy(scores, tp, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection, in descending score order (stable).

    Args: scores float ``(N,)``; tp bool ``(N,)`` true-positive flags; num_gt: ground truths.
    Returns: precision, recall, float64 ``(N,)``; recall is 0 when ``num_gt`` is 0.
    """
    scores = as_scores(scores, len(np.atleast_1d(tp)))
    tp = np.asarray(tp, bool)
    order = np.argsort(-scores, kind="stable")
    tps = np.cumsum(tp[order]).astype(np.float64)
    fps = np.cumsum(~tp[order]).astype(np.float64)
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    recall = tps / num_gt if num_gt > 0 else np.zeros_like(tps)
    return precision, recall


def _as_detection_arrays(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                         num_classes):
    gb = as_boxes(gt_boxes, "gt_boxes")
    db = as_boxes(det_boxes, "det_boxes")
    ds = as_scores(det_scores, len(db), "det_scores")
    arrays = []
    for name, values, n in (("gt_image", gt_image, len(gb)), ("gt_class", gt_class, len(gb)),
                            ("det_image", det_image, len(db)), ("det_class", det_class, len(db))):
        arr = np.asarray(values)
        if arr.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},), one entry per box, got {arr.shape}")
        if arr.size and not np.all(arr == np.round(arr)):
            i = int(np.flatnonzero(arr != np.round(arr))[0])
            raise ValueError(f"{name}: entry {i} is {arr[i]}, expected an integer")
        arrays.append(arr.astype(np.int64))
    for name, arr in (("gt_class", arrays[1]), ("det_class", arrays[3])):
        bad = (arr < 0) | (arr >= num_classes)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}: entry {i} is {arr[i]}, expected a class in [0, {num_classes})")
    return (*arrays[:2], gb, *arrays[2:], db, ds)


def detection_ap_loops(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                        num_classes: int, iou_threshold: float = 0.5):
    """Per-class AP and their mean over a set of images, plain Python (with the loops tier of
    matching and AP).

    For each class: every image's detections are matched greedily to that image's ground truths
    (:func:`match_detections_loops`, IoU >= ``iou_threshold``), all the class's detections are
    sorted by descending score (stable, input order on ties), precision/recall are accumulated
    and AP is the 101-point COCO AP. This equals pycocotools' AP at one threshold for the "all"
    area range when there are no crowds, at most 100 detections per image and class, and no
    score ties across images (pycocotools breaks those by image id).

    Args:
      gt_image, gt_class: int ``(G,)``; gt_boxes float ``(G, 4)`` xyxy.
      det_image, det_class: int ``(D,)``; det_boxes float ``(D, 4)`` xyxy; det_scores ``(D,)``.
      num_classes: classes are ``0 .. num_classes - 1``.

    Returns:
      ap: float ``(num_classes,)``, NaN for a class without ground truth;
      mean_ap: the mean over the classes that have ground truth (NaN if none has).
    """
    gi, gc, gb, di, dc, db, ds = _as_detection_arrays(gt_image, gt_class, gt_boxes, det_image,
                                                      det_class, det_boxes, det_scores, num_classes)
    ap = []
    for c in range(num_classes):
        n_gt = sum(1 for k in gc.tolist() if k == c)
        if n_gt == 0:
            ap.append(float("nan"))
            continue
        tp = [False] * len(db)
        for img in sorted(set(gi[gc == c].tolist()) | set(di[dc == c].tolist())):
            g_idx = [k for k in range(len(gb)) if gc[k] == c and gi[k] == img]
            d_idx = [k for k in range(len(db)) if dc[k] == c and di[k] == img]
            if not d_idx:
                continue
            flags = match_detections_loops(gb[g_idx].reshape(-1, 4), db[d_idx], ds[d_idx], iou_threshold)
            for k, f in zip(d_idx, flags.tolist()):
                tp[k] = f
        d_all = [k for k in range(len(db)) if dc[k] == c]
        d_all.sort(key=lambda k: -ds[k])
        tps = fps = 0
        recall, precision = [], []
        for k in d_all:
            tps += tp[k]
            fps += not tp[k]
            recall.append(tps / n_gt)
            precision.append(tps / (tps + fps))
        ap.append(average_precision_loops(recall, precision, "coco"))
    valid = [a for a in ap if a == a]
    return np.array(ap, np.float64), (sum(valid) / len(valid) if valid else float("nan"))


def detection_ap_numpy(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                        num_classes: int, iou_threshold: float = 0.5):
    """:func:`detection_ap_loops` with numpy (matching per image, accumulation per class
    vectorized). Same arguments and results."""
    gi, gc, gb, di, dc, db, ds = _as_detection_arrays(gt_image, gt_class, gt_boxes, det_image,
                                                      det_class, det_boxes, det_scores, num_classes)
    tp = np.zeros(len(db), bool)
    d_keys = dc * (max(gi.max(initial=0), di.max(initial=0)) + 1) + di
    g_keys = gc * (max(gi.max(initial=0), di.max(initial=0)) + 1) + gi
    for key in np.unique(d_keys):
        d_idx = np.flatnonzero(d_keys == key)
        g_idx = np.flatnonzero(g_keys == key)
        tp[d_idx] = match_detections_numpy(gb[g_idx], db[d_idx], ds[d_idx], iou_threshold)
    n_gt = np.bincount(gc, minlength=num_classes)
    ap = np.full(num_classes, np.nan)
    for c in np.flatnonzero(n_gt):
        sel = dc == c
        precision, recall = precision_recall_numpy(ds[sel], tp[sel], int(n_gt[c]))
        ap[c] = average_precision_numpy(recall, precision, "coco")
    return ap, (float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"))


def detection_map_loops(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                        num_classes: int, iou_threshold: float = 0.5) -> float:
    """The mean AP of :func:`detection_ap_loops` (over classes with ground truth; NaN if none)."""
    return detection_ap_loops(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                              num_classes, iou_threshold)[1]


def detection_map_numpy(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                        num_classes: int, iou_threshold: float = 0.5) -> float:
    """The mean AP of :func:`detection_ap_numpy` (over classes with ground truth; NaN if none)."""
    return detection_ap_numpy(gt_image, gt_class, gt_boxes, det_image, det_class, det_boxes, det_scores,
                              num_classes, iou_threshold)[1]


# ------------------------------------------------------------------------------------------------
# Data Science Bowl 2018: mAP of IoU between instance label images
# ------------------------------------------------------------------------------------------------
def _as_labels(truth, prediction) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("truth", truth), ("prediction", prediction)):
        arr = np.asarray(values)
        if arr.ndim != 2:
            raise ValueError(f"{name}: expected a label image of shape (H, W), got shape {arr.shape}")
        if arr.size and (arr.dtype.kind not in "iub"):
            if arr.dtype.kind != "f" or not np.all(arr == np.round(arr)):
                bad = np.argwhere(~np.isfinite(arr) | (arr != np.round(arr))) if arr.dtype.kind == "f" else None
                where = f" (row {int(bad[0][0])}, column {int(bad[0][1])})" if bad is not None and len(bad) else ""
                raise ValueError(f"{name}: expected integer labels, got dtype {arr.dtype}{where}")
        arr = arr.astype(np.int64)
        if arr.size and arr.min() < 0:
            r, c = np.argwhere(arr < 0)[0]
            raise ValueError(f"{name}: row {int(r)}, column {int(c)} has the negative label {arr[r, c]}")
        arrays.append(arr)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"truth and prediction differ in shape: {arrays[0].shape} vs {arrays[1].shape}")
    return arrays[0], arrays[1]


def instance_map_loops(truth, prediction) -> float:
    """Data Science Bowl 2018 "mAP of IoU" of one image, plain Python.

    Args:
      truth, prediction: int ``(H, W)`` label images, 0 = background, every other value one
        instance (values need not be contiguous).

    For each threshold t in ``np.arange(0.5, 1.0, 0.05)`` a predicted instance hits a true one
    when their IoU is > t (strictly: at t = 0.5 a pair with IoU exactly 0.5 is no hit; at
    t >= 0.5 each instance can hit at most one other, so no matching is needed); the score is
    TP / (TP + FP + FN), with FP the predictions without a hit and FN the truths without one.
    The result is the mean over the 10 thresholds (average images with :func:`instance_map_dataset`).

    An image with neither true nor predicted instances scores 0: the formula is 0/0 there, and
    the Bowl's images all held nuclei; 0 keeps "an empty prediction earns nothing" without a
    special case that a data set of empty images could inflate.

    Returns: float in [0, 1].
    """
    t_lab, p_lab = _as_labels(truth, prediction)
    t_ids = sorted(set(t_lab.ravel().tolist()) - {0})
    p_ids = sorted(set(p_lab.ravel().tolist()) - {0})
    if not t_ids and not p_ids:
        return 0.0
    inter: dict = {}
    t_area: dict = {}
    p_area: dict = {}
    for a, b in zip(t_lab.ravel().tolist(), p_lab.ravel().tolist()):
        if a:
            t_area[a] = t_area.get(a, 0) + 1
        if b:
            p_area[b] = p_area.get(b, 0) + 1
        if a and b:
            inter[a, b] = inter.get((a, b), 0) + 1
    ious = [i / (t_area[a] + p_area[b] - i) for (a, b), i in inter.items()]
    total = 0.0
    for t in INSTANCE_THRESHOLDS.tolist():
        hits = sum(1 for iou in ious if iou > t)
        fp, fn = len(p_ids) - hits, len(t_ids) - hits
        total += hits / (hits + fp + fn)
    return total / len(INSTANCE_THRESHOLDS)


def instance_map_numpy(truth, prediction) -> float:
    """Vectorized :func:`instance_map_loops`: a contingency table of label pairs with one
    ``np.unique`` (labels relabelled to 0..n), IoUs for all pairs at once."""
    t_lab, p_lab = _as_labels(truth, prediction)
    t_ids, t_inv = np.unique(t_lab.ravel(), return_inverse=True)
    p_ids, p_inv = np.unique(p_lab.ravel(), return_inverse=True)
    # make index 0 the background even when the image has none
    if t_ids.size == 0 or t_ids[0] != 0:
        t_ids, t_inv = np.concatenate([[0], t_ids]), t_inv + 1
    if p_ids.size == 0 or p_ids[0] != 0:
        p_ids, p_inv = np.concatenate([[0], p_ids]), p_inv + 1
    nt, np_ = len(t_ids) - 1, len(p_ids) - 1
    if nt + np_ == 0:
        return 0.0
    counts = np.bincount(t_inv * (np_ + 1) + p_inv, minlength=(nt + 1) * (np_ + 1)).reshape(nt + 1, np_ + 1)
    inter = counts[1:, 1:].astype(np.float64)
    t_area = counts[1:, :].sum(axis=1).astype(np.float64)
    p_area = counts[:, 1:].sum(axis=0).astype(np.float64)
    ious = inter / (t_area[:, None] + p_area[None, :] - inter)
    hits = (ious[None] > INSTANCE_THRESHOLDS[:, None, None]).sum(axis=(1, 2)).astype(np.float64)
    return float(np.mean(hits / (nt + np_ - hits)))   # TP + FP + FN = nt + np - TP


def instance_map_dataset(truths, predictions) -> float:
    """Mean of :func:`instance_map_numpy` over images (sequences of label images)."""
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} truth images but {len(predictions)} predictions")
    if not len(truths):
        raise ValueError("no images")
    return float(np.mean([instance_map_numpy(t, p) for t, p in zip(truths, predictions)]))


def instance_map_tf(truth, prediction):
    """Pure TF :func:`instance_map_numpy` (label images in, float64 scalar out). Not for
    ``jit_compile``: the number of instances is data dependent (``tf.unique``)."""
    import tensorflow as tf

    t = tf.reshape(tf.cast(truth, tf.int64), [-1])
    p = tf.reshape(tf.cast(prediction, tf.int64), [-1])
    zero = tf.zeros([1], tf.int64)
    t_ids, t_inv = tf.unique(tf.concat([zero, t], 0))        # background first: index 0
    p_ids, p_inv = tf.unique(tf.concat([zero, p], 0))
    t_inv, p_inv = t_inv[1:], p_inv[1:]
    nt = tf.size(t_ids, tf.int32) - 1
    n_p = tf.size(p_ids, tf.int32) - 1
    pair = tf.cast(t_inv, tf.int32) * (n_p + 1) + tf.cast(p_inv, tf.int32)
    counts = tf.math.bincount(pair, minlength=(nt + 1) * (n_p + 1), maxlength=(nt + 1) * (n_p + 1),
                              dtype=tf.float64)
    counts = tf.reshape(counts, [nt + 1, n_p + 1])
    inter = counts[1:, 1:]
    t_area = tf.reduce_sum(counts[1:, :], axis=1)
    p_area = tf.reduce_sum(counts[:, 1:], axis=0)
    ious = inter / (t_area[:, None] + p_area[None, :] - inter)
    thresholds = tf.constant(INSTANCE_THRESHOLDS, tf.float64)
    hits = tf.reduce_sum(tf.cast(ious[None] > thresholds[:, None, None], tf.float64), axis=[1, 2])
    total = tf.cast(nt + n_p, tf.float64)
    score = tf.reduce_mean(hits / tf.maximum(total - hits, 1.0))
    return tf.where(total > 0, score, tf.constant(0.0, tf.float64))
