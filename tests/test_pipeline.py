"""The tf.data pipeline: augmentation keeps boxes, classes and masks consistent with the image."""

import numpy as np
import pytest
import tensorflow as tf

from workshop.data import make_detection_dataset
from workshop.data.pipeline import (
    augment_example,
    detection_pipeline,
    flip_boxes_horizontally,
    scenes_pipeline,
    tight_boxes_from_masks,
    unpad,
)


def _example(h=40, w=50, rects=((5, 8, 15, 20), (30, 2, 44, 30)), classes=(1, 2)):
    """An image with filled rectangles (xyxy, integer) in distinct colours, boxes, classes, masks."""
    image = np.zeros((h, w, 3), np.uint8)
    masks = np.zeros((len(rects), h, w), bool)
    for k, (x1, y1, x2, y2) in enumerate(rects):
        masks[k, y1:y2, x1:x2] = True
        image[masks[k]] = (60 + 80 * k, 200 - 50 * k, 30 * k + 10)
    return {"image": image, "boxes": np.array(rects, np.float32), "classes": np.array(classes, np.int32),
            "masks": masks, "semantic_mask": (masks * np.array(classes)[:, None, None]).sum(0).astype(np.int32)}


def _np(d):
    return {k: v.numpy() for k, v in d.items()}


def test_flip_boxes_formula():
    out = flip_boxes_horizontally(tf.constant([[1.0, 2.0, 4.0, 5.0], [0.0, 0.0, 10.0, 3.0]]), 10)
    np.testing.assert_array_equal(out.numpy(), [[6, 2, 9, 5], [0, 0, 10, 3]])


def test_flip_maps_boxes_with_the_image():
    ex = _example()
    flipped_seen = kept_seen = 0
    for s in range(12):
        out = _np(augment_example(ex, tf.constant([s, 1]), flip=True, scale_range=(1, 1),
                                  boxes_from_masks=False))
        img = np.round(out["image"] * 255).astype(np.uint8)
        if np.array_equal(img, ex["image"][:, ::-1]):
            flipped_seen += 1
            w = ex["image"].shape[1]
            expected = np.stack([w - ex["boxes"][:, 2], ex["boxes"][:, 1], w - ex["boxes"][:, 0],
                                 ex["boxes"][:, 3]], axis=1)
            np.testing.assert_array_equal(out["boxes"], expected)
            np.testing.assert_array_equal(out["masks"], ex["masks"][:, :, ::-1])
        else:
            np.testing.assert_array_equal(img, ex["image"])
            np.testing.assert_array_equal(out["boxes"], ex["boxes"])
            kept_seen += 1
        # the geometric boxes equal the tight boxes of the transformed masks
        np.testing.assert_array_equal(out["boxes"], tight_boxes_from_masks(out["masks"]).numpy())
        np.testing.assert_array_equal(out["classes"], ex["classes"])
    assert flipped_seen and kept_seen


