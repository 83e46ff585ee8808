"""COCO and Pascal VOC detection evaluation on arrays, and COCO JSON in and out.

    gt = ground_truths(image_id, class_id, boxes_xyxy, crowd=..., area=...)
    dt = detections(image_id, class_id, boxes_xyxy, scores)
    result = coco_evaluate(gt, dt)      # result.stats: pycocotools' 12 numbers
    voc = voc_evaluate(gt, dt, iou_threshold=0.5, method="voc")

Boxes are float ``(N, 4)`` xyxy, continuous pixels, no "+1" (COCO JSON holds xywh; the JSON
functions convert with :func:`workshop.conventions.convert_boxes`).

:func:`coco_evaluate` reproduces ``pycocotools.cocoeval.COCOeval`` (bbox; evaluate, accumulate,
summarize) number for number, vectorized across images: detections are sorted once, the IoUs of
all (detection, ground truth) pairs of the same image and class are computed in one batch, the
greedy matching runs once per detection *rank* for all images, thresholds and area ranges at
once, and precision/recall come from cumulative sums per class. The rules it follows:

* IoU as pycocotools' ``bbIou``: IoU with a crowd region is intersection / detection area;
  boxes that only touch have IoU 0. Areas for the area ranges come from the ground truths'
  ``area`` (COCO's "area" field; the box area by default) and from the detection box area.
* IoU thresholds ``np.linspace(.5, .95, 10)`` (capped at 1 - 1e-10), recall thresholds
  ``np.linspace(0, 1, 101)``, area ranges all/small/medium/large = [0, 1e10], [0, 32^2],
  [32^2, 96^2], [96^2, 1e10] (inclusive at both ends), maxDets 1, 10, 100.
* Per image and class the detections are ranked by descending score (stable: input order on
  ties) and cut at the largest maxDets; each, in turn, takes the ground truth with the highest
  IoU >= t that is still free (crowds never become taken), preferring any non-ignored ground
  truth to an ignored one (crowd, or area outside the range) and, on equal IoU, the later one.
  A detection matched to an ignored ground truth, or unmatched with its area outside the range,
  is ignored.
* Per class, detections of all images are sorted by descending score with a stable sort over
  (image id ascending, rank): pycocotools' concatenation order.
* -1 marks "no ground truth" in ``precision``/``recall``/``stats``, as pycocotools.

Exact equality with pycocotools needs the same box arithmetic: pycocotools computes x + w from
xywh; with coordinates whose xyxy <-> xywh conversion is exact (integers, halves, ...) the two
agree to the last bit.

Length: the full COCO and VOC evaluations, bit-exact with pycocotools, whose steps (matching,
accumulation, summaries, JSON in and out) only make sense together.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..conventions import as_boxes, as_scores, convert_boxes
from .metrics import AP_METHODS, average_precision_numpy

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = np.array([[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]])
AREA_LABELS = ("all", "small", "medium", "large")
MAX_DETS = (1, 10, 100)
STAT_NAMES = (
    "AP @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "AP @[IoU=0.50 | area=all | maxDets=100]",
    "AP @[IoU=0.75 | area=all | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=large | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=all | maxDets=1]",
    "AR @[IoU=0.50:0.95 | area=all | maxDets=10]",
    "AR @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=large | maxDets=100]",
)


# ================================================================================================
# inputs
# ================================================================================================
@dataclass(frozen=True)
class GroundTruths:
    """Ground-truth objects of a data set, one row each (build with :func:`ground_truths`).

    image_id, class_id: int64 ``(N,)``; boxes: float64 ``(N, 4)`` xyxy; crowd, difficult: bool
    ``(N,)``; area: float64 ``(N,)`` (COCO's "area" field, used for the area ranges; the box area
    by default); images / classes: optional int64 arrays listing every image / class of the data
    set (images without objects count: their detections are false positives).
    """

    image_id: np.ndarray
    class_id: np.ndarray
    boxes: np.ndarray
    crowd: np.ndarray
    difficult: np.ndarray
    area: np.ndarray
    images: np.ndarray | None = None
    classes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class Detections:
    """Detections, one row each (build with :func:`detections`): image_id, class_id int64
    ``(N,)``, boxes float64 ``(N, 4)`` xyxy, scores float64 ``(N,)``."""

    image_id: np.ndarray
    class_id: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


def _ids(values, name: str, n: int | None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = f"({n},)" if n is not None else "(N,)"
        raise ValueError(f"{name}: expected shape {want}, one entry per box, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind not in "fb" or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            bad = 0
            if arr.dtype.kind == "f":
                bad = int(np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))[0])
            raise ValueError(f"{name}: entry {bad} is {arr[bad]!r}, expected an integer id")
    return arr.astype(np.int64)


def _flags(values, name: str, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n, bool)
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), one flag per box, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "biu" and not np.all(np.isin(arr, (0, 1))):
        bad = int(np.flatnonzero(~np.isin(arr, (0, 1)))[0])
        raise ValueError(f"{name}: entry {bad} is {arr[bad]!r}, expected a flag (0/1 or bool)")
    return arr.astype(bool)


def ground_truths(image_id, class_id, boxes, crowd=None, difficult=None, area=None, images=None,
                  classes=None) -> GroundTruths:
    """Validate and pack ground truths (see :class:`GroundTruths`); ValueError names the row."""
    b = as_boxes(boxes, "boxes")
    n = len(b)
    if area is None:
        a = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    else:
        a = np.asarray(area, np.float64)
        if a.shape != (n,):
            raise ValueError(f"area: expected shape ({n},), got shape {a.shape}")
        bad = ~np.isfinite(a) | (a < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"area: row {i} is {a[i]}, expected a finite area >= 0")
    gt = GroundTruths(_ids(image_id, "image_id", n), _ids(class_id, "class_id", n), b,
                      _flags(crowd, "crowd", n), _flags(difficult, "difficult", n), a,
                      None if images is None else np.unique(_ids(images, "images", None)),
                      None if classes is None else np.unique(_ids(classes, "classes", None)))
    if gt.images is not None:
        missing = ~np.isin(gt.image_id, gt.images)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(f"image_id: row {i} is image {gt.image_id[i]}, which is not in images")
    if gt.classes is not None:
        missing = ~np.isin(gt.class_id, gt.classes)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(f"class_id: row {i} is class {gt.class_id[i]}, which is not in classes")
    return gt


def detections(image_id, class_id, boxes, scores) -> Detections:
    """Validate and pack detections (see :class:`Detections`); ValueError names the row."""
    b = as_boxes(boxes, "boxes")
    n = len(b)
    s = as_scores(scores, n, "scores")
    if not np.all(np.isfinite(s)):
        i = int(np.flatnonzero(~np.isfinite(s))[0])
        raise ValueError(f"scores: entry {i} is {s[i]}, expected a finite score")
    return Detections(_ids(image_id, "image_id", n), _ids(class_id, "class_id", n), b, s)


def _as_gt(gt) -> GroundTruths:
    if isinstance(gt, GroundTruths):
        return gt
    if isinstance(gt, Mapping):
        return ground_truths(**gt)
    raise TypeError(f"expected GroundTruths or a mapping of its fields, got {type(gt).__name__}")


def _as_dt(dt) -> Detections:
    if isinstance(dt, Detections):
        return dt
    if isinstance(dt, Mapping):
        return detections(**dt)
    raise TypeError(f"expected Detections or a mapping of its fields, got {type(dt).__name__}")


def _universe(gt: GroundTruths, dt: Detections) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated image ids and class ids (sorted)."""
    if gt.images is not None:
        images = gt.images
        unknown = ~np.isin(dt.image_id, images)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise ValueError(f"detections: row {i} is on image {dt.image_id[i]}, which is not in the "
                             "ground truth's images")
    else:
        images = np.union1d(gt.image_id, dt.image_id)
    classes = gt.classes if gt.classes is not None else np.union1d(gt.class_id, dt.class_id)
    return images, classes


