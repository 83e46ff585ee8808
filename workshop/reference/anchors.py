"""Anchors: the reference boxes of one feature-map cell, and the same boxes at every cell.

Box convention (see :mod:`workshop.conventions`): float ``(N, 4)`` xyxy, continuous pixels,
width ``x2 - x1``, area ``(x2 - x1) * (y2 - y1)``, no "+1". Nothing is rounded.

reference_anchors(base_size, aspect_ratios, scales) -> float64 ``(A, 4)``, ``A = R * S``
  Centred at ``(0, 0)``. The aspect ratio ``r`` is height / width and preserves the area:
  ``h = base_size * scale * sqrt(r)``, ``w = base_size * scale / sqrt(r)``; the box is
  ``[-w/2, -h/2, w/2, h/2]``. Order: ratio-major, scale fastest (anchor ``i * S + j`` has ratio
  ``i`` and scale ``j``).

grid_anchors(feature_shape, stride, reference, offset=0.5) -> float64 ``(H * W * A, 4)``
  ``feature_shape`` is ``(H, W)``. The anchor ``a`` of cell ``(y, x)`` is ``reference[a]`` shifted
  to the centre ``((x + offset) * stride, (y + offset) * stride)`` and sits at row
  ``(y * W + x) * A + a`` (position-major, anchor fastest): the order in which a ``(1, H, W, A*4)``
  convolution output reshapes to ``(H*W*A, 4)``.

Validation: a non-positive or non-finite base size, ratio, scale or stride, a negative feature
size, or malformed reference boxes raise ValueError naming the offending entry; an empty ratio
or scale list, or a zero-sized feature map, gives an empty ``(0, 4)`` array.
"""

from __future__ import annotations

import math

import numpy as np

from ..conventions import as_boxes

__all__ = [
    "grid_anchors_loops",
    "grid_anchors_numpy",
    "grid_anchors_tf",
    "reference_anchors_loops",
    "reference_anchors_numpy",
    "reference_anchors_tf",
]


