"""Chapter 04: anchors (one cell's reference boxes, the same boxes at every cell) and box coding.

The wrong implementations below are self-contained numpy (the grader hides
``workshop.reference``), each a switch on one small correct-looking routine.

Length: one chapter's registry in one place: each exercise's cases, benchmarks and
every declared mistake with its self-contained wrong implementation, read together when an
exercise changes.
"""

from __future__ import annotations

import math

import numpy as np

from workshop.data.boxes import box_anchor_pairs

from . import register
from .spec import Case, Exercise, Mistake, Output

REF_ANCHORS = "workshop.reference.anchors"
REF_CODING = "workshop.reference.coding"
CLAMP = math.log(1000.0 / 16)
Q = math.sqrt(2.0)


# ============================================================================================
# reference_anchors
# ============================================================================================
def _ref_anchors(base_size, aspect_ratios, scales, *, inverted=False, no_sqrt=False,
                 scale_major=False, rounded=False, corner=False, full=False):
    ratios = np.asarray(aspect_ratios, np.float64).reshape(-1)
    sizes = np.asarray(scales, np.float64).reshape(-1)
    pairs = ([(r, s) for s in sizes for r in ratios] if scale_major
             else [(r, s) for r in ratios for s in sizes])
    rows = []
    for r, s in pairs:
        k = r if no_sqrt else math.sqrt(r)
        h, w = base_size * s * k, (base_size * s if no_sqrt else base_size * s / k)
        if inverted:
            h, w = w, h
        if corner:
            rows.append([0.0, 0.0, w, h])
        elif full:
            rows.append([-w, -h, w, h])
        else:
            rows.append([-w / 2, -h / 2, w / 2, h / 2])
    out = np.array(rows, np.float64).reshape(-1, 4)
    return np.round(out) if rounded else out


def _ra_inverted(base_size, aspect_ratios, scales):
    return _ref_anchors(base_size, aspect_ratios, scales, inverted=True)


def _ra_no_sqrt(base_size, aspect_ratios, scales):
    return _ref_anchors(base_size, aspect_ratios, scales, no_sqrt=True)


def _ra_scale_major(base_size, aspect_ratios, scales):
    return _ref_anchors(base_size, aspect_ratios, scales, scale_major=True)


def _ra_rounded(base_size, aspect_ratios, scales):
    return _ref_anchors(base_size, aspect_ratios, scales, rounded=True)


def _ra_corner(base_size, aspect_ratios, scales):
    return _ref_anchors(base_size, aspect_ratios, scales, corner=True)


def _ra_full(base_size, aspect_ratios, scales):
    return _ref_anchors(base_size, aspect_ratios, scales, full=True)


def _worked_anchors() -> np.ndarray:
    """The worked example's 12 anchors (base 256, ratios .5, 1, 2, scales .25, .5, 1, 2), by hand:
    ratio .5 is wide (w = 256*s*sqrt2), ratio 2 tall (h = 256*s*sqrt2)."""
    rows = []
    for s in (0.25, 0.5, 1.0, 2.0):          # ratio 0.5: half-width 128*s*sqrt2, half-height 128*s/sqrt2
        rows.append([-128 * s * Q, -64 * s * Q, 128 * s * Q, 64 * s * Q])
    for s in (0.25, 0.5, 1.0, 2.0):          # ratio 1: squares of side 256*s
        rows.append([-128 * s, -128 * s, 128 * s, 128 * s])
    for s in (0.25, 0.5, 1.0, 2.0):          # ratio 2
        rows.append([-64 * s * Q, -128 * s * Q, 64 * s * Q, 128 * s * Q])
    return np.array(rows)


