"""workshop.conventions: box formats, conversions against tf.image, validation messages."""

import numpy as np
import pytest

from workshop.conventions import (
    BOX_FORMATS,
    as_boxes,
    as_scores,
    box_area,
    clip_boxes,
    convert_boxes,
)

XYXY = np.array([[0.0, 0.0, 10.0, 10.0], [2.5, 4.0, 7.5, 20.0], [5.0, 5.0, 5.0, 5.0]])


def _random_xyxy(rng, n=50):
    xy = rng.uniform(0, 300, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(0, 80, (n, 2))], axis=1)


def test_known_conversions():
    np.testing.assert_array_equal(convert_boxes(XYXY[:2], "xyxy", "xywh"),
                                  [[0, 0, 10, 10], [2.5, 4, 5, 16]])
    np.testing.assert_array_equal(convert_boxes(XYXY[:2], "xyxy", "cxcywh"),
                                  [[5, 5, 10, 10], [5, 12, 5, 16]])
    np.testing.assert_array_equal(convert_boxes(XYXY[:2], "xyxy", "yxyx"),
                                  [[0, 0, 10, 10], [4, 2.5, 20, 7.5]])
    np.testing.assert_allclose(convert_boxes(XYXY[:2], "xyxy", "yxyx", image_shape=(20, 10), normalized=True),
                               [[0, 0, 0.5, 1.0], [0.2, 0.25, 1.0, 0.75]])


@pytest.mark.parametrize("fmt", BOX_FORMATS)
@pytest.mark.parametrize("normalized", [False, True])
def test_round_trips(fmt, normalized):
    if normalized and fmt != "yxyx":
        pytest.raises(ValueError, convert_boxes, XYXY, "xyxy", fmt, (100, 200), True)
        return
    rng = np.random.default_rng(0)
    boxes = _random_xyxy(rng)
    shape = (480, 640) if normalized else None
    there = convert_boxes(boxes, "xyxy", fmt, image_shape=shape, normalized=normalized)
    back = convert_boxes(there, fmt, "xyxy", image_shape=shape, normalized=normalized)
    np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-9)
    assert back.dtype == np.float64 and back.shape == boxes.shape


def test_every_pair_of_formats_commutes():
    rng = np.random.default_rng(1)
    boxes = _random_xyxy(rng, 20)
    for a in BOX_FORMATS:
        for b in BOX_FORMATS:
            direct = convert_boxes(convert_boxes(boxes, "xyxy", a), a, b)
            np.testing.assert_allclose(direct, convert_boxes(boxes, "xyxy", b), atol=1e-9)


def test_normalized_yxyx_matches_tf_image_crop():
    """tf.image.crop_and_resize reads normalized (y1, x1, y2, x2) boxes: cropping an image whose
    pixel (r, c) holds c + 1000 r with our converted box returns the expected corners."""
    import tensorflow as tf

    h, w = 40, 60
    image = (np.arange(w)[None, :] + 1000.0 * np.arange(h)[:, None]).astype(np.float32)
    xyxy = np.array([[10.0, 5.0, 40.0, 25.0]])
    yxyx = convert_boxes(xyxy, "xyxy", "yxyx", image_shape=(h, w), normalized=True)
    # with crop size 2, crop_and_resize samples y1*(h-1) and y2*(h-1) (align-corners sampling)
    crop = tf.image.crop_and_resize(image[None, :, :, None], yxyx.astype(np.float32), [0], [2, 2])
    got = crop.numpy()[0, :, :, 0]
    ys, xs = yxyx[0, [0, 2]] * (h - 1), yxyx[0, [1, 3]] * (w - 1)
    np.testing.assert_allclose(got, xs[None, :] + 1000.0 * ys[:, None], rtol=1e-5)


def test_yxyx_matches_tf_image_nms_order():
    """tf.image.non_max_suppression takes yxyx: our converted boxes give the same IoU there."""
    import tensorflow as tf

    boxes = np.array([[0.0, 0.0, 20.0, 10.0], [0.0, 0.0, 10.0, 20.0]])  # IoU 1/3 in any order
    boxes2 = np.array([[0.0, 0.0, 20.0, 10.0], [5.0, 0.0, 25.0, 10.0]])  # IoU 0.6
    for b, kept_at_half in ((boxes, [0, 1]), (boxes2, [0])):
        yxyx = convert_boxes(b, "xyxy", "yxyx").astype(np.float32)
        got = tf.image.non_max_suppression(yxyx, [0.9, 0.8], 10, 0.5).numpy()
        np.testing.assert_array_equal(got, kept_at_half)


def test_box_area_no_plus_one():
    np.testing.assert_array_equal(box_area(XYXY), [100.0, 80.0, 0.0])
    assert box_area(np.zeros((0, 4))).shape == (0,)


def test_as_boxes_errors_name_the_row():
    with pytest.raises(ValueError, match="row 1"):
        as_boxes([[0, 0, 1, 1], [5, 0, 4, 1]])
    with pytest.raises(ValueError, match="row 2 has a NaN"):
        as_boxes([[0, 0, 1, 1], [0, 0, 1, 1], [0, np.nan, 1, 1]])
    with pytest.raises(ValueError, match=r"\[box\]"):
        as_boxes([0, 0, 1, 1])
    with pytest.raises(ValueError, match="shape"):
        as_boxes(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="boxes2: row 0"):
        as_boxes([[0, 0, 1, np.inf]], name="boxes2")
    with pytest.raises(ValueError, match="row 0"):
        convert_boxes([[0, 0, -1, 2]], "xywh", "xyxy")


def test_as_boxes_empty_and_copy():
    assert as_boxes([]).shape == (0, 4)
    assert as_boxes(np.zeros((0, 4))).shape == (0, 4)
    src = np.array([[0.0, 0, 1, 1]])
    out = as_boxes(src)
    out[0, 0] = 9
    assert src[0, 0] == 0


def test_as_scores():
    assert as_scores([0.1, 0.2], 2).dtype == np.float64
    with pytest.raises(ValueError, match="entry 1 is NaN"):
        as_scores([0.1, np.nan], 2)
    with pytest.raises(ValueError, match="one score per box"):
        as_scores([0.1, 0.2, 0.3], 2)


def test_clip_boxes():
    np.testing.assert_array_equal(clip_boxes([[-5, -5, 50, 50]], (20, 30)), [[0, 0, 30, 20]])
