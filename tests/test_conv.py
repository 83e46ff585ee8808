"""conv2d and max_pool2d: every tier against tf.nn.conv2d / tf.nn.max_pool2d on many geometries,
the pinned hand-computed values and the errors (their speed: make bench); and
max_pool2d_backward against TensorFlow's own gradient (tf.GradientTape), its tie rule included."""


import numpy as np
import pytest
import tensorflow as tf

from workshop.reference import conv as C

TIERS = {"loops": C.conv2d_loops, "numpy": C.conv2d_numpy,
         "tf": lambda x, k, stride=1, padding="VALID": C.conv2d_tf(
             tf.constant(x), tf.constant(k), stride, padding).numpy()}
POOLS = {"loops": C.max_pool2d_loops, "numpy": C.max_pool2d_numpy,
         "tf": lambda x, p=2: C.max_pool2d_tf(tf.constant(x), p).numpy()}

GEOMETRIES = [  # (H, W, C_in), (kh, kw, C_out), stride, padding
    ((5, 5, 1), (3, 3, 1), 1, "VALID"),
    ((5, 5, 1), (3, 3, 1), 1, "SAME"),
    ((6, 7, 3), (3, 2, 4), 2, "SAME"),
    ((6, 7, 3), (3, 2, 4), (2, 3), "VALID"),
    ((4, 4, 2), (2, 2, 2), 2, "SAME"),       # even kernel: the extra padding goes bottom/right
    ((7, 4, 2), (4, 1, 3), 3, "SAME"),       # stride > kernel on one axis
    ((1, 1, 3), (3, 3, 2), 1, "SAME"),       # 1x1 input, the kernel mostly over padding
    ((3, 8, 2), (3, 8, 1), 1, "VALID"),      # kernel as large as the image
    ((9, 9, 1), (1, 1, 5), 4, "VALID"),
    ((8, 5, 2), (4, 4, 2), (3, 1), "SAME"),
]


@pytest.mark.parametrize("tier", list(TIERS))
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[f"{g[0]}-{g[1]}-s{g[2]}-{g[3]}" for g in GEOMETRIES])
def test_conv2d_matches_tf_nn_conv2d(tier, geometry):
    (h, w, c_in), (kh, kw, c_out), stride, padding = geometry
    rng = np.random.default_rng(hash(geometry) % 2**32)
    x, k = rng.normal(size=(h, w, c_in)), rng.normal(size=(kh, kw, c_in, c_out))
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    expected = tf.nn.conv2d(x[None], k, strides=[1, sh, sw, 1], padding=padding)[0].numpy()
    got = np.asarray(TIERS[tier](x, k, stride, padding))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("tier", list(TIERS))
def test_conv2d_random_geometries_match_tf(tier):
    rng = np.random.default_rng(5)
    for _ in range(25 if tier == "loops" else 100):
        h, w = rng.integers(1, 10, 2)
        padding = str(rng.choice(["VALID", "SAME"]))
        kh = int(rng.integers(1, (h if padding == "VALID" else 5) + 1))
        kw = int(rng.integers(1, (w if padding == "VALID" else 5) + 1))
        c_in, c_out = rng.integers(1, 4, 2)
        stride = tuple(int(s) for s in rng.integers(1, 5, 2))
        x, k = rng.normal(size=(h, w, c_in)), rng.normal(size=(kh, kw, c_in, c_out))
        expected = tf.nn.conv2d(x[None], k, [1, *stride, 1], padding)[0].numpy()
        np.testing.assert_allclose(TIERS[tier](x, k, stride, padding), expected, atol=1e-10)


def test_conv2d_is_cross_correlation_not_convolution():
    """The kernel is not flipped: a gradient kernel [-1, 1] gives x[j + 1] - x[j]."""
    x = np.array([[0.0, 1.0, 3.0, 6.0]])[:, :, None]
    k = np.array([[-1.0, 1.0]])[:, :, None, None]
    for fn in TIERS.values():
        np.testing.assert_array_equal(np.asarray(fn(x, k)).ravel(), [1.0, 2.0, 3.0])


def test_conv2d_same_padding_split_is_tfs():
    """One row of zeros is added at the bottom (P = 1: P // 2 = 0 before, 1 after)."""
    x = np.arange(1.0, 5.0).reshape(4, 1, 1)
    k = np.array([[1.0], [10.0]])[:, :, None, None]
    for fn in TIERS.values():
        np.testing.assert_array_equal(np.asarray(fn(x, k, 1, "SAME")).ravel(), [21.0, 32.0, 43.0, 4.0])


