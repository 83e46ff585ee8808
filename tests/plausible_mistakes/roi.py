"""Chapter 06 (roi_pool, roi_align): plausible learner mistakes."""

import math

import numpy as np

from . import plausible


# == roi_pool ===================================================================================
def _pool_loops(feature_map, rois, output_size, spatial_scale, quantise, empty_zero=True,
                clip_low=True, size_order="hw"):
    """A learner's loop RoI pooling with the rounding passed in, and a few switches."""
    fm = np.asarray(feature_map, dtype=np.float32)
    H, W, C = fm.shape
    if isinstance(output_size, int):
        ph = pw = output_size
    elif size_order == "hw":
        ph, pw = output_size
    else:
        pw, ph = output_size
    out = np.zeros((len(rois), ph, pw, C), dtype=np.float32)
    for r in range(len(rois)):
        x1, y1, x2, y2 = [quantise(float(v) * spatial_scale) for v in rois[r]]
        w = max(x2 - x1 + 1, 1)
        h = max(y2 - y1 + 1, 1)
        for i in range(ph):
            top = y1 + (i * h) // ph
            bottom = min(y1 + math.ceil((i + 1) * h / ph), H)
            if clip_low:
                top = max(top, 0)
            for j in range(pw):
                left = x1 + (j * w) // pw
                right = min(x1 + math.ceil((j + 1) * w / pw), W)
                if clip_low:
                    left = max(left, 0)
                best = np.full(C, -np.inf, dtype=np.float32)
                for y in range(top, bottom):
                    for x in range(left, right):
                        best = np.maximum(best, fm[y, x])
                if empty_zero and (bottom <= top or right <= left):
                    best = np.zeros(C, dtype=np.float32)
                out[r, i, j] = best
    return out


def _c_round(v):
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


@plausible("roi_pool", "coordinates truncated", "int() on the scaled coordinates, loops", tier="loops")
def roi_pool_int_loops(feature_map, rois, output_size, spatial_scale):
    return _pool_loops(feature_map, rois, output_size, spatial_scale, int)


@plausible("roi_pool", "coordinates floored", "math.floor on the scaled coordinates, loops", tier="loops")
def roi_pool_floor_loops(feature_map, rois, output_size, spatial_scale):
    return _pool_loops(feature_map, rois, output_size, spatial_scale, math.floor)


@plausible("roi_pool", "banker's rounding", "Python's round(), loops", tier="loops")
def roi_pool_python_round_loops(feature_map, rois, output_size, spatial_scale):
    return _pool_loops(feature_map, rois, output_size, spatial_scale, round)


@plausible("roi_pool", "empty bins not 0", "running max from -inf, empty bins kept, loops", tier="loops")
def roi_pool_minus_inf_loops(feature_map, rois, output_size, spatial_scale):
    return _pool_loops(feature_map, rois, output_size, spatial_scale, _c_round, empty_zero=False)


@plausible("roi_pool", None, "bins not clipped at 0 (negative indices wrap), loops", tier="loops")
def roi_pool_wraps_loops(feature_map, rois, output_size, spatial_scale):
    return _pool_loops(feature_map, rois, output_size, spatial_scale, _c_round, clip_low=False)


@plausible("roi_pool", None, "output_size read as (pw, ph), loops", tier="loops")
def roi_pool_size_swapped_loops(feature_map, rois, output_size, spatial_scale):
    return _pool_loops(feature_map, rois, output_size, spatial_scale, _c_round, size_order="wh")


