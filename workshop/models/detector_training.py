"""Training the two-stage detector: target sampling (numpy, with the :class:`TrainingStages` the
caller gives) and a Keras model whose ``train_step`` joins the RPN and box-head losses, so ``fit`` brings
progress bars, TensorBoard, ModelCheckpoint and EarlyStopping.

Approximate joint training (as in the Faster R-CNN code base): per step, the current RPN's
proposals are taken as constants and ``roi_targets`` samples them, with the ground truths, into
at most ``rois_per_image`` regions (at most ``fg_fraction`` foreground); the losses of both
stages (``rpn_loss``, ``head_loss``) are summed and back-propagated through RoI align into the
backbone. Every one of these steps is a stage the caller gives (:class:`TrainingStages`): the
course's references, or a learner's own functions.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .detector import TwoStageDetector

MAX_GT = 16   # ground-truth boxes per image, padded with -1 rows


def pad_ground_truth(boxes_list, classes_list, max_gt: int = MAX_GT):
    """Lists of ``(N_i, 4)`` boxes / ``(N_i,)`` classes -> float32 ``(B, max_gt, 4)`` and int32
    ``(B, max_gt)`` padded with -1 (rows beyond ``max_gt`` are dropped)."""
    n = len(boxes_list)
    boxes = -np.ones((n, max_gt, 4), np.float32)
    classes = -np.ones((n, max_gt), np.int32)
    for i, (b, c) in enumerate(zip(boxes_list, classes_list)):
        k = min(len(b), max_gt)
        boxes[i, :k] = np.asarray(b, np.float32)[:k]
        classes[i, :k] = np.asarray(c)[:k]
    return boxes, classes


@dataclass
class TrainingStages:
    """What a training step computes outside the networks, with the signatures of the exercises
    of the same names: numpy ``rpn_targets`` and ``roi_targets`` (the sampled regions and their
    targets), TensorFlow ``roi_align_tf``, and the TensorFlow losses ``rpn_loss`` and
    ``head_loss`` (differentiable: the step takes their gradients).
    :func:`workshop.course.reference_training_stages` gives the course's; a learner's own
    replace any of them (``dataclasses.replace(stages, head_loss=head_loss_tf)``)."""

    rpn_targets: Callable
    roi_targets: Callable
    roi_align_tf: Callable
    rpn_loss: Callable
    head_loss: Callable


class TargetSampler:
    """Numpy side of a training step: RPN targets and sampled RoIs with their head targets.

    Random draws: by default one stream (``seed``) for all images in the order they come. With
    ``per_image_seeds=True`` each image draws from its own generator, seeded by ``seed``, the
    image's ground truth and how many times that image has been sampled so far: the draws for
    an image no longer depend on which other images share its batch, nor on the order in which
    concurrent callers arrive. That is what a ``tf.distribute`` strategy needs: each replica
    calls the sampler (a ``tf.numpy_function``) on its slice of the global batch, on its own
    thread (MirroredStrategy) or in its own process (MultiWorkerMirroredStrategy), and the
    targets must be those single-device training would draw for the same global batch.
    """

    def __init__(self, detector: TwoStageDetector, stages: TrainingStages, seed: int = 0,
                 per_image_seeds: bool = False):
        self.detector = detector
        self.config = detector.config
        self.rpn_targets, self.roi_targets = stages.rpn_targets, stages.roi_targets
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self.per_image_seeds = bool(per_image_seeds)
        self._seen: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._anchors: dict[tuple, np.ndarray] = {}

    def _image_rng(self, gt_boxes, gt_classes) -> np.random.Generator:
        if not self.per_image_seeds:
            return self.rng
        digest = hashlib.sha256(np.ascontiguousarray(gt_boxes, np.float32).tobytes()
                                + np.ascontiguousarray(gt_classes, np.int32).tobytes()).digest()
        with self._lock:
            visit = self._seen.get(digest, 0)
            self._seen[digest] = visit + 1
        return np.random.default_rng([self.seed, visit, *np.frombuffer(digest[:16], np.uint32).tolist()])

    def anchors(self, feature_shape) -> np.ndarray:
        key = tuple(int(s) for s in feature_shape)
        if key not in self._anchors:
            self._anchors[key] = self.detector.anchors(key)
        return self._anchors[key]

    def __call__(self, objectness, deltas, gt_boxes, gt_classes, image_shape):
        """All numpy. Returns rpn_labels int32 (B, N), rpn_deltas float32 (B, N, 4), rois
        float32 (B, R, 4), roi_labels int32 (B, R) (0 = background, -1 = padding), roi_deltas
        float32 (B, R, 4)."""
        c = self.config
        b = objectness.shape[0]
        h, w = int(image_shape[0]), int(image_shape[1])
        feature_shape = (h // c.stride, w // c.stride)
        anchors = self.anchors(feature_shape)
        n = anchors.shape[0]
        rpn_labels = np.full((b, n), -1, np.int32)
        rpn_deltas = np.zeros((b, n, 4), np.float32)
        r = c.rois_per_image
        rois = np.zeros((b, r, 4), np.float32)
        roi_labels = np.zeros((b, r), np.int32)
        roi_deltas = np.zeros((b, r, 4), np.float32)
        for i in range(b):
            rng = self._image_rng(gt_boxes[i], gt_classes[i])
            valid = gt_classes[i] > 0
            gt = gt_boxes[i][valid].astype(np.float64)
            cls = gt_classes[i][valid].astype(np.int64)
            seed = int(rng.integers(2**31))
            labels, targets = self.rpn_targets(anchors, gt, (h, w), seed=seed)
            rpn_labels[i] = labels
            rpn_deltas[i] = targets
            props, _ = self.detector.stages.rpn_proposals(
                anchors, objectness[i].astype(np.float64), deltas[i].astype(np.float64), (h, w),
                pre_nms_top_n=c.train_pre_nms, post_nms_top_n=c.train_post_nms,
                nms_threshold=c.rpn_nms_threshold, min_size=c.min_size)
            rois[i], roi_labels[i], roi_deltas[i] = self._sample(
                np.asarray(props, np.float64).reshape(-1, 4), gt, cls, int(rng.integers(2**31)))
        return rpn_labels, rpn_deltas, rois, roi_labels, roi_deltas

    def _sample(self, proposals, gt, cls, seed: int):
        """``rois_per_image`` regions with their labels and box targets, from ``roi_targets``
        (the proposals followed by the GT boxes, sampled by priority); fewer sampled ones are
        padded with unsampled rows (label -1), which the head's loss leaves out."""
        c = self.config
        r = c.rois_per_image
        labels, deltas = self.roi_targets(proposals, gt, cls, batch_size=r, fg_fraction=c.fg_fraction,
                                          fg_iou=c.fg_iou, bg_iou_low=c.bg_iou_low, bg_iou_high=c.bg_iou,
                                          weights=c.box_weights, seed=seed)
        labels = np.asarray(labels, np.int64).reshape(-1)
        deltas = np.asarray(deltas, np.float64).reshape(-1, 4)
        candidates = np.concatenate([proposals, gt])
        keep = np.flatnonzero(labels >= 0)[:r]
        rois = np.zeros((r, 4))
        roi_labels = np.full(r, -1, np.int64)
        roi_deltas = np.zeros((r, 4))
        rois[:len(keep)], roi_labels[:len(keep)], roi_deltas[:len(keep)] = (
            candidates[keep], labels[keep], deltas[keep])
        rois[len(keep):] = [0.0, 0.0, float(c.stride), float(c.stride)]   # pooled, then ignored
        return rois, roi_labels, roi_deltas