def _ra_edge_cases() -> list[Case]:
    return [
        Case("worked example: base 256, ratios (.5, 1, 2), scales (.25, .5, 1, 2)",
             (256.0, np.array([0.5, 1.0, 2.0]), np.array([0.25, 0.5, 1.0, 2.0])),
             expected=_worked_anchors(),
             about="first anchor [-45.2548, -22.6274, 45.2548, 22.6274], fifth [-32, -32, 32, 32]"),
        Case("one square anchor", (16.0, np.array([1.0]), np.array([1.0])),
             expected=np.array([[-8.0, -8.0, 8.0, 8.0]])),
        Case("a tall anchor: ratio 4 (height / width)", (10.0, np.array([4.0]), np.array([1.0])),
             expected=np.array([[-2.5, -10.0, 2.5, 10.0]]),
             about="h = 10*sqrt(4) = 20, w = 10/sqrt(4) = 5: same area as the 10x10 square"),
        Case("two ratios, three scales (order: ratio-major)", (32.0, np.array([0.25, 1.0]), np.array([0.5, 1.0, 3.0])),
             expected=np.array([[-16, -4, 16, 4], [-32, -8, 32, 8], [-96, -24, 96, 24],
                                [-8, -8, 8, 8], [-16, -16, 16, 16], [-48, -48, 48, 48]], float)),
        Case("no scales: no anchors", (16.0, np.array([0.5, 1.0]), np.zeros(0)), expected=np.zeros((0, 4))),
        Case("non-integer base size", (13.7, np.array([0.3, 3.0]), np.array([0.7, 1.9])), public=False),
        Case("one ratio, many scales", (8.0, np.array([1.5]), np.array([0.5, 1.0, 2.0, 4.0, 8.0])),
             public=False),
    ]


def _ra_random_case(rng: np.random.Generator) -> Case:
    base = float(rng.choice([8.0, 16.0, 32.0, 64.0, 256.0]) if rng.random() < 0.5 else rng.uniform(4, 300))
    ratios = np.exp(rng.uniform(np.log(0.2), np.log(5.0), int(rng.integers(1, 5))))
    scales = np.exp(rng.uniform(np.log(0.25), np.log(4.0), int(rng.integers(1, 5))))
    return Case("", (base, ratios, scales))


REFERENCE_ANCHORS = register(Exercise(
    name="reference_anchors",
    chapter="04_anchors",
    minutes={"loops": 10, "numpy": 10, "tf": 10},
    signature="reference_anchors(base_size, aspect_ratios, scales) -> (A, 4)",
    summary="The A = R*S anchors of one cell, centred at (0, 0): ratio = height / width, area kept.",
    tiers={"loops": f"{REF_ANCHORS}:reference_anchors_loops",
           "numpy": f"{REF_ANCHORS}:reference_anchors_numpy",
           "tf": f"{REF_ANCHORS}:reference_anchors_tf"},
    edge_cases=_ra_edge_cases,
    random_case=_ra_random_case,
    outputs=(Output("anchors", "float", rtol=1e-4, atol=1e-3, strict_atol=1e-6),),
    mistakes=(
        Mistake("ratio inverted",
                "Your anchors are tall where they should be wide (and wide where they should be tall). "
                "The aspect ratio r is height / width: h = base*scale*sqrt(r), w = base*scale/sqrt(r). "
                "Check you did not use width / height, swap the width and height formulas, or put h in "
                "the x coordinates.", wrong=_ra_inverted),
        Mistake("area not preserved",
                "Your anchors change area with the ratio: use the square root, h = base*scale*sqrt(r) and "
                "w = base*scale/sqrt(r), so that h / w = r and h * w = (base*scale)**2 for every ratio.",
                wrong=_ra_no_sqrt),
        Mistake("scale-major order",
                "Right anchors, wrong order: they go ratio-major with the scale changing fastest "
                "(for r in ratios: for s in scales), so anchor i*S + j has ratio i and scale j.",
                wrong=_ra_scale_major),
        Mistake("rounded",
                "Your anchors are rounded to whole pixels. Coordinates are continuous: keep the exact "
                "floats (the worked example's first anchor is [-45.2548, -22.6274, 45.2548, 22.6274]).",
                wrong=_ra_rounded),
        Mistake("not centred",
                "Your anchors start at (0, 0) instead of being centred on it: an anchor of width w and "
                "height h is [-w/2, -h/2, w/2, h/2].", wrong=_ra_corner),
        Mistake("half-size used as full size",
                "Your anchors are twice too large: the corners are at +-w/2 and +-h/2, not +-w and +-h.",
                wrong=_ra_full),
    ),
))