# ================================================================================================
# pairs of (detection, ground truth) in the same group
# ================================================================================================
def _group_pairs(d_group: np.ndarray, g_group_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, ground truth) index pairs sharing a group id; ``g_group_sorted`` sorted."""
    start = np.searchsorted(g_group_sorted, d_group, side="left")
    count = np.searchsorted(g_group_sorted, d_group, side="right") - start
    total = int(count.sum())
    det = np.repeat(np.arange(len(d_group)), count)
    offset = np.cumsum(count) - count
    gt = np.arange(total) - np.repeat(offset - start, count)
    return det, gt


def _pair_iou(d_boxes, g_boxes, det, gt, crowd=None) -> np.ndarray:
    """IoU of the pairs (pycocotools' bbIou arithmetic; crowd: intersection / detection area)."""
    d, g = d_boxes[det], g_boxes[gt]
    w = np.minimum(d[:, 2], g[:, 2]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3], g[:, 3]) - np.maximum(d[:, 1], g[:, 1])
    ok = (w > 0) & (h > 0)
    inter = np.where(ok, w * h, 0.0)
    d_area = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    g_area = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    union = d_area + g_area - inter
    if crowd is not None:
        union = np.where(crowd[gt], d_area, union)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


# ================================================================================================
# COCO
# ================================================================================================
@dataclass
class CocoResult:
    """What :func:`coco_evaluate` returns.

    stats: float64 ``(12,)``, pycocotools' summary in its order (see :data:`STAT_NAMES`), -1
      where nothing has ground truth.
    precision: float64 ``(T, R, K, A, M)`` = (10 IoU thresholds, 101 recall thresholds, classes,
      4 area ranges, 3 maxDets), the interpolated precision; -1 for a class without ground truth.
    recall: float64 ``(T, K, A, M)``, the final recall. scores: ``(T, R, K, A, M)``, the score at
      each recall threshold (0 beyond the curve).
    class_ids, image_ids: the evaluated ids (K classes, sorted).
    """

    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    image_ids: np.ndarray
    iou_thresholds: np.ndarray = field(default_factory=lambda: IOU_THRESHOLDS.copy())
    recall_thresholds: np.ndarray = field(default_factory=lambda: RECALL_THRESHOLDS.copy())
    area_labels: tuple = AREA_LABELS
    max_dets: tuple = MAX_DETS

    def _per_class(self, t=None, area: int = 0) -> np.ndarray:
        p = self.precision[:, :, :, area, -1] if t is None else self.precision[t:t + 1, :, :, area, -1]
        out = np.full(p.shape[2], np.nan)
        for k in range(p.shape[2]):
            s = p[:, :, k]
            if (s > -1).any():
                out[k] = np.mean(s[s > -1])
        return out

    @property
    def ap_per_class(self) -> np.ndarray:
        """AP@[.50:.95] per class (area all, 100 detections), float64 ``(K,)``, NaN without ground truth."""
        return self._per_class()

    @property
    def ap50_per_class(self) -> np.ndarray:
        """AP at IoU 0.5 per class, ``(K,)``, NaN without ground truth."""
        return self._per_class(0)

    @property
    def ap75_per_class(self) -> np.ndarray:
        """AP at IoU 0.75 per class, ``(K,)``, NaN without ground truth."""
        return self._per_class(5)

    def pr_curve(self, class_index: int, iou_index: int = 0, area: int = 0, max_det: int = -1):
        """(recall thresholds (101,), interpolated precision (101,)) to plot one PR curve."""
        return self.recall_thresholds, self.precision[iou_index, :, class_index, area, max_det]

    def summary(self) -> str:
        """The 12 lines pycocotools prints."""
        return "\n".join(f" {name:<48} = {value:0.3f}" for name, value in zip(STAT_NAMES, self.stats))


