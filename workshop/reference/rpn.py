"""The region proposal network's geometry: training targets for the anchors, and proposals.

Box convention (see :mod:`workshop.conventions`): float ``(N, 4)`` xyxy, continuous pixels,
width ``x2 - x1``, area ``(x2 - x1) * (y2 - y1)``, no "+1". ``image_shape`` is
``(height, width)`` (a third entry, channels, is ignored).

rpn_targets(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3, batch_size=256,
            positive_fraction=0.5, seed=0) -> (labels int64 (N,), deltas float64 (N, 4))
  1. An anchor crossing the image border (``x1 < 0``, ``y1 < 0``, ``x2 > W`` or ``y2 > H``) is
     ignored (-1), whatever its IoU; only the others (inside) are labelled.
  2. An inside anchor whose max IoU over the GT boxes is ``< negative_iou`` is negative (0); with
     no GT box every inside anchor is negative.
  3. An inside anchor is positive (1) when its max IoU is ``>= positive_iou``, or when it is one
     of a GT box's best anchors: its IoU with that GT equals the GT's largest IoU over the
     inside anchors (every tie counts), provided that largest IoU is > 0. Positive wins over 2.
  4. Everything else is ignored (-1).
  5. Sampling: at most ``int(batch_size * positive_fraction)`` positives are kept, those with the
     lowest :func:`workshop.conventions.sampling_priority` ``(N, seed)``; then at most
     ``batch_size - kept positives`` negatives, again by lowest priority. The others become -1.
  6. ``deltas[i] = encode(gt_boxes[m], anchors[i])`` (weights 1) for the final positives, ``m``
     the first GT of largest IoU with anchor ``i``; zeros elsewhere.

rpn_proposals(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000, post_nms_top_n=300,
              nms_threshold=0.7, min_size=0) -> (boxes float (K, 4), scores float (K,))
  decode (weights 1, clamped), clip x to [0, W] and y to [0, H], drop boxes whose width or height
  is < ``min_size``, keep the ``pre_nms_top_n`` best scores (stable: equal scores keep the lower
  index first), NMS at ``nms_threshold`` (suppress IoU > threshold), keep the first
  ``post_nms_top_n``. Scores are the objectness values as given (logits or probabilities: the
  order is the same), in decreasing order.

rpn_loss(objectness, pred_deltas, labels, target_deltas, beta=1/9)
        -> (objectness_loss, box_loss), float scalars
  Over the ``N`` anchors (any leading batch axes flattened: the loss of a batch is the loss of
  all its anchors together), with ``S = max(#(labels >= 0), 1)`` the number of sampled anchors:
  objectness_loss = sum over sampled anchors of BCE(sigmoid(logit), label == 1) / S, the binary
  cross-entropy computed from the logit stably, ``max(z, 0) - z * y + log(1 + exp(-|z|))``;
  box_loss = sum over positive anchors (label 1) and their 4 coordinates of
  smooth_L1(pred - target) / S, smooth_L1(x) = 0.5 x**2 / beta if |x| < beta else |x| - beta / 2.
  Ignored anchors (-1) add nothing; the model's ``workshop.models.rpn.rpn_loss`` is the same.

Validation: malformed boxes raise ValueError naming the row; thresholds outside their range,
``negative_iou > positive_iou``, negative sizes or a non-positive image shape raise ValueError.

The two steps of ``rpn_targets`` are exercises of their own: ``label_anchors`` (rules 1-4, the
labels before sampling and each anchor's GT) and ``subsample_labels`` (rule 5).

Length: chapter 5's answers (the targets and their two steps, the proposals, the loss) in the
tiers a learner compares with, sharing one set of argument checks.
"""

from __future__ import annotations

import math

import numpy as np

from ..conventions import as_boxes, as_scores

__all__ = [
    "label_anchors_loops",
    "label_anchors_numpy",
    "subsample_labels_loops",
    "subsample_labels_numpy",
    "rpn_loss_loops",
    "rpn_loss_numpy",
    "rpn_loss_tf",
    "rpn_proposals_loops",
    "rpn_proposals_numpy",
    "rpn_proposals_tf",
    "rpn_targets_loops",
    "rpn_targets_numpy",
    "rpn_targets_tf",
]