# ============================================================================================
# grid_anchors
# ============================================================================================
def _grid(feature_shape, stride, reference, offset=0.5, *, no_offset=False, anchor_major=False,
          transposed=False, column_major=False, rounded=False, offset_in_pixels=False,
          offset_ignored=False):
    H, W = (int(v) for v in feature_shape)
    if transposed:
        H, W = W, H
    ref = np.asarray(reference, np.float64).reshape(-1, 4)
    off = 0.0 if no_offset else (0.5 if offset_ignored else float(offset))
    rows = []
    if anchor_major:
        order = [(a, y, x) for a in range(len(ref)) for y in range(H) for x in range(W)]
    elif column_major:
        order = [(a, y, x) for x in range(W) for y in range(H) for a in range(len(ref))]
    else:
        order = [(a, y, x) for y in range(H) for x in range(W) for a in range(len(ref))]
    for a, y, x in order:
        if offset_in_pixels:
            cx, cy = x * stride + off, y * stride + off
        else:
            cx, cy = (x + off) * stride, (y + off) * stride
        rows.append(ref[a] + [cx, cy, cx, cy])
    out = np.array(rows, np.float64).reshape(-1, 4)
    return np.round(out) if rounded else out


def _ga_no_offset(feature_shape, stride, reference, offset=0.5):
    return _grid(feature_shape, stride, reference, offset, no_offset=True)


def _ga_anchor_major(feature_shape, stride, reference, offset=0.5):
    return _grid(feature_shape, stride, reference, offset, anchor_major=True)


def _ga_transposed(feature_shape, stride, reference, offset=0.5):
    return _grid(feature_shape, stride, reference, offset, transposed=True)


def _ga_column_major(feature_shape, stride, reference, offset=0.5):
    return _grid(feature_shape, stride, reference, offset, column_major=True)


def _ga_rounded(feature_shape, stride, reference, offset=0.5):
    return _grid(feature_shape, stride, reference, offset, rounded=True)


def _ga_offset_pixels(feature_shape, stride, reference, offset=0.5):
    return _grid(feature_shape, stride, reference, offset, offset_in_pixels=True)


def _ga_offset_ignored(feature_shape, stride, reference, offset=0.5):
    return _grid(feature_shape, stride, reference, offset, offset_ignored=True)


def _ga_edge_cases() -> list[Case]:
    ref2 = np.array([[-5.0, -2.5, 5.0, 2.5], [-2.5, -5.0, 2.5, 5.0]])
    # cell centres: x in (5, 15, 25), y in (5, 15); rows (y*W + x)*A + a
    pinned = np.array([
        [0, 2.5, 10, 7.5], [2.5, 0, 7.5, 10], [10, 2.5, 20, 7.5], [12.5, 0, 17.5, 10],
        [20, 2.5, 30, 7.5], [22.5, 0, 27.5, 10],
        [0, 12.5, 10, 17.5], [2.5, 10, 7.5, 20], [10, 12.5, 20, 17.5], [12.5, 10, 17.5, 20],
        [20, 12.5, 30, 17.5], [22.5, 10, 27.5, 20]], float)
    worked3 = np.array([[-45.254834, -22.627417, 45.254834, 22.627417], [-32.0, -32.0, 32.0, 32.0],
                       [-22.627417, -45.254834, 22.627417, 45.254834]])
    return [
        Case("2x3 map (H=2, W=3), stride 10, two anchors", ((2, 3), 10.0, ref2), expected=pinned,
             about="centres ((x + 0.5)*10, (y + 0.5)*10); row (y*W + x)*A + a"),
        Case("one cell, offset 0 (centre at the cell's corner)", ((1, 1), 16.0, ref2), {"offset": 0.0},
             expected=ref2.copy()),
        Case("3x1 map (3 rows, 1 column), stride 16", ((3, 1), 16.0, ref2[:1]),
             expected=np.array([[3, 5.5, 13, 10.5], [3, 21.5, 13, 26.5], [3, 37.5, 13, 42.5]], float)),
        Case("2x5 map, stride 16, three anchors of the worked example", ((2, 5), 16.0, worked3)),
        Case("empty map (0 rows)", ((0, 4), 16.0, ref2), expected=np.zeros((0, 4))),
        Case("no reference anchors", ((2, 2), 8.0, np.zeros((0, 4))), expected=np.zeros((0, 4))),
        Case("4x2 map, stride 7.5, offset 0.25", ((4, 2), 7.5, worked3), {"offset": 0.25}, public=False),
        Case("1x6 map, stride 32", ((1, 6), 32.0, ref2), public=False),
    ]


