"""RoI pooling (Fast R-CNN) and RoI align (Mask R-CNN, ``aligned=True``), in three tiers.

Shapes and conventions
----------------------
* ``feature_map``: ``(H, W, C)`` (channels last), any real dtype.
* ``rois``: float ``(R, 4)`` xyxy boxes in *image* coordinates (continuous pixels, no "+1");
  ``spatial_scale`` (``1 / stride``) maps them onto the feature map.
* ``output_size``: ``(ph, pw)`` (or one int for a square output).
* Output: ``(R, ph, pw, C)``; float64 for the loops/numpy tiers, the feature map's float dtype
  for the TF tier. ``R = 0`` gives ``(0, ph, pw, C)``; an ``H = 0`` or ``W = 0`` map gives zeros.

RoI pooling (torchvision ``roi_pool``, Caffe's Fast R-CNN layer)
---------------------------------------------------------------
1. ``x1' = round(x1 * spatial_scale)`` etc., rounding half *away from zero* (C's ``round``:
   ``round(2.5) = 3``, ``round(-0.5) = -1``), not Python's/NumPy's/TF's half-to-even.
2. The region is inclusive: ``w = max(x2' - x1' + 1, 1)`` (same for ``h``).
3. Bin ``j`` of ``pw`` covers columns ``[floor(j*w/pw), ceil((j+1)*w/pw))`` offset by ``x1'`` and
   clipped to ``[0, W]``: neighbouring bins may overlap by one column, together they cover the
   region. Computed in integers here (torchvision uses floats: same result barring round-off).
4. Each output is the maximum over its bin; an empty bin (clipped away) gives 0.

The numpy and TF tiers answer every bin with four look-ups in a table of power-of-two block
maxima (a 2-D "sparse table"), so a bin costs the same whatever its size.

RoI align (torchvision ``roi_align(..., aligned=True)``, Detectron2 ``ROIAlignV2``)
---------------------------------------------------------------------------------
1. ``start = x1 * spatial_scale - 0.5``, ``end = x2 * spatial_scale - 0.5`` (the half-pixel shift:
   pixel ``i``'s value sits at continuous coordinate ``i + 0.5``); ``roi_w = end - start``.
2. ``bin_w = roi_w / pw``; ``g_x = sampling_ratio`` if it is ``> 0``, else ``ceil(roi_w / pw)``
   (adaptive, per region and per axis; 0 for a zero-width region).
3. Sample ``k`` of bin ``j`` is at ``x = start + j*bin_w + (k + 0.5)*bin_w/g_x``, ``k < g_x``.
4. Bilinear interpolation with torchvision's border rule: a sample with ``y < -1`` or ``y > H``
   (``x < -1`` or ``x > W``) contributes 0; otherwise ``y`` is clamped to ``[0, H - 1]`` (so a sample in
   ``[-1, 0)`` reads row 0 and one in ``(H - 1, H]`` reads row ``H - 1``).
5. Each output is the sum of its samples divided by ``max(g_y * g_x, 1)`` (out-of-range samples
   still count in the denominator).

Both steps 3-5 are separable: the output is ``A_y[r] @ F @ A_x[r]^T`` per channel, where
``A_y[r, p, h]`` is the average bilinear ("hat") weight of bin ``p``'s row samples on row ``h``. The
numpy and TF tiers compute it that way: two matrix products, no loop over bins or samples.

TF tier and the adaptive sampling ratio: ``g`` depends on the data, but XLA needs static shapes.
``roi_align_tf`` enumerates a static number ``K`` of sample slots per bin and axis and masks the
slots ``k >= g``: ``K = sampling_ratio`` when it is positive, else ``K = H + 4`` (``W + 4``) slots,
starting at the first sample that can be in range. That is enough for any region: with
``g = ceil(bin)`` samples are more than half a pixel apart, so at most ``H + 2`` of them fall in
``[-1, H]``; samples outside that range contribute 0 anyway. ``output_size`` and
``sampling_ratio`` must be Python values in the TF tier; ``spatial_scale`` may be a tensor.
The TF tiers check shapes when tracing and values (bad rows, scale) only when running eagerly:
compiled code cannot raise a ``ValueError`` that names a row.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..conventions import as_boxes

__all__ = [
    "roi_pool_loops", "roi_pool_numpy", "roi_pool_tf",
    "roi_align_loops", "roi_align_numpy", "roi_align_tf",
    "crop_and_resize_pool_baseline", "roi_align_crop_and_resize", "c_round",
]

_CHUNK_ELEMENTS = 1 << 22   # numpy tiers: process regions in chunks of about this many elements


# -- validation (shared by every tier) --------------------------------------------------------
def _output_size(output_size) -> tuple[int, int]:
    """``(ph, pw)`` as Python ints >= 1 from an int or a pair."""
    if isinstance(output_size, numbers.Integral) and not isinstance(output_size, bool):
        size = (int(output_size), int(output_size))
    else:
        try:
            size = tuple(output_size)
        except TypeError:
            raise ValueError(f"output_size: expected an int or a pair (ph, pw), got {output_size!r}") from None
        if len(size) != 2 or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size):
            raise ValueError(f"output_size: expected a pair of ints (ph, pw), got {output_size!r}")
        size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ValueError(f"output_size: both sizes must be >= 1, got {size}")
    return size


def _spatial_scale(spatial_scale) -> float:
    try:
        scale = float(spatial_scale)
    except (TypeError, ValueError):
        raise ValueError(f"spatial_scale: expected a positive number, got {spatial_scale!r}") from None
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"spatial_scale: expected a positive finite number (1 / stride), got {scale}")
    return scale


def _sampling_ratio(sampling_ratio) -> int:
    if not isinstance(sampling_ratio, numbers.Integral) or isinstance(sampling_ratio, bool):
        raise ValueError(f"sampling_ratio: expected an int (<= 0 for adaptive), got {sampling_ratio!r}")
    return int(sampling_ratio)


def _feature_map(feature_map) -> np.ndarray:
    try:
        fm = np.asarray(feature_map, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"feature_map: expected a numeric (H, W, C) array: {err}") from None
    if fm.ndim != 3:
        raise ValueError(f"feature_map: expected shape (H, W, C), got shape {fm.shape}"
                         + (" (add a channel axis: fm[..., None])" if fm.ndim == 2 else ""))
    return fm


def _check(feature_map, rois, output_size, spatial_scale):
    return (_feature_map(feature_map), as_boxes(rois, name="rois"), _output_size(output_size),
            _spatial_scale(spatial_scale))


def c_round(x):
    """Round half away from zero, elementwise (C's ``round``): 2.5 -> 3, -2.5 -> -3, 1.4 -> 1."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


# -- RoI pooling -------------------------------------------------------------------------------
def _pool_extents(start: int, length: int, n_bins: int, size: int, j: int) -> tuple[int, int]:
    """Bin ``j``'s half-open range ``[lo, hi)`` on an axis of ``size`` cells (plain ints)."""
    lo = (j * length) // n_bins + start
    hi = -((-(j + 1) * length) // n_bins) + start
    return min(max(lo, 0), size), min(max(hi, 0), size)


def roi_pool_loops(feature_map, rois, output_size, spatial_scale):
    """Fast R-CNN RoI max pooling with plain loops.

    Args:
      feature_map: ``(H, W, C)``. rois: float ``(R, 4)`` xyxy image coordinates.
      output_size: ``(ph, pw)`` or an int. spatial_scale: ``1 / stride`` (> 0).
    Returns:
      float64 ``(R, ph, pw, C)``; empty bins are 0. See the module docstring for the bin rule.
    """
    fm, boxes, (ph, pw), scale = _check(feature_map, rois, output_size, spatial_scale)
    height, width, channels = fm.shape
    out = np.zeros((len(boxes), ph, pw, channels))
    for r, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        sx, sy, ex, ey = (int(c_round(v * scale)) for v in (x1, y1, x2, y2))
        rw, rh = max(ex - sx + 1, 1), max(ey - sy + 1, 1)
        for i in range(ph):
            h0, h1 = _pool_extents(sy, rh, ph, height, i)
            for j in range(pw):
                w0, w1 = _pool_extents(sx, rw, pw, width, j)
                if h1 <= h0 or w1 <= w0:
                    continue                       # empty bin: stays 0
                best = np.full(channels, -np.inf)  # one running maximum per channel
                for y in range(h0, h1):
                    for x in range(w0, w1):
                        best = np.maximum(best, fm[y, x])
                out[r, i, j] = best
    return out


def _pool_ranges_np(start, length, n_bins, size):
    """``(R, n_bins)`` int64 ``lo, hi`` of every bin (vectorized :func:`_pool_extents`)."""
    j = np.arange(n_bins, dtype=np.int64)
    lo = (j * length[:, None]) // n_bins + start[:, None]
    hi = -((-(j + 1) * length[:, None]) // n_bins) + start[:, None]
    return np.clip(lo, 0, size), np.clip(hi, 0, size)


def _floor_log2(n, levels: int):
    """floor(log2(n)) of an int array ``n >= 1``, for results below ``levels`` (exact, no floats)."""
    k = np.zeros_like(n)
    for j in range(1, levels):
        k += n >= (1 << j)
    return k


def _block_max_np(fm: np.ndarray, ly: int, lx: int) -> np.ndarray:
    """``table[a, b, h, w] = max(fm[h : h + 2**a, w : w + 2**b])``, shape ``(ly, lx, H, W, C)``.

    Entries whose block sticks out of the map hold a smaller block's maximum; queries never read
    them. Built by doubling: a ``2**a`` block is the max of two ``2**(a-1)`` blocks.
    """
    height, width = fm.shape[:2]
    table = np.empty((ly, lx) + fm.shape)
    table[0, 0] = fm
    for b in range(1, lx):
        half = 1 << (b - 1)
        table[0, b] = table[0, b - 1]
        table[0, b, :, : width - half] = np.maximum(table[0, b - 1, :, : width - half],
                                                    table[0, b - 1, :, half:])
    for a in range(1, ly):
        half = 1 << (a - 1)
        table[a] = table[a - 1]
        table[a, :, : height - half] = np.maximum(table[a - 1, :, : height - half],
                                                  table[a - 1, :, half:])
    return table


def roi_pool_numpy(feature_map, rois, output_size, spatial_scale):
    """Fast R-CNN RoI max pooling, vectorized (float64).

    Same contract as :func:`roi_pool_loops`. A range maximum is the maximum of two overlapping
    power-of-two blocks (``max(x[a:b]) = max(block(a), block(b - 2**k))`` with
    ``k = floor(log2(b - a))``), in 2-D four blocks: a table of block maxima is built once per
    map, then every bin is four gathers, whatever its size.
    """
    fm, boxes, (ph, pw), scale = _check(feature_map, rois, output_size, spatial_scale)
    height, width, channels = fm.shape
    n = len(boxes)
    out = np.zeros((n, ph, pw, channels))
    if n == 0 or height == 0 or width == 0 or channels == 0:
        return out
    q = c_round(boxes * scale).astype(np.int64)                  # x1', y1', x2', y2'
    rw = np.maximum(q[:, 2] - q[:, 0] + 1, 1)
    rh = np.maximum(q[:, 3] - q[:, 1] + 1, 1)
    w0, w1 = _pool_ranges_np(q[:, 0], rw, pw, width)             # (R, pw)
    h0, h1 = _pool_ranges_np(q[:, 1], rh, ph, height)            # (R, ph)
    bh, bw = int((h1 - h0).max()), int((w1 - w0).max())          # largest bin (after clipping)
    if bh <= 0 or bw <= 0:
        return out                                               # every bin is empty
    ly, lx = bh.bit_length(), bw.bit_length()                    # levels 0 .. floor(log2(size))
    table = _block_max_np(fm, ly, lx)
    ky = _floor_log2(np.maximum(h1 - h0, 1), ly)                 # (R, ph)
    kx = _floor_log2(np.maximum(w1 - w0, 1), lx)                 # (R, pw)
    tops = [np.clip(h0, 0, height - 1), np.clip(h1 - (1 << ky), 0, height - 1)]
    lefts = [np.clip(w0, 0, width - 1), np.clip(w1 - (1 << kx), 0, width - 1)]
    a, b = ky[:, :, None], kx[:, None, :]
    out = np.max([table[a, b, t[:, :, None], l[:, None, :]] for t in tops for l in lefts], axis=0)
    empty = (h1 <= h0)[:, :, None] | (w1 <= w0)[:, None, :]      # (R, ph, pw)
    out[empty] = 0.0
    return out


def _tf_checks(feature_map, rois, output_size, spatial_scale, sampling_ratio=None):
    """Static checks always; value checks (naming the bad row) when running eagerly."""
    import tensorflow as tf

    size = _output_size(output_size)
    if sampling_ratio is not None:
        _sampling_ratio(sampling_ratio)
    fm = tf.convert_to_tensor(feature_map)
    if not fm.dtype.is_floating:
        fm = tf.cast(fm, tf.float32)
    boxes = tf.cast(tf.convert_to_tensor(rois), tf.float64)
    if fm.shape.rank != 3:
        raise ValueError(f"feature_map: expected shape (H, W, C), got shape {tuple(fm.shape)}")
    if boxes.shape.rank != 2 or boxes.shape[-1] not in (4, None):
        raise ValueError(f"rois: expected shape (N, 4) in xyxy format, got shape {tuple(boxes.shape)}")
    if isinstance(spatial_scale, numbers.Real):
        _spatial_scale(spatial_scale)
    if tf.executing_eagerly():
        as_boxes(boxes.numpy(), name="rois")
        if not isinstance(spatial_scale, numbers.Real):
            _spatial_scale(float(tf.convert_to_tensor(spatial_scale).numpy()))
    scale = tf.cast(spatial_scale, tf.float64)
    return fm, boxes, size, scale


def _tf_c_round(x):
    import tensorflow as tf

    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)   # tf.round rounds half to even


def _block_max_tf(fm, ly: int, lx: int):
    """TF twin of :func:`_block_max_np` (static ``H``, ``W``): ``(ly, lx, H, W, C)``."""
    import tensorflow as tf

    height, width = fm.shape[0], fm.shape[1]
    cols = [fm]
    for b in range(1, lx):
        prev, half = cols[-1], 1 << (b - 1)
        cols.append(tf.concat([tf.maximum(prev[:, : width - half], prev[:, half:]),
                               prev[:, width - half:]], axis=1))
    levels = []
    for col in cols:
        rows = [col]
        for a in range(1, ly):
            prev, half = rows[-1], 1 << (a - 1)
            rows.append(tf.concat([tf.maximum(prev[: height - half], prev[half:]),
                                   prev[height - half:]], axis=0))
        levels.append(tf.stack(rows))            # (ly, H, W, C)
    return tf.stack(levels, axis=1)              # (ly, lx, H, W, C)


def roi_pool_tf(feature_map, rois, output_size, spatial_scale):
    """Fast R-CNN RoI max pooling in pure TF (works under ``tf.function(jit_compile=True)``).

    Args: as :func:`roi_pool_loops`; tensors or arrays; ``output_size`` a Python int or pair.
    Returns: ``(R, ph, pw, C)`` tensor of the feature map's float dtype.
    With a static ``H, W``: the block-maximum table of :func:`roi_pool_numpy`, with every level
    up to ``floor(log2(H))`` (the levels must not depend on the data), then four gathers per bin.
    Without (a shape-relaxed trace): a masked separable maximum, which XLA fuses into the
    reductions (the ``(R, pw, H, W, C)`` broadcast is computed, not stored; slower).
    """
    import tensorflow as tf

    fm, boxes, (ph, pw), scale = _tf_checks(feature_map, rois, output_size, spatial_scale)
    height, width = tf.shape(fm, out_type=tf.int64)[0], tf.shape(fm, out_type=tf.int64)[1]
    q = tf.cast(_tf_c_round(boxes * scale), tf.int64)
    rw = tf.maximum(q[:, 2] - q[:, 0] + 1, 1)
    rh = tf.maximum(q[:, 3] - q[:, 1] + 1, 1)

    def ranges(start, length, n_bins, size):
        j = tf.range(n_bins, dtype=tf.int64)
        lo = tf.math.floordiv(j * length[:, None], n_bins) + start[:, None]
        hi = -tf.math.floordiv(-(j + 1) * length[:, None], n_bins) + start[:, None]
        return tf.clip_by_value(lo, 0, size), tf.clip_by_value(hi, 0, size)

    w0, w1 = ranges(q[:, 0], rw, pw, width)
    h0, h1 = ranges(q[:, 1], rh, ph, height)
    empty = (h1 <= h0)[:, :, None] | (w1 <= w0)[:, None, :]
    static_h, static_w = fm.shape[0], fm.shape[1]
    if static_h is not None and static_w is not None:
        if static_h == 0 or static_w == 0 or fm.shape[2] == 0:   # gather_nd rejects empty params
            return tf.zeros([tf.shape(boxes)[0], ph, pw, tf.shape(fm)[2]], fm.dtype)
        ly, lx = static_h.bit_length(), static_w.bit_length()
        table = _block_max_tf(fm, ly, lx)

        def level(length, levels):
            return tf.add_n([tf.cast(length >= (1 << j), tf.int64) for j in range(1, levels)]
                            + [tf.zeros_like(length)])

        ky, kx = level(h1 - h0, ly), level(w1 - w0, lx)
        tops = [tf.clip_by_value(h0, 0, height - 1),
                tf.clip_by_value(h1 - tf.bitwise.left_shift(tf.ones_like(ky), ky), 0, height - 1)]
        lefts = [tf.clip_by_value(w0, 0, width - 1),
                 tf.clip_by_value(w1 - tf.bitwise.left_shift(tf.ones_like(kx), kx), 0, width - 1)]
        grid = tf.stack([ph, pw])

        def at(index_y, index_x):               # (R, ph) and (R, pw) -> (R, ph, pw)
            n = tf.shape(index_y)[0]
            shape = tf.concat([[n], grid], 0)
            return tf.broadcast_to(index_y[:, :, None], shape), tf.broadcast_to(index_x[:, None, :], shape)

        a, b = at(ky, kx)
        corners = []
        for top in tops:
            for left in lefts:
                t, l = at(top, left)
                corners.append(tf.gather_nd(table, tf.stack([a, b, t, l], axis=-1)))
        pooled = tf.reduce_max(tf.stack(corners), axis=0)
    else:
        cols, rows = tf.range(width), tf.range(height)
        in_col = (cols >= w0[..., None]) & (cols < w1[..., None])        # (R, pw, W)
        in_row = (rows >= h0[..., None]) & (rows < h1[..., None])        # (R, ph, H)
        low = tf.constant(-np.inf, fm.dtype)
        colmax = tf.reduce_max(tf.where(in_col[:, :, None, :, None], fm[None, None], low), axis=3)
        pooled = tf.reduce_max(tf.where(in_row[:, :, None, :, None], colmax[:, None], low), axis=3)
    return tf.where(empty[..., None], tf.zeros_like(pooled), pooled)


# -- RoI align ---------------------------------------------------------------------------------
def _bilinear(fm: np.ndarray, y: float, x: float) -> np.ndarray:
    """torchvision's bilinear read of ``fm`` at continuous (y, x): ``(C,)``, 0 outside [-1, H]x[-1, W]."""
    height, width = fm.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(fm.shape[2])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * fm[y_low, x_low] + hy * lx * fm[y_low, x_high]
            + ly * hx * fm[y_high, x_low] + ly * lx * fm[y_high, x_high])


def roi_align_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    """RoI align (``aligned=True``) with plain loops over regions, bins and samples.

    Args:
      feature_map: ``(H, W, C)``. rois: float ``(R, 4)`` xyxy image coordinates.
      output_size: ``(ph, pw)`` or an int. spatial_scale: ``1 / stride`` (> 0).
      sampling_ratio: samples per bin and axis; ``<= 0`` means ``ceil(roi_size / output_size)``.
    Returns:
      float64 ``(R, ph, pw, C)``. See the module docstring for the sampling and border rules.
    """
    fm, boxes, (ph, pw), scale = _check(feature_map, rois, output_size, spatial_scale)
    ratio = _sampling_ratio(sampling_ratio)
    height, width, channels = fm.shape
    out = np.zeros((len(boxes), ph, pw, channels))
    if height == 0 or width == 0:
        return out
    for r, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        start_x, start_y = x1 * scale - 0.5, y1 * scale - 0.5
        roi_w = (x2 * scale - 0.5) - start_x
        roi_h = (y2 * scale - 0.5) - start_y
        bin_w, bin_h = roi_w / pw, roi_h / ph
        gx = ratio if ratio > 0 else math.ceil(roi_w / pw)
        gy = ratio if ratio > 0 else math.ceil(roi_h / ph)
        count = max(gx * gy, 1)
        for i in range(ph):
            for j in range(pw):
                total = np.zeros(channels)
                for iy in range(gy):
                    y = start_y + i * bin_h + (iy + 0.5) * bin_h / gy
                    for ix in range(gx):
                        x = start_x + j * bin_w + (ix + 0.5) * bin_w / gx
                        total += _bilinear(fm, y, x)
                out[r, i, j] = total / count
    return out


def _axis_weights_np(start, length, n_bins, ratio, size):
    """Averaged bilinear weights of one axis: float64 ``(R, n_bins, size)``.

    ``w[r, p, h]`` = (1/g) * sum over bin ``p``'s samples ``y`` of ``hat(clip(y, 0, size-1) - h)``,
    samples outside ``[-1, size]`` left out; ``hat(d) = max(0, 1 - |d|)`` is exactly the
    bilinear weight. Only a window of ``K`` sample slots per bin is enumerated (see module doc).
    """
    bin_len = length / n_bins                                       # (R,)
    g = np.full(length.shape, float(ratio)) if ratio > 0 else np.ceil(length / n_bins)
    base = start[:, None] + np.arange(n_bins) * bin_len[:, None]    # (R, n_bins)
    if ratio > 0:
        slots = ratio
        first = np.zeros(base.shape)
    else:
        slots = int(min(g.max(initial=0.0), size + 4))
        spacing = np.where(g > 0, bin_len / np.maximum(g, 1.0), 1.0)[:, None]
        first = np.ceil((-1.0 - base) / spacing - 0.5) - 1.0        # one slot early, for safety
        first = np.clip(first, 0.0, g[:, None])
    k = first[..., None] + np.arange(slots)                         # (R, n_bins, K)
    pos = base[..., None] + (k + 0.5) * bin_len[:, None, None] / np.maximum(g, 1.0)[:, None, None]
    valid = (k < g[:, None, None]) & (pos >= -1.0) & (pos <= size)
    pos = np.clip(pos, 0.0, size - 1)
    hat = np.maximum(0.0, 1.0 - np.abs(pos[..., None] - np.arange(size)))   # (R, n_bins, K, size)
    weights = (hat * valid[..., None]).sum(axis=2)
    return weights / np.maximum(g, 1.0)[:, None, None]


def roi_align_numpy(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    """RoI align (``aligned=True``), vectorized float64: per region ``A_y @ F @ A_x^T``.

    Same contract as :func:`roi_align_loops`. Regions are processed in chunks (bounded memory);
    there is no Python loop over bins, samples or pixels.
    """
    fm, boxes, (ph, pw), scale = _check(feature_map, rois, output_size, spatial_scale)
    ratio = _sampling_ratio(sampling_ratio)
    height, width, channels = fm.shape
    n = len(boxes)
    out = np.zeros((n, ph, pw, channels))
    if n == 0 or height == 0 or width == 0 or channels == 0:
        return out
    start = boxes[:, :2] * scale - 0.5                   # (x, y)
    length = (boxes[:, 2:] * scale - 0.5) - start
    flat = fm.reshape(height, width * channels)
    side = max(height, width)
    per_region = max(max(ph, pw) * (side + 4) * side, ph * width * channels)
    step = max(1, _CHUNK_ELEMENTS // per_region)
    for a in range(0, n, step):
        b = min(a + step, n)
        ay = _axis_weights_np(start[a:b, 1], length[a:b, 1], ph, ratio, height)   # (r, ph, H)
        ax = _axis_weights_np(start[a:b, 0], length[a:b, 0], pw, ratio, width)    # (r, pw, W)
        rows = (ay.reshape(-1, height) @ flat).reshape(b - a, ph, width, channels)
        # out[r, p, q, c] = sum_w ax[r, q, w] * rows[r, p, w, c]
        cols = ax @ rows.transpose(0, 2, 1, 3).reshape(b - a, width, ph * channels)  # (r, pw, ph*C)
        out[a:b] = cols.reshape(b - a, pw, ph, channels).transpose(0, 2, 1, 3)
    return out


def _axis_weights_tf(start, length, n_bins, ratio, size):
    """TF twin of :func:`_axis_weights_np` with a static number of sample slots (float64)."""
    import tensorflow as tf

    f64 = tf.float64
    size_f = tf.cast(size, f64)
    bin_len = length / n_bins
    g = tf.fill(tf.shape(length), tf.constant(float(ratio), f64)) if ratio > 0 else tf.math.ceil(length / n_bins)
    base = start[:, None] + tf.range(n_bins, dtype=f64) * bin_len[:, None]
    g_safe = tf.maximum(g, 1.0)
    if ratio > 0:
        slots = ratio
        first = tf.zeros_like(base)
    else:
        slots = size + 4                              # static under XLA (from the input shape)
        spacing = tf.where(g > 0, bin_len / g_safe, tf.ones_like(g))[:, None]
        first = tf.math.ceil((-1.0 - base) / spacing - 0.5) - 1.0
        first = tf.clip_by_value(first, 0.0, tf.broadcast_to(g[:, None], tf.shape(first)))
    k = first[..., None] + tf.range(slots, dtype=f64)
    pos = base[..., None] + (k + 0.5) * bin_len[:, None, None] / g_safe[:, None, None]
    valid = (k < g[:, None, None]) & (pos >= -1.0) & (pos <= size_f)
    pos = tf.clip_by_value(pos, 0.0, size_f - 1.0)
    hat = tf.nn.relu(1.0 - tf.abs(pos[..., None] - tf.range(size, dtype=f64)))
    weights = tf.reduce_sum(hat * tf.cast(valid, f64)[..., None], axis=2)
    return weights / g_safe[:, None, None]


def roi_align_tf(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    """RoI align (``aligned=True``) in pure TF; works under ``tf.function(jit_compile=True)``.

    Args: as :func:`roi_align_loops`; ``output_size`` and ``sampling_ratio`` are Python ints.
    Returns: ``(R, ph, pw, C)`` tensor of the feature map's float dtype (geometry in float64).
    The adaptive ratio uses ``H + 4`` / ``W + 4`` masked sample slots (module docstring).
    """
    import tensorflow as tf

    fm, boxes, (ph, pw), scale = _tf_checks(feature_map, rois, output_size, spatial_scale,
                                            sampling_ratio)
    ratio = int(sampling_ratio)
    static = fm.shape
    if (static[0] == 0 or static[1] == 0):
        return tf.zeros([tf.shape(boxes)[0], ph, pw, tf.shape(fm)[2]], fm.dtype)
    height = static[0] if static[0] is not None else tf.shape(fm)[0]
    width = static[1] if static[1] is not None else tf.shape(fm)[1]
    start = boxes[:, :2] * scale - 0.5
    length = (boxes[:, 2:] * scale - 0.5) - start
    ay = tf.cast(_axis_weights_tf(start[:, 1], length[:, 1], ph, ratio, height), fm.dtype)
    ax = tf.cast(_axis_weights_tf(start[:, 0], length[:, 0], pw, ratio, width), fm.dtype)
    rows = tf.einsum("rph,hwc->rpwc", ay, fm)
    return tf.einsum("rqw,rpwc->rpqc", ax, rows)


# -- crop_and_resize: the equivalence and the industry baseline --------------------------------
def _sample_boxes_tf(fm, boxes, scale, ph, pw, ratio):
    """Normalised yxyx boxes whose ``crop_and_resize`` grid of ``(ph*s, pw*s)`` points is exactly
    RoI align's sample grid (``s = ratio``). ``crop_and_resize`` maps normalised ``v`` to
    ``v * (H - 1)``: hence the division by ``H - 1`` (not ``H``)."""
    import tensorflow as tf

    height = tf.cast(tf.shape(fm)[0], tf.float64)
    width = tf.cast(tf.shape(fm)[1], tf.float64)
    start = boxes[:, :2] * scale - 0.5
    length = (boxes[:, 2:] * scale - 0.5) - start
    step = length / tf.constant([pw * ratio, ph * ratio], tf.float64)
    first = start + 0.5 * step                       # centre of the first sample (x, y)
    last = start + length - 0.5 * step               # centre of the last sample
    denom = tf.maximum(tf.stack([width, height]) - 1.0, 1.0)
    first, last = first / denom, last / denom
    return tf.stack([first[:, 1], first[:, 0], last[:, 1], last[:, 0]], axis=1)


def _crop_and_resize_samples(feature_map, rois, output_size, spatial_scale, ratio: int):
    """``tf.image.crop_and_resize`` of every region to ``(ph * ratio, pw * ratio)`` sample points,
    float32 ``(R, ph * ratio, pw * ratio, C)``, ready for a ``ratio x ratio`` pooling."""
    import tensorflow as tf

    ph, pw = _output_size(output_size)
    fm = tf.cast(tf.convert_to_tensor(feature_map), tf.float32)
    boxes = tf.cast(tf.convert_to_tensor(rois), tf.float64)
    norm = tf.cast(_sample_boxes_tf(fm, boxes, tf.cast(spatial_scale, tf.float64), ph, pw, ratio), tf.float32)
    return tf.image.crop_and_resize(fm[None], norm, tf.zeros(tf.shape(norm)[0], tf.int32),
                                    (ph * ratio, pw * ratio), method="bilinear")


def roi_align_crop_and_resize(feature_map, rois, output_size, spatial_scale, sampling_ratio=2):
    """RoI align as ``tf.image.crop_and_resize`` to ``(ph*s, pw*s)`` then ``s x s`` average pooling.

    Equal to :func:`roi_align_tf` (fixed ``sampling_ratio = s > 0``) for *interior* regions, whose
    samples all lie in ``[0, H-1] x [0, W-1]``; at the border ``crop_and_resize`` writes 0
    (``extrapolation_value``) where RoI align clamps. Returns float32 ``(R, ph, pw, C)``.
    """
    import tensorflow as tf

    ratio = _sampling_ratio(sampling_ratio)
    if ratio <= 0:
        raise ValueError("roi_align_crop_and_resize needs a fixed sampling_ratio > 0")
    crops = _crop_and_resize_samples(feature_map, rois, output_size, spatial_scale, ratio)
    return tf.nn.avg_pool2d(crops, ratio, ratio, "VALID")


def crop_and_resize_pool_baseline(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    """The usual TF "RoI align": ``crop_and_resize`` to ``(2*ph, 2*pw)`` then 2x2 max pooling
    (``s x s`` with ``s = sampling_ratio`` when it is positive). A timing baseline: its values
    differ from RoI align (max instead of mean, zeros outside the map). float32 ``(R, ph, pw, C)``."""
    import tensorflow as tf

    ratio = _sampling_ratio(sampling_ratio)
    ratio = ratio if ratio > 0 else 2
    crops = _crop_and_resize_samples(feature_map, rois, output_size, spatial_scale, ratio)
    return tf.nn.max_pool2d(crops, ratio, ratio, "VALID")