# -- argument checks ---------------------------------------------------------------------------
def _image_shape(image_shape) -> tuple[float, float]:
    try:
        dims = [float(v) for v in image_shape]
    except (TypeError, ValueError):
        raise ValueError(f"image_shape: expected (height, width), got {image_shape!r}") from None
    if len(dims) not in (2, 3):
        raise ValueError(f"image_shape: expected (height, width), got {image_shape!r}")
    for axis, d in zip(("height", "width"), dims[:2]):
        if not (math.isfinite(d) and d > 0):
            raise ValueError(f"image_shape: {axis} is {d}, expected a positive number")
    return dims[0], dims[1]


def _image_shape_tf(image_shape, dtype):
    """``(H, W)`` as scalar tensors of ``dtype`` from a Python pair (validated) or a tensor."""
    import tensorflow as tf

    if isinstance(image_shape, (tuple, list)):
        H, W = _image_shape(image_shape)
        return tf.constant(H, dtype), tf.constant(W, dtype)
    shape = tf.cast(tf.convert_to_tensor(image_shape), dtype)
    return shape[0], shape[1]


def _target_args(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                 positive_fraction, seed):
    a = as_boxes(anchors, "anchors")
    g = as_boxes(gt_boxes, "gt_boxes")
    H, W = _image_shape(image_shape)
    pos, neg = float(positive_iou), float(negative_iou)
    if not 0.0 < pos <= 1.0:
        raise ValueError(f"positive_iou must be in (0, 1], got {positive_iou}")
    if not 0.0 <= neg <= pos:
        raise ValueError(f"negative_iou must be in [0, positive_iou={pos}], got {negative_iou}")
    return (a, g, H, W, pos, neg, *_sampling_args(batch_size, positive_fraction, seed))


def _sampling_args(batch_size, positive_fraction, seed) -> tuple[int, int, int]:
    """``(batch_size, max_positives, seed)`` as ints, checked."""
    if int(batch_size) != batch_size or batch_size < 0:
        raise ValueError(f"batch_size must be an integer >= 0, got {batch_size}")
    frac = float(positive_fraction)
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if int(seed) != seed:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return int(batch_size), int(int(batch_size) * frac), int(seed)


def _priority(n, seed):
    from ..conventions import sampling_priority

    return sampling_priority(n, seed)


# ============================================================================================
# rpn_targets
# ============================================================================================
def label_anchors_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    """Rules 1-4 of :func:`rpn_targets_loops`, anchor by anchor: the labels before sampling.

    Args: anchors ``(N, 4)`` xyxy; gt_boxes ``(M, 4)`` xyxy, M may be 0; image_shape
      ``(height, width)``; positive_iou, negative_iou the IoU thresholds.
    Returns: labels int64 ``(N,)`` in {1, 0, -1}; matched int64 ``(N,)``, each anchor's first GT
      of largest IoU (0 when there is no GT).
    """
    from .boxes import iou_loops

    a, g, H, W, pos_thr, neg_thr, *_ = _target_args(anchors, gt_boxes, image_shape, positive_iou,
                                                     negative_iou, 0, 0.5, 0)
    n, m = a.shape[0], g.shape[0]
    iou = iou_loops(a, g).tolist()
    inside = [x1 >= 0 and y1 >= 0 and x2 <= W and y2 <= H for x1, y1, x2, y2 in a.tolist()]
    best = [0.0] * m                           # each GT's best IoU over the inside anchors
    for i in range(n):
        if inside[i]:
            for j in range(m):
                best[j] = max(best[j], iou[i][j])
    labels, matched = [-1] * n, [0] * n
    for i in range(n):
        top = 0.0
        for j in range(m):
            if iou[i][j] > top:
                top, matched[i] = iou[i][j], j
        if not inside[i]:
            continue
        if top < neg_thr:
            labels[i] = 0
        if top >= pos_thr or any(best[j] > 0 and iou[i][j] == best[j] for j in range(m)):
            labels[i] = 1
    return np.array(labels, dtype=np.int64), np.array(matched, dtype=np.int64)


