"""IoU and NMS: agreement with pycocotools and tf.image, OpenCV's documented differences,
validation errors and empty inputs. Runs over thousands of cases are marked slow; each has a
fast twin with fewer cases."""

import numpy as np
import pytest

from workshop.reference import boxes as B
from workshop.reference import industry as I


def _cases_iou(rng, n_cases):
    """Random and edge-heavy box sets: integer grids (shared edges, duplicates, zero areas)
    and continuous boxes."""
    for k in range(n_cases):
        n, m = int(rng.integers(0, 15)), int(rng.integers(0, 15))
        if k % 2:
            def make(c):
                xy = rng.integers(0, 12, (c, 2))
                return np.concatenate([xy, xy + rng.integers(0, 6, (c, 2))], 1).astype(float)
        else:
            def make(c):
                xy = rng.uniform(-50, 50, (c, 2))
                return np.concatenate([xy, xy + rng.uniform(0, 40, (c, 2))], 1)
        yield make(n), make(m)


def _cases_nms(rng, n_cases):
    """Random, heavily tied and degenerate NMS inputs whose IoUs and scores are exact in
    float32 (integer boxes, scores on a 1/8 grid), so float32 tf.image decides like us."""
    for k in range(n_cases):
        n = int(rng.integers(0, 40))
        xy = rng.integers(0, 30, (n, 2))
        wh = rng.integers(0, 15, (n, 2)) if k % 3 else rng.integers(1, 15, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(float)
        if k % 4 == 0:  # duplicates
            boxes = boxes[rng.integers(0, max(n, 1), n)] if n else boxes
        levels = 2 if k % 5 == 0 else 8
        scores = rng.integers(0, levels, n) / 8.0
        thr = float(rng.choice([0.0, 0.25, 0.5, 0.7, 1.0]))
        cap = None if k % 2 else int(rng.integers(0, n + 2))
        sthr = None if k % 3 else float(rng.choice([0.0, 0.25, 0.5]))
        yield boxes, scores, thr, cap, sthr


# -- IoU ----------------------------------------------------------------------------------------
def _check_iou_agreement(n_cases):
    import tensorflow as tf

    rng = np.random.default_rng(11)
    for a, b in _cases_iou(rng, n_cases):
        ref = B.iou_numpy(a, b)
        assert ref.shape == (len(a), len(b)) and ref.dtype == np.float64
        assert not np.isnan(ref).any()
        np.testing.assert_allclose(B.iou_loops(a, b), ref, rtol=0, atol=1e-6)
        np.testing.assert_allclose(I.iou_pycocotools(a, b), ref, rtol=0, atol=1e-6)
        np.testing.assert_allclose(B.iou_tf(tf.constant(a), tf.constant(b)).numpy(), ref, rtol=0, atol=1e-6)


def test_iou_agrees_with_pycocotools_and_tiers():
    _check_iou_agreement(60)


@pytest.mark.slow
def test_iou_agrees_with_pycocotools_and_tiers_many():
    _check_iou_agreement(3000)


def test_iou_pinned_and_edges():
    assert B.iou_numpy([[0, 0, 10, 10]], [[5, 5, 15, 15]])[0, 0] == pytest.approx(1 / 7, abs=1e-12)
    touching = B.iou_numpy([[0, 0, 10, 10]], [[10, 0, 20, 10], [10, 10, 20, 20]])
    np.testing.assert_array_equal(touching, [[0.0, 0.0]])
    zero = B.iou_numpy([[5, 5, 5, 5], [1, 1, 1, 9]], [[5, 5, 5, 5], [1, 1, 1, 9]])
    np.testing.assert_array_equal(zero, np.zeros((2, 2)))


def test_iou_numpy_blocks_match_loops_on_a_big_matrix():
    """Sizes that cross the row-block boundary of the blocked numpy IoU."""
    rng = np.random.default_rng(3)
    a = np.concatenate([rng.uniform(0, 90, (70, 2))] * 2, 1) + [0, 0, 8, 8]
    b = np.concatenate([rng.uniform(0, 90, (600, 2))] * 2, 1) + [0, 0, 9, 7]
    np.testing.assert_allclose(B.iou_numpy(a, b), I.iou_pycocotools(a, b), atol=1e-12)


def test_iou_tf_jit_and_float32():
    import tensorflow as tf

    f = tf.function(B.iou_tf, jit_compile=True)
    a = np.array([[0, 0, 10, 10], [5, 5, 5, 5]], np.float32)
    out = f(tf.constant(a), tf.constant(a))
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), [[1, 0], [0, 0]])