def _summarize(precision: np.ndarray, recall: np.ndarray, max_dets=MAX_DETS) -> np.ndarray:
    """pycocotools' ``summarize()`` on the accumulated arrays (the same masking and means)."""
    def one(ap, iou=None, area="all", m=100):
        a = [AREA_LABELS.index(area)]
        mi = [i for i, v in enumerate(max_dets) if v == m]
        if ap:
            s = precision
            if iou is not None:
                s = s[np.where(iou == IOU_THRESHOLDS)[0]]
            s = s[:, :, :, a, mi]
        else:
            s = recall
            if iou is not None:
                s = s[np.where(iou == IOU_THRESHOLDS)[0]]
            s = s[:, :, a, mi]
        return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))

    big = max_dets[2]
    return np.array([
        one(1), one(1, iou=0.5, m=big), one(1, iou=0.75, m=big),
        one(1, area="small", m=big), one(1, area="medium", m=big), one(1, area="large", m=big),
        one(0, m=max_dets[0]), one(0, m=max_dets[1]), one(0, m=max_dets[2]),
        one(0, area="small", m=big), one(0, area="medium", m=big), one(0, area="large", m=big)])


def coco_evaluate(gt, dt) -> CocoResult:  # noqa: PLR0915  (pycocotools' steps, in its order)
    """COCO bounding-box evaluation of detections against ground truths, on arrays.

    Args:
      gt: :class:`GroundTruths` (or a mapping of :func:`ground_truths`' arguments). ``difficult``
        is not used by COCO (``crowd`` is).
      dt: :class:`Detections` (or a mapping of :func:`detections`' arguments).

    Images: ``gt.images`` if given (a detection on another image is a ValueError, as pycocotools'
    ``loadRes``), else every image id in ``gt`` or ``dt``. Classes: ``gt.classes`` if given
    (detections of other classes are dropped, as pycocotools), else every class id in ``gt`` or
    ``dt``. The rules are pycocotools' (module docstring); results equal
    ``COCOeval(...).evaluate(); accumulate(); summarize()``.

    Returns:
      :class:`CocoResult`.
    """
    gt, dt = _as_gt(gt), _as_dt(dt)
    images, classes = _universe(gt, dt)
    n_img, K = len(images), len(classes)
    T, R, A, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES), len(MAX_DETS)
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
    max_det = max(MAX_DETS)

    # ---- detections: kept classes, group = class * n_img + image, ranked by score per group
    keep = np.isin(dt.class_id, classes)
    d_cls = np.searchsorted(classes, dt.class_id[keep])
    d_grp = d_cls * n_img + np.searchsorted(images, dt.image_id[keep])
    d_score_all = dt.scores[keep]
    order = np.lexsort((-d_score_all, d_grp))                     # stable: input order on ties
    d_grp, d_cls = d_grp[order], d_cls[order]
    first = np.searchsorted(d_grp, d_grp, side="left")
    rank = np.arange(len(d_grp)) - first
    cut = rank < max_det
    sel = order[cut]
    d_grp, d_cls, rank = d_grp[cut], d_cls[cut], rank[cut]
    d_boxes = dt.boxes[keep][sel]
    d_score = d_score_all[sel]
    d_area = (d_boxes[:, 2] - d_boxes[:, 0]) * (d_boxes[:, 3] - d_boxes[:, 1])
    nd = len(d_grp)

    # ---- ground truths: kept classes, group order (input order inside a group)
    g_keep = np.isin(gt.class_id, classes)
    g_cls = np.searchsorted(classes, gt.class_id[g_keep])
    g_grp = g_cls * n_img + np.searchsorted(images, gt.image_id[g_keep])
    g_order = np.argsort(g_grp, kind="stable")
    g_grp, g_cls = g_grp[g_order], g_cls[g_order]
    g_boxes = gt.boxes[g_keep][g_order]
    g_crowd = gt.crowd[g_keep][g_order]
    g_area = gt.area[g_keep][g_order]
    ng = len(g_grp)
    lo, hi = AREA_RANGES[:, 0:1], AREA_RANGES[:, 1:2]
    g_ignore = g_crowd[None, :] | (g_area[None, :] < lo) | (g_area[None, :] > hi)   # (A, ng)
    d_outside = (d_area[None, :] < lo) | (d_area[None, :] > hi)                      # (A, nd)

    # ---- candidate pairs (IoU >= the lowest threshold), ordered by (rank, det, iou, gt)
    det, g = _group_pairs(d_grp, g_grp)
    iou = _pair_iou(d_boxes, g_boxes, det, g, g_crowd)
    near = iou >= thresholds.min()
    det, g, iou = det[near], g[near], iou[near]
    porder = np.lexsort((g, iou, det, rank[det]))
    det, g, iou = det[porder], g[porder], iou[porder]

    matched = np.zeros((A, T, nd), bool)
    matched_ignored = np.zeros((A, T, nd), bool)
    if len(det):
        new_det = np.r_[True, det[1:] != det[:-1]]
        det_start = np.flatnonzero(new_det)
        within = np.arange(len(det)) - np.repeat(det_start, np.diff(np.r_[det_start, len(det)]))
        big = int(within.max()) + 2                      # > any within-detection position + 1
        pref = (~g_ignore[:, g]).astype(np.int64)[:, None, :] * big + (within + 1)[None, None, :]
        taken = np.zeros((A, T, ng), bool)
        ranks = rank[det]
        bounds = np.flatnonzero(np.r_[True, ranks[1:] != ranks[:-1], True])
        for b0, b1 in zip(bounds[:-1], bounds[1:]):
            gs, ds = g[b0:b1], det[b0:b1]
            elig = (iou[None, b0:b1] >= thresholds[:, None])[None] & (~taken[:, :, gs] | g_crowd[gs])
            key = np.where(elig, pref[:, :, b0:b1], 0)
            starts = det_start[np.searchsorted(det_start, b0):np.searchsorted(det_start, b1)] - b0
            if len(starts) == b1 - b0:                       # one pair per detection
                chosen = elig
            else:
                seg_max = np.maximum.reduceat(key, starts, axis=2)
                lengths = np.diff(np.r_[starts, b1 - b0])
                chosen = elig & (key == np.repeat(seg_max, lengths, axis=2))
            a_i, t_i, p_i = np.nonzero(chosen)
            taken[a_i, t_i, gs[p_i]] = True
            matched[a_i, t_i, ds[p_i]] = True
            matched_ignored[a_i, t_i, ds[p_i]] = g_ignore[a_i, gs[p_i]]
    ignored = matched_ignored | (~matched & d_outside[:, None, :])                    # (A, T, nd)

    # ---- accumulate per class: stable sort by score over (image, rank) order
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    scores = -np.ones((T, R, K, A, M))
    acc = np.lexsort((-d_score, d_cls))
    acc_cls = d_cls[acc]
    c_bounds = np.searchsorted(acc_cls, np.arange(K + 1))
    npig = np.zeros((K, A), np.int64)
    for a in range(A):
        npig[:, a] = np.bincount(g_cls[~g_ignore[a]], minlength=K)
    eps = np.spacing(1)
    for k in range(K):
        idx_k = acc[c_bounds[k]:c_bounds[k + 1]]
        for a in range(A):
            n_pos = int(npig[k, a])
            if n_pos == 0:
                continue
            for m, md in enumerate(MAX_DETS):
                idx = idx_k[rank[idx_k] < md]
                nd_k = len(idx)
                mt, ig = matched[a][:, idx], ignored[a][:, idx]
                tp = np.cumsum(mt & ~ig, axis=1).astype(float)
                fp = np.cumsum(~mt & ~ig, axis=1).astype(float)
                rc = tp / n_pos
                pr = tp / (fp + tp + eps)
                recall[:, k, a, m] = rc[:, -1] if nd_k else 0
                if nd_k == 0:
                    precision[:, :, k, a, m] = 0
                    scores[:, :, k, a, m] = 0
                    continue
                env = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                s_sorted = d_score[idx]
                for t in range(T):
                    inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    inside = inds < nd_k
                    safe = np.minimum(inds, nd_k - 1)
                    precision[t, :, k, a, m] = np.where(inside, env[t, safe], 0.0)
                    scores[t, :, k, a, m] = np.where(inside, s_sorted[safe], 0.0)
    stats = _summarize(precision, recall)
    return CocoResult(stats, precision, recall, scores, classes, images)