def label_anchors_numpy(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3):
    """Vectorized :func:`label_anchors_loops` (same arguments and result)."""
    from .boxes import iou_numpy

    a, g, H, W, pos_thr, neg_thr, *_ = _target_args(anchors, gt_boxes, image_shape, positive_iou,
                                                     negative_iou, 0, 0.5, 0)
    n, m = a.shape[0], g.shape[0]
    inside = (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= W) & (a[:, 3] <= H)
    labels = np.full(n, -1, dtype=np.int64)
    if m == 0:
        labels[inside] = 0
        return labels, np.zeros(n, dtype=np.int64)
    iou = iou_numpy(a, g)                                       # (N, M)
    top, matched = iou.max(axis=1), iou.argmax(axis=1)          # argmax: the first GT of largest IoU
    best = np.where(inside[:, None], iou, 0.0).max(axis=0) if n else np.zeros(m)
    is_best = ((iou == best[None, :]) & (best[None, :] > 0)).any(axis=1)
    labels[inside & (top < neg_thr)] = 0
    labels[inside & ((top >= pos_thr) | is_best)] = 1           # positive wins
    return labels, matched.astype(np.int64)


def _subsample_args(labels, batch_size, positive_fraction, seed):
    y = np.asarray(labels).reshape(-1)
    if y.size and not np.isin(y, (-1, 0, 1)).all():
        raise ValueError(f"labels: expected values in {{1, 0, -1}}, got {y[~np.isin(y, (-1, 0, 1))][0]}")
    return (y.astype(np.int64), *_sampling_args(batch_size, positive_fraction, seed))


def subsample_labels_loops(labels, batch_size=256, positive_fraction=0.5, seed=0):
    """Rule 5 of :func:`rpn_targets_loops`, with plain loops: keep at most
    ``int(batch_size * positive_fraction)`` positives and ``batch_size - kept positives``
    negatives, those of lowest ``sampling_priority(len(labels), seed)``; the others become -1.

    Args: labels int ``(N,)`` in {1, 0, -1}. Returns: labels int64 ``(N,)`` (a new array).
    """
    y, batch, max_pos, seed = _subsample_args(labels, batch_size, positive_fraction, seed)
    priority = _priority(len(y), seed).tolist()
    out = y.tolist()
    positives = sorted((i for i in range(len(out)) if out[i] == 1), key=lambda i: priority[i])
    for i in positives[max_pos:]:
        out[i] = -1
    negatives = sorted((i for i in range(len(out)) if out[i] == 0), key=lambda i: priority[i])
    for i in negatives[max(batch - min(len(positives), max_pos), 0):]:
        out[i] = -1
    return np.array(out, dtype=np.int64)


def subsample_labels_numpy(labels, batch_size=256, positive_fraction=0.5, seed=0):
    """Vectorized :func:`subsample_labels_loops` (same arguments and result)."""
    y, batch, max_pos, seed = _subsample_args(labels, batch_size, positive_fraction, seed)
    out = y.copy()
    priority = _priority(len(y), seed)
    pos = np.flatnonzero(out == 1)
    pos = pos[np.argsort(priority[pos], kind="stable")]
    out[pos[max_pos:]] = -1
    neg = np.flatnonzero(out == 0)
    neg = neg[np.argsort(priority[neg], kind="stable")]
    out[neg[max(batch - min(len(pos), max_pos), 0):]] = -1
    return out


def rpn_targets_loops(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                      batch_size=256, positive_fraction=0.5, seed=0):
    """RPN training targets with plain Python loops (rules in the module docstring): the labels
    (:func:`label_anchors_loops`), sampled (:func:`subsample_labels_loops`), and the final
    positives' deltas.

    Args:
      anchors: ``(N, 4)`` xyxy (from ``grid_anchors``); gt_boxes: ``(M, 4)`` xyxy, M may be 0.
      image_shape: ``(height, width)``.
      positive_iou, negative_iou: IoU >= positive_iou is positive, max IoU < negative_iou negative.
      batch_size, positive_fraction: at most ``int(batch_size*positive_fraction)`` positives and
        ``batch_size`` sampled anchors in all.
      seed: the sampling priority's seed (:func:`workshop.conventions.sampling_priority`).
    Returns: labels int64 ``(N,)`` in {1, 0, -1}; deltas float64 ``(N, 4)``.
    """
    from .coding import encode_loops

    a, g, *_ = _target_args(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                            positive_fraction, seed)
    labels, matched = label_anchors_loops(a, g, image_shape, positive_iou, negative_iou)
    labels = subsample_labels_loops(labels, batch_size, positive_fraction, seed)
    deltas = np.zeros((len(a), 4), dtype=np.float64)
    for i in range(len(a)):
        if labels[i] == 1:
            deltas[i] = encode_loops(g[matched[i]:matched[i] + 1], a[i:i + 1])[0]
    return labels, deltas


