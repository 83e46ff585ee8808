"""The fixed-grid RoI align and stride-phase transposed convolution kernels beyond the registry's
cases (tests/test_registry.py checks every case, strict, and the TF kernels compiled): the
benchmark-sized inputs (float32, many regions, numpy chunks, loop trips), the adaptive ratio's
fallback, empty and single-region inputs under XLA, and shape-relaxed traces."""

import numpy as np
import pytest

from workshop.exercises import get
from workshop.kernels import roi_align as align
from workshop.kernels import transpose_conv as phases
from workshop.reference import roi
from workshop.reference import transpose_conv as tconv


def _np(value):
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _regions(rng, n, extent):
    size = rng.uniform(0, 0.8 * extent, size=(n, 2))
    corner = rng.uniform(-0.2 * extent, extent, size=(n, 2))
    return np.concatenate([corner, corner + size], axis=1)


# -- RoI align -----------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_roi_align_kernels_on_many_regions(ratio, monkeypatch):
    """More regions than one numpy chunk / one TF loop trip; float32 map as in the benchmark."""
    monkeypatch.setattr(align, "_CHUNK_ENTRIES", 4000)
    rng = np.random.default_rng(ratio)
    fm = rng.normal(size=(11, 14, 3)).astype(np.float32)
    boxes = _regions(rng, 700, 14 * 8)
    want = roi.roi_align_numpy(fm, boxes, (3, 4), 1 / 8, ratio)
    np.testing.assert_allclose(align.roi_align_numpy(fm, boxes, (3, 4), 1 / 8, ratio), want,
                               rtol=0, atol=1e-12)
    got = _np(align.roi_align_tf(fm, boxes, (3, 4), 1 / 8, ratio))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_roi_align_adaptive_ratio_is_the_separable_path():
    rng = np.random.default_rng(3)
    fm = rng.normal(size=(6, 9, 2))
    boxes = _regions(rng, 20, 9 * 4)
    for ratio in (0, -1):
        want = roi.roi_align_numpy(fm, boxes, (2, 3), 0.25, ratio)
        np.testing.assert_allclose(align.roi_align_numpy(fm, boxes, (2, 3), 0.25, ratio), want,
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(_np(align.roi_align_tf(fm, boxes, (2, 3), 0.25, ratio)), want,
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [0, 1, 2, 45])
def test_roi_align_tf_kernel_compiled_with_relaxed_shapes(n):
    """Unknown sizes when traced, at least two loop trips, any number of regions (0 and 1)."""
    import tensorflow as tf

    rng = np.random.default_rng(n)
    fm = rng.normal(size=(7, 5, 3)).astype(np.float32)
    boxes = _regions(rng, n, 5 * 4)
    fn = tf.function(lambda f, b: align.roi_align_tf(f, b, (2, 2), 0.25, 2), jit_compile=True,
                     input_signature=[tf.TensorSpec([None, None, None], tf.float32),
                                      tf.TensorSpec([None, 4], tf.float64)])
    got = fn(fm, boxes).numpy()
    assert got.shape == (n, 2, 2, 3)
    np.testing.assert_allclose(got, roi.roi_align_numpy(fm, boxes, (2, 2), 0.25, 2),
                               rtol=1e-5, atol=1e-5)


def test_roi_align_kernels_on_the_benchmark_agree():
    ex = get("roi_align")
    case = ex.benchmarks()[0]
    want = ex.tier("numpy")(*case.args, **case.kwargs)
    for tier in ("numpy", "tf"):
        assert ex.compare(_np(ex.kernel(tier)(*case.args, **case.kwargs)), want) is None


# -- transposed convolution ----------------------------------------------------------------------
def test_conv_transpose_kernels_on_the_benchmark_agree():
    """The benchmark's float32 inputs: both kernels multiply in float32 (the numpy one returns
    float64), within the exercise's tolerance; float64 inputs: the tier's result to rounding."""
    ex = get("conv2d_transpose")
    case = ex.benchmarks()[0]
    x, kernel = case.args
    want = tconv.conv2d_transpose_numpy(x, kernel, **case.kwargs)
    got = phases.conv2d_transpose_numpy(x, kernel, **case.kwargs)
    assert got.dtype == np.float64 and got.shape == want.shape
    assert ex.compare(got, want) is None
    assert np.abs(got - want).max() > 0                  # float32 arithmetic, not float64
    exact = phases.conv2d_transpose_numpy(x.astype(np.float64), kernel, **case.kwargs)
    np.testing.assert_allclose(exact, want, rtol=1e-12, atol=1e-9)
    got = _np(phases.conv2d_transpose_tf(x, kernel, **case.kwargs))
    assert got.dtype == np.float32
    assert ex.compare(got, want) is None


@pytest.mark.parametrize("strides, padding, output_shape", [
    (2, "SAME", None), (2, "VALID", None), (3, "SAME", (14, 16)), ((2, 3), "VALID", (12, 20)),
    (4, "VALID", None),
])
def test_conv_transpose_kernels_batched_and_wide(strides, padding, output_shape):
    """Sizes the registry's random cases (at most 4x4 inputs, 3 channels) do not reach; a kernel
    of 3 smaller than the stride 4 leaves phases without taps."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 5, 6, 7))
    kernel = rng.normal(size=(3, 3, 4, 7))
    want = tconv.conv2d_transpose_numpy(x, kernel, strides, padding, output_shape)
    for fn in (phases.conv2d_transpose_numpy, phases.conv2d_transpose_tf):
        np.testing.assert_allclose(_np(fn(x, kernel, strides, padding, output_shape)), want,
                                   rtol=1e-10, atol=1e-10)


def test_conv_transpose_tf_kernel_relaxed_trace_falls_back():
    import tensorflow as tf

    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 3, 2)).astype(np.float32)
    kernel = rng.normal(size=(3, 2, 3, 2)).astype(np.float32)
    fn = tf.function(lambda a, k: phases.conv2d_transpose_tf(a, k, 2, "SAME"), jit_compile=True,
                     input_signature=[tf.TensorSpec([None, None, 2], tf.float32),
                                      tf.TensorSpec([None, None, 3, 2], tf.float32)])
    np.testing.assert_allclose(fn(x, kernel).numpy(),
                               tconv.conv2d_transpose_numpy(x, kernel, 2, "SAME"),
                               rtol=1e-5, atol=1e-5)