# -- argument checks ---------------------------------------------------------------------------
def _positive(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return v


def _positive_vector(values, name: str) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a 1-D list of positive numbers: {err}") from None
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D list of positive numbers, got shape {arr.shape}")
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: entry {i} is {arr[i]!r}, expected a positive finite number")
    return arr


def _feature_shape(feature_shape) -> tuple[int, int]:
    try:
        dims = [int(d) for d in feature_shape]
        exact = all(float(d) == int(d) for d in feature_shape)
    except (TypeError, ValueError):
        raise ValueError(f"feature_shape: expected (height, width), got {feature_shape!r}") from None
    if len(dims) != 2 or not exact:
        raise ValueError(f"feature_shape: expected two integers (height, width), got {feature_shape!r}")
    for axis, d in zip(("height", "width"), dims):
        if d < 0:
            raise ValueError(f"feature_shape: {axis} is {d}, expected >= 0")
    return dims[0], dims[1]


def _offset(offset) -> float:
    try:
        v = float(offset)
    except (TypeError, ValueError):
        raise ValueError(f"offset: expected a number, got {offset!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"offset: expected a finite number, got {offset!r}")
    return v


def _tf_scalar(value, dtype):
    """A scalar in ``dtype``; a Python float goes straight to ``dtype`` (``tf.cast`` of a Python
    float would round it through float32 first)."""
    import tensorflow as tf

    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.cast(value, dtype)
    return tf.constant(float(value), dtype)


# ============================================================================================
# reference anchors
# ============================================================================================
def reference_anchors_loops(base_size, aspect_ratios, scales) -> np.ndarray:
    """The ``R * S`` anchors of one cell, centred at (0, 0), with loops.

    Args:
      base_size: positive float, the side of the scale-1, ratio-1 anchor.
      aspect_ratios: ``(R,)`` positive floats, height / width.
      scales: ``(S,)`` positive floats multiplying ``base_size``.
    Returns: float64 ``(R * S, 4)`` xyxy, ratio-major, scale fastest.
    """
    base = _positive(base_size, "base_size")
    ratios = _positive_vector(aspect_ratios, "aspect_ratios").tolist()
    sizes = _positive_vector(scales, "scales").tolist()
    rows = []
    for r in ratios:
        for s in sizes:
            h = base * s * math.sqrt(r)
            w = base * s / math.sqrt(r)
            rows.append([-w / 2, -h / 2, w / 2, h / 2])
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def reference_anchors_numpy(base_size, aspect_ratios, scales) -> np.ndarray:
    """Vectorized :func:`reference_anchors_loops` (same arguments and result)."""
    base = _positive(base_size, "base_size")
    ratios = _positive_vector(aspect_ratios, "aspect_ratios")
    sizes = _positive_vector(scales, "scales")
    root = np.sqrt(ratios)[:, None]                       # (R, 1)
    h = (base * sizes[None, :] * root).reshape(-1)        # (R*S,), scale fastest
    w = (base * sizes[None, :] / root).reshape(-1)
    return np.stack([-w / 2, -h / 2, w / 2, h / 2], axis=1)


def reference_anchors_tf(base_size, aspect_ratios, scales):
    """:func:`reference_anchors_loops` in TensorFlow: tensors (or Python numbers and lists) in, a
    float tensor ``(R * S, 4)`` out (float64, or float32 when the ratios are a float32 tensor). Works under
    ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    as_t = lambda v: v if isinstance(v, (tf.Tensor, tf.Variable)) else tf.constant(np.asarray(v, np.float64))
    ratios = as_t(aspect_ratios)
    dtype = ratios.dtype if ratios.dtype.is_floating else tf.float64
    ratios = tf.reshape(tf.cast(ratios, dtype), [-1])
    sizes = tf.reshape(tf.cast(as_t(scales), dtype), [-1])
    base = _tf_scalar(base_size, dtype)
    if tf.executing_eagerly():  # the numpy rules, while values are at hand
        _positive(base.numpy(), "base_size")
        _positive_vector(ratios.numpy(), "aspect_ratios")
        _positive_vector(sizes.numpy(), "scales")
    root = tf.sqrt(ratios)[:, None]
    h = tf.reshape(base * sizes[None, :] * root, [-1])
    w = tf.reshape(base * sizes[None, :] / root, [-1])
    return tf.stack([-w / 2, -h / 2, w / 2, h / 2], axis=1)


# ============================================================================================
# grid anchors
# ============================================================================================
def grid_anchors_loops(feature_shape, stride, reference, offset=0.5) -> np.ndarray:
    """Every reference anchor at every cell of an ``(H, W)`` feature map, with loops.

    Args:
      feature_shape: ``(H, W)`` non-negative integers.
      stride: positive float, image pixels per feature-map cell.
      reference: ``(A, 4)`` xyxy anchors centred at (0, 0) (from ``reference_anchors``).
      offset: where the centre sits in a cell, in cells (0.5: the cell's middle).
    Returns: float64 ``(H * W * A, 4)``; row ``(y * W + x) * A + a`` is ``reference[a]`` shifted
    by ``((x + offset) * stride, (y + offset) * stride)``.
    """
    H, W = _feature_shape(feature_shape)
    step = _positive(stride, "stride")
    off = _offset(offset)
    ref = as_boxes(reference, "reference").tolist()
    rows = []
    for y in range(H):
        cy = (y + off) * step
        for x in range(W):
            cx = (x + off) * step
            for x1, y1, x2, y2 in ref:
                rows.append([x1 + cx, y1 + cy, x2 + cx, y2 + cy])
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def grid_anchors_numpy(feature_shape, stride, reference, offset=0.5) -> np.ndarray:
    """Vectorized :func:`grid_anchors_loops` (same arguments and result)."""
    H, W = _feature_shape(feature_shape)
    step = _positive(stride, "stride")
    off = _offset(offset)
    ref = as_boxes(reference, "reference")
    cx = (np.arange(W, dtype=np.float64) + off) * step
    cy = (np.arange(H, dtype=np.float64) + off) * step
    shifts = np.empty((H, W, 4))
    shifts[..., 0] = shifts[..., 2] = cx[None, :]
    shifts[..., 1] = shifts[..., 3] = cy[:, None]
    return (shifts.reshape(H * W, 1, 4) + ref[None, :, :]).reshape(-1, 4)


def grid_anchors_tf(feature_shape, stride, reference, offset=0.5):
    """:func:`grid_anchors_loops` in TensorFlow. ``feature_shape`` may be a Python pair or an
    int tensor ``(2,)``; ``reference`` a ``(A, 4)`` tensor. Returns ``(H * W * A, 4)`` in the
    reference's float dtype. Works under ``tf.function(jit_compile=True)`` when
    ``feature_shape`` is a Python pair (the output size is then static)."""
    import tensorflow as tf

    ref = tf.convert_to_tensor(reference)
    if not ref.dtype.is_floating:
        ref = tf.cast(ref, tf.float64)
    if ref.shape.rank is not None and (ref.shape.rank != 2 or ref.shape[-1] not in (None, 4)):
        if not (ref.shape.rank == 1 and ref.shape[0] == 0):
            raise ValueError(f"reference: expected shape (A, 4) in xyxy format, got shape {tuple(ref.shape)}")
        ref = tf.zeros((0, 4), ref.dtype)
    if isinstance(feature_shape, (tuple, list)):
        H, W = _feature_shape(feature_shape)
    else:
        fs = tf.cast(tf.convert_to_tensor(feature_shape), tf.int32)
        H, W = fs[0], fs[1]
    if tf.executing_eagerly():
        _positive(float(stride), "stride")
        _offset(float(offset))
        as_boxes(ref.numpy(), "reference")
    dtype = ref.dtype
    step = _tf_scalar(stride, dtype)
    off = _tf_scalar(offset, dtype)
    cx = (tf.cast(tf.range(W), dtype) + off) * step          # (W,)
    cy = (tf.cast(tf.range(H), dtype) + off) * step          # (H,)
    gx = tf.broadcast_to(cx[None, :], tf.stack([H, W]))
    gy = tf.broadcast_to(cy[:, None], tf.stack([H, W]))
    shifts = tf.reshape(tf.stack([gx, gy, gx, gy], axis=-1), [-1, 1, 4])   # (H*W, 1, 4)
    return tf.reshape(shifts + ref[None, :, :], [-1, 4])
