"""Every tier keeps its contract, in the self-check and through the sandboxed grader: the TF
tier compiles and returns tensors of the documented dtype, the numpy tier returns arrays of the
documented kind without looping where it must not, no tier calls the library's finished answer
or modifies its inputs, and bools are compared as bools."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import require_sandbox
from graded_submissions import builder

from workshop.exercises import get
from workshop.grading import notebook as nbk
from workshop.grading.check import check_cases

ROOT = Path(__file__).resolve().parents[1]


def _define(src: str, name: str):
    """Define ``name`` as a notebook cell does (its source kept in linecache, as IPython does)."""
    import linecache

    filename = f"<cell {name} {abs(hash(src))}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    ns: dict = {}
    exec(compile(src, filename, "exec"), ns)  # noqa: S102
    return ns[name]


def _verdict(exercise, src, name, tier):
    ex = get(exercise)
    return check_cases(ex, _define(src, name), ex.cases(public_only=True), tier=tier)


IOU_TF_NUMPY_CALL = '''
import tensorflow as tf
def iou_tf(boxes1, boxes2):
    a, b = boxes1.numpy(), boxes2.numpy()
    import numpy as np
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    union = area(a)[:, None] + area(b)[None, :] - inter
    return tf.constant(np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0))
'''

IOU_TF_FLOAT32 = '''
import tensorflow as tf
def iou_tf(boxes1, boxes2):
    a, b = tf.cast(boxes1, tf.float32), tf.cast(boxes2, tf.float32)
    w = tf.maximum(tf.minimum(a[:, None, 2], b[None, :, 2]) - tf.maximum(a[:, None, 0], b[None, :, 0]), 0.0)
    h = tf.maximum(tf.minimum(a[:, None, 3], b[None, :, 3]) - tf.maximum(a[:, None, 1], b[None, :, 1]), 0.0)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    union = area(a)[:, None] + area(b)[None, :] - inter
    return tf.math.divide_no_nan(inter, union)
'''

NMS_TF_LIBRARY = '''
import tensorflow as tf
def nms_tf(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None):
    n = max_output_size if max_output_size is not None else tf.shape(boxes)[0]
    t = float("-inf") if score_threshold is None else score_threshold
    b = tf.cast(tf.gather(boxes, [1, 0, 3, 2], axis=1), tf.float32)
    keep = tf.image.non_max_suppression(b, tf.cast(scores, tf.float32), n, iou_threshold, t)
    return tf.cast(keep, tf.int64)
'''
# the same, with the name hidden from a reading of the code: only a run can tell
NMS_TF_LIBRARY_HIDDEN = NMS_TF_LIBRARY.replace(
    "tf.image.non_max_suppression(", "getattr(tf.image, 'non_max_' + 'suppression')(")

NMS_NUMPY_LIST = builder.NMS_NUMPY.replace(
    "return np.array(keep, dtype=np.int64)", "return keep")

IOU_NUMPY_PYCOCOTOOLS = '''
import numpy as np
from pycocotools import mask as maskUtils
def iou_numpy(boxes1, boxes2):
    a = np.array(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.array(boxes2, dtype=np.float64).reshape(-1, 4)
    a[:, 2:] -= a[:, :2]
    b[:, 2:] -= b[:, :2]
    return np.asarray(maskUtils.iou(a, b, [0] * len(b))).reshape(len(a), len(b))
'''

IOU_NUMPY_IN_PLACE = '''
import numpy as np
def iou_numpy(boxes1, boxes2):
    a = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    a[:, 2:] -= a[:, :2]              # to xywh, in the caller's array
    b[:, 2:] -= b[:, :2]
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
'''

IOU_NUMPY_LOOPS = '''
import numpy as np
def iou_numpy(boxes1, boxes2):
    out = np.zeros((len(boxes1), len(boxes2)))
    for i in range(len(boxes1)):
        a = boxes1[i]
        w = np.clip(np.minimum(a[2], boxes2[:, 2]) - np.maximum(a[0], boxes2[:, 0]), 0, None)
        h = np.clip(np.minimum(a[3], boxes2[:, 3]) - np.maximum(a[1], boxes2[:, 1]), 0, None)
        union = (a[2] - a[0]) * (a[3] - a[1]) + (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1]) - w * h
        out[i] = np.where(union > 0, w * h / np.where(union > 0, union, 1), 0)
    return out
'''


@pytest.mark.parametrize("exercise, src, name, tier, words", [
    ("iou", IOU_TF_NUMPY_CALL, "iou_tf", "tf", "leaves TensorFlow"),
    ("iou", IOU_TF_FLOAT32, "iou_tf", "tf", "returns float32 where the documented output is float64"),
    ("nms", NMS_TF_LIBRARY, "nms_tf", "tf", "tensorflow.image.non_max_suppression"),
    ("nms", "import numpy as np\ndef nms_numpy(boxes, scores, iou_threshold, max_output_size=None, "
            "score_threshold=None):\n" + builder.NMS_NUMPY.replace(
                "iou_numpy(", "_iou(").replace("return np.array(keep, dtype=np.int64)",
                                               "return keep") + "\n" +
     "def _iou(a, b):\n" + builder.IOU_NUMPY.replace("boxes1", "a0").replace("boxes2", "b0")
     .replace("def", "def").replace("    a = np.asarray(a0", "    a0, b0 = a, b\n    a = np.asarray(a0"),
     "nms_numpy", "numpy", "returns a list"),
    ("iou", IOU_NUMPY_PYCOCOTOOLS, "iou_numpy", "numpy", "pycocotools"),
    ("iou", IOU_NUMPY_IN_PLACE, "iou_numpy", "numpy", "changes its argument"),
    ("iou", IOU_NUMPY_LOOPS, "iou_numpy", "numpy", "loop over range(len(boxes1))"),
])
def test_a_broken_contract_fails_the_self_check_and_says_why(exercise, src, name, tier, words):
    verdict = _verdict(exercise, src, name, tier)
    assert not verdict.passed
    assert words in verdict.report(), verdict.report()


def test_the_same_code_keeping_its_contract_passes():
    fixed = IOU_TF_FLOAT32.replace("tf.float32", "tf.float64")
    assert _verdict("iou", fixed, "iou_tf", "tf").passed
    loops = IOU_NUMPY_LOOPS.replace("def iou_numpy", "def iou_loops")
    assert _verdict("iou", loops, "iou_loops", "loops").passed


def test_bools_are_compared_as_bools():
    ex = get("match_detections")
    case = ex.cases(public_only=True)[0]
    expected = np.asarray(ex.expected(case))
    fake = np.where(expected, 1.7, 0.2)
    assert ex.compare(fake, expected) is not None
    assert ex.compare(expected.astype(np.int64), expected) is None


def test_the_nan_hint_names_the_tf_way():
    message = next(m.message for m in get("iou").mistakes if m.name == "NaN on zero-area boxes")
    assert "tf.math.divide_no_nan" in message


# == through the sandboxed grader ================================================================
def _assignment():
    """ps1 with a TF tier: iou numpy (2), nms numpy (3), iou loops (1), nms tf (2)."""
    nb = builder.build()
    nb.cells.append(nbk.solution_cell("nms", "tf", "    " + "\n    ".join([
        "import tensorflow as tf",
        "return tf.zeros([0], tf.int64)"]), builder.TESTS[1][3]))
    nb.cells.append(nbk.test_cell("nms", "tf", 2.0))
    return nb


def test_the_grader_enforces_the_contracts(tmp_path):
    require_sandbox()
    sol = tmp_path / "solutions" / builder.NOTEBOOK
    sol.parent.mkdir()
    nbformat.write(_assignment(), str(sol))
    subs = tmp_path / "subs"
    learner = builder.build({("nms", "numpy"): builder.NMS_NUMPY.replace(
        "return np.array(keep, dtype=np.int64)", "return keep")})
    learner.cells.insert(1, nbformat.v4.new_code_cell(
        IOU_NUMPY_IN_PLACE.replace("def iou_numpy", "def helper_in_place")))
    tf_cell = nbk.solution_cell("nms", "tf", "\n".join(
        "    " + line for line in NMS_TF_LIBRARY_HIDDEN.strip().splitlines()[2:]),
        builder.TESTS[1][3])
    tf_cell.source = "import tensorflow as tf\n" + tf_cell.source
    learner.cells.append(tf_cell)
    (subs / "alice").mkdir(parents=True)
    nbformat.write(learner, str(subs / "alice" / builder.NOTEBOOK))
    proc = subprocess.run([sys.executable, "-m", "workshop", "grade", str(subs), "--solutions",
                           str(sol), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    records = tmp_path / "out" / "records" / "alice" / "ps1"
    rec = {p.stem: json.loads(p.read_text()) for p in records.glob("test_*.json")}
    assert rec["test_iou_numpy"]["points"] == 2.0 and rec["test_iou_loops"]["points"] == 1.0
    assert rec["test_nms_numpy"]["points"] == 0, rec["test_nms_numpy"]
    assert "returns a list" in rec["test_nms_numpy"]["verdict"]["report"]
    assert rec["test_nms_tf"]["status"] == "contract", rec["test_nms_tf"]
    assert "non_max_suppression" in rec["test_nms_tf"]["message"]


@pytest.mark.parametrize("src, names, loops", [
    ("def f(x, k):\n    H = x.shape[0]\n    for i in range(H):\n        pass\n", ["x"], 1),
    ("def f(x, k):\n    kh = k.shape[0]\n    for i in range(kh):\n        pass\n", ["x"], 0),
    ("def f(x, k):\n    for s, t in ((x.shape[0], 1), (x.shape[1], 2)):\n        pass\n", ["x"], 0),
    ("def f(a, g):\n    m = iou(a, g)\n    for j in range(m.shape[1]):\n        pass\n", ["a"], 0),
    ("def f(a, g):\n    b = np.asarray(a).reshape(-1, 4)\n    n = len(b)\n"
     "    return [b[i] for i in range(n)]\n", ["a"], 1),
    ("def f(a, g):\n    for i, row in enumerate(a):\n        pass\n", ["a"], 1),
])
def test_loops_over_the_data_are_told_from_other_loops(src, names, loops):
    from workshop.grading.contracts import loops_over

    assert len(loops_over(src, "f", names)) == loops
