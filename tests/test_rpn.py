"""RPN: the sampling priority, properties of rpn_targets and rpn_proposals, the head and its loss."""

import numpy as np
import pytest

from workshop.models import rpn as M
from workshop.reference import rpn as R
from workshop.reference.anchors import grid_anchors_numpy, reference_anchors_numpy
from workshop.reference.boxes import iou_numpy

IMAGE = (64, 96)


def _anchors():
    ref = reference_anchors_numpy(16, [0.5, 1.0, 2.0], [1.0, 2.0])           # 6 per cell
    return grid_anchors_numpy((4, 6), 16.0, ref)                             # 144 anchors


GT = np.array([[4.0, 6.0, 40.0, 30.0], [50.0, 20.0, 90.0, 60.0], [30.0, 36.0, 46.0, 52.0]])


def _numpy_tf(result):
    return tuple(r.numpy() if hasattr(r, "numpy") else r for r in result)


# -- sampling priority ---------------------------------------------------------------------------
def test_priority_numpy_equals_tf_under_xla_with_dynamic_n():
    import tensorflow as tf

    f = tf.function(lambda n: M.sampling_priority_tf(n, 42), jit_compile=True)
    for n in (0, 17, 1000):
        np.testing.assert_array_equal(f(tf.constant(n)).numpy(), M.sampling_priority(n, 42))
    p = M.sampling_priority(5000, 0)
    assert p.dtype == np.int64 and len(np.unique(p)) == 5000 and p.min() >= 0 and p.max() < 2**32
    assert not np.array_equal(np.argsort(p), np.argsort(M.sampling_priority(5000, 1)))
    np.testing.assert_array_equal(p, M.sampling_priority(5000, 0))


# -- rpn_targets ------------------------------------------------------------------------------------
def _targets(tier, *args, **kwargs):
    return _numpy_tf(getattr(R, f"rpn_targets_{tier}")(*args, **kwargs))


@pytest.mark.parametrize("tier", ["loops", "numpy", "tf"])
def test_targets_all_ties_positive(tier):
    # two anchors tie as the GT's best (IoU 0.444 < 0.7): both positive
    anchors = np.array([[60, 30, 80, 50], [70, 40, 90, 60], [0, 0, 10, 10]], float)
    labels, deltas = _targets(tier, anchors, np.array([[60.0, 30, 90, 60]]), IMAGE)
    np.testing.assert_array_equal(labels, [1, 1, 0])
    np.testing.assert_allclose(deltas[:2, 2:], np.log(1.5))
    np.testing.assert_array_equal(deltas[2], 0)


@pytest.mark.parametrize("tier", ["numpy", "tf"])
def test_targets_properties(tier):
    a = _anchors()
    labels, deltas = _targets(tier, a, GT, IMAGE, batch_size=20, positive_fraction=0.25, seed=5)
    inside = (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= IMAGE[1]) & (a[:, 3] <= IMAGE[0])
    assert (labels[~inside] == -1).all()
    assert (labels == 1).sum() <= 5 and (labels >= 0).sum() <= 20
    iou = iou_numpy(a, GT)
    assert (iou[labels == 0].max(axis=1) < 0.3).all()
    np.testing.assert_array_equal(deltas[labels != 1], 0)
    # without sampling: every inside anchor with IoU >= 0.7 is positive, and each GT has one
    full, _ = _targets(tier, a, GT, IMAGE, batch_size=10**6)
    assert (full[inside & (iou.max(axis=1) >= 0.7)] == 1).all()
    assert all((full[iou[:, j] > 0] == 1).any() for j in range(len(GT)))


def test_targets_deterministic_under_seed_and_seed_matters():
    a = _anchors()
    one = R.rpn_targets_numpy(a, np.zeros((0, 4)), IMAGE, batch_size=16, seed=3)[0]
    again = R.rpn_targets_numpy(a, np.zeros((0, 4)), IMAGE, batch_size=16, seed=3)[0]
    other = R.rpn_targets_numpy(a, np.zeros((0, 4)), IMAGE, batch_size=16, seed=4)[0]
    np.testing.assert_array_equal(one, again)
    assert (one == 0).sum() == 16 and (other == 0).sum() == 16
    assert not np.array_equal(one, other)
    # the kept negatives are the 16 lowest priorities among the inside anchors
    priority = M.sampling_priority(len(a), 3)
    inside = np.flatnonzero((a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= 96) & (a[:, 3] <= 64))
    chosen = inside[np.argsort(priority[inside])[:16]]
    np.testing.assert_array_equal(np.sort(np.flatnonzero(one == 0)), np.sort(chosen))


