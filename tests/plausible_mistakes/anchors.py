"""Chapter 04 (anchors, box coding): learner code with one plausible mistake each."""

from __future__ import annotations

import math

import numpy as np

from . import plausible

CLAMP = math.log(1000 / 16)


# ============================================================================================
# reference_anchors
# ============================================================================================
@plausible("reference_anchors", "ratio inverted", "w = base*s*sqrt(r), h = base*s/sqrt(r)", tier="loops")
def ra_width_times_root(base_size, aspect_ratios, scales):
    out = []
    for r in aspect_ratios:
        for s in scales:
            w = base_size * s * math.sqrt(r)
            h = base_size * s / math.sqrt(r)
            out.append([-w / 2, -h / 2, w / 2, h / 2])
    return np.array(out).reshape(-1, 4)


@plausible("reference_anchors", "ratio inverted", "returns (y1, x1, y2, x2)")
def ra_yxyx(base_size, aspect_ratios, scales):
    r = np.asarray(aspect_ratios, float)[:, None]
    s = np.asarray(scales, float)[None, :]
    h = (base_size * s * np.sqrt(r)).ravel()
    w = (base_size * s / np.sqrt(r)).ravel()
    return np.stack([-h / 2, -w / 2, h / 2, w / 2], axis=1)


@plausible("reference_anchors", "area not preserved", "h = base*s*r, w = base*s (no sqrt)")
def ra_no_sqrt(base_size, aspect_ratios, scales):
    r = np.asarray(aspect_ratios, float)[:, None]
    s = np.asarray(scales, float)[None, :]
    h = (base_size * s * r).ravel()
    w = (base_size * s * np.ones_like(r)).ravel()
    return np.stack([-w / 2, -h / 2, w / 2, h / 2], axis=1)


@plausible("reference_anchors", "scale-major order", "np.meshgrid(ratios, scales) ('xy' indexing)")
def ra_meshgrid_xy(base_size, aspect_ratios, scales):
    R, S = np.meshgrid(np.asarray(aspect_ratios, float), np.asarray(scales, float))
    R, S = R.ravel(), S.ravel()
    h = base_size * S * np.sqrt(R)
    w = base_size * S / np.sqrt(R)
    return np.stack([-w / 2, -h / 2, w / 2, h / 2], axis=1)


@plausible("reference_anchors", "not centred", "anchors as (x, y, w, h) at the origin", tier="loops")
def ra_xywh(base_size, aspect_ratios, scales):
    rows = []
    for r in aspect_ratios:
        for s in scales:
            rows.append([0.0, 0.0, base_size * s / math.sqrt(r), base_size * s * math.sqrt(r)])
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


@plausible("reference_anchors", "rounded", "np.round to whole pixels")
def ra_rounded(base_size, aspect_ratios, scales):
    r = np.repeat(np.asarray(aspect_ratios, float), len(scales))
    s = np.tile(np.asarray(scales, float), len(aspect_ratios))
    h, w = base_size * s * np.sqrt(r), base_size * s / np.sqrt(r)
    return np.round(np.stack([-w / 2, -h / 2, w / 2, h / 2], axis=1))


@plausible("reference_anchors", "half-size used as full size", "corners at +-w, +-h", tier="loops")
def ra_full_size(base_size, aspect_ratios, scales):
    rows = []
    for r in aspect_ratios:
        for s in scales:
            h, w = base_size * s * r ** 0.5, base_size * s / r ** 0.5
            rows.append([-w, -h, w, h])
    return np.array(rows, float).reshape(-1, 4)


@plausible("reference_anchors", None, "no sqrt on either side: h = base*s*r, w = base*s/r")
def ra_ratio_both_sides(base_size, aspect_ratios, scales):
    r = np.asarray(aspect_ratios, float)[:, None]
    s = np.asarray(scales, float)[None, :]
    h, w = (base_size * s * r).ravel(), (base_size * s / r).ravel()
    return np.stack([-w / 2, -h / 2, w / 2, h / 2], axis=1)


