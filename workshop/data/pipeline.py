"""A ``tf.data`` input pipeline for detection and segmentation, with box- and mask-aware augmentation.

Imports TensorFlow (the rest of :mod:`workshop.data` does not).

An *example* is a dict of tensors::

    image          float32 (H, W, 3) in [0, 1]  (uint8 input is scaled by 1/255)
    boxes          float32 (N, 4) xyxy, continuous pixel coordinates (workshop.conventions)
    classes        int32 (N,)
    masks          bool (N, H, W)          optional, instance masks
    semantic_mask  int32 (H, W)            optional, 0 = background

:func:`augment_example` applies, in this order and with the same geometry for every key:

1. horizontal flip with probability 1/2: ``x1' = W - x2``, ``x2' = W - x1``;
2. scale jitter: resize by ``s ~ U(scale_range)`` (image bilinear, masks nearest), boxes scaled
   by ``(round(W s) / W, round(H s) / H)``;
3. random crop to ``output_size`` (padding with zeros at the bottom/right when the scaled image is
   smaller): boxes shifted, clipped to the crop;
4. boxes recomputed as the tight boxes of the transformed masks when masks are given (so they
   enclose the mask pixels exactly, as the synthetic scenes define them), then boxes narrower or
   shorter than ``min_box_size`` pixels are dropped together with their classes and masks.

Randomness comes from stateless ops driven by a per-example seed, so a pipeline built with a
``seed`` gives the same batches every time, also with ``num_parallel_calls=AUTOTUNE``.

:func:`detection_pipeline` builds the dataset; batches are padded: ``boxes`` with ``-1``,
``classes`` with ``-1``, ``masks`` with ``False``, and ``num_boxes`` (int32 ``(B,)``) says how many
rows of each image are real. :func:`unpad` turns a batch back into per-image numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

BOX_PAD = -1.0
CLASS_PAD = -1


def _as_seed(seed) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or (seed.shape[0] is not None and seed.shape[0] != 2):
        raise ValueError(f"seed: expected a shape-(2,) integer tensor, got shape {seed.shape}")
    return tf.cast(seed, tf.int64)


def tight_boxes_from_masks(masks: tf.Tensor) -> tf.Tensor:
    """Tight xyxy boxes of bool masks ``(N, H, W)`` -> float32 ``(N, 4)``; empty masks give zeros.

    Pixel columns ``c0..c1`` (inclusive) give ``x1 = c0, x2 = c1 + 1`` (continuous coordinates).
    """
    masks = tf.convert_to_tensor(masks)
    rows = tf.cast(tf.reduce_any(tf.cast(masks, tf.bool), axis=2), tf.int32)   # (N, H)
    cols = tf.cast(tf.reduce_any(tf.cast(masks, tf.bool), axis=1), tf.int32)   # (N, W)
    h = tf.shape(rows)[1]
    w = tf.shape(cols)[1]
    y1 = tf.argmax(rows, axis=1, output_type=tf.int32)
    y2 = h - tf.argmax(tf.reverse(rows, [1]), axis=1, output_type=tf.int32)
    x1 = tf.argmax(cols, axis=1, output_type=tf.int32)
    x2 = w - tf.argmax(tf.reverse(cols, [1]), axis=1, output_type=tf.int32)
    boxes = tf.cast(tf.stack([x1, y1, x2, y2], axis=1), tf.float32)
    has = tf.reduce_any(rows > 0, axis=1)
    return tf.where(has[:, None], boxes, tf.zeros_like(boxes))


def flip_boxes_horizontally(boxes, width) -> tf.Tensor:
    """Mirror xyxy boxes in an image ``width`` pixels wide: ``(W - x2, y1, W - x1, y2)``."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    width = tf.cast(width, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([width - x2, y1, width - x1, y2], axis=-1)


