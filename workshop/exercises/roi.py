"""Chapter 06: RoI pooling (Fast R-CNN) and RoI align (Mask R-CNN, ``aligned=True``).

Feature map ``(H, W, C)``, regions ``(R, 4)`` xyxy in image coordinates, ``spatial_scale = 1/stride``,
``output_size = (ph, pw)`` -> ``(R, ph, pw, C)``. The exact rules are in
:mod:`workshop.reference.roi`'s docstring (which learners do not see; the case descriptions below
repeat what they need).

The wrong implementations are self-contained numpy (the grader hides ``workshop.reference``):
one small loop implementation per op with a switch for each mistake.

Length: one chapter's registry in one place: each exercise's cases, benchmarks and
every declared mistake with its self-contained wrong implementation, read together when an
exercise changes.
"""

from __future__ import annotations

import math

import numpy as np

from . import register
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.roi"
KERNELS = "workshop.kernels.roi"


def _size(output_size) -> tuple[int, int]:
    if np.ndim(output_size) == 0:
        return int(output_size), int(output_size)
    return int(output_size[0]), int(output_size[1])


# -- RoI pooling, switchable -------------------------------------------------------------------
def _pool(feature_map, rois, output_size, spatial_scale, *, scale=True, swap=False,
          bankers=False, inclusive=True, cover=True, quantise=None, empty=0.0):
    fm = np.asarray(feature_map, np.float64)
    boxes = np.asarray(rois, np.float64).reshape(-1, 4)
    if swap:                                   # read the boxes as (y1, x1, y2, x2)
        boxes = boxes[:, [1, 0, 3, 2]]
    ph, pw = _size(output_size)
    height, width, channels = fm.shape
    s = float(spatial_scale) if scale else 1.0
    out = np.zeros((len(boxes), ph, pw, channels))
    for r, box in enumerate(boxes * s):
        if quantise is not None:                # np.trunc (int()) or np.floor instead of rounding
            q = quantise(box)
        else:
            q = np.round(box) if bankers else np.sign(box) * np.floor(np.abs(box) + 0.5)
        x1, y1, x2, y2 = (int(v) for v in q)
        extra = 1 if inclusive else 0
        rw, rh = max(x2 - x1 + extra, 1), max(y2 - y1 + extra, 1)

        def extent(j, length, n, start, size):
            lo = j * length // n
            hi = -(-(j + 1) * length // n) if cover else (j + 1) * length // n
            return min(max(lo + start, 0), size), min(max(hi + start, 0), size)

        for i in range(ph):
            h0, h1 = extent(i, rh, ph, y1, height)
            for j in range(pw):
                w0, w1 = extent(j, rw, pw, x1, width)
                if h1 > h0 and w1 > w0:
                    out[r, i, j] = fm[h0:h1, w0:w1].max(axis=(0, 1))
                else:
                    out[r, i, j] = empty
    return out


def _pool_no_scale(feature_map, rois, output_size, spatial_scale):
    return _pool(feature_map, rois, output_size, spatial_scale, scale=False)


def _pool_swapped(feature_map, rois, output_size, spatial_scale):
    return _pool(feature_map, rois, output_size, spatial_scale, swap=True)


def _pool_bankers(feature_map, rois, output_size, spatial_scale):
    return _pool(feature_map, rois, output_size, spatial_scale, bankers=True)


def _pool_exclusive(feature_map, rois, output_size, spatial_scale):
    return _pool(feature_map, rois, output_size, spatial_scale, inclusive=False)


def _pool_floor_end(feature_map, rois, output_size, spatial_scale):
    return _pool(feature_map, rois, output_size, spatial_scale, cover=False)


def _pool_truncated(feature_map, rois, output_size, spatial_scale):
    return _pool(feature_map, rois, output_size, spatial_scale, quantise=np.trunc)


def _pool_floored(feature_map, rois, output_size, spatial_scale):
    return _pool(feature_map, rois, output_size, spatial_scale, quantise=np.floor)


def _pool_empty_inf(feature_map, rois, output_size, spatial_scale):
    return _pool(feature_map, rois, output_size, spatial_scale, empty=-np.inf)


# -- RoI align, switchable ---------------------------------------------------------------------
def _read(fm, y, x, border="torch"):
    """Bilinear reads at arrays y, x (same shape S) -> (S..., C) and the mask of the samples that
    count as read. ``border``: "torch" (torchvision: 0 outside [-1, H], clamp inside), "crop"
    (tf.image.crop_and_resize: 0 outside [0, H-1]), "clamp" (clamp everything, never 0) or
    "zeros" (no clamp: the map padded with zeros, so a sample fades out past the border)."""
    height, width = fm.shape[:2]
    if border == "crop":
        ok = (y >= 0) & (y <= height - 1) & (x >= 0) & (x <= width - 1)
    elif border == "clamp":
        ok = np.ones(np.shape(y), bool)
    else:
        ok = (y >= -1) & (y <= height) & (x >= -1) & (x <= width)
    if border == "zeros":
        y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
        ly, lx = (y - y0)[..., None], (x - x0)[..., None]
        val = 0.0
        for dy, wy in ((0, 1 - ly), (1, ly)):
            for dx, wx in ((0, 1 - lx), (1, lx)):
                yy, xx = y0 + dy, x0 + dx
                inside = ((yy >= 0) & (yy < height) & (xx >= 0) & (xx < width))[..., None]
                val = val + wy * wx * fm[yy.clip(0, height - 1), xx.clip(0, width - 1)] * inside
        return val * ok[..., None], ok
    y, x = np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    ly, lx = (y - y0)[..., None], (x - x0)[..., None]
    val = ((1 - ly) * (1 - lx) * fm[y0, x0] + (1 - ly) * lx * fm[y0, x1]
           + ly * (1 - lx) * fm[y1, x0] + ly * lx * fm[y1, x1])
    return val * ok[..., None], ok


def _align(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1, *, scale=True,
           swap=False, shift=0.5, corners=False, crop_divide_by_size=False, border="torch",
           grid=math.ceil, mean="all"):
    """``grid``: the adaptive sample count from roi_size / output_size (math.ceil is right);
    ``mean``: "all" samples in the denominator (right), "valid" (only those read) or "none" (a sum)."""
    fm = np.asarray(feature_map, np.float64)
    boxes = np.asarray(rois, np.float64).reshape(-1, 4)
    if swap:
        boxes = boxes[:, [1, 0, 3, 2]]
    ph, pw = _size(output_size)
    height, width, channels = fm.shape
    s = float(spatial_scale) if scale else 1.0
    out = np.zeros((len(boxes), ph, pw, channels))
    offset = 0.0 if corners else 0.5
    if crop_divide_by_size:
        border = "crop"
    for r, (x1, y1, x2, y2) in enumerate(boxes):
        sx, sy = x1 * s - shift, y1 * s - shift
        rw, rh = (x2 * s - shift) - sx, (y2 * s - shift) - sy
        gy = sampling_ratio if sampling_ratio > 0 else int(grid(rh / ph))
        gx = sampling_ratio if sampling_ratio > 0 else int(grid(rw / pw))
        ys = sy + (np.arange(ph)[:, None] + (np.arange(gy) + offset) / gy) * (rh / ph)   # (ph, gy)
        xs = sx + (np.arange(pw)[:, None] + (np.arange(gx) + offset) / gx) * (rw / pw)   # (pw, gx)
        if crop_divide_by_size:   # boxes normalised by H (not H - 1) for crop_and_resize
            ys, xs = ys * (height - 1) / height, xs * (width - 1) / width
        yy = np.broadcast_to(ys[:, :, None, None], (ph, gy, pw, gx))
        xx = np.broadcast_to(xs[None, None], (ph, gy, pw, gx))
        vals, ok = _read(fm, yy, xx, border)                                           # (ph, gy, pw, gx, C)
        total = vals.sum(axis=(1, 3))
        if mean == "all":
            out[r] = total / max(gy * gx, 1)
        elif mean == "valid":
            out[r] = total / np.maximum(ok.sum(axis=(1, 3)), 1)[..., None]
        else:
            out[r] = total
    return out


def _align_no_scale(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio, scale=False)


def _align_swapped(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio, swap=True)


def _align_no_shift(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio, shift=0.0)


def _align_corners(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio, corners=True)


def _align_crop_by_size(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio,
                  crop_divide_by_size=True)


def _align_mean_of_valid(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio, mean="valid")


def _align_sum(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio, mean="none")


def _align_floor_grid(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio, grid=math.floor)


def _align_clamp_all(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio, border="clamp")


def _align_zero_padded(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1):
    return _align(feature_map, rois, output_size, spatial_scale, sampling_ratio, border="zeros")


# -- cases -------------------------------------------------------------------------------------
def _grid4() -> np.ndarray:
    """The 4x4 lecture map fm[y, x] = 4y + x, one channel, float32."""
    return (4 * np.arange(4)[:, None] + np.arange(4)[None]).astype(np.float32)[..., None]


def _map(rng, h, w, c) -> np.ndarray:
    return rng.normal(size=(h, w, c)).round(2).astype(np.float32)


def _boxes(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _pool_edge_cases() -> list[Case]:
    rng = np.random.default_rng(61)
    g = _grid4()
    ns = _map(rng, 3, 5, 2)     # non-square
    wide = _map(rng, 6, 9, 3)
    kw = {"output_size": (2, 2), "spatial_scale": 1.0}
    return [
        Case("4x4 map, whole map [0, 0, 3, 3]: 2x2 bins of 2x2 pixels", (g, _boxes([0, 0, 3, 3])), kw,
             expected=np.array([[5.0, 7.0], [13.0, 15.0]])[None, ..., None],
             about="inclusive width 3 - 0 + 1 = 4 pixels, bins [0, 2) and [2, 4)"),
        Case("4x4 map, region [0, 0, 2, 2]: width 3, bins overlap", (g, _boxes([0, 0, 2, 2])), kw,
             expected=np.array([[5.0, 6.0], [9.0, 10.0]])[None, ..., None],
             about="bin size 1.5: bins [floor(0), ceil(1.5)) = [0, 2) and [floor(1.5), ceil(3)) = [1, 3)"),
        Case("4x4 map, [0, 0, 40, 40] at scale 1/16: 2.5 rounds up to 3", (g, _boxes([0, 0, 40, 40])),
             {"output_size": (2, 2), "spatial_scale": 1 / 16},
             expected=np.array([[5.0, 7.0], [13.0, 15.0]])[None, ..., None],
             about="C's round: half away from zero, round(2.5) = 3 (Python/NumPy/TF round it to 2)"),
        Case("4x4 map, [-0.3, 0.7, 2.7, 3.2]: round to nearest, not down, not toward 0",
             (g, _boxes([-0.3, 0.7, 2.7, 3.2])), kw,
             expected=np.array([[9.0, 11.0], [13.0, 15.0]])[None, ..., None],
             about="rounded to cells x 0..3, y 1..3 (int() would give x 0..2, y 0..3; floor x -1..2, y 0..3)"),
        Case("4x4 map, [2, 2, 6, 6] partly outside: empty bins are 0", (g, _boxes([2, 2, 6, 6])), kw,
             expected=np.array([[15.0, 0.0], [0.0, 0.0]])[None, ..., None],
             about="width 5, bins [2, 5) -> clipped [2, 4), [4, 7) -> clipped empty -> 0"),
        Case("non-square 3x5x2 map, scale 1/2, output (2, 3)", (ns, _boxes([2, 0, 8, 4], [0, 1, 9, 5])),
             {"output_size": (2, 3), "spatial_scale": 0.5},
             about="rows come from y, columns from x"),
        Case("6x9x3 map, scale 1/2, several regions, halves at 0.5, 1.5, 6.5",
             (wide, _boxes([1, 3, 13, 9], [-1, 0, 9, 11], [3, 5, 17, 11.2])),
             {"output_size": (3, 2), "spatial_scale": 0.5},
             about="round(0.5) = 1, round(-0.5) = -1, round(1.5) = 2, round(6.5) = 7"),
        Case("no regions", (wide, np.zeros((0, 4))), {"output_size": (2, 3), "spatial_scale": 0.5},
             about="an empty (0, 4) array of regions gives an empty (0, 2, 3, 3) output"),
        Case("output finer than the region: 1 pixel, 4x4 bins", (g, _boxes([1, 1, 1, 1])),
             {"output_size": (4, 4), "spatial_scale": 1.0}, public=False,
             about="width max(1 - 1 + 1, 1) = 1; every bin is the one pixel"),
        Case("region entirely outside the map: zeros", (wide, _boxes([40, 40, 60, 50], [0, 0, 4, 4])),
             {"output_size": (2, 2), "spatial_scale": 0.5}, public=False),
        Case("1x1 map", (np.array([[[3.0, -2.0]]], np.float32), _boxes([0, 0, 1, 1], [-3, -3, 5, 5])),
             {"output_size": (2, 3), "spatial_scale": 1.0}, public=False),
        Case("negative half: round(-2.5) = -3", (wide, _boxes([-5, -5, 5, 3])),
             {"output_size": (3, 3), "spatial_scale": 0.5}, public=False),
    ]


def _away_from_half(v: np.ndarray) -> bool:
    frac = np.abs(v) - np.floor(np.abs(v))
    return bool(np.all(np.abs(frac - 0.5) > 0.02))


def _random_boxes(rng, n, img_h, img_w, scale, *, check_half) -> np.ndarray:
    boxes = []
    while len(boxes) < n:
        w = rng.uniform(0.0, 0.9) * img_w
        h = rng.uniform(0.0, 0.9) * img_h
        x1 = rng.uniform(-0.25 * img_w, img_w - 0.5 * w)
        y1 = rng.uniform(-0.25 * img_h, img_h - 0.5 * h)
        box = np.array([x1, y1, x1 + w, y1 + h])
        if check_half and not _away_from_half(box * scale):
            continue          # .5 rounding boundaries belong to named cases
        boxes.append(box)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def _random_setup(rng):
    h, w = int(rng.integers(1, 13)), int(rng.integers(1, 17))
    c = int(rng.integers(1, 4))
    scale = float(rng.choice([1.0, 0.5, 0.25, 1 / 16]))
    n = int(rng.integers(1, 6))          # no regions: a named case
    size = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    return _map(rng, h, w, c), scale, n, size


def _pool_random_case(rng: np.random.Generator) -> Case:
    fm, scale, n, size = _random_setup(rng)
    h, w = fm.shape[:2]
    rois = _random_boxes(rng, n, h / scale, w / scale, scale, check_half=True)
    return Case("", (fm, rois), {"output_size": size, "spatial_scale": scale})


def _align_edge_cases() -> list[Case]:
    rng = np.random.default_rng(62)
    g = _grid4()
    ns = _map(rng, 5, 7, 2)
    inner = _map(rng, 6, 9, 2)
    one = {"output_size": (1, 1), "spatial_scale": 1.0, "sampling_ratio": 2}
    return [
        Case("4x4 map, [0, 0, 4, 4], 2x2 bins, adaptive sampling", (g, _boxes([0, 0, 4, 4])),
             {"output_size": (2, 2), "spatial_scale": 1.0, "sampling_ratio": -1},
             expected=np.array([[2.5, 4.5], [10.5, 12.5]])[None, ..., None],
             about="shifted by -0.5 the region is [-0.5, 3.5]; 2x2 samples per bin land on pixel centres"),
        Case("sample below -1 counts 0: [-2, -2, 2, 2], 1x1, ratio 2", (g, _boxes([-2, -2, 2, 2])), one,
             expected=np.array([[[[0.625]]]]),
             about="samples at -1.5 (zero) and 0.5 per axis: (0 + 0 + 0 + 2.5) / 4"),
        Case("sample at exactly -1 reads row 0: [1, -1, 3, 1], 1x1, ratio 2", (g, _boxes([1, -1, 3, 1])), one,
             expected=np.array([[[[1.5]]]]),
             about="y samples at -1 (kept, clamped to 0) and 0, x samples at 1 and 2"),
        Case("sample at y = H reads row H-1: [0, 3, 2, 5], 1x1, ratio 2", (g, _boxes([0, 3, 2, 5])), one,
             expected=np.array([[[[12.5]]]]),
             about="y samples at 3 and 4 = H (kept, clamped to 3), x samples at 0 and 1"),
        Case("samples off the map still count: [-3, 0, 3, 2], 1x1, ratio 2", (g, _boxes([-3, 0, 3, 2])), one,
             expected=np.array([[[[1.5]]]]),
             about="x samples at -2 (adds 0) and 1, y samples at 0 and 1: (0 + 0 + 1 + 5) / 4, not / 2"),
        Case("zero-size region, adaptive sampling: no samples, 0", (g, _boxes([1, 1, 1, 1])),
             {"output_size": (1, 1), "spatial_scale": 1.0, "sampling_ratio": 0},
             expected=np.array([[[[0.0]]]]),
             about="ceil(0 / 1) = 0 samples; the average over max(0, 1) = 1 is 0"),
        Case("zero-size region, ratio 2: four samples at one point", (g, _boxes([1, 1, 1, 1])), one,
             expected=np.array([[[[2.5]]]]), about="all samples at (0.5, 0.5)"),
        Case("non-square 5x7x2 map, scale 1/4, output (2, 3), ratio 2",
             (ns, _boxes([2.0, 1.0, 22.0, 9.0], [6.0, 4.0, 14.0, 19.0])),
             {"output_size": (2, 3), "spatial_scale": 0.25, "sampling_ratio": 2},
             about="rows come from y, columns from x; every coordinate times 1/4"),
        Case("interior regions of a 6x9x2 map, scale 1/2, ratio 2",
             (inner, _boxes([3.0, 2.0, 14.0, 9.0], [5.0, 4.0, 9.0, 8.0])),
             {"output_size": (2, 2), "spatial_scale": 0.5, "sampling_ratio": 2},
             about="every sample inside [0, H-1] x [0, W-1]: here crop_and_resize + average pooling "
                   "agrees, if its boxes are normalised by H - 1 and W - 1"),
        Case("adaptive sampling per axis: a tall thin region", (ns, _boxes([4.0, 0.0, 7.0, 20.0])),
             {"output_size": (2, 2), "spatial_scale": 0.25, "sampling_ratio": -1},
             about="g_y = ceil(5 / 2) = 3 samples per bin in y, g_x = ceil(0.75 / 2) = 1 in x"),
        Case("no regions", (inner, np.zeros((0, 4))),
             {"output_size": (3, 2), "spatial_scale": 0.5, "sampling_ratio": 2},
             about="an empty (0, 4) array of regions gives an empty (0, 3, 2, 2) output"),
        Case("region entirely outside the map: zeros", (inner, _boxes([30, 30, 40, 36])),
             {"output_size": (2, 2), "spatial_scale": 0.5, "sampling_ratio": -1}, public=False),
        Case("1x1 map", (np.array([[[3.0, -2.0]]], np.float32), _boxes([-1, -1, 2, 2], [0, 0, 1, 1])),
             {"output_size": (2, 3), "spatial_scale": 1.0, "sampling_ratio": -1}, public=False),
        Case("region much larger than the map, adaptive", (ns, _boxes([-200.0, -150.0, 260.0, 210.0])),
             {"output_size": (2, 2), "spatial_scale": 0.25, "sampling_ratio": 0}, public=False,
             about="g = ceil(90 / 2) = 45 samples per axis, most of them outside"),
    ]


def _align_random_case(rng: np.random.Generator) -> Case:
    fm, scale, n, size = _random_setup(rng)
    h, w = fm.shape[:2]
    rois = _random_boxes(rng, n, h / scale, w / scale, scale, check_half=False)
    ratio = int(rng.choice([-1, 0, 1, 2, 3]))
    return Case("", (fm, rois), {"output_size": size, "spatial_scale": scale, "sampling_ratio": ratio})


def _bench_inputs() -> tuple[np.ndarray, np.ndarray]:
    """A 50x50x256 float32 map (an 800x800 image at stride 16) and 300 regions of 32-400 px."""
    rng = np.random.default_rng(0)
    fm = rng.normal(size=(50, 50, 256)).astype(np.float32)
    size = rng.uniform(32, 400, size=(300, 2))
    corner = rng.uniform(-16, 800 - size)
    return fm, np.concatenate([corner, corner + size], axis=1)


def _align_benchmarks() -> list[Case]:
    return [Case("300 regions, 7x7, 50x50x256 map, stride 16, sampling_ratio 2", _bench_inputs(),
                 {"output_size": (7, 7), "spatial_scale": 1 / 16, "sampling_ratio": 2})]


def _pool_benchmarks() -> list[Case]:
    return [Case("300 regions, 7x7, 50x50x256 map, stride 16", _bench_inputs(),
                 {"output_size": (7, 7), "spatial_scale": 1 / 16})]


ROI_POOL = register(Exercise(
    name="roi_pool",
    chapter="06_roi_pooling",
    minutes={"loops": 30, "numpy": 25, "tf": 40},
    stretch=("tf",),
    signature="roi_pool(feature_map, rois, output_size, spatial_scale)",
    summary="Fast R-CNN RoI max pooling: quantised regions, inclusive widths, C rounding, covering bins.",
    tiers={"loops": f"{REF}:roi_pool_loops", "numpy": f"{REF}:roi_pool_numpy", "tf": f"{REF}:roi_pool_tf"},
    kernels={"tf": f"{KERNELS}:roi_pool_tf"},
    edge_cases=_pool_edge_cases,
    random_case=_pool_random_case,
    outputs=(Output("pooled", "float", rtol=1e-4, atol=1e-4, strict_atol=1e-6),),
    mistakes=(
        Mistake("spatial scale forgotten",
                "Your output is what the regions give on the image, not on the feature map: multiply "
                "the image coordinates by spatial_scale (1 / stride) before rounding them.",
                wrong=_pool_no_scale),
        Mistake("(y, x) swapped",
                "Your output is right for regions read as (y1, x1, y2, x2): the regions are xyxy, so x "
                "(columns, axis 1 of the (H, W, C) map) comes first; rows come from y1 and y2.",
                wrong=_pool_swapped),
        Mistake("banker's rounding",
                "Your output matches rounding half to even (Python's round, np.round, tf.round: "
                "round(2.5) = 2). RoI pooling rounds half away from zero like C's round: "
                "sign(v) * floor(|v| + 0.5), so 2.5 -> 3 and -0.5 -> -1. (On the [0, 0, 40, 40] "
                "case this looks like the region-width mistake; the other cases tell them apart.)",
                wrong=_pool_bankers),
        Mistake("exclusive region width",
                "Your regions are one pixel too narrow: after rounding, the region is inclusive, "
                "width = max(x2 - x1 + 1, 1) (same for the height). (On the [0, 0, 40, 40] case this "
                "looks like the rounding mistake; the other cases tell them apart.)",
                wrong=_pool_exclusive),
        Mistake("bins do not cover the region",
                "Your bins end at floor((j + 1) * w / pw), which drops pixels: bin j covers "
                "[floor(j * w / pw), ceil((j + 1) * w / pw)) so the bins together cover the region "
                "(neighbours may share a pixel).",
                wrong=_pool_floor_end),
        Mistake("coordinates truncated",
                "Your output matches truncating the scaled coordinates (int(), astype(int), np.trunc): "
                "2.7 -> 2 and -0.5 -> 0. Round them half away from zero instead, "
                "sign(v) * floor(|v| + 0.5): 2.7 -> 3, 2.5 -> 3, -0.5 -> -1.",
                wrong=_pool_truncated),
        Mistake("coordinates floored",
                "Your output matches rounding the scaled coordinates down (np.floor, //): 2.7 -> 2. "
                "Round them half away from zero instead, sign(v) * floor(|v| + 0.5): 2.7 -> 3, "
                "-0.3 -> 0, -0.5 -> -1.",
                wrong=_pool_floored),
        Mistake("empty bins not 0",
                "A bin clipped away to nothing (a region partly outside the map) must give 0; yours "
                "gives -inf, the start of your running maximum: set the empty bins to 0.",
                wrong=_pool_empty_inf),
    ),
    tf_static=("output_size",),
    benchmarks=_pool_benchmarks,
    n_hidden_random=30,
    answer_calls=("torchvision.ops.roi_pool",),
))


ROI_ALIGN = register(Exercise(
    name="roi_align",
    chapter="06_roi_pooling",
    minutes={"loops": 30, "numpy": 35, "tf": 45},
    stretch=("tf",),
    signature="roi_align(feature_map, rois, output_size, spatial_scale, sampling_ratio=-1)",
    summary="RoI align (aligned=True): half-pixel shift, bilinear samples averaged per bin, "
            "torchvision's border rule.",
    tiers={"loops": f"{REF}:roi_align_loops", "numpy": f"{REF}:roi_align_numpy", "tf": f"{REF}:roi_align_tf"},
    kernels={"numpy": "workshop.kernels.roi_align:roi_align_numpy",
             "tf": "workshop.kernels.roi_align:roi_align_tf"},
    edge_cases=_align_edge_cases,
    random_case=_align_random_case,
    outputs=(Output("aligned", "float", rtol=1e-4, atol=1e-4, strict_atol=1e-5),),
    mistakes=(
        Mistake("spatial scale forgotten",
                "Your output is what the regions give on the image, not on the feature map: multiply "
                "the image coordinates by spatial_scale (1 / stride) first.",
                wrong=_align_no_scale),
        Mistake("(y, x) swapped",
                "Your output is right for regions read as (y1, x1, y2, x2): the regions are xyxy, so x "
                "(columns, axis 1 of the (H, W, C) map) comes first; sample rows from y1 and y2.",
                wrong=_align_swapped),
        Mistake("half-pixel shift missing",
                "Your samples are half a pixel off: with aligned=True the scaled coordinates are "
                "shifted by -0.5 (pixel i's value sits at i + 0.5), x1 * spatial_scale - 0.5.",
                wrong=_align_no_shift),
        Mistake("samples at bin corners",
                "Your samples sit at the start of their sub-cells: sample k of a bin is at "
                "bin_start + (k + 0.5) * bin_size / g, the centre of its sub-cell.",
                wrong=_align_corners),
        Mistake("crop_and_resize boxes divided by H",
                "Your output matches crop_and_resize with boxes normalised by H and W. "
                "tf.image.crop_and_resize maps a normalised y to y * (H - 1): divide the sample "
                "coordinates by H - 1 and W - 1.",
                wrong=_align_crop_by_size),
        Mistake("mean over the samples on the map only",
                "You divided each bin's sum by the number of samples that fell on the map. Divide by "
                "all of them, max(g_y * g_x, 1): a sample outside [-1, H] x [-1, W] adds 0 but still "
                "counts.",
                wrong=_align_mean_of_valid),
        Mistake("sum instead of mean",
                "Your outputs are the sums of each bin's samples: divide by the number of samples, "
                "max(g_y * g_x, 1), to get their average.",
                wrong=_align_sum),
        Mistake("adaptive grid floored",
                "With sampling_ratio <= 0 a bin has g_y = ceil(roi_h / ph) rows of samples (and "
                "g_x = ceil(roi_w / pw) columns), rounded up; yours rounds down (floor, int()), so a "
                "bin thinner than a cell gets no sample at all.",
                wrong=_align_floor_grid),
        Mistake("far samples clamped",
                "A sample with y < -1 or y > H (x < -1 or x > W) contributes 0; you clamped it onto "
                "the map. Test the range first, then clamp only the samples in [-1, H] x [-1, W].",
                wrong=_align_clamp_all),
        Mistake("border samples not clamped",
                "A sample in [-1, 0) reads row 0 in full (one in (H - 1, H] reads row H - 1): clamp y "
                "to [0, H - 1] and x to [0, W - 1] before interpolating. Yours fades out past the "
                "border, as if the map were padded with zeros.",
                wrong=_align_zero_padded),
    ),
    tf_static=("output_size", "sampling_ratio"),
    benchmarks=_align_benchmarks,
    baselines={"tf.image.crop_and_resize + max_pool": f"{REF}:crop_and_resize_pool_baseline",
               "tf.image.crop_and_resize + avg_pool": f"{REF}:roi_align_crop_and_resize"},
    n_hidden_random=30,
    answer_calls=("tensorflow.image.crop_and_resize", "tensorflow.raw_ops.CropAndResize",
                  "torchvision.ops.roi_align", "keras.ops.image.crop_images"),
    no_loops_over=("feature_map",),   # the numpy tier: no loop over pixels
))