def build_training_model(detector: TwoStageDetector, stages: TrainingStages, seed: int = 0,
                         per_image_seeds: bool = False):
    """A ``keras.Model`` whose ``fit`` trains ``detector``'s RPN and box head together.

    ``fit`` takes ``x = images`` float32 ``(B, H, W, 3)`` in [0, 1] and ``y = (gt_boxes
    (B, MAX_GT, 4), gt_classes (B, MAX_GT))`` padded with -1 (see :func:`pad_ground_truth`).

    Under a ``tf.distribute`` strategy, build ``detector`` and this model and ``compile`` it
    inside ``strategy.scope()``, and pass ``per_image_seeds=True`` (see :class:`TargetSampler`).
    Each replica's loss is divided by the number of replicas before its gradients, which the
    optimizer sums across replicas: the update is that of the global batch's mean loss (each
    replica's terms are means over its equal share of images, RPN anchors and RoIs).
    """
    import keras
    import tensorflow as tf

    roi_align_tf, rpn_loss, head_loss = stages.roi_align_tf, stages.rpn_loss, stages.head_loss
    sampler = TargetSampler(detector, stages, seed, per_image_seeds)
    c = detector.config

    class DetectorTrainer(keras.Model):
        def __init__(self):
            super().__init__(name="detector_trainer")
            self.rpn = detector.rpn
            self.head = detector.head
            self.trackers = {k: keras.metrics.Mean(name=k) for k in
                             ("loss", "rpn_loss", "head_cls_loss", "head_box_loss", "head_accuracy")}

        @property
        def metrics(self):
            return list(self.trackers.values())

        def call(self, images, training=False):
            return self.rpn(images, training=training)

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            # Keras 3.15 takes the shapes for its symbolic build from the first distributed batch
            # reduced with strategy.reduce("MEAN"), which MultiWorkerMirroredStrategy cannot do
            # eagerly ("Attempt to convert a value (PerReplica...)"); one replica's slice has the
            # same per-replica shapes, so build from that (Keras' own logic otherwise)
            if iterator is not None and self._distribute_strategy is not None:
                local = self._distribute_strategy.experimental_local_results
                for _, _, it in iterator:
                    data_batch = tf.nest.map_structure(
                        lambda v: local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
                    break
                iterator = None
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

        def _stage_losses(self, images, gt_boxes, gt_classes, training):
            features, objectness, deltas = self.rpn(images, training=training)
            shape = tf.shape(images)[1:3]
            outs = tf.numpy_function(
                lambda o, d, gb, gc, s: sampler(o, d, gb, gc, s),
                [tf.stop_gradient(objectness), tf.stop_gradient(deltas), gt_boxes, gt_classes, shape],
                [tf.int32, tf.float32, tf.float32, tf.int32, tf.float32], stateful=True)
            rpn_labels, rpn_targets, rois, roi_labels, roi_targets = outs
            n_anchors = tf.shape(objectness)[1]
            rpn_labels = tf.reshape(rpn_labels, tf.shape(objectness))
            rpn_targets = tf.reshape(rpn_targets, [-1, n_anchors, 4])
            r = c.rois_per_image
            rois = tf.reshape(rois, [-1, r, 4])
            roi_labels = tf.reshape(roi_labels, [-1, r])
            roi_targets = tf.reshape(roi_targets, [-1, r, 4])
            l_obj, l_box = rpn_loss(objectness, deltas, rpn_labels, rpn_targets)
            l_rpn = l_obj + l_box
            pooled = tf.map_fn(
                lambda args: roi_align_tf(args[0], tf.cast(args[1], args[0].dtype), (c.pool_size, c.pool_size),
                                          1.0 / c.stride, sampling_ratio=c.sampling_ratio),
                (features, rois), fn_output_signature=tf.TensorSpec(
                    (r, c.pool_size, c.pool_size, features.shape[-1]), features.dtype))
            pooled = tf.reshape(pooled, [-1, c.pool_size, c.pool_size, features.shape[-1]])
            logits, box_deltas = self.head(pooled, training=training)
            labels = tf.reshape(roi_labels, [-1])
            cls_loss, box_loss = head_loss(logits, box_deltas, labels, tf.reshape(roi_targets, [-1, 4]))
            sampled = tf.cast(labels >= 0, tf.float32)
            right = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32)
            acc = tf.reduce_sum(right * sampled) / tf.maximum(tf.reduce_sum(sampled), 1.0)
            return l_rpn, cls_loss, box_loss, acc

        def _record(self, l_rpn, cls_loss, box_loss, acc):
            total = l_rpn + cls_loss + box_loss
            for k, v in (("loss", total), ("rpn_loss", l_rpn), ("head_cls_loss", cls_loss),
                         ("head_box_loss", box_loss), ("head_accuracy", acc)):
                self.trackers[k].update_state(v)
            logs = {k: m.result() for k, m in self.trackers.items()}
            if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
                # Keras 3.15 averages the workers' logs with strategy.reduce("MEAN", axis=0),
                # which needs a dimension to reduce over: give each value one
                logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
            return logs

        def train_step(self, data):
            images, (gt_boxes, gt_classes) = data
            with tf.GradientTape() as tape:
                l_rpn, cls_loss, box_loss, acc = self._stage_losses(images, gt_boxes, gt_classes, True)
                total = l_rpn + cls_loss + box_loss
                # the optimizer sums gradients over replicas (1 without a strategy)
                scaled = total / tf.distribute.get_strategy().num_replicas_in_sync
            variables = self.rpn.trainable_variables + self.head.trainable_variables
            grads = tape.gradient(scaled, variables)
            self.optimizer.apply_gradients(zip(grads, variables))
            return self._record(l_rpn, cls_loss, box_loss, acc)

        def test_step(self, data):
            images, (gt_boxes, gt_classes) = data
            return self._record(*self._stage_losses(images, gt_boxes, gt_classes, False))

    return DetectorTrainer()