# ================================================================================================
# Pascal VOC
# ================================================================================================
@dataclass
class VocResult:
    """What :func:`voc_evaluate` returns.

    ap: float64 ``(K,)`` per class, NaN for a class without (non-difficult) ground truth;
    mean_ap: the mean over the other classes; class_ids: ``(K,)``;
    precision, recall, scores: per class, float64 ``(n_k,)`` curves in descending score order
    (detections matched to a difficult object are left out).
    """

    ap: np.ndarray
    mean_ap: float
    class_ids: np.ndarray
    precision: list
    recall: list
    scores: list
    iou_threshold: float = 0.5
    method: str = "voc"


def voc_evaluate(gt, dt, iou_threshold: float = 0.5, method: str = "voc") -> VocResult:
    """Pascal VOC evaluation on arrays.

    Per class, detections in descending score order (stable: input order on ties); each is
    compared with the ground truth of its image and class it overlaps most (IoU without "+1";
    on equal IoU the first), whether or not that one is already taken:

    * IoU >= ``iou_threshold`` and the object is difficult (or crowd): ignored, neither TP nor FP;
    * IoU >= ``iou_threshold`` and the object is not yet detected: TP (the object is now taken);
    * otherwise (a second hit on a taken object, or IoU too low): FP.

    Recall = TP / (non-difficult objects), precision = TP / (TP + FP), and AP with
    :func:`workshop.reference.metrics.average_precision_numpy` (``method`` "voc" for
    VOC2010+, "voc07" for the 11 points, "coco" for 101 points).

    Args: gt, dt as :func:`coco_evaluate`; ``gt.classes`` (if given) sets the classes reported.
    Returns: :class:`VocResult`.
    """
    if method not in AP_METHODS:
        raise ValueError(f"method: expected one of {AP_METHODS}, got {method!r}")
    t = float(iou_threshold)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"iou_threshold: expected a value in [0, 1], got {iou_threshold}")
    gt, dt = _as_gt(gt), _as_dt(dt)
    images, classes = _universe(gt, dt)
    n_img = len(images)
    keep = np.isin(dt.class_id, classes)
    d_idx = np.flatnonzero(keep)
    d_cls = np.searchsorted(classes, dt.class_id[d_idx])
    d_grp = d_cls * n_img + np.searchsorted(images, dt.image_id[d_idx])
    g_keep = np.flatnonzero(np.isin(gt.class_id, classes))
    g_cls = np.searchsorted(classes, gt.class_id[g_keep])
    g_grp = g_cls * n_img + np.searchsorted(images, gt.image_id[g_keep])
    g_order = np.argsort(g_grp, kind="stable")
    g_idx, g_grp, g_cls = g_keep[g_order], g_grp[g_order], g_cls[g_order]
    g_skip = (gt.difficult | gt.crowd)[g_idx]

    det, g = _group_pairs(d_grp, g_grp)
    iou = _pair_iou(dt.boxes[d_idx], gt.boxes[g_idx], det, g)
    # best ground truth per detection: highest IoU, the first on ties
    porder = np.lexsort((g, -iou, det))
    det, g, iou = det[porder], g[porder], iou[porder]
    head = np.r_[True, det[1:] != det[:-1]] if len(det) else np.zeros(0, bool)
    best_g = np.full(len(d_idx), -1)
    best_iou = np.zeros(len(d_idx))
    best_g[det[head]], best_iou[det[head]] = g[head], iou[head]
    hit = (best_g >= 0) & (best_iou >= t)
    skip = hit & g_skip[np.maximum(best_g, 0)]

    K = len(classes)
    ap = np.full(K, np.nan)
    precisions, recalls, score_lists = [], [], []
    n_pos = np.bincount(g_cls[~g_skip], minlength=K)
    scores = dt.scores[d_idx]
    for k in range(K):
        sel = np.flatnonzero((d_cls == k) & ~skip)
        sel = sel[np.argsort(-scores[sel], kind="stable")]
        claims = np.where(hit[sel], best_g[sel], -1)
        tp = np.zeros(len(sel), bool)
        if len(sel):
            _, first = np.unique(claims, return_index=True)     # first claim of each object
            tp[first] = True
            tp &= claims >= 0
        ctp = np.cumsum(tp).astype(np.float64)
        cfp = np.cumsum(~tp).astype(np.float64)
        prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        rec = ctp / n_pos[k] if n_pos[k] else np.zeros_like(ctp)
        precisions.append(prec)
        recalls.append(rec)
        score_lists.append(scores[sel])
        if n_pos[k]:
            ap[k] = average_precision_numpy(rec, prec, method)
    mean_ap = float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
    return VocResult(ap, mean_ap, classes, precisions, recalls, score_lists, t, method)


