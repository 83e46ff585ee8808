"""Drawing helpers: boxes with labels and scores, anchors, mask overlays, image grids.

All helpers draw with matplotlib, return the ``Axes`` (or ``Figure``) they drew on, never call
``plt.show()`` and work with the non-interactive Agg backend. Boxes are float ``(N, 4)`` xyxy in
continuous pixel coordinates (see :mod:`workshop.conventions`); with ``imshow``'s default extent
pixel ``(r, c)`` covers ``[c, c + 1] x [r, r + 1]`` in these coordinates, so the helpers draw
images with ``extent=(0, W, H, 0)`` and a box's edges land on pixel borders.

Numbers that go into titles and labels are written with :func:`format_numbers` (3 significant
digits, whatever their dtype), so a float32 result prints ``0.7``, not ``0.699999988079071``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workshop.conventions import as_boxes, as_scores, convert_boxes


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _colour(k: int):
    from matplotlib import colormaps

    return colormaps["tab10"](int(k) % 10)


def format_numbers(value, digits: int = 3) -> str:
    """A number, or a (nested) sequence or array of numbers, with ``digits`` significant digits,
    for titles and labels: ``[[2.7, 3.7], [6.7, 7.7]]`` for a float32 array, ``0.000123``,
    ``1.23e+04``. Integers stay integers; tensors are read with ``.numpy()``."""
    if hasattr(value, "numpy") and callable(value.numpy) and not isinstance(value, np.ndarray):
        value = value.numpy()
    if isinstance(value, (str, bytes)):
        return value if isinstance(value, str) else value.decode()
    arr = np.asarray(value)
    if arr.ndim > 0 or isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_numbers(v, digits) for v in value) + "]"
    item = arr.item()
    if isinstance(item, bool):
        return str(item)
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        return f"{item:.{digits}g}"
    return str(item)


def _title_text(title) -> str:
    """A title as given, or a number / array of numbers formatted by :func:`format_numbers`."""
    return title if isinstance(title, str) else format_numbers(title)


def _image_array(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ValueError(f"image: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {img.shape}")
    if img.dtype != np.uint8 and img.dtype != bool:
        img = img.astype(np.float64)
        if np.isfinite(img).all() and img.size and img.max() > 1.0 and img.ndim == 3:
            img = img / 255.0                      # float images in [0, 255]
    return img


def show_image(image, ax=None, title: str | None = None):
    """Show an image (uint8, or float in [0, 1] / [0, 255]) with pixel-border extent; returns Axes."""
    img = _image_array(image)
    if ax is None:
        _, ax = _plt().subplots(figsize=(4, 4))
    h, w = img.shape[:2]
    ax.imshow(img, extent=(0, w, h, 0), cmap="gray" if img.ndim == 2 else None,
              interpolation="nearest")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None and not (isinstance(title, str) and not title):
        ax.set_title(_title_text(title))
    return ax


def draw_boxes(image, boxes, classes=None, scores=None, class_names: Sequence[str] | None = None,
               ax=None, fmt: str = "xyxy", color=None, linewidth: float = 1.5,
               score_threshold: float | None = None, title: str | None = None):
    """Draw boxes (optionally labelled with class names and scores) on an image.

    Args:
      image: ``(H, W, 3)`` uint8 or float image, or ``None`` to draw on ``ax`` as it is.
      boxes: ``(N, 4)`` boxes in ``fmt`` (default xyxy).
      classes: optional int ``(N,)``; picks the colour and, with ``class_names``, the label.
      scores: optional float ``(N,)``, shown as ``name 0.87``.
      class_names: names by class id.
      ax: Axes to draw on (default: a new figure).
      color: one colour for all boxes (default: a colour per class).
      score_threshold: hide boxes scoring below it.

    Returns:
      the matplotlib Axes.
    """
    plt = _plt()
    xyxy = convert_boxes(boxes, fmt, "xyxy") if fmt != "xyxy" else as_boxes(boxes)
    n = len(xyxy)
    cls = None if classes is None else np.asarray(classes).reshape(-1)
    if cls is not None and cls.shape[0] != n:
        raise ValueError(f"classes: expected shape ({n},), one per box, got {np.shape(classes)}")
    sc = None if scores is None else as_scores(scores, n)
    if image is not None:
        ax = show_image(image, ax=ax, title=title)
    elif ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    for i in range(n):
        if sc is not None and score_threshold is not None and sc[i] < score_threshold:
            continue
        x1, y1, x2, y2 = xyxy[i]
        c = color if color is not None else _colour(cls[i] if cls is not None else 0)
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c,
                                   linewidth=linewidth))
        parts = []
        if cls is not None:
            k = int(cls[i])
            parts.append(class_names[k] if class_names is not None and 0 <= k < len(class_names) else str(k))
        if sc is not None:
            parts.append(f"{sc[i]:.2f}")
        if parts:
            ax.text(x1, y1, " ".join(parts), fontsize=7, color="white", va="bottom", ha="left",
                    bbox={"facecolor": c, "edgecolor": "none", "pad": 1, "alpha": 0.8}, clip_on=True)
    return ax


def box_legend(target, entries: dict, loc: str = "upper center", bbox_to_anchor=(0.5, -0.01),
               fontsize: float = 8, **kwargs):
    """A legend of box outlines on an Axes or a Figure: ``entries`` maps each label to a colour,
    or to a sequence of colours (drawn side by side: "one colour per class").

    The legend sits below the Axes by default, on a grey background so that white outlines (the
    course draws ground truth in white) show. Returns the matplotlib Legend.
    """
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.patches import Patch

    handles = []
    for colour in entries.values():
        many = isinstance(colour, (list, tuple)) and len(colour) > 0 and not isinstance(colour[0], (int, float))
        colours = list(colour) if many else [colour]
        patches = tuple(Patch(facecolor="none", edgecolor=c, linewidth=2) for c in colours)
        handles.append(patches if len(patches) > 1 else patches[0])
    longest = max([len(h) for h in handles if isinstance(h, tuple)] + [1])
    style = dict(loc=loc, bbox_to_anchor=bbox_to_anchor, fontsize=fontsize, ncol=len(entries),
                 handlelength=2.0 if longest == 1 else min(1.0 + 0.6 * longest, 5.0),
                 facecolor="0.35", edgecolor="none", framealpha=1.0, labelcolor="white",
                 handler_map={tuple: HandlerTuple(ndivide=None, pad=0.2)})
    style.update(kwargs)
    return target.legend(handles, [str(k) for k in entries], **style)


def draw_detections(image, gt_boxes, boxes, classes=None, scores=None, class_names: Sequence[str] | None = None,
                    ax=None, score_threshold: float | None = None, title: str | None = None, color=None,
                    gt_color="white", gt_linewidth: float = 1.0, linewidth: float = 2.0,
                    label: str = "detections", gt_label: str = "ground truth", legend: bool = True,
                    fmt: str = "xyxy"):
    """Ground truth and detections on one image, with a legend telling them apart.

    The ground-truth boxes are drawn in ``gt_color`` (white), the detections on top of them as
    :func:`draw_boxes` draws them (a colour per class, labelled with class name and score; or
    one ``color``), hiding those scoring below ``score_threshold``.

    Args:
      image: ``(H, W, 3)`` image, or ``None`` to draw on ``ax`` as it is.
      gt_boxes: ``(G, 4)`` ground-truth boxes; boxes: ``(N, 4)`` detections (both in ``fmt``).
      classes, scores, class_names: for the detections, as in :func:`draw_boxes`.
      label, gt_label: the legend's words for the two kinds of box.
      legend: draw the legend (below the Axes); ``False`` for a figure that draws one for all
        its panels with :func:`box_legend`.

    Returns:
      the matplotlib Axes.
    """
    ax = draw_boxes(image, gt_boxes, ax=ax, fmt=fmt, color=gt_color, linewidth=gt_linewidth, title=title)
    draw_boxes(None, boxes, classes=classes, scores=scores, class_names=class_names, ax=ax, fmt=fmt,
               color=color, linewidth=linewidth, score_threshold=score_threshold)
    if legend:
        shown = classes
        if classes is not None and scores is not None and score_threshold is not None:
            shown = np.asarray(classes).reshape(-1)[as_scores(scores, len(np.asarray(classes).reshape(-1)))
                                                    >= score_threshold]
        box_legend(ax, detection_legend_entries(shown, color=color, gt_color=gt_color, label=label,
                                                gt_label=gt_label))
    return ax


def detection_legend_entries(classes=None, color=None, gt_color="white", label: str = "detections",
                             gt_label: str = "ground truth") -> dict:
    """The entries of :func:`draw_detections`' legend for :func:`box_legend`: ground truth in
    ``gt_color``; detections in ``color``, or in the colours of the classes present."""
    if color is not None or classes is None:
        det = color if color is not None else _colour(0)
    else:
        present = np.unique(np.asarray(classes).reshape(-1).astype(np.int64))
        det = [_colour(k) for k in present] if len(present) else _colour(0)
        if isinstance(det, list) and len(det) == 1:
            det = det[0]
    return {gt_label: gt_color, label: det}


def detection_grid(images, gt_boxes, detections, class_names: Sequence[str] | None = None,
                   score_threshold: float | None = None, titles: Sequence[str] | None = None,
                   ncols: int = 4, size: float = 3.5, gt_label: str = "ground truth", label: str | None = None):
    """The detector figure: one panel per image with its ground truth (white) and the detections
    (coloured by class, with class name and score), and one legend for the whole figure.

    Args:
      images: ``n`` images; gt_boxes: ``n`` arrays ``(G_i, 4)`` of ground-truth boxes (xyxy).
      detections: ``n`` dicts with ``"boxes"``, ``"classes"`` and ``"scores"``, as the course's
        detector's ``detect`` returns them.
      score_threshold: hide detections scoring below it (the legend says so).
      titles: optional, one per image.

    Returns:
      the matplotlib Figure.
    """
    plt = _plt()
    images, gt_boxes, detections = list(images), list(gt_boxes), list(detections)
    n = len(images)
    if n == 0:
        raise ValueError("detection_grid: expected at least one image")
    if len(gt_boxes) != n or len(detections) != n:
        raise ValueError(f"detection_grid: expected as many ground truths and detections as images ({n}), "
                         f"got {len(gt_boxes)} and {len(detections)}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles: expected {n} titles, got {len(titles)}")
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.5), squeeze=False,
                             layout="constrained")          # keeps the titles and the legend clear
    shown = []
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        det = detections[k]
        classes = np.asarray(det["classes"]).reshape(-1)
        scores = as_scores(det["scores"], len(classes))
        draw_detections(images[k], gt_boxes[k], det["boxes"], classes=classes, scores=scores,
                        class_names=class_names, ax=ax, score_threshold=score_threshold,
                        title=None if titles is None else _title_text(titles[k]), legend=False)
        shown.append(classes if score_threshold is None else classes[scores >= score_threshold])
    if label is None:
        label = "detections" if score_threshold is None else f"detections scored >= {format_numbers(score_threshold)}"
    box_legend(fig, detection_legend_entries(np.concatenate(shown), gt_label=gt_label, label=label),
               loc="outside lower center", bbox_to_anchor=None, fontsize=9)
    return fig


def draw_anchors(anchors, image=None, image_shape: Sequence[int] | None = None, ax=None,
                 max_anchors: int = 200, centers: bool = True, seed: int = 0, color=None):
    """Draw anchor boxes (xyxy) over an image or an empty canvas of ``image_shape``.

    Args:
      anchors: ``(A, 4)`` xyxy anchors.
      image: optional image to draw on; otherwise ``image_shape=(H, W)`` sets the canvas.
      max_anchors: draw at most this many (a seeded random subset when there are more).
      centers: also mark every anchor centre (all of them, not only the drawn boxes).
      color: one colour for all (default: a colour per distinct anchor shape).

    Returns:
      the matplotlib Axes.
    """
    plt = _plt()
    a = as_boxes(anchors, name="anchors", check_order=True)
    if image is not None:
        ax = show_image(image, ax=ax)
    else:
        if image_shape is None or len(image_shape) < 2:
            raise ValueError("draw_anchors: give an image or image_shape=(height, width)")
        h, w = int(image_shape[0]), int(image_shape[1])
        if ax is None:
            _, ax = plt.subplots(figsize=(4, 4 * h / max(w, 1)))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_aspect("equal")
    sizes = np.round(a[:, 2:] - a[:, :2], 6)
    _, shape_id = np.unique(sizes, axis=0, return_inverse=True) if len(a) else (None, np.zeros(0, int))
    shape_id = np.asarray(shape_id).reshape(-1)
    idx = np.arange(len(a))
    if len(a) > max_anchors:
        idx = np.sort(np.random.default_rng(seed).choice(len(a), max_anchors, replace=False))
    for i in idx:
        x1, y1, x2, y2 = a[i]
        c = color if color is not None else _colour(shape_id[i])
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c,
                                   linewidth=0.8, alpha=0.8))
    if centers and len(a):
        ctr = (a[:, :2] + a[:, 2:]) / 2
        ax.plot(ctr[:, 0], ctr[:, 1], ".", color="black" if color is None else color, markersize=2)
    return ax


def overlay_masks(image, masks, alpha: float = 0.45, ax=None, classes=None, boxes=None,
                  class_names: Sequence[str] | None = None, title: str | None = None):
    """Overlay instance masks (bool ``(N, H, W)``) or a semantic mask (int ``(H, W)``) on an image.

    Instance masks get one colour each (by class when ``classes`` is given); a semantic mask gets
    a colour per class id, 0 (background) left transparent. Optional ``boxes`` are drawn too.

    Returns:
      the matplotlib Axes.
    """
    if not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
    img = _image_array(image)
    h, w = img.shape[:2]
    m = np.asarray(masks)
    if m.ndim == 2:                                   # semantic: class id per pixel
        if m.shape != (h, w):
            raise ValueError(f"semantic mask: expected shape {(h, w)}, got {m.shape}")
        ids = m.astype(np.int64)
        layers = [(ids == k, _colour(k)) for k in np.unique(ids) if k != 0]
    elif m.ndim == 3:
        if m.shape[1:] != (h, w):
            raise ValueError(f"instance masks: expected shape (N, {h}, {w}), got {m.shape}")
        cls = None if classes is None else np.asarray(classes).reshape(-1)
        if cls is not None and cls.shape[0] != m.shape[0]:
            raise ValueError(f"classes: expected ({m.shape[0]},), one per mask, got {cls.shape}")
        layers = [(m[i].astype(bool), _colour(cls[i] if cls is not None else i)) for i in range(m.shape[0])]
    else:
        raise ValueError(f"masks: expected (N, H, W) instance masks or an (H, W) semantic mask, got {m.shape}")
    ax = show_image(img, ax=ax, title=title)
    rgba = np.zeros((h, w, 4))
    for mask, c in layers:
        rgba[mask] = (c[0], c[1], c[2], alpha)
    ax.imshow(rgba, extent=(0, w, h, 0), interpolation="nearest")
    if boxes is not None:
        draw_boxes(None, boxes, classes=classes, class_names=class_names, ax=ax)
    return ax


def image_grid(images, titles: Sequence[str] | None = None, ncols: int | None = None,
               size: float = 2.0):
    """A grid of images (``(n, H, W[, C])`` array or list), optionally titled; returns the Figure."""
    plt = _plt()
    items = list(images)
    n = len(items)
    if n == 0:
        raise ValueError("image_grid: expected at least one image")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles: expected {n} titles, got {len(titles)}")
    ncols = int(ncols) if ncols else min(n, 8)
    if ncols < 1:
        raise ValueError(f"ncols: expected >= 1, got {ncols}")
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            show_image(items[k], ax=ax, title=None if titles is None else _title_text(titles[k]))
            if titles is not None:
                ax.title.set_fontsize(8)
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig
