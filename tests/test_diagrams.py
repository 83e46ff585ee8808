"""workshop.diagrams: each figure names its stages with the course's own numbers (a change of
configuration changes the text), touches neither the network nor pyplot's figure list, and the
notebooks show it before the code it illustrates."""

import socket
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from workshop import diagrams  # noqa: E402
from workshop.models.detector import DetectorConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def has(fig, fragment: str) -> bool:
    return any(fragment in t for t in texts(fig))


@pytest.fixture(autouse=True)
def no_network_and_no_pyplot_figures(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a diagram reached for the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    before = plt.get_fignums()
    yield
    leaked = [n for n in plt.get_fignums() if n not in before]
    plt.close("all")
    assert not leaked, f"pyplot figures left open: {leaked}"


# -- Faster R-CNN ------------------------------------------------------------------------------
def test_faster_rcnn_names_every_stage_with_the_course_shapes():
    fig = diagrams.faster_rcnn()
    assert isinstance(fig, Figure)
    for stage in ("image", "backbone", "feature map", "RPN head", "anchors", "proposals (NMS)",
                  "RoI align", "box head", "decode + NMS", "detections"):
        assert stage in texts(fig), stage
    for fragment in ("128×128×3", "stride 8", "16×16×96", "9 per cell", "2,304", "7×7×96",
                     "K+1 = 6", "5×4", "1 objectness", "4 deltas", "NMS IoU 0.7 → 100",
                     "ch. 4", "ch. 5", "ch. 6", "ch. 3"):
        assert has(fig, fragment), fragment


def test_faster_rcnn_follows_the_config():
    config = DetectorConfig(num_classes=3, image_size=(96, 64), pool_size=5,
                            anchor_scales=(1.0, 2.0), test_post_nms=50)
    fig = diagrams.faster_rcnn(config, channels=32)
    for fragment in ("96×64×3", "12×8×32", "5×5×32", "K+1 = 4", "3×4", "6 per cell", "576",
                     "→ 50"):
        assert has(fig, fragment), fragment
    assert not has(fig, "7×7×96") and not has(fig, "K+1 = 6")


def test_faster_rcnn_shapes_are_the_models():
    """The numbers drawn are those of the networks the course builds."""
    from workshop.models.detector import build_box_head, build_rpn

    config = DetectorConfig()
    rpn = build_rpn(config)
    features, objectness, deltas = rpn(np.zeros((1, *config.image_size, 3), np.float32))
    fig = diagrams.faster_rcnn(config)
    h, w, c = features.shape[1:]
    assert has(fig, f"{h}×{w}×{c}")
    anchors = objectness.shape[1]
    assert has(fig, f"{anchors:,} in all") and tuple(deltas.shape[1:]) == (anchors, 4)
    head = build_box_head(config, channels=c)
    assert has(fig, "×".join(str(s) for s in head.input_shape[1:]))
    logits, box_deltas = head.output_shape
    assert has(fig, f"K+1 = {logits[1]}") and has(fig, f"{box_deltas[1]}×{box_deltas[2]}")


# -- the RPN head ------------------------------------------------------------------------------
def test_cell_anchors_are_the_detectors_grid_anchors():
    from workshop.reference.anchors import grid_anchors_numpy, reference_anchors_numpy

    config = DetectorConfig()
    h, w = config.feature_shape
    reference = reference_anchors_numpy(config.anchor_base, config.anchor_ratios,
                                        config.anchor_scales)
    every = grid_anchors_numpy((h, w), config.stride, reference)
    every = every.reshape(h, w, config.num_anchors, 4)
    for row, col in ((0, 0), (7, 7), (3, 12), (h - 1, w - 1)):
        np.testing.assert_allclose(diagrams.cell_anchors(row, col, config), every[row, col])


def test_rpn_head_draws_one_cell_its_window_and_its_anchors():
    config = DetectorConfig()
    fig = diagrams.rpn_head(config, cell=(5, 9))
    assert isinstance(fig, Figure)
    grid_ax = fig.axes[0]
    drawn = {(round(p.get_x(), 6), round(p.get_y(), 6), round(p.get_x() + p.get_width(), 6),
              round(p.get_y() + p.get_height(), 6))
             for p in grid_ax.patches if isinstance(p, Rectangle)}
    for box in diagrams.cell_anchors(5, 9, config):
        assert tuple(round(v, 6) for v in box) in drawn
    assert (72, 40, 80, 48) in drawn                         # the cell, 8 x 8 pixels
    assert (64, 32, 88, 56) in drawn                         # its 3 x 3 window
    for fragment in ("cell (5, 9)", "3×3 window", "16×16", "one cell = 8×8 pixels",
                     "9 logits per cell",
                     "1 objectness logit per anchor", "4 deltas per anchor", "9×4 = 36", "2,304",
                     "128 channels", "16×16×96"):
        assert has(fig, fragment), fragment


def test_rpn_head_follows_the_config():
    fig = diagrams.rpn_head(DetectorConfig(anchor_ratios=(1.0,), rpn_channels=64))
    for fragment in ("3 logits per cell", "3×4 = 12", "64 channels", "768 logits"):
        assert has(fig, fragment), fragment
    assert not has(fig, "9 logits per cell")
    with pytest.raises(ValueError, match="cell"):
        diagrams.rpn_head(cell=(16, 0))


# -- UNet and FCN ------------------------------------------------------------------------------
def test_unet_draws_the_trained_unet():
    from workshop.data import NUM_CLASSES
    from workshop.train import UNET_DEPTH, UNET_FILTERS, UNET_SIZE

    fig = diagrams.unet()
    assert isinstance(fig, Figure)
    for i in range(1, UNET_DEPTH + 1):
        n, f = UNET_SIZE // 2 ** (i - 1), UNET_FILTERS * 2 ** (i - 1)
        assert f"enc{i}" in texts(fig) and f"dec{i}" in texts(fig)
        assert has(fig, f"{n}×{n}×{f}")
        assert has(fig, f"transposed conv 2×2, stride 2 → {f}")
    assert f"enc{UNET_DEPTH + 1}" not in texts(fig)
    n, f = UNET_SIZE // 2 ** UNET_DEPTH, UNET_FILTERS * 2 ** UNET_DEPTH
    assert has(fig, f"{n}×{n}×{f}") and "bottleneck" in texts(fig)
    assert sum("max pool 2×2" in t for t in texts(fig)) == UNET_DEPTH
    assert sum(t.startswith("skip ") for t in texts(fig)) == UNET_DEPTH
    assert has(fig, f"{UNET_SIZE}×{UNET_SIZE}×{NUM_CLASSES + 1}")
    assert not has(fig, "FCN")


def test_unet_shapes_are_the_models():
    from workshop.models.unet import build_unet

    model = build_unet((64, 64, 3), 4, depth=2, base_filters=8, padding="same")
    fig = diagrams.unet(depth=2, base_filters=8, input_size=64, num_classes=4)
    for layer in model.layers:
        if layer.name.endswith("_conv2") or layer.name == "logits":
            assert has(fig, "×".join(str(s) for s in layer.output.shape[1:])), layer.name
    assert "enc3" not in texts(fig)
    with pytest.raises(ValueError, match="multiple of 2"):
        diagrams.unet(depth=3, input_size=100)
    with pytest.raises(ValueError, match="depth"):
        diagrams.unet(depth=0)
    with pytest.raises(ValueError, match="stride"):
        diagrams.fcn(stride=16, input_size=72)


def test_fcn_beside_the_unet_and_alone():
    fig = diagrams.unet(with_fcn=True)
    assert len(fig.axes) == 2 and has(fig, "FCN")
    alone = diagrams.fcn(stride=16, channels=64, input_size=64, num_classes=3)
    for fragment in ("CNN, stride 16", "4×4×64", "conv 1×1", "4×4×3", "bilinear ×16",
                     "64×64×3"):
        assert has(alone, fragment), fragment


# -- the notebooks -----------------------------------------------------------------------------
def _code_index(cells, needle):
    return next(i for i, c in enumerate(cells) if c.cell_type == "code" and needle in c.source)


def _grade_index(cells, grade_id):
    return next(i for i, c in enumerate(cells)
                if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_single_shot_draws_both_paths_with_the_course_shapes():
    fig = diagrams.single_shot()
    c = DetectorConfig()
    h, w = c.feature_shape
    n = h * w * c.num_anchors
    for fragment in ("single-shot head", "RPN + proposals", "RoI align + box head", "focal_loss",
                     f"{n:,} anchors", f"{n:,}×{c.num_classes} scores", f"{c.num_classes + 1} scores"):
        assert has(fig, fragment), fragment


def test_single_shot_follows_the_config():
    fig = diagrams.single_shot(DetectorConfig(num_classes=3, anchor_ratios=(1.0,)), head_channels=64)
    assert has(fig, "per anchor: 3 class") and has(fig, "conv layers (64)")
    assert has(fig, "3 anchors per cell") and not has(fig, "9 anchors per cell")


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
@pytest.mark.parametrize("stem, call, illustrated", [
    ("05_rpn", "diagrams.rpn_head(", ["load_detector()", "def rpn_targets_loops"]),
    ("06_roi_pooling", "diagrams.faster_rcnn(", ["def roi_pool_loops", "detector.detect("]),
    ("08_unet", "diagrams.unet(", ["build_unet(", "def unet_weight_map_loops"]),
    ("10_single_shot", "diagrams.single_shot(", ["def match_anchors_loops", "def build_single_shot_head"]),
])
def test_the_notebooks_show_each_diagram_before_the_code(folder, stem, call, illustrated):
    cells = nbformat.read(ROOT / folder / f"{stem}.ipynb", 4).cells
    at = _code_index(cells, call)
    assert "from workshop import diagrams" in cells[at].source
    meta = cells[at].metadata.get("nbgrader", {})
    assert not meta.get("solution") and not meta.get("grade"), "a diagram cell is not graded"
    assert cells[at - 1].cell_type == "markdown", "a sentence introduces the figure"
    for needle in illustrated:
        assert at < _code_index(cells, needle), needle
    if stem == "06_roi_pooling":
        assert at < _grade_index(cells, "nb06_md_12")       # before "The whole detector"