def rpn_targets_numpy(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                      batch_size=256, positive_fraction=0.5, seed=0):
    """Vectorized :func:`rpn_targets_loops` (same arguments and result)."""
    from .coding import encode_numpy

    a, g, *_ = _target_args(anchors, gt_boxes, image_shape, positive_iou, negative_iou, batch_size,
                            positive_fraction, seed)
    labels, matched = label_anchors_numpy(a, g, image_shape, positive_iou, negative_iou)
    labels = subsample_labels_numpy(labels, batch_size, positive_fraction, seed)
    deltas = np.zeros((len(a), 4), dtype=np.float64)
    keep = np.flatnonzero(labels == 1)
    if keep.size:
        deltas[keep] = encode_numpy(g[matched[keep]], a[keep])
    return labels, deltas


def rpn_targets_tf(anchors, gt_boxes, image_shape, positive_iou=0.7, negative_iou=0.3,
                   batch_size=256, positive_fraction=0.5, seed=0):
    """:func:`rpn_targets_loops` in TensorFlow: anchors ``(N, 4)`` and gt_boxes ``(M, 4)``
    tensors; ``image_shape``, the thresholds, sizes and ``seed`` Python values (``image_shape``
    may also be a tensor). Returns labels int64 ``(N,)`` and deltas ``(N, 4)`` in the anchors'
    float dtype. Compiles with ``tf.function(jit_compile=True)``; the sampling draws its
    priorities from :func:`workshop.conventions.sampling_priority_tf`, so it equals the numpy
    tier's for any N known only at run time."""
    import tensorflow as tf

    from ..conventions import sampling_priority_tf
    from .boxes import iou_tf

    a = tf.convert_to_tensor(anchors)
    if not a.dtype.is_floating:
        a = tf.cast(a, tf.float64)
    g = tf.convert_to_tensor(gt_boxes)
    g = tf.cast(g, a.dtype) if g.dtype != a.dtype else g
    if g.shape.rank == 1 and g.shape[0] == 0:
        g = tf.zeros((0, 4), a.dtype)
    H, W = _image_shape_tf(image_shape, a.dtype)
    if tf.executing_eagerly():
        _target_args(a.numpy(), g.numpy(), (float(H), float(W)), positive_iou, negative_iou,
                     batch_size, positive_fraction, seed)
    pos_thr, neg_thr = float(positive_iou), float(negative_iou)
    batch = int(batch_size)
    max_pos = int(batch * float(positive_fraction))
    n = tf.shape(a)[0]
    inside = (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= W) & (a[:, 3] <= H)
    # one zero column: max and argmax exist with no GT, and IoUs are >= 0 anyway
    iou = tf.concat([iou_tf(a, g), tf.zeros([n, 1], a.dtype)], axis=1)       # (N, M + 1)
    m1 = tf.shape(iou)[1]
    top = tf.reduce_max(iou, axis=1)
    cols = tf.range(m1)[None, :]
    matched = tf.reduce_min(tf.where(tf.equal(iou, top[:, None]), cols, m1), axis=1)   # first max
    best = tf.reduce_max(tf.where(inside[:, None], iou, tf.zeros_like(iou)), axis=0)     # (M + 1,)
    is_best = tf.reduce_any(tf.equal(iou, best[None, :]) & (best[None, :] > 0), axis=1)
    positive = inside & ((top >= pos_thr) | is_best)
    negative = inside & (top < neg_thr) & ~positive

    priority = sampling_priority_tf(n, seed)
    above = tf.constant(1 << 33, tf.int64)          # larger than any priority

    def rank_among(mask):
        """Rank of each anchor among those in ``mask`` by increasing priority."""
        return tf.argsort(tf.argsort(tf.where(mask, priority, above)))

    keep_pos = positive & (rank_among(positive) < max_pos)
    kept = tf.reduce_sum(tf.cast(keep_pos, tf.int32))
    keep_neg = negative & (rank_among(negative) < batch - kept)
    labels = tf.where(keep_pos, tf.constant(1, tf.int64),
                      tf.where(keep_neg, tf.constant(0, tf.int64), tf.constant(-1, tf.int64)))

    # targets against the matched GT (a dummy box stands in for the zero column)
    g_pad = tf.concat([g, tf.constant([[0.0, 0.0, 1.0, 1.0]], a.dtype)], axis=0)
    gt = tf.gather(g_pad, matched)
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    # sizes of 1 off the positives: no log(0) there (those rows are zeroed below)
    safe = lambda v: tf.where(keep_pos, v, tf.ones_like(v))
    gw, gh, aw, ah = safe(gw), safe(gh), safe(aw), safe(ah)
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    ax, ay = a[:, 0] + 0.5 * aw, a[:, 1] + 0.5 * ah
    deltas = tf.stack([(gx - ax) / aw, (gy - ay) / ah, tf.math.log(gw / aw), tf.math.log(gh / ah)], axis=1)
    deltas = tf.where(keep_pos[:, None], deltas, tf.zeros_like(deltas))
    return labels, deltas


