"""Deterministic synthetic scenes for detection and segmentation, and a transfer-learning set.

Detection / segmentation scenes (:func:`make_scene`, :func:`make_detection_dataset`)
-------------------------------------------------------------------------------------
* Five object classes, ids ``1..5`` (:data:`CLASS_NAMES` ``[1:]``); id ``0`` is the background
  (``CLASS_NAMES[0] == "background"``), so ``CLASS_NAMES[classes]`` names the objects and the
  semantic mask uses the same ids.
* Objects vary in size (default 16-64 px across), aspect (up to 1.5:1), rotation, colour
  (saturated) and texture (flat, stripes, checks, speckle); backgrounds are muted, smoothly
  varying colour fields with fine noise and faint patterns.
* Objects are painted in order; a later object may hide at most ``max_occlusion`` (default 0.4)
  of any earlier one, never all of it.
* **Boxes are tight around the visible pixels** of each object (its instance mask): the box of
  a mask whose columns run from ``c0`` to ``c1`` (inclusive) has ``x1 = c0, x2 = c1 + 1``
  (float ``(N, 4)`` xyxy, continuous pixel coordinates, no "+1"; see
  :mod:`workshop.conventions`). An occluded object's box therefore covers what can be seen,
  which is what a detector can learn and what the mask shows.

Determinism: everything is drawn from ``numpy.random.default_rng`` (PCG64) and rendered with
elementwise IEEE arithmetic only (no trigonometry, no BLAS), so the same seed gives the same
arrays on any machine. Scene ``i`` of a dataset depends only on ``(seed, i)``.

Classification (:func:`make_classification_set`)
------------------------------------------------
One object per image on a textured background, for transfer learning: ``"source"`` = digits
0-4, ``"target"`` = digits 5-9 (both from scikit-learn's bundled 8x8 digits, upsampled,
coloured, moved and scaled), ``"shapes"`` = the five shape classes. Labels are ``0..K-1``.
``split="train"`` and ``split="test"`` use disjoint sets of the underlying digit images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("background", "circle", "square", "triangle", "cross", "ring")
"""Names by class id; ``0`` is the background, objects are ``1..NUM_CLASSES``."""
NUM_CLASSES = len(CLASS_NAMES) - 1
"""Number of object classes (background not counted)."""

TASKS = ("source", "target", "shapes")


@dataclass
class Scene:
    """One synthetic image and its annotations.

    Attributes:
      image: uint8 ``(H, W, 3)`` RGB, values 0..255.
      boxes: float64 ``(N, 4)`` xyxy, tight around the visible pixels of each object.
      classes: int64 ``(N,)`` class ids in ``1..NUM_CLASSES`` (see :data:`CLASS_NAMES`).
      instance_masks: bool ``(N, H, W)``, the visible pixels of each object (disjoint).
      semantic_mask: int64 ``(H, W)``, the class id of the visible object at each pixel, 0 = background.
    """

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    instance_masks: np.ndarray
    semantic_mask: np.ndarray


@dataclass
class DetectionDataset:
    """``n`` scenes, stacked where the shapes agree.

    Attributes:
      images: uint8 ``(n, H, W, 3)``.
      boxes: list of ``n`` float64 ``(N_i, 4)`` xyxy arrays.
      classes: list of ``n`` int64 ``(N_i,)`` arrays, ids in ``1..NUM_CLASSES``.
      instance_masks: list of ``n`` bool ``(N_i, H, W)`` arrays.
      semantic_masks: int64 ``(n, H, W)``, 0 = background.
      class_names: :data:`CLASS_NAMES`.
    """

    images: np.ndarray
    boxes: list
    classes: list
    instance_masks: list
    semantic_masks: np.ndarray
    class_names: tuple = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Scene:
        return Scene(self.images[i], self.boxes[i], self.classes[i], self.instance_masks[i],
                     self.semantic_masks[i])


@dataclass
class ClassificationSet:
    """Images with one object each.

    Attributes:
      images: uint8 ``(n, size, size, 3)``.
      labels: int64 ``(n,)`` in ``0..len(class_names)-1``.
      class_names: tuple of names, index = label.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple

    def __len__(self) -> int:
        return len(self.images)


