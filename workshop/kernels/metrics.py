"""The COCO greedy matching tuned for speed: the contract and results of
:func:`workshop.reference.metrics.match_detections_loops` (checked on every registry case),
timed by ``make bench``.

The textbook numpy tier visits every detection with a few numpy calls on its IoU row. Here only
the pairs that can match (IoU >= threshold) are listed, ranked once with one ``np.lexsort`` (by
detection in score order, then IoU descending, then the later ground truth first, the tie rule),
and the greedy pass walks that short list in plain Python: each detection takes its first
candidate still free. The IoU matrix is :func:`workshop.kernels.boxes.iou_numpy`'s blocked one
(the same float64 arithmetic as the textbook tier, hence the same matches at the threshold).
"""

from __future__ import annotations

import numpy as np

from ..conventions import as_boxes, as_scores
from ..reference.metrics import _check_threshold
from .boxes import _iou_core

__all__ = ["match_detections_numpy"]


def match_detections_numpy(gt_boxes, det_boxes, det_scores, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy matching of one image's detections (one class): bool ``(D,)``, True for a true
    positive; ``gt_boxes`` ``(G, 4)``, ``det_boxes`` ``(D, 4)`` xyxy, ``det_scores`` ``(D,)``."""
    gts = as_boxes(gt_boxes, "gt_boxes")
    dets = as_boxes(det_boxes, "det_boxes")
    scores = as_scores(det_scores, len(dets), "det_scores")
    t = min(_check_threshold(iou_threshold), 1 - 1e-10)
    tp = np.zeros(len(dets), bool)
    if len(gts) == 0 or len(dets) == 0:
        return tp
    order = np.argsort(-scores, kind="stable")               # visiting order, ties in input order
    ious = _iou_core(dets[order], gts)                       # (D, G)
    k, g = np.nonzero(ious >= t)                             # the pairs that can match
    ranked = np.lexsort((-g, -ious[k, g], k))                # detection, best IoU, later GT first
    free = [True] * len(gts)
    matched = -1                                             # the last detection that matched
    for kk, gg in zip(k[ranked].tolist(), g[ranked].tolist()):
        if kk != matched and free[gg]:
            free[gg] = False
            matched = kk
            tp[order[kk]] = True
    return tp