# ============================================================================================
# rpn_proposals
# ============================================================================================
def _proposal_args(anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n,
                   nms_threshold, min_size):
    a = as_boxes(anchors, "anchors")
    s = as_scores(objectness, a.shape[0], "objectness")
    d = as_boxes(deltas, "deltas", check_order=False)
    if d.shape[0] != a.shape[0]:
        raise ValueError(f"deltas: expected one row per anchor ({a.shape[0]}), got {d.shape[0]}")
    H, W = _image_shape(image_shape)
    for name, v in (("pre_nms_top_n", pre_nms_top_n), ("post_nms_top_n", post_nms_top_n)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v}")
    thr = float(nms_threshold)
    if not 0.0 <= thr <= 1.0:
        raise ValueError(f"nms_threshold must be in [0, 1], got {nms_threshold}")
    size = float(min_size)
    if not (math.isfinite(size) and size >= 0):
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    return a, s, d, H, W, int(pre_nms_top_n), int(post_nms_top_n), thr, size


def rpn_proposals_loops(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                        post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    """Proposals with plain Python loops (rules in the module docstring).

    Args:
      anchors: ``(N, 4)`` xyxy; objectness: ``(N,)`` scores; deltas: ``(N, 4)`` (weights 1).
      image_shape: ``(height, width)``.
      pre_nms_top_n, post_nms_top_n: boxes kept before and after NMS.
      nms_threshold: NMS suppresses IoU > it. min_size: drop boxes narrower or shorter.
    Returns: boxes float64 ``(K, 4)``, scores float64 ``(K,)`` by decreasing score.
    """
    from .boxes import nms_loops
    from .coding import decode_loops

    a, s, d, H, W, pre, post, thr, size = _proposal_args(
        anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n, nms_threshold, min_size)
    boxes = []
    for x1, y1, x2, y2 in decode_loops(d, a).tolist():
        boxes.append([min(max(x1, 0.0), W), min(max(y1, 0.0), H),
                      min(max(x2, 0.0), W), min(max(y2, 0.0), H)])
    scores = s.tolist()
    big = [i for i, (x1, y1, x2, y2) in enumerate(boxes) if x2 - x1 >= size and y2 - y1 >= size]
    big.sort(key=lambda i: -scores[i])                # stable: equal scores keep index order
    top = big[:pre]
    cand = np.array([boxes[i] for i in top], dtype=np.float64).reshape(-1, 4)
    keep = nms_loops(cand, np.array([scores[i] for i in top]), thr, max_output_size=post)
    final = [top[k] for k in keep.tolist()]
    return (np.array([boxes[i] for i in final], dtype=np.float64).reshape(-1, 4),
            np.array([scores[i] for i in final], dtype=np.float64))


def rpn_proposals_numpy(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                        post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    """Vectorized :func:`rpn_proposals_loops` (same arguments and result)."""
    from .boxes import nms_numpy
    from .coding import decode_numpy

    a, s, d, H, W, pre, post, thr, size = _proposal_args(
        anchors, objectness, deltas, image_shape, pre_nms_top_n, post_nms_top_n, nms_threshold, min_size)
    boxes = decode_numpy(d, a)
    np.clip(boxes[:, 0::2], 0.0, W, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, H, out=boxes[:, 1::2])
    big = np.flatnonzero((boxes[:, 2] - boxes[:, 0] >= size) & (boxes[:, 3] - boxes[:, 1] >= size))
    top = big[np.argsort(-s[big], kind="stable")[:pre]]
    keep = nms_numpy(boxes[top], s[top], thr, max_output_size=post)
    final = top[keep]
    return boxes[final], s[final]


def rpn_proposals_tf(anchors, objectness, deltas, image_shape, pre_nms_top_n=6000,
                     post_nms_top_n=300, nms_threshold=0.7, min_size=0):
    """:func:`rpn_proposals_loops` in TensorFlow: ``(N, 4)``, ``(N,)``, ``(N, 4)`` tensors in;
    ``image_shape`` a Python pair or a tensor, sizes and thresholds Python numbers. Returns
    boxes ``(K, 4)`` and scores ``(K,)`` tensors. Compiles with XLA: the candidates are a fixed
    ``min(pre_nms_top_n, N)`` rows (the too-small boxes sorted behind the others and kept out of
    NMS by its score threshold), so no shape depends on the data before NMS."""
    import tensorflow as tf

    from .boxes import nms_tf
    from .coding import decode_tf

    a = tf.convert_to_tensor(anchors)
    if not a.dtype.is_floating:
        a = tf.cast(a, tf.float64)
    s = tf.cast(tf.convert_to_tensor(objectness), a.dtype)
    d = tf.cast(tf.convert_to_tensor(deltas), a.dtype)
    H, W = _image_shape_tf(image_shape, a.dtype)
    if tf.executing_eagerly():
        _proposal_args(a.numpy(), s.numpy(), d.numpy(), (float(H), float(W)), pre_nms_top_n,
                       post_nms_top_n, nms_threshold, min_size)
    pre, post, size = int(pre_nms_top_n), int(post_nms_top_n), float(min_size)
    if a.shape[0] == 0 or pre == 0 or post == 0:   # statically empty: nothing to suppress
        return tf.zeros([0, 4], a.dtype), tf.zeros([0], a.dtype)
    zero = tf.zeros([], a.dtype)
    boxes = decode_tf(d, a)
    x1 = tf.clip_by_value(boxes[:, 0], zero, W)
    y1 = tf.clip_by_value(boxes[:, 1], zero, H)
    x2 = tf.clip_by_value(boxes[:, 2], zero, W)
    y2 = tf.clip_by_value(boxes[:, 3], zero, H)
    boxes = tf.stack([x1, y1, x2, y2], axis=1)
    big = (x2 - x1 >= size) & (y2 - y1 >= size)
    n = tf.shape(a)[0]
    # decreasing score, ties by index (top_k is stable), then the big boxes before the small ones
    order = tf.math.top_k(s, k=n, sorted=True).indices
    is_small = tf.cast(~tf.gather(big, order), tf.int32)
    order = tf.gather(order, tf.argsort(is_small, stable=True))
    k = tf.minimum(n, pre)
    top = order[:k]
    n_big = tf.minimum(tf.reduce_sum(tf.cast(big, tf.int32)), k)
    # NMS sees the candidates' ranks as scores (same order, no -inf trouble) and only the big
    # boxes through score_threshold=0: the small ones come last and take no part
    rank = tf.cast(k - tf.range(k), a.dtype)
    cand_scores = tf.where(tf.range(k) < n_big, rank, -tf.ones_like(rank))
    keep = nms_tf(tf.gather(boxes, top), cand_scores, nms_threshold, max_output_size=post,
                  score_threshold=0.0)
    final = tf.gather(top, keep)
    return tf.gather(boxes, final), tf.gather(s, final)


# ============================================================================================
# rpn_loss
# ============================================================================================
def _loss_args(objectness, pred_deltas, labels, target_deltas, beta):
    z = np.asarray(objectness, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    p = np.asarray(pred_deltas, np.float64).reshape(-1, 4)
    t = np.asarray(target_deltas, np.float64).reshape(-1, 4)
    if not (len(z) == len(y) == len(p) == len(t)):
        raise ValueError(f"expected one objectness, label and 4 deltas per anchor, got {len(z)} logits, "
                         f"{len(y)} labels, {len(p)} and {len(t)} delta rows")
    if y.size and not np.isin(y, (-1, 0, 1)).all():
        raise ValueError(f"labels: expected values in {{1, 0, -1}}, got {y[~np.isin(y, (-1, 0, 1))][0]}")
    if not float(beta) > 0:
        raise ValueError(f"beta: expected > 0, got {beta}")
    return z, y.astype(np.int64), p, t, float(beta)


def rpn_loss_loops(objectness, pred_deltas, labels, target_deltas, beta=1.0 / 9):
    """The RPN loss anchor by anchor (rules in the module docstring).

    Args: objectness float ``(N,)`` logits; pred_deltas, target_deltas float ``(N, 4)``;
      labels int ``(N,)`` in {1, 0, -1}; beta: smooth L1's transition point.
    Returns: ``(objectness_loss, box_loss)``, floats.
    """
    z, y, p, t, beta = _loss_args(objectness, pred_deltas, labels, target_deltas, beta)
    obj = box = 0.0
    sampled = 0
    for i in range(len(z)):
        if y[i] < 0:
            continue
        sampled += 1
        zi, yi = float(z[i]), float(y[i] == 1)
        obj += max(zi, 0.0) - zi * yi + math.log1p(math.exp(-abs(zi)))
        if y[i] == 1:
            for d in (p[i] - t[i]).tolist():
                box += 0.5 * d * d / beta if abs(d) < beta else abs(d) - 0.5 * beta
    s = max(sampled, 1)
    return obj / s, box / s


def rpn_loss_numpy(objectness, pred_deltas, labels, target_deltas, beta=1.0 / 9):
    """Vectorized :func:`rpn_loss_loops` (same arguments and result)."""
    z, y, p, t, beta = _loss_args(objectness, pred_deltas, labels, target_deltas, beta)
    sampled, positive = y >= 0, y == 1
    bce = np.maximum(z, 0) - z * positive + np.log1p(np.exp(-np.abs(z)))
    d = np.abs(p - t)
    sl1 = np.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta)
    s = max(int(sampled.sum()), 1)
    return float(bce[sampled].sum() / s), float(sl1[positive].sum() / s)


def rpn_loss_tf(objectness, pred_deltas, labels, target_deltas, beta=1.0 / 9):
    """:func:`rpn_loss_loops` in TensorFlow: tensors in (any leading batch axes), ``beta`` a
    Python number; float scalar tensors out in the logits' dtype. ``tf.where`` rather than a
    product by the masks, so that an ignored row holding inf or NaN adds nothing. Compiles with
    ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    z = tf.reshape(tf.convert_to_tensor(objectness), [-1])
    p = tf.reshape(tf.cast(pred_deltas, z.dtype), [-1, 4])
    t = tf.reshape(tf.cast(target_deltas, z.dtype), [-1, 4])
    y = tf.reshape(tf.cast(labels, tf.int32), [-1])
    sampled, positive = y >= 0, tf.equal(y, 1)
    bce = tf.maximum(z, 0.0) - z * tf.cast(positive, z.dtype) + tf.math.log1p(tf.exp(-tf.abs(z)))
    d = tf.abs(p - t)
    sl1 = tf.where(d < beta, 0.5 * tf.square(d) / beta, d - 0.5 * beta)
    s = tf.maximum(tf.reduce_sum(tf.cast(sampled, z.dtype)), tf.ones([], z.dtype))
    return (tf.reduce_sum(tf.where(sampled, bce, tf.zeros_like(bce))) / s,
            tf.reduce_sum(tf.where(positive[:, None], sl1, tf.zeros_like(sl1))) / s)
