"""Box coding: boxes as offsets (deltas) from anchors, and back.

Box convention (see :mod:`workshop.conventions`): float ``(N, 4)`` xyxy, continuous pixels,
width ``x2 - x1``, no "+1". Boxes and anchors are paired row by row.

With centres and sizes ``(gx, gy, gw, gh)`` of a box and ``(ax, ay, aw, ah)`` of its anchor and
``weights = (wx, wy, ww, wh)``::

    dx = wx * (gx - ax) / aw        dy = wy * (gy - ay) / ah
    dw = ww * log(gw / aw)          dh = wh * log(gh / ah)

decode inverts it: ``gx = dx / wx * aw + ax``, ``gw = exp(min(dw / ww, log(1000 / 16))) * aw``
(and the same for y, h); the clamp keeps a wild prediction finite (at most 62.5 times the
anchor). Then ``box = [gx - gw/2, gy - gh/2, gx + gw/2, gy + gh/2]``.

Validation: encode needs positive widths and heights (log of a zero size); decode accepts any
finite deltas and anchors with x2 >= x1, y2 >= y1; malformed rows raise ValueError naming the
row; non-positive weights raise ValueError. Empty input gives ``(0, 4)``.
"""

from __future__ import annotations

import math

import numpy as np

from ..conventions import as_boxes

__all__ = [
    "SCALE_CLAMP",
    "decode_loops",
    "decode_numpy",
    "decode_tf",
    "encode_loops",
    "encode_numpy",
    "encode_tf",
]

SCALE_CLAMP = math.log(1000.0 / 16)   # largest dw / ww (and dh / wh) decode lets through exp


def _weights(weights) -> tuple[float, float, float, float]:
    try:
        w = [float(v) for v in weights]
    except (TypeError, ValueError):
        raise ValueError(f"weights: expected four positive numbers (wx, wy, ww, wh), got {weights!r}") from None
    if len(w) != 4:
        raise ValueError(f"weights: expected four numbers (wx, wy, ww, wh), got {len(w)}")
    for name, v in zip(("wx", "wy", "ww", "wh"), w):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"weights: {name} is {v!r}, expected a positive finite number")
    return w[0], w[1], w[2], w[3]


def _positive_size(arr: np.ndarray, name: str) -> None:
    bad = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: row {row} is {arr[row].tolist()}, which has zero width or height; "
                         "encoding takes the log of the size, so it must be positive")


def _pair(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{na} and {nb} are paired row by row: got {a.shape[0]} {na} "
                         f"and {b.shape[0]} {nb}")


def _encode_args(boxes, anchors, weights):
    b = as_boxes(boxes, "boxes")
    a = as_boxes(anchors, "anchors")
    _pair(b, a, "boxes", "anchors")
    _positive_size(b, "boxes")
    _positive_size(a, "anchors")
    return b, a, _weights(weights)


def _decode_args(deltas, anchors, weights):
    d = as_boxes(deltas, "deltas", check_order=False)
    a = as_boxes(anchors, "anchors")
    _pair(d, a, "deltas", "anchors")
    return d, a, _weights(weights)


# ============================================================================================
# encode
# ============================================================================================
def encode_loops(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """Deltas of each box from its anchor, with loops.

    Args:
      boxes: ``(N, 4)`` xyxy targets (positive width and height).
      anchors: ``(N, 4)`` xyxy anchors, paired with ``boxes`` row by row.
      weights: ``(wx, wy, ww, wh)`` positive multipliers.
    Returns: float64 ``(N, 4)`` deltas ``(dx, dy, dw, dh)``.
    """
    b, a, (wx, wy, ww, wh) = _encode_args(boxes, anchors, weights)
    out = np.zeros(b.shape, dtype=np.float64)
    for i, ((gx1, gy1, gx2, gy2), (ax1, ay1, ax2, ay2)) in enumerate(zip(b.tolist(), a.tolist())):
        gw, gh = gx2 - gx1, gy2 - gy1
        aw, ah = ax2 - ax1, ay2 - ay1
        gx, gy = gx1 + 0.5 * gw, gy1 + 0.5 * gh
        ax, ay = ax1 + 0.5 * aw, ay1 + 0.5 * ah
        out[i] = [wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                  ww * math.log(gw / aw), wh * math.log(gh / ah)]
    return out


def encode_numpy(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """Vectorized :func:`encode_loops` (same arguments and result)."""
    b, a, (wx, wy, ww, wh) = _encode_args(boxes, anchors, weights)
    gw, gh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    gx, gy = b[:, 0] + 0.5 * gw, b[:, 1] + 0.5 * gh
    ax, ay = a[:, 0] + 0.5 * aw, a[:, 1] + 0.5 * ah
    return np.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                     ww * np.log(gw / aw), wh * np.log(gh / ah)], axis=1)


