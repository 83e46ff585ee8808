"""IoU and non-maximum suppression, in three tiers (loops, numpy, TensorFlow).

Box convention (see :mod:`workshop.conventions`): float ``(N, 4)`` arrays in ``(x1, y1, x2, y2)``
order, continuous pixel coordinates, width ``x2 - x1``, area ``(x2 - x1) * (y2 - y1)``, no "+1".

IoU
  ``iou_*(boxes1 (N, 4), boxes2 (M, 4)) -> (N, M)`` float64 (the TF tier keeps a float32 input's
  dtype). The intersection width is ``max(0, min(x2, x2') - max(x1, x1'))``: boxes that only
  touch have IoU 0, and a zero union (two zero-area boxes) gives 0, never NaN.

NMS
  ``nms_*(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None)`` returns the
  kept indices, int64 ``(K,)``, in decreasing score order; it returns exactly what
  ``tf.image.non_max_suppression`` returns:

  * greedy: take the best remaining box, drop every box whose IoU with it is STRICTLY greater
    than ``iou_threshold`` (IoU equal to the threshold survives), repeat;
  * equal scores: the lower index comes first (a stable sort on decreasing score);
  * ``score_threshold``: only boxes with a score STRICTLY above it take part (None means -inf,
    as in TensorFlow: a box scored -inf is never kept);
  * ``max_output_size``: at most that many indices (the first ones of the greedy order);
  * a zero-area box has IoU 0 with everything, so it never suppresses nor is suppressed (two
    identical zero-area boxes are both kept).

  Where OpenCV's ``cv2.dnn.NMSBoxes(bboxes, scores, score_threshold, nms_threshold, eta, top_k)``
  differs:

  * it takes ``(x, y, width, height)`` boxes (convert with ``convert_boxes(b, "xyxy", "xywh")``);
  * its ``top_k`` keeps only the ``top_k`` best-scored boxes as candidates BEFORE suppression
    (a candidate suppressed inside the top k is not replaced by the next box), while
    ``max_output_size`` caps the output: NMSBoxes(top_k=2) on A, B (suppressed by A), C gives
    [A] where we give [A, C];
  * two identical zero-area boxes have IoU 1 for OpenCV (its Jaccard index of two empty
    rectangles), so the second one is suppressed; we (and TensorFlow) keep both;
  * its overlap is computed in float32, so IoUs within ~1e-7 of the threshold may decide
    differently.

These are the textbook versions, the ones a learner compares with; the tuned kernels of
:mod:`workshop.kernels.boxes` return the same results faster.

Validation: malformed boxes or scores raise ValueError naming the offending row; thresholds
outside [0, 1] or a negative ``max_output_size`` raise ValueError; empty input gives an empty
``(0, M)`` IoU or an empty int64 index vector.
"""

from __future__ import annotations

import numpy as np

from ..conventions import as_boxes, as_scores

__all__ = ["iou_loops", "iou_numpy", "iou_tf", "nms_loops", "nms_numpy", "nms_tf",
           "batched_nms_loops", "batched_nms_numpy", "batched_nms_tf"]


# -- shared argument checks -------------------------------------------------------------------
def check_nms_args(boxes, scores, iou_threshold, max_output_size, score_threshold):
    """Validated float64 boxes (N, 4), scores (N,), and the plain Python thresholds."""
    b = as_boxes(boxes)
    s = as_scores(scores, b.shape[0])
    thr = float(iou_threshold)
    if not 0.0 <= thr <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if max_output_size is None:
        cap = b.shape[0]
    else:
        cap = int(max_output_size)
        if cap < 0:
            raise ValueError(f"max_output_size must be >= 0, got {max_output_size}")
    sthr = None if score_threshold is None else float(score_threshold)
    return b, s, thr, cap, sthr


def check_classes(classes, n):
    try:
        c = np.asarray(classes)
    except Exception as err:  # pragma: no cover - numpy rarely fails here
        raise ValueError(f"classes: expected an integer array of shape ({n},): {err}") from None
    if c.ndim != 1 or c.shape[0] != n:
        raise ValueError(f"classes: expected shape ({n},), one class per box, got shape {c.shape}")
    if c.size and c.dtype.kind not in "iub":
        if c.dtype.kind == "f" and np.all(np.isfinite(c)) and np.all(c == np.round(c)):
            c = c.astype(np.int64)
        else:
            bad = np.flatnonzero(~(np.isfinite(c) & (c == np.round(c)))) if c.dtype.kind == "f" else [0]
            raise ValueError(f"classes: entry {int(bad[0]) if len(bad) else 0} is not an integer class id")
    return c.astype(np.int64)