def _assert_boxes_enclose_masks(boxes, masks, tol=0.0, tight=True):
    for k in range(len(boxes)):
        ys, xs = np.nonzero(masks[k])
        assert xs.size, f"instance {k} has an empty mask"
        x1, y1, x2, y2 = boxes[k]
        assert x1 - tol <= xs.min() and xs.max() + 1 <= x2 + tol, (boxes[k], xs.min(), xs.max())
        assert y1 - tol <= ys.min() and ys.max() + 1 <= y2 + tol, (boxes[k], ys.min(), ys.max())
        if tight:
            np.testing.assert_array_equal(boxes[k], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


@pytest.mark.parametrize("seed", range(6))
def test_boxes_enclose_mask_pixels_after_augmentation(seed):
    ex = _example()
    out = _np(augment_example(ex, tf.constant([seed, 7]), output_size=(32, 48), scale_range=(0.6, 1.6)))
    assert out["image"].shape == (32, 48, 3) and out["masks"].shape[1:] == (32, 48)
    assert len(out["boxes"]) == len(out["classes"]) == len(out["masks"])
    _assert_boxes_enclose_masks(out["boxes"], out["masks"])
    # the semantic mask follows the same geometry as the instance masks
    for k, c in enumerate(out["classes"]):
        assert (out["semantic_mask"][out["masks"][k]] == c).all()
    # geometric transform alone (no recomputation) agrees with the masks up to nearest-neighbour rounding
    geo = _np(augment_example(ex, tf.constant([seed, 7]), output_size=(32, 48), scale_range=(0.6, 1.6),
                              boxes_from_masks=False))
    if len(geo["boxes"]) == len(geo["masks"]):
        _assert_boxes_enclose_masks(geo["boxes"], geo["masks"], tol=1.0, tight=False)


def test_boxes_outside_the_crop_or_tiny_are_dropped_with_their_classes_and_masks():
    # kept: x 5..15; tiny after the crop: x 31..40 -> [31, 32] (1 px wide); gone: x 50..60
    ex = _example(h=40, w=64, rects=((5, 5, 15, 20), (31, 5, 40, 20), (50, 5, 60, 20)), classes=(3, 1, 2))
    for use_masks in (True, False):
        inp = dict(ex) if use_masks else {k: ex[k] for k in ("image", "boxes", "classes")}
        out = _np(augment_example(inp, tf.constant([0, 0]), output_size=(32, 32), flip=False,
                                  scale_range=(1, 1), random_crop=False, min_box_size=2.0))
        np.testing.assert_array_equal(out["classes"], [3])
        np.testing.assert_array_equal(out["boxes"], [[5, 5, 15, 20]])
        if use_masks:
            np.testing.assert_array_equal(out["masks"], ex["masks"][:1, :32, :32])
    # with min_box_size=1 the 1-pixel sliver stays, clipped to the crop
    out = _np(augment_example({k: ex[k] for k in ("image", "boxes", "classes")}, tf.constant([0, 0]),
                              output_size=(32, 32), flip=False, scale_range=(1, 1), random_crop=False,
                              min_box_size=1.0))
    np.testing.assert_array_equal(out["boxes"], [[5, 5, 15, 20], [31, 5, 32, 20]])


def test_tight_boxes_from_masks_handles_empty_masks():
    m = np.zeros((2, 6, 8), bool)
    m[0, 1:3, 2:7] = True
    np.testing.assert_array_equal(tight_boxes_from_masks(m).numpy(), [[2, 1, 7, 3], [0, 0, 0, 0]])


def test_pipeline_is_deterministic_under_a_seed_and_padded():
    ds = make_detection_dataset(12, seed=4, image_size=48, max_size=30)

    def first(seed, **kw):
        return {k: v.numpy() for k, v in next(iter(scenes_pipeline(ds, batch_size=6, seed=seed, **kw))).items()}

    a, b, c = first(1), first(1), first(2)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    assert a["image"].dtype == np.float32 and a["image"].shape == (6, 48, 48, 3)
    assert 0.0 <= a["image"].min() and a["image"].max() <= 1.0
    m = a["boxes"].shape[1]
    assert a["classes"].shape == (6, m) and a["masks"].shape == (6, m, 48, 48)
    assert a["semantic_mask"].shape == (6, 48, 48) and a["num_boxes"].shape == (6,)
    for i, k in enumerate(a["num_boxes"]):
        assert (a["boxes"][i, k:] == -1).all() and (a["classes"][i, k:] == -1).all()
        assert not a["masks"][i, k:].any()
        assert (a["classes"][i, :k] >= 1).all()
        _assert_boxes_enclose_masks(a["boxes"][i, :k], a["masks"][i, :k])
    items = unpad(a)
    assert [len(it["boxes"]) for it in items] == a["num_boxes"].tolist()


def test_pipeline_without_augmentation_keeps_data_and_max_boxes_pads():
    ds = make_detection_dataset(5, seed=8, image_size=40, max_size=30, min_objects=2)
    batch = next(iter(scenes_pipeline(ds, batch_size=5, augment=False, max_boxes=6, seed=0)))
    assert batch["boxes"].shape == (5, 6, 4)
    for i, item in enumerate(unpad({k: v.numpy() for k, v in batch.items()})):
        np.testing.assert_array_equal(item["boxes"], ds.boxes[i].astype(np.float32))
        np.testing.assert_array_equal(item["classes"], ds.classes[i])
        np.testing.assert_array_equal(item["masks"], ds.instance_masks[i])
        np.testing.assert_allclose(item["image"], ds.images[i] / 255.0, atol=1e-6)
    small = next(iter(scenes_pipeline(ds, batch_size=5, augment=False, max_boxes=1, seed=0)))
    assert small["boxes"].shape == (5, 1, 4) and (small["num_boxes"].numpy() == 1).all()


def test_pipeline_boxes_only_and_bad_input():
    images = [np.zeros((20, 30, 3), np.uint8), np.zeros((24, 24, 3), np.uint8)]
    boxes = [np.array([[2.0, 2.0, 12.0, 10.0]]), np.zeros((0, 4))]
    classes = [np.array([1]), np.zeros(0, int)]
    batch = next(iter(detection_pipeline(images, boxes, classes, batch_size=2, seed=3, output_size=(16, 16))))
    assert batch["image"].shape == (2, 16, 16, 3) and "masks" not in batch
    assert batch["num_boxes"].numpy()[1] == 0
    with pytest.raises(ValueError, match="one boxes/classes entry per image"):
        detection_pipeline(images, boxes[:1], classes)
    with pytest.raises(ValueError, match="1 boxes but 2 classes"):
        detection_pipeline(images, boxes, [np.array([1, 2]), classes[1]])
    with pytest.raises(ValueError, match="box 0"):
        detection_pipeline(images, [np.array([[5.0, 2, 1, 10]]), boxes[1]], classes)
    with pytest.raises(ValueError, match="masks should be"):
        detection_pipeline(images, boxes, classes, masks=[np.zeros((1, 5, 5), bool), np.zeros((0, 24, 24), bool)])
    with pytest.raises(ValueError, match="scale_range"):
        augment_example(_example(), tf.constant([0, 0]), scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="seed"):
        augment_example(_example(), tf.constant([0, 0, 1]))