def test_conv2d_output_size():
    assert C.conv2d_output_size(7, 3, 2, "VALID") == (3, 0, 0)
    assert C.conv2d_output_size(7, 3, 2, "SAME") == (4, 1, 1)
    assert C.conv2d_output_size(4, 2, 1, "same") == (4, 0, 1)
    assert C.conv2d_output_size(7, 2, 3, "SAME") == (3, 0, 1)
    assert C.conv2d_output_size(7, 1, 3, "SAME") == (3, 0, 0)


@pytest.mark.parametrize("bad, match", [
    (dict(x=np.zeros((4, 4)), kernel=np.zeros((3, 3, 1, 1))), "x: expected shape"),
    (dict(x=np.zeros((4, 4, 2)), kernel=np.zeros((3, 3, 1, 1))), "C_in = 2"),
    (dict(x=np.zeros((4, 4, 1)), kernel=np.zeros((3, 3, 1))), "kernel: expected shape"),
    (dict(x=np.zeros((2, 4, 1)), kernel=np.zeros((3, 3, 1, 1))), "fit"),
    (dict(x=np.zeros((4, 4, 1)), kernel=np.zeros((3, 3, 1, 1)), stride=0), "stride"),
    (dict(x=np.zeros((4, 4, 1)), kernel=np.zeros((3, 3, 1, 1)), padding="FULL"), "padding"),
])
@pytest.mark.parametrize("fn", [C.conv2d_loops, C.conv2d_numpy, C.conv2d_tf], ids=["loops", "numpy", "tf"])
def test_conv2d_errors(fn, bad, match):
    with pytest.raises(ValueError, match=match):
        fn(**bad)


def test_conv2d_tf_keeps_float32_and_compiles():
    x = tf.random.normal((6, 5, 3))
    k = tf.random.normal((3, 3, 3, 2))
    f = tf.function(C.conv2d_tf, jit_compile=True)
    out = f(x, k, stride=2, padding="SAME")
    assert out.dtype == tf.float32 and out.shape == (3, 3, 2)
    np.testing.assert_allclose(out.numpy(), C.conv2d_numpy(x.numpy(), k.numpy(), 2, "SAME"), atol=1e-5)


def test_conv2d_matches_a_keras_conv2d_layer():
    """The layouts are Keras': a Conv2D layer's kernel plugs straight in."""
    import keras

    layer = keras.layers.Conv2D(4, (3, 2), strides=2, padding="same", use_bias=False)
    x = np.random.default_rng(0).normal(size=(1, 7, 6, 3)).astype(np.float32)
    y = layer(x).numpy()[0]
    kernel = layer.get_weights()[0]
    np.testing.assert_allclose(C.conv2d_numpy(x[0], kernel, 2, "SAME"), y, atol=1e-5)


# -- max pooling -------------------------------------------------------------------------------
@pytest.mark.parametrize("tier", list(POOLS))
@pytest.mark.parametrize("shape, p", [((4, 4, 1), 2), ((5, 7, 3), 2), ((9, 6, 2), 3), ((3, 3, 1), 1),
                                      ((2, 3, 4), 2), ((8, 8, 2), 4)])
def test_max_pool2d_matches_tf(tier, shape, p):
    x = np.random.default_rng(sum(shape) + p).normal(size=shape)
    expected = tf.nn.max_pool2d(tf.constant(x[None]), p, p, "VALID")[0].numpy()
    np.testing.assert_array_equal(np.asarray(POOLS[tier](x, p)), expected)


def test_max_pool2d_all_negative_and_errors():
    x = -np.arange(1.0, 17.0).reshape(4, 4, 1)
    for fn in POOLS.values():
        np.testing.assert_array_equal(np.asarray(fn(x, 2)).ravel(), [-1.0, -3.0, -9.0, -11.0])
    for fn in (C.max_pool2d_loops, C.max_pool2d_numpy, C.max_pool2d_tf):
        with pytest.raises(ValueError, match="does not fit"):
            fn(np.zeros((1, 4, 1)), 2)
        with pytest.raises(ValueError, match="pool_size"):
            fn(np.zeros((4, 4, 1)), 0)
        with pytest.raises(ValueError, match="x: expected"):
            fn(np.zeros((4, 4)), 2)


# -- max pooling, backward -------------------------------------------------------------------
POOL_BACKWARDS = {"loops": C.max_pool2d_backward_loops, "numpy": C.max_pool2d_backward_numpy,
                  "tf": lambda x, g, p=2: C.max_pool2d_backward_tf(tf.constant(x), tf.constant(g), p).numpy()}


def _tf_pool_gradient(x, grad_out, p, jit=False):
    """TensorFlow's own dL/dx for L = sum(max_pool2d(x) * grad_out), by tf.GradientTape."""
    def gradient(x, g):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.max_pool2d(x[None], p, p, "VALID")[0] * g)
        return tape.gradient(loss, x)
    if jit:
        gradient = tf.function(gradient, jit_compile=True)
    return gradient(tf.constant(x), tf.constant(grad_out)).numpy()