def _ga_random_case(rng: np.random.Generator) -> Case:
    H, W = (int(v) for v in rng.integers(1, 7, 2))
    stride = float(rng.choice([4.0, 8.0, 16.0, 32.0]) if rng.random() < 0.7 else rng.uniform(2, 40))
    A = int(rng.integers(1, 6))
    half = rng.uniform(2, 64, size=(A, 2))
    ref = np.concatenate([-half, half], axis=1)
    kwargs = {} if rng.random() < 0.6 else {"offset": float(rng.choice([0.0, 0.5, 0.25]))}
    return Case("", ((H, W), stride, ref), kwargs)


def _ga_benchmarks() -> list[Case]:
    ratios, scales = [0.5, 1.0, 2.0], [0.25, 0.5, 1.0, 2.0, 4.0]
    ref = np.array([[-s * 64 / math.sqrt(r), -s * 64 * math.sqrt(r), s * 64 / math.sqrt(r),
                     s * 64 * math.sqrt(r)] for r in ratios for s in scales])
    return [Case("64x64 map, 15 anchors, stride 16", ((64, 64), 16.0, ref))]


GRID_ANCHORS = register(Exercise(
    name="grid_anchors",
    chapter="04_anchors",
    minutes={"loops": 15, "numpy": 15, "tf": 15},
    signature="grid_anchors(feature_shape, stride, reference, offset=0.5) -> (H*W*A, 4)",
    summary="Every reference anchor at every feature-map cell, position-major, anchor fastest.",
    tiers={"loops": f"{REF_ANCHORS}:grid_anchors_loops",
           "numpy": f"{REF_ANCHORS}:grid_anchors_numpy",
           "tf": f"{REF_ANCHORS}:grid_anchors_tf"},
    edge_cases=_ga_edge_cases,
    random_case=_ga_random_case,
    outputs=(Output("anchors", "float", rtol=1e-4, atol=1e-3, strict_atol=1e-6),),
    mistakes=(
        Mistake("missing half-stride offset",
                "Your anchors sit on the cells' top-left corners: the centre of cell (y, x) is "
                "((x + offset) * stride, (y + offset) * stride), with offset 0.5 by default.",
                wrong=_ga_no_offset),
        Mistake("offset not scaled by the stride",
                "The offset is in cells, not pixels: the centre is (x + offset) * stride, "
                "not x * stride + offset.", wrong=_ga_offset_pixels),
        Mistake("anchor-major order",
                "Right anchors, wrong order: all positions of anchor 0 come first in yours. The row of "
                "anchor a at cell (y, x) is (y*W + x)*A + a (anchor fastest), the order in which a "
                "(1, H, W, A*4) conv output reshapes to (H*W*A, 4).", wrong=_ga_anchor_major),
        Mistake("H and W transposed",
                "You read feature_shape as (width, height): it is (height, width), as for images. "
                "y runs over the H rows, x over the W columns.", wrong=_ga_transposed),
        Mistake("column-major order",
                "Right anchors, wrong order: you loop x outside y. Rows go row by row like a NumPy "
                "array, (y*W + x)*A + a: for y, then for x, then for each anchor.", wrong=_ga_column_major),
        Mistake("rounded",
                "Your anchors are rounded to whole pixels. Keep the exact float coordinates.",
                wrong=_ga_rounded),
        Mistake("offset argument ignored",
                "Your centres always sit in the middle of the cells: use the offset argument, "
                "centre ((x + offset) * stride, (y + offset) * stride); 0.5 is only its default "
                "(offset 0 puts the centre on the cell's top-left corner).", wrong=_ga_offset_ignored),
    ),
    benchmarks=_ga_benchmarks,
))


# ============================================================================================
# encode / decode
# ============================================================================================
def _encode(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0), *, xy_mixed=False, by_box=False,
            no_log=False, no_weights=False, corners=False, log_inverted=False, weights_divided=False,
            log10=False, plus_one=False, in_pixels=False):
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    a = np.asarray(anchors, np.float64).reshape(-1, 4)
    wx, wy, ww, wh = (1.0, 1.0, 1.0, 1.0) if no_weights else (float(v) for v in weights)
    if weights_divided:
        wx, wy, ww, wh = 1 / wx, 1 / wy, 1 / ww, 1 / wh
    one = 1.0 if plus_one else 0.0
    gw, gh = b[:, 2] - b[:, 0] + one, b[:, 3] - b[:, 1] + one
    aw, ah = a[:, 2] - a[:, 0] + one, a[:, 3] - a[:, 1] + one
    if corners:
        gx, gy, ax, ay = b[:, 0], b[:, 1], a[:, 0], a[:, 1]
    else:
        gx, gy = b[:, 0] + gw / 2, b[:, 1] + gh / 2
        ax, ay = a[:, 0] + aw / 2, a[:, 1] + ah / 2
    nx, ny = (gw, gh) if by_box else (aw, ah)
    if xy_mixed:
        ny = nx
    if in_pixels:
        nx = ny = 1.0
    rw, rh = (aw / gw, ah / gh) if log_inverted else (gw / aw, gh / ah)
    log = np.log10 if log10 else np.log
    lw, lh = (rw, rh) if no_log else (log(rw), log(rh))
    return np.stack([wx * (gx - ax) / nx, wy * (gy - ay) / ny, ww * lw, wh * lh], axis=1)


