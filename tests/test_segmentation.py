"""The UNet weight map, the confusion matrix and the segmentation metrics: tiers against each
other and against independent oracles (tf.math.confusion_matrix, scikit-learn, Keras' MeanIoU)."""

import numpy as np
import pytest

from workshop.reference import segmentation as seg

WEIGHT_TIERS = [seg.unet_weight_map_loops, seg.unet_weight_map_numpy, seg.unet_weight_map_tf]
CM_TIERS = [seg.confusion_matrix_loops, seg.confusion_matrix_numpy, seg.confusion_matrix_tf]
METRIC_TIERS = [seg.segmentation_metrics_loops, seg.segmentation_metrics_numpy, seg.segmentation_metrics_tf]
IDS = ["loops", "numpy", "tf"]


def _np(value):
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _blobs(rng, shape, n):
    """Random instance map: n discs/rectangles with non-consecutive ids, later ones on top."""
    labels = np.zeros(shape, np.int64)
    rows, cols = np.indices(shape)
    for i in range(n):
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        radius = rng.uniform(0.8, 3.5)
        labels[(rows - r) ** 2 + (cols - c) ** 2 <= radius ** 2] = 5 * i + 3
    return labels


# == weight map ====================================================================================
@pytest.mark.parametrize("seed", range(6))
def test_weight_map_tiers_agree(seed):
    rng = np.random.default_rng(seed)
    labels = _blobs(rng, (int(rng.integers(8, 17)), int(rng.integers(8, 17))), int(rng.integers(2, 6)))
    kwargs = {"w0": float(rng.uniform(2, 12)), "sigma": float(rng.uniform(1, 6))}
    results = [_np(t(labels, **kwargs)) for t in WEIGHT_TIERS]
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], atol=1e-5, rtol=0)
    assert results[0].dtype == np.float64 and results[0].shape == labels.shape


def test_weight_map_tf_tier_compiles_for_several_sizes():
    import tensorflow as tf

    fn = tf.function(lambda lab: seg.unet_weight_map_tf(lab, 10.0, 3.0), jit_compile=True, reduce_retracing=True)
    rng = np.random.default_rng(3)
    for shape in [(9, 11), (12, 7), (10, 10)]:
        labels = _blobs(rng, shape, 3)
        np.testing.assert_allclose(fn(tf.constant(labels)).numpy(), seg.unet_weight_map_numpy(labels, 10.0, 3.0),
                                   atol=1e-5)


@pytest.mark.parametrize("tier", WEIGHT_TIERS, ids=IDS)
def test_one_pixel_gap_gets_the_full_border_weight(tier):
    """Two cells one pixel apart: the gap pixels have d1 = d2 = 1."""
    labels = np.zeros((5, 7), np.int64)
    labels[:, :3] = 1
    labels[:, 4:] = 2
    w0, sigma = 10.0, 2.0
    out = _np(tier(labels, w0, sigma, class_weights=(1.0, 1.0)))
    np.testing.assert_allclose(out[:, 3], 1 + w0 * np.exp(-4 / (2 * sigma ** 2)))
    np.testing.assert_allclose(out[:, [0, 1, 2, 4, 5, 6]], 1.0)   # border term on background only


@pytest.mark.parametrize("tier", WEIGHT_TIERS, ids=IDS)
def test_weight_map_rules(tier):
    rng = np.random.default_rng(4)
    labels = _blobs(rng, (10, 12), 4)
    out = _np(tier(labels, 0.0, 3.0))                                  # w0 = 0: class weights only
    fg = labels > 0
    np.testing.assert_allclose(out.mean(), 1.0)                        # balanced weights average to 1
    np.testing.assert_allclose(out[fg].sum(), out[~fg].sum())          # and the two classes weigh the same
    # instance ids are names only; the map is symmetric under transposition
    relabelled = np.where(fg, labels * 7 + 1, 0)
    np.testing.assert_allclose(_np(tier(relabelled, 10.0, 3.0)), _np(tier(labels, 10.0, 3.0)), atol=1e-9)
    np.testing.assert_allclose(_np(tier(labels.T.copy(), 10.0, 3.0)), _np(tier(labels, 10.0, 3.0)).T, atol=1e-9)
    # the border term decreases with distance from the gap and never touches the foreground
    border = _np(tier(labels, 10.0, 3.0, class_weights=(0.0, 0.0)))
    assert np.all(border[fg] == 0) and np.all(border[~fg] >= 0) and border.max() <= 10.0


@pytest.mark.parametrize("tier", WEIGHT_TIERS[:2], ids=IDS[:2])
def test_weight_map_rejects_negative_ids(tier):
    """(The TF tier cannot check data inside a compiled graph; it treats ids <= 0 as background.)"""
    with pytest.raises(ValueError, match="positive"):
        tier(np.array([[0, -1]]))


