"""Diagrams of the course's networks, drawn with matplotlib from the course's own numbers.

* :func:`faster_rcnn`: the two-stage detector, stage by stage, with its tensor shapes and the
  chapter that builds each stage;
* :func:`single_shot`: one stage against two, on the same backbone and anchors;
* :func:`rpn_head`: the RPN head over the feature map: one cell, its 3x3 window, its anchors
  and the head's two outputs per anchor;
* :func:`unet`: the U of the course's UNet (and, with ``with_fcn=True``, an FCN beside it);
  :func:`fcn` alone.

Each function returns a ``matplotlib.figure.Figure`` that pyplot does not track (nothing to
close; a notebook shows it as the cell's value) and takes its numbers as arguments whose
defaults come from the course's configuration (:class:`workshop.models.detector.DetectorConfig`,
the backbone's constants, the UNet's training settings), so a diagram follows the code. Anchors
are float ``(A, 4)`` xyxy in image pixels (see :mod:`workshop.conventions`).
"""

from __future__ import annotations

import math

import numpy as np

from workshop.models.cnn import BACKBONE_CHANNELS
from workshop.models.detector import DetectorConfig

TIMES = "×"
COLOURS = {"data": "#eef3f8", "net": "#fbe3c8", "geometry": "#dcefdc", "output": "#e8e0f3"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _shape(*sizes) -> str:
    """``_shape(7, 7, 96)`` -> ``"7×7×96"``."""
    return TIMES.join(str(s) for s in sizes)


def _box(ax, x, y, name, detail="", chapter="", kind="net", width=1.35, height=0.9):
    """A stage: a rounded box centred at ``(x, y)``, its name in bold, details below, the
    chapter that builds it under the box."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=COLOURS[kind], edgecolor="#444444", linewidth=1.1))
    ax.text(x, y + height / 2 - 0.1, name, ha="center", va="top", fontsize=9.5, fontweight="bold")
    if detail:
        ax.text(x, y + height / 2 - 0.32, detail, ha="center", va="top", fontsize=7.8,
                linespacing=1.25)
    if chapter:
        ax.text(x, y - height / 2 - 0.05, chapter, ha="center", va="top", fontsize=7.5,
                color="#1f5f9f", style="italic")


def _arrow(ax, start, end, label="", dashed=False, colour="#333333", label_offset=(0.0, 0.08)):
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.2, shrinkA=0, shrinkB=0,
                                linestyle="--" if dashed else "-"))
    if label:
        mx = (start[0] + end[0]) / 2 + label_offset[0]
        my = (start[1] + end[1]) / 2 + label_offset[1]
        ax.text(mx, my, label, ha="center", va="bottom", fontsize=7.5, color=colour)


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value:,}"


# -- the detector -----------------------------------------------------------------------------
def faster_rcnn(config: DetectorConfig | None = None, channels: int = BACKBONE_CHANNELS):
    """The course's two-stage detector as a flow of labelled stages with their tensor shapes
    (at test time, one image) and the chapter that builds each; returns the Figure."""
    c = config or DetectorConfig()
    H, W = c.image_size
    h, w = c.feature_shape
    A, K, p = c.num_anchors, c.num_classes, c.pool_size
    fig = _figure(14, 5.4)
    ax = fig.add_subplot()
    top, bottom, step = 2.2, 0.45, 1.75
    x = [i * step for i in range(5)]
    _box(ax, x[0], top, "image", _shape(H, W, 3), "synthetic scenes", kind="data")
    _box(ax, x[1], top, "backbone", f"CNN, stride {c.stride}", "ch. 1–2")
    _box(ax, x[2], top, "feature map", _shape(h, w, channels), kind="data")
    _box(ax, x[3], top, "RPN head",
         f"3×3 conv ({c.rpn_channels})\nper anchor: 1 objectness\nlogit, 4 deltas",
         "ch. 5 (targets, loss)", width=1.45, height=1.05)
    _box(ax, x[4], top, "proposals (NMS)",
         f"decode, clip, best {_number(c.test_pre_nms)}\nNMS IoU {_number(c.rpn_nms_threshold)}"
         f" → {_number(c.test_post_nms)}", "ch. 5 (NMS: ch. 3)", kind="geometry", width=1.5)
    _box(ax, x[3] + step / 2, top + 1.35, "anchors",
         f"{A} per cell, {_number(h * w * A)} in all\n({_shape(h, w, A)})", "ch. 4",
         kind="geometry", width=1.6, height=0.75)
    _box(ax, x[2], bottom, "RoI align", f"{_shape(p, p, channels)} per region\n"
         f"{_number(c.test_post_nms)} regions", "ch. 6", kind="geometry", width=1.45)
    _box(ax, x[3], bottom, "box head",
         f"class scores K+1 = {K + 1}\nper-class deltas {_shape(K, 4)}", "ch. 6 (targets, loss)",
         width=1.5)
    _box(ax, x[4], bottom, "decode + NMS",
         f"per class, score ≥ {_number(c.score_threshold)}\nNMS IoU {_number(c.nms_threshold)}",
         "ch. 4 decode, ch. 3 batched NMS", kind="geometry", width=1.5)
    _box(ax, x[4] + step, bottom, "detections",
         f"≤ {_number(c.max_detections)} boxes,\nscores, classes", "ch. 9 scores them (mAP)",
         kind="output")

    half = 0.7
    for a, b in ((0, 1), (1, 2), (2, 3)):
        _arrow(ax, (x[a] + half, top), (x[b] - half, top))
    _arrow(ax, (x[3] + 0.73, top), (x[4] - 0.75, top))
    _arrow(ax, (x[3] + step / 2 + 0.6, top + 1.35 - 0.38), (x[4] - 0.05, top + 0.45))
    _arrow(ax, (x[2], top - 0.45), (x[2], bottom + 0.45), "features", label_offset=(-0.35, 0))
    _arrow(ax, (x[4] - 0.62, top - 0.45), (x[2] + 0.55, bottom + 0.45), "boxes")
    _arrow(ax, (x[4] + 0.6, top - 0.45), (x[4] + 0.6, bottom + 0.45), "refined per class",
           dashed=True, label_offset=(0.5, 0))
    _arrow(ax, (x[2] + 0.725, bottom), (x[3] - 0.75, bottom))
    _arrow(ax, (x[3] + 0.75, bottom), (x[4] - 0.75, bottom))
    _arrow(ax, (x[4] + 0.75, bottom), (x[4] + step - 0.675, bottom))
    ax.text(x[0] - 0.7, top + 1.7, "stage 1: where to look", fontsize=10, color="#555555")
    ax.text(x[0] - 0.7, bottom + 0.1, "stage 2: what is there,\nand exactly where", fontsize=10,
            color="#555555", va="center")
    ax.set_xlim(x[0] - 0.8, x[4] + step + 0.8)
    ax.set_ylim(bottom - 0.85, top + 1.85)
    ax.set_axis_off()
    ax.set_title(f"Faster R-CNN as the course builds it: {K} classes + background, "
                 f"{A} anchors per cell, stride {c.stride}", fontsize=11)
    return fig


def single_shot(config: DetectorConfig | None = None, channels: int = BACKBONE_CHANNELS,
                head_channels: int = 128):
    """One stage against two: the single-shot detector of chapter 10 (a head that gives every
    anchor its class scores and its box in one pass) above the course's two-stage detector
    (proposals, then RoI align and a box head per region), on the same backbone and anchors;
    returns the Figure."""
    c = config or DetectorConfig()
    H, W = c.image_size
    h, w = c.feature_shape
    A, K = c.num_anchors, c.num_classes
    n = h * w * A
    fig = _figure(14, 5.0)
    ax = fig.add_subplot()
    top, bottom, step = 2.25, 0.35, 1.75
    mid = (top + bottom) / 2
    x = [i * step for i in range(6)]
    _box(ax, x[0], mid, "image", _shape(H, W, 3), kind="data")
    _box(ax, x[1], mid, "backbone", f"CNN, stride {c.stride}\n(shared)")
    _box(ax, x[2], mid, "feature map", _shape(h, w, channels), kind="data")
    _arrow(ax, (x[0] + 0.675, mid), (x[1] - 0.675, mid))
    _arrow(ax, (x[1] + 0.675, mid), (x[2] - 0.675, mid))

    _box(ax, x[3], top, "single-shot head",
         f"conv layers ({head_channels})\nper anchor: {K} class\nlogits (sigmoid), 4 deltas",
         "ch. 10 (match_anchors, focal_loss)", width=1.6, height=1.05)
    _box(ax, x[4], top, "every anchor",
         f"{_number(n)} anchors\n{_shape(_number(n), K)} scores,\n{_shape(_number(n), 4)} deltas",
         kind="geometry", width=1.5, height=1.05)
    _box(ax, x[5], top, "decode + NMS", f"per class\nscore ≥ {_number(c.score_threshold)}",
         "ch. 4, ch. 3", kind="geometry", width=1.4)
    _arrow(ax, (x[2] + 0.675, mid + 0.2), (x[3] - 0.8, top - 0.2))
    _arrow(ax, (x[3] + 0.8, top), (x[4] - 0.75, top))
    _arrow(ax, (x[4] + 0.75, top), (x[5] - 0.7, top))

    _box(ax, x[3], bottom, "RPN + proposals",
         f"1 objectness logit\nper anchor → best {_number(c.test_post_nms)}", "ch. 4–5",
         width=1.6, height=1.0)
    _box(ax, x[4], bottom, "RoI align + box head",
         f"{_shape(c.pool_size, c.pool_size, channels)} per region\n"
         f"{K + 1} scores, {_shape(K, 4)} deltas", "ch. 6", width=1.75, height=1.0)
    _box(ax, x[5], bottom, "decode + NMS", f"per class\nscore ≥ {_number(c.score_threshold)}",
         "ch. 4, ch. 3", kind="geometry", width=1.4)
    _arrow(ax, (x[2] + 0.675, mid - 0.2), (x[3] - 0.8, bottom + 0.2))
    _arrow(ax, (x[3] + 0.8, bottom), (x[4] - 0.875, bottom))
    _arrow(ax, (x[4] + 0.875, bottom), (x[5] - 0.7, bottom))

    ax.text(x[3] - 0.8, top + 0.85, "one stage: every anchor scored and refined in one pass",
            fontsize=10, color="#555555")
    ax.text(x[3] - 0.8, bottom - 0.95,
            "two stages: where to look, then what is there, region by region",
            fontsize=10, color="#555555")
    ax.set_xlim(x[0] - 0.8, x[5] + 0.8)
    ax.set_ylim(bottom - 1.1, top + 1.1)
    ax.set_axis_off()
    ax.set_title(f"One backbone, {A} anchors per cell, two ways to detect "
                 f"({K} classes, stride {c.stride})", fontsize=11)
    return fig


# -- the RPN head ------------------------------------------------------------------------------
def cell_anchors(row: int, col: int, config: DetectorConfig | None = None) -> np.ndarray:
    """The ``A`` anchors of feature cell ``(row, col)``: float64 ``(A, 4)`` xyxy in image
    pixels, ratio (height / width) major, scale fastest, centred on the cell's centre
    ``((col + 0.5) * stride, (row + 0.5) * stride)``, area ``(base * scale)**2``."""
    c = config or DetectorConfig()
    cx, cy = (col + 0.5) * c.stride, (row + 0.5) * c.stride
    rows = []
    for ratio in c.anchor_ratios:
        for scale in c.anchor_scales:
            h = c.anchor_base * scale * math.sqrt(ratio)
            w = c.anchor_base * scale / math.sqrt(ratio)
            rows.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def rpn_head(config: DetectorConfig | None = None, cell: tuple[int, int] | None = None,
             channels: int = BACKBONE_CHANNELS):
    """The RPN head over the feature map: the grid of cells over the image, one ``cell``
    (row, col; the centre one by default) with its 3x3 window and its anchors, and the head's
    outputs per anchor; returns the Figure."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    c = config or DetectorConfig()
    H, W = c.image_size
    h, w = c.feature_shape
    A, s = c.num_anchors, c.stride
    row, col = cell if cell is not None else (h // 2 - 1, w // 2 - 1)
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"cell: expected a cell of the {h}x{w} feature map, got {(row, col)}")
    fig = _figure(13, 5.6)
    grid_ax, head_ax = fig.subplots(1, 2, width_ratios=[1, 1.25])

    for k in range(h + 1):
        grid_ax.axhline(k * s, color="#bbbbbb", lw=0.6)
    for k in range(w + 1):
        grid_ax.axvline(k * s, color="#bbbbbb", lw=0.6)
    r0, r1, c0, c1 = max(row - 1, 0), min(row + 2, h), max(col - 1, 0), min(col + 2, w)
    grid_ax.add_patch(Rectangle((c0 * s, r0 * s), (c1 - c0) * s, (r1 - r0) * s,
                                facecolor=to_rgba("#f0a030", 0.25), edgecolor="#c06000", lw=1.5,
                                ls="--", label="its 3×3 window"))
    grid_ax.add_patch(Rectangle((col * s, row * s), s, s, facecolor="#c06000", edgecolor="#c06000",
                                label=f"cell ({row}, {col})"))
    colours = colormaps["tab10"]
    anchors = cell_anchors(row, col, c)
    n_scales = len(c.anchor_scales)
    for a, (x0, y0, x1, y1) in enumerate(anchors):
        scale = c.anchor_scales[a % n_scales]
        grid_ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.3,
                                    edgecolor=colours(a % n_scales),
                                    label=f"anchors, scale {_number(float(scale))} "
                                          f"({_number(float(c.anchor_base * scale))} px)"
                                    if a < n_scales else None))
    grid_ax.set_xlim(min(0, anchors[:, 0].min()) - 2, max(W, anchors[:, 2].max()) + 2)
    grid_ax.set_ylim(max(H, anchors[:, 3].max()) + 2, min(0, anchors[:, 1].min()) - 2)
    grid_ax.set_aspect("equal")
    grid_ax.set_xlabel("x (image pixels)")
    grid_ax.set_ylabel("y (image pixels)")
    grid_ax.legend(loc="upper left", fontsize=7.5, framealpha=0.9)
    grid_ax.set_title(f"feature map {_shape(h, w)} over the {_shape(H, W)} image: "
                      f"one cell = {_shape(s, s)} pixels;\nthe {A} anchors of one cell "
                      f"({len(c.anchor_ratios)} ratios × {n_scales} scales)", fontsize=9.5)

    ax = head_ax
    _box(ax, 0.9, 2.0, "feature map", f"{_shape(h, w, channels)}\n(the 3×3 window\nof each cell)",
         kind="data", width=1.5, height=1.1)
    _box(ax, 3.0, 2.0, "3×3 conv + ReLU",
         f"{c.rpn_channels} channels\n{_shape(h, w, c.rpn_channels)}",
         width=1.9, height=1.1)
    _box(ax, 5.1, 3.0, "1×1 conv: objectness", f"{A} logits per cell\n{_shape(h, w, A)}",
         width=2.3, height=0.95)
    _box(ax, 5.1, 1.0, "1×1 conv: deltas", f"{A}×4 = {4 * A} per cell\n{_shape(h, w, 4 * A)}",
         width=2.3, height=0.95)
    _arrow(ax, (1.65, 2.0), (2.05, 2.0))
    _arrow(ax, (3.95, 2.3), (4.5, 2.52))
    _arrow(ax, (3.95, 1.7), (4.5, 1.48))
    n = h * w * A
    ax.text(6.35, 3.0,
            f"→ 1 objectness logit per anchor\n   ({_number(n)} logits, p(object) = σ(logit))",
            va="center", fontsize=8.5)
    ax.text(6.35, 1.0, f"→ 4 deltas per anchor (tx, ty, tw, th)\n"
            f"   ({_number(n)} × 4, decoded against the anchor)",
            va="center", fontsize=8.5)
    ax.text(0.15, 0.05, f"row (y·{w} + x)·{A} + a belongs to anchor a of cell (y, x): "
            "the order of grid_anchors",
            fontsize=8, color="#555555")
    ax.set_xlim(0, 9.6)
    ax.set_ylim(-0.2, 3.8)
    ax.set_axis_off()
    ax.set_title("the RPN head: the same small network slides over every cell", fontsize=9.5)
    return fig


