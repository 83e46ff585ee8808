"""The detector's second stage (the Fast R-CNN head): which regions it learns from, and its loss.

Box convention (see :mod:`workshop.conventions`): float ``(N, 4)`` xyxy, continuous pixels,
no "+1". Class ids are ``1..K``; 0 is the background.

roi_targets(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
            bg_iou_low=0.1, bg_iou_high=0.5, weights=(10, 10, 5, 5), seed=0)
        -> (labels int64 (N + M,), deltas float64 (N + M, 4))
  1. The candidates are the ``N`` proposals followed by the ``M`` ground-truth boxes (so the
     head always sees some perfect foreground, as in Faster R-CNN); rows of the result follow
     the candidates.
  2. A candidate's IoU is its largest IoU over the GT boxes (0 with no GT); its GT is the
     first GT of that largest IoU.
  3. Foreground: IoU ``>= fg_iou``. Background: ``bg_iou_low <= IoU < bg_iou_high`` (a
     candidate that barely touches an object, IoU below ``bg_iou_low``, teaches the head
     nothing and is left out). Everything else is ignored.
  4. Sampling, as the RPN's: at most ``int(batch_size * fg_fraction)`` foreground candidates,
     those of lowest :func:`workshop.conventions.sampling_priority` ``(N + M, seed)``; then at
     most ``batch_size - kept foreground`` background ones, again by lowest priority.
  5. ``labels``: the GT's class for kept foreground, 0 for kept background, -1 for the rest.
     ``deltas``: ``encode(gt, candidate, weights)`` for kept foreground, zeros elsewhere. The
     second stage's weights are ``(10, 10, 5, 5)`` (the RPN's are 1): the head refines boxes that
     are already close, so its deltas are small, and the weights bring them to about unit scale.

head_loss(class_logits, box_deltas, labels, target_deltas, beta=1.0)
        -> (class_loss, box_loss), float scalars
  ``class_logits`` ``(R, K + 1)`` (column 0 the background), ``box_deltas`` ``(R, K, 4)`` (one
  box per foreground class), ``labels`` ``(R,)`` in ``-1..K`` (-1: not sampled), ``target_deltas``
  ``(R, 4)``. With ``S = max(#(labels >= 0), 1)``:
  class_loss = sum over sampled rows of ``-log softmax(class_logits)[label]`` / S, computed
  stably (``logsumexp(z) - z[label]``);
  box_loss = sum over foreground rows (label >= 1) and 4 coordinates of
  ``smooth_L1(box_deltas[r, label - 1] - target_deltas[r])`` / S: only the true class's box
  is trained. smooth_L1 as the RPN's, with ``beta = 1`` for the head (Fast R-CNN).

decode_per_class(rois, box_deltas, image_shape, weights=(10, 10, 5, 5)) -> boxes float64 (R, K, 4)
  Each region's K class boxes: ``box_deltas[r, k]`` decoded against ``rois[r]`` as ``decode``
  does (the weights divide the deltas; ``dw / ww`` and ``dh / wh`` clamped at ``log(1000 / 16)``
  before ``exp``), then clipped: x to ``[0, width]``, y to ``[0, height]`` (``image_shape`` is
  ``(height, width)``).

Validation: malformed boxes raise ValueError naming the row; thresholds out of order
(``bg_iou_low <= bg_iou_high <= fg_iou``), classes below 1, or shapes that do not pair up
raise ValueError.
"""

from __future__ import annotations

import math

import numpy as np

from ..conventions import as_boxes

__all__ = [
    "roi_targets_loops", "roi_targets_numpy", "roi_targets_tf",
    "head_loss_loops", "head_loss_numpy", "head_loss_tf",
    "decode_per_class_loops", "decode_per_class_numpy", "decode_per_class_tf",
]

HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


