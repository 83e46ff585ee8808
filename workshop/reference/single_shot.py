"""A single-shot detector's training signal (chapter 10): every anchor matched to an object or to
the background (``match_anchors``), and the sigmoid focal loss over all of them (``focal_loss``).

Box convention (see :mod:`workshop.conventions`): float ``(N, 4)`` xyxy, continuous pixels,
width ``x2 - x1``, no "+1". Class ids ``1..K``; 0 is the background, -1 an ignored anchor.

match_anchors(anchors, gt_boxes, gt_classes, fg_iou=0.5, bg_iou=0.4)
        -> (labels int64 (N,), deltas float64 (N, 4))
  RetinaNet's assignment, with no sampling: every anchor is trained.
  1. An anchor's IoU is its largest IoU over the GT boxes (0 with no GT); its GT is the first
     GT of that largest IoU.
  2. IoU ``>= fg_iou``: foreground, labelled with its GT's class. IoU ``< bg_iou``: background
     (0). In between: ignored (-1), neither object nor background.
  3. Every GT box also gets its best anchors: those whose IoU with it equals the GT's largest
     IoU over all anchors (every tie counts), provided that IoU is > 0. They are foreground
     with that GT, whatever rule 2 said (so a small or oddly shaped object is never left
     without an anchor). An anchor that is a best anchor of several GTs takes, among those, the
     one of largest IoU with it (the first on ties).
  4. ``deltas``: ``encode(gt, anchor)`` with weights ``(1, 1, 1, 1)`` for foreground anchors
     (their GT as in 1, or as in 3 for a best anchor), zeros elsewhere.

focal_loss(class_logits, labels, alpha=0.25, gamma=2.0) -> float
  ``class_logits`` ``(N, K)``: one sigmoid per foreground class (no background column);
  ``labels`` ``(N,)`` in ``-1..K``. The target of anchor ``n`` and class ``k`` is
  ``t = 1`` when ``labels[n] == k + 1``, else 0 (a background anchor: all zeros). With
  ``p = sigmoid(z)``, ``p_t = p`` if ``t`` else ``1 - p`` and ``alpha_t = alpha`` if ``t`` else
  ``1 - alpha``, each term is ``-alpha_t (1 - p_t)^gamma log(p_t)`` (Lin et al., 2017). The loss
  sums the terms of every anchor with ``labels >= 0`` and every class, divided by
  ``max(#(labels >= 1), 1)``, the number of foreground anchors. ``log(p_t)`` is computed from
  the logits, ``-softplus(-z)`` for ``t = 1`` and ``-softplus(z)`` for ``t = 0``, with
  ``softplus(x) = max(x, 0) + log1p(exp(-|x|))``: no overflow, no ``log(0)``.

Validation: malformed boxes raise ValueError naming the row; thresholds out of order
(``0 <= bg_iou <= fg_iou <= 1``, ``fg_iou > 0``), classes below 1, labels outside ``-1..K``, ``gamma < 0`` or
``alpha`` outside ``[0, 1]`` raise ValueError.
"""

from __future__ import annotations

import math

import numpy as np

from ..conventions import as_boxes

__all__ = ["match_anchors_loops", "match_anchors_numpy", "focal_loss_loops", "focal_loss_numpy",
           "focal_loss_tf"]

WEIGHTS = (1.0, 1.0, 1.0, 1.0)


# ============================================================================================
# match_anchors
# ============================================================================================
def check_match_args(anchors, gt_boxes, gt_classes, fg_iou, bg_iou):
    """Validated ``(anchors (N, 4), gt (M, 4), classes int64 (M,), fg_iou, bg_iou)``."""
    a = as_boxes(anchors, "anchors")
    g = as_boxes(gt_boxes, "gt_boxes")
    c = np.asarray(gt_classes).reshape(-1)
    if c.shape[0] != g.shape[0]:
        raise ValueError(f"gt_classes: expected one class per GT box ({g.shape[0]}), got {c.shape[0]}")
    if c.size and (not np.issubdtype(c.dtype, np.integer) or c.min() < 1):
        raise ValueError(f"gt_classes: expected integer class ids >= 1 (0 is the background), got {c.tolist()}")
    fg, bg = float(fg_iou), float(bg_iou)
    if not (0.0 <= bg <= fg <= 1.0 and fg > 0.0):
        raise ValueError(f"expected 0 <= bg_iou <= fg_iou <= 1 and fg_iou > 0, got bg_iou={bg_iou}, fg_iou={fg_iou}")
    return a, g, c.astype(np.int64), fg, bg


