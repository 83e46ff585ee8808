"""Transposed convolution: the three tiers against tf.nn.conv2d_transpose and Keras'
Conv2DTranspose, TensorFlow's accepted output sizes, the lecture's example and its matrix view;
the FCN's bilinear kernel against bilinear interpolation (tf.image.resize's half-pixel centres)."""

import numpy as np
import pytest

from workshop.reference.transpose_conv import (
    bilinear_kernel_loops,
    bilinear_kernel_numpy,
    conv2d_transpose_builtin,
    conv2d_transpose_loops,
    conv2d_transpose_numpy,
    conv2d_transpose_output_size,
    conv2d_transpose_tf,
    conv_matrix,
)

TIERS = [conv2d_transpose_loops, conv2d_transpose_numpy, conv2d_transpose_tf]
TIER_IDS = ["loops", "numpy", "tf"]
LECTURE_X = np.array([[2.0, 1.0], [4.0, 4.0]])
LECTURE_K = np.array([[1.0, 4.0, 1.0], [1.0, 4.0, 3.0], [3.0, 3.0, 1.0]])
LECTURE_OUT = np.array([[2, 9, 6, 1], [6, 29, 30, 7], [10, 29, 33, 13], [12, 24, 16, 4]], float)
# the lecture's U^T, column by column (Dumoulin & Visin's figure)
LECTURE_UT = np.array([[1, 0, 0, 0], [4, 1, 0, 0], [1, 4, 0, 0], [0, 1, 0, 0],
                       [1, 0, 1, 0], [4, 1, 4, 1], [3, 4, 1, 4], [0, 3, 0, 1],
                       [3, 0, 1, 0], [3, 3, 4, 1], [1, 3, 3, 4], [0, 1, 0, 3],
                       [0, 0, 3, 0], [0, 0, 3, 3], [0, 0, 1, 3], [0, 0, 0, 1]], float)


def _np(value):
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


# geometry: (H, W, kh, kw, sh, sw)
GEOMETRIES = [(3, 3, 3, 3, 2, 2), (2, 4, 3, 2, 3, 1), (4, 3, 1, 1, 3, 2), (1, 2, 4, 3, 2, 3), (3, 2, 2, 4, 1, 2)]


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_accepted_output_sizes_are_tensorflows(geometry, padding):
    """conv2d_transpose_output_size gives exactly the sizes tf.nn.conv2d_transpose accepts."""
    import tensorflow as tf

    h, _, kh, _, sh, _ = geometry
    lo, hi, default = conv2d_transpose_output_size(h, kh, sh, padding)
    x = np.ones((1, h, 1, 1))
    k = np.ones((kh, 1, 1, 1))
    accepted = []
    for n in range(1, (h + 2) * sh + kh):
        try:
            tf.nn.conv2d_transpose(x, k, (1, n, 1, 1), (sh, 1), padding)
            accepted.append(n)
        except (tf.errors.InvalidArgumentError, ValueError):
            pass
    assert accepted == list(range(lo, hi + 1))
    assert lo <= default <= hi


@pytest.mark.parametrize("tier", TIERS, ids=TIER_IDS)
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_every_accepted_size_equals_tf_nn(tier, geometry, padding):
    """Every explicit output size TF accepts (both extremes and between), and the default."""
    import tensorflow as tf

    h, w, kh, kw, sh, sw = geometry
    rng = np.random.default_rng(sum(geometry))
    x = rng.normal(size=(2, h, w, 3))
    kernel = rng.normal(size=(kh, kw, 2, 3))
    lo_h, hi_h, _ = conv2d_transpose_output_size(h, kh, sh, padding)
    lo_w, hi_w, _ = conv2d_transpose_output_size(w, kw, sw, padding)
    sizes = [(a, b) for a in range(lo_h, hi_h + 1) for b in (lo_w, hi_w)]
    for out_h, out_w in sizes:
        want = tf.nn.conv2d_transpose(x, kernel, (2, out_h, out_w, 2), (sh, sw), padding).numpy()
        got = _np(tier(x, kernel, (sh, sw), padding, (out_h, out_w)))
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"output_shape {(out_h, out_w)}")
    got = _np(tier(x[0], kernel, (sh, sw), padding))  # unbatched, default size
    assert got.shape[:2] == (conv2d_transpose_output_size(h, kh, sh, padding)[2],
                             conv2d_transpose_output_size(w, kw, sw, padding)[2])
    want = _np(conv2d_transpose_builtin(x[:1], kernel, (sh, sw), padding))[0]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tier", TIERS, ids=TIER_IDS)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kernel_size, strides, output_padding",
                         [((3, 3), (2, 2), None), ((3, 1), (2, 3), None), ((2, 4), (2, 2), None),
                          ((3, 3), (2, 2), (1, 0)), ((1, 3), (3, 2), (2, 1)), ((3, 5), (1, 3), (0, 2))])