@pytest.mark.parametrize("fn", [B.iou_loops, B.iou_numpy, B.iou_tf, I.iou_pycocotools])
def test_iou_empty(fn):
    assert np.asarray(fn(np.zeros((0, 4)), np.array([[0.0, 0, 1, 1]]))).shape == (0, 1)
    assert np.asarray(fn(np.array([[0.0, 0, 1, 1]]), np.zeros((0, 4)))).shape == (1, 0)


@pytest.mark.parametrize("fn", [B.iou_loops, B.iou_numpy, B.iou_tf])
def test_iou_validation(fn):
    with pytest.raises(ValueError, match="boxes2: row 1"):
        fn(np.array([[0.0, 0, 1, 1]]), np.array([[0.0, 0, 1, 1], [3.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="boxes1: row 0 has a NaN"):
        fn(np.array([[np.nan, 0, 1, 1]]), np.array([[0.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((2, 3)), np.zeros((1, 4)))


# -- NMS: agreement with tf.image.non_max_suppression -------------------------------------------
def _check_nms_agreement(n_cases, with_tf_tier):
    import tensorflow as tf

    rng = np.random.default_rng(12)
    for boxes, scores, thr, cap, sthr in _cases_nms(rng, n_cases):
        want = I.nms_tf_image(boxes, scores, thr, cap, sthr)
        for fn in (B.nms_loops, B.nms_numpy):
            got = fn(boxes, scores, thr, cap, sthr)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want, err_msg=f"{fn.__name__} {boxes} {scores} {thr} {cap} {sthr}")
        if with_tf_tier:
            got = B.nms_tf(tf.constant(boxes), tf.constant(scores), thr, cap, sthr)
            assert got.dtype == tf.int64
            np.testing.assert_array_equal(got.numpy(), want)


def test_nms_matches_tf_image():
    _check_nms_agreement(150, with_tf_tier=True)


@pytest.mark.slow
def test_nms_matches_tf_image_many():
    _check_nms_agreement(1500, with_tf_tier=True)


def test_nms_numpy_large_inputs_match_loops():
    """Sizes large enough for the sweep and the textbook branches of nms_numpy (uniform boxes,
    piled-up boxes, a chain of boxes each suppressing the next) and several TF tiles."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 400, (700, 2))
    uniform = np.concatenate([xy, xy + rng.uniform(5, 60, (700, 2))], 1)
    centers = rng.uniform(0, 400, (10, 2))[rng.integers(0, 10, 700)]
    piled = np.concatenate([centers, centers + 40], 1) + rng.uniform(-4, 4, (700, 4))
    chain = np.array([[i * 4.0, 0, i * 4 + 10, 10] for i in range(300)])
    for boxes, thr in ((uniform, 0.3), (piled, 0.7), (chain, 0.2)):
        scores = rng.permutation(len(boxes)) / len(boxes)
        want = B.nms_loops(boxes, scores, thr)
        np.testing.assert_array_equal(B.nms_numpy(boxes, scores, thr), want)
        np.testing.assert_array_equal(B.nms_tf(tf.constant(boxes), tf.constant(scores), thr).numpy(), want)
        np.testing.assert_array_equal(I.nms_tf_image(boxes, scores, thr), want)


def test_nms_tf_under_tf_function_and_xla():
    import tensorflow as tf

    boxes = tf.constant([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], tf.float64)
    scores = tf.constant([0.5, 0.5, 0.5], tf.float64)
    for jit in (False, True):
        f = tf.function(B.nms_tf, jit_compile=jit)
        np.testing.assert_array_equal(f(boxes, scores, 0.3).numpy(), [0, 2])
        np.testing.assert_array_equal(f(boxes, scores, 0.3, 1).numpy(), [0])
        np.testing.assert_array_equal(f(boxes, scores, tf.constant(0.3, tf.float64)).numpy(), [0, 2])


def test_nms_pinned():
    cases = [
        (([[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8], 0.5), {}, [0, 1]),
        (([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], [0.5, 0.5, 0.5], 0.3), {}, [0, 2]),
        (([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0.9, 0.5, 0.3], 0.5), {"score_threshold": 0.5}, [0]),
        (([[5, 5, 5, 5], [5, 5, 5, 5]], [0.9, 0.8], 0.5), {}, [0, 1]),
    ]
    for (boxes, scores, thr), kw, want in cases:
        b, s = np.array(boxes, float), np.array(scores)
        for fn in (B.nms_loops, B.nms_numpy, I.nms_tf_image):
            np.testing.assert_array_equal(fn(b, s, thr, **kw), want)


def test_minus_inf_scores_are_never_kept_like_tf():
    b = np.array([[0.0, 0, 1, 1], [5.0, 5, 6, 6]])
    s = np.array([0.5, -np.inf])
    for fn in (B.nms_loops, B.nms_numpy, I.nms_tf_image):
        np.testing.assert_array_equal(fn(b, s, 0.5), [0])


# -- NMS: where cv2.dnn.NMSBoxes differs (documented in workshop.reference.boxes) ----------------
def _cv2(boxes, scores, thr, score_threshold=0.0, top_k=0):
    import cv2

    xywh = np.asarray(boxes, float).copy()
    xywh[:, 2:] -= xywh[:, :2]
    return np.asarray(cv2.dnn.NMSBoxes(xywh, np.asarray(scores, np.float32), score_threshold, thr,
                                       1.0, top_k), np.int64).reshape(-1)


def test_cv2_agrees_on_ordinary_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [30, 0, 40, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    np.testing.assert_array_equal(_cv2(boxes, scores, 0.5), B.nms_numpy(boxes, scores, 0.5))


def test_cv2_top_k_caps_candidates_not_output():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [30, 0, 40, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    assert _cv2(boxes, scores, 0.5, top_k=2).tolist() == [0]          # B suppressed, C never seen
    assert B.nms_numpy(boxes, scores, 0.5, max_output_size=2).tolist() == [0, 2]


def test_cv2_zero_area_duplicates_suppress_each_other():
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], float)
    scores = np.array([0.9, 0.8])
    assert _cv2(boxes, scores, 0.5).tolist() == [0]
    assert B.nms_numpy(boxes, scores, 0.5).tolist() == [0, 1]
    assert I.nms_tf_image(boxes, scores, 0.5).tolist() == [0, 1]


def test_cv2_takes_xywh():
    boxes = np.array([[10, 10, 20, 20], [12, 12, 22, 22]], float)  # IoU 64/136 = 0.47
    scores = np.array([0.9, 0.8])
    assert B.nms_numpy(boxes, scores, 0.4).tolist() == [0]
    import cv2

    # xyxy passed as if it were xywh: the boxes grow to 20x20 and 22x22 (IoU 324/560 = 0.58),
    # so at threshold 0.5 box 1 is wrongly suppressed; converted to xywh it is kept (IoU 0.47)
    assert np.asarray(cv2.dnn.NMSBoxes(boxes, scores.astype(np.float32), 0.0, 0.5)).reshape(-1).tolist() == [0]
    assert _cv2(boxes, scores, 0.5).tolist() == [0, 1]


# -- class-aware NMS ----------------------------------------------------------------------------
def test_batched_nms_tiers_agree():
    import tensorflow as tf

    rng = np.random.default_rng(13)
    for boxes, scores, thr, cap, sthr in _cases_nms(rng, 80):
        classes = rng.integers(0, 3, len(scores))
        want = B.batched_nms_loops(boxes, scores, classes, thr, cap, sthr)
        np.testing.assert_array_equal(B.batched_nms_numpy(boxes, scores, classes, thr, cap, sthr), want)
        np.testing.assert_array_equal(
            B.batched_nms_tf(tf.constant(boxes), tf.constant(scores), tf.constant(classes), thr, cap, sthr).numpy(), want)
        np.testing.assert_array_equal(I.batched_nms_tf_image(boxes, scores, classes, thr, cap, sthr), want)


def test_batched_nms_one_class_is_nms():
    rng = np.random.default_rng(14)
    for boxes, scores, thr, cap, sthr in _cases_nms(rng, 30):
        np.testing.assert_array_equal(
            B.batched_nms_numpy(boxes, scores, np.zeros(len(scores), int), thr, cap, sthr),
            B.nms_numpy(boxes, scores, thr, cap, sthr))


# -- validation and empty input -----------------------------------------------------------------
NMS_FNS = [B.nms_loops, B.nms_numpy, B.nms_tf]


@pytest.mark.parametrize("fn", NMS_FNS)
def test_nms_validation(fn):
    good = np.array([[0.0, 0, 1, 1], [0.0, 0, 2, 2]])
    with pytest.raises(ValueError, match="row 1"):
        fn(np.array([[0.0, 0, 1, 1], [0.0, 5, 2, 2]]), np.array([0.5, 0.4]), 0.5)
    with pytest.raises(ValueError, match="one score per box"):
        fn(good, np.array([0.5]), 0.5)
    with pytest.raises(ValueError, match="entry 1 is NaN"):
        fn(good, np.array([0.5, np.nan]), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        fn(good, np.array([0.5, 0.4]), 1.5)
    with pytest.raises(ValueError, match="max_output_size"):
        fn(good, np.array([0.5, 0.4]), 0.5, -1)


@pytest.mark.parametrize("fn", [B.batched_nms_loops, B.batched_nms_numpy, B.batched_nms_tf])
def test_batched_nms_validation_and_empty(fn):
    good = np.array([[0.0, 0, 1, 1], [0.0, 0, 2, 2]])
    with pytest.raises(ValueError, match="classes"):
        fn(good, np.array([0.5, 0.4]), np.array([0, 1, 2]), 0.5)
    with pytest.raises(ValueError, match="entry 1"):
        fn(good, np.array([0.5, 0.4]), np.array([0.0, 1.5]), 0.5)
    out = np.asarray(fn(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5))
    assert out.shape == (0,) and out.dtype == np.int64


@pytest.mark.parametrize("fn", NMS_FNS + [I.nms_opencv, I.nms_tf_image])
def test_nms_empty(fn):
    out = np.asarray(fn(np.zeros((0, 4)), np.zeros(0), 0.5))
    assert out.shape == (0,) and out.dtype == np.int64
    out = np.asarray(fn(np.array([[0.0, 0, 1, 1]]), np.array([0.3]), 0.5, None, 0.3))
    assert out.shape == (0,)


@pytest.mark.parametrize("thr", [0.3, 0.45, 0.5, 0.7, 0.9])
def test_nms_kernel_pair_test_agrees_with_the_textbook_iou_at_the_threshold(thr):
    """The NMS kernel tests candidate pairs with a cheap product before the exact division; on
    pairs whose IoU lies within a few float steps of the threshold (where ``iou > thr`` and
    ``inter > thr * union`` can disagree by rounding) it must decide as the textbook IoU does."""
    from workshop.kernels import boxes as K

    rng = np.random.default_rng(7)
    for wide in rng.uniform(1.0, 1e4, 200):
        # boxes sharing an edge: IoU = narrow / wide, narrow within a few float steps of thr * wide
        narrow = thr * wide + np.arange(-3, 4) * np.spacing(thr * wide)
        boxes = np.zeros((1 + narrow.size, 4))
        boxes[:, 3] = 1.0
        boxes[0, 2] = wide
        boxes[1:, 2] = narrow
        textbook = B.pairwise_iou(boxes[:1], boxes[1:])[0] > thr
        cols, area = K._columns(boxes)
        pairs = np.arange(1, boxes.shape[0])
        kernel = K._pairs_over(cols, area, np.zeros_like(pairs), pairs, thr)
        np.testing.assert_array_equal(kernel, textbook, err_msg=f"wide {wide!r}, narrow {narrow!r}")
