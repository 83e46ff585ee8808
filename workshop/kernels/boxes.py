"""IoU and NMS tuned for speed: the same contracts and results as the textbook tiers of
:mod:`workshop.reference.boxes` (checked on every registry case), timed by ``make bench``.

* :func:`iou_numpy`: the IoU matrix in row blocks that stay in cache, written into preallocated
  buffers (no ``(N, M)`` temporaries), with the same float64 arithmetic in the same order as the
  textbook tier, hence the same bits.
* :func:`nms_numpy`, :func:`batched_nms_numpy`: blocked greedy while kept boxes remove many
  others (each kept box tests only the boxes in its window of the left-edge order), then a
  sort-and-sweep that finds the only pairs that can overlap above the threshold, and the greedy
  order resolved on that graph in vectorized rounds. With classes, the sweep
  runs first, on a sort key with one band per class, so only same-class neighbours are paired.
* :func:`nms_tf`, :func:`batched_nms_tf`: greedy on fixed-size tiles of the score-sorted boxes
  (static shapes inside the loop, so XLA compiles it), compiled once per dtype when eager.
"""

from __future__ import annotations

import numpy as np

from ..conventions import as_boxes
from ..reference.boxes import (
    by_score,
    check_classes,
    check_nms_args,
    iou_tf_core,
    tf_classes,
    tf_nms_args,
)

__all__ = ["iou_numpy", "nms_numpy", "nms_tf", "batched_nms_numpy", "batched_nms_tf"]


def iou_numpy(boxes1, boxes2) -> np.ndarray:
    """IoU of every pair: ``(N, 4)``, ``(M, 4)`` xyxy -> float64 ``(N, M)``."""
    a, b = as_boxes(boxes1, "boxes1"), as_boxes(boxes2, "boxes2")
    return _iou_core(a, b)


