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


def test_numbers_in_titles_have_significant_digits():
    aligned = np.array([[1.9, 2.9], [6.5, 7.5]], np.float32)       # 1.899999976158142 as a Python float
    assert vis.format_numbers(aligned) == "[[1.9, 2.9], [6.5, 7.5]]"
    assert vis.format_numbers(np.float32(0.1)) == "0.1"
    assert vis.format_numbers(np.array([5.0, 13.0], np.float32)) == "[5, 13]"
    assert vis.format_numbers([np.int64(3), 0.000123456, 12345.6]) == "[3, 0.000123, 1.23e+04]"
    fig = vis.image_grid(np.zeros((2, 8, 8, 3), np.uint8), titles=[np.float32(0.7), "b"])
    assert [ax.get_title() for ax in fig.axes] == ["0.7", "b"]


def _legend_texts(legend):
    return [t.get_text() for t in legend.get_texts()]


def test_draw_detections_has_a_legend_for_ground_truth_and_detections():
    scene = make_scene(3, image_size=64, min_objects=2, max_objects=2, max_size=30)
    scores = np.array([0.9, 0.3], np.float32)
    ax = vis.draw_detections(scene.image, scene.boxes, scene.boxes + 1, classes=scene.classes, scores=scores,
                             class_names=CLASS_NAMES, score_threshold=0.5)
    assert _legend_texts(ax.get_legend()) == ["ground truth", "detections"]
    rects = _rects(ax)
    assert len(rects) == 2 + 1                                  # both objects, the detection above 0.5
    assert rects[0].get_edgecolor()[:3] == (1.0, 1.0, 1.0)      # ground truth in white
    assert [t.get_text() for t in ax.texts] == [f"{CLASS_NAMES[scene.classes[0]]} 0.90"]
    ax = vis.draw_detections(scene.image, scene.boxes, scene.boxes, color="tab:red", label="shifted",
                             gt_label="objects")
    assert _legend_texts(ax.get_legend()) == ["objects", "shifted"]
    ax.figure.canvas.draw()
    assert vis.draw_detections(scene.image, scene.boxes, scene.boxes, legend=False).get_legend() is None


def test_detection_grid_draws_every_scene_and_one_legend():
    scenes = [make_scene(s, image_size=48, min_objects=1, max_objects=2, max_size=24) for s in range(3)]
    dets = [{"boxes": s.boxes, "classes": s.classes, "scores": np.full(len(s.boxes), 0.8, np.float32)}
            for s in scenes]
    fig = vis.detection_grid([s.image for s in scenes], [s.boxes for s in scenes], dets, class_names=CLASS_NAMES,
                             score_threshold=0.5, titles=["a", "b", "c"], ncols=2)
    assert len(fig.legends) == 1
    assert _legend_texts(fig.legends[0]) == ["ground truth", "detections scored >= 0.5"]
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c"]
    assert [len(_rects(ax)) for ax in shown] == [2 * len(s.boxes) for s in scenes]
    fig.canvas.draw()
    with pytest.raises(ValueError, match="as many"):
        vis.detection_grid([scenes[0].image], [scenes[0].boxes], [])
