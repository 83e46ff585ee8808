"""RoI pooling and RoI align tuned for speed: the contracts and results of the textbook tiers of
:mod:`workshop.reference.roi` (checked on every registry case), timed by ``make bench``.

* :func:`roi_pool_tf`: every bin answered with four look-ups in a table of power-of-two block
  maxima (a 2-D "sparse table": ``max(x[a:b]) = max(block(a), block(b - 2**k))`` with
  ``k = floor(log2(b - a))``), so a bin costs the same whatever its size, in static shapes.
* :func:`roi_align_numpy`: the separable ``A_y @ F @ A_x^T`` of the textbook tier, with the
  sample slots of a bin limited to a window that can fall inside the map, as matrix products on
  chunks of regions (bounded memory).
"""

from __future__ import annotations

import numpy as np

from ..reference.roi import (
    c_round_tf,
    check_roi_args,
    check_roi_args_tf,
    check_sampling_ratio,
)

__all__ = ["roi_pool_tf", "roi_align_numpy"]

_CHUNK_ELEMENTS = 1 << 22   # process regions in chunks of about this many elements


def _block_max_tf(fm, ly: int, lx: int):
    """``table[a, b, h, w] = max(fm[h : h + 2**a, w : w + 2**b])``, shape ``(ly, lx, H, W, C)``
    (static ``H``, ``W``). Entries whose block sticks out of the map hold a smaller block's
    maximum; queries never read them. Built by doubling: a ``2**a`` block is the max of two
    ``2**(a-1)`` blocks."""
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
    With a static ``H, W``: the block-maximum table (:func:`_block_max_tf`), with every level
    up to ``floor(log2(H))`` (the levels must not depend on the data), then four gathers per bin.
    Without (a shape-relaxed trace): the textbook tier (a masked separable maximum).
    """
    import tensorflow as tf

    fm, boxes, (ph, pw), scale = check_roi_args_tf(feature_map, rois, output_size, spatial_scale)
    height, width = tf.shape(fm, out_type=tf.int64)[0], tf.shape(fm, out_type=tf.int64)[1]
    q = tf.cast(c_round_tf(boxes * scale), tf.int64)
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
    else:   # a shape-relaxed trace: the table's levels would depend on the data
        from ..reference.roi import roi_pool_tf as textbook

        return textbook(feature_map, rois, output_size, spatial_scale)
    return tf.where(empty[..., None], tf.zeros_like(pooled), pooled)


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
    fm, boxes, (ph, pw), scale = check_roi_args(feature_map, rois, output_size, spatial_scale)
    ratio = check_sampling_ratio(sampling_ratio)
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