def match_anchors_loops(anchors, gt_boxes, gt_classes, fg_iou=0.5, bg_iou=0.4):
    """Every anchor labelled and given its box target, anchor by anchor (rules in the module
    docstring).

    Args:
      anchors: float ``(N, 4)`` xyxy; gt_boxes: float ``(M, 4)`` xyxy (M may be 0); gt_classes:
        int ``(M,)`` in ``1..K``. fg_iou, bg_iou: foreground at IoU >= fg_iou, background below
        bg_iou, ignored in between.
    Returns: labels int64 ``(N,)`` in ``-1..K``; deltas float64 ``(N, 4)`` (weights 1, 1, 1, 1).
    """
    from .boxes import iou_loops
    from .coding import encode_loops

    a, g, cls, fg_thr, bg_thr = check_match_args(anchors, gt_boxes, gt_classes, fg_iou, bg_iou)
    n, m = len(a), len(g)
    overlaps = iou_loops(a, g).tolist() if n and m else [[0.0] * m for _ in range(n)]
    best, match = [0.0] * n, [-1] * n
    for i in range(n):
        for j in range(m):
            if match[i] < 0 or overlaps[i][j] > best[i]:
                best[i], match[i] = overlaps[i][j], j
    labels = np.zeros(n, dtype=np.int64)
    gt_of = [-1] * n
    for i in range(n):
        if best[i] >= fg_thr:
            labels[i], gt_of[i] = cls[match[i]], match[i]
        elif best[i] >= bg_thr:
            labels[i] = -1
    forced_iou = [-1.0] * n
    for j in range(m):
        top = max((overlaps[i][j] for i in range(n)), default=0.0)
        if top <= 0:
            continue
        for i in range(n):
            if overlaps[i][j] == top and overlaps[i][j] > forced_iou[i]:
                forced_iou[i] = overlaps[i][j]
                labels[i], gt_of[i] = cls[j], j
    deltas = np.zeros((n, 4))
    for i in range(n):
        if gt_of[i] >= 0:
            deltas[i] = encode_loops(g[gt_of[i]:gt_of[i] + 1], a[i:i + 1], WEIGHTS)[0]
    return labels, deltas


def match_anchors_numpy(anchors, gt_boxes, gt_classes, fg_iou=0.5, bg_iou=0.4):
    """Vectorized :func:`match_anchors_loops` (same arguments and result)."""
    from .boxes import iou_numpy
    from .coding import encode_numpy

    a, g, cls, fg_thr, bg_thr = check_match_args(anchors, gt_boxes, gt_classes, fg_iou, bg_iou)
    n, m = len(a), len(g)
    labels = np.zeros(n, dtype=np.int64)
    deltas = np.zeros((n, 4))
    if n == 0:
        return labels, deltas
    overlaps = iou_numpy(a, g) if m else np.zeros((n, 0))          # (N, M)
    padded = np.concatenate([overlaps, np.zeros((n, 1))], axis=1)  # a 0 column: IoU 0 with no GT
    best, match = padded.max(axis=1), padded.argmax(axis=1)        # argmax: the first GT of largest IoU
    labels[(best >= bg_thr) & (best < fg_thr)] = -1
    foreground = best >= fg_thr
    if m:
        top = overlaps.max(axis=0)                                   # (M,): each GT's best IoU
        is_best = (overlaps == top[None, :]) & (top[None, :] > 0)    # (N, M)
        forced = is_best.any(axis=1)
        match = np.where(forced, np.where(is_best, overlaps, -1.0).argmax(axis=1), match)
        foreground |= forced
    labels[foreground] = cls[match[foreground]]
    deltas[foreground] = encode_numpy(g[match[foreground]], a[foreground], WEIGHTS)
    return labels, deltas