@plausible("reference_anchors", None, "old Detectron recipe: sizes rounded, then centred", tier="loops")
def ra_detectron_rounded_sizes(base_size, aspect_ratios, scales):
    rows = []
    for r in aspect_ratios:
        for s in scales:
            size = (base_size * s) ** 2
            w = round(math.sqrt(size / r))
            h = round(w * r)
            rows.append([-w / 2, -h / 2, w / 2, h / 2])
    return np.array(rows, float).reshape(-1, 4)


# ============================================================================================
# grid_anchors
# ============================================================================================
@plausible("grid_anchors", "missing half-stride offset", "centre x * stride", tier="loops")
def ga_no_offset(feature_shape, stride, reference, offset=0.5):
    H, W = feature_shape
    out = []
    for y in range(H):
        for x in range(W):
            for a in reference:
                out.append([a[0] + x * stride, a[1] + y * stride, a[2] + x * stride, a[3] + y * stride])
    return np.array(out, float).reshape(-1, 4)


@plausible("grid_anchors", "offset not scaled by the stride", "centre x * stride + offset")
def ga_offset_pixels(feature_shape, stride, reference, offset=0.5):
    H, W = feature_shape
    cx = np.arange(W) * stride + offset
    cy = np.arange(H) * stride + offset
    X, Y = np.meshgrid(cx, cy)
    shifts = np.stack([X.ravel(), Y.ravel(), X.ravel(), Y.ravel()], axis=1)
    return (shifts[:, None, :] + np.asarray(reference, float)[None]).reshape(-1, 4)


@plausible("grid_anchors", "anchor-major order", "reference[:, None] + shifts[None]")
def ga_anchor_major(feature_shape, stride, reference, offset=0.5):
    H, W = feature_shape
    X, Y = np.meshgrid((np.arange(W) + offset) * stride, (np.arange(H) + offset) * stride)
    shifts = np.stack([X.ravel(), Y.ravel(), X.ravel(), Y.ravel()], axis=1)
    return (np.asarray(reference, float)[:, None, :] + shifts[None, :, :]).reshape(-1, 4)


@plausible("grid_anchors", "column-major order", "np.meshgrid(cx, cy, indexing='ij')")
def ga_meshgrid_ij(feature_shape, stride, reference, offset=0.5):
    H, W = feature_shape
    X, Y = np.meshgrid((np.arange(W) + offset) * stride, (np.arange(H) + offset) * stride, indexing="ij")
    shifts = np.stack([X.ravel(), Y.ravel(), X.ravel(), Y.ravel()], axis=1)
    return (shifts[:, None, :] + np.asarray(reference, float)[None]).reshape(-1, 4)


@plausible("grid_anchors", "H and W transposed", "W, H = feature_shape", tier="loops")
def ga_transposed(feature_shape, stride, reference, offset=0.5):
    W, H = feature_shape
    out = []
    for y in range(H):
        for x in range(W):
            cx, cy = (x + offset) * stride, (y + offset) * stride
            for x1, y1, x2, y2 in reference:
                out.append([x1 + cx, y1 + cy, x2 + cx, y2 + cy])
    return np.array(out, float).reshape(-1, 4)


@plausible("grid_anchors", "offset argument ignored", "centre (x + 0.5) * stride, always")
def ga_half_hardcoded(feature_shape, stride, reference, offset=0.5):
    H, W = feature_shape
    ys, xs = np.mgrid[0:H, 0:W]
    cx, cy = ((xs + 0.5) * stride).ravel(), ((ys + 0.5) * stride).ravel()
    shifts = np.stack([cx, cy, cx, cy], axis=1)
    return (shifts[:, None, :] + np.asarray(reference, float)[None]).reshape(-1, 4)