# ============================================================================================
# roi_targets
# ============================================================================================
def check_roi_target_args(proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou,
                          bg_iou_low, bg_iou_high, seed):
    """Validated ``(candidates (N+M, 4), gt (M, 4), classes int64 (M,), batch, max_fg, fg_iou,
    bg_low, bg_high, seed)``."""
    p = as_boxes(proposals, "proposals")
    g = as_boxes(gt_boxes, "gt_boxes")
    c = np.asarray(gt_classes).reshape(-1)
    if c.shape[0] != g.shape[0]:
        raise ValueError(f"gt_classes: expected one class per GT box ({g.shape[0]}), got {c.shape[0]}")
    if c.size and (not np.issubdtype(c.dtype, np.integer) or c.min() < 1):
        raise ValueError(f"gt_classes: expected integer class ids >= 1 (0 is the background), got {c.tolist()}")
    fg, lo, hi = float(fg_iou), float(bg_iou_low), float(bg_iou_high)
    if not 0.0 <= lo <= hi <= fg <= 1.0:
        raise ValueError("expected 0 <= bg_iou_low <= bg_iou_high <= fg_iou <= 1, got "
                         f"bg_iou_low={bg_iou_low}, bg_iou_high={bg_iou_high}, fg_iou={fg_iou}")
    if int(batch_size) != batch_size or batch_size < 0:
        raise ValueError(f"batch_size: expected an integer >= 0, got {batch_size}")
    if not 0.0 <= float(fg_fraction) <= 1.0:
        raise ValueError(f"fg_fraction: expected a value in [0, 1], got {fg_fraction}")
    if int(seed) != seed:
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    max_fg = int(int(batch_size) * float(fg_fraction))
    return (np.concatenate([p, g]), g, c.astype(np.int64), int(batch_size), max_fg, fg, lo, hi,
            int(seed))


def roi_targets_loops(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                      bg_iou_low=0.1, bg_iou_high=0.5, weights=HEAD_WEIGHTS, seed=0):
    """The box head's training targets, candidate by candidate (rules in the module docstring).

    Args:
      proposals: ``(N, 4)`` xyxy; gt_boxes: ``(M, 4)`` xyxy (M may be 0); gt_classes: int ``(M,)``
        in ``1..K``. batch_size, fg_fraction: at most ``int(batch_size * fg_fraction)``
        foreground and ``batch_size`` sampled in all. fg_iou, bg_iou_low, bg_iou_high: the IoU
        rules. weights: the box coding's ``(wx, wy, ww, wh)``. seed: the sampling priority's.
    Returns: labels int64 ``(N + M,)`` in ``-1..K``; deltas float64 ``(N + M, 4)``.
    """
    from ..conventions import sampling_priority
    from .boxes import iou_loops
    from .coding import encode_loops

    cand, g, cls, batch, max_fg, fg_thr, bg_lo, bg_hi, seed = check_roi_target_args(
        proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high, seed)
    n = len(cand)
    overlaps = iou_loops(cand, g).tolist()
    best, match = [0.0] * n, [0] * n
    for i in range(n):
        for j, value in enumerate(overlaps[i]):
            if value > best[i]:
                best[i], match[i] = value, j
    priority = sampling_priority(n, seed).tolist()
    by_priority = sorted(range(n), key=lambda i: priority[i])
    foreground = [i for i in by_priority if best[i] >= fg_thr][:max_fg]
    background = [i for i in by_priority if bg_lo <= best[i] < bg_hi][:max(batch - len(foreground), 0)]
    labels = np.full(n, -1, dtype=np.int64)
    deltas = np.zeros((n, 4))
    for i in background:
        labels[i] = 0
    for i in foreground:
        labels[i] = cls[match[i]]
        deltas[i] = encode_loops(g[match[i]:match[i] + 1], cand[i:i + 1], weights)[0]
    return labels, deltas


def roi_targets_numpy(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                      bg_iou_low=0.1, bg_iou_high=0.5, weights=HEAD_WEIGHTS, seed=0):
    """Vectorized :func:`roi_targets_loops` (same arguments and result)."""
    from ..conventions import sampling_priority
    from .boxes import iou_numpy
    from .coding import encode_numpy

    cand, g, cls, batch, max_fg, fg_thr, bg_lo, bg_hi, seed = check_roi_target_args(
        proposals, gt_boxes, gt_classes, batch_size, fg_fraction, fg_iou, bg_iou_low, bg_iou_high, seed)
    n = len(cand)
    overlaps = np.concatenate([iou_numpy(cand, g), np.zeros((n, 1))], axis=1)   # a 0 column: no GT
    best, match = overlaps.max(axis=1), overlaps.argmax(axis=1)
    order = np.argsort(sampling_priority(n, seed), kind="stable")
    foreground = order[best[order] >= fg_thr][:max_fg]
    background = order[(best[order] >= bg_lo) & (best[order] < bg_hi)][:max(batch - len(foreground), 0)]
    labels = np.full(n, -1, dtype=np.int64)
    deltas = np.zeros((n, 4))
    labels[background] = 0
    if foreground.size:
        labels[foreground] = cls[match[foreground]]
        deltas[foreground] = encode_numpy(g[match[foreground]], cand[foreground], weights)
    return labels, deltas


