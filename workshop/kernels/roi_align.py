"""RoI align (``aligned=True``) on a fixed sample grid: the contract and results of
:func:`workshop.reference.roi.roi_align_loops` (checked on every registry case), timed by
``make bench``.

With a fixed ``sampling_ratio = s > 0`` every bin has ``s x s`` samples, each a bilinear blend
of 4 pixels, so every output is a weighted sum of ``4 s^2`` pixels (``s^2`` samples, 4
neighbours each) with weights ``w_y * w_x / s^2``: the gather that ``crop_and_resize`` does,
with RoI align's border rules and the average over the bin folded into the weights. Per axis
(``(R, n_bins * s)`` samples): ``pos = start + (k + 0.5) * length / (n_bins * s)``; a sample
outside ``[-1, size]`` gets weight 0 (it still counts in the ``s^2``); else ``pos`` is clamped
at 0, ``low = floor(pos)``, and ``low >= size - 1`` reads ``size - 1`` with weight 1; otherwise
``low`` and ``low + 1`` with ``1 - frac`` and ``frac``. Geometry in float64, as in the textbook
tiers.

* :func:`roi_align_numpy`: the weights as a sparse ``(R*ph*pw, H*W)`` matrix with at most
  ``4 s^2`` entries per row (CSR, built directly; per axis, a cell that several samples of a
  bin read is merged into one entry, which leaves about half of them on the benchmark), times
  the ``(H*W, C)`` map; float64.
* :func:`roi_align_tf`: the same gather under XLA: ``tf.gather`` of the pixel rows and a
  weighted sum, fused by XLA into one loop per chunk of regions; the feature map's dtype.

The adaptive ratio (``sampling_ratio <= 0``: ``g = ceil(roi_size / n_bins)`` samples per bin,
per region and axis, up to ``(H + 2)^2`` in range) is no fixed grid: both kernels hand it to the
separable path (``A_y @ F @ A_x^T``: :func:`workshop.kernels.roi.roi_align_numpy`, chunked, and
:func:`workshop.reference.roi.roi_align_tf`).
"""

from __future__ import annotations

import numpy as np

from ..reference.roi import check_roi_args, check_roi_args_tf, check_sampling_ratio
from ..reference.roi import roi_align_tf as _separable_tf
from .roi import roi_align_numpy as _separable_numpy

__all__ = ["roi_align_numpy", "roi_align_tf"]

_CHUNK_ENTRIES = 1 << 21   # numpy: sparse slots per chunk of regions (bounded memory)
_CHUNK_BINS = 2048         # TF: output bins per loop trip


def _axis_samples_np(start, length, n_bins: int, ratio: int, size: int):
    """One axis' bilinear reads: int ``(R, n_bins*ratio, 2)`` cells and float64 weights (0 for
    a sample outside ``[-1, size]``)."""
    k = np.arange(n_bins * ratio)
    pos = start[:, None] + (k + 0.5) * (length / (n_bins * ratio))[:, None]
    valid = (pos >= -1.0) & (pos <= size)
    pos = np.maximum(pos, 0.0)
    low = np.minimum(np.floor(pos), size - 1)
    frac = np.where(low >= size - 1, 0.0, pos - low)
    low = low.astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    weights = np.stack([1.0 - frac, frac], axis=-1) * valid[..., None]
    return np.stack([low, high], axis=-1), weights


def _bin_cells_np(start, length, n_bins: int, ratio: int, size: int):
    """One axis, per bin: its ``2 * ratio`` bilinear reads as int ``(R, n_bins, 2*ratio)`` cells
    and float64 weights, sorted by cell, a repeated cell's weight summed into its first copy (the
    others 0: neighbouring samples often read the same cell)."""
    cells, weights = _axis_samples_np(start, length, n_bins, ratio, size)
    shape = (len(start), n_bins, 2 * ratio)
    order = np.argsort(cells.reshape(shape), axis=-1, kind="stable")
    cells = np.take_along_axis(cells.reshape(shape), order, axis=-1)
    weights = np.take_along_axis(weights.reshape(shape), order, axis=-1)
    for k in range(2 * ratio - 1, 0, -1):                # from the end: runs fold into their start
        same = cells[..., k] == cells[..., k - 1]
        weights[..., k - 1] += np.where(same, weights[..., k], 0.0)
        weights[..., k] = np.where(same, 0.0, weights[..., k])
    return cells, weights


