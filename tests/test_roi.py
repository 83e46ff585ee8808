"""RoI pooling / RoI align specifics: pinned values in every tier, the
crop_and_resize equivalence (interior regions only), XLA compilation, the static sample window of
the adaptive ratio, errors and empty inputs. (tests/test_registry.py runs the declared cases.)"""

import numpy as np
import pytest

from workshop.exercises import get
from workshop.exercises import roi as chapter
from workshop.reference import roi

TIERS = ("loops", "numpy", "tf")
POOL = {t: getattr(roi, f"roi_pool_{t}") for t in TIERS}
ALIGN = {t: getattr(roi, f"roi_align_{t}") for t in TIERS}


def grid4():
    return (4 * np.arange(4)[:, None] + np.arange(4)[None]).astype(np.float32)[..., None]


def as_np(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


# -- pinned values (4x4 grid, worked by hand) ----------------------------------------------------
POOL_PINS = [
    ([0, 0, 3, 3], 1.0, [[5, 7], [13, 15]]),
    ([0, 0, 2, 2], 1.0, [[5, 6], [9, 10]]),
    ([0, 0, 40, 40], 1 / 16, [[5, 7], [13, 15]]),
    ([2, 2, 6, 6], 1.0, [[15, 0], [0, 0]]),
]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("box, scale, want", POOL_PINS)
def test_roi_pool_pinned(tier, box, scale, want):
    out = as_np(POOL[tier](grid4(), np.array([box], float), (2, 2), scale))
    assert out.shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(out[0, ..., 0], np.array(want, float))


@pytest.mark.parametrize("tier", TIERS)
def test_roi_align_pinned(tier):
    out = as_np(ALIGN[tier](grid4(), np.array([[0, 0, 4, 4]], float), (2, 2), 1.0, -1))
    np.testing.assert_allclose(out[0, ..., 0], [[2.5, 4.5], [10.5, 12.5]], atol=1e-6)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("box, ratio, want", [
    ([-2, -2, 2, 2], 2, 0.625),   # samples at -1.5 (< -1: zero) and 0.5 per axis -> 2.5 / 4
    ([1, -1, 3, 1], 2, 1.5),      # y sample at exactly -1 is kept and reads row 0
    ([0, 3, 2, 5], 2, 12.5),      # y sample at exactly H = 4 is kept and reads row 3
    ([1, 1, 1, 1], 0, 0.0),       # zero size, adaptive: no samples, divided by max(0, 1)
    ([1, 1, 1, 1], 2, 2.5),       # zero size, ratio 2: all samples at (0.5, 0.5)
])
def test_roi_align_border_rule(tier, box, ratio, want):
    """torchvision's bilinear_interpolate: 0 outside [-1, H], clamp inside; reasoned by hand."""
    out = as_np(ALIGN[tier](grid4(), np.array([box], float), (1, 1), 1.0, ratio))
    np.testing.assert_allclose(out.ravel(), [want], atol=1e-6)


def test_c_round_is_half_away_from_zero():
    values = np.array([2.5, -2.5, 0.5, -0.5, 1.5, 1.4999, -1.4999, 3.0])
    np.testing.assert_array_equal(roi.c_round(values), [3, -3, 1, -1, 2, 1, -1, 3])
    assert not np.array_equal(roi.c_round(values), np.round(values))   # np.round: half to even


@pytest.mark.parametrize("tier", TIERS)
def test_roi_pool_rounds_negative_half_away_from_zero(tier):
    # [-1, -1, 3, 3] * 0.5 = [-0.5, -0.5, 1.5, 1.5] -> C round [-1, -1, 2, 2] (np.round: [0, 0, 2, 2])
    fm = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    out = as_np(POOL[tier](fm, np.array([[-1, -1, 3, 3]], float), (1, 4), 0.5))[0, 0, :, 0]
    # region x in [-1, 2]: width 4, one column per bin; column -1 is clipped away -> empty -> 0
    np.testing.assert_array_equal(out, [0, 8, 9, 10])


# -- the independent (switchable) implementation, all switches off, agrees with the reference --
def test_mistake_module_base_matches_reference_on_large_regions():
    """The adaptive ratio with regions much larger than the map (g >> H + 4): the numpy and TF
    tiers enumerate a window of H + 4 sample slots; the chapter's full enumeration checks them."""
    rng = np.random.default_rng(5)
    import tensorflow as tf

    fn = tf.function(roi.roi_align_tf, jit_compile=True)
    for _ in range(6):
        h, w, c = (int(v) for v in rng.integers(1, 7, 3))
        fm = rng.normal(size=(h, w, c))
        x1, y1 = rng.uniform(-60, 0, 2)
        x2, y2 = rng.uniform(5, 70, 2)
        rois = np.array([[x1, y1, x2, y2], [x1 / 3, y1, x2 / 3, y2 / 5]])
        size = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        want = chapter._align(fm, rois, size, 1.0, -1)
        np.testing.assert_allclose(roi.roi_align_numpy(fm, rois, size, 1.0, -1), want, atol=1e-9)
        np.testing.assert_allclose(fn(tf.constant(fm), tf.constant(rois), size, 1.0, -1).numpy(),
                                   want, atol=1e-9)


def test_loops_agree_on_a_large_region():
    fm = np.random.default_rng(2).normal(size=(3, 4, 2))
    rois = np.array([[-40.0, -30.0, 50.0, 45.0]])          # g_y = 38, g_x = 45 > H + 4, W + 4
    np.testing.assert_allclose(roi.roi_align_numpy(fm, rois, (2, 2), 1.0, 0),
                               roi.roi_align_loops(fm, rois, (2, 2), 1.0, 0), atol=1e-9)


# -- crop_and_resize: equivalent inside the map, not at the border ------------------------------
def _interior_rois(rng, n, h, w, scale):
    """Regions whose shifted extent [x1*s - 0.5, x2*s - 0.5] lies in [0, W-1]: every sample inside."""
    y1 = rng.uniform(0.5, h - 0.5, n)
    y2 = y1 + rng.uniform(0, 1, n) * (h - 0.5 - y1)
    x1 = rng.uniform(0.5, w - 0.5, n)
    x2 = x1 + rng.uniform(0, 1, n) * (w - 0.5 - x1)
    return np.stack([x1, y1, x2, y2], axis=1) / scale


@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_crop_and_resize_equals_roi_align_for_interior_regions(ratio):
    rng = np.random.default_rng(ratio)
    for h, w, size, scale in [(6, 9, (2, 3), 0.5), (11, 5, (3, 3), 0.25), (7, 7, (1, 2), 1.0)]:
        fm = rng.normal(size=(h, w, 3)).astype(np.float32)
        rois = _interior_rois(rng, 8, h, w, scale)
        got = roi.roi_align_crop_and_resize(fm, rois, size, scale, ratio).numpy()
        want = roi.roi_align_numpy(fm, rois, size, scale, ratio)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_crop_and_resize_differs_at_the_border():
    """At the border crop_and_resize extrapolates 0 where RoI align clamps: not equivalent there."""
    fm = grid4()
    rois = np.array([[1, -1, 3, 1]], float)                 # a y sample at -1 (RoI align: row 0)
    got = roi.roi_align_crop_and_resize(fm, rois, (1, 1), 1.0, 2).numpy()
    want = roi.roi_align_numpy(fm, rois, (1, 1), 1.0, 2)
    assert abs(got.item() - want.item()) > 0.1


def test_crop_and_resize_needs_h_minus_1():
    """Normalising by H instead of H - 1 is the declared mistake: it changes interior results."""
    rng = np.random.default_rng(0)
    fm = rng.normal(size=(6, 9, 2)).astype(np.float32)
    rois = _interior_rois(rng, 4, 6, 9, 1.0)
    right = roi.roi_align_crop_and_resize(fm, rois, (2, 2), 1.0, 2).numpy()
    wrong = chapter._align_crop_by_size(fm, rois, (2, 2), 1.0, 2)
    assert np.abs(right - wrong).max() > 1e-3


def test_crop_and_resize_pool_baseline_shape():
    case = get("roi_align").benchmarks()[0]
    fm, rois = case.args
    assert fm.shape == (50, 50, 256) and rois.shape == (300, 4)
    out = roi.crop_and_resize_pool_baseline(fm[:8, :8, :4], rois[:5] / 6, **case.kwargs)
    assert tuple(out.shape) == (5, 7, 7, 4)


# -- XLA -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [-1, 2])
def test_roi_align_tf_compiles_with_xla(ratio):
    import tensorflow as tf

    rng = np.random.default_rng(7)
    fm = rng.normal(size=(5, 8, 3)).astype(np.float32)
    rois = np.array([[-3.0, 1.0, 20.0, 9.0], [4.0, 2.0, 9.0, 30.0]])
    fn = tf.function(roi.roi_align_tf, jit_compile=True)
    hlo = fn.experimental_get_compiler_ir(tf.constant(fm), tf.constant(rois), (2, 3), 0.5, ratio)(stage="hlo")
    assert "HloModule" in hlo
    out = fn(tf.constant(fm), tf.constant(rois), (2, 3), 0.5, ratio)
    assert out.dtype == tf.float32 and tuple(out.shape) == (2, 2, 3, 3)
    np.testing.assert_allclose(out.numpy(), roi.roi_align_numpy(fm, rois, (2, 3), 0.5, ratio), atol=1e-5)


def test_roi_pool_tf_compiles_with_xla():
    import tensorflow as tf

    rng = np.random.default_rng(8)
    fm = rng.normal(size=(5, 8, 2)).astype(np.float32)
    rois = np.array([[-3.0, 1.0, 20.0, 9.0], [4.0, 2.0, 9.0, 30.0], [30, 30, 40, 40]])
    fn = tf.function(roi.roi_pool_tf, jit_compile=True)
    assert "HloModule" in fn.experimental_get_compiler_ir(tf.constant(fm), tf.constant(rois), (3, 2), 0.5)(stage="hlo")
    out = fn(tf.constant(fm), tf.constant(rois), (3, 2), 0.5)
    np.testing.assert_array_equal(out.numpy(), roi.roi_pool_numpy(fm, rois, (3, 2), 0.5))


def test_tf_tiers_accept_a_tensor_scale_and_keep_float64():
    import tensorflow as tf

    fm = np.random.default_rng(9).normal(size=(4, 6, 2))
    rois = np.array([[1.0, 2.0, 9.0, 7.0]])
    scale = tf.constant(0.5, tf.float64)
    out = roi.roi_align_tf(tf.constant(fm), tf.constant(rois), (2, 2), scale, 2)
    assert out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), roi.roi_align_numpy(fm, rois, (2, 2), 0.5, 2), atol=1e-12)
    pooled = roi.roi_pool_tf(tf.constant(fm), tf.constant(rois), 2, scale)
    np.testing.assert_array_equal(pooled.numpy(), roi.roi_pool_numpy(fm, rois, 2, 0.5))


