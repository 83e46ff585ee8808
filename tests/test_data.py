"""Synthetic scenes, the classification set and the demonstration photos (numpy only)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workshop.data import (
    CLASS_NAMES,
    NUM_CLASSES,
    box_anchor_pairs,
    clustered_boxes,
    distinct_scores,
    load_photos,
    make_classification_set,
    make_detection_dataset,
    make_scene,
    random_boxes,
    synthetic,
)
from workshop.data import photos as photos_mod

ROOT = Path(__file__).resolve().parents[1]


def _assert_scene_consistent(scene, shape=(128, 128)):
    h, w = shape
    n = len(scene.classes)
    assert scene.image.shape == (h, w, 3) and scene.image.dtype == np.uint8
    assert scene.boxes.shape == (n, 4) and scene.boxes.dtype == np.float64
    assert scene.classes.dtype == np.int64 and scene.classes.shape == (n,)
    assert scene.instance_masks.shape == (n, h, w) and scene.instance_masks.dtype == bool
    assert scene.semantic_mask.shape == (h, w) and np.issubdtype(scene.semantic_mask.dtype, np.integer)
    assert ((scene.classes >= 1) & (scene.classes <= NUM_CLASSES)).all()
    # visible masks are disjoint and non-empty
    assert (scene.instance_masks.sum(axis=0) <= 1).all()
    assert (scene.instance_masks.reshape(n, -1).sum(axis=1) > 0).all()
    # boxes are tight around the visible pixels, continuous coordinates (no +1)
    for k in range(n):
        ys, xs = np.nonzero(scene.instance_masks[k])
        np.testing.assert_array_equal(scene.boxes[k], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    # the semantic mask is the class of the visible object, 0 elsewhere
    expected = np.zeros((h, w), np.int64)
    for k in range(n):
        expected[scene.instance_masks[k]] = scene.classes[k]
    np.testing.assert_array_equal(scene.semantic_mask, expected)


def test_class_names():
    assert CLASS_NAMES[0] == "background"
    assert len(CLASS_NAMES) == NUM_CLASSES + 1 and 3 <= NUM_CLASSES <= 6
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES)


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
def test_scene_is_consistent(seed):
    _assert_scene_consistent(make_scene(seed))


def test_scene_non_square_and_options():
    scene = make_scene(3, image_size=(64, 96), min_objects=3, max_objects=3, min_size=12, max_size=30)
    _assert_scene_consistent(scene, (64, 96))
    only = make_detection_dataset(10, 2, image_size=64, max_size=40, classes=[2])
    assert all((c == 2).all() for c in only.classes)


def test_same_seed_same_arrays_and_different_seed_differs():
    a, b, c = make_scene(42), make_scene(42), make_scene(43)
    for field in ("image", "boxes", "classes", "instance_masks", "semantic_mask"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.image, c.image)


def test_dataset_scene_i_depends_on_seed_and_index_only():
    big = make_detection_dataset(6, seed=5, image_size=64, max_size=40)
    small = make_detection_dataset(3, seed=5, image_size=64, max_size=40)
    assert big.images.shape == (6, 64, 64, 3) and big.semantic_masks.shape == (6, 64, 64)
    assert len(big) == 6 and len(big.boxes) == len(big.classes) == len(big.instance_masks) == 6
    np.testing.assert_array_equal(big.images[:3], small.images)
    one = make_scene((5, 4), image_size=64, max_size=40)
    np.testing.assert_array_equal(big.images[4], one.image)
    np.testing.assert_array_equal(big.boxes[4], one.boxes)
    _assert_scene_consistent(big[2], (64, 64))
    assert not np.array_equal(big.images[0], big.images[1])


def test_dataset_statistics_are_learnable():
    ds = make_detection_dataset(60, seed=11)
    counts = np.bincount(np.concatenate(ds.classes), minlength=NUM_CLASSES + 1)
    assert counts[0] == 0 and (counts[1:] >= 5).all(), counts      # every class appears
    sides = np.concatenate([b[:, 2:] - b[:, :2] for b in ds.boxes])
    assert sides.max() <= 64 * 1.5                                   # max_size (rotated)
    assert np.median(sides.max(axis=1)) >= 16                        # objects not tiny
    n_objects = [len(c) for c in ds.classes]
    assert min(n_objects) >= 1 and max(n_objects) <= 4 and len(set(n_objects)) > 1
    fg = ds.semantic_masks > 0                                      # objects cover a sane share
    assert 0.03 < fg.mean() < 0.6


def test_no_occlusion_keeps_objects_whole():
    for seed in range(5):
        scene = make_scene(seed, min_objects=4, max_objects=4, max_occlusion=0.0)
        sides = scene.boxes[:, 2:] - scene.boxes[:, :2]
        assert (sides.max(axis=1) >= 16 / 1.5 - 1).all(), sides


def test_occlusion_is_partial_not_total():
    # with occlusion allowed, every object drawn keeps some pixels and some scenes do overlap
    overlapped = 0
    for seed in range(20):
        scene = make_scene(seed, min_objects=4, max_objects=4, max_occlusion=0.5)
        _assert_scene_consistent(scene)
        boxes = scene.boxes
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                ix = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
                iy = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
                overlapped += ix > 0 and iy > 0
    assert overlapped > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"rng_or_seed": -1}, "seed"),
    ({"rng_or_seed": "a"}, "seed"),
    ({"rng_or_seed": 0, "image_size": 4}, "image_size"),
    ({"rng_or_seed": 0, "image_size": (10, 20, 30)}, "image_size"),
    ({"rng_or_seed": 0, "image_size": 64, "max_size": 64}, "max_size"),
    ({"rng_or_seed": 0, "min_size": 30, "max_size": 20}, "min_size"),
    ({"rng_or_seed": 0, "classes": [0]}, "classes"),
    ({"rng_or_seed": 0, "classes": [NUM_CLASSES + 1]}, "classes"),
    ({"rng_or_seed": 0, "max_occlusion": 1.0}, "max_occlusion"),
    ({"rng_or_seed": 0, "min_objects": 3, "max_objects": 2}, "min_objects"),
])
def test_scene_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_scene(**kwargs)


def test_dataset_bad_input():
    with pytest.raises(ValueError, match="n"):
        make_detection_dataset(-1)
    with pytest.raises(ValueError, match="seed"):
        make_detection_dataset(2, seed=-3)


def test_generator_accepts_numpy_generator():
    a = make_scene(np.random.default_rng(9))
    b = make_scene(np.random.default_rng(9))
    np.testing.assert_array_equal(a.image, b.image)


# ----------------------------------------------------------------------------- classification


@pytest.mark.parametrize("task", ["source", "target", "shapes"])
def test_classification_set(task):
    cs = make_classification_set(task, n=25, seed=1, size=32)
    assert cs.images.shape == (25, 32, 32, 3) and cs.images.dtype == np.uint8
    assert cs.labels.dtype == np.int64 and cs.labels.shape == (25,)
    assert len(cs.class_names) == 5
    np.testing.assert_array_equal(np.bincount(cs.labels, minlength=5), [5] * 5)   # balanced
    again = make_classification_set(task, n=25, seed=1, size=32)
    np.testing.assert_array_equal(cs.images, again.images)
    np.testing.assert_array_equal(cs.labels, again.labels)
    other = make_classification_set(task, n=25, seed=2, size=32)
    assert not np.array_equal(cs.images, other.images)
    # the object is visible: images are not flat
    assert (cs.images.reshape(25, -1).std(axis=1) > 5).all()


def test_source_and_target_have_different_classes():
    src = make_classification_set("source", 10, 0)
    tgt = make_classification_set("target", 10, 0)
    assert set(src.class_names).isdisjoint(tgt.class_names)
    assert src.class_names == tuple("01234") and tgt.class_names == tuple("56789")
    big = make_classification_set("source", 10, 0, size=64)
    assert big.images.shape == (10, 64, 64, 3)


def test_train_and_test_digits_are_disjoint():
    for digit in range(10):
        train = set(synthetic._digit_pool(digit, "train").tolist())
        test = set(synthetic._digit_pool(digit, "test").tolist())
        assert train and test and train.isdisjoint(test)
    a = make_classification_set("target", 10, 0, split="train")
    b = make_classification_set("target", 10, 0, split="test")
    assert not np.array_equal(a.images, b.images)


@pytest.mark.parametrize("kwargs", [{"task": "digits"}, {"n": -1}, {"size": 8},
                                    {"split": "val"}, {"seed": -1}])
def test_classification_bad_input(kwargs):
    with pytest.raises(ValueError):
        make_classification_set(**kwargs)


# ----------------------------------------------------------------------------- photos


def test_photos_load_with_boxes_inside_images():
    photos = load_photos()
    assert [p.name for p in photos] == list(photos_mod.PHOTO_NAMES)
    assert 3 <= len(photos) <= 5
    for p in photos:
        h, w = p.image.shape[:2]
        assert p.image.dtype == np.uint8 and p.image.shape[2] == 3
        assert p.boxes.shape == (len(p.classes), 4) and len(p.boxes) >= 1
        assert (p.boxes[:, 0] >= 0).all() and (p.boxes[:, 2] <= w).all()
        assert (p.boxes[:, 1] >= 0).all() and (p.boxes[:, 3] <= h).all()
        assert (p.boxes[:, 2] > p.boxes[:, 0]).all() and (p.boxes[:, 3] > p.boxes[:, 1]).all()
        assert p.class_names[0] == "background" and all(p.labels)
    assert load_photos(["coffee"])[0].name == "coffee"
    with pytest.raises(ValueError, match="unknown photo"):
        load_photos(["lena"])


def test_photo_files_are_small_and_documented():
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    files = sorted((ROOT / "data" / "photos").glob("*.jpg"))
    assert len(files) == len(photos_mod.PHOTO_NAMES)
    for f in files:
        assert f.stat().st_size < 60_000, f
        assert f.name in readme, f"{f.name} is not described in data/README.md"
    assert "licen" in readme.lower()


def test_importing_data_does_not_import_tensorflow():
    code = ("import sys, workshop.data; workshop.data.make_scene(0); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
            "assert 'sklearn' not in sys.modules, 'sklearn imported'")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_random_boxes_are_valid_xyxy_and_seeded():
    rng = np.random.default_rng(0)
    pairs = box_anchor_pairs(rng, 50)
    for boxes in (random_boxes(rng, 50), clustered_boxes(rng, 50, 5, extent=800.0), *pairs):
        assert boxes.shape == (50, 4) and boxes.dtype == np.float64
        assert np.all(boxes[:, 2:] >= boxes[:, :2])
    assert clustered_boxes(rng, 0, 3).shape == (0, 4)
    scores = distinct_scores(rng, 1000)
    assert len(np.unique(scores.astype(np.float32))) == 1000 and 0 < scores.min() and scores.max() < 1
    np.testing.assert_array_equal(random_boxes(np.random.default_rng(1), 5),
                                  random_boxes(np.random.default_rng(1), 5))
