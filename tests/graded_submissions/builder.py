"""Crafted notebooks for the grader's tests: a small assignment ("ps1") of three exercises from
the registry (iou numpy, nms numpy, iou loops), its solution notebook, the learner version and
one submission per attack or failure.

Every crafted submission changes ONE test (``target``) and keeps the other two correct, so a
test can assert that the damage stays where it was done. ``CRAFTED[name] = (notebook builder,
target grade_id or None, expected points of the target)``.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import nbformat

from workshop.grading import notebook as nbk

ASSIGNMENT = "ps1"
NOTEBOOK = "ps1.ipynb"
# (exercise, tier, points, signature)
TESTS = [
    ("iou", "numpy", 2.0, "(boxes1, boxes2)"),
    ("nms", "numpy", 3.0, "(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None)"),
    ("iou", "loops", 1.0, "(boxes1, boxes2)"),
]
TOTAL = sum(t[2] for t in TESTS)
POINTS = {nbk.test_id(e, t): p for e, t, p, _ in TESTS}

IOU_NUMPY = """\
    a = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)"""

NMS_NUMPY = """\
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    if score_threshold is not None:
        order = order[scores[order] > score_threshold]
    limit = len(order) if max_output_size is None else max_output_size
    keep, suppressed = [], np.zeros(len(boxes), dtype=bool)
    for i in order:
        if len(keep) >= limit:
            break
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou_numpy(boxes[i:i + 1], boxes)[0] > iou_threshold
    return np.array(keep, dtype=np.int64)"""

IOU_LOOPS = """\
    out = []
    for a in boxes1:
        row = []
        for b in boxes2:
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = w * h
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            row.append(inter / union if union > 0 else 0.0)
        out.append(row)
    return np.array(out, dtype=np.float64).reshape(len(boxes1), len(boxes2))"""

SOLUTIONS = {("iou", "numpy"): IOU_NUMPY, ("nms", "numpy"): NMS_NUMPY, ("iou", "loops"): IOU_LOOPS}
STUB = "    raise NotImplementedError()"

# correct, written differently from the reference: float32, other broadcasting, lists where the
# loops tier may return them
DIFFERENT = {
    ("iou", "numpy"): """\
    a = np.asarray(boxes1, dtype=np.float32)[:, None, :]   # float32, broadcast differently
    b = np.asarray(boxes2, dtype=np.float32)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
             + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter)
    out = np.zeros(inter.shape, dtype=np.float32)
    np.divide(inter, union, out=out, where=union > 0)
    return out""",
    ("nms", "numpy"): """\
    order = sorted(range(len(scores)), key=lambda k: (-float(scores[k]), k))
    keep = []
    for i in order:
        if score_threshold is not None and not scores[i] > score_threshold:
            continue
        if max_output_size is not None and len(keep) >= max_output_size:
            break
        if all(iou_numpy([boxes[i]], [boxes[k]])[0][0] <= iou_threshold for k in keep):
            keep.append(i)
    return np.array(keep, dtype=int)  # the numpy tier returns an array (the loops tier may not)""",
    ("iou", "loops"): """\
    return [[_pair(a, b) for b in boxes1_other] for a, boxes1_other in
            ((a, boxes2) for a in boxes1)]""",
}
HELPER_CELL = """\
def _pair(a, b):
    x = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    y = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - x * y
    return float(x * y / u) if u > 0 else 0.0

print("this helper cell's other statements never run while grading")
raise RuntimeError("nor does this")"""

IMPORT_CELL = "import numpy as np\nfrom workshop.grading import grade, check"


def _md(text):
    return nbformat.v4.new_markdown_cell(text)


def build(bodies: dict | None = None, helper: bool = False, stub_solution_markers: bool = False):
    """A notebook of the assignment; ``bodies`` overrides a function body per (exercise, tier).
    ``stub_solution_markers``: body as a learner sees it after release (no BEGIN/END)."""
    bodies = {**SOLUTIONS, **(bodies or {})}
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(_md("# Problem set 1: IoU and NMS"))
    nb.cells.append(nbformat.v4.new_code_cell(IMPORT_CELL))
    if helper:
        nb.cells.append(nbformat.v4.new_code_cell(HELPER_CELL))
    for ex, tier, points, sig in TESTS:
        nb.cells.append(_md(f"## {ex} ({tier})"))
        cell = nbk.solution_cell(ex, tier, bodies[(ex, tier)], sig)
        if stub_solution_markers:
            cell.source = f"def {ex}_{tier}{sig}:\n{bodies[(ex, tier)]}"
        nb.cells.append(cell)
        nb.cells.append(nbk.test_cell(ex, tier, points))
    nbformat.validate(nb)
    return nb


def with_body(ex, tier, body, **kw):
    return lambda: build({(ex, tier): body}, **kw)


def learner():
    return build({k: STUB for k in SOLUTIONS}, stub_solution_markers=True)


def partly_solved():
    """iou_numpy right (2 points), nms not started, iou_loops with the '+1' mistake: 2/6."""
    wrong_loops = IOU_LOOPS.replace("(a[2] - a[0]) * (a[3] - a[1])",
                                    "(a[2] - a[0] + 1) * (a[3] - a[1] + 1)").replace(
        "(b[2] - b[0]) * (b[3] - b[1])", "(b[2] - b[0] + 1) * (b[3] - b[1] + 1)").replace(
        "w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))",
        "w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)").replace(
        "h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))",
        "h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)")
    return build({("nms", "numpy"): STUB, ("iou", "loops"): wrong_loops})


def deleted_test_cells():
    nb = build()
    nb.cells = [c for c in nb.cells if not nbk.is_test_cell(c)]
    return nb