def _en_xy_mixed(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, xy_mixed=True)


def _en_by_box(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, by_box=True)


def _en_no_log(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, no_log=True)


def _en_no_weights(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, no_weights=True)


def _en_corners(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, corners=True)


def _en_log_inverted(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, log_inverted=True)


def _en_weights_divided(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, weights_divided=True)


def _en_log10(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, log10=True)


def _en_plus_one(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, plus_one=True)


def _en_in_pixels(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _encode(boxes, anchors, weights, in_pixels=True)


WORKED_BOX = np.array([[2.0, 3.0, 21.0, 26.0]])
WORKED_ANCHOR = np.array([[0.0, 0.0, 16.0, 16.0]])
WORKED_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# centres (11.5, 14.5) vs (8, 8), sizes (19, 23) vs (16, 16)
WORKED_DELTAS = np.array([[10 * 3.5 / 16, 10 * 6.5 / 16, 5 * math.log(19 / 16), 5 * math.log(23 / 16)]])


def _en_edge_cases() -> list[Case]:
    anchors = np.array([[0.0, 0.0, 16.0, 32.0], [10.0, 20.0, 74.0, 36.0], [-8.0, -8.0, 8.0, 8.0]])
    boxes = np.array([[4.0, -2.0, 18.0, 40.0], [0.0, 18.0, 90.0, 30.0], [-8.0, -8.0, 8.0, 8.0]])
    return [
        Case("worked example: anchor [0, 0, 16, 16], box [2, 3, 21, 26], weights (10, 10, 5, 5)",
             (WORKED_BOX, WORKED_ANCHOR), {"weights": WORKED_WEIGHTS}, expected=WORKED_DELTAS,
             about="deltas (2.1875, 4.0625, 0.85925, 1.81453)"),
        Case("box equal to its anchor", (anchors.copy(), anchors.copy()), expected=np.zeros((3, 4))),
        Case("shifted only, non-square anchor (16 wide, 32 high)",
             (np.array([[8.0, -4.0, 24.0, 28.0]]), anchors[:1]), expected=np.array([[0.5, -0.125, 0.0, 0.0]])),
        Case("non-square anchors, unit weights", (boxes, anchors)),
        Case("non-square anchors, weights (10, 10, 5, 5)", (boxes, anchors), {"weights": WORKED_WEIGHTS}),
        Case("no boxes", (np.zeros((0, 4)), np.zeros((0, 4))), expected=np.zeros((0, 4))),
        Case("tiny box in a big anchor", (np.array([[100.0, 100.0, 100.5, 101.0]]),
                                          np.array([[0.0, 0.0, 512.0, 256.0]])), public=False),
        Case("uneven weights (1, 2, 3, 4)", (boxes, anchors), {"weights": (1.0, 2.0, 3.0, 4.0)}, public=False),
    ]


def _weights(rng: np.random.Generator) -> dict:
    pick = rng.random()
    if pick < 0.3:
        return {}
    if pick < 0.6:
        return {"weights": WORKED_WEIGHTS}
    return {"weights": tuple(float(v) for v in rng.uniform(0.5, 12, 4))}


def _en_random_case(rng: np.random.Generator) -> Case:
    boxes, anchors = box_anchor_pairs(rng, int(rng.integers(1, 25)))
    return Case("", (boxes, anchors), _weights(rng))


def _coding_benchmarks(kind: str):
    def cases() -> list[Case]:
        rng = np.random.default_rng(0)
        boxes, anchors = box_anchor_pairs(rng, 20000)
        if kind == "decode":
            return [Case("20,000 boxes", (_encode(boxes, anchors, WORKED_WEIGHTS), anchors),
                         {"weights": WORKED_WEIGHTS})]
        return [Case("20,000 boxes", (boxes, anchors), {"weights": WORKED_WEIGHTS})]
    return cases


ENCODE = register(Exercise(
    name="encode",
    chapter="04_anchors",
    minutes={"loops": 10, "numpy": 10, "tf": 10},
    signature="encode(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)) -> deltas (N, 4)",
    summary="Box regression targets: centre offsets in anchor sizes, log size ratios, weighted.",
    tiers={"loops": f"{REF_CODING}:encode_loops", "numpy": f"{REF_CODING}:encode_numpy",
           "tf": f"{REF_CODING}:encode_tf"},
    edge_cases=_en_edge_cases,
    random_case=_en_random_case,
    outputs=(Output("deltas", "float", rtol=1e-4, atol=1e-4, strict_atol=1e-6),),
    mistakes=(
        Mistake("x and y mixed",
                "Your dy is divided by the anchor's width: x offsets are in anchor widths, y offsets in "
                "anchor heights, dy = wy * (gy - ay) / ah.", wrong=_en_xy_mixed),
        Mistake("normalised by the box",
                "You divided the centre offsets by the box's size; divide by the anchor's: "
                "dx = wx * (gx - ax) / aw (the anchor is what the network sees, the box is unknown at "
                "test time).", wrong=_en_by_box),
        Mistake("missing log",
                "Your dw, dh are plain size ratios; take their log: dw = ww * log(gw / aw), so that 0 "
                "means 'same size' and decode's exp undoes it.", wrong=_en_no_log),
        Mistake("log ratio inverted",
                "Your dw, dh have the wrong sign: dw = ww * log(gw / aw) (box over anchor), not "
                "log(aw / gw).", wrong=_en_log_inverted),
        Mistake("weights ignored",
                "Your deltas ignore the weights: multiply each delta by its weight, "
                "(wx*dx, wy*dy, ww*dw, wh*dh) (decode divides by them).", wrong=_en_no_weights),
        Mistake("corners instead of centres",
                "Your dx, dy use the top-left corners: the offsets are between the centres, "
                "gx = x1 + w/2 for the box and ax = x1 + w/2 for the anchor.", wrong=_en_corners),
        Mistake("weights divided",
                "You divided the deltas by the weights; encode multiplies by them, "
                "(wx*dx, wy*dy, ww*dw, wh*dh), and decode divides.", wrong=_en_weights_divided),
        Mistake("log base 10",
                "Your dw, dh use the base-10 logarithm: use the natural log, np.log(gw / aw) "
                "(decode undoes it with np.exp).", wrong=_en_log10),
        Mistake("+1 in widths and heights",
                "Your sizes follow the old '+1' pixel convention (w = x2 - x1 + 1): boxes are "
                "continuous here, w = x2 - x1 and the centre is x1 + w/2.", wrong=_en_plus_one),
        Mistake("centre offsets in pixels",
                "Your dx, dy are in pixels: divide the centre offsets by the anchor's size, "
                "dx = wx * (gx - ax) / aw and dy = wy * (gy - ay) / ah, so that they do not depend "
                "on the anchor's scale.", wrong=_en_in_pixels),
    ),
    benchmarks=_coding_benchmarks("encode"),
))


def _decode(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), *, xy_mixed=False, by_new=False,
            no_exp=False, no_weights=False, no_clamp=False, weights_multiplied=False, centre_as_corner=False,
            clamp_first=False, both_sides=False, pow10=False, in_pixels=False, out="xyxy"):
    d = np.asarray(deltas, np.float64).reshape(-1, 4)
    a = np.asarray(anchors, np.float64).reshape(-1, 4)
    wx, wy, ww, wh = (1.0, 1.0, 1.0, 1.0) if no_weights else (float(v) for v in weights)
    if weights_multiplied:
        wx, wy, ww, wh = 1 / wx, 1 / wy, 1 / ww, 1 / wh
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    ax, ay = a[:, 0] + aw / 2, a[:, 1] + ah / 2
    if clamp_first:      # the clamp on the raw (weighted) delta, then the division
        dw, dh = np.minimum(d[:, 2], CLAMP) / ww, np.minimum(d[:, 3], CLAMP) / wh
    else:
        dw, dh = d[:, 2] / ww, d[:, 3] / wh
        if both_sides:
            dw, dh = np.clip(dw, -CLAMP, CLAMP), np.clip(dh, -CLAMP, CLAMP)
        elif not no_clamp:
            dw, dh = np.minimum(dw, CLAMP), np.minimum(dh, CLAMP)
    grow = (lambda v: 10.0 ** v) if pow10 else np.exp
    with np.errstate(over="ignore", invalid="ignore"):
        gw = dw * aw if no_exp else grow(dw) * aw
        gh = dh * ah if no_exp else grow(dh) * ah
        nx, ny = (gw, gh) if by_new else (aw, ah)
        if xy_mixed:
            ny = nx
        if in_pixels:
            nx = ny = 1.0
        gx = d[:, 0] / wx * nx + ax
        gy = d[:, 1] / wy * ny + ay
        if centre_as_corner:
            return np.stack([gx, gy, gx + gw, gy + gh], axis=1)
        if out == "cxcywh":
            return np.stack([gx, gy, gw, gh], axis=1)
        if out == "yxyx":
            return np.stack([gy - gh / 2, gx - gw / 2, gy + gh / 2, gx + gw / 2], axis=1)
        return np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], axis=1)