# -- segmentation networks ---------------------------------------------------------------------
def _unet_defaults(depth, base_filters, input_size, num_classes):
    """Arguments left None: those of the UNet the course trains (``workshop.train``), with the
    synthetic scenes' ``NUM_CLASSES + 1`` classes."""
    if depth is None or base_filters is None or input_size is None:
        from workshop.train import UNET_DEPTH, UNET_FILTERS, UNET_SIZE

        depth = UNET_DEPTH if depth is None else depth
        base_filters = UNET_FILTERS if base_filters is None else base_filters
        input_size = UNET_SIZE if input_size is None else input_size
    if num_classes is None:
        from workshop.data import NUM_CLASSES

        num_classes = NUM_CLASSES + 1
    return int(depth), int(base_filters), int(input_size), int(num_classes)


def _check_multiple(input_size: int, multiple: int, name: str):
    if input_size < 1 or input_size % multiple:
        raise ValueError(f"input_size: expected a multiple of {name} = {multiple}, "
                         f"got {input_size}")


def _draw_unet(ax, depth, base_filters, size, num_classes, in_channels):
    gap, dy = 3.0 + 0.6 * depth, 1.25
    level_y = [-(i - 1) * dy for i in range(1, depth + 2)]          # levels 1..depth+1
    width, height = 1.9, 0.8
    for i in range(1, depth + 1):
        n, f = size // 2 ** (i - 1), base_filters * 2 ** (i - 1)
        y, x_left, x_right = level_y[i - 1], (i - 1) * 0.9, gap + 2 * 0.9 * depth - (i - 1) * 0.9
        _box(ax, x_left, y, f"enc{i}", f"2 conv 3×3, {f}\n{_shape(n, n, f)}", kind="net",
             width=width, height=height)
        _box(ax, x_right, y, f"dec{i}", f"2 conv 3×3, {f}\n{_shape(n, n, f)}", kind="net",
             width=width, height=height)
        _arrow(ax, (x_left + width / 2, y + 0.1), (x_right - width / 2, y + 0.1),
               f"skip {i}: copy, concatenate ({f} + {f} ch)", colour="#1f5f9f")
        below = level_y[i]
        _arrow(ax, (x_left + 0.2, y - height / 2), (x_left + 0.7, below + height / 2),
               "max pool 2×2", colour="#a03020", label_offset=(-0.75, -0.12))
        _arrow(ax, (x_right + 0.2 - 0.9, below + height / 2), (x_right - 0.2, y - height / 2),
               f"transposed conv 2×2, stride 2 → {f}", colour="#2a7a2a",
               label_offset=(1.25, -0.12))
    n, f = size // 2 ** depth, base_filters * 2 ** depth
    left, right = (depth - 1) * 0.9 + 0.3, gap + 2 * 0.9 * depth - (depth - 1) * 0.9 - 0.3
    _box(ax, (left + right) / 2, level_y[depth], "bottleneck",
         f"2 conv 3×3, {f}\n{_shape(n, n, f)}", width=right - left, height=height)
    x_out = gap + 2 * 0.9 * depth + 2.3
    _box(ax, x_out, 0, "logits", f"conv 1×1\n{_shape(size, size, num_classes)}", kind="output",
         width=1.6, height=height)
    _arrow(ax, (gap + 2 * 0.9 * depth + width / 2, 0), (x_out - 0.8, 0))
    _box(ax, -2.2, 0, "image", _shape(size, size, in_channels), kind="data", width=1.6,
         height=height)
    _arrow(ax, (-1.4, 0), (-width / 2, 0))
    ax.set_xlim(-3.1, x_out + 1.0)
    ax.set_ylim(level_y[depth] - 0.7, 0.8)
    ax.set_axis_off()
    ax.set_title(f"UNet, depth {depth}, {base_filters} base filters, padding 'same' "
                 f"(every map keeps its size): {num_classes} classes", fontsize=10)


