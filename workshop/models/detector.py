"""A small two-stage (Faster R-CNN style) detector whose stages are plain functions.

    image -> backbone -> RPN head -> grid_anchors + rpn_proposals -> roi_align -> box head
          -> decode per class -> batched_nms -> boxes, scores, classes

The network parts are Keras 3 functional models with named layers (``backbone``, ``rpn``,
``box_head``). Every geometric step between them is a plain function that the caller gives
(:class:`Stages`): the course's reference stages (:func:`workshop.course.reference_stages`,
the exercises' textbook numpy tiers) or a learner's own, swapped in with
:meth:`TwoStageDetector.with_stages`, and the detector still runs:

    from workshop.course import load_detector
    detector = load_detector()          # the checkpoint's weights, the reference stages
    mine = detector.with_stages(roi_align=roi_align_numpy, batched_nms=batched_nms_loops)
    mine.detect(images)

Boxes are float ``(N, 4)`` xyxy in input-image pixels (see :mod:`workshop.conventions`);
images are uint8 ``(H, W, 3)`` or float in ``[0, 1]``. Class ids are ``1..num_classes``
(0 is the background, as in :mod:`workshop.data.synthetic`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .cnn import BACKBONE_CHANNELS, BACKBONE_STRIDE, build_backbone


@dataclass(frozen=True)
class DetectorConfig:
    """The detector's hyper-parameters, named once."""

    num_classes: int = 5
    image_size: tuple[int, int] = (128, 128)
    stride: int = BACKBONE_STRIDE
    anchor_base: float = 32.0
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_channels: int = 128
    # proposals while training / at test time
    train_pre_nms: int = 1000
    train_post_nms: int = 300
    test_pre_nms: int = 600
    test_post_nms: int = 100
    rpn_nms_threshold: float = 0.7
    min_size: float = 4.0
    # RoI sampling for the box head
    rois_per_image: int = 64
    fg_fraction: float = 0.5
    fg_iou: float = 0.5
    bg_iou: float = 0.5          # background below this IoU...
    bg_iou_low: float = 0.0      # ...and at or above this one (Fast R-CNN: 0.1)
    pool_size: int = 7
    sampling_ratio: int = 2
    head_units: int = 256
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    # detections
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_detections: int = 100

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_ratios) * len(self.anchor_scales)

    @property
    def feature_shape(self) -> tuple[int, int]:
        return (self.image_size[0] // self.stride, self.image_size[1] // self.stride)


@dataclass
class Stages:
    """The detector's geometric steps: numpy functions with the signatures of the exercises of
    the same names (chapters 3 to 6)."""

    reference_anchors: Callable
    grid_anchors: Callable
    rpn_proposals: Callable
    roi_align: Callable
    decode: Callable
    batched_nms: Callable


def build_rpn(config: DetectorConfig, backbone=None):
    """Backbone + RPN head: image ``(B, H, W, 3)`` in ``[0, 1]`` -> features ``(B, h, w, C)``,
    objectness logits ``(B, h*w*A)`` and deltas ``(B, h*w*A, 4)`` in grid-anchor order."""
    import keras
    from keras import layers

    from .rpn import RPNHead

    backbone = backbone or build_backbone()
    image = keras.Input((None, None, 3), name="image")
    features = backbone(image)
    objectness, deltas = RPNHead(config.num_anchors, channels=config.rpn_channels, name="rpn_head")(features)
    features = layers.Identity(name="features")(features)
    return keras.Model(image, [features, objectness, deltas], name="rpn")


def build_box_head(config: DetectorConfig, channels: int = BACKBONE_CHANNELS):
    """Pooled regions ``(R, 7, 7, C)`` -> class logits ``(R, K + 1)`` (0 = background) and
    per-class box deltas ``(R, K, 4)``."""
    import keras
    from keras import layers

    k = config.num_classes
    pooled = keras.Input((config.pool_size, config.pool_size, channels), name="pooled")
    x = layers.Conv2D(config.head_units // 2, 3, padding="same", activation="relu", name="head_conv")(pooled)
    x = layers.Flatten(name="head_flatten")(x)
    x = layers.Dense(config.head_units, activation="relu", name="head_fc1")(x)
    x = layers.Dense(config.head_units, activation="relu", name="head_fc2")(x)
    logits = layers.Dense(k + 1, name="class_logits")(x)
    deltas = layers.Dense(4 * k, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                          name="box_deltas_flat")(x)
    deltas = layers.Reshape((k, 4), name="box_deltas")(deltas)
    return keras.Model(pooled, [logits, deltas], name="box_head")


def _as_float_images(images) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images: expected (B, H, W, 3) or (H, W, 3), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32)


class TwoStageDetector:
    """Backbone, RPN and box head (Keras) joined by pluggable geometric :class:`Stages`."""

    def __init__(self, config: DetectorConfig | None = None, backbone=None,
                 stages: Stages | None = None, rpn=None, head=None):
        self.config = config or DetectorConfig()
        self.rpn = rpn if rpn is not None else build_rpn(self.config, backbone)
        self.head = head if head is not None else build_box_head(self.config)
        if stages is None:
            raise ValueError("a detector needs its stages: workshop.course.reference_stages() "
                             "or a Stages of your own functions")
        self.stages = stages

    # -- plumbing ------------------------------------------------------------------------------
    def with_stages(self, **replacements: Callable) -> "TwoStageDetector":
        """A detector sharing these weights, with some stages replaced by other functions
        (same signatures as the registry's exercises of the same name)."""
        unknown = set(replacements) - {f.name for f in dataclasses.fields(Stages)}
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; known: "
                             f"{[f.name for f in dataclasses.fields(Stages)]}")
        return TwoStageDetector(self.config, stages=dataclasses.replace(self.stages, **replacements),
                                rpn=self.rpn, head=self.head)

    def anchors(self, feature_shape) -> np.ndarray:
        c = self.config
        ref = self.stages.reference_anchors(c.anchor_base, list(c.anchor_ratios), list(c.anchor_scales))
        return np.asarray(self.stages.grid_anchors(tuple(int(s) for s in feature_shape), c.stride, ref),
                          dtype=np.float64)

    def save(self, directory) -> None:
        from pathlib import Path

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.rpn.save_weights(d / "detector_rpn.weights.h5")
        self.head.save_weights(d / "detector_head.weights.h5")

    def load(self, directory) -> "TwoStageDetector":
        from pathlib import Path

        d = Path(directory)
        self.rpn.load_weights(d / "detector_rpn.weights.h5")
        self.head.load_weights(d / "detector_head.weights.h5")
        return self

    # -- inference -----------------------------------------------------------------------------
    def propose(self, images, training: bool = False):
        """RPN forward pass and proposals: returns ``(features, [(boxes, scores), ...])``."""
        c = self.config
        x = _as_float_images(images)
        features, objectness, deltas = (np.asarray(t) for t in self.rpn(x, training=False))
        anchors = self.anchors(features.shape[1:3])
        pre, post = (c.train_pre_nms, c.train_post_nms) if training else (c.test_pre_nms, c.test_post_nms)
        proposals = []
        for i in range(x.shape[0]):
            boxes, scores = self.stages.rpn_proposals(
                anchors, objectness[i].astype(np.float64), deltas[i].astype(np.float64),
                x.shape[1:3], pre_nms_top_n=pre, post_nms_top_n=post,
                nms_threshold=c.rpn_nms_threshold, min_size=c.min_size)
            proposals.append((np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64)))
        return features, proposals

    def detect(self, images) -> list[dict]:
        """Detections per image: dicts of ``boxes`` float ``(D, 4)`` xyxy, ``scores`` ``(D,)``
        and ``classes`` int ``(D,)`` in ``1..num_classes``, by decreasing score."""
        c = self.config
        x = _as_float_images(images)
        features, proposals = self.propose(x)
        h, w = x.shape[1:3]
        results = []
        for i, (rois, _) in enumerate(proposals):
            if len(rois) == 0:
                results.append(_empty_detections())
                continue
            pooled = self.stages.roi_align(features[i].astype(np.float64), rois, (c.pool_size, c.pool_size),
                                           1.0 / c.stride, sampling_ratio=c.sampling_ratio)
            logits, deltas = (np.asarray(t, np.float64) for t in self.head(np.asarray(pooled, np.float32)))
            probs = _softmax(logits)
            k = c.num_classes
            boxes = np.asarray(self.stages.decode(deltas.reshape(-1, 4), np.repeat(rois, k, axis=0),
                                                  weights=c.box_weights), np.float64)
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
            scores = probs[:, 1:].reshape(-1)
            classes = np.tile(np.arange(1, k + 1), len(rois))
            keep = np.flatnonzero(scores > c.score_threshold)
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
            kept = np.asarray(self.stages.batched_nms(boxes, scores, classes, c.nms_threshold,
                                                      max_output_size=c.max_detections), np.int64)
            results.append({"boxes": boxes[kept], "scores": scores[kept], "classes": classes[kept]})
        return results


def _empty_detections() -> dict:
    return {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, np.int64)}


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def load_detector(directory, stages: Stages, config: DetectorConfig | None = None) -> TwoStageDetector:
    """The trained detector whose weights are in ``directory`` (a checkpoint folder), running
    ``stages`` (:func:`workshop.course.load_detector` gives the course's checkpoint and stages)."""
    return TwoStageDetector(config, stages=stages).load(directory)