# ============================================================================================
# focal_loss
# ============================================================================================
def check_focal_args(class_logits, labels, alpha, gamma):
    """Validated ``(z float64 (N, K), y int64 (N,), alpha, gamma)``."""
    z = np.asarray(class_logits, np.float64)
    y = np.asarray(labels).reshape(-1)
    if z.ndim != 2:
        raise ValueError(f"class_logits: expected shape (N, K), got {z.shape}")
    n, k = z.shape
    if len(y) != n:
        raise ValueError(f"labels: expected one label per anchor ({n}), got {len(y)}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < -1 or y.max() > k):
        raise ValueError(f"labels: expected integers in -1..{k} (-1: ignored, 0: background), "
                         f"got {sorted(set(y.tolist()))}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
    if not float(gamma) >= 0.0:
        raise ValueError(f"gamma: expected >= 0, got {gamma}")
    return z, y.astype(np.int64), float(alpha), float(gamma)


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def focal_loss_loops(class_logits, labels, alpha=0.25, gamma=2.0):
    """The sigmoid focal loss, anchor by anchor and class by class (rules in the module docstring).

    Args: class_logits float ``(N, K)``; labels int ``(N,)`` in ``-1..K``; alpha in ``[0, 1]``:
      the weight of a positive term (``1 - alpha`` a negative one); gamma >= 0: the focusing power.
    Returns: the loss, a float: summed over anchors with label >= 0 and classes, divided by
      ``max(#foreground, 1)``.
    """
    z, y, alpha, gamma = check_focal_args(class_logits, labels, alpha, gamma)
    total, foreground = 0.0, 0
    for n in range(z.shape[0]):
        if y[n] < 0:
            continue
        foreground += int(y[n] >= 1)
        for k in range(z.shape[1]):
            x = float(z[n, k])
            if y[n] == k + 1:
                log_p_t, log_other = -_softplus(-x), -_softplus(x)    # log p, log(1 - p)
                weight = alpha
            else:
                log_p_t, log_other = -_softplus(x), -_softplus(-x)
                weight = 1.0 - alpha
            total += -weight * math.exp(gamma * log_other) * log_p_t   # (1 - p_t)^gamma
    return total / max(foreground, 1)


def _softplus_numpy(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def focal_loss_numpy(class_logits, labels, alpha=0.25, gamma=2.0):
    """Vectorized :func:`focal_loss_loops` (same arguments and result)."""
    z, y, alpha, gamma = check_focal_args(class_logits, labels, alpha, gamma)
    k = z.shape[1]
    target = (y[:, None] == np.arange(1, k + 1)[None, :])          # (N, K); background: all False
    signed = np.where(target, z, -z)                               # p_t = sigmoid(signed)
    log_p_t = -_softplus_numpy(-signed)
    one_minus_p_t = np.exp(-_softplus_numpy(signed))               # sigmoid(-signed)
    weight = np.where(target, alpha, 1.0 - alpha)
    terms = -weight * one_minus_p_t ** gamma * log_p_t
    kept = y >= 0
    return float(terms[kept].sum() / max(int((y >= 1).sum()), 1))


def focal_loss_tf(class_logits, labels, alpha=0.25, gamma=2.0):
    """:func:`focal_loss_loops` in TensorFlow: logits ``(N, K)`` and labels ``(N,)`` tensors,
    alpha and gamma Python numbers; a scalar tensor in the logits' float dtype.
    ``tf.where`` keeps an ignored anchor's inf or NaN out of the sum. Differentiable; compiles
    with ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    z = tf.convert_to_tensor(class_logits)
    z = z if z.dtype.is_floating else tf.cast(z, tf.float64)
    y = tf.reshape(tf.cast(labels, tf.int32), [-1])
    k = tf.shape(z)[1]
    target = tf.equal(y[:, None], tf.range(1, k + 1)[None, :])
    signed = tf.where(target, z, -z)
    log_p_t = -tf.math.softplus(-signed)
    one_minus_p_t = tf.exp(-tf.math.softplus(signed))
    weight = tf.where(target, tf.constant(alpha, z.dtype), tf.constant(1.0 - alpha, z.dtype))
    terms = -weight * tf.pow(one_minus_p_t, tf.constant(gamma, z.dtype)) * log_p_t
    kept = (y >= 0)[:, None]
    total = tf.reduce_sum(tf.where(kept, terms, tf.zeros_like(terms)))
    foreground = tf.reduce_sum(tf.cast(y >= 1, z.dtype))
    return total / tf.maximum(foreground, tf.ones([], z.dtype))