# ---------------------------------------------------------------------------------------------
# validation and small helpers


def _rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (bool, np.bool_)) or rng_or_seed is None:
        raise ValueError(f"expected an integer seed or a numpy Generator, got {rng_or_seed!r}")
    if isinstance(rng_or_seed, (int, np.integer)):
        if rng_or_seed < 0:
            raise ValueError(f"seed must be >= 0, got {rng_or_seed}")
        return np.random.default_rng(int(rng_or_seed))
    if isinstance(rng_or_seed, (tuple, list)) and all(
            isinstance(s, (int, np.integer)) and s >= 0 for s in rng_or_seed):
        return np.random.default_rng([int(s) for s in rng_or_seed])
    raise ValueError(f"expected an integer seed or a numpy Generator, got {type(rng_or_seed).__name__}")


def _image_shape(image_size) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        h = w = int(image_size)
    else:
        try:
            h, w = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"image_size: expected an int or (height, width), got {image_size!r}") from None
    if h < 8 or w < 8:
        raise ValueError(f"image_size: expected at least 8x8 pixels, got {(h, w)}")
    return h, w


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """Scalar HSV (each in [0, 1]) to float RGB in [0, 1], elementwise arithmetic only."""
    h6 = (h % 1.0) * 6.0
    i = int(h6) % 6
    f = h6 - int(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _rotation(rng: np.random.Generator) -> tuple[float, float]:
    """A rotation (cos, sin) for an angle in [-90, 90] degrees, via t = tan(angle / 2)."""
    t = rng.uniform(-1.0, 1.0)
    d = 1.0 + t * t
    return (1.0 - t * t) / d, 2.0 * t / d


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of a ``(gh, gw, C)`` grid to ``(h, w, C)`` (align-corners style)."""
    gh, gw = grid.shape[:2]
    y = (np.arange(h) + 0.5) * ((gh - 1) / h)
    x = (np.arange(w) + 0.5) * ((gw - 1) / w)
    y0 = np.minimum(y.astype(np.int64), gh - 2)
    x0 = np.minimum(x.astype(np.int64), gw - 2)
    fy = (y - y0)[:, None, None]
    fx = (x - x0)[None, :, None]
    rows = (1 - fy) * grid[y0] + fy * grid[y0 + 1]               # (h, gw, C), separable
    return (1 - fx) * rows[:, x0] + fx * rows[:, x0 + 1]


def _pattern(rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A texture pattern in [0, 1] on the pixel grid (yy, xx)."""
    if kind == "flat":
        return np.zeros(np.broadcast_shapes(yy.shape, xx.shape))
    if kind == "noise":
        return rng.random(np.broadcast_shapes(yy.shape, xx.shape))
    period = rng.uniform(4.0, 10.0)
    if kind == "stripes":
        c, s = _rotation(rng)
        u = (xx * c + yy * s) / period
        return ((u - np.floor(u)) < 0.5).astype(np.float64)
    if kind == "checks":
        return ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float64)
    raise ValueError(f"unknown pattern {kind!r}")


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A muted, textured background, float ``(h, w, 3)`` in [0, 1]."""
    g = int(rng.integers(3, 7))
    base = rng.uniform(0.25, 0.7)
    tint = rng.uniform(-0.08, 0.08, size=3)
    grid = base + tint + rng.uniform(-0.12, 0.12, size=(g, g, 1)) + rng.uniform(-0.05, 0.05, size=(g, g, 3))
    img = _upsample(grid, h, w)
    yy = np.arange(h, dtype=np.float64)[:, None] + 0.5
    xx = np.arange(w, dtype=np.float64)[None, :] + 0.5
    kind = ("flat", "stripes", "checks")[int(rng.integers(0, 3))]
    img = img + rng.uniform(0.03, 0.07) * (_pattern(rng, kind, yy, xx)[..., None] - 0.5)
    img = img + rng.uniform(0.01, 0.04) * (rng.random((h, w, 1)) - 0.5)
    return img


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of class ``cls`` in local coordinates, the shape spanning [-1, 1] on each axis."""
    name = CLASS_NAMES[cls]
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if name == "triangle":
        return (v <= 1.0) & (v >= 2.0 * np.abs(u) - 1.0)
    if name == "cross":
        t = 0.34
        au, av = np.abs(u), np.abs(v)
        return ((au <= 1.0) & (av <= t)) | ((au <= t) & (av <= 1.0))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.3)
    raise ValueError(f"unknown class {cls}")