# ============================================================================================
# IoU
# ============================================================================================
def iou_loops(boxes1, boxes2) -> np.ndarray:
    """IoU of every pair, with plain Python loops.

    Args: boxes1 ``(N, 4)``, boxes2 ``(M, 4)`` xyxy. Returns float64 ``(N, M)``.
    """
    a, b = as_boxes(boxes1, "boxes1"), as_boxes(boxes2, "boxes2")
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    for i, (ax1, ay1, ax2, ay2) in enumerate(a.tolist()):
        area_a = (ax2 - ax1) * (ay2 - ay1)
        for j, (bx1, by1, bx2, by2) in enumerate(b.tolist()):
            w = min(ax2, bx2) - max(ax1, bx1)
            h = min(ay2, by2) - max(ay1, by1)
            if w <= 0 or h <= 0:
                continue
            inter = w * h
            union = area_a + (bx2 - bx1) * (by2 - by1) - inter
            if union > 0:
                out[i, j] = inter / union
    return out


def iou_numpy(boxes1, boxes2) -> np.ndarray:
    """IoU of every pair by broadcasting (no Python loop over boxes).

    Args: boxes1 ``(N, 4)``, boxes2 ``(M, 4)`` xyxy. Returns float64 ``(N, M)``.
    """
    return pairwise_iou(as_boxes(boxes1, "boxes1"), as_boxes(boxes2, "boxes2"))


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of already validated float64 boxes ``(N, 4)`` and ``(M, 4)``: ``(N, M)``."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    # union is 0 only for two zero-area boxes (their intersection is 0 too): IoU 0, never NaN
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou_tf(boxes1, boxes2):
    """IoU of every pair in TensorFlow (tensors in and out; works under
    ``tf.function(jit_compile=True)``).

    Args: boxes1 ``(N, 4)``, boxes2 ``(M, 4)`` xyxy tensors. Returns ``(N, M)`` in the input's
    float dtype (float64 for float64 or integer input, float32 for float32 input).
    """
    import tensorflow as tf

    a, b = tf_boxes(boxes1, "boxes1"), tf_boxes(boxes2, "boxes2")
    if b.dtype != a.dtype:
        b = tf.cast(b, a.dtype)
    return iou_tf_core(a, b)


def tf_boxes(boxes, name):
    """A float tensor of boxes, validated with the numpy rules when running eagerly."""
    import tensorflow as tf

    t = tf.convert_to_tensor(boxes)
    if not t.dtype.is_floating:
        t = tf.cast(t, tf.float64)
    if t.shape.rank is not None and (t.shape.rank != 2 or (t.shape[-1] is not None and t.shape[-1] != 4)):
        if not (t.shape.rank == 1 and t.shape[0] == 0):
            raise ValueError(f"{name}: expected shape (N, 4) in xyxy format, got shape {tuple(t.shape)}")
        t = tf.zeros((0, 4), t.dtype)
    if tf.executing_eagerly():
        as_boxes(t.numpy(), name)  # raises ValueError naming the row
    return t


def iou_tf_core(a, b):
    import tensorflow as tf

    ax1, ay1, ax2, ay2 = tf.unstack(a[:, :, None], axis=1)   # (N, 1) each
    bx1, by1, bx2, by2 = tf.unstack(tf.transpose(b)[:, None, :], axis=0)  # (1, M) each
    zero = tf.zeros([], a.dtype)
    w = tf.maximum(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1), zero)
    h = tf.maximum(tf.minimum(ay2, by2) - tf.maximum(ay1, by1), zero)
    inter = w * h
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return tf.math.divide_no_nan(inter, union)


# ============================================================================================
# NMS
# ============================================================================================
def by_score(scores: np.ndarray, score_threshold) -> np.ndarray:
    """Candidate indices by decreasing score, ties by increasing index, above the threshold."""
    order = np.argsort(-scores, kind="stable")
    return order[scores[order] > (-np.inf if score_threshold is None else score_threshold)]


