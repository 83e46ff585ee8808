"""The demonstration cells' helpers tell the truth: who wrote the function that ran, how much
slower or faster something is, and TensorFlow starts without writing to stderr."""

import os
import subprocess
import sys

import numpy as np
import pytest

from workshop import course
from workshop.course import (
    Reference,
    duration,
    is_reference,
    mine_or_reference,
    significant,
    speed_table,
    whose,
)
from workshop.exercises import get

A = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
B = np.array([[0.0, 0.0, 10.0, 5.0]])


def iou_numpy(boxes1, boxes2):  # a learner's cell before the exercise is done
    raise NotImplementedError()


def learners_iou(boxes1, boxes2):  # a learner's (finished) answer
    return get("iou").tier("numpy")(boxes1, boxes2)


def test_the_fallback_is_the_reference_and_says_so(capsys):
    fn = mine_or_reference(iou_numpy, "iou")
    assert "not implemented yet" in capsys.readouterr().out
    assert isinstance(fn, Reference) and is_reference(fn)
    assert whose(fn) == "the reference" and whose(fn, standalone=True) == "reference"
    assert f"{whose(fn)} iou" == "the reference iou"
    np.testing.assert_array_equal(fn(A, B), get("iou").tier("numpy")(A, B))   # it runs the reference
    assert fn.__name__ == get("iou").tier("numpy").__name__
    assert "reference iou" in repr(fn)


def test_a_learners_function_is_theirs(capsys):
    fn = mine_or_reference(learners_iou, "iou")
    assert "using your learners_iou" in capsys.readouterr().out
    assert fn is learners_iou
    assert not is_reference(fn)
    assert whose(fn) == "your" and whose(fn, standalone=True) == "yours"


def test_whose_sees_through_wrappers():
    import functools

    ref = Reference(get("iou").tier("numpy"), "iou", "numpy")

    @functools.wraps(ref)
    def wrapped(*args, **kwargs):
        return ref(*args, **kwargs)

    assert whose(wrapped) == "the reference"
    assert whose(lambda *a: None) == "your"


def test_significant_digits():
    assert significant(1 / 400) == "0.0025"
    assert significant(0.004123) == "0.00412"
    assert significant(12.34) == "12.3"
    assert significant(1234.0) == "1.23e+03"
    assert duration(0.0123) == "12.3 ms"
    assert duration(4.1e-5) == "41 µs"
    assert duration(1.234) == "1.23 s"
    assert duration(0.99996) == "1 s"            # rounded before the unit is chosen


def test_speed_table_prints_a_400_times_slower_entry_with_significant_digits(monkeypatch, capsys):
    def fast(boxes1, boxes2):
        return 0

    def slow(boxes1, boxes2):
        return 0

    def unwritten(boxes1, boxes2):
        raise NotImplementedError()

    seconds = {fast: 1e-4, slow: 4e-2}
    monkeypatch.setattr(course, "_median_seconds", lambda fn, *a: seconds[fn])
    rows = speed_table("iou", {"your fast": fast, "your slow": slow, "your loops": unwritten}, (A, B),
                       reference_tiers=(), industry=False)
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("your slow"))
    assert "0.0025x" in line and "0.0x" not in line, out
    assert "40 ms" in line, out
    assert next(ln for ln in out.splitlines() if ln.startswith("your fast")).split()[-2:] == ["1x", "-"]
    assert "not implemented yet" in next(ln for ln in out.splitlines() if ln.startswith("your loops"))
    assert rows[1]["speedup"] == pytest.approx(1 / 400)


def test_speed_table_against_the_reference(monkeypatch, capsys):
    def mine(boxes1, boxes2):
        return 0

    monkeypatch.setattr(course, "_median_seconds", lambda fn, *a: 2.0 if fn is mine else 1e-3)
    speed_table("iou", {"your numpy": mine}, (A, B))
    out = capsys.readouterr().out
    assert "0.0005x" in next(ln for ln in out.splitlines() if ln.startswith("your numpy")), out
    assert "2e+03x" in next(ln for ln in out.splitlines() if ln.startswith("reference numpy")), out