def _render_object(rng, cls, h, w, min_size, max_size, yy, xx):
    """Draw one object's full mask (bool (h, w)) and colour (float (h, w, 3)) at a random place."""
    size = rng.uniform(min_size, max_size)          # extent of the longer side, pixels
    aspect = rng.uniform(1.0, 1.5)
    if rng.random() < 0.5:
        aspect = 1.0 / aspect
    rx = 0.5 * size * min(1.0, aspect)              # half-extents, long side = size / 2
    ry = 0.5 * size * min(1.0, 1.0 / aspect)
    if CLASS_NAMES[cls] in ("circle", "ring"):
        c, s = 1.0, 0.0
    else:
        c, s = _rotation(rng)
    reach = (rx * rx + ry * ry) ** 0.5              # circumscribed radius: the object stays inside
    reach_x, reach_y = min(reach, w / 2 - 1), min(reach, h / 2 - 1)
    cx = rng.uniform(reach_x, w - reach_x)
    cy = rng.uniform(reach_y, h - reach_y)
    dx, dy = xx - cx, yy - cy
    u = (dx * c + dy * s) / rx
    v = (dy * c - dx * s) / ry
    mask = _shape_mask(cls, u, v)
    colour = _hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
    kind = ("flat", "stripes", "checks", "noise")[int(rng.integers(0, 4))]
    amp = rng.uniform(0.15, 0.35)
    shade = 1.0 - amp * _pattern(rng, kind, yy, xx)
    return mask, shade[..., None] * colour