@plausible("grid_anchors", "rounded", "rounded to whole pixels with np.rint")
def ga_rounded(feature_shape, stride, reference, offset=0.5):
    H, W = feature_shape
    ys, xs = np.mgrid[0:H, 0:W]
    cx, cy = ((xs + offset) * stride).ravel(), ((ys + offset) * stride).ravel()
    shifts = np.stack([cx, cy, cx, cy], axis=1)
    return np.rint(shifts[:, None, :] + np.asarray(reference, float)[None]).reshape(-1, 4)


@plausible("grid_anchors", None, "x coordinates shifted by the y centre (cy, cx, cy, cx)")
def ga_shift_swapped(feature_shape, stride, reference, offset=0.5):
    H, W = feature_shape
    ys, xs = np.mgrid[0:H, 0:W]
    cx, cy = ((xs + offset) * stride).ravel(), ((ys + offset) * stride).ravel()
    shifts = np.stack([cy, cx, cy, cx], axis=1)
    return (shifts[:, None, :] + np.asarray(reference, float)[None]).reshape(-1, 4)


@plausible("grid_anchors", None, "anchor-major and no offset", tier="loops")
def ga_anchor_major_no_offset(feature_shape, stride, reference, offset=0.5):
    H, W = feature_shape
    out = []
    for a in reference:
        for y in range(H):
            for x in range(W):
                out.append([a[0] + x * stride, a[1] + y * stride, a[2] + x * stride, a[3] + y * stride])
    return np.array(out, float).reshape(-1, 4)


# ============================================================================================
# encode
# ============================================================================================
def _centres(b):
    b = np.asarray(b, float).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return b[:, 0] + w / 2, b[:, 1] + h / 2, w, h