def _iou_core(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of validated float64 boxes (row blocks so the temporaries stay in cache)."""
    n, m = a.shape[0], b.shape[0]
    out = np.empty((n, m), dtype=np.float64)
    if n == 0 or m == 0:
        return out
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    bx1, by1, bx2, by2 = (np.ascontiguousarray(b[:, k]) for k in range(4))
    rows = max(1, min(n, 32768 // m))
    t = np.empty((rows, m))
    w = np.empty((rows, m))
    with np.errstate(invalid="ignore"):
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            k = r1 - r0
            tk, wk, ok = t[:k], w[:k], out[r0:r1]
            blk = a[r0:r1]
            np.minimum(blk[:, 2:3], bx2, out=wk)
            np.maximum(blk[:, 0:1], bx1, out=tk)
            np.subtract(wk, tk, out=wk)
            np.maximum(wk, 0.0, out=wk)
            np.minimum(blk[:, 3:4], by2, out=ok)
            np.maximum(blk[:, 1:2], by1, out=tk)
            np.subtract(ok, tk, out=ok)
            np.maximum(ok, 0.0, out=ok)
            np.multiply(wk, ok, out=wk)                   # intersection
            np.add(area_a[r0:r1, None], area_b, out=tk)
            np.subtract(tk, wk, out=tk)                   # union
            np.divide(wk, tk, out=ok)
    # union is 0 only when both boxes have zero area (then the intersection is 0 too): 0/0
    za, zb = area_a == 0, area_b == 0
    if za.any() and zb.any():
        out[np.ix_(za, zb)] = 0.0
    return out


def nms_numpy(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None) -> np.ndarray:
    """Greedy NMS: kept indices, int64 ``(K,)``, in decreasing score order (see
    :func:`workshop.reference.boxes.nms_numpy` for the rules)."""
    b, s, thr, cap, sthr = check_nms_args(boxes, scores, iou_threshold, max_output_size, score_threshold)
    return _nms_fast(b, by_score(s, sthr), thr, cap)


def batched_nms_numpy(boxes, scores, classes, iou_threshold, max_output_size=None,
                      score_threshold=None) -> np.ndarray:
    """Class-aware greedy NMS (boxes of different classes never suppress each other)."""
    b, s, thr, cap, sthr = check_nms_args(boxes, scores, iou_threshold, max_output_size, score_threshold)
    c = check_classes(classes, b.shape[0])
    return _nms_fast(b, by_score(s, sthr), thr, cap, classes=c)


def _nms_fast(b, order, thr, cap, classes=None):
    """Blocked greedy while the kept boxes remove many others (piled-up boxes, e.g. RPN
    proposals): the best ``_BLOCK`` remaining candidates are resolved among themselves (a small
    IoU matrix and a short loop; they are a prefix of the score order, so this is exact), then
    their kept boxes suppress the rest: the pairs within each kept box's x window (see
    :class:`_XWindows`), or one (k, R) IoU matrix at low thresholds. Once a block removes fewer than
    ``_SWITCH`` boxes, the remaining candidates (none suppressed by the boxes kept so far) go to
    the sweep. Same answer either way."""
    kept: list[int] = []
    rb = b[order]
    idx = order.astype(np.intp)
    rc = None if classes is None else classes[order]
    if rc is not None:  # classes split the piles: the sweep's pairs are few from the start
        sub = _nms_sweep(rb, thr, rc)
        if sub is not None:
            return idx[sub[:cap]].astype(np.int64)
    m = rb.shape[0]
    pending = np.arange(m)       # positions in score order not yet kept or removed
    removed = np.zeros(m, bool)
    near = _XWindows(rb, thr) if thr >= _WINDOW_MIN_THR else None
    sweep_ok = True
    while pending.size and len(kept) < cap:
        k = min(_BLOCK, pending.size)
        blk_pos = pending[:k]
        blk = rb[blk_pos]
        over = np.triu(_iou_core(blk, blk) > thr, 1)
        if rc is not None:
            over &= rc[blk_pos, None] == rc[None, blk_pos]
        alive = np.ones(k, bool)
        for i, row in enumerate(over):
            if alive[i] and row.any():
                alive &= ~row
        new = blk_pos[alive]
        kept.extend(new.tolist())
        rest = pending[k:]
        if near is None:
            drop = _iou_core(rb[new], rb[rest]) > thr
            if rc is not None:
                drop &= rc[new, None] == rc[None, rest]
            stay = ~drop.any(axis=0)
        else:  # only boxes in a kept box's x window can overlap it above the threshold
            hit = near.partners(new, removed, blk_pos[-1], rc)
            removed[hit] = True
            stay = ~removed[rest]
        pending = rest[stay]
        if sweep_ok and pending.size and len(kept) < cap and int(stay.size - pending.size) < _SWITCH:
            sub = _nms_sweep(rb[pending], thr, None if rc is None else rc[pending])
            if sub is not None:
                kept.extend(pending[sub].tolist())
                break
            sweep_ok = False  # too many pairs: blocks are the better tool here
    return idx[np.array(kept[:cap], dtype=np.intp)].astype(np.int64)


class _XWindows:
    """The score-sorted boxes indexed by their left edge. IoU(a, b) > thr needs
    ``b.x1 - a.x1 < (1 - thr) * a.w`` (IoU <= x-overlap / a.w) and ``a.x1 - b.x1 < (1 - thr) / thr
    * a.w`` (IoU <= a.w / b.w as well), so a box's partners lie in one window of that order."""

    def __init__(self, sb, thr):
        self.thr = thr
        self.cols, self.area = _columns(sb)
        self.x1 = self.cols[0]
        self.w = self.cols[2] - self.x1
        self.by_x = np.argsort(self.x1, kind="stable")
        self.xs = self.x1[self.by_x]

    def partners(self, src, removed, after, classes=None):
        """Positions ``b > after``, not ``removed`` (and of the same class), with
        IoU(src[i], b) > thr for some i."""
        x1, w, thr = self.x1[src], self.w[src], self.thr
        # widened by a hair: the exact IoU test decides; the window only prunes
        slack = 1e-9 * (np.abs(x1) + w) + 1e-300
        lo = np.searchsorted(self.xs, x1 - (1.0 - thr) / thr * w * (1.0 + 1e-9) - slack, "left")
        hi = np.searchsorted(self.xs, x1 + (1.0 - thr) * w * (1.0 + 1e-9) + slack, "right")
        cnt = hi - lo
        ends = np.cumsum(cnt)
        a = np.repeat(src, cnt)
        b = self.by_x[np.arange(int(ends[-1]) if cnt.size else 0) - np.repeat(ends - cnt - lo, cnt)]
        keep = (b > after) & ~removed[b]
        if classes is not None:
            keep &= classes[a] == classes[b]
        a, b = a[keep], b[keep]
        return b[_pairs_over(self.cols, self.area, a, b, thr)]