# ================================================================================================
# COCO JSON
# ================================================================================================
def _read_json(source) -> Any:
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as f:
            return json.load(f)
    return source


def load_coco_ground_truth(source) -> GroundTruths:
    """Ground truths from a COCO instances file (path or the loaded dict).

    Uses ``images`` (all of them count), ``categories``, and each annotation's ``image_id``,
    ``category_id``, ``bbox`` (xywh -> xyxy), ``iscrowd`` (default 0) and ``area`` (default: the
    box area). Raises ValueError naming the offending annotation.
    """
    data = _read_json(source)
    if not isinstance(data, Mapping) or "annotations" not in data:
        raise ValueError("expected a COCO ground-truth dict with 'images', 'annotations', 'categories'")
    anns = data["annotations"]
    for i, ann in enumerate(anns):
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise ValueError(f"annotations[{i}] has no {key!r}")
        if len(ann["bbox"]) != 4:
            raise ValueError(f"annotations[{i}]: bbox {ann['bbox']} is not [x, y, w, h]")
    xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    boxes = convert_boxes(xywh, "xywh", "xyxy")
    area = np.array([a.get("area", w * h) for a, (_, _, w, h) in zip(anns, xywh.tolist())], np.float64)
    images = [img["id"] for img in data.get("images", [])] or None
    classes = [c["id"] for c in data.get("categories", [])] or None
    return ground_truths([a["image_id"] for a in anns], [a["category_id"] for a in anns], boxes,
                         crowd=[int(a.get("iscrowd", 0)) for a in anns], area=area,
                         images=images, classes=classes)