def nms_loops(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None) -> np.ndarray:
    """Greedy NMS with plain Python loops. See the module docstring for the exact rules.

    Args:
      boxes: ``(N, 4)`` xyxy; scores: ``(N,)``; iou_threshold: suppress when IoU > it;
      max_output_size: at most this many indices (None: no cap);
      score_threshold: consider only scores > it (None: all).
    Returns: int64 ``(K,)`` kept indices in decreasing score order.
    """
    b, s, thr, cap, sthr = check_nms_args(boxes, scores, iou_threshold, max_output_size, score_threshold)
    lowest = -np.inf if sthr is None else sthr
    items = [(i, s[i]) for i in range(len(s)) if s[i] > lowest]
    items.sort(key=lambda t: -t[1])  # Python's sort is stable: equal scores keep index order
    rows = b.tolist()
    kept: list[int] = []
    for i, _ in items:
        if len(kept) >= cap:
            break
        x1, y1, x2, y2 = rows[i]
        area = (x2 - x1) * (y2 - y1)
        ok = True
        for k in kept:
            kx1, ky1, kx2, ky2 = rows[k]
            w = min(x2, kx2) - max(x1, kx1)
            h = min(y2, ky2) - max(y1, ky1)
            if w <= 0 or h <= 0:
                continue
            inter = w * h
            union = area + (kx2 - kx1) * (ky2 - ky1) - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            kept.append(i)
    return np.array(kept, dtype=np.int64)


def nms_numpy(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None) -> np.ndarray:
    """Greedy NMS, vectorized over the remaining boxes. Same arguments and result as
    :func:`nms_loops`: keep the best remaining box, drop those overlapping it, repeat."""
    b, s, thr, cap, sthr = check_nms_args(boxes, scores, iou_threshold, max_output_size, score_threshold)
    return _greedy_numpy(b, by_score(s, sthr), thr, cap)


def _greedy_numpy(b, order, thr, cap):
    """Greedy NMS over ``order`` (candidate indices, best first)."""
    kept = []
    while order.size and len(kept) < cap:
        best, order = order[0], order[1:]
        kept.append(best)
        order = order[pairwise_iou(b[best:best + 1], b[order])[0] <= thr]
    return np.array(kept, dtype=np.int64)