def augment_example(example: dict, seed, output_size: Sequence[int] | None = None, flip: bool = True,
                    scale_range: Sequence[float] = (0.75, 1.25), min_box_size: float = 2.0,
                    boxes_from_masks: bool = True, random_crop: bool = True) -> dict:
    """Flip, scale-jitter and crop one example, keeping boxes, classes and masks consistent.

    Args:
      example: dict with ``image`` (H, W, 3) uint8 or float in [0, 1], ``boxes`` (N, 4) xyxy,
        ``classes`` (N,), optional ``masks`` bool (N, H, W), optional ``semantic_mask`` (H, W).
      seed: int tensor of shape (2,) for the stateless random ops (same seed, same result).
      output_size: ``(height, width)`` of the result; default the input size.
      flip: allow the horizontal flip.
      scale_range: ``(low, high)`` with ``0 < low <= high``; ``(1, 1)`` turns scale jitter off.
      min_box_size: boxes with width or height below this (pixels) are dropped.
      boxes_from_masks: with masks, replace boxes by the tight boxes of the transformed masks.
      random_crop: crop at a random offset; ``False``: keep the top-left corner.

    Returns:
      dict with the same keys: ``image`` float32 (out_h, out_w, 3), ``boxes`` float32 (M, 4),
      ``classes`` int32 (M,), ``masks`` bool (M, out_h, out_w), ``semantic_mask`` int32, M <= N.
    """
    lo, hi = (float(v) for v in scale_range)
    if not (0 < lo <= hi):
        raise ValueError(f"scale_range: expected 0 < low <= high, got {tuple(scale_range)}")
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), 4)
    image = _to_float_image(example["image"])
    boxes = tf.reshape(tf.cast(example["boxes"], tf.float32), [-1, 4])
    classes = tf.reshape(tf.cast(example["classes"], tf.int32), [-1])
    has_masks = "masks" in example and example["masks"] is not None
    has_sem = "semantic_mask" in example and example["semantic_mask"] is not None
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    if output_size is None:
        out_h, out_w = h, w
    else:
        out_h, out_w = (int(v) for v in output_size)

    # label planes: instance masks, then the semantic mask, always at least one channel
    planes = [tf.zeros([h, w, 1], tf.float32)]
    if has_masks:
        planes.insert(0, tf.transpose(tf.cast(example["masks"], tf.float32), [1, 2, 0]))
    if has_sem:
        planes[-1] = tf.cast(example["semantic_mask"], tf.float32)[..., None]
    labels = tf.concat(planes, axis=-1)

    # 1. horizontal flip
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
        image = tf.where(do_flip, tf.reverse(image, [1]), image)
        labels = tf.where(do_flip, tf.reverse(labels, [1]), labels)
        boxes = tf.where(do_flip, flip_boxes_horizontally(boxes, w), boxes)

    # 2. scale jitter
    s = tf.random.stateless_uniform([], seeds[1], lo, hi) if hi > lo else tf.constant(lo)
    new_h = tf.maximum(tf.cast(tf.round(tf.cast(h, tf.float32) * s), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(tf.cast(w, tf.float32) * s), tf.int32), 1)
    image = tf.image.resize(image, [new_h, new_w], method="bilinear")
    labels = tf.image.resize(labels, [new_h, new_w], method="nearest")
    sx = tf.cast(new_w, tf.float32) / tf.cast(w, tf.float32)
    sy = tf.cast(new_h, tf.float32) / tf.cast(h, tf.float32)
    boxes = boxes * tf.stack([sx, sy, sx, sy])

    # 3. random crop to the output size, padding when the scaled image is smaller
    if random_crop:
        oy = tf.random.stateless_uniform([], seeds[2], 0, tf.maximum(new_h - out_h, 0) + 1, dtype=tf.int32)
        ox = tf.random.stateless_uniform([], seeds[3], 0, tf.maximum(new_w - out_w, 0) + 1, dtype=tf.int32)
    else:
        oy = ox = tf.constant(0, tf.int32)
    ch, cw = tf.minimum(new_h, out_h), tf.minimum(new_w, out_w)
    image = tf.image.pad_to_bounding_box(image[oy:oy + ch, ox:ox + cw], 0, 0, out_h, out_w)
    labels = tf.image.pad_to_bounding_box(labels[oy:oy + ch, ox:ox + cw], 0, 0, out_h, out_w)
    off = tf.cast(tf.stack([ox, oy, ox, oy]), tf.float32)
    limit = tf.cast(tf.stack([cw, ch, cw, ch]), tf.float32)
    boxes = tf.clip_by_value(boxes - off, 0.0, limit)

    out = {"image": image}
    n = tf.shape(boxes)[0]
    if has_masks:
        masks = tf.transpose(labels[..., :n], [2, 0, 1]) > 0.5
        if boxes_from_masks:
            boxes = tight_boxes_from_masks(masks)
    # 4. drop empty and tiny boxes with their classes and masks
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_box_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_box_size)
    out["boxes"] = tf.boolean_mask(boxes, keep)
    out["classes"] = tf.boolean_mask(classes, keep)
    if has_masks:
        out["masks"] = tf.boolean_mask(masks, keep)
    if has_sem:
        out["semantic_mask"] = tf.cast(tf.round(labels[..., -1]), tf.int32)
    return out