def load_coco_detections(source) -> Detections:
    """Detections from a COCO results file (path or list of {image_id, category_id, bbox xywh,
    score}), the format of ``COCO.loadRes``. Raises ValueError naming the offending entry."""
    data = _read_json(source)
    if not isinstance(data, list):
        raise ValueError("expected a COCO results list of {image_id, category_id, bbox, score}")
    for i, r in enumerate(data):
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in r:
                raise ValueError(f"results[{i}] has no {key!r}")
        if len(r["bbox"]) != 4:
            raise ValueError(f"results[{i}]: bbox {r['bbox']} is not [x, y, w, h]")
    xywh = np.array([r["bbox"] for r in data], np.float64).reshape(-1, 4)
    return detections([r["image_id"] for r in data], [r["category_id"] for r in data],
                      convert_boxes(xywh, "xywh", "xyxy"), [r["score"] for r in data])


def coco_results(dt) -> list[dict]:
    """Detections as a COCO results list (bbox xywh, plain Python numbers)."""
    dt = _as_dt(dt)
    xywh = convert_boxes(dt.boxes, "xyxy", "xywh").tolist()
    return [{"image_id": int(i), "category_id": int(c), "bbox": b, "score": float(s)}
            for i, c, b, s in zip(dt.image_id.tolist(), dt.class_id.tolist(), xywh, dt.scores.tolist())]