def _columns(sb):
    """The four coordinate columns of ``(M, 4)`` boxes as contiguous arrays, and the areas."""
    x1, y1, x2, y2 = (np.ascontiguousarray(sb[:, k]) for k in range(4))
    return (x1, y1, x2, y2), (x2 - x1) * (y2 - y1)


def _pairs_over(cols, area, a, b, thr):
    """``IoU(box a[i], box b[i]) > thr`` for each pair of boxes given by ``cols`` (x1, y1, x2,
    y2), with the same float64 arithmetic as :func:`iou_numpy` (hence the same decisions)."""
    x1, y1, x2, y2 = cols
    iw = np.minimum(x2[a], x2[b])
    iw -= np.maximum(x1[a], x1[b])
    np.maximum(iw, 0.0, out=iw)
    ih = np.minimum(y2[a], y2[b])
    ih -= np.maximum(y1[a], y1[b])
    np.maximum(ih, 0.0, out=ih)
    iw *= ih                                   # intersection
    union = area[a] + area[b]
    union -= iw
    # a cheap pre-test, then the exact one: the rounded product thr * union can sit a float step
    # above the quotient's boundary, so the pre-test uses a hair less than thr (never rejecting a
    # pair that the exact test keeps)
    hit = iw > (thr * (1.0 - 1e-12)) * union if thr > 0 else iw > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        hit[hit] = (iw[hit] / union[hit]) > thr
    return hit


_BLOCK = 64
_SWITCH = 256
_WINDOW_MIN_THR = 0.1        # below it, x windows are too wide to pay off
_PAIR_BUDGET = 2_000_000     # candidate pairs handled per chunk
_PAIR_LIMIT = 12_000_000     # above this, the textbook loop is the better tool


def _sweep_counts(lo_edge, width, thr):
    """Sort boxes by their low edge; box a can only pair (IoU > thr) with a box b starting at or
    after it if ``b.lo < a.lo + (1 - thr) * a.width`` (the overlap must exceed thr * a.width, as
    IoU <= overlap / width). Returns the sort order, each box's first and end partner position."""
    srt = np.argsort(lo_edge, kind="stable")
    ks = lo_edge[srt]
    ws = width[srt]
    # widen the window by a hair: the exact IoU test below decides; the window only prunes
    reach = ks + (1.0 - thr) * ws * (1.0 + 1e-9) + 1e-9 * (np.abs(ks) + ws) + 1e-300
    hi = np.searchsorted(ks, reach, side="right")
    lo = np.arange(1, ks.size + 1)
    return srt, lo, np.maximum(hi, lo)


def _nms_sweep(sb, thr, sc=None):
    """Kept positions (ascending, i.e. in score order) of greedy NMS on score-sorted boxes
    ``sb`` (M, 4) float64, or None when too many candidate pairs (caller falls back)."""
    m = sb.shape[0]
    cols, area = _columns(sb)
    x1, y1, x2, y2 = cols
    w, h = x2 - x1, y2 - y1
    live = np.flatnonzero(area > 0)  # zero-area boxes have IoU 0 with everything: no edges
    if live.size == 0:
        return _greedy_on_graph(m, np.zeros(0, np.intp), np.zeros(0, np.intp))
    best = None
    for lo_edge, width in ((x1, w), (y1, h)):
        key, width = lo_edge[live], width[live]
        if sc is not None:  # one band of the sort key per class, so windows stay in their class
            rank = np.unique(sc[live], return_inverse=True)[1]
            lowest = key.min()
            key = (key - lowest) + rank * ((key.max() - lowest) + 2.0 * width.max() + 1.0)
        srt, lo, hi = _sweep_counts(key, width, thr)
        total = int((hi - lo).sum())
        if best is None or total < best[0]:
            best = (total, live[srt], lo, hi)
    total, ids, lo, hi = best
    if total > _PAIR_LIMIT:
        return None
    cnt = hi - lo
    ends = np.cumsum(cnt)
    srcs, dsts = [], []
    p0 = 0
    while p0 < ids.size:  # chunks of about _PAIR_BUDGET pairs
        base = ends[p0 - 1] if p0 else 0
        p1 = max(p0 + 1, int(np.searchsorted(ends, base + _PAIR_BUDGET, side="right")))
        c = cnt[p0:p1]
        n_pairs = int(c.sum())
        if n_pairs:
            first = np.repeat(np.arange(p0, p1), c)
            second = np.arange(n_pairs) - np.repeat(ends[p0:p1] - c - base, c) + np.repeat(lo[p0:p1], c)
            a, bb = ids[first], ids[second]
            hit = _pairs_over(cols, area, a, bb, thr)
            if sc is not None:
                hit &= sc[a] == sc[bb]
            a, bb = a[hit], bb[hit]
            srcs.append(np.minimum(a, bb))
            dsts.append(np.maximum(a, bb))
        p0 = p1
    src = np.concatenate(srcs) if srcs else np.zeros(0, np.intp)
    dst = np.concatenate(dsts) if dsts else np.zeros(0, np.intp)
    return _greedy_on_graph(m, src, dst)