@pytest.mark.parametrize("tier", WEIGHT_TIERS, ids=IDS)
@pytest.mark.parametrize("labels, kwargs, match", [
    (np.zeros((2, 2, 1), np.int64), {}, r"\(H, W\)"),
    (np.zeros((3, 3), np.int64), {"sigma": 0.0}, "sigma"),
    (np.zeros((3, 3), np.int64), {"w0": -1.0}, "w0"),
    (np.zeros((3, 3), np.int64), {"class_weights": (1.0,)}, "class_weights"),
])
def test_weight_map_bad_input(tier, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tier(labels, **kwargs)


# == confusion matrix ==============================================================================
@pytest.mark.parametrize("tier", CM_TIERS, ids=IDS)
@pytest.mark.parametrize("seed", range(4))
def test_confusion_matrix_against_tf_and_sklearn(tier, seed):
    import tensorflow as tf
    from sklearn.metrics import confusion_matrix as sk_cm

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    t = rng.integers(0, k - 1, (2, 9, 8))           # the last class never occurs in the truth
    p = np.where(rng.random(t.shape) < 0.5, t, rng.integers(0, k, t.shape))
    got = _np(tier(t, p, k))
    np.testing.assert_array_equal(got, tf.math.confusion_matrix(t.ravel(), p.ravel(), k).numpy())
    np.testing.assert_array_equal(got, sk_cm(t.ravel(), p.ravel(), labels=range(k)))
    assert got.sum() == t.size


@pytest.mark.parametrize("tier", CM_TIERS[:2], ids=IDS[:2])
def test_confusion_matrix_bad_input(tier):
    with pytest.raises(ValueError, match="0..2"):
        tier(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="same shape"):
        tier(np.zeros((2, 3), np.int64), np.zeros((3, 2), np.int64), 3)
    with pytest.raises(ValueError, match="integers"):
        tier(np.array([0.5, 1.0]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        tier(np.array([0]), np.array([0]), 0)


def test_confusion_matrix_tf_ignores_out_of_range_labels():
    """Documented: a compiled graph cannot raise on data, so such pixels are not counted."""
    got = _np(seg.confusion_matrix_tf(np.array([0, 1, 5, -1, 1]), np.array([0, 7, 1, 1, 1]), 2))
    np.testing.assert_array_equal(got, [[1, 0], [0, 1]])


# == metrics =======================================================================================
@pytest.mark.parametrize("tier", METRIC_TIERS, ids=IDS)
@pytest.mark.parametrize("seed", range(4))
def test_metrics_against_sklearn_and_keras(tier, seed):
    import keras
    from sklearn.metrics import accuracy_score, f1_score, jaccard_score

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    t = rng.integers(0, k, 300)
    p = np.where(rng.random(300) < 0.6, t, rng.integers(0, k, 300))
    cm = seg.confusion_matrix_numpy(t, p, k)
    accuracy, iou, dice, mean_iou = (_np(v) for v in tier(cm))
    np.testing.assert_allclose(accuracy, accuracy_score(t, p))
    np.testing.assert_allclose(iou, jaccard_score(t, p, average=None, labels=range(k)))
    np.testing.assert_allclose(dice, f1_score(t, p, average=None, labels=range(k)))  # Dice is F1
    keras_miou = keras.metrics.MeanIoU(num_classes=k)
    keras_miou.update_state(t, p)
    np.testing.assert_allclose(mean_iou, float(keras_miou.result()), rtol=1e-6)


@pytest.mark.parametrize("tier", METRIC_TIERS, ids=IDS)
def test_metrics_absent_classes(tier):
    """Absent from truth and prediction: NaN and left out of the mean (as Keras' MeanIoU does)."""
    import keras

    t = np.array([0, 0, 2, 2, 3])
    p = np.array([0, 2, 2, 2, 0])
    accuracy, iou, dice, mean_iou = (_np(v) for v in tier(seg.confusion_matrix_numpy(t, p, 5)))
    assert np.isnan(iou[[1, 4]]).all() and np.isnan(dice[[1, 4]]).all()
    np.testing.assert_allclose(iou[[0, 2, 3]], [1 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(dice[[0, 2, 3]], [2 / 4, 4 / 5, 0.0])
    np.testing.assert_allclose(mean_iou, (1 / 3 + 2 / 3) / 3)
    keras_miou = keras.metrics.MeanIoU(num_classes=5)
    keras_miou.update_state(t, p)
    np.testing.assert_allclose(mean_iou, float(keras_miou.result()), rtol=1e-6)
    np.testing.assert_allclose(accuracy, 3 / 5)
    empty = [_np(v) for v in tier(np.zeros((2, 2), np.int64))]
    assert all(np.isnan(v).all() for v in empty)


@pytest.mark.parametrize("tier", METRIC_TIERS[:2], ids=IDS[:2])
def test_metrics_bad_input(tier):
    with pytest.raises(ValueError, match="square"):
        tier(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=">= 0"):
        tier(np.array([[1, -1], [0, 2]]))


def test_pixel_weighted_cross_entropy_numpy():
    logits = np.array([[[0.0, np.log(3.0)], [5.0, 5.0]]])      # (1, 2, 2): p = (1/4, 3/4), (1/2, 1/2)
    labels = np.array([[1, 0]])
    weights = np.array([[2.0, 1.0]])
    want = (2 * -np.log(0.75) + 1 * -np.log(0.5)) / 2
    np.testing.assert_allclose(seg.pixel_weighted_cross_entropy_numpy(logits, labels, weights), want)
    with pytest.raises(ValueError, match="labels and weights"):
        seg.pixel_weighted_cross_entropy_numpy(logits, labels, weights[:, :1])