def nms_tf(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    """Greedy NMS in pure TensorFlow (a ``tf.while_loop``, not ``tf.image.non_max_suppression``).

    Same arguments and result as :func:`nms_loops`; tensors in, an int64 tensor out. Works under
    ``tf.function(jit_compile=True)``; ``iou_threshold``, ``max_output_size`` and
    ``score_threshold`` may be Python numbers or scalar tensors.
    """
    return _greedy_tf(*tf_nms_args(boxes, scores, None, iou_threshold, max_output_size,
                                   score_threshold))


def _greedy_tf(b, s, c, thr, cap, sthr):
    """Greedy NMS on tensors: boxes ``(N, 4)``, scores ``(N,)``, classes int64 ``(N,)``."""
    import tensorflow as tf

    if b.shape[0] == 0:
        return tf.zeros([0], tf.int64)
    n = b.shape[0] if b.shape[0] is not None else tf.shape(b)[0]   # static when known
    order = tf.math.top_k(s, k=n).indices        # decreasing score, ties by increasing index
    sb, sc = tf.gather(b, order), tf.gather(c, order)
    live = tf.gather(s, order) > sthr             # candidates not yet kept or suppressed

    def step(live, keep, count):
        i = tf.reduce_min(tf.where(live, tf.range(n), n))     # the best live box
        mine = tf.equal(tf.range(n), i)
        best = tf.reshape(tf.gather(sb, tf.minimum(i, n - 1)), [1, 4])
        # the boxes it removes: same class, IoU above the threshold
        removed = (iou_tf_core(best, sb)[0] > thr) & tf.equal(sc, tf.gather(sc, tf.minimum(i, n - 1)))
        return live & ~removed & ~mine, keep | mine, count + 1

    _, keep, _ = tf.while_loop(lambda live, keep, count: tf.reduce_any(live) & (count < cap),
                               step, (live, tf.zeros([n], tf.bool), tf.constant(0)))
    return tf.cast(tf.boolean_mask(order, keep), tf.int64)


def tf_nms_args(boxes, scores, classes, iou_threshold, max_output_size, score_threshold):
    """Tensors for the TF NMS tiers: boxes, scores (boxes' dtype), classes (int64, all 0 when
    None), threshold, cap (int32) and score threshold; checked with the numpy rules when
    running eagerly."""
    import tensorflow as tf

    b = tf_boxes(boxes, "boxes")
    s = tf.convert_to_tensor(scores)
    if s.shape.rank is not None and s.shape.rank != 1:
        raise ValueError(f"scores: expected shape (N,), one score per box, got shape {tuple(s.shape)}")
    if tf.executing_eagerly():
        check_nms_args(b.numpy(), s.numpy(), float(iou_threshold),
                       None if max_output_size is None else int(max_output_size),
                       None if score_threshold is None else float(score_threshold))
    s = tf.cast(s, b.dtype)
    n = tf.shape(b)[0]
    cap = n if max_output_size is None else tf.minimum(tf.cast(max_output_size, tf.int32), n)
    thr = tf_scalar(iou_threshold, b.dtype)
    sthr = tf_scalar(float("-inf") if score_threshold is None else score_threshold, b.dtype)
    c = tf.zeros([n], tf.int64) if classes is None else tf.cast(classes, tf.int64)
    return b, s, c, thr, cap, sthr


def tf_scalar(value, dtype):
    """A scalar of ``dtype``; a Python float goes straight to ``dtype`` (tf.cast(0.7, float64)
    would round through float32 first and move the threshold)."""
    import tensorflow as tf

    if isinstance(value, (int, float, np.number)):
        return tf.constant(float(value), dtype)
    return tf.cast(value, dtype)


def tf_classes(classes, boxes):
    """Class ids as an int64 tensor ``(N,)``, checked with the numpy rules when eager."""
    import tensorflow as tf

    c = tf.convert_to_tensor(classes)
    if c.shape.rank is not None and c.shape.rank != 1:
        raise ValueError(f"classes: expected shape (N,), one class per box, got shape {tuple(c.shape)}")
    if tf.executing_eagerly():
        check_classes(c.numpy(), int(tf.shape(tf.convert_to_tensor(boxes))[0]))
    return tf.cast(c, tf.int64)


# -- class-aware NMS ----------------------------------------------------------------------------
# The loops and numpy tiers run NMS per class and merge by score; the TF tier runs one greedy
# pass where a kept box only suppresses boxes of its own class: two routes to the same answer.
def batched_nms_loops(boxes, scores, classes, iou_threshold, max_output_size=None,
                      score_threshold=None) -> np.ndarray:
    """Class-aware NMS with loops: boxes of different classes never suppress each other.

    Args: as :func:`nms_loops`, plus ``classes`` int ``(N,)``. Returns int64 kept indices in
    decreasing score order (ties by index) across all classes.
    """
    b, s, thr, cap, sthr = check_nms_args(boxes, scores, iou_threshold, max_output_size, score_threshold)
    c = check_classes(classes, b.shape[0])
    kept: list[int] = []
    for cls in sorted(set(c.tolist())):
        idx = [i for i in range(len(c)) if c[i] == cls]
        sub = nms_loops(b[idx], s[idx], thr, None, sthr)
        kept.extend(idx[j] for j in sub.tolist())
    kept.sort(key=lambda i: (-s[i], i))
    return np.array(kept[:cap], dtype=np.int64)


def batched_nms_numpy(boxes, scores, classes, iou_threshold, max_output_size=None,
                      score_threshold=None) -> np.ndarray:
    """Class-aware NMS: :func:`nms_numpy` within each class, the survivors merged by score.
    Same arguments and result as :func:`batched_nms_loops`."""
    b, s, thr, cap, sthr = check_nms_args(boxes, scores, iou_threshold, max_output_size, score_threshold)
    c = check_classes(classes, b.shape[0])
    kept = [members[_greedy_numpy(b[members], by_score(s[members], sthr), thr, cap)]
            for members in (np.flatnonzero(c == k) for k in np.unique(c))]
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return kept[np.lexsort((kept, -s[kept]))][:cap].astype(np.int64)


def batched_nms_tf(boxes, scores, classes, iou_threshold, max_output_size=None,
                   score_threshold=None):
    """Class-aware NMS in TensorFlow; tensors in, an int64 tensor out. Same arguments and
    result as :func:`batched_nms_loops`."""
    return _greedy_tf(*tf_nms_args(boxes, scores, tf_classes(classes, boxes), iou_threshold,
                                   max_output_size, score_threshold))