def _tight_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes of bool masks ``(N, H, W)`` (pixels c0..c1 -> [c0, c1 + 1])."""
    n = masks.shape[0]
    boxes = np.zeros((n, 4), np.float64)
    for i in range(n):
        rows = np.flatnonzero(masks[i].any(axis=1))
        cols = np.flatnonzero(masks[i].any(axis=0))
        if rows.size:
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def make_scene(rng_or_seed, image_size=128, min_objects: int = 1, max_objects: int = 4,
               min_size: float = 16.0, max_size: float = 64.0, max_occlusion: float = 0.4,
               classes: Sequence[int] | None = None) -> Scene:
    """Render one synthetic scene.

    Args:
      rng_or_seed: an int seed (>= 0), a sequence of ints, or a ``numpy.random.Generator``.
      image_size: int or ``(height, width)``, at least 8.
      min_objects, max_objects: the number of objects is drawn uniformly from this range
        (fewer if no place keeps occlusion within ``max_occlusion``).
      min_size, max_size: extent of an object's longer side in pixels (before rotation).
      max_occlusion: in [0, 1); the largest fraction of an object later objects may hide.
      classes: class ids (``1..NUM_CLASSES``) to draw from; default all.

    Returns:
      :class:`Scene` with uint8 image, float64 xyxy boxes tight around the visible pixels,
      int64 class ids, bool visible instance masks and an int64 semantic mask.
    """
    rng = _rng(rng_or_seed)
    h, w = _image_shape(image_size)
    if not (0 <= int(min_objects) <= int(max_objects)):
        raise ValueError(f"expected 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if not (2.0 <= min_size <= max_size):
        raise ValueError(f"expected 2 <= min_size <= max_size, got {min_size}, {max_size}")
    if max_size > 0.9 * min(h, w):
        raise ValueError(f"max_size={max_size} does not fit a {h}x{w} image; expected <= {0.9 * min(h, w):.1f}")
    if not (0.0 <= max_occlusion < 1.0):
        raise ValueError(f"max_occlusion: expected a fraction in [0, 1), got {max_occlusion}")
    pool = np.arange(1, NUM_CLASSES + 1) if classes is None else np.asarray(classes, dtype=np.int64).ravel()
    if pool.size == 0 or pool.min() < 1 or pool.max() > NUM_CLASSES:
        raise ValueError(f"classes: expected ids in 1..{NUM_CLASSES}, got {list(pool)}")

    image = _background(rng, h, w)
    yy = np.arange(h, dtype=np.float64)[:, None] + 0.5
    xx = np.arange(w, dtype=np.float64)[None, :] + 0.5
    owner = np.full((h, w), -1, np.int64)            # index of the topmost object at each pixel
    full_area: list[int] = []
    labels: list[int] = []
    n_objects = int(rng.integers(int(min_objects), int(max_objects) + 1))
    for _ in range(n_objects):
        cls = int(pool[rng.integers(0, pool.size)])
        for _attempt in range(20):
            mask, colour = _render_object(rng, cls, h, w, min_size, max_size, yy, xx)
            area = int(mask.sum())
            if area < 4:
                continue
            if full_area:
                hidden = np.bincount(owner[mask & (owner >= 0)], minlength=len(full_area))
                visible = np.bincount(owner[owner >= 0], minlength=len(full_area)) - hidden
                if np.any(visible < (1.0 - max_occlusion) * np.asarray(full_area)):
                    continue
            owner[mask] = len(full_area)
            image[mask] = colour[mask]
            full_area.append(area)
            labels.append(cls)
            break

    n = len(labels)
    instance_masks = owner[None] == np.arange(n)[:, None, None]
    classes_arr = np.asarray(labels, dtype=np.int64)
    semantic = np.zeros((h, w), np.int64)
    if n:
        semantic = np.where(owner >= 0, classes_arr[np.maximum(owner, 0)], 0)
    image_u8 = np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Scene(image_u8, _tight_boxes(instance_masks), classes_arr, instance_masks, semantic)


def make_detection_dataset(n: int, seed: int = 0, image_size=128, **scene_kwargs) -> DetectionDataset:
    """``n`` scenes from :func:`make_scene`; scene ``i`` is ``make_scene((seed, i), ...)``.

    Args:
      n: number of scenes (>= 0).
      seed: int >= 0. The first ``k`` scenes do not depend on ``n``.
      image_size, **scene_kwargs: passed to :func:`make_scene`.

    Returns:
      :class:`DetectionDataset` (images uint8 ``(n, H, W, 3)``, per-image boxes/classes/masks
      lists, semantic masks int64 ``(n, H, W)``).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n: expected a number of scenes >= 0, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    h, w = _image_shape(image_size)
    scenes = [make_scene((int(seed), i), (h, w), **scene_kwargs) for i in range(int(n))]
    images = np.stack([s.image for s in scenes]) if scenes else np.zeros((0, h, w, 3), np.uint8)
    semantic = np.stack([s.semantic_mask for s in scenes]) if scenes else np.zeros((0, h, w), np.int64)
    return DetectionDataset(images, [s.boxes for s in scenes], [s.classes for s in scenes],
                            [s.instance_masks for s in scenes], semantic)


# ---------------------------------------------------------------------------------------------
# classification


