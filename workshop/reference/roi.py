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

These are the textbook versions a learner compares with; :mod:`workshop.kernels.roi` has
the tuned TF one (a table of power-of-two block maxima: four look-ups per bin, whatever its size).

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


def check_sampling_ratio(sampling_ratio) -> int:
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


def check_roi_args(feature_map, rois, output_size, spatial_scale):
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
    fm, boxes, (ph, pw), scale = check_roi_args(feature_map, rois, output_size, spatial_scale)
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


def roi_pool_numpy(feature_map, rois, output_size, spatial_scale):
    """Fast R-CNN RoI max pooling, bins reduced in whole slices (float64).

    Same contract as :func:`roi_pool_loops`. The loops tier already handles the ``C`` channels
    in one call; here the pixels go too. A bin's maximum is the maximum over its rows of each
    row's maximum over the bin's columns, so for each region: one reduction per column bin
    (every row of the region at once), then one per bin over its rows. No loop over pixels.
    """
    fm, boxes, (ph, pw), scale = check_roi_args(feature_map, rois, output_size, spatial_scale)
    height, width, channels = fm.shape
    out = np.zeros((len(boxes), ph, pw, channels))
    q = c_round(boxes * scale).astype(np.int64)                  # x1', y1', x2', y2'
    left, right = _bins(q[:, 0], np.maximum(q[:, 2] - q[:, 0] + 1, 1), pw, width)   # (R, pw)
    top, bottom = _bins(q[:, 1], np.maximum(q[:, 3] - q[:, 1] + 1, 1), ph, height)  # (R, ph)
    column_max = np.zeros((height, pw, channels))                # [y, j]: row y's max over column bin j
    for r in range(len(boxes)):
        y0, y1 = top[r, 0], bottom[r, -1]                        # the region's rows
        for j in range(pw):
            if right[r, j] > left[r, j] and y1 > y0:
                column_max[y0:y1, j] = fm[y0:y1, left[r, j]:right[r, j]].max(axis=1)
        for i in range(ph):
            if bottom[r, i] > top[r, i]:
                out[r, i] = column_max[top[r, i]:bottom[r, i]].max(axis=0)
    empty = (bottom <= top)[:, :, None] | (right <= left)[:, None, :]
    out[empty] = 0.0                                             # and stale columns of empty bins
    return out


def _bins(start, length, n_bins, size):
    """First and one-past-last cell of every bin, int64 ``(R, n_bins)`` each (the loops tier's
    rule, vectorized: floor for the start, ceiling for the end, clipped to the map)."""
    j = np.arange(n_bins, dtype=np.int64)
    lo = (j * length[:, None]) // n_bins + start[:, None]
    hi = -((-(j + 1) * length[:, None]) // n_bins) + start[:, None]
    return np.clip(lo, 0, size), np.clip(hi, 0, size)


def check_roi_args_tf(feature_map, rois, output_size, spatial_scale, sampling_ratio=None):
    """Static checks always; value checks (naming the bad row) when running eagerly."""
    import tensorflow as tf

    size = _output_size(output_size)
    if sampling_ratio is not None:
        check_sampling_ratio(sampling_ratio)
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


def c_round_tf(x):
    import tensorflow as tf

    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)   # tf.round rounds half to even


def roi_pool_tf(feature_map, rois, output_size, spatial_scale):
    """Fast R-CNN RoI max pooling in pure TF (works under ``tf.function(jit_compile=True)``).

    Args: as :func:`roi_pool_loops`; tensors or arrays; ``output_size`` a Python int or pair.
    Returns: ``(R, ph, pw, C)`` tensor of the feature map's float dtype. A masked separable
    maximum: first over each bin's columns, then over its rows (XLA fuses the masks into the
    reductions).
    """
    import tensorflow as tf

    fm, boxes, (ph, pw), scale = check_roi_args_tf(feature_map, rois, output_size, spatial_scale)
    height, width = tf.shape(fm, out_type=tf.int64)[0], tf.shape(fm, out_type=tf.int64)[1]
    q = tf.cast(c_round_tf(boxes * scale), tf.int64)

    def bins(start, length, n_bins, size):
        j = tf.range(n_bins, dtype=tf.int64)
        lo = tf.math.floordiv(j * length[:, None], n_bins) + start[:, None]
        hi = -tf.math.floordiv(-(j + 1) * length[:, None], n_bins) + start[:, None]
        return tf.clip_by_value(lo, 0, size), tf.clip_by_value(hi, 0, size)

    left, right = bins(q[:, 0], tf.maximum(q[:, 2] - q[:, 0] + 1, 1), pw, width)
    top, bottom = bins(q[:, 1], tf.maximum(q[:, 3] - q[:, 1] + 1, 1), ph, height)
    cols, rows = tf.range(width), tf.range(height)
    in_col = (cols >= left[..., None]) & (cols < right[..., None])         # (R, pw, W)
    in_row = (rows >= top[..., None]) & (rows < bottom[..., None])         # (R, ph, H)
    low = tf.constant(-np.inf, fm.dtype)
    colmax = tf.reduce_max(tf.where(in_col[:, :, None, :, None], fm[None, None], low), axis=3)
    pooled = tf.reduce_max(tf.where(in_row[:, :, None, :, None], colmax[:, None], low), axis=3)
    empty = (bottom <= top)[:, :, None] | (right <= left)[:, None, :]
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
    fm, boxes, (ph, pw), scale = check_roi_args(feature_map, rois, output_size, spatial_scale)
    ratio = check_sampling_ratio(sampling_ratio)
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


