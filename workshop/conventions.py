"""The course's conventions, stated once; every other module imports them.

Boxes
-----
* A set of boxes is a float array of shape ``(N, 4)`` in ``(x1, y1, x2, y2)`` order ("xyxy"),
  in continuous pixel coordinates: a box covering pixels 0..9 is ``[0, 0, 10, 10]``, its width is
  ``x2 - x1`` and its area ``(x2 - x1) * (y2 - y1)``. There is no "+1".
* Other formats are converted with :func:`convert_boxes`:

  ``xyxy``    (x1, y1, x2, y2)        this course
  ``xywh``    (x1, y1, width, height) COCO JSON, ``pycocotools``, OpenCV's ``NMSBoxes``
  ``cxcywh``  (cx, cy, width, height) box regression
  ``yxyx``    (y1, x1, y2, x2)        TensorFlow (``tf.image``), optionally normalised to [0, 1]

Images and feature maps are ``(H, W, C)`` (channels last), shapes are given as ``(height, width)``.

Malformed input (wrong rank or last dimension, ``x2 < x1`` or ``y2 < y1``, NaN or infinite
coordinates) raises :class:`ValueError` naming the offending row; empty input gives correctly
shaped empty output.

Sampling
--------
Where a stage keeps a seeded random subset (the RPN's anchor sampling), the order is
:func:`sampling_priority`, a documented integer hash that every tier, a learner's plain Python
and TensorFlow under XLA reproduce exactly (see the comment above it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")
BOX_DTYPE = np.float64


def as_boxes(boxes, name: str = "boxes", fmt: str = "xyxy", check_order: bool = True) -> np.ndarray:
    """Validate ``boxes`` and return them as a float64 ``(N, 4)`` array (a copy).

    Args:
      boxes: array-like ``(N, 4)``; a single box ``(4,)`` is not accepted (say ``[box]``).
      name: how the argument is called in error messages.
      fmt: the format the boxes are in (only used in messages and for the order check).
      check_order: require ``x2 >= x1`` and ``y2 >= y1`` (``w, h >= 0`` for sized formats).

    Raises:
      ValueError: wrong rank or last dimension, non-numeric values, NaN/inf, or inverted corners,
        naming the first offending row.
    """
    try:
        arr = np.array(boxes, dtype=BOX_DTYPE)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a numeric array of shape (N, 4), could not convert: {err}") from None
    if arr.ndim != 2 or arr.shape[1] != 4:
        if arr.size == 0 and arr.ndim == 1:
            return np.zeros((0, 4), BOX_DTYPE)
        raise ValueError(
            f"{name}: expected shape (N, 4) in {fmt} format, got shape {arr.shape}"
            + (" (wrap a single box in a list: [box])" if arr.shape == (4,) else "")
        )
    if arr.shape[0] == 0:
        return arr
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: row {row} has a NaN or infinite coordinate: {arr[row].tolist()}")
    if check_order:
        if fmt in ("xyxy", "yxyx"):
            inverted = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
            expected = "x2 >= x1 and y2 >= y1" if fmt == "xyxy" else "y2 >= y1 and x2 >= x1"
        else:
            inverted = (arr[:, 2] < 0) | (arr[:, 3] < 0)
            expected = "width >= 0 and height >= 0"
        if inverted.any():
            row = int(np.flatnonzero(inverted)[0])
            raise ValueError(
                f"{name}: row {row} is {arr[row].tolist()}, expected {fmt} boxes with {expected}"
                + (" (is it in another format?)" if fmt == "xyxy" else "")
            )
    return arr


def as_scores(scores, n: int, name: str = "scores") -> np.ndarray:
    """Validate a float ``(N,)`` score vector that goes with ``n`` boxes; returns float64."""
    try:
        arr = np.array(scores, dtype=BOX_DTYPE)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a numeric array of shape ({n},): {err}") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), one score per box, got shape {arr.shape}")
    if np.isnan(arr).any():
        row = int(np.flatnonzero(np.isnan(arr))[0])
        raise ValueError(f"{name}: entry {row} is NaN")
    return arr


def convert_boxes(boxes, src: str, dst: str, image_shape: Sequence[int] | None = None,
                  normalized: bool = False) -> np.ndarray:
    """Convert ``(N, 4)`` boxes between ``xyxy``, ``xywh``, ``cxcywh`` and ``yxyx``.

    Args:
      boxes: ``(N, 4)`` float array in format ``src``.
      src, dst: one of :data:`BOX_FORMATS`.
      image_shape: ``(height, width)``; needed when ``normalized`` is true.
      normalized: the ``yxyx`` side (source or destination) is in ``[0, 1]`` image units, as
        ``tf.image.crop_and_resize`` and ``tf.image.draw_bounding_boxes`` use.

    Returns:
      float64 ``(N, 4)`` array in format ``dst``.
    """
    for fmt in (src, dst):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {BOX_FORMATS}")
    if normalized and (image_shape is None or len(image_shape) < 2):
        raise ValueError("normalized yxyx boxes need image_shape=(height, width)")
    if normalized and "yxyx" not in (src, dst):
        raise ValueError("normalized=True applies to the yxyx format only")
    arr = as_boxes(boxes, fmt=src)
    scale = None
    if normalized:
        h, w = float(image_shape[0]), float(image_shape[1])
        scale = np.array([h, w, h, w])

    if src == "xyxy":
        xyxy = arr
    elif src == "xywh":
        xyxy = np.concatenate([arr[:, :2], arr[:, :2] + arr[:, 2:]], axis=1)
    elif src == "cxcywh":
        half = arr[:, 2:] / 2
        xyxy = np.concatenate([arr[:, :2] - half, arr[:, :2] + half], axis=1)
    else:  # yxyx
        yxyx = arr * scale if scale is not None else arr
        xyxy = yxyx[:, [1, 0, 3, 2]]

    if dst == "xyxy":
        out = xyxy
    elif dst == "xywh":
        out = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    elif dst == "cxcywh":
        out = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    else:  # yxyx
        out = xyxy[:, [1, 0, 3, 2]]
        if scale is not None:
            out = out / scale
    return np.ascontiguousarray(out, dtype=BOX_DTYPE)


def box_area(boxes) -> np.ndarray:
    """Areas ``(x2 - x1) * (y2 - y1)`` of ``(N, 4)`` xyxy boxes, float64 ``(N,)``."""
    arr = as_boxes(boxes)
    return (arr[:, 2] - arr[:, 0]) * (arr[:, 3] - arr[:, 1])


def clip_boxes(boxes, image_shape: Sequence[int]) -> np.ndarray:
    """Clip xyxy boxes to an image of ``(height, width)``: x to ``[0, width]``, y to ``[0, height]``."""
    arr = as_boxes(boxes, check_order=False)
    h, w = float(image_shape[0]), float(image_shape[1])
    return np.stack([arr[:, 0].clip(0, w), arr[:, 1].clip(0, h),
                     arr[:, 2].clip(0, w), arr[:, 3].clip(0, h)], axis=1)


# -- the reproducible sampling order ----------------------------------------------------------
# Sampling priority. ``rpn_targets`` keeps a seeded random subset of the positive and negative
# anchors. So that the loops, numpy and TensorFlow tiers (and a learner) pick the same anchors,
# the randomness is a documented integer hash, not a library generator: anchor ``i`` has priority
#
#     key = mix32(seed mod 2**32)
#     priority[i] = mix32(mix32(i) XOR key)
#     mix32(x) = x ^= x >> 16; x = (x * 0x45D9F3B) mod 2**32; x ^= x >> 16;
#                x = (x * 0x45D9F3B) mod 2**32; x ^= x >> 16
#
# and the anchors with the *smallest* priorities are kept. ``mix32`` is a bijection of 32-bit
# integers, so priorities never tie (for fewer than 2**32 anchors), and every product fits in
# int64, so :func:`sampling_priority_tf` is plain int64 TensorFlow that compiles with XLA
# (a ``np.random.default_rng(seed)`` draw cannot be reproduced inside ``tf.function`` when the
# number of anchors is only known at run time).
MASK32 = 0xFFFFFFFF
MIX = 0x045D9F3B


def _mix32(x):
    """The 32-bit mixing function on a Python int or an int64 numpy array (values < 2**32)."""
    x = x ^ (x >> 16)
    x = (x * MIX) & MASK32
    x = x ^ (x >> 16)
    x = (x * MIX) & MASK32
    return x ^ (x >> 16)


def sampling_priority(n: int, seed: int = 0) -> np.ndarray:
    """Priorities of ``n`` anchors under ``seed``: distinct int64 values in ``[0, 2**32)``;
    lower is sampled first. Works for plain-Python code too (``sampling_priority(n, seed)[i]``).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n: expected a number of anchors >= 0, got {n}")
    key = _mix32(int(seed) % (1 << 32))
    return _mix32(_mix32(np.arange(n, dtype=np.int64)) ^ key)


def sampling_priority_tf(n, seed: int = 0):
    """:func:`sampling_priority` in TensorFlow: ``n`` a Python int or a scalar int tensor, ``seed``
    a Python int or a scalar int tensor. Returns an int64 tensor ``(n,)``; compiles with XLA."""
    import tensorflow as tf

    def mix(x):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
        x = tf.bitwise.bitwise_and(x * MIX, MASK32)
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
        x = tf.bitwise.bitwise_and(x * MIX, MASK32)
        return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))

    if isinstance(seed, (int, np.integer)):
        key = tf.constant(_mix32(int(seed) % (1 << 32)), tf.int64)
    else:
        key = mix(tf.math.floormod(tf.cast(seed, tf.int64), tf.constant(1 << 32, tf.int64)))
    idx = tf.range(tf.cast(n, tf.int64), dtype=tf.int64)
    return mix(tf.bitwise.bitwise_xor(mix(idx), key))