@plausible("encode", "x and y mixed", "dy divided by the anchor width", tier="loops")
def en_xy_mixed(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    wx, wy, ww, wh = weights
    out = []
    for (bx1, by1, bx2, by2), (ax1, ay1, ax2, ay2) in zip(boxes, anchors):
        gw, gh, aw, ah = bx2 - bx1, by2 - by1, ax2 - ax1, ay2 - ay1
        gx, gy, ax, ay = bx1 + gw / 2, by1 + gh / 2, ax1 + aw / 2, ay1 + ah / 2
        out.append([wx * (gx - ax) / aw, wy * (gy - ay) / aw, ww * math.log(gw / aw), wh * math.log(gh / ah)])
    return np.array(out).reshape(-1, 4)


@plausible("encode", "log base 10", "np.log10 for the sizes")
def en_log10(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    gx, gy, gw, gh = _centres(boxes)
    ax, ay, aw, ah = _centres(anchors)
    w = np.asarray(weights, float)
    return np.stack([(gx - ax) / aw, (gy - ay) / ah, np.log10(gw / aw), np.log10(gh / ah)], axis=1) * w


@plausible("encode", "weights divided", "deltas divided by the weights")
def en_weights_divided(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    gx, gy, gw, gh = _centres(boxes)
    ax, ay, aw, ah = _centres(anchors)
    d = np.stack([(gx - ax) / aw, (gy - ay) / ah, np.log(gw / aw), np.log(gh / ah)], axis=1)
    return d / np.array(weights, dtype=np.float32)


@plausible("encode", "+1 in widths and heights", "old '+1' widths (x2 - x1 + 1)", tier="loops")
def en_plus_one(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    wx, wy, ww, wh = weights
    out = []
    for b, a in zip(np.asarray(boxes).tolist(), np.asarray(anchors).tolist()):
        gw, gh = b[2] - b[0] + 1, b[3] - b[1] + 1
        aw, ah = a[2] - a[0] + 1, a[3] - a[1] + 1
        gx, gy = b[0] + 0.5 * gw, b[1] + 0.5 * gh
        ax, ay = a[0] + 0.5 * aw, a[1] + 0.5 * ah
        out.append([wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * math.log(gw / aw), wh * math.log(gh / ah)])
    return np.array(out).reshape(-1, 4)


@plausible("encode", "centre offsets in pixels", "dx = wx * (gx - ax), not divided by aw")
def en_pixels(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    gx, gy, gw, gh = _centres(boxes)
    ax, ay, aw, ah = _centres(anchors)
    return np.stack([weights[0] * (gx - ax), weights[1] * (gy - ay),
                     weights[2] * np.log(gw / aw), weights[3] * np.log(gh / ah)], axis=1)


@plausible("encode", "weights ignored", "weights never used")
def en_no_weights(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    gx, gy, gw, gh = _centres(boxes)
    ax, ay, aw, ah = _centres(anchors)
    return np.stack([(gx - ax) / aw, (gy - ay) / ah, np.log(gw / aw), np.log(gh / ah)], axis=1)


@plausible("encode", "normalised by the box", "offsets divided by the box's size")
def en_by_box(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    gx, gy, gw, gh = _centres(boxes)
    ax, ay, aw, ah = _centres(anchors)
    d = np.stack([(gx - ax) / gw, (gy - ay) / gh, np.log(gw / aw), np.log(gh / ah)], axis=1)
    return d * np.asarray(weights)


@plausible("encode", None, "no log and no weights")
def en_no_log_no_weights(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    gx, gy, gw, gh = _centres(boxes)
    ax, ay, aw, ah = _centres(anchors)
    return np.stack([(gx - ax) / aw, (gy - ay) / ah, gw / aw, gh / ah], axis=1)


@plausible("encode", None, "weights divided on the sizes only")
def en_size_weights_divided(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    gx, gy, gw, gh = _centres(boxes)
    ax, ay, aw, ah = _centres(anchors)
    wx, wy, ww, wh = weights
    return np.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                     np.log(gw / aw) / ww, np.log(gh / ah) / wh], axis=1)


# ============================================================================================
# decode
# ============================================================================================
def _anchor_centres(anchors):
    a = np.asarray(anchors, float).reshape(-1, 4)
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    return a[:, 0] + 0.5 * aw, a[:, 1] + 0.5 * ah, aw, ah


@plausible("decode", "clamped before dividing by the weights", "np.minimum(dw, clamp) / ww")
def de_clamp_first(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = np.asarray(deltas, float).reshape(-1, 4)
    ax, ay, aw, ah = _anchor_centres(anchors)
    wx, wy, ww, wh = weights
    dw = np.minimum(d[:, 2], CLAMP) / ww
    dh = np.minimum(d[:, 3], CLAMP) / wh
    gx, gy = d[:, 0] / wx * aw + ax, d[:, 1] / wy * ah + ay
    gw, gh = np.exp(dw) * aw, np.exp(dh) * ah
    return np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], axis=1)


@plausible("decode", "returns (cx, cy, w, h)", "returns centres and sizes")
def de_cxcywh(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = np.asarray(deltas, float).reshape(-1, 4) / np.asarray(weights, float)
    ax, ay, aw, ah = _anchor_centres(anchors)
    d[:, 2:] = np.minimum(d[:, 2:], CLAMP)
    return np.stack([d[:, 0] * aw + ax, d[:, 1] * ah + ay, np.exp(d[:, 2]) * aw, np.exp(d[:, 3]) * ah], axis=1)


@plausible("decode", "returns (y1, x1, y2, x2)", "y before x, as tf.image boxes", tier="loops")
def de_yxyx(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    wx, wy, ww, wh = weights
    out = []
    for (dx, dy, dw, dh), (x1, y1, x2, y2) in zip(np.asarray(deltas).tolist(), np.asarray(anchors).tolist()):
        aw, ah = x2 - x1, y2 - y1
        cx, cy = x1 + aw / 2 + dx / wx * aw, y1 + ah / 2 + dy / wy * ah
        w, h = math.exp(min(dw / ww, CLAMP)) * aw, math.exp(min(dh / wh, CLAMP)) * ah
        out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(out).reshape(-1, 4)


@plausible("decode", "clamped on both sides", "np.clip(dw / ww, -clamp, clamp)")
def de_clip(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = np.asarray(deltas, float).reshape(-1, 4)
    ax, ay, aw, ah = _anchor_centres(anchors)
    wx, wy, ww, wh = weights
    dw, dh = np.clip(d[:, 2] / ww, -CLAMP, CLAMP), np.clip(d[:, 3] / wh, -CLAMP, CLAMP)
    gx, gy = d[:, 0] / wx * aw + ax, d[:, 1] / wy * ah + ay
    gw, gh = np.exp(dw) * aw, np.exp(dh) * ah
    return np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], axis=1)


@plausible("decode", "10 ** instead of exp", "10 ** dw, to undo a log10")
def de_pow10(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = np.asarray(deltas, float).reshape(-1, 4) / np.asarray(weights, float)
    ax, ay, aw, ah = _anchor_centres(anchors)
    gx, gy = d[:, 0] * aw + ax, d[:, 1] * ah + ay
    gw = 10 ** np.minimum(d[:, 2], CLAMP) * aw
    gh = 10 ** np.minimum(d[:, 3], CLAMP) * ah
    return np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], axis=1)


@plausible("decode", "centre shift in pixels", "gx = dx / wx + ax")
def de_pixels(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = np.asarray(deltas, float).reshape(-1, 4) / np.asarray(weights, float)
    ax, ay, aw, ah = _anchor_centres(anchors)
    gw = np.exp(np.minimum(d[:, 2], CLAMP)) * aw
    gh = np.exp(np.minimum(d[:, 3], CLAMP)) * ah
    gx, gy = ax + d[:, 0], ay + d[:, 1]
    return np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], axis=1)


@plausible("decode", "weights multiplied", "deltas multiplied by the weights")
def de_weights_multiplied(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = np.asarray(deltas, float).reshape(-1, 4) * np.asarray(weights, float)
    ax, ay, aw, ah = _anchor_centres(anchors)
    gw = np.exp(np.minimum(d[:, 2], CLAMP)) * aw
    gh = np.exp(np.minimum(d[:, 3], CLAMP)) * ah
    gx, gy = ax + d[:, 0] * aw, ay + d[:, 1] * ah
    return np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], axis=1)


@plausible("decode", None, "half-sizes not halved: [gx - gw, gx + gw]")
def de_not_halved(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = np.asarray(deltas, float).reshape(-1, 4) / np.asarray(weights, float)
    ax, ay, aw, ah = _anchor_centres(anchors)
    gw = np.exp(np.minimum(d[:, 2], CLAMP)) * aw
    gh = np.exp(np.minimum(d[:, 3], CLAMP)) * ah
    gx, gy = ax + d[:, 0] * aw, ay + d[:, 1] * ah
    return np.stack([gx - gw, gy - gh, gx + gw, gy + gh], axis=1)


@plausible("decode", None, "10 ** dw and no clamp")
def de_pow10_no_clamp(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = np.asarray(deltas, float).reshape(-1, 4) / np.asarray(weights, float)
    ax, ay, aw, ah = _anchor_centres(anchors)
    with np.errstate(over="ignore", invalid="ignore"):
        gw, gh = 10.0 ** d[:, 2] * aw, 10.0 ** d[:, 3] * ah
        gx, gy = ax + d[:, 0] * aw, ay + d[:, 1] * ah
        return np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], axis=1)


@plausible("decode", None, "clamp at log(1000) instead of log(1000 / 16)")
def de_wrong_clamp(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = np.asarray(deltas, float).reshape(-1, 4) / np.asarray(weights, float)
    ax, ay, aw, ah = _anchor_centres(anchors)
    gw = np.exp(np.minimum(d[:, 2], math.log(1000))) * aw
    gh = np.exp(np.minimum(d[:, 3], math.log(1000))) * ah
    gx, gy = ax + d[:, 0] * aw, ay + d[:, 1] * ah
    return np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], axis=1)