def test_equals_keras_conv2d_transpose(tier, padding, kernel_size, strides, output_padding):
    """Keras' layer (no bias) with its default size, and with output_padding choosing a size."""
    import keras

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 4, 3))
    layer = keras.layers.Conv2DTranspose(2, kernel_size, strides=strides, padding=padding,
                                         output_padding=output_padding, use_bias=False, dtype="float64")
    want = np.asarray(layer(x))
    kernel = np.asarray(layer.get_weights()[0])
    assert kernel.shape == kernel_size + (2, 3)  # Keras' kernel is (kh, kw, C_out, C_in) too
    out_shape = None if output_padding is None else want.shape[1:3]
    got = _np(tier(x, kernel, strides, padding, out_shape))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tier", TIERS, ids=TIER_IDS)
def test_lecture_example(tier):
    out = _np(tier(LECTURE_X[:, :, None], LECTURE_K[:, :, None, None], 1, "VALID"))
    assert out.shape == (4, 4, 1)
    np.testing.assert_allclose(out[:, :, 0], LECTURE_OUT, atol=1e-9)


def test_conv_matrix_is_the_lectures_and_its_transpose_upsamples():
    c = conv_matrix(LECTURE_K, (4, 4))
    assert c.shape == (4, 16)
    np.testing.assert_array_equal(c.T, LECTURE_UT)
    np.testing.assert_allclose((c.T @ LECTURE_X.ravel()).reshape(4, 4), LECTURE_OUT)


@pytest.mark.parametrize("input_shape, kernel_shape, strides", [((5, 6), (3, 2), 1), ((7, 6), (3, 3), 2),
                                                                 ((6, 7), (2, 3), (3, 2))])
def test_conv_matrix_matches_conv2d_and_its_transpose(input_shape, kernel_shape, strides):
    """C @ vec(image) is conv2d VALID; C.T @ vec(y) is conv2d_transpose back to the input size."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    k = rng.normal(size=kernel_shape)
    img = rng.normal(size=input_shape)
    c = conv_matrix(k, input_shape, strides)
    conv = tf.nn.conv2d(img[None, :, :, None], k[:, :, None, None], strides, "VALID").numpy()[0, :, :, 0]
    np.testing.assert_allclose(c @ img.ravel(), conv.ravel(), atol=1e-9)
    y = rng.normal(size=conv.shape)
    back = conv2d_transpose_numpy(y[:, :, None], k[:, :, None, None], strides, "VALID", input_shape)[:, :, 0]
    np.testing.assert_allclose(c.T @ y.ravel(), back.ravel(), atol=1e-9)


@pytest.mark.parametrize("tier", TIERS, ids=TIER_IDS)
@pytest.mark.parametrize("kwargs, match", [
    ({"output_shape": (9, 7)}, "expected 7..8"),               # VALID 3x3 -> 7..8
    ({"output_shape": (7, 6)}, "expected 7..8"),
    ({"padding": "SAME", "output_shape": (4, 6)}, "expected 5..6"),
    ({"padding": "full"}, "VALID' or 'SAME"),
    ({"strides": 0}, "positive"),
    ({"strides": (1, 2, 3)}, "pair"),
    ({"output_shape": (1, 7, 7, 2)}, "C_out"),                 # unbatched x: 4 numbers is wrong
])
def test_bad_arguments_raise(tier, kwargs, match):
    x = np.ones((3, 3, 2))
    kernel = np.ones((3, 3, 2, 2))
    args = {"strides": 2, "padding": "VALID", **kwargs}
    with pytest.raises(ValueError, match=match):
        tier(x, kernel, **args)


@pytest.mark.parametrize("tier", TIERS, ids=TIER_IDS)
def test_kernel_channel_order_is_checked(tier):
    with pytest.raises(ValueError, match="C_in = 2"):
        tier(np.ones((3, 3, 2)), np.ones((3, 3, 2, 5)), 1, "VALID")
    with pytest.raises(ValueError, match=r"\(H, W, C_in\)"):
        tier(np.ones((3, 3)), np.ones((3, 3, 1, 1)), 1, "VALID")


def test_tf_tier_is_not_the_builtin():
    """The TF tier builds the op from conv2d; it must not call conv2d_transpose/backprop-input."""
    import tensorflow as tf

    fn = tf.function(lambda x, k: conv2d_transpose_tf(x, k, 2, "SAME"))
    graph = fn.get_concrete_function(tf.TensorSpec((1, 4, 4, 2), tf.float32),
                                     tf.TensorSpec((3, 3, 2, 2), tf.float32)).graph
    ops = {op.type for op in graph.get_operations()}
    assert "Conv2D" in ops
    assert not ops & {"Conv2DBackpropInput", "Conv2DBackpropInputV2"}


# -- the FCN's bilinear kernel -------------------------------------------------------------------
BILINEAR = [bilinear_kernel_loops, bilinear_kernel_numpy]
BILINEAR_IDS = ["loops", "numpy"]


def _fcn_upsample_filt(size):
    """The FCN reference implementation's formula (surgery.upsample_filt), for one channel."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@pytest.mark.parametrize("tier", BILINEAR, ids=BILINEAR_IDS)
