"""Drawing helpers: they draw what they are given and run headless (Agg)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from workshop import vis
from workshop.data import CLASS_NAMES, make_scene


def _rects(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_draw_boxes_places_rectangles_and_labels():
    scene = make_scene(1, image_size=64, max_size=40, min_objects=2, max_objects=2)
    scores = np.linspace(0.9, 0.5, len(scene.boxes))
    ax = vis.draw_boxes(scene.image, scene.boxes, scene.classes, scores, class_names=CLASS_NAMES)
    rects = _rects(ax)
    assert len(rects) == len(scene.boxes)
    for r, b in zip(rects, scene.boxes):
        assert r.get_xy() == pytest.approx((b[0], b[1]))
        assert r.get_width() == pytest.approx(b[2] - b[0]) and r.get_height() == pytest.approx(b[3] - b[1])
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == f"{CLASS_NAMES[scene.classes[0]]} 0.90"
    # image drawn with pixel-border extent so xyxy edges fall on pixel borders
    assert ax.images[0].get_extent() == [0, 64, 64, 0]
    ax.figure.canvas.draw()                                      # renders under Agg


def test_draw_boxes_threshold_formats_and_errors():
    img = np.zeros((20, 30, 3), np.uint8)
    ax = vis.draw_boxes(img, [[1, 2, 5, 6], [3, 3, 9, 9]], scores=[0.2, 0.8], score_threshold=0.5)
    assert len(_rects(ax)) == 1 and ax.texts[0].get_text() == "0.80"
    ax = vis.draw_boxes(img, [[1, 2, 4, 4]], fmt="xywh")
    assert _rects(ax)[0].get_width() == 4
    with pytest.raises(ValueError, match="row 0"):
        vis.draw_boxes(img, [[5, 2, 1, 6]])
    with pytest.raises(ValueError, match="classes"):
        vis.draw_boxes(img, [[1, 2, 5, 6]], classes=[1, 2])
    with pytest.raises(ValueError, match="image"):
        vis.draw_boxes(np.zeros((4, 4, 5)), [[1, 2, 3, 4]])


def test_draw_anchors_subsamples_and_marks_centres():
    ys, xs = np.meshgrid(np.arange(4) * 8 + 4.0, np.arange(4) * 8 + 4.0, indexing="ij")
    ctr = np.stack([xs.ravel(), ys.ravel()], 1)
    anchors = np.concatenate([np.concatenate([ctr - s / 2, ctr + s / 2], 1) for s in (8, 16)])
    ax = vis.draw_anchors(anchors, image_shape=(32, 32), max_anchors=10)
    assert len(_rects(ax)) == 10
    assert len(ax.lines[0].get_xdata()) == len(anchors)
    ax = vis.draw_anchors(anchors, image=np.zeros((32, 32, 3)), centers=False)
    assert len(_rects(ax)) == len(anchors) and not ax.lines
    with pytest.raises(ValueError, match="image_shape"):
        vis.draw_anchors(anchors)


def test_overlay_masks_colours_only_mask_pixels():
    scene = make_scene(2, image_size=48, max_size=30)
    ax = vis.overlay_masks(scene.image, scene.instance_masks, classes=scene.classes, boxes=scene.boxes)
    overlay = ax.images[1].get_array()
    alpha = np.asarray(overlay)[..., 3]
    np.testing.assert_array_equal(alpha > 0, scene.instance_masks.any(axis=0))
    assert len(_rects(ax)) == len(scene.boxes)
    ax = vis.overlay_masks(scene.image, scene.semantic_mask, alpha=0.3)
    alpha = np.asarray(ax.images[1].get_array())[..., 3]
    np.testing.assert_array_equal(alpha > 0, scene.semantic_mask > 0)
    with pytest.raises(ValueError, match="semantic mask"):
        vis.overlay_masks(scene.image, np.zeros((5, 5), int))
    with pytest.raises(ValueError, match="alpha"):
        vis.overlay_masks(scene.image, scene.semantic_mask, alpha=2)


def test_image_grid():
    images = np.zeros((5, 8, 8, 3), np.uint8)
    fig = vis.image_grid(images, titles=list("abcde"), ncols=3)
    axes = fig.axes
    assert len(axes) == 6
    assert [ax.get_title() for ax in axes[:5]] == list("abcde")
    assert not axes[5].axison
    fig.canvas.draw()
    with pytest.raises(ValueError, match="titles"):
        vis.image_grid(images, titles=["a"])
    with pytest.raises(ValueError, match="at least one"):
        vis.image_grid([])
