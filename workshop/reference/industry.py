"""Industry implementations behind the course's signatures: baselines for ``workshop.bench``
and for agreement tests.

Boxes are float ``(N, 4)`` xyxy (continuous pixels, area ``(x2 - x1) * (y2 - y1)``); each
adapter converts to the library's own convention. Only the conversion is timed with the call,
as a learner would pay for it too.

* :func:`iou_pycocotools`: ``pycocotools.mask.iou`` on xywh boxes, ``iscrowd`` all zeros.
* :func:`nms_opencv`: ``cv2.dnn.NMSBoxes`` on xywh boxes. It is NOT our NMS on every input (see
  :mod:`workshop.reference.boxes`): ``max_output_size`` is applied to its output here (its own
  ``top_k`` caps candidates), zero-area duplicates suppress each other, and its overlap is float32.
* :func:`nms_tf_image`: ``tf.image.non_max_suppression`` (float32 inside), our exact semantics.
* :func:`batched_nms_tf_image`: ``tf.image.combined_non_max_suppression`` is per-class with a
  per-class cap and another output format, so class-aware NMS is emulated with an offset per class.
"""

from __future__ import annotations

import numpy as np

from ..conventions import as_boxes, as_scores

__all__ = ["iou_pycocotools", "nms_opencv", "nms_tf_image", "batched_nms_tf_image"]


def iou_pycocotools(boxes1, boxes2) -> np.ndarray:
    """``pycocotools.mask.iou`` of xyxy boxes: float64 ``(N, M)``."""
    from pycocotools import mask as mask_utils

    a, b = as_boxes(boxes1, "boxes1"), as_boxes(boxes2, "boxes2")
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    a[:, 2:] -= a[:, :2]
    b[:, 2:] -= b[:, :2]
    out = mask_utils.iou(a, b, np.zeros(b.shape[0], dtype=np.uint8))
    return np.asarray(out, dtype=np.float64).reshape(a.shape[0], b.shape[0])


def _thresholds(boxes, scores, iou_threshold, max_output_size):
    b = as_boxes(boxes)
    s = as_scores(scores, b.shape[0])
    cap = b.shape[0] if max_output_size is None else int(max_output_size)
    return b, s, float(iou_threshold), cap


def nms_opencv(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None) -> np.ndarray:
    """``cv2.dnn.NMSBoxes`` with our signature: int64 kept indices, capped AFTER suppression."""
    import cv2

    b, s, thr, cap = _thresholds(boxes, scores, iou_threshold, max_output_size)
    if b.shape[0] == 0 or cap == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    # NMSBoxes keeps scores > score_threshold; with no threshold, pass one below every score
    sthr = float(score_threshold) if score_threshold is not None else float(np.nextafter(
        np.float32(s.min()), np.float32(-np.inf)))
    keep = cv2.dnn.NMSBoxes(xywh, s.astype(np.float32), sthr, thr)
    return np.asarray(keep, dtype=np.int64).reshape(-1)[:cap]


def nms_tf_image(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None) -> np.ndarray:
    """``tf.image.non_max_suppression`` (yxyx, float32) with our signature: int64 indices."""
    import tensorflow as tf

    b, s, thr, cap = _thresholds(boxes, scores, iou_threshold, max_output_size)
    yxyx = b[:, [1, 0, 3, 2]].astype(np.float32)
    st = float("-inf") if score_threshold is None else float(score_threshold)
    keep = tf.image.non_max_suppression(yxyx, s.astype(np.float32), cap, thr, score_threshold=st)
    return keep.numpy().astype(np.int64)


def batched_nms_tf_image(boxes, scores, classes, iou_threshold, max_output_size=None,
                         score_threshold=None) -> np.ndarray:
    """Class-aware NMS with ``tf.image.non_max_suppression``: each class's boxes are shifted by
    ``class * (coordinate span + 1)`` so classes never overlap (integer-exact for integer boxes)."""
    b = as_boxes(boxes)
    c = np.asarray(classes, dtype=np.int64).reshape(-1)
    if b.shape[0]:
        span = b.max() - b.min() + 1.0
        b = b - b.min() + (c * span)[:, None]
    return nms_tf_image(b, scores, iou_threshold, max_output_size, score_threshold)