def _draw_fcn(ax, stride, channels, size, num_classes, in_channels):
    n = size // stride
    xs = [0, 2.2, 4.4, 6.6, 8.8]
    _box(ax, xs[0], 0, "image", _shape(size, size, in_channels), kind="data", width=1.6)
    _box(ax, xs[1], 0, "backbone", f"CNN, stride {stride}\n{_shape(n, n, channels)}", width=1.7)
    _box(ax, xs[2], 0, "classifier", f"conv 1×1\n{_shape(n, n, num_classes)}", width=1.7)
    _box(ax, xs[3], 0, "upsample", f"bilinear ×{stride}\n{_shape(size, size, num_classes)}",
         kind="geometry", width=1.7)
    _box(ax, xs[4], 0, "logits", "one score per class\nper pixel", kind="output", width=1.7)
    for a, b in zip(xs, xs[1:]):
        _arrow(ax, (a + 0.85, 0), (b - 0.85, 0))
    ax.set_xlim(-1.0, 9.8)
    ax.set_ylim(-0.9, 0.7)
    ax.set_axis_off()
    ax.set_title(f"FCN: one classifier on the stride-{stride} features, one upsampling ×{stride} "
                 "(no skips: coarse borders)", fontsize=10)


def unet(depth: int | None = None, base_filters: int | None = None, input_size: int | None = None,
         num_classes: int | None = None, in_channels: int = 3, with_fcn: bool = False,
         stride: int | None = None, channels: int = BACKBONE_CHANNELS):
    """The course's UNet as a U: per level its two 3x3 convolutions and map shape, max pooling
    down, transposed convolution up, the skips; defaults from the UNet the course trains
    (``workshop.train``) and its ``NUM_CLASSES + 1`` classes. ``with_fcn=True`` adds an FCN
    (``stride``, ``channels``: the backbone's) below it. Returns the Figure."""
    depth, base_filters, input_size, num_classes = _unet_defaults(depth, base_filters, input_size,
                                                                  num_classes)
    if depth < 1:
        raise ValueError(f"depth: expected an int >= 1 (the number of poolings), got {depth}")
    _check_multiple(input_size, 2 ** depth, "2**depth")
    stride = DetectorConfig().stride if stride is None else stride
    if with_fcn:
        _check_multiple(input_size, stride, "the FCN's stride")
    fig = _figure(14, 2.0 + 1.25 * depth + (2.4 if with_fcn else 0))
    if with_fcn:
        unet_ax, fcn_ax = fig.subplots(2, 1, height_ratios=[1.25 * depth + 1.5, 1.6])
    else:
        unet_ax = fig.add_subplot()
    _draw_unet(unet_ax, depth, base_filters, input_size, num_classes, in_channels)
    if with_fcn:
        _draw_fcn(fcn_ax, stride, channels, input_size, num_classes, in_channels)
    return fig


def fcn(stride: int | None = None, channels: int = BACKBONE_CHANNELS, input_size: int | None = None,
        num_classes: int | None = None, in_channels: int = 3):
    """A fully convolutional network on the course's backbone: backbone (``stride``), a 1x1
    classifier, one bilinear upsampling by ``stride``; returns the Figure."""
    stride = DetectorConfig().stride if stride is None else stride
    _, _, input_size, num_classes = _unet_defaults(0, 0, input_size, num_classes)
    _check_multiple(input_size, stride, "the stride")
    fig = _figure(12, 2.0)
    _draw_fcn(fig.add_subplot(), stride, channels, input_size, num_classes, in_channels)
    return fig