def _to_float_image(image) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    return tf.cast(image, tf.float32)


def _check_inputs(images, boxes, classes, masks, semantic_masks):
    n = len(images)
    if len(boxes) != n or len(classes) != n:
        raise ValueError(f"expected one boxes/classes entry per image: {n} images, "
                         f"{len(boxes)} boxes, {len(classes)} classes")
    for name, seq in (("masks", masks), ("semantic_masks", semantic_masks)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name}: expected one entry per image ({n}), got {len(seq)}")
    for i in range(n):
        img = np.asarray(images[i])
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"images[{i}]: expected shape (H, W, 3), got {img.shape}")
        b = np.asarray(boxes[i], np.float64).reshape(-1, 4) if np.size(boxes[i]) else np.zeros((0, 4))
        if np.asarray(classes[i]).reshape(-1).shape[0] != b.shape[0]:
            raise ValueError(f"image {i}: {b.shape[0]} boxes but {np.size(classes[i])} classes")
        if b.size and ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
            row = int(np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))[0])
            raise ValueError(f"image {i}: box {row} {b[row].tolist()} is not xyxy with x2 >= x1, y2 >= y1")
        if masks is not None and np.asarray(masks[i]).shape != (b.shape[0],) + img.shape[:2]:
            raise ValueError(f"image {i}: masks should be (N, H, W) = {(b.shape[0],) + img.shape[:2]}, "
                             f"got {np.asarray(masks[i]).shape}")
        if semantic_masks is not None and np.asarray(semantic_masks[i]).shape != img.shape[:2]:
            raise ValueError(f"image {i}: semantic mask should be (H, W) = {img.shape[:2]}, "
                             f"got {np.asarray(semantic_masks[i]).shape}")