def coco_ground_truth(gt, images=None, classes=None) -> dict:
    """Ground truths as a COCO instances dict: images and categories (``gt.images`` /
    ``gt.classes``, else the ids present), annotations with ids from 1, bbox xywh, area, iscrowd."""
    gt = _as_gt(gt)
    if images is None:
        images = gt.images if gt.images is not None else np.unique(gt.image_id)
    if classes is None:
        classes = gt.classes if gt.classes is not None else np.unique(gt.class_id)
    xywh = convert_boxes(gt.boxes, "xyxy", "xywh").tolist()
    anns = [{"id": k + 1, "image_id": int(i), "category_id": int(c), "bbox": b, "area": float(a),
             "iscrowd": int(cr)}
            for k, (i, c, b, a, cr) in enumerate(zip(gt.image_id.tolist(), gt.class_id.tolist(), xywh,
                                                      gt.area.tolist(), gt.crowd.tolist()))]
    return {"images": [{"id": int(i)} for i in np.asarray(images).tolist()],
            "categories": [{"id": int(c), "name": str(c)} for c in np.asarray(classes).tolist()],
            "annotations": anns}


def save_coco_detections(dt, path) -> None:
    """Write detections as a COCO results JSON file (see :func:`coco_results`)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(coco_results(dt), f)


def save_coco_ground_truth(gt, path) -> None:
    """Write ground truths as a COCO instances JSON file (see :func:`coco_ground_truth`)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(coco_ground_truth(gt), f)


def to_pycocotools(gt, dt, quiet: bool = True):
    """``(COCO ground truth, COCO results)`` objects of pycocotools built in memory from arrays:
    images and categories = those :func:`coco_evaluate` evaluates, the GT "area" field =
    ``gt.area``. For comparisons; imports pycocotools lazily."""
    from pycocotools.coco import COCO

    gt, dt = _as_gt(gt), _as_dt(dt)
    images, classes = _universe(gt, dt)
    sink = io.StringIO() if quiet else None
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        coco_gt = COCO()
        coco_gt.dataset = coco_ground_truth(gt, images, classes)
        coco_gt.createIndex()
        results = coco_results(dt)
        coco_dt = coco_gt.loadRes(results) if results else _empty_results(coco_gt)
    return coco_gt, coco_dt


def _empty_results(coco_gt):
    """pycocotools' loadRes cannot take an empty list; an empty result set it can evaluate."""
    from pycocotools.coco import COCO

    res = COCO()
    res.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                   "annotations": []}
    res.createIndex()
    return res


def pycocotools_evaluate(gt, dt, quiet: bool = True) -> np.ndarray:
    """pycocotools' 12 summary numbers for the same arrays (COCOeval bbox: evaluate, accumulate,
    summarize). For tests and benchmarks."""
    from pycocotools.cocoeval import COCOeval

    coco_gt, coco_dt = to_pycocotools(gt, dt, quiet)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, np.float64), ev