def roi_align_numpy(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    """RoI align (``aligned=True``), float64 ``(R, ph, pw, C)``; contract of
    :func:`workshop.reference.roi.roi_align_loops`.

    Fixed ``sampling_ratio = s > 0``: one sparse product (at most ``4 s^2`` pixel weights per
    bin, see the module doc; a pixel that several samples read appears once, zero weights not
    at all) with the ``(H*W, C)`` map, in chunks of regions. ``sampling_ratio <= 0``
    (per-region sample counts, no fixed grid): the separable kernel
    :func:`workshop.kernels.roi.roi_align_numpy`.
    """
    from scipy import sparse

    ratio = check_sampling_ratio(sampling_ratio)
    if ratio <= 0:
        return _separable_numpy(feature_map, rois, output_size, spatial_scale, sampling_ratio)
    fm, boxes, (ph, pw), scale = check_roi_args(feature_map, rois, output_size, spatial_scale)
    height, width, channels = fm.shape
    n = len(boxes)
    if n == 0 or height == 0 or width == 0 or channels == 0:
        return np.zeros((n, ph, pw, channels))
    flat = np.ascontiguousarray(fm.reshape(height * width, channels))
    start = boxes[:, :2] * scale - 0.5                   # (x, y), the half-pixel shift
    length = (boxes[:, 2:] * scale - 0.5) - start
    side = 2 * ratio
    step = max(1, _CHUNK_ENTRIES // (ph * pw * side * side))
    parts = []
    for a in range(0, n, step):
        b = min(a + step, n)
        iy, wy = _bin_cells_np(start[a:b, 1], length[a:b, 1], ph, ratio, height)
        ix, wx = _bin_cells_np(start[a:b, 0], length[a:b, 0], pw, ratio, width)
        r = b - a                                        # (r, bin y, bin x, cell y, cell x)
        iy, wy = iy.reshape(r, ph, 1, side, 1), wy.reshape(r, ph, 1, side, 1)
        ix, wx = ix.reshape(r, 1, pw, 1, side), wx.reshape(r, 1, pw, 1, side)
        weight = (wy * wx / (ratio * ratio)).reshape(r * ph * pw, side * side)
        keep = weight != 0.0
        index = (iy * width + ix).reshape(keep.shape)[keep]
        indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
        matrix = sparse.csr_array((weight[keep], index.astype(np.int32), indptr),
                                  shape=(r * ph * pw, height * width))
        parts.append((matrix @ flat).reshape(r, ph, pw, channels))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _axis_samples_tf(start, length, n_bins: int, ratio: int, size, dtype):
    """TF twin of :func:`_axis_samples_np`: int32 cells, weights in ``dtype``."""
    import tensorflow as tf

    f64 = tf.float64
    size_f = tf.cast(size, f64)
    k = tf.range(n_bins * ratio, dtype=f64)
    pos = start[:, None] + (k + 0.5) * (length / (n_bins * ratio))[:, None]
    valid = (pos >= -1.0) & (pos <= size_f)
    pos = tf.maximum(pos, 0.0)
    low = tf.minimum(tf.floor(pos), size_f - 1.0)
    frac = tf.where(low >= size_f - 1.0, tf.zeros_like(pos), pos - low)
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, tf.cast(size, tf.int32) - 1)
    weights = tf.stack([1.0 - frac, frac], axis=-1) * tf.cast(valid, f64)[..., None]
    return tf.stack([low, high], axis=-1), tf.cast(weights, dtype)


def roi_align_tf(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    """RoI align (``aligned=True``) in pure TF; works under ``tf.function(jit_compile=True)``.

    Args: as :func:`workshop.reference.roi.roi_align_loops`; ``output_size`` and
    ``sampling_ratio`` Python ints. Returns ``(R, ph, pw, C)`` in the feature map's float dtype
    (the blend in that dtype, float32 for a float32 map; the geometry in float64).

    Fixed ``sampling_ratio = s > 0``: per bin, ``4 s^2`` pixel rows gathered and summed with
    their weights (module doc). The sum runs in a loop over chunks of regions (at least two
    trips): its input, the indices and weights, is then computed once, where XLA would
    otherwise fuse their float64 geometry into the gather and redo it for every channel (about
    80x slower; a loop of one trip is simplified away, hence two). The trip count is static, so
    on a GPU the loop needs no host round trip. ``sampling_ratio <= 0`` (per-region sample
    counts, data-dependent): the separable tier :func:`workshop.reference.roi.roi_align_tf`.
    """
    import tensorflow as tf

    ratio = check_sampling_ratio(sampling_ratio)
    if ratio <= 0:
        return _separable_tf(feature_map, rois, output_size, spatial_scale, sampling_ratio)
    fm, boxes, (ph, pw), scale = check_roi_args_tf(feature_map, rois, output_size, spatial_scale,
                                                   sampling_ratio)
    static = fm.shape
    if static[0] == 0 or static[1] == 0:
        return tf.zeros([tf.shape(boxes)[0], ph, pw, tf.shape(fm)[2]], fm.dtype)
    height = static[0] if static[0] is not None else tf.shape(fm)[0]
    width = static[1] if static[1] is not None else tf.shape(fm)[1]
    start = boxes[:, :2] * scale - 0.5
    length = (boxes[:, 2:] * scale - 0.5) - start
    iy, wy = _axis_samples_tf(start[:, 1], length[:, 1], ph, ratio, height, fm.dtype)
    ix, wx = _axis_samples_tf(start[:, 0], length[:, 0], pw, ratio, width, fm.dtype)
    n = tf.shape(boxes)[0]
    side = 2 * ratio
    index = tf.reshape(iy, [n, ph, 1, side, 1]) * width + tf.reshape(ix, [n, 1, pw, 1, side])
    weight = tf.reshape(wy, [n, ph, 1, side, 1]) * tf.reshape(wx, [n, 1, pw, 1, side])
    weight = weight / tf.cast(ratio * ratio, fm.dtype)
    bins = ph * pw
    trips = tf.maximum(2, -(-n // max(1, _CHUNK_BINS // bins)))
    chunk = -(-n // trips)                               # regions per trip (padded with zeros)
    pad = [[0, trips * chunk - n], [0, 0]]
    per_region = [n, bins * side * side]
    index = tf.reshape(tf.pad(tf.reshape(index, per_region), pad), [trips, chunk * bins, side * side])
    weight = tf.reshape(tf.pad(tf.reshape(weight, per_region), pad), [trips, chunk * bins, side * side])
    table = tf.reshape(fm, [-1, tf.shape(fm)[2]])        # (H*W, C)

    def blend(args):
        rows, w = args                                   # (chunk*bins, 4 s^2)
        return tf.reduce_sum(tf.gather(table, rows) * w[..., None], axis=1)

    out = tf.map_fn(blend, (index, weight), fn_output_signature=fm.dtype)
    return tf.reshape(out, [trips * chunk, ph, pw, tf.shape(fm)[2]])[:n]