def _greedy_on_graph(m, src, dst):
    """Greedy keep/remove on a suppression graph (edge src -> dst, src earlier in score order):
    a box is kept iff no earlier KEPT box points at it. Resolved in vectorized rounds: boxes with
    no live incoming edge are kept, boxes pointed at by a kept box are removed, edges touching
    resolved boxes are dropped. Long chains finish with a plain loop."""
    status = np.zeros(m, np.int8)          # 0 unknown, 1 kept, 2 removed
    for _ in range(64):
        blocked = np.zeros(m, bool)
        blocked[dst] = True
        status[(status == 0) & ~blocked] = 1
        if dst.size == 0:
            break
        status[dst[status[src] == 1]] = 2
        live = (status[src] == 0) & (status[dst] == 0)
        src, dst = src[live], dst[live]
    else:  # a long chain of boxes each suppressing the next: finish sequentially
        by_src = np.argsort(src, kind="stable")
        src, dst = src[by_src], dst[by_src]
        starts = np.searchsorted(src, np.arange(m + 1))
        for i in np.flatnonzero(status == 0).tolist():
            if status[i] == 0:
                status[i] = 1
                out = dst[starts[i]:starts[i + 1]]
                status[out[status[out] == 0]] = 2
    return np.flatnonzero(status == 1)