def roi_targets_tf(proposals, gt_boxes, gt_classes, batch_size=64, fg_fraction=0.25, fg_iou=0.5,
                   bg_iou_low=0.1, bg_iou_high=0.5, weights=HEAD_WEIGHTS, seed=0):
    """:func:`roi_targets_loops` in TensorFlow: proposals ``(N, 4)``, gt_boxes ``(M, 4)`` and
    gt_classes ``(M,)`` tensors, the other arguments Python values. Returns labels int64
    ``(N + M,)`` and deltas ``(N + M, 4)`` in the proposals' float dtype. Compiles with
    ``tf.function(jit_compile=True)`` (the priorities come from
    :func:`workshop.conventions.sampling_priority_tf`)."""
    import tensorflow as tf

    from ..conventions import sampling_priority_tf
    from .boxes import iou_tf
    from .coding import encode_tf

    p = tf.convert_to_tensor(proposals)
    p = p if p.dtype.is_floating else tf.cast(p, tf.float64)
    g = tf.reshape(tf.cast(gt_boxes, p.dtype), [-1, 4])
    cls = tf.reshape(tf.cast(gt_classes, tf.int64), [-1])
    if tf.executing_eagerly():
        check_roi_target_args(p.numpy(), g.numpy(), cls.numpy(), batch_size, fg_fraction, fg_iou,
                              bg_iou_low, bg_iou_high, seed)
    max_fg = int(int(batch_size) * float(fg_fraction))
    cand = tf.concat([tf.reshape(p, [-1, 4]), g], axis=0)
    n = tf.shape(cand)[0]
    overlaps = tf.concat([iou_tf(cand, g), tf.zeros([n, 1], p.dtype)], axis=1)   # (N+M, M+1)
    best = tf.reduce_max(overlaps, axis=1)
    match = tf.argmax(overlaps, axis=1, output_type=tf.int32)                    # first max
    above = tf.constant(1 << 33, tf.int64)                                       # > any priority
    priority = sampling_priority_tf(n, seed)

    def rank_among(mask):
        """Rank of each candidate among those in ``mask``, by increasing priority."""
        return tf.argsort(tf.argsort(tf.where(mask, priority, above)))

    foreground = best >= fg_iou
    foreground &= rank_among(foreground) < max_fg
    kept_fg = tf.reduce_sum(tf.cast(foreground, tf.int32))
    background = (best >= bg_iou_low) & (best < bg_iou_high)
    background &= rank_among(background) < int(batch_size) - kept_fg
    g_pad = tf.concat([g, tf.constant([[0.0, 0.0, 1.0, 1.0]], p.dtype)], axis=0)
    cls_pad = tf.concat([cls, tf.zeros([1], tf.int64)], axis=0)
    labels = tf.where(foreground, tf.gather(cls_pad, match),
                      tf.where(background, tf.constant(0, tf.int64), tf.constant(-1, tf.int64)))
    # the candidate itself stands in for the GT off the foreground: no log(0) there
    matched = tf.where(foreground[:, None], tf.gather(g_pad, match), cand)
    deltas = tf.where(foreground[:, None], encode_tf(matched, cand, weights), tf.zeros_like(cand))
    return labels, deltas


# ============================================================================================
# head_loss
# ============================================================================================
def check_head_loss_args(class_logits, box_deltas, labels, target_deltas, beta):
    """Validated float64 ``(z (R, K+1), b (R, K, 4), y int64 (R,), t (R, 4), beta)``."""
    z = np.asarray(class_logits, np.float64)
    b = np.asarray(box_deltas, np.float64)
    y = np.asarray(labels).reshape(-1)
    t = np.asarray(target_deltas, np.float64).reshape(-1, 4)
    if z.ndim != 2 or z.shape[1] < 1:
        raise ValueError(f"class_logits: expected shape (R, K + 1), got {z.shape}")
    r, k = z.shape[0], z.shape[1] - 1
    b = b.reshape(r, k, 4) if b.size == r * k * 4 else b
    if b.shape != (r, k, 4):
        raise ValueError(f"box_deltas: expected shape (R, K, 4) = ({r}, {k}, 4), got {b.shape}")
    if len(y) != r or len(t) != r:
        raise ValueError(f"expected one label and one target row per region ({r}), got {len(y)} labels "
                         f"and {len(t)} target rows")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < -1 or y.max() > k):
        raise ValueError(f"labels: expected integers in -1..{k} (-1: not sampled, 0: background), "
                         f"got {sorted(set(y.tolist()))}")
    if not float(beta) > 0:
        raise ValueError(f"beta: expected > 0, got {beta}")
    return z, b, y.astype(np.int64), t, float(beta)


