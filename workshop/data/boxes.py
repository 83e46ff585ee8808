"""Random boxes for timing and testing: the generators the exercise registry draws its random
and benchmark cases from, and the notebooks their timing problems.

Boxes are float64 ``(N, 4)`` xyxy in continuous pixel coordinates (``x1 <= x2``, ``y1 <= y2``;
see :mod:`workshop.conventions`). Every function draws from the ``numpy.random.Generator`` it
is given, so the same generator state gives the same boxes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_anchor_pairs", "clustered_boxes", "distinct_scores", "random_boxes"]


def random_boxes(rng: np.random.Generator, n: int, extent: float = 100.0, min_size: float = 1.0,
                 max_size: float = 40.0) -> np.ndarray:
    """``n`` boxes with top-left corners uniform in ``[0, extent)^2`` and widths and heights
    uniform in ``[min_size, max_size)``: float64 ``(n, 4)`` xyxy (they may overlap or not)."""
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(min_size, max_size, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def clustered_boxes(rng: np.random.Generator, n: int, n_objects: int, extent: float = 200.0,
                    jitter: float = 0.15, min_size: float = 10.0, max_size: float = 60.0) -> np.ndarray:
    """What a detector emits before NMS: ``n`` boxes jittered around ``n_objects`` random
    objects (:func:`random_boxes` with ``extent``, ``min_size``, ``max_size``); each corner moves
    by up to ``jitter`` times its object's width or height. Float64 ``(n, 4)`` xyxy."""
    objects = random_boxes(rng, max(1, n_objects), extent, min_size, max_size)
    pick = rng.integers(0, len(objects), n)
    base = objects[pick]
    size = np.repeat(base[:, 2:] - base[:, :2], 2, axis=0).reshape(n, 4) if n else np.zeros((0, 4))
    boxes = base + rng.uniform(-jitter, jitter, (n, 4)) * size
    x1, x2 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    y1, y2 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    return np.stack([x1, y1, x2, y2], axis=1)


def distinct_scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` scores in ``(0, 1)``, float64 ``(n,)``, no two equal (not even in float32), in a
    random order: NMS on them has one right answer whatever the sort."""
    return (rng.permutation(n) + rng.uniform(0.1, 0.9, n)) / (n + 1)


def box_anchor_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` anchors of varied size (4 to 300 px) and shape centred in ``[0, 600)^2``, each with
    a ground-truth box near it, as matched in training: ``(boxes, anchors)``, float64 ``(n, 4)``
    xyxy each (box regression's inputs)."""
    centre = rng.uniform(0, 600, size=(n, 2))
    size = np.exp(rng.uniform(np.log(4), np.log(300), size=(n, 2)))
    anchors = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    shift = rng.normal(0, 0.3, size=(n, 2)) * size
    gsize = size * np.exp(rng.normal(0, 0.4, size=(n, 2)))
    boxes = np.concatenate([centre + shift - gsize / 2, centre + shift + gsize / 2], axis=1)
    return boxes, anchors