def test_speed_table_shows_the_tuned_kernel_and_the_industry_op(capsys):
    """Learner, textbook reference, tuned kernel and the library's op, side by side."""
    rows = speed_table("iou", {}, (A, B), repeat=1, budget=0.5)
    names = [r["implementation"] for r in rows]
    assert names == ["reference numpy", "tuned kernel numpy", "industry: pycocotools"], names
    assert all(r["seconds"] for r in rows)
    rows = speed_table("iou", {}, (A, B), repeat=1, budget=0.5, industry=False)
    assert [r["implementation"] for r in rows] == ["reference numpy", "tuned kernel numpy"]


_CHILD = """
import os, sys
from workshop.course import import_tensorflow
tf = import_tensorflow()
tf.constant(1.0) + 1.0                      # a first computation: no CUDA probe line either
import tensorflow
assert tensorflow is tf
os.write(2, b"fd 2 still works\\n")
print(os.environ["TF_CPP_MIN_LOG_LEVEL"], os.environ["TF_ENABLE_ONEDNN_OPTS"])
"""


def _run_child(env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=300,
                          check=False)


def test_import_tensorflow_writes_nothing_to_stderr_and_leaves_it_usable():
    proc = _run_child({})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "fd 2 still works\n"
    assert proc.stdout.split() == ["3", "0"]                 # set, since the user had not


def test_import_tensorflow_keeps_the_users_settings():
    proc = _run_child({"TF_CPP_MIN_LOG_LEVEL": "1", "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1"]
    assert proc.stderr.endswith("fd 2 still works\n")


def test_stderr_is_restored_after_an_error(capfd):
    with pytest.raises(RuntimeError), course.stderr_silenced():
        os.write(2, b"hidden\n")
        raise RuntimeError("boom")
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"


def test_worked_examples_and_timing_problems_come_from_the_registry():
    """A notebook's worked example is the registry's public case itself (answer included), its
    timing problem the registry's benchmark; a hidden case is not offered."""
    case = course.public_case("nms", "pinned: equal scores")
    assert case.public and case.expected.tolist() == [0, 2] and case.args[2] == 0.3
    hidden = [c.name for c in get("nms").edge_cases() if not c.public]
    with pytest.raises(KeyError, match="no public case"):
        course.public_case("nms", hidden[0])
    bench = course.benchmark_case("iou", "2000 x 2000")
    assert [a.shape for a in bench.args] == [(2000, 4), (2000, 4)]
    with pytest.raises(KeyError, match="2000 x 2000"):
        course.benchmark_case("iou", "no such problem")


# -- functions_from: a learner's functions from another chapter's saved notebook ------------------

def _chapter(tmp_path, cells, name="03_iou_nms.ipynb"):
    import nbformat

    path = tmp_path / name
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def _learners_chapter_3(tmp_path):
    """A learner's chapter 3: iou_numpy written (with a helper of their own), nms_numpy not yet,
    and cells around them that must not run."""
    import nbformat

    from workshop.grading.notebook import solution_cell, test_cell

    area = nbformat.v4.new_code_cell(
        "import numpy as np\nRAN = []\n\ndef area(b):\n    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])\n"
        "RAN.append('setup')\nraise RuntimeError('an ordinary cell must not run')")
    iou = solution_cell("iou", "numpy", (
        "    b1, b2 = np.asarray(boxes1, float), np.asarray(boxes2, float)\n"
        "    lt = np.maximum(b1[:, None, :2], b2[None, :, :2])\n"
        "    rb = np.minimum(b1[:, None, 2:], b2[None, :, 2:])\n"
        "    inter = np.clip(rb - lt, 0, None).prod(axis=2)\n"
        "    union = area(b1)[:, None] + area(b2)[None, :] - inter\n"
        "    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)"),
        "(boxes1, boxes2)")
    nms = solution_cell("nms", "numpy", "    return np.arange(len(scores))",
                        "(boxes, scores, iou_threshold, max_output_size=None, score_threshold=None)")
    nms.source = nms.source.replace("    return np.arange(len(scores))", "    raise NotImplementedError()")
    chatty = nbformat.v4.new_code_cell("print('a plot cell')\niou_numpy = None")
    return _chapter(tmp_path, [area, iou, test_cell("iou", "numpy", 1), nms, test_cell("nms", "numpy", 1), chatty])


def test_functions_from_brings_a_learners_function_over(tmp_path, monkeypatch, capsys):
    _learners_chapter_3(tmp_path)
    monkeypatch.chdir(tmp_path)                      # a notebook runs in its own folder
    found = course.functions_from("03_iou_nms.ipynb", "iou_numpy")
    out = capsys.readouterr().out
    assert out == "iou_numpy: yours, from 03_iou_nms.ipynb\n"
    fn = found["iou_numpy"]
    assert not is_reference(fn) and whose(fn) == "your" and fn.__name__ == "iou_numpy"
    np.testing.assert_allclose(fn(A, B), get("iou").tier("numpy")(A, B))
    # its own helper came along (it uses `area`), the other statements of that cell did not run
    assert "RAN" not in fn.__globals__ and "area" in fn.__globals__
    assert fn.__globals__ is not globals() and fn is not iou_numpy   # a fresh namespace of its own


def test_functions_from_keeps_the_reference_and_says_why(tmp_path, capsys):
    path = _learners_chapter_3(tmp_path)
    found = course.functions_from(path, "nms_numpy", "batched_nms_numpy", "iou_loops")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "nms_numpy: not implemented yet in 03_iou_nms.ipynb; the reference nms (numpy tier) stays in place",
        "batched_nms_numpy: 03_iou_nms.ipynb has no solution cell 'batched_nms_numpy'; "
        "the reference batched_nms (numpy tier) stays in place",
        "iou_loops: 03_iou_nms.ipynb has no solution cell 'iou_loops'; the reference iou (loops tier) stays in place"]
    assert set(found) == {"nms_numpy", "batched_nms_numpy", "iou_loops"}
    for fn in found.values():
        assert is_reference(fn) and whose(fn) == "the reference"
    case = get("nms").cases(public_only=True)[0]
    np.testing.assert_array_equal(found["nms_numpy"](*case.args, **case.kwargs),
                                  get("nms").tier("numpy")(*case.args, **case.kwargs))