def head_loss_loops(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    """The box head's loss region by region (rules in the module docstring).

    Args: class_logits float ``(R, K + 1)``; box_deltas float ``(R, K, 4)``; labels int ``(R,)``
      in ``-1..K``; target_deltas float ``(R, 4)``; beta: smooth L1's transition point.
    Returns: ``(class_loss, box_loss)``, floats.
    """
    z, b, y, t, beta = check_head_loss_args(class_logits, box_deltas, labels, target_deltas, beta)
    cls_sum = box_sum = 0.0
    sampled = 0
    for r in range(len(y)):
        if y[r] < 0:
            continue
        sampled += 1
        row = z[r].tolist()
        top = max(row)
        cls_sum += top + math.log(sum(math.exp(v - top) for v in row)) - row[y[r]]
        if y[r] >= 1:
            for d in (b[r, y[r] - 1] - t[r]).tolist():
                box_sum += 0.5 * d * d / beta if abs(d) < beta else abs(d) - 0.5 * beta
    s = max(sampled, 1)
    return cls_sum / s, box_sum / s


def head_loss_numpy(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    """Vectorized :func:`head_loss_loops` (same arguments and result)."""
    z, b, y, t, beta = check_head_loss_args(class_logits, box_deltas, labels, target_deltas, beta)
    sampled, foreground = y >= 0, y >= 1
    top = z.max(axis=1, initial=-np.inf) if z.size else np.zeros(len(z))
    log_sum = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    cross_entropy = log_sum - z[np.arange(len(y)), np.maximum(y, 0)]
    chosen = b[np.arange(len(y)), np.maximum(y - 1, 0)]               # (R, 4): the true class's box
    d = np.abs(chosen - t)
    smooth_l1 = np.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta)
    s = max(int(sampled.sum()), 1)
    return float(cross_entropy[sampled].sum() / s), float(smooth_l1[foreground].sum() / s)


def head_loss_tf(class_logits, box_deltas, labels, target_deltas, beta=1.0):
    """:func:`head_loss_loops` in TensorFlow: tensors in, ``beta`` a Python number; float scalar
    tensors out in the logits' dtype. ``tf.where`` rather than a product by the masks, so that
    an unsampled row holding inf or NaN adds nothing. Compiles with
    ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    z = tf.convert_to_tensor(class_logits)
    z = z if z.dtype.is_floating else tf.cast(z, tf.float64)
    r, k1 = tf.shape(z)[0], tf.shape(z)[1]
    b = tf.reshape(tf.cast(box_deltas, z.dtype), [r, k1 - 1, 4])
    t = tf.reshape(tf.cast(target_deltas, z.dtype), [-1, 4])
    y = tf.reshape(tf.cast(labels, tf.int32), [-1])
    sampled, foreground = y >= 0, y >= 1
    cross_entropy = tf.reduce_logsumexp(z, axis=1) - tf.gather(z, tf.maximum(y, 0), batch_dims=1)
    chosen = tf.gather(b, tf.maximum(y - 1, 0), batch_dims=1)
    d = tf.abs(chosen - t)
    smooth_l1 = tf.where(d < beta, 0.5 * tf.square(d) / beta, d - 0.5 * beta)
    s = tf.maximum(tf.reduce_sum(tf.cast(sampled, z.dtype)), tf.ones([], z.dtype))
    return (tf.reduce_sum(tf.where(sampled, cross_entropy, tf.zeros_like(cross_entropy))) / s,
            tf.reduce_sum(tf.where(foreground[:, None], smooth_l1, tf.zeros_like(smooth_l1))) / s)


# ============================================================================================
# decode_per_class
# ============================================================================================
def check_decode_args(rois, box_deltas, image_shape, weights):
    """Validated ``(rois (R, 4), deltas float64 (R, K, 4), height, width, weights)``."""
    from .coding import _weights
    from .rpn import _image_shape

    r = as_boxes(rois, "rois")
    d = np.asarray(box_deltas, np.float64)
    if d.ndim != 3 or d.shape[0] != len(r) or d.shape[2] != 4:
        raise ValueError(f"box_deltas: expected shape (R, K, 4) with R = {len(r)} regions, got {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("box_deltas: expected finite values")
    height, width = _image_shape(image_shape)
    return r, d, height, width, _weights(weights)


def decode_per_class_loops(rois, box_deltas, image_shape, weights=HEAD_WEIGHTS):
    """The head's boxes, one region and one class at a time (rules in the module docstring).

    Args: rois float ``(R, 4)`` xyxy; box_deltas float ``(R, K, 4)``; image_shape
      ``(height, width)``; weights the box coding's ``(wx, wy, ww, wh)``.
    Returns: float64 ``(R, K, 4)`` xyxy boxes inside the image.
    """
    from .coding import SCALE_CLAMP

    rois_, deltas, height, width, (wx, wy, ww, wh) = check_decode_args(rois, box_deltas, image_shape, weights)
    out = np.zeros(deltas.shape)
    for r, (x1, y1, x2, y2) in enumerate(rois_.tolist()):
        w, h = x2 - x1, y2 - y1
        cx, cy = x1 + 0.5 * w, y1 + 0.5 * h
        for k, (dx, dy, dw, dh) in enumerate(deltas[r].tolist()):
            bx, by = cx + dx / wx * w, cy + dy / wy * h
            bw = math.exp(min(dw / ww, SCALE_CLAMP)) * w
            bh = math.exp(min(dh / wh, SCALE_CLAMP)) * h
            out[r, k] = [min(max(bx - 0.5 * bw, 0.0), width), min(max(by - 0.5 * bh, 0.0), height),
                         min(max(bx + 0.5 * bw, 0.0), width), min(max(by + 0.5 * bh, 0.0), height)]
    return out


def decode_per_class_numpy(rois, box_deltas, image_shape, weights=HEAD_WEIGHTS):
    """Vectorized :func:`decode_per_class_loops` (same arguments and result)."""
    from .coding import SCALE_CLAMP

    rois_, d, height, width, (wx, wy, ww, wh) = check_decode_args(rois, box_deltas, image_shape, weights)
    w = (rois_[:, 2] - rois_[:, 0])[:, None]                     # (R, 1): every class of a region
    h = (rois_[:, 3] - rois_[:, 1])[:, None]
    cx, cy = rois_[:, 0:1] + 0.5 * w, rois_[:, 1:2] + 0.5 * h
    bx, by = cx + d[..., 0] / wx * w, cy + d[..., 1] / wy * h
    bw = np.exp(np.minimum(d[..., 2] / ww, SCALE_CLAMP)) * w
    bh = np.exp(np.minimum(d[..., 3] / wh, SCALE_CLAMP)) * h
    boxes = np.stack([bx - 0.5 * bw, by - 0.5 * bh, bx + 0.5 * bw, by + 0.5 * bh], axis=-1)
    boxes[..., 0::2] = boxes[..., 0::2].clip(0.0, width)
    boxes[..., 1::2] = boxes[..., 1::2].clip(0.0, height)
    return boxes


def decode_per_class_tf(rois, box_deltas, image_shape, weights=HEAD_WEIGHTS):
    """:func:`decode_per_class_loops` in TensorFlow: rois ``(R, 4)`` and box_deltas ``(R, K, 4)``
    tensors, ``image_shape`` and ``weights`` Python values; ``(R, K, 4)`` out in the deltas'
    float dtype. Compiles with ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    from .coding import SCALE_CLAMP, _weights
    from .rpn import _image_shape

    d = tf.convert_to_tensor(box_deltas)
    d = d if d.dtype.is_floating else tf.cast(d, tf.float64)
    r = tf.reshape(tf.cast(rois, d.dtype), [-1, 4])
    height, width = _image_shape(image_shape)
    wx, wy, ww, wh = _weights(weights)
    w, h = (r[:, 2] - r[:, 0])[:, None], (r[:, 3] - r[:, 1])[:, None]
    cx, cy = r[:, 0:1] + 0.5 * w, r[:, 1:2] + 0.5 * h
    bx, by = cx + d[..., 0] / wx * w, cy + d[..., 1] / wy * h
    bw = tf.exp(tf.minimum(d[..., 2] / ww, SCALE_CLAMP)) * w
    bh = tf.exp(tf.minimum(d[..., 3] / wh, SCALE_CLAMP)) * h
    clip_x = lambda v: tf.clip_by_value(v, 0.0, width)    # noqa: E731
    clip_y = lambda v: tf.clip_by_value(v, 0.0, height)   # noqa: E731
    return tf.stack([clip_x(bx - 0.5 * bw), clip_y(by - 0.5 * bh), clip_x(bx + 0.5 * bw), clip_y(by + 0.5 * bh)],
                    axis=-1)
