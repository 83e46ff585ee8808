"""Anchors: the worked example's pinned values, the grid order, TF under XLA, validation."""

import math

import numpy as np
import pytest

from workshop.reference import anchors as A

TIERS = ["loops", "numpy", "tf"]
WORKED = (256.0, [0.5, 1.0, 2.0], [0.25, 0.5, 1.0, 2.0])


def _ref(tier):
    fn = getattr(A, f"reference_anchors_{tier}")
    if tier != "tf":
        return fn
    return lambda *a, **k: fn(*a, **k).numpy()


def _grid(tier):
    fn = getattr(A, f"grid_anchors_{tier}")
    if tier != "tf":
        return fn
    return lambda *a, **k: fn(*a, **k).numpy()


@pytest.mark.parametrize("tier", TIERS)
def test_worked_example_anchors_pinned(tier):
    out = _ref(tier)(*WORKED)
    assert out.shape == (12, 4)
    np.testing.assert_allclose(out[0], [-45.2548, -22.6274, 45.2548, 22.6274], atol=1e-4)
    np.testing.assert_allclose(out[4], [-32, -32, 32, 32], atol=1e-12)
    assert out.dtype == np.float64


@pytest.mark.parametrize("tier", TIERS)
def test_ratio_is_height_over_width_and_area_kept(tier):
    rng = np.random.default_rng(0)
    ratios, scales = rng.uniform(0.2, 5, 4), rng.uniform(0.3, 3, 3)
    out = _ref(tier)(37.0, ratios, scales)
    w, h = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
    np.testing.assert_allclose(h / w, np.repeat(ratios, 3), rtol=1e-12)
    np.testing.assert_allclose(w * h, (37.0 * np.tile(scales, 4)) ** 2, rtol=1e-12)
    np.testing.assert_allclose(out[:, :2] + out[:, 2:], 0, atol=1e-12)   # centred


def test_grid_order_is_the_conv_reshape_order():
    """Row (y*W + x)*A + a: the order of a (1, H, W, A*4) conv output reshaped to (H*W*A, 4)."""
    H, W, stride = 3, 5, 8.0
    ref = A.reference_anchors_numpy(16, [0.5, 2.0], [1.0, 2.0])        # A = 4
    out = A.grid_anchors_numpy((H, W), stride, ref)
    cells = np.zeros((1, H, W, 4 * 4))
    for y in range(H):
        for x in range(W):
            shift = np.array([(x + 0.5) * stride, (y + 0.5) * stride] * 2)
            cells[0, y, x] = (ref + shift).reshape(-1)
    np.testing.assert_array_equal(out, cells.reshape(-1, 4))


@pytest.mark.parametrize("tier", TIERS)
def test_grid_non_square_and_offset(tier):
    ref = np.array([[-2.0, -1.0, 2.0, 1.0]])
    out = _grid(tier)((2, 3), 10.0, ref, offset=0.0)
    centres = (out[:, :2] + out[:, 2:]) / 2
    expected = [[x * 10.0, y * 10.0] for y in range(2) for x in range(3)]
    np.testing.assert_allclose(centres, expected, atol=1e-12)


@pytest.mark.parametrize("tier", TIERS)
def test_empty_outputs(tier):
    assert _ref(tier)(16, [1.0], []).shape == (0, 4)
    assert _grid(tier)((0, 7), 16, np.array([[-1.0, -1, 1, 1]])).shape == (0, 4)
    assert _grid(tier)((3, 2), 16, np.zeros((0, 4))).shape == (0, 4)


def test_tf_under_xla_matches_numpy():
    import tensorflow as tf

    ref = A.reference_anchors_numpy(32, [0.5, 1, 2], [1.0, 2.0, 4.0])
    f = tf.function(lambda r: A.grid_anchors_tf((4, 7), 16.0, r), jit_compile=True)
    np.testing.assert_allclose(f(tf.constant(ref)).numpy(), A.grid_anchors_numpy((4, 7), 16.0, ref), atol=1e-9)
    g = tf.function(A.reference_anchors_tf, jit_compile=True)
    out = g(256.0, tf.constant([0.5, 1.0, 2.0], tf.float64), tf.constant([0.25, 0.5, 1.0, 2.0], tf.float64))
    np.testing.assert_allclose(out.numpy(), A.reference_anchors_numpy(*WORKED), atol=1e-9)


def test_tf_grid_with_tensor_feature_shape():
    import tensorflow as tf

    ref = np.array([[-4.0, -2.0, 4.0, 2.0], [-1.0, -3.0, 1.0, 3.0]])
    f = tf.function(lambda s, r: A.grid_anchors_tf(s, 8.0, r))
    out = f(tf.constant([3, 2]), tf.constant(ref)).numpy()
    np.testing.assert_allclose(out, A.grid_anchors_numpy((3, 2), 8.0, ref))


@pytest.mark.parametrize("tier", ["loops", "numpy"])
def test_validation_names_the_entry(tier):
    with pytest.raises(ValueError, match="aspect_ratios: entry 1"):
        _ref(tier)(16, [1.0, -2.0], [1.0])
    with pytest.raises(ValueError, match="scales: entry 0"):
        _ref(tier)(16, [1.0], [math.nan])
    with pytest.raises(ValueError, match="base_size"):
        _ref(tier)(0, [1.0], [1.0])
    with pytest.raises(ValueError, match="stride"):
        _grid(tier)((2, 2), -8, np.array([[-1.0, -1, 1, 1]]))
    with pytest.raises(ValueError, match="feature_shape"):
        _grid(tier)((2, -1), 8, np.array([[-1.0, -1, 1, 1]]))
    with pytest.raises(ValueError, match="reference: row 1"):
        _grid(tier)((2, 2), 8, np.array([[-1.0, -1, 1, 1], [1.0, 1, -1, -1]]))