_DIGITS_CACHE: dict = {}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as float (1797, 8, 8) in [0, 1] and int labels."""
    if "data" not in _DIGITS_CACHE:
        from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

        d = load_digits()
        _DIGITS_CACHE["data"] = (d.images.astype(np.float64) / 16.0, d.target.astype(np.int64))
    return _DIGITS_CACHE["data"]


def _digit_pool(digit: int, split: str) -> np.ndarray:
    """Indices of the digit images of one class in a split (every 4th image is a test image)."""
    _, target = _digits()
    idx = np.flatnonzero(target == digit)
    test = (np.arange(idx.size) % 4) == 3
    return idx[test] if split == "test" else idx[~test]


def _glyph(rng, task: str, label: int, split: str, size: int) -> tuple[np.ndarray, int, int]:
    """An alpha map (float (g, g) in [0, 1]) of one object and where to put it."""
    g = int(rng.integers(int(0.55 * size), int(0.9 * size) + 1))
    if task == "shapes":
        yy = np.arange(g, dtype=np.float64)[:, None] + 0.5
        xx = np.arange(g, dtype=np.float64)[None, :] + 0.5
        cls = label + 1
        c, s = (1.0, 0.0) if CLASS_NAMES[cls] in ("circle", "ring") else _rotation(rng)
        aspect = rng.uniform(0.75, 1.0)
        r = g / 2.0 / (1.0 if CLASS_NAMES[cls] in ("circle", "ring") else 2 ** 0.5)
        rx, ry = r, r * aspect
        dx, dy = xx - g / 2.0, yy - g / 2.0
        alpha = _shape_mask(cls, (dx * c + dy * s) / rx, (dy * c - dx * s) / ry).astype(np.float64)
    else:
        images, _ = _digits()
        digit = label if task == "source" else label + 5
        pool = _digit_pool(digit, split)
        src = images[pool[rng.integers(0, pool.size)]]
        padded = np.pad(src, 1)[..., None]                  # (10, 10, 1): blank border
        alpha = np.clip(_upsample(padded, g, g)[..., 0], 0.0, 1.0)
    oy = int(rng.integers(0, size - g + 1))
    ox = int(rng.integers(0, size - g + 1))
    return alpha, oy, ox


def make_classification_set(task: str = "source", n: int = 1000, seed: int = 0, size: int = 32,
                            split: str = "train") -> ClassificationSet:
    """Images with one object each, for classification and transfer learning.

    Args:
      task: ``"source"`` (digits 0-4), ``"target"`` (digits 5-9, labels 0-4 named "5".."9"),
        or ``"shapes"`` (the five shape classes, labels 0-4 = ``CLASS_NAMES[1:]``).
      n: number of images (>= 0); classes are balanced (label ``i % K`` before shuffling), so
        ``n = 5 * k`` gives ``k`` examples per class (few-shot target sets: small ``k``).
      seed: int >= 0.
      size: image side in pixels (>= 16), e.g. 32 or 64.
      split: ``"train"`` or ``"test"``; digit tasks draw from disjoint digit images.

    Returns:
      :class:`ClassificationSet` with uint8 ``(n, size, size, 3)`` images and int64 labels.
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n: expected a number of images >= 0, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size: expected an int >= 16, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    names = {"source": tuple("01234"), "target": tuple("56789"), "shapes": CLASS_NAMES[1:]}[task]
    k = len(names)
    rng = np.random.default_rng([int(seed), TASKS.index(task), ("train", "test").index(split)])
    labels = rng.permutation(np.arange(int(n), dtype=np.int64) % k)
    images = np.zeros((int(n), size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        img = _background(rng, size, size)
        alpha, oy, ox = _glyph(rng, task, int(label), split, size)
        colour = _hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
        if rng.random() < 0.3:                                 # some dark objects too
            colour = colour * 0.25
        g = alpha.shape[0]
        patch = img[oy:oy + g, ox:ox + g]
        img[oy:oy + g, ox:ox + g] = patch * (1 - alpha[..., None]) + colour * alpha[..., None]
        images[i] = np.floor(np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return ClassificationSet(images, labels, names)