def detection_pipeline(images, boxes, classes, masks=None, semantic_masks=None, *, batch_size: int = 8,
                       augment: bool = True, seed: int | None = None,
                       output_size: Sequence[int] | None = None, max_boxes: int | None = None,
                       shuffle: bool = False, repeat: bool = False, drop_remainder: bool = False,
                       flip: bool = True, scale_range: Sequence[float] = (0.75, 1.25),
                       min_box_size: float = 2.0) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of (augmented) detection examples.

    Args:
      images: sequence (or array) of uint8 ``(H, W, 3)`` images.
      boxes, classes: per image, ``(N_i, 4)`` xyxy boxes and ``(N_i,)`` int class ids.
      masks: optional per-image bool ``(N_i, H, W)`` instance masks.
      semantic_masks: optional per-image int ``(H, W)`` class maps.
      batch_size: images per batch.
      augment: apply :func:`augment_example` (otherwise only the float conversion and padding).
      seed: makes shuffling and augmentation reproducible (map runs with ``deterministic=True``);
        ``None``: different every run. Each pass over the data draws new augmentations.
      output_size: ``(height, width)`` after augmentation; needed when images differ in size.
      max_boxes: pad (and truncate) every image to this many boxes; default: the batch maximum.
      shuffle, repeat, drop_remainder: as in ``tf.data``.
      flip, scale_range, min_box_size: see :func:`augment_example`.

    Returns:
      dataset of dicts: ``image`` float32 (B, H, W, 3) in [0, 1], ``boxes`` float32 (B, M, 4)
      padded with -1, ``classes`` int32 (B, M) padded with -1, ``num_boxes`` int32 (B,), plus
      ``masks`` bool (B, M, H, W) and ``semantic_mask`` int32 (B, H, W) when given.
    """
    _check_inputs(images, boxes, classes, masks, semantic_masks)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if max_boxes is not None and int(max_boxes) < 1:
        raise ValueError(f"max_boxes: expected >= 1 or None, got {max_boxes}")
    n = len(images)
    has_masks, has_sem = masks is not None, semantic_masks is not None

    def gen():
        for i in range(n):
            ex = {"image": np.asarray(images[i], np.uint8),
                  "boxes": np.asarray(boxes[i], np.float32).reshape(-1, 4),
                  "classes": np.asarray(classes[i], np.int32).reshape(-1)}
            if has_masks:
                ex["masks"] = np.asarray(masks[i], bool)
            if has_sem:
                ex["semantic_mask"] = np.asarray(semantic_masks[i], np.int32)
            yield ex

    signature = {"image": tf.TensorSpec([None, None, 3], tf.uint8),
                 "boxes": tf.TensorSpec([None, 4], tf.float32),
                 "classes": tf.TensorSpec([None], tf.int32)}
    if has_masks:
        signature["masks"] = tf.TensorSpec([None, None, None], tf.bool)
    if has_sem:
        signature["semantic_mask"] = tf.TensorSpec([None, None], tf.int32)
    ds = tf.data.Dataset.from_generator(gen, output_signature=signature)
    if shuffle:
        ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds)

    def prepare(ex, ex_seed):
        if augment:
            ex = augment_example(ex, ex_seed, output_size=output_size, flip=flip,
                                 scale_range=scale_range, min_box_size=min_box_size)
        else:
            ex = dict(ex)
            ex["image"] = _to_float_image(ex["image"])
            if output_size is not None:
                ex = augment_example(ex, ex_seed, output_size=output_size, flip=False,
                                     scale_range=(1.0, 1.0), min_box_size=min_box_size,
                                 random_crop=False)
        if max_boxes is not None:
            ex = {k: (v[:max_boxes] if k in ("boxes", "classes", "masks") else v) for k, v in ex.items()}
        ex["num_boxes"] = tf.shape(ex["boxes"])[0]
        return ex

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True if seed is not None else None)
    m = None if max_boxes is None else int(max_boxes)
    hw = [None, None] if output_size is None else [int(v) for v in output_size]
    shapes = {"image": hw + [3], "boxes": [m, 4], "classes": [m], "num_boxes": []}
    pads = {"image": tf.constant(0.0), "boxes": tf.constant(BOX_PAD, tf.float32),
            "classes": tf.constant(CLASS_PAD, tf.int32), "num_boxes": tf.constant(0, tf.int32)}
    if has_masks:
        shapes["masks"] = [m] + hw
        pads["masks"] = tf.constant(False)
    if has_sem:
        shapes["semantic_mask"] = hw
        pads["semantic_mask"] = tf.constant(0, tf.int32)
    ds = ds.padded_batch(int(batch_size), padded_shapes=shapes, padding_values=pads,
                         drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def scenes_pipeline(dataset, **kwargs) -> tf.data.Dataset:
    """:func:`detection_pipeline` over a :class:`workshop.data.synthetic.DetectionDataset`
    (images, boxes, classes, instance masks and semantic masks)."""
    return detection_pipeline(dataset.images, dataset.boxes, dataset.classes,
                              masks=dataset.instance_masks, semantic_masks=dataset.semantic_masks,
                              **kwargs)


def unpad(batch: dict) -> list[dict]:
    """A padded batch back to a list of per-image dicts of numpy arrays (padding removed)."""
    counts = np.asarray(batch["num_boxes"])
    out = []
    for i, k in enumerate(counts):
        item = {}
        for key, value in batch.items():
            if key == "num_boxes":
                continue
            v = np.asarray(value[i])
            item[key] = v[:k] if key in ("boxes", "classes", "masks") else v
        out.append(item)
    return out