def _de_xy_mixed(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, xy_mixed=True)


def _de_by_new(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, by_new=True)


def _de_no_exp(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, no_exp=True)


def _de_no_weights(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, no_weights=True)


def _de_no_clamp(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, no_clamp=True)


def _de_weights_multiplied(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, weights_multiplied=True)


def _de_centre_as_corner(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, centre_as_corner=True)


def _de_clamp_first(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, clamp_first=True)


def _de_both_sides(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, both_sides=True)


def _de_pow10(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, pow10=True)


def _de_in_pixels(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, in_pixels=True)


def _de_cxcywh(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, out="cxcywh")


def _de_yxyx(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(deltas, anchors, weights, out="yxyx")


def _de_edge_cases() -> list[Case]:
    anchors = np.array([[0.0, 0.0, 16.0, 32.0], [10.0, 20.0, 74.0, 36.0], [-8.0, -8.0, 8.0, 8.0]])
    deltas = np.array([[0.5, -0.25, 0.3, -0.2], [-0.1, 0.4, -0.5, 0.25], [0.0, 0.0, 0.0, 0.0]])
    return [
        Case("worked example, back: deltas (2.1875, 4.0625, 0.85925, 1.81453), weights (10, 10, 5, 5)",
             (WORKED_DELTAS.copy(), WORKED_ANCHOR), {"weights": WORKED_WEIGHTS}, expected=WORKED_BOX.copy(),
             about="decode(encode(box)) is the box"),
        Case("zero deltas give the anchors", (np.zeros((3, 4)), anchors), expected=anchors.copy()),
        Case("shift only, non-square anchor", (np.array([[0.5, -0.125, 0.0, 0.0]]), anchors[:1]),
             expected=np.array([[8.0, -4.0, 24.0, 28.0]])),
        Case("huge dw, very negative dh: dw clamped at log(1000/16)",
             (np.array([[0.0, 0.0, 1000.0, -1000.0]]), np.array([[0.0, 0.0, 16.0, 16.0]])),
             expected=np.array([[-492.0, 8.0, 508.0, 8.0]]),
             about="w = 16 * exp(log(1000/16)) = 1000 (not inf); h = 16 * exp(-1000) = 0"),
        Case("non-square anchors, weights (10, 10, 5, 5)", (deltas * 5, anchors), {"weights": WORKED_WEIGHTS}),
        Case("dw above the clamp, weights (10, 10, 5, 5)",
             (np.array([[1.0, 2.0, 30.0, 5.0]]), np.array([[10.0, 10.0, 26.0, 42.0]])),
             {"weights": WORKED_WEIGHTS}, about="dw / ww = 6 > log(62.5) = 4.135: clamped"),
        Case("no deltas", (np.zeros((0, 4)), np.zeros((0, 4))), expected=np.zeros((0, 4))),
        Case("non-square anchors, uneven weights", (deltas, anchors), {"weights": (1.0, 2.0, 3.0, 4.0)},
             public=False),
        Case("negative dw, dh", (-np.abs(deltas) * 3, anchors), public=False),
    ]


def _de_random_case(rng: np.random.Generator) -> Case:
    n = int(rng.integers(1, 25))
    _, anchors = box_anchor_pairs(rng, n)
    deltas = rng.normal(0, 0.5, size=(n, 4))
    kwargs = _weights(rng)
    scale = np.asarray(kwargs.get("weights", (1.0, 1.0, 1.0, 1.0)))
    if rng.random() < 0.3:  # an exploding prediction in one row
        deltas[int(rng.integers(n)), 2 + int(rng.integers(2))] = rng.uniform(5, 20)
    return Case("", (deltas * scale, anchors), kwargs)


DECODE = register(Exercise(
    name="decode",
    chapter="04_anchors",
    minutes={"loops": 10, "numpy": 10, "tf": 15},
    signature="decode(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)) -> boxes (N, 4)",
    summary="Boxes from deltas: undo the weights, shift the centre, exp the size (clamped).",
    tiers={"loops": f"{REF_CODING}:decode_loops", "numpy": f"{REF_CODING}:decode_numpy",
           "tf": f"{REF_CODING}:decode_tf"},
    edge_cases=_de_edge_cases,
    random_case=_de_random_case,
    outputs=(Output("boxes", "float", rtol=1e-4, atol=1e-3, strict_atol=1e-6),),
    mistakes=(
        Mistake("x and y mixed",
                "Your y centre moves by dy times the anchor's width: use the height, "
                "gy = dy / wy * ah + ay.", wrong=_de_xy_mixed),
        Mistake("scaled by the new box",
                "You scaled the centre shift by the decoded box's size; scale it by the anchor's: "
                "gx = dx / wx * aw + ax.", wrong=_de_by_new),
        Mistake("missing exp",
                "Your widths are dw * aw: the deltas hold log size ratios, so gw = exp(dw / ww) * aw.",
                wrong=_de_no_exp),
        Mistake("weights applied on one side only",
                "Your decode ignores the weights: encode multiplied the deltas by (wx, wy, ww, wh), so "
                "decode must divide by them before using them.", wrong=_de_no_weights),
        Mistake("weights multiplied",
                "You multiplied the deltas by the weights again; decode divides by them "
                "(dx / wx, dy / wy, dw / ww, dh / wh).", wrong=_de_weights_multiplied),
        Mistake("no clamp",
                "A large dw or dh blows up in your decode (huge or infinite boxes): clamp dw / ww and "
                "dh / wh at log(1000 / 16) before exp.", wrong=_de_no_clamp),
        Mistake("centre used as corner",
                "Your boxes start at the decoded centre: the box is [gx - gw/2, gy - gh/2, gx + gw/2, "
                "gy + gh/2].", wrong=_de_centre_as_corner),
        Mistake("clamped before dividing by the weights",
                "You clamp dw and dh before dividing by the weights: the clamp bounds the size ratio "
                "itself, so divide first, then clamp: np.minimum(dw / ww, log(1000 / 16)) (with "
                "weights (10, 10, 5, 5), dw = 30 means a ratio of exp(6), clamped to 62.5).",
                wrong=_de_clamp_first),
        Mistake("clamped on both sides",
                "You also clamp dw / ww and dh / wh from below: the clamp is only an upper bound, "
                "np.minimum(dw / ww, log(1000 / 16)); a very negative dh gives a (nearly) flat box.",
                wrong=_de_both_sides),
        Mistake("10 ** instead of exp",
                "Your sizes use 10 ** (dw / ww): the deltas hold natural logs, gw = exp(dw / ww) * aw.",
                wrong=_de_pow10),
        Mistake("centre shift in pixels",
                "Your centres move by dx / wx pixels: the shift is in anchor sizes, "
                "gx = dx / wx * aw + ax and gy = dy / wy * ah + ay.", wrong=_de_in_pixels),
        Mistake("returns (cx, cy, w, h)",
                "Your boxes are (centre x, centre y, width, height): return corners, "
                "[gx - gw/2, gy - gh/2, gx + gw/2, gy + gh/2] (x1, y1, x2, y2).", wrong=_de_cxcywh),
        Mistake("returns (y1, x1, y2, x2)",
                "Your boxes put y before x: return (x1, y1, x2, y2), "
                "[gx - gw/2, gy - gh/2, gx + gw/2, gy + gh/2].", wrong=_de_yxyx),
    ),
    benchmarks=_coding_benchmarks("decode"),
))