def nms_tf(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    """Greedy NMS in TensorFlow: tensors in, int64 kept indices out; works under
    ``tf.function(jit_compile=True)``."""
    return _nms_tf(boxes, scores, None, iou_threshold, max_output_size, score_threshold)


def batched_nms_tf(boxes, scores, classes, iou_threshold, max_output_size=None,
                   score_threshold=None):
    """Class-aware greedy NMS in TensorFlow."""
    return _nms_tf(boxes, scores, tf_classes(classes, boxes), iou_threshold, max_output_size,
                   score_threshold)


_TILE = 256


def _nms_tf(boxes, scores, classes, iou_threshold, max_output_size, score_threshold):
    """Validate (eagerly when possible), then run the tiled greedy NMS graph."""
    import tensorflow as tf

    b, s, c, thr, cap, sthr = tf_nms_args(boxes, scores, classes, iou_threshold,
                                          max_output_size, score_threshold)
    eager = tf.executing_eagerly()
    if eager:  # compiled once per dtype and per number of tiles, not a Python-speed eager loop
        nb = int(b.shape[0])
        if nb == 0:
            return tf.zeros([0], tf.int64)
        pad = -nb % _TILE  # padded boxes score -inf: never candidates (-inf > sthr is false)
        bp = tf.pad(b, [[0, pad], [0, 0]])
        sp = tf.pad(s, [[0, pad]], constant_values=float("-inf"))
        cp = tf.pad(c, [[0, pad]])
        # XLA pays off on large inputs; small ones skip its compile time
        return _nms_tf_graph(b.dtype, nb > 2 * _TILE)(bp, sp, cp, thr, tf.minimum(cap, nb), sthr)
    return _nms_tf_tiled(b, s, c, thr, cap, sthr)


_GRAPHS: dict = {}


def _nms_tf_graph(dtype, jit):
    import tensorflow as tf

    if (dtype, jit) not in _GRAPHS:
        _GRAPHS[dtype, jit] = tf.function(_nms_tf_tiled, jit_compile=jit, input_signature=[
            tf.TensorSpec([None, 4], dtype), tf.TensorSpec([None], dtype),
            tf.TensorSpec([None], tf.int64), tf.TensorSpec([], dtype),
            tf.TensorSpec([], tf.int32), tf.TensorSpec([], dtype)])
    return _GRAPHS[dtype, jit]


def _nms_tf_tiled(b, s, c, thr, cap, sthr):
    """Greedy NMS on fixed-size tiles of the score-sorted boxes (static shapes inside the loop,
    so XLA can compile it; only the final boolean mask and slice have a data-dependent size).

    Tile t is first suppressed by the boxes kept so far (kept boxes are appended to a buffer,
    compared one (T, T) IoU block at a time), then by itself:
    x <- candidates & ~any_i(x[i] & (IoU[i, j] > thr) & (i < j)), iterated to its fixed point,
    which is the greedy answer (box k's state is final after k + 1 steps).
    """
    import tensorflow as tf

    T = _TILE
    if b.shape[0] == 0:
        return tf.zeros([0], tf.int64)
    n = tf.shape(b)[0]
    # decreasing score, equal scores by increasing index (top_k is stable that way)
    order = tf.math.top_k(s, k=n, sorted=True).indices
    valid = tf.gather(s, order) > sthr
    num_tiles = tf.maximum((n + T - 1) // T, 1)  # at least one (padded) tile, even for n = 0
    pad = num_tiles * T - n
    sb = tf.reshape(tf.pad(tf.gather(b, order), [[0, pad], [0, 0]]), [num_tiles, T, 4])
    sc = tf.reshape(tf.pad(tf.gather(c, order), [[0, pad]]), [num_tiles, T])
    valid = tf.reshape(tf.pad(valid, [[0, pad]]), [num_tiles, T])
    upper = tf.linalg.band_part(tf.ones([T, T], tf.bool), 0, -1) & ~tf.eye(T, dtype=tf.bool)
    lane = tf.range(T)

    def over(bi, ci, bj, cj):
        return (iou_tf_core(bi, bj) > thr) & tf.equal(ci[:, None], cj[None, :])

    def tile_body(t, keep, kb, kc, count):
        tb, tc, cand = sb[t], sc[t], valid[t]

        def cross_body(j, cand):
            live = j * T + lane < count
            hit = over(kb[j], kc[j], tb, tc) & live[:, None]
            return j + 1, cand & ~tf.reduce_any(hit, axis=0)

        _, cand = tf.while_loop(lambda j, cand: (j * T < count) & tf.reduce_any(cand),
                                cross_body, (0, cand))
        self_over = over(tb, tc, tb, tc) & upper

        def self_body(x, _):
            new = cand & ~tf.reduce_any(self_over & x[:, None], axis=0)
            return new, tf.reduce_any(new != x)

        cand, _ = tf.while_loop(lambda x, changed: changed, self_body, (cand, tf.constant(True)))
        # append the kept boxes of this tile to the buffer (the others go to a scratch tile)
        pos = tf.where(cand, count + tf.cumsum(tf.cast(cand, tf.int32)) - 1, num_tiles * T + lane)
        where = tf.stack([pos // T, pos % T], axis=1)
        kb = tf.tensor_scatter_nd_update(kb, where, tb)
        kc = tf.tensor_scatter_nd_update(kc, where, tc)
        keep = tf.tensor_scatter_nd_update(keep, [[t]], cand[None])
        return t + 1, keep, kb, kc, count + tf.reduce_sum(tf.cast(cand, tf.int32))

    first_valid = tf.pad(valid[:, 0], [[0, 1]])  # a tile starting with a non-candidate ends the scan

    def more(t, keep, kb, kc, count):
        return (t < num_tiles) & (count < cap) & first_valid[t]

    init = (0, tf.zeros([num_tiles, T], tf.bool), tf.zeros([num_tiles + 1, T, 4], b.dtype),
            tf.zeros([num_tiles + 1, T], c.dtype), tf.constant(0))
    _, keep, _, _, _ = tf.while_loop(more, tile_body, init)
    keep = tf.reshape(keep, [-1])
    keep &= tf.cumsum(tf.cast(keep, tf.int32)) <= cap  # a mask, not a slice: cap stays a runtime value
    return tf.cast(tf.boolean_mask(tf.pad(order, [[0, pad]]), keep), tf.int64)