def _tf_rows(x, name: str):
    import tensorflow as tf

    t = tf.convert_to_tensor(x)
    if not t.dtype.is_floating:
        t = tf.cast(t, tf.float64)
    if t.shape.rank is not None and (t.shape.rank != 2 or t.shape[-1] not in (None, 4)):
        if not (t.shape.rank == 1 and t.shape[0] == 0):
            raise ValueError(f"{name}: expected shape (N, 4), got shape {tuple(t.shape)}")
        t = tf.zeros((0, 4), t.dtype)
    return t


def encode_tf(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """:func:`encode_loops` in TensorFlow: ``(N, 4)`` tensors in, ``(N, 4)`` out in the boxes'
    float dtype. ``weights`` stays a Python tuple. Works under ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    b = _tf_rows(boxes, "boxes")
    a = tf.cast(_tf_rows(anchors, "anchors"), b.dtype)
    wx, wy, ww, wh = _weights(weights)
    if tf.executing_eagerly():
        _encode_args(b.numpy(), a.numpy(), weights)
    gw, gh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    gx, gy = b[:, 0] + 0.5 * gw, b[:, 1] + 0.5 * gh
    ax, ay = a[:, 0] + 0.5 * aw, a[:, 1] + 0.5 * ah
    return tf.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                     ww * tf.math.log(gw / aw), wh * tf.math.log(gh / ah)], axis=1)


# ============================================================================================
# decode
# ============================================================================================
def decode_loops(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """Boxes from deltas and their anchors, with loops.

    Args:
      deltas: ``(N, 4)`` ``(dx, dy, dw, dh)``.
      anchors: ``(N, 4)`` xyxy, paired with ``deltas`` row by row.
      weights: ``(wx, wy, ww, wh)`` positive, the ones used to encode.
    Returns: float64 ``(N, 4)`` xyxy boxes; ``dw / ww`` and ``dh / wh`` are clamped at
    ``log(1000 / 16)`` before ``exp``.
    """
    d, a, (wx, wy, ww, wh) = _decode_args(deltas, anchors, weights)
    out = np.zeros(d.shape, dtype=np.float64)
    for i, ((dx, dy, dw, dh), (ax1, ay1, ax2, ay2)) in enumerate(zip(d.tolist(), a.tolist())):
        aw, ah = ax2 - ax1, ay2 - ay1
        ax, ay = ax1 + 0.5 * aw, ay1 + 0.5 * ah
        gx = dx / wx * aw + ax
        gy = dy / wy * ah + ay
        gw = math.exp(min(dw / ww, SCALE_CLAMP)) * aw
        gh = math.exp(min(dh / wh, SCALE_CLAMP)) * ah
        out[i] = [gx - 0.5 * gw, gy - 0.5 * gh, gx + 0.5 * gw, gy + 0.5 * gh]
    return out


def decode_numpy(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """Vectorized :func:`decode_loops` (same arguments and result)."""
    d, a, (wx, wy, ww, wh) = _decode_args(deltas, anchors, weights)
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    ax, ay = a[:, 0] + 0.5 * aw, a[:, 1] + 0.5 * ah
    gx = d[:, 0] / wx * aw + ax
    gy = d[:, 1] / wy * ah + ay
    gw = np.exp(np.minimum(d[:, 2] / ww, SCALE_CLAMP)) * aw
    gh = np.exp(np.minimum(d[:, 3] / wh, SCALE_CLAMP)) * ah
    return np.stack([gx - 0.5 * gw, gy - 0.5 * gh, gx + 0.5 * gw, gy + 0.5 * gh], axis=1)


def decode_tf(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """:func:`decode_loops` in TensorFlow: ``(N, 4)`` tensors in, ``(N, 4)`` out in the deltas'
    float dtype. Works under ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    d = _tf_rows(deltas, "deltas")
    a = tf.cast(_tf_rows(anchors, "anchors"), d.dtype)
    wx, wy, ww, wh = _weights(weights)
    if tf.executing_eagerly():
        _decode_args(d.numpy(), a.numpy(), weights)
    clamp = tf.constant(SCALE_CLAMP, d.dtype)
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    ax, ay = a[:, 0] + 0.5 * aw, a[:, 1] + 0.5 * ah
    gx = d[:, 0] / wx * aw + ax
    gy = d[:, 1] / wy * ah + ay
    gw = tf.exp(tf.minimum(d[:, 2] / ww, clamp)) * aw
    gh = tf.exp(tf.minimum(d[:, 3] / wh, clamp)) * ah
    return tf.stack([gx - 0.5 * gw, gy - 0.5 * gh, gx + 0.5 * gw, gy + 0.5 * gh], axis=1)