@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8])
def test_bilinear_kernel_is_the_fcns(tier, factor):
    """k = 2f - f % 2 taps, the FCN's weights on the diagonal channel pairs, zeros elsewhere."""
    kernel = tier(factor, 3)
    size = 2 * factor - factor % 2
    assert kernel.shape == (size, size, 3, 3) and kernel.dtype == np.float64
    for o in range(3):
        for c in range(3):
            want = _fcn_upsample_filt(size) if o == c else np.zeros((size, size))
            np.testing.assert_allclose(kernel[:, :, o, c], want, atol=1e-12)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8])
def test_bilinear_kernel_weights_reaching_each_output_pixel_sum_to_one(factor):
    """The taps (a + m*f, b + n*f) reach the same output pixel: they sum to 1, the kernel to f**2."""
    kernel = bilinear_kernel_numpy(factor, 1)[:, :, 0, 0]
    for a in range(factor):
        for b in range(factor):
            assert kernel[a::factor, b::factor].sum() == pytest.approx(1.0)
    assert kernel.sum() == pytest.approx(factor ** 2)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8])
def test_bilinear_kernel_upsamples_like_tf_image_resize_inside(factor):
    """SAME, stride f: bilinear interpolation with half-pixel centres (tf.image.resize's) away
    from the f // 2 border rows and columns (zeros beyond the image there, not the edge pixel);
    align_corners' interpolation it is not."""
    import tensorflow as tf

    rng = np.random.default_rng(factor)
    h, w, c = 6, 5, 2
    x = rng.normal(size=(1, h, w, c))
    up = tf.nn.conv2d_transpose(x, bilinear_kernel_numpy(factor, c), (1, h * factor, w * factor, c),
                                factor, "SAME").numpy()
    resized = tf.image.resize(x, (h * factor, w * factor), "bilinear").numpy()
    border = factor // 2
    inside = (slice(None), slice(border, h * factor - border), slice(border, w * factor - border))
    np.testing.assert_allclose(up[inside], resized[inside], atol=1e-5)
    if factor > 1:
        assert np.abs(up - resized).max() > 0.01              # the border differs
        corners = tf.compat.v1.image.resize_bilinear(x, (h * factor, w * factor), align_corners=True)
        assert np.abs(up[inside] - corners.numpy()[inside]).max() > 0.01


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bilinear_kernel_in_keras_and_with_explicit_padding(factor):
    """Keras' Conv2DTranspose(padding="same") loaded with it is the same upsampling, and so is
    the explicit-padding form with p = f // 2, output_padding 0: out = (H-1)*f - 2p + k = H*f."""
    import keras

    rng = np.random.default_rng(10 + factor)
    x = rng.normal(size=(1, 4, 5, 3))
    kernel = bilinear_kernel_numpy(factor, 3)
    layer = keras.layers.Conv2DTranspose(3, kernel.shape[0], strides=factor, padding="same",
                                         use_bias=False, dtype="float64")
    layer.build(x.shape)
    layer.set_weights([kernel])
    same = conv2d_transpose_numpy(x, kernel, factor, "SAME")
    np.testing.assert_allclose(np.asarray(layer(x)), same, atol=1e-9)
    p = factor // 2
    full = conv2d_transpose_numpy(x, kernel, factor, "VALID")
    assert full.shape[1] - 2 * p == 4 * factor
    np.testing.assert_allclose(full[:, p:p + 4 * factor, p:p + 5 * factor], same, atol=1e-12)


@pytest.mark.parametrize("tier", BILINEAR, ids=BILINEAR_IDS)
@pytest.mark.parametrize("args", [(0, 1), (2, 0), (2.0, 1), (True, 1), (2, "3")])
def test_bilinear_kernel_bad_arguments_raise(tier, args):
    with pytest.raises(ValueError, match="positive int"):
        tier(*args)