def test_targets_tiers_agree_and_tf_compiles_with_unknown_n():
    import tensorflow as tf

    a = _anchors()
    want = R.rpn_targets_numpy(a, GT, IMAGE, batch_size=12, positive_fraction=0.5, seed=9)
    for got in (R.rpn_targets_loops(a, GT, IMAGE, batch_size=12, positive_fraction=0.5, seed=9),):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], atol=1e-12)
    spec = tf.TensorSpec([None, 4], tf.float64)
    f = tf.function(lambda x, g: R.rpn_targets_tf(x, g, IMAGE, batch_size=12, seed=9),
                    jit_compile=True, input_signature=[spec, spec])
    labels, deltas = f(tf.constant(a), tf.constant(GT))
    np.testing.assert_array_equal(labels.numpy(), want[0])
    np.testing.assert_allclose(deltas.numpy(), want[1], atol=1e-9)
    labels, _ = f(tf.constant(a), tf.zeros((0, 4), tf.float64))          # no GT
    np.testing.assert_array_equal(labels.numpy(), R.rpn_targets_numpy(a, np.zeros((0, 4)), IMAGE,
                                                                       batch_size=12, seed=9)[0])


def test_targets_validation():
    a = _anchors()
    with pytest.raises(ValueError, match="gt_boxes: row 1"):
        R.rpn_targets_numpy(a, np.array([[0.0, 0, 5, 5], [5.0, 5, 1, 9]]), IMAGE)
    with pytest.raises(ValueError, match="negative_iou"):
        R.rpn_targets_numpy(a, GT, IMAGE, positive_iou=0.3, negative_iou=0.7)
    with pytest.raises(ValueError, match="image_shape"):
        R.rpn_targets_numpy(a, GT, (0, 10))


# -- rpn_proposals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tier", ["loops", "numpy", "tf"])
def test_proposals_properties(tier):
    rng = np.random.default_rng(0)
    a = _anchors()
    scores, deltas = rng.normal(size=len(a)), rng.normal(0, 0.3, (len(a), 4))
    boxes, kept = _numpy_tf(getattr(R, f"rpn_proposals_{tier}")(
        a, scores, deltas, IMAGE, pre_nms_top_n=60, post_nms_top_n=25, nms_threshold=0.6, min_size=6))
    assert 0 < len(boxes) <= 25 and boxes.shape == (len(kept), 4)
    assert (np.diff(kept) <= 0).all()                                     # decreasing scores
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 96).all()
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 64).all()
    assert (boxes[:, 2] - boxes[:, 0] >= 6).all() and (boxes[:, 3] - boxes[:, 1] >= 6).all()
    iou = iou_numpy(boxes, boxes)
    assert (iou[np.triu_indices(len(boxes), 1)] <= 0.6).all()
    assert set(kept.tolist()) <= set(scores.tolist())


def test_proposals_tf_under_xla_matches_numpy():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    a = _anchors()
    scores, deltas = rng.normal(size=len(a)), rng.normal(0, 0.3, (len(a), 4))
    f = tf.function(lambda x, s, d: R.rpn_proposals_tf(x, s, d, IMAGE, 80, 30, 0.7, 4.0), jit_compile=True)
    got = _numpy_tf(f(tf.constant(a), tf.constant(scores), tf.constant(deltas)))
    want = R.rpn_proposals_numpy(a, scores, deltas, IMAGE, 80, 30, 0.7, 4.0)
    np.testing.assert_allclose(got[0], want[0], atol=1e-9)
    np.testing.assert_array_equal(got[1], want[1])