def edited_test_cells():
    """Test cells emptied and their points inflated: grading never runs or reads them."""
    nb = build({("nms", "numpy"): STUB})
    for c in nb.cells:
        if nbk.is_test_cell(c):
            c.source = "pass  # always passes"
            c.metadata["nbgrader"]["points"] = 100
    return nb


def moved_cells():
    """Solution cells moved to the end in reverse order (nms before the iou it calls)."""
    nb = build()
    sols = [c for c in nb.cells if nbk.is_solution_cell(c)]
    rest = [c for c in nb.cells if not nbk.is_solution_cell(c)]
    nb.cells = rest + sols[::-1]
    return nb


def deleted_solution_metadata():
    nb = build()
    for c in nb.cells:
        if nbk.nbgrader_meta(c).get("grade_id") == "iou_loops":
            del c.metadata["nbgrader"]
    return nb


def different():
    return build(DIFFERENT, helper=True)


CRAFTED = {
    # name: (builder, damaged test or None, points of that test)
    "full": (build, None, None),
    "written_differently": (different, None, None),
    "moved_cells": (moved_cells, None, None),
    "deleted_test_cells": (deleted_test_cells, None, None),
    "edited_test_cells": (edited_test_cells, "test_nms_numpy", 0.0),
    "imports_reference": (with_body("iou", "numpy", """\
    from workshop.reference.boxes import iou_numpy as answer
    return answer(boxes1, boxes2)"""), "test_iou_numpy", 0.0),
    "reference_by_computed_name": (with_body("iou", "numpy", """\
    import importlib
    mod = importlib.import_module("workshop." + "refer" + "ence.boxes")
    return getattr(mod, "iou_" + "numpy")(boxes1, boxes2)"""), "test_iou_numpy", 0.0),
    "reference_via_registry": (with_body("iou", "numpy", """\
    from workshop.exercises import get
    return get("iou").reference(boxes1, boxes2)"""), "test_iou_numpy", 0.0),
    "monkeypatches_checker": (with_body("nms", "numpy", """\
    import workshop.grading.check as chk
    chk.judge = lambda *a, **k: None
    chk.compare_output = lambda *a, **k: None
    return np.zeros(0, dtype=np.int64)"""), "test_nms_numpy", 0.0),
    "custom_eq": (with_body("iou", "numpy", """\
    class Anything:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
        def __len__(self):
            return len(boxes1)
    return Anything()"""), "test_iou_numpy", 0.0),
    "infinite_loop": (with_body("nms", "numpy", """\
    while True:
        pass"""), "test_nms_numpy", 0.0),
    "os_exit": (with_body("iou", "loops", """\
    import os
    os._exit(0)"""), "test_iou_loops", 0.0),
    "sys_exit": (with_body("iou", "numpy", """\
    import sys
    sys.exit("bye")"""), "test_iou_numpy", 0.0),
    "segfault": (with_body("nms", "numpy", """\
    import ctypes
    ctypes.string_at(0)"""), "test_nms_numpy", 0.0),
    "huge_print": (with_body("iou", "loops", """\
    import os
    print("x" * 10_000_000)
    os.write(1, b"y" * 10_000_000)
""" + IOU_LOOPS), None, None),
    "memory_blowup": (with_body("iou", "numpy", """\
    hog = []
    while True:
        hog.append(np.empty(50_000_000))  # 400 MB more address space each time"""),
     "test_iou_numpy", 0.0),
    "deleted_solution_metadata": (deleted_solution_metadata, "test_iou_loops", 0.0),
    "fails_hidden_only": (with_body("iou", "numpy", IOU_NUMPY.replace("    return", (
        "    if len(b) == 0 or a.min(initial=np.inf) > 1000:  # wrong only on hidden cases\n"
        "        return np.full((len(a), max(len(b), 1)), 0.5)\n    return"))),
        "test_iou_numpy", 0.0),
    "learner": (learner, "*", 0.0),
    "partly_solved": (partly_solved, "partly", 2.0),
}


def write_all(folder: Path, names=None) -> dict[str, Path]:
    """Each crafted submission as ``folder/<name>/ps1.ipynb`` (plus the invalid-JSON one)."""
    paths = {}
    for name in (names or CRAFTED):
        nb = CRAFTED[name][0]()
        path = Path(folder) / name / NOTEBOOK
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
        paths[name] = path
    if names is None or "invalid_json" in names:
        bad = Path(folder) / "invalid_json" / NOTEBOOK
        bad.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(nbformat.v4.new_notebook())
        bad.write_text(text[: len(text) // 2])  # cut off mid-file, as a crashed editor leaves it
        paths["invalid_json"] = bad
    return paths


# nms_numpy calls the learner's own iou_numpy: damage there costs both
DEPENDENTS = {"test_iou_numpy": ["test_nms_numpy"]}


def expected_points(name: str) -> dict[str, float]:
    """Points per test the crafted submission ``name`` must get."""
    _, target, pts = CRAFTED[name]
    if name == "fails_hidden_only":  # nms never calls iou_numpy on such inputs
        return {**POINTS, target: pts}
    if target in DEPENDENTS and pts == 0:
        return {**POINTS, target: 0.0, **{d: 0.0 for d in DEPENDENTS[target]}}
    if target is None:
        return dict(POINTS)
    if target == "*":
        return {k: 0.0 for k in POINTS}
    if target == "partly":
        return {"test_iou_numpy": 2.0, "test_nms_numpy": 0.0, "test_iou_loops": 0.0}
    return {**POINTS, target: pts}


def shuffled(seed: int = 0):
    """The full solution with every cell in random order (a mangled notebook)."""
    nb = build()
    cells = copy.deepcopy(nb.cells)
    random.Random(seed).shuffle(cells)
    nb.cells = cells
    return nb
