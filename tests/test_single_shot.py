"""Chapter 10's single-shot pieces beyond the registry's cases: the focal loss against Keras'
binary focal cross-entropy, its gradient in TensorFlow, and the matching's best-anchor rule on
the detector's own anchors."""

import numpy as np
import pytest

from workshop.reference.single_shot import (
    focal_loss_loops,
    focal_loss_numpy,
    focal_loss_tf,
    match_anchors_loops,
    match_anchors_numpy,
)


def _keras_terms(logits, targets, alpha, gamma):
    """Keras' sigmoid focal cross-entropy, element by element (a last axis of size 1)."""
    import keras

    out = keras.losses.binary_focal_crossentropy(
        targets[..., None].astype(np.float64), logits[..., None].astype(np.float64),
        apply_class_balancing=True, alpha=alpha, gamma=gamma, from_logits=True)
    return np.asarray(out, np.float64)


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 0.0), (0.75, 1.0)])
def test_focal_loss_is_keras_binary_focal_crossentropy_summed_over_the_foreground(alpha, gamma):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (50, 4))
    labels = rng.choice([-1, 0, 0, 1, 2, 3, 4], 50)
    targets = (labels[:, None] == np.arange(1, 5)[None, :]).astype(np.float64)
    terms = _keras_terms(logits, targets, alpha, gamma)
    expected = terms[labels >= 0].sum() / max((labels >= 1).sum(), 1)
    for fn in (focal_loss_loops, focal_loss_numpy):
        assert fn(logits, labels, alpha, gamma) == pytest.approx(expected, rel=1e-6)


def test_focal_loss_tf_gradient_is_finite_and_pushes_the_right_way():
    import tensorflow as tf

    logits = tf.Variable([[0.0, 0.0], [3.0, -3.0], [-80.0, 80.0], [5.0, 5.0]], dtype=tf.float32)
    labels = tf.constant([1, 0, 2, -1])
    with tf.GradientTape() as tape:
        loss = focal_loss_tf(logits, labels)
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(np.isfinite(grad))
    assert grad[0, 0] < 0 < grad[0, 1]          # raise the true class, lower the other
    assert grad[1, 0] > 0                       # a background anchor scoring class 1: lower it
    np.testing.assert_array_equal(grad[3], 0)   # ignored: no gradient


def test_every_object_gets_an_anchor_on_the_detectors_grid():
    from workshop.course import reference_stages
    from workshop.models.detector import DetectorConfig

    config = DetectorConfig()
    stages = reference_stages()
    base = stages.reference_anchors(config.anchor_base, list(config.anchor_ratios), list(config.anchor_scales))
    anchors = np.asarray(stages.grid_anchors(config.feature_shape, config.stride, base), np.float64)
    # small, thin and large objects, some below every anchor's fg_iou
    gt = np.array([[3.0, 3.0, 9.0, 7.0], [40.0, 10.0, 44.0, 70.0], [10.0, 60.0, 120.0, 120.0],
                   [70.0, 70.0, 86.0, 86.0]])
    classes = np.array([1, 2, 3, 4])
    labels, deltas = match_anchors_numpy(anchors, gt, classes)
    loops = match_anchors_loops(anchors, gt, classes)
    np.testing.assert_array_equal(labels, loops[0])
    np.testing.assert_allclose(deltas, loops[1], atol=1e-12)
    assert set(labels[labels > 0].tolist()) == {1, 2, 3, 4}
    assert (labels > 0).sum() < 0.05 * len(anchors)     # a handful of positives among ~2,300 anchors
    assert np.all(deltas[labels <= 0] == 0)


def test_match_anchors_rejects_bad_arguments():
    anchors = np.array([[0.0, 0.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match="bg_iou"):
        match_anchors_numpy(anchors, anchors, np.array([1]), fg_iou=0.3, bg_iou=0.4)
    with pytest.raises(ValueError, match="gt_classes"):
        match_anchors_numpy(anchors, anchors, np.array([0]))
    with pytest.raises(ValueError, match="labels"):
        focal_loss_numpy(np.zeros((2, 3)), np.array([0, 4]))