# -- the head and the loss ----------------------------------------------------------------------------
def test_head_shapes_names_and_grid_order():
    import keras

    head = M.RPNHead(3, channels=8, name="rpn_head")
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 6)).astype("float32")
    obj, deltas = head(x)
    assert tuple(obj.shape) == (2, 4 * 5 * 3) and tuple(deltas.shape) == (2, 4 * 5 * 3, 4)
    assert {l.name for l in head._layers} >= {"rpn_conv", "rpn_objectness", "rpn_deltas"}
    inner = head.conv(x)
    raw_obj, raw_d = np.asarray(head.objectness(inner)), np.asarray(head.deltas(inner))
    obj, deltas = np.asarray(obj), np.asarray(deltas)
    for (b, y, x_, a) in [(0, 0, 0, 0), (1, 2, 3, 1), (1, 3, 4, 2), (0, 1, 0, 2)]:
        row = (y * 5 + x_) * 3 + a
        assert obj[b, row] == raw_obj[b, y, x_, a]
        np.testing.assert_array_equal(deltas[b, row], raw_d[b, y, x_, 4 * a:4 * a + 4])
    # usable in a functional model with unknown spatial size
    inp = keras.Input((None, None, 6))
    model = keras.Model(inp, M.RPNHead(3, channels=8, name="rpn_head")(inp))
    o, d = model(x)
    assert tuple(o.shape) == (2, 60) and tuple(d.shape) == (2, 60, 4)


def _toy_targets():
    a = _anchors()
    labels, deltas = R.rpn_targets_numpy(a, GT, IMAGE, batch_size=64, seed=0)
    return labels[None].astype(np.int32), deltas[None].astype(np.float32)


def test_loss_zero_for_perfect_predictions_and_ignores_ignored():
    labels, targets = _toy_targets()
    assert (labels == 1).any() and (labels == 0).any() and (labels == -1).any()
    logits = np.where(labels == 1, 30.0, -30.0).astype(np.float32)
    assert float(M.rpn_loss(logits, targets, labels, targets)) < 1e-6
    rng = np.random.default_rng(0)
    wild_logits = np.where(labels == -1, rng.normal(0, 50, labels.shape), logits).astype(np.float32)
    wild_deltas = np.where((labels == -1)[..., None], rng.normal(0, 50, targets.shape), targets).astype(np.float32)
    assert float(M.rpn_loss(wild_logits, wild_deltas, labels, targets)) < 1e-6
    # and a wrong prediction on a sampled anchor does count
    bad = logits.copy()
    bad[labels == 1] = -30.0
    _, obj, box = M.rpn_loss(bad, targets, labels, targets, return_parts=True)
    assert float(obj) > 1.0 and float(box) < 1e-6
    # normalised by the sampled anchors: one wrong positive adds 30 / (number sampled)
    one = logits.copy()
    one[0, np.flatnonzero(labels[0] == 1)[0]] = -30.0
    np.testing.assert_allclose(float(M.rpn_loss(one, targets, labels, targets)),
                               30.0 / (labels >= 0).sum(), rtol=1e-4)


def test_few_training_steps_reduce_the_loss():
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    labels, targets = _toy_targets()
    features = tf.constant(np.random.default_rng(0).normal(size=(1, 4, 6, 8)), tf.float32)
    head = M.RPNHead(6, channels=16)
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            obj, d = head(features)
            loss = M.rpn_loss(obj, d, labels, targets)
        grads = tape.gradient(loss, head.trainable_variables)
        optimizer.apply_gradients(zip(grads, head.trainable_variables))
        return loss

    losses = [float(step()) for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_model_loss_is_chapter_5s_rpn_loss_on_every_registry_case():
    """workshop.models.rpn.rpn_loss (what the detector trains with) and the exercise's reference
    tiers agree on every case; a batch is the loss of all its anchors together."""
    from workshop.exercises import get

    ex = get("rpn_loss")
    for case in ex.cases(public_only=False, seed=0, n_random=30):
        (logits, pred, labels, target), kwargs = case.fresh_args()
        want = ex.expected(case)
        _, obj, box = M.rpn_loss(logits, pred, labels, target, return_parts=True, **kwargs)
        np.testing.assert_allclose([float(obj), float(box)], want, rtol=1e-6, atol=1e-9, err_msg=case.name)
    # (B, N) batches: the same as the flattened anchors
    labels, targets = _toy_targets()
    rng = np.random.default_rng(1)
    two = np.concatenate([labels, labels[:, ::-1]])
    logits = rng.normal(0, 2, two.shape)
    pred = np.concatenate([targets, targets]) + rng.normal(0, 0.2, (2,) + targets.shape[1:])
    tgt = np.concatenate([targets, targets])
    _, obj, box = M.rpn_loss(logits, pred, two, tgt, return_parts=True)
    np.testing.assert_allclose([float(obj), float(box)], R.rpn_loss_numpy(logits, pred, two, tgt), rtol=1e-6)
    np.testing.assert_allclose([float(v) for v in R.rpn_loss_tf(logits, pred, two, tgt)],
                               R.rpn_loss_loops(logits, pred, two, tgt), rtol=1e-9)