def roi_align_numpy(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    """RoI align (``aligned=True``), vectorized float64: per region ``A_y @ F @ A_x^T``.

    Same contract as :func:`roi_align_loops`; no Python loop over regions, bins, samples or
    pixels. ``A_y`` (``(ph, H)`` per region) holds the average bilinear weight of each bin's
    samples on each row of the map, ``A_x`` the same for columns: averaging bilinear reads is
    linear, so the whole pooling is two matrix products.
    """
    fm, boxes, (ph, pw), scale = check_roi_args(feature_map, rois, output_size, spatial_scale)
    ratio = check_sampling_ratio(sampling_ratio)
    height, width, channels = fm.shape
    if height == 0 or width == 0:
        return np.zeros((len(boxes), ph, pw, channels))
    start = boxes[:, :2] * scale - 0.5                           # the half-pixel shift (x, y)
    length = (boxes[:, 2:] * scale - 0.5) - start
    ay = _axis_weights(start[:, 1], length[:, 1], ph, ratio, height)      # (R, ph, H)
    ax = _axis_weights(start[:, 0], length[:, 0], pw, ratio, width)       # (R, pw, W)
    rows = ay.reshape(-1, height) @ fm.reshape(height, width * channels)  # (R*ph, W*C)
    rows = rows.reshape(len(boxes), ph, width, channels)                  # (R, ph, W, C)
    return ax[:, None] @ rows                      # (R, 1, pw, W) @ (R, ph, W, C) -> (R, ph, pw, C)


def _axis_weights(start, length, n_bins, ratio, size):
    """``(R, n_bins, size)``: the average bilinear weight of bin ``p``'s samples on cell ``h``
    (``hat(d) = max(0, 1 - |d|)`` at the clamped sample; samples outside ``[-1, size]`` add 0)."""
    bin_len = length / n_bins
    g = np.full(len(start), float(ratio)) if ratio > 0 else np.ceil(bin_len)  # samples per bin
    k = np.arange(int(g.max(initial=0)))                                       # sample slots
    pos = (start[:, None, None] + np.arange(n_bins)[None, :, None] * bin_len[:, None, None]
           + (k + 0.5) * (bin_len / np.maximum(g, 1))[:, None, None])          # (R, n_bins, K)
    valid = (k < g[:, None, None]) & (pos >= -1) & (pos <= size)
    hat = np.maximum(0.0, 1.0 - np.abs(np.clip(pos, 0, size - 1)[..., None] - np.arange(size)))
    return (hat * valid[..., None]).sum(axis=2) / np.maximum(g, 1)[:, None, None]


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

    fm, boxes, (ph, pw), scale = check_roi_args_tf(feature_map, rois, output_size, spatial_scale,
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

    ratio = check_sampling_ratio(sampling_ratio)
    if ratio <= 0:
        raise ValueError("roi_align_crop_and_resize needs a fixed sampling_ratio > 0")
    crops = _crop_and_resize_samples(feature_map, rois, output_size, spatial_scale, ratio)
    return tf.nn.avg_pool2d(crops, ratio, ratio, "VALID")


def crop_and_resize_pool_baseline(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    """The usual TF "RoI align": ``crop_and_resize`` to ``(2*ph, 2*pw)`` then 2x2 max pooling
    (``s x s`` with ``s = sampling_ratio`` when it is positive). A timing baseline: its values
    differ from RoI align (max instead of mean, zeros outside the map). float32 ``(R, ph, pw, C)``."""
    import tensorflow as tf

    ratio = check_sampling_ratio(sampling_ratio)
    ratio = ratio if ratio > 0 else 2
    crops = _crop_and_resize_samples(feature_map, rois, output_size, spatial_scale, ratio)
    return tf.nn.max_pool2d(crops, ratio, ratio, "VALID")