# -- empty inputs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("op", ["pool", "align"])
def test_empty_inputs(tier, op):
    fn = (POOL if op == "pool" else ALIGN)[tier]
    fm = np.ones((4, 5, 3), np.float32)
    out = as_np(fn(fm, np.zeros((0, 4)), (2, 3), 0.5))
    assert out.shape == (0, 2, 3, 3)
    out = as_np(fn(np.ones((4, 5, 0), np.float32), np.array([[0.0, 0, 4, 4]]), (2, 3), 1.0))
    assert out.shape == (1, 2, 3, 0)
    out = as_np(fn(np.ones((0, 5, 2), np.float32), np.array([[0.0, 0, 4, 4]]), 2, 1.0))
    assert out.shape == (1, 2, 2, 2) and not out.any()


@pytest.mark.parametrize("tier", TIERS)
def test_int_output_size_means_square(tier):
    fm = np.random.default_rng(1).normal(size=(4, 4, 1))
    rois = np.array([[0.0, 0.0, 4.0, 3.0]])
    np.testing.assert_allclose(as_np(ALIGN[tier](fm, rois, 3, 1.0)), as_np(ALIGN[tier](fm, rois, (3, 3), 1.0)))


# -- errors ----------------------------------------------------------------------------------------
BAD = [
    ("rois", dict(rois=np.array([[0, 0, 2, 2], [3, 0, 1, 2]], float)), "row 1"),
    ("rois", dict(rois=np.array([[0, 0, 2, 2], [0, 0, np.nan, 2]], float)), "row 1"),
    ("rois", dict(rois=np.array([0, 0, 2, 2], float)), "rois"),
    ("rois", dict(rois=np.zeros((2, 5))), "rois"),
    ("feature_map", dict(feature_map=np.zeros((4, 4))), "feature_map"),
    ("output_size", dict(output_size=(0, 2)), "output_size"),
    ("output_size", dict(output_size=(2, 2, 2)), "output_size"),
    ("spatial_scale", dict(spatial_scale=0.0), "spatial_scale"),
    ("spatial_scale", dict(spatial_scale=-0.5), "spatial_scale"),
]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("op", ["pool", "align"])
@pytest.mark.parametrize("what, change, words", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_raises_value_error(tier, op, what, change, words):
    fn = (POOL if op == "pool" else ALIGN)[tier]
    kwargs = dict(feature_map=grid4(), rois=np.array([[0.0, 0, 2, 2]]), output_size=(2, 2), spatial_scale=1.0)
    kwargs.update(change)
    with pytest.raises(ValueError, match=words):
        fn(**kwargs)


@pytest.mark.parametrize("tier", TIERS)
def test_bad_sampling_ratio(tier):
    with pytest.raises(ValueError, match="sampling_ratio"):
        ALIGN[tier](grid4(), np.array([[0.0, 0, 2, 2]]), (2, 2), 1.0, sampling_ratio=1.5)


@pytest.mark.parametrize("op", ["pool", "align"])
def test_tf_tiers_compile_with_unknown_shapes(op):
    """A shape-relaxed trace (H, W, C, R unknown when tracing; as reduce_retracing produces):
    roi_pool_tf takes its masked fallback, roi_align_tf sizes its sample window from tf.shape."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None, None], tf.float32), tf.TensorSpec([None, 4], tf.float64)]
    if op == "pool":
        fn = tf.function(lambda f, r: roi.roi_pool_tf(f, r, (2, 3), 0.5), input_signature=spec, jit_compile=True)
        ref = lambda f, r: roi.roi_pool_numpy(f, r, (2, 3), 0.5)   # noqa: E731
    else:
        fn = tf.function(lambda f, r: roi.roi_align_tf(f, r, (2, 3), 0.5, -1), input_signature=spec, jit_compile=True)
        ref = lambda f, r: roi.roi_align_numpy(f, r, (2, 3), 0.5, -1)   # noqa: E731
    rng = np.random.default_rng(11)
    for h, w, c in [(5, 8, 2), (3, 3, 1)]:
        fm = rng.normal(size=(h, w, c)).astype(np.float32)
        rois = np.array([[-3.0, 1.0, 20.0, 9.0], [4.0, 2.0, 9.0, 30.0], [1.0, 1.0, 3.0, 2.0]])
        np.testing.assert_allclose(fn(tf.constant(fm), tf.constant(rois)).numpy(), ref(fm, rois), atol=1e-5)