def test_functions_from_a_notebook_that_is_missing_broken_or_does_not_run(tmp_path, capsys):
    import nbformat

    from workshop.grading.notebook import solution_cell

    found = course.functions_from(tmp_path / "05_rpn.ipynb", "rpn_proposals_numpy")
    assert is_reference(found["rpn_proposals_numpy"])
    assert "there is no" in capsys.readouterr().out

    (tmp_path / "broken.ipynb").write_text("{ not json")
    found = course.functions_from(tmp_path / "broken.ipynb", "iou_numpy")
    out = capsys.readouterr().out
    assert is_reference(found["iou_numpy"]) and "broken.ipynb could not be read" in out

    failing = solution_cell("iou", "numpy", "    return 0", "(boxes1, boxes2)")
    failing.source = "undefined_name + 1\n" + failing.source          # fails when the cell runs
    path = _chapter(tmp_path, [failing, nbformat.v4.new_code_cell("import numpy as np")], "failing.ipynb")
    found = course.functions_from(path, "iou_numpy")
    out = capsys.readouterr().out
    assert is_reference(found["iou_numpy"])
    assert "raised NameError: name 'undefined_name' is not defined" in out and "stays in place" in out


def test_functions_from_wants_exercise_and_tier_names(tmp_path):
    path = _learners_chapter_3(tmp_path)
    with pytest.raises(ValueError, match="<exercise>_<tier>"):
        course.functions_from(path, "area")
    with pytest.raises(ValueError, match="no exercise"):
        course.functions_from(path, "intersection_numpy")
    with pytest.raises(ValueError, match="no tf tier"):
        course.functions_from(path, "detection_map_tf")