def _pool_problem(seed, shape, p, ties):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=shape).astype(np.float64) if ties else rng.normal(size=shape)
    return x, rng.normal(size=(shape[0] // p, shape[1] // p, shape[2]))


POOL_SHAPES = [((4, 4, 1), 2), ((5, 7, 3), 2), ((9, 6, 2), 3), ((3, 3, 1), 1), ((2, 3, 4), 2),
               ((8, 8, 2), 4), ((7, 5, 1), 3)]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("tier", list(POOL_BACKWARDS))
@pytest.mark.parametrize("shape, p", POOL_SHAPES)
def test_max_pool2d_backward_matches_tf_gradient_tape(tier, shape, p, ties):
    """Every tier is TensorFlow's gradient of tf.nn.max_pool2d, ties and dropped border too."""
    x, g = _pool_problem(sum(shape) * 7 + p, shape, p, ties)
    expected = _tf_pool_gradient(x, g, p)
    np.testing.assert_array_equal(np.asarray(POOL_BACKWARDS[tier](x, g, p)), expected)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tensorflow_sends_a_tie_to_the_first_maximum_row_by_row(dtype, jit):
    """The rule the exercise states is TensorFlow's own on CPU: in [[1, 7], [7, 7]] the gradient
    goes to (0, 1), the first maximum reading row by row (not (1, 0), the first column by
    column, nor (1, 1), the last); a flat window sends it to its top-left element."""
    x = np.array([[1, 7, 5, 5], [7, 7, 5, 5]], dtype)[:, :, None]
    g = np.array([[3, 5]], dtype)[:, :, None]
    expected = np.array([[0, 3, 5, 0], [0, 0, 0, 0]], dtype)[:, :, None]
    np.testing.assert_array_equal(_tf_pool_gradient(x, g, 2, jit=jit), expected)
    for fn in POOL_BACKWARDS.values():
        np.testing.assert_array_equal(np.asarray(fn(x, g, 2)), expected)


def test_max_pool2d_backward_random_problems_match_tf():
    rng = np.random.default_rng(8)
    for _ in range(40):
        p = int(rng.integers(1, 4))
        shape = (int(rng.integers(p, 10)), int(rng.integers(p, 10)), int(rng.integers(1, 4)))
        x, g = _pool_problem(int(rng.integers(1 << 30)), shape, p, ties=bool(rng.random() < 0.5))
        expected = _tf_pool_gradient(x, g, p)
        for fn in POOL_BACKWARDS.values():
            np.testing.assert_array_equal(np.asarray(fn(x, g, p)), expected)


def test_max_pool2d_backward_tf_keeps_float32_and_compiles():
    x, g = _pool_problem(3, (7, 9, 3), 3, ties=True)
    x, g = tf.constant(x, tf.float32), tf.constant(g, tf.float32)
    out = tf.function(C.max_pool2d_backward_tf, jit_compile=True)(x, g, pool_size=3)
    assert out.dtype == tf.float32 and out.shape == (7, 9, 3)
    np.testing.assert_array_equal(out.numpy(), _tf_pool_gradient(x.numpy(), g.numpy(), 3, jit=True))


def test_max_pool2d_backward_is_the_forward_pass_derivative():
    """A centred difference of L = sum(max_pool2d(x) * g) agrees away from ties (no kinks)."""
    x, g = _pool_problem(4, (5, 6, 2), 2, ties=False)
    loss = lambda v: float(np.sum(C.max_pool2d_numpy(v, 2) * g))  # noqa: E731
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = 1e-6
        numeric[idx] = (loss(x + e) - loss(x - e)) / 2e-6
    np.testing.assert_allclose(C.max_pool2d_backward_numpy(x, g, 2), numeric, atol=1e-6)


@pytest.mark.parametrize("fn", [C.max_pool2d_backward_loops, C.max_pool2d_backward_numpy,
                                C.max_pool2d_backward_tf], ids=["loops", "numpy", "tf"])
def test_max_pool2d_backward_errors(fn):
    with pytest.raises(ValueError, match=r"grad_out: expected shape .*\(2, 2, 1\)"):
        fn(np.zeros((5, 4, 1)), np.zeros((2, 3, 1)), 2)
    with pytest.raises(ValueError, match="does not fit"):
        fn(np.zeros((1, 4, 1)), np.zeros((0, 2, 1)), 2)
    with pytest.raises(ValueError, match="pool_size"):
        fn(np.zeros((4, 4, 1)), np.zeros((4, 4, 1)), 0)