def _pool_numpy(feature_map, rois, output_size, spatial_scale, rounding, *, joint_max=False):
    """The notebook's numpy plan: integer bin edges, a loop over the offsets inside a bin."""
    fm = np.asarray(feature_map, dtype=np.float64)
    H, W, C = fm.shape
    ph, pw = (output_size, output_size) if np.isscalar(output_size) else output_size
    boxes = np.asarray(rois, dtype=np.float64).reshape(-1, 4)
    q = rounding(boxes * spatial_scale).astype(np.int64)
    w = np.maximum(q[:, 2] - q[:, 0] + 1, 1)
    h = np.maximum(q[:, 3] - q[:, 1] + 1, 1)
    j, i = np.arange(pw), np.arange(ph)
    left = np.clip(q[:, :1] + (j * w[:, None]) // pw, 0, W)
    right = np.clip(q[:, :1] - ((-(j + 1) * w[:, None]) // pw), 0, W)
    top = np.clip(q[:, 1:2] + (i * h[:, None]) // ph, 0, H)
    bottom = np.clip(q[:, 1:2] - ((-(i + 1) * h[:, None]) // ph), 0, H)
    out = np.full((len(boxes), ph, pw, C), -np.inf)
    if len(boxes) == 0:
        return np.zeros((0, ph, pw, C))
    for dy in range(int((bottom - top).max(initial=0))):
        for dx in range(int((right - left).max(initial=0))):
            yy = np.clip(top + dy, 0, H - 1)[:, :, None]
            xx = np.clip(left + dx, 0, W - 1)[:, None, :]
            inside = ((top + dy < bottom)[:, :, None] & (left + dx < right)[:, None, :])
            vals = fm[yy, xx]
            if joint_max:
                vals = np.broadcast_to(vals.max(axis=-1, keepdims=True), vals.shape)
            out = np.where(inside[..., None], np.maximum(out, vals), out)
    return np.where(np.isinf(out), 0.0, out)


@plausible("roi_pool", "coordinates truncated", "astype(int) instead of rounding")
def roi_pool_astype_int(feature_map, rois, output_size, spatial_scale):
    return _pool_numpy(feature_map, rois, output_size, spatial_scale, lambda v: v)


@plausible("roi_pool", "banker's rounding", "np.round")
def roi_pool_np_round(feature_map, rois, output_size, spatial_scale):
    return _pool_numpy(feature_map, rois, output_size, spatial_scale, np.round)


@plausible("roi_pool", None, "maximum over every channel at once")
def roi_pool_joint_max(feature_map, rois, output_size, spatial_scale):
    return _pool_numpy(feature_map, rois, output_size, spatial_scale,
                       lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5), joint_max=True)


# == roi_align ==================================================================================
def _bilinear(fm, y, x, far_zero=True, clamp=True):
    """(value (C,), counted) of a learner's bilinear read; ``counted`` is False when skipped."""
    H, W, _ = fm.shape
    if far_zero and (y < -1 or y > H or x < -1 or x > W):
        return np.zeros(fm.shape[2]), False
    if clamp:
        y = min(max(y, 0.0), H - 1)
        x = min(max(x, 0.0), W - 1)
    y0, x0 = math.floor(y), math.floor(x)
    total = np.zeros(fm.shape[2])
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < H and 0 <= xx < W:
                total += wy * wx * fm[yy, xx]
            elif clamp:   # clamped: a missing neighbour only ever has weight 0 or lies at H-1
                total += wy * wx * fm[min(yy, H - 1), min(xx, W - 1)]
    return total, True


def _align_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio, *,
                 grid=math.ceil, divide="all", far_zero=True, clamp=True):
    fm = np.asarray(feature_map, dtype=np.float64)
    C = fm.shape[2]
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    out = np.zeros((len(rois), ph, pw, C))
    for r, (x1, y1, x2, y2) in enumerate(np.asarray(rois, dtype=np.float64).reshape(-1, 4)):
        sx, sy = x1 * spatial_scale - 0.5, y1 * spatial_scale - 0.5
        rw, rh = (x2 - x1) * spatial_scale, (y2 - y1) * spatial_scale
        bw, bh = rw / pw, rh / ph
        gx = sampling_ratio if sampling_ratio > 0 else int(grid(rw / pw))
        gy = sampling_ratio if sampling_ratio > 0 else int(grid(rh / ph))
        for i in range(ph):
            for j in range(pw):
                acc, n = np.zeros(C), 0
                for a in range(gy):
                    y = sy + i * bh + (a + 0.5) * bh / gy
                    for b in range(gx):
                        x = sx + j * bw + (b + 0.5) * bw / gx
                        v, counted = _bilinear(fm, y, x, far_zero, clamp)
                        acc += v
                        n += counted
                if divide == "all":
                    out[r, i, j] = acc / max(gx * gy, 1)
                elif divide == "counted":
                    out[r, i, j] = acc / n if n else acc
                else:
                    out[r, i, j] = acc
    return out


@plausible("roi_align", "mean over the samples on the map only",
           "divides by the samples it read, loops", tier="loops")
def roi_align_count_read_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio, divide="counted")


@plausible("roi_align", "adaptive grid floored", "int(roi_w / pw) samples, loops", tier="loops")
def roi_align_int_grid_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio, grid=int)


@plausible("roi_align", "far samples clamped", "np.clip without the [-1, H] test, loops", tier="loops")
def roi_align_clip_everything_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio, far_zero=False)


@plausible("roi_align", None, "adaptive grid rounded to nearest, loops", tier="loops")
def roi_align_round_grid_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align_loops(feature_map, rois, output_size, spatial_scale, sampling_ratio, grid=round)


def _align_numpy(feature_map, rois, output_size, spatial_scale, sampling_ratio, *,
                 clip=True, average=True, whole_region=False):
    """The notebook's separable plan: A_y (R, ph, H) and A_x (R, pw, W), two einsums."""
    fm = np.asarray(feature_map, dtype=np.float64)
    H, W, C = fm.shape
    ph, pw = (output_size, output_size) if np.isscalar(output_size) else output_size
    boxes = np.asarray(rois, dtype=np.float64).reshape(-1, 4)

    def weights(start, length, n, size):
        bin_len = length / n
        if sampling_ratio > 0:
            g = np.full(len(start), float(sampling_ratio))
        else:
            g = np.ceil(length if whole_region else length / n)
        K = int(g.max(initial=0))
        k = np.arange(K)
        pos = (start[:, None, None] + np.arange(n)[None, :, None] * bin_len[:, None, None]
               + (k + 0.5)[None, None, :] * (bin_len / np.maximum(g, 1))[:, None, None])
        ok = (k[None, None, :] < g[:, None, None]) & (pos >= -1) & (pos <= size)
        if clip:
            pos = np.clip(pos, 0, size - 1)
        hat = np.maximum(0.0, 1.0 - np.abs(pos[..., None] - np.arange(size)))
        a = (hat * ok[..., None]).sum(axis=2)
        return a / np.maximum(g, 1)[:, None, None] if average else a

    start = boxes[:, :2] * spatial_scale - 0.5
    length = (boxes[:, 2:] - boxes[:, :2]) * spatial_scale
    ay = weights(start[:, 1], length[:, 1], ph, H)
    ax = weights(start[:, 0], length[:, 0], pw, W)
    return np.einsum("rqw,rpwc->rpqc", ax, np.einsum("rph,hwc->rpwc", ay, fm))


@plausible("roi_align", "sum instead of mean", "separable weights not divided by g")
def roi_align_sum(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align_numpy(feature_map, rois, output_size, spatial_scale, sampling_ratio, average=False)


@plausible("roi_align", "border samples not clamped", "hat(y - h) without the clip")
def roi_align_no_clip(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align_numpy(feature_map, rois, output_size, spatial_scale, sampling_ratio, clip=False)


@plausible("roi_align", None, "adaptive grid ceil(roi_w), not per bin")
def roi_align_grid_whole_region(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align_numpy(feature_map, rois, output_size, spatial_scale, sampling_ratio, whole_region=True)
